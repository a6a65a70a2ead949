//! The differential test of issue 15 §4: the same inputs through Java Kafka Streams' joins
//! (`bench/java`, `kstreams.bench.JoinApp`) and through kstreams' (the `join` example's
//! topology, `kstreams_examples::join::run`, in this process against the same real broker),
//! compared record for record: stream-table against a versioned table (inner and left, with and
//! without a stream-side grace), stream-stream inner and left with a window and a grace.
//!
//! The comparison is every result line (`<key>\t<left ts>\t<left value>\t...`), grouped by key,
//! each key's results in the order they were emitted, and the whole list must be equal. Why per
//! key and in emission order: both sides partition both inputs by key alike (murmur2, 4
//! partitions), so a key's records, left and right, are in one task of each app, which processes
//! them in timestamp order across its two input partitions and writes the key's results, in the
//! order its join produced them, to one partition of the output: that order is defined by the
//! join's semantics (which table version a record sees, when a left join's unmatched record is
//! given up on), so it must agree. Across keys nothing is defined (tasks run side by side, and
//! results of different keys in one partition depend on that partition's other keys only
//! through stream time, which the per-key results already reflect), so keys are sorted.
//!
//! The inputs are generated from a seed: a table of 8 keys with updates out of order (one in 6
//! goes back in time by up to 3 s) and deletes (one in 10, an empty value), a stream of a few
//! hundred records over the same keys, one in 8 going back in time by up to 5 s (within the
//! 2 s grace or later than it: late), and for the stream-stream joins a second stream with
//! records out of order too. Left timestamps are even and right ones odd, so no two records of
//! the two inputs have the same timestamp: the order of a task's inputs is then the timestamp
//! order, with no tie for the two apps to break differently.
//!
//! kstreams runs in process rather than as the example binary: the test needs no prior
//! `cargo build --example`, a failure is a typed error with the app's logs, and the example
//! binary itself is checked by `examples/tests/join.rs`.
//!
//! The broker: `KSTREAMS_BOOTSTRAP` (fails if it is set and unreachable). The Java side: the jar
//! `bench/java/target/kstreams-bench.jar` with its `target/lib` ([`java_classpath`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use kstreams_examples::join::{self, JoinSpec, Line};
use kstreams_tests::{Gen, bootstrap, config, java_classpath, unique};

/// The grace period of the runs that have one, ms.
const GRACE_MS: u64 = 2_000;
/// The stream-stream joins' window, ms.
const WINDOW_MS: u64 = 1_000;
const KEYS: u64 = 8;

/// Ten minutes ago, on a minute: a broker deletes records that look older than its retention
/// (timestamps of 1970 can vanish while the test runs).
fn base() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
        / 60_000
        * 60_000
        - 600_000
}

/// `n` records over [`KEYS`] keys from `base`: time advances 0-`step` ms per record; one record
/// in `back_one_in` goes back in time by up to `back_ms`; with `deletes`, one in 10 has an empty
/// value. Timestamps are made even (`odd` false) or odd.
#[allow(clippy::too_many_arguments)]
fn records(
    g: &mut Gen,
    base: i64,
    n: usize,
    step: u64,
    back_one_in: u64,
    back_ms: u64,
    deletes: bool,
    odd: bool,
    prefix: &str,
) -> Vec<Line> {
    let mut now = base;
    (0..n)
        .map(|i| {
            now += g.below(step) as i64;
            let mut timestamp = if g.below(back_one_in) == 0 {
                now - g.below(back_ms) as i64
            } else {
                now
            };
            timestamp = (timestamp & !1) + i64::from(odd);
            let key = format!("k{}", g.below(KEYS));
            let value = if deletes && g.below(10) == 0 {
                String::new()
            } else {
                format!("{prefix}{i}")
            };
            Line {
                timestamp,
                key,
                value,
            }
        })
        .collect()
}

/// The stream-table inputs: (stream, table), about 40 s of event time each.
fn table_inputs(seed: u64) -> (Vec<Line>, Vec<Line>) {
    let mut g = Gen(seed | 1);
    let base = base();
    let table = records(&mut g, base - 1_000, 150, 500, 6, 3_000, true, true, "t");
    let stream = records(&mut g, base, 400, 200, 8, 5_000, false, false, "s");
    (stream, table)
}

/// The stream-stream inputs: (left, right), about 40 s of event time each.
fn stream_inputs(seed: u64) -> (Vec<Line>, Vec<Line>) {
    let mut g = Gen(seed | 1);
    let base = base();
    let left = records(&mut g, base, 300, 260, 8, 5_000, false, false, "l");
    let right = records(&mut g, base, 300, 260, 8, 5_000, false, true, "r");
    (left, right)
}

fn write(path: &Path, lines: &[Line]) {
    let text: String = lines
        .iter()
        .map(|l| format!("{}\t{}\t{}\n", l.timestamp, l.key, l.value))
        .collect();
    std::fs::write(path, text).expect("write an input");
}

/// Java Kafka Streams' output lines.
fn java(left: &Path, right: &Path, spec: JoinSpec, grace_ms: u64) -> Vec<String> {
    let out = Command::new("java")
        .arg("-cp")
        .arg(java_classpath())
        .arg("kstreams.bench.JoinApp")
        .args(["--join", &spec.to_string()])
        .arg("--left")
        .arg(left)
        .arg("--right")
        .arg(right)
        .args(["--grace-ms", &grace_ms.to_string()])
        .args(["--partitions", "4"])
        .args(["--bootstrap", &bootstrap()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run java: {e}"));
    assert!(
        out.status.success(),
        "Java Kafka Streams' join ({spec}) failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// kstreams' output lines, against the same broker.
async fn kstreams(left: &[Line], right: &[Line], spec: JoinSpec, grace_ms: u64) -> Vec<String> {
    let state = tempfile::tempdir().expect("state dir");
    let app_id = unique("join-differential");
    let emitted = join::run(
        left,
        right,
        spec,
        grace_ms,
        4,
        config(&app_id, &bootstrap(), state.path()),
    )
    .await
    .unwrap_or_else(|e| panic!("kstreams' join ({spec}) failed: {e}"));
    join::output_lines(&emitted)
}

/// Each key's lines.
fn by_key(lines: &[String]) -> BTreeMap<&str, Vec<&str>> {
    let mut m: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for l in lines {
        m.entry(l.split('\t').next().unwrap_or_default())
            .or_default()
            .push(l);
    }
    m
}

/// Runs both and compares; a failure shows the keys whose results differ, both sides' lines,
/// and keeps the inputs.
async fn compare(spec: JoinSpec, grace_ms: u64, (left, right): (Vec<Line>, Vec<Line>), seed: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (l, r) = (dir.path().join("left.tsv"), dir.path().join("right.tsv"));
    write(&l, &left);
    write(&r, &right);
    let want = java(&l, &r, spec, grace_ms);
    let got = kstreams(&left, &right, spec, grace_ms).await;
    assert!(
        want.len() > 50,
        "{spec}: Java emitted only {} results: the input does not test much",
        want.len()
    );
    if got != want {
        let (w, g) = (by_key(&want), by_key(&got));
        let mut report = String::new();
        for key in w
            .keys()
            .chain(g.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            let (wk, gk) = (
                w.get(key).cloned().unwrap_or_default(),
                g.get(key).cloned().unwrap_or_default(),
            );
            if wk != gk {
                report.push_str(&format!(
                    "key {key}:\n  Java Kafka Streams ({}):\n{}  kstreams ({}):\n{}",
                    wk.len(),
                    wk.iter().map(|l| format!("    {l}\n")).collect::<String>(),
                    gk.len(),
                    gk.iter().map(|l| format!("    {l}\n")).collect::<String>(),
                ));
            }
        }
        let kept = std::env::temp_dir().join(format!(
            "join-differential-{}-{grace_ms}-{seed}",
            spec.to_string().replace(':', "_")
        ));
        let _ = std::fs::create_dir_all(&kept);
        write(&kept.join("left.tsv"), &left);
        write(&kept.join("right.tsv"), &right);
        panic!(
            "{spec}, grace {grace_ms} ms (inputs kept in {}): {} results from Java, {} from \
             kstreams; the keys that differ:\n{report}",
            kept.display(),
            want.len(),
            got.len(),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_table_joins_as_java_kafka_streams() {
    compare(JoinSpec::StreamTable, 0, table_inputs(151), 151).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn left_stream_table_joins_as_java_kafka_streams() {
    compare(JoinSpec::LeftStreamTable, 0, table_inputs(152), 152).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_table_joins_with_a_grace_as_java_kafka_streams() {
    compare(JoinSpec::StreamTable, GRACE_MS, table_inputs(153), 153).await;
    compare(JoinSpec::LeftStreamTable, GRACE_MS, table_inputs(154), 154).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_stream_inner_joins_as_java_kafka_streams() {
    compare(
        JoinSpec::StreamStream {
            window_ms: WINDOW_MS,
        },
        GRACE_MS,
        stream_inputs(155),
        155,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_stream_left_joins_as_java_kafka_streams() {
    compare(
        JoinSpec::LeftStreamStream {
            window_ms: WINDOW_MS,
        },
        GRACE_MS,
        stream_inputs(156),
        156,
    )
    .await;
}
