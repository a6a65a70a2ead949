//! Stream-table joins against a versioned table (KIP-889) and with a stream-side grace
//! (KIP-923), through the test driver: lookups as of the stream record's timestamp, out-of-order
//! table updates in their place, late stream records, the grace buffer across a restart, the
//! build-time checks, and split invariance as a property over random inputs and splits.

use std::time::Duration;

use kstreams::testing::{SplitCheck, SplitInput, TopologyTestDriver};
use kstreams::{Record, Result, Topology, join};
use proptest::prelude::*;

#[kstreams::store(name = "prices", history = "1h")]
type Prices = kstreams::VersionedKeyValue<String, u64>;

#[kstreams::store(name = "short-prices", history = "5ms")]
type ShortPrices = kstreams::VersionedKeyValue<String, u64>;

fn price(key: &str, value: Option<u64>, ts: i64) -> Record<String, Option<u64>> {
    Record::new(key.to_string(), value).with_timestamp(ts)
}

fn order(key: &str, value: &str, ts: i64) -> Record<String, String> {
    Record::new(key.to_string(), value.to_string()).with_timestamp(ts)
}

fn outputs(driver: &mut TopologyTestDriver) -> Result<Vec<(String, String, i64)>> {
    Ok(driver
        .read_output::<String, String>("priced")?
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect())
}

fn out(key: &str, value: &str, ts: i64) -> (String, String, i64) {
    (key.to_string(), value.to_string(), ts)
}

/// `prices` joined with `orders`; `left` for a left join, `grace` for a stream-side grace.
fn topology(left: bool, grace: Option<Duration>) -> Result<Topology> {
    let mut t = Topology::builder();
    let prices = t.table::<Prices<'static>>("prices");
    let orders = t.source::<String, String>("orders");
    let priced = if left {
        let j = join::left_stream_table(&prices, |o: &Record<String, String>, p: Option<&u64>| {
            format!("{}@{}", o.value, p.map_or("-".to_string(), u64::to_string))
        });
        let j = match grace {
            Some(g) => j.grace(g),
            None => j,
        };
        t.add(j, &orders)
    } else {
        let j = join::stream_table(&prices, |o: &Record<String, String>, p: &u64| {
            format!("{}@{p}", o.value)
        });
        let j = match grace {
            Some(g) => j.grace(g),
            None => j,
        };
        t.add(j, &orders)
    };
    t.sink("priced", &priced);
    Ok(t.build()?)
}

#[test]
fn a_versioned_table_answers_as_of_the_stream_records_timestamp() -> Result<()> {
    for left in [false, true] {
        let mut d = TopologyTestDriver::new(topology(left, None)?)?;
        // The whole table first, with an update older than the latest (it lands in its place in
        // the history) and a delete; then orders from before, between and after the versions.
        d.pipe_batch(
            "prices",
            [
                price("apple", Some(3), 10),
                price("apple", Some(4), 40),
                price("apple", Some(2), 25),
                price("apple", None, 50),
            ],
        )?;
        d.pipe_batch(
            "orders",
            [
                order("apple", "o1", 5),
                order("apple", "o2", 15),
                order("apple", "o3", 30),
                order("apple", "o4", 45),
                order("apple", "o5", 55),
            ],
        )?;
        let got = outputs(&mut d)?;
        let expected = if left {
            vec![
                out("apple", "o1@-", 5),
                out("apple", "o2@3", 15),
                out("apple", "o3@2", 30),
                out("apple", "o4@4", 45),
                out("apple", "o5@-", 55),
            ]
        } else {
            vec![
                out("apple", "o2@3", 15),
                out("apple", "o3@2", 30),
                out("apple", "o4@4", 45),
            ]
        };
        assert_eq!(got, expected, "left = {left}");
    }
    Ok(())
}

#[test]
fn with_a_grace_a_record_waits_for_late_table_updates_and_late_records_join_at_once() -> Result<()>
{
    let dir = tempfile::tempdir().map_err(|e| kstreams::Error::processing(e.to_string()))?;
    let open = || {
        TopologyTestDriver::builder(topology(false, Some(Duration::from_millis(10)))?)
            .state_dir(dir.path())
            .build()
    };
    let mut d = open()?;
    d.pipe_batch("prices", [price("apple", Some(3), 10)])?;
    // Buffered: stream time 20, so it waits until stream time 30.
    d.pipe_batch("orders", [order("apple", "o1", 20)])?;
    assert_eq!(outputs(&mut d)?, []);
    // A table update older than o1 arrives while o1 waits: o1 will see it.
    d.pipe_batch("prices", [price("apple", Some(5), 15)])?;
    // Stream time 31 releases o1 (20 <= 31 - 10), joined as of 20; o2 waits.
    d.pipe_batch("orders", [order("apple", "o2", 31)])?;
    assert_eq!(outputs(&mut d)?, [out("apple", "o1@5", 20)]);
    // A record older than stream time - grace is late: joined at once, as of its timestamp.
    d.pipe_batch("orders", [order("apple", "o3", 12)])?;
    assert_eq!(outputs(&mut d)?, [out("apple", "o3@3", 12)]);
    // Stream time 45 releases o2 (31 <= 35), o4 waits; o5 (older than o4) waits too; then the
    // driver stops: the buffer and the join's stream time are in the state dir.
    d.pipe_batch(
        "orders",
        [order("apple", "o4", 45), order("apple", "o5", 42)],
    )?;
    assert_eq!(outputs(&mut d)?, [out("apple", "o2@5", 31)]);
    drop(d);

    let mut d = open()?;
    // After the restart, stream time 70 releases o5 and o4, in timestamp order.
    d.pipe_batch("orders", [order("apple", "o6", 70)])?;
    assert_eq!(
        outputs(&mut d)?,
        [out("apple", "o5@5", 42), out("apple", "o4@5", 45)]
    );
    Ok(())
}

#[test]
fn without_a_grace_the_same_input_joins_at_once_with_what_the_table_has_then() -> Result<()> {
    let mut d = TopologyTestDriver::new(topology(false, None)?)?;
    d.pipe_batch("prices", [price("apple", Some(3), 10)])?;
    d.pipe_batch("orders", [order("apple", "o1", 20)])?;
    d.pipe_batch("prices", [price("apple", Some(5), 15)])?;
    assert_eq!(outputs(&mut d)?, [out("apple", "o1@3", 20)]);
    Ok(())
}

#[test]
fn a_grace_longer_than_the_tables_history_fails_the_build() {
    let mut t = Topology::builder();
    let prices = t.table::<ShortPrices<'static>>("prices");
    let orders = t.source::<String, String>("orders");
    let priced = t.add(
        join::stream_table(&prices, |o: &Record<String, String>, p: &u64| {
            format!("{}@{p}", o.value)
        })
        .grace(Duration::from_millis(6)),
        &orders,
    );
    t.sink("priced", &priced);
    let err = t.build().map(|_| ()).unwrap_err().to_string();
    assert!(
        err.contains("longer than the history") && err.contains("`short-prices`"),
        "{err}"
    );
}

#[test]
fn one_lookup_per_record_gives_the_same_results_with_a_grace() -> Result<()> {
    let build = |per_record: bool| -> Result<Topology> {
        let mut t = Topology::builder();
        let prices = t.table::<Prices<'static>>("prices");
        let orders = t.source::<String, String>("orders");
        let j = join::left_stream_table(&prices, |o: &Record<String, String>, p: Option<&u64>| {
            format!("{}@{p:?}", o.value)
        })
        .grace(Duration::from_millis(7));
        let j = if per_record { j.lookup_per_record() } else { j };
        let priced = t.add(j, &orders);
        t.sink("priced", &priced);
        Ok(t.build()?)
    };
    let run = |per_record: bool| -> Result<Vec<(String, String, i64)>> {
        let mut d = TopologyTestDriver::new(build(per_record)?)?;
        for i in 0..40_i64 {
            d.pipe_batch(
                "prices",
                [price(&format!("k{}", i % 4), Some(i as u64), i * 5 + 17)],
            )?;
            d.pipe_batch(
                "orders",
                [order(
                    &format!("k{}", i % 5),
                    &format!("o{i}"),
                    i * 5 - (i % 3) * 6,
                )],
            )?;
        }
        outputs(&mut d)
    };
    let batched = run(false)?;
    assert!(batched.len() > 20, "{}", batched.len());
    assert_eq!(batched, run(true)?);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// However the input is cut into batches, a versioned join with or without a grace gives
    /// the same output and leaves the same stores (the grace buffer included).
    #[test]
    fn batch_boundaries_do_not_change_a_versioned_join(
        prices in prop::collection::vec((0u8..5, prop::option::of(0u64..100), 0i64..200), 1..40),
        orders in prop::collection::vec((0u8..6, 0i64..200), 1..60),
        grace in prop::option::of(0u64..30),
        left in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let input = SplitInput::new()
            .partitions("prices", 2)
            .partitions("orders", 2)
            .records("prices", prices.iter().map(|(k, v, t)| price(&format!("k{k}"), *v, *t)))
            .and_then(|i| i.records("orders", orders.iter().enumerate().map(|(n, (k, t))| order(&format!("k{k}"), &format!("o{n}"), *t))));
        let input = input.map_err(|e| TestCaseError::fail(e.to_string()))?;
        let topology = topology(left, grace.map(Duration::from_millis))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        SplitCheck::new(&topology)
            .seed(seed)
            .runs(2)
            .run(&input)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

#[test]
fn the_grace_buffer_is_a_changelogged_store_of_the_join() -> Result<()> {
    let with_grace = topology(false, Some(Duration::from_millis(10)))?;
    let buffer = with_grace
        .stores()
        .iter()
        .find(|s| s.name() == "prices-join-buffer")
        .map(|s| s.changelog_enabled());
    assert_eq!(buffer, Some(true));
    // Without a grace there is no buffer.
    let without = topology(false, None)?;
    assert!(
        !without
            .stores()
            .iter()
            .any(|s| s.name().ends_with("-buffer"))
    );
    Ok(())
}

#[kstreams::store(name = "left-versions", history = "1h")]
type LeftVersions = kstreams::VersionedKeyValue<String, u64>;

#[kstreams::store(name = "right-versions", history = "1h")]
type RightVersions = kstreams::VersionedKeyValue<String, u64>;

#[test]
fn a_table_table_join_of_versioned_tables_is_timestamped_with_the_later_side() -> Result<()> {
    let mut t = Topology::builder();
    let l = t.table::<LeftVersions<'static>>("left");
    let r = t.table::<RightVersions<'static>>("right");
    let rows = t.join_tables(
        "rows",
        &l,
        &r,
        kstreams::join::JoinKind::Inner,
        |l: Option<&u64>, r: Option<&u64>| l.copied().unwrap_or(0) + r.copied().unwrap_or(0),
    );
    t.sink("rows", &rows);
    let mut d = TopologyTestDriver::new(t.build()?)?;
    d.pipe_batch("left", [price("a", Some(1), 10)])?;
    d.pipe_batch("right", [price("a", Some(2), 5)])?;
    // An out-of-order update of the left table (older than its latest) changes nothing.
    d.pipe_batch("left", [price("a", Some(7), 8)])?;
    d.pipe_batch("right", [price("a", Some(3), 20)])?;
    let rows: Vec<(Option<u64>, i64)> = d
        .read_output::<String, Option<u64>>("rows")?
        .into_iter()
        .map(|r| (r.value, r.timestamp))
        .collect();
    assert_eq!(rows, [(Some(3), 10), (Some(4), 20)]);
    Ok(())
}
