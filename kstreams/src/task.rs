//! Tasks: one sub-topology bound to one input partition, with its own stores.
//!
//! Owns: [`Task`] (processor instances, stores, stream time, punctuations) and the execution of one
//! batch: deserialize at the source, run each node over the batch depth-first (cut into runs where
//! a stream-time punctuation is due, the punctuation between runs), serialize at the sinks, record
//! the state's input position, and commit it all in one state transaction. It also owns what
//! happens to a bad record ([`OnBadRecord`], [`ErrorPolicies`], [`is_record_level`]): once per
//! input record, and for a processor's error about one record, after finding that record by
//! running its run again record by record.
//!
//! The Kafka runtime and the [`TopologyTestDriver`](crate::testing::TopologyTestDriver) both drive
//! this same code; neither processes records by itself. A task never talks to Kafka: what it
//! produces is returned as [`TaskOutput`] for the caller to send, and only then may the caller
//! commit offsets.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::context::{Clocks, NodeInfo, Punctuation, PunctuationType, Schedule};
use crate::error::{Error, Part, Result, SerdeError};
use crate::record::{Headers, Origin, ProducerRecord, RawRecord};
use crate::store::{LmdbOptions, Position, StateStores, StoreSpec};
use crate::topology::{NodeKind, NodeRun, Topology, init_node};

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

/// What happens to a record that cannot be deserialized, or that a processor fails.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OnBadRecord {
    /// Stop with an error naming topic, partition, offset and cause (the default).
    #[default]
    Fail,
    /// Log at warn, count in `kstreams_skipped_records_total`, and go on.
    Skip,
    /// Produce the original key and value bytes to this topic, with the origin and the error in
    /// headers (`kstreams.error.topic`, `.partition`, `.offset`, `.stage`, `.message`), and go on.
    DeadLetter {
        /// The dead-letter topic.
        topic: String,
    },
}

/// The error stages, as written in the `stage` label of the metrics and the
/// `kstreams.error.stage` header.
pub(crate) mod stage {
    /// A record's key or value could not be deserialized at a source.
    pub(crate) const DESERIALIZE: &str = "deserialize";
    /// A processor failed a record with [`Context::fail_record`](crate::Context::fail_record).
    pub(crate) const PROCESS: &str = "process";
    /// An output record could not be serialized, sent or delivered to its sink topic.
    pub(crate) const PRODUCE: &str = "produce";
}

/// What happens to bad records at each stage: an application-wide policy per stage and per-topic
/// overrides. The most specific policy wins: the override for the topic when there is one, else the
/// stage's policy. Deserialization and processing are keyed by source topic, production by sink
/// topic.
///
/// ```
/// use kstreams::task::{ErrorPolicies, OnBadRecord};
/// let p = ErrorPolicies::default()
///     .on_deserialization_error(OnBadRecord::Skip)
///     .on_deserialization_error_for("orders", OnBadRecord::Fail);
/// assert_eq!(p.deserialization("orders"), &OnBadRecord::Fail);
/// assert_eq!(p.deserialization("payments"), &OnBadRecord::Skip);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorPolicies {
    deserialization: OnBadRecord,
    processing: OnBadRecord,
    production: OnBadRecord,
    deserialization_for: BTreeMap<String, OnBadRecord>,
    processing_for: BTreeMap<String, OnBadRecord>,
    production_for: BTreeMap<String, OnBadRecord>,
}

impl ErrorPolicies {
    /// Records that cannot be deserialized (default: fail).
    #[must_use]
    pub fn on_deserialization_error(mut self, policy: OnBadRecord) -> Self {
        self.deserialization = policy;
        self
    }

    /// Records of source topic `topic` that cannot be deserialized.
    #[must_use]
    pub fn on_deserialization_error_for(
        mut self,
        topic: impl Into<String>,
        policy: OnBadRecord,
    ) -> Self {
        self.deserialization_for.insert(topic.into(), policy);
        self
    }

    /// Records a processor fails with [`Context::fail_record`](crate::Context::fail_record)
    /// (default: fail).
    #[must_use]
    pub fn on_processing_error(mut self, policy: OnBadRecord) -> Self {
        self.processing = policy;
        self
    }

    /// Failed records read from source topic `topic`.
    #[must_use]
    pub fn on_processing_error_for(
        mut self,
        topic: impl Into<String>,
        policy: OnBadRecord,
    ) -> Self {
        self.processing_for.insert(topic.into(), policy);
        self
    }

    /// Output records that cannot be serialized for their sink topic (in a task), or sent or
    /// delivered to it (in the Kafka runtime) (default: fail). Changelog records always fail.
    #[must_use]
    pub fn on_production_error(mut self, policy: OnBadRecord) -> Self {
        self.production = policy;
        self
    }

    /// Output records for sink topic `topic` that cannot be serialized, sent or delivered.
    #[must_use]
    pub fn on_production_error_for(
        mut self,
        topic: impl Into<String>,
        policy: OnBadRecord,
    ) -> Self {
        self.production_for.insert(topic.into(), policy);
        self
    }

    /// The deserialization policy of records read from `topic`.
    pub fn deserialization(&self, topic: &str) -> &OnBadRecord {
        self.deserialization_for
            .get(topic)
            .unwrap_or(&self.deserialization)
    }

    /// The processing policy of records read from `topic`.
    pub fn processing(&self, topic: &str) -> &OnBadRecord {
        self.processing_for.get(topic).unwrap_or(&self.processing)
    }

    /// The production policy of records for sink topic `topic`.
    pub fn production(&self, topic: &str) -> &OnBadRecord {
        self.production_for.get(topic).unwrap_or(&self.production)
    }

    /// Every policy, defaults and overrides (e.g. to find every dead-letter topic).
    pub fn all(&self) -> impl Iterator<Item = &OnBadRecord> {
        [&self.deserialization, &self.processing, &self.production]
            .into_iter()
            .chain(self.deserialization_for.values())
            .chain(self.processing_for.values())
            .chain(self.production_for.values())
    }

    /// Checks that every override names a source topic (deserialization, processing) or a sink
    /// topic (production) of `topology`: an override for a misspelt topic would silently do
    /// nothing.
    pub fn validate(&self, topology: &Topology) -> Result<()> {
        let sources = topology.source_topics();
        let sinks = topology.sink_topics();
        let list = |topics: &[Arc<str>]| {
            topics
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (what, map, topics, kind) in [
            (
                "deserialization",
                &self.deserialization_for,
                &sources,
                "source",
            ),
            ("processing", &self.processing_for, &sources, "source"),
            ("production", &self.production_for, &sinks, "sink"),
        ] {
            for topic in map.keys() {
                if !topics.iter().any(|t| **t == **topic) {
                    return Err(Error::Config(format!(
                        "the {what} error policy is overridden for topic `{topic}`, which is not \
                         a {kind} topic of the topology ({kind} topics: {})",
                        list(topics)
                    )));
                }
            }
        }
        Ok(())
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
        }
    }

    /// The changelog topic of a store: `<application id>-<store>-changelog`.
    pub fn changelog_topic(&self, store: &str) -> String {
        format!("{}-{store}-changelog", self.application_id)
    }
}

/// What a batch produced, to be sent before the batch's input offsets may be committed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TaskOutput {
    /// Records for sink topics and dead-letter topics, in the order they were produced.
    pub records: Vec<ProducerRecord>,
    /// Changelog records (partition fixed to the task's partition), in write order.
    pub changelog: Vec<ProducerRecord>,
    /// Input records deserialized and processed.
    pub processed: u64,
    /// Input records skipped by [`OnBadRecord::Skip`].
    pub skipped: u64,
    /// Input records sent to a dead-letter topic.
    pub dead_lettered: u64,
    /// Output records skipped by the production policy (stage `produce`: they could not be
    /// serialized). Their input records count as processed.
    pub output_skipped: u64,
    /// Output records whose input record was sent to a dead-letter topic by the production policy.
    pub output_dead_lettered: u64,
}

/// Where a call's produced records, bad records and counts go.
pub(crate) struct Collector<'e> {
    pub(crate) produced: &'e mut Vec<ProducerRecord>,
    stats: &'e mut TaskOutput,
    config: &'e TaskConfig,
    /// The policies of the batch's topic, resolved once per call.
    on_deserialization: &'e OnBadRecord,
    on_processing: &'e OnBadRecord,
    /// The raw input batch of this call (empty for punctuations), to dead-letter original bytes.
    raw: &'e [RawRecord<'e>],
    raw_topic: Option<&'e str>,
    /// Input records already skipped or dead-lettered in this call: an input record counts, and
    /// is dead-lettered, once, however many of the records derived from it fail.
    handled: BTreeSet<Origin>,
    /// An error policy said `Fail` in this call (the error it returned is final).
    policy_failed: bool,
    /// What was skipped and dead-lettered, to log and count once the call committed.
    reports: Vec<Report>,
}

/// How a processor fails one record of its batch without failing the batch (see
/// [`Context::fail_record`](crate::Context::fail_record)).
pub(crate) trait RecordFailures {
    fn fail_record(&mut self, processor: &str, origin: Option<&Origin>, error: Error)
    -> Result<()>;
}

/// A dead-letter record: the bytes of the record that failed, with its own headers followed by
/// `kstreams.error.{topic,partition,offset}` (the input record it came from, when known),
/// `kstreams.error.stage`, `kstreams.error.message` and, for production errors,
/// `kstreams.error.sink.topic`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dead_letter_record(
    dead_letter_topic: &str,
    origin: Option<&Origin>,
    stage: &str,
    message: &str,
    sink_topic: Option<&str>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    timestamp: i64,
    mut headers: Headers,
) -> ProducerRecord {
    if let Some(origin) = origin {
        headers.push(
            "kstreams.error.topic",
            Some(origin.topic.as_bytes().to_vec()),
        );
        headers.push(
            "kstreams.error.partition",
            Some(origin.partition.to_string().into_bytes()),
        );
        headers.push(
            "kstreams.error.offset",
            Some(origin.offset.to_string().into_bytes()),
        );
    }
    headers.push("kstreams.error.stage", Some(stage.as_bytes().to_vec()));
    headers.push("kstreams.error.message", Some(message.as_bytes().to_vec()));
    if let Some(sink) = sink_topic {
        headers.push("kstreams.error.sink.topic", Some(sink.as_bytes().to_vec()));
    }
    ProducerRecord {
        topic: dead_letter_topic.into(),
        partition: None,
        key,
        value,
        timestamp,
        headers,
        origin: origin.cloned(),
    }
}

/// Counts and logs a record skipped at `stage` (`topic` is the origin's topic, or the sink topic
/// for stage `produce`).
pub(crate) fn count_skipped(
    topic: &str,
    stage: &'static str,
    what: &dyn fmt::Display,
    error: &dyn fmt::Display,
) {
    tracing::warn!(record = %what, stage, %error, "skipping a record");
    metrics::counter!("kstreams_skipped_records_total", "topic" => topic.to_owned(), "stage" => stage)
        .increment(1);
}

/// Counts and logs a record sent to a dead-letter topic at `stage`.
pub(crate) fn count_dead_lettered(
    topic: &str,
    stage: &'static str,
    what: &dyn fmt::Display,
    error: &dyn fmt::Display,
    dead_letter_topic: &str,
) {
    tracing::warn!(record = %what, stage, %error, dead_letter_topic, "dead-lettering a record");
    metrics::counter!("kstreams_dead_lettered_records_total", "topic" => topic.to_owned(), "stage" => stage)
        .increment(1);
}

/// A bad record's warning and metric, emitted once the transaction that handled it committed (a
/// batch may run more than once before one does: a full LMDB map, a processor error about one
/// record).
#[derive(Debug)]
pub(crate) struct Report {
    topic: String,
    stage: &'static str,
    what: String,
    error: String,
    dead_letter_topic: Option<String>,
}

impl Report {
    fn emit(&self) {
        match &self.dead_letter_topic {
            None => count_skipped(&self.topic, self.stage, &self.what, &self.error),
            Some(dlq) => count_dead_lettered(&self.topic, self.stage, &self.what, &self.error, dlq),
        }
    }
}

impl<'e> Collector<'e> {
    /// The raw input record of `origin`, when it is in this call's batch.
    fn raw_of(&self, origin: &Origin) -> Option<&'e RawRecord<'e>> {
        if self.raw_topic != Some(&*origin.topic) {
            return None;
        }
        let raw: &'e [RawRecord<'e>] = self.raw;
        raw.binary_search_by_key(&origin.offset, |r| r.offset)
            .ok()
            .map(|i| &raw[i])
    }

    /// Applies `policy` to a record that failed at `stage`. Dead-lettering needs the input
    /// record's bytes: without them (a punctuation's output), dead-letter fails.
    #[allow(clippy::too_many_arguments)]
    fn handle(
        &mut self,
        stage: &'static str,
        policy: &OnBadRecord,
        origin: Option<&Origin>,
        raw: Option<&RawRecord<'_>>,
        sink_topic: Option<&str>,
        error: Error,
    ) -> Result<()> {
        let produce = stage == self::stage::PRODUCE;
        let metric_topic = match (sink_topic, origin) {
            (Some(t), _) => t.to_owned(),
            (None, Some(o)) => o.topic.to_string(),
            (None, None) => String::new(),
        };
        let what: &dyn fmt::Display = match origin {
            Some(o) => o,
            None => &"a record without origin",
        };
        // An input record goes through its policy once (the first of its failures decides).
        let input = match origin {
            Some(o) if !produce => Some(o),
            _ => None,
        };
        if input.is_some_and(|o| self.handled.contains(o)) && *policy != OnBadRecord::Fail {
            return Ok(());
        }
        match (policy, raw) {
            (OnBadRecord::Fail, _) | (OnBadRecord::DeadLetter { .. }, None) => {
                self.policy_failed = true;
                Err(error)
            }
            (OnBadRecord::Skip, _) => {
                self.reports.push(Report {
                    topic: metric_topic,
                    stage,
                    what: what.to_string(),
                    error: error.to_string(),
                    dead_letter_topic: None,
                });
                if produce {
                    self.stats.output_skipped += 1;
                } else {
                    self.stats.skipped += 1;
                }
                if let Some(o) = input {
                    self.handled.insert(o.clone());
                }
                Ok(())
            }
            (OnBadRecord::DeadLetter { topic }, Some(raw)) => {
                self.produced.push(dead_letter_record(
                    topic,
                    origin,
                    stage,
                    &error.to_string(),
                    sink_topic,
                    raw.key.map(<[u8]>::to_vec),
                    raw.value.map(<[u8]>::to_vec),
                    raw.timestamp,
                    raw.headers.clone(),
                ));
                self.reports.push(Report {
                    topic: metric_topic,
                    stage,
                    what: what.to_string(),
                    error: error.to_string(),
                    dead_letter_topic: Some(topic.clone()),
                });
                if produce {
                    self.stats.output_dead_lettered += 1;
                } else {
                    self.stats.dead_lettered += 1;
                }
                if let Some(o) = input {
                    self.handled.insert(o.clone());
                }
                Ok(())
            }
        }
    }

    /// An output record that could not be serialized for sink topic `sink`: fail, skip or
    /// dead-letter (the input record's bytes) by the production policy of `sink`.
    pub(crate) fn production_error(
        &mut self,
        sink: &str,
        origin: Option<&Origin>,
        error: Error,
    ) -> Result<()> {
        let policy = self.config.errors.production(sink);
        let raw = origin.and_then(|o| self.raw_of(o));
        self.handle(self::stage::PRODUCE, policy, origin, raw, Some(sink), error)
    }

    /// A record that could not be deserialized: fail, skip or dead-letter it.
    pub(crate) fn bad_record(
        &mut self,
        origin: &Origin,
        raw: &RawRecord<'_>,
        part: Part,
        source: SerdeError,
    ) -> Result<()> {
        let error = Error::Deserialize {
            origin: origin.clone(),
            part,
            source,
        };
        let policy = self.on_deserialization;
        self.handle(
            self::stage::DESERIALIZE,
            policy,
            Some(origin),
            Some(raw),
            None,
            error,
        )
    }
}

impl RecordFailures for Collector<'_> {
    fn fail_record(
        &mut self,
        processor: &str,
        origin: Option<&Origin>,
        error: Error,
    ) -> Result<()> {
        let error = match error {
            Error::Processing {
                processor: p,
                origin: o,
                message,
            } => Error::Processing {
                processor: if p.is_empty() {
                    processor.to_owned()
                } else {
                    p
                },
                origin: o.or_else(|| origin.cloned()),
                message,
            },
            Error::User(inner) => Error::Processing {
                processor: processor.to_owned(),
                origin: origin.cloned(),
                message: inner.to_string(),
            },
            other => other,
        };
        let Some(origin) = origin else {
            return Err(error);
        };
        let policy = if self.raw_topic == Some(&*origin.topic) {
            self.on_processing
        } else {
            self.config.errors.processing(&origin.topic)
        };
        let raw = self.raw_of(origin);
        self.handle(self::stage::PROCESS, policy, Some(origin), raw, None, error)
    }
}

/// The execution of one call through a task's nodes.
pub(crate) struct Exec<'e> {
    nodes: &'e mut [Option<Box<dyn NodeRun>>],
    pub(crate) txn: &'e (dyn crate::store::RawTxn + 'e),
    pub(crate) clocks: Clocks,
    pub(crate) collector: Collector<'e>,
    /// The processor error about the data that failed this call, if one did.
    pub(crate) fault: Option<Fault>,
}

impl Exec<'_> {
    /// Takes node `node` out of the task while `f` runs it (a node is never re-entered: the graph
    /// has no cycles), then puts it back.
    fn with_node(
        &mut self,
        node: usize,
        f: impl FnOnce(&mut dyn NodeRun, &mut Self) -> Result<()>,
    ) -> Result<()> {
        let mut n = self
            .nodes
            .get_mut(node)
            .and_then(Option::take)
            .ok_or_else(|| Error::Internal(format!("node {node} re-entered or missing")))?;
        let result = f(n.as_mut(), self);
        self.nodes[node] = Some(n);
        result
    }

    /// Notes that processor `processor` returned `error` from a batch: when it is about the data
    /// ([`is_record_level`]) and no error policy produced it (a `Fail` is final), the task looks
    /// for the record it is about.
    pub(crate) fn processor_failed(&mut self, processor: &str, error: &Error) {
        if is_record_level(error) && !self.collector.policy_failed {
            let message = match error {
                Error::Processing { message, .. } => message.clone(),
                other => other.to_string(),
            };
            self.fault = Some(Fault {
                processor: processor.to_owned(),
                message,
                run: None,
            });
        }
    }

    /// Runs node `node` over a batch (a `&Vec<Record<K, V>>` of its input types).
    pub(crate) fn run(&mut self, node: usize, input: &dyn Any) -> Result<()> {
        self.with_node(node, |n, exec| n.process(input, exec))
    }

    fn run_source(
        &mut self,
        node: usize,
        topic: &Arc<str>,
        partition: i32,
        raw: &[RawRecord<'_>],
    ) -> Result<()> {
        self.with_node(node, |n, exec| n.process_raw(topic, partition, raw, exec))
    }

    fn punctuate(&mut self, node: usize, punctuation: Punctuation) -> Result<()> {
        self.with_node(node, |n, exec| n.punctuate(punctuation, exec))
    }
}

/// Whether a processor's error is about the data of the records it was given (and so goes through
/// the processing policy of the record it is about), rather than about the infrastructure (and so
/// fails the batch as it is).
///
/// Record-level: [`Error::Processing`] and [`Error::User`] (what a processor says about a record),
/// and the store errors about a key or value: [`Error::StoreCorrupt`] (bytes a store's serde
/// cannot read, or a damaged long-key entry) and [`Error::StoreSerialize`] (a key or value a
/// store's serde cannot write); an [`Error::Serialize`] or [`Error::Deserialize`] a processor
/// returns. Everything else fails the batch: LMDB and I/O
/// errors (a full map, a full disk), [`Error::StateDirLocked`], [`Error::Store`] (a store the
/// processor did not declare), configuration, runtime and internal errors.
///
/// ```
/// use kstreams::Error;
/// use kstreams::task::is_record_level;
/// assert!(is_record_level(&Error::processing("unknown currency")));
/// assert!(!is_record_level(&Error::Internal("a bug".into())));
/// ```
pub fn is_record_level(error: &Error) -> bool {
    matches!(
        error,
        Error::Processing { .. }
            | Error::User(_)
            | Error::StoreCorrupt { .. }
            | Error::StoreSerialize { .. }
            | Error::Serialize { .. }
            | Error::Deserialize { .. }
    )
}

/// A processor's error about the data of its records, found while running a batch.
#[derive(Debug)]
pub(crate) struct Fault {
    /// The processor's node name.
    processor: String,
    /// What it said (without the processor's name).
    message: String,
    /// The indices in the input batch of the run that failed (`None`: not a run of input records).
    run: Option<std::ops::Range<usize>>,
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
}

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
            for schedule in init_node(node.as_mut(), &def.name, id.partition)? {
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
            ..
        } = self;
        let partition = id.partition;
        let config: &TaskConfig = config;
        let schedules: &[Scheduled] = schedules;
        state.transaction(|txn| {
            let mut produced = Vec::new();
            let mut stats = TaskOutput::default();
            let mut due: Vec<Option<i64>> = schedules.iter().map(|s| s.next_due).collect();
            let reports;
            {
                let mut exec = Exec {
                    nodes: nodes.as_mut_slice(),
                    txn: txn.raw(),
                    clocks,
                    collector: Collector {
                        produced: &mut produced,
                        stats: &mut stats,
                        config,
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
            let changelog = txn
                .take_changelog()
                .into_iter()
                .filter_map(|w| {
                    let topic = changelog_topics.get(w.store).cloned().flatten()?;
                    Some(ProducerRecord {
                        topic,
                        partition: Some(partition),
                        key: Some(w.key),
                        value: w.value,
                        timestamp: clocks.stream_time.max(0),
                        headers: Headers::new(),
                        origin: None,
                    })
                })
                .collect();
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
                txn.restore_raw(index, key, r.value)?;
            }
            txn.set_changelog_position(store, next_offset)
        })
    }

    /// Records, in one transaction, the changelog offsets that the local state now reflects
    /// (called by the runtime once the changelog writes are acknowledged).
    pub fn record_changelog_positions(&mut self, positions: &[(&str, i64)]) -> Result<()> {
        if positions.is_empty() {
            return Ok(());
        }
        self.state.transaction(|txn| {
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
}

// Tasks move between worker threads: they and everything in them must be `Send`.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<Task>();
    assert_send::<crate::topology::Topology>();
};
