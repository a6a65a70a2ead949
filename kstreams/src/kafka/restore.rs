//! Restoration: bringing a task's stores up to date from their changelog topics, a bounded
//! number of changelog records per turn of the processing loop.
//!
//! Owns: [`Restorer`] (the restore consumer and the tasks it is restoring) and the state of each
//! store's restore. For each store with a changelog, a task's restore reads the changelog
//! partition from the offset the task's LMDB environment recorded (`Position::changelog`) to the
//! high watermark read when that store's restore begins, in batches, each written with
//! [`Task::restore`] (one state transaction that also records the next changelog offset:
//! invariant 5). It never processes input, and it never waits: each call of
//! [`Restorer::step`] applies at most `restore_batch_records` changelog records (polled for at
//! most [`STEP_WAIT`]) and returns, so the processing loop keeps polling the group consumer
//! (within `max.poll.interval.ms`) and keeps processing the tasks that are already running.
//!
//! A table's store whose source topic is its changelog (`StoreSpec::source_changelog`) restores
//! from that topic's partition, from where its state stands (its restore offset or the task's
//! input offset of the topic, whichever is further) up to the group's committed offset, not to
//! the end: what follows is processed as input. Records at or past that offset are never
//! applied, and records without a key (bad records processing handed to its policy) are passed
//! over.
//!
//! One restore consumer serves every task: each store being restored has its changelog
//! partition in the consumer's assignment (`incremental_assign` when its restore begins,
//! `incremental_unassign` when it ends or its task is revoked). The stores of one task restore one
//! after the other; stores of tasks of different partitions restore side by side. Two changelog
//! partitions with the same partition number are never assigned at once, so librdkafka's end of
//! partition event (which names the partition, not the topic) is unambiguous.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::observe::RestoreProgress;
use crate::error::{Error, Result};
use crate::record::{Headers, RawRecord};
use crate::task::{Task, TaskId};

/// How long one [`Restorer::step`] waits for changelog records at most.
pub(super) const STEP_WAIT: Duration = Duration::from_millis(20);

/// How often a restore waiting for the last stable offset (exactly-once) checks it again.
const STABLE_RECHECK: Duration = Duration::from_millis(100);

/// The restore consumer's context: logs to `tracing`.
#[derive(Debug, Default)]
pub(crate) struct RestoreContext;

impl ClientContext for RestoreContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::observe::librdkafka_log(level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        super::observe::client_error("restore consumer", &error, reason);
    }
}
impl ConsumerContext for RestoreContext {}

/// How a task's restore ended (returned by [`Restorer::step`]).
pub(super) enum Outcome {
    /// Every store is up to date; the task may process input.
    Done(Restoring),
    /// The local state claims changelog offsets past the changelog's end (the changelog was
    /// recreated, or the cluster is another one): the local state must be wiped and rebuilt.
    LocalStateInvalid(Restoring),
}

/// A task being restored, with what the engine needs once it is done.
pub(super) struct Restoring {
    pub(super) task: Task,
    /// The group's committed offset of each of the task's input partitions, read when the task
    /// was opened (`None` inside: nothing committed; `None` outside: they could not be read,
    /// at-least-once only).
    pub(super) committed: Option<BTreeMap<String, Option<i64>>>,
    /// Seek the task's input back to the committed offsets once restored (exactly-once
    /// recovery).
    pub(super) rewind: bool,
    /// Changelog records applied so far, over all its stores.
    pub(super) restored: u64,
    /// The stores still to restore.
    stores: VecDeque<Pending>,
    current: Option<StoreRestore>,
}

/// A store of a task still to restore.
#[derive(Debug, Clone)]
struct Pending {
    store: String,
    /// Its changelog topic: `<application id>-<store>-changelog`, or the table's source topic.
    topic: String,
    /// A table's store whose source topic is its changelog: its restore ends at the group's
    /// committed offset of that partition (`None`: it could not be read), not at the topic's
    /// end (what follows is processed as input).
    source: Option<Option<i64>>,
}

impl Restoring {
    /// A task to restore: every store of `task` that has a changelog.
    pub(super) fn new(
        task: Task,
        committed: Option<BTreeMap<String, Option<i64>>>,
        rewind: bool,
    ) -> Self {
        let stores = task
            .stores()
            .iter()
            .zip(task.changelog_topics())
            .filter_map(|(s, t)| {
                let store = s.name().to_owned();
                if let Some(topic) = s.source_changelog() {
                    // Nothing committed: the input is processed from its beginning, so
                    // nothing is restored (end 0).
                    let end = committed
                        .as_ref()
                        .map(|c| c.get(topic).copied().flatten().unwrap_or(0));
                    return Some(Pending {
                        store,
                        topic: topic.to_owned(),
                        source: Some(end),
                    });
                }
                t.as_ref().map(|t| Pending {
                    store,
                    topic: t.to_string(),
                    source: None,
                })
            })
            .collect();
        Restoring {
            task,
            committed,
            rewind,
            restored: 0,
            stores,
            current: None,
        }
    }

    /// The task, its committed offsets, whether to rewind, and the records restored.
    pub(super) fn into_parts(self) -> (Task, Option<BTreeMap<String, Option<i64>>>, bool, u64) {
        (self.task, self.committed, self.rewind, self.restored)
    }
}

/// One store's restore.
struct StoreRestore {
    store: String,
    topic: String,
    partition: i32,
    state: StoreState,
}

enum StoreState {
    /// Exactly-once: the local state recorded changelog offset `recorded`, past the last stable
    /// offset; waiting (since `since`) for the stable offset to catch up.
    Waiting {
        recorded: i64,
        since: Instant,
        checked: Instant,
    },
    /// Reading the changelog partition from `next` up to `high` (`bounded`: a table's source
    /// topic, where records at or past `high` are input, not applied).
    Reading {
        next: i64,
        high: i64,
        bounded: bool,
        last_progress: Instant,
        progress: RestoreProgress,
    },
}

/// The restore consumer and the tasks it restores.
pub(super) struct Restorer {
    consumer: BaseConsumer<RestoreContext>,
    tasks: BTreeMap<TaskId, Restoring>,
    batch_records: usize,
    timeout: Duration,
    read_committed: bool,
}

fn raw<'a>(m: &'a BorrowedMessage<'a>) -> RawRecord<'a> {
    RawRecord {
        key: m.key(),
        value: m.payload(),
        timestamp: m.timestamp().to_millis().unwrap_or(0),
        offset: m.offset(),
        headers: Headers::new(),
    }
}

fn one_partition(topic: &str, partition: i32, offset: Option<i64>) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    match offset {
        Some(o) => tpl
            .add_partition_offset(topic, partition, Offset::Offset(o))
            .map_err(|source| Error::kafka("building a restore assignment", source))?,
        None => {
            tpl.add_partition(topic, partition);
        }
    }
    Ok(tpl)
}

impl Restorer {
    /// `batch_records`: the most changelog records one step applies; `timeout`: how long a
    /// restore may make no progress (and, exactly-once, wait for the last stable offset);
    /// `read_committed`: exactly-once.
    pub(super) fn new(
        consumer: BaseConsumer<RestoreContext>,
        batch_records: usize,
        timeout: Duration,
        read_committed: bool,
    ) -> Self {
        Restorer {
            consumer,
            tasks: BTreeMap::new(),
            batch_records: batch_records.max(1),
            timeout,
            read_committed,
        }
    }

    /// Whether no task is being restored.
    pub(super) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Whether task `id` is being restored.
    pub(super) fn contains(&self, id: TaskId) -> bool {
        self.tasks.contains_key(&id)
    }

    /// Starts restoring a task (its first step is the next [`step`](Self::step)).
    pub(super) fn add(&mut self, restoring: Restoring) {
        self.tasks.insert(restoring.task.id(), restoring);
    }

    /// Stops restoring task `id` (revoked, or the app stops) and closes it. What it restored so
    /// far stays in its local state with the changelog offset it reflects; nothing else is
    /// recorded (it never had an input position of its own).
    pub(super) fn remove(&mut self, id: TaskId) -> Result<()> {
        let Some(r) = self.tasks.remove(&id) else {
            return Ok(());
        };
        if let Some(c) = &r.current
            && let StoreState::Reading {
                next,
                high,
                progress,
                ..
            } = &c.state
        {
            progress.abandoned();
            tracing::info!(task = %id, store = %c.store, next, high,
                "restore stopped before its end (task closed); it goes on from offset {next} \
                 when the task is restored here again");
            self.unassign(&c.topic, c.partition)?;
        }
        Ok(())
    }

    /// Stops every restore and closes the tasks.
    pub(super) fn clear(&mut self) -> Result<()> {
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        let mut result = Ok(());
        for id in ids {
            let r = self.remove(id);
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// The changelog records still to apply to each store being read, as (task, store, lag), for
    /// interactive queries' `Restoring` answers.
    pub(super) fn lags(&self) -> Vec<(TaskId, String, u64)> {
        self.tasks
            .iter()
            .filter_map(|(id, r)| {
                let c = r.current.as_ref()?;
                let lag = match c.state {
                    StoreState::Reading { next, high, .. } => high.saturating_sub(next).max(0),
                    StoreState::Waiting { .. } => 0,
                };
                Some((*id, c.store.clone(), u64::try_from(lag).unwrap_or(0)))
            })
            .collect()
    }

    fn unassign(&self, topic: &str, partition: i32) -> Result<()> {
        let tpl = one_partition(topic, partition, None)?;
        self.consumer.incremental_unassign(&tpl).map_err(|source| {
            Error::kafka(
                format!("unassigning changelog `{topic}` partition {partition}"),
                source,
            )
        })
    }

    fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64)> {
        super::admin::watermarks(self.consumer.client(), topic, partition, self.timeout).map_err(
            |source| {
                Error::kafka(
                    format!("reading the offsets of changelog `{topic}` partition {partition}"),
                    source,
                )
            },
        )
    }

    /// One bounded turn: begins the restore of stores whose turn it is, applies at most
    /// `batch_records` changelog records, and returns the tasks whose restore ended and the
    /// number of records applied.
    pub(super) fn step(&mut self) -> Result<(Vec<Outcome>, u64)> {
        let mut ended: Vec<TaskId> = Vec::new();
        let mut invalid: BTreeSet<TaskId> = BTreeSet::new();
        // 1. Stores whose restore begins (or waits for the last stable offset).
        let mut busy: BTreeSet<i32> = self
            .tasks
            .values()
            .filter_map(|r| r.current.as_ref())
            .filter(|c| matches!(c.state, StoreState::Reading { .. }))
            .map(|c| c.partition)
            .collect();
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            match self.begin_stores(id, &mut busy)? {
                Begin::Busy => {}
                Begin::Ended => ended.push(id),
                Begin::Invalid => {
                    invalid.insert(id);
                }
            }
        }
        // 2. At most `batch_records` changelog records, for every store being read (a turn with
        //    none being read waits here too, so a loop waiting for a stable offset does not spin).
        let mut applied = 0;
        if self.tasks.len() > ended.len() + invalid.len() {
            applied = self.read_batch(&mut ended)?;
        }
        let mut out = Vec::new();
        for id in invalid {
            if let Some(r) = self.tasks.remove(&id) {
                out.push(Outcome::LocalStateInvalid(r));
            }
        }
        for id in ended {
            if let Some(r) = self.tasks.remove(&id) {
                out.push(Outcome::Done(r));
            }
        }
        Ok((out, applied))
    }

    /// Moves task `id` on to its next store while it has none in progress.
    fn begin_stores(&mut self, id: TaskId, busy: &mut BTreeSet<i32>) -> Result<Begin> {
        loop {
            let Some(r) = self.tasks.get(&id) else {
                return Ok(Begin::Busy);
            };
            let partition = id.partition;
            let (store, topic, source) = match &r.current {
                Some(StoreRestore {
                    state: StoreState::Reading { .. },
                    ..
                }) => return Ok(Begin::Busy),
                Some(StoreRestore {
                    state:
                        StoreState::Waiting {
                            recorded,
                            since,
                            checked,
                        },
                    store,
                    topic,
                    ..
                }) => {
                    if checked.elapsed() < STABLE_RECHECK || busy.contains(&partition) {
                        return Ok(Begin::Busy);
                    }
                    let (recorded, since) = (*recorded, *since);
                    let (store, topic) = (store.clone(), topic.clone());
                    let high = self.watermarks(&topic, partition)?.1;
                    if recorded > high {
                        if since.elapsed() >= self.timeout {
                            return Err(Error::Runtime(format!(
                                "restoring store `{store}` of task {id}: its local state \
                                 recorded changelog `{topic}` partition {partition} up to offset \
                                 {recorded}, but the last stable offset stayed at {high} for \
                                 {:?}: a transaction on the changelog is not decided (a hanging \
                                 transaction: see `kafka-transactions.sh find-hanging`), or the \
                                 changelog was recreated (then delete the state directory)",
                                self.timeout
                            )));
                        }
                        if let Some(StoreRestore {
                            state: StoreState::Waiting { checked, .. },
                            ..
                        }) = self.tasks.get_mut(&id).and_then(|r| r.current.as_mut())
                        {
                            *checked = Instant::now();
                        }
                        return Ok(Begin::Busy);
                    }
                    tracing::info!(task = %id, %store, recorded, high,
                        waited_ms = since.elapsed().as_millis() as u64,
                        "the changelog's last stable offset caught up with the local state");
                    (store, topic, None)
                }
                None => {
                    if busy.contains(&partition) {
                        return Ok(Begin::Busy);
                    }
                    match r.stores.front() {
                        None => return Ok(Begin::Ended),
                        Some(s) => (s.store.clone(), s.topic.clone(), s.source),
                    }
                }
            };
            // The store's restore begins: where the local state stands, where the changelog ends.
            let position = r.task.position()?;
            let mut recorded = position.changelog(&store);
            if source.is_some() {
                // A table's store: what its processing recorded counts as much as its restores.
                recorded = recorded.max(position.input(&topic, partition));
            }
            let (low, high) = self.watermarks(&topic, partition)?;
            let r = self
                .tasks
                .get_mut(&id)
                .ok_or_else(|| Error::Internal(format!("restoring task {id} vanished")))?;
            if r.current.is_none() {
                r.stores.pop_front();
            }
            if let Some(end) = source {
                // The source topic is the changelog: read it up to the group's committed offset
                // (under exactly-once at most the last stable offset, `high`); what follows is
                // processed as input. Local state at or past it (an unclean stop after
                // processing) has nothing to restore: processing applies the rest again, and a
                // table's update applied twice leaves the same value.
                let Some(end) = end else {
                    return Err(Error::Runtime(format!(
                        "cannot read the group's committed offset of `{topic}` partition \
                         {partition}: store `{store}` of task {id} restores from that topic up \
                         to it"
                    )));
                };
                r.current = None;
                let end = end.min(high);
                let start = recorded.unwrap_or(low).max(low);
                if start >= end {
                    tracing::debug!(task = %id, %store, offset = start, "store up to date");
                    continue;
                }
                self.begin_reading(id, busy, store, topic, start, end, true)?;
                return Ok(Begin::Busy);
            }
            if let Some(rec) = recorded.filter(|rec| *rec > high) {
                // Exactly-once: the stable offset may trail the log for a moment (undecided
                // transactions); wait for it. After that wait said it caught up, still past it
                // cannot happen (offsets only grow): it is treated as a recreated changelog.
                if self.read_committed && r.current.is_none() {
                    r.current = Some(StoreRestore {
                        store,
                        topic,
                        partition,
                        state: StoreState::Waiting {
                            recorded: rec,
                            since: Instant::now(),
                            checked: Instant::now(),
                        },
                    });
                    return Ok(Begin::Busy);
                }
                tracing::warn!(task = %id, %store, recorded = rec, high,
                    "local state is ahead of its changelog (changelog recreated?); rebuilding it");
                r.current = None;
                return Ok(Begin::Invalid);
            }
            r.current = None;
            if recorded.is_some_and(|rec| rec < low) {
                tracing::warn!(task = %id, %store, ?recorded, low,
                    "changelog records the local state has not seen were deleted; restoring \
                     from the low watermark");
            }
            let start = recorded.unwrap_or(low).max(low);
            if start >= high {
                tracing::debug!(task = %id, %store, offset = start, "store up to date");
                continue;
            }
            self.begin_reading(id, busy, store, topic, start, high, false)?;
            return Ok(Begin::Busy);
        }
    }

    /// Assigns `topic`'s partition of task `id` to the restore consumer at `start` and makes it
    /// the task's store being read, up to `high` (`bounded`: nothing at or past `high` is
    /// applied).
    #[allow(clippy::too_many_arguments)]
    fn begin_reading(
        &mut self,
        id: TaskId,
        busy: &mut BTreeSet<i32>,
        store: String,
        topic: String,
        start: i64,
        high: i64,
        bounded: bool,
    ) -> Result<()> {
        let partition = id.partition;
        let tpl = one_partition(&topic, partition, Some(start))?;
        self.consumer.incremental_assign(&tpl).map_err(|source| {
            Error::kafka(
                format!(
                    "assigning changelog `{topic}` partition {partition} to the restore consumer"
                ),
                source,
            )
        })?;
        busy.insert(partition);
        let progress = RestoreProgress::new(id, &store, &topic, partition, start, high);
        let r = self
            .tasks
            .get_mut(&id)
            .ok_or_else(|| Error::Internal(format!("restoring task {id} vanished")))?;
        r.current = Some(StoreRestore {
            store,
            topic,
            partition,
            state: StoreState::Reading {
                next: start,
                high,
                bounded,
                last_progress: Instant::now(),
                progress,
            },
        });
        Ok(())
    }

    /// Polls at most `batch_records` changelog records (for at most [`STEP_WAIT`]) and writes
    /// them into their stores, one state transaction per store.
    fn read_batch(&mut self, ended: &mut Vec<TaskId>) -> Result<u64> {
        let Restorer {
            consumer,
            tasks,
            batch_records,
            timeout,
            ..
        } = self;
        let mut batch: Vec<BorrowedMessage<'_>> = Vec::new();
        let mut eof: BTreeSet<i32> = BTreeSet::new();
        let deadline = Instant::now() + STEP_WAIT;
        while batch.len() < *batch_records {
            let wait = deadline.saturating_duration_since(Instant::now());
            match consumer.poll(wait) {
                None => break,
                Some(Ok(m)) => batch.push(m),
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    eof.insert(p);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "restore consumer error");
                    break;
                }
            }
        }
        let mut finished: Vec<(TaskId, String, i32)> = Vec::new();
        let mut applied = 0;
        for (id, r) in tasks.iter_mut() {
            let Some(c) = r.current.as_mut() else {
                continue;
            };
            let StoreState::Reading {
                next,
                high,
                bounded,
                last_progress,
                progress,
            } = &mut c.state
            else {
                continue;
            };
            let records: Vec<RawRecord<'_>> = batch
                .iter()
                .filter(|m| {
                    m.partition() == c.partition
                        && m.topic() == c.topic
                        && m.offset() >= *next
                        && (!*bounded || m.offset() < *high)
                })
                .map(raw)
                .collect();
            // A table's topic may hold records without a key: processing handed them to the
            // deserialization policy, and they are not in the table. They still move the
            // position on.
            let position = records.last().map(|m| m.offset + 1);
            let records: Vec<RawRecord<'_>> = if *bounded {
                records.into_iter().filter(|m| m.key.is_some()).collect()
            } else {
                records
            };
            if let Some(position) = position {
                r.task.restore(&c.store, &records, position)?;
                r.restored += records.len() as u64;
                applied += records.len() as u64;
                *next = position;
                *last_progress = Instant::now();
                progress.step(records.len() as u64, *next);
            }
            let at_end = *next >= *high;
            if !at_end && eof.contains(&c.partition) {
                // The end was reached below the high watermark (compaction gaps, transaction
                // markers): the high watermark is the position.
                r.task.restore(&c.store, &[], *high)?;
                *next = *high;
            } else if !at_end && last_progress.elapsed() > *timeout {
                return Err(Error::Runtime(format!(
                    "restoring store `{}` of task {id} stalled at offset {next} of changelog \
                     `{}` partition {} (end {high}) for {timeout:?}",
                    c.store, c.topic, c.partition
                )));
            }
            if *next >= *high {
                progress.done();
                finished.push((*id, c.topic.clone(), c.partition));
            }
        }
        drop(batch);
        for (id, topic, partition) in finished {
            if let Some(r) = self.tasks.get_mut(&id) {
                r.current = None;
                if r.stores.is_empty() {
                    ended.push(id);
                }
            }
            self.unassign(&topic, partition)?;
        }
        Ok(applied)
    }
}

/// What [`Restorer::begin_stores`] left a task doing.
enum Begin {
    /// A store is being read, or waits (for the last stable offset, or its partition's turn).
    Busy,
    /// Every store is up to date.
    Ended,
    /// The local state is ahead of a changelog.
    Invalid,
}
