//! The embedded default: with no bootstrap servers, the app runs on librdkafka's mock cluster.

use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::{App, AppConfig, AppStatus, TopicSpec};
use kstreams_tests::*;

/// Runs word count once on a fresh embedded cluster over `lines`; returns the final counts read
/// from its output topic and the app's status.
async fn run_embedded(
    id: &str,
    state: &std::path::Path,
    lines: &[String],
) -> (std::collections::BTreeMap<String, u64>, AppStatus) {
    let (input, words, output) = (
        format!("{id}-lines"),
        format!("{id}-words"),
        format!("{id}-counts"),
    );
    let config = AppConfig::new(id)
        .state_dir(state)
        .commit_interval(Duration::from_millis(100))
        .handle_ctrl_c(false);
    let topology =
        kstreams_examples::wordcount::topology(&input, &words, &output).expect("topology");
    let app = Arc::new(App::new(topology, config).expect("app"));
    assert!(app.is_embedded());
    let b = app.bootstrap_servers().to_owned();
    app.create_topics(&[
        TopicSpec::new(&input, 2),
        TopicSpec::new(&words, 3),
        TopicSpec::new(&output, 3),
    ])
    .await
    .expect("topics");
    produce_lines(&b, &input, 2, lines);
    run_until_committed(
        &app,
        &b,
        &[(&input, 2), (&words, 3)],
        Duration::from_secs(120),
    )
    .await;
    let out = read_all(&b, &output, 3);
    (last_counts(&out), app.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_count_runs_on_the_embedded_cluster() {
    let state = tempfile::tempdir().expect("tempdir");
    let lines = sample_lines(5, 2000);
    let (counts, _) = run_embedded(&unique("embedded"), state.path(), &lines).await;
    assert_eq!(counts, independent_count(&lines));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_state_ahead_of_its_changelog_is_wiped_and_rebuilt() {
    // The second run has the first run's state directory but a brand-new (empty) cluster: the
    // local state claims changelog offsets past the changelog's end, so it must not be trusted.
    let id = unique("foreign-state");
    let state = tempfile::tempdir().expect("tempdir");
    let first = sample_lines(6, 500);
    let (counts, _) = run_embedded(&id, state.path(), &first).await;
    assert_eq!(counts, independent_count(&first));
    let second = sample_lines(7, 500);
    let (counts, _) = run_embedded(&id, state.path(), &second).await;
    assert_eq!(counts, independent_count(&second));
}

/// Records the length of every batch it is given, by input partition.
#[derive(Clone)]
struct BatchSizes(Arc<std::sync::Mutex<Vec<(i32, usize)>>>);

impl kstreams::BatchProcessor<String, String> for BatchSizes {
    type OutKey = String;
    type OutValue = String;
    fn process_batch(
        &mut self,
        records: &[kstreams::Record<String, String>],
        ctx: &mut kstreams::Context<'_, String, String>,
    ) -> kstreams::Result<()> {
        let partition = records
            .first()
            .and_then(|r| r.origin.as_ref())
            .map_or(-1, |o| o.partition);
        assert!(
            records
                .iter()
                .all(|r| r.origin.as_ref().is_some_and(|o| o.partition == partition)),
            "a batch holds the records of one partition"
        );
        self.0
            .lock()
            .expect("sizes")
            .push((partition, records.len()));
        for r in records {
            ctx.forward(r.clone());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_gets_batches_of_at_most_batch_max_records_however_many_partitions_a_round_polls() {
    // Four partitions' records, all there when the app starts: a round may poll many of one
    // partition, and the partition's batch still holds at most batch_max_records.
    let id = unique("batch-size");
    let (input, output) = (format!("{id}-in"), format!("{id}-out"));
    let state = tempfile::tempdir().expect("tempdir");
    let sizes = BatchSizes(Arc::default());
    let mut t = kstreams::Topology::builder();
    let s = t.source::<String, String>(&input);
    let b = t.add(sizes.clone(), &s);
    t.sink(&output, &b);
    let config = AppConfig::new(&id)
        .state_dir(state.path())
        .batch_max_records(100)
        .commit_interval(Duration::from_millis(100))
        .handle_ctrl_c(false);
    let app = Arc::new(App::new(t.build().expect("topology"), config).expect("app"));
    let bootstrap = app.bootstrap_servers().to_owned();
    app.create_topics(&[TopicSpec::new(&input, 4), TopicSpec::new(&output, 4)])
        .await
        .expect("topics");
    let records: Vec<Input> = (0..4 * 700)
        .map(|i| {
            (
                Some(format!("k{i}").into_bytes()),
                format!("v{i}").into_bytes(),
                Some(i % 4),
            )
        })
        .collect();
    produce(&bootstrap, &input, &records);
    run_until_committed(&app, &bootstrap, &[(&input, 4)], Duration::from_secs(120)).await;
    let sizes = sizes.0.lock().expect("sizes").clone();
    for p in 0..4 {
        let of_p: Vec<usize> = sizes.iter().filter(|s| s.0 == p).map(|s| s.1).collect();
        assert_eq!(of_p.iter().sum::<usize>(), 700, "partition {p}: {of_p:?}");
        assert!(of_p.iter().all(|&n| n <= 100), "partition {p}: {of_p:?}");
    }
    assert_eq!(read_all(&bootstrap, &output, 4).len(), 4 * 700);
}
