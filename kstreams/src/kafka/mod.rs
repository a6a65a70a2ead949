//! The Kafka runtime (feature `kafka`): runs a [`Topology`](crate::Topology) against a Kafka
//! cluster, or against librdkafka's embedded mock cluster when no broker is configured.
//!
//! Owns: the application ([`App`], [`AppConfig`], [`ShutdownHandle`]), the group consumer and its
//! rebalance handling, the sink (batched produce, murmur2 partitioning), changelog restoration and
//! topic checks, and what it reports ([`observe`]: metrics, progress log, Prometheus endpoint).
//! It drives [`Task`](crate::task::Task)s and never processes records itself.
//!
//! Processing guarantee: at-least-once. See [`app`] for the commit protocol.

pub mod admin;
pub mod app;
pub mod config;
pub mod local;
pub mod mock;
pub mod observe;
mod restore;
mod sink;

pub use admin::TopicSpec;
pub use app::{App, AppStatus, ShutdownHandle};
pub use config::{AppConfig, ProcessingGuarantee};
pub use local::AppClient;
pub use mock::EmbeddedCluster;
