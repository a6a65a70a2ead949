//! `wordcount --serve ADDR` (issue #16 §3, a contract): once the input is processed the counts
//! are on stdout as without it, `serving on ADDR` is on stderr, and the counts are answered over
//! HTTP (a real client: reqwest) until SIGTERM or SIGINT, after which the example exits cleanly
//! and quietly; on the embedded cluster and on a broker.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    profile.join("examples").join(name)
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The lines of stderr logged at WARN or ERROR level.
fn loud(stderr: &[String]) -> Vec<String> {
    stderr
        .iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .cloned()
        .collect()
}

/// The shared broker (`KSTREAMS_BOOTSTRAP`, as `scripts/test` sets it), else the one
/// `scripts/kafka/kafka start` runs (idempotent).
fn broker() -> String {
    if let Ok(b) = std::env::var("KSTREAMS_BOOTSTRAP") {
        return b;
    }
    let out = Command::new(repo_root().join("scripts/kafka/kafka"))
        .arg("start")
        .output()
        .expect("scripts/kafka/kafka start");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned()
}

/// On the embedded cluster, stopped by SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_serves_its_counts_over_http_until_sigterm() {
    serves_until(&[], libc::SIGTERM).await;
}

/// On a broker, stopped by SIGINT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_on_a_broker_serves_its_counts_over_http_until_sigint() {
    serves_until(&["--brokers".to_owned(), broker()], libc::SIGINT).await;
}

async fn serves_until(args: &[String], signal: i32) {
    let root = repo_root();
    let mut child = Command::new(example_binary("wordcount"))
        .arg("--input")
        .arg(root.join("examples/data/sample.txt"))
        .args(["--serve", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the wordcount example (built by `cargo test`)");
    // stderr line by line, on a thread: the address once it serves, every line for the end.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let addr = loop {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("no `serving on` line ({e}); stderr so far: {seen:#?}"));
        if let Some(addr) = line.strip_prefix("serving on ") {
            break addr.trim().to_owned();
        }
        seen.push(line);
    };

    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("http://{addr}{path}");
        async move {
            let r = http.get(&url).send().await.expect("request");
            let status = r.status().as_u16();
            let text = r.text().await.expect("body");
            (status, text)
        }
    };
    let expected =
        std::fs::read_to_string(root.join("examples/data/sample.expected.txt")).expect("expected");
    let counts: Vec<(&str, u64)> = expected
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(w, c)| (w, c.parse().expect("count")))
        .collect();
    assert!(counts.len() > 10, "{expected}");
    for (word, count) in &counts {
        let (status, body) = get(format!("/stores/word-counts/keys/{word}")).await;
        assert_eq!(status, 200, "{word}: {body}");
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body, json!({"key": word, "value": count}));
    }
    let (status, body) = get("/stores/word-counts/keys/not-a-word-here".into()).await;
    assert_eq!(status, 404, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        body["error"],
        "no key `not-a-word-here` in store `word-counts`"
    );
    let (status, body) = get("/stores/nope/keys/a".into()).await;
    assert_eq!(status, 404, "{body}");
    // Every count in key order, from the range route.
    let (status, body) = get("/stores/word-counts/range".into()).await;
    assert_eq!(status, 200, "{body}");
    let all: Vec<Value> = serde_json::from_str(&body).expect("JSON array");
    assert_eq!(all.len(), counts.len());
    let mut sorted = counts.clone();
    sorted.sort();
    for (entry, (word, count)) in all.iter().zip(&sorted) {
        assert_eq!(entry, &json!({"key": word, "value": count}));
    }
    let (status, metrics) = get("/metrics".into()).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("kstreams_records_in_total"), "{metrics}");

    // The signal: a graceful stop, exit status 0, the counts printed once, nothing loud.
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: sending a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let out = child.wait_with_output().expect("wait");
    reader.join().expect("stderr reader");
    seen.extend(lines_rx.try_iter());
    assert!(out.status.success(), "{:?}: {seen:#?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    assert!(loud(&seen).is_empty(), "{:#?}", loud(&seen));
}
