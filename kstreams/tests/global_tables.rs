//! Global tables through the test driver: every partition of the table's topic in one store per
//! instance, read by any task, updated in the order records are piped; a processor that reads
//! a global store the topology lacks fails the build.

use kstreams::testing::TopologyTestDriver;
use kstreams::topology::TopologyError;
use kstreams::{
    BatchProcessor, Context, InitContext, OnBadRecord, Record, Result, Topology, store,
};

#[store(name = "currencies")]
type Currencies = kstreams::KeyValue<String, String>;

#[store(name = "seen")]
type Seen = kstreams::KeyValue<String, u64>;

/// A payment (key: id, value: currency code) with its currency's name, from the global
/// store `store` read as `String` → `V`.
#[derive(Clone)]
struct Name<V> {
    store: &'static str,
    _v: std::marker::PhantomData<fn() -> V>,
}

fn name(store: &'static str) -> Name<String> {
    Name {
        store,
        _v: std::marker::PhantomData,
    }
}

impl<V: std::fmt::Display + 'static> BatchProcessor<String, String> for Name<V> {
    type OutKey = String;
    type OutValue = String;

    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
        ctx.require_global_store::<String, V>(self.store)
    }

    fn process_batch(
        &mut self,
        records: &[Record<String, String>],
        ctx: &mut Context<'_, String, String>,
    ) -> Result<()> {
        let currencies = ctx.global_store::<String, V>(self.store)?;
        let codes: Vec<String> = records.iter().map(|r| r.value.clone()).collect();
        let names = currencies.get_batch(&codes)?;
        for (r, name) in records.iter().zip(names) {
            let name = name.map_or_else(|| "?".to_owned(), |n| n.to_string());
            ctx.forward(r.derive(r.key.clone(), name));
        }
        Ok(())
    }
}

fn payments_named() -> Topology {
    let mut t = Topology::builder();
    let currencies = t.global_table::<Currencies<'static>>("currencies");
    assert_eq!(
        (currencies.topic(), currencies.store_name()),
        ("currencies", "currencies")
    );
    let payments = t.source::<String, String>("payments");
    let named = t.add(name("currencies"), &payments);
    t.sink("named", &named);
    t.build().expect("topology")
}

fn at(key: &str, value: &str, ts: i64) -> Record<String, String> {
    Record::new(key.to_owned(), value.to_owned()).with_timestamp(ts)
}

fn named(d: &mut TopologyTestDriver) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = d
        .read_output::<String, String>("named")
        .expect("named")
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    out.sort();
    out
}

#[test]
fn every_task_reads_the_global_table_as_piped_before_its_records() -> Result<()> {
    for in_memory in [false, true] {
        let mut b = TopologyTestDriver::builder(payments_named())
            // Not co-partitioned: a global table needs no co-partitioning.
            .partitions("currencies", 3)
            .partitions("payments", 2)
            .partitions("named", 2);
        if in_memory {
            b = b.in_memory_state();
        }
        let mut d = b.build()?;
        d.pipe_batch(
            "currencies",
            [
                Record::new("EUR".to_owned(), Some("euro".to_owned())),
                Record::new("CHF".to_owned(), Some("franc".to_owned())),
                Record::new("JPY".to_owned(), Some("yen".to_owned())),
            ],
        )?;
        d.append_batch(
            "payments",
            [at("p1", "EUR", 1), at("p2", "CHF", 2), at("p3", "JPY", 3)],
        )?;
        // Applied after the payments above were piped: they do not see it, later ones do.
        d.append_batch(
            "currencies",
            [Record::new("EUR".to_owned(), Some("Euro".to_owned()))],
        )?;
        d.append_batch::<String, Option<String>>(
            "currencies",
            [Record::new("CHF".to_owned(), None)],
        )?;
        d.append_batch("payments", [at("p4", "EUR", 4), at("p5", "CHF", 5)])?;
        d.process()?;
        assert_eq!(
            named(&mut d),
            vec![
                ("p1".to_owned(), "euro".to_owned()),
                ("p2".to_owned(), "franc".to_owned()),
                ("p3".to_owned(), "yen".to_owned()),
                ("p4".to_owned(), "Euro".to_owned()),
                ("p5".to_owned(), "?".to_owned()),
            ],
            "in memory: {in_memory}"
        );
        assert_eq!(
            d.global_store::<String, String>("currencies")?,
            vec![
                ("EUR".to_owned(), "Euro".to_owned()),
                ("JPY".to_owned(), "yen".to_owned())
            ]
        );
        // Both payment partitions were used, and no task holds the global store.
        assert_eq!(d.tasks().count(), 2);
        assert!(d.store::<String, String>("currencies").is_err());
    }
    Ok(())
}

#[test]
fn a_global_table_is_in_no_sub_topology_and_is_described() {
    let topology = payments_named();
    assert_eq!(topology.subtopologies().len(), 1);
    assert!(topology.subtopologies()[0].stores.is_empty());
    assert!(
        !topology
            .source_topics()
            .iter()
            .any(|t| &**t == "currencies")
    );
    let globals = topology.global_tables();
    assert_eq!(globals.len(), 1);
    assert_eq!(
        (&*globals[0].0, globals[0].1.name()),
        ("currencies", "currencies")
    );
    let text = topology.describe();
    assert!(
        text.contains("Global table: currencies (topic: currencies, store: currencies)"),
        "{text}"
    );
    let mermaid = topology.describe_mermaid();
    assert!(
        mermaid.contains("global_currencies --> store_currencies"),
        "{mermaid}"
    );
}

#[test]
fn reading_a_missing_global_store_is_a_build_error_naming_it() {
    let mut t = Topology::builder();
    let payments = t.source::<String, String>("payments");
    let named = t.add(name("currencies"), &payments);
    t.sink("named", &named);
    match t.build() {
        Err(TopologyError::Init { node, message }) => {
            assert_eq!(node, "Name");
            assert!(
                message.contains("the global store `currencies`, which the topology does not have"),
                "{message}"
            );
            assert!(message.contains("it has no global stores"), "{message}");
        }
        other => panic!("expected an init error, got {other:?}"),
    }
    // Another global store: it is named.
    let mut t = Topology::builder();
    let _ = t.global_table::<Seen<'static>>("seen-topic");
    let payments = t.source::<String, String>("payments");
    let named = t.add(name("currencies"), &payments);
    t.sink("named", &named);
    let err = t.build().expect_err("missing").to_string();
    assert!(err.contains("its global stores: `seen`"), "{err}");
}

#[test]
fn reading_a_global_store_as_other_types_is_a_build_error() {
    let mut t = Topology::builder();
    let _ = t.global_table::<Currencies<'static>>("currencies");
    let payments = t.source::<String, String>("payments");
    let wrong = Name::<u64> {
        store: "currencies",
        _v: std::marker::PhantomData,
    };
    let named = t.add(wrong, &payments);
    t.sink("named", &named);
    let err = t.build().expect_err("wrong types").to_string();
    assert!(
        err.contains("reads the global store `currencies` as `alloc::string::String` → `u64`"),
        "{err}"
    );
}

#[test]
fn a_global_topic_read_by_a_source_too_or_a_shared_store_name_is_a_build_error() {
    let mut t = Topology::builder();
    let _ = t.global_table::<Currencies<'static>>("currencies");
    let again = t.source::<String, String>("currencies");
    t.sink("out", &again);
    assert_eq!(
        t.build().map(|_| ()),
        Err(TopologyError::DuplicateSourceTopic("currencies".into()))
    );

    let mut t = Topology::builder();
    let _ = t.global_table::<Currencies<'static>>("currencies");
    let _ = t.table::<Currencies<'static>>("local-currencies");
    assert!(
        matches!(t.build(), Err(TopologyError::InvalidTable { store, .. }) if store == "currencies")
    );
}

#[test]
fn a_global_record_that_cannot_be_read_goes_through_the_deserialization_policy() -> Result<()> {
    // `seen` holds u64 values: 3 bytes are not one.
    let topology = || {
        let mut t = Topology::builder();
        let _ = t.global_table::<Seen<'static>>("seen-topic");
        let payments = t.source::<String, String>("payments");
        let named = t.add(
            Name::<u64> {
                store: "seen",
                _v: std::marker::PhantomData,
            },
            &payments,
        );
        t.sink("named", &named);
        t.build().expect("topology")
    };
    let bad = |d: &mut TopologyTestDriver| {
        d.append_raw(
            "seen-topic",
            Some(0),
            Some(b"EUR".to_vec()),
            Some(vec![1, 2, 3]),
            0,
            Default::default(),
        )
    };
    let mut d = TopologyTestDriver::new(topology())?;
    let err = bad(&mut d).expect_err("fails").to_string();
    assert!(
        err.contains("seen-topic") && err.contains("offset 0"),
        "{err}"
    );

    let mut d = TopologyTestDriver::builder(topology())
        .on_deserialization_error(OnBadRecord::Skip)
        .build()?;
    bad(&mut d)?;
    d.pipe("seen-topic", "CHF".to_owned(), Some(7u64))?;
    d.pipe_batch("payments", [at("p1", "EUR", 1), at("p2", "CHF", 2)])?;
    assert_eq!(
        named(&mut d),
        vec![
            ("p1".to_owned(), "?".to_owned()),
            ("p2".to_owned(), "7".to_owned())
        ]
    );
    Ok(())
}

#[test]
fn a_topology_of_global_tables_only_builds() -> Result<()> {
    let mut t = Topology::builder();
    let _ = t.global_table::<Currencies<'static>>("currencies");
    let topology = t.build()?;
    assert!(topology.subtopologies().is_empty());
    let mut d = TopologyTestDriver::new(topology)?;
    d.pipe("currencies", "EUR".to_owned(), "euro".to_owned())?;
    Ok(())
}

/// A versioned global store: one hour of history.
#[store(name = "rates", history = "1h")]
type Rates = kstreams::VersionedKeyValue<String, u64>;

/// A payment (value: currency) with the rate valid at the payment's time.
#[derive(Clone)]
struct RateAsOf;

impl BatchProcessor<String, String> for RateAsOf {
    type OutKey = String;
    type OutValue = String;

    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
        ctx.require_global_store::<String, u64>("rates")
    }

    fn process_batch(
        &mut self,
        records: &[Record<String, String>],
        ctx: &mut Context<'_, String, String>,
    ) -> Result<()> {
        let rates = ctx.global_versioned_store::<String, u64>("rates")?;
        let keys: Vec<(String, i64)> = records
            .iter()
            .map(|r| (r.value.clone(), r.timestamp))
            .collect();
        let found = rates.get_batch_as_of(&keys)?;
        for (r, rate) in records.iter().zip(found) {
            let rate = rate.map_or_else(|| "?".to_owned(), |v| v.value.to_string());
            ctx.forward(r.derive(r.key.clone(), rate));
        }
        Ok(())
    }
}

#[test]
fn a_versioned_global_table_answers_as_of_the_records_time() -> Result<()> {
    let mut t = Topology::builder();
    let _ = t.global_table::<Rates<'static>>("rates");
    let payments = t.source::<String, String>("payments");
    let rated = t.add(RateAsOf, &payments);
    t.sink("named", &rated);
    let mut d = TopologyTestDriver::new(t.build()?)?;
    d.pipe_batch(
        "rates",
        [
            Record::new("EUR".to_owned(), Some(10u64)).with_timestamp(100),
            Record::new("EUR".to_owned(), Some(12u64)).with_timestamp(300),
            // Out of order: lands in its place in the history.
            Record::new("EUR".to_owned(), Some(11u64)).with_timestamp(200),
        ],
    )?;
    d.pipe_batch(
        "payments",
        [
            at("p0", "EUR", 50),
            at("p1", "EUR", 150),
            at("p2", "EUR", 250),
            at("p3", "EUR", 350),
        ],
    )?;
    assert_eq!(
        named(&mut d),
        vec![
            ("p0".to_owned(), "?".to_owned()),
            ("p1".to_owned(), "10".to_owned()),
            ("p2".to_owned(), "11".to_owned()),
            ("p3".to_owned(), "12".to_owned()),
        ]
    );
    Ok(())
}

#[test]
fn a_global_table_and_its_readers_are_split_invariant() -> Result<()> {
    use kstreams::testing::{SplitInput, check_split_invariance};
    let codes = ["EUR", "CHF", "JPY"];
    let mut input = SplitInput::new()
        .partitions("currencies", 2)
        .partitions("payments", 3)
        .partitions("named", 3);
    // Table updates and payments interleaved, in rounds: each payment sees the updates piped
    // before it, however the payments are cut into batches.
    for round in 0..10i64 {
        input = input
            .records(
                "currencies",
                (0..3).map(|i: i64| {
                    let name = ((round + i) % 4 != 3).then(|| format!("name{round}-{i}"));
                    Record::new(codes[i as usize].to_owned(), name).with_timestamp(round * 10)
                }),
            )?
            .records(
                "payments",
                (0..9).map(|i: i64| {
                    at(
                        &format!("p{round}-{i}"),
                        codes[(i % 3) as usize],
                        round * 10 + i,
                    )
                }),
            )?;
    }
    check_split_invariance(&payments_named(), &input, 5, 4)
}
