//! Properties that hold for any input: batch store operations equal the same single operations
//! in order, and processors give the same outputs and state however the input is cut into batches.

mod common;

use proptest::prelude::*;

use kstreams::OnBadRecord;
use kstreams::processor;
use kstreams::store::{Backend, LmdbOptions, StateStores, StoreSpec};
use kstreams::testing::{
    SplitCheck, SplitCheckError, SplitDifference, SplitInput, check_split_invariance,
};
use kstreams::{Emit, Record, Topology, batch_processor, store};

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u32),
    Delete(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..16, any::<u32>()).prop_map(|(k, v)| Op::Put(k, v)),
        (0u8..16).prop_map(Op::Delete),
    ]
}

fn key(k: u8) -> String {
    format!("key-{k:02}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// `write_batch` of a sequence equals the same puts and deletes one by one, on both backends,
    /// and `get_batch` equals `get` per key.
    #[test]
    fn batch_operations_equal_single_operations(ops in prop::collection::vec(op(), 0..60), lmdb in any::<bool>()) {
        let backend = if lmdb { Backend::Lmdb } else { Backend::InMemory };
        let dir_a = tempfile::tempdir().expect("tempdir");
        let dir_b = tempfile::tempdir().expect("tempdir");
        let spec = || vec![StoreSpec::new::<String, u32>("s").backend(backend)];
        let mut single = StateStores::open(dir_a.path(), spec(), &LmdbOptions::default()).expect("open");
        let mut batched = StateStores::open(dir_b.path(), spec(), &LmdbOptions::default()).expect("open");
        single.transaction(|txn| {
            let mut s = txn.store::<String, u32>("s")?;
            for op in &ops {
                match op {
                    Op::Put(k, v) => s.put(&key(*k), v)?,
                    Op::Delete(k) => s.delete(&key(*k))?,
                }
            }
            Ok(())
        }).expect("single ops");
        let batch: Vec<(String, Option<u32>)> = ops.iter().map(|op| match op {
            Op::Put(k, v) => (key(*k), Some(*v)),
            Op::Delete(k) => (key(*k), None),
        }).collect();
        batched.transaction(|txn| txn.store::<String, u32>("s")?.write_batch(&batch)).expect("batch");
        let keys: Vec<String> = (0..16).map(key).collect();
        let a = single.transaction(|txn| {
            let s = txn.store::<String, u32>("s")?;
            keys.iter().map(|k| s.get(k)).collect::<kstreams::Result<Vec<_>>>()
        }).expect("read");
        let b = batched.transaction(|txn| txn.store::<String, u32>("s")?.get_batch(&keys)).expect("read");
        prop_assert_eq!(&a, &b);
        let all_a: Vec<(String, u32)> = single.transaction(|txn| txn.store::<String, u32>("s")?.iter()?.collect()).expect("iter");
        let all_b: Vec<(String, u32)> = batched.transaction(|txn| txn.store::<String, u32>("s")?.iter()?.collect()).expect("iter");
        prop_assert_eq!(all_a, all_b);
    }

    /// A counting processor (store reads and writes per batch) is split invariant.
    #[test]
    fn counting_is_split_invariant(lines in prop::collection::vec("[a-c ]{0,12}", 1..80), seed in any::<u64>()) {
        let mut t = Topology::builder();
        let s = t.source::<(), String>("lines");
        let c = t.add(common::CountWords, &s);
        t.sink("counts", &c);
        let topology = t.build().expect("topology");
        let records = lines.into_iter().enumerate().map(|(i, l)| Record::new((), l).with_timestamp(i as i64));
        let input = SplitInput::new().partitions("lines", 2).records("lines", records).expect("input");
        check_split_invariance(&topology, &input, seed, 3).expect("split invariant");
    }

    /// A processor that forwards every record as it is is split invariant, metadata included.
    #[test]
    fn forwarding_is_split_invariant(values in prop::collection::vec((any::<u16>(), any::<i64>()), 1..120), seed in any::<u64>()) {
        let mut t = Topology::builder();
        let s = t.source::<u64, i64>("in");
        let f = t.add(processor::map(|r: &Record<u64, i64>| r.clone()), &s);
        t.sink("out", &f);
        let topology = t.build().expect("topology");
        let records = values.into_iter().enumerate().map(|(i, (k, v))| {
            Record::new(u64::from(k), v)
                .with_timestamp(i as i64)
                .with_headers(kstreams::Headers::new().with("n", i.to_string()))
        });
        let input = SplitInput::new().partitions("in", 3).records("in", records).expect("input");
        check_split_invariance(&topology, &input, seed, 3).expect("split invariant");
    }
}

/// The check is not vacuous: a processor whose output depends on the batch size fails it, and the
/// error names the run, the topic, partition and offset, and both sides.
#[test]
fn a_batch_dependent_processor_fails_the_check() {
    #[derive(Clone)]
    struct BatchLength;
    impl kstreams::BatchProcessor<(), String> for BatchLength {
        type OutKey = ();
        type OutValue = u64;
        fn process_batch(
            &mut self,
            records: &[Record<(), String>],
            ctx: &mut kstreams::Context<'_, (), u64>,
        ) -> kstreams::Result<()> {
            for r in records {
                ctx.forward(r.derive((), records.len() as u64));
            }
            Ok(())
        }
    }
    let mut t = Topology::builder();
    let s = t.source::<(), String>("in");
    let b = t.add(BatchLength, &s);
    t.sink("out", &b);
    let topology = t.build().expect("topology");
    let input = SplitInput::new()
        .records("in", (0..10).map(|i| Record::new((), i.to_string())))
        .expect("input");
    let err = SplitCheck::new(&topology)
        .seed(1)
        .runs(1)
        .run(&input)
        .expect_err("depends on batch size");
    let SplitCheckError::Differs { plan, difference } = &err else {
        panic!("not a difference: {err}");
    };
    assert_eq!(plan, "batches of one");
    assert_eq!(
        **difference,
        SplitDifference::Record {
            topic: "out".into(),
            partition: 0,
            offset: 0,
            expected: Some("key null, value 0x000000000000000a, timestamp 0".into()),
            actual: Some("key null, value 0x0000000000000001, timestamp 0".into()),
        }
    );
    assert_eq!(
        err.to_string(),
        "batches of one differ from one batch per partition: topic `out` partition 0 offset 0 \
         holds key null, value 0x0000000000000001, timestamp 0 instead of key null, value \
         0x000000000000000a, timestamp 0"
    );
    // The old entry point fails the same way, the error inside `Error::User`.
    let err = check_split_invariance(&topology, &input, 1, 1).expect_err("depends on batch size");
    assert!(err.to_string().contains("batches of one differ"), "{err}");
    let kstreams::Error::User(inner) = &err else {
        panic!("not a user error: {err:?}");
    };
    assert!(inner.downcast_ref::<SplitCheckError>().is_some());
}

#[store(name = "totals")]
type Totals = kstreams::KeyValue<String, u64>;

/// An aggregation as users write it: one update per key and batch (the key's new total).
#[batch_processor]
fn total_per_key(
    amounts: &[Record<String, u64>],
    totals: &mut Totals,
    out: &mut Emit<String, u64>,
) -> kstreams::Result<()> {
    let mut sums: std::collections::BTreeMap<&str, (u64, usize)> = Default::default();
    for (i, r) in amounts.iter().enumerate() {
        let e = sums.entry(&r.key).or_default();
        e.0 += r.value;
        e.1 = i;
    }
    for (key, (sum, last)) in sums {
        let total = totals.get(&key.to_owned())?.unwrap_or(0) + sum;
        totals.put(&key.to_owned(), &total)?;
        out.forward(amounts[last].derive(key.to_owned(), total));
    }
    Ok(())
}

fn totals_topology() -> Topology {
    let mut t = Topology::builder();
    let s = t.source::<String, u64>("amounts");
    let totals = t.add(total_per_key, &s);
    t.sink("totals", &totals);
    t.build().expect("topology")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// One update per key and batch is split invariant when its output is compared as a table
    /// (the last value per key), on any input.
    #[test]
    fn an_aggregation_is_split_invariant_as_a_table(amounts in prop::collection::vec((0u8..6, 0u64..1000), 1..120), seed in any::<u64>()) {
        let records = amounts.into_iter().enumerate().map(|(i, (k, v))| Record::new(format!("k{k}"), v).with_timestamp(i as i64));
        let input = SplitInput::new().partitions("amounts", 2).partitions("totals", 2).records("amounts", records).expect("input");
        SplitCheck::new(&totals_topology()).table_output("totals").seed(seed).runs(3).run(&input).expect("split invariant as a table");
    }
}

/// Compared record for record, the same aggregation fails (fewer updates in bigger batches):
/// that is what the table comparison is for.
#[test]
fn an_aggregation_is_not_split_invariant_record_for_record() {
    let input = SplitInput::new()
        .records(
            "amounts",
            (0..30u64).map(|i| Record::new(format!("k{}", i % 3), i)),
        )
        .expect("input");
    let err = SplitCheck::new(&totals_topology())
        .run(&input)
        .expect_err("more updates in batches of one");
    assert!(
        matches!(&err, SplitCheckError::Differs { difference, .. } if matches!(&**difference, SplitDifference::Record { topic, .. } if topic == "totals")),
        "{err}"
    );
}

/// A table output whose last value per key depends on the cut fails, at a position (not an
/// offset).
#[test]
fn a_table_output_that_depends_on_the_cut_fails_at_a_position() {
    #[derive(Clone)]
    struct LastBatchSize;
    impl kstreams::BatchProcessor<String, u64> for LastBatchSize {
        type OutKey = String;
        type OutValue = u64;
        fn process_batch(
            &mut self,
            records: &[Record<String, u64>],
            ctx: &mut kstreams::Context<'_, String, u64>,
        ) -> kstreams::Result<()> {
            for r in records {
                ctx.forward(r.derive(r.key.clone(), records.len() as u64));
            }
            Ok(())
        }
    }
    let mut t = Topology::builder();
    let s = t.source::<String, u64>("amounts");
    let p = t.add(LastBatchSize, &s);
    t.sink("sizes", &p);
    let topology = t.build().expect("topology");
    let input = SplitInput::new()
        .records(
            "amounts",
            (0..4u64).map(|i| Record::new(format!("k{i}"), i)),
        )
        .expect("input");
    let err = SplitCheck::new(&topology)
        .table_output("sizes")
        .run(&input)
        .expect_err("the last value depends on the batch size");
    assert_eq!(
        err.to_string(),
        "batches of one differ from one batch per partition: table topic `sizes` partition 0 \
         (last value per key) holds key \"k0\", value 0x0000000000000001 instead of key \"k0\", \
         value 0x0000000000000004 at position 0"
    );
    // A table output the topology does not write is a set-up error.
    let err = SplitCheck::new(&topology)
        .table_output("sizez")
        .run(&input)
        .expect_err("not a sink topic");
    assert_eq!(
        err.to_string(),
        "invalid split-invariance check: table output `sizez` is not a sink topic of the \
         topology (sink topics: `sizes`)"
    );
}

/// Parses values; fails the ones that are not numbers (they go through the processing policy).
#[batch_processor]
fn parse(texts: &[Record<String, String>], out: &mut Emit<String, i64>) -> kstreams::Result<()> {
    for r in texts {
        match r.value.parse::<i64>() {
            Ok(n) => out.forward(r.derive(r.key.clone(), n)),
            Err(e) => {
                out.fail_record(r, kstreams::Error::processing(format!("not a number: {e}")))?
            }
        }
    }
    Ok(())
}

/// The dead-letter path is checked too: with the `DeadLetter` policy the dead-letter topic
/// (record for record, headers included) and the outputs are the same however the input is cut;
/// with the default `Fail`, the check reports the run that failed.
#[test]
fn the_dead_letter_path_is_split_invariant() {
    let mut t = Topology::builder();
    let s = t.source::<String, String>("texts");
    let p = t.add(parse, &s);
    t.sink("numbers", &p);
    let topology = t.build().expect("topology");
    let input = SplitInput::new()
        .partitions("texts", 2)
        .records(
            "texts",
            (0..60).map(|i| {
                let v = if i % 7 == 0 {
                    format!("x{i}")
                } else {
                    i.to_string()
                };
                Record::new(format!("k{}", i % 5), v).with_timestamp(i)
            }),
        )
        .expect("input");
    SplitCheck::new(&topology)
        .on_processing_error(OnBadRecord::DeadLetter {
            topic: "texts-dlq".into(),
        })
        .seed(5)
        .run(&input)
        .expect("split invariant, dead letters included");
    let err = SplitCheck::new(&topology)
        .run(&input)
        .expect_err("the Fail policy stops at the first bad record");
    assert!(
        matches!(&err, SplitCheckError::Run { plan, .. } if plan == "one batch per partition"),
        "{err}"
    );
}

/// Input for a topic the topology does not read, or of other types, is a set-up error, not a
/// check that passes on nothing.
#[test]
fn input_the_topology_does_not_read_is_a_set_up_error() {
    let input = SplitInput::new()
        .records(
            "amuonts",
            (0..3u64).map(|i| Record::new(format!("k{i}"), i)),
        )
        .expect("input");
    let err = SplitCheck::new(&totals_topology())
        .run(&input)
        .expect_err("misspelt input topic");
    assert_eq!(
        err.to_string(),
        "invalid split-invariance check: input: invalid configuration: the topology does not \
         read topic `amuonts`; it reads `amounts`"
    );
    let input = SplitInput::new()
        .records(
            "amounts",
            (0..3).map(|i| Record::new(format!("k{i}"), i.to_string())),
        )
        .expect("input");
    let err = SplitCheck::new(&totals_topology())
        .run(&input)
        .expect_err("strings for a u64 source");
    assert!(err.to_string().contains("use the source's types"), "{err}");
}
