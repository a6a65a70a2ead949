//! The sink: batched, asynchronous produce with delivery tracking.
//!
//! Owns: [`Sink`] (a `ThreadedProducer` whose delivery callbacks count outstanding records, keep
//! the first delivery errors, the highest acknowledged offset of every changelog partition and
//! the watermark of every input partition), [`Sink::wait_acked`] (returns only once every record
//! sent so far is acknowledged, or with the delivery error: a revoke, a shutdown) and
//! [`Sink::settle`] (handles the failures reported so far without waiting: an interval commit).
//! Keys are partitioned with murmur2, like the Java clients (`partitioner=murmur2_random`;
//! changelog records carry their partition).
//!
//! Watermarks ([`Watermarks`]): [`Sink::send`] takes the outputs and changelog records of one
//! input batch and books them with one lock: one entry per batch (its input partition, first
//! offset and count of records not settled), whose index travels in each record's delivery
//! opaque. A record is settled when the broker acknowledges it, or when its failure is handled
//! (skipped; dead-lettered: once the dead letter is acknowledged). A partition's watermark is the
//! first offset of its oldest unsettled batch (a partition's batches are sent in offset order;
//! their records settle in any order across output partitions): an at-least-once commit goes up
//! to it and no further ([`Sink::watermark`]). A failure that fails the app settles nothing.
//!
//! Production errors go through the production policy of the sink topic (stage `produce`): a
//! record librdkafka refuses at send time, and (at-least-once) a record the broker refuses at
//! delivery. To name the input record a failed delivery came from, an output record's opaque
//! carries its origin's offset relative to its batch's first offset (no bookkeeping); an origin
//! in another partition than its batch's (a record a join or a window kept in a store) is held
//! in a side table ([`OriginTable`]) until the record is settled. So what is held is bounded by
//! the records in flight, however long the load never pauses.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;

use super::config::{AppConfig, ProcessingGuarantee};
use crate::error::{Error, Result};
use crate::policy::{
    ErrorPolicies, OnBadRecord, count_dead_lettered, count_skipped, dead_letter_record, stage,
};
use crate::record::{Headers, Origin, ProducerRecord};

/// The kind of a record, in the low two bits of its delivery opaque (see [`opaque`]).
const KIND_BITS: usize = 2;
const KIND_MASK: usize = 0b11;
/// An output record; payload: its origin's code ([`Sink::origin_code`]).
const OUTPUT: usize = 0;
/// A changelog record; payload: the changelog topic's index.
const CHANGELOG: usize = 1;
/// A dead-letter record (its failure always fails); it settles the output it stands for.
const DEAD_LETTER: usize = 2;
/// An output record sent again alone after a size error; payload as for [`OUTPUT`].
const ALONE: usize = 3;

/// A record the broker (or librdkafka) refused for what it is, not for the state of the cluster.
fn is_record_error(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

/// The broker checks `max.message.bytes` against a whole batch: a small record refused with a
/// large one is sent again alone before its policy applies.
fn is_size_error(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge
        )
    )
}

/// "a record to topic `t` partition p (the output of the record at topic `i` partition q offset o)".
fn describe(topic: &str, partition: Option<i32>, origin: Option<&Origin>) -> String {
    let mut s = format!("a record to topic `{topic}`");
    if let Some(p) = partition {
        let _ = write!(s, " partition {p}");
    }
    if let Some(o) = origin {
        let _ = write!(s, " (the output of the record at {o})");
    }
    s
}

/// The production policies of the app, resolved only on the error path.
#[derive(Debug, Default)]
struct ProductionPolicies {
    policies: ErrorPolicies,
    /// Every dead-letter topic of every policy: a record for one of them always fails.
    dead_letter_topics: BTreeSet<String>,
}

impl ProductionPolicies {
    fn new(config: &AppConfig) -> Self {
        let dead_letter_topics = config.errors.dead_letter_topics();
        ProductionPolicies {
            policies: config.errors.clone(),
            dead_letter_topics,
        }
    }

    /// The policy of a record for `topic`, not a changelog.
    fn policy(&self, topic: &str) -> OnBadRecord {
        if self.dead_letter_topics.contains(topic) {
            return OnBadRecord::Fail;
        }
        self.policies.production(topic).clone()
    }
}

/// A record whose delivery failed, copied out of librdkafka's buffers (only on failure).
#[derive(Debug)]
struct Failed {
    opaque: usize,
    topic: String,
    partition: i32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    timestamp: i64,
    headers: Headers,
    error: KafkaError,
}

impl Failed {
    /// The record that failed, to send again or to dead-letter.
    fn into_record(self, origin: Option<Origin>) -> (ProducerRecord, KafkaError) {
        let record = ProducerRecord {
            topic: self.topic.as_str().into(),
            partition: Some(self.partition),
            partition_key_len: None,
            key: self.key,
            value: self.value,
            timestamp: self.timestamp,
            headers: self.headers,
            origin,
        };
        (record, self.error)
    }
}

/// Forwards librdkafka's logs and errors to `tracing`.
pub(crate) fn log_to_tracing(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", fac, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
    }
}

/// The delivery opaque of a record: its kind in the low [`KIND_BITS`] bits, the [`Watermarks`]
/// entry of the input batch that caused it in the next [`ENTRY_BITS`] (0: none), and a payload
/// in the high 32 bits (a changelog record: its changelog's index; an output record: its
/// origin's code, see [`Sink::origin_code`]).
const ENTRY_BITS: usize = 30;
const ENTRY_MASK: usize = (1 << ENTRY_BITS) - 1;
const PAYLOAD_SHIFT: usize = 32;
// The opaque packs 64 bits.
const _: () = assert!(usize::BITS >= 64, "kstreams needs a 64-bit target");

fn opaque(kind: usize, entry: usize, payload: u32) -> usize {
    kind | (entry << KIND_BITS) | ((payload as usize) << PAYLOAD_SHIFT)
}

fn kind_of(opaque: usize) -> usize {
    opaque & KIND_MASK
}

fn entry_of(opaque: usize) -> usize {
    (opaque >> KIND_BITS) & ENTRY_MASK
}

fn payload_of(opaque: usize) -> u32 {
    (opaque >> PAYLOAD_SHIFT) as u32
}

/// An origin code naming the side table ([`OriginTable`]) in its high bit, its key below.
const SIDE_ORIGIN: u32 = 1 << 31;

/// One input batch whose outputs and changelog records are not all settled yet.
#[derive(Debug)]
struct Flight {
    /// Index of the batch's input partition in [`Watermarks::parts`].
    part: u32,
    /// The batch's first input offset.
    base: i64,
    /// Its records neither acknowledged nor handled by their production policy yet.
    outstanding: u32,
    /// Its partition was forgotten (revoked): freed once settled, watermark nobody's.
    forgotten: bool,
}

/// An input partition with the batches in flight, in offset order.
#[derive(Debug)]
struct Part {
    topic: Arc<str>,
    partition: i32,
    /// Keys in [`Watermarks::flights`], oldest first (a partition's batches are processed in
    /// offset order).
    order: VecDeque<usize>,
}

/// Per input partition, the offset below which every output and changelog record caused by its
/// input is settled: acknowledged by the broker, or skipped or dead-lettered (its dead letter
/// acknowledged) by the production policy. One entry per input batch (records of a batch settle
/// in any order, across output partitions); the watermark is the first offset of the oldest
/// batch still unsettled, or, with none, the next offset to process (the caller's).
#[derive(Debug, Default)]
struct Watermarks {
    /// Every input partition seen, interned (a thread holds few).
    parts: Vec<Part>,
    flights: slab::Slab<Flight>,
}

impl Watermarks {
    fn part(&self, topic: &str, partition: i32) -> Option<usize> {
        self.parts
            .iter()
            .rposition(|p| p.partition == partition && &*p.topic == topic)
    }

    /// A batch of `partition` of `topic` starting at input offset `base`, with `records` records
    /// to settle: its entry (0 with no record, or when the table is full: `None`).
    fn begin(&mut self, topic: &str, partition: i32, base: i64, records: u32) -> Option<usize> {
        if records == 0 {
            return Some(0);
        }
        if self.flights.vacant_key() >= ENTRY_MASK - 1 {
            return None;
        }
        let part = match self.part(topic, partition) {
            Some(i) => i,
            None => {
                self.parts.push(Part {
                    topic: topic.into(),
                    partition,
                    order: VecDeque::new(),
                });
                self.parts.len() - 1
            }
        };
        let key = self.flights.insert(Flight {
            part: part as u32,
            base,
            outstanding: records,
            forgotten: false,
        });
        self.parts[part].order.push_back(key);
        Some(key + 1)
    }

    /// `n` records of `entry` settled (0: none).
    fn settle(&mut self, entry: usize, n: u32) {
        let Some(key) = entry.checked_sub(1) else {
            return;
        };
        let Some(f) = self.flights.get_mut(key) else {
            return;
        };
        f.outstanding = f.outstanding.saturating_sub(n);
        if f.outstanding > 0 {
            return;
        }
        if f.forgotten {
            self.flights.remove(key);
            return;
        }
        // Free the settled batches at the front of the partition (later ones wait for it).
        let part = f.part as usize;
        if let Some(p) = self.parts.get_mut(part) {
            while let Some(&front) = p.order.front() {
                if self.flights.get(front).is_some_and(|f| f.outstanding > 0) {
                    break;
                }
                p.order.pop_front();
                self.flights.try_remove(front);
            }
        }
    }

    /// The first input offset of the oldest unsettled batch of `partition` of `topic`.
    fn below(&self, topic: &str, partition: i32) -> Option<i64> {
        let p = &self.parts[self.part(topic, partition)?];
        p.order
            .iter()
            .filter_map(|k| self.flights.get(*k))
            .find(|f| f.outstanding > 0)
            .map(|f| f.base)
    }

    /// The input partition and first offset of `entry`'s batch, while it is held.
    fn batch(&self, entry: usize) -> Option<(&Arc<str>, i32, i64)> {
        let f = self.flights.get(entry.checked_sub(1)?)?;
        let p = self.parts.get(f.part as usize)?;
        Some((&p.topic, p.partition, f.base))
    }

    /// Forgets an input partition (revoked): its batches still in flight are freed once settled.
    fn forget(&mut self, topic: &str, partition: i32) {
        let Some(i) = self.part(topic, partition) else {
            return;
        };
        for key in std::mem::take(&mut self.parts[i].order) {
            match self.flights.get_mut(key) {
                Some(f) if f.outstanding > 0 => f.forgotten = true,
                Some(_) => {
                    self.flights.remove(key);
                }
                None => {}
            }
        }
    }

    /// How many batches are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.flights.len()
    }
}

/// The origins of the output records in flight: `(index in partitions, offset)` in a slab whose
/// keys are the records' delivery opaque indices (minus one). Bounded by the records in flight:
/// an entry is removed when its record is acknowledged, or once its failure is handled.
#[derive(Debug, Default)]
struct OriginTable {
    /// The origins' topic-partitions, interned.
    partitions: Vec<(Arc<str>, i32)>,
    entries: slab::Slab<(u32, i64)>,
}

impl OriginTable {
    /// The opaque index of an output's origin: 0 when unknown, else its key plus one. O(1)
    /// amortized: records come in runs of one input partition.
    fn insert(&mut self, origin: Option<&Origin>) -> usize {
        let Some(o) = origin else { return 0 };
        let same = |(t, p): &(Arc<str>, i32)| {
            *p == o.partition && (Arc::ptr_eq(t, &o.topic) || **t == *o.topic)
        };
        let tp = match self.partitions.iter().rposition(same) {
            Some(i) => i,
            None => {
                self.partitions.push((o.topic.clone(), o.partition));
                self.partitions.len() - 1
            }
        };
        self.entries.insert((tp as u32, o.offset)) + 1
    }

    /// The origin of opaque index `index`, while its entry is there.
    fn get(&self, index: usize) -> Option<Origin> {
        let (tp, offset) = *self.entries.get(index.checked_sub(1)?)?;
        let (topic, partition) = self.partitions.get(tp as usize)?;
        Some(Origin {
            topic: topic.clone(),
            partition: *partition,
            offset,
        })
    }

    /// Frees the entry of opaque index `index` (0, or an index already freed: nothing).
    fn remove(&mut self, index: usize) {
        if let Some(key) = index.checked_sub(1) {
            self.entries.try_remove(key);
        }
        if self.entries.is_empty() {
            self.partitions.clear();
        }
    }

    /// How many origins are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[derive(Debug, Default)]
struct Deliveries {
    /// Records sent and not reported back yet (acknowledged or failed).
    outstanding: u64,
    failed: Vec<Failed>,
    /// `(changelog index, partition)` to the next offset after the highest acknowledged one.
    changelog_acked: HashMap<(usize, i32), i64>,
    /// The origins of the output records in flight that are not in their batch's partition.
    origins: OriginTable,
    /// The input batches in flight: the watermark of every input partition.
    flights: Watermarks,
}

impl Deliveries {
    /// A record with delivery opaque `opaque` was acknowledged (at `offset` of `partition`).
    fn acknowledged(&mut self, opaque: usize, partition: i32, offset: i64) {
        match kind_of(opaque) {
            CHANGELOG => {
                let next = offset + 1;
                let e = self
                    .changelog_acked
                    .entry((payload_of(opaque) as usize, partition))
                    .or_insert(next);
                *e = (*e).max(next);
            }
            OUTPUT | ALONE => self.forget_origin(opaque),
            _ => {}
        }
        self.flights.settle(entry_of(opaque), 1);
    }

    /// The origin of an output record, while it is held.
    fn origin(&self, opaque: usize) -> Option<Origin> {
        let code = payload_of(opaque);
        if code == 0 {
            return None;
        }
        if code & SIDE_ORIGIN != 0 {
            return self.origins.get((code & !SIDE_ORIGIN) as usize);
        }
        let (topic, partition, base) = self.flights.batch(entry_of(opaque))?;
        Some(Origin {
            topic: topic.clone(),
            partition,
            offset: base + i64::from(code) - 1,
        })
    }

    /// Frees an output record's origin held in the side table (its failure is handled).
    fn forget_origin(&mut self, opaque: usize) {
        let code = payload_of(opaque);
        if code & SIDE_ORIGIN != 0 {
            self.origins.remove((code & !SIDE_ORIGIN) as usize);
        }
    }

    /// A record that will get no delivery report (refused at send time).
    fn unsent(&mut self, n: u64) -> bool {
        self.outstanding = self.outstanding.saturating_sub(n);
        self.outstanding == 0
    }
}

#[derive(Debug, Default)]
pub(crate) struct SinkContext {
    state: Mutex<Deliveries>,
    idle: Condvar,
}

impl SinkContext {
    fn lock(&self) -> MutexGuard<'_, Deliveries> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::observe::librdkafka_log(level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "producer: {reason}");
    }
}

impl ProducerContext for SinkContext {
    /// The record's kind in the low bits ([`OUTPUT`], [`CHANGELOG`], [`DEAD_LETTER`],
    /// [`ALONE`]) and an index above them.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let mut s = self.lock();
        match result {
            Ok(m) => s.acknowledged(opaque, m.partition(), m.offset()),
            Err((e, m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key, h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default();
                s.failed.push(Failed {
                    opaque,
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    timestamp: m.timestamp().to_millis().unwrap_or(-1),
                    headers,
                    error: e.clone(),
                });
                self.idle.notify_all();
            }
        }
        s.outstanding = s.outstanding.saturating_sub(1);
        if s.outstanding == 0 {
            self.idle.notify_all();
        }
    }
}

/// The input batch a [`Sink::send`] carries the outputs of: topic, partition, first offset.
pub(crate) type Cause<'a> = (&'a str, i32, i64);

/// The producer of a running app.
pub(crate) struct Sink {
    /// The producer's topic handles: before `producer`, so dropped before it.
    topics: super::produce::Topics,
    producer: ThreadedProducer<SinkContext>,
    changelogs: Vec<Arc<str>>,
    delivery_timeout: Duration,
    /// Exactly-once: the producer is transactional.
    transactional: bool,
    /// A transaction is open (begun at the first send after a commit or abort).
    in_transaction: bool,
    policies: ProductionPolicies,
    /// The first delivery error that failed: every later wait fails with it too.
    fatal: Option<String>,
    /// Output records skipped and dead-lettered by the production policy, not yet reported.
    skipped: u64,
    dead_lettered: u64,
    /// Times a send found the producer's queue full and waited 1 ms, since the last commit.
    queue_full_waits: u64,
    /// Partition counts of the topics whose records the sink partitions itself (keys whose
    /// serde names a partition key: windowed keys), read once from the cluster's metadata.
    partition_counts: HashMap<Arc<str>, i32>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("changelogs", &self.changelogs)
            .finish_non_exhaustive()
    }
}

impl Sink {
    /// A producer for `config`; under exactly-once, transactional with `transactional_id`
    /// (initialized here: fencing an older producer with the same id).
    pub(crate) fn new(
        config: &AppConfig,
        bootstrap: &str,
        transactional_id: Option<&str>,
    ) -> Result<Self> {
        let producer: ThreadedProducer<SinkContext> = config
            .producer_config(bootstrap, transactional_id)
            .create_with_context(SinkContext::default())
            .map_err(super::config::redact_client_error)
            .map_err(|source| Error::kafka("creating the producer", source))?;
        let transactional = config.guarantee == ProcessingGuarantee::ExactlyOnce;
        if transactional {
            // librdkafka looks for the transaction coordinator through any broker that is up,
            // and when none is yet (a producer just created) it asks again only after 500 ms:
            // half a second of every exactly-once start-up. A metadata request first waits
            // for the connection instead. Its failure is init_transactions' to report.
            let connected = Instant::now();
            let _ = producer
                .client()
                .fetch_metadata(None, config.startup_timeout);
            tracing::debug!(
                elapsed_us = connected.elapsed().as_micros() as u64,
                "producer connected"
            );
            let init = Instant::now();
            // Fences a previous incarnation with the same transactional id and aborts the
            // transaction it left open (a crash), before anything is restored or read.
            producer
                .init_transactions(config.startup_timeout)
                .map_err(|source| {
                    if source.rdkafka_error_code()
                        == Some(RDKafkaErrorCode::InvalidTransactionTimeout)
                    {
                        return Error::Config(format!(
                            "exactly-once: the broker refused the transaction timeout of {:?} \
                             (`transaction.timeout.ms`, which outlasts the commit interval of \
                             {:?}: a transaction stays open for one interval) as above its \
                             `transaction.max.timeout.ms` ({:?} unless the broker sets it): \
                             lower `commit_interval` (at most 14 min fits the default) or raise \
                             the broker's `transaction.max.timeout.ms`",
                            config.transaction_timeout(),
                            config.commit_interval,
                            super::config::BROKER_MAX_TRANSACTION_TIMEOUT,
                        ));
                    }
                    Error::kafka(
                        format!(
                            "initializing transactions (transactional.id `{}`)",
                            transactional_id.unwrap_or_default()
                        ),
                        source,
                    )
                })?;
            tracing::debug!(
                elapsed_us = init.elapsed().as_micros() as u64,
                "transactions initialized"
            );
        }
        Ok(Sink {
            topics: super::produce::Topics::default(),
            producer,
            changelogs: Vec::new(),
            delivery_timeout: config.delivery_timeout,
            transactional,
            in_transaction: false,
            policies: ProductionPolicies::new(config),
            fatal: None,
            skipped: 0,
            dead_lettered: 0,
            queue_full_waits: 0,
            partition_counts: HashMap::new(),
        })
    }

    /// The partition of a record whose key serde names a partition key (a windowed key's inner
    /// key): murmur2 of those bytes, as Java's `WindowedStreamPartitioner`. `None`: librdkafka
    /// partitions it by the whole key, as the Java clients.
    fn own_partition(&mut self, r: &ProducerRecord) -> Result<Option<i32>> {
        let (None, Some(n), Some(key)) = (r.partition, r.partition_key_len, &r.key) else {
            return Ok(r.partition);
        };
        let count = match self.partition_counts.get(&r.topic) {
            Some(c) => *c,
            None => {
                let md = self
                    .producer
                    .client()
                    .fetch_metadata(Some(&r.topic), self.delivery_timeout)
                    .map_err(|source| {
                        Error::kafka(
                            format!("reading the partition count of topic `{}`", r.topic),
                            source,
                        )
                    })?;
                let c = md
                    .topics()
                    .iter()
                    .find(|t| t.name() == &*r.topic && t.error().is_none())
                    .map_or(0, |t| t.partitions().len() as i32);
                if c == 0 {
                    return Err(Error::Runtime(format!(
                        "topic `{}` has no partitions the producer knows of",
                        r.topic
                    )));
                }
                self.partition_counts.insert(r.topic.clone(), c);
                c
            }
        };
        Ok(Some(crate::partitioner::partition_for_key(
            &key[..n.min(key.len())],
            count,
        )))
    }

    /// Whether a transaction is open.
    pub(crate) fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    fn ensure_transaction(&mut self) -> Result<()> {
        if self.transactional && !self.in_transaction {
            self.producer
                .begin_transaction()
                .map_err(|source| Error::kafka("beginning a transaction", source))?;
            self.in_transaction = true;
        }
        Ok(())
    }

    /// Exactly-once: commits the open transaction (beginning one if none is open) together with
    /// the input offsets, fenced by the consumer's group metadata. Every record sent must be
    /// acknowledged first ([`Sink::wait_acked`]).
    pub(crate) fn commit_transaction(
        &mut self,
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        self.ensure_transaction()?;
        // rust-rdkafka's commit_transaction flushes first, polling in 100 ms slices even when
        // nothing is in flight any more; flush in short slices so it finds nothing to wait for.
        let deadline = Instant::now() + self.delivery_timeout;
        while self.producer.in_flight_count() > 0 {
            if Instant::now() > deadline {
                return Err(Error::Runtime(format!(
                    "{} records still in flight after {:?} before a transaction commit",
                    self.producer.in_flight_count(),
                    self.delivery_timeout
                )));
            }
            let _ = self.producer.flush(Duration::from_millis(1));
        }
        if offsets.count() > 0 {
            self.producer
                .send_offsets_to_transaction(offsets, group, self.delivery_timeout)
                .map_err(|source| {
                    Error::kafka("sending the input offsets to the transaction", source)
                })?;
        }
        self.producer
            .commit_transaction(self.delivery_timeout)
            .map_err(|source| Error::kafka("committing the transaction", source))?;
        self.in_transaction = false;
        Ok(())
    }

    /// Exactly-once: aborts the open transaction, if any. On failure the transaction counts as
    /// open still, so that an abort can be tried again (e.g. once the broker is back).
    pub(crate) fn abort_transaction(&mut self) -> Result<()> {
        if !self.in_transaction {
            return Ok(());
        }
        self.producer
            .abort_transaction(self.delivery_timeout)
            .map_err(|source| Error::kafka("aborting the transaction", source))?;
        self.in_transaction = false;
        Ok(())
    }

    /// Exactly-once, after an abort: forgets the aborted transaction's deliveries (their errors,
    /// and the changelog offsets acknowledged inside it), once the purged records reported back
    /// (for at most 5 s), and the delivery error that failed it.
    pub(crate) fn clear_deliveries(&mut self) {
        let ctx = self.producer.context();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut s = ctx.lock();
        while s.outstanding > 0 && Instant::now() < deadline {
            s = ctx
                .idle
                .wait_timeout(s, Duration::from_millis(50))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        *s = Deliveries::default();
        drop(s);
        self.fatal = None;
    }

    fn changelog_index(&mut self, topic: &Arc<str>) -> usize {
        match self.changelogs.iter().position(|t| t == topic) {
            Some(i) => i,
            None => {
                self.changelogs.push(topic.clone());
                self.changelogs.len() - 1
            }
        }
    }

    /// The origin code of an output record of the batch `entry` caused (`cause`): 0 for none;
    /// its offset's distance from the batch's first offset plus one when it is in the batch's
    /// partition (no bookkeeping); otherwise [`SIDE_ORIGIN`] with its key in the side table.
    fn origin_code(&self, cause: Option<Cause<'_>>, origin: Option<&Origin>) -> u32 {
        let Some(o) = origin else { return 0 };
        if let Some((topic, partition, base)) = cause
            && o.partition == partition
            && *o.topic == *topic
            && let Ok(delta) = u32::try_from(o.offset - base)
            && delta < SIDE_ORIGIN - 1
        {
            return delta + 1;
        }
        match u32::try_from(self.producer.context().lock().origins.insert(Some(o))) {
            Ok(key) if key < SIDE_ORIGIN => SIDE_ORIGIN | key,
            // Over 2^31 origins held: this one goes unnamed in a failure message.
            _ => 0,
        }
    }

    /// The origin of an output record, while it is held.
    fn origin_of(&self, opaque: usize) -> Option<Origin> {
        self.producer.context().lock().origin(opaque)
    }

    /// `n` records sent by this thread will get no delivery report.
    fn unsent(&self, n: u64) {
        if n > 0 && self.producer.context().lock().unsent(n) {
            self.producer.context().idle.notify_all();
        }
    }

    /// An output record (`opaque`) is settled without a delivery of its own: skipped by its
    /// policy.
    fn settle_output(&self, opaque: usize) {
        let mut s = self.producer.context().lock();
        s.forget_origin(opaque);
        s.flights.settle(entry_of(opaque), 1);
    }

    /// Sends the outputs and changelog records of one input batch (`cause`: its topic,
    /// partition and first offset; `None` for a wall-clock punctuation's) without waiting for
    /// acknowledgements (librdkafka batches them); they hold that partition's watermark until
    /// they are settled ([`Sink::watermark`]). The bookkeeping is per batch: one lock. A record
    /// librdkafka refuses for what it is (too large, invalid) goes through the production policy
    /// of its topic; a changelog record never does.
    pub(crate) fn send(
        &mut self,
        cause: Option<Cause<'_>>,
        records: &[ProducerRecord],
        changelog: &[ProducerRecord],
    ) -> Result<()> {
        let n = records.len() + changelog.len();
        if n == 0 {
            return Ok(());
        }
        self.ensure_transaction()?;
        let entry = {
            let mut s = self.producer.context().lock();
            let entry = match (cause, u32::try_from(n)) {
                (None, _) => Some(0),
                (Some((topic, partition, base)), Ok(n)) => {
                    s.flights.begin(topic, partition, base, n)
                }
                (Some(_), Err(_)) => None,
            };
            if entry.is_some() {
                s.outstanding += n as u64;
            }
            entry
        };
        let Some(entry) = entry else {
            return Err(Error::Internal(format!(
                "too many batches or records in flight to track ({n} records in this one)"
            )));
        };
        let mut sent = 0;
        let result = self.send_all(entry, cause, records, changelog, &mut sent);
        if result.is_err() {
            // The records not handed over get no report; their batch stays unsettled (the app
            // stops: nothing after it is committed).
            self.unsent((n - sent) as u64);
        }
        result
    }

    fn send_all(
        &mut self,
        entry: usize,
        cause: Option<Cause<'_>>,
        records: &[ProducerRecord],
        changelog: &[ProducerRecord],
        sent: &mut usize,
    ) -> Result<()> {
        for r in records {
            let o = opaque(OUTPUT, entry, self.origin_code(cause, r.origin.as_ref()));
            *sent += 1;
            match self.send_one(r, o) {
                Ok(None) => {}
                Ok(Some(source)) => {
                    self.unsent(1);
                    self.on_send_error(r, false, o, source)?;
                }
                Err(e) => {
                    self.unsent(1);
                    return Err(e);
                }
            }
        }
        for r in changelog {
            let o = opaque(CHANGELOG, entry, self.changelog_index(&r.topic) as u32);
            *sent += 1;
            match self.send_one(r, o) {
                Ok(None) => {}
                Ok(Some(source)) => {
                    self.unsent(1);
                    self.on_send_error(r, true, o, source)?;
                }
                Err(e) => {
                    self.unsent(1);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Sends one record counted on its own (a dead letter, a record sent again alone).
    fn send_counted(&mut self, r: &ProducerRecord, opaque: usize) -> Result<Option<KafkaError>> {
        self.producer.context().lock().outstanding += 1;
        let sent = self.send_one(r, opaque);
        if !matches!(sent, Ok(None)) {
            self.unsent(1);
        }
        sent
    }

    /// A record librdkafka refused at send time (`opaque`: its delivery opaque): fail, skip or
    /// dead-letter it.
    fn on_send_error(
        &mut self,
        r: &ProducerRecord,
        changelog: bool,
        opaque: usize,
        source: KafkaError,
    ) -> Result<()> {
        let what = describe(&r.topic, r.partition, r.origin.as_ref());
        let policy = if changelog {
            OnBadRecord::Fail
        } else {
            self.policies.policy(&r.topic)
        };
        let message = format!("cannot send {what}: {source}");
        let fail = || Error::kafka(format!("sending {what}"), source.clone());
        self.skip_or_dead_letter(policy, r.clone(), opaque, &what, &message, &source, fail)
    }

    /// Sends the dead letter of the output record `opaque`: its acknowledgement settles it.
    fn send_dead_letter(&mut self, dead: &ProducerRecord, what: &str, opaque: usize) -> Result<()> {
        self.producer.context().lock().forget_origin(opaque);
        let o = self::opaque(DEAD_LETTER, entry_of(opaque), 0);
        match self.send_counted(dead, o)? {
            None => Ok(()),
            Some(source) => Err(Error::kafka(
                format!("dead-lettering {what} to topic `{}`", dead.topic),
                source,
            )),
        }
    }

    /// Sends one record, waiting while the queue is full (the caller counts it outstanding).
    /// `Ok(Some(error))`: librdkafka refused this record for what it is ([`is_record_error`]);
    /// any other refusal is an error.
    fn send_one(&mut self, r: &ProducerRecord, opaque: usize) -> Result<Option<KafkaError>> {
        let partition = self.own_partition(r)?.unwrap_or(-1);
        // Measured from the first refusal: no clock read per record.
        let mut deadline: Option<Instant> = None;
        loop {
            let sent = match self.topics.produce(&self.producer, r, partition, opaque) {
                Some(sent) => sent.map_err(KafkaError::MessageProduction),
                None => self.send_by_name(r, partition, opaque),
            };
            match sent {
                Ok(()) => return Ok(None),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    let deadline =
                        *deadline.get_or_insert_with(|| Instant::now() + self.delivery_timeout);
                    if Instant::now() > deadline {
                        return Err(Error::Runtime(format!(
                            "the producer queue stayed full for {:?} while sending to `{}`",
                            self.delivery_timeout, r.topic
                        )));
                    }
                    // Backpressure: let the background thread serve delivery reports.
                    self.queue_full_waits += 1;
                    metrics::counter!("kstreams_producer_queue_full_waits_total").increment(1);
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(source) => {
                    if is_record_error(&source) {
                        return Ok(Some(source));
                    }
                    return Err(Error::kafka(
                        format!(
                            "sending {}",
                            describe(&r.topic, r.partition, r.origin.as_ref())
                        ),
                        source,
                    ));
                }
            }
        }
    }

    /// Sends `r` through rdkafka's `BaseProducer::send` (by topic name): for a topic librdkafka
    /// made no handle of, so that its refusal of the name is the error.
    fn send_by_name(
        &self,
        r: &ProducerRecord,
        partition: i32,
        opaque: usize,
    ) -> std::result::Result<(), KafkaError> {
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&r.topic, opaque);
        if let Some(k) = &r.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            record = record.payload(v.as_slice());
        }
        if partition >= 0 {
            record = record.partition(partition);
        }
        if r.timestamp >= 0 {
            record = record.timestamp(r.timestamp);
        }
        if !r.headers.is_empty() {
            let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
            for (key, value) in r.headers.iter() {
                h = h.insert(Header { key, value });
            }
            record = record.headers(h);
        }
        self.producer.send(record).map_err(|(e, _)| e)
    }

    /// How many records are sent but not yet acknowledged.
    pub(crate) fn outstanding(&self) -> u64 {
        self.producer.context().lock().outstanding
    }

    /// Times a send waited for room in the producer's queue since the last call.
    pub(crate) fn take_queue_full_waits(&mut self) -> u64 {
        std::mem::take(&mut self.queue_full_waits)
    }

    /// Output records skipped and dead-lettered by the production policy since the last call.
    pub(crate) fn take_handled(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.skipped),
            std::mem::take(&mut self.dead_lettered),
        )
    }

    /// Waits until every record sent so far is acknowledged, or dead-lettered (acknowledged too)
    /// or skipped by the production policy; fails on a delivery error the policy does not handle,
    /// or after the delivery timeout. Once it failed, every later call fails too (a record may
    /// have been neither delivered nor handled: nothing may be committed after it).
    pub(crate) fn wait_acked(&mut self) -> Result<()> {
        self.fatal_once(|sink| sink.wait_acked_once(VecDeque::new()))
    }

    /// Handles the delivery failures reported so far, without waiting for the records still in
    /// flight (an interval commit): each goes through its production policy as in
    /// [`Sink::wait_acked`], which this falls back to only when a record must be sent again
    /// alone (a size error in a batch: alone means nothing else in flight). Fails, and every
    /// later call with it, as [`Sink::wait_acked`].
    pub(crate) fn settle(&mut self) -> Result<()> {
        self.fatal_once(|sink| {
            let failed = std::mem::take(&mut sink.producer.context().lock().failed);
            let mut alone = VecDeque::new();
            for f in failed {
                sink.on_delivery_failure(f, &mut alone)?;
            }
            if alone.is_empty() {
                Ok(())
            } else {
                sink.wait_acked_once(alone)
            }
        })
    }

    /// Runs `f` unless a delivery failed before; a failure of `f` fails every later call.
    fn fatal_once(&mut self, f: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        if let Some(e) = &self.fatal {
            return Err(Error::Runtime(e.clone()));
        }
        f(self).map_err(|e| {
            let message = e.to_string();
            self.fatal = Some(message.clone());
            Error::Runtime(message)
        })
    }

    /// Waits until nothing is outstanding, handling failures; `alone`: records refused with a
    /// size error, to send again one at a time.
    fn wait_acked_once(&mut self, mut alone: VecDeque<Failed>) -> Result<()> {
        loop {
            let failed = self.wait_event()?;
            if failed.is_empty() {
                // Nothing outstanding.
                let Some(f) = alone.pop_front() else {
                    return Ok(());
                };
                let opaque = (f.opaque & !KIND_MASK) | ALONE;
                let (record, _) = f.into_record(None);
                if let Some(source) = self.send_counted(&record, opaque)? {
                    let origin = self.origin_of(opaque);
                    let r = ProducerRecord { origin, ..record };
                    self.on_send_error(&r, false, opaque, source)?;
                }
                continue;
            }
            for f in failed {
                self.on_delivery_failure(f, &mut alone)?;
            }
        }
    }

    /// Waits until nothing is outstanding (returns no failure) or a delivery failed (returns the
    /// failures so far).
    fn wait_event(&self) -> Result<Vec<Failed>> {
        let ctx = self.producer.context();
        let deadline = Instant::now() + self.delivery_timeout + Duration::from_secs(5);
        let mut s = ctx.lock();
        loop {
            if !s.failed.is_empty() {
                return Ok(std::mem::take(&mut s.failed));
            }
            if s.outstanding == 0 {
                return Ok(Vec::new());
            }
            let now = Instant::now();
            if now > deadline {
                return Err(Error::Runtime(format!(
                    "{} records were not acknowledged by the broker within {:?}",
                    s.outstanding, self.delivery_timeout
                )));
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            s = ctx
                .idle
                .wait_timeout(s, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// A delivery the broker refused: fail, send again alone (a size error in a batch), skip or
    /// dead-letter. Changelog and dead-letter records, errors that are not about the record, and
    /// every delivery error under exactly-once (the transaction is abortable) fail; a failure
    /// leaves its batch unsettled, so its partition's watermark stays below it.
    fn on_delivery_failure(&mut self, f: Failed, alone: &mut VecDeque<Failed>) -> Result<()> {
        let kind = kind_of(f.opaque);
        let output = kind == OUTPUT || kind == ALONE;
        let origin = if output {
            self.origin_of(f.opaque)
        } else {
            None
        };
        // Held only while the record may be sent again alone (a size error in a batch).
        let resend = kind == OUTPUT && !self.transactional && is_size_error(&f.error);
        let what = describe(&f.topic, Some(f.partition), origin.as_ref());
        let message = format!("cannot deliver {what}: {}", f.error);
        if !output || self.transactional || !is_record_error(&f.error) {
            return Err(Error::Runtime(message));
        }
        let policy = self.policies.policy(&f.topic);
        if policy == OnBadRecord::Fail && kind == ALONE {
            return Err(Error::Runtime(message));
        }
        if resend {
            alone.push_back(f);
            return Ok(());
        }
        let opaque = f.opaque;
        let (unproducible, error) = f.into_record(origin);
        let fail = || Error::Runtime(message.clone());
        self.skip_or_dead_letter(policy, unproducible, opaque, &what, &message, &error, fail)
    }

    /// The production policy of an output record (`opaque`) that cannot be sent or delivered
    /// (`r`, with its origin; `message` says why, for the dead-letter header): `Fail` returns
    /// `fail()` (its batch stays unsettled), `Skip` counts it and settles it, `DeadLetter` sends
    /// the record's bytes to the dead-letter topic, whose acknowledgement settles it, and counts
    /// it. The one copy for send-time and delivery-time failures.
    #[allow(clippy::too_many_arguments)]
    fn skip_or_dead_letter(
        &mut self,
        policy: OnBadRecord,
        r: ProducerRecord,
        opaque: usize,
        what: &str,
        message: &str,
        error: &dyn std::fmt::Display,
        fail: impl FnOnce() -> Error,
    ) -> Result<()> {
        match policy {
            OnBadRecord::Fail => Err(fail()),
            OnBadRecord::Skip => {
                count_skipped(&r.topic, stage::PRODUCE, &what, error);
                self.skipped += 1;
                self.settle_output(opaque);
                Ok(())
            }
            OnBadRecord::DeadLetter { topic } => {
                let dead = dead_letter_record(
                    &topic,
                    r.origin.as_ref(),
                    stage::PRODUCE,
                    message,
                    Some(&r.topic),
                    r.key,
                    r.value,
                    r.timestamp,
                    r.headers,
                );
                self.send_dead_letter(&dead, what, opaque)?;
                count_dead_lettered(&r.topic, stage::PRODUCE, &what, error, &topic);
                self.dead_lettered += 1;
                Ok(())
            }
        }
    }

    /// The next offset after the highest acknowledged record of a changelog partition.
    pub(crate) fn changelog_acked(&self, topic: &str, partition: i32) -> Option<i64> {
        let i = self.changelogs.iter().position(|t| &**t == topic)?;
        self.producer
            .context()
            .lock()
            .changelog_acked
            .get(&(i, partition))
            .copied()
    }

    /// Forgets the acknowledged offsets of a changelog partition (its task moved away).
    pub(crate) fn forget(&self, topic: &str, partition: i32) {
        if let Some(i) = self.changelogs.iter().position(|t| &**t == topic) {
            self.producer
                .context()
                .lock()
                .changelog_acked
                .remove(&(i, partition));
        }
    }

    /// The offset up to which input partition `partition` of `topic` may be committed under
    /// at-least-once, given `processed`, its next offset to process: the first offset of its
    /// oldest batch with an output or changelog record not settled yet, or `processed`.
    pub(crate) fn watermark(&self, topic: &str, partition: i32, processed: i64) -> i64 {
        let below = self
            .producer
            .context()
            .lock()
            .flights
            .below(topic, partition);
        below.map_or(processed, |b| b.min(processed))
    }

    /// Forgets the batches of an input partition (revoked; drained before): any still in flight
    /// hold no watermark.
    pub(crate) fn forget_input(&self, topic: &str, partition: i32) {
        self.producer
            .context()
            .lock()
            .flights
            .forget(topic, partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(topic: &Arc<str>, partition: i32, offset: i64) -> Origin {
        Origin {
            topic: topic.clone(),
            partition,
            offset,
        }
    }

    #[test]
    fn origins_and_batches_stay_bounded_when_a_commit_always_finds_records_outstanding() {
        // Steady load: the broker acknowledges each output 500 records after it was sent, so
        // every commit finds records outstanding; what is held stays bounded by what is in
        // flight. Batches of 10 inputs, one output each; every fifth output has an origin in
        // another partition (held in the side table).
        let topic: Arc<str> = "in".into();
        let mut d = Deliveries::default();
        let mut in_flight = VecDeque::new();
        let (mut most_batches, mut most_origins) = (0, 0);
        for base in (0..100_000).step_by(10) {
            let entry = d.flights.begin("in", 0, base, 10).expect("room");
            for offset in base..base + 10 {
                let o = if offset % 5 == 0 {
                    origin(&topic, 1, offset)
                } else {
                    origin(&topic, 0, offset)
                };
                let code = if o.partition == 0 {
                    (offset - base + 1) as u32
                } else {
                    SIDE_ORIGIN | d.origins.insert(Some(&o)) as u32
                };
                let op = opaque(OUTPUT, entry, code);
                assert_eq!(d.origin(op).as_ref(), Some(&o));
                in_flight.push_back((op, o));
                if in_flight.len() > 500
                    && let Some((op, _)) = in_flight.pop_front()
                {
                    // What the delivery callback does for an acknowledged record.
                    d.acknowledged(op, 0, 0);
                }
            }
            most_batches = most_batches.max(d.flights.len());
            most_origins = most_origins.max(d.origins.len());
            let oldest = in_flight.front().map(|(_, o)| o.offset / 10 * 10);
            assert_eq!(d.flights.below("in", 0), oldest);
        }
        assert!(
            most_batches <= 51,
            "at most the batches in flight: {most_batches}"
        );
        assert!(
            most_origins <= 101,
            "at most the side origins in flight: {most_origins}"
        );
        // Every origin still in flight is still there, unchanged.
        for (op, o) in &in_flight {
            assert_eq!(d.origin(*op).as_ref(), Some(o));
        }
        for (op, _) in in_flight.drain(..) {
            d.acknowledged(op, 0, 0);
        }
        assert_eq!((d.flights.len(), d.origins.len()), (0, 0));
        assert_eq!(d.flights.below("in", 0), None);
        assert!(
            d.origins.partitions.is_empty(),
            "interned partitions freed too"
        );
    }

    #[test]
    fn acknowledgements_of_other_kinds_free_no_origin() {
        let topic: Arc<str> = "in".into();
        let mut d = Deliveries::default();
        let side = d.origins.insert(Some(&origin(&topic, 3, 7))) as u32;
        assert_eq!(d.origins.insert(None), 0, "no origin, no entry");
        // A changelog record whose payload happens to equal the output's code: its ack moves
        // the changelog offset and leaves the origin alone.
        d.acknowledged(opaque(CHANGELOG, 0, SIDE_ORIGIN | side), 0, 41);
        d.acknowledged(opaque(DEAD_LETTER, 0, SIDE_ORIGIN | side), 0, 1);
        assert_eq!(
            d.changelog_acked.get(&((SIDE_ORIGIN | side) as usize, 0)),
            Some(&42)
        );
        let output = opaque(ALONE, 0, SIDE_ORIGIN | side);
        assert_eq!(d.origin(output), Some(origin(&topic, 3, 7)));
        d.acknowledged(output, 0, 1);
        assert_eq!(d.origins.len(), 0);
    }

    #[test]
    fn the_opaque_keeps_kind_entry_and_payload_apart() {
        for (kind, entry, payload) in [
            (OUTPUT, 0, 0),
            (CHANGELOG, ENTRY_MASK, u32::MAX),
            (DEAD_LETTER, 12_345, SIDE_ORIGIN | 9),
            (ALONE, 1, 1),
        ] {
            let o = opaque(kind, entry, payload);
            assert_eq!(
                (kind_of(o), entry_of(o), payload_of(o)),
                (kind, entry, payload)
            );
        }
    }

    #[test]
    fn the_watermark_waits_for_the_oldest_batch_across_out_of_order_acks() {
        let mut d = Deliveries::default();
        // Partition 0 of `in`: batch A (offsets 0..3: outputs to two output partitions and a
        // changelog record), batch B (3..5: two outputs). Partition 1: batch C (offset 100).
        let a = d.flights.begin("in", 0, 0, 3).expect("room");
        let b = d.flights.begin("in", 0, 3, 2).expect("room");
        let c = d.flights.begin("in", 1, 100, 1).expect("room");
        assert_eq!(d.flights.below("in", 0), Some(0));
        assert_eq!(d.flights.below("in", 1), Some(100));
        // B's output partition is faster: both its records are acknowledged first.
        d.acknowledged(opaque(OUTPUT, b, 1), 1, 10);
        d.acknowledged(opaque(OUTPUT, b, 2), 1, 11);
        assert_eq!(d.flights.below("in", 0), Some(0), "A holds the watermark");
        d.acknowledged(opaque(OUTPUT, a, 1), 0, 20);
        d.acknowledged(opaque(CHANGELOG, a, 0), 0, 5);
        assert_eq!(d.flights.below("in", 0), Some(0));
        assert_eq!(d.flights.len(), 3, "B is freed only behind A");
        d.acknowledged(opaque(OUTPUT, a, 3), 1, 12);
        assert_eq!(d.flights.below("in", 0), None, "A and B settled");
        assert_eq!(d.flights.len(), 1);
        // The other partition was never held back by this one.
        assert_eq!(d.flights.below("in", 1), Some(100));
        d.acknowledged(opaque(CHANGELOG, c, 0), 1, 6);
        assert_eq!(d.flights.below("in", 1), None);
        assert_eq!(d.flights.len(), 0);
        assert_eq!(d.changelog_acked.get(&(0, 1)), Some(&7));
        // A batch with no record holds nothing.
        assert_eq!(d.flights.begin("in", 0, 5, 0), Some(0));
        assert_eq!(d.flights.below("in", 0), None);
    }

    #[test]
    fn a_failed_delivery_holds_the_watermark_and_a_revoked_partition_holds_none() {
        let mut d = Deliveries::default();
        let a = d.flights.begin("in", 0, 0, 2).expect("room");
        let b = d.flights.begin("in", 0, 2, 1).expect("room");
        d.acknowledged(opaque(OUTPUT, a, 1), 0, 0);
        // A's second record failed: the callback records the failure and settles nothing.
        d.acknowledged(opaque(OUTPUT, b, 1), 0, 1);
        assert_eq!(
            d.flights.below("in", 0),
            Some(0),
            "the failed record holds it"
        );
        // Revoked (the app drained or stopped first): the partition holds no watermark, and
        // the failed batch is freed once settled, without reviving the partition.
        d.flights.forget("in", 0);
        assert_eq!(d.flights.below("in", 0), None);
        assert_eq!(d.flights.len(), 1);
        d.flights.settle(a, 1);
        assert_eq!(d.flights.len(), 0);
        // Assigned again: new batches count from scratch.
        let c = d.flights.begin("in", 0, 50, 1).expect("room");
        assert_eq!(d.flights.below("in", 0), Some(50));
        d.flights.settle(c, 1);
        assert_eq!(d.flights.below("in", 0), None);
    }

    /// A sink with no broker behind it: records sent stay in flight.
    fn offline_sink(config: AppConfig) -> Sink {
        Sink::new(&config, "127.0.0.1:1", None).expect("a producer")
    }

    /// What the delivery callback records for a failed output record of batch `entry`.
    fn fail(sink: &Sink, entry: usize, code: u32, error: RDKafkaErrorCode) -> usize {
        let o = opaque(OUTPUT, entry, code);
        let mut s = sink.producer.context().lock();
        s.outstanding -= 1;
        s.failed.push(Failed {
            opaque: o,
            topic: "out".into(),
            partition: 0,
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            timestamp: 1,
            headers: Headers::new(),
            error: KafkaError::MessageProduction(error),
        });
        o
    }

    fn output(offset: i64) -> ProducerRecord {
        ProducerRecord {
            topic: "out".into(),
            partition: Some(0),
            partition_key_len: None,
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            timestamp: 1,
            headers: Headers::new(),
            origin: Some(origin(&"in".into(), 0, offset)),
        }
    }

    #[test]
    fn skipped_and_dead_lettered_outputs_settle_their_batch_and_a_failure_never_does() {
        let base = AppConfig::new("wm-unit").delivery_timeout(Duration::from_secs(60));
        // Skip: the failed record is settled when its failure is handled.
        let mut sink = offline_sink(base.clone().on_production_error(OnBadRecord::Skip));
        sink.send(Some(("in", 0, 10)), &[output(10), output(11)], &[])
            .expect("sent");
        assert_eq!(sink.outstanding(), 2);
        assert_eq!(sink.watermark("in", 0, 12), 10);
        let entry = 1;
        fail(&sink, entry, 2, RDKafkaErrorCode::InvalidRecord);
        sink.settle().expect("skipped");
        assert_eq!(sink.take_handled(), (1, 0));
        // The other record is still in flight: the batch holds the watermark.
        assert_eq!(sink.watermark("in", 0, 12), 10);
        sink.producer
            .context()
            .lock()
            .acknowledged(opaque(OUTPUT, entry, 1), 0, 0);
        assert_eq!(
            sink.watermark("in", 0, 12),
            12,
            "settled: up to what is processed"
        );

        // Dead letter: the dead letter's acknowledgement settles the record.
        let mut sink = offline_sink(base.clone().on_production_error(OnBadRecord::DeadLetter {
            topic: "dlq".into(),
        }));
        sink.send(Some(("in", 0, 0)), &[output(0)], &[])
            .expect("sent");
        let failed = fail(&sink, 1, 1, RDKafkaErrorCode::InvalidRecord);
        sink.settle().expect("dead-lettered");
        assert_eq!(sink.take_handled(), (0, 1));
        assert_eq!(sink.outstanding(), 1, "the dead letter is in flight");
        assert_eq!(
            sink.watermark("in", 0, 1),
            0,
            "held until the dead letter is acked"
        );
        sink.producer
            .context()
            .lock()
            .acknowledged(opaque(DEAD_LETTER, entry_of(failed), 0), 0, 0);
        assert_eq!(sink.watermark("in", 0, 1), 1);

        // Fail (and any error not about the record): the batch stays unsettled, the error names
        // the input record, and every later commit fails with it.
        let mut sink = offline_sink(base.on_production_error(OnBadRecord::Fail));
        sink.send(Some(("in", 0, 7)), &[output(7), output(8)], &[])
            .expect("sent");
        fail(&sink, 1, 2, RDKafkaErrorCode::InvalidRecord);
        let e = sink.settle().expect_err("fails").to_string();
        assert!(e.contains("topic `in` partition 0 offset 8"), "{e}");
        sink.producer
            .context()
            .lock()
            .acknowledged(opaque(OUTPUT, 1, 1), 0, 0);
        assert_eq!(sink.watermark("in", 0, 9), 7, "nothing past the failure");
        assert!(sink.settle().is_err() && sink.wait_acked().is_err());
    }
}
