//! Testing without a broker: [`TopologyTestDriver`] and the split-invariance check.
//!
//! Owns: in-memory topics (partitioned logs of raw records), the driver that feeds them to the very
//! same [`Task`] code the Kafka runtime runs, the split-invariance check ([`SplitCheck`],
//! [`check_split_invariance`]) and the check of typed topic access that the driver and
//! `kafka::AppClient` share (a topic the topology does not read or write, or
//! other types than its source's or sink's, is an error, never an empty or garbled answer).
//! State lives in real LMDB files (a temporary directory) unless the driver is told to keep it in
//! memory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::context::{Clocks, Context, NodeInfo, Outputs};
use crate::error::{Error, Part, Result};
use crate::partitioner::partition_for_key;
use crate::policy::ErrorPolicies;
use crate::record::{Headers, Origin, ProducerRecord, RawRecord, Record};
use crate::serde::{DefaultSerde, Serde};
use crate::store::{Position, StateStores};
use crate::table::GlobalStores;
use crate::task::{Task, TaskConfig, TaskId, TaskOutput};
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
#[non_exhaustive]
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

    crate::policy::error_policy_builders!(
        per_topic: errors,
        production = "serialized for their sink topic (the driver has no broker, so serialization is the only production error it sees)",
        checked = "[`build`](Self::build)"
    );

    /// Builds the driver.
    pub fn build(mut self) -> Result<TopologyTestDriver> {
        // Internal topics are named for the application id, as in the Kafka runtime.
        self.topology = self.topology.resolve(&self.application_id);
        self.errors.validate(&self.topology)?;
        // A repartition topic not given a partition count gets the runtime's.
        for r in self.topology.repartition_topics() {
            if self.partitions.contains_key(&*r.topic) {
                continue;
            }
            let (given, topology) = (&self.partitions, &self.topology);
            let count = topology
                .repartition_partitions(&r.topic, &|t| {
                    given
                        .get(t)
                        .copied()
                        .or_else(|| (!topology.is_repartition_topic(t)).then_some(1))
                })
                .unwrap_or(1);
            self.partitions.insert(r.topic.to_string(), count);
        }
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
        // One global `StateStores` for the instance, read by every task.
        let globals = GlobalStores::open(&self.topology, Arc::new(config.clone()))?;
        if let Some(g) = &globals {
            config.global_stores = Some(g.reader()?);
        }
        let mut driver = TopologyTestDriver {
            topology: self.topology,
            globals,
            config: Arc::new(config),
            _tempdir: tempdir,
            tasks: BTreeMap::new(),
            delivering: false,
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
    /// The instance's global stores, which every task reads (dropped after the tasks).
    globals: Option<GlobalStores>,
    /// Delivering a task's output: a record for a global topic is applied without processing
    /// what waits first.
    delivering: bool,
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
        let offset = slot.len() - 1;
        if self.globals.as_ref().is_some_and(|g| g.reads(topic)) {
            self.apply_global(topic, partition, offset)?;
        }
        Ok(())
    }

    /// Applies the record at `offset` of a global table's topic to the global stores, once
    /// what was piped before it is processed (so it is seen by what is piped after it, and by
    /// nothing before).
    fn apply_global(&mut self, topic: &str, partition: i32, offset: usize) -> Result<()> {
        if !self.delivering {
            self.process()?;
        }
        let Some(r) = self
            .topics
            .get(topic)
            .and_then(|l| l.partitions.get(partition as usize))
            .and_then(|p| p.get(offset))
        else {
            return Err(Error::Internal(format!(
                "no record at offset {offset} of `{topic}` partition {partition}"
            )));
        };
        let raw = RawRecord {
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            timestamp: r.timestamp,
            offset: offset as i64,
            headers: r.headers.clone(),
        };
        let out = match &mut self.globals {
            Some(g) => g.apply(topic, partition, std::slice::from_ref(&raw))?,
            None => return Ok(()),
        };
        drop(raw);
        self.deliver(out)
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

    /// Appends records (their timestamps and headers kept) with the default serdes to a source
    /// topic without processing them yet: pipe several topics, then [`process`](Self::process)
    /// them together (in timestamp order across the topics of a task).
    pub fn append_batch<K: DefaultSerde, V: DefaultSerde>(
        &mut self,
        topic: &str,
        records: impl IntoIterator<Item = Record<K, V>>,
    ) -> Result<()> {
        self.append_typed(topic, records, &K::Serde::default(), &V::Serde::default())
    }

    fn append_typed<K: 'static, V: 'static>(
        &mut self,
        topic: &str,
        records: impl IntoIterator<Item = Record<K, V>>,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
    ) -> Result<()> {
        check_topic_types(
            &self.topology,
            &self.config,
            topic,
            (std::any::type_name::<K>(), std::any::type_name::<V>()),
            TopicUse::Write { typed: true },
        )?;
        for r in records {
            let target = || format!("test input topic `{topic}`");
            let stored = serialize_record(r, key_serde, value_serde, target)?;
            self.append(topic, None, stored)?;
        }
        Ok(())
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
    /// partition). `topic` must be a source topic of the topology and `K`, `V` its source's
    /// types (else an [`Error::Config`]; to feed bytes that its serdes reject, use
    /// [`append_raw`](Self::append_raw) and [`process`](Self::process)).
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
        self.append_typed(topic, records, key_serde, value_serde)?;
        self.process()
    }

    /// Processes every record waiting in a source topic, until no task produces input for
    /// another (outputs that feed a source are processed too). Tasks go in id order; a task that
    /// reads several topics takes their waiting records in timestamp order, as the Kafka runtime
    /// does ([`merge_runs`](crate::task::merge_runs): the smallest timestamp first, ties to the
    /// source declared first), each run of one topic cut into batches as [`Batching`] says.
    /// Nothing waits for more input (as with `max_task_idle` and no lag: everything piped is
    /// there).
    pub fn process(&mut self) -> Result<()> {
        loop {
            let mut progressed = false;
            let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
            for id in ids {
                progressed |= self.process_task(id)?;
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Processes what waits in the input partitions of task `id`; whether there was any.
    fn process_task(&mut self, id: TaskId) -> Result<bool> {
        let TopologyTestDriver {
            tasks,
            topics,
            consumed,
            batching,
            rng,
            wall_clock,
            ..
        } = self;
        let task = tasks
            .get_mut(&id)
            .ok_or_else(|| Error::Internal(format!("no task {id}")))?;
        let sources: Vec<String> = task.source_topics().map(str::to_owned).collect();
        let mut inputs: Vec<Vec<RawRecord<'_>>> = sources
            .iter()
            .map(|topic| {
                let log = topics
                    .get(topic)
                    .and_then(|l| l.partitions.get(id.partition as usize));
                let from = consumed
                    .get(&(topic.clone(), id.partition))
                    .copied()
                    .unwrap_or(0);
                log.map_or(&[][..], |l| l.get(from..).unwrap_or(&[]))
                    .iter()
                    .enumerate()
                    .map(|(i, r)| RawRecord {
                        key: r.key.as_deref(),
                        value: r.value.as_deref(),
                        timestamp: r.timestamp,
                        offset: (from + i) as i64,
                        headers: r.headers.clone(),
                    })
                    .collect()
            })
            .collect();
        for (topic, batch) in sources.iter().zip(&mut inputs) {
            task.extract_timestamps(topic, batch);
        }
        let slices: Vec<&[RawRecord<'_>]> = inputs.iter().map(Vec::as_slice).collect();
        let runs = crate::task::merge_runs(&slices);
        let mut outs = Vec::new();
        let mut done: Vec<(usize, i64)> = Vec::new();
        let mut result = Ok(());
        'runs: for (i, range) in runs {
            let mut pos = range.start;
            while pos < range.end {
                let size = match *batching {
                    Batching::Max(n) => n.max(1),
                    Batching::Random { max, .. } => match rng {
                        Some(rng) => rng.random_range(1..=max.max(1)),
                        None => 1,
                    },
                };
                let end = pos.saturating_add(size).min(range.end);
                let batch = &slices[i][pos..end];
                match task.process(&sources[i], id.partition, batch, *wall_clock) {
                    Ok(out) => outs.push(out),
                    Err(e) => {
                        result = Err(e);
                        break 'runs;
                    }
                }
                if let Some(last) = batch.last() {
                    done.push((i, last.offset + 1));
                }
                pos = end;
            }
        }
        drop(slices);
        drop(inputs);
        let progressed = !done.is_empty();
        for (i, next) in done {
            consumed.insert((sources[i].clone(), id.partition), next as usize);
        }
        for out in outs {
            self.deliver(out)?;
        }
        result.map(|()| progressed)
    }

    fn deliver(&mut self, out: TaskOutput) -> Result<()> {
        let delivering = std::mem::replace(&mut self.delivering, true);
        let result = self.deliver_records(out);
        self.delivering = delivering;
        result
    }

    fn deliver_records(&mut self, out: TaskOutput) -> Result<()> {
        for r in out.records.into_iter().chain(out.changelog) {
            let ProducerRecord {
                topic,
                partition,
                key,
                value,
                timestamp,
                headers,
                origin: _,
                partition_key_len,
            } = r;
            let partition = match (partition, partition_key_len, &key) {
                (None, Some(n), Some(k)) => {
                    Some(self.partition_of(&topic, Some(&k[..n.min(k.len())])))
                }
                _ => partition,
            };
            self.append_raw(&topic, partition, key, value, timestamp, headers)?;
        }
        Ok(())
    }

    /// Reads the records written to `topic` since the last read, in the order they were produced,
    /// with the default serdes.
    ///
    /// `topic` must be one the topology writes: a sink's topic, a dead-letter topic of the error
    /// policies or a store's changelog; `K` and `V` must be the types of a sink writing it (or
    /// of the store, for a changelog; dead letters are bytes, any types are accepted). Anything
    /// else is an [`Error::Config`] naming what the topology writes, not an empty or garbled
    /// answer.
    ///
    /// ```
    /// use kstreams::testing::TopologyTestDriver;
    /// use kstreams::{processor, Record, Topology};
    ///
    /// let mut t = Topology::builder();
    /// let s = t.source::<String, String>("in");
    /// let n = t.add(processor::map(|r: &Record<String, String>| r.derive(r.key.clone(), r.value.len() as u64)), &s);
    /// t.sink("lengths", &n);
    /// let mut driver = TopologyTestDriver::new(t.build()?)?;
    /// driver.pipe("in", "k".to_string(), "four".to_string())?;
    /// assert!(driver.read_output::<String, u64>("lenghts").is_err()); // misspelt
    /// assert!(driver.read_output::<String, String>("lengths").is_err()); // not the sink's types
    /// assert_eq!(driver.read_output::<String, u64>("lengths")?[0].value, 4);
    /// # Ok::<(), kstreams::Error>(())
    /// ```
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
        self.check_readable(
            topic,
            (std::any::type_name::<K>(), std::any::type_name::<V>()),
        )?;
        let raw = self.read_output_raw(topic);
        raw.into_iter()
            .map(|(partition, offset, r)| {
                decode_record(
                    Origin::new(topic, partition, offset),
                    (r.key.as_deref(), r.value.as_deref()),
                    r.timestamp,
                    r.headers,
                    (key_serde, value_serde),
                )
            })
            .collect()
    }

    /// Checks that the topology writes `topic` with records of the `wanted` `(key, value)` types.
    fn check_readable(&self, topic: &str, wanted: (&str, &str)) -> Result<()> {
        check_topic_types(
            &self.topology,
            &self.config,
            topic,
            wanted,
            TopicUse::Read { sources: false },
        )
    }

    /// The raw records written to `topic` since the last read: `(partition, offset, record)` in
    /// production order. Unlike [`read_output`](Self::read_output) it does not check that the
    /// topology writes `topic`: any topic of the driver can be read this way (an unknown one is
    /// empty).
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

    /// Every entry of a key-value store, across all tasks, ordered by key bytes, with the store's
    /// serdes (windowed stores: [`window_store`](Self::window_store),
    /// [`session_store`](Self::session_store)).
    pub fn store<K: 'static, V: 'static>(&mut self, name: &str) -> Result<Vec<(K, V)>> {
        let spec = self.store_spec(name)?;
        if spec.kind() != crate::store::StoreKind::KeyValue {
            return Err(Error::Store(format!(
                "store `{name}` is not a key-value store ({:?}): read it with \
                 `window_store` or `session_store`",
                spec.kind()
            )));
        }
        let raw = self.store_raw(name)?;
        raw.into_iter()
            .map(|(k, v)| decode_entry::<K, V>(&spec, &k, &v))
            .collect()
    }

    /// The version of `key` in the versioned store `name` valid at `as_of` (`None`: the
    /// latest), from the task that holds the key, as
    /// [`VersionedStore::get_as_of`](crate::store::VersionedStore::get_as_of) answers.
    pub fn versioned_get<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        key: &K,
        as_of: Option<i64>,
    ) -> Result<Option<crate::store::VersionedRecord<V>>> {
        let spec = self.store_spec(name)?;
        if !matches!(spec.kind(), crate::store::StoreKind::Versioned { .. }) {
            return Err(Error::Store(format!(
                "store `{name}` is not a versioned store ({:?})",
                spec.kind()
            )));
        }
        for task in self.tasks.values() {
            if !task.stores().iter().any(|s| s.name() == name) {
                continue;
            }
            let found = task.store_reader()?.read(|txn| {
                let store = txn.versioned_store::<K, V>(name)?;
                match as_of {
                    Some(t) => store.get_as_of(key, t),
                    None => store.get(key),
                }
            })?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Every entry of the global key-value store `name` (a
    /// [`global_table`](crate::TopologyBuilder::global_table)'s), ordered by key bytes.
    pub fn global_store<K: 'static, V: 'static>(&mut self, name: &str) -> Result<Vec<(K, V)>> {
        let Some(globals) = &self.globals else {
            return Err(Error::Store(format!(
                "the topology has no global store `{name}`: it has no global tables"
            )));
        };
        globals
            .reader()?
            .read(|txn| txn.store::<K, V>(name)?.iter()?.collect())
    }

    fn store_spec(&self, name: &str) -> Result<crate::store::StoreSpec> {
        self.topology
            .stores()
            .iter()
            .find(|s| s.name() == name)
            .cloned()
            .ok_or_else(|| Error::Store(format!("the topology has no store `{name}`")))
    }

    /// The live windows of a window store, across all tasks, as (key, window start, value),
    /// ordered by key bytes, then start (expired windows not yet purged are left out, as reads
    /// leave them out).
    pub fn window_store<K: 'static, V: 'static>(&mut self, name: &str) -> Result<Vec<(K, i64, V)>> {
        Ok(self
            .windowed_entries::<K, V>(name, false)?
            .into_iter()
            .map(|(k, times, v)| (k, times[0], v))
            .collect())
    }

    /// The live sessions of a session store, across all tasks, as (key, session, value),
    /// ordered by key bytes, then end, then start.
    pub fn session_store<K: 'static, V: 'static>(
        &mut self,
        name: &str,
    ) -> Result<Vec<(K, crate::store::SessionWindow, V)>> {
        Ok(self
            .windowed_entries::<K, V>(name, true)?
            .into_iter()
            .map(|(k, times, v)| (k, crate::store::SessionWindow::new(times[1], times[0]), v))
            .collect())
    }

    fn windowed_entries<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        sessions: bool,
    ) -> Result<Vec<(K, Vec<i64>, V)>> {
        let spec = self.store_spec(name)?;
        let kind_matches = match spec.kind() {
            crate::store::StoreKind::Window { .. } => !sessions,
            crate::store::StoreKind::Session { .. } => sessions,
            crate::store::StoreKind::KeyValue | crate::store::StoreKind::Versioned { .. } => false,
        };
        if !kind_matches {
            return Err(Error::Store(format!(
                "store `{name}` is not a {} store ({:?})",
                if sessions { "session" } else { "window" },
                spec.kind()
            )));
        }
        self.windowed_live(&spec, crate::store::live_entries)?
            .into_iter()
            .map(|(k, times, v)| {
                // A sliding window's aggregate is stored after its 8-byte timestamp (Java's
                // timestamped window store): the entry is the aggregate.
                let v = if spec.timestamped_values() {
                    v.get(8..).map(<[u8]>::to_vec).ok_or_else(|| {
                        Error::Store(format!(
                            "store `{name}`: a timestamped window value of {} bytes, shorter \
                             than its 8-byte timestamp",
                            v.len()
                        ))
                    })?
                } else {
                    v
                };
                let (k, v) = decode_entry::<K, V>(&spec, &k, &v)?;
                Ok((k, times, v))
            })
            .collect()
    }

    /// The live entries of a windowed store, read by `live` from each task's raw entries (each
    /// task has its own stream time), across all tasks, sorted.
    fn windowed_live<T: Ord>(
        &mut self,
        spec: &crate::store::StoreSpec,
        live: fn(&crate::store::StoreSpec, Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        let mut all = Vec::new();
        for task in self.tasks.values_mut() {
            if task.stores().iter().any(|s| s.name() == spec.name()) {
                all.extend(live(spec, task.store_entries_raw(spec.name())?)?);
            }
        }
        all.sort();
        Ok(all)
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

/// What a typed access to a topic is for, in [`check_topic_types`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "kafka"), allow(dead_code))] // `sources` is the client's
pub(crate) enum TopicUse {
    /// Reading records the topology writes (`sources`: its input topics may be read too).
    Read {
        /// Whether a source topic may be read (with the source's types).
        sources: bool,
    },
    /// Writing input for a source of the topology (`typed`: with the source's types; else as
    /// bytes, any types).
    Write {
        /// Whether the types must be the source's.
        typed: bool,
    },
}

/// A record read back from a topic (`origin`), its key and value bytes decoded with the serdes
/// given; an error names the record and the part that cannot be read. The driver's and the
/// [`AppClient`](crate::kafka::AppClient)'s typed reads.
pub(crate) fn decode_record<K: 'static, V: 'static>(
    origin: Origin,
    (key, value): (Option<&[u8]>, Option<&[u8]>),
    timestamp: i64,
    headers: crate::record::Headers,
    (key_serde, value_serde): (&dyn Serde<K>, &dyn Serde<V>),
) -> Result<Record<K, V>> {
    let decode_error = |part, source| Error::Deserialize {
        origin: origin.clone(),
        part,
        source,
    };
    let key = key_serde
        .deserialize(key)
        .map_err(|e| decode_error(Part::Key, e))?;
    let value = value_serde
        .deserialize(value)
        .map_err(|e| decode_error(Part::Value, e))?;
    Ok(Record {
        key,
        value,
        timestamp,
        headers,
        origin: Some(origin),
    })
}

/// Checks a typed access to `topic` against what `topology` does with it: reading a topic it
/// writes (a sink's, with the sink's types; a dead-letter topic of `config`'s error policies, any
/// types; a changelog, the store's types), or writing a topic one of its sources reads (with
/// the source's types). Anything else is an [`Error::Config`] naming the topics it does write or
/// read: the driver and the local client never answer wrongly in silence.
pub(crate) fn check_topic_types(
    topology: &Topology,
    config: &TaskConfig,
    topic: &str,
    wanted: (&str, &str),
    what: TopicUse,
) -> Result<()> {
    let list = |topics: Vec<String>| {
        topics
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mismatch = |role: &str, types: &[(&str, &str)]| {
        let typed: Vec<String> = types
            .iter()
            .map(|(k, v)| format!("`Record<{k}, {v}>`"))
            .collect();
        Err(Error::Config(format!(
            "topic `{topic}` is {role} {}, not {} as `Record<{}, {}>`: use the {} types",
            typed.join(" and "),
            if matches!(what, TopicUse::Write { .. }) {
                "written"
            } else {
                "read"
            },
            wanted.0,
            wanted.1,
            if role.starts_with("written") {
                "sink's"
            } else {
                "source's"
            },
        )))
    };
    let sources = topology.topic_types(topic, true);
    if let TopicUse::Write { typed } = what {
        if sources.is_empty() {
            let read: Vec<String> = topology
                .source_topics()
                .iter()
                .map(|t| t.to_string())
                .collect();
            return Err(Error::Config(format!(
                "the topology does not read topic `{topic}`; it reads {}",
                list(read)
            )));
        }
        return if !typed || sources.contains(&wanted) {
            Ok(())
        } else {
            mismatch("read as", &sources)
        };
    }
    let sinks = topology.topic_types(topic, false);
    if !sinks.is_empty() {
        return if sinks.contains(&wanted) {
            Ok(())
        } else {
            mismatch("written with", &sinks)
        };
    }
    if what == (TopicUse::Read { sources: true }) && !sources.is_empty() {
        return if sources.contains(&wanted) {
            Ok(())
        } else {
            mismatch("read as", &sources)
        };
    }
    let dead_letters = config.errors.dead_letter_topics();
    if dead_letters.contains(topic) {
        return Ok(());
    }
    for spec in topology.stores() {
        if spec.changelog_enabled() && config.changelog_topic(spec.name()) == topic {
            let types = spec.type_names();
            if types == wanted {
                return Ok(());
            }
            return Err(Error::Config(format!(
                "topic `{topic}` is the changelog of store `{}` of `({}, {})`, not read as \
                 `Record<{}, {}>`",
                spec.name(),
                types.0,
                types.1,
                wanted.0,
                wanted.1
            )));
        }
    }
    let mut written: Vec<String> = topology
        .sink_topics()
        .iter()
        .map(|t| t.to_string())
        .chain(dead_letters)
        .chain(
            topology
                .stores()
                .iter()
                .filter(|s| s.changelog_enabled())
                .map(|s| config.changelog_topic(s.name())),
        )
        .collect();
    written.sort();
    written.dedup();
    Err(Error::Config(format!(
        "the topology does not write topic `{topic}`; it writes {}",
        list(written)
    )))
}

/// The input of a split-invariance check: records for topics, serialized once.
#[derive(Debug, Clone, Default)]
pub struct SplitInput {
    records: Vec<(String, StoredRecord)>,
    partitions: BTreeMap<String, i32>,
    /// The record types given for each topic, checked against the topology's sources.
    types: Vec<(String, (&'static str, &'static str))>,
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

    /// Adds records for `topic`, serialized with the default serdes. [`SplitCheck::run`] rejects
    /// a topic the topology does not read and types other than its source's.
    pub fn records<K: DefaultSerde, V: DefaultSerde>(
        mut self,
        topic: &str,
        records: impl IntoIterator<Item = Record<K, V>>,
    ) -> Result<Self> {
        let ks = K::Serde::default();
        let vs = V::Serde::default();
        let types = (std::any::type_name::<K>(), std::any::type_name::<V>());
        if !self.types.iter().any(|(t, ty)| t == topic && *ty == types) {
            self.types.push((topic.to_owned(), types));
        }
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

/// One record of a run, as compared: for a table, the last value of a key (no timestamp, no
/// headers).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    timestamp: Option<i64>,
    headers: Headers,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key {}, value {}",
            show_bytes(self.key.as_deref()),
            show_bytes(self.value.as_deref())
        )?;
        if let Some(t) = self.timestamp {
            write!(f, ", timestamp {t}")?;
        }
        for (name, value) in self.headers.iter() {
            write!(f, ", header `{name}` = {}", show_bytes(value))?;
        }
        Ok(())
    }
}

/// Bytes as a quoted string when they are UTF-8 without control characters, else as hex
/// (truncated past 64 bytes).
fn show_bytes(bytes: Option<&[u8]>) -> String {
    const MAX: usize = 64;
    let Some(b) = bytes else {
        return "null".to_owned();
    };
    let cut = &b[..b.len().min(MAX)];
    let more = if b.len() > MAX {
        format!("… ({} bytes)", b.len())
    } else {
        String::new()
    };
    match std::str::from_utf8(cut) {
        Ok(text) if !text.chars().any(char::is_control) => format!("{text:?}{more}"),
        _ => {
            let hex: String = cut.iter().map(|x| format!("{x:02x}")).collect();
            format!("0x{hex}{more}")
        }
    }
}

/// What a run produced: every topic's partitions (streams record for record, tables as the last
/// value per key) and every store's entries, as bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Snapshot {
    topics: BTreeMap<String, Vec<Vec<Entry>>>,
    /// The topics of `topics` compared as tables.
    tables: std::collections::BTreeSet<String>,
    stores: BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>,
}

/// The last value of each key of a partition, ordered by key bytes; a key whose last value is a
/// tombstone is absent (as after compaction).
fn as_table(records: &[StoredRecord]) -> Vec<Entry> {
    let mut last = BTreeMap::new();
    for r in records {
        last.insert(r.key.clone(), r.value.clone());
    }
    last.into_iter()
        .filter(|(_, v)| v.is_some())
        .map(|(key, value)| Entry {
            key,
            value,
            timestamp: None,
            headers: Headers::new(),
        })
        .collect()
}

fn run_once(check: &SplitCheck, input: &SplitInput, batching: Batching) -> Result<Snapshot> {
    let mut b = TopologyTestDriver::builder(check.topology.clone())
        .batching(batching)
        .error_policies(check.errors.clone());
    for (t, n) in &input.partitions {
        b = b.partitions(t, *n);
    }
    let mut driver = b.build()?;
    for (topic, r) in &input.records {
        driver.append(topic, None, r.clone())?;
    }
    driver.process()?;
    let mut tables: std::collections::BTreeSet<String> = check.tables.clone();
    // A changelog is compacted: only the last write of each key is state; fewer intermediate
    // writes is what batching is for.
    tables.extend(
        check
            .topology
            .stores()
            .iter()
            .map(|s| driver.config.changelog_topic(s.name())),
    );
    let mut snapshot = Snapshot::default();
    for (name, log) in &driver.topics {
        let table = tables.contains(name);
        if table {
            snapshot.tables.insert(name.clone());
        }
        snapshot.topics.insert(
            name.clone(),
            log.partitions
                .iter()
                .map(|p| {
                    if table {
                        as_table(p)
                    } else {
                        p.iter()
                            .map(|r| Entry {
                                key: r.key.clone(),
                                value: r.value.clone(),
                                timestamp: Some(r.timestamp),
                                headers: r.headers.clone(),
                            })
                            .collect()
                    }
                })
                .collect(),
        );
    }
    for spec in check.topology.stores() {
        let entries = if spec.kind() == crate::store::StoreKind::KeyValue {
            driver.store_raw(spec.name())?
        } else {
            driver.windowed_live(spec, crate::store::live_raw_entries)?
        };
        snapshot.stores.insert(spec.name().to_owned(), entries);
    }
    Ok(snapshot)
}

/// The first place where a run differs from the run with one batch per partition (the
/// reference). `expected` is what the reference holds there, `actual` what the other run holds
/// (`None`: nothing there); records are shown as key, value, timestamp and headers, bytes as
/// UTF-8 text when they are, else as hex.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SplitDifference {
    /// A topic that one run writes and the other does not.
    Topic {
        /// The topic.
        topic: String,
        /// Whether the reference run is the one that wrote it.
        in_reference: bool,
    },
    /// A stream topic (compared record for record) differs at this offset.
    Record {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset in the partition.
        offset: usize,
        /// The reference's record at that offset.
        expected: Option<String>,
        /// The other run's record at that offset.
        actual: Option<String>,
    },
    /// A table topic (a declared [table output](SplitCheck::table_output) or a changelog,
    /// compared as the last value per key) differs at this position: the index of the entry in
    /// key order after compaction, not an offset.
    TableEntry {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The position in key order of the compacted partition.
        position: usize,
        /// The reference's entry at that position.
        expected: Option<String>,
        /// The other run's entry at that position.
        actual: Option<String>,
    },
    /// A store that one run has and the other does not.
    Store {
        /// The store.
        store: String,
        /// Whether the reference run is the one that has it.
        in_reference: bool,
    },
    /// A store's entries (in key order, across tasks) differ at this position.
    StoreEntry {
        /// The store.
        store: String,
        /// The position in key order.
        position: usize,
        /// The reference's entry at that position.
        expected: Option<String>,
        /// The other run's entry at that position.
        actual: Option<String>,
    },
}

fn or_nothing(side: &Option<String>) -> &str {
    side.as_deref().unwrap_or("nothing")
}

impl std::fmt::Display for SplitDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitDifference::Topic {
                topic,
                in_reference: true,
            } => write!(f, "topic `{topic}` is missing"),
            SplitDifference::Topic {
                topic,
                in_reference: false,
            } => write!(f, "unexpected topic `{topic}`"),
            SplitDifference::Record {
                topic,
                partition,
                offset,
                expected,
                actual,
            } => write!(
                f,
                "topic `{topic}` partition {partition} offset {offset} holds {} instead of {}",
                or_nothing(actual),
                or_nothing(expected)
            ),
            SplitDifference::TableEntry {
                topic,
                partition,
                position,
                expected,
                actual,
            } => write!(
                f,
                "table topic `{topic}` partition {partition} (last value per key) holds {} \
                 instead of {} at position {position}",
                or_nothing(actual),
                or_nothing(expected)
            ),
            SplitDifference::Store {
                store,
                in_reference: true,
            } => write!(f, "store `{store}` is missing"),
            SplitDifference::Store {
                store,
                in_reference: false,
            } => write!(f, "unexpected store `{store}`"),
            SplitDifference::StoreEntry {
                store,
                position,
                expected,
                actual,
            } => write!(
                f,
                "store `{store}` holds {} instead of {} at position {position}",
                or_nothing(actual),
                or_nothing(expected)
            ),
        }
    }
}

/// Why [`SplitCheck::run`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SplitCheckError {
    /// Split invariance does not hold: a run cut into other batches gave another result.
    #[error("{plan} differ from one batch per partition: {difference}")]
    Differs {
        /// How the differing run cut the input ("batches of one", "random batches (seed 7)").
        plan: String,
        /// The first difference.
        difference: Box<SplitDifference>,
    },
    /// The topology failed on the input (under the check's error policies) in one of the runs.
    #[error("the topology failed with {plan}: {source}")]
    Run {
        /// How that run cut the input.
        plan: String,
        /// The error.
        #[source]
        source: Box<Error>,
    },
    /// The check is set up wrongly (a table output the topology does not write, input for a
    /// topic it does not read or of other types than its source's).
    #[error("invalid split-invariance check: {0}")]
    Invalid(String),
}

impl From<SplitCheckError> for Error {
    /// A run's error as it is; a difference (or a wrong set-up) as [`Error::User`], from which
    /// `downcast_ref::<SplitCheckError>()` gets it back.
    fn from(e: SplitCheckError) -> Self {
        match e {
            SplitCheckError::Run { source, .. } => *source,
            other => Error::User(Box::new(other)),
        }
    }
}

/// Checks invariant 2, split invariance: the outputs and the final state of every store do not
/// depend on how the input was cut into batches.
///
/// It runs the topology on the input with all of each partition in one batch (the reference),
/// then with batches of one, then [`runs`](Self::runs) times with random batch sizes (seeded by
/// [`seed`](Self::seed), so a failure is reproducible), each in fresh LMDB state, and compares
/// with the reference, byte for byte:
/// - a **stream** topic (the default for a sink topic, and dead-letter topics) record for
///   record: key, value, timestamp and headers at each offset of each partition;
/// - a **table** topic (one declared with [`table_output`](Self::table_output), and every store's
///   changelog) as the last value of each key in each partition, as compaction would leave it (a
///   key whose last value is a tombstone is absent). An aggregation that forwards one update
///   per key and batch writes fewer updates in bigger batches; what must not depend on the cut is
///   where each key ends up;
/// - every store, entry by entry in key order.
///
/// The first difference comes back as [`SplitCheckError::Differs`].
///
/// ```
/// use kstreams::testing::{SplitCheck, SplitInput};
/// use kstreams::{batch_processor, store, Emit, Record, Topology};
///
/// #[store(name = "totals")]
/// type Totals = kstreams::KeyValue<String, u64>;
///
/// /// One output per key and batch: the key's new total.
/// #[batch_processor]
/// fn total(amounts: &[Record<String, u64>], totals: &mut Totals, out: &mut Emit<String, u64>) -> kstreams::Result<()> {
///     let mut sums = std::collections::BTreeMap::new();
///     for r in amounts {
///         *sums.entry(r.key.clone()).or_insert(0) += r.value;
///     }
///     for (key, sum) in sums {
///         let t = totals.get(&key)?.unwrap_or(0) + sum;
///         totals.put(&key, &t)?;
///         out.forward(Record::new(key, t));
///     }
///     Ok(())
/// }
///
/// let mut t = Topology::builder();
/// let amounts = t.source::<String, u64>("amounts");
/// let totals = t.add(total, &amounts);
/// t.sink("totals", &totals);
/// let topology = t.build()?;
/// let input = SplitInput::new().records("amounts", (0..100u64).map(|i| Record::new(format!("k{}", i % 3), i)))?;
/// // Record for record, bigger batches write fewer updates...
/// assert!(SplitCheck::new(&topology).run(&input).is_err());
/// // ...but the last total of each key is the same however the input is cut.
/// SplitCheck::new(&topology).table_output("totals").seed(7).runs(3).run(&input)?;
/// # Ok::<(), kstreams::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SplitCheck {
    topology: Topology,
    tables: std::collections::BTreeSet<String>,
    errors: ErrorPolicies,
    seed: u64,
    runs: usize,
}

impl SplitCheck {
    /// A check of `topology`: every sink topic a stream, error policies `Fail`, seed 0, three
    /// random runs.
    pub fn new(topology: &Topology) -> Self {
        SplitCheck {
            topology: topology.clone(),
            tables: std::collections::BTreeSet::new(),
            errors: ErrorPolicies::default(),
            seed: 0,
            runs: 3,
        }
    }

    /// Compares sink topic `topic` as a table (the last value per key in each partition), not
    /// record for record: for the updates of an aggregation. [`run`](Self::run) rejects a topic
    /// the topology does not write.
    #[must_use]
    pub fn table_output(mut self, topic: impl Into<String>) -> Self {
        self.tables.insert(topic.into());
        self
    }

    /// The seed of the first random run (run `i` uses `seed + i`).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How many runs with random batch sizes follow the run with batches of one.
    #[must_use]
    pub fn runs(mut self, runs: usize) -> Self {
        self.runs = runs;
        self
    }

    crate::policy::error_policy_builders!(
        base: errors,
        production = "serialized for their sink topic"
    );

    /// Runs the check on `input`.
    pub fn run(&self, input: &SplitInput) -> Result<(), SplitCheckError> {
        let sinks = self.topology.sink_topics();
        if let Some(t) = self
            .tables
            .iter()
            .find(|t| !sinks.iter().any(|s| **s == ***t))
        {
            let list: Vec<String> = sinks.iter().map(|s| format!("`{s}`")).collect();
            return Err(SplitCheckError::Invalid(format!(
                "table output `{t}` is not a sink topic of the topology (sink topics: {})",
                list.join(", ")
            )));
        }
        let config = TaskConfig::new("split-check", "");
        for (topic, types) in &input.types {
            check_topic_types(
                &self.topology,
                &config,
                topic,
                *types,
                TopicUse::Write { typed: true },
            )
            .map_err(|e| SplitCheckError::Invalid(format!("input: {e}")))?;
        }
        let run = |plan: &str, batching| {
            run_once(self, input, batching).map_err(|source| SplitCheckError::Run {
                plan: plan.to_owned(),
                source: Box::new(source),
            })
        };
        let reference = run("one batch per partition", Batching::Max(usize::MAX))?;
        let mut plans = vec![("batches of one".to_owned(), Batching::Max(1))];
        for i in 0..self.runs {
            let s = self.seed.wrapping_add(i as u64);
            plans.push((
                format!("random batches (seed {s})"),
                Batching::Random {
                    seed: s,
                    max: 1 + (s as usize % 64),
                },
            ));
        }
        for (plan, batching) in plans {
            let got = run(&plan, batching)?;
            if let Some(difference) = first_difference(&reference, &got) {
                return Err(SplitCheckError::Differs {
                    plan,
                    difference: Box::new(difference),
                });
            }
        }
        Ok(())
    }
}

/// [`SplitCheck`] with every sink topic compared record for record and the `Fail` policies:
/// `SplitCheck::new(topology).seed(seed).runs(runs).run(input)`. A difference comes back as
/// [`Error::User`] holding the [`SplitCheckError`].
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
    Ok(SplitCheck::new(topology).seed(seed).runs(runs).run(input)?)
}

/// The first place where `b` differs from the reference `a`; every topic and store of either
/// side is looked at.
fn first_difference(a: &Snapshot, b: &Snapshot) -> Option<SplitDifference> {
    let show = |e: Option<&Entry>| e.map(ToString::to_string);
    for (topic, pa) in &a.topics {
        let Some(pb) = b.topics.get(topic) else {
            return Some(SplitDifference::Topic {
                topic: topic.clone(),
                in_reference: true,
            });
        };
        let table = a.tables.contains(topic);
        for p in 0..pa.len().max(pb.len()) {
            let (ra, rb) = (
                pa.get(p).map_or(&[][..], Vec::as_slice),
                pb.get(p).map_or(&[][..], Vec::as_slice),
            );
            let Some(i) = (0..ra.len().max(rb.len())).find(|&i| ra.get(i) != rb.get(i)) else {
                continue;
            };
            let (topic, partition) = (topic.clone(), p as i32);
            let (expected, actual) = (show(ra.get(i)), show(rb.get(i)));
            return Some(if table {
                SplitDifference::TableEntry {
                    topic,
                    partition,
                    position: i,
                    expected,
                    actual,
                }
            } else {
                SplitDifference::Record {
                    topic,
                    partition,
                    offset: i,
                    expected,
                    actual,
                }
            });
        }
    }
    if let Some(topic) = b.topics.keys().find(|t| !a.topics.contains_key(*t)) {
        return Some(SplitDifference::Topic {
            topic: topic.clone(),
            in_reference: false,
        });
    }
    let show_entry = |e: Option<&(Vec<u8>, Vec<u8>)>| {
        e.map(|(k, v)| format!("key {}, value {}", show_bytes(Some(k)), show_bytes(Some(v))))
    };
    for (store, ea) in &a.stores {
        let Some(eb) = b.stores.get(store) else {
            return Some(SplitDifference::Store {
                store: store.clone(),
                in_reference: true,
            });
        };
        if let Some(i) = (0..ea.len().max(eb.len())).find(|&i| ea.get(i) != eb.get(i)) {
            return Some(SplitDifference::StoreEntry {
                store: store.clone(),
                position: i,
                expected: show_entry(ea.get(i)),
                actual: show_entry(eb.get(i)),
            });
        }
    }
    if let Some(store) = b.stores.keys().find(|s| !a.stores.contains_key(*s)) {
        return Some(SplitDifference::Store {
            store: store.clone(),
            in_reference: false,
        });
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
            global: None,
        };
        let r = f(&mut ctx)?;
        Ok((r, std::mem::take(&mut outputs.records)))
    })
}

/// [`Context::fail_record`] in a plain call: the `Fail` policy, the error is returned.
struct FailRecords;

impl crate::policy::RecordFailures for FailRecords {
    fn fail_record(&mut self, _: &str, _: Option<&Origin>, error: Error) -> Result<()> {
        Err(error)
    }

    fn late_record(
        &mut self,
        processor: &str,
        store: &str,
        origin: Option<&Origin>,
        message: String,
        _dead_letter: Option<crate::record::Headers>,
    ) -> Result<()> {
        // A plain call has no dead-letter topic: the late record is counted and logged.
        let what: &dyn std::fmt::Display = match origin {
            Some(o) => o,
            None => &"a record without origin",
        };
        crate::policy::count_late(processor, store, what, &message);
        Ok(())
    }
}

/// A store entry's key and value, read with the store's serdes.
fn decode_entry<K: 'static, V: 'static>(
    spec: &crate::store::StoreSpec,
    k: &[u8],
    v: &[u8],
) -> Result<(K, V)> {
    let serdes = spec.serdes::<K, V>()?;
    let corrupt = |part, source| Error::StoreCorrupt {
        store: spec.name().to_owned(),
        part,
        source,
    };
    let key = serdes
        .key_serde()
        .deserialize(Some(k))
        .map_err(|e| corrupt(Part::Key, e))?;
    let value = serdes
        .value_serde()
        .deserialize(Some(v))
        .map_err(|e| corrupt(Part::Value, e))?;
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores(entries: &[(&str, &[u8])]) -> Snapshot {
        Snapshot {
            stores: entries
                .iter()
                .map(|(name, v)| ((*name).to_owned(), vec![(b"k".to_vec(), v.to_vec())]))
                .collect(),
            ..Snapshot::default()
        }
    }

    /// A store missing on one side is a difference, and the stores after it are still compared.
    #[test]
    fn a_store_missing_on_either_side_is_a_difference() {
        let reference = stores(&[("a", b"1"), ("b", b"2")]);
        assert_eq!(
            first_difference(&reference, &stores(&[("b", b"2")])),
            Some(SplitDifference::Store {
                store: "a".into(),
                in_reference: true
            })
        );
        assert_eq!(
            first_difference(&stores(&[("b", b"2")]), &reference),
            Some(SplitDifference::Store {
                store: "a".into(),
                in_reference: false
            })
        );
        assert_eq!(
            first_difference(&reference, &stores(&[("a", b"1"), ("b", b"3")])),
            Some(SplitDifference::StoreEntry {
                store: "b".into(),
                position: 0,
                expected: Some(r#"key "k", value "2""#.into()),
                actual: Some(r#"key "k", value "3""#.into()),
            })
        );
        assert_eq!(first_difference(&reference, &reference.clone()), None);
    }

    #[test]
    fn bytes_show_as_text_or_hex() {
        assert_eq!(show_bytes(None), "null");
        assert_eq!(show_bytes(Some(b"ab")), "\"ab\"");
        assert_eq!(show_bytes(Some(&[0xff, 0x01])), "0xff01");
        assert_eq!(show_bytes(Some(&7u64.to_be_bytes())), "0x0000000000000007");
        assert!(show_bytes(Some(&[b'x'; 100])).ends_with("… (100 bytes)"));
    }
}
