//! The application: consume in the group, drive tasks batch by batch, produce, commit.
//!
//! Owns: [`App`] (the counterpart of `KafkaStreams`), [`ShutdownHandle`], [`AppStatus`] and the
//! processing loop with its commit protocol and rebalance handling. Processing itself is the
//! [`Task`] code, the same the [`TopologyTestDriver`](crate::testing::TopologyTestDriver) runs.
//!
//! Commit protocol (at-least-once). Records are polled in rounds (at most
//! `batch_max_records`, waiting at most `batch_max_wait` once the first one arrived), grouped by
//! task and topic in offset order and handed to the tasks in task-id order. Each batch commits its
//! state and its input position in one LMDB transaction; its outputs and changelog records are sent
//! asynchronously. A commit (every `commit_interval`, before partitions are revoked, on shutdown):
//! 1. waits until the broker acknowledged every record sent so far (a delivery error goes through
//!    the production policy of its sink topic under at-least-once; one that fails the app leaves
//!    nothing after the last commit committed),
//! 2. records the acknowledged changelog offsets in each task's LMDB environment
//!    (`record_changelog_positions`) and fsyncs it (`Task::sync`),
//! 3. commits the processed input offsets to the group, synchronously; while the broker or the
//!    group coordinator cannot be reached (an outage) the commit is retried with backoff for at
//!    most the delivery timeout; if the group moved on without this member meanwhile, nothing is
//!    committed and the rebalance that follows hands the partitions over (see
//!    `commit_offsets_retrying`).
//!
//! So a committed offset never points past a record whose outputs or state could be lost.
//!
//! Exactly-once (see ARCHITECTURE.md, "The commit protocol (exactly-once)"): step 3 becomes
//! `send_offsets_to_transaction` with the consumer's group metadata and `commit_transaction`,
//! inputs and changelogs are read `read_committed`, and a task opens its local state only if its
//! input position equals the committed offsets; otherwise the state is wiped and restored from
//! the committed changelog. When the transaction fails while processing (a send, a delivery, the
//! offsets or the commit; e.g. the broker was down longer than the 10 s transaction timeout), it
//! is aborted (or the producer replaced), the tasks are closed, the consumer is rewound to the
//! committed offsets and the tasks reopened, which wipes and restores their state by the rule
//! above (`Engine::recover_transaction`; at most 3 times without a successful commit in between).
//! Any other error, and a failed commit before a revoke or at shutdown, aborts the open
//! transaction and stops the app.
//!
//! Rebalances (librdkafka's eager protocol by default). Before partitions are revoked, the commit
//! above runs and their tasks are closed; records of revoked partitions already polled but not
//! processed are dropped (the next owner fetches them from the committed offset). After partitions
//! are assigned, their fetching is paused, their tasks are opened (LMDB in
//! `<state dir>/<application id>/<task id>`) and every changelogged store is restored from the
//! changelog offset its LMDB environment recorded to the high watermark, in batches; local state
//! that claims offsets past the changelog's end (a recreated topic, another cluster) is deleted and
//! rebuilt. Then fetching resumes from the group's committed offset. A missing state directory is
//! rebuilt from the changelog the same way.
//!
//! At-least-once, stated plainly: when local state is ahead of the committed offset (the process
//! died between a state commit and the next offset commit), the input since the committed offset
//! is processed again, so aggregates may count it twice (a warning names the partition and the
//! number of records). A clean shutdown or a rebalance commits everything first, so neither ever
//! causes double counting.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::admin::{self, TopicSpec};
use super::config::{AppConfig, ProcessingGuarantee, redact_client_error};
use super::convert::raw_record;
use super::mock::{EmbeddedCluster, MockCommands};
use super::restore::{RestoreContext, Restored, restore_task};
use super::sink::Sink;
use crate::error::{Error, Result};
use crate::record::RawRecord;
use crate::task::{Task, TaskConfig, TaskId, TaskOutput};
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

    fn is_abort(&self) -> bool {
        self.0.1.load(Ordering::SeqCst)
    }
}

/// A snapshot of what a running app is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppStatus {
    /// Whether the processing loop runs (set once start-up checks passed).
    pub running: bool,
    /// The input partitions assigned to this instance.
    pub assigned: BTreeSet<(String, i32)>,
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
    /// Changelog records restored into local stores.
    pub restored_records: u64,
    /// Commits made.
    pub commits: u64,
    /// Rebalances seen (assignments).
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
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl App {
    /// Checks the config and, when no bootstrap servers are configured, starts the embedded mock
    /// cluster (it lives as long as the `App`). Nothing else touches the network before
    /// [`run`](Self::run).
    pub fn new(topology: Topology, config: AppConfig) -> Result<App> {
        config.validate()?;
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
                let e = EmbeddedCluster::start()?;
                (e.bootstrap_servers().to_owned(), Some(e))
            }
        };
        Ok(App {
            topology,
            config,
            bootstrap,
            embedded,
            shutdown: ShutdownHandle::default(),
            status: Arc::default(),
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

    /// The topology the app runs.
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

    /// Creates topics on the app's cluster (real or embedded), leaving existing ones alone.
    pub async fn create_topics(&self, topics: &[TopicSpec]) -> Result<()> {
        let mock = self.embedded.as_ref().map(EmbeddedCluster::commands);
        admin::create_topics(&self.config, &self.bootstrap, mock.as_ref(), topics).await
    }

    /// Runs until [`ShutdownHandle::shutdown`], Ctrl-C (unless disabled) or an error. Start-up
    /// problems (cluster unreachable, input topic missing, co-partitioned topics with different
    /// partition counts) are returned as errors within the start-up timeout.
    ///
    /// Processing runs on a dedicated thread; this future only waits for it. A shutdown is final:
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

struct RunParams {
    topology: Topology,
    config: AppConfig,
    bootstrap: String,
    mock: Option<MockCommands>,
    shutdown: ShutdownHandle,
    status: Arc<Mutex<AppStatus>>,
}

/// The group consumer's context: rebalance callbacks flush, commit and close revoked tasks, and
/// create and restore assigned ones, before the consumer goes on.
struct GroupContext {
    engine: Mutex<Option<Engine>>,
    generation: AtomicU64,
    /// Partitions revoked since the processing loop last looked: records of them polled before
    /// the revocation are dropped (they are fetched again from the committed offset by their next
    /// owner, possibly this instance).
    revoked: Mutex<BTreeSet<(String, i32)>>,
    error: Mutex<Option<Error>>,
    /// librdkafka's last connection failure message (start-up reports it).
    last_failure: Mutex<Option<String>>,
}

impl admin::ConnectionFailures for GroupContext {
    fn last_connection_failure(&self) -> Option<String> {
        lock(&self.last_failure).clone()
    }
}

impl GroupContext {
    fn fail(&self, e: Error) {
        let mut slot = lock(&self.error);
        if slot.is_none() {
            *slot = Some(e);
        }
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if fac == "FAIL" && (level as i32) <= RDKafkaLogLevel::Error as i32 {
            // Without librdkafka's "[thrd:NAME]: " prefix: the message names the broker itself.
            let message = log_message
                .strip_prefix("[thrd:")
                .and_then(|m| m.split_once("]: "))
                .map_or(log_message, |(_, rest)| rest);
            *lock(&self.last_failure) = Some(message.to_owned());
        }
        super::observe::librdkafka_log(level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        super::observe::client_error("consumer", &error, reason);
    }
}

fn tpl_partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.generation.fetch_add(1, Ordering::SeqCst);
            let revoked = tpl_partitions(tpl);
            lock(&self.revoked).extend(revoked.iter().cloned());
            let mut engine = lock(&self.engine);
            if let Some(engine) = engine.as_mut()
                && let Err(e) = engine.revoke(consumer, &revoked)
            {
                self.fail(e);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.generation.fetch_add(1, Ordering::SeqCst);
                let assigned = tpl_partitions(tpl);
                let mut engine = lock(&self.engine);
                if let Some(engine) = engine.as_mut()
                    && let Err(e) = engine.assign(consumer, &assigned)
                {
                    self.fail(e);
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

/// A task with the changelog offsets its LMDB environment last recorded.
struct Running {
    task: Task,
    recorded: Vec<Option<i64>>,
    dirty: bool,
}

/// Everything the processing thread and the rebalance callbacks share.
struct Engine {
    topology: Topology,
    task_config: Arc<TaskConfig>,
    config: AppConfig,
    sink: Sink,
    restore: BaseConsumer<RestoreContext>,
    tasks: BTreeMap<TaskId, Running>,
    /// Next offset to process per input partition (this assignment).
    processed: HashMap<(String, i32), i64>,
    committed: HashMap<(String, i32), i64>,
    status: Arc<Mutex<AppStatus>>,
    observer: super::observe::Observer, // observability hook
    /// The cluster, to replace a failed transactional producer.
    bootstrap: String,
    /// Exactly-once: the last error came from the open transaction (a send, a delivery, the
    /// offsets or the commit), not from processing: it can be aborted and the input replayed.
    transaction_failed: bool,
    /// Exactly-once: transactions aborted and replayed since the last successful commit.
    recoveries: u32,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn kafka_err(context: impl Into<String>) -> impl FnOnce(KafkaError) -> Error {
    let context = context.into();
    move |source| Error::Kafka { context, source }
}

impl Engine {
    fn exactly_once(&self) -> bool {
        self.config.guarantee == ProcessingGuarantee::ExactlyOnce
    }

    fn task_id(&self, topic: &str, partition: i32) -> Option<TaskId> {
        self.topology.subtopology_of(topic).map(|s| TaskId {
            subtopology: s.id,
            partition,
        })
    }

    fn open_task(&self, id: TaskId) -> Result<Running> {
        let task = Task::new(&self.topology, id, self.task_config.clone())?;
        let recorded = {
            let pos = task.position()?;
            task.stores()
                .iter()
                .map(|s| pos.changelog(s.name()))
                .collect()
        };
        Ok(Running {
            task,
            recorded,
            dirty: false,
        })
    }

    /// Creates and restores the tasks of newly assigned partitions.
    fn assign<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &[(String, i32)],
    ) -> Result<()> {
        let ids: BTreeSet<TaskId> = partitions
            .iter()
            .filter_map(|(t, p)| self.task_id(t, *p))
            .collect();
        tracing::info!(?partitions, "partitions assigned");
        for (t, p) in partitions {
            self.processed.remove(&(t.clone(), *p));
        }
        // The new partitions' tasks are behind until restored: pause their fetching meanwhile so
        // that prefetched records do not pile up in memory.
        let mut paused = TopicPartitionList::new();
        for (t, p) in partitions {
            paused.add_partition(t, *p);
        }
        if let Err(e) = consumer.pause(&paused) {
            tracing::debug!(error = %e, "cannot pause partitions during restore");
        }
        let result = self.create_and_restore(consumer, partitions, ids);
        if let Err(e) = consumer.resume(&paused) {
            tracing::debug!(error = %e, "cannot resume partitions after restore");
        }
        result
    }

    fn create_and_restore<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &[(String, i32)],
        ids: BTreeSet<TaskId>,
    ) -> Result<()> {
        let committed = {
            let mut tpl = TopicPartitionList::new();
            for (t, p) in partitions {
                tpl.add_partition(t, *p);
            }
            consumer
                .committed_offsets(tpl, self.config.startup_timeout)
                .ok()
        };
        let mut restored_total = 0;
        for id in ids {
            if self.tasks.contains_key(&id) {
                continue;
            }
            let span = tracing::info_span!("task", task = %id);
            let _g = span.enter();
            let mut running = self.open_task(id)?;
            if self.exactly_once() {
                let committed = committed.as_ref().ok_or_else(|| {
                    Error::Runtime(format!(
                        "cannot read the committed offsets of task {id}'s input: under \
                         exactly-once its local state cannot be checked against them"
                    ))
                })?;
                if let Some(why) = untrusted_state(&running.task, id, committed)? {
                    // No input position at all: there is no local state (a new instance, a
                    // partition moved here, a lost disk), which is normal; state that disagrees
                    // with the group is not.
                    let pos = running.task.position()?;
                    let none = running
                        .task
                        .source_topics()
                        .all(|t| pos.input(t, id.partition).is_none());
                    if none {
                        tracing::info!(task = %id, "{why}: no local state; restoring it from \
                            the committed changelog (exactly-once)");
                    } else {
                        tracing::warn!(task = %id, "{why}: wiping local state and restoring it \
                            from the committed changelog (exactly-once)");
                    }
                    let path = running.task.state_path();
                    drop(running);
                    if let Some(path) = path.filter(|p| p.exists()) {
                        std::fs::remove_dir_all(&path).map_err(|e| Error::Io {
                            context: format!("removing untrusted local state {}", path.display()),
                            source: e,
                        })?;
                    }
                    running = self.open_task(id)?;
                }
            }
            let mut outcome = restore_task(
                &self.restore,
                &mut running.task,
                self.config.restore_batch_records,
                self.config.startup_timeout,
                self.exactly_once(),
            )?;
            if outcome == Restored::LocalStateInvalid {
                let path = running.task.state_path();
                drop(running);
                if let Some(path) = path {
                    std::fs::remove_dir_all(&path).map_err(|e| Error::Io {
                        context: format!("removing invalid local state {}", path.display()),
                        source: e,
                    })?;
                }
                running = self.open_task(id)?;
                outcome = restore_task(
                    &self.restore,
                    &mut running.task,
                    self.config.restore_batch_records,
                    self.config.startup_timeout,
                    self.exactly_once(),
                )?;
            }
            if let Restored::Done(n) = outcome {
                restored_total += n;
                metrics::counter!("kstreams_restored_records_total").increment(n);
            }
            running.recorded = {
                let pos = running.task.position()?;
                running
                    .task
                    .stores()
                    .iter()
                    .map(|s| pos.changelog(s.name()))
                    .collect()
            };
            // At-least-once: if the local state already reflects input past the committed
            // offset (a crash between the state commit and the offset commit), that input is
            // processed again and its effects on state counted twice. A clean shutdown commits
            // everything, so it never happens after one.
            if let Some(committed) = &committed {
                let pos = running.task.position()?;
                for topic in running.task.source_topics() {
                    let local = pos.input(topic, id.partition);
                    let group = committed
                        .find_partition(topic, id.partition)
                        .and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        });
                    if let (Some(local), Some(group)) = (local, group)
                        && local > group
                    {
                        tracing::warn!(%topic, partition = id.partition, local, committed = group,
                                "local state is ahead of the committed offset (unclean stop): \
                                 {} records are processed again (at-least-once)", local - group);
                    }
                }
            }
            self.tasks.insert(id, running);
        }
        let mut st = lock(&self.status);
        st.assigned.extend(partitions.iter().cloned());
        st.restored_records += restored_total;
        st.rebalances += 1;
        Ok(())
    }

    /// Commits and closes the tasks of revoked partitions.
    fn revoke<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &[(String, i32)],
    ) -> Result<()> {
        tracing::info!(?partitions, "partitions revoked");
        let result = self.commit(consumer, "revoke");
        if let Err(e) = &result {
            tracing::warn!(error = %e, "commit before revoke failed; the new owner reprocesses since the last commit");
        }
        let ids: BTreeSet<TaskId> = partitions
            .iter()
            .filter_map(|(t, p)| self.task_id(t, *p))
            .collect();
        for id in ids {
            if let Some(r) = self.tasks.remove(&id) {
                for t in r.task.changelog_topics().iter().flatten() {
                    self.sink.forget(t, id.partition);
                }
                drop(r);
            }
        }
        for p in partitions {
            self.processed.remove(p);
        }
        let mut st = lock(&self.status);
        for p in partitions {
            st.assigned.remove(p);
        }
        // A failed delivery is fatal; a failed offset commit during a rebalance is not (the
        // records are processed again by the new owner), except under exactly-once: the failed
        // transaction is aborted and the app stops (a restart rebuilds the state).
        match result {
            Err(Error::Kafka { .. }) if !self.exactly_once() => Ok(()),
            other => other,
        }
    }

    /// Exactly-once: recovers from a failed transaction (`cause`: a send, a delivery, the offsets
    /// or the commit failed, e.g. because the broker was down longer than the transaction or
    /// delivery timeout). The transaction is aborted (retried while the broker cannot be reached;
    /// if it cannot be aborted, e.g. the producer was fenced or failed fatally, the producer is
    /// replaced: `init_transactions` aborts it for us), then every task is closed, the consumer is
    /// rewound to the group's committed offsets and the tasks are reopened: their local state went
    /// ahead of the committed input, so the trust rule wipes it and restores it from the committed
    /// changelog. The result is the state of a replay of exactly the committed input. Bounded: the
    /// abort is retried for at most the delivery timeout, and after 3 recoveries without a
    /// successful commit in between the app stops with `cause`.
    fn recover_transaction<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        cause: Error,
    ) -> Result<()> {
        self.transaction_failed = false;
        self.recoveries += 1;
        if self.recoveries > 3 {
            tracing::error!(error = %cause, "exactly-once: the transaction failed again after 3 \
                recoveries without a successful commit; stopping");
            return Err(cause);
        }
        tracing::warn!(error = %cause, attempt = self.recoveries, "exactly-once: the transaction \
            failed; aborting it, rewinding to the committed offsets and rebuilding local state");
        let bound = self.config.delivery_timeout;
        let began = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.sink.abort_transaction() {
                Ok(()) => break,
                Err(Error::Kafka {
                    source: KafkaError::Transaction(e),
                    ..
                }) if e.is_retriable() && began.elapsed() + backoff < bound => {
                    tracing::warn!(error = %e, elapsed_ms = began.elapsed().as_millis() as u64,
                        "exactly-once: aborting the transaction failed (broker unreachable?); \
                         retrying in {backoff:?}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "exactly-once: the transaction cannot be aborted; \
                        replacing the producer (its init_transactions aborts it)");
                    self.replace_producer(began, bound)?;
                    break;
                }
            }
        }
        self.sink.clear_deliveries();
        let partitions: Vec<(String, i32)> = lock(&self.status).assigned.iter().cloned().collect();
        // Reopening reads the committed offsets (and restores): retried, within the same bound,
        // while the broker or the group coordinator is not back yet.
        let mut backoff = Duration::from_millis(100);
        loop {
            self.close_all();
            self.processed.clear();
            match self.reopen_and_rewind(consumer, &partitions) {
                Ok(()) => break,
                Err(e) if began.elapsed() + backoff < bound => {
                    tracing::warn!(error = %e, elapsed_ms = began.elapsed().as_millis() as u64,
                        "exactly-once: reopening the tasks after the abort failed; retrying in \
                         {backoff:?}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    return Err(Error::Runtime(format!(
                        "exactly-once: the tasks could not be reopened after an aborted \
                         transaction within {:?} (the bound is the delivery timeout, {bound:?}): \
                         {e}. If the broker is up, a transaction it never completed (a hanging \
                         transaction, `kafka-transactions.sh find-hanging`) keeps the committed \
                         offsets or the changelog unstable",
                        began.elapsed()
                    )));
                }
            }
        }
        tracing::warn!(
            ?partitions,
            elapsed_ms = began.elapsed().as_millis() as u64,
            "exactly-once: recovered; processing again from the committed offsets"
        );
        Ok(())
    }

    /// Exactly-once recovery: reopens (and so restores) the tasks of `partitions`, then seeks
    /// them back to the group's committed offsets.
    fn reopen_and_rewind<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &[(String, i32)],
    ) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition(t, *p);
        }
        // A short probe first: librdkafka's `committed()`, when the group coordinator is not
        // ready, waits for a change of broker state for up to its whole timeout, and after a
        // broker restart none may come; a fresh, short request per retry does not get stuck.
        consumer
            .committed_offsets(tpl, Duration::from_secs(2))
            .map_err(kafka_err(
                "reading the committed offsets (probe before reopening)",
            ))?;
        self.assign(consumer, partitions)?;
        // Fetch again from the committed offsets: the records after them belong to the aborted
        // transaction or were never processed.
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition(t, *p);
        }
        let committed = consumer
            .committed_offsets(tpl, self.config.startup_timeout)
            .map_err(kafka_err("reading the committed offsets to rewind to"))?;
        for (t, p) in partitions {
            let to = committed_offset(&committed, t, *p).map_or(Offset::Beginning, Offset::Offset);
            consumer
                .seek(t, *p, to, self.config.startup_timeout)
                .map_err(kafka_err(format!(
                    "rewinding `{t}` partition {p} to {to:?} after an aborted transaction"
                )))?;
        }
        Ok(())
    }

    /// Exactly-once: replaces the transactional producer, retrying while the transaction
    /// coordinator cannot be reached, until `began + bound`.
    fn replace_producer(&mut self, began: Instant, bound: Duration) -> Result<()> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match Sink::new(&self.config, &self.bootstrap) {
                Ok(sink) => {
                    self.sink = sink;
                    return Ok(());
                }
                Err(Error::Kafka {
                    source: KafkaError::Transaction(e),
                    ..
                }) if e.is_retriable() && began.elapsed() + backoff < bound => {
                    tracing::warn!(error = %e, elapsed_ms = began.elapsed().as_millis() as u64,
                        "exactly-once: initializing the new producer's transactions failed \
                         (broker unreachable?); retrying in {backoff:?}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes every task (after a final commit by the caller).
    fn close_all(&mut self) {
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            if let Some(r) = self.tasks.remove(&id) {
                for t in r.task.changelog_topics().iter().flatten() {
                    self.sink.forget(t, id.partition);
                }
            }
        }
        lock(&self.status).assigned.clear();
    }

    fn send(&mut self, out: &TaskOutput) -> Result<()> {
        self.observer.records_out(&out.records); // observability hook
        if out.skipped + out.dead_lettered + out.output_skipped + out.output_dead_lettered > 0 {
            let mut st = lock(&self.status);
            st.skipped_records += out.skipped;
            st.dead_lettered_records += out.dead_lettered;
            st.skipped_outputs += out.output_skipped;
            st.dead_lettered_outputs += out.output_dead_lettered;
        }
        let sent = self
            .sink
            .send(&out.records, false)
            .and_then(|()| self.sink.send(&out.changelog, true));
        if sent.is_err() && self.exactly_once() {
            self.transaction_failed = true;
        }
        sent
    }

    /// Hands one round of records to the tasks: per task and topic, in offset order, tasks in id
    /// order.
    fn process_round(&mut self, msgs: &[BorrowedMessage<'_>]) -> Result<()> {
        let now = now_ms();
        let mut groups: BTreeMap<(TaskId, &str), Vec<usize>> = BTreeMap::new();
        for (i, m) in msgs.iter().enumerate() {
            if let Some(id) = self.task_id(m.topic(), m.partition()) {
                groups.entry((id, m.topic())).or_default().push(i);
            }
        }
        let mut processed = 0u64;
        for ((id, topic), indices) in groups {
            let key = (topic.to_owned(), id.partition);
            let next = self.processed.get(&key).copied();
            let Some(running) = self.tasks.get_mut(&id) else {
                continue;
            };
            let batch: Vec<RawRecord<'_>> = indices
                .iter()
                .map(|&i| &msgs[i])
                .filter(|m| next.is_none_or(|n| m.offset() >= n))
                .map(|m| raw_record(m, now))
                .collect();
            let Some(last) = batch.last().map(|r| r.offset) else {
                continue;
            };
            // observability hook: the task span and the batch latency
            let span = tracing::info_span!("task", task = %id, topic, partition = id.partition);
            let began = Instant::now();
            let out = span.in_scope(|| running.task.process(topic, id.partition, &batch, now))?;
            self.observer.batch(topic, batch.len(), began.elapsed());
            running.dirty = true;
            processed += batch.len() as u64;
            // Only records whose outputs were handed to the producer count as processed: a send
            // that fails leaves the batch uncommitted (it is processed again after a restart).
            self.send(&out)?;
            self.processed.insert(key, last + 1);
        }
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            if let Some(running) = self.tasks.get_mut(&id) {
                let before = running.task.committed_transactions();
                let out = running.task.punctuate_wall_clock(now)?;
                if running.task.committed_transactions() != before {
                    running.dirty = true;
                }
                if !out.records.is_empty() || !out.changelog.is_empty() || out.output_skipped > 0 {
                    self.send(&out)?;
                }
            }
        }
        if processed > 0 {
            lock(&self.status).processed_records += processed;
        }
        Ok(())
    }

    /// The commit protocol: acks, then changelog positions + fsync, then offsets.
    fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, why: &str) -> Result<()> {
        let pending: Vec<((String, i32), i64)> = self
            .processed
            .iter()
            .filter(|(k, v)| self.committed.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let any_dirty = self.tasks.values().any(|r| r.dirty);
        if pending.is_empty()
            && !any_dirty
            && self.sink.outstanding() == 0
            && !self.sink.in_transaction()
        {
            return Ok(());
        }
        let began = Instant::now();
        // 1. Every output and changelog record sent so far is acknowledged.
        let acked = self.sink.wait_acked();
        let (skipped, dead_lettered) = self.sink.take_handled();
        if skipped + dead_lettered > 0 {
            let mut st = lock(&self.status);
            st.skipped_outputs += skipped;
            st.dead_lettered_outputs += dead_lettered;
        }
        if let Err(e) = acked {
            self.transaction_failed = self.exactly_once();
            return Err(e);
        }
        // 2. The state that produced them is durable, with the changelog offsets it reflects.
        for (id, running) in &mut self.tasks {
            if !running.dirty {
                continue;
            }
            let mut positions: Vec<(String, i64)> = Vec::new();
            for (i, (spec, topic)) in running
                .task
                .stores()
                .iter()
                .zip(running.task.changelog_topics())
                .enumerate()
            {
                let Some(topic) = topic else { continue };
                if let Some(acked) = self.sink.changelog_acked(topic, id.partition)
                    && running.recorded.get(i).copied().flatten() != Some(acked)
                {
                    positions.push((spec.name().to_owned(), acked));
                    if let Some(slot) = running.recorded.get_mut(i) {
                        *slot = Some(acked);
                    }
                }
            }
            let refs: Vec<(&str, i64)> = positions.iter().map(|(s, o)| (s.as_str(), *o)).collect();
            running.task.record_changelog_positions(&refs)?;
            running.task.sync()?;
            running.dirty = false;
        }
        // 3. Only now the input offsets: in the transaction with the outputs and changelog
        //    records (exactly-once), or committed to the group (at-least-once).
        if self.exactly_once() {
            let mut tpl = TopicPartitionList::new();
            for ((t, p), o) in &pending {
                tpl.add_partition_offset(t, *p, Offset::Offset(*o))
                    .map_err(kafka_err("building the offsets to commit"))?;
            }
            let group = consumer.group_metadata().ok_or_else(|| {
                Error::Runtime("the consumer has no group metadata to commit with".into())
            })?;
            if let Err(e) = self.sink.commit_transaction(&tpl, &group) {
                self.transaction_failed = true;
                return Err(e);
            }
            self.recoveries = 0;
            for (k, v) in &pending {
                self.committed.insert(k.clone(), *v);
            }
        } else if !pending.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for ((t, p), o) in &pending {
                tpl.add_partition_offset(t, *p, Offset::Offset(*o))
                    .map_err(kafka_err("building the offsets to commit"))?;
            }
            if !commit_offsets_retrying(consumer, &tpl, why, self.config.delivery_timeout)? {
                // The group moved on: nothing is committed; the rebalance that follows revokes
                // the partitions and their next owner reprocesses since the last commit.
                return Ok(());
            }
            for (k, v) in &pending {
                self.committed.insert(k.clone(), *v);
            }
        }
        tracing::debug!(
            why,
            partitions = pending.len(),
            elapsed_us = began.elapsed().as_micros() as u64,
            "committed"
        );
        let mut st = lock(&self.status);
        for (k, v) in pending {
            st.committed.insert(k, v);
        }
        st.commits += 1;
        metrics::counter!("kstreams_commits_total").increment(1);
        metrics::histogram!("kstreams_commit_seconds").record(began.elapsed().as_secs_f64());
        Ok(())
    }
}

/// What a failed offset commit means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommitFailure {
    /// The broker or the group coordinator is unreachable, moving or loading (an outage): the
    /// same commit may succeed later.
    Retriable,
    /// The group went on to another generation without this member (e.g. its session expired
    /// during an outage): the offsets are not this member's to commit any more.
    GroupMovedOn,
    /// Anything else.
    Fatal,
}

fn commit_failure(e: &KafkaError) -> CommitFailure {
    use rdkafka::types::RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(
            C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::WaitingForCoordinator
            | C::RequestTimedOut
            | C::NetworkException
            | C::CoordinatorLoadInProgress
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::RebalanceInProgress,
        ) => CommitFailure::Retriable,
        Some(C::UnknownMemberId | C::IllegalGeneration) => CommitFailure::GroupMovedOn,
        _ => CommitFailure::Fatal,
    }
}

/// `topic:partition@offset, ...` of a list of offsets, for messages.
fn describe_offsets(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => format!("{}:{}@{o}", e.topic(), e.partition()),
            other => format!("{}:{}@{other:?}", e.topic(), e.partition()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// At-least-once step 3: commits input offsets to the group, synchronously. While the broker or
/// the group coordinator cannot be reached (an outage), the commit is retried with backoff
/// (100 ms doubling to 2 s, each retry logged at warn) for at most `bound` from the first attempt
/// (the delivery timeout: the time a commit already waits for acknowledgements); after that, or
/// on any other error, it fails naming the offsets. (One attempt itself may wait up to
/// `session.timeout.ms` for a coordinator librdkafka knows is gone, or up to `socket.timeout.ms`
/// for a request already queued for it.) Returns `false`,
/// committing nothing, when the group moved on without this member: the rebalance that follows
/// revokes the partitions and their next owner processes them again from the last commit, which
/// at-least-once allows.
fn commit_offsets_retrying<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
    why: &str,
    bound: Duration,
) -> Result<bool> {
    let began = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 1u32;
    loop {
        // Each attempt gets what is left of the bound (at least 1 s).
        let left = bound
            .saturating_sub(began.elapsed())
            .max(Duration::from_secs(1));
        let Err(e) = commit_sync_within(consumer, tpl, left) else {
            if attempt > 1 {
                tracing::warn!(
                    why,
                    attempt,
                    elapsed_ms = began.elapsed().as_millis() as u64,
                    "offsets committed after the broker came back: {}",
                    describe_offsets(tpl)
                );
            }
            return Ok(true);
        };
        let elapsed = began.elapsed();
        match commit_failure(&e) {
            CommitFailure::Retriable if elapsed + backoff < bound => {
                tracing::warn!(why, attempt, elapsed_ms = elapsed.as_millis() as u64, error = %e,
                    "committing offsets failed (broker or group coordinator unreachable); \
                     retrying in {backoff:?}: {}", describe_offsets(tpl));
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
                attempt += 1;
            }
            CommitFailure::GroupMovedOn => {
                tracing::warn!(why, error = %e, "committing offsets failed: the group moved on \
                    without this member; the partitions' next owner processes them again from \
                    the last commit (at-least-once): {}", describe_offsets(tpl));
                return Ok(false);
            }
            kind => {
                let context = if kind == CommitFailure::Retriable {
                    format!(
                        "committing offsets ({why}) of {}: the broker or group coordinator did \
                         not answer for {elapsed:?} ({attempt} attempts; the bound is the delivery \
                         timeout, {bound:?})",
                        describe_offsets(tpl)
                    )
                } else {
                    format!("committing offsets ({why}) of {}", describe_offsets(tpl))
                };
                return Err(Error::Kafka { context, source: e });
            }
        }
    }
}

/// `consumer.commit(tpl, CommitMode::Sync)` with a deadline. librdkafka's synchronous commit waits
/// for its reply without one (`RD_POLL_INFINITE`), and when the group coordinator died with the
/// request queued for it, the reply can take until the broker is back (seen: over 100 s into an
/// outage, at shutdown). This sends the same commit with the reply on a queue of its own, which it
/// polls for at most `timeout`; past that the commit fails with `OperationTimedOut` (retriable),
/// and a late reply is dropped with the queue.
fn commit_sync_within<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<()> {
    use rdkafka::bindings as rd;
    use rdkafka::types::RDKafkaRespErr as E;
    let rk = consumer.client().native_ptr();
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `rk` is the handle of `consumer`, alive for this call; the queue is created,
    // polled and destroyed here, once (librdkafka keeps its own reference for a late reply);
    // `tpl` outlives the call (librdkafka copies the list); the event is destroyed once.
    let err = unsafe {
        let queue = rd::rd_kafka_queue_new(rk);
        let mut err = rd::rd_kafka_commit_queue(rk, tpl.ptr(), queue, None, std::ptr::null_mut());
        if err == E::RD_KAFKA_RESP_ERR_NO_ERROR {
            let event = rd::rd_kafka_queue_poll(queue, ms);
            if event.is_null() {
                err = E::RD_KAFKA_RESP_ERR__TIMED_OUT;
            } else {
                err = rd::rd_kafka_event_error(event);
                rd::rd_kafka_event_destroy(event);
            }
        }
        rd::rd_kafka_queue_destroy(queue);
        err
    };
    if err == E::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(KafkaError::ConsumerCommit(err.into()))
    }
}

/// How long closing the group consumer (leaving the group) may take at the end of `run`.
const CONSUMER_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Closes the group consumer (revokes its assignment, leaves the group) within `timeout`.
///
/// The consumer is dropped on a thread of its own: rust-rdkafka's `Drop` closes it (its close
/// serves the revoke callback, which finds no engine: it was taken, and drops any record still
/// fetched) and polls until librdkafka says it is closed. Closing it here first and dropping it
/// after would make `Drop` close it a second time, which fails and logs
/// `ERROR Failed to close consumer queue on drop ... BrokerDestroy` on every normal run. With the
/// group coordinator unreachable and a request still queued for it (an outage) the close can take
/// until the broker is back: past `timeout` the thread is left to finish (or to end with the
/// process) with a warning, so that `run` returns.
fn close_consumer_within(consumer: BaseConsumer<GroupContext>, timeout: Duration) {
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    let closing = std::thread::Builder::new()
        .name("kstreams-consumer-close".into())
        .spawn(move || {
            drop(consumer);
            let _ = closed_tx.send(());
        });
    match closing {
        Ok(closing) => match closed_rx.recv_timeout(timeout) {
            Ok(()) => {
                let _ = closing.join();
            }
            Err(_) => tracing::warn!(
                ?timeout,
                "the consumer could not leave the group in time (broker unreachable?); \
                 leaving its close to a background thread"
            ),
        },
        // No thread for it: `spawn` dropped the closure, so the consumer was closed by its
        // `Drop` right here, without the bound.
        Err(e) => tracing::warn!(error = %e, "cannot spawn a thread to close the consumer"),
    }
}

fn committed_offset(committed: &TopicPartitionList, topic: &str, partition: i32) -> Option<i64> {
    committed
        .find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
}

/// Exactly-once: why a task's local state cannot be trusted (`None`: it can). It can only if its
/// recorded input position equals the group's committed offset for every input partition of the
/// task: then it reflects exactly the committed input. Ahead means it holds effects of input whose
/// transaction never committed (a crash); behind means it lost transactions (no fsync after a
/// power loss) or was never there.
fn untrusted_state(
    task: &Task,
    id: TaskId,
    committed: &TopicPartitionList,
) -> Result<Option<String>> {
    if task.state_path().is_none() {
        return Ok(None);
    }
    let pos = task.position()?;
    for topic in task.source_topics() {
        let local = pos.input(topic, id.partition);
        let group = committed_offset(committed, topic, id.partition);
        if local != group {
            return Ok(Some(format!(
                "local state of `{topic}` partition {} is at input offset {local:?}, the group \
                 committed {group:?}",
                id.partition
            )));
        }
    }
    Ok(None)
}

fn run_blocking(p: RunParams) -> Result<()> {
    let RunParams {
        topology,
        config,
        bootstrap,
        mock,
        shutdown,
        status,
    } = p;
    let span = tracing::info_span!("app", app = %config.application_id);
    let _g = span.enter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io {
            context: "building the start-up runtime".into(),
            source: e,
        })?;
    let context = GroupContext {
        engine: Mutex::new(None),
        generation: AtomicU64::new(0),
        revoked: Mutex::new(BTreeSet::new()),
        error: Mutex::new(None),
        last_failure: Mutex::new(None),
    };
    let consumer: BaseConsumer<GroupContext> = config
        .consumer_config(&bootstrap)
        .create_with_context(context)
        .map_err(redact_client_error)
        .map_err(kafka_err("creating the consumer"))?;
    rt.block_on(admin::prepare_topics(
        &topology,
        &config,
        &bootstrap,
        mock.as_ref(),
        &consumer,
    ))?;
    let restore: BaseConsumer<RestoreContext> = config
        .restore_consumer_config(&bootstrap)
        .create_with_context(RestoreContext)
        .map_err(redact_client_error)
        .map_err(kafka_err("creating the restore consumer"))?;
    let mut task_config = TaskConfig::new(config.application_id.clone(), config.state_dir.clone());
    task_config.lmdb = config.lmdb.clone();
    task_config.errors = config.errors.clone();
    let sink = Sink::new(&config, &bootstrap)?;
    *lock(&consumer.context().engine) = Some(Engine {
        topology: topology.clone(),
        task_config: Arc::new(task_config),
        config: config.clone(),
        sink,
        restore,
        tasks: BTreeMap::new(),
        processed: HashMap::new(),
        committed: HashMap::new(),
        status: status.clone(),
        observer: super::observe::Observer::new(&config), // observability hook
        bootstrap: bootstrap.clone(),
        transaction_failed: false,
        recoveries: 0,
    });
    let sources: Vec<String> = topology
        .source_topics()
        .iter()
        .map(|t| t.to_string())
        .collect();
    let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
    consumer
        .subscribe(&refs)
        .map_err(kafka_err("subscribing to the input topics"))?;
    lock(&status).running = true;
    tracing::info!(%bootstrap, topics = ?sources, "running");

    let result = processing_loop(&consumer, &config, &shutdown);

    // Shutdown: commit what is done (also after an error: what was processed before it is
    // sound), then close the stores, then leave the group.
    let final_commit = {
        let mut engine = lock(&consumer.context().engine);
        if shutdown.is_abort() {
            tracing::warn!("aborted: nothing flushed or committed since the last commit");
            // Dropping the producer purges what is in flight; the tasks close without a sync.
            drop(engine.take());
        }
        match engine.as_mut() {
            Some(e) if e.exactly_once() && result.is_err() => {
                // Exactly-once: nothing of a failed run is committed; the open transaction is
                // aborted and a restart rebuilds the state that went ahead of the committed input.
                tracing::warn!("exactly-once: aborting the open transaction after an error");
                let r = e.sink.abort_transaction();
                e.close_all();
                r
            }
            Some(e) => {
                let r = e.commit(&consumer, "shutdown");
                if r.is_err() && e.exactly_once() {
                    let _ = e.sink.abort_transaction();
                }
                e.close_all();
                r
            }
            None => Ok(()),
        }
    };
    let engine = lock(&consumer.context().engine).take();
    close_consumer_within(consumer, CONSUMER_CLOSE_TIMEOUT);
    drop(engine);
    lock(&status).running = false;
    tracing::info!("stopped");
    result.and(final_commit)
}

fn processing_loop(
    consumer: &BaseConsumer<GroupContext>,
    config: &AppConfig,
    shutdown: &ShutdownHandle,
) -> Result<()> {
    let ctx = consumer.context();
    let mut last_commit = Instant::now();
    loop {
        if let Some(e) = lock(&ctx.error).take() {
            return Err(e);
        }
        if shutdown.is_shutdown() {
            return Ok(());
        }
        let mut msgs: Vec<BorrowedMessage<'_>> = Vec::new();
        let mut round_deadline: Option<Instant> = None;
        while msgs.len() < config.batch_max_records {
            let timeout = match round_deadline {
                None => Duration::from_millis(100),
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            let generation = ctx.generation.load(Ordering::SeqCst);
            let polled = consumer.poll(timeout);
            if ctx.generation.load(Ordering::SeqCst) != generation {
                // A rebalance ran inside poll: records of revoked partitions polled before it
                // are fetched again from the committed offset by their next owner. (With the
                // default eager protocol every partition is revoked; with a cooperative one,
                // partitions kept go on where they were.)
                let revoked = std::mem::take(&mut *lock(&ctx.revoked));
                msgs.retain(|m| !revoked.contains(&(m.topic().to_owned(), m.partition())));
            }
            match polled {
                None => break,
                Some(Ok(m)) => {
                    msgs.push(m);
                    if round_deadline.is_none() {
                        round_deadline = Some(Instant::now() + config.batch_max_wait);
                    }
                }
                Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                    return Err(Error::Runtime(format!("fatal consumer error: {code}")));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
            }
        }
        {
            let mut engine = lock(&ctx.engine);
            let Some(engine) = engine.as_mut() else {
                return Err(Error::Internal("the engine is gone".into()));
            };
            // Also with no records: wall-clock punctuations fire on idle partitions too.
            engine.transaction_failed = false;
            let mut result = engine.process_round(&msgs);
            if result.is_ok() && last_commit.elapsed() >= config.commit_interval {
                result = engine.commit(consumer, "interval");
                last_commit = Instant::now();
            }
            if let Err(e) = result {
                // A failed commit before a revoke already stopped the app (`ctx.error`).
                if !engine.transaction_failed || lock(&ctx.error).is_some() {
                    return Err(e);
                }
                // Exactly-once: the records of this round are replayed from the committed
                // offsets; dropping them here is part of the rewind.
                engine.recover_transaction(consumer, e)?;
                last_commit = Instant::now();
            }
            engine.observer.tick(consumer, &engine.processed); // observability hook
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn offset_commit_failures_are_classified() {
        use rdkafka::types::RDKafkaErrorCode as C;
        let kind = |c| commit_failure(&KafkaError::ConsumerCommit(c));
        // An outage: the broker or the coordinator cannot be reached (yet).
        for c in [
            C::WaitingForCoordinator,
            C::BrokerTransportFailure,
            C::AllBrokersDown,
            C::OperationTimedOut,
            C::CoordinatorNotAvailable,
            C::NotCoordinator,
            C::CoordinatorLoadInProgress,
            C::RequestTimedOut,
        ] {
            assert_eq!(kind(c), CommitFailure::Retriable, "{c:?}");
        }
        // The session was lost (e.g. during a long outage) and the group went on.
        assert_eq!(kind(C::UnknownMemberId), CommitFailure::GroupMovedOn);
        assert_eq!(kind(C::IllegalGeneration), CommitFailure::GroupMovedOn);
        // Anything else stops the app.
        assert_eq!(kind(C::GroupAuthorizationFailed), CommitFailure::Fatal);
        assert_eq!(kind(C::OffsetMetadataTooLarge), CommitFailure::Fatal);
    }

    #[test]
    fn apps_tasks_and_the_engine_are_send() {
        assert_send::<App>();
        assert_send::<Task>();
        assert_send::<Engine>();
        assert_send::<ShutdownHandle>();
    }
}
