//! The Kafka runtime (feature `kafka`): runs a [`Topology`](crate::Topology) against a Kafka
//! cluster, or against librdkafka's embedded mock cluster when no broker is configured.
//!
//! Owns: the application ([`App`], [`AppConfig`], [`ShutdownHandle`]), the group consumer and its
//! rebalance handling, the sink (batched produce, murmur2 partitioning), changelog restoration and
//! topic checks, what it reports (`observe`: metrics, progress log, Prometheus endpoint), and
//! [`AppClient`] (trying an app locally: its topics, typed input and output, waiting for it).
//! It drives [`Task`](crate::task::Task)s and never processes records itself.
//!
//! Processing guarantees ([`ProcessingGuarantee`]): at-least-once by default (an input offset is
//! committed only after its outputs are acknowledged and its state is durable), or exactly-once
//! (outputs, changelog writes and input offsets commit in one Kafka transaction; needs a real
//! cluster). The commit protocols are in `commit` and `eos`.

mod admin;
mod app;
mod backoff;
mod commit;
mod config;
mod convert;
mod engine;
mod eos;
mod fetch;
mod global;
// Public for its module docs: the runnable example `AppClient` points to.
pub mod local;
mod metadata;
mod mock;
mod observe;
mod process_id;
mod produce;
mod rebalance;
mod restore;
mod sink;

// The other submodules are the runtime's own layout, not API: what users name is re-exported
// here.
pub use admin::TopicSpec;
pub use app::{App, AppStatus, ShutdownHandle};
pub use config::{
    AppConfig, CONSUMER_DEFAULTS, MAX_DURATION, PRODUCER_DEFAULTS, ProcessingGuarantee,
};
pub use local::AppClient;
pub(crate) use metadata::GroupMetadata;
pub use metadata::{HostInfo, KeyMetadata};
pub use mock::EmbeddedCluster;
#[cfg(feature = "http")]
pub(crate) use observe::prometheus_handle;

/// Locks a mutex, going on with its value when a thread panicked while holding it (every value
/// the runtime keeps behind a mutex stays consistent between statements).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
