//! Observability on the embedded default: the Prometheus endpoint serves the runtime's metrics
//! over HTTP while an app runs, and they move as records flow.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kstreams::kafka::{App, AppConfig, TopicSpec};
use kstreams_tests::*;

/// `GET /metrics` with a plain TCP stream; the body, or the error.
fn scrape(addr: SocketAddr) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(|e| e.to_string())?;
    if !response.starts_with("HTTP/1.1 200") {
        return Err(format!("unexpected response: {response}"));
    }
    Ok(response)
}

/// The sum of every sample of `name` (all label sets) in a Prometheus text exposition.
fn sum(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Everything logged in this test process (the app logs from its own thread, so the subscriber is
/// the global one).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_endpoint_serves_moving_counters() {
    let id = unique("prom");
    let (input, words, output) = (
        format!("{id}-lines"),
        format!("{id}-words"),
        format!("{id}-counts"),
    );
    let logs = Logs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("info,librdkafka=warn")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let addr = free_port();
    let state = tempfile::tempdir().expect("tempdir");
    let config = AppConfig::new(&id)
        .state_dir(state.path())
        .commit_interval(Duration::from_millis(100))
        .handle_ctrl_c(false)
        .progress_log_interval(Some(Duration::from_millis(300)))
        .prometheus_endpoint(addr);
    let topology =
        kstreams_examples::wordcount::topology(&input, &words, &output).expect("topology");
    let app = Arc::new(App::new(topology, config).expect("app"));
    assert!(app.is_embedded());
    let b = app.bootstrap_servers().to_owned();
    app.create_topics(&[
        TopicSpec::new(&input, 2),
        TopicSpec::new(&words, 2),
        TopicSpec::new(&output, 2),
    ])
    .await
    .expect("topics");
    let run = spawn(app.clone());

    produce_lines(&b, &input, 2, &sample_lines(1, 200));
    let mut first = String::new();
    wait_for(
        "records counted at the endpoint",
        Duration::from_secs(120),
        || {
            first = scrape(addr).unwrap_or_default();
            sum(&first, "kstreams_records_in_total") >= 200.0
                && sum(&first, "kstreams_records_out_total") > 0.0
        },
    )
    .await;
    for name in ["kstreams_batch_size", "kstreams_batch_seconds"] {
        assert!(first.contains(name), "{name} missing from:\n{first}");
    }

    let before = sum(&first, "kstreams_records_in_total");
    produce_lines(&b, &input, 2, &sample_lines(2, 300));
    wait_for("the counters moved", Duration::from_secs(120), || {
        let body = scrape(addr).unwrap_or_default();
        sum(&body, "kstreams_records_in_total") >= before + 300.0
            && body.contains("kstreams_consumer_lag{")
            && body.contains("kstreams_commit_seconds")
            && sum(&body, "kstreams_commits_total") > 0.0
    })
    .await;

    wait_for("a progress line", Duration::from_secs(60), || {
        logs.text().contains("progress: ")
    })
    .await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
    let text = logs.text();
    let progress = text
        .lines()
        .find(|l| l.contains("progress: "))
        .unwrap_or_default();
    assert!(progress.contains(" INFO "), "{progress}");
    assert!(
        progress.contains("records/s in") && progress.contains("lag"),
        "{progress}"
    );
}
