//! Session stores: values keyed by (key, session start, session end), over a task's ordinary
//! byte stores.
//!
//! Owns: the typed [`SessionStore`] handle. The layout, retention and restore are the window
//! store's (`store/window.rs`), with the times `end, start`: one key's sessions are contiguous
//! and ordered by end, then start, so the sessions a new record merges with are one range scan,
//! and retention looks at a session's end (a session is expired when its end is at or before
//! `stream time − retention`, as in Kafka Streams). It may not decide how sessions merge or when
//! one is emitted: that is the operator's.
//!
//! Changelog keys are Kafka Streams' (`SessionKeySchema.toBinary`): the serialized key, the end
//! as 8 big-endian bytes, then the start as 8 big-endian bytes.

use super::window::{Core, WindowWrite};
use super::{AsKey, KeyValueStore, RawTxn, StoreKind};
use crate::error::{Error, Result};

/// A session window: the timestamps of its first and last records, both included (as Kafka
/// Streams' `SessionWindow`; a session of one record has `start == end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionWindow {
    /// The first record's timestamp, in milliseconds.
    pub start: i64,
    /// The last record's timestamp, in milliseconds.
    pub end: i64,
}

impl SessionWindow {
    /// The session `[start, end]`.
    pub fn new(start: i64, end: i64) -> Self {
        SessionWindow { start, end }
    }
}

/// Kafka Streams' session changelog key: key, end, start (8 bytes big-endian each).
fn session_changelog_key(key: &[u8], session: SessionWindow) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 16);
    out.extend_from_slice(key);
    out.extend_from_slice(&session.end.to_be_bytes());
    out.extend_from_slice(&session.start.to_be_bytes());
    out
}

/// A typed session store, bound to the current batch's transaction: values keyed by (key,
/// session), with retention driven by the caller's stream time.
///
/// ```
/// use std::time::Duration;
/// use kstreams::store::{SessionWindow, StateStores, StoreSpec, WindowWrite};
/// let spec = StoreSpec::new::<String, u64>("sessions").sessions(Duration::from_secs(60))?;
/// let mut stores = StateStores::in_memory(vec![spec])?;
/// stores.transaction(|txn| {
///     let s = txn.session_store::<String, u64>("sessions")?;
///     assert_eq!(s.put(&"a".into(), SessionWindow::new(0, 10), &2)?, WindowWrite::Stored);
///     // A record at 15 with a gap of 5 merges with the sessions ending at 10 or later and
///     // starting at 20 or earlier.
///     assert_eq!(
///         s.find_sessions("a", 15 - 5, 15 + 5)?,
///         vec![(SessionWindow::new(0, 10), 2)]
///     );
///     s.remove("a", SessionWindow::new(0, 10))?;
///     s.put(&"a".into(), SessionWindow::new(0, 15), &3)?;
///     assert_eq!(s.get("a", SessionWindow::new(0, 15))?, Some(3));
///     Ok(())
/// })?;
/// # Ok::<(), kstreams::Error>(())
/// ```
pub struct SessionStore<'t, K, V> {
    kv: KeyValueStore<'t, K, V>,
    core: Core<'t>,
}

impl<K, V> std::fmt::Debug for SessionStore<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("name", &self.core.name())
            .field("retention", &self.core.retention)
            .finish_non_exhaustive()
    }
}

impl<'t, K: 'static, V: 'static> SessionStore<'t, K, V> {
    pub(crate) fn bind(txn: &'t (dyn RawTxn + 't), store: usize) -> Result<Self> {
        let spec = txn.store_spec(store);
        let StoreKind::Session { retention_ms } = spec.kind() else {
            return Err(Error::Store(format!(
                "store `{}` is a {}, not a session store",
                spec.name(),
                spec.kind().describe()
            )));
        };
        Ok(SessionStore {
            kv: KeyValueStore::bind_any(txn, store)?,
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

    /// The retention in milliseconds: a session whose end is at or before `stream time −
    /// retention` is expired.
    pub fn retention(&self) -> i64 {
        self.core.retention
    }

    /// The stream time the caller last gave, if any.
    pub fn stream_time(&self) -> Result<Option<i64>> {
        self.core.stream_time()
    }

    /// Moves the store's stream time forward to `stream_time` (an earlier time is ignored) and
    /// purges up to [`PURGE_LIMIT`](super::PURGE_LIMIT) expired sessions; returns how many it
    /// purged. Expired sessions not yet purged are hidden from every read.
    pub fn advance_stream_time(&self, stream_time: i64) -> Result<usize> {
        self.core.advance(stream_time)
    }

    /// [`advance_stream_time`](Self::advance_stream_time), with the new stream time also logged
    /// to the changelog (a reserved 9-byte key), so a restore brings it back: what the session
    /// operator calls.
    #[allow(
        dead_code,
        reason = "used by the session aggregation in window/session.rs"
    )]
    pub(crate) fn advance_stream_time_logged(&self, stream_time: i64) -> Result<usize> {
        self.core.advance_logged(stream_time)
    }

    fn check(&self, session: SessionWindow) -> Result<()> {
        if session.start > session.end {
            return Err(Error::Store(format!(
                "session store `{}`: a session cannot start ({}) after it ends ({})",
                self.name(),
                session.start,
                session.end
            )));
        }
        Ok(())
    }

    /// The value of `key`'s session `session`, or `None` (also when it is expired).
    pub fn get<Q: AsKey<K> + ?Sized>(&self, key: &Q, session: SessionWindow) -> Result<Option<V>> {
        let k = self.kv.key_bytes(&key.as_key())?;
        self.core
            .get(&k, &[session.end, session.start])?
            .map(|v| self.kv.read_value(&v))
            .transpose()
    }

    /// Sets `key`'s session to `value`; a value that serializes to null is a removal. An expired
    /// session is not written: [`WindowWrite::Expired`].
    pub fn put(&self, key: &K, session: SessionWindow, value: &V) -> Result<WindowWrite> {
        self.check(session)?;
        let k = self.kv.key_bytes(key)?;
        let v = self.kv.value_bytes(value)?;
        self.core.write(
            &k,
            &[session.end, session.start],
            v.as_deref(),
            Some(&session_changelog_key(&k, session)),
        )
    }

    /// Applies the puts in the order given; one outcome per put.
    pub fn put_batch(&self, entries: &[(K, SessionWindow, V)]) -> Result<Vec<WindowWrite>> {
        entries.iter().map(|(k, s, v)| self.put(k, *s, v)).collect()
    }

    /// Removes `key`'s session (a tombstone in the changelog), e.g. one merged into a new one.
    pub fn remove<Q: AsKey<K> + ?Sized>(&self, key: &Q, session: SessionWindow) -> Result<()> {
        let k = self.kv.key_bytes(&key.as_key())?;
        let _ = self.core.write(
            &k,
            &[session.end, session.start],
            None,
            Some(&session_changelog_key(&k, session)),
        )?;
        Ok(())
    }

    /// `key`'s live sessions that end at or after `earliest_end` and start at or before
    /// `latest_start`, ordered by end: the sessions a record at `t` merges with, for a gap `g`,
    /// are `find_sessions(key, t - g, t + g)` (Kafka Streams' `findSessions`). One range scan,
    /// from `earliest_end` to the key's last session.
    pub fn find_sessions<Q: AsKey<K> + ?Sized>(
        &self,
        key: &Q,
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<Vec<(SessionWindow, V)>> {
        let k = self.kv.key_bytes(&key.as_key())?;
        self.core
            .scan_key(&k, &[earliest_end, i64::MIN], &[i64::MAX, i64::MAX])?
            .into_iter()
            .filter(|(times, _)| times[1] <= latest_start)
            .map(|(times, v)| {
                Ok((
                    SessionWindow::new(times[1], times[0]),
                    self.kv.read_value(&v)?,
                ))
            })
            .collect()
    }

    /// Every key's live sessions whose end lies in `[earliest_end, latest_end]`, as (key,
    /// session, value), ordered by end, then key bytes: one range scan of the time index (what
    /// an operator emitting on session close reads).
    pub fn find_all_sessions(
        &self,
        earliest_end: i64,
        latest_end: i64,
    ) -> Result<Vec<(K, SessionWindow, V)>> {
        self.core
            .scan_time(earliest_end, latest_end)?
            .into_iter()
            .map(|(k, times, v)| {
                Ok((
                    self.kv.read_key(&k)?,
                    SessionWindow::new(times[1], times[0]),
                    self.kv.read_value(&v)?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changelog_key_is_kafka_streams_session_key() {
        // SessionKeySchema.toBinary: key, 8-byte end, 8-byte start.
        assert_eq!(
            session_changelog_key(b"k", SessionWindow::new(1, 2)),
            [b'k', 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1]
        );
    }
}
