//! Versioned key-value stores (Kafka Streams' KIP-889): a bounded history of values per key, read
//! as of a timestamp, over a task's ordinary byte stores.
//!
//! Owns: the typed [`VersionedStore`] handle, its byte layout, history retention (hiding and
//! bounded purging of versions no read can reach any more), and its changelog records (Kafka
//! Streams' versioned changelog: the key, the value or a tombstone, and the version's timestamp as
//! the record's timestamp). It may not decide what a table forwards: that is the materializer's.
//!
//! # Semantics (Kafka Streams' `RocksDBVersionedStore`)
//!
//! Each key has versions: a value (or a tombstone, for a delete) valid from its timestamp
//! (inclusive) to the next version's timestamp (exclusive). A put at a timestamp that already has
//! a version replaces it; a put older than the latest lands in its place in the history. The
//! store's *observed stream time* is the largest timestamp ever put. With `history` the store's
//! history retention and `cut = observed stream time − history`:
//!
//! - a put whose timestamp is before `cut` is not applied ([`VersionedPut::Expired`]) and does not
//!   move the stream time;
//! - `get_as_of(key, t)` answers the version with the largest timestamp `<= t`, or `None` when that
//!   version is a tombstone or there is none; for `t < cut` only the latest version can answer
//!   (it is always kept, however old), else `None`, even when older versions are still on disk;
//! - `get(key)` answers the latest version, `None` when it is a tombstone.
//!
//! # Layout
//!
//! One ordinary store (one LMDB database, or one in-memory map), with the escaping and time bytes
//! of window stores (`store/window.rs`):
//!
//! | first byte | rest of the key | value |
//! |---|---|---|
//! | `0x00` | `stream-time` | the observed stream time, 8 bytes big-endian |
//! | `0x01` (version) | `esc(key)` `!t(timestamp)` | flags, then `valid_to` (8 bytes) when set, then the value bytes unless a tombstone |
//! | `0x02` (expiry index) | `t(expiry)` `esc(key)` `!t(timestamp)` | empty |
//!
//! `!t` is the time bytes inverted, so a key's versions are contiguous and newest first: the latest
//! version is the first entry of the key's range, and the version answering `get_as_of(key, t)` is
//! the first entry at or after `esc(key) !t(t)`: each read is one range scan of one entry (and a
//! read of the stream time). Each version records its `valid_to` (the next version's timestamp);
//! a put finds the version it follows the same way and shortens it. A version's *expiry* is its `valid_to`, or its own
//! timestamp for a latest tombstone; a latest value has none and is never purged. A version whose
//! expiry is at or before `cut` can answer no read and affect no put, so each put that moves the
//! stream time purges at most [`PURGE_LIMIT`](super::PURGE_LIMIT) such versions through the
//! expiry index (unlogged: the changelog is compacted, `min.compaction.lag.ms` = history + 1 day,
//! as Kafka Streams' versioned changelogs). Reads never depend on how far the purge got.
//!
//! A put older than every version of its key reads the key's versions to its oldest (bounded by
//! what the history keeps); every other put reads one or two entries.

use std::ops::Bound;

use super::window::{
    STREAM_TIME_KEY, escape_into, tagged_time_after, time_bytes, time_from, unescape,
};
use super::{AsKey, KeyValueStore, PURGE_LIMIT, RawTxn, SCAN_CHUNK, StoreKind};
use crate::error::{Error, Result};

const TAG_VERSION: u8 = 0x01;
const TAG_EXPIRY: u8 = 0x02;

/// Version value flags: the version holds a value (else it is a tombstone).
const FLAG_VALUE: u8 = 0x01;
/// Version value flags: `valid_to` follows (else the version is the latest).
const FLAG_VALID_TO: u8 = 0x02;

/// One version of a key, as found by the versioned store: the value, the timestamp it is valid
/// from, and the timestamp it is valid to (exclusive; `None` for the latest version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedRecord<V> {
    /// The value.
    pub value: V,
    /// The timestamp the value is valid from (inclusive): the version's timestamp.
    pub timestamp: i64,
    /// The timestamp the value is valid to (exclusive): the next version's; `None` for the latest.
    pub valid_to: Option<i64>,
}

/// What a put to a versioned store did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a put older than the history retention is refused; a caller may count it"]
pub enum VersionedPut {
    /// The put is the key's latest version (its timestamp is at or after every other version's).
    Latest,
    /// The put landed in the key's history: a version with a later timestamp exists.
    Older,
    /// The timestamp is before `observed stream time − history`: nothing was written (Kafka
    /// Streams' "expired put").
    Expired,
}

/// Time bytes whose byte order is the reverse of time order.
fn desc_time(t: i64) -> [u8; 8] {
    let mut b = time_bytes(t);
    for x in &mut b {
        *x = !*x;
    }
    b
}

fn desc_from(bytes: &[u8]) -> Option<i64> {
    let mut b: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    for x in &mut b {
        *x = !*x;
    }
    time_from(&b)
}

/// `0x01 esc(key)`: the prefix of every version of `key`.
fn key_prefix(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 11);
    out.push(TAG_VERSION);
    escape_into(&mut out, key);
    out
}

/// The least key after every version of the key whose prefix is `prefix`: the escaped key's
/// terminator `00 00` made `00 01` (no escaped key continues with `00 01`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last = 0x01;
    }
    end
}

fn version_key(prefix: &[u8], ts: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 8);
    out.extend_from_slice(prefix);
    out.extend_from_slice(&desc_time(ts));
    out
}

fn expiry_key(expiry: i64, key: &[u8], ts: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 19);
    out.push(TAG_EXPIRY);
    out.extend_from_slice(&time_bytes(expiry));
    escape_into(&mut out, key);
    out.extend_from_slice(&desc_time(ts));
    out
}

fn encode_version(value: Option<&[u8]>, valid_to: Option<i64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + value.map_or(0, <[u8]>::len));
    let flags = if value.is_some() { FLAG_VALUE } else { 0 }
        | if valid_to.is_some() { FLAG_VALID_TO } else { 0 };
    out.push(flags);
    if let Some(v) = valid_to {
        out.extend_from_slice(&v.to_be_bytes());
    }
    if let Some(v) = value {
        out.extend_from_slice(v);
    }
    out
}

/// A version as stored: its timestamp, value bytes (`None`: a tombstone) and `valid_to`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawVersion {
    ts: i64,
    value: Option<Vec<u8>>,
    valid_to: Option<i64>,
}

impl RawVersion {
    /// The time at or before `cut` of which the version can be purged: its end of validity, or
    /// its own timestamp for a latest tombstone; `None` for a latest value (always kept).
    fn expiry(&self) -> Option<i64> {
        match (self.valid_to, &self.value) {
            (Some(v), _) => Some(v),
            (None, None) => Some(self.ts),
            (None, Some(_)) => None,
        }
    }
}

/// The byte level of one versioned store in one transaction.
struct Versions<'t> {
    txn: &'t (dyn RawTxn + 't),
    store: usize,
    history: i64,
}

impl<'t> Versions<'t> {
    fn name(&self) -> &str {
        self.txn.store_spec(self.store).name()
    }

    fn corrupt(&self, what: &str) -> Error {
        Error::Store(format!(
            "store `{}` holds a malformed {what} entry (not written by kstreams' versioned layout)",
            self.name()
        ))
    }

    fn decode(&self, prefix_len: usize, k: &[u8], v: &[u8]) -> Result<RawVersion> {
        let ts = k
            .get(prefix_len..)
            .filter(|rest| rest.len() == 8)
            .and_then(desc_from)
            .ok_or_else(|| self.corrupt("version"))?;
        let (&flags, mut rest) = v.split_first().ok_or_else(|| self.corrupt("version"))?;
        let valid_to = if flags & FLAG_VALID_TO != 0 {
            let (b, after) = rest
                .split_first_chunk::<8>()
                .ok_or_else(|| self.corrupt("version"))?;
            rest = after;
            Some(i64::from_be_bytes(*b))
        } else {
            None
        };
        let value = if flags & FLAG_VALUE != 0 {
            Some(rest.to_vec())
        } else if rest.is_empty() {
            None
        } else {
            return Err(self.corrupt("version"));
        };
        Ok(RawVersion {
            ts,
            value,
            valid_to,
        })
    }

    fn stream_time(&self) -> Result<Option<i64>> {
        let mut out = None;
        self.txn.get(self.store, STREAM_TIME_KEY, &mut |v| {
            if let Some(v) = v {
                let b: [u8; 8] = v.try_into().map_err(|_| self.corrupt("stream time"))?;
                out = Some(i64::from_be_bytes(b));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// `observed stream time − history`: reads before it see only the latest version, puts before
    /// it are refused. `None` before the first put.
    fn cut(&self) -> Result<Option<i64>> {
        Ok(self.stream_time()?.map(|t| t.saturating_sub(self.history)))
    }

    /// The first version of the key (prefix `prefix`) at or before `ts` (the newest when `ts` is
    /// `None`).
    fn first_from(&self, prefix: &[u8], ts: Option<i64>) -> Result<Option<RawVersion>> {
        let lower = match ts {
            Some(ts) => version_key(prefix, ts),
            None => prefix.to_vec(),
        };
        let upper = prefix_end(prefix);
        let mut found = None;
        self.txn.scan(
            self.store,
            Bound::Included(&lower),
            Bound::Excluded(&upper),
            1,
            &mut |k, v| {
                found = Some(self.decode(prefix.len(), k, v)?);
                Ok(())
            },
        )?;
        Ok(found)
    }

    /// The oldest version of the key (a scan of all its versions, in chunks).
    fn oldest(&self, prefix: &[u8]) -> Result<Option<RawVersion>> {
        let upper = prefix_end(prefix);
        let mut lower = Bound::Included(prefix.to_vec());
        let mut last: Option<(Vec<u8>, Vec<u8>)> = None;
        loop {
            let mut n = 0;
            let lo = match &lower {
                Bound::Included(b) => Bound::Included(b.as_slice()),
                Bound::Excluded(b) => Bound::Excluded(b.as_slice()),
                Bound::Unbounded => Bound::Unbounded,
            };
            self.txn.scan(
                self.store,
                lo,
                Bound::Excluded(&upper),
                SCAN_CHUNK,
                &mut |k, v| {
                    n += 1;
                    last = Some((k.to_vec(), v.to_vec()));
                    Ok(())
                },
            )?;
            match &last {
                Some((k, _)) if n == SCAN_CHUNK => lower = Bound::Excluded(k.clone()),
                _ => break,
            }
        }
        last.map(|(k, v)| self.decode(prefix.len(), &k, &v))
            .transpose()
    }

    /// Writes `new` for `key` in place of `old` (the version at the same timestamp, if any),
    /// keeping the expiry index in step.
    fn set(
        &self,
        key: &[u8],
        prefix: &[u8],
        old: Option<&RawVersion>,
        new: &RawVersion,
    ) -> Result<()> {
        let old_expiry = old.and_then(RawVersion::expiry);
        let new_expiry = new.expiry();
        if old_expiry != new_expiry
            && let Some(e) = old_expiry
        {
            self.txn
                .put_unlogged(self.store, &expiry_key(e, key, new.ts), None)?;
        }
        self.txn.put_unlogged(
            self.store,
            &version_key(prefix, new.ts),
            Some(&encode_version(new.value.as_deref(), new.valid_to)),
        )?;
        if old_expiry != new_expiry
            && let Some(e) = new_expiry
        {
            self.txn
                .put_unlogged(self.store, &expiry_key(e, key, new.ts), Some(&[]))?;
        }
        Ok(())
    }

    /// Puts a version (`None`: a tombstone) of `key` at `ts`; logs it when `log` (the restore path
    /// does not).
    fn put(&self, key: &[u8], value: Option<&[u8]>, ts: i64, log: bool) -> Result<VersionedPut> {
        if log && ts < 0 && self.txn.store_spec(self.store).changelog_enabled() {
            // The version's timestamp is its changelog record's, and Kafka refuses negative
            // record timestamps: fail here, naming the store, not at the produce.
            return Err(Error::Store(format!(
                "store `{}`: a version's timestamp is its changelog record's timestamp and must \
                 not be negative, not {ts}",
                self.name()
            )));
        }
        let stream_time = self.stream_time()?;
        if stream_time.is_some_and(|st| ts < st.saturating_sub(self.history)) {
            return Ok(VersionedPut::Expired);
        }
        let moved = stream_time.is_none_or(|st| ts > st);
        if moved {
            self.txn
                .put_unlogged(self.store, STREAM_TIME_KEY, Some(&ts.to_be_bytes()))?;
        }
        let prefix = key_prefix(key);
        let logged = value;
        let value = value.map(<[u8]>::to_vec);
        let outcome = match self.first_from(&prefix, Some(ts))? {
            Some(same) if same.ts == ts => {
                let new = RawVersion {
                    ts,
                    value,
                    valid_to: same.valid_to,
                };
                self.set(key, &prefix, Some(&same), &new)?;
                if same.valid_to.is_none() {
                    VersionedPut::Latest
                } else {
                    VersionedPut::Older
                }
            }
            Some(before) => {
                // `before` is valid up to its `valid_to`; when that is after `ts`, it is the next
                // version's timestamp and the new version ends there. When it is at or before
                // `ts`, the versions after `before` are purged (expired) and none is after `ts`.
                let next = before.valid_to.filter(|&v| v > ts);
                if before.valid_to.is_none_or(|v| v > ts) {
                    let shortened = RawVersion {
                        valid_to: Some(ts),
                        ..before.clone()
                    };
                    self.set(key, &prefix, Some(&before), &shortened)?;
                }
                let new = RawVersion {
                    ts,
                    value,
                    valid_to: next,
                };
                self.set(key, &prefix, None, &new)?;
                if next.is_none() {
                    VersionedPut::Latest
                } else {
                    VersionedPut::Older
                }
            }
            None => {
                // Older than every version of the key (or its first): it ends at the oldest.
                let next = self.oldest(&prefix)?.map(|o| o.ts);
                let new = RawVersion {
                    ts,
                    value,
                    valid_to: next,
                };
                self.set(key, &prefix, None, &new)?;
                if next.is_none() {
                    VersionedPut::Latest
                } else {
                    VersionedPut::Older
                }
            }
        };
        if log {
            self.txn.log_at(self.store, key, logged, Some(ts))?;
        }
        if moved {
            self.purge(PURGE_LIMIT)?;
        }
        Ok(outcome)
    }

    /// Removes up to `limit` versions whose expiry is at or before the cut; returns how many.
    fn purge(&self, limit: usize) -> Result<usize> {
        let Some(cut) = self.cut()? else {
            return Ok(0);
        };
        let upper = tagged_time_after(TAG_EXPIRY, cut);
        let mut expired = Vec::new();
        self.txn.scan(
            self.store,
            Bound::Included(&[TAG_EXPIRY][..]),
            Bound::Excluded(&upper),
            limit,
            &mut |k, _| {
                expired.push(k.to_vec());
                Ok(())
            },
        )?;
        for index in &expired {
            let (key, ts) = index
                .get(9..)
                .and_then(unescape)
                .and_then(|(key, rest)| Some((key, desc_from(rest).filter(|_| rest.len() == 8)?)))
                .ok_or_else(|| self.corrupt("expiry index"))?;
            self.txn
                .put_unlogged(self.store, &version_key(&key_prefix(&key), ts), None)?;
            self.txn.put_unlogged(self.store, index, None)?;
        }
        Ok(expired.len())
    }

    /// The latest version of the key, when it is a value.
    fn latest(&self, prefix: &[u8]) -> Result<Option<RawVersion>> {
        Ok(self
            .first_from(prefix, None)?
            .filter(|v| v.valid_to.is_none() && v.value.is_some()))
    }

    /// The version of the key valid at `as_of`, when it is a value (see the module docs).
    fn as_of(&self, prefix: &[u8], as_of: i64) -> Result<Option<RawVersion>> {
        if self.cut()?.is_some_and(|cut| as_of < cut) {
            return Ok(self.latest(prefix)?.filter(|v| v.ts <= as_of));
        }
        Ok(self
            .first_from(prefix, Some(as_of))?
            .filter(|v| v.value.is_some() && v.valid_to.is_none_or(|to| to > as_of)))
    }
}

/// Applies one changelog record of a versioned store (the restore path): the record's key and
/// value (`None`: a tombstone version) at the record's timestamp, as a put that is not logged.
pub(super) fn restore(
    txn: &(dyn RawTxn + '_),
    store: usize,
    key: &[u8],
    value: Option<&[u8]>,
    timestamp: i64,
) -> Result<()> {
    let spec = txn.store_spec(store);
    let StoreKind::Versioned { history_ms } = spec.kind() else {
        return Err(Error::Internal(format!(
            "store `{}` is not a versioned store",
            spec.name()
        )));
    };
    let versions = Versions {
        txn,
        store,
        history: history_ms,
    };
    // A restored put older than the history is skipped, as a live one would be.
    let _ = versions.put(key, value, timestamp, false)?;
    Ok(())
}

/// A typed versioned key-value store (Kafka Streams' KIP-889), bound to the current batch's
/// transaction: values of a key over time, read as of a timestamp, with a bounded history (see
/// the module docs of `store::versioned` for the rules and the layout).
///
/// Times are milliseconds since the epoch, as record timestamps. Reads take `&self` and puts
/// `&mut self`, so a handle held by shared reference only reads (a versioned table's store).
///
/// ```
/// use std::time::Duration;
/// use kstreams::store::{StateStores, StoreSpec, VersionedPut, VersionedRecord};
/// let spec = StoreSpec::new::<String, u64>("prices").versioned(Duration::from_millis(100))?;
/// let mut stores = StateStores::in_memory(vec![spec])?;
/// stores.transaction(|txn| {
///     let mut prices = txn.versioned_store::<String, u64>("prices")?;
///     assert_eq!(prices.put(&"apple".into(), Some(&3), 10)?, VersionedPut::Latest);
///     assert_eq!(prices.put(&"apple".into(), Some(&5), 50)?, VersionedPut::Latest);
///     // Out of order: lands in its place in the history.
///     assert_eq!(prices.put(&"apple".into(), Some(&4), 30)?, VersionedPut::Older);
///     let at_40 = prices.get_as_of("apple", 40)?.map(|r| (r.value, r.timestamp, r.valid_to));
///     assert_eq!(at_40, Some((4, 30, Some(50))));
///     assert_eq!(prices.get("apple")?.map(|r| r.value), Some(5));
///     assert_eq!(prices.get_as_of("apple", 5)?, None);
///     // A tombstone version: the key has no value from 60 on.
///     assert_eq!(prices.put(&"apple".into(), None, 60)?, VersionedPut::Latest);
///     assert_eq!(prices.get("apple")?, None);
///     assert_eq!(prices.get_as_of("apple", 55)?.map(|r| r.value), Some(5));
///     // Stream time 200: history before 100 is gone, and a put before 100 is refused.
///     assert_eq!(prices.put(&"pear".into(), Some(&1), 200)?, VersionedPut::Latest);
///     assert_eq!(prices.get_as_of("apple", 55)?, None);
///     assert_eq!(prices.put(&"apple".into(), Some(&9), 99)?, VersionedPut::Expired);
///     assert_eq!(prices.observed_stream_time()?, Some(200));
///     Ok(())
/// })?;
/// # Ok::<(), kstreams::Error>(())
/// ```
pub struct VersionedStore<'t, K, V> {
    kv: KeyValueStore<'t, K, V>,
    versions: Versions<'t>,
}

impl<K, V> std::fmt::Debug for VersionedStore<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionedStore")
            .field("name", &self.versions.name())
            .field("history", &self.versions.history)
            .finish_non_exhaustive()
    }
}

impl<'t, K: 'static, V: 'static> VersionedStore<'t, K, V> {
    pub(crate) fn bind(txn: &'t (dyn RawTxn + 't), store: usize) -> Result<Self> {
        let spec = txn.store_spec(store);
        let StoreKind::Versioned { history_ms } = spec.kind() else {
            return Err(Error::Store(format!(
                "store `{}` is a {}, not a versioned store",
                spec.name(),
                spec.kind().describe()
            )));
        };
        Ok(VersionedStore {
            kv: KeyValueStore::bind_any(txn, store)?,
            versions: Versions {
                txn,
                store,
                history: history_ms,
            },
        })
    }

    /// The handle over `kv`'s store, keeping `history_ms` (a `#[store]` handle's bind, whose
    /// spec made the store versioned with that history).
    pub(crate) fn over(kv: KeyValueStore<'t, K, V>, history_ms: i64) -> Self {
        let (txn, store) = kv.raw_parts();
        VersionedStore {
            kv,
            versions: Versions {
                txn,
                store,
                history: history_ms,
            },
        }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        self.kv.name()
    }

    /// The history retention in milliseconds: reads as of a time before `observed stream time −
    /// history` see only the latest version, and puts before it are refused.
    pub fn history(&self) -> i64 {
        self.versions.history
    }

    /// The largest timestamp ever put (not counting refused puts), if any.
    pub fn observed_stream_time(&self) -> Result<Option<i64>> {
        self.versions.stream_time()
    }

    /// Puts a version of `key` at `timestamp`: `Some(value)`, or `None` for a tombstone (the key
    /// has no value from `timestamp` until its next version). A value that serializes to null is
    /// a tombstone too. Logged to the changelog with `timestamp` as the record's timestamp (unless
    /// refused: [`VersionedPut::Expired`]); so on a store with a changelog a negative `timestamp`
    /// is an error (Kafka refuses negative record timestamps).
    pub fn put(&mut self, key: &K, value: Option<&V>, timestamp: i64) -> Result<VersionedPut> {
        let k = self.kv.key_bytes(key)?;
        let v = match value {
            Some(v) => self.kv.value_bytes(v)?,
            None => None,
        };
        self.versions.put(&k, v.as_deref(), timestamp, true)
    }

    /// Applies the puts in the order given; one outcome per put.
    pub fn put_batch(&mut self, entries: &[(K, Option<V>, i64)]) -> Result<Vec<VersionedPut>> {
        entries
            .iter()
            .map(|(k, v, ts)| self.put(k, v.as_ref(), *ts))
            .collect()
    }

    fn record(&self, raw: Option<RawVersion>) -> Result<Option<VersionedRecord<V>>> {
        let Some(RawVersion {
            ts,
            value: Some(value),
            valid_to,
        }) = raw
        else {
            return Ok(None);
        };
        Ok(Some(VersionedRecord {
            value: self.kv.read_value(&value)?,
            timestamp: ts,
            valid_to,
        }))
    }

    /// The latest version of `key`, or `None` (none, or a tombstone). `key` is a `&K` or a
    /// borrowed form of it (see [`AsKey`]).
    pub fn get<Q: AsKey<K> + ?Sized>(&self, key: &Q) -> Result<Option<VersionedRecord<V>>> {
        let k = self.kv.key_bytes(&key.as_key())?;
        self.record(self.versions.latest(&key_prefix(&k))?)
    }

    /// The version of `key` valid at `as_of`: the one with the largest timestamp `<= as_of`;
    /// `None` when it is a tombstone, when there is none, or when `as_of` is before `observed
    /// stream time − history` and the latest version is after `as_of`.
    pub fn get_as_of<Q: AsKey<K> + ?Sized>(
        &self,
        key: &Q,
        as_of: i64,
    ) -> Result<Option<VersionedRecord<V>>> {
        let k = self.kv.key_bytes(&key.as_key())?;
        self.record(self.versions.as_of(&key_prefix(&k), as_of)?)
    }

    /// One [`get_as_of`](Self::get_as_of) per (key, time), in the order given: the batch form a
    /// join uses, all in the batch's transaction.
    pub fn get_batch_as_of<Q: AsKey<K>>(
        &self,
        keys: &[(Q, i64)],
    ) -> Result<Vec<Option<VersionedRecord<V>>>> {
        keys.iter()
            .map(|(key, as_of)| self.get_as_of(key, *as_of))
            .collect()
    }
}

/// The live version entries of a versioned store as (local key bytes, value bytes), in key
/// order, from all the raw entries one task's backend holds for it: what the split check compares.
/// The versions no read can reach any more (expiry at or before `observed stream time −
/// history`) and the bookkeeping entries (stream time, expiry index) are left out, so the answer
/// does not depend on how far the bounded purge got.
pub(super) fn live_raw_entries(
    spec: &super::StoreSpec,
    raw: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let StoreKind::Versioned { history_ms } = spec.kind() else {
        return Err(Error::Store(format!(
            "store `{}` is a {}, not a versioned store",
            spec.name(),
            spec.kind().describe()
        )));
    };
    let corrupt = || {
        Error::Store(format!(
            "store `{}` holds a malformed version entry (not written by kstreams' versioned layout)",
            spec.name()
        ))
    };
    let cut = raw
        .iter()
        .filter(|(k, _)| k.as_slice() == STREAM_TIME_KEY)
        .filter_map(|(_, v)| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(|b| i64::from_be_bytes(b).saturating_sub(history_ms))
        .max();
    let mut out = Vec::new();
    for (k, v) in raw {
        let Some(rest) = k.strip_prefix(&[TAG_VERSION]) else {
            continue;
        };
        let (_, rest) = unescape(rest).ok_or_else(corrupt)?;
        let ts = desc_from(rest)
            .filter(|_| rest.len() == 8)
            .ok_or_else(corrupt)?;
        let (&flags, body) = v.split_first().ok_or_else(corrupt)?;
        let valid_to = if flags & FLAG_VALID_TO != 0 {
            let (b, _) = body.split_first_chunk::<8>().ok_or_else(corrupt)?;
            Some(i64::from_be_bytes(*b))
        } else {
            None
        };
        let expiry = match (valid_to, flags & FLAG_VALUE != 0) {
            (Some(to), _) => Some(to),
            (None, false) => Some(ts),
            (None, true) => None,
        };
        if cut.is_some_and(|c| expiry.is_some_and(|e| e <= c)) {
            continue;
        }
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_a_key_are_newest_first_and_prefix_free() {
        let p = key_prefix(b"a");
        let ts = [i64::MAX, 1, 0, -1, i64::MIN];
        for w in ts.windows(2) {
            assert!(version_key(&p, w[0]) < version_key(&p, w[1]));
        }
        for t in ts {
            assert_eq!(desc_from(&desc_time(t)), Some(t));
            assert!(version_key(&p, t) < prefix_end(&p));
            assert!(version_key(&p, t) > p);
        }
        // The versions of "", "a\0", "ab", "a\0\0" never fall in the range of "a".
        let end = prefix_end(&p);
        for other in [&b""[..], b"a\0", b"ab", b"a\0\0"] {
            let q = key_prefix(other);
            for t in ts {
                let k = version_key(&q, t);
                assert!(
                    k < p || k >= end,
                    "{other:?} at {t} falls in the range of \"a\""
                );
            }
        }
    }

    fn raw_entries(txn: &(dyn RawTxn + '_)) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        txn.scan(
            0,
            Bound::Unbounded,
            Bound::Unbounded,
            usize::MAX,
            &mut |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                Ok(())
            },
        )?;
        Ok(out)
    }

    #[test]
    fn a_partial_purge_leaves_answers_and_puts_right() -> Result<()> {
        use crate::store::{StateStores, StoreSpec};
        let spec =
            StoreSpec::new::<String, u64>("v").versioned(std::time::Duration::from_millis(100))?;
        let mut stores = StateStores::in_memory(vec![spec])?;
        stores.transaction(|txn| {
            let v = Versions {
                txn: txn.raw(),
                store: 0,
                history: 100,
            };
            let p = key_prefix(b"k");
            assert_eq!(v.put(b"k", Some(b"a"), 0, false)?, VersionedPut::Latest);
            assert_eq!(v.put(b"k", None, 10, false)?, VersionedPut::Latest);
            // Stream time 200 without a purge, then a purge of one entry: the tombstone (same
            // expiry, newer first) goes, the version it ended stays.
            txn.raw()
                .put_unlogged(0, STREAM_TIME_KEY, Some(&200i64.to_be_bytes()))?;
            assert_eq!(v.purge(1)?, 1);
            let left = v.first_from(&p, None)?.map(|r| (r.ts, r.valid_to));
            assert_eq!(left, Some((0, Some(10))));
            assert_eq!(v.latest(&p)?, None, "the latest was a tombstone");
            assert_eq!(v.as_of(&p, 150)?, None, "the gap is the tombstone");
            // A put after the gap is the latest; the version before the gap keeps its end.
            assert_eq!(v.put(b"k", Some(b"b"), 150, false)?, VersionedPut::Latest);
            assert_eq!(v.as_of(&p, 149)?, None);
            assert_eq!(v.as_of(&p, 150)?.and_then(|r| r.value), Some(b"b".to_vec()));
            // The rest of the purge: only the latest version and the stream time are left.
            assert_eq!(v.purge(PURGE_LIMIT)?, 1);
            let raw = raw_entries(txn.raw())?;
            let tags: Vec<u8> = raw.iter().map(|(k, _)| k[0]).collect();
            assert_eq!(tags, vec![0x00, TAG_VERSION], "{raw:?}");
            Ok(())
        })
    }

    #[test]
    fn the_expiry_index_follows_every_version_and_the_purge_is_bounded() -> Result<()> {
        use crate::store::{StateStores, StoreSpec};
        let spec =
            StoreSpec::new::<String, u64>("v").versioned(std::time::Duration::from_millis(10))?;
        let mut stores = StateStores::in_memory(vec![spec])?;
        stores.transaction(|txn| {
            let v = Versions {
                txn: txn.raw(),
                store: 0,
                history: 10,
            };
            // 3 keys x 1,000 versions at the same times: each put is in its history window.
            for ts in 0..1000i64 {
                for k in [&b"x"[..], b"y", b"z"] {
                    let _ = v.put(k, Some(b"v"), ts, false)?;
                }
            }
            let count = |tag: u8| -> Result<usize> {
                Ok(raw_entries(txn.raw())?
                    .iter()
                    .filter(|(k, _)| k[0] == tag)
                    .count())
            };
            // Each moving put purged what expired: 11 versions of each key left (990..=999 and
            // the one at the cut), and one index entry per version that has an end.
            assert_eq!(count(TAG_VERSION)?, 3 * 11);
            assert_eq!(count(TAG_EXPIRY)?, 3 * 10);
            // Versions of 2,000 keys written under a long history (nothing expires), then a jump
            // far ahead: one purge removes at most PURGE_LIMIT of them.
            let long = Versions {
                history: 1 << 40,
                ..v
            };
            for i in 0..2000i64 {
                let _ = long.put(format!("j{i}").as_bytes(), Some(b"v"), 5000 + 2 * i, false)?;
                let _ = long.put(format!("j{i}").as_bytes(), Some(b"w"), 5001 + 2 * i, false)?;
            }
            let v = Versions {
                history: 10,
                ..long
            };
            txn.raw()
                .put_unlogged(0, STREAM_TIME_KEY, Some(&1_000_000i64.to_be_bytes()))?;
            let expiring = count(TAG_EXPIRY)?;
            assert!(expiring > PURGE_LIMIT, "{expiring}");
            assert_eq!(v.purge(PURGE_LIMIT)?, PURGE_LIMIT);
            assert_eq!(count(TAG_EXPIRY)?, expiring - PURGE_LIMIT);
            while v.purge(PURGE_LIMIT)? > 0 {}
            assert_eq!(count(TAG_EXPIRY)?, 0);
            // Only the latest versions stay: 3 + 2,000.
            assert_eq!(count(TAG_VERSION)?, 2003);
            Ok(())
        })
    }
}
