//! One conformance suite for versioned stores (Kafka Streams' KIP-889 semantics), run on both
//! backends: the in-memory store must behave exactly as LMDB, and both as a model (a `BTreeMap`
//! of versions per key) within the history retention.

use std::collections::BTreeMap;
use std::time::Duration;

use kstreams::store::{
    Backend, ChangelogWrite, LmdbOptions, StateStores, StoreKind, StoreSpec, VersionedPut,
    VersionedRecord,
};
use proptest::prelude::*;

const HISTORY_MS: i64 = 100;
const HISTORY: Duration = Duration::from_millis(HISTORY_MS as u64);

fn specs(backend: Backend) -> Vec<StoreSpec> {
    let v = |s: StoreSpec| s.versioned(HISTORY).expect("valid versioned spec");
    vec![
        v(StoreSpec::new::<String, u64>("prices")).backend(backend),
        v(StoreSpec::new::<Vec<u8>, u64>("bytes")).backend(backend),
        v(StoreSpec::new::<String, u64>("quiet"))
            .changelog(false)
            .backend(backend),
        StoreSpec::new::<String, u64>("kv").backend(backend),
    ]
}

const PRICES: usize = 0;

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

fn rec(value: u64, timestamp: i64, valid_to: Option<i64>) -> Option<VersionedRecord<u64>> {
    Some(VersionedRecord {
        value,
        timestamp,
        valid_to,
    })
}

#[test]
fn as_of_reads_the_version_valid_then_and_out_of_order_puts_land_in_place() -> kstreams::Result<()>
{
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        txn(&mut s, |t| {
            let mut p = t.versioned_store::<String, u64>("prices")?;
            let k = "k".to_owned();
            assert_eq!(p.put(&k, Some(&1), 10)?, VersionedPut::Latest);
            assert_eq!(p.put(&k, Some(&3), 30)?, VersionedPut::Latest);
            assert_eq!(p.put(&k, Some(&2), 20)?, VersionedPut::Older, "{backend:?}");
            assert_eq!(p.put(&k, Some(&0), 5)?, VersionedPut::Older, "{backend:?}");
            assert_eq!(
                p.get_as_of("k", 4)?,
                None,
                "{backend:?}: before the first version"
            );
            assert_eq!(p.get_as_of("k", 5)?, rec(0, 5, Some(10)), "{backend:?}");
            assert_eq!(p.get_as_of("k", 9)?, rec(0, 5, Some(10)), "{backend:?}");
            assert_eq!(p.get_as_of("k", 10)?, rec(1, 10, Some(20)), "{backend:?}");
            assert_eq!(p.get_as_of("k", 25)?, rec(2, 20, Some(30)), "{backend:?}");
            assert_eq!(p.get_as_of("k", 30)?, rec(3, 30, None), "{backend:?}");
            assert_eq!(p.get_as_of("k", i64::MAX)?, rec(3, 30, None), "{backend:?}");
            assert_eq!(p.get("k")?, rec(3, 30, None), "{backend:?}: the latest");
            // A put at a version's timestamp replaces it, in the history and as the latest.
            assert_eq!(p.put(&k, Some(&22), 20)?, VersionedPut::Older);
            assert_eq!(p.put(&k, Some(&33), 30)?, VersionedPut::Latest);
            assert_eq!(p.get_as_of("k", 29)?, rec(22, 20, Some(30)), "{backend:?}");
            assert_eq!(p.get("k")?, rec(33, 30, None), "{backend:?}");
            assert_eq!(
                p.get_batch_as_of(&[("k", 12), ("other", 12), ("k", 31)])?,
                vec![rec(1, 10, Some(20)), None, rec(33, 30, None)],
                "{backend:?}"
            );
            assert_eq!(p.observed_stream_time()?, Some(30), "{backend:?}");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn tombstones_are_versions() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        txn(&mut s, |t| {
            let mut p = t.versioned_store::<String, u64>("prices")?;
            let k = "k".to_owned();
            p.put(&k, Some(&1), 10).map(drop)?;
            assert_eq!(p.put(&k, None, 20)?, VersionedPut::Latest);
            assert_eq!(p.get("k")?, None, "{backend:?}: the latest is a tombstone");
            assert_eq!(p.get_as_of("k", 25)?, None, "{backend:?}");
            assert_eq!(p.get_as_of("k", 19)?, rec(1, 10, Some(20)), "{backend:?}");
            // A value after the tombstone; one before it ends at the tombstone.
            p.put(&k, Some(&4), 40).map(drop)?;
            assert_eq!(p.put(&k, Some(&2), 15)?, VersionedPut::Older);
            assert_eq!(p.get_as_of("k", 17)?, rec(2, 15, Some(20)), "{backend:?}");
            assert_eq!(p.get_as_of("k", 39)?, None, "{backend:?}");
            assert_eq!(p.get("k")?, rec(4, 40, None), "{backend:?}");
            // A tombstone on a key that has nothing still bounds an older put.
            let e = "empty".to_owned();
            assert_eq!(p.put(&e, None, 30)?, VersionedPut::Latest);
            assert_eq!(p.get("empty")?, None);
            assert_eq!(p.put(&e, Some(&7), 25)?, VersionedPut::Older, "{backend:?}");
            assert_eq!(
                p.get_as_of("empty", 29)?,
                rec(7, 25, Some(30)),
                "{backend:?}"
            );
            assert_eq!(p.get_as_of("empty", 30)?, None, "{backend:?}");
            // A tombstone replaced by a value at its timestamp.
            p.put(&e, Some(&8), 30).map(drop)?;
            assert_eq!(p.get("empty")?, rec(8, 30, None), "{backend:?}");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn history_retention_hides_old_versions_but_never_the_latest() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        txn(&mut s, |t| {
            let mut p = t.versioned_store::<String, u64>("prices")?;
            let (a, b) = ("a".to_owned(), "b".to_owned());
            p.put(&a, Some(&1), 0).map(drop)?;
            p.put(&a, Some(&2), 50).map(drop)?;
            p.put(&b, Some(&9), 10).map(drop)?;
            // Stream time 200: the cut is 100.
            p.put(&b, Some(&10), 200).map(drop)?;
            assert_eq!(p.observed_stream_time()?, Some(200));
            assert_eq!(
                p.get_as_of("a", 99)?,
                rec(2, 50, None),
                "{backend:?}: before the cut, the latest answers when it is old enough"
            );
            assert_eq!(
                p.get_as_of("a", 49)?,
                None,
                "{backend:?}: before the cut, history is gone"
            );
            assert_eq!(
                p.get_as_of("b", 99)?,
                None,
                "{backend:?}: latest is too new"
            );
            assert_eq!(p.get_as_of("b", 100)?, rec(9, 10, Some(200)), "{backend:?}");
            assert_eq!(
                p.get("a")?,
                rec(2, 50, None),
                "{backend:?}: the latest is kept"
            );
            // A put before the cut is refused and moves nothing; one at the cut is taken.
            assert_eq!(
                p.put(&a, Some(&5), 99)?,
                VersionedPut::Expired,
                "{backend:?}"
            );
            assert_eq!(
                p.put(&a, Some(&6), 100)?,
                VersionedPut::Latest,
                "{backend:?}"
            );
            assert_eq!(p.get_as_of("a", 150)?, rec(6, 100, None), "{backend:?}");
            assert_eq!(p.observed_stream_time()?, Some(200));
            Ok(())
        })?;
        // Much later, every old key still answers its latest version.
        txn(&mut s, |t| {
            let mut p = t.versioned_store::<String, u64>("prices")?;
            p.put(&"c".to_owned(), Some(&1), 1_000_000).map(drop)?;
            assert_eq!(p.get("a")?, rec(6, 100, None), "{backend:?}");
            assert_eq!(p.get_as_of("a", 500)?, rec(6, 100, None), "{backend:?}");
            assert_eq!(p.get_as_of("b", 199)?, None, "{backend:?}");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn the_purge_of_old_versions_is_bounded_and_never_changes_an_answer() -> kstreams::Result<()> {
    // More expired versions than one purge removes (1,024): reads are right before, during and
    // after the purge, whichever versions it has reached.
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        txn(&mut s, |t| {
            let mut p = t.versioned_store::<String, u64>("prices")?;
            for i in 0..1500u64 {
                let k = format!("k{}", i % 300);
                p.put(&k, Some(&i), i as i64).map(drop)?;
            }
            p.put(&"k0".to_owned(), None, 1600).map(drop)?;
            Ok(())
        })?;
        for step in 0..4i64 {
            txn(&mut s, |t| {
                let mut p = t.versioned_store::<String, u64>("prices")?;
                // Each put moves the stream time and purges up to the limit.
                p.put(&"tick".to_owned(), Some(&0), 10_000 + step)
                    .map(drop)?;
                for i in 1..300u64 {
                    let latest = 1200 + i;
                    let k = format!("k{i}");
                    assert_eq!(p.get(&k)?, rec(latest, latest as i64, None), "{backend:?}");
                    assert_eq!(p.get_as_of(&k, 5000)?, rec(latest, latest as i64, None));
                    assert_eq!(p.get_as_of(&k, 1000)?, None, "{backend:?}: history gone");
                }
                assert_eq!(
                    p.get("k0")?,
                    None,
                    "{backend:?}: a tombstone stays a tombstone"
                );
                assert_eq!(p.get_as_of("k0", 5000)?, None, "{backend:?}");
                Ok(())
            })?;
        }
    }
    Ok(())
}

#[test]
fn a_prefix_key_never_gets_the_longer_keys_versions() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        txn(&mut s, |t| {
            let mut p = t.versioned_store::<Vec<u8>, u64>("bytes")?;
            p.put(&b"a\0".to_vec(), Some(&1), 10).map(drop)?;
            p.put(&b"ab".to_vec(), Some(&2), 10).map(drop)?;
            p.put(&Vec::new(), Some(&3), 10).map(drop)?;
            assert_eq!(p.get(&b"a"[..])?, None, "{backend:?}");
            assert_eq!(p.get_as_of(&b"a"[..], 20)?, None, "{backend:?}");
            // An older put to "a" has no later version of its own: it is the latest.
            assert_eq!(p.put(&b"a".to_vec(), Some(&4), 5)?, VersionedPut::Latest);
            assert_eq!(p.get(&b"a"[..])?, rec(4, 5, None), "{backend:?}");
            assert_eq!(
                p.get(&b""[..])?,
                rec(3, 10, None),
                "{backend:?}: the empty key"
            );
            assert_eq!(p.get(&b"a\0"[..])?, rec(1, 10, None), "{backend:?}");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn keys_of_a_million_bytes_keep_their_versions_apart() -> kstreams::Result<()> {
    let long = |c: u8| {
        let mut k = vec![b'x'; 1 << 20];
        k.push(c);
        k
    };
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        txn(&mut s, |t| {
            let mut p = t.versioned_store::<Vec<u8>, u64>("bytes")?;
            p.put(&long(1), Some(&1), 10).map(drop)?;
            p.put(&long(2), Some(&2), 20).map(drop)?;
            p.put(&long(1), Some(&3), 30).map(drop)?;
            assert_eq!(p.put(&long(1), Some(&9), 15)?, VersionedPut::Older);
            assert_eq!(
                p.get_as_of(&long(1), 20)?,
                rec(9, 15, Some(30)),
                "{backend:?}"
            );
            assert_eq!(p.get_as_of(&long(2), 25)?, rec(2, 20, None), "{backend:?}");
            assert_eq!(p.get(&long(3))?, None, "{backend:?}");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn an_aborted_batch_leaves_no_version_nor_stream_time() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        let failed: kstreams::Result<()> = s.transaction(|t| {
            let mut p = t.versioned_store::<String, u64>("prices")?;
            p.put(&"k".to_owned(), Some(&1), 500).map(drop)?;
            Err(kstreams::Error::processing("boom"))
        });
        assert!(failed.is_err());
        txn(&mut s, |t| {
            let p = t.versioned_store::<String, u64>("prices")?;
            assert_eq!(p.get("k")?, None, "{backend:?}");
            assert_eq!(p.observed_stream_time()?, None, "{backend:?}");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn changelog_records_are_kafka_streams_versioned_records() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        let ((), log) = txn(&mut s, |t| {
            let mut p = t.versioned_store::<String, u64>("prices")?;
            p.put(&"k".to_owned(), Some(&1), 300).map(drop)?;
            p.put(&"k".to_owned(), None, 250).map(drop)?;
            // Refused: not logged.
            assert_eq!(p.put(&"k".to_owned(), Some(&2), 10)?, VersionedPut::Expired);
            let mut q = t.versioned_store::<String, u64>("quiet")?;
            q.put(&"k".to_owned(), Some(&1), 300).map(drop)?;
            Ok(())
        })?;
        assert_eq!(
            log,
            vec![
                ChangelogWrite {
                    store: PRICES,
                    key: b"k".to_vec(),
                    value: Some(1u64.to_be_bytes().to_vec()),
                    timestamp: Some(300),
                },
                ChangelogWrite {
                    store: PRICES,
                    key: b"k".to_vec(),
                    value: None,
                    timestamp: Some(250),
                },
            ],
            "{backend:?}: the plain key, the value or a tombstone, the version's timestamp"
        );
    }
    Ok(())
}

#[test]
fn restore_from_the_changelog_gives_the_same_answers() -> kstreams::Result<()> {
    for (backend, dir) in backends() {
        let mut s = open(backend, dir.path());
        let puts: [(&str, Option<u64>, i64); 7] = [
            ("a", Some(1), 10),
            ("a", Some(3), 30),
            ("b", Some(5), 5),
            ("a", Some(2), 20),
            ("a", None, 40),
            ("b", Some(6), 150),
            ("a", Some(0), 1),
        ];
        let ((), log) = txn(&mut s, |t| {
            let mut p = t.versioned_store::<String, u64>("prices")?;
            for (k, v, ts) in puts {
                let _ = p.put(&k.to_owned(), v.as_ref(), ts)?;
            }
            Ok(())
        })?;
        let fresh_dir = tempfile::tempdir().expect("tempdir");
        let mut fresh = open(backend, fresh_dir.path());
        txn(&mut fresh, |t| {
            for w in &log {
                t.restore_raw(
                    w.store,
                    &w.key,
                    w.value.as_deref(),
                    w.timestamp.unwrap_or(0),
                )?;
            }
            Ok(())
        })?;
        let probes = |t: &kstreams::store::StateTxn<'_>| {
            let p = t.versioned_store::<String, u64>("prices")?;
            let mut out = vec![p.observed_stream_time()?.map(|t| t as u64)];
            for k in ["a", "b"] {
                out.push(p.get(k)?.map(|r| r.value));
                for at in [0, 1, 10, 25, 35, 45, 100, 200] {
                    out.push(
                        p.get_as_of(k, at)?
                            .map(|r| r.value * 1000 + r.timestamp as u64),
                    );
                }
            }
            Ok(out)
        };
        let (before, _) = txn(&mut s, probes)?;
        let (after, no_log) = txn(&mut fresh, probes)?;
        assert_eq!(before, after, "{backend:?}");
        assert!(
            no_log.is_empty(),
            "{backend:?}: restored writes are not logged again"
        );
        // Restored, the stream time refuses what the original refuses.
        txn(&mut fresh, |t| {
            let mut p = t.versioned_store::<String, u64>("prices")?;
            assert_eq!(p.put(&"a".to_owned(), Some(&9), 49)?, VersionedPut::Expired);
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn a_negative_version_timestamp_is_an_error_on_a_logged_store_only() -> kstreams::Result<()> {
    let mut s = StateStores::in_memory(specs(Backend::InMemory))?;
    s.transaction(|t| {
        let mut p = t.versioned_store::<String, u64>("prices")?;
        let err = p.put(&"k".to_owned(), Some(&1), -5).unwrap_err();
        assert!(
            err.to_string().contains("store `prices`") && err.to_string().contains("-5"),
            "{err}"
        );
        assert!(t.take_changelog().is_empty());
        // Without a changelog, negative times are times like any other.
        let mut q = t.versioned_store::<String, u64>("quiet")?;
        assert_eq!(q.put(&"k".to_owned(), Some(&1), -5)?, VersionedPut::Latest);
        assert_eq!(q.get_as_of("k", -1)?, rec(1, -5, None));
        Ok(())
    })
}

#[test]
fn a_store_is_bound_only_as_its_kind() -> kstreams::Result<()> {
    let mut s = StateStores::in_memory(specs(Backend::InMemory))?;
    s.transaction(|t| {
        let err = t.store::<String, u64>("prices").map(drop).unwrap_err();
        assert!(
            err.to_string()
                .contains("store `prices` is a versioned store, not a key-value store"),
            "{err}"
        );
        let err = t
            .versioned_store::<String, u64>("kv")
            .map(drop)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("store `kv` is a key-value store, not a versioned store"),
            "{err}"
        );
        let err = t
            .window_store::<String, u64>("prices")
            .map(drop)
            .unwrap_err();
        assert!(err.to_string().contains("versioned store"), "{err}");
        assert!(t.versioned_store::<String, String>("prices").is_err());
        assert!(t.versioned_store::<String, u64>("missing").is_err());
        Ok(())
    })
}

#[test]
fn specs_say_their_kind_and_changelog_topic_config() -> kstreams::Result<()> {
    let spec = StoreSpec::new::<String, u64>("prices").versioned(Duration::from_secs(60))?;
    assert_eq!(spec.kind(), StoreKind::Versioned { history_ms: 60_000 });
    assert_eq!(
        spec.changelog_topic_config(),
        vec![
            ("cleanup.policy", "compact".to_owned()),
            ("min.compaction.lag.ms", (60_000 + 86_400_000).to_string()),
        ]
    );
    assert!(
        StoreSpec::new::<String, u64>("p")
            .versioned(Duration::MAX)
            .unwrap_err()
            .to_string()
            .contains("store `p`")
    );
    Ok(())
}

// ---- The property: any order of puts answers as a model within the history ----

/// A model of one versioned store: every accepted version per key, and the observed stream time.
#[derive(Default)]
struct Model {
    keys: BTreeMap<u8, BTreeMap<i64, Option<u64>>>,
    stream_time: Option<i64>,
}

impl Model {
    fn put(&mut self, k: u8, v: Option<u64>, ts: i64) -> VersionedPut {
        if self.stream_time.is_some_and(|st| ts < st - HISTORY_MS) {
            return VersionedPut::Expired;
        }
        self.stream_time = Some(self.stream_time.map_or(ts, |st| st.max(ts)));
        let versions = self.keys.entry(k).or_default();
        versions.insert(ts, v);
        if versions.range(ts + 1..).next().is_some() {
            VersionedPut::Older
        } else {
            VersionedPut::Latest
        }
    }

    fn get_as_of(&self, k: u8, t: i64) -> Option<(u64, i64, Option<i64>)> {
        let versions = self.keys.get(&k)?;
        let cut = self.stream_time.map(|st| st - HISTORY_MS);
        if cut.is_some_and(|c| t < c) {
            let (&ts, v) = versions.last_key_value()?;
            return (ts <= t).then_some(()).and(v.map(|v| (v, ts, None)));
        }
        let (&ts, v) = versions.range(..=t).next_back()?;
        let valid_to = versions.range(ts + 1..).next().map(|(&n, _)| n);
        v.map(|v| (v, ts, valid_to))
    }

    fn get(&self, k: u8) -> Option<(u64, i64, Option<i64>)> {
        let (&ts, v) = self.keys.get(&k)?.last_key_value()?;
        v.map(|v| (v, ts, None))
    }
}

fn key(k: u8) -> String {
    // Keys that are prefixes of each other, and one past LMDB's key limit.
    match k {
        0 => "a".to_owned(),
        1 => "a\0".to_owned(),
        2 => "ab".to_owned(),
        _ => "l".repeat(600),
    }
}

fn flat(r: Option<VersionedRecord<u64>>) -> Option<(u64, i64, Option<i64>)> {
    r.map(|r| (r.value, r.timestamp, r.valid_to))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_order_of_puts_answers_as_the_model(
        batches in proptest::collection::vec(
            proptest::collection::vec((0u8..4, proptest::option::weighted(0.8, 0u64..50), 0i64..420), 0..40),
            1..6,
        ),
        probes in proptest::collection::vec((0u8..4, -30i64..450), 24),
    ) {
        for (backend, dir) in backends() {
            let mut s = open(backend, dir.path());
            let mut model = Model::default();
            let mut log = Vec::new();
            for batch in &batches {
                let (outcomes, written) = txn(&mut s, |t| {
                    let mut p = t.versioned_store::<String, u64>("prices")?;
                    batch.iter().map(|(k, v, ts)| p.put(&key(*k), v.as_ref(), *ts)).collect::<kstreams::Result<Vec<_>>>()
                }).expect("puts");
                let expected: Vec<_> = batch.iter().map(|(k, v, ts)| model.put(*k, *v, *ts)).collect();
                prop_assert_eq!(outcomes, expected, "{:?}", backend);
                log.extend(written);
            }
            // The original, and a store restored from its changelog, answer as the model.
            let fresh_dir = tempfile::tempdir().expect("tempdir");
            let mut fresh = open(backend, fresh_dir.path());
            txn(&mut fresh, |t| {
                for w in &log {
                    t.restore_raw(w.store, &w.key, w.value.as_deref(), w.timestamp.unwrap_or(0))?;
                }
                Ok(())
            }).expect("restore");
            for store in [&mut s, &mut fresh] {
                let (answers, _) = txn(store, |t| {
                    let p = t.versioned_store::<String, u64>("prices")?;
                    let mut out = Vec::new();
                    for (k, at) in &probes {
                        out.push(flat(p.get_as_of(&key(*k), *at)?));
                    }
                    for k in 0..4 {
                        out.push(flat(p.get(&key(k))?));
                    }
                    out.push(p.observed_stream_time()?.map(|t| (0, t, None)));
                    Ok(out)
                }).expect("reads");
                let mut expected: Vec<_> = probes.iter().map(|(k, at)| model.get_as_of(*k, *at)).collect();
                expected.extend((0..4).map(|k| model.get(k)));
                expected.push(model.stream_time.map(|t| (0, t, None)));
                prop_assert_eq!(answers, expected, "{:?}", backend);
            }
        }
    }
}

// ---- Through the driver: a processor's versioned writes and their changelog ----

/// Keeps each record's value as a version of its key at the timestamp the value names (so
/// versions arrive out of order with the stream), and forwards what the key held as of the
/// record's own timestamp.
#[derive(Clone)]
struct Versions;

impl kstreams::BatchProcessor<String, String> for Versions {
    type OutKey = String;
    type OutValue = String;
    fn stores(&self) -> Vec<StoreSpec> {
        vec![
            StoreSpec::new::<String, u64>("versions")
                .versioned(HISTORY)
                .expect("valid versioned spec"),
        ]
    }
    fn process_batch(
        &mut self,
        records: &[kstreams::Record<String, String>],
        ctx: &mut kstreams::Context<'_, String, String>,
    ) -> kstreams::Result<()> {
        let mut v = ctx.versioned_store::<String, u64>("versions")?;
        let mut out = Vec::new();
        for r in records {
            let at: i64 = r
                .value
                .parse()
                .map_err(|e: std::num::ParseIntError| kstreams::Error::processing(e.to_string()))?;
            let _ = v.put(&r.key, Some(&(r.timestamp as u64)), at)?;
            let seen = v.get_as_of(&r.key, r.timestamp)?;
            out.push(
                kstreams::Record::new(r.key.clone(), format!("{:?}", seen.map(|s| s.value)))
                    .with_timestamp(r.timestamp),
            );
        }
        for r in out {
            ctx.forward(r);
        }
        Ok(())
    }
}

#[test]
fn the_changelog_of_a_processors_versioned_store_carries_each_versions_timestamp()
-> kstreams::Result<()> {
    for in_memory in [false, true] {
        let mut t = kstreams::Topology::builder();
        let s = t.source::<String, String>("in");
        let p = t.add(Versions, &s);
        t.sink("out", &p);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b =
            kstreams::testing::TopologyTestDriver::builder(t.build()?).state_dir(dir.path());
        if in_memory {
            b = b.in_memory_state();
        }
        let mut d = b.build()?;
        let rec = |k: &str, ts: i64, at: i64| {
            kstreams::Record::new(k.to_owned(), at.to_string()).with_timestamp(ts)
        };
        // The record at 50 writes the version at 10, the one at 60 the version at 5.
        d.pipe_batch("in", [rec("a", 50, 10), rec("a", 60, 5), rec("a", 70, 65)])?;
        let got: Vec<String> = d
            .read_output::<String, String>("out")?
            .into_iter()
            .map(|r| r.value)
            .collect();
        assert_eq!(
            got,
            ["Some(50)", "Some(50)", "Some(70)"],
            "in memory: {in_memory}"
        );
        let changelog = d
            .topic_names()
            .into_iter()
            .find(|n| n.ends_with("-versions-changelog"))
            .expect("a changelog topic");
        let logged: Vec<(Option<Vec<u8>>, i64)> = d
            .read_output_raw(&changelog)
            .into_iter()
            .map(|(_, _, r)| (r.key, r.timestamp))
            .collect();
        let a = Some(b"a".to_vec());
        assert_eq!(
            logged,
            vec![(a.clone(), 10), (a.clone(), 5), (a, 65)],
            "in memory: {in_memory}: the version's timestamp, not the stream time"
        );
    }
    Ok(())
}

#[test]
fn a_versioned_store_is_split_invariant_and_compared_by_its_live_versions() -> kstreams::Result<()>
{
    let mut t = kstreams::Topology::builder();
    let s = t.source::<String, String>("in");
    let p = t.add(Versions, &s);
    t.sink("out", &p);
    let topology = t.build()?;
    // Versions out of order, some past the history (refused), enough puts to purge.
    let records: Vec<kstreams::Record<String, String>> = (0..400i64)
        .map(|i| {
            let at = (i * 37) % 500 + i;
            kstreams::Record::new(format!("k{}", i % 7), at.to_string()).with_timestamp(i * 3)
        })
        .collect();
    let input = kstreams::testing::SplitInput::new()
        .partitions("in", 2)
        .records("in", records)?;
    kstreams::testing::check_split_invariance(&topology, &input, 11, 4)
}
