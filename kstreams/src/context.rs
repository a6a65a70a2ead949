//! The processor context: what a processor can do besides reading its records.
//!
//! Owns: [`Context`] (forward records and batches, forward to a named child, reach the processor's
//! stores, read-write or read-only as it declared them, read stream and wall-clock time),
//! [`InitContext`] (schedule punctuations), [`Punctuation`] and [`ReadOnly`] (a store handle
//! that only reads). It borrows everything from the task for the length of one call and keeps
//! nothing.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::record::Record;
use crate::store::{KeyValueStore, RawTxn, SessionStore, StoreHandle, StoreSpec, WindowStore};

/// Which clock a punctuation follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PunctuationType {
    /// Stream time: the largest record timestamp the task has seen. Advances only with input.
    StreamTime,
    /// Wall-clock time: fires on idle partitions too, from the runtime's tick.
    WallClock,
}

/// A due punctuation, as handed to a processor's `punctuate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Punctuation {
    /// The id [`InitContext::schedule`] returned.
    pub id: usize,
    /// Which clock it follows.
    pub kind: PunctuationType,
    /// The time (milliseconds) on that clock at which it fired.
    pub timestamp: i64,
}

/// A request to be punctuated, made in `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Schedule {
    pub(crate) id: usize,
    pub(crate) kind: PunctuationType,
    pub(crate) interval_ms: i64,
}

/// What a processor can do in `init`.
#[derive(Debug)]
pub struct InitContext<'a> {
    pub(crate) node: &'a str,
    pub(crate) schedules: &'a mut Vec<Schedule>,
    pub(crate) partition: i32,
    /// The stores the processor declared in `stores()`.
    pub(crate) stores: &'a [StoreSpec],
    /// The topology's global stores.
    pub(crate) globals: &'a [StoreSpec],
}

impl InitContext<'_> {
    /// Asks for `punctuate` to be called every `interval` of the given clock. Returns the id the
    /// punctuation will carry.
    ///
    /// **Stream time** (the largest record timestamp the task has seen): the punctuation is due at
    /// every multiple of `interval` (as Kafka Streams schedules against stream time), the first
    /// one after the stream time of the first record the task sees. It fires right after the
    /// record whose timestamp moves stream time to or past the due time, before the next record
    /// of the same batch: the task cuts the batch there and runs the punctuation between the two
    /// runs, in the batch's one state transaction. So what a punctuation sees and emits does not
    /// depend on where the input was cut into batches (invariant 2). Its
    /// [`timestamp`](Punctuation::timestamp) is the stream time then. A jump over several due
    /// times fires once, and the next due time is the first multiple after it (missed intervals
    /// are not replayed). Stream time is not persisted: after a restart the first due time is
    /// again the one after the first record seen.
    ///
    /// **Wall clock**: fires on idle partitions too, from the runtime's tick between batches; the
    /// first punctuation is one interval after the clock is first seen, then every interval
    /// (missed intervals are not replayed).
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) -> Result<usize> {
        let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        if interval_ms < 1 {
            return Err(Error::Config(format!(
                "processor `{}`: a punctuation interval must be at least 1 ms",
                self.node
            )));
        }
        let id = self.schedules.len();
        self.schedules.push(Schedule {
            id,
            kind,
            interval_ms,
        });
        Ok(id)
    }

    /// The processor's node name.
    pub fn name(&self) -> &str {
        self.node
    }

    /// Checks that the processor declared the store of the `#[kstreams::store]` handle `S`, with
    /// the same types and settings, in its [`stores()`](crate::BatchProcessor::stores).
    ///
    /// For a hand-written [`BatchProcessor`](crate::BatchProcessor) that reaches a store with
    /// [`Context::store_handle`]: call it in `init` for each such store. `init` also runs when
    /// the topology is built, so a store missing from `stores()` is an error of
    /// [`TopologyBuilder::build`](crate::TopologyBuilder::build), not of the first batch.
    /// (`#[batch_processor]` functions declare their stores by themselves.)
    ///
    /// ```
    /// use kstreams::{BatchProcessor, Context, InitContext, Record, Result, Topology};
    ///
    /// #[kstreams::store(name = "seen")]
    /// type Seen = kstreams::KeyValue<String, u64>;
    ///
    /// #[derive(Clone)]
    /// struct Forgetful;
    ///
    /// impl BatchProcessor<String, String> for Forgetful {
    ///     type OutKey = ();
    ///     type OutValue = ();
    ///     // No `fn stores(&self) -> Vec<StoreSpec> { vec![Seen::spec()] }`.
    ///     fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
    ///         ctx.require_store::<Seen>()
    ///     }
    ///     fn process_batch(&mut self, records: &[Record<String, String>], ctx: &mut Context<'_, (), ()>) -> Result<()> {
    ///         let mut seen = ctx.store_handle::<Seen>()?;
    ///         seen.put(&"n".to_string(), &(records.len() as u64))
    ///     }
    /// }
    ///
    /// let mut t = Topology::builder();
    /// let input = t.source::<String, String>("input");
    /// let _ = t.add(Forgetful, &input);
    /// let err = t.build().unwrap_err().to_string();
    /// assert!(err.contains("list it in `stores()`"), "{err}");
    /// ```
    pub fn require_store<'t, S: StoreHandle<'t>>(&self) -> Result<()> {
        let wanted = S::spec();
        // `app::stores::Seen<'_>` → `Seen`.
        let handle = std::any::type_name::<S>();
        let handle = handle.split('<').next().unwrap_or(handle);
        let handle = handle.rsplit("::").next().unwrap_or(handle);
        match self.stores.iter().find(|s| s.name() == S::NAME) {
            Some(declared) if declared.same_as(&wanted) => Ok(()),
            Some(declared) => Err(Error::Config(format!(
                "processor `{}` uses the store `{}` as `{handle}` ({}) but declares it in `stores()` as {}; declare it with `{handle}::spec()`",
                self.node,
                S::NAME,
                crate::topology::describe_store(&wanted),
                crate::topology::describe_store(declared)
            ))),
            None => Err(Error::Config(format!(
                "processor `{}` uses the store `{}` (`{handle}`) but does not declare it: list it in `stores()`, as `{handle}::spec()`",
                self.node,
                S::NAME
            ))),
        }
    }

    /// Checks that the topology has the global store `name` (a
    /// [`global_table`](crate::TopologyBuilder::global_table)) of `K` to `V`. A processor that
    /// reads a global store with [`Context::global_store`] calls it in `init`, for each global
    /// store it reads: `init` also runs when the topology is built, so a missing global table is
    /// an error of [`TopologyBuilder::build`](crate::TopologyBuilder::build) naming the store.
    pub fn require_global_store<K: 'static, V: 'static>(&self, name: &str) -> Result<()> {
        let wanted = (std::any::type_name::<K>(), std::any::type_name::<V>());
        match self.globals.iter().find(|s| s.name() == name) {
            Some(spec) if spec.serdes::<K, V>().is_ok() => Ok(()),
            Some(spec) => Err(Error::Config(format!(
                "processor `{}` reads the global store `{name}` as `{}` → `{}`, but it holds {}",
                self.node,
                wanted.0,
                wanted.1,
                crate::topology::describe_store(spec)
            ))),
            None => Err(Error::Config(format!(
                "processor `{}` reads the global store `{name}`, which the topology does not have: \
                 add it with `TopologyBuilder::global_table` ({})",
                self.node,
                if self.globals.is_empty() {
                    "it has no global stores".to_owned()
                } else {
                    format!(
                        "its global stores: {}",
                        self.globals
                            .iter()
                            .map(|s| format!("`{}`", s.name()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ))),
        }
    }

    /// The input partition of the task this processor instance belongs to.
    pub fn partition(&self) -> i32 {
        self.partition
    }
}

/// The instance's global stores as a batch sees them: one read transaction for the batch.
#[derive(Clone, Copy)]
pub(crate) struct GlobalView<'a> {
    pub(crate) txn: &'a (dyn RawTxn + 'a),
    pub(crate) specs: &'a [StoreSpec],
}

/// What a node knows of its place in the task: its name, children and stores.
#[derive(Debug, Clone)]
pub(crate) struct NodeInfo {
    pub(crate) name: Arc<str>,
    /// Children as indices into the task's node list.
    pub(crate) children: Vec<usize>,
    pub(crate) child_names: Vec<Arc<str>>,
    /// The node's declared stores, as indices into the task's stores, and which it only reads.
    pub(crate) stores: NodeStores,
}

/// A node's declared stores: indices into the task's stores (in the order of its `stores()`),
/// and the names of those it declared read-only ([`StoreSpec::read_only`]), which the
/// writable binds refuse. Collected from indices, every store writable; the topology's factory
/// marks the read-only ones.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeStores {
    indices: Vec<usize>,
    read_only: Arc<[Arc<str>]>,
}

impl NodeStores {
    /// Marks the stores of these names read-only.
    pub(crate) fn set_read_only(&mut self, names: Arc<[Arc<str>]>) {
        self.read_only = names;
    }

    /// Whether the node declared the store `name` read-only.
    pub(crate) fn is_read_only(&self, name: &str) -> bool {
        self.read_only.iter().any(|n| &**n == name)
    }
}

impl std::ops::Deref for NodeStores {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        &self.indices
    }
}

impl FromIterator<usize> for NodeStores {
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Self {
        NodeStores {
            indices: iter.into_iter().collect(),
            read_only: Arc::from([]),
        }
    }
}

/// A store handle that only reads: it derefs to the handle (`&T`), never to `&mut T`, and the
/// handles' writes take `&mut self`. What [`Context::read_store`],
/// [`Context::read_versioned_store`], [`Context::read_store_handle`] and the global-store reads
/// return.
///
/// ```compile_fail
/// # use kstreams::{Context, Result};
/// fn write_a_table(ctx: &Context<'_, String, String>) -> Result<()> {
///     let prices = ctx.read_store::<String, u64>("prices")?;
///     prices.put(&"apple".to_string(), &3) // error: `prices` only reads
/// }
/// ```
pub struct ReadOnly<T>(T);

impl<T> ReadOnly<T> {
    pub(crate) fn new(handle: T) -> Self {
        ReadOnly(handle)
    }
}

impl<T> std::ops::Deref for ReadOnly<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for ReadOnly<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReadOnly").field(&self.0).finish()
    }
}

/// Records a node forwarded during one call, waiting to be handed to its children.
pub(crate) struct Outputs<K, V> {
    pub(crate) records: Vec<Record<K, V>>,
    /// `(position in records when forwarded, child position, record)`.
    pub(crate) targeted: Vec<(usize, usize, Record<K, V>)>,
    /// Builds a child's own batch when some records were targeted (needs `Clone`, known only where
    /// `forward_to` was called).
    pub(crate) merge:
        Option<fn(&[Record<K, V>], &[(usize, usize, Record<K, V>)], usize) -> Vec<Record<K, V>>>,
}

impl<K, V> Default for Outputs<K, V> {
    fn default() -> Self {
        Outputs {
            records: Vec::new(),
            targeted: Vec::new(),
            merge: None,
        }
    }
}

impl<K, V> Outputs<K, V> {
    pub(crate) fn clear(&mut self) {
        self.records.clear();
        self.targeted.clear();
    }
}

fn merge_for_child<K: Clone, V: Clone>(
    records: &[Record<K, V>],
    targeted: &[(usize, usize, Record<K, V>)],
    child: usize,
) -> Vec<Record<K, V>> {
    let mut out = Vec::with_capacity(records.len());
    let mut next = 0;
    for (pos, c, r) in targeted {
        if *c != child {
            continue;
        }
        out.extend_from_slice(&records[next..*pos]);
        next = *pos;
        out.push(r.clone());
    }
    out.extend_from_slice(&records[next..]);
    out
}

/// The clocks of a task.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Clocks {
    pub(crate) stream_time: i64,
    pub(crate) wall_clock: i64,
}

/// The output parameter of a `#[batch_processor]` or `#[processor]` function: the processor's
/// [`Context`], named for what the function does with it (`out.forward(record)`). Its types are
/// the processor's output types.
pub type Emit<'a, K, V> = Context<'a, K, V>;

/// What a processor can do while it processes a batch: forward records (typed `Record<K, V>`),
/// reach its stores, read the clocks.
///
/// Forwarded records are handed to the children after the call returns, as one batch: a forwarded
/// batch stays a batch down to the sink.
pub struct Context<'a, K, V> {
    pub(crate) outputs: &'a mut Outputs<K, V>,
    pub(crate) node: &'a NodeInfo,
    pub(crate) txn: &'a (dyn RawTxn + 'a),
    pub(crate) clocks: Clocks,
    pub(crate) failures: &'a mut (dyn crate::policy::RecordFailures + 'a),
    /// The instance's global stores, when the topology has some and the runtime gave them.
    pub(crate) global: Option<GlobalView<'a>>,
}

impl<K, V> std::fmt::Debug for Context<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("node", &self.node.name)
            .finish_non_exhaustive()
    }
}

impl<'a, K: 'static, V: 'static> Context<'a, K, V> {
    /// Forwards a record to every child.
    pub fn forward(&mut self, record: Record<K, V>) {
        self.outputs.records.push(record);
    }

    /// Forwards records to every child, in order.
    pub fn forward_batch(&mut self, records: impl IntoIterator<Item = Record<K, V>>) {
        self.outputs.records.extend(records);
    }

    /// Forwards a record to the child named `child` only. A name that is not one of the
    /// processor's children is an [`Error::Config`] (a wiring mistake fails the batch, whatever
    /// the processing policy).
    pub fn forward_to(&mut self, child: &str, record: Record<K, V>) -> Result<()>
    where
        K: Clone,
        V: Clone,
    {
        let position = self
            .node
            .child_names
            .iter()
            .position(|c| &**c == child)
            // A wiring mistake, not bad data: it fails the batch whatever the processing policy.
            .ok_or_else(|| {
                Error::Config(format!(
                    "processor `{}` forwards to a child named `{child}`, which it does not have \
                     (children: {})",
                    self.node.name,
                    self.node
                        .child_names
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        self.outputs.merge = Some(merge_for_child::<K, V>);
        self.outputs
            .targeted
            .push((self.outputs.records.len(), position, record));
        Ok(())
    }

    /// The store named `name`, which this processor declared read-write. A store it declared
    /// [read-only](StoreSpec::read_only) (a table's) is an [`Error::Config`]: read it with
    /// [`read_store`](Self::read_store).
    pub fn store<SK: 'static, SV: 'static>(&self, name: &str) -> Result<KeyValueStore<'a, SK, SV>> {
        crate::__private::binder(self).bind_named(name)
    }

    /// The store named `name`, which this processor declared, read-only (whether it declared
    /// it read-only or read-write): how a hand-written processor reads a table's store,
    /// declared in its `stores()` with [`StoreSpec::read_only`].
    ///
    /// ```
    /// use kstreams::testing::TopologyTestDriver;
    /// use kstreams::{BatchProcessor, Context, Record, Result, StoreSpec, Topology};
    ///
    /// #[kstreams::store(name = "prices")]
    /// type Prices = kstreams::KeyValue<String, u64>;
    ///
    /// /// Each order's quantity times its item's price, from the table.
    /// #[derive(Clone)]
    /// struct Total;
    /// impl BatchProcessor<String, u64> for Total {
    ///     type OutKey = String;
    ///     type OutValue = u64;
    ///     fn stores(&self) -> Vec<StoreSpec> {
    ///         vec![<Prices as kstreams::store::StoreHandle>::spec().read_only()]
    ///     }
    ///     fn process_batch(&mut self, orders: &[Record<String, u64>], ctx: &mut Context<'_, String, u64>) -> Result<()> {
    ///         let prices = ctx.read_store::<String, u64>("prices")?;
    ///         let found = prices.get_batch(&orders.iter().map(|r| r.key.clone()).collect::<Vec<_>>())?;
    ///         for (r, price) in orders.iter().zip(found) {
    ///             ctx.forward(r.derive(r.key.clone(), r.value * price.unwrap_or(0)));
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let mut t = Topology::builder();
    /// let _prices = t.table::<Prices<'static>>("prices");
    /// let orders = t.source::<String, u64>("orders");
    /// let totals = t.add(Total, &orders);
    /// t.sink("totals", &totals);
    /// let mut driver = TopologyTestDriver::new(t.build()?)?;
    /// driver.pipe("prices", "apple".to_string(), Some(3u64))?;
    /// driver.pipe("orders", "apple".to_string(), 2u64)?;
    /// assert_eq!(driver.read_output::<String, u64>("totals")?[0].value, 6);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_store<SK: 'static, SV: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnly<KeyValueStore<'a, SK, SV>>> {
        crate::__private::binder(self)
            .read_named(name)
            .map(ReadOnly::new)
    }

    /// The window store named `name`, which this processor declared read-write (a spec made
    /// with [`StoreSpec::windowed`]).
    pub fn window_store<SK: 'static, SV: 'static>(
        &self,
        name: &str,
    ) -> Result<WindowStore<'a, SK, SV>> {
        let index = crate::__private::binder(self).writable_index_named(name)?;
        WindowStore::bind(self.txn, index)
    }

    /// The session store named `name`, which this processor declared read-write (a spec made
    /// with [`StoreSpec::sessions`]).
    pub fn session_store<SK: 'static, SV: 'static>(
        &self,
        name: &str,
    ) -> Result<SessionStore<'a, SK, SV>> {
        let index = crate::__private::binder(self).writable_index_named(name)?;
        SessionStore::bind(self.txn, index)
    }

    /// The global store `name` (a [`global_table`](crate::TopologyBuilder::global_table)'s),
    /// read-only: every global store of the instance is read in one read transaction per batch,
    /// a snapshot of what the global tables' topics held when the batch began (records piped to
    /// a global topic in the test driver are applied before the records piped after them). Any
    /// write answers [`Error::Config`]. Declare what you read with
    /// [`InitContext::require_global_store`].
    pub fn global_store<SK: 'static, SV: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnly<KeyValueStore<'a, SK, SV>>> {
        let (txn, index) = self.global_index(name)?;
        KeyValueStore::bind(txn, index).map(ReadOnly::new)
    }

    /// The global versioned store `name` (a versioned [`global_table`](
    /// crate::TopologyBuilder::global_table)'s), read-only, as [`global_store`](
    /// Self::global_store): reads as of a time with [`get_as_of`](
    /// crate::store::VersionedStore::get_as_of) and [`get_batch_as_of`](
    /// crate::store::VersionedStore::get_batch_as_of).
    pub fn global_versioned_store<SK: 'static, SV: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnly<crate::store::VersionedStore<'a, SK, SV>>> {
        let (txn, index) = self.global_index(name)?;
        crate::store::VersionedStore::bind(txn, index).map(ReadOnly::new)
    }

    fn global_index(&self, name: &str) -> Result<(&'a (dyn RawTxn + 'a), usize)> {
        let Some(global) = self.global else {
            return Err(Error::Config(format!(
                "processor `{}` reads the global store `{name}`, but this task has no global \
                 stores: the topology has no global table, or the runtime gave it none",
                self.node.name
            )));
        };
        let index = global
            .specs
            .iter()
            .position(|s| s.name() == name)
            .ok_or_else(|| {
                Error::Config(format!(
                    "processor `{}` reads the global store `{name}`, which the instance does not \
                     have (global stores: {})",
                    self.node.name,
                    global
                        .specs
                        .iter()
                        .map(|s| format!("`{}`", s.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        Ok((global.txn, index))
    }

    /// The versioned store named `name`, which this processor declared read-write (a spec made
    /// with [`StoreSpec::versioned`]). One it declared read-only (a versioned table's) is read
    /// with [`read_versioned_store`](Self::read_versioned_store).
    pub fn versioned_store<SK: 'static, SV: 'static>(
        &self,
        name: &str,
    ) -> Result<crate::store::VersionedStore<'a, SK, SV>> {
        let index = crate::__private::binder(self).writable_index_named(name)?;
        crate::store::VersionedStore::bind(self.txn, index)
    }

    /// The versioned store named `name`, which this processor declared, read-only (see
    /// [`read_store`](Self::read_store)): as of a time with [`get_as_of`](
    /// crate::store::VersionedStore::get_as_of) and [`get_batch_as_of`](
    /// crate::store::VersionedStore::get_batch_as_of).
    pub fn read_versioned_store<SK: 'static, SV: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnly<crate::store::VersionedStore<'a, SK, SV>>> {
        let (txn, index) = crate::__private::binder(self).read_index_named(name)?;
        crate::store::VersionedStore::bind(txn, index).map(ReadOnly::new)
    }

    /// The store of a `#[kstreams::store]` handle type, which this processor declared
    /// read-write.
    ///
    /// What a `#[batch_processor]` does for its `&mut` store parameters, for code that calls the
    /// function itself (see [`testing::run_plain`](crate::testing::run_plain)). A hand-written
    /// processor checks in `init` that it declared the store ([`InitContext::require_store`]).
    /// A store it declared read-only (a table's) is an [`Error::Config`]: bind it with
    /// [`read_store_handle`](Self::read_store_handle).
    pub fn store_handle<S: StoreHandle<'a>>(&self) -> Result<S> {
        // Of any kind, as `#[batch_processor]` binds its store parameters: a versioned or
        // windowed handle wraps the key-value handle of its own store.
        Ok(S::bind(
            crate::__private::binder(self).bind_any_named(S::NAME)?,
        ))
    }

    /// The store of a `#[kstreams::store]` handle type, which this processor declared, read-only:
    /// what a `#[batch_processor]` does for its `&` store parameters (a table's store).
    pub fn read_store_handle<S: StoreHandle<'a>>(&self) -> Result<ReadOnly<S>> {
        Ok(ReadOnly::new(S::bind(
            crate::__private::binder(self).read_any_named(S::NAME)?,
        )))
    }

    /// The task's stream time: the largest record timestamp it has seen (milliseconds), the
    /// records of this call included. A batch is cut at stream-time punctuations, so in a
    /// punctuation it is the punctuation's timestamp.
    pub fn stream_time(&self) -> i64 {
        self.clocks.stream_time
    }

    /// The wall-clock time of this batch (milliseconds since the epoch; the test driver's clock in
    /// tests).
    pub fn wall_clock_time(&self) -> i64 {
        self.clocks.wall_clock
    }

    /// This processor's node name.
    pub fn name(&self) -> &str {
        &self.node.name
    }

    /// Fails one input record without failing the rest of the batch.
    ///
    /// The record goes through the application's processing-error handler
    /// ([`OnBadRecord`](crate::OnBadRecord)): with `Fail` (the default) this returns the
    /// error, named with the processor and the record's origin, for you to return with `?` (the
    /// whole batch then fails and nothing of it stays); with `Skip` it is logged and counted, with
    /// `DeadLetter` its original bytes go to the dead-letter topic with the error in headers, and
    /// this returns `Ok(())` so the batch goes on.
    ///
    /// ```
    /// # use kstreams::{Context, Record, Result, Error};
    /// fn parse_all(records: &[Record<String, String>], ctx: &mut Context<'_, String, i64>) -> Result<()> {
    ///     for r in records {
    ///         match r.value.parse::<i64>() {
    ///             Ok(n) => ctx.forward(r.derive(r.key.clone(), n)),
    ///             Err(e) => ctx.fail_record(r, Error::processing(format!("not a number: {e}")))?,
    ///         }
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn fail_record<RK, RV>(&mut self, record: &Record<RK, RV>, error: Error) -> Result<()> {
        self.failures
            .fail_record(&self.node.name, record.origin.as_ref(), error)
    }

    /// How many records were forwarded so far in this call.
    pub fn forwarded(&self) -> usize {
        self.outputs.records.len() + self.outputs.targeted.len()
    }
}
