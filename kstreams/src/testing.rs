//! Testing without a broker: [`TopologyTestDriver`] and the split-invariance check.
//!
//! Owns: in-memory topics (partitioned logs of raw records), the driver that feeds them to the very
//! same [`Task`] code the Kafka runtime runs, and
//! [`check_split_invariance`]. State lives in real LMDB files (a temporary directory) unless the
//! driver is told to keep it in memory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::context::{Clocks, Context, NodeInfo, Outputs};
use crate::error::{Error, Part, Result};
use crate::partitioner::partition_for_key;
use crate::record::{Headers, Origin, ProducerRecord, RawRecord, Record};
use crate::serde::{DefaultSerde, Serde};
use crate::store::{Position, StateStores};
use crate::task::{ErrorPolicies, OnBadRecord, Task, TaskConfig, TaskId, TaskOutput};
use crate::topology::Topology;

/// A record in an in-memory topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The key bytes.
    pub key: Option<Vec<u8>>,
    /// The value bytes.
    pub value: Option<Vec<u8>>,
    /// The timestamp.
    pub timestamp: i64,
    /// The headers.
    pub headers: Headers,
    /// Global append order across all topics (for reading outputs in production order).
    seq: u64,
}

#[derive(Debug, Default)]
struct TopicLog {
    partitions: Vec<Vec<StoredRecord>>,
    read_seq: u64,
}

/// How the driver cuts the records waiting in a partition into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// At most this many records per batch (`usize::MAX`: everything waiting, as one batch).
    Max(usize),
    /// Random batch sizes from 1 to `max`, from a seeded generator (reproducible).
    Random {
        /// The seed.
        seed: u64,
        /// The largest batch.
        max: usize,
    },
}

/// Builds a [`TopologyTestDriver`].
#[derive(Debug)]
pub struct DriverBuilder {
    topology: Topology,
    application_id: String,
    partitions: BTreeMap<String, i32>,
    state_dir: Option<PathBuf>,
    in_memory: bool,
    batching: Batching,
    wall_clock: i64,
    errors: ErrorPolicies,
}

impl DriverBuilder {
    /// Gives `topic` this many partitions (default 1). Co-partitioned sources need equal counts.
    #[must_use]
    pub fn partitions(mut self, topic: &str, partitions: i32) -> Self {
        self.partitions.insert(topic.to_owned(), partitions.max(1));
        self
    }

    /// Keeps state in this directory instead of a fresh temporary one (to test restarts).
    #[must_use]
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Keeps every store in memory instead of LMDB.
    #[must_use]
    pub fn in_memory_state(mut self) -> Self {
        self.in_memory = true;
        self
    }

    /// How waiting records are cut into batches (default: everything waiting, one batch).
    #[must_use]
    pub fn batching(mut self, batching: Batching) -> Self {
        self.batching = batching;
        self
    }

    /// The application id (default `test-app`).
    #[must_use]
    pub fn application_id(mut self, id: &str) -> Self {
        self.application_id = id.to_owned();
        self
    }

    /// The wall clock's start, in milliseconds (default 0).
    #[must_use]
    pub fn wall_clock(mut self, ms: i64) -> Self {
        self.wall_clock = ms;
        self
    }

    /// What to do with records that cannot be deserialized (default: fail).
    #[must_use]
    pub fn on_deserialization_error(mut self, policy: OnBadRecord) -> Self {
        self.errors = self.errors.on_deserialization_error(policy);
        self
    }

    /// What to do with records a processor fails with
    /// [`Context::fail_record`](crate::Context::fail_record) (default: fail).
    #[must_use]
    pub fn on_processing_error(mut self, policy: OnBadRecord) -> Self {
        self.errors = self.errors.on_processing_error(policy);
        self
    }

    /// What to do with records of source topic `topic` that cannot be deserialized (overrides
    /// [`on_deserialization_error`](Self::on_deserialization_error) for that topic;
    /// [`build`](Self::build) rejects a topic the topology does not read).
    #[must_use]
    pub fn on_deserialization_error_for(
        mut self,
        topic: impl Into<String>,
        policy: OnBadRecord,
    ) -> Self {
        self.errors = self.errors.on_deserialization_error_for(topic, policy);
        self
    }

    /// What to do with failed records read from source topic `topic` (overrides
    /// [`on_processing_error`](Self::on_processing_error) for that topic;
    /// [`build`](Self::build) rejects a topic the topology does not read).
    #[must_use]
    pub fn on_processing_error_for(
        mut self,
        topic: impl Into<String>,
        policy: OnBadRecord,
    ) -> Self {
        self.errors = self.errors.on_processing_error_for(topic, policy);
        self
    }

    /// What to do with output records that cannot be serialized for their sink topic (default:
    /// fail). The driver has no broker, so serialization is the only production error it sees.
    #[must_use]
    pub fn on_production_error(mut self, policy: OnBadRecord) -> Self {
        self.errors = self.errors.on_production_error(policy);
        self
    }

    /// What to do with output records for sink topic `topic` that cannot be serialized
    /// (overrides [`on_production_error`](Self::on_production_error) for that topic;
    /// [`build`](Self::build) rejects a topic the topology does not write).
    #[must_use]
    pub fn on_production_error_for(
        mut self,
        topic: impl Into<String>,
        policy: OnBadRecord,
    ) -> Self {
        self.errors = self.errors.on_production_error_for(topic, policy);
        self
    }

    /// Builds the driver.
    pub fn build(self) -> Result<TopologyTestDriver> {
        self.errors.validate(&self.topology)?;
        let (state_dir, tempdir) = match self.state_dir {
            Some(d) => (d, None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("kstreams-test-")
                    .tempdir()
                    .map_err(|e| Error::io("creating a temporary state directory", e))?;
                (t.path().to_owned(), Some(t))
            }
        };
        let mut config = TaskConfig::new(self.application_id, state_dir);
        config.in_memory_state = self.in_memory;
        config.errors = self.errors;
        let mut driver = TopologyTestDriver {
            topology: self.topology,
            config: Arc::new(config),
            _tempdir: tempdir,
            tasks: BTreeMap::new(),
            topics: BTreeMap::new(),
            partitions: self.partitions,
            consumed: BTreeMap::new(),
            seq: 0,
            wall_clock: self.wall_clock,
            batching: self.batching,
            rng: None,
            round_robin: 0,
        };
        if let Batching::Random { seed, .. } = driver.batching {
            driver.rng = Some(StdRng::seed_from_u64(seed));
        }
        // Create every task up front, as the runtime does on assignment.
        let subs: Vec<(usize, i32)> = driver
            .topology
            .subtopologies()
            .iter()
            .map(|s| {
                let n = s
                    .source_topics
                    .iter()
                    .map(|t| driver.partition_count(t))
                    .max()
                    .unwrap_or(1);
                (s.id, n)
            })
            .collect();
        for (sub, n) in &subs {
            let sub = &driver.topology.subtopologies()[*sub];
            for store in &sub.stores {
                let topic = driver.config.changelog_topic(store);
                driver.partitions.entry(topic).or_insert(*n);
            }
        }
        for (sub, n) in subs {
            for partition in 0..n {
                let id = TaskId {
                    subtopology: sub,
                    partition,
                };
                let task = Task::new(&driver.topology, id, driver.config.clone())?;
                driver.tasks.insert(id, task);
            }
        }
        Ok(driver)
    }
}

/// Runs a topology without a broker: pipe records into input topics, read output topics and
/// stores, move the clocks.
///
/// It drives the same task code as the Kafka runtime: records are cut into batches of one
/// partition in offset order and each batch commits in one state transaction.
///
/// ```
/// use kstreams::testing::TopologyTestDriver;
/// use kstreams::{processor, Record, Topology};
///
/// let mut t = Topology::builder();
/// let words = t.source::<String, String>("in");
/// let upper = t.add(processor::map(|r: &Record<String, String>| r.derive(r.key.clone(), r.value.to_uppercase())), &words);
/// t.sink("out", &upper);
///
/// let mut driver = TopologyTestDriver::new(t.build()?)?;
/// driver.pipe("in", "k".to_string(), "hello".to_string())?;
/// let out = driver.read_output::<String, String>("out")?;
/// assert_eq!(out[0].value, "HELLO");
/// # Ok::<(), kstreams::Error>(())
/// ```
pub struct TopologyTestDriver {
    topology: Topology,
    config: Arc<TaskConfig>,
    _tempdir: Option<tempfile::TempDir>,
    tasks: BTreeMap<TaskId, Task>,
    topics: BTreeMap<String, TopicLog>,
    partitions: BTreeMap<String, i32>,
    consumed: BTreeMap<(String, i32), usize>,
    seq: u64,
    wall_clock: i64,
    batching: Batching,
    rng: Option<StdRng>,
    round_robin: u32,
}

impl std::fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyTestDriver")
            .field("tasks", &self.tasks.keys().collect::<Vec<_>>())
            .field("topics", &self.topics.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TopologyTestDriver {
    /// A driver with one partition per topic and LMDB state in a temporary directory.
    pub fn new(topology: Topology) -> Result<Self> {
        Self::builder(topology).build()
    }

    /// A builder, to set partitions, batching, state and clocks.
    pub fn builder(topology: Topology) -> DriverBuilder {
        DriverBuilder {
            topology,
            application_id: "test-app".to_owned(),
            partitions: BTreeMap::new(),
            state_dir: None,
            in_memory: false,
            batching: Batching::Max(usize::MAX),
            wall_clock: 0,
            errors: ErrorPolicies::default(),
        }
    }

    fn partition_count(&self, topic: &str) -> i32 {
        self.partitions.get(topic).copied().unwrap_or(1)
    }

    fn log(&mut self, topic: &str) -> &mut TopicLog {
        let n = self.partition_count(topic) as usize;
        let log = self.topics.entry(topic.to_owned()).or_default();
        if log.partitions.len() < n {
            log.partitions.resize_with(n, Vec::new);
        }
        log
    }

    fn partition_of(&mut self, topic: &str, key: Option<&[u8]>) -> i32 {
        let n = self.partition_count(topic);
        match key {
            Some(k) => partition_for_key(k, n),
            None => {
                self.round_robin = self.round_robin.wrapping_add(1);
                (self.round_robin % n as u32) as i32
            }
        }
    }

    fn append(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        mut record: StoredRecord,
    ) -> Result<()> {
        let partition = match partition {
            Some(p) => p,
            None => self.partition_of(topic, record.key.as_deref()),
        };
        self.seq += 1;
        record.seq = self.seq;
        let log = self.log(topic);
        let slot = log.partitions.get_mut(partition as usize).ok_or_else(|| {
            Error::Config(format!("topic `{topic}` has no partition {partition}"))
        })?;
        slot.push(record);
        Ok(())
    }

    /// Appends raw bytes to a topic without processing them yet (see [`process`](Self::process)).
    pub fn append_raw(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        timestamp: i64,
        headers: Headers,
    ) -> Result<()> {
        self.append(
            topic,
            partition,
            StoredRecord {
                key,
                value,
                timestamp,
                headers,
                seq: 0,
            },
        )
    }

    /// Pipes one record with the default serdes, timestamped with the wall clock, and processes
    /// it as a batch of one.
    pub fn pipe<K: DefaultSerde, V: DefaultSerde>(
        &mut self,
        topic: &str,
        key: K,
        value: V,
    ) -> Result<()> {
        let ts = self.wall_clock;
        self.pipe_batch(topic, [Record::new(key, value).with_timestamp(ts)])
    }

    /// Pipes records (their timestamps and headers kept) with the default serdes, then processes
    /// what waits, cut into batches as the driver's [`Batching`] says (by default, one batch per
    /// partition).
    pub fn pipe_batch<K: DefaultSerde, V: DefaultSerde>(
        &mut self,
        topic: &str,
        records: impl IntoIterator<Item = Record<K, V>>,
    ) -> Result<()> {
        self.pipe_batch_with(topic, records, &K::Serde::default(), &V::Serde::default())
    }

    /// [`pipe_batch`](Self::pipe_batch) with explicit serdes.
    pub fn pipe_batch_with<K: 'static, V: 'static>(
        &mut self,
        topic: &str,
        records: impl IntoIterator<Item = Record<K, V>>,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
    ) -> Result<()> {
        for r in records {
            let target = || format!("test input topic `{topic}`");
            let stored = serialize_record(r, key_serde, value_serde, target)?;
            self.append(topic, None, stored)?;
        }
        self.process()
    }

    /// Processes every record waiting in a source topic, until no task produces input for
    /// another (outputs that feed a source are processed too). Partitions go in a fixed order.
    pub fn process(&mut self) -> Result<()> {
        loop {
            let mut progressed = false;
            let work: Vec<(TaskId, String)> = self
                .tasks
                .iter()
                .flat_map(|(id, t)| t.source_topics().map(move |s| (*id, s.to_owned())))
                .collect();
            for (id, topic) in work {
                let waiting = self
                    .topics
                    .get(&topic)
                    .and_then(|l| l.partitions.get(id.partition as usize))
                    .map_or(0, Vec::len);
                let key = (topic.clone(), id.partition);
                let mut pos = self.consumed.get(&key).copied().unwrap_or(0);
                while pos < waiting {
                    let size = match self.batching {
                        Batching::Max(n) => n.max(1),
                        Batching::Random { max, .. } => match &mut self.rng {
                            Some(rng) => rng.random_range(1..=max.max(1)),
                            None => 1,
                        },
                    };
                    let end = pos.saturating_add(size).min(waiting);
                    let out = {
                        let log = &self.topics[&topic].partitions[id.partition as usize];
                        let batch: Vec<RawRecord<'_>> = log[pos..end]
                            .iter()
                            .enumerate()
                            .map(|(i, r)| RawRecord {
                                key: r.key.as_deref(),
                                value: r.value.as_deref(),
                                timestamp: r.timestamp,
                                offset: (pos + i) as i64,
                                headers: r.headers.clone(),
                            })
                            .collect();
                        let task = self
                            .tasks
                            .get_mut(&id)
                            .ok_or_else(|| Error::Internal(format!("no task {id}")))?;
                        task.process(&topic, id.partition, &batch, self.wall_clock)?
                    };
                    self.deliver(out)?;
                    pos = end;
                    self.consumed.insert(key.clone(), pos);
                    progressed = true;
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    fn deliver(&mut self, out: TaskOutput) -> Result<()> {
        for r in out.records.into_iter().chain(out.changelog) {
            let ProducerRecord {
                topic,
                partition,
                key,
                value,
                timestamp,
                headers,
                origin: _,
            } = r;
            self.append_raw(&topic, partition, key, value, timestamp, headers)?;
        }
        Ok(())
    }

    /// Reads the records written to `topic` since the last read, in the order they were produced,
    /// with the default serdes.
    pub fn read_output<K: DefaultSerde, V: DefaultSerde>(
        &mut self,
        topic: &str,
    ) -> Result<Vec<Record<K, V>>> {
        self.read_output_with(topic, &K::Serde::default(), &V::Serde::default())
    }

    /// [`read_output`](Self::read_output) with explicit serdes.
    pub fn read_output_with<K: 'static, V: 'static>(
        &mut self,
        topic: &str,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
    ) -> Result<Vec<Record<K, V>>> {
        let raw = self.read_output_raw(topic);
        raw.into_iter()
            .map(|(partition, offset, r)| {
                let origin = Origin::new(topic, partition, offset);
                let key = key_serde.deserialize(r.key.as_deref()).map_err(|source| {
                    Error::Deserialize {
                        origin: origin.clone(),
                        part: Part::Key,
                        source,
                    }
                })?;
                let value = value_serde
                    .deserialize(r.value.as_deref())
                    .map_err(|source| Error::Deserialize {
                        origin: origin.clone(),
                        part: Part::Value,
                        source,
                    })?;
                Ok(Record {
                    key,
                    value,
                    timestamp: r.timestamp,
                    headers: r.headers,
                    origin: Some(origin),
                })
            })
            .collect()
    }

    /// The raw records written to `topic` since the last read: `(partition, offset, record)` in
    /// production order.
    pub fn read_output_raw(&mut self, topic: &str) -> Vec<(i32, i64, StoredRecord)> {
        let Some(log) = self.topics.get_mut(topic) else {
            return Vec::new();
        };
        let since = log.read_seq;
        let mut out: Vec<(i32, i64, StoredRecord)> = log
            .partitions
            .iter()
            .enumerate()
            .flat_map(|(p, recs)| {
                recs.iter()
                    .enumerate()
                    .filter(move |(_, r)| r.seq > since)
                    .map(move |(o, r)| (p as i32, o as i64, r.clone()))
            })
            .collect();
        out.sort_by_key(|(_, _, r)| r.seq);
        if let Some((_, _, last)) = out.last() {
            log.read_seq = last.seq;
        }
        out
    }

    /// Every record of a topic partition (inputs, outputs and changelogs alike), from offset 0.
    pub fn topic_partition(&self, topic: &str, partition: i32) -> &[StoredRecord] {
        self.topics
            .get(topic)
            .and_then(|l| l.partitions.get(partition as usize))
            .map_or(&[], Vec::as_slice)
    }

    /// The topics the driver has seen, inputs, outputs and changelogs.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics.keys().cloned().collect()
    }

    /// Every entry of a store, across all tasks, ordered by key bytes, with the store's serdes.
    pub fn store<K: 'static, V: 'static>(&mut self, name: &str) -> Result<Vec<(K, V)>> {
        let spec = self
            .topology
            .stores()
            .iter()
            .find(|s| s.name() == name)
            .cloned()
            .ok_or_else(|| Error::Store(format!("the topology has no store `{name}`")))?;
        let raw = self.store_raw(name)?;
        let serdes = spec.serdes::<K, V>()?;
        raw.into_iter()
            .map(|(k, v)| {
                let corrupt = |part, source| Error::StoreCorrupt {
                    store: name.to_owned(),
                    part,
                    source,
                };
                let key = serdes
                    .key_serde()
                    .deserialize(Some(&k))
                    .map_err(|e| corrupt(Part::Key, e))?;
                let value = serdes
                    .value_serde()
                    .deserialize(Some(&v))
                    .map_err(|e| corrupt(Part::Value, e))?;
                Ok((key, value))
            })
            .collect()
    }

    /// Every entry of a store as raw bytes, across all tasks, ordered by key bytes.
    pub fn store_raw(&mut self, name: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut all = Vec::new();
        for task in self.tasks.values_mut() {
            if task.stores().iter().any(|s| s.name() == name) {
                all.extend(task.store_entries_raw(name)?);
            }
        }
        all.sort();
        Ok(all)
    }

    /// The recorded position of each task's state.
    pub fn positions(&self) -> Result<BTreeMap<TaskId, Position>> {
        self.tasks
            .iter()
            .map(|(id, t)| Ok((*id, t.position()?)))
            .collect()
    }

    /// The tasks, by id.
    pub fn tasks(&self) -> impl Iterator<Item = (&TaskId, &Task)> {
        self.tasks.iter()
    }

    /// The wall clock, in milliseconds.
    pub fn wall_clock(&self) -> i64 {
        self.wall_clock
    }

    /// Moves the wall clock forward and fires due wall-clock punctuations on every task.
    pub fn advance_wall_clock(&mut self, by: Duration) -> Result<()> {
        self.wall_clock = self
            .wall_clock
            .saturating_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX));
        let now = self.wall_clock;
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            let out = match self.tasks.get_mut(&id) {
                Some(t) => t.punctuate_wall_clock(now)?,
                None => continue,
            };
            self.deliver(out)?;
        }
        self.process()
    }

    /// Moves every task's stream time forward to `time` and fires due stream-time punctuations.
    pub fn advance_stream_time(&mut self, time: i64) -> Result<()> {
        let wall = self.wall_clock;
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            let out = match self.tasks.get_mut(&id) {
                Some(t) => t.advance_stream_time(time, wall)?,
                None => continue,
            };
            self.deliver(out)?;
        }
        self.process()
    }
}

/// The input of a split-invariance check: records for topics, serialized once.
#[derive(Debug, Clone, Default)]
pub struct SplitInput {
    records: Vec<(String, StoredRecord)>,
    partitions: BTreeMap<String, i32>,
}

impl SplitInput {
    /// No input yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives `topic` this many partitions.
    #[must_use]
    pub fn partitions(mut self, topic: &str, partitions: i32) -> Self {
        self.partitions.insert(topic.to_owned(), partitions);
        self
    }

    /// Adds records for `topic`, serialized with the default serdes.
    pub fn records<K: DefaultSerde, V: DefaultSerde>(
        mut self,
        topic: &str,
        records: impl IntoIterator<Item = Record<K, V>>,
    ) -> Result<Self> {
        let ks = K::Serde::default();
        let vs = V::Serde::default();
        for r in records {
            let target = || format!("split-invariance input `{topic}`");
            let stored = serialize_record(r, &ks, &vs, target)?;
            self.records.push((topic.to_owned(), stored));
        }
        Ok(self)
    }
}

/// Serializes a record for an in-memory topic; `target` names where it was going, for errors.
fn serialize_record<K: 'static, V: 'static>(
    r: Record<K, V>,
    key_serde: &dyn Serde<K>,
    value_serde: &dyn Serde<V>,
    target: impl Fn() -> String,
) -> Result<StoredRecord> {
    let bad = |part, source| Error::Serialize {
        target: target(),
        part,
        source,
    };
    Ok(StoredRecord {
        key: key_serde.serialize(&r.key).map_err(|e| bad(Part::Key, e))?,
        value: value_serde
            .serialize(&r.value)
            .map_err(|e| bad(Part::Value, e))?,
        timestamp: r.timestamp,
        headers: r.headers,
        seq: 0,
    })
}

/// What a run produced: every topic's partitions and every store's entries, as bytes.
type Snapshot = (
    BTreeMap<String, Vec<Vec<(Option<Vec<u8>>, Option<Vec<u8>>, i64)>>>,
    BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>,
);

fn run_once(topology: &Topology, input: &SplitInput, batching: Batching) -> Result<Snapshot> {
    let mut b = TopologyTestDriver::builder(topology.clone()).batching(batching);
    for (t, n) in &input.partitions {
        b = b.partitions(t, *n);
    }
    let mut driver = b.build()?;
    for (topic, r) in &input.records {
        driver.append(topic, None, r.clone())?;
    }
    driver.process()?;
    let changelogs: Vec<String> = topology
        .stores()
        .iter()
        .map(|s| driver.config.changelog_topic(s.name()))
        .collect();
    let mut topics = BTreeMap::new();
    for (name, log) in &driver.topics {
        let compacted = changelogs.contains(name);
        topics.insert(
            name.clone(),
            log.partitions
                .iter()
                .map(|p| {
                    if compacted {
                        // A changelog is compacted: only the last write of each key is state;
                        // fewer intermediate writes is what batching is for.
                        let mut last = BTreeMap::new();
                        for r in p {
                            last.insert(r.key.clone(), r.value.clone());
                        }
                        last.into_iter().map(|(k, v)| (k, v, 0)).collect()
                    } else {
                        p.iter()
                            .map(|r| (r.key.clone(), r.value.clone(), r.timestamp))
                            .collect()
                    }
                })
                .collect(),
        );
    }
    let mut stores = BTreeMap::new();
    for spec in topology.stores() {
        stores.insert(spec.name().to_owned(), driver.store_raw(spec.name())?);
    }
    Ok((topics, stores))
}

/// Checks invariant 2: the outputs (every topic partition, record for record), the compacted
/// changelogs (last value per key) and the final state of every store do not depend on how the
/// input was cut into batches.
///
/// It runs the topology on `input` with all of each partition in one batch, then with batches of
/// one, then `runs` times with random batch sizes (seeded by `seed`, so a failure is
/// reproducible), each in fresh LMDB state, and compares byte for byte.
///
/// ```
/// use kstreams::testing::{check_split_invariance, SplitInput};
/// use kstreams::{processor, Record, Topology};
/// let mut t = Topology::builder();
/// let s = t.source::<String, String>("in");
/// let m = t.add(processor::map(|r: &Record<String, String>| r.derive(r.key.clone(), r.value.len() as u64)), &s);
/// t.sink("out", &m);
/// let input = SplitInput::new().records("in", (0..50).map(|i| Record::new(format!("k{i}"), "x".repeat(i))))?;
/// check_split_invariance(&t.build()?, &input, 7, 3)?;
/// # Ok::<(), kstreams::Error>(())
/// ```
pub fn check_split_invariance(
    topology: &Topology,
    input: &SplitInput,
    seed: u64,
    runs: usize,
) -> Result<()> {
    let reference = run_once(topology, input, Batching::Max(usize::MAX))?;
    let mut plans = vec![("batches of one".to_owned(), Batching::Max(1))];
    for i in 0..runs {
        let s = seed.wrapping_add(i as u64);
        plans.push((
            format!("random batches (seed {s})"),
            Batching::Random {
                seed: s,
                max: 1 + (s as usize % 64),
            },
        ));
    }
    for (what, batching) in plans {
        let got = run_once(topology, input, batching)?;
        if let Some(diff) = first_difference(&reference, &got) {
            return Err(Error::Processing {
                processor: "split-invariance check".to_owned(),
                origin: None,
                message: format!("{what} differ from one batch per partition: {diff}"),
            });
        }
    }
    Ok(())
}

fn first_difference(a: &Snapshot, b: &Snapshot) -> Option<String> {
    for (topic, pa) in &a.0 {
        let Some(pb) = b.0.get(topic) else {
            return Some(format!("topic `{topic}` missing"));
        };
        for (p, (ra, rb)) in pa.iter().zip(pb).enumerate() {
            if ra.len() != rb.len() {
                return Some(format!(
                    "topic `{topic}` partition {p} holds {} records instead of {}",
                    rb.len(),
                    ra.len()
                ));
            }
            if let Some(i) = ra.iter().zip(rb).position(|(x, y)| x != y) {
                return Some(format!(
                    "topic `{topic}` partition {p} differs at offset {i}"
                ));
            }
        }
    }
    for topic in b.0.keys() {
        if !a.0.contains_key(topic) {
            return Some(format!("unexpected topic `{topic}`"));
        }
    }
    for (store, ea) in &a.1 {
        let eb = b.1.get(store)?;
        if ea != eb {
            let at = ea
                .iter()
                .zip(eb)
                .position(|(x, y)| x != y)
                .unwrap_or(ea.len().min(eb.len()));
            return Some(format!(
                "store `{store}` differs at entry {at} ({} entries instead of {})",
                eb.len(),
                ea.len()
            ));
        }
    }
    None
}

/// Calls `f` with a [`Context`] that reaches every store of `stores`, in one transaction
/// (committed when `f` returns `Ok`), and returns what `f` returned with the records it forwarded.
///
/// For unit tests of a `#[batch_processor]` function called as the plain function it still is,
/// without a topology:
///
/// ```
/// use kstreams::store::{StateStores, StoreHandle};
/// use kstreams::{batch_processor, store, testing, Emit, Record};
///
/// #[store(name = "totals", backend = "in_memory")]
/// type Totals = kstreams::KeyValue<String, u64>;
///
/// #[batch_processor]
/// fn total(amounts: &[Record<String, u64>], totals: &mut Totals, out: &mut Emit<String, u64>) -> kstreams::Result<()> {
///     for r in amounts {
///         let t = totals.get(&r.key)?.unwrap_or(0) + r.value;
///         totals.put(&r.key, &t)?;
///         out.forward(r.derive(r.key.clone(), t));
///     }
///     Ok(())
/// }
///
/// let mut stores = StateStores::in_memory(vec![Totals::spec()])?;
/// let input = [Record::new("a".to_string(), 2), Record::new("a".to_string(), 3)];
/// let ((), out) = testing::run_plain(&mut stores, |ctx| {
///     let mut totals = ctx.store_handle::<Totals>()?;
///     total(&input, &mut totals, ctx)
/// })?;
/// assert_eq!(out.iter().map(|r| r.value).collect::<Vec<_>>(), [2, 5]);
/// # Ok::<(), kstreams::Error>(())
/// ```
pub fn run_plain<K: 'static, V: 'static, R>(
    stores: &mut StateStores,
    mut f: impl FnMut(&mut Context<'_, K, V>) -> Result<R>,
) -> Result<(R, Vec<Record<K, V>>)> {
    let node = NodeInfo {
        name: "plain-call".into(),
        children: Vec::new(),
        child_names: Vec::new(),
        stores: (0..stores.specs().len()).collect(),
    };
    stores.transaction(|txn| {
        let mut outputs = Outputs::default();
        let mut failures = FailRecords;
        let mut ctx = Context {
            outputs: &mut outputs,
            node: &node,
            txn: txn.raw(),
            clocks: Clocks::default(),
            failures: &mut failures,
        };
        let r = f(&mut ctx)?;
        Ok((r, std::mem::take(&mut outputs.records)))
    })
}

/// [`Context::fail_record`] in a plain call: the `Fail` policy, the error is returned.
struct FailRecords;

impl crate::task::RecordFailures for FailRecords {
    fn fail_record(&mut self, _: &str, _: Option<&Origin>, error: Error) -> Result<()> {
        Err(error)
    }
}
