//! A broker outage mid-stream: the test's own broker ([`PrivateBroker`]) is stopped for 10 s while
//! word count runs (as processes of their own, under at-least-once and exactly-once) and still has
//! input to process, then started again on the same data and port. Both apps must ride it out by
//! themselves and lose nothing: at-least-once counts every word, none below the truth; exactly-once
//! counts exactly with one committed update per word. A third app (in this process) with a short
//! retry bound is stopped during the outage: its final offset commit cannot reach the broker, and
//! it must end with an error naming the commit rather than hang or pretend success.
//!
//! One broker and one outage serve all three: a private broker costs ~20 s to start and as much to
//! restart on a busy machine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kstreams::kafka::App;
use kstreams_tests::*;

const EXE: &str = env!("CARGO_BIN_EXE_wordcount_app");
const WAIT: Duration = Duration::from_secs(60);
const OUTAGE: Duration = Duration::from_secs(10);

fn words_of(lines: &[String]) -> u64 {
    independent_count(lines).values().sum()
}

/// Exactly-once: final counts equal the truth and the committed updates of each word are exactly
/// 1, 2, ..., n (no duplicate, no gap); the repartition topic holds each word once.
fn assert_exactly_once(b: &str, t: &WordCountTopics, lines: &[String]) {
    let want = independent_count(lines);
    let out = read_all_committed(b, &t.output, t.partitions);
    assert_eq!(last_counts(&out), want, "exactly-once: final counts");
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for (p, o, k, v) in &out {
        let k = String::from_utf8(k.clone().unwrap_or_default()).expect("utf-8");
        let v = u64::from_be_bytes(
            v.as_deref()
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .expect("u64"),
        );
        let prev = seen.entry(k.clone()).or_insert(0);
        assert_eq!(
            v,
            *prev + 1,
            "exactly-once: `{k}` at partition {p} offset {o}"
        );
        *prev = v;
    }
    assert_eq!(
        out.len() as u64,
        words_of(lines),
        "exactly-once: one committed update per input word"
    );
    assert_eq!(
        read_all_committed(b, &t.words, t.partitions).len() as u64,
        words_of(lines),
        "exactly-once: no duplicate in the repartition topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_10_s_mid_stream_apps_recover_by_themselves_and_lose_nothing() {
    let test_began = Instant::now();
    let broker = PrivateBroker::start();
    let b = broker.bootstrap().to_owned();
    eprintln!("private broker {b} up in {:?}", test_began.elapsed());
    let alo = WordCountTopics::create(&b, "outage-alo", 3).await;
    let eos = WordCountTopics::create(&b, "outage-eos", 3).await;
    let bound = WordCountTopics::create(&b, "outage-bound", 1).await;

    let alo_lines = sample_lines(71, 3000);
    let eos_lines = sample_lines(72, 3000);
    let (alo_before, alo_after) = alo_lines.split_at(2000);
    let (eos_before, eos_after) = eos_lines.split_at(2000);
    produce_lines(&b, &alo.input, alo.partitions, alo_before);
    produce_lines(&b, &eos.input, eos.partitions, eos_before);
    let bound_lines = sample_lines(73, 50);
    produce_lines(&b, &bound.input, bound.partitions, &bound_lines);

    let alo_state = tempfile::tempdir().expect("tempdir");
    let eos_state = tempfile::tempdir().expect("tempdir");
    let bound_state = tempfile::tempdir().expect("tempdir");
    // Small batches: the first part takes a while, so the outage hits the apps mid-stream.
    let mut alo_app = AppProcess::start(EXE, &b, &alo, alo_state.path(), "alo", 10);
    let mut eos_app = AppProcess::start(EXE, &b, &eos, eos_state.path(), "eos", 10);
    // Offsets are committed only at shutdown (1 h interval); the final commit may retry for 3 s
    // (the delivery timeout); a commit waits for the coordinator for at most the 6 s session.
    let bound_app = Arc::new(
        App::new(
            bound.topology(),
            config(&bound.app_id, &b, bound_state.path())
                .commit_interval(Duration::from_secs(3600))
                .delivery_timeout(Duration::from_secs(3))
                .consumer_property("session.timeout.ms", "6000"),
        )
        .expect("app"),
    );
    let bound_run = spawn(bound_app.clone());

    let bound_words = words_of(&bound_lines) as i64;
    wait_for("the bounded app's output", WAIT, || {
        total_end(&b, &bound.output, bound.partitions) >= bound_words
    })
    .await;
    let (alo_words, eos_words) = (words_of(alo_before) as i64, words_of(eos_before) as i64);
    wait_for("output flowing from both apps", WAIT, || {
        total_end(&b, &alo.output, alo.partitions) >= alo_words / 10
            && total_end(&b, &eos.output, eos.partitions) >= eos_words / 10
    })
    .await;
    let alo_out = total_end(&b, &alo.output, alo.partitions);
    let eos_out = total_end(&b, &eos.output, eos.partitions);
    assert!(
        alo_out < alo_words && eos_out < eos_words,
        "not mid-stream: {alo_out} of {alo_words} (alo), {eos_out} of {eos_words} (eos) updates \
         out before the outage"
    );

    broker.stop_keeping_data();
    let down = Instant::now();
    eprintln!(
        "broker stopped at {:?} with {alo_out} of {alo_words} (alo) and {eos_out} of {eos_words} \
         (eos) updates out",
        test_began.elapsed()
    );

    // The bounded app stops during the outage: its final commit cannot be made and it says so.
    bound_app.shutdown_handle().shutdown();
    let result = tokio::time::timeout(Duration::from_secs(30), bound_run)
        .await
        .expect("the bounded app ended within 30 s of its shutdown")
        .expect("join");
    let err = result
        .expect_err("a commit with the broker down cannot succeed")
        .to_string();
    assert!(
        err.contains("committing offsets") && err.contains(&bound.input),
        "the error names the commit and the input: {err}"
    );
    eprintln!(
        "bounded app ended {:?} into the outage: {err}",
        down.elapsed()
    );

    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;
    assert!(
        !alo_app.exited(),
        "the at-least-once app died during the outage"
    );
    assert!(
        !eos_app.exited(),
        "the exactly-once app died during the outage"
    );
    broker.start_again();
    eprintln!(
        "broker back after {:?} down (test at {:?})",
        down.elapsed(),
        test_began.elapsed()
    );

    // Round-robin from partition 0 again: the rest follows the first part in each partition.
    produce_lines(&b, &alo.input, alo.partitions, alo_after);
    produce_lines(&b, &eos.input, eos.partitions, eos_after);
    alo.wait_done(&b, WAIT).await;
    let eos_lines_end = end_offsets(&b, &eos.input, eos.partitions);
    wait_for("exactly-once: lines committed", WAIT, || {
        group_committed_to(&b, &eos.app_id, &eos_lines_end)
    })
    .await;
    let eos_total = words_of(&eos_lines);
    wait_for("exactly-once: every update committed", WAIT, || {
        read_all_committed(&b, &eos.output, eos.partitions).len() as u64 >= eos_total
    })
    .await;
    assert!(
        !alo_app.exited(),
        "the at-least-once app died after the outage"
    );
    assert!(
        !eos_app.exited(),
        "the exactly-once app died after the outage"
    );
    alo_app.stop();
    eos_app.stop();

    let got = last_counts(&read_all(&b, &alo.output, alo.partitions));
    assert_at_least_once_counts(&got, &independent_count(&alo_lines));
    assert_exactly_once(&b, &eos, &eos_lines);
    eprintln!("done in {:?}", test_began.elapsed());
}
