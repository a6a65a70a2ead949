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
