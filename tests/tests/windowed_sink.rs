//! The Kafka sink partitions windowed keys by their inner key, as Java's
//! `WindowedStreamPartitioner` (the test driver's side is in `kstreams/tests/windowing.rs`).

use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::{App, AppConfig, TopicSpec};
use kstreams::{Topology, window};
use kstreams_tests::*;

#[kstreams::store(name = "counts", window = tumbling(size = "1h"), grace = "0s")]
type Counts = kstreams::WindowKeyValue<String, u64>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowed_results_land_in_the_partition_of_their_inner_key() {
    let id = unique("windowed-sink");
    let (input, output) = (format!("{id}-in"), format!("{id}-out"));
    let state = tempfile::tempdir().expect("tempdir");
    let config = AppConfig::new(&id)
        .state_dir(state.path())
        .commit_interval(Duration::from_millis(100))
        .handle_ctrl_c(false);
    let mut t = Topology::builder();
    let records = t.source::<String, String>(&input);
    let counts = t.add(window::count::<Counts<'static>>(), &records);
    t.sink(&output, &counts);
    let app = Arc::new(App::new(t.build().expect("topology"), config).expect("app"));
    let b = app.bootstrap_servers().to_owned();
    app.create_topics(&[TopicSpec::new(&input, 1), TopicSpec::new(&output, 4)])
        .await
        .expect("topics");
    // Kafka's murmur2 test vectors (UtilsTest.testMurmur2).
    let java = [
        ("21", -973_932_308i32),
        ("foobar", -790_332_482),
        ("abc", 479_470_107),
    ];
    let inputs: Vec<Input> = java
        .iter()
        .map(|(k, _)| (Some(k.as_bytes().to_vec()), Vec::new(), Some(0)))
        .collect();
    produce(&b, &input, &inputs);
    run_until_committed(&app, &b, &[(&input, 1)], Duration::from_secs(120)).await;
    let out = read_all(&b, &output, 4);
    assert_eq!(out.len(), 3, "{out:?}");
    for (partition, _, key, _) in out {
        let key = key.expect("a windowed key");
        let inner = &key[..key.len() - 8];
        let (_, hash) = java
            .iter()
            .find(|(k, _)| k.as_bytes() == inner)
            .expect("one of the input keys");
        assert_eq!(
            partition,
            (hash & 0x7fff_ffff) % 4,
            "{}",
            String::from_utf8_lossy(inner)
        );
    }
}
