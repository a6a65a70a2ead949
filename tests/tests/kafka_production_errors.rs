//! Production errors on a real broker. The sink topic accepts batches of at most 1,024 bytes
//! (`max.message.bytes`), and a few input records map to outputs larger than that: the broker
//! refuses their delivery. With skip the app goes on and commits past them; with dead-letter they
//! are in the dead-letter topic with their origin in headers; with fail the error names the sink
//! topic and the input record, and nothing past it is committed. Records librdkafka refuses at
//! send time (over the producer's `message.max.bytes`) go through the policy under exactly-once
//! too (skip).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kstreams::OnBadRecord;
use kstreams::kafka::{App, AppConfig, ProcessingGuarantee};
use kstreams::{Record, Topology, processor};
use kstreams_tests::*;

const DONE: Duration = Duration::from_secs(60);
/// Offsets of the input records whose output is too large.
const LARGE: [i64; 3] = [5, 12, 20];
const RECORDS: i64 = 30;

struct Topics {
    app_id: String,
    input: String,
    output: String,
    dlq: String,
}

fn small(i: i64) -> Vec<u8> {
    format!("v{i}").into_bytes()
}

async fn setup(prefix: &str) -> (String, Topics) {
    let b = bootstrap();
    let app_id = unique(prefix);
    let t = Topics {
        input: format!("{app_id}-in"),
        output: format!("{app_id}-out"),
        dlq: format!("{app_id}-dlq"),
        app_id,
    };
    create_topics_with_configs(
        &b,
        &[
            (&t.input, 1, &[]),
            (&t.output, 1, &[("max.message.bytes", "1024")]),
            (&t.dlq, 1, &[("max.message.bytes", "1048576")]),
        ],
    )
    .await;
    // The input values are small; the topology makes the outputs of `LARGE` 3,000 bytes long.
    let records: Vec<Input> = (0..RECORDS)
        .map(|i| (Some(format!("k{i}").into_bytes()), small(i), Some(0)))
        .collect();
    produce(&b, &t.input, &records);
    (b, t)
}

/// Outputs of the `LARGE` offsets are 3,000 bytes; the others are the input value.
fn topology(t: &Topics) -> Topology {
    let mut tb = Topology::builder();
    let s = tb.source::<String, Vec<u8>>(&t.input);
    let m = tb.add(
        processor::map(|r: &Record<String, Vec<u8>>| {
            let offset = r.origin.as_ref().map_or(-1, |o| o.offset);
            let value = if LARGE.contains(&offset) {
                vec![b'x'; 3000]
            } else {
                r.value.clone()
            };
            r.derive(r.key.clone(), value)
        }),
        &s,
    );
    tb.sink(&t.output, &m);
    tb.build().expect("topology")
}

fn app_config(t: &Topics, b: &str, state: &std::path::Path) -> AppConfig {
    config(&t.app_id, b, state)
        .delivery_timeout(Duration::from_secs(20))
        .prometheus_endpoint(metrics_addr())
}

/// The process's one Prometheus endpoint (shared by the tests of this binary).
fn metrics_addr() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    })
}

/// The value of `metric` with labels `stage="produce"` and `topic="<topic>"` at the endpoint.
fn produce_metric(metric: &str, topic: &str) -> f64 {
    let mut s = std::net::TcpStream::connect_timeout(&metrics_addr(), Duration::from_secs(5))
        .expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("response");
    let topic_label = format!("topic=\"{topic}\"");
    body.lines()
        .filter(|l| {
            l.starts_with(&format!("{metric}{{"))
                && l.contains("stage=\"produce\"")
                && l.contains(&topic_label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn header<'a>(h: &'a [(String, Option<Vec<u8>>)], name: &str) -> &'a str {
    h.iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or_else(|| panic!("header {name} missing in {h:?}"))
}

/// The small records, in input order, as (key, value).
fn small_records() -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..RECORDS)
        .filter(|i| !LARGE.contains(i))
        .map(|i| (format!("k{i}").into_bytes(), small(i)))
        .collect()
}

fn key_values(out: Vec<Output>) -> Vec<(Vec<u8>, Vec<u8>)> {
    out.into_iter()
        .map(|(_, _, k, v)| (k.unwrap_or_default(), v.unwrap_or_default()))
        .collect()
}

/// Runs the app until its input is committed to the end, checks it is still running, stops it.
async fn run_to_the_end(b: &str, t: &Topics, app: Arc<App>) {
    let mut run = spawn(app.clone());
    let ends: BTreeMap<(String, i32), i64> = [((t.input.clone(), 0), RECORDS)].into();
    let deadline = tokio::time::Instant::now() + DONE;
    while !group_committed_to(b, &t.app_id, &ends) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the input was not committed to the end: {:?}",
            app.status()
        );
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(200), &mut run).await {
            panic!("the app stopped: {r:?}");
        }
    }
    app.shutdown_handle().shutdown();
    tokio::time::timeout(DONE, run)
        .await
        .expect("stops")
        .expect("join")
        .expect("run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_skip_oversized_outputs_are_counted_and_the_rest_arrives() {
    let (b, t) = setup("prod-skip").await;
    let state = tempfile::tempdir().expect("tempdir");
    let config = app_config(&t, &b, state.path())
        .on_production_error(OnBadRecord::Fail)
        .on_production_error_for(t.output.clone(), OnBadRecord::Skip);
    let app = Arc::new(App::new(topology(&t), config).expect("app"));
    run_to_the_end(&b, &t, app.clone()).await;
    assert_eq!(key_values(read_all(&b, &t.output, 1)), small_records());
    let s = app.status();
    assert_eq!(s.skipped_outputs, LARGE.len() as u64, "{s:?}");
    assert_eq!(s.dead_lettered_outputs, 0, "{s:?}");
    assert_eq!(s.processed_records, RECORDS as u64, "{s:?}");
    assert_eq!(
        produce_metric("kstreams_skipped_records_total", &t.output),
        LARGE.len() as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_dead_letter_oversized_outputs_are_in_the_dead_letter_topic() {
    let (b, t) = setup("prod-dlq").await;
    let state = tempfile::tempdir().expect("tempdir");
    let config = app_config(&t, &b, state.path()).on_production_error(OnBadRecord::DeadLetter {
        topic: t.dlq.clone(),
    });
    let app = Arc::new(App::new(topology(&t), config).expect("app"));
    run_to_the_end(&b, &t, app.clone()).await;
    assert_eq!(key_values(read_all(&b, &t.output, 1)), small_records());
    let dead = read_all_full(&b, &t.dlq, 1);
    let got: Vec<(String, String, String, String, String, Vec<u8>, Vec<u8>)> = dead
        .iter()
        .map(|(_, _, k, v, _, h)| {
            let message = header(h, "kstreams.error.message");
            assert!(
                message.contains("cannot deliver a record to topic")
                    && message.contains(&t.output)
                    && message.to_lowercase().contains("too large"),
                "{message}"
            );
            (
                header(h, "kstreams.error.topic").to_owned(),
                header(h, "kstreams.error.partition").to_owned(),
                header(h, "kstreams.error.offset").to_owned(),
                header(h, "kstreams.error.stage").to_owned(),
                header(h, "kstreams.error.sink.topic").to_owned(),
                k.clone().unwrap_or_default(),
                v.clone().unwrap_or_default(),
            )
        })
        .collect();
    let want: Vec<_> = LARGE
        .iter()
        .map(|o| {
            (
                t.input.clone(),
                "0".to_owned(),
                o.to_string(),
                "produce".to_owned(),
                t.output.clone(),
                format!("k{o}").into_bytes(),
                vec![b'x'; 3000],
            )
        })
        .collect();
    assert_eq!(got, want, "the failed records' bytes, with their origin");
    let s = app.status();
    assert_eq!(s.dead_lettered_outputs, LARGE.len() as u64, "{s:?}");
    assert_eq!(s.skipped_outputs, 0, "{s:?}");
    assert_eq!(
        produce_metric("kstreams_dead_lettered_records_total", &t.output),
        LARGE.len() as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fail_the_error_names_the_sink_and_the_input_record() {
    let (b, t) = setup("prod-fail").await;
    let state = tempfile::tempdir().expect("tempdir");
    let app = App::new(topology(&t), app_config(&t, &b, state.path())).expect("app");
    let err = tokio::time::timeout(DONE, app.run())
        .await
        .expect("the app stops by itself")
        .expect_err("an undeliverable record fails the app")
        .to_string();
    let first = format!(
        "cannot deliver a record to topic `{}` partition 0 (the output of the record at topic \
         `{}` partition 0 offset {})",
        t.output, t.input, LARGE[0]
    );
    assert!(err.contains(&first), "{err}");
    let past: BTreeMap<(String, i32), i64> = [((t.input.clone(), 0), LARGE[0] + 1)].into();
    assert!(
        !group_committed_to(&b, &t.app_id, &past),
        "nothing past the undeliverable record is committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_exactly_once_a_record_refused_at_send_time_is_skipped() {
    let (b, t) = setup("prod-eos").await;
    let state = tempfile::tempdir().expect("tempdir");
    // librdkafka itself refuses records over 2,000 bytes (for every topic, so a dead-letter topic
    // could not take them either); the sink topic would take them.
    let config = app_config(&t, &b, state.path())
        .processing_guarantee(ProcessingGuarantee::ExactlyOnce)
        .producer_property("message.max.bytes", "2000")
        .on_production_error(OnBadRecord::Skip);
    let app = Arc::new(App::new(topology(&t), config).expect("app"));
    run_to_the_end(&b, &t, app.clone()).await;
    assert_eq!(
        key_values(read_all_committed(&b, &t.output, 1)),
        small_records()
    );
    let s = app.status();
    assert_eq!(s.skipped_outputs, LARGE.len() as u64, "{s:?}");
    assert_eq!(s.processed_records, RECORDS as u64, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_exactly_once_a_delivery_error_fails_whatever_the_policy() {
    let (b, t) = setup("prod-eos-fail").await;
    let state = tempfile::tempdir().expect("tempdir");
    // The broker refuses the oversized outputs inside a transaction: it is abortable, so skip
    // cannot apply; the app fails naming the record and commits nothing past it.
    let config = app_config(&t, &b, state.path())
        .processing_guarantee(ProcessingGuarantee::ExactlyOnce)
        .on_production_error(OnBadRecord::Skip);
    let app = App::new(topology(&t), config).expect("app");
    let err = tokio::time::timeout(DONE, app.run())
        .await
        .expect("the app stops by itself")
        .expect_err("a delivery error fails under exactly-once")
        .to_string();
    assert!(
        err.contains(&format!("cannot deliver a record to topic `{}`", t.output))
            && err.contains(&format!(
                "(the output of the record at topic `{}` partition 0",
                t.input
            )),
        "{err}"
    );
    // Only transactions before the first oversized record may have committed.
    let before: Vec<Vec<u8>> = (0..LARGE[0])
        .map(|i| format!("k{i}").into_bytes())
        .collect();
    for (_, _, k, _) in read_all_committed(&b, &t.output, 1) {
        let k = k.unwrap_or_default();
        assert!(
            before.contains(&k),
            "committed past the failed record: {k:?}"
        );
    }
    let past: BTreeMap<(String, i32), i64> = [((t.input.clone(), 0), LARGE[0] + 1)].into();
    assert!(!group_committed_to(&b, &t.app_id, &past));
}
