//! Window stores: values keyed by (key, window start), over a task's ordinary byte stores.
//!
//! Owns: the typed [`WindowStore`] handle, the byte layout that window and session stores share
//! (the session handle is in `session.rs`), retention (hiding and bounded purging of expired
//! windows), and the translation between the local layout and Kafka Streams' changelog keys.
//! It may not decide when a window is emitted or which record is late: that is the operator's.
//!
//! # Layout
//!
//! A window store is one ordinary store (one LMDB database, or one in-memory map) holding three
//! kinds of entries, told apart by their first byte:
//!
//! | first byte | rest of the key | value |
//! |---|---|---|
//! | `0x00` | `stream-time` | the store's stream time, 8 bytes big-endian |
//! | `0x01` (data) | `esc(key)` `t(start)` | the value bytes |
//! | `0x02` (time index) | `t(start)` `esc(key)` | empty |
//!
//! `t(x)` is a timestamp as 8 big-endian bytes with the sign bit flipped, so that byte order is
//! time order for negative times too. `esc(key)` is the serialized key with every `0x00` byte
//! written as `0x00 0xFF`, followed by the terminator `0x00 0x00`: the terminator sorts below
//! any escaped byte, so a key that is a prefix of another key sorts before it and never shares a
//! range with it (`fetch("a", ..)` never sees the windows of `"ab"` or `"a\0"`), and keys keep
//! their byte order. One key's windows are therefore contiguous and in time order, and
//! `fetch(key, from, to)` is one range scan; the time index makes `fetch_all(from, to)` and the
//! purge of expired windows range scans too. Session stores use the same layout with the times
//! `t(end) t(start)` (data) and `t(end) esc(key) t(start)` (index). Keys of any size work: the
//! byte stores below handle keys past LMDB's limit (`long_keys.rs`).
//!
//! # Retention and stream time
//!
//! The store's stream time is the caller's: the operator passes it in with
//! [`WindowStore::advance_stream_time`] (it only moves forward; it is kept in the store, in the
//! batch's transaction). A window whose start is at or before `stream time − retention` is
//! expired (Kafka Streams' rule): fetches and gets never return it, and puts to it are refused
//! ([`WindowWrite::Expired`]). Expired windows are purged by `advance_stream_time`, at most
//! [`PURGE_LIMIT`] per call through the time index, so a jump of stream time never causes an
//! unbounded pause: the rest goes at the next call. Purges are local only (not logged): the
//! changelog topic drops old windows by its own `retention.ms`, as in Kafka Streams.
//!
//! The store does not decide when a window is emitted, and never advances its stream time by
//! itself (Kafka Streams' stores advance it on every put, which is how KAFKA-12960 loses a
//! window that a far-future record closes). An operator that emits on window close fetches the
//! windows the new stream time closes *before* it advances the store to that stream time, so a
//! window is never hidden before it was emitted.
//!
//! # Changelog
//!
//! Each put or delete is logged with Kafka Streams' window changelog key: the serialized key,
//! the window start as 8 big-endian bytes, then a 4-byte sequence number, always 0 (a store that
//! keeps no duplicates): the bytes of `WindowKeySchema.toStoreKeyBinary(key, start, 0)`, so a
//! Java tool reads our changelogs and ours reads theirs. Restore decodes those keys back to the
//! local layout, data and time index alike.
//!
//! The windowed operators also log the store's stream time
//! (`advance_stream_time_logged`), under the reserved key `0x00 "kst-time"`: 9 bytes, shorter
//! than any window (12) or session (16) changelog key, so it is never mistaken for one; a restore
//! brings the stream time back from it. [`WindowStore::advance_stream_time`] (public) does not log.

use std::ops::Bound;

use super::{AsKey, KeyValueStore, RawTxn, SCAN_CHUNK, StoreKind};
use crate::error::{Error, Result};

/// The most expired entries one call to `advance_stream_time` purges; the rest are purged by the
/// next calls (they are hidden from every read meanwhile).
pub const PURGE_LIMIT: usize = 1024;

const TAG_DATA: u8 = 0x01;
const TAG_INDEX: u8 = 0x02;
/// The store's stream time: first byte `0x00`, below data and index entries.
pub(super) const STREAM_TIME_KEY: &[u8] = b"\x00stream-time";
/// The changelog key under which a windowed operator logs the store's stream time
/// ([`WindowStore::advance_stream_time_logged`]): 9 bytes, shorter than any Kafka Streams window
/// (12) or session (16) changelog key, so it is never mistaken for one.
pub(crate) const STREAM_TIME_CHANGELOG_KEY: &[u8] = b"\x00kst-time";

/// What a put to a window or session store did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a put to an expired window is refused; an operator counts it as late"]
pub enum WindowWrite {
    /// The value is written (or deleted, for a value that serializes to null).
    Stored,
    /// The window is expired (its time is at or before `stream time − retention`): nothing was
    /// written, as in Kafka Streams. The caller decides what the record was (late, dropped with a
    /// count, dead-lettered).
    Expired,
}

/// A timestamp as 8 bytes whose byte order is time order.
pub(super) fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

pub(super) fn time_from(bytes: &[u8]) -> Option<i64> {
    let b: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

/// The least index key after every index entry of time `t` (an exclusive upper bound).
fn index_after(t: i64) -> Vec<u8> {
    tagged_time_after(TAG_INDEX, t)
}

/// The least key after every key `tag t(x) ...` with `x <= t` (an exclusive upper bound of a
/// time-ordered index under one tag byte; versioned stores' expiry index too).
pub(super) fn tagged_time_after(tag: u8, t: i64) -> Vec<u8> {
    match t.checked_add(1) {
        Some(next) => [&[tag][..], &time_bytes(next)[..]].concat(),
        None => vec![tag.saturating_add(1)],
    }
}

pub(super) fn escape_into(out: &mut Vec<u8>, key: &[u8]) {
    out.reserve(key.len() + 2);
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// Splits an escaped key off the front of `bytes`: the key and the bytes after its terminator.
pub(super) fn unescape(bytes: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut key = Vec::with_capacity(bytes.len());
    let mut i = 0;
    loop {
        let b = *bytes.get(i)?;
        if b != 0 {
            key.push(b);
            i += 1;
            continue;
        }
        match *bytes.get(i + 1)? {
            0x00 => return Some((key, &bytes[i + 2..])),
            0xFF => {
                key.push(0);
                i += 2;
            }
            _ => return None,
        }
    }
}

/// The byte level shared by window and session stores: `times[0]` is the time retention looks at
/// (a window's start, a session's end), the others follow it in the keys.
pub(super) struct Core<'t> {
    pub(super) txn: &'t (dyn RawTxn + 't),
    pub(super) store: usize,
    pub(super) retention: i64,
}

/// One entry found by a scan: the serialized key, its times, its value bytes.
pub(super) type RawEntry = (Vec<u8>, Vec<i64>, Vec<u8>);

impl<'t> Core<'t> {
    pub(super) fn name(&self) -> &str {
        self.txn.store_spec(self.store).name()
    }

    pub(super) fn corrupt(&self, what: &str) -> Error {
        Error::Store(format!(
            "store `{}` holds a malformed {what} entry (not written by kstreams' window layout)",
            self.name()
        ))
    }

    pub(super) fn data_key(key: &[u8], times: &[i64]) -> Vec<u8> {
        let mut out = Vec::with_capacity(key.len() + 3 + 8 * times.len());
        out.push(TAG_DATA);
        escape_into(&mut out, key);
        for t in times {
            out.extend_from_slice(&time_bytes(*t));
        }
        out
    }

    fn index_key(key: &[u8], times: &[i64]) -> Vec<u8> {
        let mut out = Vec::with_capacity(key.len() + 3 + 8 * times.len());
        out.push(TAG_INDEX);
        if let Some(t0) = times.first() {
            out.extend_from_slice(&time_bytes(*t0));
        }
        escape_into(&mut out, key);
        for t in times.iter().skip(1) {
            out.extend_from_slice(&time_bytes(*t));
        }
        out
    }

    fn parse_times(&self, mut rest: &[u8], n: usize) -> Result<Vec<i64>> {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            times.push(time_from(rest).ok_or_else(|| self.corrupt("window"))?);
            rest = &rest[8..];
        }
        if rest.is_empty() {
            Ok(times)
        } else {
            Err(self.corrupt("window"))
        }
    }

    fn parse_data(&self, k: &[u8], n: usize) -> Result<(Vec<u8>, Vec<i64>)> {
        let (key, rest) = k
            .strip_prefix(&[TAG_DATA])
            .and_then(unescape)
            .ok_or_else(|| self.corrupt("window"))?;
        Ok((key, self.parse_times(rest, n)?))
    }

    fn parse_index(&self, k: &[u8], n: usize) -> Result<(Vec<u8>, Vec<i64>)> {
        let rest = k
            .strip_prefix(&[TAG_INDEX])
            .ok_or_else(|| self.corrupt("time index"))?;
        let t0 = time_from(rest).ok_or_else(|| self.corrupt("time index"))?;
        let (key, rest) = unescape(&rest[8..]).ok_or_else(|| self.corrupt("time index"))?;
        let mut times = vec![t0];
        times.extend(self.parse_times(rest, n - 1)?);
        Ok((key, times))
    }

    /// The store's stream time, if the caller ever gave one.
    pub(super) fn stream_time(&self) -> Result<Option<i64>> {
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

    /// Entries whose retention time is at or before this are expired; `None`: nothing is.
    pub(super) fn cut(&self) -> Result<Option<i64>> {
        Ok(self
            .stream_time()?
            .map(|t| t.saturating_sub(self.retention)))
    }

    /// Moves the stream time forward to `t` (never back) and purges up to [`PURGE_LIMIT`] expired
    /// entries; returns how many it purged.
    pub(super) fn advance(&self, t: i64) -> Result<usize> {
        if self.stream_time()?.is_none_or(|old| t > old) {
            self.txn
                .put_unlogged(self.store, STREAM_TIME_KEY, Some(&t.to_be_bytes()))?;
        }
        self.purge(PURGE_LIMIT)
    }

    /// [`advance`](Self::advance), and the new stream time logged to the changelog under
    /// [`STREAM_TIME_CHANGELOG_KEY`] (when it moved), so a restore brings it back.
    pub(super) fn advance_logged(&self, t: i64) -> Result<usize> {
        if self.stream_time()?.is_none_or(|old| t > old) {
            self.txn.log(
                self.store,
                STREAM_TIME_CHANGELOG_KEY,
                Some(&t.to_be_bytes()),
            )?;
        }
        self.advance(t)
    }

    fn purge(&self, limit: usize) -> Result<usize> {
        let Some(cut) = self.cut()? else {
            return Ok(0);
        };
        let n = self.times_len();
        let upper = index_after(cut);
        let mut expired = Vec::new();
        self.txn.scan(
            self.store,
            Bound::Included(&[TAG_INDEX][..]),
            Bound::Excluded(&upper),
            limit,
            &mut |k, _| {
                expired.push(k.to_vec());
                Ok(())
            },
        )?;
        for index_key in &expired {
            let (key, times) = self.parse_index(index_key, n)?;
            self.txn
                .put_unlogged(self.store, &Self::data_key(&key, &times), None)?;
            self.txn.put_unlogged(self.store, index_key, None)?;
        }
        Ok(expired.len())
    }

    fn times_len(&self) -> usize {
        match self.txn.store_spec(self.store).kind() {
            StoreKind::Session { .. } => 2,
            _ => 1,
        }
    }

    fn expired(&self, t0: i64, cut: Option<i64>) -> bool {
        cut.is_some_and(|c| t0 <= c)
    }

    pub(super) fn get(&self, key: &[u8], times: &[i64]) -> Result<Option<Vec<u8>>> {
        if self.expired(times[0], self.cut()?) {
            return Ok(None);
        }
        let mut out = None;
        self.txn
            .get(self.store, &Self::data_key(key, times), &mut |v| {
                out = v.map(<[u8]>::to_vec);
                Ok(())
            })?;
        Ok(out)
    }

    /// Writes (`Some`) or deletes (`None`) one entry and its time index entry; logs `log_key` to
    /// the changelog when given. A write to an expired entry is refused; a delete always applies.
    pub(super) fn write(
        &self,
        key: &[u8],
        times: &[i64],
        value: Option<&[u8]>,
        log_key: Option<&[u8]>,
    ) -> Result<WindowWrite> {
        if value.is_some() && self.expired(times[0], self.cut()?) {
            return Ok(WindowWrite::Expired);
        }
        let data = Self::data_key(key, times);
        let index = Self::index_key(key, times);
        match value {
            Some(v) => {
                self.txn.put_unlogged(self.store, &data, Some(v))?;
                self.txn.put_unlogged(self.store, &index, Some(&[]))?;
            }
            None => {
                self.txn.put_unlogged(self.store, &data, None)?;
                self.txn.put_unlogged(self.store, &index, None)?;
            }
        }
        if let Some(log_key) = log_key {
            self.txn.log(self.store, log_key, value)?;
        }
        Ok(WindowWrite::Stored)
    }

    /// Every live data entry of `key` with times between `lower` and `upper` (inclusive, compared
    /// as whole time tuples), in time order.
    pub(super) fn scan_key(
        &self,
        key: &[u8],
        lower: &[i64],
        upper: &[i64],
    ) -> Result<Vec<(Vec<i64>, Vec<u8>)>> {
        let cut = self.cut()?;
        let n = self.times_len();
        let lo = Self::data_key(key, lower);
        let hi = Self::data_key(key, upper);
        let mut out = Vec::new();
        for (k, v) in self.scan_chunked(Bound::Included(lo), Bound::Included(hi))? {
            let (_, times) = self.parse_data(&k, n)?;
            if !self.expired(times[0], cut) {
                out.push((times, v));
            }
        }
        Ok(out)
    }

    /// Every live entry whose retention time lies in `[from, to]`, in time order, through the
    /// time index.
    pub(super) fn scan_time(&self, from: i64, to: i64) -> Result<Vec<RawEntry>> {
        let cut = self.cut()?;
        let from = match cut {
            Some(c) if c >= from => match c.checked_add(1) {
                Some(f) => f,
                None => return Ok(Vec::new()),
            },
            _ => from,
        };
        if from > to {
            return Ok(Vec::new());
        }
        let n = self.times_len();
        let lo = [&[TAG_INDEX][..], &time_bytes(from)[..]].concat();
        let hi = index_after(to);
        let mut out = Vec::new();
        for (k, _) in self.scan_chunked(Bound::Included(lo), Bound::Excluded(hi))? {
            let (key, times) = self.parse_index(&k, n)?;
            let data = Self::data_key(&key, &times);
            let mut value = None;
            self.txn.get(self.store, &data, &mut |v| {
                value = v.map(<[u8]>::to_vec);
                Ok(())
            })?;
            let value = value.ok_or_else(|| self.corrupt("time index"))?;
            out.push((key, times, value));
        }
        Ok(out)
    }

    fn scan_chunked(
        &self,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut lower = lower;
        loop {
            let before = out.len();
            let lo = match &lower {
                Bound::Included(b) => Bound::Included(b.as_slice()),
                Bound::Excluded(b) => Bound::Excluded(b.as_slice()),
                Bound::Unbounded => Bound::Unbounded,
            };
            let hi = match &upper {
                Bound::Included(b) => Bound::Included(b.as_slice()),
                Bound::Excluded(b) => Bound::Excluded(b.as_slice()),
                Bound::Unbounded => Bound::Unbounded,
            };
            self.txn.scan(self.store, lo, hi, SCAN_CHUNK, &mut |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                Ok(())
            })?;
            if out.len() - before < SCAN_CHUNK {
                return Ok(out);
            }
            if let Some((last, _)) = out.last() {
                lower = Bound::Excluded(last.clone());
            }
        }
    }
}

/// Kafka Streams' window changelog key: key, start (8 bytes big-endian), sequence number 0.
fn window_changelog_key(key: &[u8], start: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 12);
    out.extend_from_slice(key);
    out.extend_from_slice(&start.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out
}

/// Applies one changelog record of a window or session store (the restore path): the changelog
/// key is decoded to the local layout, and the data and time index entries are written.
pub(super) fn restore(
    txn: &(dyn RawTxn + '_),
    store: usize,
    changelog_key: &[u8],
    value: Option<&[u8]>,
) -> Result<()> {
    let spec = txn.store_spec(store);
    let (retention, suffix) = match spec.kind() {
        StoreKind::Window { retention_ms, .. } => (retention_ms, 12),
        StoreKind::Session { retention_ms } => (retention_ms, 16),
        StoreKind::KeyValue | StoreKind::Versioned { .. } => {
            return Err(Error::Internal(format!(
                "store `{}` is not a window or session store",
                spec.name()
            )));
        }
    };
    if changelog_key == STREAM_TIME_CHANGELOG_KEY {
        let t = value
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .map(i64::from_be_bytes)
            .ok_or_else(|| {
                Error::Store(format!(
                    "the changelog of store `{}` holds a stream-time record whose value is not 8 bytes",
                    spec.name()
                ))
            })?;
        let core = Core {
            txn,
            store,
            retention,
        };
        if core.stream_time()?.is_none_or(|old| t > old) {
            txn.put_unlogged(store, STREAM_TIME_KEY, Some(&t.to_be_bytes()))?;
        }
        return Ok(());
    }
    let Some(split) = changelog_key.len().checked_sub(suffix) else {
        return Err(Error::Store(format!(
            "the changelog of store `{}` holds a key of {} bytes, shorter than the {suffix}-byte \
             window suffix of a {} changelog key",
            spec.name(),
            changelog_key.len(),
            if suffix == 12 { "window" } else { "session" }
        )));
    };
    let (key, tail) = changelog_key.split_at(split);
    let first = i64::from_be_bytes(
        tail[..8]
            .try_into()
            .map_err(|_| Error::Internal("a slice of 8 bytes is not 8 bytes long".into()))?,
    );
    let times = if suffix == 12 {
        vec![first]
    } else {
        let start = i64::from_be_bytes(
            tail[8..16]
                .try_into()
                .map_err(|_| Error::Internal("a slice of 8 bytes is not 8 bytes long".into()))?,
        );
        vec![first, start]
    };
    let core = Core {
        txn,
        store,
        retention,
    };
    // A restored write to an expired window is skipped, as a live one would be.
    let _ = core.write(key, &times, value, None)?;
    Ok(())
}

/// The live entries of a window or session store, from all the raw entries one task's backend
/// holds for it (for the test driver): (serialized key, times, value bytes) in key, then time order, the
/// expired and the bookkeeping entries left out. Times are `[start]` for a window store and
/// `[end, start]` for a session store.
pub(crate) fn live_entries(
    spec: &super::StoreSpec,
    raw: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<Vec<RawEntry>> {
    let (retention, n) = match spec.kind() {
        StoreKind::Window { retention_ms, .. } => (retention_ms, 1),
        StoreKind::Session { retention_ms } => (retention_ms, 2),
        kind @ (StoreKind::KeyValue | StoreKind::Versioned { .. }) => {
            return Err(Error::Store(format!(
                "store `{}` is a {}, not a window or session store",
                spec.name(),
                kind.describe()
            )));
        }
    };
    let corrupt = || {
        Error::Store(format!(
            "store `{}` holds a malformed window entry (not written by kstreams' window layout)",
            spec.name()
        ))
    };
    let cut = raw
        .iter()
        .filter(|(k, _)| k.as_slice() == STREAM_TIME_KEY)
        .filter_map(|(_, v)| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(|b| i64::from_be_bytes(b).saturating_sub(retention))
        .max();
    let mut out = Vec::new();
    for (k, v) in raw {
        let Some(rest) = k.strip_prefix(&[TAG_DATA]) else {
            continue;
        };
        let (key, mut rest) = unescape(rest).ok_or_else(corrupt)?;
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            times.push(time_from(rest).ok_or_else(corrupt)?);
            rest = &rest[8..];
        }
        if !rest.is_empty() {
            return Err(corrupt());
        }
        if cut.is_none_or(|c| times[0] > c) {
            out.push((key, times, v));
        }
    }
    Ok(out)
}

/// The live data entries of a window, session or versioned store as (local key bytes, value
/// bytes), in key order, from one task's raw entries: what the split check compares (purge
/// progress and the store's stream time are bookkeeping, not state).
pub(crate) fn live_raw_entries(
    spec: &super::StoreSpec,
    raw: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if let StoreKind::Versioned { .. } = spec.kind() {
        return super::versioned::live_raw_entries(spec, raw);
    }
    Ok(live_entries(spec, raw)?
        .into_iter()
        .map(|(k, times, v)| (Core::data_key(&k, &times), v))
        .collect())
}

/// A typed window store, bound to the current batch's transaction: values keyed by (key, window
/// start), with retention driven by the caller's stream time (see the module docs of
/// `store::window` for the layout and the rules).
///
/// Times are milliseconds since the epoch, as record timestamps. A window is `[start, start +
/// size)`; the store keeps starts, the size is the declaration's.
///
/// ```
/// use std::time::Duration;
/// use kstreams::store::{StateStores, StoreSpec, WindowWrite};
/// let spec = StoreSpec::new::<String, u64>("counts")
///     .windowed(Duration::from_secs(60), Duration::from_secs(120))?;
/// let mut stores = StateStores::in_memory(vec![spec])?;
/// stores.transaction(|txn| {
///     let w = txn.window_store::<String, u64>("counts")?;
///     assert_eq!(w.put(&"a".into(), 0, &1)?, WindowWrite::Stored);
///     assert_eq!(w.put(&"a".into(), 60_000, &2)?, WindowWrite::Stored);
///     assert_eq!(w.fetch("a", 0, 60_000)?, vec![(0, 1), (60_000, 2)]);
///     // Stream time 120 s: the window starting at 0 is expired (0 <= 120 s - 120 s).
///     w.advance_stream_time(120_000)?;
///     assert_eq!(w.fetch("a", 0, 60_000)?, vec![(60_000, 2)]);
///     assert_eq!(w.put(&"a".into(), 0, &5)?, WindowWrite::Expired);
///     Ok(())
/// })?;
/// # Ok::<(), kstreams::Error>(())
/// ```
pub struct WindowStore<'t, K, V> {
    kv: KeyValueStore<'t, K, V>,
    size: i64,
    core: Core<'t>,
}

impl<K, V> std::fmt::Debug for WindowStore<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowStore")
            .field("name", &self.core.name())
            .field("size", &self.size)
            .field("retention", &self.core.retention)
            .finish_non_exhaustive()
    }
}

impl<'t, K: 'static, V: 'static> WindowStore<'t, K, V> {
    pub(crate) fn bind(txn: &'t (dyn RawTxn + 't), store: usize) -> Result<Self> {
        let spec = txn.store_spec(store);
        let StoreKind::Window {
            size_ms,
            retention_ms,
        } = spec.kind()
        else {
            return Err(Error::Store(format!(
                "store `{}` is a {}, not a window store",
                spec.name(),
                spec.kind().describe()
            )));
        };
        Ok(WindowStore {
            kv: KeyValueStore::bind_any(txn, store)?,
            size: size_ms,
            core: Core {
                txn,
                store,
                retention: retention_ms,
            },
        })
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        self.kv.name()
    }

    /// The window size in milliseconds (a window is `[start, start + size)`).
    pub fn window_size(&self) -> i64 {
        self.size
    }

    /// The retention in milliseconds: a window whose start is at or before `stream time −
    /// retention` is expired.
    pub fn retention(&self) -> i64 {
        self.core.retention
    }

    /// The stream time the caller last gave ([`advance_stream_time`](Self::advance_stream_time)),
    /// if any.
    pub fn stream_time(&self) -> Result<Option<i64>> {
        self.core.stream_time()
    }

    /// Moves the store's stream time forward to `stream_time` (an earlier time is ignored) and
    /// purges up to [`PURGE_LIMIT`] expired windows; returns how many it purged. Expired windows
    /// not yet purged are hidden from every read.
    ///
    /// An operator that emits on window close fetches the windows `stream_time` closes before it
    /// calls this (see the module docs on KAFKA-12960).
    pub fn advance_stream_time(&self, stream_time: i64) -> Result<usize> {
        self.core.advance(stream_time)
    }

    /// [`advance_stream_time`](Self::advance_stream_time), with the new stream time also logged
    /// to the changelog (a reserved 9-byte key), so a restore after a lost disk brings it back:
    /// what the windowed operators call, as their stream time is the store's.
    pub(crate) fn advance_stream_time_logged(&self, stream_time: i64) -> Result<usize> {
        self.core.advance_logged(stream_time)
    }

    /// The value of `key`'s window starting at `start`, or `None` (also when it is expired).
    pub fn get<Q: AsKey<K> + ?Sized>(&self, key: &Q, start: i64) -> Result<Option<V>> {
        let k = self.kv.key_bytes(&key.as_key())?;
        self.core
            .get(&k, &[start])?
            .map(|v| self.kv.read_value(&v))
            .transpose()
    }

    /// Sets `key`'s window starting at `start` to `value`; a value that serializes to null is a
    /// delete (a tombstone in the changelog), as in key-value stores. An expired window is not
    /// written: [`WindowWrite::Expired`].
    pub fn put(&self, key: &K, start: i64, value: &V) -> Result<WindowWrite> {
        let k = self.kv.key_bytes(key)?;
        let v = self.kv.value_bytes(value)?;
        self.core.write(
            &k,
            &[start],
            v.as_deref(),
            Some(&window_changelog_key(&k, start)),
        )
    }

    /// Removes `key`'s window starting at `start` (a tombstone in the changelog).
    pub fn delete<Q: AsKey<K> + ?Sized>(&self, key: &Q, start: i64) -> Result<()> {
        let k = self.kv.key_bytes(&key.as_key())?;
        let _ = self
            .core
            .write(&k, &[start], None, Some(&window_changelog_key(&k, start)))?;
        Ok(())
    }

    /// One answer per (key, window start), in the order given.
    pub fn get_batch<Q: AsKey<K>>(&self, windows: &[(Q, i64)]) -> Result<Vec<Option<V>>> {
        windows
            .iter()
            .map(|(key, start)| self.get(key, *start))
            .collect()
    }

    /// Applies the puts in the order given (the last put of a window wins); one outcome per put.
    pub fn put_batch(&self, entries: &[(K, i64, V)]) -> Result<Vec<WindowWrite>> {
        entries
            .iter()
            .map(|(key, start, value)| self.put(key, *start, value))
            .collect()
    }

    /// `key`'s live windows whose start lies in `[from, to]`, in time order, as (start, value):
    /// one range scan.
    pub fn fetch<Q: AsKey<K> + ?Sized>(
        &self,
        key: &Q,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, V)>> {
        if from > to {
            return Ok(Vec::new());
        }
        let k = self.kv.key_bytes(&key.as_key())?;
        self.core
            .scan_key(&k, &[from], &[to])?
            .into_iter()
            .map(|(times, v)| Ok((times[0], self.kv.read_value(&v)?)))
            .collect()
    }

    /// Sets `key`'s window starting at `start` to `value` with a timestamp (the largest record
    /// timestamp the window holds), stored as Kafka Streams' `TimestampedWindowStore` does: the
    /// timestamp as 8 big-endian bytes, then the value's bytes (so the changelog is Java's too).
    /// A value that serializes to null is a delete. Read back with the `*_timestamped` fetches.
    pub(crate) fn put_timestamped(
        &self,
        key: &K,
        start: i64,
        value: &V,
        timestamp: i64,
    ) -> Result<WindowWrite> {
        let k = self.kv.key_bytes(key)?;
        let v = self.kv.value_bytes(value)?.map(|v| {
            let mut out = Vec::with_capacity(8 + v.len());
            out.extend_from_slice(&timestamp.to_be_bytes());
            out.extend_from_slice(&v);
            out
        });
        self.core.write(
            &k,
            &[start],
            v.as_deref(),
            Some(&window_changelog_key(&k, start)),
        )
    }

    fn read_timestamped(&self, bytes: &[u8]) -> Result<(V, i64)> {
        let Some((ts, value)) = bytes.split_first_chunk::<8>() else {
            return Err(self.core.corrupt("timestamped window value"));
        };
        Ok((self.kv.read_value(value)?, i64::from_be_bytes(*ts)))
    }

    /// [`fetch`](Self::fetch) of windows written with `put_timestamped`: (start, value,
    /// timestamp).
    pub(crate) fn fetch_timestamped<Q: AsKey<K> + ?Sized>(
        &self,
        key: &Q,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, V, i64)>> {
        if from > to {
            return Ok(Vec::new());
        }
        let k = self.kv.key_bytes(&key.as_key())?;
        self.core
            .scan_key(&k, &[from], &[to])?
            .into_iter()
            .map(|(times, v)| {
                let (value, ts) = self.read_timestamped(&v)?;
                Ok((times[0], value, ts))
            })
            .collect()
    }

    /// [`fetch_all`](Self::fetch_all) of windows written with `put_timestamped`: (key, start,
    /// value, timestamp), in order of start, then key bytes.
    pub(crate) fn fetch_all_timestamped(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<(K, i64, V, i64)>> {
        self.core
            .scan_time(from, to)?
            .into_iter()
            .map(|(k, times, v)| {
                let (value, ts) = self.read_timestamped(&v)?;
                Ok((self.kv.read_key(&k)?, times[0], value, ts))
            })
            .collect()
    }

    /// Every key's live windows whose start lies in `[from, to]`, as (key, start, value), in
    /// order of start, then key bytes: one range scan of the time index.
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<(K, i64, V)>> {
        self.core
            .scan_time(from, to)?
            .into_iter()
            .map(|(k, times, v)| Ok((self.kv.read_key(&k)?, times[0], self.kv.read_value(&v)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_keys_keep_order_and_are_prefix_free() {
        let keys: [&[u8]; 6] = [b"", b"\0", b"\0\0", b"a", b"a\0", b"ab"];
        let enc: Vec<Vec<u8>> = keys.iter().map(|k| Core::data_key(k, &[5])).collect();
        for w in enc.windows(2) {
            assert!(w[0] < w[1], "{:?} !< {:?}", w[0], w[1]);
        }
        // The largest window of a key sorts before the smallest window of any longer key.
        assert!(Core::data_key(b"a", &[i64::MAX]) < Core::data_key(b"a\0", &[i64::MIN]));
        assert!(Core::data_key(b"a", &[i64::MAX]) < Core::data_key(b"ab", &[i64::MIN]));
        for k in keys {
            let mut e = Vec::new();
            escape_into(&mut e, k);
            e.extend_from_slice(b"rest");
            assert_eq!(unescape(&e), Some((k.to_vec(), &b"rest"[..])));
        }
    }

    #[test]
    fn times_order_across_the_sign() {
        let ts = [i64::MIN, -1, 0, 1, i64::MAX];
        for w in ts.windows(2) {
            assert!(time_bytes(w[0]) < time_bytes(w[1]));
        }
        for t in ts {
            assert_eq!(time_from(&time_bytes(t)), Some(t));
        }
    }

    #[test]
    fn timestamped_values_are_java_value_and_timestamp() -> Result<()> {
        use crate::store::{StateStores, StoreSpec};
        let spec = StoreSpec::new::<String, u64>("w").windowed(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_millis(100),
        )?;
        let mut stores = StateStores::in_memory(vec![spec])?;
        stores.transaction(|txn| {
            let w = txn.window_store::<String, u64>("w")?;
            assert_eq!(
                w.put_timestamped(&"a".into(), 5, &3, 12)?,
                WindowWrite::Stored
            );
            assert_eq!(w.fetch_timestamped("a", 0, 10)?, vec![(5, 3, 12)]);
            assert_eq!(
                w.fetch_all_timestamped(0, 10)?,
                vec![("a".to_owned(), 5, 3, 12)]
            );
            // The bytes: the timestamp (8 bytes big-endian), then the u64 value.
            let raw = w.core.get(b"a", &[5])?.unwrap_or_default();
            assert_eq!(raw, [12u64.to_be_bytes(), 3u64.to_be_bytes()].concat());
            Ok(())
        })
    }

    #[test]
    fn changelog_key_is_kafka_streams_window_key() {
        // WindowKeySchema.toStoreKeyBinary("k", 1, 0): key, 8-byte start, 4-byte seqnum.
        assert_eq!(
            window_changelog_key(b"k", 1),
            [b'k', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
        );
    }
}
