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
//! Read-committed reads ([`StoreReader::read_committed`]): the runtime may pin, right after each
//! Kafka commit of the task's input offsets, an LMDB read snapshot of the state as it stands then
//! ([`StateStores::pin_committed`]), and such a read answers from it: under exactly-once, the state
//! of exactly the committed input, never of a transaction still open (or later aborted). The
//! snapshot is one read transaction kept open from one commit to the next (so LMDB keeps the pages
//! it sees for a commit interval), shared by the read-committed reads of the task, which take
//! turns on it; it is dropped before a map resize, and read-committed reads then fail until the
//! next commit pins a new one. Only LMDB stores have snapshots: a task with in-memory stores
//! cannot be read this way.
//!
//! Nested reads: a read opened inside another read of the same stores on the same thread (of the
//! same kind, plain or read-committed) shares the outer read's transaction, so it sees the same
//! snapshot and never waits on a lock the outer read holds while a writer waits for the outer
//! read (a second `read()` of an `RwLock` on one thread would).
//!
//! A reader holds its task's stores weakly: once the task's [`StateStores`] is dropped (the task
//! closed or moved away), a read answers an error instead of keeping the state directory open.

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, RwLock, Weak};

use super::{Slot, StateStores, StateTxn, StoreSpec, lmdb, memory};
use crate::error::{Error, Result};

thread_local! {
    /// The reads open on this thread: (stores' address, read-committed, their transaction).
    static OPEN: RefCell<Vec<(usize, bool, *const StateTxn<'static>)>> =
        const { RefCell::new(Vec::new()) };
}

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
    /// Pins a read snapshot of the stores' state as it is now, for
    /// [`StoreReader::read_committed`]; the runtime calls it right after a Kafka commit (the
    /// snapshot pinned before ends). Nothing to do without LMDB stores.
    pub fn pin_committed(&self) -> Result<()> {
        match &self.lmdb {
            Some(l) => l.pin_committed(),
            None => Ok(()),
        }
    }

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
        if let Some(open) = self.open(false) {
            // SAFETY: see `open`.
            return f(unsafe { &*open });
        }
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
        let out = self.run_open(false, &txn, f);
        drop(txn);
        out
    }

    /// The stores' address: what nested reads are matched by.
    fn key(&self) -> usize {
        match (&self.inner.lmdb, &self.inner.memory) {
            (Some(l), _) => l.as_ptr() as usize,
            (None, Some(m)) => m.as_ptr() as usize,
            (None, None) => Arc::as_ptr(&self.inner) as usize,
        }
    }

    /// The transaction of a read of the same stores (and kind) open on this thread, if any: a
    /// read inside another shares its transaction, so it never waits on a lock the outer one
    /// holds (the in-memory lock, the pinned snapshot's) while a writer waits for the outer one.
    ///
    /// The pointer is valid while the entry is on the stack: `run_open` pushes it for the span of
    /// the outer `f`, which borrows the transaction; anything that finds it runs on this thread
    /// within that span (a read's `f` cannot keep the transaction past its return), and pops it
    /// on return and on unwind.
    fn open(&self, committed: bool) -> Option<*const StateTxn<'static>> {
        let key = self.key();
        OPEN.with(|o| {
            o.borrow()
                .iter()
                .rev()
                .find(|(k, c, _)| *k == key && *c == committed)
                .map(|(_, _, t)| *t)
        })
    }

    fn run_open<R>(
        &self,
        committed: bool,
        txn: &StateTxn<'_>,
        f: impl FnOnce(&StateTxn<'_>) -> Result<R>,
    ) -> Result<R> {
        struct Pop;
        impl Drop for Pop {
            fn drop(&mut self) {
                OPEN.with(|o| o.borrow_mut().pop());
            }
        }
        let erased = std::ptr::from_ref(txn).cast::<StateTxn<'static>>();
        OPEN.with(|o| o.borrow_mut().push((self.key(), committed, erased)));
        let _pop = Pop;
        f(txn)
    }

    /// Runs `f` over the snapshot pinned after the task's last Kafka commit (see the module
    /// docs): under exactly-once, the state of exactly the committed input. Fails with
    /// [`Error::Store`] when there is none (no commit since the task started or since a map
    /// resize, or pinning is off), when a store is in memory, and once the stores are closed.
    pub fn read_committed<R>(&self, f: impl FnOnce(&StateTxn<'_>) -> Result<R>) -> Result<R> {
        if self.inner.memory.is_some() {
            let names = self.names(|s| s.get_backend() == super::Backend::InMemory);
            return Err(Error::Store(format!(
                "the in-memory stores {names} keep no snapshot: they cannot be read \
                 read-committed (use LMDB stores)"
            )));
        }
        let Some(lmdb) = &self.inner.lmdb else {
            return Err(Error::Store("no stores to read".into()));
        };
        if let Some(open) = self.open(true) {
            // SAFETY: see `open`.
            return f(unsafe { &*open });
        }
        let lmdb = lmdb.upgrade().ok_or_else(|| self.closed())?;
        // As a plain read: a resize (which drops the snapshot) waits for it.
        let _reading = lmdb.enter_read();
        let pinned = lmdb.committed();
        let Some(snapshot) = pinned.as_ref() else {
            return Err(Error::Store(format!(
                "no committed snapshot of the stores {} yet (none since the task started, or \
                 since the map grew): it is pinned at the next commit",
                self.names(|_| true)
            )));
        };
        let txn = StateTxn {
            specs: &self.inner.specs,
            slots: &self.inner.slots,
            lmdb: Some(lmdb.pinned(snapshot)),
            memory: RefCell::new(memory::MemoryTxn::empty()),
            changelog: RefCell::new(Vec::new()),
        };
        let out = self.run_open(true, &txn, f);
        drop(txn);
        out
    }

    fn names(&self, which: impl Fn(&StoreSpec) -> bool) -> String {
        self.inner
            .specs
            .iter()
            .filter(|s| which(s))
            .map(|s| format!("`{}`", s.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether the task's stores are closed (every read fails).
    pub fn is_closed(&self) -> bool {
        let lmdb_gone = self
            .inner
            .lmdb
            .as_ref()
            .is_some_and(|l| l.strong_count() == 0);
        let memory_gone = self
            .inner
            .memory
            .as_ref()
            .is_some_and(|m| m.strong_count() == 0);
        lmdb_gone || memory_gone
    }

    /// The declarations of the stores it reads, in index order.
    pub fn specs(&self) -> &[StoreSpec] {
        &self.inner.specs
    }

    fn closed(&self) -> Error {
        let names = self.names(|_| true);
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
            let mut counts = txn.store::<String, u64>("counts")?;
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
        // Reads done so far by each reader: the writer waits, halfway, until every reader has
        // read at least once, so each reads while batches are written however the threads are
        // scheduled on a loaded machine.
        let started: Arc<[std::sync::atomic::AtomicU64; 2]> = Arc::new(Default::default());
        let readers: Vec<_> = (0..2)
            .map(|n| {
                let reader = reader.clone();
                let stop = Arc::clone(&stop);
                let started = Arc::clone(&started);
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
                        started[n].store(reads, Ordering::SeqCst);
                        if done {
                            return Ok((last, reads));
                        }
                    }
                })
            })
            .collect();
        for i in 1..=BATCHES {
            write_batch(&mut stores, i)?;
            if i == BATCHES / 2 {
                while started.iter().any(|r| r.load(Ordering::SeqCst) == 0) {
                    std::thread::yield_now();
                }
            }
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

    /// A task with an LMDB store and an in-memory store: one read sees one batch on both.
    #[test]
    fn a_read_of_both_backends_sees_one_batch_on_both() -> Result<()> {
        let dir = tempdir()?;
        let specs = vec![
            StoreSpec::new::<String, u64>("disk"),
            StoreSpec::new::<String, u64>("mem").backend(Backend::InMemory),
        ];
        let mut stores = StateStores::open(dir.path(), specs, &LmdbOptions::default())?;
        let reader = stores.reader()?;
        let stop = Arc::new(AtomicBool::new(false));
        let first = Arc::new(AtomicBool::new(false));
        let checker = {
            let stop = Arc::clone(&stop);
            let first = Arc::clone(&first);
            std::thread::spawn(move || -> Result<u64> {
                let mut reads = 0;
                loop {
                    let done = stop.load(Ordering::SeqCst);
                    let (d, m) = reader.read(|txn| {
                        let d = txn.store::<String, u64>("disk")?.get("k")?;
                        let m = txn.store::<String, u64>("mem")?.get("k")?;
                        Ok((d, m))
                    })?;
                    assert_eq!(d, m, "the two backends at different batches");
                    reads += 1;
                    first.store(true, Ordering::SeqCst);
                    if done {
                        return Ok(reads);
                    }
                }
            })
        };
        for i in 1..=300u64 {
            stores.transaction(|txn| {
                txn.store::<String, u64>("disk")?.put(&"k".into(), &i)?;
                txn.store::<String, u64>("mem")?.put(&"k".into(), &i)
            })?;
            // Halfway, until the reader has read once: it reads while batches are written,
            // however the threads are scheduled on a loaded machine.
            while i == 150 && !first.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
        }
        stop.store(true, Ordering::SeqCst);
        let reads = checker.join().expect("the reading thread")?;
        assert!(reads > 1, "{reads}");
        Ok(())
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
    fn a_read_committed_sees_the_snapshot_pinned_at_the_last_commit() -> Result<()> {
        let dir = tempdir()?;
        let mut stores = open(dir.path(), Backend::Lmdb)?;
        let reader = stores.reader()?;
        match reader.read_committed(|_| Ok(())) {
            Err(Error::Store(m)) => assert!(m.contains("no committed snapshot"), "{m}"),
            other => panic!("before a pin: {other:?}"),
        }
        write_batch(&mut stores, 1)?;
        stores.pin_committed()?;
        write_batch(&mut stores, 2)?;
        let committed = |r: &StoreReader| {
            r.read_committed(|txn| {
                let counts = txn.store::<String, u64>("counts")?;
                counts
                    .iter()?
                    .map(|e| e.map(|(_, v)| v))
                    .collect::<Result<Vec<_>>>()
            })
        };
        assert_eq!(committed(&reader)?, vec![1; KEYS], "the pinned batch");
        assert_eq!(read_all(&reader)?, vec![2; KEYS], "the latest batch");
        // From another thread too, and writes are refused.
        let r = reader.clone();
        let seen = std::thread::spawn(move || committed(&r))
            .join()
            .expect("the reading thread")?;
        assert_eq!(seen, vec![1; KEYS]);
        let put =
            reader.read_committed(|txn| txn.store::<String, u64>("counts")?.put(&"k00".into(), &9));
        assert!(matches!(put, Err(Error::Config(_))), "{put:?}");
        stores.pin_committed()?;
        assert_eq!(committed(&reader)?, vec![2; KEYS], "the next pin");
        Ok(())
    }

    #[test]
    fn the_map_grows_while_a_snapshot_is_pinned_and_read_committed_waits_for_the_next_pin()
    -> Result<()> {
        let dir = tempdir()?;
        let options = LmdbOptions {
            initial_map_size: 256 << 10,
            ..LmdbOptions::default()
        };
        let specs = vec![StoreSpec::new::<String, String>("big")];
        let mut stores = StateStores::open(dir.path(), specs, &options)?;
        let reader = stores.reader()?;
        let before = std::fs::metadata(dir.path().join("data.mdb"))
            .map_err(|e| Error::io("stat", e))?
            .len();
        stores.pin_committed()?;
        // Far more than the initial map: it grows (the pinned snapshot is dropped first).
        for batch in 0..16 {
            stores.transaction(|txn| {
                let mut big = txn.store::<String, String>("big")?;
                for i in 0..64 {
                    big.put(&format!("{batch}-{i}"), &"x".repeat(1000))?;
                }
                Ok(())
            })?;
        }
        let after = std::fs::metadata(dir.path().join("data.mdb"))
            .map_err(|e| Error::io("stat", e))?
            .len();
        assert!(after > before, "the map grew: {before} -> {after}");
        assert!(
            matches!(reader.read_committed(|_| Ok(())), Err(Error::Store(_))),
            "the snapshot was dropped for the resize"
        );
        stores.pin_committed()?;
        let n =
            reader.read_committed(|txn| Ok(txn.store::<String, String>("big")?.iter()?.count()))?;
        assert_eq!(n, 16 * 64);
        Ok(())
    }

    #[test]
    fn in_memory_stores_cannot_be_read_committed() -> Result<()> {
        let stores = StateStores::in_memory(vec![StoreSpec::new::<String, u64>("counts")])?;
        stores.pin_committed()?;
        match stores.reader()?.read_committed(|_| Ok(())) {
            Err(Error::Store(m)) => assert!(m.contains("`counts`"), "{m}"),
            other => panic!("{other:?}"),
        }
        Ok(())
    }

    /// Runs `outer` (a read, which signals once it is open, then waits a while and reads again
    /// inside itself) on a thread, and `write` on another once the read is open (the writer then
    /// waits for the read). Fails, rather than hangs, when either does not end within 30 s.
    fn nested_while_a_writer_waits<T: Send + 'static>(
        stores: StateStores,
        outer: impl FnOnce(&mpsc::Sender<()>) -> Result<T> + Send + 'static,
        write: impl FnOnce(&mut StateStores) -> Result<()> + Send + 'static,
    ) -> Result<(StateStores, T)> {
        let wait = Duration::from_secs(30);
        let (open_tx, open_rx) = mpsc::channel();
        let (read_tx, read_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = read_tx.send(outer(&open_tx));
        });
        open_rx
            .recv_timeout(wait)
            .map_err(|e| Error::Internal(format!("the outer read did not open: {e}")))?;
        let (write_tx, write_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut stores = stores;
            let written = write(&mut stores);
            let _ = write_tx.send(written.map(|()| stores));
        });
        let read = read_rx
            .recv_timeout(wait)
            .map_err(|e| Error::Internal(format!("the reads did not end (deadlock): {e}")))??;
        let stores = write_rx
            .recv_timeout(wait)
            .map_err(|e| Error::Internal(format!("the write did not end: {e}")))??;
        Ok((stores, read))
    }

    #[test]
    fn a_read_inside_a_read_of_in_memory_stores_shares_it_while_the_writer_waits() -> Result<()> {
        let dir = tempdir()?;
        let mut stores = open(dir.path(), Backend::InMemory)?;
        write_batch(&mut stores, 1)?;
        let reader = stores.reader()?;
        let (stores, (outer, inner)) = nested_while_a_writer_waits(
            stores,
            move |opened| {
                reader.read(|txn| {
                    let outer = txn.store::<String, u64>("counts")?.get("k00")?;
                    opened
                        .send(())
                        .map_err(|e| Error::Internal(e.to_string()))?;
                    // Long enough for the writer to be waiting for the lock this read holds.
                    std::thread::sleep(Duration::from_millis(200));
                    let inner = reader.read(|t| t.store::<String, u64>("counts")?.get("k00"))?;
                    Ok((outer, inner))
                })
            },
            |stores| write_batch(stores, 2),
        )?;
        assert_eq!((outer, inner), (Some(1), Some(1)), "one snapshot");
        assert_eq!(read_all(&stores.reader()?)?, vec![2; KEYS]);
        Ok(())
    }

    #[test]
    fn reads_nested_in_a_read_committed_never_wait_for_a_resize_waiting_for_it() -> Result<()> {
        let dir = tempdir()?;
        let options = LmdbOptions {
            initial_map_size: 64 << 10,
            ..LmdbOptions::default()
        };
        let specs = vec![StoreSpec::new::<String, String>("big")];
        let mut stores = StateStores::open(dir.path(), specs, &options)?;
        stores.transaction(|txn| {
            txn.store::<String, String>("big")?
                .put(&"a".into(), &"1".into())
        })?;
        stores.pin_committed()?;
        let reader = stores.reader()?;
        let (stores, seen) = nested_while_a_writer_waits(
            stores,
            move |opened| {
                reader.read_committed(|txn| {
                    let committed = txn.store::<String, String>("big")?.get("a")?;
                    opened
                        .send(())
                        .map_err(|e| Error::Internal(e.to_string()))?;
                    // The writer meets MDB_MAP_FULL and waits for this read to resize.
                    std::thread::sleep(Duration::from_millis(200));
                    let plain = reader.read(|t| t.store::<String, String>("big")?.get("a"))?;
                    let again =
                        reader.read_committed(|t| t.store::<String, String>("big")?.get("a"))?;
                    Ok((committed, plain, again))
                })
            },
            |stores| {
                // Far more than the map: it must grow, once the read ends.
                stores.transaction(|txn| {
                    let mut big = txn.store::<String, String>("big")?;
                    for i in 0..400 {
                        big.put(&format!("k{i}"), &"x".repeat(1000))?;
                    }
                    Ok(())
                })
            },
        )?;
        let one = Some("1".to_owned());
        assert_eq!(seen, (one.clone(), one.clone(), one));
        let n = stores
            .reader()?
            .read(|t| Ok(t.store::<String, String>("big")?.iter()?.count()))?;
        assert_eq!(n, 401);
        Ok(())
    }

    #[test]
    fn a_reader_is_send_sync_and_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<StoreReader>();
    }
}
