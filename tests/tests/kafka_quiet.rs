//! A normal life on a real broker logs no WARN and no ERROR line (issue #12, point 12): a run,
//! a graceful stop, and a restart that restores every store from its changelog (the disk was
//! lost). Before, every stop logged `ERROR ... Failed to close consumer queue on drop ...
//! BrokerDestroy` and every restored partition `WARN ... restore consumer: ... PartitionEOF`.

use std::time::Duration;

use kstreams_tests::*;

const DONE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_a_stop_and_a_restore_log_no_warning() {
    run_stop_restore("alo").await;
}

/// Exactly-once: a changelog ends with a transaction marker, so every restore ends at the end of
/// its partition (`PartitionEOF`), not at a record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_a_run_a_stop_and_a_restore_log_no_warning() {
    run_stop_restore("eos").await;
}

async fn run_stop_restore(guarantee: &str) {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "quiet", 2).await;
    let lines = sample_lines(12, 300);
    produce_lines(&b, &t.input, t.partitions, &lines);
    let exe = env!("CARGO_BIN_EXE_wordcount_app");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let status = dir.path().join("status");
    let options = ProcessOptions {
        capture_stderr: true,
        ..ProcessOptions::default()
    }
    .env("RUST_LOG", "warn")
    .status_file(&status);

    let first = AppProcess::start_with(exe, &b, &t, &state, guarantee, 1000, &options);
    if guarantee == "eos" {
        let words = independent_count(&lines).values().sum();
        wait_exactly_once_done(&b, &t, words, DONE).await;
    } else {
        t.wait_done(&b, DONE).await;
    }
    let loud = first.stop_collecting_loud_lines();
    assert!(loud.is_empty(), "first run: {loud:#?}");

    // The disk is lost: the restart restores the counts from the changelog (4 input partitions:
    // the lines and the repartitioned words).
    std::fs::remove_dir_all(&state).expect("remove the state");
    let _ = std::fs::remove_file(&status);
    let second = AppProcess::start_with(exe, &b, &t, &state, guarantee, 1000, &options);
    wait_for("the stores restored", DONE, || {
        read_status(&status).is_some_and(|s| s.restored > 0 && s.assigned.len() == 4)
    })
    .await;
    let loud = second.stop_collecting_loud_lines();
    assert!(loud.is_empty(), "restart with a restore: {loud:#?}");
    assert_eq!(
        last_counts(&read_all_committed(&b, &t.output, t.partitions)),
        independent_count(&lines)
    );
}
