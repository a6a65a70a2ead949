//! Joins, with the semantics of Kafka Streams 4.x (docs/joins.md, docs/joins-stream-stream.md).
//!
//! Owns: [`JoinKind`] and the join operators, each join kind in a file of its own: the
//! stream-stream windowed joins (`stream_stream.rs`:
//! [`TopologyBuilder::join_streams`](crate::TopologyBuilder::join_streams) over
//! [`JoinWindows`]), the stream-table joins ([`stream_table`], [`left_stream_table`], with KIP-923's
//! stream-side [`grace`](StreamTableJoin::grace)), the stream-global-table joins
//! ([`stream_global`], [`left_stream_global`]) and the table-table joins
//! ([`TopologyBuilder::join_tables`](crate::TopologyBuilder::join_tables)).
//! Lookup joins are batch-first: one batched read of the table per batch (`get_batch`, or
//! `get_batch_as_of` for a versioned table: the value as of each stream record's timestamp),
//! never one lookup per record unless asked ([`StreamTableJoin::lookup_per_record`], for
//! measurements). May not touch: how tables are materialized (`table`), the stores' layout
//! (`store`) or the task's order of inputs (`task`); the lookup joins read a table through its
//! store handle.

mod stream_stream;
mod stream_table;
mod table_table;

pub use stream_stream::*;
pub use stream_table::*;
// `table_table` adds an inherent `TopologyBuilder::join_tables`.

use crate::store::{StoreHandle, StoreKind, StoreSpec};

/// Which records of a join produce results: both sides matched (inner), every left record
/// (left), or every record of either side (outer), an unmatched one joined with `None`. For a
/// table-table join, the rows of keys on both sides, every left key, or every key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JoinKind {
    /// Only matched pairs.
    Inner,
    /// Matched pairs, and each left record that matched nothing (with `None` for the right).
    Left,
    /// Matched pairs, and each record of either side that matched nothing.
    Outer,
}

/// A table store of keys `K` and values `V`: how bounds name a store's types (implemented for
/// every store handle).
pub trait TableOf<K, V>: StoreHandle<'static, Key = K, Value = V> {}

impl<S, K, V> TableOf<K, V> for S where S: StoreHandle<'static, Key = K, Value = V> {}

/// The key type of a table's store.
pub(crate) type TKey<S> = <S as StoreHandle<'static>>::Key;
/// The value type of a table's store.
pub(crate) type TValue<S> = <S as StoreHandle<'static>>::Value;

/// The history (ms) of a versioned store, `None` for any other kind.
pub(crate) fn versioned_history(spec: &StoreSpec) -> Option<i64> {
    match spec.kind() {
        StoreKind::Versioned { history_ms } => Some(history_ms),
        _ => None,
    }
}
