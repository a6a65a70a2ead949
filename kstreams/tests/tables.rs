//! Tables in the topology, through the test driver: a table topic's records upsert and delete
//! in the table's store, and the table forwards a change only when a key's value changes.

use kstreams::store::{KeyValueStore, StoreHandle, StoreSpec};
use kstreams::table::{Change, TableStore};
use kstreams::testing::TopologyTestDriver;
use kstreams::topology::TopologyError;
use kstreams::{Emit, OnBadRecord, Record, Topology, processor, store};

#[store(name = "prices")]
type Prices = kstreams::KeyValue<String, u64>;

#[store(name = "recent", window = tumbling(size = "1m"), grace = "0s")]
type Recent = kstreams::WindowKeyValue<String, u64>;

/// `#[store]` implements `TableStore` for key-value and versioned handles only (a window
/// store handle passed to `t.table` is a compile error: the UI case `table_of_a_window_store`);
/// a hand-written handle can still claim a window store holds a table, and the build refuses it.
struct HandWrittenRecent;

impl<'t> StoreHandle<'t> for HandWrittenRecent {
    const NAME: &'static str = "recent";
    type Key = String;
    type Value = u64;
    fn spec() -> StoreSpec {
        <Recent<'static> as StoreHandle<'static>>::spec()
    }
    fn bind(_: KeyValueStore<'t, String, u64>) -> Self {
        HandWrittenRecent
    }
}

impl TableStore for HandWrittenRecent {}

fn at<V>(key: &str, value: V, ts: i64) -> Record<String, V> {
    Record::new(key.to_owned(), value).with_timestamp(ts)
}

/// A change as text: `key: old -> new` (`-` for none).
fn show(r: &Record<String, Change<u64>>) -> Record<String, String> {
    let v = |v: &Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    r.derive(
        r.key.clone(),
        format!("{} -> {}", v(&r.value.old), v(&r.value.new)),
    )
}

/// The table `prices` with its changes written as text to `price-changes`.
fn prices_with_changes() -> Topology {
    let mut t = Topology::builder();
    let prices = t.table::<Prices<'static>>("prices");
    let shown = t.add_named("show", processor::map(show), prices.changes());
    t.sink("price-changes", &shown);
    t.build().expect("topology")
}

fn changes(d: &mut TopologyTestDriver) -> Vec<(String, String, i64)> {
    d.read_output::<String, String>("price-changes")
        .expect("changes")
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect()
}

#[test]
fn table_records_upsert_and_tombstones_delete() -> kstreams::Result<()> {
    let mut d = TopologyTestDriver::new(prices_with_changes())?;
    d.pipe_batch(
        "prices",
        [
            at("apple", Some(3u64), 10),
            at("pear", Some(5), 11),
            at("apple", Some(4), 12),
            at("plum", Some(9), 13),
            at("plum", None, 14),
        ],
    )?;
    assert_eq!(
        d.store::<String, u64>("prices")?,
        vec![("apple".to_owned(), 4), ("pear".to_owned(), 5)]
    );
    // A deleted key comes back with a new value.
    d.pipe_batch("prices", [at("plum", Some(1u64), 15)])?;
    assert_eq!(
        d.store::<String, u64>("prices")?,
        vec![
            ("apple".to_owned(), 4),
            ("pear".to_owned(), 5),
            ("plum".to_owned(), 1)
        ]
    );
    Ok(())
}

#[test]
fn a_table_forwards_only_changes_with_the_record_timestamp() -> kstreams::Result<()> {
    let mut d = TopologyTestDriver::new(prices_with_changes())?;
    d.pipe_batch(
        "prices",
        [
            at("apple", Some(3u64), 10),
            // The same value again: no change.
            at("apple", Some(3), 11),
            at("apple", Some(4), 12),
            // Deleting a key that is not there: no change.
            at("kiwi", None, 13),
            at("apple", None, 14),
            at("apple", None, 15),
        ],
    )?;
    assert_eq!(
        changes(&mut d),
        vec![
            ("apple".to_owned(), "- -> 3".to_owned(), 10),
            ("apple".to_owned(), "3 -> 4".to_owned(), 12),
            ("apple".to_owned(), "4 -> -".to_owned(), 14),
        ]
    );
    Ok(())
}

#[test]
fn changes_do_not_depend_on_batch_boundaries() -> kstreams::Result<()> {
    let input = [
        at("apple", Some(3u64), 10),
        at("apple", Some(3), 11),
        at("pear", Some(1), 12),
        at("apple", None, 13),
        at("pear", Some(2), 14),
    ];
    let mut whole = TopologyTestDriver::new(prices_with_changes())?;
    whole.pipe_batch("prices", input.clone())?;
    let mut one_by_one = TopologyTestDriver::new(prices_with_changes())?;
    for r in input {
        one_by_one.pipe_batch("prices", [r])?;
    }
    let reference = changes(&mut whole);
    assert_eq!(reference.len(), 4, "{reference:?}");
    assert_eq!(changes(&mut one_by_one), reference);
    assert_eq!(
        whole.store::<String, u64>("prices")?,
        one_by_one.store::<String, u64>("prices")?
    );
    Ok(())
}

#[test]
fn a_table_whose_changes_nobody_reads_builds_and_materializes() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let prices = t.table::<Prices<'static>>("prices");
    assert_eq!(prices.topic(), "prices");
    assert_eq!(prices.store_name(), "prices");
    let topology = t.build()?;
    let text = topology.describe();
    assert!(
        text.contains("Source: prices-source (topic: prices, table: prices)"),
        "{text}"
    );
    assert!(
        text.contains("Table: prices-table (topic: prices, store: prices)"),
        "{text}"
    );
    assert!(
        topology
            .describe_mermaid()
            .contains("[\"table prices-table\"]"),
        "{}",
        topology.describe_mermaid()
    );
    let mut d = TopologyTestDriver::new(topology)?;
    d.pipe("prices", "apple".to_owned(), Some(7u64))?;
    // A value, not an `Option`, may be piped too (it is never a null).
    d.pipe("prices", "fig".to_owned(), 2u64)?;
    assert_eq!(
        d.store::<String, u64>("prices")?,
        vec![("apple".to_owned(), 7), ("fig".to_owned(), 2)]
    );
    // Other types are refused, naming the table's.
    let err = d
        .pipe("prices", "fig".to_owned(), "two".to_owned())
        .expect_err("not the table's types")
        .to_string();
    assert!(err.contains("Option<u64>"), "{err}");
    Ok(())
}

/// The stream side of an enrichment: an order with its price, read from the table's store.
#[processor]
fn price_order(
    order: &Record<String, u64>,
    prices: &Prices,
    out: &mut Emit<String, String>,
) -> kstreams::Result<()> {
    let total = match prices.get(&order.key)? {
        Some(price) => (price * order.value).to_string(),
        None => "no price".to_owned(),
    };
    out.forward(order.derive(order.key.clone(), total));
    Ok(())
}

#[test]
fn a_processor_reads_the_table_in_the_tables_task() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let _prices = t.table::<Prices<'static>>("prices");
    let orders = t.source::<String, u64>("orders");
    let priced = t.add(price_order, &orders);
    t.sink("priced", &priced);
    let topology = t.build()?;
    // Sharing the store puts both sources in one sub-topology: co-partitioned.
    assert_eq!(topology.subtopologies().len(), 1);
    let mut d = TopologyTestDriver::builder(topology)
        .partitions("prices", 2)
        .partitions("orders", 2)
        .partitions("priced", 2)
        .build()?;
    d.append_batch("prices", [at("apple", Some(3u64), 10)])?;
    d.append_batch("orders", [at("apple", 2u64, 20), at("pear", 1, 21)])?;
    d.append_batch("prices", [at("apple", Some(5u64), 30)])?;
    d.append_batch("orders", [at("apple", 1u64, 40)])?;
    d.process()?;
    let mut out: Vec<(String, String)> = d
        .read_output::<String, String>("priced")?
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    out.sort();
    assert_eq!(
        out,
        vec![
            ("apple".to_owned(), "5".to_owned()),
            ("apple".to_owned(), "6".to_owned()),
            ("pear".to_owned(), "no price".to_owned()),
        ]
    );
    Ok(())
}

#[test]
fn a_window_store_cannot_hold_a_table() {
    let mut t = Topology::builder();
    let _ = t.table::<HandWrittenRecent>("recent-input");
    match t.build() {
        Err(TopologyError::InvalidTable {
            topic,
            store,
            reason,
        }) => {
            assert_eq!((topic.as_str(), store.as_str()), ("recent-input", "recent"));
            assert!(
                reason.contains("a window store cannot hold a table"),
                "{reason}"
            );
        }
        other => panic!("expected InvalidTable, got {other:?}"),
    }
}

#[test]
fn a_table_value_that_cannot_be_read_goes_through_the_deserialization_policy() {
    let topology = prices_with_changes();
    let mut d = TopologyTestDriver::new(topology).expect("driver");
    d.append_raw(
        "prices",
        Some(0),
        Some(b"apple".to_vec()),
        Some(vec![1, 2, 3]),
        10,
        Default::default(),
    )
    .expect("append");
    let err = d.process().expect_err("a u64 of 3 bytes").to_string();
    assert!(err.contains("prices") && err.contains("offset 0"), "{err}");

    // Skipped under `Skip`, and the next record still applies.
    let mut t = Topology::builder();
    let _ = t.table::<Prices<'static>>("prices");
    let mut d = TopologyTestDriver::builder(t.build().expect("topology"))
        .on_deserialization_error(OnBadRecord::Skip)
        .build()
        .expect("driver");
    d.append_raw(
        "prices",
        Some(0),
        Some(b"apple".to_vec()),
        Some(vec![1, 2, 3]),
        10,
        Default::default(),
    )
    .expect("append");
    d.append_batch("prices", [at("pear", Some(2u64), 11)])
        .expect("append");
    d.process().expect("skipped");
    assert_eq!(
        d.store::<String, u64>("prices").expect("store"),
        vec![("pear".to_owned(), 2)]
    );
}

/// A versioned table's store: one hour of history.
#[store(name = "versioned-prices", history = "1h")]
type VersionedPrices = kstreams::VersionedKeyValue<String, u64>;

fn versioned_prices_with_changes() -> Topology {
    let mut t = Topology::builder();
    let prices = t.table::<VersionedPrices<'static>>("prices");
    let shown = t.add_named("show", processor::map(show), prices.changes());
    t.sink("price-changes", &shown);
    t.build().expect("topology")
}

#[test]
fn a_versioned_table_keeps_versions_and_forwards_only_changes_of_the_latest() -> kstreams::Result<()>
{
    let mut d = TopologyTestDriver::new(versioned_prices_with_changes())?;
    d.pipe_batch(
        "prices",
        [
            at("apple", Some(3u64), 100),
            at("apple", Some(5), 300),
            // Older than the latest: lands in the history, the current value stays 5.
            at("apple", Some(4), 200),
            // The same value, later: no change.
            at("apple", Some(5), 400),
            // A tombstone version.
            at("apple", None, 500),
            // A tombstone for a key without a value: no change.
            at("pear", None, 500),
            // Older than stream time − history: not put.
            at("apple", Some(9), 500 - 3_600_000 - 1),
        ],
    )?;
    assert_eq!(
        changes(&mut d),
        vec![
            ("apple".to_owned(), "- -> 3".to_owned(), 100),
            ("apple".to_owned(), "3 -> 5".to_owned(), 300),
            ("apple".to_owned(), "5 -> -".to_owned(), 500),
        ]
    );
    let apple = "apple".to_owned();
    let value_at = |d: &mut TopologyTestDriver, t: i64| {
        d.versioned_get::<String, u64>("versioned-prices", &apple, Some(t))
            .expect("read")
            .map(|v| (v.value, v.timestamp, v.valid_to))
    };
    assert_eq!(value_at(&mut d, 99), None);
    assert_eq!(value_at(&mut d, 150), Some((3, 100, Some(200))));
    assert_eq!(value_at(&mut d, 250), Some((4, 200, Some(300))));
    assert_eq!(value_at(&mut d, 450), Some((5, 400, Some(500))));
    assert_eq!(value_at(&mut d, 600), None);
    assert_eq!(
        d.versioned_get::<String, u64>("versioned-prices", &apple, None)?
            .map(|v| v.value),
        None
    );
    Ok(())
}

#[test]
fn a_table_and_its_readers_are_split_invariant() -> kstreams::Result<()> {
    use kstreams::testing::{SplitInput, check_split_invariance};
    let mut t = Topology::builder();
    let prices = t.table::<Prices<'static>>("prices");
    let shown = t.add_named("show", processor::map(show), prices.changes());
    t.sink("price-changes", &shown);
    let orders = t.source::<String, u64>("orders");
    let priced = t.add(price_order, &orders);
    t.sink("priced", &priced);
    let topology = t.build()?;
    let keys = ["apple", "pear", "plum", "kiwi"];
    let input = SplitInput::new()
        .partitions("prices", 2)
        .partitions("orders", 2)
        .partitions("priced", 2)
        .partitions("price-changes", 2)
        .records(
            "prices",
            (0..120).map(|i: i64| {
                let value = (i % 7 != 3).then_some((i % 4) as u64);
                at(keys[(i % 4) as usize], value, i * 10)
            }),
        )?
        .records(
            "orders",
            (0..120).map(|i: i64| at(keys[(i % 3) as usize], (i % 5) as u64, i * 10 + 5)),
        )?;
    check_split_invariance(&topology, &input, 7, 4)
}

#[test]
fn a_tables_topic_is_its_stores_changelog() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    // The reader first, the table after: either order declares the table's store.
    let orders = t.source::<String, u64>("orders");
    let priced = t.add(price_order, &orders);
    t.sink("priced", &priced);
    let prices = t.table::<Prices<'static>>("prices");
    assert_eq!(prices.spec().source_changelog(), Some("prices"));
    assert!(!prices.spec().changelog_enabled());
    let topology = t.build()?;
    let declared = topology
        .stores()
        .iter()
        .find(|s| s.name() == "prices")
        .expect("the table's store");
    assert_eq!(declared.source_changelog(), Some("prices"));
    let mut d = TopologyTestDriver::new(topology)?;
    d.pipe("prices", "apple".to_owned(), Some(3u64))?;
    d.pipe("orders", "apple".to_owned(), 2u64)?;
    assert_eq!(d.read_output::<String, String>("priced")?[0].value, "6");
    // No changelog topic of its own was written.
    assert!(
        !d.topic_names().iter().any(|t| t.ends_with("-changelog")),
        "{:?}",
        d.topic_names()
    );
    Ok(())
}

#[test]
fn two_tables_in_one_store_are_a_store_conflict_naming_their_topics() {
    let mut t = Topology::builder();
    let _ = t.table::<Prices<'static>>("prices");
    let _ = t.table::<Prices<'static>>("more-prices");
    match t.build() {
        Err(TopologyError::StoreConflict {
            name,
            first,
            second,
            differ,
        }) => {
            assert_eq!(name, "prices");
            assert!(differ.contains("source topics"), "{differ}");
            assert!(first.contains("source topic `prices`"), "{first}");
            assert!(second.contains("source topic `more-prices`"), "{second}");
        }
        other => panic!("expected a store conflict, got {other:?}"),
    }
}
