//! Stream-global-table joins through the test driver (Kafka Streams' `KStreamGlobalKTableJoin`):
//! the key extractor, inner and left, global deletes, an extractor that finds no key (the
//! processing policy, never a silent drop; a left join joins it with `None`), one lookup per
//! record against one per batch.

use kstreams::testing::TopologyTestDriver;
use kstreams::{OnBadRecord, Record, Result, Topology, join};

#[kstreams::store(name = "customers")]
type Customers = kstreams::KeyValue<String, String>;

/// An order's value is `<customer>:<item>`; one without a `:` names no customer.
fn customer_of(o: &Record<String, String>) -> Option<String> {
    o.value.split_once(':').map(|(c, _)| c.to_string())
}

fn topology(left: bool, per_record: bool) -> Result<Topology> {
    let mut t = Topology::builder();
    let customers = t.global_table::<Customers<'static>>("customers");
    let orders = t.source::<String, String>("orders");
    let out = if left {
        let j = join::left_stream_global(
            &customers,
            customer_of,
            |o: &Record<String, String>, c: Option<&String>| {
                format!("{} by {}", o.value, c.map_or("-", |c| c.as_str()))
            },
        );
        t.add(if per_record { j.lookup_per_record() } else { j }, &orders)
    } else {
        let j = join::stream_global(
            &customers,
            customer_of,
            |o: &Record<String, String>, c: &String| format!("{} by {c}", o.value),
        );
        t.add(if per_record { j.lookup_per_record() } else { j }, &orders)
    };
    t.sink("enriched", &out);
    Ok(t.build()?)
}

fn customer(id: &str, name: Option<&str>) -> Record<String, Option<String>> {
    Record::new(id.to_string(), name.map(str::to_string))
}

fn order(id: &str, value: &str) -> Record<String, String> {
    Record::new(id.to_string(), value.to_string())
}

fn outputs(d: &mut TopologyTestDriver) -> Result<Vec<(String, String)>> {
    Ok(d.read_output::<String, String>("enriched")?
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect())
}

fn pipe(d: &mut TopologyTestDriver) -> Result<()> {
    d.pipe_batch(
        "customers",
        [customer("c1", Some("Ada")), customer("c2", Some("Bob"))],
    )?;
    d.pipe_batch("orders", [order("o1", "c1:tea"), order("o2", "c3:jam")])?;
    d.pipe_batch("customers", [customer("c1", None)])?;
    d.pipe_batch("orders", [order("o3", "c1:pie"), order("o4", "c2:oat")])?;
    Ok(())
}

#[test]
fn inner_join_looks_up_the_extracted_key_and_drops_records_without_a_value() -> Result<()> {
    for per_record in [false, true] {
        let mut d = TopologyTestDriver::new(topology(false, per_record)?)?;
        pipe(&mut d)?;
        assert_eq!(
            outputs(&mut d)?,
            [
                ("o1".to_string(), "c1:tea by Ada".to_string()),
                ("o4".to_string(), "c2:oat by Bob".to_string()),
            ]
        );
    }
    Ok(())
}

#[test]
fn left_join_keeps_every_record_with_none_when_the_table_has_no_value() -> Result<()> {
    for per_record in [false, true] {
        let mut d = TopologyTestDriver::new(topology(true, per_record)?)?;
        pipe(&mut d)?;
        assert_eq!(
            outputs(&mut d)?,
            [
                ("o1".to_string(), "c1:tea by Ada".to_string()),
                ("o2".to_string(), "c3:jam by -".to_string()),
                ("o3".to_string(), "c1:pie by -".to_string()),
                ("o4".to_string(), "c2:oat by Bob".to_string()),
            ]
        );
    }
    Ok(())
}

#[test]
fn an_inner_join_record_without_a_key_fails_naming_the_record_by_default() -> Result<()> {
    let mut d = TopologyTestDriver::new(topology(false, false)?)?;
    d.pipe_batch("customers", [customer("c1", Some("Ada"))])?;
    let err = d
        .pipe_batch(
            "orders",
            [order("o1", "c1:tea"), order("o2", "no customer")],
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gave no key") && err.contains("orders"),
        "{err}"
    );
    Ok(())
}

#[test]
fn an_inner_join_record_without_a_key_is_skipped_under_skip_and_the_rest_goes_on() -> Result<()> {
    let mut d = TopologyTestDriver::builder(topology(false, false)?)
        .on_processing_error(OnBadRecord::Skip)
        .build()?;
    d.pipe_batch("customers", [customer("c1", Some("Ada"))])?;
    d.pipe_batch(
        "orders",
        [
            order("o1", "c1:tea"),
            order("o2", "no customer"),
            order("o3", "c1:pie"),
        ],
    )?;
    assert_eq!(
        outputs(&mut d)?,
        [
            ("o1".to_string(), "c1:tea by Ada".to_string()),
            ("o3".to_string(), "c1:pie by Ada".to_string()),
        ]
    );
    Ok(())
}

#[test]
fn a_left_join_record_without_a_key_joins_with_none() -> Result<()> {
    let mut d = TopologyTestDriver::new(topology(true, false)?)?;
    d.pipe_batch("customers", [customer("c1", Some("Ada"))])?;
    d.pipe_batch("orders", [order("o2", "no customer")])?;
    assert_eq!(
        outputs(&mut d)?,
        [("o2".to_string(), "no customer by -".to_string())]
    );
    Ok(())
}

#[kstreams::store(name = "rates", history = "1h")]
type Rates = kstreams::VersionedKeyValue<String, u64>;

#[test]
fn a_versioned_global_table_is_read_as_of_the_stream_records_timestamp() -> Result<()> {
    let mut t = Topology::builder();
    let rates = t.global_table::<Rates<'static>>("rates");
    let trades = t.source::<String, String>("trades");
    let out = t.add(
        join::left_stream_global(
            &rates,
            |tr: &Record<String, String>| tr.value.clone(),
            |tr: &Record<String, String>, rate: Option<&u64>| {
                format!(
                    "{}@{}",
                    tr.key,
                    rate.map_or("-".to_string(), u64::to_string)
                )
            },
        ),
        &trades,
    );
    t.sink("enriched", &out);
    let mut d = TopologyTestDriver::new(t.build()?)?;
    let rate = |v: u64, ts: i64| Record::new("EUR".to_string(), Some(v)).with_timestamp(ts);
    d.pipe_batch("rates", [rate(2, 10), rate(4, 30), rate(3, 20)])?;
    let trade =
        |id: &str, ts: i64| Record::new(id.to_string(), "EUR".to_string()).with_timestamp(ts);
    d.pipe_batch(
        "trades",
        [
            trade("t1", 5),
            trade("t2", 15),
            trade("t3", 25),
            trade("t4", 35),
        ],
    )?;
    assert_eq!(
        outputs(&mut d)?,
        [
            ("t1".to_string(), "t1@-".to_string()),
            ("t2".to_string(), "t2@2".to_string()),
            ("t3".to_string(), "t3@3".to_string()),
            ("t4".to_string(), "t4@4".to_string()),
        ]
    );
    Ok(())
}
