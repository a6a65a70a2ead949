//! The `windowed_count` example's contract (issue 14 §5), run as a user runs it: each window
//! kind on a small file against counts worked out by hand, both emit modes, and bad input.
//!
//! The file (one partition, so stream time is simply the largest timestamp so far):
//!
//! ```text
//! 1000 a, 2000 a, 3000 b, 12000 a, 9000 a (out of order), 25000 b, 40000 c, 41000 c, 45000 c, 70000 c
//! ```
//! With grace 3000 ms, the record at 9000 still counts (its windows close at 13000 or later,
//! stream time is 12000). Stream time jumps (12000 to 25000, 45000 to 70000) close several windows
//! at once: every one is emitted (Kafka Streams skips those its store has already expired,
//! KAFKA-12960; kstreams emits them, a documented difference).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn example_binary(name: &str) -> PathBuf {
    // `cargo test` builds the examples next to the test binaries: target/<profile>/examples/.
    let exe = std::env::current_exe().expect("current exe");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    profile.join("examples").join(name)
}

const INPUT: &str = "1000\ta\n2000\ta\n3000\tb\n12000\ta\n9000\ta\n\n25000\tb\n40000\tc\n41000\tc\n45000\tc\n70000\tc\n";

fn run(input: &str, args: &[&str]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("input.tsv");
    std::fs::write(&file, input).expect("write the input");
    let out = run_file(&file, args);
    (out, dir)
}

fn run_file(file: &Path, args: &[&str]) -> Output {
    Command::new(example_binary("windowed_count"))
        .arg("--input")
        .arg(file)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the windowed_count example (built by `cargo test`)")
}

/// The example's stdout for `args` on [`INPUT`], one partition; asserts success and a quiet run.
fn lines(args: &[&str]) -> Vec<String> {
    let mut all = vec!["--partitions", "1"];
    all.extend_from_slice(args);
    let (out, _dir) = run(INPUT, &all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    assert!(
        !stderr.contains(" WARN ") && !stderr.contains(" ERROR "),
        "{args:?}: a normal run logs no warning: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn expect(rows: &[&str]) -> Vec<String> {
    rows.iter().map(|r| r.replace(' ', "\t")).collect()
}

#[test]
fn tumbling_windows_emit_every_closed_window_once_on_close() {
    // Closed at the end (stream time 70000): every window ending at 67000 or before.
    let want = expect(&[
        "a 0 10000 3",
        "a 10000 20000 1",
        "b 0 10000 1",
        "b 20000 30000 1",
        "c 40000 50000 3",
    ]);
    assert_eq!(
        lines(&["--window", "tumbling:10000", "--grace-ms", "3000"]),
        want
    );
    // `final` is the default.
    assert_eq!(
        lines(&[
            "--window",
            "tumbling:10000",
            "--grace-ms",
            "3000",
            "--emit",
            "final"
        ]),
        want
    );
}

#[test]
fn tumbling_windows_on_update_show_each_window_last_count_open_ones_too() {
    assert_eq!(
        lines(&[
            "--window",
            "tumbling:10000",
            "--grace-ms",
            "3000",
            "--emit",
            "update"
        ]),
        expect(&[
            "a 0 10000 3",
            "a 10000 20000 1",
            "b 0 10000 1",
            "b 20000 30000 1",
            "c 40000 50000 3",
            "c 70000 80000 1",
        ])
    );
}

#[test]
fn a_record_later_than_the_grace_is_not_counted() {
    // Grace 2000: the window [0, 10000) closed at 12000, so the record at 9000 is late.
    assert_eq!(
        lines(&["--window", "tumbling:10000", "--grace-ms", "2000"])[0],
        "a\t0\t10000\t2"
    );
}

#[test]
fn hopping_windows_count_each_record_in_every_window_it_falls_in() {
    let closed = [
        "a 0 10000 3",
        "a 5000 15000 2",
        "a 10000 20000 1",
        "b 0 10000 1",
        "b 20000 30000 1",
        "b 25000 35000 1",
        "c 35000 45000 2",
        "c 40000 50000 3",
        "c 45000 55000 1",
    ];
    assert_eq!(
        lines(&["--window", "hopping:10000:5000", "--grace-ms", "3000"]),
        expect(&closed)
    );
    let mut updated = closed.to_vec();
    updated.extend(["c 65000 75000 1", "c 70000 80000 1"]);
    assert_eq!(
        lines(&[
            "--window",
            "hopping:10000:5000",
            "--grace-ms",
            "3000",
            "--emit",
            "update"
        ]),
        expect(&updated)
    );
}

#[test]
fn session_windows_merge_within_the_gap_and_merged_away_sessions_are_left_out() {
    // a: 1000, 2000 one session; 12000 alone until 9000 (within the gap of 5000) joins it.
    // c: 40000, 41000, 45000 merge step by step (each merge deletes the smaller session).
    let closed = [
        "a 1000 2000 2",
        "a 9000 12000 2",
        "b 3000 3000 1",
        "b 25000 25000 1",
        "c 40000 45000 3",
    ];
    assert_eq!(
        lines(&["--window", "session:5000", "--grace-ms", "3000"]),
        expect(&closed)
    );
    let mut updated = closed.to_vec();
    updated.push("c 70000 70000 1");
    assert_eq!(
        lines(&[
            "--window",
            "session:5000",
            "--grace-ms",
            "3000",
            "--emit",
            "update"
        ]),
        expect(&updated)
    );
}

#[test]
fn sliding_windows_are_defined_by_the_records() {
    // KIP-450: each record's window [ts - 5000, ts], and the window right after a record
    // [ts + 1, ts + 5001] when a later record falls in it. Grace 1000: at stream time 30000
    // every window ending before 29000 is closed.
    let input = "10000\ta\n12000\ta\n30000\ta\n";
    let args = [
        "--window",
        "sliding:5000",
        "--grace-ms",
        "1000",
        "--partitions",
        "1",
    ];
    let (out, _dir) = run(input, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        expect(&["a 5000 10000 1", "a 7000 12000 2", "a 10001 15001 1"])
    );
    let (out, _dir) = run(input, &[&args[..], &["--emit", "update"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        expect(&[
            "a 5000 10000 1",
            "a 7000 12000 2",
            "a 10001 15001 1",
            "a 25000 30000 1"
        ])
    );
}

#[test]
fn four_partitions_by_default_give_the_same_counts_per_key() {
    // Keys go to partitions by murmur2; a, b and c have their own stream time each then. With
    // update, the last count of each window does not depend on the partitioning.
    let (out, _dir) = run(
        INPUT,
        &[
            "--window",
            "tumbling:10000",
            "--grace-ms",
            "3000",
            "--emit",
            "update",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        got,
        expect(&[
            "a 0 10000 3",
            "a 10000 20000 1",
            "b 0 10000 1",
            "b 20000 30000 1",
            "c 40000 50000 3",
            "c 70000 80000 1",
        ])
    );
}

/// A bad line fails the run with a message naming the file's line; nothing on stdout.
fn assert_bad(input: &str, line: usize, says: &str) {
    let (out, dir) = run(input, &["--window", "tumbling:1000", "--grace-ms", "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{input:?} was accepted");
    let file = dir.path().join("input.tsv");
    assert!(
        stderr.contains(&format!("{} line {line}: ", file.display())) && stderr.contains(says),
        "{input:?}: {stderr}"
    );
    assert!(out.stdout.is_empty(), "{input:?}");
}

#[test]
fn bad_lines_are_errors_naming_the_line() {
    assert_bad(
        "1000\ta\nno tab here\n",
        2,
        "expected `<timestamp ms>\\t<key>`",
    );
    assert_bad("1000\ta\n\n12x\tb\n", 3, "`12x` is not a timestamp in ms");
    assert_bad("-5\ta\n", 1, "negative timestamp -5");
    assert_bad("5\ta\n0\tb\n", 2, "timestamp 0 cannot be produced");
}

#[test]
fn bad_arguments_are_errors() {
    for (args, says) in [
        (
            vec!["--window", "daily", "--grace-ms", "0"],
            "--window must be tumbling:SIZE_MS",
        ),
        (
            vec!["--window", "tumbling:0", "--grace-ms", "0"],
            "must be positive",
        ),
        (
            vec!["--window", "hopping:1000:2000", "--grace-ms", "0"],
            "exceeds the size",
        ),
        (
            vec!["--window", "tumbling:1000", "--grace-ms", "-1"],
            "--grace-ms",
        ),
        (
            vec![
                "--window",
                "tumbling:1000",
                "--grace-ms",
                "0",
                "--emit",
                "sometimes",
            ],
            "--emit must be final or update",
        ),
        (vec!["--window", "tumbling:1000"], "--grace-ms"),
    ] {
        let (out, _dir) = run(INPUT, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
