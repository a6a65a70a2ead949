//! Properties that hold for any input: batch store operations equal the same single operations
//! in order, and processors give the same outputs and state however the input is cut into batches.

mod common;

use proptest::prelude::*;

use kstreams::processor;
use kstreams::store::{Backend, LmdbOptions, StateStores, StoreSpec};
use kstreams::testing::{SplitInput, check_split_invariance};
use kstreams::{Record, Topology};

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
            let s = txn.store::<String, u32>("s")?;
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

/// The check is not vacuous: a processor whose output depends on the batch size fails it.
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
    let err = check_split_invariance(&topology, &input, 1, 1).expect_err("depends on batch size");
    assert!(err.to_string().contains("batches of one differ"), "{err}");
}
