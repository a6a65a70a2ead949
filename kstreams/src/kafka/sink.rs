//! The sink: batched, asynchronous produce with delivery tracking.
//!
//! Owns: [`Sink`] (a `ThreadedProducer` whose delivery callbacks count outstanding records, keep
//! the first delivery errors and the highest acknowledged offset of every changelog partition) and
//! [`Sink::wait_acked`], which a commit calls: it returns only once every record sent so far is
//! acknowledged, or with the delivery error. Keys are partitioned with murmur2, like the Java
//! clients (`partitioner=murmur2_random`; changelog records carry their partition).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;

use super::config::{AppConfig, ProcessingGuarantee};
use crate::error::{Error, Result};
use crate::record::ProducerRecord;

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

#[derive(Debug, Default)]
struct Deliveries {
    outstanding: u64,
    errors: Vec<String>,
    /// `(changelog index, partition)` to the next offset after the highest acknowledged one.
    changelog_acked: HashMap<(usize, i32), i64>,
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
        log_to_tracing(level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "producer: {reason}");
    }
}

impl ProducerContext for SinkContext {
    /// 0 for an output record, `i + 1` for changelog topic `i`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        let mut s = self.lock();
        match result {
            Ok(m) => {
                if tag > 0 {
                    let next = m.offset() + 1;
                    let e = s
                        .changelog_acked
                        .entry((tag - 1, m.partition()))
                        .or_insert(next);
                    *e = (*e).max(next);
                }
            }
            Err((e, m)) => {
                if s.errors.len() < 10 {
                    s.errors.push(format!(
                        "cannot deliver a record to topic `{}` partition {}: {e}",
                        m.topic(),
                        m.partition()
                    ));
                }
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
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("changelogs", &self.changelogs)
            .finish_non_exhaustive()
    }
}

impl Sink {
    pub(crate) fn new(config: &AppConfig, bootstrap: &str) -> Result<Self> {
        let producer: ThreadedProducer<SinkContext> = config
            .producer_config(bootstrap)
            .create_with_context(SinkContext::default())
            .map_err(super::config::redact_client_error)
            .map_err(|source| Error::Kafka {
                context: "creating the producer".into(),
                source,
            })?;
        let transactional = config.guarantee == ProcessingGuarantee::ExactlyOnce;
        if transactional {
            // Fences a previous incarnation with the same transactional id and aborts the
            // transaction it left open (a crash), before anything is restored or read.
            producer
                .init_transactions(config.startup_timeout)
                .map_err(|source| Error::Kafka {
                    context: format!(
                        "initializing transactions (transactional.id `{}`)",
                        config.effective_transactional_id()
                    ),
                    source,
                })?;
        }
        Ok(Sink {
            producer,
            changelogs: Vec::new(),
            delivery_timeout: config.delivery_timeout,
            transactional,
            in_transaction: false,
        })
    }

    /// Whether a transaction is open.
    pub(crate) fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    fn ensure_transaction(&mut self) -> Result<()> {
        if self.transactional && !self.in_transaction {
            self.producer
                .begin_transaction()
                .map_err(|source| Error::Kafka {
                    context: "beginning a transaction".into(),
                    source,
                })?;
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
                .map_err(|source| Error::Kafka {
                    context: "sending the input offsets to the transaction".into(),
                    source,
                })?;
        }
        self.producer
            .commit_transaction(self.delivery_timeout)
            .map_err(|source| Error::Kafka {
                context: "committing the transaction".into(),
                source,
            })?;
        self.in_transaction = false;
        Ok(())
    }

    /// Exactly-once: aborts the open transaction, if any (after an error; the app then stops).
    pub(crate) fn abort_transaction(&mut self) -> Result<()> {
        if !self.in_transaction {
            return Ok(());
        }
        self.in_transaction = false;
        self.producer
            .abort_transaction(self.delivery_timeout)
            .map_err(|source| Error::Kafka {
                context: "aborting the transaction".into(),
                source,
            })
    }

    fn tag(&mut self, topic: &Arc<str>, changelog: bool) -> usize {
        if !changelog {
            return 0;
        }
        match self.changelogs.iter().position(|t| t == topic) {
            Some(i) => i + 1,
            None => {
                self.changelogs.push(topic.clone());
                self.changelogs.len()
            }
        }
    }

    /// Sends records without waiting for acknowledgements (librdkafka batches them).
    pub(crate) fn send(&mut self, records: &[ProducerRecord], changelog: bool) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.ensure_transaction()?;
        for r in records {
            let tag = self.tag(&r.topic, changelog);
            let mut headers = None;
            if !r.headers.is_empty() {
                let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
                for (key, value) in r.headers.iter() {
                    h = h.insert(Header { key, value });
                }
                headers = Some(h);
            }
            let mut record: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&r.topic, tag);
            if let Some(k) = &r.key {
                record = record.key(k.as_slice());
            }
            if let Some(v) = &r.value {
                record = record.payload(v.as_slice());
            }
            if let Some(p) = r.partition {
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
                    Ok(()) => break,
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
                        return Err(Error::Kafka {
                            context: format!("sending a record to topic `{}`", r.topic),
                            source,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// How many records are sent but not yet acknowledged.
    pub(crate) fn outstanding(&self) -> u64 {
        self.producer.context().lock().outstanding
    }

    /// Waits until every record sent so far is acknowledged; fails on the first delivery error or
    /// after the delivery timeout.
    pub(crate) fn wait_acked(&self) -> Result<()> {
        let ctx = self.producer.context();
        let deadline = Instant::now() + self.delivery_timeout + Duration::from_secs(5);
        let mut s = ctx.lock();
        loop {
            if !s.errors.is_empty() {
                return Err(Error::Runtime(s.errors.join("; ")));
            }
            if s.outstanding == 0 {
                return Ok(());
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
