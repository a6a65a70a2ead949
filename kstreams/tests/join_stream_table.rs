//! Stream-table joins through the test driver (Kafka Streams' `KStreamKTableJoin` semantics):
//! inner and left, table deletes, one batched lookup per batch against one lookup per record,
//! a grace on an unversioned table refused at build, and split invariance.

use kstreams::testing::{Batching, SplitCheck, SplitInput, TopologyTestDriver};
use kstreams::{Record, Result, Topology, join};

#[kstreams::store(name = "prices")]
type Prices = kstreams::KeyValue<String, u64>;

/// `(key, value, timestamp)` of each record of `topic`.
fn outputs(driver: &mut TopologyTestDriver, topic: &str) -> Result<Vec<(String, String, i64)>> {
    Ok(driver
        .read_output::<String, String>(topic)?
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect())
}

fn price(key: &str, value: Option<u64>, ts: i64) -> Record<String, Option<u64>> {
    Record::new(key.to_string(), value).with_timestamp(ts)
}

fn order(key: &str, value: &str, ts: i64) -> Record<String, String> {
    Record::new(key.to_string(), value.to_string()).with_timestamp(ts)
}

/// A table of prices and a stream of orders, interleaved by timestamp (the driver orders a
/// task's inputs by timestamp, as the runtime does): an update, a delete, a key never seen.
fn pipe_interleaved(driver: &mut TopologyTestDriver) -> Result<()> {
    driver.append_batch(
        "prices",
        [
            price("apple", Some(3), 10),
            price("pear", Some(5), 20),
            price("apple", Some(4), 40),
            price("pear", None, 60),
        ],
    )?;
    driver.append_batch(
        "orders",
        [
            order("apple", "o1", 15),
            order("pear", "o2", 25),
            order("apple", "o3", 45),
            order("pear", "o4", 65),
            order("plum", "o5", 70),
        ],
    )?;
    driver.process()
}

fn inner_topology(per_record: bool) -> Result<Topology> {
    let mut t = Topology::builder();
    let prices = t.table::<Prices<'static>>("prices");
    let orders = t.source::<String, String>("orders");
    let join = join::stream_table(&prices, |o: &Record<String, String>, p: &u64| {
        format!("{}@{p}", o.value)
    });
    let join = if per_record {
        join.lookup_per_record()
    } else {
        join
    };
    let out = t.add(join, &orders);
    t.sink("priced", &out);
    Ok(t.build()?)
}

fn left_topology() -> Result<Topology> {
    let mut t = Topology::builder();
    let prices = t.table::<Prices<'static>>("prices");
    let orders = t.source::<String, String>("orders");
    let out = t.add(
        join::left_stream_table(&prices, |o: &Record<String, String>, p: Option<&u64>| {
            format!("{}@{}", o.value, p.map_or("-".to_string(), u64::to_string))
        }),
        &orders,
    );
    t.sink("priced", &out);
    Ok(t.build()?)
}

#[test]
fn inner_join_emits_only_records_with_a_table_value_keeping_their_timestamp() -> Result<()> {
    let mut driver = TopologyTestDriver::new(inner_topology(false)?)?;
    pipe_interleaved(&mut driver)?;
    assert_eq!(
        outputs(&mut driver, "priced")?,
        [
            ("apple".into(), "o1@3".into(), 15),
            ("pear".into(), "o2@5".into(), 25),
            ("apple".into(), "o3@4".into(), 45),
        ]
    );
    Ok(())
}

#[test]
fn left_join_emits_every_record_none_after_a_delete_or_for_an_unknown_key() -> Result<()> {
    let mut driver = TopologyTestDriver::new(left_topology()?)?;
    pipe_interleaved(&mut driver)?;
    assert_eq!(
        outputs(&mut driver, "priced")?,
        [
            ("apple".into(), "o1@3".into(), 15),
            ("pear".into(), "o2@5".into(), 25),
            ("apple".into(), "o3@4".into(), 45),
            ("pear".into(), "o4@-".into(), 65),
            ("plum".into(), "o5@-".into(), 70),
        ]
    );
    Ok(())
}

#[test]
fn the_join_keeps_the_headers_of_the_stream_record() -> Result<()> {
    let mut driver = TopologyTestDriver::new(inner_topology(false)?)?;
    driver.pipe_batch("prices", [price("apple", Some(3), 1)])?;
    let headers = kstreams::Headers::new().with("trace", "t-1");
    driver.pipe_batch(
        "orders",
        [order("apple", "o1", 2).with_headers(headers.clone())],
    )?;
    let out = driver.read_output::<String, String>("priced")?;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].headers, headers);
    Ok(())
}

#[test]
fn one_lookup_per_record_gives_the_same_results_as_one_per_batch() -> Result<()> {
    let mut a = TopologyTestDriver::new(inner_topology(false)?)?;
    let mut b = TopologyTestDriver::new(inner_topology(true)?)?;
    pipe_interleaved(&mut a)?;
    pipe_interleaved(&mut b)?;
    let (a, b) = (outputs(&mut a, "priced")?, outputs(&mut b, "priced")?);
    assert_eq!(a.len(), 3);
    assert_eq!(a, b);
    Ok(())
}

#[test]
fn a_grace_on_an_unversioned_table_fails_the_build() {
    let mut t = Topology::builder();
    let prices = t.table::<Prices<'static>>("prices");
    let orders = t.source::<String, String>("orders");
    let out = t.add(
        join::stream_table(&prices, |o: &Record<String, String>, p: &u64| {
            format!("{}@{p}", o.value)
        })
        .grace(std::time::Duration::from_secs(1)),
        &orders,
    );
    t.sink("priced", &out);
    let err = t.build().map(|_| ()).unwrap_err().to_string();
    assert!(
        err.contains("needs a versioned table") && err.contains("`prices`"),
        "{err}"
    );
}

#[test]
fn batch_boundaries_do_not_change_the_join() -> Result<()> {
    let prices = (0..60_i64).map(|i| {
        let v = if i % 11 == 10 { None } else { Some(i as u64) };
        price(&format!("k{}", i % 7), v, i * 10)
    });
    let orders = (0..150_i64).map(|i| order(&format!("k{}", i % 9), &format!("o{i}"), i * 4 + 1));
    let input = SplitInput::new()
        .partitions("prices", 3)
        .partitions("orders", 3)
        .records("prices", prices)?
        .records("orders", orders)?;
    for topology in [inner_topology(false)?, left_topology()?] {
        SplitCheck::new(&topology)
            .seed(11)
            .runs(4)
            .run(&input)
            .map_err(|e| kstreams::Error::processing(e.to_string()))?;
    }
    Ok(())
}

#[test]
fn batches_of_one_and_one_big_batch_agree_in_the_driver() -> Result<()> {
    let run = |batching: Batching| -> Result<Vec<(String, String, i64)>> {
        let mut d = TopologyTestDriver::builder(left_topology()?)
            .batching(batching)
            .build()?;
        pipe_interleaved(&mut d)?;
        outputs(&mut d, "priced")
    };
    let one = run(Batching::Max(1))?;
    assert_eq!(one.len(), 5);
    assert_eq!(one, run(Batching::Max(usize::MAX))?);
    Ok(())
}
