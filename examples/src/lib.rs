//! Topologies used by the examples (and by the Kafka integration tests), each with a `run`
//! function that runs it end to end on the embedded mock cluster (what the example binaries
//! print and `examples/tests/` check). They try the app as a user would, with
//! [`kstreams::kafka::AppClient`]: create its topics, produce typed input, wait until it is
//! processed, read typed output; [`embedded`] only starts and stops the app.

pub mod aggregation;
pub mod dead_letter;
pub mod embedded;
pub mod enrichment;
pub mod exactly_once;
pub mod join;
pub mod punctuation;
pub mod windowed_count;
pub mod wordcount;
