//! Start-up errors are clear messages within a bounded time, never hangs or panics.

use std::time::{Duration, Instant};

use kstreams::kafka::{App, AppConfig, ProcessingGuarantee};
use kstreams::{Record, Topology, processor};
use kstreams_tests::*;

fn pass_through(input: &str, output: &str) -> Topology {
    let mut t = Topology::builder();
    let s = t.source::<String, String>(input);
    let m = t.add(processor::map(|r: &Record<String, String>| r.clone()), &s);
    t.sink(output, &m);
    t.build().expect("topology")
}

async fn run_err(app: App) -> (String, Duration) {
    let began = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(90), app.run())
        .await
        .expect("run must fail in bounded time");
    (r.expect_err("run must fail").to_string(), began.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_input_topic_is_a_clear_error() {
    let b = bootstrap();
    let id = unique("missing");
    let out = format!("{id}-out");
    create_topics(&b, &[(&out, 1)]).await;
    let state = tempfile::tempdir().expect("tempdir");
    let app = App::new(
        pass_through(&format!("{id}-nope"), &out),
        config(&id, &b, state.path()),
    )
    .expect("app");
    let (err, _) = run_err(app).await;
    assert!(
        err.contains(&format!("input topic `{id}-nope` does not exist")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_a_clear_error_in_bounded_time() {
    let state = tempfile::tempdir().expect("tempdir");
    let config = AppConfig::new(unique("unreachable"))
        .bootstrap_servers("127.0.0.1:1")
        .state_dir(state.path())
        .startup_timeout(Duration::from_secs(3))
        .handle_ctrl_c(false);
    let app = App::new(pass_through("a", "b"), config).expect("app");
    let (err, took) = run_err(app).await;
    assert!(
        err.contains("cannot reach the Kafka cluster at 127.0.0.1:1"),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn co_partitioned_topics_with_different_partition_counts_are_a_clear_error() {
    let b = bootstrap();
    let id = unique("copart");
    let (left, right, out) = (format!("{id}-l"), format!("{id}-r"), format!("{id}-o"));
    create_topics(&b, &[(&left, 2), (&right, 3), (&out, 2)]).await;
    let mut t = Topology::builder();
    let l = t.source::<String, String>(&left);
    let r = t.source::<String, String>(&right);
    let m = t.add_merged(
        "merge",
        processor::map(|r: &Record<String, String>| r.clone()),
        &[&l, &r],
    );
    t.sink(&out, &m);
    let state = tempfile::tempdir().expect("tempdir");
    let app = App::new(t.build().expect("topology"), config(&id, &b, state.path())).expect("app");
    let (err, _) = run_err(app).await;
    assert!(err.contains("co-partitioned"), "{err}");
    assert!(
        err.contains("2 partitions") && err.contains("3 partitions"),
        "{err}"
    );
}

#[test]
fn exactly_once_on_the_embedded_cluster_is_a_clear_error() {
    // The mock cluster does not apply transactions: exactly-once there would be a lie.
    let err = App::new(
        pass_through("a", "b"),
        AppConfig::new("eos").processing_guarantee(ProcessingGuarantee::ExactlyOnce),
    )
    .expect_err("exactly-once needs a real cluster")
    .to_string();
    assert!(
        err.contains("exactly-once needs a real Kafka cluster"),
        "{err}"
    );
    assert!(
        App::new(
            pass_through("a", "b"),
            AppConfig::new("eos")
                .bootstrap_servers("127.0.0.1:1")
                .processing_guarantee(ProcessingGuarantee::ExactlyOnce),
        )
        .is_ok(),
        "accepted with a real cluster"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_error_stops_the_app_and_commits_nothing() {
    let b = bootstrap();
    let id = unique("undeliverable");
    let (input, output) = (format!("{id}-in"), format!("{id}-out"));
    // The broker rejects every batch to the output topic as too large: deliveries fail.
    create_topics_with_configs(
        &b,
        &[
            (&input, 2, &[]),
            (&output, 2, &[("max.message.bytes", "64")]),
        ],
    )
    .await;
    let records: Vec<Input> = (0..200)
        .map(|i| (Some(format!("k{i}").into_bytes()), vec![b'x'; 500], None))
        .collect();
    produce(&b, &input, &records);
    let state = tempfile::tempdir().expect("tempdir");
    let app = App::new(
        pass_through(&input, &output),
        config(&id, &b, state.path()).delivery_timeout(Duration::from_secs(20)),
    )
    .expect("app");
    let (err, _) = run_err(app).await;
    assert!(err.contains("cannot deliver a record to topic"), "{err}");
    let ends = end_offsets(&b, &input, 2);
    let nothing: std::collections::BTreeMap<(String, i32), i64> =
        ends.keys().map(|k| (k.clone(), 1)).collect();
    assert!(
        !group_committed_to(&b, &id, &nothing)
            && nothing
                .keys()
                .all(|k| !group_committed_to(&b, &id, &[(k.clone(), 1)].into())),
        "no input offset may be committed when its outputs were not delivered"
    );
}

/// Creating no topics is nothing to do, on a broker as on the embedded cluster (a broker's admin
/// API refuses an empty request: `InvalidArgument`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_no_topics_succeeds_on_a_broker() {
    let b = bootstrap();
    let id = unique("no-topics");
    let state = tempfile::tempdir().expect("tempdir");
    let app = App::new(
        pass_through(&format!("{id}-in"), &format!("{id}-out")),
        config(&id, &b, state.path()),
    )
    .expect("app");
    app.create_topics(&[]).await.expect("no topics to create");
}

/// Under exactly-once a transaction stays open for a whole commit interval, so its timeout
/// outlasts the interval; the broker refuses one above its `transaction.max.timeout.ms` (15 min
/// by default, as on the test broker). A 10 min interval fits (the timeout is 15 min, not twice
/// the interval) and commits; a 20 min one needs the broker's maximum raised, and start-up says
/// so instead of librdkafka's "Invalid transaction timeout".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exactly_once_commit_interval_is_held_to_the_brokers_transaction_maximum() {
    let b = bootstrap();
    let id = unique("eos-long-interval");
    let (input, output) = (format!("{id}-in"), format!("{id}-out"));
    create_topics(&b, &[(&input, 1), (&output, 1)]).await;
    produce(
        &b,
        &input,
        &[(Some(b"k".to_vec()), b"one".to_vec(), Some(0))],
    );
    let state = tempfile::tempdir().expect("tempdir");
    let eos = |minutes: u64| {
        config(&id, &b, state.path())
            .processing_guarantee(ProcessingGuarantee::ExactlyOnce)
            .commit_interval(Duration::from_secs(minutes * 60))
    };

    let app = App::new(pass_through(&input, &output), eos(20)).expect("app");
    let (err, _) = run_err(app).await;
    assert!(
        err.contains("transaction.max.timeout.ms") && err.contains("commit_interval"),
        "{err}"
    );

    let app = std::sync::Arc::new(App::new(pass_through(&input, &output), eos(10)).expect("app"));
    let stop = app.shutdown_handle();
    let run = tokio::spawn({
        let app = app.clone();
        async move { app.run().await }
    });
    wait_for("the record processed", Duration::from_secs(60), || {
        app.status().processed_records >= 1 || run.is_finished()
    })
    .await;
    stop.shutdown();
    run.await.expect("joined").expect("a 10 min interval runs");
    // The shutdown commits the one transaction: its output is visible to read_committed.
    assert_eq!(read_all_committed(&b, &output, 1).len(), 1);
}
