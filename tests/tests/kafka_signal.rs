//! Ctrl-C (SIGINT) stops a running app gracefully: the batch in hand is finished, outputs are
//! flushed, offsets committed, stores closed. Alone in its test binary: it signals its own process.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::App;
use kstreams_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_app_gracefully_with_everything_committed() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "ctrl-c", 2).await;
    let lines = sample_lines(9, 1000);
    produce_lines(&b, &t.input, 2, &lines);
    let state = tempfile::tempdir().expect("tempdir");
    let app = Arc::new(
        App::new(
            t.topology(),
            config(&t.app_id, &b, state.path())
                .handle_ctrl_c(true)
                .commit_interval(Duration::from_secs(3600)),
        )
        .expect("app"),
    );
    let run = spawn(app.clone());
    // The commit interval is an hour: only the graceful shutdown commits.
    let total: u64 = independent_count(&lines).values().sum();
    wait_for("everything processed", Duration::from_secs(120), || {
        app.status().processed_records >= lines.len() as u64 + total
    })
    .await;
    assert!(
        app.status().committed.is_empty(),
        "nothing committed before the signal"
    );
    let ok = Command::new("kill")
        .args(["-INT", &std::process::id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("run returns after Ctrl-C")
        .expect("join")
        .expect("graceful shutdown");
    let lines_end = end_offsets(&b, &t.input, 2);
    let words_end = end_offsets(&b, &t.words, 2);
    assert!(group_committed_to(&b, &t.app_id, &lines_end));
    assert!(group_committed_to(&b, &t.app_id, &words_end));
    let out = read_all(&b, &t.output, 2);
    assert_eq!(last_counts(&out), independent_count(&lines));
}
