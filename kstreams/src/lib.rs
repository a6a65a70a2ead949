//! kstreams: batch-first, compile-time checked Kafka stream processing with LMDB state.
#![warn(missing_docs)]

pub mod context;
pub mod error;
pub mod partitioner;
pub mod processor;
pub mod record;
pub mod serde;
pub mod store;
pub mod task;
pub mod testing;
pub mod topology;

pub use context::{Context, InitContext, Punctuation, PunctuationType};
pub use error::{Error, Result};
pub use processor::{BatchProcessor, PerRecord, Processor, SliceOfOne};
pub use record::{Headers, Origin, Record};
pub use store::{Backend, KeyValueStore, StoreSpec};
pub use topology::{Stream, Topology, TopologyBuilder};
#[cfg(feature = "kafka")]
pub mod kafka;
