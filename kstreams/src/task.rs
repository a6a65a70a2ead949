//! Tasks: one sub-topology bound to one input partition, with its own stores.
//!
//! Owns: [`Task`] (processor instances, stores, stream time, punctuations) and the order of a
//! batch: run each node over the batch depth-first (cut into runs where a stream-time
//! punctuation is due, the punctuation between runs), record the state's input position, and
//! commit it all in one state transaction; for a processor's error about one record, find that
//! record by running its run again record by record. What the nodes do (deserialize, process,
//! serialize, apply a bad-record policy) is `exec`'s; the policies themselves are
//! [`policy`](crate::policy)'s (re-exported here for old paths).
//!
//! The Kafka runtime and the [`TopologyTestDriver`](crate::testing::TopologyTestDriver) both drive
//! this same code; neither processes records by itself. A task never talks to Kafka: what it
//! produces is returned as [`TaskOutput`] for the caller to send, and only then may the caller
//! commit offsets.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::context::{Clocks, GlobalView, NodeInfo, Punctuation, PunctuationType, Schedule};
use crate::error::{Error, Result};
pub use crate::exec::TaskOutput;
use crate::exec::{Collector, Exec, Fault, NodeRun, Report, init_node};
use crate::policy::RecordFailures;
pub use crate::policy::{ErrorPolicies, OnBadRecord, is_record_level};
use crate::record::{Headers, Origin, ProducerRecord, RawRecord};
use crate::store::{LmdbOptions, Position, StateStores, StoreReader, StoreSpec};
use crate::topology::{NodeKind, Topology};

/// A task's id: `<sub-topology>_<partition>`, as in Kafka Streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// The sub-topology.
    pub subtopology: usize,
    /// The input partition.
    pub partition: i32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// How a task runs: where its state lives and what it does with bad records.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// The application id: names the state directory and prefixes changelog topics.
    pub application_id: String,
    /// The state directory; each task's LMDB environment lives in
    /// `<state_dir>/<application_id>/<task id>`.
    pub state_dir: PathBuf,
    /// LMDB tuning.
    pub lmdb: LmdbOptions,
    /// What happens to bad records: deserialization, processing and production failures.
    pub errors: ErrorPolicies,
    /// Keep every store in memory, whatever its declared backend.
    pub in_memory_state: bool,
    /// The instance's global stores (the global tables'), read by tasks through
    /// [`Context::global_store`](crate::Context::global_store): `None` when the topology has
    /// no global table or the runtime runs tasks without them.
    pub global_stores: Option<StoreReader>,
}

impl TaskConfig {
    /// A config with defaults: LMDB state under `state_dir`, failing on bad records.
    pub fn new(application_id: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        TaskConfig {
            application_id: application_id.into(),
            state_dir: state_dir.into(),
            lmdb: LmdbOptions::default(),
            errors: ErrorPolicies::default(),
            in_memory_state: false,
            global_stores: None,
        }
    }

    /// Where the instance's global stores live: `<state_dir>/<application_id>/global`.
    pub fn global_state_dir(&self) -> PathBuf {
        self.state_dir.join(&self.application_id).join("global")
    }

    /// The changelog topic of a store: `<application id>-<store>-changelog`.
    pub fn changelog_topic(&self, store: &str) -> String {
        changelog_topic(&self.application_id, store)
    }
}

/// The changelog topic of store `store` of application `application_id`:
/// `<application id>-<store>-changelog` (Kafka Streams' name).
pub(crate) fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}

/// The order in which a task processes the records of its input partitions (Kafka Streams'
/// `PartitionGroup`): `inputs[i]` holds the buffered records of input `i` in offset order
/// (timestamps already extracted); the result cuts them into runs `(input, range)` of one input
/// each, in processing order. The next record is the head with the smallest timestamp; on a
/// tie, the input with the lower index (callers pass the task's sources in topology order, so
/// the order never depends on the topics' names). Records of one input taken one after the
/// other form one run. Every record is in exactly one run.
pub fn merge_runs(inputs: &[&[RawRecord<'_>]]) -> Vec<(usize, std::ops::Range<usize>)> {
    let mut heads = vec![0usize; inputs.len()];
    let mut runs: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    loop {
        let next = inputs
            .iter()
            .enumerate()
            .filter_map(|(i, records)| records.get(heads[i]).map(|r| (r.timestamp, i)))
            .min();
        let Some((_, i)) = next else {
            return runs;
        };
        let at = heads[i];
        heads[i] += 1;
        match runs.last_mut() {
            Some((last, range)) if *last == i && range.end == at => range.end = at + 1,
            _ => runs.push((i, at..at + 1)),
        }
    }
}

/// How [`run_batch`] cuts a batch into runs.
struct Plan<'p> {
    /// Every record from this index on alone (to find the record a processor error is about).
    alone_from: Option<usize>,
    /// Records found failing on an earlier attempt: they go through the processing policy instead
    /// of the processors.
    excluded: &'p BTreeMap<usize, Fault>,
}

/// The source side of a batch: source node, topic, partition, records.
type SourceBatch<'s, 'r> = (usize, &'s Arc<str>, i32, &'s [RawRecord<'r>]);

/// The first multiple of `interval` after `time` (saturating).
fn boundary_after(time: i64, interval: i64) -> i64 {
    time.div_euclid(interval)
        .checked_add(1)
        .and_then(|k| k.checked_mul(interval))
        .unwrap_or(i64::MAX)
}

/// Runs a batch through the task's nodes, cut into runs: at each record that moves stream time to
/// or past a stream-time punctuation's due time (the punctuation runs after that record), around
/// each excluded record (which goes through the processing policy instead), and after every
/// record from the plan's `alone_from` on.
fn run_batch(
    exec: &mut Exec<'_>,
    src: SourceBatch<'_, '_>,
    schedules: &[Scheduled],
    due: &mut [Option<i64>],
    mut stream_time: i64,
    plan: &Plan<'_>,
) -> Result<()> {
    let (_, topic, partition, batch) = src;
    let mut start = 0;
    for (i, r) in batch.iter().enumerate() {
        if let Some(f) = plan.excluded.get(&i) {
            run_range(exec, src, start..i, stream_time)?;
            start = i + 1;
            let origin = Origin {
                topic: topic.clone(),
                partition,
                offset: r.offset,
            };
            let error = Error::Processing {
                processor: f.processor.clone(),
                origin: Some(origin.clone()),
                message: f.message.clone(),
            };
            exec.collector
                .fail_record(&f.processor, Some(&origin), error)?;
        }
        stream_time = stream_time.max(r.timestamp);
        let mut punctuate = false;
        for (s, d) in schedules.iter().zip(due.iter_mut()) {
            if s.schedule.kind != PunctuationType::StreamTime {
                continue;
            }
            match d {
                // The first record the task sees: the first due time is the next boundary.
                None => *d = Some(boundary_after(stream_time, s.schedule.interval_ms)),
                Some(d) if stream_time >= *d => punctuate = true,
                Some(_) => {}
            }
        }
        if punctuate || plan.alone_from.is_some_and(|a| i >= a) {
            run_range(exec, src, start..i + 1, stream_time)?;
            start = i + 1;
        }
        if punctuate {
            exec.clocks.stream_time = stream_time;
            punctuate_due(exec, schedules, due, PunctuationType::StreamTime)?;
        }
    }
    run_range(exec, src, start..batch.len(), stream_time)
}

/// Runs the records `range` of a batch from its source, with `stream_time` as the stream time.
fn run_range(
    exec: &mut Exec<'_>,
    (source, topic, partition, batch): SourceBatch<'_, '_>,
    range: std::ops::Range<usize>,
    stream_time: i64,
) -> Result<()> {
    let Some(records) = batch.get(range.clone()) else {
        return Err(Error::Internal(format!(
            "no records {range:?} in the batch"
        )));
    };
    if records.is_empty() {
        return Ok(());
    }
    exec.clocks.stream_time = stream_time;
    let result = exec.run_source(source, topic, partition, records);
    if result.is_err()
        && let Some(f) = &mut exec.fault
    {
        f.run.get_or_insert(range);
    }
    result
}

/// Fires the punctuations of `kind` that are due on the exec's clock and moves their due times.
/// Stream time: due times are the multiples of the interval, the first the one after the first
/// stream time seen; wall clock: the first one interval after the clock is first seen. Missed
/// intervals are not replayed: a punctuation fires once, and its next due time is after now.
fn punctuate_due(
    exec: &mut Exec<'_>,
    schedules: &[Scheduled],
    due: &mut [Option<i64>],
    kind: PunctuationType,
) -> Result<()> {
    let now = match kind {
        PunctuationType::StreamTime => exec.clocks.stream_time,
        PunctuationType::WallClock => exec.clocks.wall_clock,
    };
    if now == i64::MIN {
        return Ok(());
    }
    for (s, d) in schedules.iter().zip(due.iter_mut()) {
        if s.schedule.kind != kind {
            continue;
        }
        let interval = s.schedule.interval_ms;
        match *d {
            None => {
                *d = Some(match kind {
                    PunctuationType::StreamTime => boundary_after(now, interval),
                    PunctuationType::WallClock => now.saturating_add(interval),
                })
            }
            Some(at) if now >= at => {
                let punctuation = Punctuation {
                    id: s.schedule.id,
                    kind,
                    timestamp: now,
                };
                if let Err(e) = exec.punctuate(s.node, punctuation) {
                    // Not about an input record: the batch fails as it is.
                    exec.fault = None;
                    return Err(e);
                }
                *d = Some(match kind {
                    PunctuationType::StreamTime => boundary_after(now, interval),
                    PunctuationType::WallClock => {
                        let missed = now.saturating_sub(at) / interval + 1;
                        at.saturating_add(missed.saturating_mul(interval))
                    }
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

struct Scheduled {
    node: usize,
    schedule: Schedule,
    next_due: Option<i64>,
}

/// One sub-topology bound to one partition: its processors, its stores, its clocks.
pub struct Task {
    id: TaskId,
    config: Arc<TaskConfig>,
    nodes: Vec<Option<Box<dyn NodeRun>>>,
    sources: Vec<(Arc<str>, usize)>,
    state: StateStores,
    changelog_topics: Vec<Option<Arc<str>>>,
    schedules: Vec<Scheduled>,
    stream_time: i64,
    /// The topology has global tables: each call reads them in one read transaction.
    reads_globals: bool,
    /// The buffers of outputs already sent ([`recycle`](Self::recycle)), filled again by the
    /// next call: no large allocation and free per batch.
    spare: Spare,
}

/// Empty output buffers kept for the next call.
#[derive(Default)]
struct Spare {
    records: Vec<ProducerRecord>,
    changelog: Vec<ProducerRecord>,
}

/// The largest buffer [`Task::recycle`] keeps (records): a rare huge batch is not held on to.
const SPARE_MAX: usize = 1 << 16;

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id.to_string())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Task {
    /// Instantiates the processors of a sub-topology for one partition and opens its stores.
    pub fn new(topology: &Topology, id: TaskId, config: Arc<TaskConfig>) -> Result<Task> {
        let sub = topology
            .subtopologies()
            .get(id.subtopology)
            .ok_or_else(|| Error::Internal(format!("no sub-topology {}", id.subtopology)))?;
        let defs = topology.nodes();
        let globals = topology.global_stores();
        let local = |global: usize| sub.nodes.iter().position(|&n| n == global);
        let specs: Vec<StoreSpec> = sub
            .stores
            .iter()
            .filter_map(|name| {
                topology
                    .stores()
                    .iter()
                    .find(|s| s.name() == &**name)
                    .cloned()
            })
            .map(|s| {
                if config.in_memory_state {
                    s.backend(crate::store::Backend::InMemory)
                } else {
                    s
                }
            })
            .collect();
        if let Some(s) = specs.iter().find(|s| s.dead_letters_late())
            && config.errors.dead_letter_topics().is_empty()
        {
            return Err(crate::topology::late_without_dead_letter_topic(s.name()));
        }
        let dir = config
            .state_dir
            .join(&config.application_id)
            .join(id.to_string());
        let changelog_topics = specs
            .iter()
            .map(|s| {
                s.changelog_enabled()
                    .then(|| Arc::<str>::from(config.changelog_topic(s.name())))
            })
            .collect();
        let state = StateStores::open(&dir, specs, &config.lmdb)?;
        let mut nodes = Vec::with_capacity(sub.nodes.len());
        let mut sources = Vec::new();
        let mut schedules = Vec::new();
        for (i, &g) in sub.nodes.iter().enumerate() {
            let def = &defs[g];
            let children: Vec<usize> = def.children.iter().filter_map(|&c| local(c)).collect();
            let info = NodeInfo {
                name: def.name.clone(),
                child_names: def.children.iter().map(|&c| defs[c].name.clone()).collect(),
                children,
                stores: def
                    .stores
                    .iter()
                    .filter_map(|s| state.specs().iter().position(|x| x.name() == &**s))
                    .collect(),
            };
            if let NodeKind::Source { topic } = &def.kind {
                sources.push((topic.clone(), i));
            }
            let mut node = (def.factory)(info);
            for schedule in init_node(node.as_mut(), &def.name, id.partition, &globals)? {
                schedules.push(Scheduled {
                    node: i,
                    schedule,
                    next_due: None,
                });
            }
            nodes.push(Some(node));
        }
        Ok(Task {
            id,
            config,
            nodes,
            sources,
            state,
            changelog_topics,
            schedules,
            stream_time: i64::MIN,
            reads_globals: !globals.is_empty(),
            spare: Spare::default(),
        })
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The task's stream time (the largest timestamp seen), `i64::MIN` before any record.
    pub fn stream_time(&self) -> i64 {
        self.stream_time
    }

    /// The topics this task reads.
    pub fn source_topics(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().map(|(t, _)| &**t)
    }

    /// Replaces the timestamps of `batch` (records of `topic`) with their event time, if the
    /// topic's source has a timestamp extractor: callers do it before ordering a task's inputs
    /// ([`merge_runs`]) and handing them to [`process`](Self::process). Records whose extractor
    /// gave no timestamp or a negative one get a negative timestamp; `process` hands them to the
    /// deserialization policy.
    pub fn extract_timestamps(&self, topic: &str, batch: &mut [RawRecord<'_>]) {
        if let Some(Some(node)) = self
            .sources
            .iter()
            .find(|(t, _)| &**t == topic)
            .and_then(|(_, i)| self.nodes.get(*i))
        {
            node.extract_timestamps(batch);
        }
    }

    /// Processes one batch of one partition of `topic`, in offset order, in one state transaction
    /// that also records `last offset + 1` as the partition's position. Returns what to produce.
    ///
    /// The batch is cut into runs where a record moves stream time to or past a stream-time
    /// punctuation's due time; the punctuation runs between the runs, in the same transaction
    /// (see [`InitContext::schedule`](crate::InitContext::schedule)). When a processor returns an
    /// error about the data ([`is_record_level`]), the transaction is aborted and the batch run
    /// again, the faulty run record by record, to find the record; it goes through the processing
    /// policy of `topic` (failing names the processor and the record), and the rest of the batch
    /// goes on, all in one committed transaction.
    pub fn process(
        &mut self,
        topic: &str,
        partition: i32,
        batch: &[RawRecord<'_>],
        wall_clock: i64,
    ) -> Result<TaskOutput> {
        let Some((topic_arc, source)) = self
            .sources
            .iter()
            .find(|(t, _)| &**t == topic)
            .map(|(t, i)| (t.clone(), *i))
        else {
            return Err(Error::Internal(format!(
                "task {} does not read topic `{topic}`",
                self.id
            )));
        };
        if partition != self.id.partition {
            return Err(Error::Internal(format!(
                "task {} got a batch of partition {partition}",
                self.id
            )));
        }
        let Some(last) = batch.last() else {
            return Ok(TaskOutput::default());
        };
        let next_offset = last.offset + 1;
        let batch_max = batch.iter().map(|r| r.timestamp).max().unwrap_or(i64::MIN);
        let start_time = self.stream_time;
        let stream_time = start_time.max(batch_max);
        let clocks = Clocks {
            stream_time,
            wall_clock,
        };
        // Records a processor failed with an error about their data, found on earlier attempts:
        // they go through the processing policy instead of the processors. A faulty run is run
        // again record by record from its start; once its bad record is found, the rest of the
        // batch runs in runs again. Every attempt excludes a new record or narrows a run, so at
        // most 2 × (batch length + 1) attempts are made (more: the processor is not
        // deterministic, and the error stands).
        let mut excluded: BTreeMap<usize, Fault> = BTreeMap::new();
        let mut alone_from = None;
        let mut attempts = 0usize;
        let (out, due, reports) = loop {
            attempts += 1;
            let mut fault = None;
            let plan = Plan {
                alone_from,
                excluded: &excluded,
            };
            let result = self.run_in_txn(
                clocks,
                (topic, batch),
                &mut fault,
                |exec, schedules, due| {
                    run_batch(
                        exec,
                        (source, &topic_arc, partition, batch),
                        schedules,
                        due,
                        start_time,
                        &plan,
                    )
                },
                |txn| txn.set_input_position(topic, partition, next_offset),
            );
            let error = match result {
                Ok(done) => break done,
                Err(e) => e,
            };
            let Some(fault) = fault else {
                return Err(error);
            };
            if attempts > 2 * (batch.len() + 1) {
                return Err(error);
            }
            match fault.run.clone() {
                Some(run) if run.len() == 1 => {
                    let i = run.start;
                    if *self.config.errors.processing(topic) == OnBadRecord::Fail {
                        return Err(Error::Processing {
                            processor: fault.processor,
                            origin: Some(Origin {
                                topic: topic_arc.clone(),
                                partition,
                                offset: batch[i].offset,
                            }),
                            message: fault.message,
                        });
                    }
                    excluded.insert(i, fault);
                    alone_from = None;
                }
                // The error is about some record of the run: find it.
                Some(run) => alone_from = Some(run.start),
                None => return Err(error),
            }
        };
        // Only the attempt that committed says what was skipped and dead-lettered.
        for report in &reports {
            report.emit();
        }
        self.stream_time = stream_time;
        self.apply_due(due);
        let mut out = out;
        out.processed = (batch.len() as u64)
            .saturating_sub(out.skipped)
            .saturating_sub(out.dead_lettered);
        metrics::counter!("kstreams_records_in_total", "topic" => topic.to_owned())
            .increment(batch.len() as u64);
        metrics::histogram!("kstreams_batch_size").record(batch.len() as f64);
        Ok(out)
    }

    /// Gives back the output of a call once it has been sent: its (emptied) buffers hold the
    /// next call's output, so a batch does not allocate and free them anew.
    pub fn recycle(&mut self, out: TaskOutput) {
        let keep = |mut v: Vec<ProducerRecord>, slot: &mut Vec<ProducerRecord>| {
            v.clear();
            if v.capacity() <= SPARE_MAX && v.capacity() > slot.capacity() {
                *slot = v;
            }
        };
        keep(out.records, &mut self.spare.records);
        keep(out.changelog, &mut self.spare.changelog);
    }

    /// Fires the wall-clock punctuations that are due at `now` (milliseconds), on idle partitions
    /// too. The runtime calls it between batches.
    pub fn punctuate_wall_clock(&mut self, now: i64) -> Result<TaskOutput> {
        self.punctuate_at(
            Clocks {
                stream_time: self.stream_time,
                wall_clock: now,
            },
            PunctuationType::WallClock,
        )
    }

    /// Moves stream time forward to `time` (never back) and fires due stream-time punctuations.
    pub fn advance_stream_time(&mut self, time: i64, wall_clock: i64) -> Result<TaskOutput> {
        let time = self.stream_time.max(time);
        let out = self.punctuate_at(
            Clocks {
                stream_time: time,
                wall_clock,
            },
            PunctuationType::StreamTime,
        )?;
        self.stream_time = time;
        Ok(out)
    }

    fn punctuate_at(&mut self, clocks: Clocks, kind: PunctuationType) -> Result<TaskOutput> {
        if !self.schedules.iter().any(|s| s.schedule.kind == kind) {
            return Ok(TaskOutput::default());
        }
        let (out, due, reports) = self.run_in_txn(
            clocks,
            ("", &[]),
            &mut None,
            |exec, schedules, due| punctuate_due(exec, schedules, due, kind),
            |_| Ok(()),
        )?;
        for report in &reports {
            report.emit();
        }
        self.apply_due(due);
        Ok(out)
    }

    fn apply_due(&mut self, due: Vec<Option<i64>>) {
        for (s, next) in self.schedules.iter_mut().zip(due) {
            s.next_due = next;
        }
    }

    /// Runs `body` in one transaction, with the schedules and a copy of their due times to update;
    /// returns the output, the new due times (applied only once the transaction committed) and
    /// the reports of bad records (to emit then).
    /// When `body` fails on an error about the data, `fault` says which processor and record.
    fn run_in_txn(
        &mut self,
        clocks: Clocks,
        raw: (&str, &[RawRecord<'_>]),
        fault: &mut Option<Fault>,
        mut body: impl FnMut(&mut Exec<'_>, &[Scheduled], &mut [Option<i64>]) -> Result<()>,
        mut finish: impl FnMut(&crate::store::StateTxn<'_>) -> Result<()>,
    ) -> Result<(TaskOutput, Vec<Option<i64>>, Vec<Report>)> {
        let Task {
            nodes,
            state,
            config,
            schedules,
            changelog_topics,
            id,
            reads_globals,
            spare,
            ..
        } = self;
        let partition = id.partition;
        let config: &TaskConfig = config;
        let schedules: &[Scheduled] = schedules;
        // The global stores are read in one read transaction around the call's write
        // transaction: every attempt of the call sees the same snapshot.
        match config.global_stores.as_ref().filter(|_| *reads_globals) {
            Some(reader) => reader.read(|g| {
                let global = GlobalView {
                    txn: g.raw(),
                    specs: reader.specs(),
                };
                Self::write_txn(
                    state,
                    nodes,
                    config,
                    schedules,
                    changelog_topics,
                    spare,
                    partition,
                    Some(global),
                    clocks,
                    raw,
                    fault,
                    &mut body,
                    &mut finish,
                )
            }),
            None => Self::write_txn(
                state,
                nodes,
                config,
                schedules,
                changelog_topics,
                spare,
                partition,
                None,
                clocks,
                raw,
                fault,
                &mut body,
                &mut finish,
            ),
        }
    }

    /// The write transaction of [`run_in_txn`](Self::run_in_txn).
    #[allow(clippy::too_many_arguments)]
    fn write_txn(
        state: &mut StateStores,
        nodes: &mut [Option<Box<dyn NodeRun>>],
        config: &TaskConfig,
        schedules: &[Scheduled],
        changelog_topics: &[Option<Arc<str>>],
        spare: &mut Spare,
        partition: i32,
        global: Option<GlobalView<'_>>,
        clocks: Clocks,
        raw: (&str, &[RawRecord<'_>]),
        fault: &mut Option<Fault>,
        body: &mut dyn FnMut(&mut Exec<'_>, &[Scheduled], &mut [Option<i64>]) -> Result<()>,
        finish: &mut dyn FnMut(&crate::store::StateTxn<'_>) -> Result<()>,
    ) -> Result<(TaskOutput, Vec<Option<i64>>, Vec<Report>)> {
        state.transaction(|txn| {
            let mut produced = std::mem::take(&mut spare.records);
            let mut stats = TaskOutput::default();
            let mut due: Vec<Option<i64>> = schedules.iter().map(|s| s.next_due).collect();
            let reports;
            {
                let mut exec = Exec {
                    nodes: &mut *nodes,
                    txn: txn.raw(),
                    global,
                    clocks,
                    collector: Collector {
                        produced: &mut produced,
                        stats: &mut stats,
                        errors: &config.errors,
                        on_deserialization: config.errors.deserialization(raw.0),
                        on_processing: config.errors.processing(raw.0),
                        raw: raw.1,
                        raw_topic: Some(raw.0),
                        handled: BTreeSet::new(),
                        policy_failed: false,
                        reports: Vec::new(),
                    },
                    fault: None,
                };
                if let Err(e) = body(&mut exec, schedules, &mut due) {
                    *fault = exec.fault.take();
                    return Err(e);
                }
                reports = std::mem::take(&mut exec.collector.reports);
            }
            finish(txn)?;
            let mut changelog = std::mem::take(&mut spare.changelog);
            changelog.extend(txn.take_changelog().into_iter().filter_map(|w| {
                let topic = changelog_topics.get(w.store).cloned().flatten()?;
                Some(ProducerRecord {
                    topic,
                    partition: Some(partition),
                    partition_key_len: None,
                    key: Some(w.key),
                    value: w.value,
                    timestamp: w.timestamp.unwrap_or(clocks.stream_time.max(0)),
                    headers: Headers::new(),
                    origin: None,
                })
            }));
            stats.records = produced;
            stats.changelog = changelog;
            Ok((stats, due, reports))
        })
    }

    /// Writes changelog records back into a store (restore), in one transaction, and records
    /// `next_offset` as the store's changelog position. Restored writes are not logged again.
    pub fn restore(
        &mut self,
        store: &str,
        records: &[RawRecord<'_>],
        next_offset: i64,
    ) -> Result<()> {
        let index = self
            .state
            .specs()
            .iter()
            .position(|s| s.name() == store)
            .ok_or_else(|| Error::Store(format!("task {} has no store `{store}`", self.id)))?;
        self.state.transaction(|txn| {
            for r in records {
                let key = r.key.ok_or_else(|| {
                    Error::Store(format!(
                        "changelog of store `{store}` holds a record with a null key at offset {}",
                        r.offset
                    ))
                })?;
                txn.restore_raw(index, key, r.value, r.timestamp)?;
            }
            txn.set_changelog_position(store, next_offset)
        })
    }

    /// Records, in one transaction, the input position a restored state reflects: under
    /// exactly-once, a state restored to the changelog's last stable offset is a replay of
    /// exactly the committed input, so its position is the group's committed offset of each input
    /// partition (`positions`: topic and next offset). The trust rule then keeps it when the task
    /// opens here again with nothing committed since.
    pub fn record_restored_input_positions(&mut self, positions: &[(&str, i64)]) -> Result<()> {
        if positions.is_empty() {
            return Ok(());
        }
        let partition = self.id.partition;
        self.state.transaction(|txn| {
            for (topic, offset) in positions {
                txn.set_input_position(topic, partition, *offset)?;
            }
            Ok(())
        })
    }

    /// Records, in one transaction, the changelog offsets that the local state now reflects
    /// (called by the runtime once the changelog writes are acknowledged).
    pub fn record_changelog_positions(&mut self, positions: &[(&str, i64)]) -> Result<()> {
        if positions.is_empty() {
            return Ok(());
        }
        self.state.bookkeeping_transaction(|txn| {
            for (store, offset) in positions {
                txn.set_changelog_position(store, *offset)?;
            }
            Ok(())
        })
    }

    /// Where the committed local state stands (input offsets and changelog offsets).
    pub fn position(&self) -> Result<Position> {
        self.state.position()
    }

    /// Makes every committed state transaction durable (`fsync`). Call before committing input
    /// offsets to Kafka.
    pub fn sync(&self) -> Result<()> {
        self.state.sync()
    }

    /// The task's stores.
    pub fn stores(&self) -> &[StoreSpec] {
        self.state.specs()
    }

    /// The changelog topic of each store (`None` when its changelog is off), in store order.
    pub fn changelog_topics(&self) -> &[Option<Arc<str>>] {
        &self.changelog_topics
    }

    /// Every entry of a store as raw bytes, in key order.
    pub fn store_entries_raw(&mut self, store: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let index = self
            .state
            .specs()
            .iter()
            .position(|s| s.name() == store)
            .ok_or_else(|| Error::Store(format!("task {} has no store `{store}`", self.id)))?;
        self.state.transaction(|txn| {
            let mut out = Vec::new();
            let mut lower: Option<Vec<u8>> = None;
            loop {
                let before = out.len();
                let bound = match &lower {
                    Some(l) => std::ops::Bound::Excluded(l.as_slice()),
                    None => std::ops::Bound::Unbounded,
                };
                crate::store::RawTxn::scan(
                    txn,
                    index,
                    bound,
                    std::ops::Bound::Unbounded,
                    1024,
                    &mut |k, v| {
                        out.push((k.to_vec(), v.to_vec()));
                        Ok(())
                    },
                )?;
                if out.len() - before < 1024 {
                    return Ok(out);
                }
                lower = out.last().map(|(k, _)| k.clone());
            }
        })
    }

    /// How many state transactions this task committed.
    pub fn committed_transactions(&self) -> u64 {
        self.state.committed_transactions()
    }

    /// The LMDB directory of the task, when it has LMDB stores.
    pub fn state_path(&self) -> Option<PathBuf> {
        self.state.path()
    }

    /// A reader of the task's stores for other threads (interactive queries).
    pub fn store_reader(&self) -> Result<crate::store::StoreReader> {
        self.state.reader()
    }

    /// Pins a snapshot of the task's committed state for read-committed queries (the runtime
    /// calls it right after a Kafka commit; see [`StateStores::pin_committed`]).
    pub fn pin_committed(&self) -> Result<()> {
        self.state.pin_committed()
    }
}

// Tasks move between worker threads: they and everything in them must be `Send`.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<Task>();
    assert_send::<crate::topology::Topology>();
};

#[cfg(test)]
mod tests {
    use super::*;

    fn at(timestamps: &[i64]) -> Vec<RawRecord<'static>> {
        timestamps
            .iter()
            .enumerate()
            .map(|(i, &timestamp)| RawRecord {
                key: None,
                value: None,
                timestamp,
                offset: i as i64,
                headers: Headers::default(),
            })
            .collect()
    }

    #[test]
    fn merged_runs_follow_timestamps_keep_offset_order_and_break_ties_by_input() {
        let a = at(&[1, 2, 5, 5, 9]);
        let b = at(&[3, 5, 6, 4]);
        let runs = merge_runs(&[&a, &b]);
        // Ties (5) go to input 0; within an input, offset order even when its timestamps drop
        // (6 then 4: the head decides).
        assert_eq!(
            runs,
            [(0, 0..2), (1, 0..1), (0, 2..4), (1, 1..4), (0, 4..5)]
        );
        let covered: usize = runs.iter().map(|(_, r)| r.len()).sum();
        assert_eq!(covered, a.len() + b.len());
        assert_eq!(merge_runs(&[&a, &[]]), [(0, 0..5)]);
        assert!(merge_runs(&[&[], &[]]).is_empty());
    }

    /// A recycled output's buffers hold the next call's output and nothing of the old one: each
    /// output has exactly its own batch's records and changelog records, in order.
    #[test]
    fn recycled_outputs_hold_only_the_next_batchs_records() {
        use crate::store::StoreSpec;
        use crate::{Context, Record};

        #[derive(Clone)]
        struct Last;
        impl crate::BatchProcessor<String, String> for Last {
            type OutKey = String;
            type OutValue = String;
            fn stores(&self) -> Vec<StoreSpec> {
                vec![StoreSpec::new::<String, String>("last")]
            }
            fn process_batch(
                &mut self,
                records: &[Record<String, String>],
                ctx: &mut Context<'_, String, String>,
            ) -> Result<()> {
                let mut store = ctx.store::<String, String>("last")?;
                for r in records {
                    store.put(&r.key, &r.value)?;
                    ctx.forward(r.clone());
                }
                Ok(())
            }
        }
        let mut t = crate::Topology::builder();
        let s = t.source::<String, String>("in");
        let p = t.add(Last, &s);
        t.sink("out", &p);
        let topology = t.build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = TaskConfig::new("recycle", dir.path());
        config.in_memory_state = true;
        let id = TaskId {
            subtopology: 0,
            partition: 0,
        };
        let mut task = Task::new(&topology, id, Arc::new(config)).unwrap();
        let batch = |from: i64, n: i64| -> Vec<(Vec<u8>, Vec<u8>, i64)> {
            (from..from + n)
                .map(|o| {
                    (
                        format!("k{o}").into_bytes(),
                        format!("v{o}").into_bytes(),
                        o,
                    )
                })
                .collect()
        };
        let mut offset = 0;
        for n in [5, 2, 7, 1] {
            let owned = batch(offset, n);
            let raws: Vec<RawRecord<'_>> = owned
                .iter()
                .map(|(k, v, o)| RawRecord {
                    key: Some(k),
                    value: Some(v),
                    timestamp: 1_000 + o,
                    offset: *o,
                    headers: Headers::default(),
                })
                .collect();
            let out = task.process("in", 0, &raws, 0).unwrap();
            let want: Vec<Option<Vec<u8>>> =
                owned.iter().map(|(_, v, _)| Some(v.clone())).collect();
            let values: Vec<Option<Vec<u8>>> =
                out.records.iter().map(|r| r.value.clone()).collect();
            assert_eq!(values, want, "outputs of the batch at {offset}");
            let logged: Vec<Option<Vec<u8>>> =
                out.changelog.iter().map(|r| r.value.clone()).collect();
            assert_eq!(logged, want, "changelog of the batch at {offset}");
            task.recycle(out);
            offset += n;
        }
        // The buffers were kept (the largest batch's).
        assert!(task.spare.records.capacity() >= 7);
        assert!(task.spare.records.is_empty() && task.spare.changelog.is_empty());
    }
}
