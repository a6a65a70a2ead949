//! The LMDB backend (heed 0.22): one environment per task, one database per store, plus a metadata
//! database holding the input and changelog positions written in the same transaction as the state.
//!
//! Why heed 0.22 and not 0.23: 0.23's `Database<'env, ..>` borrows its `Env`, which would make a task
//! that owns both its environment and its databases self-referential; 0.22's databases are plain
//! handles. The LMDB file format and the engine are the same.
//!
//! Durability: the environment is opened with `MDB_NOSYNC`, so a batch's commit writes to the OS
//! page cache without an `fsync` (a process crash loses nothing; only a power loss could). The
//! runtime calls [`LmdbState::sync`] (`mdb_env_sync(force)`) before it commits input offsets to
//! Kafka, so a committed offset never outruns durable state.
//!
//! Speed: the environment is opened with `MDB_WRITEMAP`: LMDB writes pages in place in the shared
//! memory map instead of copying them out with `pwrite` at every commit (measured in
//! `benches/lmdb_store.rs`: 3 to 6 times faster puts). The known hazard of a write map is a
//! `SIGBUS` when a page of a sparse file cannot be backed on a full disk; kstreams removes it by
//! reserving the whole map on disk with `posix_fallocate` before LMDB may use it (at open and at
//! every growth), so a full disk is a clear error at growth time, never a crash.
//!
//! Disk use: as the whole map is reserved, the map is kept close to the data rather than doubled:
//! before each batch it grows to the used size plus a quarter (at least the initial size) when
//! less than half of that headroom is free, so the reserve stays within about 1.125 to 1.25 times
//! the used pages plus the initial size; a batch that still meets `MDB_MAP_FULL` grows it by half
//! and runs again. Map sizes are whole system pages (`sysconf(_SC_PAGESIZE)`, heed's rule); the
//! used size counts LMDB's own page size (`mdb_env_stat`).
//!
//! Keys of any size: see `long_keys.rs`.
//!
//! Readers on other threads ([`StoreReader`](super::StoreReader)): the environment is opened
//! without thread-local reader slots (`MDB_NOTLS`, heed's `WithoutTls`), so a read transaction
//! may be opened on any thread, several at once on one thread, and never waits for the writer
//! (LMDB's MVCC: a read sees the last transaction committed when it began). The only thing a
//! read and the writer exclude each other on is a map resize, which LMDB allows only while no
//! transaction of the process is open: reads hold the read side of `LmdbState::readers`, a resize
//! the write side. Growth ahead of need is skipped while reads are open (the map still has room);
//! only a batch that meets `MDB_MAP_FULL` waits for the open reads to end. A thread takes the read
//! side once however many reads it opens of one environment (`Reading`): a read opened inside
//! another never waits for a resize that waits for the outer read. The read-committed
//! snapshot a task may keep pinned between Kafka commits (`LmdbState::committed`) is simply
//! dropped before a resize: read-committed reads then wait for the next commit's snapshot.

use std::cell::RefCell;
use std::fs::{File, TryLockError};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{
    Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard, TryLockError as LockError,
};

use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions, MdbError, RoTxn, RwTxn, WithoutTls};

use super::long_keys;
use crate::error::{Error, Part, Result, SerdeError};

const META_DB: &str = "__kstreams_meta";
const LOCK_FILE: &str = "kstreams.lock";

/// Tuning of the LMDB environments.
#[derive(Debug, Clone)]
pub struct LmdbOptions {
    /// The initial map size in bytes, and the least the map grows by. The map is reserved on disk
    /// as a whole (see the module docs), so this is the least disk a task with LMDB stores takes.
    /// The map grows by itself: ahead of need to its used size plus a quarter (at least this
    /// size), and by half when a batch still fills it up.
    pub initial_map_size: usize,
    /// The largest the map may grow to, in bytes; past it a write fails with a clear error. (A
    /// commit recording how far a full store's changelog reaches may pass it by 256 KiB, so that
    /// the state is used as it is after a restart with a larger maximum.)
    pub max_map_size: usize,
}

impl Default for LmdbOptions {
    fn default() -> Self {
        LmdbOptions {
            initial_map_size: 16 << 20,
            max_map_size: 1 << 40,
        }
    }
}

pub(super) struct LmdbState {
    /// The read snapshot pinned after the last Kafka commit, for read-committed queries (see
    /// `store/reader.rs`); dropped (so the read ends) before any map resize.
    // Field order matters: the snapshot ends before the environment closes, and the environment
    // closes before the lock is released.
    committed: Mutex<Option<RoTxn<'static, WithoutTls>>>,
    env: Env<WithoutTls>,
    dbs: Vec<Database<Bytes, Bytes>>,
    /// The store names, in the order of `dbs`, for errors.
    names: Vec<String>,
    meta: Database<Bytes, Bytes>,
    path: PathBuf,
    /// The stores and the task, for errors.
    what: String,
    max_map_size: usize,
    /// The least the map grows by (the initial map size).
    step: usize,
    /// Set when a resize failed inside LMDB: its map is gone (`mdb_env_set_mapsize` unmaps
    /// before it remaps), so any further use would touch unmapped memory.
    broken: AtomicBool,
    commits: AtomicU64,
    /// Held (read side) by every open read transaction of a [`StoreReader`](super::StoreReader),
    /// and (write side) by a map resize: see the module docs.
    readers: RwLock<()>,
    _lock: File,
}

/// How far past `max_map_size` the commit's bookkeeping may grow a full map
/// ([`LmdbState::grow_for_bookkeeping`]).
pub(super) const BOOKKEEPING_HEADROOM: usize = 256 << 10;

pub(super) fn is_map_full(e: &Error) -> bool {
    matches!(e.lmdb_source(), Some(heed::Error::Mdb(MdbError::MapFull)))
}

/// Allocates disk blocks for the first `size` bytes of the data file, so that LMDB's write map
/// never touches a page the file system cannot back. `what` names the stores and the task, for
/// the error.
fn reserve(path: &Path, size: usize, what: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let len = libc::off_t::try_from(size).map_err(|_| {
        Error::Store(format!(
            "LMDB map size {size} of {what} is too large for this platform"
        ))
    })?;
    // SAFETY: `posix_fallocate` on a file descriptor we own for the duration of the call.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    match rc {
        0 => Ok(()),
        libc::ENOSPC => Err(Error::Store(format!(
            "no disk space left to reserve {size} bytes for the LMDB map of {what} ({}): \
             the batch was not applied; free disk space, then restart (the state on disk is intact)",
            path.display()
        ))),
        libc::EFBIG => Err(Error::Store(format!(
            "the file size limit (RLIMIT_FSIZE, `ulimit -f`) does not allow {size} bytes for the \
             LMDB map of {what} ({}): the batch was not applied; raise the limit, then restart \
             (the state on disk is intact)",
            path.display()
        ))),
        // File systems without fallocate (EOPNOTSUPP, EINVAL): fall back to a sparse file.
        libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
        errno => Err(Error::io(
            format!(
                "reserving {size} bytes for the LMDB map of {what} ({})",
                path.display()
            ),
            std::io::Error::from_raw_os_error(errno),
        )),
    }
}

/// "store `a` of task 1_0" / "stores `a`, `b` of task 1_0": the task is the environment's
/// directory name (`<state dir>/<application id>/<task id>`).
fn describe(dir: &Path, names: &[String]) -> String {
    let stores = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let task = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let s = if names.len() == 1 { "" } else { "s" };
    format!("store{s} {stores} of task {task}")
}

/// The system's page size: map sizes are multiples of it (LMDB's and heed's rule).
fn system_page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: `sysconf` only reads a system constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(page)
            .ok()
            .filter(|p| *p > 0)
            .unwrap_or(4096)
    })
}

/// `size` rounded down to a whole number of pages, at least one page.
fn whole_pages(size: usize) -> usize {
    let page = system_page_size();
    (size / page).max(1) * page
}

impl LmdbState {
    pub(super) fn open(dir: &Path, names: &[String], options: &LmdbOptions) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating state directory {}", dir.display()), e))?;
        let lock = File::create(dir.join(LOCK_FILE))
            .map_err(|e| Error::io(format!("creating lock file in {}", dir.display()), e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::StateDirLocked {
                    path: dir.to_owned(),
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", dir.display()), e));
            }
        }
        let lmdb_err = |source| Error::lmdb(dir, source);
        let map_size = whole_pages(options.initial_map_size);
        let mut opts = EnvOpenOptions::new().read_txn_without_tls();
        opts.map_size(map_size)
            .max_dbs(u32::try_from(names.len() + 1).unwrap_or(u32::MAX));
        // SAFETY: `EnvOpenOptions::open` is unsafe because LMDB's memory map is undefined behaviour
        // if the files are modified behind it. We hold an exclusive lock on `kstreams.lock` in the
        // directory for as long as the environment is open (the lock is released only after the
        // environment is dropped, see the field order of `LmdbState`), so no other kstreams process
        // and no second open in this process can touch these files; we never use MDB_NOLOCK.
        // MDB_NOSYNC only defers fsync to `sync()`; it does not weaken LMDB's consistency.
        let env = unsafe {
            opts.flags(EnvFlags::NO_SYNC | EnvFlags::WRITE_MAP);
            opts.open(dir)
        }
        .map_err(lmdb_err)?;
        let what = describe(dir, names);
        // Reserve the map on disk before the first write transaction (see the module docs).
        reserve(&dir.join("data.mdb"), env.info().map_size, &what)?;
        let mut wtxn = env.write_txn().map_err(lmdb_err)?;
        let mut dbs = Vec::with_capacity(names.len());
        for name in names {
            dbs.push(
                env.create_database::<Bytes, Bytes>(&mut wtxn, Some(name))
                    .map_err(lmdb_err)?,
            );
        }
        let meta = env
            .create_database::<Bytes, Bytes>(&mut wtxn, Some(META_DB))
            .map_err(lmdb_err)?;
        wtxn.commit().map_err(lmdb_err)?;
        Ok(LmdbState {
            committed: Mutex::new(None),
            env,
            dbs,
            names: names.to_vec(),
            meta,
            path: dir.to_owned(),
            what,
            max_map_size: options.max_map_size,
            step: whole_pages(options.initial_map_size),
            broken: AtomicBool::new(false),
            commits: AtomicU64::new(0),
            readers: RwLock::new(()),
            _lock: lock,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: heed::Error) -> Error {
        Error::lmdb(&self.path, source)
    }

    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Bytes of the map in use: up to the last page LMDB has written (freed pages below it are
    /// reused before the map is extended).
    fn used(&self) -> usize {
        let pages = self.env.info().last_page_number.saturating_add(1);
        pages.saturating_mul(self.env.stat().page_size as usize)
    }

    /// The free map space kept ahead of the next batch: a quarter of the used size, at least the
    /// initial map size.
    fn headroom(&self, used: usize) -> usize {
        (used / 4).max(self.step)
    }

    /// Grows the map when less than half of the wanted headroom is free, to the used size plus
    /// the headroom (see the module docs: the map is all reserved on disk, so it is kept at
    /// 1.125 to 1.25 times the used size, plus at least the initial size, instead of doubling).
    /// Most batches so never meet `MDB_MAP_FULL`. Called with no transaction open. A map already
    /// at its maximum is left alone: writes that still fit must go on (only a real
    /// `MDB_MAP_FULL` is an error).
    pub(super) fn grow_if_needed(&self) -> Result<()> {
        self.check_usable()?;
        let map_size = self.env.info().map_size;
        let used = self.used();
        let headroom = self.headroom(used);
        if map_size.saturating_sub(used) < headroom / 2 && map_size < self.max_map_size {
            // Reads open on other threads: grow at a later batch rather than wait for them.
            let _no_reads = match self.readers.try_write() {
                Ok(g) => g,
                Err(LockError::Poisoned(p)) => p.into_inner(),
                Err(LockError::WouldBlock) => return Ok(()),
            };
            self.unpin_committed();
            self.grow_to(used.saturating_add(headroom))?;
        }
        Ok(())
    }

    /// Grows the map after a batch met `MDB_MAP_FULL`: by half, at least by the initial size.
    /// Called with no transaction open.
    pub(super) fn grow(&self) -> Result<()> {
        self.check_usable()?;
        let current = self.env.info().map_size;
        if current >= self.max_map_size {
            if self.committed().is_some() {
                // The snapshot pinned for read-committed queries keeps LMDB from reusing the
                // pages freed since it was taken: drop it, and try once more before calling the
                // map full.
                let _no_reads = self.readers.write().unwrap_or_else(PoisonError::into_inner);
                self.unpin_committed();
                return Ok(());
            }
            return Err(Error::Store(format!(
                "the LMDB map of {} ({}) is full at its maximum size of {} bytes \
                 (LmdbOptions::max_map_size, set with AppConfig::lmdb): the batch was not applied; \
                 raise the maximum, then restart (the state on disk is intact)",
                self.what,
                self.path.display(),
                self.max_map_size
            )));
        }
        let _no_reads = self.readers.write().unwrap_or_else(PoisonError::into_inner);
        self.unpin_committed();
        self.grow_to(current.saturating_add((current / 2).max(self.step)))
    }

    /// [`grow`](Self::grow) for the commit's own bookkeeping (the changelog positions it records):
    /// a map at its maximum may pass it by [`BOOKKEEPING_HEADROOM`], so that the state a store
    /// that filled up leaves behind still records how far its changelog reaches, and a restart
    /// uses that state as it is instead of restoring it again. Batches stay refused once the
    /// maximum is reached (`grow`).
    pub(super) fn grow_for_bookkeeping(&self) -> Result<()> {
        self.check_usable()?;
        let current = self.env.info().map_size;
        let limit = self.max_map_size.saturating_add(BOOKKEEPING_HEADROOM);
        if current < self.max_map_size || current >= limit {
            return self.grow();
        }
        let _no_reads = self.readers.write().unwrap_or_else(PoisonError::into_inner);
        self.unpin_committed();
        self.grow_to_within(limit, limit)
    }

    /// Reserves, then maps `target` bytes (at most the maximum, in whole pages). Called with no
    /// transaction open: no write transaction, and no read (the caller holds `readers`' write
    /// side).
    fn grow_to(&self, target: usize) -> Result<()> {
        self.grow_to_within(target, self.max_map_size)
    }

    fn grow_to_within(&self, target: usize, cap: usize) -> Result<()> {
        let current = self.env.info().map_size;
        let new_size = whole_pages(target.min(cap));
        if new_size <= current {
            return Ok(());
        }
        tracing::debug!(path = %self.path.display(), from = current, to = new_size, "growing LMDB map");
        reserve(&self.path.join("data.mdb"), new_size, &self.what)?;
        // SAFETY: `mdb_env_set_mapsize` may be called on an open environment when no transaction
        // is active in this process. `StateStores` owns the only handle to this environment and
        // calls `grow` only between transactions (`&mut self` in `StateStores::transaction`, with
        // the previous `StateTxn` dropped); read transactions are local to `read_meta` (same
        // thread, so not open now) or belong to readers, which hold `readers`' read side while
        // one is open, and our callers hold its write side.
        unsafe { self.env.resize(new_size) }.map_err(|e| {
            // LMDB unmapped the old map before it failed to map the new one.
            self.broken.store(true, Ordering::Relaxed);
            self.err(e)
        })
    }

    fn check_usable(&self) -> Result<()> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(Error::Store(format!(
                "the LMDB environment of {} ({}) cannot be used after a failed resize: restart \
                 (the state on disk is intact)",
                self.what,
                self.path.display()
            )));
        }
        Ok(())
    }

    pub(super) fn begin(&self) -> Result<LmdbTxn<'_>> {
        self.check_usable()?;
        let txn = self.env.write_txn().map_err(|e| self.err(e))?;
        Ok(LmdbTxn {
            state: self,
            txn: RefCell::new(Txn::Write(txn)),
            _reading: None,
        })
    }

    /// Holds off resizes while a read of this thread is open (see the module docs).
    pub(super) fn enter_read(&self) -> Reading<'_> {
        let key = std::ptr::from_ref(self) as usize;
        let held = GATES.with(|g| g.borrow().contains(&key));
        let guard = if held {
            None
        } else {
            Some(self.readers.read().unwrap_or_else(PoisonError::into_inner))
        };
        GATES.with(|g| g.borrow_mut().push(key));
        Reading { key, _guard: guard }
    }

    /// Pins a read snapshot of the state as it is now (right after a Kafka commit), replacing
    /// the one pinned before.
    pub(super) fn pin_committed(&self) -> Result<()> {
        self.check_usable()?;
        let txn = self
            .env
            .clone()
            .static_read_txn()
            .map_err(|e| self.err(e))?;
        let old = self.committed().replace(txn);
        drop(old);
        Ok(())
    }

    /// Ends the pinned snapshot (before a resize, which LMDB allows only with no read open).
    fn unpin_committed(&self) {
        let old = self.committed().take();
        drop(old);
    }

    /// The pinned snapshot; held while a read-committed read uses it.
    pub(super) fn committed(&self) -> MutexGuard<'_, Option<RoTxn<'static, WithoutTls>>> {
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A read-only transaction over the pinned snapshot `pinned` (from [`committed`]).
    pub(super) fn pinned<'s>(&'s self, pinned: &'s RoTxn<'static, WithoutTls>) -> LmdbTxn<'s> {
        LmdbTxn {
            state: self,
            txn: RefCell::new(Txn::Pinned(pinned)),
            _reading: None,
        }
    }

    /// A read-only transaction, for a reader on any thread (see the module docs).
    pub(super) fn begin_read(&self) -> Result<LmdbTxn<'_>> {
        let reading = self.enter_read();
        self.check_usable()?;
        let txn = self.env.read_txn().map_err(|e| self.err(e))?;
        Ok(LmdbTxn {
            state: self,
            txn: RefCell::new(Txn::Read(txn)),
            _reading: Some(reading),
        })
    }

    pub(super) fn read_meta(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.check_usable()?;
        let rtxn = self.env.read_txn().map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in self.meta.iter(&rtxn).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    pub(super) fn sync(&self) -> Result<()> {
        self.check_usable()?;
        self.env.force_sync().map_err(|e| self.err(e))
    }
}

impl Drop for LmdbState {
    fn drop(&mut self) {
        if self.broken.load(Ordering::Relaxed) {
            // `mdb_env_close` would `munmap` the stale address of the lost map, which by now may
            // belong to another mapping (another task's map): leak the environment instead.
            std::mem::forget(self.env.clone());
        }
    }
}

/// Sorts a group of long keys sharing a prefix by real key and passes those within the bounds to
/// `f`, while `left` allows.
fn flush_group(
    group: &mut Vec<(Vec<u8>, &[u8])>,
    left: &mut usize,
    in_bounds: &dyn Fn(&[u8]) -> bool,
    f: &mut dyn FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<()> {
    group.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in group.drain(..) {
        if *left > 0 && in_bounds(&k) {
            f(&k, v)?;
            *left -= 1;
        }
    }
    Ok(())
}

thread_local! {
    /// The environments (by address) whose `readers` read side this thread holds, once per
    /// open [`Reading`].
    static GATES: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// An open read of this thread: the first of an environment holds the read side of its
/// `readers` lock, the others nested in it count on it (a second `read()` of a `RwLock` on one
/// thread would wait for a writer that waits for the first).
pub(super) struct Reading<'s> {
    key: usize,
    _guard: Option<RwLockReadGuard<'s, ()>>,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        GATES.with(|g| {
            let mut g = g.borrow_mut();
            if let Some(i) = g.iter().rposition(|k| *k == self.key) {
                g.remove(i);
            }
        });
    }
}

pub(super) struct LmdbTxn<'s> {
    state: &'s LmdbState,
    // Field order matters: the transaction ends before `readers` is released.
    txn: RefCell<Txn<'s>>,
    _reading: Option<Reading<'s>>,
}

/// A task's write transaction, a reader's read transaction, or the pinned committed snapshot.
enum Txn<'s> {
    Write(RwTxn<'s>),
    Read(RoTxn<'s, WithoutTls>),
    Pinned(&'s RoTxn<'s, WithoutTls>),
}

impl<'s> Txn<'s> {
    fn ro(&self) -> &RoTxn<'s, WithoutTls> {
        match self {
            Txn::Write(w) => w,
            Txn::Read(r) => r,
            Txn::Pinned(r) => r,
        }
    }
}

impl<'s> LmdbTxn<'s> {
    fn db(&self, index: usize) -> Result<Database<Bytes, Bytes>> {
        self.state
            .dbs
            .get(index)
            .copied()
            .ok_or_else(|| Error::Internal(format!("LMDB store index {index} out of range")))
    }

    fn busy(&self) -> Error {
        Error::Store(
            "a store was written while one of its iterators was reading it in the same call"
                .to_owned(),
        )
    }

    /// The error for a stored long-key entry that does not belong to its key (damaged data).
    fn corrupt_long_key(&self, index: usize, len: Option<usize>) -> Error {
        let key = match len {
            Some(len) => format!("a key of {len} bytes"),
            None => "a long key".to_owned(),
        };
        Error::StoreCorrupt {
            store: self.state.names.get(index).cloned().unwrap_or_default(),
            part: Part::Key,
            source: SerdeError::new(format!(
                "the entry stored for {key} (kept under a prefix and a hash) does not hold \
                 that key: the LMDB data is damaged"
            )),
        }
    }

    pub(super) fn get(
        &self,
        index: usize,
        key: &[u8],
        f: &mut dyn FnMut(Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        let db = self.db(index)?;
        let txn = self.txn.try_borrow().map_err(|_| self.busy())?;
        let value = db
            .get(txn.ro(), &long_keys::encode(key))
            .map_err(|e| self.state.err(e))?;
        match value {
            Some(v) if long_keys::is_long(key) => match long_keys::value_for(key, v) {
                Some(v) => f(Some(v)),
                None => Err(self.corrupt_long_key(index, Some(key.len()))),
            },
            value => f(value),
        }
    }

    /// Fails when the stored entry of a long key holds another key (see [`long_keys`]): a write
    /// must never replace or remove another key's entry.
    fn check_long_key(
        &self,
        index: usize,
        txn: &RwTxn<'_>,
        db: Database<Bytes, Bytes>,
        key: &[u8],
        stored: &[u8],
    ) -> Result<()> {
        if long_keys::is_long(key)
            && let Some(v) = db.get(txn, stored).map_err(|e| self.state.err(e))?
            && long_keys::value_for(key, v).is_none()
        {
            return Err(self.corrupt_long_key(index, Some(key.len())));
        }
        Ok(())
    }

    /// The write transaction, mutably; a reader's transaction cannot write (`StateTxn` refuses
    /// writes of read-only transactions before they get here).
    fn writable<'a>(&self, txn: &'a mut Txn<'s>) -> Result<&'a mut RwTxn<'s>> {
        match txn {
            Txn::Write(w) => Ok(w),
            Txn::Read(_) | Txn::Pinned(_) => Err(Error::Internal(format!(
                "a write through a read-only transaction of {}",
                self.state.what
            ))),
        }
    }

    pub(super) fn put(&self, index: usize, key: &[u8], value: &[u8]) -> Result<()> {
        let db = self.db(index)?;
        let mut guard = self.txn.try_borrow_mut().map_err(|_| self.busy())?;
        let txn = self.writable(&mut guard)?;
        let stored = long_keys::encode(key);
        if long_keys::is_long(key) {
            self.check_long_key(index, txn, db, key, &stored)?;
            let wrapped = long_keys::wrap_value(key, value);
            db.put(txn, &stored, &wrapped)
        } else {
            db.put(txn, &stored, value)
        }
        .map_err(|e| self.state.err(e))
    }

    pub(super) fn delete(&self, index: usize, key: &[u8]) -> Result<()> {
        let db = self.db(index)?;
        let mut guard = self.txn.try_borrow_mut().map_err(|_| self.busy())?;
        let txn = self.writable(&mut guard)?;
        let stored = long_keys::encode(key);
        self.check_long_key(index, txn, db, key, &stored)?;
        db.delete(txn, &stored)
            .map(|_| ())
            .map_err(|e| self.state.err(e))
    }

    pub(super) fn put_meta(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut guard = self.txn.try_borrow_mut().map_err(|_| self.busy())?;
        let txn = self.writable(&mut guard)?;
        self.state
            .meta
            .put(txn, key, value)
            .map_err(|e| self.state.err(e))
    }

    /// Calls `f` on up to `limit` entries whose real keys lie within the bounds, in real key
    /// order. Bounds and keys are real keys; long keys are found through their stored form, and a
    /// group of long keys sharing a prefix (stored in hash order) is sorted by real key first.
    pub(super) fn scan(
        &self,
        index: usize,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
        f: &mut dyn FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let db = self.db(index)?;
        let guard = self.txn.try_borrow().map_err(|_| self.busy())?;
        let txn = guard.ro();
        // A long bound starts (or ends) the scan at its group, whose entries are filtered below.
        // LMDB takes no empty key, not even as a bound: every key is at least the empty one, and
        // an upper bound of the empty key leaves only the empty key (read apart, below).
        let stored_lower = match lower {
            Bound::Included([]) | Bound::Excluded([]) => Bound::Unbounded,
            Bound::Included(k) | Bound::Excluded(k) if long_keys::is_long(k) => {
                Bound::Included(long_keys::group_start(k))
            }
            Bound::Included(k) => Bound::Included(k.to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let stored_upper = match upper {
            Bound::Included(k) | Bound::Excluded(k) if long_keys::is_long(k) => {
                Bound::Included(long_keys::group_end(k))
            }
            Bound::Included(k) => Bound::Included(k.to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let in_bounds = |k: &[u8]| std::ops::RangeBounds::<[u8]>::contains(&(lower, upper), k);
        let mut left = limit;
        // The empty key is stored out of its place (see `long_keys`): it comes first.
        if left > 0
            && in_bounds(&[])
            && let Some(v) = db
                .get(txn, &long_keys::EMPTY_STORED)
                .map_err(|e| self.state.err(e))?
        {
            f(&[], v)?;
            left -= 1;
        }
        if matches!(upper, Bound::Included([]) | Bound::Excluded([])) {
            return Ok(());
        }
        let range = db
            .range(
                txn,
                &(
                    stored_lower.as_ref().map(Vec::as_slice),
                    stored_upper.as_ref().map(Vec::as_slice),
                ),
            )
            .map_err(|e| self.state.err(e))?;
        // The long keys of the current group (one stored prefix), with their values.
        let mut group: Vec<(Vec<u8>, &[u8])> = Vec::new();
        for item in range {
            if left == 0 {
                break;
            }
            let (k, v) = item.map_err(|e| self.state.err(e))?;
            if long_keys::is_empty_stored(k) {
                continue;
            }
            if long_keys::is_encoded(k) {
                let (real, value) =
                    long_keys::decode(k, v).ok_or_else(|| self.corrupt_long_key(index, None))?;
                if group
                    .first()
                    .is_some_and(|(g, _)| g[..long_keys::MAX_RAW] != real[..long_keys::MAX_RAW])
                {
                    flush_group(&mut group, &mut left, &in_bounds, f)?;
                }
                group.push((real, value));
            } else {
                flush_group(&mut group, &mut left, &in_bounds, f)?;
                if left > 0 && in_bounds(k) {
                    f(k, v)?;
                    left -= 1;
                }
            }
        }
        flush_group(&mut group, &mut left, &in_bounds, f)
    }

    pub(super) fn commit(self) -> Result<()> {
        match self.txn.into_inner() {
            Txn::Write(w) => w.commit().map_err(|e| self.state.err(e))?,
            // A read has nothing to commit: it ends, and is not counted.
            Txn::Read(_) | Txn::Pinned(_) => return Ok(()),
        }
        self.state.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_holding_another_long_key_is_an_error_never_its_value() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let state = LmdbState::open(dir.path(), &["s".to_owned()], &LmdbOptions::default())?;
        let txn = state.begin()?;
        let a = vec![1u8; 600];
        let mut b = a.clone();
        b[599] = 2;
        txn.put(0, &a, b"value of a")?;
        // What a hash collision (or damage) would leave: `b`'s stored key holding `a`'s entry.
        {
            let mut t = txn.txn.borrow_mut();
            let Txn::Write(t) = &mut *t else {
                panic!("a write transaction");
            };
            state.dbs[0]
                .put(
                    t,
                    &long_keys::encode(&b),
                    &long_keys::wrap_value(&a, b"value of a"),
                )
                .map_err(|e| state.err(e))?;
        }
        let is_corrupt =
            |r: Result<()>| matches!(r, Err(Error::StoreCorrupt { ref store, .. }) if store == "s");
        assert!(is_corrupt(txn.get(0, &b, &mut |_| Ok(()))), "get");
        assert!(is_corrupt(txn.put(0, &b, b"value of b")), "put");
        assert!(is_corrupt(txn.delete(0, &b)), "delete");
        let scanned = txn.scan(
            0,
            Bound::Unbounded,
            Bound::Unbounded,
            10,
            &mut |_, _| Ok(()),
        );
        assert!(is_corrupt(scanned), "scan");
        // `a` itself is untouched.
        let mut got = None;
        txn.get(0, &a, &mut |v| {
            got = v.map(<[u8]>::to_vec);
            Ok(())
        })?;
        assert_eq!(got.as_deref(), Some(&b"value of a"[..]));
        Ok(())
    }

    #[test]
    fn map_sizes_are_whole_system_pages() {
        let page = system_page_size();
        assert!(page.is_power_of_two(), "{page}");
        assert_eq!(whole_pages(page + 1), page);
        assert_eq!(whole_pages(1), page);
        assert_eq!(whole_pages(16 << 20) % page, 0);
    }
}
