//! A broker outage mid-stream: the test's own broker ([`PrivateBroker`]) is stopped for 10 s while
//! word count runs (as processes of their own, under at-least-once and exactly-once) and still has
//! input to process, then started again on the same data and port. Both apps must ride it out by
//! themselves and lose nothing: at-least-once counts every word, none below the truth; exactly-once
//! counts exactly with one committed update per word. Two more apps run in this process: one
//! at-least-once with a 6 s session timeout, so that its commits during the outage fail (librdkafka
//! defers a commit for at most the session timeout) and its group session is lost and rejoined;
//! and one with a 3 s retry bound that is stopped during the outage: its final offset commit
//! cannot reach the broker, and it must end with an error naming the commit within 30 s rather
//! than hang (librdkafka's synchronous commit and consumer close have no deadline of their own:
//! `commit_sync_within`, `close_consumer_within`) or pretend success.
//!
//! A Kafka defect of single-broker clusters gets in the way of the exactly-once half: a transaction
//! that is completing (between `EndTxn` and its markers) when the only broker stops, gracefully or
//! not, has its markers skipped by the broker's transaction coordinator ("Couldn't find leader
//! endpoint ... likely deleted already": at shutdown, and at the restart while the broker is
//! still fenced). The transaction then hangs in its partitions for good; no client can repair it.
//! Measured here with 100 ms commits: 1 run in 13 (graceful stop), 3 in 9 (SIGKILL); with the
//! broker killed and the exactly-once app committing every second, 2 in 20. So when the broker log
//! shows it for the exactly-once app's transactional id, the whole scenario runs again on a fresh
//! broker (at most 4 attempts; each one is reported). A run that hits it asserts nothing more:
//! the broker broke the transaction, not the app. The app's side of it (it stalls and fails with
//! an error naming a possible hanging transaction, it never loses state) is in
//! `docs/design/broker-outage.md`.
//!
//! One broker and one outage serve all four: a private broker costs 6-30 s to start and as much to
//! restart on a busy machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kstreams::kafka::App;
use kstreams_tests::*;

const EXE: &str = env!("CARGO_BIN_EXE_wordcount_app");
const WAIT: Duration = Duration::from_secs(90);
const OUTAGE: Duration = Duration::from_secs(10);

fn words_of(lines: &[String]) -> u64 {
    independent_count(lines).values().sum()
}

const ATTEMPTS: u32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_10_s_mid_stream_apps_recover_by_themselves_and_lose_nothing() {
    let mut defects = Vec::new();
    for attempt in 1..=ATTEMPTS {
        match outage_scenario().await {
            Ok(()) => {
                if !defects.is_empty() {
                    eprintln!("passed at attempt {attempt}; the broker defect hit: {defects:#?}");
                }
                return;
            }
            Err(defect) => {
                eprintln!("attempt {attempt}: the broker skipped transaction markers: {defect}");
                defects.push(defect);
            }
        }
    }
    panic!("the broker skipped transaction markers in all {ATTEMPTS} attempts: {defects:#?}");
}

/// The scenario, on a broker of its own. `Err`: the broker skipped the transaction markers of the
/// exactly-once app (the defect above, the broker log line), so exactly-once cannot be judged.
async fn outage_scenario() -> Result<(), String> {
    let test_began = Instant::now();
    let broker = PrivateBroker::start();
    let b = broker.bootstrap().to_owned();
    eprintln!("private broker {b} up in {:?}", test_began.elapsed());
    let alo = WordCountTopics::create(&b, "outage-alo", 3).await;
    let eos = WordCountTopics::create(&b, "outage-eos", 3).await;
    let short = WordCountTopics::create(&b, "outage-session", 3).await;
    let bound = WordCountTopics::create(&b, "outage-bound", 1).await;

    // Lines: a few to warm up (every app joined its group, initialized its transactions and
    // produced output), then the bulk, produced all at once right before the broker is stopped
    // (so the apps are in the middle of it), then the rest after the outage. Each part is
    // produced round-robin from partition 0.
    // The bulk is large enough that the apps, which now fetch without librdkafka's 1 s queue
    // backoff, are still in the middle of it when the broker dies (with 2,970 lines, 19k words,
    // an app had processed all of it in 2 runs of 3).
    let alo_lines = sample_lines(71, 24_000);
    let eos_lines = sample_lines(72, 24_000);
    let short_lines = sample_lines(74, 24_000);
    let bound_lines = sample_lines(73, 50);
    let parts = |l: &[String]| -> (Vec<String>, Vec<String>, Vec<String>) {
        (
            l[..30].to_vec(),
            l[30..20_000].to_vec(),
            l[20_000..].to_vec(),
        )
    };
    let (alo_warm, alo_bulk, alo_after) = parts(&alo_lines);
    let (eos_warm, eos_bulk, eos_after) = parts(&eos_lines);
    let (short_warm, short_bulk, short_after) = parts(&short_lines);
    produce_lines(&b, &alo.input, alo.partitions, &alo_warm);
    produce_lines(&b, &eos.input, eos.partitions, &eos_warm);
    produce_lines(&b, &short.input, short.partitions, &short_warm);
    produce_lines(&b, &bound.input, bound.partitions, &bound_lines);

    let alo_state = tempfile::tempdir().expect("tempdir");
    let eos_state = tempfile::tempdir().expect("tempdir");
    let short_state = tempfile::tempdir().expect("tempdir");
    let bound_state = tempfile::tempdir().expect("tempdir");
    // Small batches, so that the bulk takes a while.
    let mut alo_app = AppProcess::start(EXE, &b, &alo, alo_state.path(), "alo", 10);
    // Commits every second, not every 100 ms, so that fewer kills fall inside a commit (measured:
    // it helped less than hoped, 2 runs in 20 still hit the broker defect above).
    let mut eos_app = AppProcess::start_with(
        EXE,
        &b,
        &eos,
        eos_state.path(),
        "eos",
        10,
        &ProcessOptions::default().env("KSTREAMS_TEST_COMMIT_INTERVAL_MS", 1000),
    );
    let short_app = Arc::new(
        App::new(
            short.topology(),
            config(&short.app_id, &b, short_state.path())
                .batch_max_records(10)
                .consumer_property("session.timeout.ms", "6000"),
        )
        .expect("app"),
    );
    let short_run = spawn(short_app.clone());
    // Offsets are committed only at shutdown (1 h interval); the final commit may retry for 3 s
    // (the delivery timeout), and closing the consumer may take 10 s more.
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
    let warm = |t: &WordCountTopics, l: &[String]| {
        total_end(&b, &t.output, t.partitions) >= words_of(l) as i64
    };
    wait_for("every app's output of the warm-up lines", WAIT, || {
        warm(&alo, &alo_warm)
            && warm(&eos, &eos_warm)
            && warm(&short, &short_warm)
            && warm(&bound, &bound_lines)
    })
    .await;

    std::thread::scope(|s| {
        s.spawn(|| produce_lines(&b, &alo.input, alo.partitions, &alo_bulk));
        s.spawn(|| produce_lines(&b, &eos.input, eos.partitions, &eos_bulk));
        s.spawn(|| produce_lines(&b, &short.input, short.partitions, &short_bulk));
    });
    let out = |t: &WordCountTopics, warm: &[String], bulk: &[String]| {
        let done = total_end(&b, &t.output, t.partitions);
        (done, (words_of(warm) + words_of(bulk)) as i64)
    };
    let progress = [
        ("alo", out(&alo, &alo_warm, &alo_bulk)),
        ("eos", out(&eos, &eos_warm, &eos_bulk)),
        ("short session", out(&short, &short_warm, &short_bulk)),
    ];
    // (The exactly-once output's end also counts transaction markers: a little more than updates.)
    assert!(
        progress.iter().all(|(_, (done, all))| done < all),
        "not mid-stream: (updates out, words before the outage) {progress:?}"
    );

    broker.kill_keeping_data();
    let down = Instant::now();
    eprintln!(
        "broker killed at {:?}; (updates out, words before the outage): {progress:?}",
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
    assert!(
        !short_run.is_finished(),
        "the short-session app died during the outage"
    );
    broker.start_again();
    eprintln!(
        "broker back after {:?} down (test at {:?})",
        down.elapsed(),
        test_began.elapsed()
    );

    // The defect, for the exactly-once app's transactional id (`<app id>-<hash>`).
    let eos_txn = format!("transaction markers for {}-", eos.app_id);
    let defect = || {
        broker
            .log_lines_with(&["likely deleted already", &eos_txn])
            .into_iter()
            .next()
    };
    let stop_in_process = || {
        short_app.shutdown_handle().shutdown();
    };

    produce_lines(&b, &alo.input, alo.partitions, &alo_after);
    produce_lines(&b, &eos.input, eos.partitions, &eos_after);
    produce_lines(&b, &short.input, short.partitions, &short_after);
    // Every wait ends at once if the broker defect shows (checked first: it may make the
    // exactly-once app give up) and fails at once if an app died, rather than at its timeout.
    let found = std::cell::RefCell::new(None::<String>);
    let alive = |alo_app: &mut AppProcess, eos_app: &mut AppProcess| {
        if found.borrow().is_some() {
            return false;
        }
        if let Some(line) = defect() {
            *found.borrow_mut() = Some(line);
            return false;
        }
        assert!(
            !alo_app.exited(),
            "the at-least-once app died after the outage"
        );
        assert!(
            !eos_app.exited(),
            "the exactly-once app died after the outage"
        );
        assert!(
            !short_run.is_finished(),
            "the short-session app died after the outage"
        );
        true
    };
    // After each wait: the defect ends the attempt.
    macro_rules! or_defect {
        () => {
            if let Some(line) = found.borrow().clone().or_else(defect) {
                stop_in_process();
                return Err(line);
            }
        };
    }
    for t in [&alo, &short] {
        for topic in [&t.input, &t.words] {
            let end = end_offsets(&b, topic, t.partitions);
            wait_for(&format!("`{topic}` committed"), WAIT, || {
                !alive(&mut alo_app, &mut eos_app) || group_committed_to(&b, &t.app_id, &end)
            })
            .await;
            or_defect!();
        }
    }
    // Transactional topics end with a commit marker that no consumer commits past: wait for the
    // lines to be committed and the committed output to hold every update.
    let eos_lines_end = end_offsets(&b, &eos.input, eos.partitions);
    wait_for("exactly-once: lines committed", WAIT, || {
        !alive(&mut alo_app, &mut eos_app) || group_committed_to(&b, &eos.app_id, &eos_lines_end)
    })
    .await;
    or_defect!();
    let eos_total = words_of(&eos_lines);
    wait_for("exactly-once: every update committed", WAIT, || {
        !alive(&mut alo_app, &mut eos_app)
            || read_all_committed(&b, &eos.output, eos.partitions).len() as u64 >= eos_total
    })
    .await;
    or_defect!();
    alive(&mut alo_app, &mut eos_app);
    or_defect!();
    alo_app.stop();
    eos_app.stop();
    short_app.shutdown_handle().shutdown();
    tokio::time::timeout(WAIT, short_run)
        .await
        .expect("the short-session app stopped")
        .expect("join")
        .expect("the short-session app ran without error");

    let got = last_counts(&read_all(&b, &alo.output, alo.partitions));
    assert_at_least_once_counts(&got, &independent_count(&alo_lines));
    let got = last_counts(&read_all(&b, &short.output, short.partitions));
    assert_at_least_once_counts(&got, &independent_count(&short_lines));
    or_defect!();
    assert_exactly_once_word_count(&b, &eos, &independent_count(&eos_lines));
    eprintln!("done in {:?}", test_began.elapsed());
    Ok(())
}
