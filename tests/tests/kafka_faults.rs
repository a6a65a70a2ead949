//! Faults with the app as a separate process: SIGKILL mid-stream and a restart, under
//! at-least-once (nothing lost, nothing under-counted) and exactly-once (counts equal the truth;
//! the committed output holds exactly one update per input word: no duplicates).

use std::collections::BTreeMap;
use std::time::Duration;

use kstreams_tests::*;

const EXE: &str = env!("CARGO_BIN_EXE_wordcount_app");
const DONE: Duration = Duration::from_secs(180);

/// Produces the first half of `lines`, starts the app, waits until updates come out, produces
/// the second half and SIGKILLs the app right away (so mid-stream: the second half cannot be
/// committed yet), restarts it on the same state dir, waits until all input is committed and the
/// output complete, stops it gracefully.
async fn kill_mid_stream_and_restart(
    b: &str,
    t: &WordCountTopics,
    guarantee: &str,
    lines: &[String],
    words: u64,
) {
    let state = tempfile::tempdir().expect("tempdir");
    let (first, second) = lines.split_at(lines.len() / 2);
    produce_lines(b, &t.input, t.partitions, first);
    let app = AppProcess::start(EXE, b, t, state.path(), guarantee, 20);
    wait_for("updates of the first half", DONE, || {
        total_end(b, &t.output, t.partitions) >= (words / 8) as i64
    })
    .await;
    // Round-robin from partition 0 again: the second half follows the first in each partition.
    produce_lines(b, &t.input, t.partitions, second);
    app.kill();
    let lines_end = end_offsets(b, &t.input, t.partitions);
    let before = read_all_committed(b, &t.output, t.partitions).len() as u64;
    assert!(
        before < words,
        "the kill came too late to be mid-stream: {before} of {words} updates committed"
    );

    let mut app = AppProcess::start(EXE, b, t, state.path(), guarantee, 500);
    if guarantee == "eos" {
        // Transactional topics end with a commit marker that no consumer commits past: wait for
        // the lines to be committed and the committed output to hold every update.
        wait_for("lines committed", DONE, || {
            group_committed_to(b, &t.app_id, &lines_end)
        })
        .await;
        wait_for("every update committed", DONE, || {
            read_all_committed(b, &t.output, t.partitions).len() as u64 >= words
        })
        .await;
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
    let lines = sample_lines(61, 3000);
    let want = independent_count(&lines);
    let words: u64 = want.values().sum();
    kill_mid_stream_and_restart(&b, &t, "alo", &lines, words).await;

    let got = last_counts(&read_all(&b, &t.output, 3));
    assert_at_least_once_counts(&got, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_exactly_once_counts_exactly() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "kill-eos", 3).await;
    let lines = sample_lines(62, 3000);
    let want = independent_count(&lines);
    let words: u64 = want.values().sum();
    kill_mid_stream_and_restart(&b, &t, "eos", &lines, words).await;

    let out = read_all_committed(&b, &t.output, 3);
    assert_eq!(last_counts(&out), want, "final counts equal the truth");
    assert_eq!(
        out.len() as u64,
        words,
        "one committed update per input word: no duplicates"
    );
    // Per word, the committed updates are exactly 1, 2, ..., n in order.
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for (p, o, k, v) in &out {
        let k = String::from_utf8(k.clone().unwrap_or_default()).expect("utf-8");
        let v = u64::from_be_bytes(
            v.as_deref()
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .expect("u64"),
        );
        let prev = seen.entry(k.clone()).or_insert(0);
        assert_eq!(v, *prev + 1, "`{k}` at partition {p} offset {o}");
        *prev = v;
    }
    // The words topic (repartition) read committed holds each word exactly once too.
    let words_out = read_all_committed(&b, &t.words, 3);
    assert_eq!(
        words_out.len() as u64,
        words,
        "no duplicate in the repartition topic"
    );
}
