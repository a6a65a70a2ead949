//! State across restarts and instances: no double counting after a clean shutdown, restore from
//! the changelog, partitions shared in a group and taken over with their state.

use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::App;
use kstreams_tests::*;

const DONE: Duration = Duration::from_secs(180);

/// Runs one word-count instance until everything produced so far is committed, then stops it
/// cleanly; returns its final status.
async fn run_until_done(
    b: &str,
    t: &WordCountTopics,
    state: &std::path::Path,
) -> kstreams::kafka::AppStatus {
    let app = Arc::new(App::new(t.topology(), config(&t.app_id, b, state)).expect("app"));
    let run = spawn(app.clone());
    t.wait_done(b, DONE).await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
    app.status()
}

fn total(lines: &[String]) -> u64 {
    independent_count(lines).values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_the_state_dir_kept_does_not_double_count() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "restart-kept", 3).await;
    let state = tempfile::tempdir().expect("tempdir");
    let first = sample_lines(21, 1500);
    produce_lines(&b, &t.input, 3, &first);
    let s1 = run_until_done(&b, &t, state.path()).await;
    assert!(s1.processed_records > 0);

    let second = sample_lines(22, 1500);
    produce_lines(&b, &t.input, 3, &second);
    let s2 = run_until_done(&b, &t, state.path()).await;
    assert_eq!(
        s2.restored_records, 0,
        "local state was up to date: nothing to restore"
    );

    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    let out = read_all(&b, &t.output, 3);
    assert_eq!(last_counts(&out), independent_count(&all));
    assert_eq!(out.len() as u64, total(&all), "nothing was processed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_the_state_dir_deleted_restores_from_the_changelog() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "restart-lost", 3).await;
    let first = sample_lines(31, 1500);
    produce_lines(&b, &t.input, 3, &first);
    {
        let state = tempfile::tempdir().expect("tempdir");
        run_until_done(&b, &t, state.path()).await;
    } // the state directory is deleted here
    let second = sample_lines(32, 1500);
    produce_lines(&b, &t.input, 3, &second);
    let state = tempfile::tempdir().expect("tempdir");
    let s2 = run_until_done(&b, &t, state.path()).await;
    let distinct_first = independent_count(&first).len() as u64;
    assert!(
        s2.restored_records >= distinct_first,
        "restored {} changelog records, expected at least one per word ({distinct_first})",
        s2.restored_records
    );

    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    let out = read_all(&b, &t.output, 3);
    assert_eq!(last_counts(&out), independent_count(&all));
    assert_eq!(out.len() as u64, total(&all), "nothing was processed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_partitions_and_one_takes_over_when_the_other_stops() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "group", 4).await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let a = Arc::new(App::new(t.topology(), config(&t.app_id, &b, dir_a.path())).expect("app"));
    let run_a = spawn(a.clone());
    wait_for("a assigned", DONE, || a.status().assigned.len() == 8).await;
    let first = sample_lines(41, 1500);
    produce_lines(&b, &t.input, 4, &first);
    t.wait_done(&b, DONE).await;

    let bb = Arc::new(App::new(t.topology(), config(&t.app_id, &b, dir_b.path())).expect("app"));
    let run_b = spawn(bb.clone());
    wait_for("both assigned", DONE, || {
        let (sa, sb) = (a.status(), bb.status());
        !sa.assigned.is_empty()
            && !sb.assigned.is_empty()
            && sa.assigned.len() + sb.assigned.len() == 8
            && sa.assigned.is_disjoint(&sb.assigned)
    })
    .await;
    let second = sample_lines(42, 1500);
    produce_lines(&b, &t.input, 4, &second);
    t.wait_done(&b, DONE).await;
    let (sa, sb) = (a.status(), bb.status());
    assert!(
        sa.processed_records > 0 && sb.processed_records > 0,
        "{sa:?} {sb:?}"
    );
    assert!(
        sb.restored_records > 0,
        "b restored the state of the partitions it got"
    );

    let restored_before = a.status().restored_records;
    bb.shutdown_handle().shutdown();
    run_b.await.expect("join").expect("run b");
    wait_for("a took over", DONE, || a.status().assigned.len() == 8).await;
    assert!(
        a.status().restored_records > restored_before,
        "a restored b's changelog writes when it took b's partitions back"
    );
    let third = sample_lines(43, 1500);
    produce_lines(&b, &t.input, 4, &third);
    t.wait_done(&b, DONE).await;
    a.shutdown_handle().shutdown();
    run_a.await.expect("join").expect("run a");

    let all: Vec<String> = first.iter().chain(&second).chain(&third).cloned().collect();
    let out = read_all(&b, &t.output, 4);
    assert_eq!(last_counts(&out), independent_count(&all));
    assert_eq!(
        out.len() as u64,
        total(&all),
        "clean hand-overs process nothing twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_a_restart_loses_nothing() {
    // At-least-once: a crash after processing but before any commit. The restart (same state
    // directory) processes the input again: no word may be missing or under-counted. Counting
    // some input again is what at-least-once allows; with two stages it compounds: the state may
    // hold a word once from before the crash, the repartition topic may hold it twice (written
    // before the crash and again after), so at most three times here.
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "crash", 3).await;
    let lines = sample_lines(51, 1500);
    produce_lines(&b, &t.input, 3, &lines);
    let want = independent_count(&lines);
    let words: u64 = want.values().sum();
    let state = tempfile::tempdir().expect("tempdir");
    let app = Arc::new(
        App::new(
            t.topology(),
            config(&t.app_id, &b, state.path()).commit_interval(Duration::from_secs(3600)),
        )
        .expect("app"),
    );
    let run = spawn(app.clone());
    wait_for("processed", DONE, || {
        app.status().processed_records >= lines.len() as u64 + words / 2
    })
    .await;
    app.shutdown_handle().abort();
    run.await.expect("join").expect("run");
    assert_eq!(app.status().commits, 0, "the crash came before any commit");

    let status = run_until_done(&b, &t, state.path()).await;
    assert!(status.processed_records >= lines.len() as u64 + words);
    let got = last_counts(&read_all(&b, &t.output, 3));
    assert_at_least_once_counts(&got, &want);
}
