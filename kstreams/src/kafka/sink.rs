//! The sink: batched, asynchronous produce with delivery tracking.
//!
//! Owns: [`Sink`] (a `ThreadedProducer` whose delivery callbacks count outstanding records, keep
//! the first delivery errors and the highest acknowledged offset of every changelog partition) and
//! [`Sink::wait_acked`], which a commit calls: it returns only once every record sent so far is
//! acknowledged, or with the delivery error. Keys are partitioned with murmur2, like the Java
//! clients (`partitioner=murmur2_random`; changelog records carry their partition).
//!
//! Production errors go through the production policy of the sink topic (stage `produce`): a
//! record librdkafka refuses at send time, and (at-least-once) a record the broker refuses at
//! delivery. To name the input record a failed delivery came from, the delivery opaque of an
//! output record is a key into a table of origins ([`OriginTable`]: `(interned topic-partition,
//! offset)`, a slab of 16-byte entries, no allocation per record). An entry is freed when its
//! record's delivery is acknowledged (in the delivery callback), or once its failure was handled,
//! so the table holds at most the records in flight, however long the load never pauses.

use std::collections::{BTreeSet, HashMap};
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

/// The kind of a record, in the low two bits of its delivery opaque; the other bits are an index.
const KIND_BITS: usize = 2;
const KIND_MASK: usize = 0b11;
/// An output record; index 0: origin unknown, `k + 1`: the origin of key `k` in [`OriginTable`].
const OUTPUT: usize = 0;
/// A changelog record; index: the changelog topic.
const CHANGELOG: usize = 1;
/// A dead-letter record (its failure always fails).
const DEAD_LETTER: usize = 2;
/// An output record sent again alone after a size error; index as for [`OUTPUT`].
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
    outstanding: u64,
    failed: Vec<Failed>,
    /// `(changelog index, partition)` to the next offset after the highest acknowledged one.
    changelog_acked: HashMap<(usize, i32), i64>,
    /// The origins of the output records in flight.
    origins: OriginTable,
}

impl Deliveries {
    /// A record with delivery opaque `opaque` was acknowledged (at `offset` of `partition`).
    fn acknowledged(&mut self, opaque: usize, partition: i32, offset: i64) {
        match opaque & KIND_MASK {
            CHANGELOG => {
                let next = offset + 1;
                let e = self
                    .changelog_acked
                    .entry((opaque >> KIND_BITS, partition))
                    .or_insert(next);
                *e = (*e).max(next);
            }
            OUTPUT | ALONE => self.origins.remove(opaque >> KIND_BITS),
            _ => {}
        }
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

/// The producer of a running app.
pub(crate) struct Sink {
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
            // Fences a previous incarnation with the same transactional id and aborts the
            // transaction it left open (a crash), before anything is restored or read.
            producer
                .init_transactions(config.startup_timeout)
                .map_err(|source| {
                    Error::kafka(
                        format!(
                            "initializing transactions (transactional.id `{}`)",
                            transactional_id.unwrap_or_default()
                        ),
                        source,
                    )
                })?;
        }
        Ok(Sink {
            producer,
            changelogs: Vec::new(),
            delivery_timeout: config.delivery_timeout,
            transactional,
            in_transaction: false,
            policies: ProductionPolicies::new(config),
            fatal: None,
            skipped: 0,
            dead_lettered: 0,
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

    /// The opaque index of an output's origin (see [`OriginTable::insert`]).
    fn origin_index(&self, origin: Option<&Origin>) -> usize {
        if origin.is_none() {
            return 0;
        }
        self.producer.context().lock().origins.insert(origin)
    }

    /// The origin of an output's opaque index, while it is held.
    fn origin_at(&self, index: usize) -> Option<Origin> {
        self.producer.context().lock().origins.get(index)
    }

    /// Forgets the origin of an output whose failure is handled.
    fn forget_origin(&self, index: usize) {
        self.producer.context().lock().origins.remove(index);
    }

    /// Sends records without waiting for acknowledgements (librdkafka batches them). A record
    /// librdkafka refuses for what it is (too large, invalid) goes through the production policy
    /// of its topic; a changelog record never does.
    pub(crate) fn send(&mut self, records: &[ProducerRecord], changelog: bool) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.ensure_transaction()?;
        for r in records {
            let opaque = if changelog {
                (self.changelog_index(&r.topic) << KIND_BITS) | CHANGELOG
            } else {
                (self.origin_index(r.origin.as_ref()) << KIND_BITS) | OUTPUT
            };
            let sent = self.send_one(r, opaque);
            if !changelog && !matches!(sent, Ok(None)) {
                // Not in flight: no delivery report will free its origin.
                self.forget_origin(opaque >> KIND_BITS);
            }
            if let Some(source) = sent? {
                self.on_send_error(r, changelog, source)?;
            }
        }
        Ok(())
    }

    /// A record librdkafka refused at send time: fail, skip or dead-letter it.
    fn on_send_error(
        &mut self,
        r: &ProducerRecord,
        changelog: bool,
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
        self.skip_or_dead_letter(policy, r.clone(), &what, &message, &source, fail)
    }

    fn send_dead_letter(&mut self, dead: &ProducerRecord, what: &str) -> Result<()> {
        match self.send_one(dead, DEAD_LETTER)? {
            None => Ok(()),
            Some(source) => Err(Error::kafka(
                format!("dead-lettering {what} to topic `{}`", dead.topic),
                source,
            )),
        }
    }

    /// Sends one record, waiting while the queue is full. `Ok(Some(error))`: librdkafka refused
    /// this record for what it is ([`is_record_error`]); any other refusal is an error.
    fn send_one(&mut self, r: &ProducerRecord, opaque: usize) -> Result<Option<KafkaError>> {
        let mut headers = None;
        if !r.headers.is_empty() {
            let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
            for (key, value) in r.headers.iter() {
                h = h.insert(Header { key, value });
            }
            headers = Some(h);
        }
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&r.topic, opaque);
        if let Some(k) = &r.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            record = record.payload(v.as_slice());
        }
        if let Some(p) = self.own_partition(r)? {
            record = record.partition(p);
        }
        if r.timestamp >= 0 {
            record = record.timestamp(r.timestamp);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        self.producer.context().lock().outstanding += 1;
        let deadline = Instant::now() + self.delivery_timeout;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(None),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if Instant::now() > deadline {
                        self.producer.context().lock().outstanding -= 1;
                        return Err(Error::Runtime(format!(
                            "the producer queue stayed full for {:?} while sending to `{}`",
                            self.delivery_timeout, r.topic
                        )));
                    }
                    record = back;
                    // Backpressure: let the background thread serve delivery reports.
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((source, _)) => {
                    let mut s = self.producer.context().lock();
                    s.outstanding -= 1;
                    if s.outstanding == 0 {
                        self.producer.context().idle.notify_all();
                    }
                    drop(s);
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

    /// How many records are sent but not yet acknowledged.
    pub(crate) fn outstanding(&self) -> u64 {
        self.producer.context().lock().outstanding
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
        if let Some(e) = &self.fatal {
            return Err(Error::Runtime(e.clone()));
        }
        self.wait_acked_once().map_err(|e| {
            let message = e.to_string();
            self.fatal = Some(message.clone());
            Error::Runtime(message)
        })
    }

    fn wait_acked_once(&mut self) -> Result<()> {
        // Records refused with a size error, to send again one at a time.
        let mut alone: std::collections::VecDeque<Failed> = Default::default();
        loop {
            let failed = self.wait_event()?;
            if failed.is_empty() {
                // Nothing outstanding.
                let Some(f) = alone.pop_front() else {
                    return Ok(());
                };
                let index = f.opaque >> KIND_BITS;
                let opaque = (f.opaque & !KIND_MASK) | ALONE;
                let (record, _) = f.into_record(None);
                if let Some(source) = self.send_one(&record, opaque)? {
                    let origin = self.origin_at(index);
                    self.forget_origin(index);
                    let r = ProducerRecord { origin, ..record };
                    self.on_send_error(&r, false, source)?;
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
    /// every delivery error under exactly-once (the transaction is abortable) fail.
    fn on_delivery_failure(
        &mut self,
        f: Failed,
        alone: &mut std::collections::VecDeque<Failed>,
    ) -> Result<()> {
        let kind = f.opaque & KIND_MASK;
        let output = kind == OUTPUT || kind == ALONE;
        let origin = if output {
            self.origin_at(f.opaque >> KIND_BITS)
        } else {
            None
        };
        // Held only while the record may be sent again alone (a size error in a batch).
        let resend = kind == OUTPUT && !self.transactional && is_size_error(&f.error);
        if output && !resend {
            self.forget_origin(f.opaque >> KIND_BITS);
        }
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
        let (unproducible, error) = f.into_record(origin);
        let fail = || Error::Runtime(message.clone());
        self.skip_or_dead_letter(policy, unproducible, &what, &message, &error, fail)
    }

    /// The production policy of an output record that cannot be sent or delivered (`r`, with its
    /// origin; `message` says why, for the dead-letter header): `Fail` returns `fail()`, `Skip`
    /// counts it, `DeadLetter` sends the record's bytes to the dead-letter topic and counts it.
    /// The one copy for send-time and delivery-time failures.
    fn skip_or_dead_letter(
        &mut self,
        policy: OnBadRecord,
        r: ProducerRecord,
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
                self.send_dead_letter(&dead, what)?;
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
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    fn origin(topic: &Arc<str>, offset: i64) -> Origin {
        Origin {
            topic: topic.clone(),
            partition: (offset % 4) as i32,
            offset,
        }
    }

    #[test]
    fn origins_stay_bounded_when_a_commit_always_finds_records_outstanding() {
        // Steady load: the broker acknowledges each output 500 records after it was sent, so
        // every commit finds records outstanding (the old table, cleared only when nothing was,
        // grew by one entry per output, forever).
        let topic: Arc<str> = "in".into();
        let mut d = Deliveries::default();
        let mut in_flight = VecDeque::new();
        let mut most = 0;
        for offset in 0..100_000 {
            let o = origin(&topic, offset);
            let index = d.origins.insert(Some(&o));
            assert_eq!(d.origins.get(index).as_ref(), Some(&o));
            in_flight.push_back(((index << KIND_BITS) | OUTPUT, o));
            if in_flight.len() > 500
                && let Some((opaque, o)) = in_flight.pop_front()
            {
                // What the delivery callback does for an acknowledged record.
                d.acknowledged(opaque, o.partition, o.offset);
                assert_eq!(d.origins.get(opaque >> KIND_BITS), None, "freed");
            }
            most = most.max(d.origins.len());
        }
        assert_eq!(most, 500, "at most the records in flight");
        assert!(d.origins.entries.capacity() < 1024, "slots are reused");
        // Every origin still in flight is still there, unchanged.
        for (opaque, o) in &in_flight {
            assert_eq!(d.origins.get(opaque >> KIND_BITS).as_ref(), Some(o));
        }
        for (opaque, o) in in_flight.drain(..) {
            d.acknowledged(opaque, o.partition, o.offset);
        }
        assert_eq!(d.origins.len(), 0);
        assert!(
            d.origins.partitions.is_empty(),
            "interned partitions freed too"
        );
    }

    #[test]
    fn acknowledgements_of_other_kinds_free_no_origin() {
        let topic: Arc<str> = "in".into();
        let mut d = Deliveries::default();
        let index = d.origins.insert(Some(&origin(&topic, 7)));
        assert_eq!(d.origins.insert(None), 0, "no origin, no entry");
        // A changelog record whose index happens to equal the output's: its ack moves the
        // changelog offset and leaves the origin alone.
        d.acknowledged((index << KIND_BITS) | CHANGELOG, 0, 41);
        d.acknowledged(DEAD_LETTER, 0, 1);
        assert_eq!(d.changelog_acked.get(&(index, 0)), Some(&42));
        assert_eq!(d.origins.get(index), Some(origin(&topic, 7)));
        d.acknowledged((index << KIND_BITS) | ALONE, 0, 1);
        assert_eq!(d.origins.len(), 0);
    }
}
