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

use std::cell::RefCell;
use std::fs::{File, TryLockError};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions, MdbError, RwTxn, WithoutTls};

use crate::error::{Error, Result};

const META_DB: &str = "__kstreams_meta";
const LOCK_FILE: &str = "kstreams.lock";

/// Tuning of the LMDB environments.
#[derive(Debug, Clone)]
pub struct LmdbOptions {
    /// The initial map size in bytes (virtual address space; the file grows only as data is written).
    /// The map doubles by itself when it fills up.
    pub initial_map_size: usize,
    /// The largest the map may grow to, in bytes; past it a write fails with a clear error.
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
    // Field order matters: the environment closes before the lock is released.
    env: Env<WithoutTls>,
    dbs: Vec<Database<Bytes, Bytes>>,
    meta: Database<Bytes, Bytes>,
    path: PathBuf,
    /// The stores and the task, for errors.
    what: String,
    max_map_size: usize,
    /// Set when a resize failed inside LMDB: its map is gone (`mdb_env_set_mapsize` unmaps
    /// before it remaps), so any further use would touch unmapped memory.
    broken: AtomicBool,
    commits: AtomicU64,
    _lock: File,
}

pub(super) fn is_map_full(e: &Error) -> bool {
    matches!(
        e,
        Error::Lmdb {
            source: heed::Error::Mdb(MdbError::MapFull),
            ..
        }
    )
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

fn page_size() -> usize {
    4096
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
        let lmdb_err = |source| Error::Lmdb {
            path: dir.to_owned(),
            source,
        };
        let map_size = options.initial_map_size.max(page_size()) / page_size() * page_size();
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
            env,
            dbs,
            meta,
            path: dir.to_owned(),
            what,
            max_map_size: options.max_map_size,
            broken: AtomicBool::new(false),
            commits: AtomicU64::new(0),
            _lock: lock,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: heed::Error) -> Error {
        Error::Lmdb {
            path: self.path.clone(),
            source,
        }
    }

    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Grows the map when more than half of it is in use, so that most batches never meet
    /// `MDB_MAP_FULL`. Called with no transaction open. A map already at its maximum is left
    /// alone: writes that still fit must go on (only a real `MDB_MAP_FULL` is an error).
    pub(super) fn grow_if_needed(&self) -> Result<()> {
        self.check_usable()?;
        let info = self.env.info();
        let used = (info.last_page_number + 1) * page_size();
        if used * 2 > info.map_size && info.map_size < self.max_map_size {
            self.grow()?;
        }
        Ok(())
    }

    /// Doubles the map. Called with no transaction open.
    pub(super) fn grow(&self) -> Result<()> {
        self.check_usable()?;
        let current = self.env.info().map_size;
        if current >= self.max_map_size {
            return Err(Error::Store(format!(
                "the LMDB map of {} ({}) is full at its maximum size of {} bytes \
                 (LmdbOptions::max_map_size, set with AppConfig::lmdb): the batch was not applied; \
                 raise the maximum, then restart (the state on disk is intact)",
                self.what,
                self.path.display(),
                self.max_map_size
            )));
        }
        let new_size =
            (current.saturating_mul(2)).min(self.max_map_size) / page_size() * page_size();
        tracing::debug!(path = %self.path.display(), from = current, to = new_size, "growing LMDB map");
        reserve(&self.path.join("data.mdb"), new_size, &self.what)?;
        // SAFETY: `mdb_env_set_mapsize` may be called on an open environment when no transaction
        // is active in this process. `StateStores` owns the only handle to this environment and
        // calls `grow` only between transactions (`&mut self` in `StateStores::transaction`, with
        // the previous `StateTxn` dropped); read transactions are local to `read_meta`.
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
            txn: RefCell::new(txn),
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

pub(super) struct LmdbTxn<'s> {
    state: &'s LmdbState,
    txn: RefCell<RwTxn<'s>>,
}

impl LmdbTxn<'_> {
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

    pub(super) fn get(
        &self,
        index: usize,
        key: &[u8],
        f: &mut dyn FnMut(Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        let db = self.db(index)?;
        let txn = self.txn.try_borrow().map_err(|_| self.busy())?;
        let value = db.get(&txn, key).map_err(|e| self.state.err(e))?;
        f(value)
    }

    pub(super) fn put(&self, index: usize, key: &[u8], value: &[u8]) -> Result<()> {
        let db = self.db(index)?;
        let mut txn = self.txn.try_borrow_mut().map_err(|_| self.busy())?;
        db.put(&mut txn, key, value).map_err(|e| self.state.err(e))
    }

    pub(super) fn delete(&self, index: usize, key: &[u8]) -> Result<()> {
        let db = self.db(index)?;
        let mut txn = self.txn.try_borrow_mut().map_err(|_| self.busy())?;
        db.delete(&mut txn, key)
            .map(|_| ())
            .map_err(|e| self.state.err(e))
    }

    pub(super) fn put_meta(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut txn = self.txn.try_borrow_mut().map_err(|_| self.busy())?;
        self.state
            .meta
            .put(&mut txn, key, value)
            .map_err(|e| self.state.err(e))
    }

    pub(super) fn scan(
        &self,
        index: usize,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
        f: &mut dyn FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let db = self.db(index)?;
        let txn = self.txn.try_borrow().map_err(|_| self.busy())?;
        let range = db
            .range(&txn, &(lower, upper))
            .map_err(|e| self.state.err(e))?;
        for item in range.take(limit) {
            let (k, v) = item.map_err(|e| self.state.err(e))?;
            f(k, v)?;
        }
        Ok(())
    }

    pub(super) fn commit(self) -> Result<()> {
        self.txn
            .into_inner()
            .commit()
            .map_err(|e| self.state.err(e))?;
        self.state.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
