//! The public face of the Kafka runtime: [`App`] (the counterpart of `KafkaStreams`),
//! [`ShutdownHandle`] and [`AppStatus`].
//!
//! Owns: checking the config, starting the embedded cluster when no broker is configured, and
//! spawning the processing, which runs `engine::run_blocking` (its `num_threads` processing
//! threads). May not
//! touch: tasks, the consumer, the producer or the commit protocol (see `engine`,
//! `commit`, `eos`, `rebalance`).
//! Processing itself is the [`Task`](crate::task::Task) code, the same the
//! [`TopologyTestDriver`](crate::testing::TopologyTestDriver) runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::admin::{self, TopicSpec};
use super::config::{AppConfig, ProcessingGuarantee};
use super::engine::run_blocking;
use super::lock;
use super::metadata::GroupMetadata;
use super::mock::{EmbeddedCluster, MockCommands};
use crate::error::{Error, Result};
use crate::query::Queries;
use crate::topology::Topology;

/// Stops a running [`App`] gracefully: the batch in hand is finished, outputs are flushed,
/// offsets committed and stores closed.
#[derive(Debug, Clone, Default)]
pub struct ShutdownHandle(Arc<(AtomicBool, AtomicBool)>);

impl ShutdownHandle {
    /// Asks the app to stop; `run` returns once it has.
    pub fn shutdown(&self) {
        self.0.0.store(true, Ordering::SeqCst);
    }

    /// Whether a shutdown was asked for.
    pub fn is_shutdown(&self) -> bool {
        self.0.0.load(Ordering::SeqCst)
    }

    /// Stops like a crash: no flush, no commit, records in flight are purged (for tests of what a
    /// restart recovers).
    #[doc(hidden)]
    pub fn abort(&self) {
        self.0.1.store(true, Ordering::SeqCst);
        self.shutdown();
    }

    pub(super) fn is_abort(&self) -> bool {
        self.0.1.load(Ordering::SeqCst)
    }
}

/// A snapshot of what a running app is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppStatus {
    /// Whether the processing loop runs (set once start-up checks passed).
    pub running: bool,
    /// The input partitions assigned to this instance whose tasks are running (restored).
    pub assigned: BTreeSet<(String, i32)>,
    /// The input partitions assigned to this instance whose tasks are still being restored
    /// (their input is paused until then).
    pub restoring: BTreeSet<(String, i32)>,
    /// The last committed next offset of every input partition this instance committed.
    pub committed: BTreeMap<(String, i32), i64>,
    /// Input records processed.
    pub processed_records: u64,
    /// Input records skipped by their deserialization or processing policy (counted in
    /// `processed_records` too: every input record ends as an output, a dead-letter record or a
    /// skip).
    pub skipped_records: u64,
    /// Input records sent to a dead-letter topic by their deserialization or processing policy
    /// (counted in `processed_records` too).
    pub dead_lettered_records: u64,
    /// Output records skipped by the production policy (stage `produce`: not serializable, or
    /// rejected at send or delivery).
    pub skipped_outputs: u64,
    /// Output records sent to a dead-letter topic by the production policy.
    pub dead_lettered_outputs: u64,
    /// Changelog records restored into local stores (counted as they are written, also for a
    /// restore that has not ended yet).
    pub restored_records: u64,
    /// Commits made.
    pub commits: u64,
    /// Rebalances seen (assignments received from the group).
    pub rebalances: u64,
}

/// A Kafka Streams application: a topology run against a Kafka cluster, one task per input
/// partition (co-partitioned sources share a task), each with its own LMDB environment.
///
/// ```no_run
/// use kstreams::kafka::{App, AppConfig};
/// use kstreams::{processor, Record, Topology};
/// # async fn demo() -> kstreams::Result<()> {
/// let mut t = Topology::builder();
/// let lines = t.source::<(), String>("lines");
/// let upper = t.add(processor::map(|r: &Record<(), String>| r.derive((), r.value.to_uppercase())), &lines);
/// t.sink("upper", &upper);
/// let app = App::new(t.build()?, AppConfig::new("upper").bootstrap_servers("127.0.0.1:9092"))?;
/// let stop = app.shutdown_handle();
/// // elsewhere: stop.shutdown();
/// app.run().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct App {
    topology: Topology,
    config: AppConfig,
    bootstrap: String,
    pub(super) embedded: Option<EmbeddedCluster>,
    shutdown: ShutdownHandle,
    status: Arc<Mutex<AppStatus>>,
    queries: Queries,
}

impl App {
    /// Checks the config and, when no bootstrap servers are configured, starts the embedded mock
    /// cluster (it lives as long as the `App`). Nothing else touches the network before
    /// [`run`](Self::run).
    pub fn new(topology: Topology, mut config: AppConfig) -> Result<App> {
        config.validate()?;
        // Internal topics (repartition topics) named for the application id.
        let topology = topology.resolve(&config.application_id);
        config.errors.validate(&topology)?;
        super::observe::install(&config)?; // observability hook
        let (bootstrap, embedded) = match &config.bootstrap_servers {
            Some(b) => (b.clone(), None),
            None => {
                if config.guarantee == ProcessingGuarantee::ExactlyOnce {
                    return Err(Error::Config(
                        "exactly-once needs a real Kafka cluster: the embedded mock cluster \
                         (used when no bootstrap servers are set) does not apply transactions"
                            .into(),
                    ));
                }
                let e = EmbeddedCluster::start_for_threads(config.num_threads)?;
                // The mock cluster completes a rebalance in which a member joins a group that
                // has members (a second processing thread) only after the session timeout less
                // a second: 44 s with librdkafka's default. A shorter session keeps it to 5 s.
                let set = |m: &std::collections::BTreeMap<String, String>| {
                    m.contains_key("session.timeout.ms")
                };
                if config.num_threads > 1
                    && !set(&config.properties)
                    && !set(&config.consumer_properties)
                {
                    config = config.consumer_property("session.timeout.ms", "6000");
                }
                (e.bootstrap_servers().to_owned(), Some(e))
            }
        };
        let status = Arc::default();
        let metadata = GroupMetadata::new(&config, &bootstrap, &topology, Arc::clone(&status))?;
        let queries = Queries::new(&topology);
        // Where keys live (the group's assignment, cached): the owner in `NotHere`, and
        // `Queries::metadata_for_key`.
        let owners = metadata.clone();
        queries.set_owner_lookup(move |store, partition| owners.owner_of(store, partition));
        queries.set_metadata(metadata);
        Ok(App {
            queries,
            topology,
            config,
            bootstrap,
            embedded,
            shutdown: ShutdownHandle::default(),
            status,
        })
    }

    /// The cluster the app talks to (the embedded cluster's address when it runs one).
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Whether the app runs librdkafka's embedded mock cluster.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// The topology the app runs, resolved for its application id ([`Topology::resolve`]: the
    /// repartition topics carry their real names).
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The config.
    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// A handle that stops [`run`](Self::run) gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// What the app is doing now.
    pub fn status(&self) -> AppStatus {
        lock(&self.status).clone()
    }

    /// The interactive queries of the app's local stores, for any thread (see
    /// [`Queries`]): take it before or while the app runs.
    pub fn queries(&self) -> Queries {
        self.queries.clone()
    }

    /// Creates topics on the app's cluster (real or embedded), leaving existing ones alone.
    pub async fn create_topics(&self, topics: &[TopicSpec]) -> Result<()> {
        let mock = self.embedded.as_ref().map(EmbeddedCluster::commands);
        admin::create_topics(&self.config, &self.bootstrap, mock.as_ref(), topics).await
    }

    /// Runs until [`ShutdownHandle::shutdown`], Ctrl-C (unless disabled) or an error. Start-up
    /// problems (cluster unreachable, input topic missing, co-partitioned topics with different
    /// partition counts) are returned as errors within the start-up timeout.
    ///
    /// Processing runs on dedicated threads ([`AppConfig::num_threads`]); this future only waits
    /// for them. A shutdown is final:
    /// once [`ShutdownHandle::shutdown`] was called, `run` returns at once; make a new `App` to
    /// run again.
    pub async fn run(&self) -> Result<()> {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let params = RunParams {
            topology: self.topology.clone(),
            config: self.config.clone(),
            bootstrap: self.bootstrap.clone(),
            mock: self.embedded.as_ref().map(EmbeddedCluster::commands),
            shutdown: self.shutdown.clone(),
            status: self.status.clone(),
            queries: self.queries.clone(),
        };
        std::thread::Builder::new()
            .name(format!("kstreams-{}", self.config.application_id))
            .spawn(move || {
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_blocking(params)))
                        .unwrap_or_else(|_| {
                            Err(Error::Internal("the processing thread panicked".into()))
                        });
                let _ = tx.send(result);
            })
            .map_err(|e| Error::Io {
                context: "spawning the processing thread".into(),
                source: e,
            })?;
        let closed = |_| Error::Internal("the processing thread vanished".into());
        if self.config.handle_ctrl_c {
            let ctrl_c = async {
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                r = &mut rx => return r.map_err(closed)?,
                () = ctrl_c => {
                    tracing::info!("Ctrl-C: shutting down gracefully");
                    self.shutdown.shutdown();
                }
            }
        }
        rx.await.map_err(closed)?
    }
}

/// What the processing thread is started with.
pub(super) struct RunParams {
    pub(super) topology: Topology,
    pub(super) config: AppConfig,
    pub(super) bootstrap: String,
    pub(super) mock: Option<MockCommands>,
    pub(super) shutdown: ShutdownHandle,
    pub(super) status: Arc<Mutex<AppStatus>>,
    pub(super) queries: Queries,
}
