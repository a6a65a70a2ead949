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
//! Streams' `KTableSource`). A processor that reads the table declares the same store: sharing
//! it puts the processor in the table's sub-topology, so the two are co-partitioned.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::context::Context;
use crate::error::{Result, SerdeError};
use crate::processor::BatchProcessor;
use crate::record::Record;
use crate::serde::Serde;
use crate::store::{StoreHandle, StoreKind, StoreSpec};
use crate::topology::{NodeRole, SourceOptions, Stream, TopologyBuilder, TopologyError};

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

    /// The table's store as the topology declares it; a processor that reads the table
    /// declares this spec in its `stores()`.
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
}

/// The kind of table a store can hold, or why it cannot hold one.
fn table_kind(spec: &StoreSpec, topic: &str) -> std::result::Result<TableKind, TopologyError> {
    match spec.kind() {
        StoreKind::KeyValue => Ok(TableKind::Latest),
        other => Err(TopologyError::InvalidTable {
            topic: topic.to_owned(),
            store: spec.name().to_owned(),
            reason: format!(
                "a {} store cannot hold a table: declare it as `kstreams::KeyValue<K, V>` \
                 (versioned tables need the versioned key-value store)",
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
        let store = ctx.store::<K, V>(self.spec.name())?;
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
}

impl TopologyBuilder {
    /// A table read from `topic` into the store of `S`, with the store's serdes: each record
    /// sets its key's value, and a record with a null value deletes the key.
    ///
    /// The table forwards a [`Change`] (on [`Table::changes`]) only when a key's value changes,
    /// with the timestamp of the record that changed it. A processor reads the table by
    /// declaring the same store (`S`): it then runs in the table's task, partition by partition.
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
        let spec = S::spec();
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
