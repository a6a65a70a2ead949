//! The processing loop and the task lifecycle of one processing thread.
//!
//! Owns: [`Engine`] (the running tasks of this thread's assignment, the restorer, the partitions
//! assigned and those paused until their tasks are restored, the producer, the processed and
//! committed offsets), opening newly assigned tasks and starting them once restored (in the loop,
//! a bounded step per turn: [`Engine::restore_step`]), closing tasks on revocation, handing each
//! round of polled records to the running tasks, and the thread's start-up and shutdown
//! ([`run_blocking`]). May not touch: the commit protocol's steps (`commit`), the exactly-once
//! trust rule and recovery (`eos`), the rebalance callbacks (`rebalance`), the changelog reads
//! (`restore`), or records themselves (that is [`Task`]).
//!
//! Records are polled in rounds (at most `batch_max_records`, waiting at most `batch_max_wait`
//! once the first one arrived), grouped by task and topic in offset order and handed to the tasks
//! in task-id order. A task that reads several topics buffers its records (owned copies) and
//! takes them in timestamp order across its partitions ([`merge_runs`]), waiting for an input
//! partition with nothing buffered while it lags, and for `max_task_idle` once it is caught up
//! (Kafka Streams' partition group). Each batch commits its state and its input position in one LMDB
//! transaction; its outputs and changelog records are sent asynchronously, and committed by
//! [`commit`](super::commit) every `commit_interval`, before partitions are revoked and on
//! shutdown.
//!
//! At-least-once, stated plainly: when local state is ahead of the committed offset (the process
//! died between a state commit and the next offset commit), the input since the committed offset
//! is processed again, so aggregates may count it twice (a warning names the partition and the
//! number of records). A clean shutdown or a rebalance commits everything first, so neither ever
//! causes double counting.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::admin;
use super::app::{AppStatus, RunParams, ShutdownHandle};
use super::commit::{CONSUMER_CLOSE_TIMEOUT, close_consumer_within};
use super::config::{AppConfig, ProcessingGuarantee, redact_client_error};
use super::eos::committed_offset;
use super::fetch::{FetchQueue, Fetched};
use super::lock;
use super::observe;
use super::rebalance::GroupContext;
use super::restore::{Outcome, RestoreContext, Restorer, Restoring};
use super::sink::{Cause, Sink};
use crate::error::{Error, Result};
use crate::query::Queries;
use crate::record::RawRecord;
use crate::task::{Task, TaskConfig, TaskId, TaskOutput, merge_runs};
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
    /// The tasks being restored, with the restore consumer.
    pub(super) restorer: Restorer,
    /// The running tasks: restored, processing input.
    pub(super) tasks: BTreeMap<TaskId, Running>,
    /// Every input partition assigned to this thread's consumer (running, restoring or pending).
    pub(super) assignment: BTreeSet<(String, i32)>,
    /// Assigned partitions whose tasks the loop has not opened yet (the rebalance callback only
    /// records them); `true`: seek back to the committed offset once restored (exactly-once
    /// recovery).
    pub(super) pending: BTreeMap<(String, i32), bool>,
    /// The first offset polled and dropped of each partition whose task was not running yet:
    /// its task seeks back to it when it starts.
    pub(super) dropped: HashMap<(String, i32), i64>,
    /// Partitions resumed during this restore step whose fetchers are woken at its end
    /// ([`wake_fetchers`]).
    pub(super) resumed: TopicPartitionList,
    /// Next offset to process per input partition (this assignment).
    pub(super) processed: HashMap<(String, i32), i64>,
    /// The inputs of running tasks that read several topics: records polled and not processed
    /// yet (owned copies, timestamps extracted), processed in timestamp order across the task's
    /// partitions ([`Engine::process_ordered`]).
    pub(super) buffered: HashMap<(String, i32), VecDeque<Buffered>>,
    /// Of those partitions: the next offset the consumer fetches (the last record polled + 1,
    /// or where the task started), to tell whether an empty one has more records on the broker.
    pub(super) fetch_next: HashMap<(String, i32), i64>,
    /// Of those partitions, caught up and empty: since when (its task waits `max_task_idle`).
    pub(super) idle_since: HashMap<(String, i32), Instant>,
    /// The (empty) buffer a round's batches are built in, kept from round to round.
    pub(super) spare_batch: Vec<RawRecord<'static>>,
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
    /// At-least-once: the last interval commit stopped below what was processed (records were
    /// in flight); commit again as soon as nothing is (`kafka/commit.rs`).
    pub(super) behind: bool,
    /// Interactive queries: this thread's side of the app's registry.
    pub(super) queries: QueryHook,
}

/// A polled record of a task that reads several topics, kept until its turn comes.
#[derive(Debug)]
pub(super) struct Buffered {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    /// Extracted ([`Task::extract_timestamps`]).
    timestamp: i64,
    offset: i64,
    headers: crate::record::Headers,
}

impl Buffered {
    fn of(r: &RawRecord<'_>) -> Self {
        Buffered {
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            timestamp: r.timestamp,
            offset: r.offset,
            headers: r.headers.clone(),
        }
    }

    fn raw(&self) -> RawRecord<'_> {
        RawRecord {
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            timestamp: self.timestamp,
            offset: self.offset,
            headers: self.headers.clone(),
        }
    }
}

/// Whether a task may process its other inputs ahead of an input partition with nothing
/// buffered (Kafka Streams' `PartitionGroup::readyToProcess`): not while the partition's lag is
/// unknown or positive (its records are on the broker: wait for them), and once it is caught up
/// (`lag` 0), after `max_task_idle` from when it was first found so (`idle_since`).
pub(super) fn empty_input_ready(
    lag: Option<i64>,
    idle_since: Instant,
    now: Instant,
    max_task_idle: Duration,
) -> bool {
    match lag {
        Some(lag) if lag <= 0 => now.saturating_duration_since(idle_since) >= max_task_idle,
        _ => false,
    }
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
    move |source| Error::kafka(context, source)
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

    pub(super) fn open_task(&self, id: TaskId) -> Result<Task> {
        Task::new(&self.topology, id, self.task_config.clone())
    }

    /// Deletes a task's local state (`what` it is, for the message: untrusted, invalid) and opens
    /// the task again, empty.
    pub(super) fn reopen_wiped(&self, task: Task, id: TaskId, what: &str) -> Result<Task> {
        let path = task.state_path();
        drop(task);
        if let Some(path) = path.filter(|p| p.exists()) {
            std::fs::remove_dir_all(&path).map_err(|e| Error::Io {
                context: format!("removing {what} local state {}", path.display()),
                source: e,
            })?;
        }
        self.open_task(id)
    }

    /// Drops what is buffered of partition `key` (revoked, reassigned, or rewound).
    fn forget_buffered(&mut self, key: &(String, i32)) {
        self.buffered.remove(key);
        self.fetch_next.remove(key);
        self.idle_since.remove(key);
    }

    /// Whether some assigned task is not running yet (opening or restoring).
    pub(super) fn is_restoring(&self) -> bool {
        !self.pending.is_empty() || !self.restorer.is_empty()
    }

    /// The rebalance callback's side of an assignment: records the partitions and pauses their
    /// fetching until their tasks are restored. Quick: no request to the cluster; the processing
    /// loop opens and restores the tasks ([`restore_step`](Self::restore_step)).
    pub(super) fn assigned<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &[(String, i32)],
    ) {
        tracing::info!(?partitions, "partitions assigned");
        lock(&self.status).rebalances += 1;
        self.begin(consumer, partitions, false);
    }

    /// Records `partitions` as assigned and pending (`rewind`: seek back to the committed offsets
    /// once restored), and pauses the fetching of every assigned partition whose task is not
    /// running (librdkafka starts newly assigned partitions unpaused).
    pub(super) fn begin<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &[(String, i32)],
        rewind: bool,
    ) {
        for key in partitions {
            self.processed.remove(key);
            self.forget_buffered(key);
            self.assignment.insert(key.clone());
            let rewind = rewind || self.pending.get(key).copied().unwrap_or(false);
            self.pending.insert(key.clone(), rewind);
        }
        let mut paused = TopicPartitionList::new();
        let mut waiting = Vec::new();
        for (t, p) in &self.assignment {
            if self
                .task_id(t, *p)
                .is_some_and(|id| !self.tasks.contains_key(&id))
            {
                paused.add_partition(t, *p);
                waiting.push((t.clone(), *p));
            }
        }
        if paused.count() > 0
            && let Err(e) = consumer.pause(&paused)
        {
            // Records of a paused task that arrive anyway are dropped and fetched again.
            tracing::debug!(error = %e, "cannot pause partitions during restore");
        }
        lock(&self.status).restoring.extend(waiting);
        self.queries_restoring(partitions);
    }

    /// One turn of the restore, in the processing loop: opens the tasks of pending partitions,
    /// applies a bounded number of changelog records, and starts the tasks whose restore ended.
    pub(super) fn restore_step<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<()> {
        let result = self.restore_step_inner(consumer);
        if self.resumed.count() > 0 {
            let resumed = std::mem::replace(&mut self.resumed, TopicPartitionList::new());
            wake_fetchers(consumer, resumed);
        }
        result
    }

    fn restore_step_inner<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        self.open_pending(consumer)?;
        if self.restorer.is_empty() {
            return Ok(());
        }
        let (outcomes, applied) = self.restorer.step()?;
        self.queries_lags();
        if applied > 0 {
            lock(&self.status).restored_records += applied;
        }
        for outcome in outcomes {
            match outcome {
                Outcome::Done(r) => self.start_running(consumer, r)?,
                Outcome::LocalStateInvalid(r) => {
                    let (task, committed, rewind, _) = r.into_parts();
                    let id = task.id();
                    let task = self.reopen_wiped(task, id, "invalid")?;
                    self.restorer.add(Restoring::new(task, committed, rewind));
                }
            }
        }
        Ok(())
    }

    /// Restores every pending and restoring task to its end (exactly-once recovery, which
    /// stops processing anyway).
    pub(super) fn restore_all<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<()> {
        while self.is_restoring() {
            self.restore_step(consumer)?;
        }
        Ok(())
    }

    /// Opens the tasks of the pending partitions (trust rule first, under exactly-once) and hands
    /// them to the restorer.
    fn open_pending<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let committed = {
            let mut tpl = TopicPartitionList::new();
            for (t, p) in pending.keys() {
                tpl.add_partition(t, *p);
            }
            consumer
                .committed_offsets(tpl, self.config.startup_timeout)
                .ok()
        };
        let mut ids: BTreeMap<TaskId, bool> = BTreeMap::new();
        for ((t, p), rewind) in &pending {
            if let Some(id) = self.task_id(t, *p) {
                *ids.entry(id).or_default() |= *rewind;
            }
        }
        for (id, rewind) in ids {
            if self.tasks.contains_key(&id) {
                // A partition of a running task (co-partitioned topics assigned apart): it goes on
                // from the committed offset.
                let inputs: Vec<(String, i32)> = pending
                    .keys()
                    .filter(|(t, p)| self.task_id(t, *p) == Some(id))
                    .cloned()
                    .collect();
                self.resume(consumer, &inputs)?;
                continue;
            }
            if self.restorer.contains(id) {
                continue;
            }
            let span = tracing::info_span!("task", task = %id);
            let _g = span.enter();
            let mut task = self.open_task(id)?;
            if self.exactly_once() {
                let committed = committed.as_ref().ok_or_else(|| {
                    Error::Runtime(format!(
                        "cannot read the committed offsets of task {id}'s input: under \
                         exactly-once its local state cannot be checked against them"
                    ))
                })?;
                task = self.trusted_or_wiped(task, id, committed)?;
            }
            let committed = committed.as_ref().map(|c| {
                task.source_topics()
                    .map(|t| (t.to_owned(), committed_offset(c, t, id.partition)))
                    .collect()
            });
            self.restorer.add(Restoring::new(task, committed, rewind));
        }
        Ok(())
    }

    /// Resumes the fetching of `inputs`, first seeking each back to the first offset dropped
    /// while it was paused, if any.
    fn resume<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        inputs: &[(String, i32)],
    ) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for key in inputs {
            if let Some(first) = self.dropped.remove(key) {
                self.seek(consumer, key, Offset::Offset(first))?;
            }
            tpl.add_partition(&key.0, key.1);
        }
        consumer
            .resume(&tpl)
            .map_err(kafka_err("resuming the input of a restored task"))?;
        for key in inputs {
            self.resumed.add_partition(&key.0, key.1);
        }
        let mut st = lock(&self.status);
        for key in inputs {
            st.restoring.remove(key);
            st.assigned.insert(key.clone());
        }
        Ok(())
    }

    fn seek<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        (t, p): &(String, i32),
        to: Offset,
    ) -> Result<()> {
        consumer
            .seek(t, *p, to, self.config.startup_timeout)
            .map_err(kafka_err(format!("seeking `{t}` partition {p} to {to:?}")))
    }

    /// A task's restore ended: records (exactly-once) the input position its state reflects,
    /// seeks its input where it starts and resumes it.
    fn start_running<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        r: Restoring,
    ) -> Result<()> {
        let (mut task, committed, rewind, restored) = r.into_parts();
        let id = task.id();
        let span = tracing::info_span!("task", task = %id);
        let _g = span.enter();
        if let Some(committed) = &committed {
            if self.exactly_once() {
                // Restored up to the last stable offset: a replay of exactly the committed input.
                let positions: Vec<(&str, i64)> = committed
                    .iter()
                    .filter_map(|(t, o)| o.map(|o| (t.as_str(), o)))
                    .collect();
                task.record_restored_input_positions(&positions)?;
            }
            // At-least-once: if the local state already reflects input past the committed
            // offset (a crash between the state commit and the offset commit), that input is
            // processed again and its effects on state counted twice. A clean shutdown commits
            // everything, so it never happens after one.
            let pos = task.position()?;
            for (topic, group) in committed {
                let local = pos.input(topic, id.partition);
                if let (Some(local), Some(group)) = (local, *group)
                    && local > group
                {
                    tracing::warn!(%topic, partition = id.partition, local, committed = group,
                        "local state is ahead of the committed offset (unclean stop): {} records \
                         are processed again (at-least-once)", local - group);
                }
            }
        }
        let inputs: Vec<(String, i32)> = task
            .source_topics()
            .map(|t| (t.to_owned(), id.partition))
            .filter(|k| self.assignment.contains(k))
            .collect();
        if rewind {
            // Fetch again from the committed offsets: the records after them belong to an
            // aborted transaction or were never processed.
            for key in &inputs {
                self.dropped.remove(key);
                let to = committed
                    .as_ref()
                    .and_then(|c| c.get(&key.0).copied().flatten())
                    .map_or(Offset::Beginning, Offset::Offset);
                self.seek(consumer, key, to)?;
            }
        }
        if task.source_topics().nth(1).is_some() {
            // Where its input starts: nothing fetched of a partition whose lag is 0 means empty.
            for key in &inputs {
                match committed
                    .as_ref()
                    .and_then(|c| c.get(&key.0).copied().flatten())
                {
                    Some(at) => self.fetch_next.insert(key.clone(), at),
                    None => self.fetch_next.remove(key),
                };
            }
        }
        self.tasks.insert(
            id,
            Running {
                recorded: recorded_positions(&task)?,
                task,
                dirty: false,
            },
        );
        self.queries_running(id)?;
        self.resume(consumer, &inputs)?;
        tracing::debug!(restored, "task restored; processing its input");
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
        self.queries_gone(&ids);
        let mut closed = Ok(());
        for id in ids {
            if let Some(r) = self.tasks.remove(&id) {
                for t in r.task.changelog_topics().iter().flatten() {
                    self.sink.forget(t, id.partition);
                }
                drop(r);
            }
            // A task still restoring has no input position of its own: nothing to commit.
            let r = self.restorer.remove(id);
            if closed.is_ok() {
                closed = r;
            }
        }
        for p in partitions {
            self.sink.forget_input(&p.0, p.1);
            self.processed.remove(p);
            self.forget_buffered(p);
            self.pending.remove(p);
            self.dropped.remove(p);
            self.assignment.remove(p);
        }
        let mut st = lock(&self.status);
        for p in partitions {
            st.assigned.remove(p);
            st.restoring.remove(p);
        }
        drop(st);
        closed?;
        // A failed delivery is fatal; a failed offset commit during a rebalance is not (the
        // records are processed again by the new owner), except under exactly-once: the failed
        // transaction is aborted and the app stops (a restart rebuilds the state).
        match result {
            Err(Error::Kafka { .. }) if !self.exactly_once() => Ok(()),
            other => other,
        }
    }
    /// Closes every task, running or restoring (after a final commit by the caller). The
    /// assignment stays as it is.
    pub(super) fn close_all(&mut self) -> Result<()> {
        self.queries_closed_all();
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            if let Some(r) = self.tasks.remove(&id) {
                for t in r.task.changelog_topics().iter().flatten() {
                    self.sink.forget(t, id.partition);
                }
            }
        }
        self.pending.clear();
        self.dropped.clear();
        self.buffered.clear();
        self.fetch_next.clear();
        self.idle_since.clear();
        // Only this thread's partitions: the status is every thread's.
        let mut st = lock(&self.status);
        for p in &self.assignment {
            st.assigned.remove(p);
            st.restoring.remove(p);
        }
        drop(st);
        self.restorer.clear()
    }

    /// Hands a batch's outputs to the producer; `cause`: the input batch (topic, partition,
    /// first offset) whose watermark they hold until settled (`None`: a wall-clock punctuation).
    pub(super) fn send(&mut self, out: &TaskOutput, cause: Option<Cause<'_>>) -> Result<()> {
        self.observer.records_out(&out.records); // observability hook
        if out.skipped + out.dead_lettered + out.output_skipped + out.output_dead_lettered > 0 {
            let mut st = lock(&self.status);
            st.skipped_records += out.skipped;
            st.dead_lettered_records += out.dead_lettered;
            st.skipped_outputs += out.output_skipped;
            st.dead_lettered_outputs += out.output_dead_lettered;
        }
        let sent = self.sink.send(cause, &out.records, &out.changelog);
        if sent.is_err() && self.exactly_once() {
            self.transaction_failed = true;
        }
        sent
    }

    /// Hands one round of records to the tasks, in task-id order: a task that reads one topic
    /// gets its partition's records in offset order, as one batch; a task that reads several
    /// buffers them and processes what its inputs allow in timestamp order
    /// ([`process_ordered`](Self::process_ordered)).
    pub(super) fn process_round<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        msgs: &[Fetched<'_>],
    ) -> Result<()> {
        let now = now_ms();
        let mut groups: BTreeMap<(TaskId, &str), Vec<usize>> = BTreeMap::new();
        for (i, m) in msgs.iter().enumerate() {
            let topic = m.topic();
            if let Some(id) = self.task_id(topic, m.partition()) {
                groups.entry((id, topic)).or_default().push(i);
            }
        }
        let mut processed = 0u64;
        let mut ordered: Vec<TaskId> = Vec::new();
        let mut batch: Vec<RawRecord<'_>> = reuse_buffer(std::mem::take(&mut self.spare_batch));
        for ((id, topic), indices) in groups {
            let key = (topic.to_owned(), id.partition);
            let next = self.processed.get(&key).copied();
            let Some(running) = self.tasks.get_mut(&id) else {
                // Not running yet (fetched before its partition was paused): fetched again once
                // its task is restored.
                if self.assignment.contains(&key)
                    && let Some(first) = indices.first().map(|&i| msgs[i].offset())
                {
                    let at = self.dropped.entry(key).or_insert(first);
                    *at = (*at).min(first);
                }
                continue;
            };
            let several = running.task.source_topics().nth(1).is_some();
            // Buffered records are polled, not processed: not polled twice either.
            let next = match (next, several.then(|| self.fetch_next.get(&key)).flatten()) {
                (Some(a), Some(&b)) => Some(a.max(b)),
                (a, b) => a.or(b.copied()),
            };
            batch.clear();
            batch.extend(
                indices
                    .iter()
                    .map(|&i| &msgs[i])
                    .filter(|m| next.is_none_or(|n| m.offset() >= n))
                    .map(|m| m.raw_record(now)),
            );
            let Some(last) = batch.last().map(|r| r.offset) else {
                continue;
            };
            if several {
                running.task.extract_timestamps(topic, &mut batch);
                self.buffered
                    .entry(key.clone())
                    .or_default()
                    .extend(batch.iter().map(Buffered::of));
                self.fetch_next.insert(key.clone(), last + 1);
                self.idle_since.remove(&key);
                continue;
            }
            running.task.extract_timestamps(topic, &mut batch);
            processed += self.process_batch(id, topic, &batch, now)?;
        }
        self.spare_batch = reuse_buffer(batch);
        for (id, running) in &self.tasks {
            if running.task.source_topics().nth(1).is_some() {
                ordered.push(*id);
            }
        }
        for id in ordered {
            processed += self.process_ordered(consumer, id, now)?;
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
                    self.send(&out, None)?;
                }
            }
        }
        if processed > 0 {
            lock(&self.status).processed_records += processed;
        }
        Ok(())
    }

    /// Runs one batch of one partition of `topic` through task `id` (running) and hands its
    /// outputs to the producer; the records processed.
    fn process_batch(
        &mut self,
        id: TaskId,
        topic: &str,
        batch: &[RawRecord<'_>],
        now: i64,
    ) -> Result<u64> {
        let (Some(running), Some(last)) = (self.tasks.get_mut(&id), batch.last()) else {
            return Ok(0);
        };
        let next = last.offset + 1;
        // observability hook: the task span and the batch latency
        let span = tracing::info_span!("task", task = %id, topic, partition = id.partition);
        let began = Instant::now();
        let out = span.in_scope(|| running.task.process(topic, id.partition, batch, now))?;
        self.observer.batch(topic, batch.len(), began.elapsed());
        running.dirty = true;
        // Only records whose outputs were handed to the producer count as processed: a send
        // that fails leaves the batch uncommitted (it is processed again after a restart).
        let first = batch.first().map_or(last.offset, |r| r.offset);
        self.send(&out, Some((topic, id.partition, first)))?;
        if let Some(running) = self.tasks.get_mut(&id) {
            running.task.recycle(out);
        }
        self.processed
            .insert((topic.to_owned(), id.partition), next);
        Ok(batch.len() as u64)
    }

    /// Processes the buffered records of task `id` (running, several input topics) in timestamp
    /// order across its partitions ([`merge_runs`]: consecutive records of one partition are one
    /// batch), as far as its inputs allow: before a record is taken while an input partition has
    /// nothing buffered, that partition must be ready ([`empty_input_ready`]: caught up, and idle
    /// for `max_task_idle`); otherwise the rest waits for the next round. The records processed.
    fn process_ordered<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        id: TaskId,
        now: i64,
    ) -> Result<u64> {
        let Some(running) = self.tasks.get(&id) else {
            return Ok(0);
        };
        // In the topology's order (ties go to the source declared first), partitions of this
        // thread only (co-partitioned topics are assigned together).
        let keys: Vec<(String, i32)> = running
            .task
            .source_topics()
            .map(|t| (t.to_owned(), id.partition))
            .filter(|k| self.assignment.contains(k))
            .collect();
        let mut taken: Vec<VecDeque<Buffered>> = keys
            .iter()
            .map(|k| self.buffered.remove(k).unwrap_or_default())
            .collect();
        if taken.iter().all(VecDeque::is_empty) {
            return Ok(0);
        }
        let result = self.process_taken(consumer, id, &keys, &mut taken, now);
        for (k, q) in keys.into_iter().zip(taken) {
            if !q.is_empty() {
                self.buffered.insert(k, q);
            }
        }
        result
    }

    fn process_taken<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        id: TaskId,
        keys: &[(String, i32)],
        taken: &mut [VecDeque<Buffered>],
        now: i64,
    ) -> Result<u64> {
        let records: Vec<Vec<RawRecord<'_>>> = taken
            .iter()
            .map(|q| q.iter().map(Buffered::raw).collect())
            .collect();
        let slices: Vec<&[RawRecord<'_>]> = records.iter().map(Vec::as_slice).collect();
        let mut left: Vec<usize> = slices.iter().map(|s| s.len()).collect();
        let mut ready: Vec<Option<bool>> = vec![None; keys.len()];
        let instant = Instant::now();
        let mut done = vec![0usize; keys.len()];
        let mut processed = 0;
        for (i, range) in merge_runs(&slices) {
            let mut blocked = false;
            for (j, key) in keys.iter().enumerate() {
                if j == i || left[j] > 0 {
                    continue;
                }
                let r = *ready[j].get_or_insert_with(|| {
                    let lag = observe::cached_watermarks(consumer, &key.0, key.1)
                        .map(|(low, high)| high - self.fetch_next.get(key).copied().unwrap_or(low));
                    let since = *self.idle_since.entry(key.clone()).or_insert(instant);
                    if lag.is_some_and(|l| l > 0) || lag.is_none() {
                        self.idle_since.remove(key);
                    }
                    empty_input_ready(lag, since, instant, self.config.max_task_idle)
                });
                blocked |= !r;
            }
            if blocked {
                break;
            }
            let batch = &slices[i][range.clone()];
            processed += self.process_batch(id, &keys[i].0, batch, now)?;
            left[i] -= range.len();
            done[i] = range.end;
        }
        drop(slices);
        drop(records);
        for (q, n) in taken.iter_mut().zip(done) {
            q.drain(..n);
        }
        Ok(processed)
    }
}

fn group_consumer(config: &AppConfig, bootstrap: &str) -> Result<BaseConsumer<GroupContext>> {
    let context = GroupContext {
        engine: Mutex::new(None),
        generation: AtomicU64::new(0),
        revoked: Mutex::new(BTreeSet::new()),
        error: Mutex::new(None),
        fetch: Mutex::new(None),
        last_failure: Mutex::new(None),
    };
    config
        .consumer_config(bootstrap)
        .create_with_context(context)
        .map_err(redact_client_error)
        .map_err(kafka_err("creating the consumer"))
}

/// What every processing thread shares.
struct Shared {
    topology: Topology,
    config: AppConfig,
    bootstrap: String,
    shutdown: ShutdownHandle,
    status: Arc<Mutex<AppStatus>>,
    /// A thread stopped with an error: the others stop too (gracefully).
    failed: Arc<AtomicBool>,
    queries: Queries,
    /// The global stores, read-only, for every task.
    global: Option<crate::store::StoreReader>,
}

/// The app: start-up checks once, then `num_threads` processing threads, each with its own
/// consumer in the group, restore consumer, producer and tasks ([`run_thread`]); thread 0 runs
/// on the calling thread. Returns once every thread stopped: the first error, if any.
pub(super) fn run_blocking(p: RunParams) -> Result<()> {
    let RunParams {
        topology,
        config,
        bootstrap,
        mock,
        shutdown,
        status,
        queries,
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
    // Every thread's consumer is created here, so that they all know the cluster (and the group
    // coordinator) by the time they subscribe, together: they join the group's first generation
    // instead of rebalancing it one after the other.
    let mut consumers = (0..config.num_threads)
        .map(|_| group_consumer(&config, &bootstrap))
        .collect::<Result<Vec<_>>>()?
        .into_iter();
    let consumer = consumers
        .next()
        .ok_or_else(|| Error::Internal("no consumer for processing thread 0".into()))?;
    let (partitions, counts) = rt.block_on(admin::prepare_topics(
        &topology,
        &config,
        &bootstrap,
        mock.as_ref(),
        &consumer,
    ))?;
    queries_partitions(&queries, &topology, &partitions);
    drop(rt);
    let failed = Arc::new(AtomicBool::new(false));
    // Global tables: restored to their end before any task processes, then kept up to date
    // on a thread of their own.
    let (global, global_reader) = match start_global(
        &topology, &config, &bootstrap, &counts, &shutdown, &failed, &span, &queries,
    )? {
        Some((thread, reader)) => (Some(thread), Some(reader)),
        None => (None, None),
    };
    // Exactly-once: one transactional id per processing thread, read here once (the first
    // start creates the process id file).
    let transactional_ids: Vec<Option<String>> = (0..config.num_threads)
        .map(|i| {
            (config.guarantee == ProcessingGuarantee::ExactlyOnce)
                .then(|| config.transactional_id_of_thread(i))
                .transpose()
        })
        .collect::<Result<_>>()?;
    let shared = Arc::new(Shared {
        topology,
        config,
        bootstrap,
        shutdown,
        status,
        failed,
        queries,
        global: global_reader,
    });
    let mut threads = Vec::new();
    let mut spawned = Ok(());
    for ((i, tid), c) in transactional_ids.iter().enumerate().skip(1).zip(consumers) {
        let (this, tid, span) = (shared.clone(), tid.clone(), span.clone());
        let thread = std::thread::Builder::new()
            .name(format!("kstreams-{}-{i}", shared.config.application_id))
            .spawn(move || {
                let _g = span.enter();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_thread(&this, i, c, tid)
                }))
                .unwrap_or_else(|_| {
                    Err(Error::Internal(format!("processing thread {i} panicked")))
                });
                if result.is_err() {
                    this.failed.store(true, Ordering::SeqCst);
                }
                result
            });
        match thread {
            Ok(t) => threads.push(t),
            Err(e) => {
                shared.failed.store(true, Ordering::SeqCst);
                spawned = Err(Error::Io {
                    context: format!("spawning processing thread {i}"),
                    source: e,
                });
                break;
            }
        }
    }
    let mut result = match spawned {
        Ok(()) => {
            let tid = transactional_ids.into_iter().next().flatten();
            let r = run_thread(&shared, 0, consumer, tid);
            if r.is_err() {
                shared.failed.store(true, Ordering::SeqCst);
            }
            r
        }
        Err(e) => Err(e),
    };
    for (i, t) in threads.into_iter().enumerate() {
        let r = t.join().unwrap_or_else(|_| {
            Err(Error::Internal(format!(
                "processing thread {} panicked",
                i + 1
            )))
        });
        if result.is_ok() {
            result = r;
        }
    }
    if let Some(g) = global {
        let r = g.join();
        shared.queries.global_gone();
        if result.is_ok() {
            result = r;
        }
    }
    lock(&shared.status).running = false;
    tracing::info!("stopped");
    result
}

/// The global tables' thread of a running app ([`start_global`]); dropped without
/// [`join`](Self::join) (a start-up error after it started), it stops the thread too.
struct GlobalThread {
    thread: Option<std::thread::JoinHandle<Result<()>>>,
    stop: Arc<AtomicBool>,
}

impl GlobalThread {
    /// Stops the thread (once the processing threads stopped) and returns its result.
    fn join(mut self) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("the global thread panicked".into()))),
            None => Ok(()),
        }
    }
}

impl Drop for GlobalThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Opens the global state (`<state dir>/<application id>/global`), restores it to the end of
/// the global topics and starts the thread that keeps it up to date; `None` without global
/// tables. Returns the thread and a read-only view of the global state for the tasks. Queries
/// of the global stores answer `Restoring` (with their lags) until the restore ends, then from
/// the global state.
#[allow(clippy::too_many_arguments)]
fn start_global(
    topology: &Topology,
    config: &AppConfig,
    bootstrap: &str,
    counts: &BTreeMap<String, i32>,
    shutdown: &ShutdownHandle,
    failed: &Arc<AtomicBool>,
    span: &tracing::Span,
    queries: &Queries,
) -> Result<Option<(GlobalThread, crate::store::StoreReader)>> {
    let tables = super::global::tables(topology);
    let Some(mut global) = super::global::Global::open(&tables, counts, config, bootstrap)? else {
        return Ok(None);
    };
    let reader = global.state().reader()?;
    queries.global_restoring();
    if let Err(e) = global.restore(shutdown, &mut |store, lag| queries.global_lag(store, lag)) {
        queries.global_gone();
        return Err(e);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let thread = global
        .spawn(shutdown.clone(), failed.clone(), stop.clone(), span.clone())
        .inspect_err(|_| queries.global_gone())?;
    if !shutdown.is_shutdown() {
        queries.global_running(reader.clone());
    }
    let thread = Some(thread);
    Ok(Some((GlobalThread { thread, stop }, reader)))
}

/// One processing thread: its engine (restore consumer, producer, tasks) around `consumer`, the
/// loop, and its shutdown.
fn run_thread(
    shared: &Shared,
    index: usize,
    consumer: BaseConsumer<GroupContext>,
    transactional_id: Option<String>,
) -> Result<()> {
    let Shared {
        topology,
        config,
        bootstrap,
        shutdown,
        status,
        failed,
        queries,
        global,
    } = shared;
    let span = (config.num_threads > 1).then(|| tracing::info_span!("thread", thread = index));
    let _g = span.as_ref().map(|s| s.enter());
    let restore_consumer: BaseConsumer<RestoreContext> = config
        .restore_consumer_config(bootstrap)
        .create_with_context(RestoreContext)
        .map_err(redact_client_error)
        .map_err(kafka_err("creating the restore consumer"))?;
    let mut task_config = TaskConfig::new(config.application_id.clone(), config.state_dir.clone());
    task_config.lmdb = config.lmdb.clone();
    task_config.errors = config.errors.clone();
    task_config.global_stores = global.clone();
    let sink = Sink::new(config, bootstrap, transactional_id.as_deref())?;
    *lock(&consumer.context().engine) = Some(Engine {
        topology: topology.clone(),
        task_config: Arc::new(task_config),
        config: config.clone(),
        sink,
        restorer: Restorer::new(
            restore_consumer,
            config.restore_batch_records,
            config.startup_timeout,
            config.guarantee == ProcessingGuarantee::ExactlyOnce,
        ),
        tasks: BTreeMap::new(),
        assignment: BTreeSet::new(),
        pending: BTreeMap::new(),
        dropped: HashMap::new(),
        resumed: TopicPartitionList::new(),
        processed: HashMap::new(),
        buffered: HashMap::new(),
        fetch_next: HashMap::new(),
        idle_since: HashMap::new(),
        spare_batch: Vec::new(),
        committed: HashMap::new(),
        status: status.clone(),
        observer: super::observe::Observer::new(config), // observability hook
        bootstrap: bootstrap.clone(),
        transactional_id,
        transaction_failed: false,
        recoveries: 0,
        behind: false,
        queries: QueryHook {
            queries: queries.clone(),
            thread: index,
        },
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
    // Before the first poll (assignments happen inside it). Taken out again before the consumer
    // is closed: the queue must not outlive the consumer's handle.
    *lock(&consumer.context().fetch) = FetchQueue::new(&consumer).map(Arc::new);
    lock(status).running = true;
    tracing::info!(%bootstrap, topics = ?sources, "running");

    let result = processing_loop(&consumer, config, shutdown, failed);

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
                let closed = e.close_all();
                r.and(closed)
            }
            Some(e) => {
                let r = e.commit(&consumer, "shutdown");
                if r.is_err() && e.exactly_once() {
                    let _ = e.sink.abort_transaction();
                }
                let closed = e.close_all();
                r.and(closed)
            }
            None => Ok(()),
        }
    };
    let engine = lock(&consumer.context().engine).take();
    drop(lock(&consumer.context().fetch).take());
    close_consumer_within(consumer, CONSUMER_CLOSE_TIMEOUT);
    drop(engine);
    queries.all_gone(index);
    if let (Err(_), Err(e)) = (&result, &final_commit) {
        // The run's own error is returned; this one would be lost.
        tracing::warn!(error = %e, "the commit at the stop after the error failed too: the next \
            start restores or reprocesses from the last commit that succeeded");
    }
    result.and(final_commit)
}

/// How often the loop routes the assigned partitions to the fetch queue again (see
/// `processing_loop`).
const REROUTE_EVERY: Duration = Duration::from_millis(100);

fn processing_loop(
    consumer: &BaseConsumer<GroupContext>,
    config: &AppConfig,
    shutdown: &ShutdownHandle,
    failed: &AtomicBool,
) -> Result<()> {
    let ctx = consumer.context();
    let fetch = lock(&ctx.fetch).clone();
    let mut last_commit = Instant::now();
    let mut last_route = Instant::now();
    // Whether a task is being restored: then the loop does not wait on the group consumer (the
    // restore step waits on the restore consumer instead).
    let mut restoring = false;
    // The round's records; the buffer is kept from round to round.
    let mut msgs: Vec<Fetched<'_>> = Vec::with_capacity(config.batch_max_records.min(65_536));
    loop {
        if let Some(e) = lock(&ctx.error).take() {
            return Err(e);
        }
        if shutdown.is_shutdown() || failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        msgs.clear();
        let mut round_deadline: Option<Instant> = None;
        // Partitions revoked during this round: their records are dropped from it.
        let mut revoked: BTreeSet<(String, i32)> = BTreeSet::new();
        // With nothing assigned no record can come, and the round waits on the group consumer,
        // not the fetch queue: the assignment's callback runs as soon as the group answers (it
        // waited for the fetch queue's timeout, 100 ms of every start-up).
        let unassigned = lock(&ctx.engine)
            .as_ref()
            .is_some_and(|e| e.assignment.is_empty());
        while msgs.len() < config.batch_max_records {
            let timeout = match round_deadline {
                None if restoring => Duration::ZERO,
                None => Duration::from_millis(100),
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            let before = msgs.len();
            // The consumer queue: rebalance callbacks, errors, and the records of partitions not
            // routed to the fetch queue (which, when there is one, is where the round waits).
            let generation = ctx.generation.load(Ordering::SeqCst);
            let polled = consumer.poll(if fetch.is_some() && !unassigned {
                Duration::ZERO
            } else {
                timeout
            });
            if ctx.generation.load(Ordering::SeqCst) != generation {
                // A rebalance ran inside poll: records of revoked partitions polled before it
                // are fetched again from the committed offset by their next owner. (With the
                // default eager protocol every partition is revoked; with a cooperative one,
                // partitions kept go on where they were.)
                revoked.extend(std::mem::take(&mut *lock(&ctx.revoked)));
                msgs.retain(|m| !revoked.contains(&(m.topic().to_owned(), m.partition())));
            }
            // After a rebalance the round ends without waiting on the fetch queue, so that the
            // tasks it assigned start their restore now (it was up to 100 ms later).
            let mut end_round = ctx.generation.load(Ordering::SeqCst) != generation;
            match polled {
                None => {}
                Some(Ok(m)) => msgs.push(Fetched::Polled(m)),
                Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                    return Err(Error::Runtime(format!("fatal consumer error: {code}")));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    end_round = true;
                }
            }
            if let Some(queue) = fetch.as_deref()
                && !end_round
            {
                let got = msgs.len();
                // The first record of a round is waited for alone: the round's `batch_max_wait`
                // starts when it arrives.
                let max = match round_deadline {
                    None if got == 0 => 1,
                    _ => config.batch_max_records.saturating_sub(got),
                };
                let wait = if got > before || unassigned {
                    Duration::ZERO
                } else {
                    timeout
                };
                queue.consume(wait, max, &mut msgs);
                end_round = take_errors(&mut msgs, got)?;
                if !revoked.is_empty() {
                    msgs.retain(|m| !revoked.contains(&(m.topic().to_owned(), m.partition())));
                }
            }
            if end_round || msgs.len() <= before {
                break;
            }
            if round_deadline.is_none() {
                round_deadline = Some(Instant::now() + config.batch_max_wait);
            }
        }
        {
            let mut engine = lock(&ctx.engine);
            let Some(engine) = engine.as_mut() else {
                return Err(Error::Internal("the engine is gone".into()));
            };
            // Also with no records: wall-clock punctuations fire on idle partitions too.
            engine.transaction_failed = false;
            let mut result = engine.process_round(consumer, &msgs);
            msgs.clear();
            if result.is_ok() {
                // A bounded step: the group consumer is polled again soon.
                result = engine.restore_step(consumer);
            }
            if result.is_ok() && last_commit.elapsed() >= config.commit_interval {
                result = engine.commit(consumer, "interval");
                last_commit = Instant::now();
                if result.is_ok() {
                    engine.queries_pin_committed();
                }
            } else if result.is_ok() && engine.caught_up() {
                // The last interval commit stopped at a watermark and everything is acknowledged
                // now (the input paused or ended): commit the rest without waiting an interval.
                result = engine.commit(consumer, "interval");
                if result.is_ok() {
                    engine.queries_pin_committed();
                }
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
            // librdkafka clears a partition's forwarding when a previous assignment's fetch
            // stops, keeping the flag that stops the next fetch start from forwarding it to
            // the consumer queue: a stop still pending when the assign callback routed the
            // partition (an eager rebalance that came back fast) would leave its records
            // forwarded nowhere. Routing the assignment again now and then repairs that (what
            // the partition kept moves over in order; routing a routed partition changes
            // nothing).
            if let Some(queue) = fetch.as_deref()
                && last_route.elapsed() >= REROUTE_EVERY
            {
                let assigned: Vec<(String, i32)> = engine.assignment.iter().cloned().collect();
                queue.route(&assigned);
                last_route = Instant::now();
            }
            restoring = engine.is_restoring();
            engine.observer.tick(consumer, &engine.processed); // observability hook
        }
    }
}

/// How long [`wake_fetchers`] waits for its ListOffsets reply.
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// Wakes the broker threads that fetch `resumed` partitions. librdkafka's resume only clears
/// the pause flag: a broker thread with no partition to fetch idles on its socket for up to a
/// second (`rd_kafka_max_block_ms`) before it looks at its partitions again, so a task's input
/// resumed after its restore would start up to a second late (measured: 1.0 s from resume to the
/// first batch of `kafka_bench count` on a fresh group, 18 ms for `map`, whose tasks start
/// before the partitions' fetch does). A request to each partition's leader wakes its thread:
/// one ListOffsets (latest) for them all, one round trip per leader. Only latency is at stake, so
/// a failure is logged at debug and ignored, and the wait is bounded by [`WAKE_TIMEOUT`] (no
/// longer than the idle second it saves).
fn wake_fetchers<C: ConsumerContext>(consumer: &BaseConsumer<C>, mut resumed: TopicPartitionList) {
    // The ListOffsets "timestamp" -1 asks for the latest offset.
    if let Err(e) = resumed.set_all_offsets(Offset::End) {
        tracing::debug!(error = %e, "cannot wake the fetchers of resumed partitions");
    } else if let Err(e) = consumer.offsets_for_times(resumed, WAKE_TIMEOUT) {
        tracing::debug!(error = %e, "cannot wake the fetchers of resumed partitions");
    }
}

/// An emptied record buffer with its allocation, for records of another lifetime (the collect
/// of an empty vector's `into_iter` reuses the allocation: same type but for the lifetime).
// The filter_map changes the element type's lifetime (`filter` would keep it); it never runs.
#[allow(clippy::unnecessary_filter_map)]
fn reuse_buffer<'b>(mut v: Vec<RawRecord<'_>>) -> Vec<RawRecord<'b>> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// Removes the consumer errors librdkafka delivered in place of records among `msgs[from..]`,
/// handled as `poll`'s are: a fatal one stops the thread, any other is logged and ends the round
/// (`true`). The records around them stay, in order.
fn take_errors(msgs: &mut Vec<Fetched<'_>>, from: usize) -> Result<bool> {
    let mut failed = false;
    let mut fatal = None;
    let mut i = from;
    while i < msgs.len() {
        match msgs[i].error() {
            None => i += 1,
            Some(e) => {
                msgs.remove(i);
                match e {
                    KafkaError::MessageConsumptionFatal(code) => {
                        fatal.get_or_insert(code);
                    }
                    e => tracing::warn!(error = %e, "consumer error"),
                }
                failed = true;
            }
        }
    }
    match fatal {
        Some(code) => Err(Error::Runtime(format!("fatal consumer error: {code}"))),
        None => Ok(failed),
    }
}

/// Interactive queries: a processing thread's side of the app's registry ([`Queries`]).
pub(super) struct QueryHook {
    pub(super) queries: Queries,
    /// The processing thread's index (entries are removed only by their owner).
    pub(super) thread: usize,
}

/// Interactive queries: the partition counts the start-up checks found, per sub-topology.
fn queries_partitions(queries: &Queries, topology: &Topology, partitions: &[i32]) {
    let ids = topology.subtopologies().iter().map(|s| s.id);
    queries.set_partitions(ids.zip(partitions.iter().copied()));
}

/// Interactive queries: what the registry hears of this thread's tasks (Q1's hooks).
impl Engine {
    /// The tasks of newly assigned `partitions` that do not run yet are being restored.
    fn queries_restoring(&self, partitions: &[(String, i32)]) {
        let ids: BTreeSet<TaskId> = partitions
            .iter()
            .filter_map(|(t, p)| self.task_id(t, *p))
            .filter(|id| !self.tasks.contains_key(id))
            .collect();
        self.queries.queries.restoring(self.queries.thread, ids);
    }

    /// The lags of the stores being restored.
    fn queries_lags(&self) {
        let lags = self.restorer.lags();
        self.queries.queries.restore_lags(self.queries.thread, lags);
    }

    /// Task `id` runs: its stores answer queries (its restored state is committed state).
    fn queries_running(&self, id: TaskId) -> Result<()> {
        if let Some(r) = self.tasks.get(&id) {
            let reader = r.task.store_reader()?;
            self.queries
                .queries
                .running(self.queries.thread, id, reader);
            if self.queries.queries.pins_committed() {
                self.pin_committed(id, &r.task);
            }
        }
        Ok(())
    }

    /// After a commit: read-committed queries answer from the state as it is now, if every
    /// offset processed was committed (at-least-once, a group that moved on commits nothing).
    fn queries_pin_committed(&self) {
        let all_committed = self
            .processed
            .iter()
            .all(|(k, v)| self.committed.get(k) == Some(v));
        if all_committed && self.queries.queries.pins_committed() {
            for (id, r) in &self.tasks {
                self.pin_committed(*id, &r.task);
            }
        }
    }

    /// A failed pin leaves the previous snapshot (older, still committed) in place.
    fn pin_committed(&self, id: TaskId, task: &Task) {
        if let Err(e) = task.pin_committed() {
            tracing::warn!(task = %id, error = %e, "cannot pin the committed state for \
                read-committed queries; they answer the previous commit's state");
        }
    }

    /// Every task closed, the assignment kept (exactly-once recovery reopens them; at shutdown
    /// `run_thread` removes them): restoring meanwhile, not "not here".
    fn queries_closed_all(&self) {
        let ids: BTreeSet<TaskId> = self
            .assignment
            .iter()
            .filter_map(|(t, p)| self.task_id(t, *p))
            .collect();
        self.queries.queries.reopening(self.queries.thread, ids);
    }

    /// Tasks closed on revocation.
    fn queries_gone(&self, ids: &BTreeSet<TaskId>) {
        let ids = ids.iter().copied();
        self.queries.queries.gone(self.queries.thread, ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::App;

    fn assert_send<T: Send>() {}

    #[test]
    fn an_empty_input_holds_its_task_while_it_lags_and_for_max_task_idle_once_caught_up() {
        let t0 = Instant::now();
        let idle = Duration::from_millis(100);
        let later = t0 + Duration::from_millis(150);
        // Lag unknown or positive: wait, however long.
        assert!(!empty_input_ready(None, t0, later, Duration::ZERO));
        assert!(!empty_input_ready(Some(3), t0, later, Duration::ZERO));
        // Caught up: at once with the default 0, else after max_task_idle.
        assert!(empty_input_ready(Some(0), t0, t0, Duration::ZERO));
        assert!(!empty_input_ready(
            Some(0),
            t0,
            t0 + Duration::from_millis(99),
            idle
        ));
        assert!(empty_input_ready(Some(0), t0, later, idle));
    }

    /// The round's record buffer keeps its allocation from round to round.
    #[test]
    fn a_reused_record_buffer_keeps_its_allocation_and_nothing_else() {
        let bytes = vec![1u8, 2, 3];
        let mut v: Vec<RawRecord<'_>> = Vec::with_capacity(100);
        v.push(RawRecord {
            key: Some(&bytes),
            value: None,
            timestamp: 0,
            offset: 0,
            headers: crate::record::Headers::default(),
        });
        let ptr = v.as_ptr() as usize;
        let kept: Vec<RawRecord<'static>> = reuse_buffer(v);
        assert!(kept.is_empty());
        assert!(kept.capacity() >= 100);
        assert_eq!(kept.as_ptr() as usize, ptr);
    }

    #[test]
    fn apps_tasks_and_the_engine_are_send() {
        assert_send::<App>();
        assert_send::<Task>();
        assert_send::<Engine>();
        assert_send::<ShutdownHandle>();
    }
}
