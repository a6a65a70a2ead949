//! Topologies used by the examples (and by the Kafka integration tests).

pub mod wordcount;
