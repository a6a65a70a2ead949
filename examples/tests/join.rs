//! The `join` example's contract (issue 15 §5), run as a user runs it: each kind on small files
//! (one partition) against results worked out by hand from Kafka Streams' semantics (and checked
//! once against Java Kafka Streams 4.4, `bench/java`'s `JoinApp`, on the same files), and bad
//! input.
//!
//! One partition, so the task's order is simply the timestamp order of the two inputs' next
//! records (each file in its own order): at each step the input whose next record has the
//! smaller timestamp goes first.

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

/// The stream of the table joins. `x4` (1800) comes after `y2` (9000): out of order.
const ORDERS: &str = "500\ta\tx0\n2500\ta\tx1\n4000\ta\tx2\n4500\tb\ty1\n7000\ta\tx3\n\n9000\tb\ty2\n1800\ta\tx4\n12000\tc\tz1\n";

/// The table: `a` is A1 from 1000, A2 from 2000 (an update out of order: it comes after A3),
/// A3 from 3000, deleted at 6000 (an empty value); `b` is B2 from 2000, B8 from 8000.
const PRICES: &str = "1000\ta\tA1\n3000\ta\tA3\n2000\ta\tA2\n2000\tb\tB2\n6000\ta\t\n8000\tb\tB8\n";

/// The left stream of the stream-stream joins: `l6` (6800) comes after `l5` (8000).
const LEFT: &str = "1000\ta\tl1\n2000\ta\tl2\n2600\tb\tl3\n3200\te\tl9\n5000\ta\tl4\n8000\ta\tl5\n6800\ta\tl6\n9500\tc\tl7\n11000\td\tl8\n";

/// The right stream of the stream-stream joins.
const RIGHT: &str =
    "1500\ta\tr1\n2900\ta\tr2\n3000\tb\tr3\n4200\ta\tr4\n7500\ta\tr6\n9000\tc\tr5\n";

fn run(left: &str, right: &str, args: &[&str]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (l, r) = (dir.path().join("left.tsv"), dir.path().join("right.tsv"));
    std::fs::write(&l, left).expect("write the left input");
    std::fs::write(&r, right).expect("write the right input");
    let out = run_files(&l, &r, args);
    (out, dir)
}

fn run_files(left: &Path, right: &Path, args: &[&str]) -> Output {
    Command::new(example_binary("join"))
        .arg("--left")
        .arg(left)
        .arg("--right")
        .arg(right)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the join example (built by `cargo test`)")
}

/// The example's stdout for `args`, one partition; asserts success and a quiet run.
fn lines(left: &str, right: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["--partitions", "1"];
    all.extend_from_slice(args);
    let (out, _dir) = run(left, right, &all);
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

/// The task's order: x0 (500), A1, x1 (2500: `a` is A1 then, A2 not applied yet), A3, A2, B2,
/// x2, y1, the delete of `a` (6000), x3 (`a` deleted), B8, y2, x4 (1800: as of 1800, A1), z1.
#[test]
fn stream_table_joins_each_record_with_the_table_as_of_its_timestamp() {
    assert_eq!(
        lines(ORDERS, PRICES, &["--join", "stream-table"]),
        expect(&[
            "a 2500 x1 A1",
            "a 4000 x2 A3",
            "a 1800 x4 A1",
            "b 4500 y1 B2",
            "b 9000 y2 B8",
        ])
    );
    // The grace is 0 by default.
    assert_eq!(
        lines(
            ORDERS,
            PRICES,
            &["--join", "stream-table", "--grace-ms", "0"]
        ),
        lines(ORDERS, PRICES, &["--join", "stream-table"])
    );
}

#[test]
fn left_stream_table_prints_a_dash_for_a_key_missing_or_deleted_then() {
    assert_eq!(
        lines(ORDERS, PRICES, &["--join", "left-stream-table"]),
        expect(&[
            "a 500 x0 -",
            "a 2500 x1 A1",
            "a 4000 x2 A3",
            "a 7000 x3 -",
            "a 1800 x4 A1",
            "b 4500 y1 B2",
            "b 9000 y2 B8",
            "c 12000 z1 -",
        ])
    );
}

/// With a stream-side grace of 1500 ms, a record waits until the stream's time is 1500 ms past
/// it: x1 (2500) is joined when x2 (4000) comes, after the out-of-order A2 (2000) is in, so it
/// finds A2. x4 (1800) is later than the grace: joined at once. z1 (12000) is still waiting at
/// the end of the input: not joined.
#[test]
fn a_stream_side_grace_lets_an_out_of_order_table_update_in_first() {
    let inner = expect(&[
        "a 2500 x1 A2",
        "a 4000 x2 A3",
        "a 1800 x4 A1",
        "b 4500 y1 B2",
        "b 9000 y2 B8",
    ]);
    assert_eq!(
        lines(
            ORDERS,
            PRICES,
            &["--join", "stream-table", "--grace-ms", "1500"]
        ),
        inner
    );
    assert_eq!(
        lines(
            ORDERS,
            PRICES,
            &["--join", "left-stream-table", "--grace-ms", "1500"]
        ),
        expect(&[
            "a 500 x0 -",
            "a 2500 x1 A2",
            "a 4000 x2 A3",
            "a 7000 x3 -",
            "a 1800 x4 A1",
            "b 4500 y1 B2",
            "b 9000 y2 B8",
        ])
    );
}

/// The pairs of one key at most 1000 ms apart, each emitted when its second record comes; l6
/// (6800) is behind stream time (8000) but within the grace (1000 + 500 ms) and joins r6.
const STREAM_PAIRS: &[&str] = &[
    "a 1000 l1 1500 r1",
    "a 2000 l2 1500 r1",
    "a 2000 l2 2900 r2",
    "a 5000 l4 4200 r4",
    "a 8000 l5 7500 r6",
    "a 6800 l6 7500 r6",
    "b 2600 l3 3000 r3",
    "c 9500 l7 9000 r5",
];

#[test]
fn stream_stream_joins_every_pair_within_the_window() {
    assert_eq!(
        lines(
            LEFT,
            RIGHT,
            &["--join", "stream-stream:1000", "--grace-ms", "500"]
        ),
        expect(STREAM_PAIRS)
    );
}

/// Kafka Streams drops nothing as late in a stream-stream join: a record behind stream time by
/// more than the window and the grace is not stored, but still joined with what the other side's
/// store keeps (its records of the last window + window + grace of its own time). With grace 0,
/// l6 (6800, stream time 8000) still finds r6 (7500).
#[test]
fn a_record_behind_the_grace_still_joins_what_the_other_side_keeps_as_kafka_streams() {
    assert_eq!(
        lines(LEFT, RIGHT, &["--join", "stream-stream:1000"]),
        expect(STREAM_PAIRS)
    );
}

/// l9 (`e`, 3200) has no partner: printed with `- -` once its window closed (stream time past
/// 3200 + 1000 + 500, at l4); l1 waited for r1 and is not printed unmatched first (no spurious
/// result); l8 (`d`, 11000) is still open at the end: not printed.
#[test]
fn left_stream_stream_prints_an_unmatched_record_once_its_window_closed() {
    let mut want = STREAM_PAIRS.to_vec();
    want.push("e 3200 l9 - -");
    assert_eq!(
        lines(
            LEFT,
            RIGHT,
            &["--join", "left-stream-stream:1000", "--grace-ms", "500"]
        ),
        expect(&want)
    );
}

#[test]
fn several_partitions_give_the_same_results_per_key() {
    // Keys spread over 4 partitions (the default): each key's results are the same, in the same
    // order, whatever partition it is in.
    let (out, _dir) = run(ORDERS, PRICES, &["--join", "left-stream-table"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(got, lines(ORDERS, PRICES, &["--join", "left-stream-table"]));
}

/// A bad line fails the run with a message naming the file and the line; nothing on stdout.
fn assert_bad(left: &str, right: &str, bad_file: &str, line: usize, says: &str) {
    let (out, dir) = run(left, right, &["--join", "stream-table"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{left:?} / {right:?} was accepted");
    let file = dir.path().join(bad_file);
    assert!(
        stderr.contains(&format!("{} line {line}: ", file.display())) && stderr.contains(says),
        "{left:?} / {right:?}: {stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_lines_are_errors_naming_the_file_and_line() {
    assert_bad(
        "1000\ta\tx\n1000\ta\n",
        PRICES,
        "left.tsv",
        2,
        "expected `<timestamp ms>\\t<key>\\t<value>`",
    );
    assert_bad(
        ORDERS,
        "1000\ta\tA\n\n12x\tb\tB\n",
        "right.tsv",
        3,
        "`12x` is not a timestamp in ms",
    );
    assert_bad("-5\ta\tx\n", PRICES, "left.tsv", 1, "negative timestamp -5");
    assert_bad(
        ORDERS,
        "5\ta\tA\n0\tb\tB\n",
        "right.tsv",
        2,
        "timestamp 0 cannot be produced",
    );
}

#[test]
fn bad_arguments_are_errors() {
    for (args, says) in [
        (vec!["--join", "outer"], "--join must be stream-table"),
        (
            vec!["--join", "stream-stream"],
            "--join must be stream-table",
        ),
        (
            vec!["--join", "stream-stream:x"],
            "--join must be stream-table",
        ),
        (
            vec!["--join", "stream-table", "--grace-ms=-1"],
            "invalid value '-1' for '--grace-ms",
        ),
        (
            vec!["--join", "stream-table", "--grace-ms", "soon"],
            "invalid value 'soon' for '--grace-ms",
        ),
        (
            vec!["--join", "stream-table", "--partitions", "0"],
            "--partitions",
        ),
        (vec![], "--join"),
    ] {
        let (out, _dir) = run(ORDERS, PRICES, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let right = dir.path().join("right.tsv");
    std::fs::write(&right, PRICES).expect("write");
    let missing = dir.path().join("nope.tsv");
    let out = run_files(&missing, &right, &["--join", "stream-table"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot read {}", missing.display())),
        "{stderr}"
    );
}
