//! Faults with the app as a separate process: SIGKILL mid-stream and a restart, under
//! at-least-once (nothing lost, nothing under-counted) and exactly-once (counts equal the truth;
//! the committed output holds exactly one update per input word: no duplicates).

use std::time::Duration;

use kstreams_tests::*;

const EXE: &str = env!("CARGO_BIN_EXE_wordcount_app");
const DONE: Duration = Duration::from_secs(180);

/// Produces the first eighth of `lines`, starts the app, waits until half of its updates came
/// out, produces the rest (seven times as much: an engine that commits without draining must
/// still be mid-stream when the kill comes) and SIGKILLs the app right away, restarts it on the
/// same state dir, waits until all input is committed and the output complete, stops it
/// gracefully.
async fn kill_mid_stream_and_restart(
    b: &str,
    t: &WordCountTopics,
    guarantee: &str,
    lines: &[String],
    words: u64,
    options: &ProcessOptions,
) {
    let state = tempfile::tempdir().expect("tempdir");
    let (first, second) = lines.split_at(lines.len() / 8);
    let first_words: u64 = independent_count(first).values().sum();
    produce_lines(b, &t.input, t.partitions, first);
    let app = AppProcess::start_with(EXE, b, t, state.path(), guarantee, 20, options);
    wait_for("updates of the first part", DONE, || {
        total_end(b, &t.output, t.partitions) >= (first_words / 2) as i64
    })
    .await;
    // Round-robin from partition 0 again: the rest follows the first part in each partition.
    produce_lines(b, &t.input, t.partitions, second);
    app.kill();
    let before = read_all_committed(b, &t.output, t.partitions).len() as u64;
    assert!(
        before < words,
        "the kill came too late to be mid-stream: {before} of {words} updates committed"
    );

    let mut app = AppProcess::start_with(EXE, b, t, state.path(), guarantee, 500, options);
    if guarantee == "eos" {
        wait_exactly_once_done(b, t, words, DONE).await;
    } else {
        t.wait_done(b, DONE).await;
    }
    assert!(!app.exited(), "the restarted app died");
    app.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_at_least_once_loses_nothing() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "kill-alo", 3).await;
    let lines = sample_lines(61, 12000);
    let want = independent_count(&lines);
    let words: u64 = want.values().sum();
    kill_mid_stream_and_restart(&b, &t, "alo", &lines, words, &ProcessOptions::default()).await;

    let got = last_counts(&read_all(&b, &t.output, 3));
    assert_at_least_once_counts(&got, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_exactly_once_counts_exactly() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "kill-eos", 3).await;
    let lines = sample_lines(62, 12000);
    let want = independent_count(&lines);
    let words: u64 = want.values().sum();
    kill_mid_stream_and_restart(&b, &t, "eos", &lines, words, &ProcessOptions::default()).await;

    assert_exactly_once_word_count(&b, &t, &want);
}

/// Two processing threads (two consumers in the group, two transactional producers): a SIGKILL
/// mid-stream, a restart on the same state dir (the same transactional ids fence both dead
/// producers), and the counts are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_exactly_once_with_two_threads_counts_exactly() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "kill-eos-2t", 4).await;
    let lines = sample_lines(63, 12000);
    let want = independent_count(&lines);
    let words: u64 = want.values().sum();
    let options = ProcessOptions::default()
        .env("KSTREAMS_TEST_THREADS", 2)
        .env("KSTREAMS_TEST_SESSION_TIMEOUT_MS", 6000);
    kill_mid_stream_and_restart(&b, &t, "eos", &lines, words, &options).await;

    assert_exactly_once_word_count(&b, &t, &want);
}
