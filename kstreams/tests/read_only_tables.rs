//! Tables reach a user's processor as read-only handles (issue 15 §2): a `#[batch_processor]`
//! takes a table's store by `&` and reads it with batch lookups; taking it `&mut` (or declaring
//! it read-write by hand) is refused when the topology is built, naming the processor, the store
//! and the topic, since only the table writes its store (the topic is the store's changelog). A
//! store declared read-only cannot be bound to write, whatever the binding path. A global
//! table's store is read the same way, from the instance's global stores.

use kstreams::store::StoreHandle;
use kstreams::testing::TopologyTestDriver;
use kstreams::topology::TopologyError;
use kstreams::{
    BatchProcessor, Context, Emit, Error, Record, StoreSpec, Topology, batch_processor, store,
};

#[store(name = "prices")]
type Prices = kstreams::KeyValue<String, u64>;

#[store(name = "rates", history = "1h")]
type Rates = kstreams::VersionedKeyValue<String, u64>;

#[store(name = "currencies")]
type Currencies = kstreams::KeyValue<String, String>;

fn at<V>(key: &str, value: V, ts: i64) -> Record<String, V> {
    Record::new(key.to_owned(), value).with_timestamp(ts)
}

/// Each order (item -> quantity) with its total, `quantity × price`, or `-` when the table has
/// no price: one `get_batch` of the table per batch.
#[batch_processor]
fn enrich(
    orders: &[Record<String, u64>],
    prices: &Prices,
    out: &mut Emit<String, String>,
) -> kstreams::Result<()> {
    let items: Vec<&str> = orders.iter().map(|o| o.key.as_str()).collect();
    for (order, price) in orders.iter().zip(prices.get_batch(&items)?) {
        let total = price.map_or("-".to_owned(), |p| (p * order.value).to_string());
        out.forward(order.derive(order.key.clone(), total));
    }
    Ok(())
}

fn outputs(d: &mut TopologyTestDriver, topic: &str) -> kstreams::Result<Vec<(String, String)>> {
    Ok(d.read_output::<String, String>(topic)?
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect())
}

#[test]
fn a_batch_processor_enriches_a_stream_from_a_table_through_a_shared_reference()
-> kstreams::Result<()> {
    let mut t = Topology::builder();
    let _prices = t.table::<Prices<'static>>("prices");
    let orders = t.source::<String, u64>("orders");
    let enriched = t.add(enrich, &orders);
    t.sink("enriched", &enriched);
    let topology = t.build()?;
    // The reader declares the table's store read-only; the topology's declaration is the
    // table's (its topic as changelog), and the two run in one task.
    assert_eq!(topology.subtopologies().len(), 1);
    let spec = &topology.stores()[0];
    assert_eq!(spec.source_changelog(), Some("prices"));
    assert!(!spec.is_read_only());
    assert!(
        enrich.stores()[0].is_read_only(),
        "a `&Prices` parameter declares the store read-only"
    );

    // The description says who only reads the store.
    let text = topology.describe();
    assert!(
        text.contains("Processor: enrich (stores: [prices (read-only)])"),
        "{text}"
    );
    let chart = topology.describe_mermaid();
    assert!(chart.contains("store_prices -.-> node_enrich"), "{chart}");
    assert!(!chart.contains("node_enrich <-.-> store_prices"), "{chart}");

    let mut d = TopologyTestDriver::new(topology)?;
    d.pipe_batch(
        "prices",
        [at("apple", Some(3u64), 1), at("pear", Some(5u64), 2)],
    )?;
    // One batch of three orders: one batched lookup.
    d.pipe_batch(
        "orders",
        [at("apple", 2u64, 10), at("plum", 1, 11), at("pear", 3, 12)],
    )?;
    d.pipe::<String, Option<u64>>("prices", "apple".to_owned(), None)?;
    d.pipe("orders", "apple".to_owned(), 1u64)?;
    assert_eq!(
        outputs(&mut d, "enriched")?,
        [
            ("apple".to_owned(), "6".to_owned()),
            ("plum".to_owned(), "-".to_owned()),
            ("pear".to_owned(), "15".to_owned()),
            ("apple".to_owned(), "-".to_owned()),
        ]
    );
    // The table's store holds what the table wrote, nothing else.
    assert_eq!(d.store::<String, u64>("prices")?, [("pear".to_owned(), 5)]);
    Ok(())
}

/// The same enrichment, but taking the table's store to write.
#[batch_processor]
fn enrich_and_write(
    orders: &[Record<String, u64>],
    prices: &mut Prices,
    out: &mut Emit<String, String>,
) -> kstreams::Result<()> {
    for order in orders {
        prices.put(&order.key, &0)?;
        out.forward(order.derive(order.key.clone(), String::new()));
    }
    Ok(())
}

fn refused(build: Result<Topology, TopologyError>) -> (TopologyError, String) {
    let e = build.expect_err("a table's store taken read-write");
    let message = e.to_string();
    (e, message)
}

#[test]
fn taking_a_tables_store_read_write_is_refused_at_build() {
    // Whichever comes first, the table or its reader.
    for table_first in [true, false] {
        let mut t = Topology::builder();
        if table_first {
            let _ = t.table::<Prices<'static>>("price-updates");
        }
        let orders = t.source::<String, u64>("orders");
        let enriched = t.add(enrich_and_write, &orders);
        t.sink("enriched", &enriched);
        if !table_first {
            let _ = t.table::<Prices<'static>>("price-updates");
        }
        let (e, message) = refused(t.build());
        assert_eq!(
            e,
            TopologyError::TableStoreWritten {
                processor: "enrich_and_write".into(),
                store: "prices".into(),
                topic: "price-updates".into(),
            }
        );
        assert!(
            message.starts_with(
                "processor `enrich_and_write` takes the store `prices` of the table of topic \
                 `price-updates` read-write, but only the table writes its store"
            ),
            "{message}"
        );
        assert!(
            message.contains("`&Store` instead of `&mut Store`"),
            "{message}"
        );
    }
}

/// A versioned table's rate as of each order's time: one `get_batch_as_of` per batch, through
/// `&Rates`.
#[batch_processor]
fn convert(
    orders: &[Record<String, u64>],
    rates: &Rates,
    out: &mut Emit<String, String>,
) -> kstreams::Result<()> {
    let as_of: Vec<(&str, i64)> = orders
        .iter()
        .map(|o| (o.key.as_str(), o.timestamp))
        .collect();
    for (order, rate) in orders.iter().zip(rates.get_batch_as_of(&as_of)?) {
        let text = rate.map_or("-".to_owned(), |r| {
            format!("{}@{}", order.value * r.value, r.timestamp)
        });
        out.forward(order.derive(order.key.clone(), text));
    }
    Ok(())
}

#[test]
fn a_versioned_table_is_read_as_of_each_record_through_a_shared_reference() -> kstreams::Result<()>
{
    let mut t = Topology::builder();
    let _rates = t.table::<Rates<'static>>("rates");
    let orders = t.source::<String, u64>("orders");
    let converted = t.add(convert, &orders);
    t.sink("converted", &converted);
    let mut d = TopologyTestDriver::new(t.build()?)?;
    // Out of order: the version at 20 lands before the one at 30.
    d.pipe_batch(
        "rates",
        [
            at("usd", Some(2u64), 10),
            at("usd", Some(4u64), 30),
            at("usd", Some(3u64), 20),
            at("eur", None, 15),
        ],
    )?;
    d.pipe_batch(
        "orders",
        [
            at("usd", 10u64, 5),
            at("usd", 10, 10),
            at("usd", 10, 25),
            at("usd", 10, 40),
            at("eur", 10, 40),
        ],
    )?;
    assert_eq!(
        outputs(&mut d, "converted")?,
        [
            ("usd".to_owned(), "-".to_owned()),
            ("usd".to_owned(), "20@10".to_owned()),
            ("usd".to_owned(), "30@20".to_owned()),
            ("usd".to_owned(), "40@30".to_owned()),
            ("eur".to_owned(), "-".to_owned()),
        ]
    );
    Ok(())
}

#[test]
fn a_versioned_tables_store_taken_read_write_is_refused_too() {
    #[batch_processor]
    fn rewrite(orders: &[Record<String, u64>], rates: &mut Rates) -> kstreams::Result<()> {
        for o in orders {
            let _ = rates.put(&o.key, Some(&o.value), o.timestamp)?;
        }
        Ok(())
    }
    let mut t = Topology::builder();
    let _ = t.table::<Rates<'static>>("rates");
    let orders = t.source::<String, u64>("orders");
    let _ = t.add(rewrite, &orders);
    let (e, _) = refused(t.build());
    assert_eq!(
        e,
        TopologyError::TableStoreWritten {
            processor: "rewrite".into(),
            store: "rates".into(),
            topic: "rates".into(),
        }
    );
}

/// A hand-written reader of the table: declares its store read-only, and reads it with
/// `read_store`, or (`write`) tries to bind it writable.
#[derive(Clone)]
struct HandWritten {
    read_only: bool,
    write: bool,
}

impl BatchProcessor<String, u64> for HandWritten {
    type OutKey = String;
    type OutValue = String;

    fn stores(&self) -> Vec<StoreSpec> {
        let spec = <Prices<'_> as StoreHandle<'_>>::spec();
        vec![if self.read_only {
            spec.read_only()
        } else {
            spec
        }]
    }

    fn process_batch(
        &mut self,
        orders: &[Record<String, u64>],
        ctx: &mut Context<'_, String, String>,
    ) -> kstreams::Result<()> {
        if self.write {
            let mut prices = ctx.store::<String, u64>("prices")?;
            prices.put(&"apple".to_owned(), &0)?;
        }
        let prices = ctx.read_store_handle::<Prices<'_>>()?;
        let keys: Vec<&str> = orders.iter().map(|o| o.key.as_str()).collect();
        for (o, p) in orders.iter().zip(prices.get_batch(&keys)?) {
            ctx.forward(o.derive(o.key.clone(), format!("{p:?}")));
        }
        Ok(())
    }
}

fn hand_written(p: HandWritten) -> Result<Topology, TopologyError> {
    let mut t = Topology::builder();
    let _ = t.table::<Prices<'static>>("prices");
    let orders = t.source::<String, u64>("orders");
    let out = t.add_named("hand-written", p, &orders);
    t.sink("out", &out);
    t.build()
}

#[test]
fn a_hand_written_processor_reads_a_table_read_only_and_cannot_bind_it_to_write()
-> kstreams::Result<()> {
    // Declared read-only, read with `read_store_handle`: fine.
    let mut d = TopologyTestDriver::new(hand_written(HandWritten {
        read_only: true,
        write: false,
    })?)?;
    d.pipe("prices", "apple".to_owned(), Some(3u64))?;
    d.pipe("orders", "apple".to_owned(), 1u64)?;
    assert_eq!(
        outputs(&mut d, "out")?,
        [("apple".to_owned(), "Some(3)".to_owned())]
    );

    // Declared read-write: the build refuses it, as for `&mut Prices`.
    let (e, _) = refused(hand_written(HandWritten {
        read_only: false,
        write: false,
    }));
    assert!(
        matches!(&e, TopologyError::TableStoreWritten { processor, .. } if processor == "hand-written"),
        "{e}"
    );

    // Declared read-only but bound to write: the bind fails the batch, naming the processor and
    // the store, and the table's store is untouched.
    let mut d = TopologyTestDriver::new(hand_written(HandWritten {
        read_only: true,
        write: true,
    })?)?;
    d.pipe("prices", "apple".to_owned(), Some(3u64))?;
    let err = d
        .pipe("orders", "apple".to_owned(), 1u64)
        .expect_err("a writable bind of a read-only store");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(
            "processor `hand-written` declared the store `prices` (the store of the table of \
             topic `prices`, which only the table writes) read-only, but binds it to write"
        ),
        "{message}"
    );
    assert_eq!(d.store::<String, u64>("prices")?, [("apple".to_owned(), 3)]);
    Ok(())
}

/// Each payment (id -> currency code) with its currency's name, from the global table: one
/// `get_batch` of the instance's global store per batch, through `&Currencies`.
#[batch_processor]
fn name_currency(
    payments: &[Record<String, String>],
    currencies: &Currencies,
    out: &mut Emit<String, String>,
) -> kstreams::Result<()> {
    let codes: Vec<&str> = payments.iter().map(|p| p.value.as_str()).collect();
    for (p, name) in payments.iter().zip(currencies.get_batch(&codes)?) {
        out.forward(p.derive(p.key.clone(), name.unwrap_or_else(|| "-".to_owned())));
    }
    Ok(())
}

#[test]
fn a_global_table_is_read_through_a_shared_reference() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let payments = t.source::<String, String>("payments");
    let named = t.add(name_currency, &payments);
    t.sink("named", &named);
    // After its reader: the order does not matter.
    let _ = t.global_table::<Currencies<'static>>("currency-names");
    let topology = t.build()?;
    // The global store is in no task: the reader's task has no store, and is not tied to any
    // other topic (no co-partitioning).
    assert!(topology.stores().is_empty(), "{:?}", topology.stores());
    assert!(topology.subtopologies()[0].stores.is_empty());
    let mut d = TopologyTestDriver::builder(topology)
        .partitions("payments", 3)
        .partitions("named", 3)
        .build()?;
    d.pipe("currency-names", "EUR".to_owned(), Some("euro".to_owned()))?;
    d.pipe_batch(
        "payments",
        [
            Record::new("p1".to_owned(), "EUR".to_owned()),
            Record::new("p2".to_owned(), "XXX".to_owned()),
        ],
    )?;
    let mut out = outputs(&mut d, "named")?;
    out.sort();
    assert_eq!(
        out,
        [
            ("p1".to_owned(), "euro".to_owned()),
            ("p2".to_owned(), "-".to_owned()),
        ]
    );
    Ok(())
}

#[store(name = "global-rates", history = "1h")]
type GlobalRates = kstreams::VersionedKeyValue<String, u64>;

#[test]
fn a_versioned_global_table_is_read_as_of_each_record_through_a_shared_reference()
-> kstreams::Result<()> {
    #[batch_processor]
    fn convert_globally(
        orders: &[Record<String, u64>],
        rates: &GlobalRates,
        out: &mut Emit<String, String>,
    ) -> kstreams::Result<()> {
        let as_of: Vec<(&str, i64)> = orders
            .iter()
            .map(|o| (o.key.as_str(), o.timestamp))
            .collect();
        for (o, rate) in orders.iter().zip(rates.get_batch_as_of(&as_of)?) {
            let text = rate.map_or("-".to_owned(), |r| (o.value * r.value).to_string());
            out.forward(o.derive(o.key.clone(), text));
        }
        Ok(())
    }
    let mut t = Topology::builder();
    let _ = t.global_table::<GlobalRates<'static>>("rates");
    let orders = t.source::<String, u64>("orders");
    let converted = t.add(convert_globally, &orders);
    t.sink("converted", &converted);
    let mut d = TopologyTestDriver::new(t.build()?)?;
    d.pipe_batch(
        "rates",
        [at("usd", Some(2u64), 10), at("usd", Some(3u64), 20)],
    )?;
    d.pipe_batch(
        "orders",
        [at("usd", 10u64, 5), at("usd", 10, 15), at("usd", 10, 25)],
    )?;
    assert_eq!(
        outputs(&mut d, "converted")?,
        [
            ("usd".to_owned(), "-".to_owned()),
            ("usd".to_owned(), "20".to_owned()),
            ("usd".to_owned(), "30".to_owned()),
        ]
    );
    Ok(())
}

#[test]
fn a_global_tables_store_taken_read_write_is_refused_at_build() {
    #[batch_processor]
    fn rename_currency(
        payments: &[Record<String, String>],
        currencies: &mut Currencies,
    ) -> kstreams::Result<()> {
        for p in payments {
            currencies.put(&p.value, &String::new())?;
        }
        Ok(())
    }
    let mut t = Topology::builder();
    let _ = t.global_table::<Currencies<'static>>("currency-names");
    let payments = t.source::<String, String>("payments");
    let _ = t.add(rename_currency, &payments);
    let (e, message) = refused(t.build());
    assert_eq!(
        e,
        TopologyError::GlobalStoreWritten {
            processor: "rename_currency".into(),
            store: "currencies".into(),
            topic: "currency-names".into(),
        }
    );
    assert!(
        message.contains("`&Store` instead of `&mut Store`"),
        "{message}"
    );
}

#[test]
fn a_global_table_read_as_other_types_is_a_store_conflict() {
    #[store(name = "currencies")]
    type CurrencyIds = kstreams::KeyValue<String, u64>;
    #[batch_processor]
    fn currency_id(payments: &[Record<String, String>], ids: &CurrencyIds) -> kstreams::Result<()> {
        let _ = (payments, ids);
        Ok(())
    }
    let mut t = Topology::builder();
    let _ = t.global_table::<Currencies<'static>>("currency-names");
    let payments = t.source::<String, String>("payments");
    let _ = t.add(currency_id, &payments);
    let (e, message) = refused(t.build());
    assert!(
        matches!(&e, TopologyError::StoreConflict { name, .. } if name == "currencies"),
        "{e:?}"
    );
    assert!(
        message.contains("the global table of topic `currency-names`"),
        "{message}"
    );
}

/// A store that is no table, written by one processor and read by another through `&`: both in
/// one task, the reader sees what the writer wrote before it.
#[store(name = "seen")]
type Seen = kstreams::KeyValue<String, u64>;

#[batch_processor]
fn remember(
    records: &[Record<String, u64>],
    seen: &mut Seen,
    out: &mut Emit<String, u64>,
) -> kstreams::Result<()> {
    for r in records {
        seen.put(&r.key, &r.value)?;
        out.forward(r.clone());
    }
    Ok(())
}

#[batch_processor]
fn recall(
    records: &[Record<String, u64>],
    seen: &Seen,
    out: &mut Emit<String, String>,
) -> kstreams::Result<()> {
    for r in records {
        out.forward(r.derive(r.key.clone(), format!("{:?}", seen.get(&r.key)?)));
    }
    Ok(())
}

#[test]
fn a_plain_store_taken_by_shared_reference_reads_what_its_writer_wrote() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let input = t.source::<String, u64>("input");
    let remembered = t.add(remember, &input);
    let recalled = t.add(recall, &remembered);
    t.sink("recalled", &recalled);
    let mut d = TopologyTestDriver::new(t.build()?)?;
    d.pipe_batch("input", [at("a", 1u64, 1), at("a", 2, 2)])?;
    assert_eq!(
        outputs(&mut d, "recalled")?,
        [
            ("a".to_owned(), "Some(2)".to_owned()),
            ("a".to_owned(), "Some(2)".to_owned()),
        ]
    );
    Ok(())
}
