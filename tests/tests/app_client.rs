//! Running your own app with only `kstreams::kafka::AppClient`: create its topics, produce typed
//! input, wait until it is processed, read typed output; on the embedded default and on the real
//! broker. A normal run logs no ERROR or WARN line.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kstreams::kafka::{App, AppClient, AppConfig};
use kstreams::{Emit, Headers, Record, Topology, batch_processor, store};

#[store(name = "amount-totals")]
type Totals = kstreams::KeyValue<String, u64>;

/// Running total per customer: one update per customer and batch.
#[batch_processor]
fn total(
    orders: &[Record<String, u64>],
    totals: &mut Totals,
    out: &mut Emit<String, u64>,
) -> kstreams::Result<()> {
    let mut sums: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
    for (i, r) in orders.iter().enumerate() {
        let e = sums.entry(&r.key).or_default();
        e.0 += r.value;
        e.1 = i;
    }
    for (customer, (sum, last)) in sums {
        let customer = customer.to_owned();
        let t = totals.get(&customer)?.unwrap_or(0) + sum;
        totals.put(&customer, &t)?;
        out.forward(orders[last].derive(customer, t));
    }
    Ok(())
}

/// Every WARN and ERROR event of the process (rdkafka's `log` records included), as text.
fn warnings() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .try_init();
        logs
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn unique(prefix: &str) -> String {
    kstreams_tests::unique(prefix)
}

/// Runs the totals app with `config` (no bootstrap servers: embedded) through `AppClient` only.
async fn run_totals(id: &str, config: AppConfig) {
    let (orders, totals) = (format!("{id}-orders"), format!("{id}-totals"));
    let mut t = Topology::builder();
    let s = t.source::<String, u64>(&orders);
    let sums = t.add(total, &s);
    t.sink(&totals, &sums);
    let state = tempfile::tempdir().expect("tempdir");
    let config = config
        .state_dir(state.path())
        .commit_interval(Duration::from_millis(100))
        .handle_ctrl_c(false);
    let app = Arc::new(App::new(t.build().expect("topology"), config).expect("app"));
    let client = AppClient::new(&app).expect("client");
    client.create_app_topics(2).await.expect("topics");
    let running = tokio::spawn({
        let app = app.clone();
        async move { app.run().await }
    });

    // Typed mistakes are errors, not garbage.
    let err = client
        .produce(&totals, [Record::new("a".to_string(), 1u64)])
        .await
        .expect_err("not an input topic");
    assert_eq!(
        err.to_string(),
        format!(
            "invalid configuration: the topology does not read topic `{totals}`; it reads `{orders}`"
        )
    );
    let err = client
        .produce(&orders, [Record::new("a".to_string(), "1".to_string())])
        .await
        .expect_err("strings for a u64 source");
    assert!(err.to_string().contains("use the source's types"), "{err}");

    // Two phases: the second is produced after the first was processed.
    let phase = |from: u64, to: u64| {
        (from..to).map(|i| {
            Record::new(format!("customer-{}", i % 3), i)
                .with_headers(Headers::new().with("n", i.to_string()))
        })
    };
    client
        .produce(&orders, phase(0, 150))
        .await
        .expect("produce");
    client
        .wait_until_processed(Duration::from_secs(120))
        .await
        .expect("processed");
    client
        .produce(&orders, phase(150, 300))
        .await
        .expect("produce");
    client
        .wait_until_processed(Duration::from_secs(120))
        .await
        .expect("processed");

    let input = client
        .read::<String, u64>(&orders)
        .await
        .expect("read input");
    assert_eq!(input.len(), 300);
    let out = client
        .read::<String, u64>(&totals)
        .await
        .expect("read output");
    let mut last = BTreeMap::new();
    for r in &out {
        let origin = r.origin.as_ref().expect("origin");
        assert_eq!(&*origin.topic, totals.as_str());
        assert!(r.headers.last("n").is_some(), "headers survive: {r:?}");
        last.insert(r.key.clone(), r.value);
    }
    let mut want = BTreeMap::new();
    for i in 0..300u64 {
        *want.entry(format!("customer-{}", i % 3)).or_insert(0) += i;
    }
    assert_eq!(last, want);
    let err = client
        .read::<String, String>(&totals)
        .await
        .expect_err("u64 totals read as strings");
    assert!(err.to_string().contains("use the sink's types"), "{err}");
    let err = client
        .read::<String, u64>(&format!("{totals}-typo"))
        .await
        .expect_err("misspelt");
    assert!(err.to_string().contains("does not write topic"), "{err}");

    drop(client);
    // Everything the client did, from creating topics to its last read, was quiet.
    assert_quiet();
    app.shutdown_handle().shutdown();
    running.await.expect("join").expect("run");
}

/// The tests one at a time, so that each sees only its own log lines.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn clear_logs() {
    warnings().lock().unwrap_or_else(|e| e.into_inner()).clear();
}

fn assert_quiet() {
    let logs = warnings().lock().unwrap_or_else(|e| e.into_inner()).clone();
    let text = String::from_utf8_lossy(&logs);
    assert!(
        !text.contains("ERROR") && !text.contains("WARN"),
        "a normal run logged:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_runs_end_to_end_on_the_embedded_cluster_with_the_app_client() {
    let _serial = SERIAL.lock().await;
    clear_logs();
    let id = unique("client-embedded");
    run_totals(&id, AppConfig::new(&id)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_runs_end_to_end_on_a_real_broker_with_the_app_client() {
    let _serial = SERIAL.lock().await;
    let bootstrap = kstreams_tests::bootstrap();
    clear_logs();
    let id = unique("client-broker");
    run_totals(&id, AppConfig::new(&id).bootstrap_servers(bootstrap)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_an_app_that_does_not_run_names_the_lagging_partitions() {
    let _serial = SERIAL.lock().await;
    let id = unique("client-idle");
    let orders = format!("{id}-orders");
    let mut t = Topology::builder();
    let s = t.source::<String, u64>(&orders);
    let sums = t.add(total, &s);
    t.sink(&format!("{id}-totals"), &sums);
    let state = tempfile::tempdir().expect("tempdir");
    let config = AppConfig::new(&id)
        .state_dir(state.path())
        .handle_ctrl_c(false);
    let app = Arc::new(App::new(t.build().expect("topology"), config).expect("app"));
    let client = AppClient::new(&app).expect("client");
    client.create_app_topics(1).await.expect("topics");
    client
        .produce(&orders, [Record::new("a".to_string(), 1u64)])
        .await
        .expect("produce");
    let err = client
        .wait_until_processed(Duration::from_millis(300))
        .await
        .expect_err("the app is not running");
    assert_eq!(
        err.to_string(),
        format!(
            "the app did not process its input within 300ms (running: false): `{orders}` \
             partition 0 committed nothing of 1"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_input_the_serdes_reject_can_be_produced_and_its_dead_letters_read() {
    let _serial = SERIAL.lock().await;
    let id = unique("client-raw");
    let (orders, totals, dlq) = (
        format!("{id}-orders"),
        format!("{id}-totals"),
        format!("{id}-dlq"),
    );
    let mut t = Topology::builder();
    let s = t.source::<String, u64>(&orders);
    let sums = t.add(total, &s);
    t.sink(&totals, &sums);
    let state = tempfile::tempdir().expect("tempdir");
    let config = AppConfig::new(&id)
        .state_dir(state.path())
        .commit_interval(Duration::from_millis(100))
        .on_deserialization_error(kstreams::OnBadRecord::DeadLetter { topic: dlq.clone() })
        .handle_ctrl_c(false);
    let app = Arc::new(App::new(t.build().expect("topology"), config).expect("app"));
    let client = AppClient::new(&app).expect("client");
    client.create_app_topics(1).await.expect("topics");
    client
        .create_topics(&[kstreams::kafka::TopicSpec::new(&dlq, 1)])
        .await
        .expect("dead-letter topic");
    let running = tokio::spawn({
        let app = app.clone();
        async move { app.run().await }
    });
    client
        .produce_raw(
            &orders,
            [
                Record::new(Some(b"a".to_vec()), Some(b"abc".to_vec())),
                Record::new(Some(b"a".to_vec()), Some(5u64.to_be_bytes().to_vec())),
            ],
        )
        .await
        .expect("produce raw");
    client
        .wait_until_processed(Duration::from_secs(120))
        .await
        .expect("processed");
    let dead = client
        .read::<Option<Vec<u8>>, Option<Vec<u8>>>(&dlq)
        .await
        .expect("read dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value.as_deref(), Some(&b"abc"[..]));
    let out = client
        .read::<String, u64>(&totals)
        .await
        .expect("read totals");
    assert_eq!(
        out.iter()
            .map(|r| (r.key.as_str(), r.value))
            .collect::<Vec<_>>(),
        [("a", 5)]
    );
    app.shutdown_handle().shutdown();
    running.await.expect("join").expect("run");
}
