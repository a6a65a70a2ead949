//! Joins: stream-stream (windowed), and the kinds every join shares.
//!
//! Owns: [`JoinKind`] and the join operators; each join kind lives in a file of its own
//! (`stream_stream.rs`: [`TopologyBuilder::join_streams`](crate::TopologyBuilder::join_streams)
//! over [`JoinWindows`]). It may not touch the stores' layout (`store`) or the task's order of
//! inputs (`task`).

mod stream_stream;
pub use stream_stream::*;

/// Which records of a join produce results: both sides matched (inner), every left record
/// (left), or every record of either side (outer), an unmatched one joined with `None`.
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
