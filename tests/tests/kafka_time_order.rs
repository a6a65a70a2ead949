//! Time order across a task's inputs on a real broker (issue #13 §4): a stream and a table topic
//! produced one after the other (every order before every customer update), with names that sort
//! the orders first, are processed in timestamp order; and a timestamp extractor's event time on
//! the outputs, with a negative event time dead-lettered.

use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::App;
use kstreams::topology::SourceOptions;
use kstreams::{Emit, OnBadRecord, Record, Topology, processor, store};
use kstreams_tests::*;

const DONE: Duration = Duration::from_secs(120);

#[store(name = "customers")]
type Customers = kstreams::KeyValue<String, String>;

#[processor]
fn remember_customer(
    update: &Record<String, String>,
    customers: &mut Customers,
) -> kstreams::Result<()> {
    customers.put(&update.key, &update.value)
}

#[processor]
fn enrich_order(
    order: &Record<String, String>,
    customers: &mut Customers,
    out: &mut Emit<String, String>,
) -> kstreams::Result<()> {
    let name = customers.get(&order.key)?.unwrap_or_else(|| "?".into());
    out.forward(order.derive(order.key.clone(), format!("{} by {name}", order.value)));
    Ok(())
}

fn rec(key: &str, value: &str, ts: i64) -> (Vec<u8>, Vec<u8>, i32, i64, Vec<u8>) {
    (key.into(), value.into(), 0, ts, Vec::new())
}

/// Runs `app` until every input in `inputs` is committed, then stops it.
async fn run_until_committed(app: App, b: &str, inputs: &[&str]) -> Arc<App> {
    let app = Arc::new(app);
    let run = spawn(app.clone());
    let mut ends = std::collections::BTreeMap::new();
    for t in inputs {
        ends.extend(end_offsets(b, t, 1));
    }
    wait_for("input committed", DONE, || {
        run.is_finished() || committed_to(&app.status(), &ends)
    })
    .await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("the app ran");
    app
}

fn text(v: &Option<Vec<u8>>) -> String {
    String::from_utf8_lossy(v.as_deref().unwrap_or_default()).into_owned()
}

fn enrichment(orders: &str, customers: &str, out: &str) -> Topology {
    let mut t = Topology::builder();
    let c = t.source::<String, String>(customers);
    let _ = t.add(remember_customer, &c);
    let o = t.source::<String, String>(orders);
    let enriched = t.add(enrich_order, &o);
    t.sink(out, &enriched);
    t.build().expect("topology")
}

type Produced = (Vec<u8>, Vec<u8>, i32, i64, Vec<u8>);

/// Produces `order_records` then `customer_records` (all before the app starts), runs the
/// enrichment on the shared broker or (`embedded`) the embedded cluster, and returns its output:
/// value and timestamp.
async fn enrich(
    embedded: bool,
    order_records: &[Produced],
    customer_records: &[Produced],
) -> Vec<(String, i64)> {
    enrich_with(embedded, false, order_records, customer_records).await
}

/// [`enrich`], exactly-once if `eos` (the shared broker only; timestamps are then -1).
async fn enrich_with(
    embedded: bool,
    eos: bool,
    order_records: &[Produced],
    customer_records: &[Produced],
) -> Vec<(String, i64)> {
    let id = unique("order");
    // Names that sort the orders first: the old order of a round was by topic name.
    let (orders, customers, out) = (
        format!("{id}-a-orders"),
        format!("{id}-z-customers"),
        format!("{id}-out"),
    );
    let state = tempfile::tempdir().expect("tempdir");
    let topology = enrichment(&orders, &customers, &out);
    let (app, b) = if embedded {
        let config = kstreams::kafka::AppConfig::new(&id)
            .state_dir(state.path())
            .commit_interval(Duration::from_millis(100))
            .handle_ctrl_c(false);
        let app = App::new(topology, config).expect("app");
        let b = app.bootstrap_servers().to_owned();
        app.create_topics(&[
            kstreams::kafka::TopicSpec::new(&orders, 1),
            kstreams::kafka::TopicSpec::new(&customers, 1),
            kstreams::kafka::TopicSpec::new(&out, 1),
        ])
        .await
        .expect("topics");
        (app, b)
    } else {
        let b = bootstrap();
        create_topics(&b, &[(&orders, 1), (&customers, 1), (&out, 1)]).await;
        let mut config = config(&id, &b, state.path());
        if eos {
            config = config.processing_guarantee(kstreams::kafka::ProcessingGuarantee::ExactlyOnce);
        }
        let app = App::new(topology, config).expect("app");
        (app, b)
    };
    produce_with_metadata(&b, &orders, order_records);
    produce_with_metadata(&b, &customers, customer_records);
    let _app = run_until_committed(app, &b, &[&orders, &customers]).await;
    if eos {
        // The topic ends in a commit marker: read what is committed (without timestamps).
        return read_all_committed(&b, &out, 1)
            .into_iter()
            .map(|(_, _, _, v)| (text(&v), -1))
            .collect();
    }
    read_all_full(&b, &out, 1)
        .into_iter()
        .map(|(_, _, _, v, ts, _)| (text(&v), ts))
        .collect()
}

fn interleaved_by_time() -> [Vec<Produced>; 2] {
    [
        vec![
            rec("alice", "o1", 50),
            rec("alice", "o2", 200),
            rec("alice", "o3", 300),
            rec("bob", "o4", 400),
        ],
        vec![
            rec("alice", "Alice", 100),
            rec("alice", "ALICE", 300),
            rec("bob", "Bob", 500),
        ],
    ]
}

fn expected() -> Vec<(String, i64)> {
    [
        ("o1 by ?", 50),
        ("o2 by Alice", 200),
        // A tie: the table's source is declared first.
        ("o3 by ALICE", 300),
        ("o4 by ?", 400),
    ]
    .into_iter()
    .map(|(v, ts)| (v.to_owned(), ts))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_record_sees_the_table_update_with_an_earlier_timestamp_produced_after_it() {
    let [orders, customers] = interleaved_by_time();
    assert_eq!(enrich(false, &orders, &customers).await, expected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_orders_by_timestamp_too() {
    let [orders, customers] = interleaved_by_time();
    let values = |v: Vec<(String, i64)>| v.into_iter().map(|(v, _)| v).collect::<Vec<_>>();
    assert_eq!(
        values(enrich_with(false, true, &orders, &customers).await),
        values(expected())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_cluster_orders_by_timestamp_too() {
    let [orders, customers] = interleaved_by_time();
    assert_eq!(enrich(true, &orders, &customers).await, expected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_table_topic_does_not_hold_the_stream() {
    // Caught up (lag 0) with the default max_task_idle 0: the orders go on at once.
    let orders = [rec("alice", "o1", 50), rec("bob", "o2", 60)];
    let want: Vec<(String, i64)> = vec![("o1 by ?".into(), 50), ("o2 by ?".into(), 60)];
    assert_eq!(enrich(false, &orders, &[]).await, want);
    assert_eq!(enrich(true, &orders, &[]).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_task_idle_waits_for_a_caught_up_input_before_processing_ahead_of_it() {
    let b = bootstrap();
    let id = unique("idle");
    let (orders, customers, out) = (
        format!("{id}-a-orders"),
        format!("{id}-z-customers"),
        format!("{id}-out"),
    );
    create_topics(&b, &[(&orders, 1), (&customers, 1), (&out, 1)]).await;
    let state = tempfile::tempdir().expect("tempdir");
    let config = config(&id, &b, state.path()).max_task_idle(Duration::from_secs(5));
    let app = Arc::new(App::new(enrichment(&orders, &customers, &out), config).expect("app"));
    let run = spawn(app.clone());
    wait_for("partitions assigned", DONE, || {
        run.is_finished() || app.status().assigned.len() == 2
    })
    .await;
    // The order arrives while the table is caught up and empty: with max_task_idle 0 it would
    // be processed at once, without its customer. The customer update, earlier in time, comes
    // a second later, within the 5 s the task waits.
    produce_with_metadata(&b, &orders, &[rec("alice", "o1", 200)]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        read_all_full(&b, &out, 1).is_empty(),
        "processed before max_task_idle"
    );
    produce_with_metadata(&b, &customers, &[rec("alice", "Alice", 100)]);
    let mut ends = end_offsets(&b, &orders, 1);
    ends.extend(end_offsets(&b, &customers, 1));
    wait_for("input committed", DONE, || {
        run.is_finished() || committed_to(&app.status(), &ends)
    })
    .await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("the app ran");
    let got: Vec<(String, i64)> = read_all_full(&b, &out, 1)
        .into_iter()
        .map(|(_, _, _, v, ts, _)| (text(&v), ts))
        .collect();
    assert_eq!(got, [("o1 by Alice".to_owned(), 200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_time_from_the_value_and_a_negative_one_dead_lettered() {
    let b = bootstrap();
    let id = unique("evtime");
    let (events, out, dlq) = (
        format!("{id}-events"),
        format!("{id}-out"),
        format!("{id}-dlq"),
    );
    create_topics(&b, &[(&events, 1), (&out, 1), (&dlq, 1)]).await;
    produce_with_metadata(
        &b,
        &events,
        &[
            rec("a", "1000,first", 5),
            rec("b", "-5,negative", 6),
            rec("c", "3000,second", 7),
        ],
    );
    let mut t = Topology::builder();
    let e = t.source_with_options::<String, String>(
        &events,
        SourceOptions::new().timestamp_extractor(|r: &Record<String, String>| {
            r.value.split(',').next()?.parse().ok()
        }),
    );
    t.sink(&out, &e);
    let state = tempfile::tempdir().expect("tempdir");
    let config = config(&id, &b, state.path())
        .on_deserialization_error(OnBadRecord::DeadLetter { topic: dlq.clone() });
    let app = App::new(t.build().expect("topology"), config).expect("app");
    let app = run_until_committed(app, &b, &[&events]).await;
    assert_eq!(app.status().dead_lettered_records, 1);
    let got: Vec<(String, i64)> = read_all_full(&b, &out, 1)
        .into_iter()
        .map(|(_, _, _, v, ts, _)| (text(&v), ts))
        .collect();
    assert_eq!(
        got,
        [
            ("1000,first".to_owned(), 1000),
            ("3000,second".to_owned(), 3000)
        ]
    );
    let dead = read_all_full(&b, &dlq, 1);
    assert_eq!(dead.len(), 1);
    let (_, _, _, value, _, headers) = &dead[0];
    assert_eq!(text(value), "-5,negative");
    let header = |name: &str| {
        headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| text(v))
            .unwrap_or_default()
    };
    assert_eq!(header("kstreams.error.topic"), events);
    assert_eq!(header("kstreams.error.partition"), "0");
    assert_eq!(header("kstreams.error.offset"), "1");
    assert_eq!(header("kstreams.error.stage"), "deserialize");
    assert!(
        header("kstreams.error.message").contains("a negative timestamp (-5)"),
        "{}",
        header("kstreams.error.message")
    );
}
