//! The execution of a call through a task's nodes: the typed nodes (source, processor, sink)
//! behind their type-erased interface, the [`Exec`] state of one call, and the [`Collector`]
//! that gathers what the call produced and applies the bad-record policies.
//!
//! Owns: deserializing at a source, running a processor over a batch, serializing at a sink, and
//! routing a bad record through its [`OnBadRecord`] policy. May not touch: the topology's shape
//! (that is [`topology`](crate::topology), which builds the nodes' factories), a task's stores,
//! stream time or punctuation schedule, or the order of runs (that is [`task`](crate::task)).

use std::any::Any;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use crate::context::{Clocks, Context, InitContext, NodeInfo, Outputs, Punctuation, Schedule};
use crate::error::{Error, Part, Result, SerdeError};
use crate::policy::{
    ErrorPolicies, OnBadRecord, RecordFailures, count_dead_lettered, count_skipped,
    dead_letter_record, is_record_level, stage,
};
use crate::processor::BatchProcessor;
use crate::record::{Headers, Origin, ProducerRecord, RawRecord, Record};
use crate::serde::Serde;
use crate::store::StoreSpec;
use std::marker::PhantomData;

/// A node instance in a task, with its types erased; the typed node downcasts its input.
pub(crate) trait NodeRun: Send {
    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()>;
    fn process(&mut self, input: &dyn Any, exec: &mut Exec<'_>) -> Result<()>;
    fn process_raw(
        &mut self,
        _topic: &Arc<str>,
        _partition: i32,
        _raw: &[RawRecord<'_>],
        _exec: &mut Exec<'_>,
    ) -> Result<()> {
        Err(Error::Internal(
            "raw records sent to a node that is not a source".into(),
        ))
    }
    fn punctuate(&mut self, _punctuation: Punctuation, _exec: &mut Exec<'_>) -> Result<()> {
        Ok(())
    }
    /// A source with a timestamp extractor: replaces each record's timestamp with its event
    /// time (a negative one, or [`MISSING_TIMESTAMP`], when the extractor gave none: the
    /// record then goes through the deserialization policy in `process_raw`).
    fn extract_timestamps(&self, _raw: &mut [RawRecord<'_>]) {}
}

/// The timestamp `extract_timestamps` gives a record whose extractor returned `None`.
pub(crate) const MISSING_TIMESTAMP: i64 = i64::MIN;

// ---------------------------------------------------------------------------------------------
// Typed nodes.

/// The serdes of a source or sink, behind one pointer.
pub(crate) trait SourceSerdes<K, V>: Send + Sync {
    fn key(&self) -> &dyn Serde<K>;
    fn value(&self) -> &dyn Serde<V>;
}

impl<K, V, SK: Serde<K>, SV: Serde<V>> SourceSerdes<K, V> for (SK, SV) {
    fn key(&self) -> &dyn Serde<K> {
        &self.0
    }
    fn value(&self) -> &dyn Serde<V> {
        &self.1
    }
}

fn deliver<K: 'static, V: 'static>(
    out: &mut Outputs<K, V>,
    info: &NodeInfo,
    exec: &mut Exec<'_>,
) -> Result<()> {
    if out.targeted.is_empty() {
        if !out.records.is_empty() {
            for &c in &info.children {
                exec.run(c, &out.records)?;
            }
        }
    } else {
        let merge = out
            .merge
            .ok_or_else(|| Error::Internal("targeted records without a merge".into()))?;
        for (position, &c) in info.children.iter().enumerate() {
            let batch = merge(&out.records, &out.targeted, position);
            if !batch.is_empty() {
                exec.run(c, &batch)?;
            }
        }
    }
    out.clear();
    Ok(())
}

/// Runs a batch serde form over the `n` items of a batch, resuming after each index it reports as
/// failed, and checks the [`Serde`] batch contract: on `Ok` one output was appended per input, on
/// `Err((i, _))` `i` is inside the batch and exactly the `i` outputs before it were appended.
/// `call(start, out)` runs the form over the items from `start`. Returns the failed indices (in
/// order) with their errors; `out` then holds one entry per item that did not fail, in order. A
/// serde that breaks the contract is an error naming `what` (never a mis-pairing or a panic).
fn each_in_batch<O>(
    n: usize,
    out: &mut Vec<O>,
    what: &dyn Fn() -> String,
    mut call: impl FnMut(usize, &mut Vec<O>) -> core::result::Result<(), (usize, SerdeError)>,
) -> Result<Vec<(usize, SerdeError)>> {
    let broken = |how: String| {
        Error::Config(format!(
            "{} breaks the `Serde` batch contract: {how}",
            what()
        ))
    };
    let mut failed = Vec::new();
    let mut start = 0;
    while start < n {
        let before = out.len();
        let rest = n - start;
        match call(start, out) {
            Ok(()) => {
                if out.len() != before + rest {
                    return Err(broken(format!(
                        "it returned `Ok` with {} outputs for {rest} inputs",
                        out.len().saturating_sub(before)
                    )));
                }
                break;
            }
            Err((i, source)) => {
                if i >= rest {
                    return Err(broken(format!(
                        "it reported index {i} as failed in a batch of {rest}"
                    )));
                }
                if out.len() != before + i {
                    return Err(broken(format!(
                        "it reported index {i} as failed after appending {} outputs (must be {i})",
                        out.len().saturating_sub(before)
                    )));
                }
                failed.push((start + i, source));
                start += i + 1;
            }
        }
    }
    Ok(failed)
}

/// Pairs the outputs of [`each_in_batch`] with the batch again: the item at each index is its
/// error, or the next output.
struct Aligned<'a, O> {
    outputs: std::vec::Drain<'a, O>,
    failed: std::iter::Peekable<std::vec::IntoIter<(usize, SerdeError)>>,
}

impl<'a, O> Aligned<'a, O> {
    fn new(outputs: &'a mut Vec<O>, failed: Vec<(usize, SerdeError)>) -> Self {
        Aligned {
            outputs: outputs.drain(..),
            failed: failed.into_iter().peekable(),
        }
    }

    /// The item at index `i` (called for every index in order).
    fn at(&mut self, i: usize) -> Result<core::result::Result<O, SerdeError>> {
        if let Some((_, e)) = self.failed.next_if(|(j, _)| *j == i) {
            return Ok(Err(e));
        }
        self.outputs
            .next()
            .map(Ok)
            .ok_or_else(|| Error::Internal(format!("no serde output for index {i}")))
    }
}

pub(crate) struct SourceNode<K, V> {
    pub(crate) serdes: Arc<dyn SourceSerdes<K, V>>,
    pub(crate) extractor: Option<crate::topology::TimestampExtractor<K, V>>,
    pub(crate) info: NodeInfo,
    pub(crate) keys: Vec<K>,
    pub(crate) values: Vec<V>,
    pub(crate) out: Vec<Record<K, V>>,
}

impl<K: Send + 'static, V: Send + 'static> NodeRun for SourceNode<K, V> {
    fn init(&mut self, _ctx: &mut InitContext<'_>) -> Result<()> {
        Ok(())
    }

    fn process(&mut self, _input: &dyn Any, _exec: &mut Exec<'_>) -> Result<()> {
        Err(Error::Internal("typed records sent to a source".into()))
    }

    fn extract_timestamps(&self, raw: &mut [RawRecord<'_>]) {
        let Some(extract) = &self.extractor else {
            return;
        };
        for r in raw.iter_mut() {
            // A record that cannot be deserialized keeps its timestamp: it fails at the source.
            let (Ok(key), Ok(value)) = (
                self.serdes.key().deserialize(r.key),
                self.serdes.value().deserialize(r.value),
            ) else {
                continue;
            };
            let record = Record {
                key,
                value,
                timestamp: r.timestamp,
                headers: std::mem::take(&mut r.headers),
                origin: None,
            };
            let extracted = extract(&record);
            r.headers = record.headers;
            r.timestamp = extracted.unwrap_or(MISSING_TIMESTAMP);
        }
    }

    fn process_raw(
        &mut self,
        topic: &Arc<str>,
        partition: i32,
        raw: &[RawRecord<'_>],
        exec: &mut Exec<'_>,
    ) -> Result<()> {
        self.out.clear();
        self.keys.clear();
        self.values.clear();
        self.out.reserve(raw.len());
        // The batch forms read the whole batch in one call each; a record that fails goes through
        // the deserialization policy and the rest of the batch goes on after it.
        let serdes = &self.serdes;
        let key_failed = each_in_batch(
            raw.len(),
            &mut self.keys,
            &|| format!("the key serde of the source of topic `{topic}`"),
            |start, out| {
                serdes
                    .key()
                    .deserialize_batch(&mut raw[start..].iter().map(|r| r.key), out)
            },
        )?;
        let value_failed = each_in_batch(
            raw.len(),
            &mut self.values,
            &|| format!("the value serde of the source of topic `{topic}`"),
            |start, out| {
                serdes
                    .value()
                    .deserialize_batch(&mut raw[start..].iter().map(|r| r.value), out)
            },
        )?;
        let mut keys = Aligned::new(&mut self.keys, key_failed);
        let mut values = Aligned::new(&mut self.values, value_failed);
        for (i, r) in raw.iter().enumerate() {
            let origin = Origin {
                topic: topic.clone(),
                partition,
                offset: r.offset,
            };
            // One error per record: its key's when both fail.
            match (keys.at(i)?, values.at(i)?) {
                // Extracted (`extract_timestamps`): a negative time is the extractor's verdict.
                (Ok(_), Ok(_)) if self.extractor.is_some() && r.timestamp < 0 => {
                    let error = Error::InvalidTimestamp {
                        origin: origin.clone(),
                        timestamp: (r.timestamp != MISSING_TIMESTAMP).then_some(r.timestamp),
                    };
                    exec.collector.bad_timestamp(&origin, r, error)?
                }
                (Ok(key), Ok(value)) => self.out.push(Record {
                    key,
                    value,
                    timestamp: r.timestamp,
                    headers: r.headers.clone(),
                    origin: Some(origin),
                }),
                (Err(source), _) => exec.collector.bad_record(&origin, r, Part::Key, source)?,
                (Ok(_), Err(source)) => {
                    exec.collector.bad_record(&origin, r, Part::Value, source)?
                }
            }
        }
        drop((keys, values));
        if !self.out.is_empty() {
            for &c in &self.info.children {
                exec.run(c, &self.out)?;
            }
        }
        self.out.clear();
        Ok(())
    }
}

pub(crate) struct ProcessorNode<P, K, V>
where
    P: BatchProcessor<K, V>,
{
    pub(crate) processor: P,
    /// The stores the processor declared, for `InitContext::require_store`.
    pub(crate) declared: Arc<[StoreSpec]>,
    pub(crate) info: NodeInfo,
    pub(crate) out: Outputs<P::OutKey, P::OutValue>,
    pub(crate) _types: PhantomData<fn(K, V)>,
}

impl<P, K, V> NodeRun for ProcessorNode<P, K, V>
where
    P: BatchProcessor<K, V>,
    K: 'static,
    V: 'static,
{
    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
        let mut ctx = InitContext {
            node: ctx.node,
            schedules: &mut *ctx.schedules,
            partition: ctx.partition,
            stores: &self.declared,
            globals: ctx.globals,
        };
        self.processor.init(&mut ctx)
    }

    fn process(&mut self, input: &dyn Any, exec: &mut Exec<'_>) -> Result<()> {
        let batch = input.downcast_ref::<Vec<Record<K, V>>>().ok_or_else(|| {
            Error::Internal(format!(
                "processor `{}` received records of another type",
                self.info.name
            ))
        })?;
        self.out.clear();
        let mut ctx = Context {
            outputs: &mut self.out,
            node: &self.info,
            txn: exec.txn,
            clocks: exec.clocks,
            failures: &mut exec.collector,
            global: exec.global,
        };
        if let Err(e) = self.processor.process_batch(batch, &mut ctx) {
            let e = e.labelled(&self.info.name, None);
            // An error about the data: the task finds the record and applies its policy.
            exec.processor_failed(&self.info.name, &e);
            // A batch error without a record: name the batch's first record.
            let e = match (e, batch.first()) {
                (
                    Error::Processing {
                        processor,
                        origin: None,
                        message,
                    },
                    Some(first),
                ) => Error::Processing {
                    processor,
                    origin: first.origin.clone(),
                    message: format!("{message} (in the batch starting here)"),
                },
                (e, _) => e,
            };
            return Err(e);
        }
        deliver(&mut self.out, &self.info, exec)
    }

    fn punctuate(&mut self, punctuation: Punctuation, exec: &mut Exec<'_>) -> Result<()> {
        self.out.clear();
        let mut ctx = Context {
            outputs: &mut self.out,
            node: &self.info,
            txn: exec.txn,
            clocks: exec.clocks,
            failures: &mut exec.collector,
            global: exec.global,
        };
        self.processor
            .punctuate(punctuation, &mut ctx)
            .map_err(|e| e.labelled(&self.info.name, None))?;
        deliver(&mut self.out, &self.info, exec)
    }
}

pub(crate) struct SinkNode<K, V> {
    pub(crate) topic: Arc<str>,
    pub(crate) serdes: Arc<dyn SourceSerdes<K, V>>,
    pub(crate) info: NodeInfo,
    pub(crate) keys: Vec<Option<Vec<u8>>>,
    pub(crate) values: Vec<Option<Vec<u8>>>,
}

impl<K: 'static, V: 'static> NodeRun for SinkNode<K, V> {
    fn init(&mut self, _ctx: &mut InitContext<'_>) -> Result<()> {
        Ok(())
    }

    fn process(&mut self, input: &dyn Any, exec: &mut Exec<'_>) -> Result<()> {
        let batch = input.downcast_ref::<Vec<Record<K, V>>>().ok_or_else(|| {
            Error::Internal(format!(
                "sink `{}` received records of another type",
                self.info.name
            ))
        })?;
        self.keys.clear();
        self.values.clear();
        // The fast path serializes the whole batch in one call; a record that fails goes through
        // the production policy and the rest of the batch goes on after it.
        let serdes = &self.serdes;
        let topic = &self.topic;
        let key_failed = each_in_batch(
            batch.len(),
            &mut self.keys,
            &|| format!("the key serde of the sink of topic `{topic}`"),
            |start, out| {
                serdes
                    .key()
                    .serialize_batch(&mut batch[start..].iter().map(|r| &r.key), out)
            },
        )?;
        let value_failed = each_in_batch(
            batch.len(),
            &mut self.values,
            &|| format!("the value serde of the sink of topic `{topic}`"),
            |start, out| {
                serdes
                    .value()
                    .serialize_batch(&mut batch[start..].iter().map(|r| &r.value), out)
            },
        )?;
        let mut keys = Aligned::new(&mut self.keys, key_failed);
        let mut values = Aligned::new(&mut self.values, value_failed);
        exec.collector.produced.reserve(batch.len());
        for (i, r) in batch.iter().enumerate() {
            // One error per record: its key's when both fail.
            let (part, source) = match (keys.at(i)?, values.at(i)?) {
                (Ok(key), Ok(value)) => {
                    let partition_key_len = key
                        .as_deref()
                        .and_then(|k| serdes.key().partition_key_len(k));
                    exec.collector.produced.push(ProducerRecord {
                        topic: topic.clone(),
                        partition: None,
                        partition_key_len,
                        key,
                        value,
                        timestamp: r.timestamp,
                        headers: r.headers.clone(),
                        origin: r.origin.clone(),
                    });
                    continue;
                }
                (Err(source), _) => (Part::Key, source),
                (Ok(_), Err(source)) => (Part::Value, source),
            };
            let origin = r.origin.as_ref();
            let target = match origin {
                Some(o) => format!("topic `{topic}` (the output of the record at {o})"),
                None => format!("topic `{topic}`"),
            };
            let error = Error::Serialize {
                target,
                part,
                source,
            };
            exec.collector.production_error(topic, origin, error)?;
        }
        Ok(())
    }
}

/// A node that hands its input to its children as it is: a merge of several streams (no copy:
/// the batch a parent forwarded is the batch the children get).
pub(crate) struct PassNode {
    pub(crate) info: NodeInfo,
}

impl NodeRun for PassNode {
    fn init(&mut self, _ctx: &mut InitContext<'_>) -> Result<()> {
        Ok(())
    }

    fn process(&mut self, input: &dyn Any, exec: &mut Exec<'_>) -> Result<()> {
        for &c in &self.info.children {
            exec.run(c, input)?;
        }
        Ok(())
    }
}

/// The schedules a node asked for in `init`.
pub(crate) fn init_node(
    node: &mut dyn NodeRun,
    name: &str,
    partition: i32,
    globals: &[StoreSpec],
) -> Result<Vec<Schedule>> {
    let mut schedules = Vec::new();
    let mut ctx = InitContext {
        node: name,
        schedules: &mut schedules,
        partition,
        stores: &[],
        globals,
    };
    node.init(&mut ctx)?;
    Ok(schedules)
}

/// What a batch produced, to be sent before the batch's input offsets may be committed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    pub(crate) stats: &'e mut TaskOutput,
    pub(crate) errors: &'e ErrorPolicies,
    /// The policies of the batch's topic, resolved once per call.
    pub(crate) on_deserialization: &'e OnBadRecord,
    pub(crate) on_processing: &'e OnBadRecord,
    /// The raw input batch of this call (empty for punctuations), to dead-letter original bytes.
    pub(crate) raw: &'e [RawRecord<'e>],
    pub(crate) raw_topic: Option<&'e str>,
    /// Input records already skipped or dead-lettered in this call: an input record counts, and
    /// is dead-lettered, once, however many of the records derived from it fail.
    pub(crate) handled: BTreeSet<Origin>,
    /// An error policy said `Fail` in this call (the error it returned is final).
    pub(crate) policy_failed: bool,
    /// What was skipped and dead-lettered, to log and count once the call committed.
    pub(crate) reports: Vec<Report>,
}

/// A bad record's warning and metric, emitted once the transaction that handled it committed (a
/// batch may run more than once before one does: a full LMDB map, a processor error about one
/// record).
#[derive(Debug)]
pub(crate) enum Report {
    /// A record skipped or dead-lettered by its error policy.
    Bad {
        topic: String,
        stage: &'static str,
        what: String,
        error: String,
        dead_letter_topic: Option<String>,
    },
    /// A record a windowed operator found late (counted, logged at DEBUG).
    Late {
        processor: String,
        store: String,
        what: String,
        message: String,
    },
}

impl Report {
    pub(crate) fn emit(&self) {
        match self {
            Report::Bad {
                topic,
                stage,
                what,
                error,
                dead_letter_topic: None,
            } => count_skipped(topic, stage, what, error),
            Report::Bad {
                topic,
                stage,
                what,
                error,
                dead_letter_topic: Some(dlq),
            } => count_dead_lettered(topic, stage, what, error, dlq),
            Report::Late {
                processor,
                store,
                what,
                message,
            } => crate::policy::count_late(processor, store, what, message),
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
                self.reports.push(Report::Bad {
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
                self.reports.push(Report::Bad {
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
        let policy = self.errors.production(sink);
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

impl Collector<'_> {
    /// A record whose extracted timestamp is missing or negative: the deserialization policy
    /// (the record could not be read as an event).
    pub(crate) fn bad_timestamp(
        &mut self,
        origin: &Origin,
        raw: &RawRecord<'_>,
        error: Error,
    ) -> Result<()> {
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
        let error = error.labelled(processor, origin);
        let Some(origin) = origin else {
            return Err(error);
        };
        let policy = if self.raw_topic == Some(&*origin.topic) {
            self.on_processing
        } else {
            self.errors.processing(&origin.topic)
        };
        let raw = self.raw_of(origin);
        self.handle(self::stage::PROCESS, policy, Some(origin), raw, None, error)
    }

    fn late_record(
        &mut self,
        processor: &str,
        store: &str,
        origin: Option<&Origin>,
        message: String,
        dead_letter: Option<Headers>,
    ) -> Result<()> {
        if let Some(extra) = dead_letter {
            let topic = origin.map_or(self.raw_topic.unwrap_or(""), |o| &*o.topic);
            let dlq =
                crate::policy::late_dead_letter_topic(self.errors, topic).ok_or_else(|| {
                    Error::Config(format!(
                        "processor `{processor}` dead-letters the late records of store `{store}` \
                     (`on_late = dead_letter`), but the application has no dead-letter topic: \
                     set one with `OnBadRecord::DeadLetter`"
                    ))
                })?;
            let raw = origin.and_then(|o| self.raw_of(o));
            let mut headers = raw.map(|r| r.headers.clone()).unwrap_or_default();
            for (name, value) in extra.iter_raw() {
                headers.push_raw(name.to_vec(), value.map(<[u8]>::to_vec));
            }
            self.produced.push(dead_letter_record(
                dlq,
                origin,
                self::stage::LATE,
                &message,
                None,
                raw.and_then(|r| r.key.map(<[u8]>::to_vec)),
                raw.and_then(|r| r.value.map(<[u8]>::to_vec)),
                raw.map_or(0, |r| r.timestamp),
                headers,
            ));
        }
        let what = match origin {
            Some(o) => o.to_string(),
            None => "a record without origin".to_owned(),
        };
        self.reports.push(Report::Late {
            processor: processor.to_owned(),
            store: store.to_owned(),
            what,
            message,
        });
        Ok(())
    }
}

/// The execution of one call through a task's nodes.
pub(crate) struct Exec<'e> {
    pub(crate) nodes: &'e mut [Option<Box<dyn NodeRun>>],
    pub(crate) txn: &'e (dyn crate::store::RawTxn + 'e),
    pub(crate) clocks: Clocks,
    pub(crate) collector: Collector<'e>,
    /// The instance's global stores, in a read transaction for the call.
    pub(crate) global: Option<crate::context::GlobalView<'e>>,
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

    pub(crate) fn run_source(
        &mut self,
        node: usize,
        topic: &Arc<str>,
        partition: i32,
        raw: &[RawRecord<'_>],
    ) -> Result<()> {
        self.with_node(node, |n, exec| n.process_raw(topic, partition, raw, exec))
    }

    pub(crate) fn punctuate(&mut self, node: usize, punctuation: Punctuation) -> Result<()> {
        self.with_node(node, |n, exec| n.punctuate(punctuation, exec))
    }
}

/// A processor's error about the data of its records, found while running a batch.
#[derive(Debug)]
pub(crate) struct Fault {
    /// The processor's node name.
    pub(crate) processor: String,
    /// What it said (without the processor's name).
    pub(crate) message: String,
    /// The indices in the input batch of the run that failed (`None`: not a run of input records).
    pub(crate) run: Option<std::ops::Range<usize>>,
}
