//! TEMPORARY STAND-IN (J1) for TS's versioned store API (T-design.md); reverted before merging main.
#![allow(missing_docs, dead_code, missing_debug_implementations)]
use std::marker::PhantomData;

use super::AsKey;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedRecord<V> {
    pub value: V,
    pub timestamp: i64,
    pub valid_to: Option<i64>,
}

pub struct VersionedStore<'t, K, V> {
    _p: PhantomData<(&'t (), K, V)>,
}

fn standin<T>() -> Result<T> {
    Err(Error::Config("versioned store stand-in".into()))
}

impl<K, V> VersionedStore<'_, K, V> {
    pub fn get<Q: AsKey<K> + ?Sized>(&self, _key: &Q) -> Result<Option<VersionedRecord<V>>> {
        standin()
    }
    pub fn get_as_of<Q: AsKey<K> + ?Sized>(
        &self,
        _key: &Q,
        _as_of: i64,
    ) -> Result<Option<VersionedRecord<V>>> {
        standin()
    }
    pub fn get_batch_as_of<Q: AsKey<K>>(
        &self,
        _keys: &[(Q, i64)],
    ) -> Result<Vec<Option<VersionedRecord<V>>>> {
        standin()
    }
}
