//! The processing loop and the task lifecycle of one processing thread.
//!
//! Owns: [`Engine`] (the tasks of this thread's assignment, the producer, the restore consumer,
//! the processed and committed offsets), opening and restoring tasks on assignment, closing them
//! on revocation, handing each round of polled records to the tasks, and the thread's start-up
//! and shutdown ([`run_blocking`]). May not touch: the commit protocol's steps (`commit`), the
//! exactly-once trust rule and recovery (`eos`), the rebalance callbacks (`rebalance`), or
//! records themselves (that is [`Task`]).
//!
//! Records are polled in rounds (at most `batch_max_records`, waiting at most `batch_max_wait`
//! once the first one arrived), grouped by task and topic in offset order and handed to the tasks
//! in task-id order. Each batch commits its state and its input position in one LMDB
//! transaction; its outputs and changelog records are sent asynchronously, and committed by
//! [`commit`](super::commit) every `commit_interval`, before partitions are revoked and on
//! shutdown.
//!
//! At-least-once, stated plainly: when local state is ahead of the committed offset (the process
//! died between a state commit and the next offset commit), the input since the committed offset
//! is processed again, so aggregates may count it twice (a warning names the partition and the
//! number of records). A clean shutdown or a rebalance commits everything first, so neither ever
//! causes double counting.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};

use super::admin;
use super::app::{AppStatus, RunParams, ShutdownHandle};
use super::commit::{CONSUMER_CLOSE_TIMEOUT, close_consumer_within};
use super::config::{AppConfig, ProcessingGuarantee, redact_client_error};
use super::convert::raw_record;
use super::eos::committed_offset;
use super::lock;
use super::rebalance::GroupContext;
use super::restore::{RestoreContext, Restored, restore_task};
use super::sink::Sink;
use crate::error::{Error, Result};
use crate::record::RawRecord;
use crate::task::{Task, TaskConfig, TaskId, TaskOutput};
use crate::topology::Topology;

/// A task with the changelog offsets its LMDB environment last recorded.
pub(super) struct Running {
    pub(super) task: Task,
    pub(super) recorded: Vec<Option<i64>>,
    pub(super) dirty: bool,
}

/// Everything the processing thread and the rebalance callbacks share.
pub(super) struct Engine {
    pub(super) topology: Topology,
    pub(super) task_config: Arc<TaskConfig>,
    pub(super) config: AppConfig,
    pub(super) sink: Sink,
    pub(super) restore: BaseConsumer<RestoreContext>,
    pub(super) tasks: BTreeMap<TaskId, Running>,
    /// Next offset to process per input partition (this assignment).
    pub(super) processed: HashMap<(String, i32), i64>,
    pub(super) committed: HashMap<(String, i32), i64>,
    pub(super) status: Arc<Mutex<AppStatus>>,
    pub(super) observer: super::observe::Observer, // observability hook
    /// The cluster, to replace a failed transactional producer.
    pub(super) bootstrap: String,
    /// Exactly-once: the producer's `transactional.id` (kept to replace a failed producer).
    pub(super) transactional_id: Option<String>,
    /// Exactly-once: the last error came from the open transaction (a send, a delivery, the
    /// offsets or the commit), not from processing: it can be aborted and the input replayed.
    pub(super) transaction_failed: bool,
    /// Exactly-once: transactions aborted and replayed since the last successful commit.
    pub(super) recoveries: u32,
}

/// The changelog offsets a task's LMDB environment recorded, one per store.
fn recorded_positions(task: &Task) -> Result<Vec<Option<i64>>> {
    let pos = task.position()?;
    Ok(task
        .stores()
        .iter()
        .map(|s| pos.changelog(s.name()))
        .collect())
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(super) fn kafka_err(context: impl Into<String>) -> impl FnOnce(KafkaError) -> Error {
    let context = context.into();
    move |source| Error::Kafka { context, source }
}

impl Engine {
    pub(super) fn exactly_once(&self) -> bool {
        self.config.guarantee == ProcessingGuarantee::ExactlyOnce
    }

    pub(super) fn task_id(&self, topic: &str, partition: i32) -> Option<TaskId> {
        self.topology.subtopology_of(topic).map(|s| TaskId {
            subtopology: s.id,
            partition,
        })
    }

    pub(super) fn open_task(&self, id: TaskId) -> Result<Running> {
        let task = Task::new(&self.topology, id, self.task_config.clone())?;
        Ok(Running {
            recorded: recorded_positions(&task)?,
            task,
            dirty: false,
        })
    }

    /// Restores a task's changelogged stores from the changelog offsets its state recorded.
    fn restore(&self, running: &mut Running) -> Result<Restored> {
        restore_task(
            &self.restore,
            &mut running.task,
            self.config.restore_batch_records,
            self.config.startup_timeout,
            self.exactly_once(),
        )
    }

    /// Deletes a task's local state (`what` it is, for the message: untrusted, invalid) and opens
    /// the task again, empty.
    pub(super) fn reopen_wiped(&self, running: Running, id: TaskId, what: &str) -> Result<Running> {
        let path = running.task.state_path();
        drop(running);
        if let Some(path) = path.filter(|p| p.exists()) {
            std::fs::remove_dir_all(&path).map_err(|e| Error::Io {
                context: format!("removing {what} local state {}", path.display()),
                source: e,
            })?;
        }
        self.open_task(id)
    }

    /// Creates and restores the tasks of newly assigned partitions.
    pub(super) fn assign<C: ConsumerContext>(
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
                running = self.trusted_or_wiped(running, id, committed)?;
            }
            let mut outcome = self.restore(&mut running)?;
            if outcome == Restored::LocalStateInvalid {
                running = self.reopen_wiped(running, id, "invalid")?;
                outcome = self.restore(&mut running)?;
            }
            if let Restored::Done(n) = outcome {
                restored_total += n;
                metrics::counter!("kstreams_restored_records_total").increment(n);
            }
            running.recorded = recorded_positions(&running.task)?;
            // At-least-once: if the local state already reflects input past the committed
            // offset (a crash between the state commit and the offset commit), that input is
            // processed again and its effects on state counted twice. A clean shutdown commits
            // everything, so it never happens after one.
            if let Some(committed) = &committed {
                let pos = running.task.position()?;
                for topic in running.task.source_topics() {
                    let local = pos.input(topic, id.partition);
                    let group = committed_offset(committed, topic, id.partition);
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
    pub(super) fn revoke<C: ConsumerContext>(
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
    /// Closes every task (after a final commit by the caller).
    pub(super) fn close_all(&mut self) {
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

    pub(super) fn send(&mut self, out: &TaskOutput) -> Result<()> {
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
    pub(super) fn process_round(&mut self, msgs: &[BorrowedMessage<'_>]) -> Result<()> {
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
}

pub(super) fn run_blocking(p: RunParams) -> Result<()> {
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
    // Exactly-once: one transactional id per processing thread (one thread today).
    let transactional_id = (config.guarantee == ProcessingGuarantee::ExactlyOnce)
        .then(|| config.transactional_id_of_thread(0))
        .transpose()?;
    let sink = Sink::new(&config, &bootstrap, transactional_id.as_deref())?;
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
        transactional_id,
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
    use crate::kafka::App;

    fn assert_send<T: Send>() {}

    #[test]
    fn apps_tasks_and_the_engine_are_send() {
        assert_send::<App>();
        assert_send::<Task>();
        assert_send::<Engine>();
        assert_send::<ShutdownHandle>();
    }
}
