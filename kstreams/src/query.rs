//! Interactive queries, local: read a running app's stores from any thread (issue #16 §1).
//!
//! Owns: [`Queries`] (from [`App::queries`](crate::kafka::App::queries)), the typed query handles
//! [`StoreQuery`] and [`WindowQuery`], [`QueryError`], and the registry the processing threads
//! keep up to date: for every task of this instance, whether it is being restored (with its
//! stores' lags) or running (with a [`StoreReader`] of its stores). May not touch: the tasks, their
//! stores' writes, the consumer; it only reads through [`StoreReader`]s the engine hands it.
//!
//! A key's task: the key is serialized with the store's key serde and mapped to a partition by
//! [`partition_for_key`] (Java's default partitioner) over the partition count of the store's
//! sub-topology (its input topics'), so the input must be keyed (and partitioned by the default
//! partitioner) by the store's key, as for any aggregation. A global table's store has no
//! task: every instance holds all of it (the global state), so it answers every key here, with
//! [`GLOBAL_PARTITION`] as its partition, [`QueryError::Restoring`] while the global tables
//! restore at start-up, and never [`QueryError::NotHere`].
//!
//! What an answer is: one LMDB read transaction of one task, so the state after some whole batch
//! of that task (never part of a batch), and later answers never go back to an earlier batch of
//! the same task while it runs here. A query never waits for processing, and processing never
//! waits for a query (see [`StoreReader`]; in-memory stores are the exception: their reads and
//! writes take turns). [`StoreQuery::range`] and [`StoreQuery::all`] read each local task once,
//! each at its own batch.
//!
//! Exactly-once: a task's batch commits to LMDB when it is processed, before the Kafka
//! transaction that holds its outputs and input offsets commits (every `commit_interval`). So an
//! answer may reflect input whose transaction is later aborted; after an abort the engine wipes
//! or rewinds that state (the trust rule) and restores it, and the store answers
//! [`QueryError::Restoring`] meanwhile. [`Queries::read_committed`] answers instead from the
//! LMDB snapshot each task pins right after each Kafka commit: the state of exactly the committed
//! input (so up to a commit interval behind), never of an open or aborted transaction
//! (`docs/queries.md`).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{Error, Part, Result};
use crate::partitioner::partition_for_key;
use crate::store::{StoreHandle, StoreKind, StoreReader, StoreSpec};
use crate::task::TaskId;
use crate::topology::Topology;

/// Where an instance answers queries: its advertised `host:port` (see
/// [`AppConfig::application_server`](crate::kafka::AppConfig::application_server)).
pub use crate::kafka::HostInfo;

/// Why a query could not be answered here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The key's partition is assigned here but its task is still being restored (or, for a
    /// global table's store, the global tables are being restored before the app processes).
    #[error(
        "store `{store}` {} is being restored on this instance \
         ({lag} {} records still to apply, as last measured); try again later",
        if *partition == GLOBAL_PARTITION { "(a global table's)".to_owned() }
        else { format!("partition {partition}") },
        if *partition == GLOBAL_PARTITION { "topic" } else { "changelog" }
    )]
    Restoring {
        /// The store.
        store: String,
        /// The partition of the key (or, for a range, of the first task still restoring);
        /// [`GLOBAL_PARTITION`] for a global table's store.
        partition: i32,
        /// Changelog records still to apply to the store, as last measured (0 while its
        /// restore has not begun reading the changelog); for a global table's store, records
        /// of its topic still to apply.
        lag: u64,
    },
    /// The key's partition is not assigned to this instance (or not yet, or no longer).
    #[error(
        "store `{store}` partition {partition} is not on this instance{}",
        match owner { Some(o) => format!(" (it is on {o})"), None => String::new() }
    )]
    NotHere {
        /// The store.
        store: String,
        /// The partition of the key.
        partition: i32,
        /// The instance that has it, when known (from the where-is-a-key metadata).
        owner: Option<HostInfo>,
    },
    /// No store of this name (or of this kind) in the application's topology.
    #[error("no store named `{0}` in this application's topology")]
    UnknownStore(String),
    /// Reading failed: wrong types, a key that cannot be serialized, corrupt data, the
    /// application not running.
    #[error(transparent)]
    Failed(#[from] Error),
}

/// How a task of this instance stands, for queries.
enum Phase {
    /// Assigned and being opened or restored: the lag of each store whose restore began.
    Restoring(BTreeMap<String, u64>),
    /// Running: its stores are read through this reader.
    Running(StoreReader),
}

struct Entry {
    /// The processing thread that has the task (an entry is removed only by its owner, so a
    /// late close on one thread never removes the task another thread opened since).
    owner: usize,
    phase: Phase,
}

/// Who has a partition elsewhere: the where-is-a-key metadata's hook (`None` until it is set).
type OwnerLookup = dyn Fn(&str, i32) -> Option<HostInfo> + Send + Sync;

#[derive(Default)]
struct State {
    /// Sub-topology id to its partition count, known once the app's start-up checks ran.
    partitions: BTreeMap<usize, i32>,
    tasks: BTreeMap<TaskId, Entry>,
    /// The global tables' state (one for every global store): `None` while the app has not
    /// started restoring it, or after the global thread stopped.
    global: Option<Phase>,
    owner_lookup: Option<Arc<OwnerLookup>>,
}

/// Where a store's state lives on this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Home {
    /// In the tasks of this sub-topology: one per partition, the key's partition picks it.
    Task(usize),
    /// In the global state: all of it, on every instance (a global table's store).
    Global,
}

/// The partition a global store's key has in answers ([`StoreQuery::partition_of`],
/// [`QueryError::Restoring`]): none, as Kafka Streams' `KeyQueryMetadata` of a global store.
pub const GLOBAL_PARTITION: i32 = -1;

struct Registry {
    /// Every store of the topology: where it lives and its declaration.
    stores: BTreeMap<String, (Home, StoreSpec)>,
    state: RwLock<State>,
    /// Where keys live (`kafka/metadata.rs`: `Queries::metadata_for_key`), set by `App::new`.
    metadata: std::sync::OnceLock<crate::kafka::GroupMetadata>,
    /// Whether read-committed queries were asked for: the processing threads then pin a
    /// snapshot of each task after every commit.
    pin_committed: AtomicBool,
}

/// The interactive queries of an app: its local stores, read from any thread.
///
/// `Clone + Send + Sync`; take it from [`App::queries`](crate::kafka::App::queries) before or
/// while the app runs. See the module docs for what an answer is.
///
/// ```no_run
/// use kstreams::kafka::App;
/// # fn demo(app: &App) -> Result<(), kstreams::query::QueryError> {
/// #[kstreams::store(name = "word-counts")]
/// type WordCounts = kstreams::KeyValue<String, u64>;
///
/// let counts = app.queries().store::<WordCounts>()?;
/// match counts.get(&"kafka".to_owned()) {
///     Ok(n) => println!("kafka: {n:?}"),
///     Err(kstreams::query::QueryError::NotHere { owner, .. }) => println!("ask {owner:?}"),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Queries {
    registry: Arc<Registry>,
    /// Answer from the snapshots pinned at the last commits ([`Queries::read_committed`]).
    committed: bool,
}

impl fmt::Debug for Queries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queries")
            .field("stores", &self.registry.stores.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Queries {
    /// The (empty) registry of an app running `topology`.
    pub(crate) fn new(topology: &Topology) -> Self {
        let mut stores = BTreeMap::new();
        for sub in topology.subtopologies() {
            for name in &sub.stores {
                if let Some(spec) = topology.stores().iter().find(|s| s.name() == &**name) {
                    stores.insert(name.to_string(), (Home::Task(sub.id), spec.clone()));
                }
            }
        }
        // Global stores' names are their own (the topology checks it).
        for spec in topology.global_stores() {
            stores.insert(spec.name().to_owned(), (Home::Global, spec));
        }
        Queries {
            registry: Arc::new(Registry {
                stores,
                state: RwLock::default(),
                metadata: std::sync::OnceLock::new(),
                pin_committed: AtomicBool::new(false),
            }),
            committed: false,
        }
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.registry
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.registry
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The same queries, answered read-committed: from the LMDB snapshot each task pins right
    /// after each Kafka commit (every `commit_interval`) instead of its latest batch. Under
    /// exactly-once that is the state of exactly the committed input: never of a transaction
    /// still open or later aborted, and up to a commit interval behind. Under at-least-once it is
    /// the state as of the last offset commit.
    ///
    /// Pinning starts with the first call (the app then keeps one LMDB read open per task from
    /// one commit to the next), so a task answers once it has committed after that: until then,
    /// and after its map grew (the snapshot is dropped for the resize), a query fails with
    /// [`QueryError::Failed`] naming the store. In-memory stores keep no snapshots and fail too.
    /// Global tables' stores answer as plain queries do: they hold only what their topics hold
    /// (read `read_committed` under exactly-once), never a transaction of this app's.
    pub fn read_committed(&self) -> Queries {
        self.registry.pin_committed.store(true, Ordering::SeqCst);
        Queries {
            registry: self.registry.clone(),
            committed: true,
        }
    }

    /// The key-value store of handle type `S` (declared with `#[kstreams::store]`).
    pub fn store<S: StoreHandle<'static>>(
        &self,
    ) -> Result<StoreQuery<S::Key, S::Value>, QueryError> {
        self.store_by_name(S::NAME)
    }

    /// The key-value store named `name`, of keys `K` and values `V` (checked against its
    /// declaration). A versioned store answers its latest values, by key only (as Kafka
    /// Streams' versioned stores: [`range`](StoreQuery::range) and [`all`](StoreQuery::all)
    /// are refused).
    ///
    /// A global table's store ([`TopologyBuilder::global_table`](
    /// crate::TopologyBuilder::global_table)) is queried the same way: every instance has all
    /// of it, so it answers every key here ([`QueryError::Restoring`] until the global tables'
    /// restore at start-up ended), and never [`QueryError::NotHere`].
    pub fn store_by_name<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<StoreQuery<K, V>, QueryError> {
        let target = self.target::<K, V>(name, |k| {
            matches!(k, StoreKind::KeyValue | StoreKind::Versioned { .. })
        })?;
        Ok(StoreQuery {
            target,
            _types: PhantomData,
        })
    }

    /// The window store named `name`, of keys `K` and values `V`.
    pub fn window_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<WindowQuery<K, V>, QueryError> {
        let target = self.target::<K, V>(name, |k| matches!(k, StoreKind::Window { .. }))?;
        Ok(WindowQuery {
            target,
            _types: PhantomData,
        })
    }

    fn target<K: 'static, V: 'static>(
        &self,
        name: &str,
        kind: impl Fn(StoreKind) -> bool,
    ) -> Result<Target, QueryError> {
        let Some((home, spec)) = self.registry.stores.get(name) else {
            return Err(QueryError::UnknownStore(name.to_owned()));
        };
        if !kind(spec.kind()) {
            return Err(Error::Store(format!(
                "store `{name}` is not of the kind this query reads (it is {:?})",
                spec.kind()
            ))
            .into());
        }
        spec.serdes::<K, V>()?;
        Ok(Target {
            queries: self.clone(),
            name: name.into(),
            home: *home,
            spec: spec.clone(),
        })
    }

    // ---- The engine's side (processing threads): what each task of this instance is doing. ----

    /// The app's start-up checks found these partition counts, per sub-topology id.
    pub(crate) fn set_partitions(&self, counts: impl IntoIterator<Item = (usize, i32)>) {
        self.write_state().partitions.extend(counts);
    }

    /// Tasks assigned to processing thread `owner`, not running yet (opening or restoring).
    pub(crate) fn restoring(&self, owner: usize, ids: impl IntoIterator<Item = TaskId>) {
        let mut st = self.write_state();
        for id in ids {
            st.tasks.insert(
                id,
                Entry {
                    owner,
                    phase: Phase::Restoring(BTreeMap::new()),
                },
            );
        }
    }

    /// The lags (changelog records to go) of the stores being restored, as (task, store, lag).
    pub(crate) fn restore_lags(&self, owner: usize, lags: Vec<(TaskId, String, u64)>) {
        if lags.is_empty() {
            return;
        }
        let mut st = self.write_state();
        for (id, store, lag) in lags {
            if let Some(Entry {
                owner: o,
                phase: Phase::Restoring(l),
            }) = st.tasks.get_mut(&id)
                && *o == owner
            {
                l.insert(store, lag);
            }
        }
    }

    /// Task `id` runs on thread `owner`: its stores are read through `reader`.
    pub(crate) fn running(&self, owner: usize, id: TaskId, reader: StoreReader) {
        self.write_state().tasks.insert(
            id,
            Entry {
                owner,
                phase: Phase::Running(reader),
            },
        );
    }

    /// Thread `owner` closed these tasks (revoked, or the thread stops).
    pub(crate) fn gone(&self, owner: usize, ids: impl IntoIterator<Item = TaskId>) {
        let mut st = self.write_state();
        for id in ids {
            if st.tasks.get(&id).is_some_and(|e| e.owner == owner) {
                st.tasks.remove(&id);
            }
        }
    }

    /// The global tables are being restored (before any task processes): their stores answer
    /// `Restoring` (lag 0 until their topic's restore begins, see
    /// [`global_lag`](Self::global_lag)).
    pub(crate) fn global_restoring(&self) {
        self.write_state().global = Some(Phase::Restoring(BTreeMap::new()));
    }

    /// Records of its topic still to apply to global store `store`, as the restore measured.
    pub(crate) fn global_lag(&self, store: &str, lag: u64) {
        if let Some(Phase::Restoring(lags)) = &mut self.write_state().global {
            lags.insert(store.to_owned(), lag);
        }
    }

    /// The global tables are restored: their stores answer through `reader` (the global
    /// state's, kept up to date by the global thread).
    pub(crate) fn global_running(&self, reader: StoreReader) {
        self.write_state().global = Some(Phase::Running(reader));
    }

    /// The global thread stopped (the app stops): global stores answer "not running".
    pub(crate) fn global_gone(&self) {
        self.write_state().global = None;
    }

    /// Whether the processing threads pin a snapshot of each task after every commit.
    pub(crate) fn pins_committed(&self) -> bool {
        self.registry.pin_committed.load(Ordering::Relaxed)
    }

    /// Thread `owner` closed all its tasks and keeps the partitions of `ids` assigned (to
    /// reopen them): those are restoring, its other tasks gone.
    pub(crate) fn reopening(&self, owner: usize, ids: impl IntoIterator<Item = TaskId>) {
        let mut st = self.write_state();
        st.tasks.retain(|_, e| e.owner != owner);
        for id in ids {
            st.tasks.insert(
                id,
                Entry {
                    owner,
                    phase: Phase::Restoring(BTreeMap::new()),
                },
            );
        }
    }

    /// Thread `owner` closed all its tasks.
    pub(crate) fn all_gone(&self, owner: usize) {
        self.write_state().tasks.retain(|_, e| e.owner != owner);
    }

    /// The hook of the where-is-a-key metadata: who has a store's partition elsewhere
    /// (`NotHere::owner`). Until it is set, `owner` is `None`.
    /// The app's where-is-a-key metadata (`Queries::metadata_for_key`, in `kafka/metadata.rs`).
    pub(crate) fn set_metadata(&self, metadata: crate::kafka::GroupMetadata) {
        let _ = self.registry.metadata.set(metadata);
    }

    /// The app's where-is-a-key metadata, once `App::new` set it.
    pub(crate) fn metadata(&self) -> Option<&crate::kafka::GroupMetadata> {
        self.registry.metadata.get()
    }

    pub(crate) fn set_owner_lookup(
        &self,
        lookup: impl Fn(&str, i32) -> Option<HostInfo> + Send + Sync + 'static,
    ) {
        self.write_state().owner_lookup = Some(Arc::new(lookup));
    }
}

/// A store of one query handle: where it lives and how its keys are written.
#[derive(Clone)]
struct Target {
    queries: Queries,
    name: Arc<str>,
    home: Home,
    spec: StoreSpec,
}

/// What a query found for one partition.
enum Found {
    Reader(StoreReader),
    Restoring(u64),
    NotHere,
    /// A global store whose state is not open (the app is not running).
    NotRunning,
}

impl Target {
    fn is_versioned(&self) -> bool {
        matches!(self.spec.kind(), StoreKind::Versioned { .. })
    }

    fn key_bytes<K: 'static, V: 'static>(&self, key: &K) -> Result<Vec<u8>, QueryError> {
        let serialized = self.spec.serdes::<K, V>()?.key_serde().serialize(key);
        let error = |source| Error::StoreSerialize {
            store: self.name.to_string(),
            part: Part::Key,
            source,
        };
        match serialized {
            Ok(Some(b)) => Ok(b),
            Ok(None) => {
                Err(error(crate::error::SerdeError::new("store keys cannot be null")).into())
            }
            Err(e) => Err(error(e).into()),
        }
    }

    fn partitions(&self, subtopology: usize) -> Result<i32, QueryError> {
        self.queries
            .read_state()
            .partitions
            .get(&subtopology)
            .copied()
            .ok_or_else(|| {
                Error::Runtime(format!(
                    "store `{}` cannot be queried yet: the application is not running (its \
                     start-up checks have not found its input's partitions)",
                    self.name
                ))
                .into()
            })
    }

    /// The partition of a key's serialized bytes ([`GLOBAL_PARTITION`] for a global store).
    fn partition_of(&self, key: &[u8]) -> Result<i32, QueryError> {
        match self.home {
            Home::Task(sub) => Ok(partition_for_key(key, self.partitions(sub)?)),
            Home::Global => Ok(GLOBAL_PARTITION),
        }
    }

    fn find(&self, partition: i32) -> Found {
        let st = self.queries.read_state();
        let phase = match self.home {
            Home::Task(subtopology) => st
                .tasks
                .get(&TaskId {
                    subtopology,
                    partition,
                })
                .map(|e| &e.phase),
            Home::Global => match &st.global {
                None => return Found::NotRunning,
                p => p.as_ref(),
            },
        };
        match phase {
            Some(Phase::Running(r)) => Found::Reader(r.clone()),
            Some(Phase::Restoring(lags)) => {
                Found::Restoring(lags.get(&*self.name).copied().unwrap_or(0))
            }
            None => Found::NotHere,
        }
    }

    fn not_running(&self) -> QueryError {
        Error::Runtime(format!(
            "store `{}` (a global table's) cannot be queried: the application is not running \
             (its global tables are restored when it starts)",
            self.name
        ))
        .into()
    }

    fn not_here(&self, partition: i32) -> QueryError {
        let lookup = self.queries.read_state().owner_lookup.clone();
        QueryError::NotHere {
            store: self.name.to_string(),
            partition,
            owner: lookup.and_then(|f| f(&self.name, partition)),
        }
    }

    fn restoring(&self, partition: i32, lag: u64) -> QueryError {
        QueryError::Restoring {
            store: self.name.to_string(),
            partition,
            lag,
        }
    }

    /// Runs `f` in one read of the task of `partition`.
    fn read<R>(
        &self,
        partition: i32,
        f: impl FnOnce(&crate::store::StateTxn<'_>) -> Result<R>,
    ) -> Result<R, QueryError> {
        match self.find(partition) {
            Found::Reader(reader) => self.read_with(&reader, partition, f),
            Found::Restoring(lag) => Err(self.restoring(partition, lag)),
            Found::NotHere => Err(self.not_here(partition)),
            Found::NotRunning => Err(self.not_running()),
        }
    }

    fn read_with<R>(
        &self,
        reader: &StoreReader,
        partition: i32,
        f: impl FnOnce(&crate::store::StateTxn<'_>) -> Result<R>,
    ) -> Result<R, QueryError> {
        // The global state holds only records of its topics (read `read_committed` under
        // exactly-once), no transaction of this app's: a plain read is already read-committed.
        let read = if self.queries.committed && self.home != Home::Global {
            reader.read_committed(f)
        } else {
            reader.read(f)
        };
        match read {
            Ok(r) => Ok(r),
            // Closed between the registry's answer and the read: revoked, or being rebuilt.
            Err(_) if reader.is_closed() => Err(match self.find(partition) {
                Found::Restoring(lag) => self.restoring(partition, lag),
                _ if self.home == Home::Global => self.not_running(),
                _ => self.not_here(partition),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Every running task of the store's sub-topology on this instance, in partition order;
    /// fails when one is still restoring (an answer without it would be silently incomplete).
    fn local_readers(&self) -> Result<Vec<(i32, StoreReader)>, QueryError> {
        let subtopology = match self.home {
            Home::Task(sub) => sub,
            Home::Global => {
                return match self.find(GLOBAL_PARTITION) {
                    Found::Reader(r) => Ok(vec![(GLOBAL_PARTITION, r)]),
                    Found::Restoring(lag) => Err(self.restoring(GLOBAL_PARTITION, lag)),
                    Found::NotHere | Found::NotRunning => Err(self.not_running()),
                };
            }
        };
        let st = self.queries.read_state();
        let mut out = Vec::new();
        for (id, entry) in st.tasks.range(
            TaskId {
                subtopology,
                partition: i32::MIN,
            }..=TaskId {
                subtopology,
                partition: i32::MAX,
            },
        ) {
            match &entry.phase {
                Phase::Running(r) => out.push((id.partition, r.clone())),
                Phase::Restoring(lags) => {
                    let lag = lags.get(&*self.name).copied().unwrap_or(0);
                    return Err(self.restoring(id.partition, lag));
                }
            }
        }
        Ok(out)
    }
}

/// Queries of one key-value store: [`Queries::store`] or [`Queries::store_by_name`].
///
/// Cheap to clone; each call reads the current state (the task of a key may move between calls).
pub struct StoreQuery<K, V> {
    target: Target,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for StoreQuery<K, V> {
    fn clone(&self) -> Self {
        StoreQuery {
            target: self.target.clone(),
            _types: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for StoreQuery<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreQuery")
            .field("store", &self.target.name)
            .finish_non_exhaustive()
    }
}

impl<K: 'static, V: 'static> StoreQuery<K, V> {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.target.name
    }

    /// The partition of `key` (the task that holds it), as the input's default partitioner
    /// picks it; [`GLOBAL_PARTITION`] for a global table's store (it has all partitions).
    pub fn partition_of(&self, key: &K) -> Result<i32, QueryError> {
        self.target
            .partition_of(&self.target.key_bytes::<K, V>(key)?)
    }

    /// The value of `key`: one read of its task. [`QueryError::NotHere`] when its partition is
    /// not on this instance, [`QueryError::Restoring`] while it is being restored here.
    pub fn get(&self, key: &K) -> Result<Option<V>, QueryError> {
        let partition = self.partition_of(key)?;
        self.target.read(partition, |txn| {
            Ok(self.get_in(txn, &[key])?.pop().flatten())
        })
    }

    /// The values of `keys` in one read: the latest of a versioned store.
    fn get_in(&self, txn: &crate::store::StateTxn<'_>, keys: &[&K]) -> Result<Vec<Option<V>>> {
        if self.target.is_versioned() {
            let store = txn.versioned_store::<K, V>(&self.target.name)?;
            keys.iter()
                .map(|k| Ok(store.get(*k)?.map(|r| r.value)))
                .collect()
        } else {
            let store = txn.store::<K, V>(&self.target.name)?;
            keys.iter().map(|k| store.get(*k)).collect()
        }
    }

    /// The values of `keys`, in their order: one read per task they fall in. Fails as
    /// [`get`](Self::get) at the first key that cannot be answered here.
    pub fn get_batch(&self, keys: &[K]) -> Result<Vec<Option<V>>, QueryError> {
        let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            by_partition
                .entry(self.partition_of(k)?)
                .or_default()
                .push(i);
        }
        let mut out: Vec<Option<V>> = std::iter::repeat_with(|| None).take(keys.len()).collect();
        for (partition, indices) in by_partition {
            let values = self.target.read(partition, |txn| {
                let these: Vec<&K> = indices.iter().map(|&i| &keys[i]).collect();
                self.get_in(txn, &these)
            })?;
            for (i, v) in indices.into_iter().zip(values) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// The entries with keys between `from` and `to`, from every task of the store on this
    /// instance (one read each), merged in key order (the order of the serialized keys, as in
    /// the store). Fails with [`QueryError::Restoring`] while one of them is being restored.
    pub fn range(&self, from: Bound<K>, to: Bound<K>) -> Result<Vec<(K, V)>, QueryError> {
        if self.target.is_versioned() {
            return Err(Error::Store(format!(
                "store `{}` is a versioned store: it answers queries by key only (get, \
                 get_batch), as Kafka Streams' versioned stores",
                self.target.name
            ))
            .into());
        }
        let mut entries: Vec<(Vec<u8>, K, V)> = Vec::new();
        for (partition, reader) in self.target.local_readers()? {
            let part = self.target.read_with(&reader, partition, |txn| {
                let store = txn.store::<K, V>(&self.target.name)?;
                store
                    .range((from.as_ref(), to.as_ref()))?
                    .collect::<Result<Vec<(K, V)>>>()
            })?;
            for (k, v) in part {
                entries.push((self.target.key_bytes::<K, V>(&k)?, k, v));
            }
        }
        // Partitions hold distinct keys: a stable sort of the tasks' sorted runs.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(entries.into_iter().map(|(_, k, v)| (k, v)).collect())
    }

    /// Every entry of the store on this instance, in key order (see [`range`](Self::range)).
    pub fn all(&self) -> Result<Vec<(K, V)>, QueryError> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }
}

/// Queries of one window store: [`Queries::window_store`].
pub struct WindowQuery<K, V> {
    target: Target,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for WindowQuery<K, V> {
    fn clone(&self) -> Self {
        WindowQuery {
            target: self.target.clone(),
            _types: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for WindowQuery<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowQuery")
            .field("store", &self.target.name)
            .finish_non_exhaustive()
    }
}

impl<K: 'static, V: 'static> WindowQuery<K, V> {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.target.name
    }

    /// `key`'s live windows whose start lies in `[from, to]` (milliseconds), in time order, as
    /// (window start, value): one read of the key's task. A window ends at its start plus the
    /// store's window size ([`StoreKind::Window`]'s `size_ms`: the time difference of sliding
    /// windows, whose both ends are inclusive in Kafka Streams' terms).
    ///
    /// A sliding-window aggregation's store keeps a timestamp with each aggregate (the largest
    /// record timestamp of the window: Kafka Streams' `ValueAndTimestamp`, see
    /// [`StoreSpec::timestamped_values`]); the answer is the aggregate alone, as Kafka Streams'
    /// `WindowKeyQuery` answers plain values. A stored value of another shape is a
    /// [`QueryError::Failed`] naming the store.
    pub fn fetch(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, V)>, QueryError> {
        let partition = self
            .target
            .partition_of(&self.target.key_bytes::<K, V>(key)?)?;
        self.target.read(partition, |txn| {
            let store = txn.window_store::<K, V>(&self.target.name)?;
            if self.target.spec.timestamped_values() {
                Ok(store
                    .fetch_timestamped(key, from, to)?
                    .into_iter()
                    .map(|(start, value, _)| (start, value))
                    .collect())
            } else {
                store.fetch(key, from, to)
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::{Backend, KeyValueStore, StateStores};

    /// A `#[store]` handle, written by hand (the macros name `::kstreams`).
    struct Counts<'t>(#[allow(dead_code)] KeyValueStore<'t, String, u64>);

    impl<'t> StoreHandle<'t> for Counts<'t> {
        const NAME: &'static str = "counts";
        type Key = String;
        type Value = u64;
        fn spec() -> StoreSpec {
            StoreSpec::new::<String, u64>("counts").backend(Backend::InMemory)
        }
        fn bind(store: KeyValueStore<'t, String, u64>) -> Self {
            Counts(store)
        }
    }

    const PARTITIONS: i32 = 4;

    fn queries() -> Result<Queries> {
        let mut t = Topology::builder();
        let words = t.source::<String, String>("words");
        let counts = t.add(crate::aggregate::count::<Counts<'static>>(), &words);
        t.sink("counts-out", &counts);
        let q = Queries::new(&t.build()?);
        q.set_partitions([(0, PARTITIONS)]);
        Ok(q)
    }

    fn task(partition: i32) -> TaskId {
        TaskId {
            subtopology: 0,
            partition,
        }
    }

    /// The stores of one task holding `entries`.
    fn stores(entries: &[(&str, u64)]) -> Result<StateStores> {
        let mut s = StateStores::in_memory(vec![Counts::spec()])?;
        s.transaction(|txn| {
            let mut c = txn.store::<String, u64>("counts")?;
            for (k, v) in entries {
                c.put(&(*k).to_owned(), v)?;
            }
            Ok(())
        })?;
        Ok(s)
    }

    fn partition(key: &str) -> i32 {
        partition_for_key(key.as_bytes(), PARTITIONS)
    }

    /// Words and their partitions: two keys in one partition, one in another.
    fn keys() -> (String, String, String) {
        let words: Vec<String> = (0..100).map(|i| format!("w{i}")).collect();
        let a = words[0].clone();
        let b = words
            .iter()
            .find(|w| **w != a && partition(w) == partition(&a))
            .cloned()
            .expect("a second key in a's partition");
        let c = words
            .iter()
            .find(|w| partition(w) != partition(&a))
            .cloned()
            .expect("a key in another partition");
        (a, b, c)
    }

    #[test]
    fn a_key_is_answered_by_the_task_of_its_partition_and_not_here_elsewhere() -> Result<()> {
        let q = queries()?;
        let (a, b, c) = keys();
        let s = stores(&[(&a, 1), (&b, 2)])?;
        q.running(0, task(partition(&a)), s.reader()?);
        let counts = q
            .store::<Counts<'_>>()
            .map_err(|e| Error::Internal(e.to_string()))?;
        assert_eq!(counts.get(&a).ok(), Some(Some(1)));
        assert_eq!(counts.get(&"w-none".to_owned()).ok().flatten(), None);
        match counts.get(&c) {
            Err(QueryError::NotHere {
                store,
                partition: p,
                owner: None,
            }) => {
                assert_eq!((store.as_str(), p), ("counts", partition(&c)));
            }
            other => panic!("{other:?}"),
        }
        // The metadata's hook names the owner.
        q.set_owner_lookup(|_, _| {
            Some(HostInfo {
                host: "other".into(),
                port: 7070,
            })
        });
        match counts.get(&c) {
            Err(e @ QueryError::NotHere { owner: Some(_), .. }) => {
                assert!(e.to_string().ends_with("(it is on other:7070)"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        Ok(())
    }

    #[test]
    fn restoring_answers_the_lag_then_running_answers_the_value() -> Result<()> {
        let q = queries()?;
        let (a, _, _) = keys();
        let id = task(partition(&a));
        q.restoring(0, [id]);
        let counts = q
            .store_by_name::<String, u64>("counts")
            .map_err(|e| Error::Internal(e.to_string()))?;
        assert!(matches!(
            counts.get(&a),
            Err(QueryError::Restoring { lag: 0, .. })
        ));
        q.restore_lags(0, vec![(id, "counts".into(), 42)]);
        match counts.get(&a) {
            Err(QueryError::Restoring {
                store,
                partition: p,
                lag,
            }) => {
                assert_eq!((store.as_str(), p, lag), ("counts", id.partition, 42));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            counts.all(),
            Err(QueryError::Restoring { lag: 42, .. })
        ));
        let s = stores(&[(&a, 5)])?;
        q.running(0, id, s.reader()?);
        assert_eq!(counts.get(&a).ok(), Some(Some(5)));
        Ok(())
    }

    #[test]
    fn a_task_closed_by_its_thread_is_not_here_and_another_threads_close_changes_nothing()
    -> Result<()> {
        let q = queries()?;
        let (a, _, _) = keys();
        let id = task(partition(&a));
        let s = stores(&[(&a, 5)])?;
        q.running(1, id, s.reader()?);
        let counts = q
            .store::<Counts<'_>>()
            .map_err(|e| Error::Internal(e.to_string()))?;
        q.gone(0, [id]);
        q.all_gone(0);
        q.reopening(0, []);
        assert_eq!(
            counts.get(&a).ok(),
            Some(Some(5)),
            "closed by a thread not its owner"
        );
        // Stores dropped before the registry hears of it: not here, not an error.
        drop(s);
        assert!(matches!(counts.get(&a), Err(QueryError::NotHere { .. })));
        q.gone(1, [id]);
        assert!(matches!(counts.get(&a), Err(QueryError::NotHere { .. })));
        // Closed and kept assigned (exactly-once recovery): restoring until reopened.
        let s = stores(&[(&a, 6)])?;
        q.running(1, id, s.reader()?);
        q.reopening(1, [id]);
        assert!(matches!(
            counts.get(&a),
            Err(QueryError::Restoring { lag: 0, .. })
        ));
        q.all_gone(1);
        assert!(matches!(counts.get(&a), Err(QueryError::NotHere { .. })));
        Ok(())
    }

    #[test]
    fn ranges_merge_every_local_task_in_key_order_and_batches_keep_their_order() -> Result<()> {
        let q = queries()?;
        let (a, b, c) = keys();
        let s1 = stores(&[(&a, 1), (&b, 2)])?;
        let s2 = stores(&[(&c, 3)])?;
        q.running(0, task(partition(&a)), s1.reader()?);
        q.running(0, task(partition(&c)), s2.reader()?);
        let counts = q
            .store::<Counts<'_>>()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let mut expected = vec![(a.clone(), 1), (b.clone(), 2), (c.clone(), 3)];
        expected.sort();
        let all = counts.all().map_err(|e| Error::Internal(e.to_string()))?;
        assert_eq!(all, expected);
        let from = expected[1].0.clone();
        let ranged = counts
            .range(Bound::Included(from), Bound::Unbounded)
            .map_err(|e| Error::Internal(e.to_string()))?;
        assert_eq!(ranged, expected[1..].to_vec());
        let batch = counts
            .get_batch(&[c.clone(), "nope".into(), a.clone()])
            .map_err(|e| Error::Internal(e.to_string()))?;
        assert_eq!(batch, vec![Some(3), None, Some(1)]);
        Ok(())
    }

    #[test]
    fn unknown_stores_wrong_types_and_a_stopped_app_are_clear_errors() -> Result<()> {
        let q = queries()?;
        assert!(matches!(
            q.store_by_name::<String, u64>("nope"),
            Err(QueryError::UnknownStore(n)) if n == "nope"
        ));
        match q.store_by_name::<String, String>("counts") {
            Err(QueryError::Failed(Error::Store(m))) => assert!(m.contains("`counts`"), "{m}"),
            other => panic!("{other:?}"),
        }
        match q.window_store::<String, u64>("counts") {
            Err(QueryError::Failed(Error::Store(m))) => {
                assert!(m.contains("not of the kind"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        let mut t = Topology::builder();
        let words = t.source::<String, String>("words");
        let counts = t.add(crate::aggregate::count::<Counts<'static>>(), &words);
        t.sink("counts-out", &counts);
        let not_started = Queries::new(&t.build()?);
        let counts = not_started
            .store::<Counts<'_>>()
            .map_err(|e| Error::Internal(e.to_string()))?;
        match counts.get(&"a".to_owned()) {
            Err(QueryError::Failed(Error::Runtime(m))) => assert!(m.contains("not running"), "{m}"),
            other => panic!("{other:?}"),
        }
        Ok(())
    }

    /// Declares a versioned store and does nothing.
    #[derive(Clone)]
    struct Versioned;

    fn versioned_spec() -> StoreSpec {
        StoreSpec::new::<String, u64>("prices")
            .backend(Backend::InMemory)
            .versioned(std::time::Duration::from_secs(60))
            .expect("a versioned spec")
    }

    impl crate::BatchProcessor<String, u64> for Versioned {
        type OutKey = String;
        type OutValue = u64;
        fn stores(&self) -> Vec<StoreSpec> {
            vec![versioned_spec()]
        }
        fn process_batch(
            &mut self,
            _: &[crate::Record<String, u64>],
            _: &mut crate::Context<'_, String, u64>,
        ) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_versioned_store_answers_its_latest_values_by_key_only() -> Result<()> {
        let mut t = Topology::builder();
        let prices = t.source::<String, u64>("prices-in");
        let out = t.add(Versioned, &prices);
        t.sink("prices-out", &out);
        let q = Queries::new(&t.build()?);
        q.set_partitions([(0, 1)]);
        let mut s = StateStores::in_memory(vec![versioned_spec()])?;
        s.transaction(|txn| {
            let mut v = txn.versioned_store::<String, u64>("prices")?;
            use crate::store::VersionedPut;
            assert!(matches!(
                v.put(&"a".to_owned(), Some(&1), 10)?,
                VersionedPut::Latest
            ));
            assert!(matches!(
                v.put(&"a".to_owned(), Some(&2), 20)?,
                VersionedPut::Latest
            ));
            assert!(matches!(
                v.put(&"a".to_owned(), Some(&0), 5)?,
                VersionedPut::Older
            ));
            Ok(())
        })?;
        q.running(0, task(0), s.reader()?);
        let prices = q
            .store_by_name::<String, u64>("prices")
            .map_err(|e| Error::Internal(e.to_string()))?;
        assert_eq!(prices.get(&"a".to_owned()).ok(), Some(Some(2)));
        assert_eq!(
            prices.get_batch(&["b".to_owned(), "a".to_owned()]).ok(),
            Some(vec![None, Some(2)])
        );
        match prices.all() {
            Err(QueryError::Failed(Error::Store(m))) => assert!(m.contains("by key only"), "{m}"),
            other => panic!("{other:?}"),
        }
        Ok(())
    }

    /// A sliding count's store, as the operator declares it (`window::count_with`).
    fn sliding_queries() -> Result<(Queries, StoreSpec)> {
        use crate::window::{SlidingWindows, Windowing, Windows};
        let d = std::time::Duration::from_millis(10);
        let windowing = Windowing::new(Windows::Sliding(SlidingWindows::new(d, d)?));
        let mut t = Topology::builder();
        let clicks = t.source::<String, String>("clicks");
        let counts = t.add(
            crate::window::count_with::<String>("slides", windowing)?,
            &clicks,
        );
        t.sink("slides-out", &counts);
        let topology = t.build()?;
        let spec = topology.stores()[0].clone().backend(Backend::InMemory);
        let q = Queries::new(&topology);
        q.set_partitions([(0, 1)]);
        Ok((q, spec))
    }

    #[test]
    fn a_sliding_window_store_answers_its_aggregates_without_their_timestamps() -> Result<()> {
        let (q, spec) = sliding_queries()?;
        assert!(spec.timestamped_values(), "{spec:?}");
        let mut s = StateStores::in_memory(vec![spec])?;
        // As the sliding operator writes them: (start, count, largest record timestamp).
        let windows = [(0, 3u64, 7), (8, 1, 12), (13, 2, 20)];
        s.transaction(|txn| {
            let w = txn.window_store::<String, u64>("slides")?;
            for (start, count, ts) in windows {
                assert_eq!(
                    w.put_timestamped(&"a".to_owned(), start, &count, ts)?,
                    crate::store::WindowWrite::Stored
                );
            }
            Ok(())
        })?;
        q.running(0, task(0), s.reader()?);
        let slides = q
            .window_store::<String, u64>("slides")
            .map_err(|e| Error::Internal(e.to_string()))?;
        let fetched = slides
            .fetch(&"a".to_owned(), 0, 10)
            .map_err(|e| Error::Internal(e.to_string()))?;
        assert_eq!(fetched, vec![(0, 3), (8, 1)]);
        assert_eq!(slides.fetch(&"b".to_owned(), 0, 100).ok(), Some(vec![]));
        Ok(())
    }

    #[test]
    fn a_window_value_of_the_wrong_shape_fails_naming_the_store() -> Result<()> {
        let (q, spec) = sliding_queries()?;
        let mut s = StateStores::in_memory(vec![spec])?;
        s.transaction(|txn| {
            // A plain value where a timestamp and a value belong: 8 bytes, read as the
            // timestamp, and no value after it.
            let w = txn.window_store::<String, u64>("slides")?;
            assert_eq!(
                w.put(&"a".to_owned(), 0, &3)?,
                crate::store::WindowWrite::Stored
            );
            // Shorter than a timestamp (a changelog record: key, 8-byte start, 4-byte seqnum).
            let key = [&b"b"[..], &5i64.to_be_bytes(), &0u32.to_be_bytes()].concat();
            txn.restore_raw(0, &key, Some(b"xy"), 5)
        })?;
        q.running(0, task(0), s.reader()?);
        let slides = q
            .window_store::<String, u64>("slides")
            .map_err(|e| Error::Internal(e.to_string()))?;
        for key in ["a", "b"] {
            match slides.fetch(&key.to_owned(), 0, 10) {
                Err(QueryError::Failed(e)) => {
                    assert!(e.to_string().contains("store `slides`"), "{key}: {e}")
                }
                other => panic!("{key}: {other:?}"),
            }
        }
        Ok(())
    }

    /// A global table's store, written by hand (the macros name `::kstreams`).
    struct Regions<'t>(#[allow(dead_code)] KeyValueStore<'t, String, String>);

    impl<'t> StoreHandle<'t> for Regions<'t> {
        const NAME: &'static str = "regions";
        type Key = String;
        type Value = String;
        fn spec() -> StoreSpec {
            StoreSpec::new::<String, String>("regions").backend(Backend::InMemory)
        }
        fn bind(store: KeyValueStore<'t, String, String>) -> Self {
            Regions(store)
        }
    }

    impl crate::table::TableStore for Regions<'static> {}

    /// A versioned global table's store.
    struct Rates<'t>(#[allow(dead_code)] KeyValueStore<'t, String, u64>);

    impl<'t> StoreHandle<'t> for Rates<'t> {
        const NAME: &'static str = "rates";
        type Key = String;
        type Value = u64;
        fn spec() -> StoreSpec {
            versioned_rates()
        }
        fn bind(store: KeyValueStore<'t, String, u64>) -> Self {
            Rates(store)
        }
    }

    fn versioned_rates() -> StoreSpec {
        StoreSpec::new::<String, u64>("rates")
            .backend(Backend::InMemory)
            .versioned(std::time::Duration::from_secs(60))
            .expect("a versioned spec")
    }

    impl crate::table::TableStore for Rates<'static> {}

    /// An app with the global tables `regions` and `rates` (versioned), and a task store.
    pub(crate) fn global_topology() -> Result<Topology> {
        let mut t = Topology::builder();
        let _regions = t.global_table::<Regions<'static>>("regions-topic");
        let _rates = t.global_table::<Rates<'static>>("rates-topic");
        let words = t.source::<String, String>("words");
        let counts = t.add(crate::aggregate::count::<Counts<'static>>(), &words);
        t.sink("counts-out", &counts);
        Ok(t.build()?)
    }

    #[test]
    fn a_global_store_answers_every_key_here_once_restored() -> Result<()> {
        let topology = global_topology()?;
        let q = Queries::new(&topology);
        let regions = q
            .store::<Regions<'_>>()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let a = "a".to_owned();
        // Not started: neither restoring nor an (empty) answer.
        match regions.get(&a) {
            Err(QueryError::Failed(Error::Runtime(m))) => assert!(m.contains("not running"), "{m}"),
            other => panic!("{other:?}"),
        }
        q.global_restoring();
        match regions.get(&a) {
            Err(e @ QueryError::Restoring { lag: 0, .. }) => {
                assert!(e.to_string().contains("(a global table's)"), "{e}");
                let QueryError::Restoring { partition, .. } = e else {
                    unreachable!()
                };
                assert_eq!(partition, GLOBAL_PARTITION);
            }
            other => panic!("{other:?}"),
        }
        q.global_lag("regions", 7);
        assert!(matches!(
            regions.get(&a),
            Err(QueryError::Restoring { lag: 7, .. })
        ));
        assert!(matches!(
            regions.all(),
            Err(QueryError::Restoring { lag: 7, .. })
        ));
        let mut s = StateStores::in_memory(topology.global_stores())?;
        s.transaction(|txn| {
            let mut r = txn.store::<String, String>("regions")?;
            r.put(&"a".to_owned(), &"north".to_owned())?;
            r.put(&"b".to_owned(), &"south".to_owned())?;
            let mut v = txn.versioned_store::<String, u64>("rates")?;
            use crate::store::VersionedPut;
            assert!(matches!(
                v.put(&"eur".to_owned(), Some(&2), 20)?,
                VersionedPut::Latest
            ));
            assert!(matches!(
                v.put(&"eur".to_owned(), Some(&1), 10)?,
                VersionedPut::Older
            ));
            Ok(())
        })?;
        q.global_running(s.reader()?);
        // Every key, whatever its partition would be: no task, no `NotHere`.
        assert_eq!(regions.partition_of(&a).ok(), Some(GLOBAL_PARTITION));
        assert_eq!(regions.get(&a).ok(), Some(Some("north".to_owned())));
        assert_eq!(regions.get(&"nope".to_owned()).ok(), Some(None));
        assert_eq!(
            regions
                .get_batch(&["b".to_owned(), "x".to_owned(), a.clone()])
                .ok(),
            Some(vec![
                Some("south".to_owned()),
                None,
                Some("north".to_owned())
            ])
        );
        assert_eq!(
            regions.all().ok(),
            Some(vec![
                ("a".to_owned(), "north".to_owned()),
                ("b".to_owned(), "south".to_owned())
            ])
        );
        // Read-committed: the global state holds no open transaction of the app's.
        let committed = q
            .read_committed()
            .store::<Regions<'_>>()
            .map_err(|e| Error::Internal(e.to_string()))?;
        assert_eq!(committed.get(&a).ok(), Some(Some("north".to_owned())));
        // A versioned global table answers its latest value, by key only.
        let rates = q
            .store_by_name::<String, u64>("rates")
            .map_err(|e| Error::Internal(e.to_string()))?;
        assert_eq!(rates.get(&"eur".to_owned()).ok(), Some(Some(2)));
        assert!(matches!(rates.all(), Err(QueryError::Failed(_))));
        // The task store next to it is unaffected: its task is not here.
        let counts = q
            .store::<Counts<'_>>()
            .map_err(|e| Error::Internal(e.to_string()))?;
        q.set_partitions([(0, PARTITIONS)]);
        assert!(matches!(counts.get(&a), Err(QueryError::NotHere { .. })));
        // The global state closed (the global thread stopped), then the app stopped.
        drop(s);
        match regions.get(&a) {
            Err(QueryError::Failed(Error::Runtime(m))) => assert!(m.contains("not running"), "{m}"),
            other => panic!("{other:?}"),
        }
        q.global_gone();
        assert!(matches!(
            regions.all(),
            Err(QueryError::Failed(Error::Runtime(_)))
        ));
        Ok(())
    }

    #[test]
    fn queries_are_send_sync_and_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Queries>();
        check::<StoreQuery<String, u64>>();
        check::<WindowQuery<String, u64>>();
    }
}
