//! One conformance suite, run on both backends: the in-memory store must behave exactly as LMDB.

use std::ops::Bound;

use kstreams::store::{Backend, LmdbOptions, StateStores, StoreSpec};

fn open(backend: Backend, dir: &std::path::Path) -> StateStores {
    let specs = vec![
        StoreSpec::new::<String, u64>("counts").backend(backend),
        StoreSpec::new::<u32, String>("names").backend(backend),
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
            let c = txn.store::<String, u64>("counts")?;
            assert_eq!(c.get(&"a".into())?, None, "{backend:?}");
            c.put(&"a".into(), &1)?;
            c.put(&"a".into(), &2)?;
            assert_eq!(c.get(&"a".into())?, Some(2), "{backend:?}: last put wins");
            c.delete(&"a".into())?;
            assert_eq!(c.get(&"a".into())?, None, "{backend:?}");
            c.delete(&"never".into())?;
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
            let c = txn.store::<String, u64>("counts")?;
            c.put_batch(&[("b".into(), 2), ("a".into(), 1), ("b".into(), 3)])?;
            let got = c.get_batch(&["b".into(), "zz".into(), "a".into(), "b".into()])?;
            assert_eq!(got, vec![Some(3), None, Some(1), Some(3)], "{backend:?}");
            // A put then a delete of one key in a batch leaves it deleted; a delete then a put
            // leaves it present.
            c.write_batch(&[
                ("x".into(), Some(1)),
                ("x".into(), None),
                ("y".into(), None),
                ("y".into(), Some(9)),
            ])?;
            assert_eq!(c.get_batch(&["x".into(), "y".into()])?, vec![None, Some(9)]);
            c.delete_batch(&["a".into(), "y".into()])?;
            assert_eq!(
                c.get_batch(&["a".into(), "y".into(), "b".into()])?,
                vec![None, None, Some(3)]
            );
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
            let names = txn.store::<u32, String>("names")?;
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
            let c = txn.store::<String, u64>("counts")?;
            c.put(&"kept".into(), &2)?;
            c.put(&"new".into(), &5)?;
            c.delete(&"kept".into())?;
            txn.set_input_position("in", 0, 20)?;
            Err(kstreams::Error::processing("boom"))
        });
        assert!(failed.is_err());
        s.transaction(|txn| {
            let c = txn.store::<String, u64>("counts")?;
            assert_eq!(c.get(&"kept".into())?, Some(1), "{backend:?}");
            assert_eq!(c.get(&"new".into())?, None, "{backend:?}");
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
            txn.restore_raw(0, b"k", Some(&[1, 2, 3]))?;
            let err = txn
                .store::<String, u64>("counts")?
                .get(&"k".into())
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
        txn.store::<String, u64>("logged")?.delete(&"a".into())?;
        txn.store::<String, u64>("quiet")?.put(&"b".into(), &2)?;
        txn.restore_raw(0, b"r", Some(b"x"))?;
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
        assert_eq!(
            txn.store::<String, u64>("counts")?.get(&"a".into())?,
            Some(7)
        );
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
        let big = txn.store::<u64, Vec<u8>>("big")?;
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
            let big = txn.store::<u64, Vec<u8>>("big")?;
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
        let small = txn.store::<u64, Vec<u8>>("small")?;
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
