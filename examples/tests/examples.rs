//! Every example, run end to end on the embedded mock cluster, checked against its real output.

use std::path::PathBuf;
use std::process::Command;

use kstreams_examples::{aggregation, dead_letter, enrichment, punctuation};

fn example_binary(name: &str) -> PathBuf {
    // `cargo test` (without a target filter) builds the examples next to the test binaries:
    // target/<profile>/examples/. With `--test examples` alone, build them first.
    let exe = std::env::current_exe().expect("current exe");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    profile.join("examples").join(name)
}

/// Logs of the in-process apps, captured by the test harness and shown only when a test fails
/// (an embedded run that stalls then says why).
fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,kstreams=debug"))
        .with_test_writer()
        .try_init();
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

#[test]
fn wordcount_counts_the_sample_as_expected() {
    let root = repo_root();
    let out = Command::new(example_binary("wordcount"))
        .arg("--input")
        .arg(root.join("examples/data/sample.txt"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the wordcount example (built by `cargo test`)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected =
        std::fs::read_to_string(root.join("examples/data/sample.expected.txt")).expect("expected");
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

/// The lines of a run's stderr logged at WARN or ERROR level (ANSI colours stripped).
fn loud_lines(stderr: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .map(|l| {
            // Strip `ESC [ ... m` colour sequences.
            let mut out = String::new();
            let mut chars = l.chars();
            while let Some(c) = chars.next() {
                if c == '\u{1b}' {
                    for c in chars.by_ref() {
                        if c == 'm' {
                            break;
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            out
        })
        // `<timestamp> <LEVEL> ...`, tracing-subscriber's format.
        .filter(|l| matches!(l.split_whitespace().nth(1), Some("WARN" | "ERROR")))
        .collect()
}

/// Runs an example binary with `args` at the default log level (`info`); asserts it succeeds
/// and returns its stdout and its WARN/ERROR lines.
fn run_example(name: &str, args: &[&std::ffi::OsStr]) -> (String, Vec<String>) {
    let out = Command::new(example_binary(name))
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap_or_else(|e| panic!("run the {name} example (built by `cargo test`): {e}"));
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        loud_lines(&out.stderr),
    )
}

/// The shared broker (`KSTREAMS_BOOTSTRAP`, as `scripts/test` sets it), else the one
/// `scripts/kafka/kafka start` runs (idempotent), as `kstreams-tests` finds it. Never skipped.
fn broker() -> String {
    if let Ok(b) = std::env::var("KSTREAMS_BOOTSTRAP") {
        return b;
    }
    let script = repo_root().join("scripts/kafka/kafka");
    let out = Command::new(&script)
        .arg("start")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} start failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned()
}

/// A normal run prints no WARN and no ERROR line (issue #12, point 12: every run ended with
/// `ERROR ... Failed to close consumer queue on drop ... BrokerDestroy`), on the embedded
/// cluster and on a real broker.
#[test]
fn wordcount_runs_quietly_on_the_embedded_cluster_and_on_a_broker() {
    let root = repo_root();
    let expected =
        std::fs::read_to_string(root.join("examples/data/sample.expected.txt")).expect("expected");
    let input = root.join("examples/data/sample.txt");
    let brokers = broker();
    let runs: [Vec<&std::ffi::OsStr>; 2] = [
        vec!["--input".as_ref(), input.as_os_str()],
        vec![
            "--input".as_ref(),
            input.as_os_str(),
            "--brokers".as_ref(),
            brokers.as_ref(),
        ],
    ];
    for args in runs {
        let (stdout, loud) = run_example("wordcount", &args);
        assert_eq!(stdout, expected, "{args:?}");
        assert!(loud.is_empty(), "{args:?}: {loud:#?}");
    }
}

/// Every other example that needs no broker runs quietly; `dead_letter`'s only warnings are the
/// records it dead-letters (its point), and `exactly_once` (a broker) runs quietly too.
#[test]
fn the_other_examples_run_quietly() {
    for name in ["aggregation", "enrichment", "punctuation"] {
        let (_, loud) = run_example(name, &[]);
        assert!(loud.is_empty(), "{name}: {loud:#?}");
    }
    let (_, loud) = run_example("dead_letter", &[]);
    assert_eq!(loud.len(), 2, "{loud:#?}");
    assert!(
        loud.iter()
            .all(|l| l.contains(" WARN ") && l.contains("dead-lettering a record")),
        "{loud:#?}"
    );
    let brokers = broker();
    let (stdout, loud) = run_example("exactly_once", &["--brokers".as_ref(), brokers.as_ref()]);
    assert!(stdout.contains("committed updates"), "{stdout}");
    assert!(loud.is_empty(), "exactly_once: {loud:#?}");
}

#[test]
fn wordcount_describes_and_writes_mermaid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("topology.mmd");
    let out = Command::new(example_binary("wordcount"))
        .arg("--describe")
        .arg("--mermaid")
        .arg(&file)
        .output()
        .expect("run the wordcount example");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Processor: CountWords (stores: [word-counts])"),
        "{text}"
    );
    let mermaid = std::fs::read_to_string(&file).expect("mermaid file");
    assert!(mermaid.starts_with("flowchart"), "{mermaid}");
    assert!(mermaid.contains("word-counts"), "{mermaid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregation_counts_views_per_user() {
    capture_logs();
    let state = tempfile::tempdir().expect("tempdir");
    let views = [
        ("alice", "/home"),
        ("bob", "/home"),
        ("alice", "/cart"),
        ("carol", "/home"),
        ("alice", "/checkout"),
        ("bob", "/help"),
    ];
    let counts = aggregation::run(&views, state.path()).await.expect("run");
    let got: Vec<(&str, u64)> = counts.iter().map(|(u, n)| (u.as_str(), *n)).collect();
    assert_eq!(got, [("alice", 3), ("bob", 2), ("carol", 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrichment_joins_orders_with_the_customers_table() {
    capture_logs();
    let state = tempfile::tempdir().expect("tempdir");
    let customers = [("c1", "Ada"), ("c2", "Grace")];
    let orders = [
        ("c1", "a keyboard"),
        ("c2", "a compiler"),
        ("c3", "a mystery box"),
    ];
    let lines = enrichment::run(&customers, &orders, state.path())
        .await
        .expect("run");
    assert_eq!(
        lines,
        [
            "c1: Ada ordered a keyboard",
            "c2: Grace ordered a compiler",
            "c3: unknown ordered a mystery box"
        ]
    );
    // Table and stream share the store, so they run in one sub-topology.
    assert_eq!(
        enrichment::topology()
            .expect("topology")
            .subtopologies()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_sends_malformed_records_aside_and_goes_on() {
    capture_logs();
    let state = tempfile::tempdir().expect("tempdir");
    let readings = [
        r#"{"sensor":"s1","celsius":21.5}"#,
        r#"{"sensor":"s2","celsius":"#,
        r#"{"sensor":"s1","celsius":-40}"#,
        "not json at all",
    ];
    let outcome = dead_letter::run(&readings, state.path())
        .await
        .expect("run");
    assert_eq!(outcome.converted, ["s1: 70.7F", "s1: -40.0F"]);
    let values: Vec<&str> = outcome
        .dead_letters
        .iter()
        .map(|(v, _)| v.as_str())
        .collect();
    assert_eq!(values, [readings[1], readings[3]]);
    for (_, error) in &outcome.dead_letters {
        assert!(error.contains("invalid JSON"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn punctuation_emits_a_periodic_summary() {
    capture_logs();
    let state = tempfile::tempdir().expect("tempdir");
    // Summaries every `punctuation::INTERVAL` (300 ms).
    let lines = punctuation::run(&["too hot", "too cold", "too hot"], state.path())
        .await
        .expect("run");
    // However the three alerts were cut into batches and summaries, the last summary has them all
    // and every line counts something new.
    assert!(!lines.is_empty(), "no summary was emitted");
    assert!(
        lines.last().is_some_and(|l| l.ends_with(", 3 in total")),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| !l.starts_with("0 new")), "{lines:?}");
}
