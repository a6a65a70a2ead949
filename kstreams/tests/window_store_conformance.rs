//! One conformance suite for window and session stores, run on both backends: the in-memory
//! stores must behave exactly as LMDB.

use std::collections::BTreeMap;
use std::time::Duration;

use kstreams::store::{
    Backend, ChangelogWrite, LmdbOptions, PURGE_LIMIT, SessionWindow, StateStores, StoreKind,
    StoreSpec, WindowWrite,
};
use proptest::prelude::*;

const SIZE: Duration = Duration::from_millis(10);
const RETENTION_MS: i64 = 100;
const RETENTION: Duration = Duration::from_millis(RETENTION_MS as u64);

fn specs(backend: Backend) -> Vec<StoreSpec> {
    let w = |s: StoreSpec| s.windowed(SIZE, RETENTION).expect("valid window spec");
    vec![
        w(StoreSpec::new::<String, u64>("windows")).backend(backend),
        w(StoreSpec::new::<Vec<u8>, u64>("bytes")).backend(backend),
        w(StoreSpec::new::<String, Option<u64>>("optional")).backend(backend),
        StoreSpec::new::<String, u64>("sessions")
            .sessions(RETENTION)
            .expect("valid session spec")
            .backend(backend),
        StoreSpec::new::<String, u64>("kv").backend(backend),
    ]
}

const WINDOWS: usize = 0;
const BYTES: usize = 1;
const SESSIONS: usize = 3;

fn open(backend: Backend, dir: &std::path::Path) -> StateStores {
    StateStores::open(dir, specs(backend), &LmdbOptions::default()).expect("stores open")
}

fn backends() -> Vec<(Backend, tempfile::TempDir)> {
    vec![
        (Backend::Lmdb, tempfile::tempdir().expect("tempdir")),
        (Backend::InMemory, tempfile::tempdir().expect("tempdir")),
    ]
}

/// Runs `f` in one transaction and returns what it returned and the changelog it wrote.
fn txn<R>(
    s: &mut StateStores,
    f: impl Fn(&kstreams::store::StateTxn<'_>) -> kstreams::Result<R>,
) -> kstreams::Result<(R, Vec<ChangelogWrite>)> {
    s.transaction(|t| {
        let r = f(t)?;
        Ok((r, t.take_changelog()))
    })
}

#[test]
fn put_get_fetch_in_time_order() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        txn(&mut s, |t| {
            let w = t.window_store::<String, u64>("windows")?;
            for (start, v) in [(30, 3), (10, 1), (20, 2), (-10, 9)] {
                assert_eq!(w.put(&"k".into(), start, &v)?, WindowWrite::Stored);
            }
            w.put(&"other".into(), 20, &7).map(|_| ())?;
            assert_eq!(w.get("k", 20)?, Some(2), "{backend:?}");
            assert_eq!(w.get("k", 25)?, None, "{backend:?}");
            assert_eq!(
                w.fetch("k", -100, 100)?,
                vec![(-10, 9), (10, 1), (20, 2), (30, 3)],
                "{backend:?}: one key's windows, in time order, negative starts first"
            );
            assert_eq!(
                w.fetch("k", 10, 20)?,
                vec![(10, 1), (20, 2)],
                "{backend:?}: inclusive"
            );
            assert_eq!(w.fetch("k", 21, 20)?, vec![], "{backend:?}: empty range");
            assert_eq!(
                w.fetch_all(10, 20)?,
                vec![
                    ("k".to_owned(), 10, 1),
                    ("k".to_owned(), 20, 2),
                    ("other".to_owned(), 20, 7)
                ],
                "{backend:?}: by start, then key"
            );
            assert_eq!(
                w.get_batch(&[("k", 30), ("zz", 30), ("other", 20)])?,
                vec![Some(3), None, Some(7)]
            );
            let outcomes = w.put_batch(&[("b".into(), 0, 1), ("b".into(), 0, 2)])?;
            assert_eq!(outcomes, vec![WindowWrite::Stored; 2]);
            assert_eq!(
                w.fetch("b", 0, 0)?,
                vec![(0, 2)],
                "{backend:?}: last put wins"
            );
            w.delete("k", 20)?;
            assert_eq!(w.fetch("k", 10, 30)?, vec![(10, 1), (30, 3)], "{backend:?}");
            assert_eq!(w.window_size(), 10);
            assert_eq!(w.retention(), RETENTION_MS);
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn a_prefix_key_never_gets_the_longer_keys_windows() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        txn(&mut s, |t| {
            let w = t.window_store::<Vec<u8>, u64>("bytes")?;
            let keys: [&[u8]; 6] = [b"", b"\0", b"a", b"a\0", b"a\0\0", b"ab"];
            for (i, k) in keys.iter().enumerate() {
                for start in [i64::MIN, 0, 5, i64::MAX] {
                    w.put(&k.to_vec(), start, &(i as u64)).map(|_| ())?;
                }
            }
            for (i, k) in keys.iter().enumerate() {
                let got = w.fetch(*k, i64::MIN, i64::MAX)?;
                let want: Vec<_> = [i64::MIN, 0, 5, i64::MAX]
                    .into_iter()
                    .map(|s| (s, i as u64))
                    .collect();
                assert_eq!(got, want, "{backend:?}: key {k:?}");
            }
            // fetch_all: by start, then key bytes (keys in byte order).
            let at_five: Vec<_> = w.fetch_all(5, 5)?.into_iter().map(|(k, _, _)| k).collect();
            assert_eq!(at_five, keys.map(<[u8]>::to_vec).to_vec(), "{backend:?}");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn keys_of_zero_and_a_million_bytes() -> kstreams::Result<()> {
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut big_other = big.clone();
    *big_other.last_mut().expect("non-empty") ^= 1;
    let mut big_longer = big.clone();
    big_longer.push(0);
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        let keys = [
            Vec::new(),
            big.clone(),
            big_other.clone(),
            big_longer.clone(),
        ];
        txn(&mut s, |t| {
            let w = t.window_store::<Vec<u8>, u64>("bytes")?;
            for (i, k) in keys.iter().enumerate() {
                for start in 0..3 {
                    w.put(k, start * 10, &(i as u64 * 10 + start as u64))
                        .map(|_| ())?;
                }
            }
            Ok(())
        })?;
        txn(&mut s, |t| {
            let w = t.window_store::<Vec<u8>, u64>("bytes")?;
            for (i, k) in keys.iter().enumerate() {
                let i = i as u64;
                assert_eq!(
                    w.fetch(k, 0, 20)?,
                    vec![(0, i * 10), (10, i * 10 + 1), (20, i * 10 + 2)],
                    "{backend:?}: key {i}"
                );
                assert_eq!(w.get(k, 10)?, Some(i * 10 + 1), "{backend:?}: key {i}");
            }
            let all = w.fetch_all(10, 10)?;
            assert_eq!(all.len(), 4, "{backend:?}");
            let mut sorted = keys.to_vec();
            sorted.sort();
            assert_eq!(
                all.into_iter().map(|(k, _, _)| k).collect::<Vec<_>>(),
                sorted,
                "{backend:?}: key byte order"
            );
            w.delete(&big, 10)?;
            assert_eq!(
                w.fetch(&big, 0, 20)?,
                vec![(0, 10), (20, 12)],
                "{backend:?}"
            );
            assert_eq!(w.get(&big_other, 10)?, Some(21), "{backend:?}");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn retention_hides_at_once_and_purges_in_bounded_steps_after_a_jump() -> kstreams::Result<()> {
    let n = 2 * PURGE_LIMIT + 100;
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        txn(&mut s, |t| {
            let w = t.window_store::<String, u64>("windows")?;
            for i in 0..n {
                w.put(&format!("k{}", i % 7), i as i64, &(i as u64))
                    .map(|_| ())?;
            }
            assert_eq!(
                w.stream_time()?,
                None,
                "{backend:?}: puts do not move stream time"
            );
            assert_eq!(w.fetch_all(0, n as i64)?.len(), n);
            Ok(())
        })?;
        // Stream time jumps far ahead: every window but the last is expired at once.
        let last = n as i64 - 1;
        let (purged, log) = txn(&mut s, |t| {
            let w = t.window_store::<String, u64>("windows")?;
            let purged = w.advance_stream_time(last + RETENTION_MS - 1)?;
            let k = format!("k{}", last % 7);
            assert_eq!(
                w.fetch_all(i64::MIN, i64::MAX)?,
                vec![(k.clone(), last, last as u64)]
            );
            assert_eq!(
                w.fetch(&k, 0, last)?,
                vec![(last, last as u64)],
                "{backend:?}"
            );
            assert_eq!(
                w.get("k0", 0)?,
                None,
                "{backend:?}: expired, not yet purged"
            );
            assert_eq!(
                w.put(&"k0".into(), 0, &1)?,
                WindowWrite::Expired,
                "{backend:?}"
            );
            assert_eq!(
                w.put(&"k0".into(), last, &1)?,
                WindowWrite::Stored,
                "{backend:?}"
            );
            Ok(purged)
        })?;
        assert_eq!(purged, PURGE_LIMIT, "{backend:?}: bounded work per call");
        assert_eq!(
            log.len(),
            1,
            "{backend:?}: purges are not logged, the put is"
        );
        let (rest, _) = txn(&mut s, |t| {
            let w = t.window_store::<String, u64>("windows")?;
            // An earlier stream time is ignored.
            Ok([
                w.advance_stream_time(0)?,
                w.advance_stream_time(0)?,
                w.advance_stream_time(0)?,
                w.stream_time()?.unwrap_or_default() as usize,
            ])
        })?;
        assert_eq!(
            rest,
            [
                PURGE_LIMIT,
                n - 1 - 2 * PURGE_LIMIT,
                0,
                (last + RETENTION_MS - 1) as usize
            ],
            "{backend:?}"
        );
        txn(&mut s, |t| {
            let w = t.window_store::<String, u64>("windows")?;
            assert_eq!(w.fetch_all(i64::MIN, i64::MAX)?.len(), 2, "{backend:?}");
            // Stream time exactly start + retention: the last windows expire too.
            w.advance_stream_time(last + RETENTION_MS)?;
            assert_eq!(w.fetch_all(i64::MIN, i64::MAX)?, vec![], "{backend:?}");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn a_far_future_put_does_not_hide_a_window_still_to_be_emitted() -> kstreams::Result<()> {
    // KAFKA-12960: the window [0, 10) is closed by a record at 1,000; an operator that emits on
    // close must still find it after putting the new record's window, before it advances.
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        txn(&mut s, |t| {
            let w = t.window_store::<String, u64>("windows")?;
            w.advance_stream_time(5)?;
            w.put(&"k".into(), 0, &1).map(|_| ())?;
            w.put(&"k".into(), 1_000, &1).map(|_| ())?;
            assert_eq!(
                w.fetch_all(0, 0)?,
                vec![("k".to_owned(), 0, 1)],
                "{backend:?}"
            );
            w.advance_stream_time(1_000)?;
            assert_eq!(w.fetch_all(0, 0)?, vec![], "{backend:?}");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn an_aborted_batch_leaves_no_window_nor_stream_time() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        let r: kstreams::Result<()> = s.transaction(|t| {
            let w = t.window_store::<String, u64>("windows")?;
            w.put(&"k".into(), 0, &1).map(|_| ())?;
            w.advance_stream_time(1_000)?;
            Err(kstreams::Error::processing("abort"))
        });
        assert!(r.is_err());
        txn(&mut s, |t| {
            let w = t.window_store::<String, u64>("windows")?;
            assert_eq!(w.stream_time()?, None, "{backend:?}");
            assert_eq!(w.fetch_all(i64::MIN, i64::MAX)?, vec![], "{backend:?}");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn null_values_are_deletes_and_tombstones() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        let (_, log) = txn(&mut s, |t| {
            let w = t.window_store::<String, Option<u64>>("optional")?;
            w.put(&"k".into(), 0, &Some(1)).map(|_| ())?;
            w.put(&"k".into(), 0, &None).map(|_| ())?;
            assert_eq!(w.fetch("k", 0, 0)?, vec![], "{backend:?}");
            assert_eq!(
                w.fetch_all(0, 0)?,
                vec![],
                "{backend:?}: index entry gone too"
            );
            Ok(())
        })?;
        assert_eq!(log.len(), 2);
        assert_eq!(log[1].value, None, "{backend:?}: a tombstone");
    }
    Ok(())
}

#[test]
fn changelog_keys_are_kafka_streams_windowed_keys() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        let (_, log) = txn(&mut s, |t| {
            let w = t.window_store::<String, u64>("windows")?;
            w.put(&"ab".into(), 258, &1).map(|_| ())?;
            w.delete("ab", 258)?;
            let ss = t.session_store::<String, u64>("sessions")?;
            ss.put(&"ab".into(), SessionWindow::new(1, 2), &3)
                .map(|_| ())?;
            Ok(())
        })?;
        let window_key = [b'a', b'b', 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0].to_vec();
        assert_eq!(
            log,
            vec![
                ChangelogWrite {
                    store: WINDOWS,
                    key: window_key.clone(),
                    value: Some(1u64.to_be_bytes().to_vec()),
                    timestamp: None,
                },
                ChangelogWrite {
                    store: WINDOWS,
                    key: window_key,
                    value: None,
                    timestamp: None,
                },
                ChangelogWrite {
                    store: SESSIONS,
                    key: [b'a', b'b', 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1].to_vec(),
                    value: Some(3u64.to_be_bytes().to_vec()),
                    timestamp: None,
                },
            ],
            "{backend:?}"
        );
    }
    Ok(())
}

#[test]
fn restore_from_the_changelog_recreates_entries_and_the_time_index() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        let big = vec![7u8; 1_000_000];
        let ((), log) = txn(&mut s, |t| {
            let w = t.window_store::<String, u64>("windows")?;
            for i in 0..20 {
                w.put(&format!("k{}", i % 3), i * 5, &(i as u64))
                    .map(|_| ())?;
            }
            w.delete("k0", 0)?;
            let b = t.window_store::<Vec<u8>, u64>("bytes")?;
            b.put(&big, 3, &3).map(|_| ())?;
            b.put(&Vec::new(), 3, &4).map(|_| ())?;
            let ss = t.session_store::<String, u64>("sessions")?;
            ss.put(&"s".into(), SessionWindow::new(0, 10), &1)
                .map(|_| ())?;
            ss.put(&"s".into(), SessionWindow::new(20, 30), &2)
                .map(|_| ())?;
            ss.remove("s", SessionWindow::new(0, 10))?;
            Ok(())
        })?;
        let want = txn(&mut s, |t| {
            Ok((
                t.window_store::<String, u64>("windows")?
                    .fetch_all(i64::MIN, i64::MAX)?,
                t.window_store::<Vec<u8>, u64>("bytes")?
                    .fetch_all(i64::MIN, i64::MAX)?,
                t.session_store::<String, u64>("sessions")?
                    .find_all_sessions(i64::MIN, i64::MAX)?,
            ))
        })?
        .0;
        drop(s);
        // A lost disk: a new state directory, rebuilt from the changelog records alone.
        let fresh = tempfile::tempdir().expect("tempdir");
        let mut r = open(backend, fresh.path());
        r.transaction(|t| {
            for c in &log {
                t.restore_raw(c.store, &c.key, c.value.as_deref(), 0)?;
            }
            Ok(())
        })?;
        let (got, relog) = txn(&mut r, |t| {
            Ok((
                t.window_store::<String, u64>("windows")?
                    .fetch_all(i64::MIN, i64::MAX)?,
                t.window_store::<Vec<u8>, u64>("bytes")?
                    .fetch_all(i64::MIN, i64::MAX)?,
                t.session_store::<String, u64>("sessions")?
                    .find_all_sessions(i64::MIN, i64::MAX)?,
            ))
        })?;
        assert_eq!(got, want, "{backend:?}");
        assert!(
            relog.is_empty(),
            "{backend:?}: a restore is not logged again"
        );
        assert_eq!(got.0.len(), 19);
        // The time index was restored: the purge finds the expired windows through it.
        let (purged, _) = txn(&mut r, |t| {
            let w = t.window_store::<String, u64>("windows")?;
            let purged = w.advance_stream_time(RETENTION_MS + 50)?;
            assert_eq!(w.fetch_all(i64::MIN, i64::MAX)?.len(), 9, "{backend:?}");
            Ok(purged)
        })?;
        assert_eq!(purged, 10, "{backend:?}: windows 5..=50 purged");
        // A record that is not a windowed changelog key is a clear error naming the store.
        let err = r
            .transaction(|t| t.restore_raw(BYTES, b"short", Some(b"x"), 0))
            .expect_err("a 5-byte key is not a window changelog key");
        let msg = err.to_string();
        assert!(msg.contains("`bytes`") && msg.contains("5 bytes"), "{msg}");
    }
    Ok(())
}

#[test]
fn sessions_find_merge_candidates_remove_and_expire_by_end() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        txn(&mut s, |t| {
            let ss = t.session_store::<String, u64>("sessions")?;
            let sw = SessionWindow::new;
            for (k, w, v) in [
                ("a", sw(0, 10), 1),
                ("a", sw(20, 30), 2),
                ("a", sw(50, 50), 3),
                ("ab", sw(12, 18), 9),
                ("", sw(12, 18), 8),
            ] {
                assert_eq!(ss.put(&k.into(), w, &v)?, WindowWrite::Stored);
            }
            // A record at 15 with a gap of 5 merges with sessions ending at >= 10, starting <= 20.
            assert_eq!(
                ss.find_sessions("a", 10, 20)?,
                vec![(sw(0, 10), 1), (sw(20, 30), 2)],
                "{backend:?}"
            );
            assert_eq!(ss.find_sessions("a", 11, 19)?, vec![], "{backend:?}");
            // A record inside a session (at 25, gap 0) finds that session.
            assert_eq!(ss.find_sessions("a", 25, 25)?, vec![(sw(20, 30), 2)]);
            assert_eq!(ss.find_sessions("", 0, 100)?, vec![(sw(12, 18), 8)]);
            assert_eq!(ss.get("ab", sw(12, 18))?, Some(9));
            assert!(
                ss.put(&"a".into(), sw(5, 1), &1).is_err(),
                "start after end"
            );
            ss.remove("a", sw(0, 10))?;
            assert_eq!(
                ss.find_all_sessions(0, 30)?,
                vec![
                    ("".to_owned(), sw(12, 18), 8),
                    ("ab".to_owned(), sw(12, 18), 9),
                    ("a".to_owned(), sw(20, 30), 2)
                ],
                "{backend:?}: by end, then key"
            );
            // Sessions expire by their end: at stream time 130, the ones ending at or before 30.
            let purged = ss.advance_stream_time(30 + RETENTION_MS)?;
            assert_eq!(purged, 3, "{backend:?}");
            assert_eq!(
                ss.find_all_sessions(i64::MIN, i64::MAX)?,
                vec![("a".to_owned(), sw(50, 50), 3)]
            );
            assert_eq!(ss.put(&"a".into(), sw(0, 30), &1)?, WindowWrite::Expired);
            assert_eq!(ss.retention(), RETENTION_MS);
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn a_store_is_bound_only_as_its_kind() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        s.transaction(|t| {
            let e = t
                .store::<String, u64>("windows")
                .expect_err("not a key-value store");
            assert!(e.to_string().contains("is a window store"), "{e}");
            let e = t
                .window_store::<String, u64>("kv")
                .expect_err("not a window store");
            assert!(e.to_string().contains("is a key-value store"), "{e}");
            let e = t
                .session_store::<String, u64>("windows")
                .expect_err("not sessions");
            assert!(e.to_string().contains("not a session store"), "{e}");
            let e = t
                .window_store::<u32, u64>("windows")
                .expect_err("wrong key type");
            assert!(e.to_string().contains("not `u32`"), "{e}");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn specs_validate_and_say_their_changelog_topic_config() {
    let spec = StoreSpec::new::<String, u64>("w")
        .windowed(Duration::from_secs(60), Duration::from_secs(65))
        .expect("valid");
    assert_eq!(
        spec.kind(),
        StoreKind::Window {
            size_ms: 60_000,
            retention_ms: 65_000
        }
    );
    assert_eq!(
        spec.changelog_topic_config(),
        vec![
            ("cleanup.policy", "compact,delete".to_owned()),
            ("retention.ms", (65_000 + 86_400_000).to_string())
        ]
    );
    assert_eq!(
        StoreSpec::new::<String, u64>("kv").changelog_topic_config(),
        vec![("cleanup.policy", "compact".to_owned())]
    );
    let e = StoreSpec::new::<String, u64>("w")
        .windowed(Duration::from_secs(60), Duration::from_secs(59))
        .expect_err("retention below size");
    assert!(e.to_string().contains("window store `w`"), "{e}");
    assert!(
        StoreSpec::new::<String, u64>("w")
            .windowed(Duration::ZERO, Duration::from_secs(1))
            .is_err()
    );
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, i64, u64),
    Delete(u8, i64),
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4, 0i64..300, any::<u64>()).prop_map(|(k, s, v)| Op::Put(k, s, v)),
        2 => (0u8..4, 0i64..300).prop_map(|(k, s)| Op::Delete(k, s)),
        1 => (0i64..500).prop_map(Op::Advance),
    ]
}

/// Keys that are prefixes of each other.
fn key(k: u8) -> Vec<u8> {
    vec![b'a'; k as usize]
}

/// The model: a map of (key, start) to value, the stream time, and the expiry rule.
#[derive(Default)]
struct Model {
    map: BTreeMap<(Vec<u8>, i64), u64>,
    stream_time: Option<i64>,
}

impl Model {
    fn live(&self, start: i64) -> bool {
        self.stream_time.is_none_or(|t| start > t - RETENTION_MS)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn window_store_matches_a_btreemap_model(
        batches in proptest::collection::vec(proptest::collection::vec(op(), 0..40), 1..6),
        probes in proptest::collection::vec((0u8..4, 0i64..300, 0i64..300), 4),
    ) {
        for (backend, dir) in backends() {
            let mut s = open(backend, dir.path());
            let mut model = Model::default();
            for batch in &batches {
                for op in batch {
                    match *op {
                        Op::Put(k, start, v) => {
                            if model.live(start) {
                                model.map.insert((key(k), start), v);
                            }
                        }
                        Op::Delete(k, start) => {
                            model.map.remove(&(key(k), start));
                        }
                        Op::Advance(t) => {
                            model.stream_time = Some(model.stream_time.map_or(t, |o| o.max(t)));
                        }
                    }
                }
                s.transaction(|t| {
                    let w = t.window_store::<Vec<u8>, u64>("bytes")?;
                    for op in batch {
                        match *op {
                            Op::Put(k, start, v) => {
                                let want = if model_live_at(&w, start)? {
                                    WindowWrite::Stored
                                } else {
                                    WindowWrite::Expired
                                };
                                assert_eq!(w.put(&key(k), start, &v)?, want);
                            }
                            Op::Delete(k, start) => w.delete(&key(k), start)?,
                            Op::Advance(t) => {
                                w.advance_stream_time(t)?;
                            }
                        }
                    }
                    Ok(())
                }).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let live: Vec<(Vec<u8>, i64, u64)> = {
                    let mut v: Vec<_> = model
                        .map
                        .iter()
                        .filter(|((_, s), _)| model.live(*s))
                        .map(|((k, s), v)| (k.clone(), *s, *v))
                        .collect();
                    v.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
                    v
                };
                let (all, fetched) = s.transaction(|t| {
                    let w = t.window_store::<Vec<u8>, u64>("bytes")?;
                    let all = w.fetch_all(i64::MIN, i64::MAX)?;
                    let mut fetched = Vec::new();
                    for (k, from, to) in &probes {
                        fetched.push(w.fetch(&key(*k), *from, *to)?);
                    }
                    Ok((all, fetched))
                }).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&all, &live, "{:?}: fetch_all", backend);
                for ((k, from, to), got) in probes.iter().zip(fetched) {
                    let want: Vec<(i64, u64)> = live
                        .iter()
                        .filter(|(kk, s, _)| *kk == key(*k) && s >= from && s <= to)
                        .map(|(_, s, v)| (*s, *v))
                        .collect();
                    prop_assert_eq!(got, want, "{:?}: fetch {} {}..={}", backend, k, from, to);
                }
            }
        }
    }
}

/// Whether a put at `start` is live for the store's current stream time (the model's rule,
/// evaluated on the store's own stream time, which the test checks separately through fetches).
fn model_live_at(
    w: &kstreams::store::WindowStore<'_, Vec<u8>, u64>,
    start: i64,
) -> kstreams::Result<bool> {
    Ok(w.stream_time()?.is_none_or(|t| start > t - RETENTION_MS))
}

/// A tumbling count of 10 ms windows over a window store reached through the processor's
/// context: stream time is passed to the store at the end of each batch.
#[derive(Debug, Clone)]
struct TumblingCount;

impl kstreams::BatchProcessor<String, String> for TumblingCount {
    type OutKey = String;
    type OutValue = u64;
    fn stores(&self) -> Vec<StoreSpec> {
        vec![
            StoreSpec::new::<String, u64>("counts")
                .windowed(SIZE, SIZE)
                .expect("valid window spec"),
        ]
    }
    fn process_batch(
        &mut self,
        records: &[kstreams::Record<String, String>],
        ctx: &mut kstreams::Context<'_, String, u64>,
    ) -> kstreams::Result<()> {
        let w = ctx.window_store::<String, u64>("counts")?;
        let mut out = Vec::new();
        for r in records {
            let start = r.timestamp - r.timestamp.rem_euclid(10);
            let count = w.get(&r.key, start)?.unwrap_or(0) + 1;
            if w.put(&r.key, start, &count)? == WindowWrite::Stored {
                out.push(kstreams::Record::new(r.key.clone(), count).with_timestamp(r.timestamp));
            }
        }
        w.advance_stream_time(ctx.stream_time())?;
        for r in out {
            ctx.forward(r);
        }
        Ok(())
    }
}

#[test]
fn a_processor_counts_in_a_window_store_and_logs_kafka_windowed_keys() -> kstreams::Result<()> {
    for in_memory in [false, true] {
        let mut t = kstreams::Topology::builder();
        let s = t.source::<String, String>("in");
        let p = t.add(TumblingCount, &s);
        t.sink("out", &p);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b =
            kstreams::testing::TopologyTestDriver::builder(t.build()?).state_dir(dir.path());
        if in_memory {
            b = b.in_memory_state();
        }
        let mut d = b.build()?;
        let rec =
            |k: &str, ts| kstreams::Record::new(k.to_owned(), String::new()).with_timestamp(ts);
        d.pipe_batch(
            "in",
            [
                rec("a", 1),
                rec("a", 5),
                rec("b", 7),
                rec("a", 12),
                rec("a", 3),
            ],
        )?;
        // Stream time is 12: the window [0, 10) is expired (0 <= 12 - 10), a record for it is
        // refused; [10, 20) is live.
        d.pipe_batch("in", [rec("a", 4), rec("a", 15)])?;
        let got: Vec<(String, u64)> = d
            .read_output::<String, u64>("out")?
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect();
        let want: Vec<(String, u64)> = [("a", 1), ("a", 2), ("b", 1), ("a", 1), ("a", 3), ("a", 2)]
            .into_iter()
            .map(|(k, c)| (k.to_owned(), c))
            .collect();
        assert_eq!(got, want, "in memory: {in_memory}");
        let changelog = d
            .topic_names()
            .into_iter()
            .find(|n| n.ends_with("-counts-changelog"))
            .expect("a changelog topic");
        let keys: Vec<Vec<u8>> = d
            .read_output_raw(&changelog)
            .into_iter()
            .filter_map(|(_, _, r)| r.key)
            .collect();
        let kafka_key = |k: &str, start: i64| {
            [k.as_bytes(), &start.to_be_bytes(), &0u32.to_be_bytes()].concat()
        };
        assert_eq!(
            keys,
            vec![
                kafka_key("a", 0),
                kafka_key("a", 0),
                kafka_key("b", 0),
                kafka_key("a", 10),
                kafka_key("a", 0),
                kafka_key("a", 10)
            ],
            "in memory: {in_memory}"
        );
    }
    Ok(())
}

#[test]
fn the_test_driver_shows_live_windows_only() -> kstreams::Result<()> {
    let mut t = kstreams::Topology::builder();
    let s = t.source::<String, String>("in");
    let p = t.add(TumblingCount, &s);
    t.sink("out", &p);
    let mut d = kstreams::testing::TopologyTestDriver::builder(t.build()?)
        .in_memory_state()
        .build()?;
    let rec = |k: &str, ts| kstreams::Record::new(k.to_owned(), String::new()).with_timestamp(ts);
    d.pipe_batch("in", [rec("b", 1), rec("a", 2), rec("a", 5)])?;
    assert_eq!(
        d.window_store::<String, u64>("counts")?,
        vec![("a".to_owned(), 0, 2), ("b".to_owned(), 0, 1)]
    );
    d.pipe_batch("in", [rec("a", 15)])?;
    assert_eq!(
        d.window_store::<String, u64>("counts")?,
        vec![("a".to_owned(), 10, 1)],
        "[0, 10) expired at stream time 15"
    );
    assert!(
        d.session_store::<String, u64>("counts").is_err(),
        "not a session store"
    );
    Ok(())
}

/// The split check compares what a windowed store answers, not how far its bounded purge got:
/// one batch purges at most `PURGE_LIMIT` of the expired windows where batches of one purge them
/// all, and both hold the same live windows.
#[test]
fn the_split_check_compares_live_windows_not_purge_progress() -> kstreams::Result<()> {
    let mut t = kstreams::Topology::builder();
    let s = t.source::<String, String>("in");
    let p = t.add(TumblingCount, &s);
    t.sink("out", &p);
    let topology = t.build()?;
    let n = PURGE_LIMIT + 200;
    let records = (0..n)
        .map(|i| kstreams::Record::new(format!("k{i}"), String::new()).with_timestamp(0))
        .chain(
            [100, 101]
                .map(|ts| kstreams::Record::new("x".to_owned(), String::new()).with_timestamp(ts)),
        );
    let input = kstreams::testing::SplitInput::new()
        .partitions("in", 1)
        .records("in", records)?;
    kstreams::testing::SplitCheck::new(&topology)
        .seed(3)
        .runs(2)
        .run(&input)?;
    Ok(())
}
