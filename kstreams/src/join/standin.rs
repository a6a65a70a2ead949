//! TEMPORARY STAND-IN (J1): `Context::global_store` / `global_versioned_store` as T-design.md
//! names them, until TT's land on main; deleted then.
#![allow(missing_docs)]

use crate::context::Context;
use crate::error::{Error, Result};
use crate::store::{KeyValueStore, VersionedStore};

impl<K, V> Context<'_, K, V> {
    pub fn global_store<SK: 'static, SV: 'static>(
        &self,
        name: &str,
    ) -> Result<KeyValueStore<'_, SK, SV>> {
        Err(Error::Config(format!("global store `{name}`: stand-in")))
    }
    pub fn global_versioned_store<SK: 'static, SV: 'static>(
        &self,
        name: &str,
    ) -> Result<VersionedStore<'_, SK, SV>> {
        Err(Error::Config(format!("global store `{name}`: stand-in")))
    }
}
