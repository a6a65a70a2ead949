//! Read-only access to a task's stores from other threads: [`StoreReader`].
//!
//! Owns: the reader handle and the read-only form of [`StateTxn`]. The typed handles
//! ([`KeyValueStore`](super::KeyValueStore), [`WindowStore`](super::WindowStore),
//! [`SessionStore`](super::SessionStore)) are the same as in a batch, bound to a transaction that
//! refuses every write. It may not write: a reader never changes a store, its position or its
//! changelog.
//!
//! What a read sees: one read transaction, that is the state after some whole batch (the last one
//! committed when the read began), never part of a batch. On LMDB a read is a snapshot (MVCC): it
//! never waits for the task's writes, nor they for it, except that the map cannot be resized
//! while a read is open (see `lmdb.rs`: growth ahead of need is put off, and only a batch that
//! fills the map up waits for open reads to end). The in-memory backend has no snapshots: a read
//! holds the read side of a lock the task's write transaction holds for a whole batch, so a read
//! waits for the batch being written and delays the next one until it ends (see `memory.rs`).
//! Keep reads short on both backends: an open LMDB read also keeps the pages it sees from being
//! reused.
//!
//! A reader holds its task's stores weakly: once the task's [`StateStores`] is dropped (the task
//! closed or moved away), a read answers an error instead of keeping the state directory open.

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, RwLock, Weak};

use super::{Slot, StateStores, StateTxn, StoreSpec, lmdb, memory};
use crate::error::{Error, Result};

/// Reads a task's stores from any thread: `Clone + Send + Sync`, from [`StateStores::reader`].
///
/// Each [`read`](Self::read) is one read transaction: it sees the state after some whole batch
/// (the last committed when the read began), never part of one, and on LMDB it never blocks the
/// task's writes (see the module docs of `store::reader` for the in-memory backend, whose reads
/// and writes take turns). Inside, the usual typed handles read; any write through them answers
/// [`Error::Config`] (``store `x` is read-only here``).
///
/// ```
/// use kstreams::store::{StateStores, StoreSpec};
/// let mut stores = StateStores::in_memory(vec![StoreSpec::new::<String, u64>("counts")])?;
/// let reader = stores.reader()?;
/// stores.transaction(|txn| txn.store::<String, u64>("counts")?.put(&"a".to_owned(), &3))?;
/// let seen = std::thread::spawn(move || {
///     reader.read(|txn| txn.store::<String, u64>("counts")?.get("a"))
/// })
/// .join()
/// .expect("the reading thread");
/// assert_eq!(seen?, Some(3));
/// # Ok::<(), kstreams::Error>(())
/// ```
#[derive(Clone)]
pub struct StoreReader {
    inner: Arc<Inner>,
}

struct Inner {
    specs: Vec<StoreSpec>,
    slots: Vec<Slot>,
    lmdb: Option<Weak<lmdb::LmdbState>>,
    /// `None` when the task has no in-memory stores: its reads take no lock.
    memory: Option<Weak<RwLock<memory::Maps>>>,
}

impl fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreReader")
            .field("stores", &self.inner.specs)
            .finish_non_exhaustive()
    }
}

impl StateStores {
    /// A reader of these stores for other threads (see [`StoreReader`]).
    ///
    /// The reader holds the stores weakly: once they are dropped, its reads fail with
    /// [`Error::Store`].
    pub fn reader(&self) -> Result<StoreReader> {
        let memory = if self.memory.is_empty() {
            None
        } else {
            Some(self.memory.shared())
        };
        Ok(StoreReader {
            inner: Arc::new(Inner {
                specs: self.specs.clone(),
                slots: self.slots.clone(),
                lmdb: self.lmdb.as_ref().map(Arc::downgrade),
                memory,
            }),
        })
    }
}

impl StoreReader {
    /// Runs `f` in one read transaction over the stores and returns what it returns.
    ///
    /// `f` binds the typed handles as in a batch (`txn.store::<K, V>(name)`,
    /// `txn.window_store`, ..., or a `#[store]` handle); they read one snapshot, and any write
    /// answers [`Error::Config`]. Fails with [`Error::Store`] once the task's stores are closed.
    pub fn read<R>(&self, f: impl FnOnce(&StateTxn<'_>) -> Result<R>) -> Result<R> {
        // The in-memory lock first: the task's writer holds it from before its LMDB commit to
        // after, so an LMDB snapshot taken while holding it is of the same batch.
        let memory = match &self.inner.memory {
            Some(m) => Some(m.upgrade().ok_or_else(|| self.closed())?),
            None => None,
        };
        let lmdb = match &self.inner.lmdb {
            Some(l) => Some(l.upgrade().ok_or_else(|| self.closed())?),
            None => None,
        };
        let memory_txn = match &memory {
            Some(m) => memory::MemoryTxn::read(m),
            None => memory::MemoryTxn::empty(),
        };
        let lmdb_txn = match &lmdb {
            Some(l) => Some(l.begin_read()?),
            None => None,
        };
        let txn = StateTxn {
            specs: &self.inner.specs,
            slots: &self.inner.slots,
            lmdb: lmdb_txn,
            memory: RefCell::new(memory_txn),
            changelog: RefCell::new(Vec::new()),
        };
        let out = f(&txn);
        drop(txn);
        out
    }

    /// The declarations of the stores it reads, in index order.
    pub fn specs(&self) -> &[StoreSpec] {
        &self.inner.specs
    }

    fn closed(&self) -> Error {
        let names = self
            .inner
            .specs
            .iter()
            .map(|s| format!("`{}`", s.name()))
            .collect::<Vec<_>>()
            .join(", ");
        Error::Store(format!(
            "the stores {names} are closed here (their task was closed or moved to another \
             thread or instance): get a new reader"
        ))
    }
}

impl StateTxn<'_> {
    /// Refuses a write in a reader's transaction; `store` is the store written, `None` for the
    /// position metadata.
    pub(super) fn check_writable(&self, store: Option<usize>) -> Result<()> {
        if !self.memory.borrow().is_read_only() {
            return Ok(());
        }
        Err(Error::Config(match store.and_then(|s| self.specs.get(s)) {
            Some(spec) => format!("store `{}` is read-only here", spec.name()),
            None => "the stores' position is read-only here".to_owned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::store::{Backend, LmdbOptions};

    fn tempdir() -> Result<tempfile::TempDir> {
        tempfile::tempdir().map_err(|e| Error::io("tempdir", e))
    }

    fn open(dir: &std::path::Path, backend: Backend) -> Result<StateStores> {
        let specs = vec![StoreSpec::new::<String, u64>("counts").backend(backend)];
        StateStores::open(dir, specs, &LmdbOptions::default())
    }

    /// Each batch `i` sets all of `KEYS` keys to `i`: a read that saw part of a batch would see
    /// two different values.
    const KEYS: usize = 50;

    fn write_batch(stores: &mut StateStores, i: u64) -> Result<()> {
        stores.transaction(|txn| {
            let counts = txn.store::<String, u64>("counts")?;
            for k in 0..KEYS {
                counts.put(&format!("k{k:02}"), &i)?;
            }
            Ok(())
        })
    }

    fn read_all(reader: &StoreReader) -> Result<Vec<u64>> {
        reader.read(|txn| {
            let counts = txn.store::<String, u64>("counts")?;
            counts
                .iter()?
                .map(|e| e.map(|(_, v)| v))
                .collect::<Result<Vec<_>>>()
        })
    }

    fn reads_see_whole_batches_only(backend: Backend) -> Result<()> {
        const BATCHES: u64 = 300;
        let dir = tempdir()?;
        let mut stores = open(dir.path(), backend)?;
        let reader = stores.reader()?;
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let reader = reader.clone();
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || -> Result<(u64, u64)> {
                    let (mut last, mut reads) = (0, 0);
                    loop {
                        let done = stop.load(Ordering::SeqCst);
                        let values = read_all(&reader)?;
                        if let Some(first) = values.first() {
                            assert_eq!(values.len(), KEYS, "a batch seen in part: {values:?}");
                            assert!(
                                values.iter().all(|v| v == first),
                                "a batch seen in part: {values:?}"
                            );
                            assert!(*first >= last, "went back from {last} to {first}");
                            last = *first;
                        }
                        reads += 1;
                        if done {
                            return Ok((last, reads));
                        }
                    }
                })
            })
            .collect();
        for i in 1..=BATCHES {
            write_batch(&mut stores, i)?;
        }
        stop.store(true, Ordering::SeqCst);
        for r in readers {
            let (last, reads) = r.join().expect("the reading thread")?;
            assert_eq!(last, BATCHES, "a read begun after the last batch sees it");
            assert!(reads > 1, "{reads}");
        }
        Ok(())
    }

    #[test]
    fn an_lmdb_reader_on_other_threads_sees_whole_batches_only() -> Result<()> {
        reads_see_whole_batches_only(Backend::Lmdb)
    }

    #[test]
    fn an_in_memory_reader_on_other_threads_sees_whole_batches_only() -> Result<()> {
        reads_see_whole_batches_only(Backend::InMemory)
    }

    /// A read held open on another thread while the task commits batches: the writes do not
    /// wait for it, and it keeps seeing its snapshot.
    #[test]
    fn a_long_lmdb_read_never_blocks_the_writer() -> Result<()> {
        let dir = tempdir()?;
        let mut stores = open(dir.path(), Backend::Lmdb)?;
        write_batch(&mut stores, 1)?;
        let reader = stores.reader()?;
        let (opened_tx, opened_rx) = mpsc::channel();
        let (written_tx, written_rx) = mpsc::channel::<()>();
        let long_read = std::thread::spawn(move || {
            reader.read(|txn| {
                let counts = txn.store::<String, u64>("counts")?;
                let before = counts.get("k00")?;
                opened_tx
                    .send(())
                    .map_err(|e| Error::Internal(e.to_string()))?;
                // Held open until the writer says it committed (or for long enough to fail).
                let committed = written_rx.recv_timeout(Duration::from_secs(30)).is_ok();
                Ok((before, committed, counts.get("k00")?))
            })
        });
        opened_rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|e| Error::Internal(format!("the read did not open: {e}")))?;
        for i in 2..=20 {
            write_batch(&mut stores, i)?;
        }
        written_tx
            .send(())
            .map_err(|e| Error::Internal(e.to_string()))?;
        let (before, committed, after) = long_read.join().expect("the reading thread")?;
        assert!(committed, "the writer waited for the read");
        assert_eq!(
            (before, after),
            (Some(1), Some(1)),
            "the read's snapshot moved"
        );
        let reader = stores.reader()?;
        assert_eq!(read_all(&reader)?, vec![20; KEYS]);
        Ok(())
    }

    #[test]
    fn writes_through_a_reader_are_refused_with_the_store_name() -> Result<()> {
        for backend in [Backend::Lmdb, Backend::InMemory] {
            let dir = tempdir()?;
            let mut stores = open(dir.path(), backend)?;
            write_batch(&mut stores, 1)?;
            let reader = stores.reader()?;
            let refused = |r: Result<()>| match r {
                Err(Error::Config(m)) => m,
                other => panic!("{backend:?}: not refused: {other:?}"),
            };
            let put = reader.read(|txn| txn.store::<String, u64>("counts")?.put(&"k00".into(), &9));
            assert_eq!(refused(put), "store `counts` is read-only here");
            let delete = reader.read(|txn| txn.store::<String, u64>("counts")?.delete("k00"));
            assert_eq!(refused(delete), "store `counts` is read-only here");
            let position = reader.read(|txn| txn.set_input_position("in", 0, 5));
            assert_eq!(refused(position), "the stores' position is read-only here");
            let restore = reader.read(|txn| txn.restore_raw(0, b"k", Some(b"v"), 0));
            assert_eq!(refused(restore), "store `counts` is read-only here");
            assert_eq!(read_all(&reader)?, vec![1; KEYS], "{backend:?}");
            assert_eq!(stores.position()?, crate::store::Position::default());
        }
        Ok(())
    }

    #[test]
    fn a_reader_of_closed_stores_answers_an_error_and_holds_nothing_open() -> Result<()> {
        let dir = tempdir()?;
        let mut stores = open(dir.path(), Backend::Lmdb)?;
        write_batch(&mut stores, 1)?;
        let reader = stores.reader()?;
        drop(stores);
        match read_all(&reader) {
            Err(Error::Store(m)) => assert!(m.contains("`counts` are closed here"), "{m}"),
            other => panic!("read of closed stores: {other:?}"),
        }
        // The reader kept neither the environment nor the directory's lock.
        let stores = open(dir.path(), Backend::Lmdb)?;
        assert_eq!(read_all(&stores.reader()?)?, vec![1; KEYS]);
        Ok(())
    }

    #[test]
    fn a_reader_is_send_sync_and_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<StoreReader>();
    }
}
