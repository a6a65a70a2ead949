//! (W2) Sliding windows (KIP-450), called by `TimeWindowState::aggregate` for
//! `Windows::Sliding`. This file is W2's; the core's first commit only put the signature here.

use super::{TimeWindowState, Windowed};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::record::Record;

/// Sliding-window aggregation (Kafka Streams' `KStreamSlidingWindowAggregate`): a new window's
/// aggregate is `first(record)`, `add` adds a record to an existing one.
pub(crate) fn aggregate_first<K: Clone + 'static, A: Clone + 'static, V>(
    state: &mut TimeWindowState<'_, K, A>,
    records: &[Record<K, V>],
    out: &mut Context<'_, Windowed<K>, A>,
    first: impl FnMut(&Record<K, V>) -> A,
    add: impl FnMut(&mut A, &Record<K, V>),
) -> Result<()> {
    let _ = (state, records, out, first, add);
    Err(Error::Config("sliding windows: not implemented yet".into()))
}
