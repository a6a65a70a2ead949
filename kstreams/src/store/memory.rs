//! The in-memory backend: sorted maps with an undo log, so a transaction that is not committed
//! leaves no trace, exactly as an aborted LMDB transaction.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::error::Result;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Default)]
pub(super) struct MemoryState {
    maps: Vec<Map>,
    meta: Map,
    commits: u64,
}

impl MemoryState {
    pub(super) fn new(count: usize) -> Self {
        MemoryState {
            maps: (0..count).map(|_| Map::new()).collect(),
            meta: Map::new(),
            commits: 0,
        }
    }

    pub(super) fn begin(&mut self) -> MemoryTxn<'_> {
        MemoryTxn {
            state: self,
            undo: Vec::new(),
            committed: false,
        }
    }

    pub(super) fn meta_entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.meta
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub(super) fn commits(&self) -> u64 {
        self.commits
    }
}

/// `None` as the map index means the metadata map.
type Undo = (Option<usize>, Vec<u8>, Option<Vec<u8>>);

#[derive(Debug)]
pub(super) struct MemoryTxn<'s> {
    state: &'s mut MemoryState,
    undo: Vec<Undo>,
    committed: bool,
}

impl MemoryTxn<'_> {
    fn map(&mut self, index: Option<usize>) -> &mut Map {
        match index {
            Some(i) => &mut self.state.maps[i],
            None => &mut self.state.meta,
        }
    }

    pub(super) fn get(&self, index: usize, key: &[u8]) -> Option<&[u8]> {
        self.state.maps[index].get(key).map(Vec::as_slice)
    }

    pub(super) fn put(&mut self, index: usize, key: Vec<u8>, value: Vec<u8>) {
        let old = self.map(Some(index)).insert(key.clone(), value);
        self.undo.push((Some(index), key, old));
    }

    pub(super) fn delete(&mut self, index: usize, key: &[u8]) {
        if let Some(old) = self.map(Some(index)).remove(key) {
            self.undo.push((Some(index), key.to_vec(), Some(old)));
        }
    }

    pub(super) fn put_meta(&mut self, key: Vec<u8>, value: Vec<u8>) {
        let old = self.map(None).insert(key.clone(), value);
        self.undo.push((None, key, old));
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
        for (k, v) in self.state.maps[index]
            .range::<[u8], _>((lower, upper))
            .take(limit)
        {
            f(k, v)?;
        }
        Ok(())
    }

    pub(super) fn commit(mut self) {
        self.committed = true;
        self.state.commits += 1;
    }
}

impl Drop for MemoryTxn<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        while let Some((index, key, old)) = self.undo.pop() {
            let map = self.map(index);
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
