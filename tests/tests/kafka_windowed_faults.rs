//! Issue 14 §4, real broker: a windowed count (`src/bin/windowed_app.rs`: tumbling windows of
//! 10 s, grace 1 s, emit on close) SIGKILLed mid-window and restarted, under at-least-once (every
//! closed window emitted, no count below the truth) and exactly-once (the committed output holds
//! each closed window once, with its true count), also with the state directory deleted before
//! the restart (the counts and the operator's stream time restored from the changelogs).

use std::collections::BTreeMap;
use std::time::Duration;

use kstreams_tests::*;

const EXE: &str = env!("CARGO_BIN_EXE_windowed_app");
const DONE: Duration = Duration::from_secs(180);
/// `windowed_app`'s windows.
const WINDOW_MS: i64 = 10_000;
const GRACE_MS: i64 = 1_000;
const PARTITIONS: i32 = 3;
const KEYS: usize = 12;
const RECORDS: usize = 6_000;

/// The input's first timestamp: two minutes ago, on a window boundary. Timestamps near the
/// present, because a broker rolls and deletes segments whose records look older than its
/// retention (timestamps of 1970 lose input while the test runs).
fn base() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        (now - 120_000) / WINDOW_MS * WINDOW_MS
    })
}

/// Record `i`: key `k<i % KEYS>` on partition `(i % KEYS) % PARTITIONS`, timestamp
/// `base() + 10 * i` ms (in order: 60 s of event time, six windows per key).
fn record(i: usize) -> (Vec<u8>, Vec<u8>, i32, i64, Vec<u8>) {
    let k = i % KEYS;
    (
        format!("k{k}").into_bytes(),
        i.to_string().into_bytes(),
        (k % KEYS) as i32 % PARTITIONS,
        base() + 10 * i as i64,
        Vec::new(),
    )
}

/// The true count of every window closed at the end: (key, start) -> count, for the windows
/// whose end + grace is at or before their partition's largest timestamp.
fn truth() -> BTreeMap<(String, i64), u64> {
    let mut max_ts: BTreeMap<i32, i64> = BTreeMap::new();
    let mut counts: BTreeMap<(i32, String, i64), u64> = BTreeMap::new();
    for i in 0..RECORDS {
        let (k, _, p, ts, _) = record(i);
        let m = max_ts.entry(p).or_insert(ts);
        *m = (*m).max(ts);
        let key = String::from_utf8(k).expect("utf-8");
        *counts
            .entry((p, key, ts / WINDOW_MS * WINDOW_MS))
            .or_insert(0) += 1;
    }
    counts
        .into_iter()
        .filter(|((p, _, start), _)| start + WINDOW_MS + GRACE_MS <= max_ts[p])
        .map(|((_, k, start), n)| ((k, start), n))
        .collect()
}

/// The output's results: (key, window start, count), in partition then offset order.
fn results(out: &[Output]) -> Vec<(String, i64, u64)> {
    out.iter()
        .map(|(p, o, k, v)| {
            let k = k.as_deref().expect("a windowed key");
            let (key, start) = k.split_at(k.len() - 8);
            let start = i64::from_be_bytes(start.try_into().expect("8 bytes"));
            let n = v
                .as_deref()
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map(u64::from_be_bytes)
                .unwrap_or_else(|| panic!("partition {p} offset {o}: not an 8-byte count"));
            (String::from_utf8(key.to_vec()).expect("utf-8"), start, n)
        })
        .collect()
}

struct Topics {
    app_id: String,
    input: String,
    output: String,
}

async fn topics(prefix: &str) -> Topics {
    let app_id = unique(prefix);
    let t = Topics {
        input: format!("{app_id}-input"),
        output: format!("{app_id}-output"),
        app_id,
    };
    create_topics(
        &bootstrap(),
        &[(&t.input, PARTITIONS), (&t.output, PARTITIONS)],
    )
    .await;
    t
}

/// Starts `windowed_app` (killed when dropped, so a failing test leaves no process behind).
fn start(t: &Topics, state: &std::path::Path, guarantee: &str, batch: usize) -> AppProcess {
    let (b, state, batch) = (bootstrap(), state.display().to_string(), batch.to_string());
    let child = std::process::Command::new(EXE)
        .args([
            &b, &t.app_id, &t.input, &t.output, &state, guarantee, &batch,
        ])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start windowed_app");
    AppProcess(child)
}

/// Produces the first half, starts the app, waits until closed windows come out, produces the
/// second half and SIGKILLs the app half-way through it (mid-window: its open windows hold
/// uncommitted counts, and part of the input is not even there yet), optionally deletes its state dir, restarts it, waits until its input is committed
/// and `want` windows are in the output (committed ones under exactly-once), stops it (SIGINT).
async fn kill_mid_window_and_restart(t: &Topics, guarantee: &str, delete_state: bool, want: usize) {
    let b = bootstrap();
    let state = tempfile::tempdir().expect("tempdir");
    let all: Vec<_> = (0..RECORDS).map(record).collect();
    let (first, second) = all.split_at(RECORDS / 2);
    produce_with_metadata(&b, &t.input, first);
    let app = start(t, state.path(), guarantee, 50);
    wait_for("closed windows of the first half", DONE, || {
        total_end(&b, &t.output, PARTITIONS) >= (KEYS * 2) as i64
    })
    .await;
    // The second half in chunks, from another thread, while the app runs; the kill comes when
    // half of it is in: the rest arrives while the app is down, and every partition has open
    // windows whose counts are not committed.
    let producer = {
        let (b, topic, second) = (b.clone(), t.input.clone(), second.to_vec());
        std::thread::spawn(move || {
            for chunk in second.chunks(100) {
                produce_with_metadata(&b, &topic, chunk);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    wait_for("half of the second half in the input", DONE, || {
        total_end(&b, &t.input, PARTITIONS) >= (RECORDS * 3 / 4) as i64
    })
    .await;
    app.kill();
    producer.join().expect("the producer thread");
    let ends = end_offsets(&b, &t.input, PARTITIONS);
    assert_eq!(ends.values().sum::<i64>(), RECORDS as i64);
    if delete_state {
        std::fs::remove_dir_all(state.path()).expect("delete the state dir");
    }

    let mut app = start(t, state.path(), guarantee, 500);
    wait_for("the input committed", DONE, || {
        group_committed_to(&b, &t.app_id, &ends)
    })
    .await;
    wait_for("every closed window in the output", DONE, || {
        let out = if guarantee == "eos" {
            read_all_committed(&b, &t.output, PARTITIONS)
        } else {
            read_all(&b, &t.output, PARTITIONS)
        };
        results(&out)
            .iter()
            .map(|(k, s, _)| (k.clone(), *s))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            >= want
    })
    .await;
    assert!(!app.exited(), "the restarted app died");
    // SIGINT: a graceful stop, asserted clean.
    app.stop();
}

fn assert_at_least_once(t: &Topics) {
    let want = truth();
    let got = results(&read_all(&bootstrap(), &t.output, PARTITIONS));
    let mut seen: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for (k, start, n) in got {
        let Some(truth) = want.get(&(k.clone(), start)) else {
            panic!(
                "`{k}` [{start}, {}) emitted but not closed (or empty)",
                start + WINDOW_MS
            );
        };
        assert!(
            n >= *truth,
            "`{k}` [{start}, ..): {n} counted, {truth} in the input"
        );
        seen.insert((k, start), n);
    }
    let missing: Vec<_> = want.keys().filter(|w| !seen.contains_key(*w)).collect();
    assert!(
        missing.is_empty(),
        "closed windows never emitted: {missing:?}"
    );
}

fn assert_exactly_once(t: &Topics) {
    let want = truth();
    let got = results(&read_all_committed(&bootstrap(), &t.output, PARTITIONS));
    let mut seen: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for (k, start, n) in got {
        assert!(
            seen.insert((k.clone(), start), n).is_none(),
            "`{k}` [{start}, ..) committed twice"
        );
    }
    assert_eq!(seen, want, "each closed window once, with its true count");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_window_at_least_once_emits_every_window_never_under_counted() {
    let t = topics("win-kill-alo").await;
    kill_mid_window_and_restart(&t, "alo", false, truth().len()).await;
    assert_at_least_once(&t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_window_exactly_once_emits_each_window_once_exactly() {
    let t = topics("win-kill-eos").await;
    kill_mid_window_and_restart(&t, "eos", false, truth().len()).await;
    assert_exactly_once(&t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_dir_deleted_after_a_kill_at_least_once_restores_from_the_changelog() {
    let t = topics("win-lost-alo").await;
    kill_mid_window_and_restart(&t, "alo", true, truth().len()).await;
    assert_at_least_once(&t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_dir_deleted_after_a_kill_exactly_once_restores_from_the_changelog() {
    let t = topics("win-lost-eos").await;
    kill_mid_window_and_restart(&t, "eos", true, truth().len()).await;
    assert_exactly_once(&t);
}
