//! Exactly-once across instances and lost disks: two instances, one SIGKILLed mid-stream, the
//! other takes over its partitions and restores their state from the changelog; a state
//! directory deleted while the app is stopped is rebuilt from the changelog. In both the final
//! counts equal the truth and the committed output holds exactly one update per input word.
//! Two instances whose state directories have the same path string (one relative path, two
//! working directories) have two transactional ids and both make progress.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kstreams::kafka::{App, ProcessingGuarantee};
use kstreams_tests::*;

const EXE: &str = env!("CARGO_BIN_EXE_wordcount_app");
const DONE: Duration = Duration::from_secs(60);
/// The consumer's `session.timeout.ms` for the two instances: the broker's minimum
/// (`group.min.session.timeout.ms`, 6 s), so the killed one leaves the group in seconds.
const SESSION_TIMEOUT_MS: u64 = 6000;

/// Waits until two instances (their status files) are both assigned and share `all` the input
/// partitions.
async fn wait_sharing(
    status_a: &std::path::Path,
    status_b: &std::path::Path,
    all: &BTreeSet<(String, i32)>,
) {
    wait_for(
        "both instances assigned, sharing the partitions",
        DONE,
        || {
            let (Some(sa), Some(sb)) = (read_status(status_a), read_status(status_b)) else {
                return false;
            };
            !sa.assigned.is_empty()
                && !sb.assigned.is_empty()
                && sa.assigned.is_disjoint(&sb.assigned)
                && sa.assigned.len() + sb.assigned.len() == all.len()
        },
    )
    .await;
}

/// Committed updates per output partition.
fn per_partition(out: &[Output]) -> BTreeMap<i32, usize> {
    let mut m = BTreeMap::new();
    for (p, _, _, _) in out {
        *m.entry(*p).or_insert(0) += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_exactly_once_sigkill_one_and_the_other_takes_over_exactly() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "takeover-eos", 4).await;
    let lines = sample_lines(81, 3000);
    let want = independent_count(&lines);
    let words: u64 = want.values().sum();
    let all_inputs: BTreeSet<(String, i32)> = (0..4)
        .flat_map(|p| [(t.input.clone(), p), (t.words.clone(), p)])
        .collect();

    let dirs = tempfile::tempdir().expect("tempdir");
    let (state_a, state_b) = (dirs.path().join("a"), dirs.path().join("b"));
    let (status_a, status_b) = (dirs.path().join("a.status"), dirs.path().join("b.status"));
    let options = |status: &std::path::Path| {
        ProcessOptions::default()
            .env("KSTREAMS_TEST_SESSION_TIMEOUT_MS", SESSION_TIMEOUT_MS)
            .status_file(status)
    };
    let mut a = AppProcess::start_with(EXE, &b, &t, &state_a, "eos", 20, &options(&status_a));
    let app_b = AppProcess::start_with(EXE, &b, &t, &state_b, "eos", 20, &options(&status_b));
    wait_sharing(&status_a, &status_b, &all_inputs).await;

    let (first, second) = lines.split_at(lines.len() / 2);
    produce_lines(&b, &t.input, t.partitions, first);
    wait_for("updates from both instances", DONE, || {
        read_status(&status_b).is_some_and(|s| s.processed > 0)
            && read_status(&status_a).is_some_and(|s| s.processed > 0)
            && total_end(&b, &t.output, t.partitions) >= (words / 8) as i64
    })
    .await;
    let processed_b = read_status(&status_b).expect("b's status").processed;
    produce_lines(&b, &t.input, t.partitions, second);
    // Kill b while it works on the second half: with a batch of 20 and 100 ms commits it then
    // has a transaction open, which blocks `read_committed` readers until the broker aborts it
    // (`transaction.timeout.ms`, 10 s).
    wait_for("b working on the second half", DONE, || {
        read_status(&status_b).is_some_and(|s| s.processed > processed_b + 40)
    })
    .await;
    let sb = read_status(&status_b).expect("b's status");
    app_b.kill();
    let killed_at = Instant::now();
    let restored_before = read_status(&status_a).expect("a's status").restored;
    let before = read_all_committed(&b, &t.output, t.partitions);
    assert!(
        (before.len() as u64) < words,
        "the kill came too late to be mid-stream: {} of {words} updates committed",
        before.len()
    );

    // The survivor gets every partition once the dead member's session expired, and restores the
    // stores of the dead one's partitions (its own state dir never had them).
    wait_for("a took over every partition", DONE, || {
        read_status(&status_a).is_some_and(|s| s.assigned == all_inputs)
    })
    .await;
    let took_over = killed_at.elapsed();
    wait_exactly_once_done(&b, &t, words, DONE).await;
    let done = killed_at.elapsed();
    assert!(!a.exited(), "the survivor died");
    let sa = read_status(&status_a).expect("a's status");
    a.stop();
    eprintln!("took over after {took_over:?}, all committed {done:?} after the kill");

    assert!(
        sa.restored > restored_before,
        "a restored the changelog of b's partitions ({restored_before} before the kill, {} after)",
        sa.restored
    );
    // Output partition p is written by the task of words partition p: the survivor committed
    // updates on a partition that the dead instance owned when it was killed.
    let b_counts: BTreeSet<i32> = sb
        .assigned
        .iter()
        .filter(|(topic, _)| *topic == t.words)
        .map(|(_, p)| *p)
        .collect();
    assert!(!b_counts.is_empty(), "b counted some partitions: {sb:?}");
    let after = read_all_committed(&b, &t.output, t.partitions);
    let (before_pp, after_pp) = (per_partition(&before), per_partition(&after));
    assert!(
        b_counts.iter().any(|p| after_pp.get(p).copied().unwrap_or(0)
            > before_pp.get(p).copied().unwrap_or(0)),
        "no new committed update on b's partitions {b_counts:?}: before {before_pp:?}, after {after_pp:?}"
    );
    assert!(
        group_committed_to(&b, &t.app_id, &end_offsets(&b, &t.input, t.partitions)),
        "every line partition committed to its end"
    );
    assert_exactly_once_word_count(&b, &t, &want);
}

/// Runs one exactly-once word-count instance in this process until everything produced so far
/// is committed (`words` updates in total), then stops it cleanly; returns its final status.
async fn run_eos_until_done(
    b: &str,
    t: &WordCountTopics,
    state: &std::path::Path,
    words: u64,
) -> kstreams::kafka::AppStatus {
    let app = Arc::new(
        App::new(
            t.topology(),
            config(&t.app_id, b, state).processing_guarantee(ProcessingGuarantee::ExactlyOnce),
        )
        .expect("app"),
    );
    let run = spawn(app.clone());
    wait_exactly_once_done(b, t, words, DONE).await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
    app.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_state_dir_deleted_while_stopped_is_rebuilt_exactly() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "lost-eos", 3).await;
    let first = sample_lines(91, 1500);
    let second = sample_lines(92, 1500);
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    let words_first: u64 = independent_count(&first).values().sum();
    let words_all: u64 = independent_count(&all).values().sum();

    produce_lines(&b, &t.input, 3, &first);
    let state = tempfile::tempdir().expect("tempdir");
    let s1 = run_eos_until_done(&b, &t, state.path(), words_first).await;
    assert!(s1.commits > 0);
    std::fs::remove_dir_all(state.path()).expect("delete the state dir");

    produce_lines(&b, &t.input, 3, &second);
    let s2 = run_eos_until_done(&b, &t, state.path(), words_all).await;
    let distinct_first = independent_count(&first).len() as u64;
    assert!(
        s2.restored_records >= distinct_first,
        "restored {} changelog records, expected at least one per word ({distinct_first})",
        s2.restored_records
    );
    assert_exactly_once_word_count(&b, &t, &independent_count(&all));
}

/// Issue #13 §3: the default `transactional.id` was the application id plus a hash of the state
/// directory's path, so two replicas with the same path (two hosts, or here one relative path
/// from two working directories) got the same id and fenced each other. Each instance now keeps
/// its own process id in its state directory: both instances keep working and the counts are
/// exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_exactly_once_instances_with_the_same_state_dir_path_both_make_progress() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "same-path-eos", 4).await;
    let lines = sample_lines(101, 3000);
    let want = independent_count(&lines);
    let words: u64 = want.values().sum();
    let all_inputs: BTreeSet<(String, i32)> = (0..4)
        .flat_map(|p| [(t.input.clone(), p), (t.words.clone(), p)])
        .collect();

    let dirs = tempfile::tempdir().expect("tempdir");
    let (cwd_a, cwd_b) = (dirs.path().join("host-a"), dirs.path().join("host-b"));
    for d in [&cwd_a, &cwd_b] {
        std::fs::create_dir(d).expect("working directory");
    }
    let (status_a, status_b) = (dirs.path().join("a.status"), dirs.path().join("b.status"));
    let state = std::path::Path::new("state");
    let options = |cwd: &std::path::Path, status: &std::path::Path| {
        ProcessOptions {
            capture_stderr: true,
            ..ProcessOptions::default()
        }
        .env("RUST_LOG", "warn")
        .env("KSTREAMS_TEST_SESSION_TIMEOUT_MS", SESSION_TIMEOUT_MS)
        .status_file(status)
        .current_dir(cwd)
    };
    let mut a = AppProcess::start_with(EXE, &b, &t, state, "eos", 20, &options(&cwd_a, &status_a));
    let mut app_b =
        AppProcess::start_with(EXE, &b, &t, state, "eos", 20, &options(&cwd_b, &status_b));
    wait_sharing(&status_a, &status_b, &all_inputs).await;

    produce_lines(&b, &t.input, t.partitions, &lines);
    wait_exactly_once_done(&b, &t, words, DONE).await;
    assert!(!a.exited(), "instance a died (fenced by b?)");
    assert!(!app_b.exited(), "instance b died (fenced by a?)");
    let (sa, sb) = (
        read_status(&status_a).expect("a's status"),
        read_status(&status_b).expect("b's status"),
    );
    assert!(
        sa.processed > 0 && sb.processed > 0 && sa.commits > 0 && sb.commits > 0,
        "both instances processed and committed: a {sa:?}, b {sb:?}"
    );
    // Neither was fenced by the other (with one transactional id, each init_transactions fenced
    // the other's producer: fatal transaction errors and recoveries, logged at WARN and ERROR).
    let (loud_a, loud_b) = (
        a.stop_collecting_loud_lines(),
        app_b.stop_collecting_loud_lines(),
    );
    assert!(loud_a.is_empty(), "instance a: {loud_a:#?}");
    assert!(loud_b.is_empty(), "instance b: {loud_b:#?}");
    let id = |cwd: &std::path::Path| {
        std::fs::read_to_string(cwd.join(state).join(&t.app_id).join("kstreams.process-id"))
            .expect("process id file")
    };
    assert_ne!(id(&cwd_a), id(&cwd_b), "two instances, two process ids");
    assert!(
        group_committed_to(&b, &t.app_id, &end_offsets(&b, &t.input, t.partitions)),
        "every line partition committed to its end"
    );
    assert_exactly_once_word_count(&b, &t, &want);
}
