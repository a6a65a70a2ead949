//! Topologies used by the examples (and by the Kafka integration tests), each with a `run`
//! function that runs it end to end on the embedded mock cluster (what the example binaries
//! print and `examples/tests/` check).

pub mod aggregation;
pub mod dead_letter;
pub mod embedded;
pub mod enrichment;
pub mod exactly_once;
pub mod punctuation;
pub mod wordcount;
