//! Time order across a task's inputs (Kafka Streams' partition group) and timestamp extractors,
//! in the test driver: a task that reads several topics takes their records by timestamp, not by
//! the topics' names or the order they were piped in.

use kstreams::OnBadRecord;
use kstreams::testing::{StoredRecord, TopologyTestDriver};
use kstreams::topology::SourceOptions;
use kstreams::{Emit, Record, Topology, processor, store};

#[store(name = "customers")]
type Customers = kstreams::KeyValue<String, String>;

/// The table side: remembers each customer's name.
#[processor]
fn remember_customer(
    update: &Record<String, String>,
    customers: &mut Customers,
) -> kstreams::Result<()> {
    customers.put(&update.key, &update.value)
}

/// The stream side: an order enriched with its customer's name as of the order's time.
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

/// Orders from `orders` enriched from the table `customers` (one task: they share a store).
fn enrichment(orders: &str, customers: &str) -> Topology {
    let mut t = Topology::builder();
    // The table is declared first: on equal timestamps its update goes first.
    let c = t.source::<String, String>(customers);
    let _ = t.add(remember_customer, &c);
    let o = t.source::<String, String>(orders);
    let enriched = t.add(enrich_order, &o);
    t.sink("enriched", &enriched);
    t.build().expect("topology")
}

fn at(key: &str, value: &str, ts: i64) -> Record<String, String> {
    Record::new(key.to_owned(), value.to_owned()).with_timestamp(ts)
}

/// The orders are appended first, the customers after, so production order (and, for the first
/// pair of names, the topics' names) put every order before every update; timestamps say
/// otherwise.
fn enriched(orders: &str, customers: &str) -> Vec<(String, i64)> {
    let mut d = TopologyTestDriver::new(enrichment(orders, customers)).expect("driver");
    d.append_batch(
        orders,
        [
            at("alice", "o1", 50),
            at("alice", "o2", 200),
            at("alice", "o3", 300),
            at("bob", "o4", 400),
        ],
    )
    .expect("orders");
    d.append_batch(
        customers,
        [
            at("alice", "Alice", 100),
            at("alice", "ALICE", 300),
            at("bob", "Bob", 500),
        ],
    )
    .expect("customers");
    d.process().expect("process");
    d.read_output::<String, String>("enriched")
        .expect("output")
        .into_iter()
        .map(|r| (r.value, r.timestamp))
        .collect()
}

#[test]
fn a_stream_record_sees_the_table_update_with_an_earlier_timestamp_whatever_the_topic_names() {
    let expected = vec![
        ("o1 by ?".to_owned(), 50),
        ("o2 by Alice".to_owned(), 200),
        // A tie (300): the table's source is declared first, so its update is seen.
        ("o3 by ALICE".to_owned(), 300),
        // Bob's update comes later (500) than his order.
        ("o4 by ?".to_owned(), 400),
    ];
    // Names that sort the orders first (today's order was by topic name) ...
    assert_eq!(enriched("a-orders", "z-customers"), expected);
    // ... and the other way round: the same result.
    assert_eq!(enriched("z-orders", "a-customers"), expected);
}

#[test]
fn records_piped_one_topic_after_the_other_still_go_in_timestamp_order() {
    let mut d = TopologyTestDriver::builder(enrichment("orders", "customers"))
        .batching(kstreams::testing::Batching::Max(1))
        .build()
        .expect("driver");
    d.append_batch("orders", [at("k", "late", 20)])
        .expect("orders");
    d.append_batch("customers", [at("k", "early", 10)])
        .expect("customers");
    d.process().expect("process");
    let out = d.read_output::<String, String>("enriched").expect("output");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].value, "late by early");
}

fn header(r: &StoredRecord, name: &str) -> Option<String> {
    r.headers
        .last(name)
        .flatten()
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// `<event time>,<text>` values; event time from the value.
fn event_time_topology() -> Topology {
    let mut t = Topology::builder();
    let events = t.source_with_options::<String, String>(
        "events",
        SourceOptions::new().timestamp_extractor(|r: &Record<String, String>| {
            r.value.split(',').next()?.parse().ok()
        }),
    );
    t.sink("out", &events);
    t.build().expect("topology")
}

#[test]
fn a_timestamp_extractor_gives_event_time_and_bad_timestamps_are_dead_lettered() {
    let mut d = TopologyTestDriver::builder(event_time_topology())
        .on_deserialization_error(OnBadRecord::DeadLetter {
            topic: "events-dlq".into(),
        })
        .build()
        .expect("driver");
    d.append_batch(
        "events",
        [
            at("a", "1000,first", 5),
            at("b", "-5,negative", 6),
            at("c", "no time", 7),
            at("d", "3000,second", 8),
        ],
    )
    .expect("events");
    d.process().expect("process");
    let out = d.read_output::<String, String>("out").expect("output");
    let got: Vec<(&str, i64)> = out
        .iter()
        .map(|r| (r.value.as_str(), r.timestamp))
        .collect();
    assert_eq!(got, [("1000,first", 1000), ("3000,second", 3000)]);
    // Stream time is event time.
    let (_, task) = d.tasks().next().expect("a task");
    assert_eq!(task.stream_time(), 3000);
    let dlq = d.read_output_raw("events-dlq");
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    let (_, _, negative) = &dlq[0];
    assert_eq!(negative.value.as_deref(), Some(&b"-5,negative"[..]));
    assert_eq!(
        header(negative, "kstreams.error.topic").as_deref(),
        Some("events")
    );
    assert_eq!(
        header(negative, "kstreams.error.partition").as_deref(),
        Some("0")
    );
    assert_eq!(
        header(negative, "kstreams.error.offset").as_deref(),
        Some("1")
    );
    assert_eq!(
        header(negative, "kstreams.error.stage").as_deref(),
        Some("deserialize")
    );
    let message = header(negative, "kstreams.error.message").unwrap_or_default();
    assert!(message.contains("a negative timestamp (-5)"), "{message}");
    let (_, _, missing) = &dlq[1];
    assert_eq!(
        header(missing, "kstreams.error.offset").as_deref(),
        Some("2")
    );
    let message = header(missing, "kstreams.error.message").unwrap_or_default();
    assert!(message.contains("no timestamp"), "{message}");
}

#[test]
fn a_bad_timestamp_fails_with_its_origin_under_the_default_policy() {
    let mut d = TopologyTestDriver::new(event_time_topology()).expect("driver");
    let err = d
        .pipe_batch("events", [at("a", "-1,x", 5)])
        .expect_err("a negative event time fails")
        .to_string();
    assert!(err.contains("events") && err.contains("offset 0"), "{err}");
    assert!(err.contains("negative timestamp (-1)"), "{err}");
}

#[test]
fn the_extracted_time_orders_the_inputs() {
    // The table's records carry event time in the value ("<millis>,<name>"); their record
    // timestamps (999) would put every update after every order.
    let mut t = Topology::builder();
    let c = t.source_with_options::<String, String>(
        "customers",
        SourceOptions::new().timestamp_extractor(|r: &Record<String, String>| {
            r.value.split(',').next()?.parse().ok()
        }),
    );
    let _ = t.add(remember_customer, &c);
    let o = t.source::<String, String>("orders");
    let enriched = t.add(enrich_order, &o);
    t.sink("enriched", &enriched);
    let mut d = TopologyTestDriver::new(t.build().expect("topology")).expect("driver");
    d.append_batch("orders", [at("k", "o1", 20), at("k", "o2", 40)])
        .expect("orders");
    d.append_batch(
        "customers",
        [at("k", "10,early", 999), at("k", "30,later", 999)],
    )
    .expect("customers");
    d.process().expect("process");
    let got: Vec<String> = d
        .read_output::<String, String>("enriched")
        .expect("output")
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(got, ["o1 by 10,early", "o2 by 30,later"]);
}
