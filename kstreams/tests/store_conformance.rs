//! One conformance suite, run on both backends: the in-memory store must behave exactly as LMDB.

use std::collections::BTreeMap;
use std::ops::Bound;

use kstreams::store::{Backend, ChangelogWrite, LmdbOptions, StateStores, StoreSpec};
use proptest::prelude::*;

fn open(backend: Backend, dir: &std::path::Path) -> StateStores {
    let specs = vec![
        StoreSpec::new::<String, u64>("counts").backend(backend),
        StoreSpec::new::<u32, String>("names").backend(backend),
        StoreSpec::new::<Vec<u8>, u64>("bytes").backend(backend),
    ];
    StateStores::open(dir, specs, &LmdbOptions::default()).expect("stores open")
}

fn backends() -> Vec<(Backend, tempfile::TempDir)> {
    vec![
        (Backend::Lmdb, tempfile::tempdir().expect("tempdir")),
        (Backend::InMemory, tempfile::tempdir().expect("tempdir")),
    ]
}

#[test]
fn get_put_delete() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        s.transaction(|txn| {
            let mut c = txn.store::<String, u64>("counts")?;
            assert_eq!(c.get("a")?, None, "{backend:?}");
            c.put(&"a".into(), &1)?;
            c.put(&"a".into(), &2)?;
            assert_eq!(c.get("a")?, Some(2), "{backend:?}: last put wins");
            c.delete("a")?;
            assert_eq!(c.get("a")?, None, "{backend:?}");
            c.delete("never")?;
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn batch_forms_answer_in_caller_order_and_apply_in_order() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        s.transaction(|txn| {
            let mut c = txn.store::<String, u64>("counts")?;
            c.put_batch(&[("b".into(), 2), ("a".into(), 1), ("b".into(), 3)])?;
            let got = c.get_batch(&["b", "zz", "a", "b"])?;
            assert_eq!(got, vec![Some(3), None, Some(1), Some(3)], "{backend:?}");
            // A put then a delete of one key in a batch leaves it deleted; a delete then a put
            // leaves it present.
            c.write_batch(&[
                ("x".into(), Some(1)),
                ("x".into(), None),
                ("y".into(), None),
                ("y".into(), Some(9)),
            ])?;
            assert_eq!(c.get_batch(&["x", "y"])?, vec![None, Some(9)]);
            c.delete_batch(&["a", "y"])?;
            assert_eq!(c.get_batch(&["a", "y", "b"])?, vec![None, None, Some(3)]);
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn range_and_iteration_in_key_byte_order() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        s.transaction(|txn| {
            let mut names = txn.store::<u32, String>("names")?;
            // More entries than one scan chunk (256), inserted out of order.
            for i in (0..1000u32).rev() {
                names.put(&i, &format!("n{i}"))?;
            }
            let all: Vec<u32> = names
                .iter()?
                .map(|e| e.map(|(k, _)| k))
                .collect::<Result<_, _>>()?;
            assert_eq!(
                all,
                (0..1000).collect::<Vec<_>>(),
                "{backend:?}: big-endian u32 sorts numerically"
            );
            let mid: Vec<(u32, String)> = names.range(10..13)?.collect::<Result<_, _>>()?;
            assert_eq!(
                mid,
                vec![(10, "n10".into()), (11, "n11".into()), (12, "n12".into())]
            );
            let incl: Vec<u32> = names
                .range(998..=999)?
                .map(|e| e.map(|(k, _)| k))
                .collect::<Result<_, _>>()?;
            assert_eq!(incl, vec![998, 999]);
            let excl: Vec<u32> = names
                .range((Bound::Excluded(997), Bound::Unbounded))?
                .map(|e| e.map(|(k, _)| k))
                .collect::<Result<_, _>>()?;
            assert_eq!(excl, vec![998, 999]);
            assert_eq!(names.range(5..5)?.count(), 0, "{backend:?}: empty range");
            assert_eq!(
                names
                    .range((Bound::Included(7), Bound::Excluded(3)))?
                    .count(),
                0,
                "{backend:?}: inverted range is empty, not a panic"
            );
            // Writing between two items of an iteration is allowed.
            let mut it = names.range(0..3)?;
            let first = it.next().transpose()?;
            names.put(&1, &"changed".into())?;
            let rest: Vec<(u32, String)> = it.collect::<Result<_, _>>()?;
            assert_eq!(first, Some((0, "n0".into())));
            assert_eq!(rest.len(), 2, "{backend:?}");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn a_failed_transaction_leaves_no_trace() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        s.transaction(|txn| {
            txn.store::<String, u64>("counts")?
                .put(&"kept".into(), &1)?;
            txn.set_input_position("in", 0, 10)
        })?;
        let failed: kstreams::Result<()> = s.transaction(|txn| {
            let mut c = txn.store::<String, u64>("counts")?;
            c.put(&"kept".into(), &2)?;
            c.put(&"new".into(), &5)?;
            c.delete("kept")?;
            txn.set_input_position("in", 0, 20)?;
            Err(kstreams::Error::processing("boom"))
        });
        assert!(failed.is_err());
        s.transaction(|txn| {
            let c = txn.store::<String, u64>("counts")?;
            assert_eq!(c.get("kept")?, Some(1), "{backend:?}");
            assert_eq!(c.get("new")?, None, "{backend:?}");
            Ok(())
        })?;
        assert_eq!(
            s.position()?.input("in", 0),
            Some(10),
            "{backend:?}: position rolled back too"
        );
    }
    Ok(())
}

#[test]
fn wrong_types_are_a_clear_error() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        s.transaction(|txn| {
            let err = txn.store::<u64, u64>("counts").expect_err("types differ");
            assert!(
                err.to_string()
                    .contains("holds `alloc::string::String` -> `u64`"),
                "{err}"
            );
            let err = txn.store::<String, u64>("nope").expect_err("no such store");
            assert!(err.to_string().contains("no store named `nope`"), "{err}");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn corrupt_bytes_are_an_error_naming_the_store() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        s.transaction(|txn| {
            // Three bytes where a u64 needs eight, written under the store's nose (a restore).
            txn.restore_raw(0, b"k", Some(&[1, 2, 3]), 0)?;
            let err = txn
                .store::<String, u64>("counts")?
                .get("k")
                .expect_err("corrupt");
            assert!(err.to_string().contains("store `counts`"), "{err}");
            assert!(
                err.to_string().contains("3 bytes where a u64 needs 8"),
                "{err}"
            );
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn writes_are_recorded_for_the_changelog_unless_disabled() -> kstreams::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = vec![
        StoreSpec::new::<String, u64>("logged"),
        StoreSpec::new::<String, u64>("quiet").changelog(false),
    ];
    let mut s = StateStores::open(dir.path(), specs, &LmdbOptions::default())?;
    s.transaction(|txn| {
        txn.store::<String, u64>("logged")?.put(&"a".into(), &1)?;
        txn.store::<String, u64>("logged")?.delete("a")?;
        txn.store::<String, u64>("quiet")?.put(&"b".into(), &2)?;
        txn.restore_raw(0, b"r", Some(b"x"), 0)?;
        let log = txn.take_changelog();
        assert_eq!(
            log.len(),
            2,
            "restores and changelog-less stores are not logged"
        );
        assert_eq!(log[0].value, Some(1u64.to_be_bytes().to_vec()));
        assert_eq!(log[1].value, None, "a delete is a tombstone");
        Ok(())
    })
}

#[test]
fn a_store_whose_changelog_is_its_source_topic_logs_nothing() -> kstreams::Result<()> {
    let history = std::time::Duration::from_secs(60);
    for backend in [Backend::Lmdb, Backend::InMemory] {
        let dir = tempfile::tempdir().expect("tempdir");
        let specs = vec![
            StoreSpec::new::<String, u64>("table")
                .changelog_from_source("table-topic")
                .backend(backend),
            StoreSpec::new::<String, u64>("versioned-table")
                .versioned(history)?
                .changelog_from_source("prices")
                .backend(backend),
            StoreSpec::new::<String, u64>("logged").backend(backend),
        ];
        let mut s = StateStores::open(dir.path(), specs, &LmdbOptions::default())?;
        s.transaction(|txn| {
            let mut t = txn.store::<String, u64>("table")?;
            t.put(&"a".into(), &1)?;
            t.delete("a")?;
            let mut v = txn.versioned_store::<String, u64>("versioned-table")?;
            let _ = v.put(&"a".into(), Some(&1), 10)?;
            txn.store::<String, u64>("logged")?.put(&"b".into(), &2)?;
            let log = txn.take_changelog();
            assert_eq!(
                log.len(),
                1,
                "{backend:?}: only the store with a changelog of its own"
            );
            assert_eq!(log[0].store, 2, "{backend:?}");
            // Restored from the source topic's records: a put at the record's timestamp.
            txn.restore_raw(0, b"r", Some(&5u64.to_be_bytes()), 0)?;
            txn.restore_raw(1, b"r", Some(&6u64.to_be_bytes()), 20)?;
            assert_eq!(txn.store::<String, u64>("table")?.get("r")?, Some(5));
            let r = txn
                .versioned_store::<String, u64>("versioned-table")?
                .get("r")?;
            assert_eq!(
                r.map(|r| (r.value, r.timestamp)),
                Some((6, 20)),
                "{backend:?}"
            );
            assert!(txn.take_changelog().is_empty(), "{backend:?}");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn a_source_changelog_is_in_the_spec_and_no_changelog_topic_is_configured() -> kstreams::Result<()>
{
    let plain = StoreSpec::new::<String, u64>("t");
    let from_source = plain.clone().changelog_from_source("t-topic");
    assert_eq!(plain.source_changelog(), None);
    assert_eq!(from_source.source_changelog(), Some("t-topic"));
    assert!(plain.changelog_enabled());
    assert!(
        !from_source.changelog_enabled(),
        "no changelog topic of its own"
    );
    assert!(
        !from_source.clone().changelog(true).changelog_enabled(),
        "the source topic stays the changelog"
    );
    assert!(from_source.changelog_topic_config().is_empty());
    let versioned = StoreSpec::new::<String, u64>("v")
        .versioned(std::time::Duration::from_secs(1))?
        .changelog_from_source("v-topic");
    assert!(versioned.changelog_topic_config().is_empty());
    assert!(format!("{from_source:?}").contains("t-topic"));
    Ok(())
}

#[test]
fn the_driver_creates_no_changelog_topic_for_a_store_whose_changelog_is_its_source()
-> kstreams::Result<()> {
    #[derive(Clone)]
    struct Materialize;
    impl kstreams::BatchProcessor<String, u64> for Materialize {
        type OutKey = ();
        type OutValue = ();
        fn stores(&self) -> Vec<StoreSpec> {
            vec![StoreSpec::new::<String, u64>("table").changelog_from_source("in")]
        }
        fn process_batch(
            &mut self,
            records: &[kstreams::Record<String, u64>],
            ctx: &mut kstreams::Context<'_, (), ()>,
        ) -> kstreams::Result<()> {
            let mut t = ctx.store::<String, u64>("table")?;
            for r in records {
                t.put(&r.key, &r.value)?;
            }
            Ok(())
        }
    }
    let mut t = kstreams::Topology::builder();
    let s = t.source::<String, u64>("in");
    let _ = t.add(Materialize, &s);
    let mut d = kstreams::testing::TopologyTestDriver::new(t.build()?)?;
    d.pipe_batch("in", [kstreams::Record::new("a".to_owned(), 1u64)])?;
    assert_eq!(d.store::<String, u64>("table")?, vec![("a".to_owned(), 1)]);
    let topics = d.topic_names();
    assert!(
        !topics.iter().any(|t| t.ends_with("-changelog")),
        "{topics:?}"
    );
    // Nor does it say the topology writes one.
    let err = d
        .read_output::<String, u64>("test-app-table-changelog")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not write topic `test-app-table-changelog`")
            && !err.contains("it writes `test-app-table-changelog`"),
        "{err}"
    );
    Ok(())
}

#[test]
fn lmdb_state_and_positions_survive_reopening() -> kstreams::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut s = open(Backend::Lmdb, dir.path());
        s.transaction(|txn| {
            txn.store::<String, u64>("counts")?.put(&"a".into(), &7)?;
            txn.set_input_position("words", 3, 1234)?;
            txn.set_changelog_position("counts", 99)
        })?;
        s.sync()?;
    }
    let mut s = open(Backend::Lmdb, dir.path());
    let pos = s.position()?;
    assert_eq!(pos.input("words", 3), Some(1234));
    assert_eq!(pos.changelog("counts"), Some(99));
    assert_eq!(pos.input("words", 2), None);
    s.transaction(|txn| {
        assert_eq!(txn.store::<String, u64>("counts")?.get("a")?, Some(7));
        Ok(())
    })
}

#[test]
fn a_second_open_of_one_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = open(Backend::Lmdb, dir.path());
    let err = StateStores::open(
        dir.path(),
        vec![StoreSpec::new::<String, u64>("counts")],
        &LmdbOptions::default(),
    )
    .expect_err("the directory is locked");
    assert!(
        matches!(err, kstreams::Error::StateDirLocked { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("already in use"), "{err}");
}

#[test]
fn the_lock_is_released_when_the_stores_close() -> kstreams::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(Backend::Lmdb, dir.path()));
    let _again = StateStores::open(
        dir.path(),
        vec![StoreSpec::new::<String, u64>("counts")],
        &LmdbOptions::default(),
    )?;
    Ok(())
}

#[test]
fn the_lmdb_map_grows_instead_of_failing_with_map_full() -> kstreams::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = LmdbOptions {
        initial_map_size: 1 << 20, // 1 MiB
        max_map_size: 1 << 30,
    };
    let mut s = StateStores::open(
        dir.path(),
        vec![StoreSpec::new::<u64, Vec<u8>>("big")],
        &options,
    )?;
    // 8 MiB in one transaction: far beyond the initial map, so the first attempt hits
    // MDB_MAP_FULL and the transaction is retried on a grown map.
    let value = vec![7u8; 4096];
    s.transaction(|txn| {
        let mut big = txn.store::<u64, Vec<u8>>("big")?;
        for i in 0..2048u64 {
            big.put(&i, &value)?;
        }
        Ok(())
    })?;
    s.transaction(|txn| {
        let big = txn.store::<u64, Vec<u8>>("big")?;
        assert_eq!(big.get(&2047)?.map(|v| v.len()), Some(4096));
        assert_eq!(big.iter()?.count(), 2048);
        Ok(())
    })
}

#[test]
fn the_map_stops_at_its_maximum_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = LmdbOptions {
        initial_map_size: 1 << 20,
        max_map_size: 2 << 20,
    };
    let mut s = StateStores::open(
        dir.path(),
        vec![StoreSpec::new::<u64, Vec<u8>>("big")],
        &options,
    )
    .expect("open");
    let value = vec![7u8; 4096];
    let err = s
        .transaction(|txn| {
            let mut big = txn.store::<u64, Vec<u8>>("big")?;
            for i in 0..2048u64 {
                big.put(&i, &value)?;
            }
            Ok(())
        })
        .expect_err("4 times the maximum");
    let msg = err.to_string();
    // It names the store, the task (the environment's directory) and the limit, and says what
    // to do.
    for part in [
        "maximum size of 2097152 bytes",
        "store `big`",
        &format!(
            "of task {}",
            dir.path().file_name().expect("name").to_string_lossy()
        ),
        "LmdbOptions::max_map_size",
        "restart",
    ] {
        assert!(msg.contains(part), "`{part}` missing in: {msg}");
    }
}

#[test]
fn a_map_at_its_maximum_still_takes_writes_that_fit() -> kstreams::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = LmdbOptions {
        initial_map_size: 1 << 20,
        max_map_size: 1 << 20,
    };
    let mut s = StateStores::open(
        dir.path(),
        vec![StoreSpec::new::<u64, Vec<u8>>("small")],
        &options,
    )?;
    // About 600 KiB: more than half of the map, well within it.
    let value = vec![7u8; 4000];
    s.transaction(|txn| {
        let mut small = txn.store::<u64, Vec<u8>>("small")?;
        for i in 0..150u64 {
            small.put(&i, &value)?;
        }
        Ok(())
    })?;
    // The map is more than half full and cannot grow: the growth ahead of need must not turn
    // into an error while the write fits (it did: every later batch failed).
    s.transaction(|txn| {
        txn.store::<u64, Vec<u8>>("small")?
            .put(&1000, &vec![1u8; 10])
    })?;
    s.transaction(|txn| {
        let small = txn.store::<u64, Vec<u8>>("small")?;
        assert_eq!(small.iter()?.count(), 151);
        Ok(())
    })
}

/// Index of the `bytes` store in [`open`].
const BYTES: usize = 2;

/// Keys around LMDB's 511-byte limit (and the 479-byte prefix past which keys are stored under a
/// hash), with long keys that share their prefix and differ only far past it.
fn edge_keys() -> Vec<Vec<u8>> {
    let mut keys = vec![
        vec![],
        b"a".to_vec(),
        vec![b'a'; 478],
        vec![b'a'; 479],
        vec![b'a'; 480],
        vec![b'a'; 511],
        vec![b'a'; 512],
        vec![b'a'; 1_000_000],
        vec![b'b'; 512],
        b"b".to_vec(),
        vec![0xff; 600],
    ];
    for last in [0u8, 1, 0x7f, 0xfe, 0xff] {
        let mut k = vec![b'a'; 700];
        k[699] = last;
        keys.push(k);
        let mut k = vec![b'a'; 480];
        k.push(last);
        keys.push(k);
    }
    keys
}

fn all_entries(
    s: &kstreams::store::KeyValueStore<'_, Vec<u8>, u64>,
) -> kstreams::Result<Vec<(Vec<u8>, u64)>> {
    s.iter()?.collect()
}

fn lens(keys: &[(Vec<u8>, u64)]) -> Vec<usize> {
    keys.iter().map(|(k, _)| k.len()).collect()
}

#[test]
fn keys_of_any_size_behave_as_short_ones() -> kstreams::Result<()> {
    let keys = edge_keys();
    let model: BTreeMap<Vec<u8>, u64> = keys.iter().cloned().zip(0..).collect();
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        s.transaction(|txn| {
            let mut b = txn.store::<Vec<u8>, u64>("bytes")?;
            for (i, k) in keys.iter().enumerate() {
                b.put(k, &(i as u64))?;
            }
            for (i, k) in keys.iter().enumerate() {
                assert_eq!(
                    b.get(k)?,
                    Some(i as u64),
                    "{backend:?}: key of {} bytes",
                    k.len()
                );
                assert_eq!(
                    b.get(k.as_slice())?,
                    Some(i as u64),
                    "{backend:?}: borrowed"
                );
            }
            // A long key absent, next to present ones with its prefix.
            let mut absent = vec![b'a'; 700];
            absent[699] = 2;
            assert_eq!(b.get(&absent)?, None, "{backend:?}");
            assert_eq!(
                b.get_batch(&keys)?,
                (0..keys.len() as u64).map(Some).collect::<Vec<_>>()
            );
            // Iteration and ranges in real key order, whatever the sizes.
            let want: Vec<(Vec<u8>, u64)> = model.clone().into_iter().collect();
            assert_eq!(lens(&all_entries(&b)?), lens(&want), "{backend:?}");
            assert_eq!(all_entries(&b)?, want, "{backend:?}");
            for lo in &keys {
                for hi in [&keys[5], &keys[7], &keys[12], &keys[13], &keys[10]] {
                    let got: Vec<(Vec<u8>, u64)> = b
                        .range((Bound::Excluded(lo.clone()), Bound::Included(hi.clone())))?
                        .collect::<Result<_, _>>()?;
                    // The model filters: `BTreeMap::range` panics on inverted bounds.
                    let want: Vec<(Vec<u8>, u64)> = model
                        .iter()
                        .filter(|(k, _)| *k > lo && *k <= hi)
                        .map(|(k, v)| (k.clone(), *v))
                        .collect();
                    assert_eq!(
                        lens(&got),
                        lens(&want),
                        "{backend:?}: ({} bytes, {} bytes]",
                        lo.len(),
                        hi.len()
                    );
                    assert_eq!(got, want, "{backend:?}");
                    let got = b.range(lo.clone()..hi.clone())?.count();
                    let want = model.keys().filter(|k| *k >= lo && *k < hi).count();
                    assert_eq!(got, want, "{backend:?}");
                }
            }
            // Bounds at the empty key.
            let empty: Vec<u8> = vec![];
            assert_eq!(b.range(..=empty.clone())?.count(), 1, "{backend:?}");
            assert_eq!(b.range(..empty.clone())?.count(), 0, "{backend:?}");
            assert_eq!(b.range(empty.clone()..)?.count(), keys.len(), "{backend:?}");
            let after_empty = b.range((Bound::Excluded(empty), Bound::Unbounded))?.count();
            assert_eq!(after_empty, keys.len() - 1, "{backend:?}");
            // Deletes, single and batch, and write_batch, touch only their own keys.
            b.delete(&keys[6])?; // 512 bytes
            b.delete_batch(&[keys[7].clone(), keys[13].clone()])?; // 1,000,000 and 700 bytes
            b.write_batch(&[(keys[5].clone(), None), (keys[8].clone(), Some(80))])?;
            let mut model = model.clone();
            for k in [&keys[6], &keys[7], &keys[13], &keys[5]] {
                model.remove(k);
            }
            model.insert(keys[8].clone(), 80);
            assert_eq!(
                all_entries(&b)?,
                model.into_iter().collect::<Vec<_>>(),
                "{backend:?}"
            );
            assert_eq!(b.get(&keys[7])?, None, "{backend:?}");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn many_long_keys_sharing_a_prefix_iterate_in_order_across_scan_chunks() -> kstreams::Result<()> {
    // 600 keys of 1,000 bytes sharing their first 990: more than two scan chunks (256) in one
    // group of hashed keys.
    let keys: Vec<Vec<u8>> = (0..600u32)
        .map(|i| {
            let mut k = vec![b'k'; 990];
            k.extend_from_slice(format!("{i:010}").as_bytes());
            k
        })
        .collect();
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        s.transaction(|txn| {
            let mut b = txn.store::<Vec<u8>, u64>("bytes")?;
            for (i, k) in keys.iter().enumerate().rev() {
                b.put(k, &(i as u64))?;
            }
            let got: Vec<u64> = b
                .iter()?
                .map(|e| e.map(|(_, v)| v))
                .collect::<Result<_, _>>()?;
            assert_eq!(got, (0..600).collect::<Vec<_>>(), "{backend:?}");
            let got: Vec<u64> = b
                .range(keys[100].clone()..=keys[400].clone())?
                .map(|e| e.map(|(_, v)| v))
                .collect::<Result<_, _>>()?;
            assert_eq!(got, (100..=400).collect::<Vec<_>>(), "{backend:?}");
            Ok(())
        })?;
    }
    Ok(())
}

/// Writes the changelog records into fresh stores of `backend`, as a restore does.
fn restore_into(
    backend: Backend,
    dir: &std::path::Path,
    log: &[ChangelogWrite],
) -> kstreams::Result<StateStores> {
    let mut s = open(backend, dir);
    s.transaction(|txn| {
        for w in log {
            txn.restore_raw(
                w.store,
                &w.key,
                w.value.as_deref(),
                w.timestamp.unwrap_or(0),
            )?;
        }
        Ok(())
    })?;
    Ok(s)
}

#[test]
fn long_keys_reach_the_changelog_as_they_are_and_restore_alike() -> kstreams::Result<()> {
    let keys = edge_keys();
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        let log = s.transaction(|txn| {
            let mut b = txn.store::<Vec<u8>, u64>("bytes")?;
            for (i, k) in keys.iter().enumerate() {
                b.put(k, &(i as u64))?;
            }
            b.delete(&keys[6])?;
            Ok(txn.take_changelog())
        })?;
        // The changelog holds the user's key bytes (byte-compatible with Java), not the stored form.
        let logged: Vec<&[u8]> = log.iter().map(|w| w.key.as_slice()).collect();
        let mut want: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        want.push(&keys[6]);
        assert!(
            logged == want,
            "{backend:?}: the changelog keys are the real keys"
        );
        assert!(log.iter().all(|w| w.store == BYTES));
        assert_eq!(
            log.last().map(|w| w.value.is_none()),
            Some(true),
            "a tombstone"
        );
        let original = s.transaction(|txn| all_entries(&txn.store::<Vec<u8>, u64>("bytes")?))?;
        for (into, into_dir) in backends() {
            let mut r = restore_into(into, into_dir.path(), &log)?;
            r.transaction(|txn| {
                let b = txn.store::<Vec<u8>, u64>("bytes")?;
                assert_eq!(
                    all_entries(&b)?,
                    original,
                    "{backend:?} restored into {into:?}"
                );
                assert_eq!(b.get(&keys[7])?, Some(7));
                assert_eq!(b.get(&keys[6])?, None);
                Ok(())
            })?;
        }
    }
    Ok(())
}

#[test]
fn a_string_store_takes_borrowed_keys() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        s.transaction(|txn| {
            let mut c = txn.store::<String, u64>("counts")?;
            c.put(&"alice".to_owned(), &1)?;
            c.put(&"bob".to_owned(), &2)?;
            assert_eq!(c.get("alice")?, Some(1), "{backend:?}");
            let name = String::from("bob");
            assert_eq!(c.get(&name)?, Some(2), "{backend:?}: `&K` still works");
            assert_eq!(c.get_batch(&["alice", "carol"])?, vec![Some(1), None]);
            assert_eq!(c.get_batch(std::slice::from_ref(&name))?, vec![Some(2)]);
            c.delete("alice")?;
            assert_eq!(c.get("alice")?, None, "{backend:?}");
            c.delete_batch(&["bob"])?;
            assert_eq!(c.iter()?.count(), 0, "{backend:?}");
            // Integer literals still infer the key type.
            let mut names = txn.store::<u32, String>("names")?;
            names.put(&5, &"five".to_owned())?;
            assert_eq!(names.get(&5)?.as_deref(), Some("five"));
            assert_eq!(names.get_batch(&[5, 6])?.len(), 2);
            names.delete(&5)?;
            assert_eq!(names.get(&5)?, None);
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn store_errors_about_one_key_or_value_name_the_store() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let specs = vec![StoreSpec::new::<(), u64>("unit-keys").backend(backend)];
        let mut s = StateStores::open(dir.path(), specs, &LmdbOptions::default())?;
        s.transaction(|txn| {
            let err = txn
                .store::<(), u64>("unit-keys")?
                .put(&(), &1)
                .expect_err("a key that serializes to null");
            assert!(
                matches!(
                    &err,
                    kstreams::Error::StoreSerialize { store, part: kstreams::error::Part::Key, .. }
                        if store == "unit-keys"
                ),
                "{backend:?}: {err:?}"
            );
            assert_eq!(err.store(), Some("unit-keys"));
            assert!(err.to_string().contains("store `unit-keys`"), "{err}");
            Ok(())
        })?;
    }
    Ok(())
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Point {
    x: i32,
    label: String,
}
kstreams::json_serde!(Point);

/// Every value through put/put_batch/write_batch → get, and → changelog → restore (into either
/// backend) → get: a value that serializes to null is absent (a delete, a tombstone), except `()`
/// (a set's value, stored and logged as empty bytes); any other comes back equal.
fn value_round_trip<V>(values: &[V]) -> kstreams::Result<()>
where
    V: kstreams::serde::DefaultSerde + Send + Clone + PartialEq + std::fmt::Debug + 'static,
{
    use kstreams::serde::Serde;
    let serde = V::Serde::default();
    let unit = std::any::TypeId::of::<V>() == std::any::TypeId::of::<()>();
    let mut want = Vec::with_capacity(values.len());
    let mut serialized = Vec::with_capacity(values.len());
    for v in values {
        let bytes = serde
            .serialize(v)
            .map_err(|e| kstreams::Error::processing(e.to_string()))?;
        let bytes = if unit { Some(Vec::new()) } else { bytes };
        want.push(bytes.as_ref().map(|_| v.clone()));
        serialized.push(bytes);
    }
    let spec = || StoreSpec::new::<u32, V>("values");
    for (backend, dir) in backends() {
        let mut s = StateStores::open(
            dir.path(),
            vec![spec().backend(backend)],
            &LmdbOptions::default(),
        )?;
        let log = s.transaction(|txn| {
            let mut st = txn.store::<u32, V>("values")?;
            // Every key first holds something else, so that a null value must really delete.
            let n = values.len() as u32;
            for (i, v) in values.iter().enumerate() {
                let i = i as u32;
                st.put(&(i + n), v)?;
                st.put(&(i + 2 * n), v)?;
            }
            for (i, v) in values.iter().enumerate() {
                let i = i as u32;
                match i % 3 {
                    0 => st.put(&i, v)?,
                    1 => st.put_batch(&[(i, v.clone())])?,
                    _ => st.write_batch(&[(i, Some(v.clone()))])?,
                }
                st.put_batch(&[(i + n, v.clone())])?;
                st.write_batch(&[(i + 2 * n, Some(v.clone()))])?;
            }
            for (i, w) in want.iter().enumerate() {
                let i = i as u32;
                for k in [i, i + n, i + 2 * n] {
                    assert_eq!(&st.get(&k)?, w, "{backend:?}: key {k}");
                }
            }
            Ok(txn.take_changelog())
        })?;
        // The last changelog write of each key is its value's bytes, or a tombstone (not empty
        // bytes) for a value that serializes to null.
        let last: BTreeMap<&[u8], Option<&[u8]>> = log
            .iter()
            .map(|w| (w.key.as_slice(), w.value.as_deref()))
            .collect();
        for (i, bytes) in serialized.iter().enumerate() {
            let key = (i as u32).to_be_bytes();
            assert_eq!(
                last.get(key.as_slice()),
                Some(&bytes.as_deref()),
                "{backend:?}: key {i}"
            );
        }
        for (into, into_dir) in backends() {
            let mut r = StateStores::open(
                into_dir.path(),
                vec![spec().backend(into)],
                &LmdbOptions::default(),
            )?;
            r.transaction(|txn| {
                for w in &log {
                    txn.restore_raw(
                        w.store,
                        &w.key,
                        w.value.as_deref(),
                        w.timestamp.unwrap_or(0),
                    )?;
                }
                let st = txn.store::<u32, V>("values")?;
                for (i, w) in want.iter().enumerate() {
                    assert_eq!(
                        &st.get(&(i as u32))?,
                        w,
                        "{backend:?} restored into {into:?}"
                    );
                }
                let present = want.iter().filter(|w| w.is_some()).count() * 3;
                assert_eq!(
                    st.iter()?.count(),
                    present,
                    "{backend:?} restored into {into:?}"
                );
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// A `KeyValue<K, ()>` is a set: its keys are present, not deleted by their null-serializing
/// unit value, in both backends and after a restore.
#[test]
fn a_store_of_unit_values_is_a_set_of_its_keys() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let spec = || StoreSpec::new::<String, ()>("seen").backend(backend);
        let mut s = StateStores::open(dir.path(), vec![spec()], &LmdbOptions::default())?;
        let log = s.transaction(|txn| {
            let mut seen = txn.store::<String, ()>("seen")?;
            seen.put_batch(&[("a".to_string(), ()), ("b".to_string(), ())])?;
            seen.delete("b")?;
            assert_eq!(seen.get("a")?, Some(()), "{backend:?}");
            assert_eq!(seen.get("b")?, None, "{backend:?}");
            Ok(txn.take_changelog())
        })?;
        let values: Vec<Option<&[u8]>> = log.iter().map(|w| w.value.as_deref()).collect();
        assert_eq!(values, [Some(&[][..]), Some(&[][..]), None], "{backend:?}");
        let restored = tempfile::tempdir().expect("tempdir");
        let mut r = StateStores::open(restored.path(), vec![spec()], &LmdbOptions::default())?;
        r.transaction(|txn| {
            for w in &log {
                txn.restore_raw(
                    w.store,
                    &w.key,
                    w.value.as_deref(),
                    w.timestamp.unwrap_or(0),
                )?;
            }
            let seen = txn.store::<String, ()>("seen")?;
            assert_eq!(seen.iter()?.count(), 1, "{backend:?}");
            assert_eq!(seen.get("a")?, Some(()), "{backend:?}");
            Ok(())
        })?;
    }
    Ok(())
}

fn no_nan() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN is not equal to itself", |f| !f.is_nan())
}

fn point() -> impl Strategy<Value = Point> {
    (any::<i32>(), ".{0,8}").prop_map(|(x, label)| Point { x, label })
}

macro_rules! round_trips {
    ($($name:ident: $ty:ty = $strategy:expr;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(12))]
            $(
                #[test]
                fn $name(values in proptest::collection::vec($strategy, 0..12)) {
                    value_round_trip::<$ty>(&values).map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
            )*
        }
    };
}

round_trips! {
    round_trip_string: String = ".{0,12}";
    round_trip_bytes: Vec<u8> = proptest::collection::vec(any::<u8>(), 0..12);
    round_trip_i32: i32 = any::<i32>();
    round_trip_i64: i64 = any::<i64>();
    round_trip_u32: u32 = any::<u32>();
    round_trip_u64: u64 = any::<u64>();
    round_trip_f64: f64 = no_nan();
    round_trip_unit: () = Just(());
    round_trip_json: Point = point();
    round_trip_option_string: Option<String> = proptest::option::of(".{0,12}");
    round_trip_option_bytes: Option<Vec<u8>> = proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12));
    round_trip_option_i32: Option<i32> = proptest::option::of(any::<i32>());
    round_trip_option_i64: Option<i64> = proptest::option::of(any::<i64>());
    round_trip_option_u32: Option<u32> = proptest::option::of(any::<u32>());
    round_trip_option_u64: Option<u64> = proptest::option::of(any::<u64>());
    round_trip_option_f64: Option<f64> = proptest::option::of(no_nan());
    round_trip_option_unit: Option<()> = proptest::option::of(Just(()));
    round_trip_option_json: Option<Point> = proptest::option::of(point());
}

#[test]
fn the_map_is_reserved_on_disk_a_quarter_above_its_use_not_doubled() -> kstreams::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let options = LmdbOptions {
        initial_map_size: 1 << 20,
        max_map_size: 1 << 30,
    };
    let mut s = StateStores::open(
        dir.path(),
        vec![StoreSpec::new::<u64, Vec<u8>>("big")],
        &options,
    )?;
    // 6,000 values of 4,000 bytes, one LMDB page each: about 24 MiB of live data, written in
    // batches of 100 as a running task would.
    let value = vec![7u8; 4000];
    for batch in 0..60u64 {
        s.transaction(|txn| {
            let mut big = txn.store::<u64, Vec<u8>>("big")?;
            for i in batch * 100..(batch + 1) * 100 {
                big.put(&i, &value)?;
            }
            Ok(())
        })?;
    }
    let live = 6000 * 4096;
    let file = std::fs::metadata(dir.path().join("data.mdb")).expect("data.mdb");
    let allocated = file.blocks() * 512;
    // Doubling reserved 64 MiB here (2.7 times the data); growing by a quarter keeps it under 1.3.
    assert!(
        allocated < live * 13 / 10,
        "{allocated} bytes reserved for {live} bytes of data"
    );
    // The SIGBUS protection holds: the whole map (the file's length under a write map) is
    // allocated on disk, not sparse.
    assert!(
        allocated >= file.len(),
        "{allocated} bytes allocated of a {}-byte map",
        file.len()
    );
    Ok(())
}

#[kstreams::store(name = "word-counts")]
type WordCounts = kstreams::KeyValue<String, u64>;

/// The README's word count, as written there.
#[kstreams::batch_processor]
fn count_words(
    lines: &[kstreams::Record<(), String>],
    counts: &mut WordCounts,
    out: &mut kstreams::Emit<String, u64>,
) -> kstreams::Result<()> {
    let words: Vec<(usize, String)> = lines
        .iter()
        .enumerate()
        .flat_map(|(i, l)| {
            l.value
                .to_lowercase()
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(|w| (i, w.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    let keys: Vec<String> = words.iter().map(|(_, w)| w.clone()).collect();
    let mut totals = std::collections::HashMap::new();
    for ((i, word), old) in words.into_iter().zip(counts.get_batch(&keys)?) {
        let n = totals.entry(word.clone()).or_insert(old.unwrap_or(0));
        *n += 1;
        out.forward(lines[i].derive(word, *n));
    }
    counts.put_batch(&totals.into_iter().collect::<Vec<_>>())
}

#[test]
fn the_readme_word_count_counts_a_word_of_5000_characters() -> kstreams::Result<()> {
    use kstreams::testing::TopologyTestDriver;
    let long = "x".repeat(5000);
    for in_memory in [false, true] {
        let mut t = kstreams::Topology::builder();
        let lines = t.source::<(), String>("text-input");
        let counts = t.add(count_words, &lines);
        t.sink("word-counts", &counts);
        let mut builder = TopologyTestDriver::builder(t.build()?);
        if in_memory {
            builder = builder.in_memory_state();
        }
        let mut driver = builder.build()?;
        driver.pipe("text-input", (), format!("to be {long} or not"))?;
        driver.pipe("text-input", (), format!("{long} to be"))?;
        let out: Vec<(String, u64)> = driver
            .read_output::<String, u64>("word-counts")?
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect();
        assert!(
            out.contains(&(long.clone(), 2)),
            "in memory: {in_memory}: the long word is counted twice"
        );
        assert!(
            out.contains(&("be".to_owned(), 2)),
            "in memory: {in_memory}"
        );
        let stored = driver.store::<String, u64>("word-counts")?;
        let words: Vec<&str> = stored.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(
            words,
            ["be", "not", "or", "to", long.as_str()],
            "in memory: {in_memory}"
        );
        assert!(stored.contains(&(long.clone(), 2)));
    }
    Ok(())
}
