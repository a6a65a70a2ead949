//! The differential test of issue 14 §4: the same input through Java Kafka Streams'
//! windowed count (`bench/java`, `kstreams.bench.WindowedCount`) and through kstreams' (the
//! `windowed_count` example's topology, `kstreams_examples::windowed_count::run`, in this
//! process against the same real broker), compared line for line: `<key>\t<start>\t<end>\t<count>`,
//! sorted: with emit on close every window emitted, each once; with emit on update (Java's record
//! cache off) the last count of each window, merged-away sessions left out.
//!
//! Tumbling, hopping, sliding and session windows, both emit modes, grace 2 s. The input is
//! generated from a seed: a few hundred records over several keys and 4
//! partitions, mostly in time order with records out of order (within the grace) and late
//! (beyond it), and gaps that make sessions start apart and then merge.
//!
//! kstreams runs in process rather than as the example binary: the test needs no prior
//! `cargo build --example`, a failure is a typed error with the app's logs, and the example
//! binary itself is checked by `examples/tests/windowed_count.rs`.
//!
//! The broker: `KSTREAMS_BOOTSTRAP` (fails if it is set and unreachable). The Java side: the
//! jar `bench/java/target/kstreams-bench.jar` with its `target/lib`, built here with `mvn` when
//! missing or older than its sources (offline once Maven's cache has Kafka Streams); without
//! `mvn` and without the jar the test fails, naming the command that builds it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use kstreams_examples::windowed_count::{self, EmitMode, Line, WindowSpec};
use kstreams_tests::{Gen, bootstrap, config, java_classpath, unique};

/// The grace period of every run, ms.
const GRACE_MS: u64 = 2_000;

/// `n` records over 8 keys, from ten minutes ago: time advances 0-400 ms per record; one record in 8 goes back in
/// time by up to 6 s (some within the grace, some later than it: dropped as late); one in 40 is followed by a
/// pause of 3-6 s (sessions start apart, and records sent back in time merge them).
fn input(seed: u64, n: usize) -> Vec<Line> {
    let mut g = Gen(seed | 1);
    // Near the present, on a minute: a broker deletes records that look older than its
    // retention (timestamps of 1970 can vanish while the test runs).
    let mut now: i64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
        / 60_000
        * 60_000
        - 600_000;
    let mut lines = Vec::with_capacity(n);
    for _ in 0..n {
        now += g.below(400) as i64;
        if g.below(40) == 0 {
            now += 3_000 + g.below(3_000) as i64;
        }
        let timestamp = if g.below(8) == 0 {
            now - g.below(6_000) as i64
        } else {
            now
        };
        lines.push(Line {
            timestamp,
            key: format!("k{}", g.below(8)),
        });
    }
    lines
}

/// Java Kafka Streams' output lines for `file`.
fn java(file: &Path, spec: WindowSpec, emit: &str) -> Vec<String> {
    let out = Command::new("java")
        .arg("-cp")
        .arg(java_classpath())
        .arg("kstreams.bench.WindowedCount")
        .arg("--input")
        .arg(file)
        .args(["--window", &spec.to_string()])
        .args(["--grace-ms", &GRACE_MS.to_string()])
        .args(["--partitions", "4", "--emit", emit])
        // Kafka Streams' emit on close skips windows a jump of stream time closes beyond the
        // store's retention (KAFKA-12960); kstreams emits them (a documented difference). An
        // hour of retention, which no jump of the input reaches, makes Java emit them too.
        .args(["--retention-ms", "3600000"])
        .args(["--bootstrap", &bootstrap()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run java: {e}"));
    assert!(
        out.status.success(),
        "Java Kafka Streams' windowed count ({spec}) failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// kstreams' output lines for `lines`, against the same broker.
async fn kstreams(lines: &[Line], spec: WindowSpec, emit: EmitMode) -> Vec<String> {
    let state = tempfile::tempdir().expect("state dir");
    let app_id = unique("windowed-differential");
    let emitted = windowed_count::run(
        lines,
        spec,
        GRACE_MS,
        emit,
        4,
        config(&app_id, &bootstrap(), state.path()),
    )
    .await
    .unwrap_or_else(|e| panic!("kstreams' windowed count ({spec}) failed: {e}"));
    windowed_count::output_lines(&emitted, emit)
}

/// Runs both, emit on close and emit on update, and compares; a failure shows the lines only
/// one side has.
async fn compare(spec: WindowSpec, seed: u64) {
    compare_emit(spec, seed, EmitMode::Final).await;
    compare_emit(spec, seed, EmitMode::Update).await;
}

async fn compare_emit(spec: WindowSpec, seed: u64, emit: EmitMode) {
    let lines = input(seed, 400);
    let dir = tempfile::tempdir().expect("tempdir");
    let file: PathBuf = dir.path().join("input.tsv");
    let text: String = lines
        .iter()
        .map(|l| format!("{}\t{}\n", l.timestamp, l.key))
        .collect();
    std::fs::write(&file, &text).expect("write the input");
    let emit_arg = match emit {
        EmitMode::Final => "final",
        EmitMode::Update => "update",
    };
    let want = java(&file, spec, emit_arg);
    let got = kstreams(&lines, spec, emit).await;
    assert!(
        want.len() > 20,
        "{spec}: Java emitted only {} windows: the input does not test much",
        want.len()
    );
    if got != want {
        let (w, g): (BTreeSet<&String>, BTreeSet<&String>) =
            (want.iter().collect(), got.iter().collect());
        let only_java: Vec<&&String> = w.difference(&g).collect();
        let only_kstreams: Vec<&&String> = g.difference(&w).collect();
        let kept = std::env::temp_dir()
            .join(format!("windowed-differential-{spec}-{seed}.tsv").replace(':', "_"));
        let _ = std::fs::write(&kept, &text);
        panic!(
            "{spec}, grace {GRACE_MS} ms, emit {emit_arg} (input: {}): {} lines from Java, {} from \
             kstreams\nonly in Java Kafka Streams' output ({}):\n{}\nonly in kstreams' output \
             ({}):\n{}\n(same lines, different counts of repeats, if both lists are empty)",
            kept.display(),
            want.len(),
            got.len(),
            only_java.len(),
            only_java
                .iter()
                .map(|l| format!("  {l}\n"))
                .collect::<String>(),
            only_kstreams.len(),
            only_kstreams
                .iter()
                .map(|l| format!("  {l}\n"))
                .collect::<String>(),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumbling_windows_count_as_java_kafka_streams() {
    compare(WindowSpec::Tumbling { size: 5_000 }, 14).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hopping_windows_count_as_java_kafka_streams() {
    compare(
        WindowSpec::Hopping {
            size: 5_000,
            advance: 1_000,
        },
        15,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_windows_count_as_java_kafka_streams() {
    compare(WindowSpec::Sliding { difference: 2_000 }, 17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_windows_count_as_java_kafka_streams() {
    compare(WindowSpec::Session { gap: 1_500 }, 16).await;
}
