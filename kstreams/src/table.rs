//! Tables: a topic read as the latest value per key, materialized into a store.
//!
//! Owns: the [`TableStore`] marker (which `#[kstreams::store]` handles can hold a table), the
//! handles [`Table`] and [`GlobalTable`] that [`TopologyBuilder::table`] and
//! [`TopologyBuilder::global_table`] return, [`Change`] (what a table forwards when a key's
//! value changes) and the materializer processor. May not touch: the stores' layout (that is
//! [`store`](crate::store)) or how the runtime feeds a global store (the Kafka runtime's global
//! thread, the test driver).
//!
//! A table is a source of the table's topic, with the store's serdes (a null value is a
//! delete), followed by a materializer that writes each record into the store and forwards a
//! [`Change`] only when the key's current value changes, with the record's timestamp (Kafka
//! Streams' `KTableSource`). A processor that reads the table declares the same store,
//! read-only (a `&Prices` parameter, or [`StoreSpec::read_only`]): sharing it puts the processor
//! in the table's sub-topology, so the two are co-partitioned. Only the table writes its store
//! (the topic is its changelog): the topology refuses any other processor taking it read-write.

use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::context::Context;
use crate::error::{Error, Part, Result, SerdeError};
use crate::exec::{Collector, TaskOutput};
use crate::processor::BatchProcessor;
use crate::record::{Origin, RawRecord, Record};
use crate::serde::Serde;
use crate::store::{
    Position, StateStores, StoreHandle, StoreKind, StoreReader, StoreSpec, VersionedPut,
};
use crate::task::TaskConfig;
use crate::topology::{
    GlobalDef, NodeRole, RecordCheck, SourceOptions, Stream, Topology, TopologyBuilder,
    TopologyError,
};

/// A store that can hold a table: a key-value store (or, with versioned stores, a versioned
/// key-value store) declared with `#[kstreams::store]`, which implements it.
///
/// The handle types are generic over the lifetime of the transaction they are bound to;
/// `TableStore` is implemented for their `'static` form (`impl TableStore for Prices<'static>`),
/// so a table is named `t.table::<Prices<'static>>(..)`, as the library's aggregations name
/// their stores (`aggregate::count::<Counts<'static>>()`). A window store cannot hold a table:
///
/// ```compile_fail
/// #[kstreams::store(name = "recent", window = tumbling(size = "1m"), grace = "0s")]
/// type Recent = kstreams::WindowKeyValue<String, u64>;
/// let mut t = kstreams::Topology::builder();
/// let _ = t.table::<Recent<'static>>("recent"); // error: `Recent` cannot hold a table
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot hold a table",
    label = "not a key-value store handle",
    note = "a table is materialized into a key-value store declared with `#[kstreams::store(name = \"...\")] type Name = kstreams::KeyValue<K, V>;` (a window or session store cannot hold one)"
)]
pub trait TableStore: StoreHandle<'static> {}

/// What a table forwards when a key's value changes: the new value (`None`: the key was
/// deleted) and the value before (`None`: the key was new).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change<V> {
    /// The value now; `None` when the key was deleted.
    pub new: Option<V>,
    /// The value before; `None` when the key had none.
    pub old: Option<V>,
}

/// A table read from a topic into the store of `S` ([`TopologyBuilder::table`]).
pub struct Table<S: TableStore> {
    changes: Stream<S::Key, Change<S::Value>>,
    topic: Arc<str>,
    spec: StoreSpec,
    _store: PhantomData<fn() -> S>,
}

impl<S: TableStore> Clone for Table<S> {
    fn clone(&self) -> Self {
        Table {
            changes: self.changes,
            topic: self.topic.clone(),
            spec: self.spec.clone(),
            _store: PhantomData,
        }
    }
}

impl<S: TableStore> fmt::Debug for Table<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("topic", &self.topic)
            .field("store", &self.spec.name())
            .finish()
    }
}

impl<S: TableStore> Table<S> {
    /// The table's changes: one record per change of a key's value, with the timestamp of the
    /// table record that made it. Connecting nothing to it is fine.
    pub fn changes(&self) -> &Stream<S::Key, Change<S::Value>> {
        &self.changes
    }

    /// The topic the table is read from.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The name of the table's store.
    pub fn store_name(&self) -> &str {
        self.spec.name()
    }

    /// The table's store as the topology declares it; a hand-written processor that reads the
    /// table declares this spec, [`read_only`](StoreSpec::read_only), in its `stores()`.
    pub fn spec(&self) -> &StoreSpec {
        &self.spec
    }
}

/// A global table ([`TopologyBuilder::global_table`]): every partition of its topic, in one
/// store per instance, read by any task with [`Context::global_store`].
pub struct GlobalTable<S: TableStore> {
    topic: Arc<str>,
    spec: StoreSpec,
    _store: PhantomData<fn() -> S>,
}

impl<S: TableStore> Clone for GlobalTable<S> {
    fn clone(&self) -> Self {
        GlobalTable {
            topic: self.topic.clone(),
            spec: self.spec.clone(),
            _store: PhantomData,
        }
    }
}

impl<S: TableStore> fmt::Debug for GlobalTable<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalTable")
            .field("topic", &self.topic)
            .field("store", &self.spec.name())
            .finish()
    }
}

impl<S: TableStore> GlobalTable<S> {
    /// The topic the table is read from.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The name of the table's store.
    pub fn store_name(&self) -> &str {
        self.spec.name()
    }

    /// The global store's declaration.
    pub fn spec(&self) -> &StoreSpec {
        &self.spec
    }
}

/// How a table's store keeps its values, from its spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TableKind {
    /// A key-value store: the latest value per key.
    Latest,
    /// A versioned store: every version within its history, each at its record's timestamp.
    Versioned,
}

/// The kind of table a store can hold, or why it cannot hold one.
fn table_kind(spec: &StoreSpec, topic: &str) -> std::result::Result<TableKind, TopologyError> {
    match spec.kind() {
        StoreKind::KeyValue => Ok(TableKind::Latest),
        StoreKind::Versioned { .. } => Ok(TableKind::Versioned),
        other => Err(TopologyError::InvalidTable {
            topic: topic.to_owned(),
            store: spec.name().to_owned(),
            reason: format!(
                "a {} store cannot hold a table: declare it as `kstreams::KeyValue<K, V>` or \
                 `kstreams::VersionedKeyValue<K, V>`",
                kind_name(other)
            ),
        }),
    }
}

fn kind_name(kind: StoreKind) -> &'static str {
    match kind {
        StoreKind::KeyValue => "key-value",
        StoreKind::Window { .. } => "window",
        StoreKind::Session { .. } => "session",
        StoreKind::Versioned { .. } => "versioned",
    }
}

/// The key serde of a store's spec, as a source's key serde.
struct SpecKey<K, V> {
    spec: StoreSpec,
    _types: PhantomData<fn() -> (K, V)>,
}

/// The value serde of a store's spec read as a table's value: a null is `None` (a delete).
struct SpecTableValue<K, V> {
    spec: StoreSpec,
    _types: PhantomData<fn() -> (K, V)>,
}

fn serdes_of<K: 'static, V: 'static>(
    spec: &StoreSpec,
) -> std::result::Result<&crate::store::StoreSerdes<K, V>, SerdeError> {
    // Checked when the table was added (`TopologyBuilder::table`), so this does not fail.
    spec.serdes::<K, V>()
        .map_err(|e| SerdeError::new(e.to_string()))
}

impl<K: 'static, V: 'static> Serde<K> for SpecKey<K, V> {
    fn serialize(&self, value: &K) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        serdes_of::<K, V>(&self.spec)?.key_serde().serialize(value)
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> std::result::Result<K, SerdeError> {
        serdes_of::<K, V>(&self.spec)?
            .key_serde()
            .deserialize(bytes)
    }

    fn deserialize_batch(
        &self,
        bytes: &mut dyn Iterator<Item = Option<&[u8]>>,
        out: &mut Vec<K>,
    ) -> std::result::Result<(), (usize, SerdeError)> {
        serdes_of::<K, V>(&self.spec)
            .map_err(|e| (0, e))?
            .key_serde()
            .deserialize_batch(bytes, out)
    }
}

impl<K: 'static, V: 'static> Serde<Option<V>> for SpecTableValue<K, V> {
    fn serialize(&self, value: &Option<V>) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        match value {
            Some(v) => serdes_of::<K, V>(&self.spec)?.value_serde().serialize(v),
            None => Ok(None),
        }
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> std::result::Result<Option<V>, SerdeError> {
        match bytes {
            Some(b) => serdes_of::<K, V>(&self.spec)?
                .value_serde()
                .deserialize(Some(b))
                .map(Some),
            None => Ok(None),
        }
    }
}

/// The processor behind a table: writes each record of the table's topic into the store and
/// forwards a [`Change`] when the key's value changes.
pub(crate) struct Materialize<K, V> {
    spec: StoreSpec,
    kind: TableKind,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Materialize<K, V> {
    fn clone(&self) -> Self {
        Materialize {
            spec: self.spec.clone(),
            kind: self.kind,
            _types: PhantomData,
        }
    }
}

/// Whether two values write the same bytes (a value its serde cannot write is never the same:
/// the put that follows reports the error).
fn same_value<V: 'static>(serde: &dyn Serde<V>, a: &V, b: &V) -> bool {
    matches!((serde.serialize(a), serde.serialize(b)), (Ok(x), Ok(y)) if x == y)
}

impl<K, V> BatchProcessor<K, Option<V>> for Materialize<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    type OutKey = K;
    type OutValue = Change<V>;

    fn stores(&self) -> Vec<StoreSpec> {
        vec![self.spec.clone()]
    }

    fn process_batch(
        &mut self,
        records: &[Record<K, Option<V>>],
        ctx: &mut Context<'_, K, Change<V>>,
    ) -> Result<()> {
        match self.kind {
            TableKind::Latest => self.latest(records, ctx),
            TableKind::Versioned => self.versioned(records, ctx),
        }
    }
}

impl<K, V> Materialize<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// A key-value table: put or delete, forwarding what changed.
    fn latest(
        &self,
        records: &[Record<K, Option<V>>],
        ctx: &mut Context<'_, K, Change<V>>,
    ) -> Result<()> {
        let mut store = ctx.store::<K, V>(self.spec.name())?;
        let serdes = self.spec.serdes::<K, V>()?;
        // Nobody reads the changes: build none.
        let forward = !ctx.node.children.is_empty();
        for r in records {
            let old = store.get(&r.key)?;
            let new = match (&r.value, &old) {
                // Deleting what is not there changes nothing.
                (None, None) => continue,
                (Some(new), Some(old)) if same_value(serdes.value_serde(), new, old) => continue,
                (None, Some(_)) => {
                    store.delete(&r.key)?;
                    None
                }
                (Some(new), _) => {
                    store.put(&r.key, new)?;
                    forward.then(|| new.clone())
                }
            };
            if forward {
                ctx.forward(r.derive(r.key.clone(), Change { new, old }));
            }
        }
        Ok(())
    }

    /// A versioned table: each record is a version at its timestamp (a null value a tombstone
    /// version); only a version that becomes the latest can change the table's current value
    /// (Kafka Streams' `KTableSource` over a versioned store), and it forwards a change when it
    /// does. A version older than the history is not put (counted, at DEBUG).
    fn versioned(
        &self,
        records: &[Record<K, Option<V>>],
        ctx: &mut Context<'_, K, Change<V>>,
    ) -> Result<()> {
        let mut store = ctx.versioned_store::<K, V>(self.spec.name())?;
        let serdes = self.spec.serdes::<K, V>()?;
        let forward = !ctx.node.children.is_empty();
        for r in records {
            let old = store.get(&r.key)?.map(|v| v.value);
            match store.put(&r.key, r.value.as_ref(), r.timestamp)? {
                VersionedPut::Latest => {}
                VersionedPut::Older => continue,
                VersionedPut::Expired => {
                    expired_put(self.spec.name(), r);
                    continue;
                }
            }
            let changed = match (&r.value, &old) {
                (None, None) => false,
                (Some(new), Some(old)) => !same_value(serdes.value_serde(), new, old),
                _ => true,
            };
            if forward && changed {
                ctx.forward(r.derive(
                    r.key.clone(),
                    Change {
                        new: r.value.clone(),
                        old,
                    },
                ));
            }
        }
        Ok(())
    }
}

/// A table record older than its versioned store's history: not put, so it changes nothing;
/// counted and logged at DEBUG (Kafka Streams drops it with a metric too).
fn expired_put<K, V>(store: &str, record: &Record<K, V>) {
    let at = record
        .origin
        .as_ref()
        .map_or_else(|| "a record".to_owned(), |o| o.to_string());
    tracing::debug!(
        store,
        record = %at,
        timestamp = record.timestamp,
        "a table record older than the versioned store's history: not put"
    );
    metrics::counter!("kstreams_table_expired_puts_total", "store" => store.to_owned())
        .increment(1);
}

impl TopologyBuilder {
    /// A table read from `topic` into the store of `S`, with the store's serdes: each record
    /// sets its key's value, and a record with a null value deletes the key.
    ///
    /// The table forwards a [`Change`] (on [`Table::changes`]) only when a key's value changes,
    /// with the timestamp of the record that changed it. A processor reads the table by
    /// taking the same store (`S`) by shared reference (`prices: &Prices`; a hand-written
    /// processor declares it [`read_only`](StoreSpec::read_only)): it then runs in the table's
    /// task, partition by partition. Taking it `&mut` fails [`build`](TopologyBuilder::build):
    /// only the table writes its store.
    ///
    /// ```
    /// use kstreams::testing::TopologyTestDriver;
    /// use kstreams::Topology;
    ///
    /// #[kstreams::store(name = "prices")]
    /// type Prices = kstreams::KeyValue<String, u64>;
    ///
    /// let mut t = Topology::builder();
    /// let prices = t.table::<Prices<'static>>("prices");
    /// assert_eq!(prices.store_name(), "prices");
    /// let mut driver = TopologyTestDriver::new(t.build()?)?;
    /// // A table topic's values are `Option`s: `None` is a null, a delete.
    /// driver.pipe("prices", "apple".to_string(), Some(3u64))?;
    /// driver.pipe("prices", "pear".to_string(), Some(5u64))?;
    /// driver.pipe::<String, Option<u64>>("prices", "apple".to_string(), None)?;
    /// assert_eq!(driver.store::<String, u64>("prices")?, vec![("pear".to_string(), 5)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn table<S>(&mut self, topic: &str) -> Table<S>
    where
        S: TableStore,
        S::Key: Clone + Send,
        S::Value: Clone + Send,
    {
        // The table's topic is its store's changelog: no changelog topic of its own.
        let spec = S::spec().changelog_from_source(topic);
        let kind = match table_kind(&spec, topic) {
            Ok(kind) => kind,
            Err(e) => {
                self.record_error(e);
                TableKind::Latest
            }
        };
        let source = self.source_of_role(
            topic,
            SpecKey::<S::Key, S::Value> {
                spec: spec.clone(),
                _types: PhantomData,
            },
            SpecTableValue::<S::Key, S::Value> {
                spec: spec.clone(),
                _types: PhantomData,
            },
            SourceOptions::new(),
            NodeRole::TableSource {
                store: spec.name().into(),
                value_type: std::any::type_name::<S::Value>(),
            },
        );
        let name = self.unique_node_name(&format!("{}-table", spec.name()));
        let materialize = Materialize::<S::Key, S::Value> {
            spec: spec.clone(),
            kind,
            _types: PhantomData,
        };
        let changes = self.add_with_role(
            &name,
            materialize,
            &source,
            NodeRole::Table {
                topic: topic.into(),
                store: spec.name().into(),
            },
        );
        Table {
            changes,
            topic: topic.into(),
            spec,
            _store: PhantomData,
        }
    }
}

impl TopologyBuilder {
    /// A global table read from `topic` into the store of `S` (Kafka Streams'
    /// `globalTable`): every partition of the topic, in one store per instance, in no task.
    /// A `#[batch_processor]` reads it by taking `S` by shared reference (`currencies:
    /// &Currencies`: bound to the instance's global stores; `&mut` fails the build). A
    /// hand-written processor reads it with [`Context::global_store`] (declaring it in `init` with
    /// [`InitContext::require_global_store`](crate::InitContext::require_global_store), so
    /// that a missing global table fails the build), whatever its input's partitioning: no
    /// co-partitioning is needed.
    ///
    /// The store holds the topic's bytes as they are (a null value deletes the key); a record
    /// whose key or value the store's serdes cannot read goes through the deserialization
    /// policy of the topic. The runtime keeps the store up to date from the topic before and
    /// while tasks process; the test driver applies a record piped to the topic before the
    /// records piped after it.
    ///
    /// ```
    /// use kstreams::testing::TopologyTestDriver;
    /// use kstreams::{BatchProcessor, Context, InitContext, Record, Result, Topology};
    ///
    /// #[kstreams::store(name = "currencies")]
    /// type Currencies = kstreams::KeyValue<String, String>;
    ///
    /// /// A payment with its currency's name, from the global table.
    /// #[derive(Clone)]
    /// struct Name;
    /// impl BatchProcessor<String, String> for Name {
    ///     type OutKey = String;
    ///     type OutValue = String;
    ///     fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
    ///         ctx.require_global_store::<String, String>("currencies")
    ///     }
    ///     fn process_batch(&mut self, records: &[Record<String, String>], ctx: &mut Context<'_, String, String>) -> Result<()> {
    ///         let currencies = ctx.global_store::<String, String>("currencies")?;
    ///         let names = currencies.get_batch(&records.iter().map(|r| r.value.clone()).collect::<Vec<_>>())?;
    ///         for (r, name) in records.iter().zip(names) {
    ///             ctx.forward(r.derive(r.key.clone(), name.unwrap_or_else(|| "?".into())));
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let mut t = Topology::builder();
    /// let _currencies = t.global_table::<Currencies<'static>>("currencies");
    /// let payments = t.source::<String, String>("payments");
    /// let named = t.add(Name, &payments);
    /// t.sink("named", &named);
    /// let mut driver = TopologyTestDriver::new(t.build()?)?;
    /// driver.pipe("currencies", "EUR".to_string(), Some("euro".to_string()))?;
    /// driver.pipe("payments", "p1".to_string(), "EUR".to_string())?;
    /// assert_eq!(driver.read_output::<String, String>("named")?[0].value, "euro");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn global_table<S>(&mut self, topic: &str) -> GlobalTable<S>
    where
        S: TableStore,
        S::Key: Send,
        S::Value: Send,
    {
        // The table's topic is its store's changelog: no changelog topic of its own.
        let spec = S::spec().changelog_from_source(topic);
        if let Err(e) = table_kind(&spec, topic) {
            self.record_error(e);
        }
        let checked = spec.clone();
        let check: RecordCheck = Arc::new(move |key, value| {
            let serdes = serdes_of::<S::Key, S::Value>(&checked).map_err(|e| (Part::Key, e))?;
            if key.is_none() {
                return Err((
                    Part::Key,
                    SerdeError::new("a table record needs a key; this one has a null key"),
                ));
            }
            serdes
                .key_serde()
                .deserialize(key)
                .map_err(|e| (Part::Key, e))?;
            if value.is_some() {
                serdes
                    .value_serde()
                    .deserialize(value)
                    .map_err(|e| (Part::Value, e))?;
            }
            Ok(())
        });
        self.add_global(GlobalDef {
            topic: topic.into(),
            spec: spec.clone(),
            check,
            types: [
                (
                    std::any::type_name::<S::Key>(),
                    std::any::type_name::<S::Value>(),
                ),
                (
                    std::any::type_name::<S::Key>(),
                    std::any::type_name::<Option<S::Value>>(),
                ),
            ],
        });
        GlobalTable {
            topic: topic.into(),
            spec,
            _store: PhantomData,
        }
    }
}

/// An instance's global stores: the stores of the topology's global tables, in one
/// [`StateStores`] at [`TaskConfig::global_state_dir`], fed from the tables' topics by whoever
/// reads them (the Kafka runtime's global consumer, the test driver) and read by every task
/// through a [`StoreReader`] ([`TaskConfig::global_stores`]).
///
/// Not public API: the runtime and the driver use it.
#[doc(hidden)]
pub struct GlobalStores {
    topology: Topology,
    config: Arc<TaskConfig>,
    state: StateStores,
}

impl fmt::Debug for GlobalStores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalStores")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl GlobalStores {
    /// Opens the global stores of `topology` (in memory when the config says so); `None`
    /// when it has no global table.
    pub fn open(topology: &Topology, config: Arc<TaskConfig>) -> Result<Option<GlobalStores>> {
        let specs: Vec<StoreSpec> = topology
            .global_stores()
            .into_iter()
            .map(|s| {
                if config.in_memory_state {
                    s.backend(crate::store::Backend::InMemory)
                } else {
                    s
                }
            })
            .collect();
        if specs.is_empty() {
            return Ok(None);
        }
        let state = StateStores::open(&config.global_state_dir(), specs, &config.lmdb)?;
        Ok(Some(GlobalStores {
            topology: topology.clone(),
            config,
            state,
        }))
    }

    /// A reader for the tasks ([`TaskConfig::global_stores`]); it reads nothing once this is
    /// dropped.
    pub fn reader(&self) -> Result<StoreReader> {
        self.state.reader()
    }

    /// The global tables' topics, in the order of their stores.
    pub fn topics(&self) -> Vec<Arc<str>> {
        self.topology
            .globals()
            .iter()
            .map(|g| g.topic.clone())
            .collect()
    }

    /// Whether `topic` is a global table's.
    pub fn reads(&self, topic: &str) -> bool {
        self.topology.globals().iter().any(|g| &*g.topic == topic)
    }

    /// The positions the stores reflect: the next offset of each partition of each topic.
    pub fn position(&self) -> Result<Position> {
        self.state.position()
    }

    /// Flushes the stores to disk (before their positions are trusted after a crash).
    pub fn sync(&self) -> Result<()> {
        self.state.sync()
    }

    /// Applies records of one partition of a global table's topic, in offset order, in one
    /// transaction that also records `last offset + 1` as the partition's position: a null
    /// value deletes its key, any other record sets it (the topic's bytes as they are). A
    /// record the store's serdes cannot read goes through the topic's deserialization policy
    /// (failing names the topic, partition and offset); what to produce (dead letters) is
    /// returned.
    pub fn apply(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[RawRecord<'_>],
    ) -> Result<TaskOutput> {
        let Some(index) = self
            .topology
            .globals()
            .iter()
            .position(|g| &*g.topic == topic)
        else {
            return Err(Error::Internal(format!(
                "topic `{topic}` is not a global table's"
            )));
        };
        let Some(last) = records.last() else {
            return Ok(TaskOutput::default());
        };
        let next_offset = last.offset + 1;
        let def = &self.topology.globals()[index];
        let topic_arc = def.topic.clone();
        let config = &self.config;
        let (out, reports) = self.state.transaction(|txn| {
            let mut produced = Vec::new();
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
                if let Err((part, source)) = (def.check)(r.key, r.value) {
                    let origin = Origin {
                        topic: topic_arc.clone(),
                        partition,
                        offset: r.offset,
                    };
                    collector.bad_record(&origin, r, part, source)?;
                    continue;
                }
                if let Some(key) = r.key {
                    txn.restore_raw(index, key, r.value, r.timestamp)?;
                }
            }
            txn.set_input_position(topic, partition, next_offset)?;
            let reports = std::mem::take(&mut collector.reports);
            drop(collector);
            stats.records = produced;
            Ok((stats, reports))
        })?;
        for report in &reports {
            report.emit();
        }
        let mut out = out;
        out.processed = (records.len() as u64)
            .saturating_sub(out.skipped)
            .saturating_sub(out.dead_lettered);
        Ok(out)
    }
}
