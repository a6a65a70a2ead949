//! Windowed aggregation against hand-computed Kafka Streams results: tumbling and hopping
//! windows, grace, late and out-of-order records, emit on update vs on close, dead-lettered late
//! records, restarts, and split invariance.
//!
//! The handles are written by hand (what `#[store(window = ...)]` generates), so these tests do
//! not depend on the macros.

mod common;

use std::ops::{Deref, DerefMut};

use kstreams::policy::OnBadRecord;
use kstreams::serde::{StringSerde, U64Serde};
use kstreams::store::{StoreHandle, StoreSpec};
use kstreams::testing::{SplitCheck, SplitInput, TopologyTestDriver};
use kstreams::window::{
    self, EmitStrategy, OnLate, TimeKind, TimeWindowState, TimeWindowedSerde, Windowed,
    WindowedHandle, Windowing, Windows,
};
use kstreams::{KeyValueStore, Record, Topology};
use proptest::prelude::*;

/// A hand-written windowed handle over `String` keys and `u64` aggregates.
macro_rules! handle {
    ($name:ident, $store:literal, $windowing:expr) => {
        #[derive(Debug)]
        struct $name<'t>(TimeWindowState<'t, String, u64>);

        impl<'t> StoreHandle<'t> for $name<'t> {
            const NAME: &'static str = $store;
            type Key = String;
            type Value = u64;
            fn spec() -> StoreSpec {
                kstreams::__private::window_store_spec(
                    StoreSpec::new::<String, u64>($store),
                    &<Self as WindowedHandle<'t>>::windowing(),
                )
            }
            fn bind(store: KeyValueStore<'t, String, u64>) -> Self {
                $name(kstreams::__private::time_window_state(
                    store,
                    <Self as WindowedHandle<'t>>::windowing(),
                ))
            }
        }

        impl<'t> WindowedHandle<'t> for $name<'t> {
            type Kind = TimeKind;
            fn windowing() -> Windowing {
                $windowing
            }
        }

        impl<'t> Deref for $name<'t> {
            type Target = TimeWindowState<'t, String, u64>;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        impl<'t> DerefMut for $name<'t> {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.0
            }
        }
    };
}

fn tumbling(size: i64, grace: i64) -> Windows {
    kstreams::__private::time_windows_ms(size, size, grace)
}

fn hopping(size: i64, advance: i64, grace: i64) -> Windows {
    kstreams::__private::time_windows_ms(size, advance, grace)
}

handle!(
    TumblingUpdate,
    "tumbling-update",
    Windowing::new(tumbling(10, 5))
);
handle!(
    TumblingClose,
    "tumbling-close",
    Windowing::new(tumbling(10, 5)).emit(EmitStrategy::OnWindowClose)
);
handle!(
    HoppingUpdate,
    "hopping-update",
    Windowing::new(hopping(10, 5, 0))
);
handle!(
    HoppingClose,
    "hopping-close",
    Windowing::new(hopping(10, 5, 2)).emit(EmitStrategy::OnWindowClose)
);
handle!(
    LateToDlq,
    "late-to-dlq",
    Windowing::new(tumbling(10, 0)).on_late(OnLate::DeadLetter)
);

fn rec(key: &str, ts: i64) -> Record<String, String> {
    Record::new(key.to_owned(), String::new()).with_timestamp(ts)
}

/// `(key, start, end, count)` of each output, in order.
type Row = (String, i64, i64, u64);

fn rows(driver: &mut TopologyTestDriver, size: i64) -> kstreams::Result<Vec<Row>> {
    Ok(driver
        .read_output_with(
            "out",
            &TimeWindowedSerde::new(StringSerde).with_window_size(size),
            &U64Serde,
        )?
        .into_iter()
        .map(|r| (r.key.key, r.key.window.start, r.key.window.end, r.value))
        .collect())
}

fn row(key: &str, start: i64, end: i64, n: u64) -> Row {
    (key.to_owned(), start, end, n)
}

fn count_topology<S>() -> kstreams::Result<Topology>
where
    S: WindowedHandle<'static, Key = String, Value = u64, Kind = TimeKind> + 'static,
{
    let mut t = Topology::builder();
    let input = t.source::<String, String>("in");
    let counts = t.add(window::count::<S>(), &input);
    t.sink("out", &counts);
    Ok(t.build()?)
}

/// The tumbling case's input: out of order, and late records for windows already closed.
fn tumbling_input() -> Vec<Record<String, String>> {
    vec![
        rec("a", 1),
        rec("a", 5),
        rec("b", 7),
        rec("a", 12),
        // Out of order, but [0, 10) is open until stream time reaches 10 + 5.
        rec("a", 3),
        rec("a", 16),
        // Stream time 16 >= 10 + 5: [0, 10) is closed, the record is late.
        rec("a", 4),
        rec("b", 25),
        // Stream time 25 >= 20 + 5: [10, 20) is closed too.
        rec("a", 14),
    ]
}

#[test]
fn tumbling_on_update_forwards_every_change_and_drops_late_records() -> kstreams::Result<()> {
    // Kafka Streams (TimeWindows.ofSizeAndGrace(10 ms, 5 ms), count(), the default emit
    // strategy, caching off) forwards these, computed by hand from KStreamWindowAggregate.
    for batch in [true, false] {
        let mut d = TopologyTestDriver::new(count_topology::<TumblingUpdate<'static>>()?)?;
        if batch {
            d.pipe_batch("in", tumbling_input())?;
        } else {
            for r in tumbling_input() {
                d.pipe_batch("in", [r])?;
            }
        }
        assert_eq!(
            rows(&mut d, 10)?,
            vec![
                row("a", 0, 10, 1),
                row("a", 0, 10, 2),
                row("b", 0, 10, 1),
                row("a", 10, 20, 1),
                row("a", 0, 10, 3),
                row("a", 10, 20, 2),
                row("b", 20, 30, 1),
            ],
            "one batch: {batch}"
        );
        // Retention is size + grace = 15: at stream time 25 the windows starting at or before 10
        // are expired; only [20, 30) is left.
        assert_eq!(
            d.window_store::<String, u64>("tumbling-update")?,
            vec![("b".to_owned(), 20, 1)]
        );
    }
    Ok(())
}

#[test]
fn late_records_are_counted_once_each() -> kstreams::Result<()> {
    let recorder = common::CountOne {
        name: "kstreams_late_records_total",
        ..common::CountOne::default()
    };
    let mut d = TopologyTestDriver::new(count_topology::<TumblingUpdate<'static>>()?)?;
    metrics::with_local_recorder(&recorder, || d.pipe_batch("in", tumbling_input()))?;
    assert_eq!(
        recorder.total.load(std::sync::atomic::Ordering::Relaxed),
        2,
        "a@4 and a@14 are late"
    );
    Ok(())
}

#[test]
fn tumbling_on_close_forwards_each_window_once_when_final() -> kstreams::Result<()> {
    let mut d = TopologyTestDriver::new(count_topology::<TumblingClose<'static>>()?)?;
    d.pipe_batch("in", tumbling_input())?;
    // Stream time 25, grace 5: the windows ending at or before 20 are final, in (end, start,
    // key) order; [20, 30) is still open.
    assert_eq!(
        rows(&mut d, 10)?,
        vec![row("a", 0, 10, 3), row("b", 0, 10, 1), row("a", 10, 20, 2)]
    );
    // Nothing new closes at stream time 26.
    d.pipe("in", "c".to_owned(), String::new())?; // timestamp 0: late, changes nothing
    d.pipe_batch("in", [rec("c", 26)])?;
    assert_eq!(rows(&mut d, 10)?, vec![]);
    // Stream time 40 closes [20, 30) (b) but not [20, 30) again, nor [30, 40) (empty).
    d.pipe_batch("in", [rec("b", 40)])?;
    assert_eq!(
        rows(&mut d, 10)?,
        vec![row("b", 20, 30, 1), row("c", 20, 30, 1)]
    );
    Ok(())
}

#[test]
fn on_close_results_carry_the_window_end_as_timestamp() -> kstreams::Result<()> {
    let mut d = TopologyTestDriver::new(count_topology::<TumblingClose<'static>>()?)?;
    d.pipe_batch("in", [rec("a", 3), rec("a", 15)])?;
    let out = d.read_output_with(
        "out",
        &TimeWindowedSerde::new(StringSerde).with_window_size(10),
        &U64Serde,
    )?;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].timestamp, 9);
    Ok(())
}

#[test]
fn hopping_windows_follow_java_windows_for() -> kstreams::Result<()> {
    // TimeWindows.ofSizeAndGrace(10 ms, 0).advanceBy(5 ms), count().
    let mut d = TopologyTestDriver::new(count_topology::<HoppingUpdate<'static>>()?)?;
    d.pipe_batch(
        "in",
        [
            rec("a", 7),  // [0, 10), [5, 15)
            rec("a", 12), // [5, 15), [10, 20); stream time 12
            rec("a", 9),  // [0, 10) is closed (10 <= 12); [5, 15) takes it
            rec("a", 4),  // only in [0, 10): late
        ],
    )?;
    assert_eq!(
        rows(&mut d, 10)?,
        vec![
            row("a", 0, 10, 1),
            row("a", 5, 15, 1),
            row("a", 5, 15, 2),
            row("a", 10, 20, 1),
            row("a", 5, 15, 3),
        ]
    );
    Ok(())
}

#[test]
fn hopping_on_close_with_grace() -> kstreams::Result<()> {
    // Size 10, advance 5, grace 2, on close.
    let mut d = TopologyTestDriver::new(count_topology::<HoppingClose<'static>>()?)?;
    d.pipe_batch("in", [rec("a", 1), rec("b", 6), rec("a", 11)])?;
    // Stream time 11: [0, 10) closes at 12; nothing is final yet.
    assert_eq!(rows(&mut d, 10)?, vec![]);
    d.pipe_batch("in", [rec("a", 8), rec("a", 12)])?;
    // a@8 (stream time 11) still counts in [0, 10) and [5, 15). Stream time 12: [0, 10) final.
    assert_eq!(
        rows(&mut d, 10)?,
        vec![row("a", 0, 10, 2), row("b", 0, 10, 1)]
    );
    d.pipe_batch("in", [rec("a", 40)])?;
    assert_eq!(
        rows(&mut d, 10)?,
        vec![row("a", 5, 15, 3), row("b", 5, 15, 1), row("a", 10, 20, 2),]
    );
    Ok(())
}

#[test]
fn a_far_future_record_still_emits_every_window_it_closes() -> kstreams::Result<()> {
    // KAFKA-12960: retention is size + grace (15); a jump of stream time from 5 to 1,000,000
    // must not hide [0, 10) before it is emitted.
    let mut d = TopologyTestDriver::new(count_topology::<TumblingClose<'static>>()?)?;
    d.pipe_batch("in", [rec("a", 5)])?;
    d.pipe_batch("in", [rec("a", 1_000_000)])?;
    assert_eq!(rows(&mut d, 10)?, vec![row("a", 0, 10, 1)]);
    Ok(())
}

#[test]
fn late_records_go_to_the_dead_letter_topic_with_why_in_headers() -> kstreams::Result<()> {
    let mut d = TopologyTestDriver::builder(count_topology::<LateToDlq<'static>>()?)
        .on_processing_error(OnBadRecord::DeadLetter {
            topic: "dlq".into(),
        })
        .build()?;
    d.pipe_batch("in", [rec("a", 20), rec("a", 3)])?;
    let dlq = d.read_output_raw("dlq");
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let r = &dlq[0].2;
    assert_eq!(r.key.as_deref(), Some(&b"a"[..]));
    let h = |n: &str| {
        r.headers
            .last(n)
            .flatten()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(h("kstreams.error.stage").as_deref(), Some("late"));
    assert_eq!(h("kstreams.late.timestamp").as_deref(), Some("3"));
    assert_eq!(h("kstreams.late.stream.time").as_deref(), Some("20"));
    assert_eq!(h("kstreams.late.grace.ms").as_deref(), Some("0"));
    assert_eq!(h("kstreams.error.offset").as_deref(), Some("1"));
    assert_eq!(rows(&mut d, 10)?, vec![row("a", 20, 30, 1)]);
    Ok(())
}

#[test]
fn dead_lettering_late_records_without_a_dead_letter_topic_is_a_config_error()
-> kstreams::Result<()> {
    // Found when the driver (or the app) is built, before any record.
    let err = TopologyTestDriver::new(count_topology::<LateToDlq<'static>>()?)
        .expect_err("no dead-letter topic");
    let msg = err.to_string();
    assert!(
        msg.contains("late-to-dlq") && msg.contains("dead-letter topic"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn negative_timestamps_are_bad_records_not_silent_drops() -> kstreams::Result<()> {
    let mut d = TopologyTestDriver::new(count_topology::<TumblingUpdate<'static>>()?)?;
    let err = d
        .pipe_batch("in", [rec("a", -1)])
        .expect_err("the Fail policy stops on a negative timestamp");
    let msg = err.to_string();
    assert!(
        msg.contains("negative timestamp -1") && msg.contains("offset 0"),
        "{msg}"
    );

    let mut d = TopologyTestDriver::builder(count_topology::<TumblingUpdate<'static>>()?)
        .on_processing_error(OnBadRecord::Skip)
        .build()?;
    d.pipe_batch("in", [rec("a", -1), rec("a", 1)])?;
    assert_eq!(rows(&mut d, 10)?, vec![row("a", 0, 10, 1)]);
    Ok(())
}

#[test]
fn a_restart_neither_re_emits_nor_reopens() -> kstreams::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let driver = || {
        TopologyTestDriver::builder(count_topology::<TumblingClose<'static>>()?)
            .state_dir(dir.path())
            .build()
    };
    let mut d = driver()?;
    d.pipe_batch("in", [rec("a", 1), rec("a", 12), rec("b", 16)])?;
    assert_eq!(rows(&mut d, 10)?, vec![row("a", 0, 10, 1)]);
    drop(d);
    let mut d = driver()?;
    // Stream time is still 16: a@2 is late (not a new [0, 10)), and stream time 17 closes
    // nothing already emitted.
    d.pipe_batch("in", [rec("a", 2), rec("a", 17)])?;
    assert_eq!(rows(&mut d, 10)?, vec![]);
    d.pipe_batch("in", [rec("a", 30)])?;
    assert_eq!(
        rows(&mut d, 10)?,
        vec![row("a", 10, 20, 2), row("b", 10, 20, 1)]
    );
    Ok(())
}

#[test]
fn stream_time_is_logged_to_the_changelog_under_a_reserved_key() -> kstreams::Result<()> {
    let mut d = TopologyTestDriver::new(count_topology::<TumblingClose<'static>>()?)?;
    d.pipe_batch("in", [rec("a", 1), rec("a", 12)])?;
    let log = d.read_output_raw("test-app-tumbling-close-changelog");
    let times: Vec<i64> = log
        .iter()
        .filter(|(_, _, r)| r.key.as_deref() == Some(&b"\x00kst-time"[..]))
        .filter_map(|(_, _, r)| r.value.as_deref())
        .filter_map(|v| <[u8; 8]>::try_from(v).ok())
        .map(i64::from_be_bytes)
        .collect();
    assert_eq!(times, vec![12], "one stream-time record per batch");
    Ok(())
}

/// Random input: keys a..c, timestamps mostly increasing with out-of-order and late ones.
fn input_strategy() -> impl Strategy<Value = Vec<(u8, i64)>> {
    prop::collection::vec((0u8..3, -15i64..25), 1..60).prop_map(|steps| {
        let mut t = 0i64;
        steps
            .into_iter()
            .map(|(k, d)| {
                t = (t + d.max(0)).max(0);
                // Negative steps are records from the past (out of order or late).
                (k, (t + d.min(0)).max(0))
            })
            .collect()
    })
}

fn split_check<S>(steps: &[(u8, i64)]) -> Result<(), String>
where
    S: WindowedHandle<'static, Key = String, Value = u64, Kind = TimeKind> + 'static,
{
    let topology = count_topology::<S>().map_err(|e| e.to_string())?;
    let records = steps
        .iter()
        .map(|(k, ts)| rec(&format!("{}", (b'a' + k) as char), *ts));
    let input = SplitInput::new()
        .records("in", records)
        .map_err(|e| e.to_string())?;
    SplitCheck::new(&topology)
        .seed(steps.len() as u64)
        .runs(2)
        .run(&input)
        .map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn windowed_count_is_split_invariant(steps in input_strategy()) {
        prop_assert_eq!(split_check::<TumblingUpdate<'static>>(&steps), Ok(()));
        prop_assert_eq!(split_check::<TumblingClose<'static>>(&steps), Ok(()));
        prop_assert_eq!(split_check::<HoppingUpdate<'static>>(&steps), Ok(()));
        prop_assert_eq!(split_check::<HoppingClose<'static>>(&steps), Ok(()));
    }
}

#[test]
fn windowed_keys_are_javas_bytes() {
    use kstreams::serde::Serde;
    let k = Windowed {
        key: "k".to_owned(),
        window: kstreams::Window { start: 1, end: 11 },
    };
    let bytes = TimeWindowedSerde::new(StringSerde)
        .serialize(&k)
        .ok()
        .flatten();
    assert_eq!(bytes, Some(vec![b'k', 0, 0, 0, 0, 0, 0, 0, 1]));
}

#[test]
fn a_restore_from_the_changelog_brings_back_the_stream_time() -> kstreams::Result<()> {
    // A lost disk: the store is rebuilt from its changelog alone, and knows its stream time
    // again (so a late record stays late, a final window is not emitted again).
    let mut d = TopologyTestDriver::new(count_topology::<TumblingClose<'static>>()?)?;
    d.pipe_batch("in", [rec("a", 1), rec("a", 12)])?;
    d.pipe_batch("in", [rec("a", 18)])?;
    let log = d.read_output_raw("test-app-tumbling-close-changelog");
    let mut fresh = kstreams::store::StateStores::in_memory(vec![TumblingClose::spec()])?;
    fresh.transaction(|t| {
        for (_, _, r) in &log {
            if let Some(k) = &r.key {
                t.restore_raw(0, k, r.value.as_deref(), r.timestamp)?;
            }
        }
        Ok(())
    })?;
    let (time, windows) = fresh.transaction(|t| {
        let w = t.window_store::<String, u64>("tumbling-close")?;
        Ok((w.stream_time()?, w.fetch_all(i64::MIN, i64::MAX)?))
    })?;
    assert_eq!(time, Some(18));
    assert_eq!(windows, vec![("a".to_owned(), 10, 2)]);
    Ok(())
}

// ---- The library operators ----------------------------------------------------------------

handle!(
    Sums,
    "sums",
    Windowing::new(tumbling(10, 100)).emit(EmitStrategy::OnWindowClose)
);

#[test]
fn window_reduce_and_aggregate_fold_each_window() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let input = t.source::<String, u64>("in");
    let max = t.add(
        window::reduce::<TumblingUpdate<'static>, _>(|a: &u64, b: &u64| (*a).max(*b)),
        &input,
    );
    t.sink("out", &max);
    let mut d = TopologyTestDriver::new(t.build()?)?;
    let r = |v: u64, ts| Record::new("k".to_owned(), v).with_timestamp(ts);
    d.pipe_batch("in", [r(3, 1), r(7, 2), r(5, 3), r(2, 11)])?;
    assert_eq!(
        rows(&mut d, 10)?,
        vec![
            row("k", 0, 10, 3),
            row("k", 0, 10, 7),
            row("k", 0, 10, 7),
            row("k", 10, 20, 2),
        ]
    );

    let mut t = Topology::builder();
    let input = t.source::<String, String>("in");
    let lengths = t.add(
        window::aggregate::<Sums<'static>, String, _, _>(
            |_| 100,
            |sum: &mut u64, r: &Record<String, String>| *sum += r.value.len() as u64,
        ),
        &input,
    );
    t.sink("out", &lengths);
    let mut d = TopologyTestDriver::new(t.build()?)?;
    let r = |v: &str, ts| Record::new("k".to_owned(), v.to_owned()).with_timestamp(ts);
    d.pipe_batch("in", [r("ab", 1), r("abc", 9), r("", 200)])?;
    assert_eq!(rows(&mut d, 10)?, vec![row("k", 0, 10, 105)]);
    Ok(())
}

#[kstreams::store(name = "word-counts")]
type WordCounts = kstreams::KeyValue<String, u64>;

#[kstreams::store(name = "longest")]
type Longest = kstreams::KeyValue<String, String>;

#[kstreams::store(name = "lengths")]
type Lengths = kstreams::KeyValue<String, u64>;

#[test]
fn table_aggregations_forward_one_update_per_key_and_batch() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let words = t.source::<String, String>("in");
    let counts = t.add(kstreams::aggregate::count::<WordCounts<'static>>(), &words);
    t.sink("counts", &counts);
    let longest = t.add(
        kstreams::aggregate::reduce::<Longest<'static>, _>(|a: &String, b: &String| {
            if b.len() > a.len() {
                b.clone()
            } else {
                a.clone()
            }
        }),
        &words,
    );
    t.sink("longest", &longest);
    let lengths = t.add(
        kstreams::aggregate::aggregate::<Lengths<'static>, String, _, _>(
            |_| 0,
            |n: &mut u64, r: &Record<String, String>| *n += r.value.len() as u64,
        ),
        &words,
    );
    t.sink("lengths", &lengths);
    let topology = t.build()?;
    let mut d = TopologyTestDriver::new(topology.clone())?;
    let r = |k: &str, v: &str| Record::new(k.to_owned(), v.to_owned());
    d.pipe_batch("in", [r("a", "xx"), r("b", "y"), r("a", "zzz")])?;
    d.pipe_batch("in", [r("b", "yyyy")])?;
    let kv = |out: Vec<Record<String, u64>>| -> Vec<(String, u64)> {
        out.into_iter().map(|r| (r.key, r.value)).collect()
    };
    // One update per key and batch, in the order of each key's last record.
    assert_eq!(
        kv(d.read_output::<String, u64>("counts")?),
        vec![("b".into(), 1), ("a".into(), 2), ("b".into(), 2)]
    );
    assert_eq!(
        kv(d.read_output::<String, u64>("lengths")?),
        vec![("b".into(), 1), ("a".into(), 5), ("b".into(), 5)]
    );
    let longest: Vec<(String, String)> = d
        .read_output::<String, String>("longest")?
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(
        longest,
        vec![
            ("b".into(), "y".into()),
            ("a".into(), "zzz".into()),
            ("b".into(), "yyyy".into())
        ]
    );
    // As tables (the last value per key) and stores, any batching gives the same.
    let input = SplitInput::new().records(
        "in",
        (0..80).map(|i| r(&format!("k{}", i % 7), &"x".repeat(i % 5))),
    )?;
    SplitCheck::new(&topology)
        .table_output("counts")
        .table_output("longest")
        .table_output("lengths")
        .run(&input)?;
    Ok(())
}

#[test]
fn windowed_results_are_partitioned_by_their_inner_key_as_java() -> kstreams::Result<()> {
    // Java's WindowedStreamPartitioner: toPositive(murmur2(inner key bytes)) % partitions. The
    // murmur2 figures are Kafka's own test vectors (UtilsTest.testMurmur2).
    let java = [
        ("21", -973_932_308i32),
        ("foobar", -790_332_482),
        ("abc", 479_470_107),
    ];
    let mut d = TopologyTestDriver::builder(count_topology::<TumblingUpdate<'static>>()?)
        .partitions("out", 4)
        .build()?;
    d.pipe_batch("in", java.iter().map(|(k, _)| rec(k, 1_000)))?;
    let out = d.read_output_raw("out");
    assert_eq!(out.len(), 3);
    let mut whole_key_differs = false;
    for (partition, _, r) in out {
        let key = r.key.expect("a windowed key");
        let inner = &key[..key.len() - 8];
        let (_, hash) = java
            .iter()
            .find(|(k, _)| k.as_bytes() == inner)
            .expect("one of the input keys");
        assert_eq!(
            partition,
            (hash & 0x7fff_ffff) % 4,
            "{:?}",
            String::from_utf8_lossy(inner)
        );
        whole_key_differs |= kstreams::partitioner::partition_for_key(&key, 4) != partition;
    }
    assert!(
        whole_key_differs,
        "the test must tell the inner key from the whole key"
    );
    Ok(())
}

// ---- Idle partitions -----------------------------------------------------------------------

handle!(
    IdleClose,
    "idle-close",
    Windowing::new(tumbling(10, 5))
        .emit(EmitStrategy::OnWindowClose)
        .advance_when_idle(std::time::Duration::from_millis(20))
);

#[test]
fn idle_advance_closes_the_last_windows_of_an_idle_partition() -> kstreams::Result<()> {
    use std::time::Duration;
    let input = [rec("a", 1), rec("a", 12)];
    // Without the opt-in (Kafka Streams' behaviour), nothing closes however long we wait.
    let mut d = TopologyTestDriver::new(count_topology::<TumblingClose<'static>>()?)?;
    d.pipe_batch("in", input.clone())?;
    d.advance_wall_clock(Duration::from_secs(60))?;
    assert_eq!(rows(&mut d, 10)?, vec![]);

    let mut d = TopologyTestDriver::new(count_topology::<IdleClose<'static>>()?)?;
    d.pipe_batch("in", input)?;
    // Stream time 12, grace 5: [0, 10) closes at 15, [10, 20) at 25.
    d.advance_wall_clock(Duration::from_millis(10))?;
    assert_eq!(rows(&mut d, 10)?, vec![], "not idle for 20 ms yet");
    // Punctuations come every 20 ms (the first one interval after the driver's clock is first
    // seen): by 50 ms the task has been idle for 20 ms at one of them, and stream time followed
    // the wall clock past 25.
    d.advance_wall_clock(Duration::from_millis(40))?;
    assert_eq!(
        rows(&mut d, 10)?,
        vec![row("a", 0, 10, 1), row("a", 10, 20, 1)]
    );
    d.advance_wall_clock(Duration::from_secs(10))?;
    assert_eq!(rows(&mut d, 10)?, vec![], "each window once");
    // A record now is late for those windows: the advanced stream time is the operator's.
    d.pipe_batch("in", [rec("a", 19)])?;
    d.advance_wall_clock(Duration::from_secs(10))?;
    assert_eq!(rows(&mut d, 10)?, vec![]);
    Ok(())
}

// ---- With the macros' handles ----------------------------------------------------------------

#[kstreams::store(name = "declared-counts", window = hopping(size = "10ms", advance = "5ms"), grace = "0ms", emit = on_window_close)]
type DeclaredCounts = kstreams::WindowKeyValue<String, u64>;

#[kstreams::store(name = "declared-sessions", window = session(gap = "5ms"), grace = "0ms")]
type DeclaredSessions = kstreams::SessionKeyValue<String, u64>;

#[test]
fn the_library_count_runs_on_a_declared_store_and_its_types_follow_the_kind() -> kstreams::Result<()>
{
    let mut t = Topology::builder();
    let input = t.source::<String, String>("in");
    let counts: kstreams::Stream<Windowed<String>, u64> =
        t.add(window::count::<DeclaredCounts<'static>>(), &input);
    t.sink("out", &counts);
    let topology = t.build()?;
    // Session results are `(SessionWindowed<K>, Option<u64>)` (built, not run, here: the
    // session aggregation is `window/session.rs`'s).
    let mut s = Topology::builder();
    let input = s.source::<String, String>("in");
    let sessions: kstreams::Stream<kstreams::SessionWindowed<String>, Option<u64>> =
        s.add(window::count::<DeclaredSessions<'static>>(), &input);
    s.sink("sessions", &sessions);
    s.build()?;
    let mut d = TopologyTestDriver::new(topology)?;
    d.pipe_batch("in", [rec("a", 7), rec("a", 12), rec("b", 30)])?;
    assert_eq!(
        rows(&mut d, 10)?,
        vec![row("a", 0, 10, 1), row("a", 5, 15, 2), row("a", 10, 20, 1)]
    );
    Ok(())
}
