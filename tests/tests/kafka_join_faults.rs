//! Issue 15 §4, real broker: a stream-table join (against a versioned table materialized from
//! its topic, no changelog of its own) and a stream-stream join (window stores with changelogs),
//! each an app of its own (`src/bin/join_app.rs`, the `join` example's topology) SIGKILLed
//! mid-stream and restarted, also with its state directory deleted before the restart (the table
//! restored from its topic, the join windows from their changelogs). Under exactly-once the
//! committed output holds every true result exactly once; under at-least-once every true result,
//! none that is not true.
//!
//! The truth is computed here from the inputs, not by the code under test: for the stream-table
//! join the table's version of the record's key as of its timestamp (the latest update at or
//! before it; none, or a delete, gives no result); for the stream-stream join every pair of one
//! key whose timestamps are at most [`WINDOW_MS`] apart. The inputs are in time order, and the
//! stream-stream join's grace (60 s) is longer than the whole input, so no record is ever late
//! whatever the kill and restart do to the order the app sees them in: the results do not depend
//! on timing.

use std::collections::BTreeMap;
use std::time::Duration;

use kstreams_tests::*;

const EXE: &str = env!("CARGO_BIN_EXE_join_app");
const DONE: Duration = Duration::from_secs(180);
const PARTITIONS: i32 = 3;
const KEYS: usize = 12;
/// The stream-stream join's window, ms.
const WINDOW_MS: i64 = 250;
/// The stream-stream join's grace, ms: longer than the input's event time.
const STREAM_GRACE_MS: u64 = 60_000;

/// The inputs' first timestamp: two minutes ago (a broker deletes records that look older than
/// its retention).
fn base() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        (now - 120_000) / 1_000 * 1_000
    })
}

/// A record of an input.
#[derive(Debug, Clone)]
struct Rec {
    key: String,
    value: Option<String>,
    timestamp: i64,
}

impl Rec {
    fn raw(&self) -> Timestamped {
        (
            self.key.clone().into_bytes(),
            self.value.clone().map(String::into_bytes),
            self.timestamp,
        )
    }
}

/// The table: 240 updates, key `k<i % 12>` at `base + 250 i + 1`, value `t<i>`; one in 7 a
/// delete.
fn table() -> Vec<Rec> {
    (0..240)
        .map(|i: i64| Rec {
            key: format!("k{}", i % KEYS as i64),
            value: (i % 7 != 3).then(|| format!("t{i}")),
            timestamp: base() + 250 * i + 1,
        })
        .collect()
}

/// A stream of `n` records, key `k<i % 12>` at `base + step i + offset`, value `<prefix><i>`.
fn stream(n: i64, step: i64, offset: i64, prefix: &str) -> Vec<Rec> {
    (0..n)
        .map(|i| Rec {
            key: format!("k{}", i % KEYS as i64),
            value: Some(format!("{prefix}{i}")),
            timestamp: base() + step * i + offset,
        })
        .collect()
}

/// What the stream-table join must emit: `(key, "<ts>\t<value>\t<table value>")` per stream
/// record whose key has a live version as of its timestamp.
fn table_truth(stream: &[Rec], table: &[Rec]) -> Vec<(String, String)> {
    let mut versions: BTreeMap<&str, Vec<(i64, Option<&str>)>> = BTreeMap::new();
    for t in table {
        versions
            .entry(&t.key)
            .or_default()
            .push((t.timestamp, t.value.as_deref()));
    }
    for v in versions.values_mut() {
        v.sort_by_key(|(ts, _)| *ts);
    }
    stream
        .iter()
        .filter_map(|s| {
            let v = versions.get(s.key.as_str())?;
            let (_, value) = v.iter().rev().find(|(ts, _)| *ts <= s.timestamp)?;
            let value = (*value)?;
            Some((
                s.key.clone(),
                format!("{}\t{}\t{value}", s.timestamp, s.value.as_deref()?),
            ))
        })
        .collect()
}

/// What the stream-stream join must emit: every pair of one key at most [`WINDOW_MS`] apart.
fn stream_truth(left: &[Rec], right: &[Rec]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for l in left {
        for r in right {
            if l.key == r.key && (l.timestamp - r.timestamp).abs() <= WINDOW_MS {
                out.push((
                    l.key.clone(),
                    format!(
                        "{}\t{}\t{}\t{}",
                        l.timestamp,
                        l.value.as_deref().unwrap_or_default(),
                        r.timestamp,
                        r.value.as_deref().unwrap_or_default()
                    ),
                ));
            }
        }
    }
    out
}

/// Each result with its count.
fn counted(results: impl IntoIterator<Item = (String, String)>) -> BTreeMap<(String, String), u64> {
    let mut m = BTreeMap::new();
    for r in results {
        *m.entry(r).or_insert(0) += 1;
    }
    m
}

/// The output's results: (key, the line past the key).
fn results(out: &[Output]) -> Vec<(String, String)> {
    out.iter()
        .map(|(p, o, k, v)| {
            let text = |b: &Option<Vec<u8>>, what: &str| {
                String::from_utf8(
                    b.clone()
                        .unwrap_or_else(|| panic!("partition {p} offset {o}: no {what}")),
                )
                .unwrap_or_else(|_| panic!("partition {p} offset {o}: {what} not UTF-8"))
            };
            (text(k, "key"), text(v, "value"))
        })
        .collect()
}

struct Topics {
    app_id: String,
    left: String,
    right: String,
    output: String,
}

async fn topics(prefix: &str) -> Topics {
    let app_id = unique(prefix);
    let t = Topics {
        left: format!("{app_id}-left"),
        right: format!("{app_id}-right"),
        output: format!("{app_id}-output"),
        app_id,
    };
    create_topics(
        &bootstrap(),
        &[
            (&t.left, PARTITIONS),
            (&t.right, PARTITIONS),
            (&t.output, PARTITIONS),
        ],
    )
    .await;
    t
}

/// Which join, with its inputs.
struct Case {
    kind: &'static str,
    grace_ms: u64,
    left: Vec<Rec>,
    right: Vec<Rec>,
    truth: Vec<(String, String)>,
    /// Whether the right input is all in before the app starts (a table), or arrives alongside
    /// the left one (a stream).
    right_first: bool,
}

fn stream_table_case() -> Case {
    let (left, right) = (stream(6_000, 10, 0, "s"), table());
    Case {
        kind: "stream-table",
        grace_ms: 0,
        truth: table_truth(&left, &right),
        left,
        right,
        right_first: true,
    }
}

fn stream_stream_case() -> Case {
    let (left, right) = (stream(2_000, 20, 0, "l"), stream(2_000, 20, 7, "r"));
    Case {
        kind: "stream-stream:250",
        grace_ms: STREAM_GRACE_MS,
        truth: stream_truth(&left, &right),
        left,
        right,
        right_first: false,
    }
}

/// Starts `join_app` (killed when dropped, so a failing test leaves no process behind).
fn start(
    t: &Topics,
    c: &Case,
    state: &std::path::Path,
    guarantee: &str,
    batch: usize,
) -> AppProcess {
    let child = std::process::Command::new(EXE)
        .args([
            &bootstrap(),
            &t.app_id,
            &t.left,
            &t.right,
            &t.output,
            &state.display().to_string(),
            guarantee,
            &batch.to_string(),
            c.kind,
            &c.grace_ms.to_string(),
        ])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start join_app");
    AppProcess(child)
}

fn raw(recs: &[Rec]) -> Vec<Timestamped> {
    recs.iter().map(Rec::raw).collect()
}

fn both_ends(t: &Topics) -> BTreeMap<(String, i32), i64> {
    let b = bootstrap();
    let mut ends = end_offsets(&b, &t.left, PARTITIONS);
    ends.extend(end_offsets(&b, &t.right, PARTITIONS));
    ends
}

/// Produces the first half (with the whole table first for a table join), starts the app, waits
/// until results come out, produces the second half in chunks from another thread (left and right
/// chunk by chunk for a stream-stream join) and SIGKILLs the app half-way through it (its state
/// and outputs since the last commit not committed, part of the input not there yet), optionally
/// deletes its state dir, restarts it, waits until its inputs are committed and `want` results are
/// in the output (committed ones under exactly-once), stops it (SIGINT).
async fn kill_mid_stream_and_restart(
    t: &Topics,
    c: &Case,
    guarantee: &str,
    delete_state: bool,
) -> Vec<(String, String)> {
    let b = bootstrap();
    let state = tempfile::tempdir().expect("tempdir");
    let (l1, l2) = c.left.split_at(c.left.len() / 2);
    let (r1, r2) = if c.right_first {
        (&c.right[..], &c.right[c.right.len()..])
    } else {
        c.right.split_at(c.right.len() / 2)
    };
    produce_timestamped(&b, &t.right, &raw(r1));
    produce_timestamped(&b, &t.left, &raw(l1));
    let app = start(t, c, state.path(), guarantee, 50);
    wait_for("results of the first half", DONE, || {
        total_end(&b, &t.output, PARTITIONS) >= 100
    })
    .await;
    let total = (c.left.len() + c.right.len()) as i64;
    let producer = {
        let (b, left, right) = (b.clone(), t.left.clone(), t.right.clone());
        let (l2, r2) = (raw(l2), raw(r2));
        std::thread::spawn(move || {
            let chunks = l2.len().div_ceil(100);
            for i in 0..chunks {
                let part = |v: &[Timestamped]| -> Vec<Timestamped> {
                    let per = v.len().div_ceil(chunks);
                    v.iter().skip(i * per).take(per).cloned().collect()
                };
                produce_timestamped(&b, &left, &part(&l2));
                produce_timestamped(&b, &right, &part(&r2));
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let already = (l1.len() + r1.len()) as i64;
    wait_for("half of the second half in the inputs", DONE, || {
        total_end(&b, &t.left, PARTITIONS) + total_end(&b, &t.right, PARTITIONS)
            >= already + (total - already) / 2
    })
    .await;
    app.kill();
    producer.join().expect("the producer thread");
    let ends = both_ends(t);
    assert_eq!(ends.values().sum::<i64>(), total);
    if delete_state {
        std::fs::remove_dir_all(state.path()).expect("delete the state dir");
    }

    let mut app = start(t, c, state.path(), guarantee, 500);
    wait_for("the inputs committed", DONE, || {
        group_committed_to(&b, &t.app_id, &ends)
    })
    .await;
    let want = counted(c.truth.clone());
    let read = || {
        results(&if guarantee == "eos" {
            read_all_committed(&b, &t.output, PARTITIONS)
        } else {
            read_all(&b, &t.output, PARTITIONS)
        })
    };
    wait_for("every result in the output", DONE, || {
        let got = counted(read());
        want.keys().all(|r| got.contains_key(r))
    })
    .await;
    assert!(!app.exited(), "the restarted app died");
    // SIGINT: a graceful stop, asserted clean.
    app.stop();
    read()
}

fn assert_at_least_once(c: &Case, got: Vec<(String, String)>) {
    let want = counted(c.truth.clone());
    let got = counted(got);
    let wrong: Vec<_> = got.keys().filter(|r| !want.contains_key(*r)).collect();
    assert!(wrong.is_empty(), "{}: results not true: {wrong:?}", c.kind);
    let missing: Vec<_> = want.keys().filter(|r| !got.contains_key(*r)).collect();
    assert!(
        missing.is_empty(),
        "{}: results missing: {missing:?}",
        c.kind
    );
}

fn assert_exactly_once(c: &Case, got: Vec<(String, String)>) {
    let want = counted(c.truth.clone());
    let got = counted(got);
    if got != want {
        let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
        let wrong: Vec<_> = got.keys().filter(|r| !want.contains_key(*r)).collect();
        let missing: Vec<_> = want.keys().filter(|r| !got.contains_key(*r)).collect();
        panic!(
            "{}: each true result once: committed twice or more {twice:?}; not true {wrong:?}; \
             missing {missing:?}",
            c.kind
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_table_sigkill_exactly_once_emits_each_result_once() {
    let (t, c) = (topics("join-kill-st-eos").await, stream_table_case());
    assert!(c.truth.len() > 3_000, "{}", c.truth.len());
    let got = kill_mid_stream_and_restart(&t, &c, "eos", false).await;
    assert_exactly_once(&c, got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_table_state_dir_deleted_exactly_once_restores_the_table_from_its_topic() {
    let (t, c) = (topics("join-lost-st-eos").await, stream_table_case());
    let got = kill_mid_stream_and_restart(&t, &c, "eos", true).await;
    assert_exactly_once(&c, got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_table_sigkill_at_least_once_emits_every_result_none_wrong() {
    let (t, c) = (topics("join-kill-st-alo").await, stream_table_case());
    let got = kill_mid_stream_and_restart(&t, &c, "alo", true).await;
    assert_at_least_once(&c, got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_stream_sigkill_exactly_once_emits_each_pair_once() {
    let (t, c) = (topics("join-kill-ss-eos").await, stream_stream_case());
    assert!(c.truth.len() > 4_000, "{}", c.truth.len());
    let got = kill_mid_stream_and_restart(&t, &c, "eos", false).await;
    assert_exactly_once(&c, got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_stream_state_dir_deleted_exactly_once_restores_the_windows_from_changelogs() {
    let (t, c) = (topics("join-lost-ss-eos").await, stream_stream_case());
    let got = kill_mid_stream_and_restart(&t, &c, "eos", true).await;
    assert_exactly_once(&c, got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_stream_sigkill_at_least_once_emits_every_pair_none_wrong() {
    let (t, c) = (topics("join-kill-ss-alo").await, stream_stream_case());
    let got = kill_mid_stream_and_restart(&t, &c, "alo", true).await;
    assert_at_least_once(&c, got);
}
