//! The in-memory backend: sorted maps with an undo log, so a transaction that is not committed
//! leaves no trace, exactly as an aborted LMDB transaction.
//!
//! Readers on other threads ([`StoreReader`](super::StoreReader)) share the maps behind a
//! read-write lock: a write transaction holds the write side from its start to its commit (or
//! abort), a read holds the read side, so a reader only ever sees whole transactions. Unlike
//! LMDB's snapshots, a read open on an in-memory store delays the next write transaction of its
//! task until the read ends (keep such reads short).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use crate::error::{Error, Result};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// The maps of one task's in-memory stores, shared with its readers.
#[derive(Debug, Default)]
pub(super) struct Maps {
    maps: Vec<Map>,
    meta: Map,
    commits: u64,
}

#[derive(Debug, Default)]
pub(super) struct MemoryState {
    shared: Arc<RwLock<Maps>>,
}

impl MemoryState {
    pub(super) fn new(count: usize) -> Self {
        MemoryState {
            shared: Arc::new(RwLock::new(Maps {
                maps: (0..count).map(|_| Map::new()).collect(),
                meta: Map::new(),
                commits: 0,
            })),
        }
    }

    /// A write transaction. A panic while one was open poisons the lock, but its undo log has
    /// rolled the maps back by then (see `Drop`), so the maps are whole and the poison is ignored.
    pub(super) fn begin(&mut self) -> MemoryTxn<'_> {
        MemoryTxn {
            maps: Guard::Write(self.shared.write().unwrap_or_else(PoisonError::into_inner)),
            undo: Vec::new(),
            committed: false,
        }
    }

    fn lock(&self) -> RwLockReadGuard<'_, Maps> {
        self.shared.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn meta_entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.lock()
            .meta
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub(super) fn commits(&self) -> u64 {
        self.lock().commits
    }

    /// Whether the task has in-memory stores (readers of a task without any take no lock).
    pub(super) fn is_empty(&self) -> bool {
        self.lock().maps.is_empty()
    }

    /// The maps, for readers on other threads: gone once the task's stores are closed.
    pub(super) fn shared(&self) -> Weak<RwLock<Maps>> {
        Arc::downgrade(&self.shared)
    }
}

#[derive(Debug)]
enum Guard<'s> {
    Write(RwLockWriteGuard<'s, Maps>),
    Read(RwLockReadGuard<'s, Maps>),
    /// A reader of a task without in-memory stores: nothing to lock.
    Empty,
}

static NO_MAPS: Maps = Maps {
    maps: Vec::new(),
    meta: Map::new(),
    commits: 0,
};

/// `None` as the map index means the metadata map.
type Undo = (Option<usize>, Vec<u8>, Option<Vec<u8>>);

#[derive(Debug)]
pub(super) struct MemoryTxn<'s> {
    maps: Guard<'s>,
    undo: Vec<Undo>,
    committed: bool,
}

impl<'s> MemoryTxn<'s> {
    /// A read-only transaction over shared maps: holds the read side of their lock until dropped.
    pub(super) fn read(shared: &'s RwLock<Maps>) -> Self {
        MemoryTxn {
            maps: Guard::Read(shared.read().unwrap_or_else(PoisonError::into_inner)),
            undo: Vec::new(),
            committed: false,
        }
    }

    /// A read-only transaction of a task without in-memory stores.
    pub(super) fn empty() -> Self {
        MemoryTxn {
            maps: Guard::Empty,
            undo: Vec::new(),
            committed: false,
        }
    }

    /// Whether this transaction only reads (a reader's).
    pub(super) fn is_read_only(&self) -> bool {
        !matches!(self.maps, Guard::Write(_))
    }

    fn maps(&self) -> &Maps {
        match &self.maps {
            Guard::Write(m) => m,
            Guard::Read(m) => m,
            Guard::Empty => &NO_MAPS,
        }
    }

    fn map(&mut self, index: Option<usize>) -> Result<&mut Map> {
        let Guard::Write(maps) = &mut self.maps else {
            return Err(Error::Internal(
                "a write through a read-only in-memory transaction".into(),
            ));
        };
        Ok(match index {
            Some(i) => &mut maps.maps[i],
            None => &mut maps.meta,
        })
    }

    pub(super) fn get(&self, index: usize, key: &[u8]) -> Option<&[u8]> {
        self.maps().maps[index].get(key).map(Vec::as_slice)
    }

    pub(super) fn put(&mut self, index: usize, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        let old = self.map(Some(index))?.insert(key.clone(), value);
        self.undo.push((Some(index), key, old));
        Ok(())
    }

    pub(super) fn delete(&mut self, index: usize, key: &[u8]) -> Result<()> {
        if let Some(old) = self.map(Some(index))?.remove(key) {
            self.undo.push((Some(index), key.to_vec(), Some(old)));
        }
        Ok(())
    }

    pub(super) fn put_meta(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        let old = self.map(None)?.insert(key.clone(), value);
        self.undo.push((None, key, old));
        Ok(())
    }

    pub(super) fn scan(
        &self,
        index: usize,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
        f: &mut dyn FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        if let (Bound::Included(l) | Bound::Excluded(l), Bound::Included(u) | Bound::Excluded(u)) =
            (lower, upper)
        {
            // BTreeMap::range panics on an inverted or empty-excluded range; such a range is empty.
            let empty_exclusive = l == u
                && (matches!(lower, Bound::Excluded(_)) || matches!(upper, Bound::Excluded(_)));
            if l > u || empty_exclusive {
                return Ok(());
            }
        }
        for (k, v) in self.maps().maps[index]
            .range::<[u8], _>((lower, upper))
            .take(limit)
        {
            f(k, v)?;
        }
        Ok(())
    }

    pub(super) fn commit(mut self) {
        self.committed = true;
        if let Guard::Write(maps) = &mut self.maps {
            maps.commits += 1;
        }
    }
}

impl Drop for MemoryTxn<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        while let Some((index, key, old)) = self.undo.pop() {
            // The undo log only holds writes, so the transaction is a write transaction.
            let Ok(map) = self.map(index) else {
                return;
            };
            match old {
                Some(v) => {
                    map.insert(key, v);
                }
                None => {
                    map.remove(&key);
                }
            }
        }
    }
}
