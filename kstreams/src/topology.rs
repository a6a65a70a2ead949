//! Topologies: a typed graph of sources, processors, stores and sinks.
//!
//! Owns: [`TopologyBuilder`], the typed stream handle [`Stream`], the built [`Topology`] (node
//! definitions, sub-topologies, stores) and [`Topology::describe`]. Edges are typed: connecting a
//! processor whose input types differ from its parent's output does not compile. What types cannot
//! catch is checked by [`TopologyBuilder::build`] and reported as a [`TopologyError`].
//! It does not run anything: the nodes' code is `exec`'s, and [`task`](crate::task)
//! instantiates the nodes of a sub-topology.

use std::any::TypeId;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::context::{NodeInfo, NodeStores, Outputs};
use crate::error::{Error, Result};
use crate::exec::{
    NodeRun, PassNode, ProcessorNode, SinkNode, SourceNode, SourceSerdes, init_node,
};
use crate::policy::ErrorPolicies;
use crate::processor::BatchProcessor;
use crate::record::Record;
use crate::serde::{DefaultSerde, Serde};
use crate::store::StoreSpec;

/// Why a topology could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// Two nodes have the same name.
    #[error("two nodes are named `{0}`; node names must be unique")]
    DuplicateName(String),
    /// A name that cannot be used (node names appear in topic names and diagrams).
    #[error("invalid name `{0}`: use 1 to 200 of the characters a-z A-Z 0-9 . _ -")]
    InvalidName(String),
    /// The topology has no source.
    #[error("the topology has no source: add one with `TopologyBuilder::source`")]
    NoSource,
    /// Two sources read the same topic.
    #[error(
        "topic `{0}` is read by two sources; read it once and connect both processors to that source"
    )]
    DuplicateSourceTopic(String),
    /// Two declarations of one store disagree.
    #[error(
        "store `{name}` is declared twice, differently ({differ}): {first}, and {second}; declare it once, with one `#[kstreams::store]` type used by both"
    )]
    StoreConflict {
        /// The store.
        name: String,
        /// The first declaration: who declared it, and as what.
        first: String,
        /// The second declaration: who declared it, and as what.
        second: String,
        /// What differs: "value types", "backends", ...
        differ: String,
    },
    /// A processor's `init` failed when the topology was built (see
    /// [`InitContext::require_store`](crate::InitContext::require_store)).
    #[error("processor `{node}` cannot start: {message}")]
    Init {
        /// The processor.
        node: String,
        /// What its `init` returned.
        message: String,
    },
    /// A store was declared but no processor uses it.
    #[error("store `{0}` is declared but no processor uses it")]
    UnusedStore(String),
    /// A processor forwards records that go nowhere.
    #[error(
        "processor `{name}` forwards `Record<{key}, {value}>` but nothing is connected to it: connect a processor or a sink to its stream, or make it forward nothing (output `()`, `()`)"
    )]
    OutputConnectedNowhere {
        /// The processor.
        name: String,
        /// Its output key type.
        key: &'static str,
        /// Its output value type.
        value: &'static str,
    },
    /// A node no source reaches.
    #[error("node `{0}` is not reachable from any source")]
    Unreachable(String),
    /// A sink with children.
    #[error("sink `{0}` has children; a sink must be the end of a stream")]
    SinkWithChildren(String),
    /// A stream handle from another builder.
    #[error("a stream of another topology builder was used (node `{0}`)")]
    ForeignStream(String),
    /// A processor other than the table's own takes a table's store read-write.
    #[error(
        "processor `{processor}` takes the store `{store}` of the table of topic `{topic}` read-write, but only the table writes its store (the topic is the store's changelog: another processor's writes would be logged nowhere and undone by a restore); take its handle by shared reference, `&Store` instead of `&mut Store` (a hand-written processor: declare it with `StoreSpec::read_only()` and read it with `Context::read_store`)"
    )]
    TableStoreWritten {
        /// The processor.
        processor: String,
        /// The table's store.
        store: String,
        /// The table's topic.
        topic: String,
    },
    /// A processor takes a global table's store read-write.
    #[error(
        "processor `{processor}` takes the store `{store}` of the global table of topic `{topic}` read-write, but only the global table writes its store (one per instance, in no task); take its handle by shared reference, `&Store` instead of `&mut Store` (a hand-written processor: read it with `Context::global_store`, declared in `init` with `InitContext::require_global_store`)"
    )]
    GlobalStoreWritten {
        /// The processor.
        processor: String,
        /// The global table's store.
        store: String,
        /// The global table's topic.
        topic: String,
    },
    /// A table whose store cannot hold it.
    #[error("the table of topic `{topic}` cannot use the store `{store}`: {reason}")]
    InvalidTable {
        /// The table's topic.
        topic: String,
        /// The store.
        store: String,
        /// Why.
        reason: String,
    },
}

static BUILDER_IDS: AtomicU64 = AtomicU64::new(1);

/// A source's timestamp extractor: the event time of a deserialized record (its key, value,
/// headers or its record timestamp), `None` when it has none. See [`SourceOptions`].
pub type TimestampExtractor<K, V> = Arc<dyn Fn(&Record<K, V>) -> Option<i64> + Send + Sync>;

/// Options of a source ([`TopologyBuilder::source_with_options`]).
#[non_exhaustive]
pub struct SourceOptions<K, V> {
    pub(crate) extractor: Option<TimestampExtractor<K, V>>,
}

impl<K, V> SourceOptions<K, V> {
    /// No options: the record's own timestamp is its event time.
    pub fn new() -> Self {
        SourceOptions { extractor: None }
    }

    /// The event time of each record read (Kafka Streams' `TimestampExtractor`): `f` gets the
    /// deserialized record, whose `timestamp` is the record's own, and returns its event time in
    /// milliseconds. The extracted timestamp orders the task's inputs, moves stream time (and
    /// stream-time punctuations) and is the timestamp of the record and its outputs. A record for
    /// which `f` returns `None` or a negative time goes through the deserialization policy of the
    /// topic ([`Error::InvalidTimestamp`] names its topic, partition and offset). A record
    /// whose key or value cannot be deserialized is not given to `f`: it fails deserialization.
    pub fn timestamp_extractor(
        mut self,
        f: impl Fn(&Record<K, V>) -> Option<i64> + Send + Sync + 'static,
    ) -> Self {
        self.extractor = Some(Arc::new(f));
        self
    }
}

impl<K, V> Default for SourceOptions<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> fmt::Debug for SourceOptions<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceOptions")
            .field("timestamp_extractor", &self.extractor.is_some())
            .finish()
    }
}

/// A typed handle to the records a node produces: `Record<K, V>`.
///
/// Only the builder makes them; pass them to [`TopologyBuilder::add`] and
/// [`TopologyBuilder::sink`].
#[must_use = "a stream that nothing consumes is lost: connect it to a processor or a sink"]
pub struct Stream<K, V> {
    builder: u64,
    node: usize,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Stream<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for Stream<K, V> {}

impl<K, V> fmt::Debug for Stream<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Stream<{}, {}>(node {})",
            std::any::type_name::<K>(),
            std::any::type_name::<V>(),
            self.node
        )
    }
}

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeKind {
    /// Reads a topic.
    Source {
        /// The topic.
        topic: Arc<str>,
    },
    /// Runs a processor.
    Processor,
    /// Writes to a topic.
    Sink {
        /// The topic.
        topic: Arc<str>,
    },
}

type Factory = Arc<dyn Fn(NodeInfo) -> Box<dyn NodeRun> + Send + Sync>;

/// What a node is for, beyond its kind: `describe()` shows it, and a table's materializer may
/// forward to nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum NodeRole {
    /// A plain source, processor or sink.
    #[default]
    Plain,
    /// The source of a table's topic.
    TableSource {
        /// The table's store.
        store: Arc<str>,
        /// The store's value type (the source's is its `Option`): records of it may be written
        /// to the topic too.
        value_type: &'static str,
    },
    /// A table's materializer.
    Table {
        /// The table's topic.
        topic: Arc<str>,
        /// The table's store.
        store: Arc<str>,
    },
    /// A merge of several streams.
    Merge,
    /// The sink of a repartition topic (the end of a sub-topology).
    RepartitionSink {
        /// The name given to `repartition`.
        name: Arc<str>,
    },
    /// The source of a repartition topic (the start of another).
    RepartitionSource {
        /// The name given to `repartition`.
        name: Arc<str>,
    },
}

/// Makes a sink's factory for a topic (a repartition sink's topic changes when the topology is
/// resolved for an application id).
type SinkFactory = Arc<dyn Fn(Arc<str>) -> Factory + Send + Sync>;

/// A repartition topic's name before it is resolved for an application id.
fn repartition_topic(name: &str) -> String {
    format!("{name}-repartition")
}

/// A node of a built topology.
#[derive(Clone)]
pub(crate) struct NodeDef {
    pub(crate) name: Arc<str>,
    pub(crate) kind: NodeKind,
    pub(crate) parents: Vec<usize>,
    pub(crate) children: Vec<usize>,
    pub(crate) stores: Vec<Arc<str>>,
    /// Those of `stores` the node only reads (declared [`StoreSpec::read_only`]).
    pub(crate) read_only: Arc<[Arc<str>]>,
    pub(crate) factory: Factory,
    pub(crate) role: NodeRole,
    /// A sink's factory for another topic.
    retarget: Option<SinkFactory>,
    /// `(key type, value type, output is unit)`: what a source or processor forwards, what a
    /// sink takes (`std::any::type_name`).
    output: (&'static str, &'static str, bool),
}

impl fmt::Debug for NodeDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeDef")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("parents", &self.parents)
            .field("children", &self.children)
            .field("stores", &self.stores)
            .finish()
    }
}

/// A connected part of a topology: its nodes run together in one task per input partition.
#[derive(Debug, Clone)]
pub struct SubTopology {
    /// Its index (the first half of a task id `0_3`).
    pub id: usize,
    /// Node indices in an order where every parent comes before its children.
    pub(crate) nodes: Vec<usize>,
    /// The topics its sources read (co-partitioned: partition `p` of each goes to task `id_p`).
    pub source_topics: Vec<Arc<str>>,
    /// The topics its sinks write.
    pub sink_topics: Vec<Arc<str>>,
    /// The names of its stores.
    pub stores: Vec<Arc<str>>,
}

/// Checks a global table record's key and value bytes with the store's serdes.
pub(crate) type RecordCheck = Arc<
    dyn Fn(
            Option<&[u8]>,
            Option<&[u8]>,
        ) -> Result<(), (crate::error::Part, crate::error::SerdeError)>
        + Send
        + Sync,
>;

/// A global table: its topic, its store and the check of its records.
#[derive(Clone)]
pub(crate) struct GlobalDef {
    pub(crate) topic: Arc<str>,
    pub(crate) spec: StoreSpec,
    pub(crate) check: RecordCheck,
    /// The types records written to the topic may have: `(K, V)` and `(K, Option<V>)`.
    pub(crate) types: [(&'static str, &'static str); 2],
}

impl fmt::Debug for GlobalDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalDef")
            .field("topic", &self.topic)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

struct Inner {
    nodes: Vec<NodeDef>,
    stores: Vec<StoreSpec>,
    subtopologies: Vec<SubTopology>,
    globals: Vec<GlobalDef>,
    /// The application id its internal topics are named for ([`Topology::resolve`]).
    application_id: Option<Arc<str>>,
}

/// An internal repartition topic of a topology ([`TopologyBuilder::repartition`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepartitionTopic {
    /// The name given to `repartition`.
    pub name: Arc<str>,
    /// The topic: `<application id>-<name>-repartition` in a resolved topology,
    /// `<name>-repartition` before.
    pub topic: Arc<str>,
}

/// A built, validated topology. Cheap to clone; every task instantiates its own processors from it.
#[derive(Clone)]
pub struct Topology {
    inner: Arc<Inner>,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Builds a [`Topology`].
///
/// ```
/// use kstreams::{processor, Record, Topology};
/// let mut t = Topology::builder();
/// let lines = t.source::<(), String>("text-input");
/// let upper = t.add(processor::map(|r: &Record<(), String>| r.derive((), r.value.to_uppercase())), &lines);
/// t.sink("text-upper", &upper);
/// let topology = t.build()?;
/// assert!(topology.describe().contains("text-upper"));
/// # Ok::<(), kstreams::Error>(())
/// ```
///
/// Types are checked when the graph is written: a processor of `Record<String, u64>` cannot be
/// connected to a stream of `Record<String, String>`.
///
/// ```compile_fail
/// use kstreams::{processor, Record, Topology};
/// let mut t = Topology::builder();
/// let lines = t.source::<String, String>("text-input");
/// let double = processor::map(|r: &Record<String, u64>| r.clone());
/// let _ = t.add(double, &lines); // error: does not take records of type `Record<String, String>`
/// ```
pub struct TopologyBuilder {
    id: u64,
    nodes: Vec<NodeDef>,
    declared_stores: Vec<StoreSpec>,
    /// Who declared each of `declared_stores` first: "processor `x`", for messages.
    declared_by: Vec<String>,
    globals: Vec<GlobalDef>,
    errors: Vec<TopologyError>,
}

impl fmt::Debug for TopologyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopologyBuilder")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

impl Default for TopologyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// Node, store and application names appear in topic names: 1 to 200 of `a-z A-Z 0-9 . _ -`.
/// The macros check the same rule at compile time with their own copy (a proc-macro crate
/// cannot call the runtime); both copies are tested on the cases of `tests/data/name_cases.rs`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn short_type_name<T>() -> String {
    let mut full = std::any::type_name::<T>();
    // Adapters are named for what they wrap: `PerRecord<app::Upper>` is `Upper`.
    for adapter in [
        "kstreams::processor::PerRecord<",
        "kstreams::processor::SliceOfOne<",
    ] {
        while let Some(inner) = full.strip_prefix(adapter) {
            full = inner.strip_suffix('>').unwrap_or(inner);
        }
    }
    if full.starts_with("kstreams::processor::FlatMap<") {
        return "flat_map".to_owned();
    }
    let base = full.split('<').next().unwrap_or(full);
    let short = base.rsplit("::").next().unwrap_or(base);
    let cleaned: String = short
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "processor".to_owned()
    } else {
        cleaned
    }
}

impl TopologyBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        TopologyBuilder {
            id: BUILDER_IDS.fetch_add(1, Ordering::Relaxed),
            nodes: Vec::new(),
            declared_stores: Vec::new(),
            declared_by: Vec::new(),
            globals: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn unique_name(&self, base: &str) -> String {
        if !self.nodes.iter().any(|n| &*n.name == base) {
            return base.to_owned();
        }
        (2..)
            .map(|i| format!("{base}-{i}"))
            .find(|n| !self.nodes.iter().any(|d| &*d.name == n.as_str()))
            .unwrap_or_else(|| base.to_owned())
    }

    fn check_name(&mut self, name: &str) {
        if !valid_name(name) {
            self.errors
                .push(TopologyError::InvalidName(name.to_owned()));
        } else if self.nodes.iter().any(|n| &*n.name == name) {
            self.errors
                .push(TopologyError::DuplicateName(name.to_owned()));
        }
    }

    fn parent(&mut self, builder: u64, node: usize) -> Option<usize> {
        if builder != self.id || node >= self.nodes.len() {
            self.errors
                .push(TopologyError::ForeignStream(format!("#{node}")));
            None
        } else {
            Some(node)
        }
    }

    fn push(&mut self, mut def: NodeDef, parents: &[usize]) -> usize {
        let index = self.nodes.len();
        def.parents = parents.to_vec();
        for &p in parents {
            self.nodes[p].children.push(index);
        }
        self.nodes.push(def);
        index
    }

    fn stream<K, V>(&self, node: usize) -> Stream<K, V> {
        Stream {
            builder: self.id,
            node,
            _types: PhantomData,
        }
    }

    /// A source reading `topic`, with the default serdes of `K` and `V`.
    pub fn source<K: DefaultSerde + Send, V: DefaultSerde + Send>(
        &mut self,
        topic: &str,
    ) -> Stream<K, V> {
        self.source_with(topic, K::Serde::default(), V::Serde::default())
    }

    /// A source reading `topic` with the given serdes.
    pub fn source_with<K: Send + 'static, V: Send + 'static>(
        &mut self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Stream<K, V> {
        self.source_of(topic, key_serde, value_serde, SourceOptions::new())
    }

    /// A source reading `topic`, with the default serdes of `K` and `V` and `options` (a
    /// timestamp extractor).
    ///
    /// ```
    /// use kstreams::topology::SourceOptions;
    /// use kstreams::{Record, Topology};
    ///
    /// let mut t = Topology::builder();
    /// // Event time from the value: "<millis>,<text>".
    /// let events = t.source_with_options::<String, String>(
    ///     "events",
    ///     SourceOptions::new()
    ///         .timestamp_extractor(|r: &Record<String, String>| r.value.split(',').next()?.parse().ok()),
    /// );
    /// t.sink("out", &events);
    /// # t.build()?;
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn source_with_options<K: DefaultSerde + Send, V: DefaultSerde + Send>(
        &mut self,
        topic: &str,
        options: SourceOptions<K, V>,
    ) -> Stream<K, V> {
        self.source_of(topic, K::Serde::default(), V::Serde::default(), options)
    }

    fn source_of<K: Send + 'static, V: Send + 'static>(
        &mut self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        options: SourceOptions<K, V>,
    ) -> Stream<K, V> {
        self.source_of_role(topic, key_serde, value_serde, options, NodeRole::Plain)
    }

    /// A source, with what it is for.
    pub(crate) fn source_of_role<K: Send + 'static, V: Send + 'static>(
        &mut self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        options: SourceOptions<K, V>,
        role: NodeRole,
    ) -> Stream<K, V> {
        let extractor = options.extractor;
        let name = self.unique_name(&format!("{topic}-source"));
        self.check_name(&name);
        let serdes = Arc::new((key_serde, value_serde));
        let topic_arc: Arc<str> = topic.into();
        let factory: Factory = Arc::new(move |info| {
            Box::new(SourceNode::<K, V> {
                serdes: serdes.clone() as Arc<dyn SourceSerdes<K, V>>,
                extractor: extractor.clone(),
                info,
                keys: Vec::new(),
                values: Vec::new(),
                out: Vec::new(),
            })
        });
        let index = self.push(
            NodeDef {
                name: name.into(),
                kind: NodeKind::Source { topic: topic_arc },
                parents: Vec::new(),
                children: Vec::new(),
                stores: Vec::new(),
                read_only: Arc::from([]),
                factory,
                role,
                retarget: None,
                output: (
                    std::any::type_name::<K>(),
                    std::any::type_name::<V>(),
                    false,
                ),
            },
            &[],
        );
        self.stream(index)
    }

    /// Adds a processor of the records of `input`; its name is the processor's
    /// [`node_name`](BatchProcessor::node_name), or else its type name.
    ///
    /// Each task runs its own clone of `processor`. The stores it declares are added to the
    /// topology.
    pub fn add<K, V, P>(
        &mut self,
        processor: P,
        input: &Stream<K, V>,
    ) -> Stream<P::OutKey, P::OutValue>
    where
        P: BatchProcessor<K, V> + Clone,
        K: 'static,
        V: 'static,
    {
        let base = match processor.node_name() {
            Some(name) => name.to_owned(),
            None => short_type_name::<P>(),
        };
        let name = self.unique_name(&base);
        self.add_named(&name, processor, input)
    }

    /// Adds a processor under an explicit name.
    pub fn add_named<K, V, P>(
        &mut self,
        name: &str,
        processor: P,
        input: &Stream<K, V>,
    ) -> Stream<P::OutKey, P::OutValue>
    where
        P: BatchProcessor<K, V> + Clone,
        K: 'static,
        V: 'static,
    {
        self.add_from(
            name,
            processor,
            &[input.node],
            input.builder,
            NodeRole::Plain,
        )
    }

    /// Adds a processor under an explicit name, with what it is for.
    pub(crate) fn add_with_role<K, V, P>(
        &mut self,
        name: &str,
        processor: P,
        input: &Stream<K, V>,
        role: NodeRole,
    ) -> Stream<P::OutKey, P::OutValue>
    where
        P: BatchProcessor<K, V> + Clone,
        K: 'static,
        V: 'static,
    {
        self.add_from(name, processor, &[input.node], input.builder, role)
    }

    /// A node name not taken yet: `base`, else `base-2`, `base-3`, ...
    pub(crate) fn unique_node_name(&self, base: &str) -> String {
        self.unique_name(base)
    }

    /// Records an error that [`build`](Self::build) returns.
    pub(crate) fn record_error(&mut self, error: TopologyError) {
        self.errors.push(error);
    }

    /// Adds a global table (its store in no task).
    pub(crate) fn add_global(&mut self, global: GlobalDef) {
        if !valid_name(global.spec.name()) {
            self.errors
                .push(TopologyError::InvalidName(global.spec.name().to_owned()));
        }
        self.globals.push(global);
    }

    /// Adds a processor reading the records of several streams of the same types (a merge).
    pub fn add_merged<K, V, P>(
        &mut self,
        name: &str,
        processor: P,
        inputs: &[&Stream<K, V>],
    ) -> Stream<P::OutKey, P::OutValue>
    where
        P: BatchProcessor<K, V> + Clone,
        K: 'static,
        V: 'static,
    {
        let nodes: Vec<usize> = inputs.iter().map(|s| s.node).collect();
        let builder = inputs.first().map_or(self.id, |s| s.builder);
        if inputs.iter().any(|s| s.builder != builder) {
            self.errors
                .push(TopologyError::ForeignStream(name.to_owned()));
        }
        self.add_from(name, processor, &nodes, builder, NodeRole::Plain)
    }

    fn add_from<K, V, P>(
        &mut self,
        name: &str,
        processor: P,
        parents: &[usize],
        builder: u64,
        role: NodeRole,
    ) -> Stream<P::OutKey, P::OutValue>
    where
        P: BatchProcessor<K, V> + Clone,
        K: 'static,
        V: 'static,
    {
        self.check_name(name);
        let mut checked = Vec::new();
        for &p in parents {
            if let Some(p) = self.parent(builder, p) {
                checked.push(p);
            }
        }
        let specs = processor.stores();
        let mut stores = Vec::new();
        for spec in &specs {
            stores.push(Arc::<str>::from(spec.name()));
            self.declare(spec.clone(), format!("processor `{name}`"));
        }
        // Read-only: declared so every time it is listed.
        let mut read_only: Vec<Arc<str>> = Vec::new();
        for spec in &specs {
            if specs
                .iter()
                .filter(|s| s.name() == spec.name())
                .all(StoreSpec::is_read_only)
                && !read_only.iter().any(|n| &**n == spec.name())
            {
                read_only.push(spec.name().into());
            }
        }
        let read_only: Arc<[Arc<str>]> = read_only.into();
        let node_read_only = read_only.clone();
        let declared: Arc<[StoreSpec]> = specs.into();
        let prototype = Arc::new(Mutex::new(processor));
        let factory: Factory = Arc::new(move |mut info: NodeInfo| {
            info.stores.set_read_only(node_read_only.clone());
            let processor = match prototype.lock() {
                Ok(p) => p.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            Box::new(ProcessorNode::<P, K, V> {
                processor,
                declared: declared.clone(),
                info,
                out: Outputs::default(),
                _types: PhantomData,
            })
        });
        let unit = TypeId::of::<(P::OutKey, P::OutValue)>() == TypeId::of::<((), ())>();
        let index = self.push(
            NodeDef {
                name: name.into(),
                kind: NodeKind::Processor,
                parents: Vec::new(),
                children: Vec::new(),
                stores,
                read_only,
                factory,
                role,
                retarget: None,
                output: (
                    std::any::type_name::<P::OutKey>(),
                    std::any::type_name::<P::OutValue>(),
                    unit,
                ),
            },
            &checked,
        );
        self.stream(index)
    }

    /// Declares a store explicitly (processors declare theirs by themselves; a store declared here
    /// must be used by some processor).
    pub fn store(&mut self, spec: StoreSpec) -> &mut Self {
        self.declare(spec, "`TopologyBuilder::store`".to_owned());
        self
    }

    fn declare(&mut self, spec: StoreSpec, by: String) {
        // The topology's declaration; who reads or writes it is each node's.
        let spec = spec.without_access();
        if !valid_name(spec.name()) {
            self.errors
                .push(TopologyError::InvalidName(spec.name().to_owned()));
        }
        if let Some(i) = self
            .declared_stores
            .iter()
            .position(|s| s.name() == spec.name())
        {
            let existing = &self.declared_stores[i];
            if existing.same_as(&spec) {
                return;
            }
            // A table's store, declared by a processor that reads it as its handle's plain
            // spec: the table's declaration (its topic as changelog) stands.
            match (existing.source_changelog(), spec.source_changelog()) {
                (Some(topic), None)
                    if existing.same_as(&spec.clone().changelog_from_source(topic)) => {}
                (None, Some(topic))
                    if spec.same_as(&existing.clone().changelog_from_source(topic)) =>
                {
                    self.declared_stores[i] = spec;
                    self.declared_by[i] = by;
                }
                _ => self
                    .errors
                    .push(store_conflict(existing, &self.declared_by[i], &spec, &by)),
            }
        } else {
            self.declared_stores.push(spec);
            self.declared_by.push(by);
        }
    }

    /// Writes the records of `input` to `topic`, with the default serdes of `K` and `V`.
    pub fn sink<K: DefaultSerde, V: DefaultSerde>(&mut self, topic: &str, input: &Stream<K, V>) {
        self.sink_with(topic, input, K::Serde::default(), V::Serde::default());
    }

    /// Writes the records of `input` to `topic` with the given serdes.
    pub fn sink_with<K: 'static, V: 'static>(
        &mut self,
        topic: &str,
        input: &Stream<K, V>,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) {
        let name = self.unique_name(&format!("{topic}-sink"));
        self.sink_of_role(&name, topic, input, key_serde, value_serde, NodeRole::Plain);
    }

    fn sink_of_role<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        topic: &str,
        input: &Stream<K, V>,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        role: NodeRole,
    ) {
        self.check_name(name);
        let Some(parent) = self.parent(input.builder, input.node) else {
            return;
        };
        let serdes = Arc::new((key_serde, value_serde));
        let topic_arc: Arc<str> = topic.into();
        let retarget: SinkFactory = Arc::new(move |t: Arc<str>| -> Factory {
            let serdes = serdes.clone();
            Arc::new(move |info| {
                Box::new(SinkNode::<K, V> {
                    topic: t.clone(),
                    serdes: serdes.clone() as Arc<dyn SourceSerdes<K, V>>,
                    info,
                    keys: Vec::new(),
                    values: Vec::new(),
                })
            })
        });
        let factory = retarget(topic_arc.clone());
        self.push(
            NodeDef {
                name: name.into(),
                kind: NodeKind::Sink { topic: topic_arc },
                parents: Vec::new(),
                children: Vec::new(),
                stores: Vec::new(),
                read_only: Arc::from([]),
                factory,
                role,
                retarget: Some(retarget),
                output: (std::any::type_name::<K>(), std::any::type_name::<V>(), true),
            },
            &[parent],
        );
    }

    /// One stream of the records of several streams of the same types (Kafka Streams'
    /// `merge`): each batch a parent forwards goes on as it is. Streams of different
    /// sub-topologies merged become one sub-topology, so their source topics must be
    /// co-partitioned.
    ///
    /// ```
    /// use kstreams::Topology;
    /// let mut t = Topology::builder();
    /// let a = t.source::<String, String>("a");
    /// let b = t.source::<String, String>("b");
    /// let both = t.merge(&[&a, &b]);
    /// t.sink("out", &both);
    /// assert!(t.build()?.describe().contains("Merge: merge"));
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn merge<K: 'static, V: 'static>(&mut self, inputs: &[&Stream<K, V>]) -> Stream<K, V> {
        let name = self.unique_name("merge");
        self.check_name(&name);
        let mut parents = Vec::new();
        for s in inputs {
            if let Some(p) = self.parent(s.builder, s.node)
                && !parents.contains(&p)
            {
                parents.push(p);
            }
        }
        let factory: Factory = Arc::new(|info| Box::new(PassNode { info }));
        let index = self.push(
            NodeDef {
                name: name.into(),
                kind: NodeKind::Processor,
                parents: Vec::new(),
                children: Vec::new(),
                stores: Vec::new(),
                read_only: Arc::from([]),
                factory,
                role: NodeRole::Merge,
                retarget: None,
                output: (
                    std::any::type_name::<K>(),
                    std::any::type_name::<V>(),
                    false,
                ),
            },
            &parents,
        );
        self.stream(index)
    }

    /// Sends the records of `input` through the internal topic
    /// `<application id>-<name>-repartition` (with the default serdes of `K` and `V`), so that
    /// they are partitioned by their key (Kafka Streams' `repartition`): a sink ends the
    /// sub-topology of `input` and a source of the topic starts another, whose stream this
    /// returns. Use it after changing the key, before a join or an aggregation by the new key.
    ///
    /// The runtime creates the topic; its partition count is that of the other topics the
    /// reading sub-topology reads (co-partitioned with them), else that of the topics upstream
    /// of it ([`Topology::repartition_partitions`]). A topology as built names it
    /// `<name>-repartition`; [`Topology::resolve`] prefixes it with the application id.
    ///
    /// ```
    /// use kstreams::{processor, Record, Topology};
    /// let mut t = Topology::builder();
    /// let lines = t.source::<String, String>("lines");
    /// let by_word = t.add(
    ///     processor::map(|r: &Record<String, String>| r.derive(r.value.clone(), 1u64)),
    ///     &lines,
    /// );
    /// let words = t.repartition(&by_word, "words");
    /// t.sink("out", &words);
    /// let topology = t.build()?.resolve("wordcount");
    /// assert_eq!(topology.repartition_topics()[0].topic.as_ref(), "wordcount-words-repartition");
    /// assert_eq!(topology.subtopologies().len(), 2);
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn repartition<K, V>(&mut self, input: &Stream<K, V>, name: &str) -> Stream<K, V>
    where
        K: DefaultSerde + Send,
        V: DefaultSerde + Send,
    {
        if !valid_name(name) {
            self.errors
                .push(TopologyError::InvalidName(name.to_owned()));
        }
        let topic = repartition_topic(name);
        let role_name: Arc<str> = name.into();
        let sink = self.unique_name(&format!("{topic}-sink"));
        self.sink_of_role(
            &sink,
            &topic,
            input,
            K::Serde::default(),
            V::Serde::default(),
            NodeRole::RepartitionSink {
                name: role_name.clone(),
            },
        );
        self.source_of_role(
            &topic,
            K::Serde::default(),
            V::Serde::default(),
            SourceOptions::new(),
            NodeRole::RepartitionSource { name: role_name },
        )
    }

    /// Validates the graph and builds the topology.
    pub fn build(mut self) -> Result<Topology, TopologyError> {
        if let Some(e) = self.errors.drain(..).next() {
            return Err(e);
        }
        let mut nodes = self.nodes;
        let mut source_topics = BTreeSet::new();
        let mut has_source = false;
        for n in &nodes {
            if let NodeKind::Source { topic } = &n.kind {
                has_source = true;
                if !source_topics.insert(topic.clone()) {
                    return Err(TopologyError::DuplicateSourceTopic(topic.to_string()));
                }
            }
        }
        // A global table's topic is read by no task, and its store is in none.
        let mut global_stores = BTreeSet::new();
        for g in &self.globals {
            // Processors that declare the global table's store (a table of the name is
            // reported below): read-only, they read it from the instance's global stores, so it
            // leaves their task's stores; read-write, they are refused.
            let name = g.spec.name();
            let mut read = false;
            for n in nodes.iter_mut().filter(|n| {
                !matches!(n.role, NodeRole::Table { .. }) && n.stores.iter().any(|s| **s == *name)
            }) {
                if !n.read_only.iter().any(|r| **r == *name) {
                    return Err(TopologyError::GlobalStoreWritten {
                        processor: n.name.to_string(),
                        store: name.to_owned(),
                        topic: g.topic.to_string(),
                    });
                }
                n.stores.retain(|s| **s != *name);
                read = true;
            }
            if read && let Some(i) = self.declared_stores.iter().position(|s| s.name() == name) {
                // The readers' declaration is the handle's; the global table's has its topic.
                let declared = &self.declared_stores[i];
                if !g
                    .spec
                    .same_as(&declared.clone().changelog_from_source(&g.topic))
                {
                    return Err(store_conflict(
                        &g.spec,
                        &format!("the global table of topic `{}`", g.topic),
                        declared,
                        &self.declared_by[i],
                    ));
                }
                self.declared_stores.remove(i);
                self.declared_by.remove(i);
            }
            if !source_topics.insert(g.topic.clone()) {
                return Err(TopologyError::DuplicateSourceTopic(g.topic.to_string()));
            }
            if !global_stores.insert(g.spec.name().to_owned())
                || self
                    .declared_stores
                    .iter()
                    .any(|s| s.name() == g.spec.name())
            {
                return Err(TopologyError::InvalidTable {
                    topic: g.topic.to_string(),
                    store: g.spec.name().to_owned(),
                    reason: "another store has its name: a global store is one per instance, \
                             in no task, so its name must be its own"
                        .to_owned(),
                });
            }
        }
        if !has_source && self.globals.is_empty() {
            return Err(TopologyError::NoSource);
        }
        // No cycle is possible: a node's parents are streams that exist before it, so parents
        // always precede children.
        for n in &nodes {
            if matches!(n.kind, NodeKind::Sink { .. }) && !n.children.is_empty() {
                return Err(TopologyError::SinkWithChildren(n.name.to_string()));
            }
            if !matches!(n.kind, NodeKind::Source { .. }) && n.parents.is_empty() {
                return Err(TopologyError::Unreachable(n.name.to_string()));
            }
            // A table's changes may go nowhere: the table is read through its store.
            if matches!(n.kind, NodeKind::Processor)
                && n.children.is_empty()
                && !n.output.2
                && !matches!(n.role, NodeRole::Table { .. })
            {
                return Err(TopologyError::OutputConnectedNowhere {
                    name: n.name.to_string(),
                    key: n.output.0,
                    value: n.output.1,
                });
            }
        }
        for spec in &self.declared_stores {
            if !nodes
                .iter()
                .any(|n| n.stores.iter().any(|s| &**s == spec.name()))
            {
                return Err(TopologyError::UnusedStore(spec.name().to_owned()));
            }
        }
        check_table_writers(&nodes, &self.declared_stores)?;
        let global_specs: Vec<StoreSpec> = self.globals.iter().map(|g| g.spec.clone()).collect();
        check_init(&nodes, &global_specs)?;
        let subtopologies = split(&nodes);
        Ok(Topology {
            inner: Arc::new(Inner {
                nodes,
                stores: self.declared_stores,
                subtopologies,
                globals: self.globals,
                application_id: None,
            }),
        })
    }
}

/// Only a table writes its store: the store's changelog is the table's topic, so what another
/// processor wrote would be logged nowhere and undone by the next restore. The writer is the
/// processor the topic feeds (a table's materializer, or a hand-written one reading the topic's
/// source); every other processor that declares the store must declare it read-only.
fn check_table_writers(nodes: &[NodeDef], stores: &[StoreSpec]) -> Result<(), TopologyError> {
    for n in nodes {
        for store in &n.stores {
            let Some(topic) = stores
                .iter()
                .find(|s| s.name() == &**store)
                .and_then(StoreSpec::source_changelog)
            else {
                continue;
            };
            let materializer = matches!(&n.role, NodeRole::Table { store: s, .. } if s == store)
                || n.parents.iter().any(
                    |&p| matches!(&nodes[p].kind, NodeKind::Source { topic: t } if **t == *topic),
                );
            if !materializer && !n.read_only.iter().any(|r| r == store) {
                return Err(TopologyError::TableStoreWritten {
                    processor: n.name.to_string(),
                    store: store.to_string(),
                    topic: topic.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Runs each processor's `init` once, on a fresh copy, so that what it checks (the stores it
/// requires, its punctuation intervals) fails here and not when a task starts. The copy is
/// dropped; tasks run `init` again on their own instances.
fn check_init(nodes: &[NodeDef], globals: &[StoreSpec]) -> Result<(), TopologyError> {
    for n in nodes {
        if !matches!(n.kind, NodeKind::Processor) {
            continue;
        }
        let mut node = (n.factory)(NodeInfo {
            name: n.name.clone(),
            children: Vec::new(),
            child_names: Vec::new(),
            stores: NodeStores::default(),
        });
        if let Err(e) = init_node(node.as_mut(), &n.name, 0, globals) {
            return Err(TopologyError::Init {
                node: n.name.to_string(),
                message: e.to_string(),
            });
        }
    }
    Ok(())
}

/// A type name without its module paths: `Vec<alloc::string::String>` → `Vec<String>`.
fn without_paths(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    // Where the path segment being written starts in `out`.
    let mut segment = 0;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.truncate(segment);
        } else {
            out.push(c);
            if !(c.is_alphanumeric() || c == '_') {
                segment = out.len();
            }
        }
    }
    out
}

/// A declaration in words: "`K` → `V` on LMDB, with a changelog".
pub(crate) fn describe_store(spec: &StoreSpec) -> String {
    let (key, value) = spec.type_names();
    let (key, value) = (without_paths(key), without_paths(value));
    let kind = match spec.kind() {
        crate::store::StoreKind::KeyValue => String::new(),
        crate::store::StoreKind::Window {
            size_ms,
            retention_ms,
        } => format!("windows of {size_ms} ms kept {retention_ms} ms, "),
        crate::store::StoreKind::Session { retention_ms } => {
            format!("sessions kept {retention_ms} ms, ")
        }
        crate::store::StoreKind::Versioned { history_ms } => {
            format!("versions kept {history_ms} ms, ")
        }
    };
    format!(
        "{kind}`{key}` → `{value}` on {}, {}",
        match spec.get_backend() {
            crate::store::Backend::Lmdb => "LMDB",
            crate::store::Backend::InMemory => "the in-memory backend",
        },
        match spec.source_changelog() {
            Some(topic) => format!("with its source topic `{topic}` as changelog"),
            None if spec.changelog_enabled() => "with a changelog".to_owned(),
            None => "without a changelog".to_owned(),
        }
    )
}

/// Two declarations of one store that differ, in a sentence.
fn store_conflict(
    first: &StoreSpec,
    first_by: &str,
    second: &StoreSpec,
    second_by: &str,
) -> TopologyError {
    let (k1, v1) = first.type_names();
    let (k2, v2) = second.type_names();
    let mut differ = Vec::new();
    if k1 != k2 {
        differ.push("key types");
    }
    if v1 != v2 {
        differ.push("value types");
    }
    if first.get_backend() != second.get_backend() {
        differ.push("backends");
    }
    if first.changelog_enabled() != second.changelog_enabled() {
        differ.push("changelog");
    }
    if first.kind() != second.kind() {
        differ.push("kinds (key-value, window or session; size; retention)");
    }
    if first.source_changelog() != second.source_changelog() {
        differ.push("source topics (a table's store is materialized from one topic)");
    }
    if differ.is_empty() {
        // Same type names, different types (two types of one name in different crates).
        differ.push("types of the same name");
    }
    TopologyError::StoreConflict {
        name: first.name().to_owned(),
        first: format!("by {first_by} as {}", describe_store(first)),
        second: format!("by {second_by} as {}", describe_store(second)),
        differ: differ.join(", "),
    }
}

/// Connected components: nodes linked by an edge or by a shared store run in one task.
fn split(nodes: &[NodeDef]) -> Vec<SubTopology> {
    let mut parent: Vec<usize> = (0..nodes.len()).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let union = |parent: &mut Vec<usize>, a: usize, b: usize| {
        let (ra, rb) = (find(parent, a), find(parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    };
    for (i, n) in nodes.iter().enumerate() {
        for &c in &n.children {
            union(&mut parent, i, c);
        }
    }
    let mut store_owner: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for s in &n.stores {
            if let Some(&j) = store_owner.get(&**s) {
                union(&mut parent, i, j);
            } else {
                store_owner.insert(s, i);
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..nodes.len() {
        let root = find(&mut parent, i);
        groups.entry(root).or_default().push(i);
    }
    groups
        .into_values()
        .enumerate()
        .map(|(id, members)| {
            let mut source_topics = Vec::new();
            let mut sink_topics = Vec::new();
            let mut stores: Vec<Arc<str>> = Vec::new();
            for &m in &members {
                match &nodes[m].kind {
                    NodeKind::Source { topic } => source_topics.push(topic.clone()),
                    NodeKind::Sink { topic } => sink_topics.push(topic.clone()),
                    NodeKind::Processor => {}
                }
                for s in &nodes[m].stores {
                    if !stores.contains(s) {
                        stores.push(s.clone());
                    }
                }
            }
            SubTopology {
                id,
                nodes: members,
                source_topics,
                sink_topics,
                stores,
            }
        })
        .collect()
}

impl Topology {
    /// A new builder.
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::new()
    }

    pub(crate) fn nodes(&self) -> &[NodeDef] {
        &self.inner.nodes
    }

    /// The sub-topologies; each runs as one task per input partition.
    pub fn subtopologies(&self) -> &[SubTopology] {
        &self.inner.subtopologies
    }

    /// Every store of the topology.
    pub fn stores(&self) -> &[StoreSpec] {
        &self.inner.stores
    }

    /// Every topic a source reads.
    pub fn source_topics(&self) -> Vec<Arc<str>> {
        self.subtopologies()
            .iter()
            .flat_map(|s| s.source_topics.iter().cloned())
            .collect()
    }

    /// Every topic a sink writes.
    pub fn sink_topics(&self) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self
            .subtopologies()
            .iter()
            .flat_map(|s| s.sink_topics.iter().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The `(key, value)` type names (`std::any::type_name`) of each sink writing `topic`
    /// (`source == false`) or of the source reading it (`source == true`).
    pub(crate) fn topic_types(
        &self,
        topic: &str,
        source: bool,
    ) -> Vec<(&'static str, &'static str)> {
        let mut types: Vec<(&'static str, &'static str)> = Vec::new();
        for n in self.nodes() {
            let here = match &n.kind {
                NodeKind::Source { topic: t } => source && &**t == topic,
                NodeKind::Sink { topic: t } => !source && &**t == topic,
                NodeKind::Processor => false,
            };
            if !here {
                continue;
            }
            types.push((n.output.0, n.output.1));
            // A table's topic holds values, or nulls (`None`).
            if let NodeRole::TableSource { value_type, .. } = &n.role {
                types.push((n.output.0, value_type));
            }
        }
        if source {
            for g in self.globals().iter().filter(|g| &*g.topic == topic) {
                types.extend(g.types);
            }
        }
        types
    }

    /// The global tables ([`TopologyBuilder::global_table`]): each one's topic and store, in
    /// the order they were added. The instance's global `StateStores` holds these stores in
    /// this order; no task reads their topics.
    pub fn global_tables(&self) -> Vec<(Arc<str>, StoreSpec)> {
        self.inner
            .globals
            .iter()
            .map(|g| (g.topic.clone(), g.spec.clone()))
            .collect()
    }

    /// The global tables' stores, in [`global_tables`](Self::global_tables)' order.
    pub fn global_stores(&self) -> Vec<StoreSpec> {
        self.inner.globals.iter().map(|g| g.spec.clone()).collect()
    }

    pub(crate) fn globals(&self) -> &[GlobalDef] {
        &self.inner.globals
    }

    /// The repartition topics ([`TopologyBuilder::repartition`]), in the order they were added.
    pub fn repartition_topics(&self) -> Vec<RepartitionTopic> {
        self.nodes()
            .iter()
            .filter_map(|n| match (&n.role, &n.kind) {
                (NodeRole::RepartitionSource { name }, NodeKind::Source { topic }) => {
                    Some(RepartitionTopic {
                        name: name.clone(),
                        topic: topic.clone(),
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// Whether `topic` is one of the topology's repartition topics.
    pub fn is_repartition_topic(&self, topic: &str) -> bool {
        self.repartition_topics().iter().any(|r| &*r.topic == topic)
    }

    /// The partition count of the repartition topic `topic`, given the partition counts of
    /// the other topics (`partitions_of`; `None` for a repartition topic: work it out): that of
    /// the other topics its reading sub-topology reads (it must be co-partitioned with them),
    /// else the largest of the topics its writing sub-topology reads (Kafka Streams' rule).
    /// Repartition topics feeding each other are followed. `None` when `topic` is not a
    /// repartition topic or no count is known.
    pub fn repartition_partitions(
        &self,
        topic: &str,
        partitions_of: &dyn Fn(&str) -> Option<i32>,
    ) -> Option<i32> {
        self.repartition_partitions_within(topic, partitions_of, &mut Vec::new())
    }

    fn repartition_partitions_within(
        &self,
        topic: &str,
        partitions_of: &dyn Fn(&str) -> Option<i32>,
        seen: &mut Vec<String>,
    ) -> Option<i32> {
        if !self.is_repartition_topic(topic) || seen.iter().any(|t| t == topic) {
            return None;
        }
        seen.push(topic.to_owned());
        let mut count = |topics: &mut dyn Iterator<Item = &Arc<str>>| {
            topics
                .filter_map(|t| {
                    partitions_of(t)
                        .or_else(|| self.repartition_partitions_within(t, partitions_of, seen))
                })
                .max()
        };
        let group = self
            .subtopology_of(topic)
            .and_then(|s| count(&mut s.source_topics.iter().filter(|t| ***t != *topic)));
        let found = group.or_else(|| {
            self.subtopologies()
                .iter()
                .filter(|s| s.sink_topics.iter().any(|t| &**t == topic))
                .filter_map(|s| count(&mut s.source_topics.iter()))
                .max()
        });
        seen.pop();
        found
    }

    /// The application id the internal topics are named for, once [`resolve`](Self::resolve)d.
    pub fn application_id(&self) -> Option<&str> {
        self.inner.application_id.as_deref()
    }

    /// The same topology with its internal topics named for `application_id`: a repartition
    /// topic `<name>-repartition` becomes `<application id>-<name>-repartition`. The Kafka
    /// runtime and the test driver run resolved topologies; resolving again, for any id, starts
    /// from the names as built.
    pub fn resolve(&self, application_id: &str) -> Topology {
        if self.application_id() == Some(application_id) {
            return self.clone();
        }
        let mut renamed: BTreeMap<Arc<str>, Arc<str>> = BTreeMap::new();
        let mut nodes = self.inner.nodes.clone();
        for n in &mut nodes {
            let name = match &n.role {
                NodeRole::RepartitionSink { name } | NodeRole::RepartitionSource { name } => {
                    name.clone()
                }
                _ => continue,
            };
            let topic: Arc<str> = format!("{application_id}-{}", repartition_topic(&name)).into();
            match &mut n.kind {
                NodeKind::Source { topic: t } => {
                    renamed.insert(t.clone(), topic.clone());
                    *t = topic;
                }
                NodeKind::Sink { topic: t } => {
                    renamed.insert(t.clone(), topic.clone());
                    if let Some(retarget) = &n.retarget {
                        n.factory = retarget(topic.clone());
                    }
                    *t = topic;
                }
                NodeKind::Processor => {}
            }
        }
        let rename = |t: &mut Arc<str>| {
            if let Some(new) = renamed.get(t) {
                *t = new.clone();
            }
        };
        let mut subtopologies = self.inner.subtopologies.clone();
        for s in &mut subtopologies {
            s.source_topics.iter_mut().for_each(rename);
            s.sink_topics.iter_mut().for_each(rename);
        }
        Topology {
            inner: Arc::new(Inner {
                nodes,
                stores: self.inner.stores.clone(),
                subtopologies,
                globals: self.inner.globals.clone(),
                application_id: Some(application_id.into()),
            }),
        }
    }

    /// The sub-topology that reads `topic`.
    pub fn subtopology_of(&self, topic: &str) -> Option<&SubTopology> {
        self.subtopologies()
            .iter()
            .find(|s| s.source_topics.iter().any(|t| &**t == topic))
    }

    /// The topology as text, in the spirit of Kafka Streams' `TopologyDescription`; a store a
    /// processor only reads (a table's, taken by `&`) is marked `(read-only)`.
    pub fn describe(&self) -> String {
        let mut out = String::from("Topology\n");
        let nodes = self.nodes();
        for sub in self.subtopologies() {
            let _ = writeln!(out, "  Sub-topology {}", sub.id);
            for &i in &sub.nodes {
                let n = &nodes[i];
                let _ = match (&n.kind, &n.role) {
                    (NodeKind::Source { topic }, NodeRole::TableSource { store, .. }) => writeln!(
                        out,
                        "    Source: {} (topic: {topic}, table: {store})",
                        n.name
                    ),
                    (NodeKind::Source { topic }, NodeRole::RepartitionSource { .. }) => {
                        writeln!(out, "    Source: {} (topic: {topic}, repartition)", n.name)
                    }
                    (NodeKind::Source { topic }, _) => {
                        writeln!(out, "    Source: {} (topic: {topic})", n.name)
                    }
                    (NodeKind::Processor, NodeRole::Merge) => {
                        writeln!(out, "    Merge: {}", n.name)
                    }
                    (NodeKind::Sink { topic }, NodeRole::RepartitionSink { .. }) => {
                        writeln!(out, "    Sink: {} (topic: {topic}, repartition)", n.name)
                    }
                    (NodeKind::Processor, NodeRole::Table { topic, store }) => writeln!(
                        out,
                        "    Table: {} (topic: {topic}, store: {store})",
                        n.name
                    ),
                    (NodeKind::Processor, _) => {
                        let stores: Vec<String> = n
                            .stores
                            .iter()
                            .map(|s| {
                                if n.read_only.contains(s) {
                                    format!("{s} (read-only)")
                                } else {
                                    s.to_string()
                                }
                            })
                            .collect();
                        writeln!(
                            out,
                            "    Processor: {} (stores: [{}])",
                            n.name,
                            stores.join(", ")
                        )
                    }
                    (NodeKind::Sink { topic }, _) => {
                        writeln!(out, "    Sink: {} (topic: {topic})", n.name)
                    }
                };
                if !n.children.is_empty() {
                    let c: Vec<&str> = n.children.iter().map(|&c| &*nodes[c].name).collect();
                    let _ = writeln!(out, "      --> {}", c.join(", "));
                }
                if !n.parents.is_empty() {
                    let p: Vec<&str> = n.parents.iter().map(|&p| &*nodes[p].name).collect();
                    let _ = writeln!(out, "      <-- {}", p.join(", "));
                }
            }
        }
        for g in self.globals() {
            let _ = writeln!(
                out,
                "  Global table: {} (topic: {}, store: {})",
                g.spec.name(),
                g.topic,
                g.spec.name()
            );
        }
        out
    }

    /// The topology as a Mermaid flowchart: topics as stadiums, processors as boxes, stores as
    /// cylinders (an arrow from a store a processor only reads, both ways to one it writes).
    pub fn describe_mermaid(&self) -> String {
        fn id(prefix: &str, name: &str) -> String {
            let clean: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            format!("{prefix}_{clean}")
        }
        let nodes = self.nodes();
        let mut out = String::from("flowchart LR\n");
        for sub in self.subtopologies() {
            let _ = writeln!(out, "  subgraph sub{}[\"Sub-topology {}\"]", sub.id, sub.id);
            for &i in &sub.nodes {
                let n = &nodes[i];
                match &n.kind {
                    NodeKind::Source { topic } => {
                        let shown = match &n.role {
                            NodeRole::RepartitionSource { .. } => format!("repartition {topic}"),
                            NodeRole::TableSource { .. } => format!("table topic {topic}"),
                            _ => topic.to_string(),
                        };
                        let _ = writeln!(out, "    {}([\"{shown}\"])", id("topic", topic));
                        let _ = writeln!(out, "    {}[\"{}\"]", id("node", &n.name), n.name);
                        let _ = writeln!(
                            out,
                            "    {} --> {}",
                            id("topic", topic),
                            id("node", &n.name)
                        );
                    }
                    NodeKind::Processor => {
                        let label = match &n.role {
                            NodeRole::Table { .. } => format!("table {}", n.name),
                            _ => n.name.to_string(),
                        };
                        let _ = writeln!(out, "    {}[\"{label}\"]", id("node", &n.name));
                        for s in &n.stores {
                            let _ = writeln!(out, "    {}[(\"{s}\")]", id("store", s));
                            // A store the node only reads points at it; one it writes, both ways.
                            let (node, store) = (id("node", &n.name), id("store", s));
                            let _ = if n.read_only.contains(s) {
                                writeln!(out, "    {store} -.-> {node}")
                            } else {
                                writeln!(out, "    {node} <-.-> {store}")
                            };
                        }
                    }
                    NodeKind::Sink { topic } => {
                        let _ = writeln!(out, "    {}[\"{}\"]", id("node", &n.name), n.name);
                        // A repartition topic is one node, drawn in the sub-topology whose
                        // source reads it: the sink only points at it.
                        let to = match &n.role {
                            NodeRole::RepartitionSink { .. } => id("topic", topic),
                            _ => {
                                let to = id("out", topic);
                                let _ = writeln!(out, "    {to}([\"{topic}\"])");
                                to
                            }
                        };
                        let _ = writeln!(out, "    {} --> {to}", id("node", &n.name));
                    }
                }
                for &c in &n.children {
                    let _ = writeln!(
                        out,
                        "    {} --> {}",
                        id("node", &n.name),
                        id("node", &nodes[c].name)
                    );
                }
            }
            out.push_str("  end\n");
        }
        if !self.globals().is_empty() {
            out.push_str("  subgraph globals[\"Global tables\"]\n");
            for g in self.globals() {
                let _ = writeln!(
                    out,
                    "    {}([\"global table topic {}\"])",
                    id("global", &g.topic),
                    g.topic
                );
                let _ = writeln!(
                    out,
                    "    {}[(\"{}\")]",
                    id("store", g.spec.name()),
                    g.spec.name()
                );
                let _ = writeln!(
                    out,
                    "    {} --> {}",
                    id("global", &g.topic),
                    id("store", g.spec.name())
                );
            }
            out.push_str("  end\n");
        }
        out
    }
}

/// Checking policies against a topology lives here, so that [`policy`](crate::policy) stays a
/// leaf that knows no topology.
impl ErrorPolicies {
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
        if let Some(s) = topology.stores().iter().find(|s| s.dead_letters_late())
            && self.dead_letter_topics().is_empty()
        {
            return Err(late_without_dead_letter_topic(s.name()));
        }
        Ok(())
    }
}

/// A windowed store dead-letters its late records, and the application has no dead-letter
/// topic (checked by [`ErrorPolicies::validate`] and again when a task is made).
pub(crate) fn late_without_dead_letter_topic(store: &str) -> Error {
    Error::Config(format!(
        "store `{store}` dead-letters its late records (`on_late = dead_letter`), but the \
         application has no dead-letter topic: set one with `OnBadRecord::DeadLetter` (e.g. \
         `on_processing_error(OnBadRecord::DeadLetter {{ topic }})`)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    include!("../tests/data/name_cases.rs");

    /// The same cases as the macros' copy (`kstreams-macros/src/valid.rs`), from one file.
    #[test]
    fn names_follow_the_shared_rule() {
        let cases = name_cases();
        assert!(cases.len() >= 8, "{cases:?}");
        for (name, ok) in cases {
            assert_eq!(valid_name(&name), ok, "{name:?}");
        }
    }
    use crate::store::Backend;

    #[test]
    fn a_store_conflict_names_both_declarations_in_a_sentence() {
        let first = StoreSpec::new::<String, u64>("totals");
        let second = StoreSpec::new::<String, i64>("totals")
            .backend(Backend::InMemory)
            .changelog(false);
        let err = store_conflict(&first, "processor `add-up`", &second, "processor `report`");
        assert_eq!(
            err.to_string(),
            "store `totals` is declared twice, differently (value types, backends, changelog): \
             by processor `add-up` as `String` → `u64` on LMDB, with a changelog, \
             and by processor `report` as `String` → `i64` on the in-memory \
             backend, without a changelog; declare it once, with one `#[kstreams::store]` type \
             used by both"
        );

        assert_eq!(
            without_paths("core::option::Option<(alloc::vec::Vec<u8>, my_app::Totals)>"),
            "Option<(Vec<u8>, Totals)>"
        );

        // Through the builder: the explicit declaration is named too.
        let mut t = Topology::builder();
        t.store(StoreSpec::new::<u64, u64>("totals"));
        t.store(first);
        let err = t.build().map(|_| ()).expect_err("a conflict");
        assert!(
            matches!(&err, TopologyError::StoreConflict { differ, first, .. }
                if differ == "key types" && first.starts_with("by `TopologyBuilder::store` as `u64`")),
            "{err}"
        );
    }

    #[test]
    fn a_store_conflict_of_kinds_alone_says_so() -> crate::Result<()> {
        let kv = StoreSpec::new::<String, u64>("counts");
        let windows = StoreSpec::new::<String, u64>("counts").windowed(
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(120),
        )?;
        let err = store_conflict(&kv, "processor `a`", &windows, "processor `b`");
        assert_eq!(
            err.to_string(),
            "store `counts` is declared twice, differently (kinds (key-value, window or session; \
             size; retention)): by processor `a` as `String` → `u64` on LMDB, with a changelog, \
             and by processor `b` as windows of 60000 ms kept 120000 ms, `String` → `u64` on \
             LMDB, with a changelog; declare it once, with one `#[kstreams::store]` type used by \
             both"
        );
        Ok(())
    }
}
