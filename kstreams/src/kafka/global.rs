//! Global tables: every partition of every global table's topic, on every instance, in one
//! state of its own.
//!
//! Owns: [`Global`] (the global consumer, not in the group, assigned every partition of every
//! global topic; the global state, one [`StateStores`] in `<state dir>/<application id>/global`,
//! locked like a task's), its restore before any task processes ([`Global::restore`]: to the end
//! offsets read when it begins, in bounded steps of `restore_batch_records`, one topic after the
//! other, logged at INFO at the start and the end with records/s as task restores are) and its
//! own thread that keeps the stores up to date afterwards ([`Global::spawn`]). Each polled batch
//! is one LMDB write transaction that also records, per partition, the next offset it reached
//! (the state's input position, invariant 5): a restart reads on from there, and restores
//! nothing it already has. Under exactly-once the consumer reads `read_committed` (the restore
//! consumer's config), so the end of a restore is the last stable offset.
//!
//! A record is written as it is in the topic (its key and value bytes are the store's serdes'
//! bytes, as a changelog's, with its timestamp); a null value deletes. A record with a null key,
//! or one the store's serdes cannot read (the table's check), is not stored: it goes through the
//! deserialization policy of its topic (`Fail`: an error naming topic, partition and offset;
//! `Skip`; `DeadLetter`, sent by a producer of the global thread and acknowledged before the
//! batch's transaction commits).
//!
//! May not touch: the group consumer, tasks, processing. Tasks read the global stores through a
//! read-only view of this state; only this module writes it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::app::ShutdownHandle;
use super::config::{AppConfig, redact_client_error};
use super::engine::kafka_err;
use super::restore::{RestoreContext, STEP_WAIT};
use crate::error::{Error, Part, Result, SerdeError};
use crate::exec::{Collector, TaskOutput};
use crate::record::{Origin, RawRecord};
use crate::store::{StateStores, StoreSpec};
use crate::topology::RecordCheck;

/// The directory of the global state: `<state dir>/<application id>/global`.
pub(super) fn state_path(config: &AppConfig) -> std::path::PathBuf {
    crate::task::TaskConfig::new(config.application_id.clone(), config.state_dir.clone())
        .global_state_dir()
}

/// A global table: its topic, its store, and the check of its records (can the store's serdes
/// read them).
pub(super) struct GlobalTopic {
    pub(super) topic: String,
    pub(super) spec: StoreSpec,
    pub(super) check: Option<RecordCheck>,
}

/// The topology's global tables.
pub(super) fn tables(topology: &crate::topology::Topology) -> Vec<GlobalTopic> {
    topology
        .globals()
        .iter()
        .map(|g| GlobalTopic {
            topic: g.topic.to_string(),
            spec: g.spec.clone(),
            check: Some(g.check.clone()),
        })
        .collect()
}

/// The global consumer and the global state of one instance.
pub(super) struct Global {
    consumer: BaseConsumer<RestoreContext>,
    state: StateStores,
    /// Each global topic with the index of its store in `state`, and its partition count.
    topics: Vec<(String, usize, i32)>,
    /// The check of each topic's records, in `topics`' order.
    checks: Vec<Option<RecordCheck>>,
    /// The next offset to read of every partition (`None`: from the beginning).
    next: BTreeMap<(String, i32), Option<i64>>,
    config: AppConfig,
    bootstrap: String,
    /// Sends dead-lettered records (made at the first one).
    dead_letters: Option<BaseProducer<DeadLetterContext>>,
}

impl std::fmt::Debug for Global {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Global")
            .field("topics", &self.topics)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Global {
    /// Opens the global state for `tables` (topic, store) and creates the global consumer;
    /// `None` when the topology has no global table. `partitions`: every topic's partition
    /// count, from the start-up metadata (a global topic that is missing is an error).
    pub(super) fn open(
        tables: &[GlobalTopic],
        partitions: &BTreeMap<String, i32>,
        config: &AppConfig,
        bootstrap: &str,
    ) -> Result<Option<Global>> {
        if tables.is_empty() {
            return Ok(None);
        }
        let mut topics = Vec::with_capacity(tables.len());
        for (i, GlobalTopic { topic, .. }) in tables.iter().enumerate() {
            let Some(&n) = partitions.get(topic) else {
                return Err(Error::Runtime(format!(
                    "global table topic `{topic}` does not exist on the Kafka cluster at \
                     {bootstrap}; create it before starting the application"
                )));
            };
            topics.push((topic.clone(), i, n));
        }
        let specs: Vec<StoreSpec> = tables.iter().map(|t| t.spec.clone()).collect();
        let checks = tables.iter().map(|t| t.check.clone()).collect();
        let state = StateStores::open(&state_path(config), specs, &config.lmdb)?;
        let position = state.position()?;
        let mut next = BTreeMap::new();
        for (topic, _, n) in &topics {
            for p in 0..*n {
                next.insert((topic.clone(), p), position.input(topic, p));
            }
        }
        let consumer = global_consumer(config, bootstrap)?;
        Ok(Some(Global {
            consumer,
            state,
            topics,
            checks,
            next,
            config: config.clone(),
            bootstrap: bootstrap.to_owned(),
            dead_letters: None,
        }))
    }

    /// The global state (tasks read it through its reader).
    pub(super) fn state(&self) -> &StateStores {
        &self.state
    }

    /// The partitions of `topics` (indices into `self.topics`) at their next offsets.
    fn partitions(&self, topics: &[usize]) -> Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for &t in topics {
            let (topic, _, n) = &self.topics[t];
            for p in 0..*n {
                let at = self
                    .next
                    .get(&(topic.clone(), p))
                    .copied()
                    .flatten()
                    .map_or(Offset::Beginning, Offset::Offset);
                tpl.add_partition_offset(topic, p, at)
                    .map_err(kafka_err("building the global consumer's assignment"))?;
            }
        }
        Ok(tpl)
    }

    /// Restores every global store to the end offsets its topic has now, one topic after the
    /// other, in steps of at most `restore_batch_records` records (one transaction each), before
    /// any task processes. Returns early (`Ok`) on shutdown. `lag` hears, per store, the records
    /// of its topic still to apply: when its topic's restore begins and after each step (for
    /// interactive queries' `Restoring`).
    pub(super) fn restore(
        &mut self,
        shutdown: &ShutdownHandle,
        lag: &mut dyn FnMut(&str, u64),
    ) -> Result<()> {
        let began = Instant::now();
        let mut total = 0u64;
        for t in 0..self.topics.len() {
            let (topic, _, n) = self.topics[t].clone();
            let mut high = BTreeMap::new();
            let mut to_go = 0i64;
            for p in 0..n {
                let (low, h) = super::admin::watermarks(
                    self.consumer.client(),
                    &topic,
                    p,
                    self.config.startup_timeout,
                )
                .map_err(kafka_err(format!(
                    "reading the offsets of global topic `{topic}` partition {p}"
                )))?;
                let from = self
                    .next
                    .get(&(topic.clone(), p))
                    .copied()
                    .flatten()
                    .unwrap_or(low)
                    .max(low);
                if from < h {
                    high.insert(p, h);
                    to_go += h - from;
                } else if from > h {
                    return Err(Error::Runtime(format!(
                        "the global state in {} recorded global topic `{topic}` partition {p} up \
                         to offset {from}, but the topic ends at {h}: the topic was recreated \
                         (delete the global state directory)",
                        state_path(&self.config).display()
                    )));
                }
            }
            let store = self.state.specs()[self.topics[t].1].name().to_owned();
            lag(&store, u64::try_from(to_go).unwrap_or(0));
            if high.is_empty() {
                tracing::debug!(%topic, "global store up to date");
                continue;
            }
            tracing::info!(%topic, partitions = high.len(),
                "restoring global table: {to_go} records at most");
            let topic_began = Instant::now();
            // One topic at a time: librdkafka's end-of-partition event names only the
            // partition.
            let tpl = self.partitions(&[t])?;
            self.consumer
                .incremental_assign(&tpl)
                .map_err(kafka_err(format!("assigning global topic `{topic}`")))?;
            let mut restored = 0u64;
            let mut last_progress = Instant::now();
            while !high.is_empty() {
                if shutdown.is_shutdown() {
                    return Ok(());
                }
                let (applied, eof) = self.step(self.config.restore_batch_records, STEP_WAIT)?;
                if applied > 0 {
                    restored += applied;
                    last_progress = Instant::now();
                    metrics::counter!("kstreams_restore_records_total",
                        "store" => store.clone())
                    .increment(applied);
                }
                let next_of = |p: &i32| {
                    self.next
                        .get(&(topic.clone(), *p))
                        .copied()
                        .flatten()
                        .unwrap_or(0)
                };
                high.retain(|p, h| next_of(p) < *h && !eof.contains(p));
                let left: i64 = high.iter().map(|(p, h)| (h - next_of(p)).max(0)).sum();
                lag(&store, u64::try_from(left).unwrap_or(0));
                if let Some((p, h)) = high.iter().next()
                    && last_progress.elapsed() > self.config.startup_timeout
                {
                    return Err(Error::Runtime(format!(
                        "restoring the global table of topic `{topic}` stalled at partition {p} \
                         (offset {:?}, end {h}) for {:?}",
                        self.next.get(&(topic.clone(), *p)).copied().flatten(),
                        self.config.startup_timeout
                    )));
                }
            }
            self.consumer
                .incremental_unassign(&tpl)
                .map_err(kafka_err(format!("unassigning global topic `{topic}`")))?;
            total += restored;
            let secs = topic_began.elapsed().as_secs_f64();
            let per_sec = (restored as f64 / secs.max(1e-3)).round() as u64;
            tracing::info!(%topic, records = restored, elapsed_ms = (secs * 1000.0) as u64,
                records_per_sec = per_sec,
                "restored global table: {restored} records in {secs:.1} s ({per_sec} records/s)");
        }
        tracing::debug!(
            records = total,
            elapsed_ms = began.elapsed().as_millis() as u64,
            "global tables restored"
        );
        // From here on: every partition of every global topic, from where it stands, on a
        // consumer of its own (reassigning partitions the restore just stopped trips a
        // librdkafka assertion, `rktp_started`, in `rd_kafka_assignment_partition_stopped`).
        self.consumer = global_consumer(&self.config, &self.bootstrap)?;
        let all: Vec<usize> = (0..self.topics.len()).collect();
        let tpl = self.partitions(&all)?;
        self.consumer
            .assign(&tpl)
            .map_err(kafka_err("assigning the global topics"))
    }

    /// Polls at most `max` records (the first within `wait`, the rest within `wait` after it)
    /// and applies them in one transaction. Returns the records applied and the partitions
    /// (of the one topic assigned while restoring) whose end was reached.
    fn step(&mut self, max: usize, wait: Duration) -> Result<(u64, Vec<i32>)> {
        let Global {
            consumer,
            state,
            topics,
            checks,
            next,
            config,
            bootstrap,
            dead_letters,
        } = self;
        let mut batch: Vec<BorrowedMessage<'_>> = Vec::new();
        let mut eof = Vec::new();
        let deadline = Instant::now() + wait;
        while batch.len() < max.max(1) {
            match consumer.poll(deadline.saturating_duration_since(Instant::now())) {
                None => break,
                Some(Ok(m)) => batch.push(m),
                Some(Err(KafkaError::PartitionEOF(p))) => eof.push(p),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "global consumer error");
                    break;
                }
            }
        }
        if batch.is_empty() {
            return Ok((0, eof));
        }
        let now = super::engine::now_ms();
        // The batch by partition, in offset order (as polled).
        let mut groups: BTreeMap<(&str, i32), Vec<RawRecord<'_>>> = BTreeMap::new();
        for m in &batch {
            groups
                .entry((m.topic(), m.partition()))
                .or_default()
                .push(super::convert::raw_record(m, now));
        }
        let index: BTreeMap<&str, (usize, Option<&RecordCheck>)> = topics
            .iter()
            .zip(checks.iter())
            .map(|((t, s, _), c)| (t.as_str(), (*s, c.as_ref())))
            .collect();
        // One transaction for the batch. Records the store's serdes cannot read go through
        // their topic's deserialization policy; dead letters are acknowledged before the
        // transaction (and the positions it records) commits. A transaction run again (a full
        // LMDB map) sends them again: at least once.
        let reports = state.transaction(|txn| {
            let mut reports = Vec::new();
            let mut produced = Vec::new();
            for ((topic, partition), records) in &groups {
                let Some(&(store, check)) = index.get(topic) else {
                    return Err(Error::Internal(format!(
                        "the global consumer polled topic `{topic}`, not a global table's"
                    )));
                };
                let mut stats = TaskOutput::default();
                let mut collector = Collector {
                    produced: &mut produced,
                    stats: &mut stats,
                    errors: &config.errors,
                    on_deserialization: config.errors.deserialization(topic),
                    on_processing: config.errors.processing(topic),
                    raw: records,
                    raw_topic: Some(topic),
                    handled: BTreeSet::new(),
                    policy_failed: false,
                    reports: Vec::new(),
                };
                for r in records {
                    if let Err((part, source)) = check_record(r, check) {
                        let origin = Origin::new(*topic, *partition, r.offset);
                        collector.bad_record(&origin, r, part, source)?;
                        continue;
                    }
                    if let Some(key) = r.key {
                        txn.restore_raw(store, key, r.value, r.timestamp)?;
                    }
                }
                reports.append(&mut collector.reports);
                if let Some(last) = records.last() {
                    txn.set_input_position(topic, *partition, last.offset + 1)?;
                }
            }
            if !produced.is_empty() {
                send_dead_letters(dead_letters, config, bootstrap, &produced)?;
            }
            Ok(reports)
        })?;
        for report in &reports {
            report.emit();
        }
        for ((topic, partition), records) in &groups {
            if let Some(last) = records.last() {
                next.insert(((*topic).to_owned(), *partition), Some(last.offset + 1));
            }
        }
        Ok((batch.len() as u64, eof))
    }

    /// Starts the thread that keeps the global stores up to date until `stop`, a shutdown, or
    /// another thread's failure (`failed`); an error of its own sets `failed`, so every
    /// processing thread stops too.
    pub(super) fn spawn(
        mut self,
        shutdown: ShutdownHandle,
        failed: Arc<AtomicBool>,
        stop: Arc<AtomicBool>,
        span: tracing::Span,
    ) -> Result<JoinHandle<Result<()>>> {
        let name = format!("kstreams-{}-global", self.config.application_id);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let _g = span.enter();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let max = self.config.batch_max_records;
                    while !(shutdown.is_shutdown()
                        || failed.load(Ordering::SeqCst)
                        || stop.load(Ordering::SeqCst))
                    {
                        self.step(max, Duration::from_millis(100))?;
                    }
                    Ok(())
                }))
                .unwrap_or_else(|_| Err(Error::Internal("the global thread panicked".into())));
                if let Err(e) = &result {
                    tracing::error!(error = %e, "the global thread failed; stopping");
                    failed.store(true, Ordering::SeqCst);
                }
                result
            })
            .map_err(|e| Error::Io {
                context: "spawning the global thread".into(),
                source: e,
            })
    }
}

/// Whether a global table's record can be stored: it needs a key, and the store's serdes must
/// read it (`check`, the table's).
fn check_record(
    r: &RawRecord<'_>,
    check: Option<&RecordCheck>,
) -> std::result::Result<(), (Part, SerdeError)> {
    if r.key.is_none() {
        return Err((
            Part::Key,
            SerdeError::new("a table record needs a key; this one has a null key"),
        ));
    }
    match check {
        Some(check) => check(r.key, r.value),
        None => Ok(()),
    }
}

/// A consumer for the global topics: the restore consumer's config (`read_committed` under
/// exactly-once), outside the group (partitions are assigned, offsets never committed).
fn global_consumer(config: &AppConfig, bootstrap: &str) -> Result<BaseConsumer<RestoreContext>> {
    config
        .restore_consumer_config(bootstrap)
        .set("group.id", format!("{}-global", config.application_id))
        .create_with_context(RestoreContext)
        .map_err(redact_client_error)
        .map_err(kafka_err("creating the global consumer"))
}

/// The dead-letter producer's context: remembers the first failed delivery.
#[derive(Debug, Default)]
struct DeadLetterContext {
    failed: std::sync::Mutex<Option<String>>,
}

impl rdkafka::ClientContext for DeadLetterContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::observe::librdkafka_log(level, fac, log_message);
    }
}

impl rdkafka::producer::ProducerContext for DeadLetterContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            super::lock(&self.failed).get_or_insert_with(|| e.to_string());
        }
    }
}

/// Sends dead-lettered records of global topics and waits until they are acknowledged (before
/// the batch's transaction commits: nothing is lost if the process dies in between).
fn send_dead_letters(
    producer: &mut Option<BaseProducer<DeadLetterContext>>,
    config: &AppConfig,
    bootstrap: &str,
    records: &[crate::record::ProducerRecord],
) -> Result<()> {
    if producer.is_none() {
        let mut c = config.producer_config(bootstrap, None);
        // Not transactional: the global thread has no transaction.
        c.remove("transaction.timeout.ms");
        *producer = Some(
            c.create_with_context(DeadLetterContext::default())
                .map_err(redact_client_error)
                .map_err(kafka_err(
                    "creating the global thread's dead-letter producer",
                ))?,
        );
    }
    let Some(p) = producer.as_ref() else {
        return Err(Error::Internal("no dead-letter producer".into()));
    };
    for r in records {
        let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
        for (key, value) in r.headers.iter() {
            h = h.insert(Header { key, value });
        }
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&r.topic).headers(h).timestamp(r.timestamp);
        if let Some(k) = &r.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            record = record.payload(v.as_slice());
        }
        p.send(record).map_err(|(e, _)| {
            Error::kafka(
                format!("sending a dead-lettered record to `{}`", r.topic),
                e,
            )
        })?;
    }
    p.flush(config.delivery_timeout)
        .map_err(kafka_err("flushing the global thread's dead letters"))?;
    match super::lock(&p.context().failed).take() {
        None => Ok(()),
        Some(e) => Err(Error::Runtime(format!(
            "a dead-lettered record of a global table topic was not delivered: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    use super::*;
    use crate::kafka::EmbeddedCluster;
    use crate::policy::OnBadRecord;

    fn produce(bootstrap: &str, topic: &str, records: &[(Option<&str>, Option<&str>, i32)]) {
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("producer");
        for (k, v, partition) in records {
            let mut r = BaseRecord::<str, str>::to(topic).partition(*partition);
            if let Some(k) = k {
                r = r.key(*k);
            }
            if let Some(v) = v {
                r = r.payload(*v);
            }
            p.send(r).map_err(|(e, _)| e).expect("send");
        }
        p.flush(Duration::from_secs(10)).expect("flush");
    }

    fn contents(global: &Global) -> Vec<(String, String)> {
        let reader = global.state().reader().expect("reader");
        reader
            .read(|txn| {
                txn.store::<String, String>("regions")?
                    .iter()?
                    .collect::<Result<Vec<_>>>()
            })
            .expect("read")
    }

    /// Restored to the end before anything else, one transaction per step, positions recorded
    /// per partition: a second open restores nothing it has, and reads on from there; a null
    /// value deletes; a null key is refused (the default policy fails, naming the record).
    #[test]
    fn the_global_state_is_restored_to_the_end_and_read_on_from_its_recorded_positions() {
        let cluster = EmbeddedCluster::start().expect("cluster");
        let b = cluster.bootstrap_servers().to_owned();
        cluster.create_topic("regions", 2).expect("topic");
        produce(
            &b,
            "regions",
            &[
                (Some("a"), Some("north"), 0),
                (Some("b"), Some("south"), 1),
                (Some("c"), Some("east"), 0),
                (Some("c"), None, 0),
                (Some("d"), Some("west"), 1),
            ],
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let config = AppConfig::new("global-test")
            .state_dir(dir.path())
            .restore_batch_records(2)
            .startup_timeout(Duration::from_secs(10));
        let tables = vec![GlobalTopic {
            topic: "regions".to_owned(),
            spec: StoreSpec::new::<String, String>("regions"),
            check: None,
        }];
        let counts: BTreeMap<String, i32> = [("regions".to_owned(), 2)].into_iter().collect();
        let shutdown = ShutdownHandle::default();
        let mut global = Global::open(&tables, &counts, &config, &b)
            .expect("open")
            .expect("a global table");
        global.restore(&shutdown, &mut |_, _| {}).expect("restore");
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            contents(&global),
            [s("a", "north"), s("b", "south"), s("d", "west")]
        );
        let pos = global.state().position().expect("position");
        assert_eq!(
            (pos.input("regions", 0), pos.input("regions", 1)),
            (Some(3), Some(2))
        );
        // The state dir is locked while open.
        assert!(matches!(
            Global::open(&tables, &counts, &config, &b),
            Err(Error::StateDirLocked { .. })
        ));
        drop(global);
        assert!(state_path(&config).exists());

        // Reopened: nothing to restore; new records are read from the recorded positions.
        produce(&b, "regions", &[(Some("a"), Some("up"), 0)]);
        let mut global = Global::open(&tables, &counts, &config, &b)
            .expect("open")
            .expect("a global table");
        assert_eq!(
            global
                .next
                .get(&("regions".to_owned(), 0))
                .copied()
                .flatten(),
            Some(3)
        );
        global.restore(&shutdown, &mut |_, _| {}).expect("restore");
        assert_eq!(
            contents(&global),
            [s("a", "up"), s("b", "south"), s("d", "west")]
        );
        // Running: a null key fails with the record named.
        produce(&b, "regions", &[(None, Some("x"), 1)]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let err = loop {
            match global.step(100, Duration::from_millis(100)) {
                Err(e) => break e.to_string(),
                Ok(_) => assert!(Instant::now() < deadline, "the null key was not refused"),
            }
        };
        assert!(
            err.contains("topic `regions` partition 1 offset 2") && err.contains("null key"),
            "{err}"
        );
        drop(global);

        // Dead-lettered instead: sent (and acknowledged) with its origin, the position moves
        // past it, and the record after it is stored.
        cluster.create_topic("dead", 1).expect("topic");
        produce(&b, "regions", &[(Some("e"), Some("far"), 1)]);
        let config = config.on_deserialization_error(OnBadRecord::DeadLetter {
            topic: "dead".to_owned(),
        });
        let mut global = Global::open(&tables, &counts, &config, &b)
            .expect("open")
            .expect("a global table");
        global.restore(&shutdown, &mut |_, _| {}).expect("restore");
        assert_eq!(
            global
                .state()
                .position()
                .expect("position")
                .input("regions", 1),
            Some(4)
        );
        assert!(contents(&global).contains(&s("e", "far")));
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .set("group.id", "dead-reader")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("dead", 0, Offset::Beginning)
            .expect("tpl");
        c.assign(&tpl).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(10);
        let dead = loop {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => break m.detach(),
                _ => assert!(Instant::now() < deadline, "no dead letter"),
            }
        };
        assert_eq!((dead.key(), dead.payload()), (None, Some(&b"x"[..])));
        use rdkafka::message::Headers as _;
        let headers = dead.headers().expect("headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value.map(<[u8]>::to_vec))
        };
        assert_eq!(header("kstreams.error.offset"), Some(b"2".to_vec()));
        assert_eq!(
            header("kstreams.error.stage"),
            Some(b"deserialize".to_vec())
        );
    }

    /// While the global tables restore, a query of a global store answers `Restoring` with the
    /// records of its topic still to apply, falling as the restore goes on; once restored, the
    /// values (the engine's `start_global` wires the lags and the reader the same way).
    #[test]
    fn queries_of_a_global_store_answer_restoring_with_its_lag_until_the_restore_ends() {
        use crate::query::{GLOBAL_PARTITION, Queries, QueryError};
        const RECORDS: usize = 9;
        let cluster = EmbeddedCluster::start().expect("cluster");
        let b = cluster.bootstrap_servers().to_owned();
        cluster.create_topic("regions-topic", 1).expect("topic");
        cluster.create_topic("rates-topic", 1).expect("topic");
        let keys: Vec<String> = (0..RECORDS).map(|i| format!("k{i}")).collect();
        let records: Vec<(Option<&str>, Option<&str>, i32)> = keys
            .iter()
            .map(|k| (Some(k.as_str()), Some("v"), 0))
            .collect();
        produce(&b, "regions-topic", &records);
        let topology = crate::query::tests::global_topology().expect("topology");
        let queries = Queries::new(&topology);
        let regions = queries
            .store_by_name::<String, String>("regions")
            .expect("a global store");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = AppConfig::new("global-queries")
            .state_dir(dir.path())
            .restore_batch_records(2)
            .startup_timeout(Duration::from_secs(10));
        let counts: BTreeMap<String, i32> = [("regions-topic", 1), ("rates-topic", 1)]
            .into_iter()
            .map(|(t, n)| (t.to_owned(), n))
            .collect();
        let mut global = Global::open(&tables(&topology), &counts, &config, &b)
            .expect("open")
            .expect("global tables");
        queries.global_restoring();
        let key = keys[RECORDS - 1].clone();
        let mut lags = Vec::new();
        global
            .restore(&ShutdownHandle::default(), &mut |store, lag| {
                queries.global_lag(store, lag);
                if store == "regions" {
                    match regions.get(&key) {
                        Err(QueryError::Restoring {
                            store,
                            partition: GLOBAL_PARTITION,
                            lag: l,
                        }) if store == "regions" => lags.push(l),
                        other => panic!("during the restore: {other:?}"),
                    }
                }
            })
            .expect("restore");
        assert_eq!(lags.first(), Some(&(RECORDS as u64)), "{lags:?}");
        assert_eq!(lags.last(), Some(&0), "{lags:?}");
        assert!(lags.windows(2).all(|w| w[1] <= w[0]), "{lags:?}");
        assert!(lags.len() > 2, "restored in steps of 2: {lags:?}");
        queries.global_running(global.state().reader().expect("reader"));
        assert_eq!(regions.get(&key).ok(), Some(Some("v".to_owned())));
        assert_eq!(regions.all().map(|a| a.len()).ok(), Some(RECORDS));
    }

    /// A record the table's check refuses (its store's serdes cannot read it) is not stored: it
    /// goes through the policy (here skipped), and the position moves past it.
    #[test]
    fn a_record_the_tables_check_refuses_goes_through_the_policy() {
        let cluster = EmbeddedCluster::start().expect("cluster");
        let b = cluster.bootstrap_servers().to_owned();
        cluster.create_topic("codes", 1).expect("topic");
        produce(
            &b,
            "codes",
            &[(Some("a"), Some("ok"), 0), (Some("b"), Some("bad"), 0)],
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let config = AppConfig::new("global-check")
            .state_dir(dir.path())
            .startup_timeout(Duration::from_secs(10))
            .on_deserialization_error(OnBadRecord::Skip);
        let check: RecordCheck = Arc::new(|_, value| match value {
            Some(b"bad") => Err((Part::Value, SerdeError::new("not a code"))),
            _ => Ok(()),
        });
        let tables = vec![GlobalTopic {
            topic: "codes".to_owned(),
            spec: StoreSpec::new::<String, String>("regions"),
            check: Some(check),
        }];
        let counts: BTreeMap<String, i32> = [("codes".to_owned(), 1)].into_iter().collect();
        let mut global = Global::open(&tables, &counts, &config, &b)
            .expect("open")
            .expect("a global table");
        global
            .restore(&ShutdownHandle::default(), &mut |_, _| {})
            .expect("restore");
        assert_eq!(contents(&global), [("a".to_owned(), "ok".to_owned())]);
        assert_eq!(
            global
                .state()
                .position()
                .expect("position")
                .input("codes", 0),
            Some(2)
        );
    }
}
