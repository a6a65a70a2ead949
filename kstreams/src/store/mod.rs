//! State stores: typed key-value handles over LMDB or memory, one write transaction per batch.
//!
//! Owns: [`StoreSpec`] (what a store is: name, types, serdes, backend, changelog), the typed handle
//! [`KeyValueStore`], and the per-task [`StateStores`] that open the backends, run one transaction per
//! batch and record in that same transaction the input position the batch reached (invariant 5).
//! It does not know about Kafka: changelog writes are collected here and produced by the runtime.
//!
//! Keys are ordered by their serialized bytes (as in LMDB and Kafka Streams' RocksDB stores): the
//! built-in big-endian serdes order unsigned integers and strings naturally. Keys may be of any
//! size: past LMDB's 511-byte limit they are stored under a prefix and a hash (see
//! `long_keys.rs`), with the same order and the same answers as the in-memory backend; the
//! changelog always carries the real key bytes.
//!
//! Values: a value that serializes to null (`None` of an `Option`) is a delete, written to the
//! changelog as a tombstone, as in Kafka; so a store never holds a null value. `()` is the
//! exception: a `KeyValue<K, ()>` is a set of keys, its unit values stored and logged as empty
//! bytes.
//!
//! Windowed stores: a [`WindowStore`] (values by key and window start) and a [`SessionStore`]
//! (values by key and session) are ordinary stores underneath, with the layout, retention and
//! Kafka Streams-compatible changelog keys of `store/window.rs`; their kind, window size and
//! retention are in their [`StoreSpec`] ([`StoreSpec::windowed`], [`StoreSpec::sessions`]).
//!
//! Versioned stores: a [`VersionedStore`] (Kafka Streams' KIP-889: a bounded history of values
//! per key, read as of a timestamp) is an ordinary store underneath too, with the layout and
//! purge of `store/versioned.rs`; its history retention is in its [`StoreSpec`]
//! ([`StoreSpec::versioned`]), and its changelog records carry the version's timestamp
//! ([`ChangelogWrite::timestamp`]).
//!
//! A table's store has its source topic as its changelog ([`StoreSpec::changelog_from_source`]):
//! its writes are not logged and it has no changelog topic of its own.

mod lmdb;
mod long_keys;
mod memory;
mod reader;
mod session;
mod versioned;
mod window;

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Part, Result};
use crate::serde::{DefaultSerde, Serde};

pub use lmdb::LmdbOptions;
pub use reader::StoreReader;
pub use session::{SessionStore, SessionWindow};
pub use versioned::{VersionedPut, VersionedRecord, VersionedStore};
pub use window::{PURGE_LIMIT, WindowStore, WindowWrite};
pub(crate) use window::{live_entries, live_raw_entries};

/// How much longer than a windowed store's retention its changelog topic keeps records
/// (`retention.ms` = retention + this): Kafka Streams' default
/// `windowstore.changelog.additional.retention.ms`, one day.
pub const WINDOW_CHANGELOG_ADDITIONAL_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

/// What kind of store a [`StoreSpec`] declares. Times are milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StoreKind {
    /// A key-value store ([`KeyValueStore`]).
    #[default]
    KeyValue,
    /// A window store ([`WindowStore`]): windows `[start, start + size_ms)`, expired once their
    /// start is at or before `stream time - retention_ms`.
    Window {
        /// The window size.
        size_ms: i64,
        /// How long a window is kept, counted from its start.
        retention_ms: i64,
    },
    /// A session store ([`SessionStore`]): sessions expired once their end is at or before
    /// `stream time - retention_ms`.
    Session {
        /// How long a session is kept, counted from its end.
        retention_ms: i64,
    },
    /// A versioned key-value store ([`VersionedStore`]): reads as of a time before `observed
    /// stream time - history_ms` see only the latest version; puts before it are refused.
    Versioned {
        /// The history retention.
        history_ms: i64,
    },
}

impl StoreKind {
    fn describe(&self) -> &'static str {
        match self {
            StoreKind::KeyValue => "key-value store",
            StoreKind::Window { .. } => "window store",
            StoreKind::Session { .. } => "session store",
            StoreKind::Versioned { .. } => "versioned store",
        }
    }
}

fn millis(name: &str, what: &str, d: std::time::Duration) -> Result<i64> {
    i64::try_from(d.as_millis()).map_err(|_| {
        Error::Store(format!(
            "store `{name}`: the {what} {d:?} does not fit in i64 milliseconds"
        ))
    })
}

/// Where a store keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// An LMDB environment per task under the state directory (the default).
    #[default]
    Lmdb,
    /// A sorted map in memory, with the same transactional semantics; rebuilt from the changelog
    /// after a restart.
    InMemory,
}

/// The serdes of a store's keys and values.
pub struct StoreSerdes<K, V> {
    key: Box<dyn Serde<K>>,
    value: Box<dyn Serde<V>>,
}

impl<K, V> StoreSerdes<K, V> {
    /// The key serde.
    pub fn key_serde(&self) -> &dyn Serde<K> {
        &*self.key
    }

    /// The value serde.
    pub fn value_serde(&self) -> &dyn Serde<V> {
        &*self.value
    }
}

impl<K, V> fmt::Debug for StoreSerdes<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSerdes").finish_non_exhaustive()
    }
}

/// A store's declaration: name, key and value types with their serdes, backend and changelog.
///
/// Processors declare the stores they use; the topology collects the declarations, so a store is
/// never registered by a string in a second place. Two declarations of one name must agree.
///
/// ```
/// use kstreams::store::{Backend, StoreSpec};
/// let spec = StoreSpec::new::<String, u64>("word-counts").backend(Backend::InMemory);
/// assert_eq!(spec.name(), "word-counts");
/// assert!(spec.changelog_enabled());
/// ```
#[derive(Clone)]
pub struct StoreSpec {
    name: Arc<str>,
    backend: Backend,
    changelog: bool,
    source_changelog: Option<Arc<str>>,
    kind: StoreKind,
    /// Whether each value is stored after an 8-byte timestamp (Kafka Streams'
    /// `ValueAndTimestamp`): the sliding-window operator's window store.
    timestamped_values: bool,
    dead_letters_late: bool,
    read_only: bool,
    key_type: (TypeId, &'static str),
    value_type: (TypeId, &'static str),
    serdes: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSpec")
            .field("name", &self.name)
            .field("backend", &self.backend)
            .field("changelog", &self.changelog)
            .field("source_changelog", &self.source_changelog)
            .field("kind", &self.kind)
            .field("timestamped_values", &self.timestamped_values)
            .field("read_only", &self.read_only)
            .field("key", &self.key_type.1)
            .field("value", &self.value_type.1)
            .finish()
    }
}

impl StoreSpec {
    /// A store of `K` to `V` with their default serdes, on LMDB, with a changelog.
    pub fn new<K: DefaultSerde + Send, V: DefaultSerde + Send>(name: &str) -> Self {
        Self::with_serdes::<K, V>(name, K::Serde::default(), V::Serde::default())
    }

    /// A store of `K` to `V` with the given serdes.
    pub fn with_serdes<K: 'static + Send, V: 'static + Send>(
        name: &str,
        key: impl Serde<K>,
        value: impl Serde<V>,
    ) -> Self {
        StoreSpec {
            name: name.into(),
            backend: Backend::default(),
            changelog: true,
            source_changelog: None,
            kind: StoreKind::KeyValue,
            timestamped_values: false,
            dead_letters_late: false,
            read_only: false,
            key_type: (TypeId::of::<K>(), std::any::type_name::<K>()),
            value_type: (TypeId::of::<V>(), std::any::type_name::<V>()),
            serdes: Arc::new(StoreSerdes::<K, V> {
                key: Box::new(key),
                value: Box::new(value),
            }),
        }
    }

    /// The same store on another backend.
    #[must_use]
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The same store with its changelog on or off.
    #[must_use]
    pub fn changelog(mut self, enabled: bool) -> Self {
        self.changelog = enabled;
        self
    }

    /// The same store with `topic`, the topic it is materialized from, as its changelog (Kafka
    /// Streams' source-topic optimization for tables): its writes are not logged, it has no
    /// changelog topic of its own, and the runtime restores it from `topic` (up to the group's
    /// committed offset: what follows is input). [`changelog_enabled`](Self::changelog_enabled)
    /// is then `false` and [`changelog_topic_config`](Self::changelog_topic_config) empty,
    /// whatever [`changelog`](Self::changelog) says.
    ///
    /// ```
    /// use kstreams::store::StoreSpec;
    /// let spec = StoreSpec::new::<String, u64>("prices").changelog_from_source("prices-topic");
    /// assert_eq!(spec.source_changelog(), Some("prices-topic"));
    /// assert!(!spec.changelog_enabled());
    /// assert!(spec.changelog_topic_config().is_empty());
    /// ```
    #[must_use]
    pub fn changelog_from_source(mut self, topic: &str) -> Self {
        self.source_changelog = Some(topic.into());
        self
    }

    /// The same store, taken read-only by the processor that lists it in its
    /// [`stores()`](crate::BatchProcessor::stores): what a `&Prices` parameter of a
    /// `#[batch_processor]` declares. Access is the declaring processor's, not the store's: two
    /// declarations that differ only in it are the same store.
    ///
    /// A processor that declares a store read-only binds it with [`Context::read_store`](
    /// crate::Context::read_store), [`read_versioned_store`](crate::Context::read_versioned_store)
    /// or [`read_store_handle`](crate::Context::read_store_handle); the writable binds refuse it.
    /// A table's store (a [`source_changelog`](Self::source_changelog)) must be declared so by
    /// every processor but the table's own: [`TopologyBuilder::build`](
    /// crate::TopologyBuilder::build) refuses one that takes it read-write.
    ///
    /// ```
    /// use kstreams::store::StoreSpec;
    /// let spec = StoreSpec::new::<String, u64>("prices").read_only();
    /// assert!(spec.is_read_only());
    /// ```
    #[must_use]
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Whether the declaring processor only reads the store ([`read_only`](Self::read_only)).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The declaration without the declaring processor's access (the topology's own).
    pub(crate) fn without_access(mut self) -> Self {
        self.read_only = false;
        self
    }

    /// The source topic that is this store's changelog ([`changelog_from_source`](
    /// Self::changelog_from_source)), if any.
    pub fn source_changelog(&self) -> Option<&str> {
        self.source_changelog.as_deref()
    }

    /// The same store as a window store of windows `size` long, kept for `retention` from their
    /// start (in Kafka Streams, a windowed aggregation's store keeps `size + grace` by default).
    /// Fails when `size` is zero or `retention` is shorter than `size`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams::store::{StoreKind, StoreSpec};
    /// let spec = StoreSpec::new::<String, u64>("counts")
    ///     .windowed(Duration::from_secs(60), Duration::from_secs(65))?;
    /// assert_eq!(spec.kind(), StoreKind::Window { size_ms: 60_000, retention_ms: 65_000 });
    /// assert!(StoreSpec::new::<String, u64>("bad")
    ///     .windowed(Duration::from_secs(60), Duration::from_secs(1))
    ///     .is_err());
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn windowed(
        mut self,
        size: std::time::Duration,
        retention: std::time::Duration,
    ) -> Result<Self> {
        let size_ms = millis(&self.name, "window size", size)?;
        let retention_ms = millis(&self.name, "retention", retention)?;
        if size_ms <= 0 {
            return Err(Error::Store(format!(
                "window store `{}`: the window size must be at least 1 ms, not {size:?}",
                self.name
            )));
        }
        if retention_ms < size_ms {
            return Err(Error::Store(format!(
                "window store `{}`: the retention ({retention:?}) must be at least the window \
                 size ({size:?})",
                self.name
            )));
        }
        self.kind = StoreKind::Window {
            size_ms,
            retention_ms,
        };
        Ok(self)
    }

    /// The same store as a session store whose sessions are kept for `retention` from their end
    /// (in Kafka Streams, a session aggregation's store keeps `gap + grace` by default).
    pub fn sessions(mut self, retention: std::time::Duration) -> Result<Self> {
        let retention_ms = millis(&self.name, "retention", retention)?;
        self.kind = StoreKind::Session { retention_ms };
        Ok(self)
    }

    /// The same store as a versioned key-value store ([`VersionedStore`], Kafka Streams'
    /// KIP-889) keeping `history` of past versions: reads as of a time before `observed stream
    /// time - history` see only the latest version (always kept), and puts before it are refused.
    /// Fails when `history` does not fit in i64 milliseconds.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams::store::{StoreKind, StoreSpec};
    /// let spec = StoreSpec::new::<String, u64>("prices").versioned(Duration::from_secs(86_400))?;
    /// assert_eq!(spec.kind(), StoreKind::Versioned { history_ms: 86_400_000 });
    /// assert!(StoreSpec::new::<String, u64>("bad").versioned(Duration::MAX).is_err());
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn versioned(mut self, history: std::time::Duration) -> Result<Self> {
        let history_ms = millis(&self.name, "history retention", history)?;
        self.kind = StoreKind::Versioned { history_ms };
        Ok(self)
    }

    /// [`versioned`](Self::versioned) from milliseconds a macro validated (a negative history is
    /// taken as 0).
    pub(crate) fn versioned_ms(mut self, history_ms: i64) -> Self {
        self.kind = StoreKind::Versioned {
            history_ms: history_ms.max(0),
        };
        self
    }

    /// The same store as the window or session store that `windowing` keeps (see
    /// [`Windowing::store_spec`](crate::window::Windowing::store_spec)): a window store of the
    /// window size (the time difference for sliding windows), or a session store, with the
    /// windowing's retention (validated when the windowing was made).
    pub(crate) fn windowing(mut self, windowing: &crate::window::Windowing) -> Self {
        use crate::window::Windows;
        let retention_ms = windowing.retention_ms();
        self.kind = match windowing.windows() {
            Windows::Time(w) => StoreKind::Window {
                size_ms: w.size_ms(),
                retention_ms: retention_ms.max(w.size_ms()),
            },
            Windows::Sliding(w) => StoreKind::Window {
                size_ms: w.difference_ms(),
                retention_ms: retention_ms.max(w.difference_ms()),
            },
            Windows::Session(_) => StoreKind::Session { retention_ms },
        };
        // The sliding operator writes `put_timestamped` (window/sliding.rs).
        self.timestamped_values = matches!(windowing.windows(), Windows::Sliding(_));
        self.dead_letters_late = windowing.late_policy() == crate::window::OnLate::DeadLetter;
        self
    }

    /// Whether the store's windowed operator dead-letters late records (the application then
    /// needs a dead-letter topic).
    pub(crate) fn dead_letters_late(&self) -> bool {
        self.dead_letters_late
    }

    /// The same store with its operator's late records dead-lettered or not (the stream-stream
    /// join's window stores: `JoinWindows::on_late`).
    pub(crate) fn with_late_dead_letters(mut self, on: bool) -> Self {
        self.dead_letters_late = on;
        self
    }

    /// The store's kind: key-value, window or session.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// Whether the store keeps a timestamp with each value (8 big-endian bytes, then the
    /// value's bytes: Kafka Streams' `ValueAndTimestamp`, as its `TimestampedWindowStore`). The
    /// window store of a sliding-window aggregation does (its timestamp is the largest record
    /// timestamp of the window); reads through queries strip it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams::StoreSpec;
    /// use kstreams::window::{SlidingWindows, TimeWindows, Windowing, Windows};
    /// let spec = || StoreSpec::new::<String, u64>("counts");
    /// let (ten, one) = (Duration::from_secs(10), Duration::from_secs(1));
    /// let sliding = Windowing::new(Windows::Sliding(SlidingWindows::new(ten, one)?));
    /// assert!(sliding.store_spec(spec()).timestamped_values());
    /// let tumbling = Windowing::new(Windows::Time(TimeWindows::tumbling(ten, one)?));
    /// assert!(!tumbling.store_spec(spec()).timestamped_values());
    /// assert!(!spec().timestamped_values());
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn timestamped_values(&self) -> bool {
        self.timestamped_values
    }

    /// The configs of the store's changelog topic: `cleanup.policy=compact` for a key-value
    /// store; for window and session stores `cleanup.policy=compact,delete` with `retention.ms`
    /// = the store's retention + [`WINDOW_CHANGELOG_ADDITIONAL_RETENTION_MS`], as Kafka Streams'
    /// window changelogs; for a versioned store `cleanup.policy=compact` with
    /// `min.compaction.lag.ms` = the history + [`WINDOW_CHANGELOG_ADDITIONAL_RETENTION_MS`], as
    /// Kafka Streams' versioned changelogs (compaction keeps the history the store can serve).
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams::store::StoreSpec;
    /// let spec = StoreSpec::new::<String, u64>("counts")
    ///     .windowed(Duration::from_secs(60), Duration::from_secs(60))?;
    /// assert_eq!(
    ///     spec.changelog_topic_config(),
    ///     vec![("cleanup.policy", "compact,delete".to_owned()), ("retention.ms", "86460000".to_owned())]
    /// );
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    ///
    /// A store whose changelog is its source topic ([`changelog_from_source`](
    /// Self::changelog_from_source)) has no changelog topic to configure: the list is empty.
    pub fn changelog_topic_config(&self) -> Vec<(&'static str, String)> {
        if self.source_changelog.is_some() {
            return Vec::new();
        }
        let retention = match self.kind {
            StoreKind::KeyValue => return vec![("cleanup.policy", "compact".to_owned())],
            StoreKind::Versioned { history_ms } => {
                return vec![
                    ("cleanup.policy", "compact".to_owned()),
                    (
                        "min.compaction.lag.ms",
                        history_ms
                            .saturating_add(WINDOW_CHANGELOG_ADDITIONAL_RETENTION_MS)
                            .to_string(),
                    ),
                ];
            }
            StoreKind::Window { retention_ms, .. } | StoreKind::Session { retention_ms } => {
                retention_ms
            }
        };
        vec![
            ("cleanup.policy", "compact,delete".to_owned()),
            (
                "retention.ms",
                retention
                    .saturating_add(WINDOW_CHANGELOG_ADDITIONAL_RETENTION_MS)
                    .to_string(),
            ),
        ]
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store's backend.
    ///
    /// Named `get_backend` because [`backend`](Self::backend) is the builder, as
    /// `std::process::Command` has `current_dir(..)` and `get_current_dir()`: builders take the
    /// plain names, a getter whose plain name a builder has takes `get_` (a flag's, `_enabled`:
    /// [`changelog_enabled`](Self::changelog_enabled)), and the other getters are plain
    /// ([`name`](Self::name), [`kind`](Self::kind)).
    ///
    /// ```
    /// use kstreams::{Backend, StoreSpec};
    /// let spec = StoreSpec::new::<String, u64>("counts");
    /// assert_eq!(spec.get_backend(), Backend::Lmdb);
    /// assert_eq!(spec.backend(Backend::InMemory).get_backend(), Backend::InMemory);
    /// ```
    pub fn get_backend(&self) -> Backend {
        self.backend
    }

    /// Whether writes go to a changelog topic of the store's own: `false` when the changelog is
    /// off, and for a store whose changelog is its source topic ([`source_changelog`](
    /// Self::source_changelog)).
    pub fn changelog_enabled(&self) -> bool {
        self.changelog && self.source_changelog.is_none()
    }

    /// The names of the key and value types.
    pub fn type_names(&self) -> (&'static str, &'static str) {
        (self.key_type.1, self.value_type.1)
    }

    /// Whether two declarations describe the same store (name, types, backend, changelog, source
    /// changelog, kind, timestamped values; not the declaring processor's access).
    pub(crate) fn same_as(&self, other: &StoreSpec) -> bool {
        self.name == other.name
            && self.key_type.0 == other.key_type.0
            && self.value_type.0 == other.value_type.0
            && self.backend == other.backend
            && self.changelog == other.changelog
            && self.source_changelog == other.source_changelog
            && self.kind == other.kind
            && self.timestamped_values == other.timestamped_values
    }

    pub(crate) fn serdes<K: 'static, V: 'static>(&self) -> Result<&StoreSerdes<K, V>> {
        self.serdes
            .downcast_ref::<StoreSerdes<K, V>>()
            .ok_or_else(|| {
                Error::Store(format!(
                    "store `{}` holds `{}` -> `{}`, not `{}` -> `{}`",
                    self.name,
                    self.key_type.1,
                    self.value_type.1,
                    std::any::type_name::<K>(),
                    std::any::type_name::<V>()
                ))
            })
    }
}

/// The type a `#[kstreams::store]` alias names: a key-value store of `K` to `V`.
///
/// It is only a marker: `#[store]` turns `type Counts = KeyValue<String, u64>;` into a handle type
/// `Counts<'t>` that derefs to [`KeyValueStore<'t, String, u64>`](KeyValueStore) and implements
/// [`StoreHandle`].
pub struct KeyValue<K, V>(PhantomData<fn() -> (K, V)>);

impl<K, V> fmt::Debug for KeyValue<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyValue<{}, {}>",
            std::any::type_name::<K>(),
            std::any::type_name::<V>()
        )
    }
}

/// The type a `#[kstreams::store(.., history = "..")]` alias names: a versioned key-value store
/// of `K` to `V` (Kafka Streams' KIP-889: a bounded history per key, read as of a timestamp).
///
/// It is only a marker: `#[store]` turns `type Prices = VersionedKeyValue<String, u64>;` into a
/// handle type `Prices<'t>` that derefs to
/// [`VersionedStore<'t, String, u64>`](VersionedStore) and implements [`StoreHandle`]; the
/// history retention is required (`history = "1d"`).
pub struct VersionedKeyValue<K, V>(PhantomData<fn() -> (K, V)>);

impl<K, V> fmt::Debug for VersionedKeyValue<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VersionedKeyValue<{}, {}>",
            std::any::type_name::<K>(),
            std::any::type_name::<V>()
        )
    }
}

/// A typed store handle declared with `#[kstreams::store]`: a store's name and types in one type.
///
/// A `#[batch_processor]` or `#[processor]` function that takes `&mut Counts` (read and write) or
/// `&Counts` (read only) declares the store (through [`spec`](Self::spec), made
/// [`read_only`](StoreSpec::read_only) for `&`) and gets it bound to the batch's transaction
/// (through [`bind`](Self::bind)); the store's name is written once, in the `#[store]` attribute.
///
/// ```
/// use kstreams::store::StoreHandle;
///
/// #[kstreams::store(name = "word-counts", backend = "in_memory")]
/// type WordCounts = kstreams::KeyValue<String, u64>;
///
/// assert_eq!(<WordCounts as StoreHandle>::NAME, "word-counts");
/// assert_eq!(<WordCounts as StoreHandle>::spec().get_backend(), kstreams::Backend::InMemory);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a store: declare it with `#[kstreams::store]`",
    label = "not a store handle",
    note = "after its records, a processor function takes store handles declared with `#[kstreams::store(name = \"...\")] type Name = kstreams::KeyValue<K, V>;`, `&mut Name` to read and write or `&Name` to read only, then optionally `&mut Emit<K, V>`"
)]
pub trait StoreHandle<'t>: Sized {
    /// The store's name.
    const NAME: &'static str;
    /// The key type.
    type Key: 'static;
    /// The value type.
    type Value: 'static;
    /// The store's declaration: name, types, serdes, backend, changelog.
    fn spec() -> StoreSpec;
    /// Wraps the typed handle of this store in the current transaction.
    fn bind(store: KeyValueStore<'t, Self::Key, Self::Value>) -> Self;
}

/// A write to a store, as it goes to the store's changelog topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogWrite {
    /// The store's index in its task.
    pub store: usize,
    /// The key bytes.
    pub key: Vec<u8>,
    /// The value bytes; `None` for a delete (a tombstone).
    pub value: Option<Vec<u8>>,
    /// The record's timestamp, when the store gives one: a versioned store's writes carry the
    /// version's timestamp (Kafka Streams' versioned changelog). `None`: the runtime's (the
    /// task's stream time).
    pub timestamp: Option<i64>,
}

/// Byte-level access to the stores of one open transaction. Not public: handles are typed.
pub(crate) trait RawTxn {
    fn store_spec(&self, store: usize) -> &StoreSpec;
    fn get(
        &self,
        store: usize,
        key: &[u8],
        f: &mut dyn FnMut(Option<&[u8]>) -> Result<()>,
    ) -> Result<()>;
    fn put(&self, store: usize, key: &[u8], value: &[u8]) -> Result<()>;
    /// [`put`](Self::put) of bytes the caller gives away: a transaction that logs the write
    /// keeps them as its changelog record instead of copying them.
    fn put_owned(&self, store: usize, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.put(store, &key, &value)
    }
    fn delete(&self, store: usize, key: &[u8]) -> Result<()>;
    /// Writes (`Some`) or deletes (`None`) without a changelog write (windowed stores log their
    /// own keys with [`log`](Self::log)).
    fn put_unlogged(&self, store: usize, key: &[u8], value: Option<&[u8]>) -> Result<()>;
    /// Queues a changelog write for the store (nothing when its changelog is off).
    fn log(&self, store: usize, key: &[u8], value: Option<&[u8]>) -> Result<()>;
    /// [`log`](Self::log) with the changelog record's timestamp (versioned stores). The default
    /// drops the timestamp: only a transaction that can write overrides it.
    fn log_at(
        &self,
        store: usize,
        key: &[u8],
        value: Option<&[u8]>,
        timestamp: Option<i64>,
    ) -> Result<()> {
        let _ = timestamp;
        self.log(store, key, value)
    }
    /// Calls `f` on up to `limit` entries in key order within the bounds.
    fn scan(
        &self,
        store: usize,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
        f: &mut dyn FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()>;
}

/// A form of a store key `K` that lookups and deletes accept: `K` itself, and borrowed forms of the
/// built-in key types (`str` and `&str` for `String`, `[u8]` and `&[u8]` for `Vec<u8>`).
///
/// The key is serialized by `K`'s serde, so a borrowed form always finds what `K` stored; a form
/// that is not a `K` is turned into one first ([`KeyForm::Owned`]). Implement it for your own
/// borrowed key types the same way.
///
/// ```
/// use kstreams::store::{StateStores, StoreSpec};
/// let mut stores = StateStores::in_memory(vec![StoreSpec::new::<String, u64>("counts")])?;
/// stores.transaction(|txn| {
///     let mut counts = txn.store::<String, u64>("counts")?;
///     counts.put(&"alice".to_owned(), &3)?;
///     assert_eq!(counts.get("alice")?, Some(3));
///     assert_eq!(counts.get_batch(&["alice", "bob"])?, vec![Some(3), None]);
///     counts.delete("alice")?;
///     assert_eq!(counts.get(&"alice".to_owned())?, None);
///     Ok(())
/// })?;
/// # Ok::<(), kstreams::Error>(())
/// ```
pub trait AsKey<K> {
    /// This key as a `K`, borrowed when it is one.
    fn as_key(&self) -> KeyForm<'_, K>;
}

/// A store key, borrowed or made from a borrowed form; see [`AsKey`].
#[derive(Debug)]
pub enum KeyForm<'a, K> {
    /// The key itself.
    Borrowed(&'a K),
    /// A key made from a borrowed form.
    Owned(K),
}

impl<K> std::ops::Deref for KeyForm<'_, K> {
    type Target = K;
    fn deref(&self) -> &K {
        match self {
            KeyForm::Borrowed(k) => k,
            KeyForm::Owned(k) => k,
        }
    }
}

impl<K> AsKey<K> for K {
    fn as_key(&self) -> KeyForm<'_, K> {
        KeyForm::Borrowed(self)
    }
}

impl AsKey<String> for str {
    fn as_key(&self) -> KeyForm<'_, String> {
        KeyForm::Owned(self.to_owned())
    }
}

impl AsKey<String> for &str {
    fn as_key(&self) -> KeyForm<'_, String> {
        KeyForm::Owned((*self).to_owned())
    }
}

impl AsKey<Vec<u8>> for [u8] {
    fn as_key(&self) -> KeyForm<'_, Vec<u8>> {
        KeyForm::Owned(self.to_vec())
    }
}

impl AsKey<Vec<u8>> for &[u8] {
    fn as_key(&self) -> KeyForm<'_, Vec<u8>> {
        KeyForm::Owned(self.to_vec())
    }
}

/// A typed key-value store, bound to the current batch's transaction.
///
/// Every write of a batch commits in one transaction with the input position the batch reached;
/// when the batch fails, none of its writes stay. The batch forms are the fast path: one call per
/// batch instead of one per record. Reads take `&self` and writes `&mut self`, so a handle held by
/// shared reference only reads (a processor's `&Prices` parameter: a table's store).
///
/// ```
/// use kstreams::store::{StateStores, StoreSpec};
/// let mut stores = StateStores::in_memory(vec![StoreSpec::new::<String, u64>("counts")])?;
/// stores.transaction(|txn| {
///     let mut counts = txn.store::<String, u64>("counts")?;
///     counts.put_batch(&[("a".into(), 1), ("b".into(), 2)])?;
///     assert_eq!(counts.get_batch(&["b", "z"])?, vec![Some(2), None]);
///     Ok(())
/// })?;
/// # Ok::<(), kstreams::Error>(())
/// ```
pub struct KeyValueStore<'t, K, V> {
    txn: &'t (dyn RawTxn + 't),
    store: usize,
    serdes: &'t StoreSerdes<K, V>,
}

impl<K, V> fmt::Debug for KeyValueStore<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValueStore")
            .field("name", &self.txn.store_spec(self.store).name())
            .finish_non_exhaustive()
    }
}

impl<'t, K: 'static, V: 'static> KeyValueStore<'t, K, V> {
    pub(crate) fn bind(txn: &'t (dyn RawTxn + 't), store: usize) -> Result<Self> {
        let spec = txn.store_spec(store);
        if spec.kind != StoreKind::KeyValue {
            return Err(Error::Store(format!(
                "store `{}` is a {}, not a key-value store",
                spec.name,
                spec.kind.describe()
            )));
        }
        Self::bind_any(txn, store)
    }

    /// The transaction and store index this handle reads (to bind a window or session store
    /// over the same store).
    pub(crate) fn raw_parts(&self) -> (&'t (dyn RawTxn + 't), usize) {
        (self.txn, self.store)
    }

    /// The typed byte access of any kind of store (windowed stores are built on it).
    pub(crate) fn bind_any(txn: &'t (dyn RawTxn + 't), store: usize) -> Result<Self> {
        let serdes = txn.store_spec(store).serdes::<K, V>()?;
        Ok(KeyValueStore { txn, store, serdes })
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        self.txn.store_spec(self.store).name()
    }

    fn key_bytes(&self, key: &K) -> Result<Vec<u8>> {
        match self.serdes.key.serialize(key) {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(self.serialize_error(
                Part::Key,
                crate::error::SerdeError::new("store keys cannot be null"),
            )),
            Err(source) => Err(self.serialize_error(Part::Key, source)),
        }
    }

    /// The value's bytes; `None` when it serializes to null (a delete). A `()` value is the
    /// exception: its serde writes null (a `()` key is Kafka's null key), but a
    /// `KeyValue<K, ()>` is a set of keys, so a unit value is stored, and logged, as empty bytes.
    fn value_bytes(&self, value: &V) -> Result<Option<Vec<u8>>> {
        let bytes = self
            .serdes
            .value
            .serialize(value)
            .map_err(|source| self.serialize_error(Part::Value, source))?;
        if bytes.is_none() && core::any::TypeId::of::<V>() == core::any::TypeId::of::<()>() {
            return Ok(Some(Vec::new()));
        }
        Ok(bytes)
    }

    fn serialize_error(&self, part: Part, source: crate::error::SerdeError) -> Error {
        Error::StoreSerialize {
            store: self.name().to_owned(),
            part,
            source,
        }
    }

    fn read_value(&self, bytes: &[u8]) -> Result<V> {
        self.serdes
            .value
            .deserialize(Some(bytes))
            .map_err(|source| Error::StoreCorrupt {
                store: self.name().to_owned(),
                part: Part::Value,
                source,
            })
    }

    fn read_key(&self, bytes: &[u8]) -> Result<K> {
        self.serdes
            .key
            .deserialize(Some(bytes))
            .map_err(|source| Error::StoreCorrupt {
                store: self.name().to_owned(),
                part: Part::Key,
                source,
            })
    }

    /// The value of `key`, or `None`.
    ///
    /// `key` is a `&K` or a borrowed form of it (see [`AsKey`]): `counts.get("alice")` on a
    /// `String` key.
    pub fn get<Q: AsKey<K> + ?Sized>(&self, key: &Q) -> Result<Option<V>> {
        let k = self.key_bytes(&key.as_key())?;
        let mut out = None;
        self.txn.get(self.store, &k, &mut |v| {
            out = v.map(|b| self.read_value(b)).transpose()?;
            Ok(())
        })?;
        Ok(out)
    }

    /// Sets `key` to `value`.
    ///
    /// A value that serializes to null (`None` of an `Option<T>` value) is a delete, as a
    /// null value is in Kafka: the key is removed, the changelog gets a tombstone, and
    /// [`get`](Self::get) then returns `None`.
    pub fn put(&mut self, key: &K, value: &V) -> Result<()> {
        let k = self.key_bytes(key)?;
        match self.value_bytes(value)? {
            Some(v) => self.txn.put_owned(self.store, k, v),
            None => self.txn.delete(self.store, &k),
        }
    }

    /// Removes `key` (nothing happens when it is absent); `key` is a `&K` or a borrowed form of it.
    pub fn delete<Q: AsKey<K> + ?Sized>(&mut self, key: &Q) -> Result<()> {
        let k = self.key_bytes(&key.as_key())?;
        self.txn.delete(self.store, &k)
    }

    /// One answer per key, in the order of `keys`; `None` for a missing key.
    ///
    /// `keys` is a slice of `K` or of a borrowed form of it: `get_batch(&["a", "b"])` on a
    /// `String` key.
    pub fn get_batch<Q: AsKey<K>>(&self, keys: &[Q]) -> Result<Vec<Option<V>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let k = self.key_bytes(&key.as_key())?;
            self.txn.get(self.store, &k, &mut |v| {
                out.push(v.map(|b| self.read_value(b)).transpose()?);
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// Applies the puts in the order given (the last put of a key wins). A value that serializes
    /// to null is a delete, as in [`put`](Self::put).
    pub fn put_batch(&mut self, entries: &[(K, V)]) -> Result<()> {
        for (k, v) in entries {
            self.put(k, v)?;
        }
        Ok(())
    }

    /// Applies puts (`Some`) and deletes (`None`) in the order given: a put then a delete of one key
    /// leaves it deleted. A `Some` value that serializes to null is a delete too, as in
    /// [`put`](Self::put).
    pub fn write_batch(&mut self, entries: &[(K, Option<V>)]) -> Result<()> {
        for (k, v) in entries {
            match v {
                Some(v) => self.put(k, v)?,
                None => self.delete(k)?,
            }
        }
        Ok(())
    }

    /// Removes every key given (a slice of `K` or of a borrowed form of it).
    pub fn delete_batch<Q: AsKey<K>>(&mut self, keys: &[Q]) -> Result<()> {
        for k in keys {
            self.delete(k)?;
        }
        Ok(())
    }

    /// The entries whose keys lie in `range`, in key order, read lazily in chunks (so the store may
    /// be written between two items).
    ///
    /// Key order is the order of the serialized key bytes, for keys of any size and on both
    /// backends. (On LMDB, keys over 479 bytes that share their first 479 bytes are sorted in
    /// memory when a scan reaches them: many such keys make each chunk read all of them.)
    pub fn range<R: RangeBounds<K>>(&self, range: R) -> Result<Iter<'t, K, V>> {
        let bound = |b: Bound<&K>| -> Result<Bound<Vec<u8>>> {
            Ok(match b {
                Bound::Included(k) => Bound::Included(self.key_bytes(k)?),
                Bound::Excluded(k) => Bound::Excluded(self.key_bytes(k)?),
                Bound::Unbounded => Bound::Unbounded,
            })
        };
        Ok(Iter {
            store: KeyValueStore {
                txn: self.txn,
                store: self.store,
                serdes: self.serdes,
            },
            lower: bound(range.start_bound())?,
            upper: bound(range.end_bound())?,
            buffer: VecDeque::new(),
            done: false,
        })
    }

    /// Every entry, in key order (see [`range`](Self::range)).
    pub fn iter(&self) -> Result<Iter<'t, K, V>> {
        self.range::<(Bound<K>, Bound<K>)>((Bound::Unbounded, Bound::Unbounded))
    }
}

/// An iterator over a store's entries in key order; see [`KeyValueStore::range`].
pub struct Iter<'t, K, V> {
    store: KeyValueStore<'t, K, V>,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    buffer: VecDeque<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl<K, V> fmt::Debug for Iter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

const SCAN_CHUNK: usize = 256;

/// How many times a batch that met `MDB_MAP_FULL` is retried on a grown map (each growth adds
/// half the map: 32 retries take a 16 MiB map past 1 TiB).
const MAP_FULL_RETRIES: u32 = 32;

impl<K: 'static, V: 'static> Iterator for Iter<'_, K, V> {
    type Item = Result<(K, V)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffer.is_empty() && !self.done {
            let lower = match &self.lower {
                Bound::Included(b) => Bound::Included(b.as_slice()),
                Bound::Excluded(b) => Bound::Excluded(b.as_slice()),
                Bound::Unbounded => Bound::Unbounded,
            };
            let upper = match &self.upper {
                Bound::Included(b) => Bound::Included(b.as_slice()),
                Bound::Excluded(b) => Bound::Excluded(b.as_slice()),
                Bound::Unbounded => Bound::Unbounded,
            };
            let buffer = &mut self.buffer;
            let scanned =
                self.store
                    .txn
                    .scan(self.store.store, lower, upper, SCAN_CHUNK, &mut |k, v| {
                        buffer.push_back((k.to_vec(), v.to_vec()));
                        Ok(())
                    });
            if let Err(e) = scanned {
                self.done = true;
                return Some(Err(e));
            }
            if self.buffer.len() < SCAN_CHUNK {
                self.done = true;
            }
            if let Some((last, _)) = self.buffer.back() {
                self.lower = Bound::Excluded(last.clone());
            }
        }
        let (k, v) = self.buffer.pop_front()?;
        Some(
            self.store
                .read_key(&k)
                .and_then(|k| Ok((k, self.store.read_value(&v)?))),
        )
    }
}

/// Where a task's local state stands: the input offsets its committed state reflects and the
/// changelog offsets it has seen, read from the same transaction that wrote the state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// `(topic, partition)` to the next input offset to process.
    pub inputs: Vec<((String, i32), i64)>,
    /// Store name to the next changelog offset the local state does not hold yet.
    pub changelogs: Vec<(String, i64)>,
}

impl Position {
    /// The next input offset of a partition, if recorded.
    pub fn input(&self, topic: &str, partition: i32) -> Option<i64> {
        self.inputs
            .iter()
            .find(|((t, p), _)| t == topic && *p == partition)
            .map(|(_, o)| *o)
    }

    /// The next changelog offset of a store, if recorded.
    pub fn changelog(&self, store: &str) -> Option<i64> {
        self.changelogs
            .iter()
            .find(|(s, _)| s == store)
            .map(|(_, o)| *o)
    }
}

fn input_key(topic: &str, partition: i32) -> Vec<u8> {
    format!("input/{partition}/{topic}").into_bytes()
}

fn changelog_key(store: &str) -> Vec<u8> {
    format!("changelog/{store}").into_bytes()
}

fn parse_meta(entries: Vec<(Vec<u8>, Vec<u8>)>) -> Position {
    let mut pos = Position::default();
    for (k, v) in entries {
        let Ok(k) = String::from_utf8(k) else {
            continue;
        };
        let Ok(v) = <[u8; 8]>::try_from(v.as_slice()) else {
            continue;
        };
        let v = i64::from_be_bytes(v);
        if let Some(rest) = k.strip_prefix("input/") {
            if let Some((p, t)) = rest.split_once('/')
                && let Ok(p) = p.parse()
            {
                pos.inputs.push(((t.to_owned(), p), v));
            }
        } else if let Some(store) = k.strip_prefix("changelog/") {
            pos.changelogs.push((store.to_owned(), v));
        }
    }
    pos
}

/// The state of one task: its stores, opened on their backends, with one transaction per batch.
///
/// The LMDB stores of a task share one environment in `<state dir>/<application id>/<task id>`
/// (the directory the runtime passes to [`StateStores::open`]); the environment
/// holds a metadata database where each batch's transaction also records the input offsets it
/// reached and the changelog offsets it reflects.
pub struct StateStores {
    specs: Vec<StoreSpec>,
    slots: Vec<Slot>,
    /// Shared with the task's readers ([`StoreReader`]), which hold it weakly.
    lmdb: Option<Arc<lmdb::LmdbState>>,
    memory: memory::MemoryState,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Lmdb(usize),
    Memory(usize),
}

impl fmt::Debug for StateStores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStores")
            .field("stores", &self.specs)
            .field("path", &self.lmdb.as_ref().map(|l| l.path()))
            .finish()
    }
}

impl StateStores {
    /// Opens the stores of a task. LMDB stores live in `dir` (created if missing); `dir` is locked
    /// for as long as the stores are open, and a second open fails with
    /// [`Error::StateDirLocked`].
    pub fn open(dir: &Path, specs: Vec<StoreSpec>, options: &LmdbOptions) -> Result<Self> {
        let mut slots = Vec::with_capacity(specs.len());
        let mut lmdb_names = Vec::new();
        let mut memory_count = 0;
        for spec in &specs {
            match spec.backend {
                Backend::Lmdb => {
                    slots.push(Slot::Lmdb(lmdb_names.len()));
                    lmdb_names.push(spec.name.to_string());
                }
                Backend::InMemory => {
                    slots.push(Slot::Memory(memory_count));
                    memory_count += 1;
                }
            }
        }
        let lmdb = if lmdb_names.is_empty() {
            None
        } else {
            Some(Arc::new(lmdb::LmdbState::open(dir, &lmdb_names, options)?))
        };
        Ok(StateStores {
            specs,
            slots,
            lmdb,
            memory: memory::MemoryState::new(memory_count),
        })
    }

    /// Stores that all live in memory (every spec is switched to [`Backend::InMemory`]).
    pub fn in_memory(specs: Vec<StoreSpec>) -> Result<Self> {
        let specs: Vec<_> = specs
            .into_iter()
            .map(|s| s.backend(Backend::InMemory))
            .collect();
        Self::open(Path::new(""), specs, &LmdbOptions::default())
    }

    /// The declarations of the stores, in index order.
    pub fn specs(&self) -> &[StoreSpec] {
        &self.specs
    }

    /// The LMDB directory, when the task has LMDB stores.
    pub fn path(&self) -> Option<PathBuf> {
        self.lmdb.as_ref().map(|l| l.path().to_owned())
    }

    /// Runs `f` in one write transaction over all stores and commits when it returns `Ok`; on `Err`
    /// nothing `f` wrote stays. An LMDB map that fills up is grown and `f` is run again (so `f`
    /// may run more than once; only its last run's writes stay).
    pub fn transaction<R>(&mut self, f: impl FnMut(&StateTxn<'_>) -> Result<R>) -> Result<R> {
        self.transaction_within(f, false)
    }

    /// [`transaction`](Self::transaction) for the runtime's own bookkeeping (the changelog
    /// positions a commit records): a map at its maximum may pass it a little
    /// (`lmdb::BOOKKEEPING_HEADROOM`), so that a store that filled up still records them.
    pub fn bookkeeping_transaction<R>(
        &mut self,
        f: impl FnMut(&StateTxn<'_>) -> Result<R>,
    ) -> Result<R> {
        self.transaction_within(f, true)
    }

    fn transaction_within<R>(
        &mut self,
        mut f: impl FnMut(&StateTxn<'_>) -> Result<R>,
        bookkeeping: bool,
    ) -> Result<R> {
        let mut attempts = 0;
        loop {
            if let Some(l) = &self.lmdb {
                l.grow_if_needed()?;
            }
            let txn = self.begin()?;
            // The commit can meet MDB_MAP_FULL too (LMDB allocates pages for its free list
            // while committing); a failed commit aborts the transaction, so it is retried as
            // a failed `f` is.
            let outcome = match f(&txn) {
                Ok(r) => txn.commit().map(|()| r),
                Err(e) => {
                    drop(txn);
                    Err(e)
                }
            };
            match outcome {
                Ok(r) => return Ok(r),
                Err(e) if attempts < MAP_FULL_RETRIES && lmdb::is_map_full(&e) => {
                    attempts += 1;
                    if let Some(l) = &self.lmdb {
                        if bookkeeping {
                            l.grow_for_bookkeeping()?;
                        } else {
                            l.grow()?;
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn begin(&mut self) -> Result<StateTxn<'_>> {
        let lmdb = match &self.lmdb {
            Some(l) => Some(l.begin()?),
            None => None,
        };
        Ok(StateTxn {
            specs: &self.specs,
            slots: &self.slots,
            lmdb,
            memory: RefCell::new(self.memory.begin()),
            changelog: RefCell::new(Vec::new()),
        })
    }

    /// The recorded position of the local state (committed transactions only).
    pub fn position(&self) -> Result<Position> {
        let entries = match &self.lmdb {
            Some(l) => l.read_meta()?,
            None => self.memory.meta_entries(),
        };
        Ok(parse_meta(entries))
    }

    /// Flushes committed LMDB transactions to disk (`fsync`). Called before input offsets are
    /// committed to Kafka, so that a committed offset never points past state that a power loss
    /// could take away.
    pub fn sync(&self) -> Result<()> {
        match &self.lmdb {
            Some(l) => l.sync(),
            None => Ok(()),
        }
    }

    /// How many write transactions this task has committed (for tests and metrics).
    pub fn committed_transactions(&self) -> u64 {
        match &self.lmdb {
            Some(l) => l.commits(),
            None => self.memory.commits(),
        }
    }
}

/// One open write transaction over a task's stores.
pub struct StateTxn<'s> {
    specs: &'s [StoreSpec],
    slots: &'s [Slot],
    lmdb: Option<lmdb::LmdbTxn<'s>>,
    memory: RefCell<memory::MemoryTxn<'s>>,
    changelog: RefCell<Vec<ChangelogWrite>>,
}

impl fmt::Debug for StateTxn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateTxn").finish_non_exhaustive()
    }
}

impl<'s> StateTxn<'s> {
    /// The typed handle of the store named `name`.
    pub fn store<K: 'static, V: 'static>(&self, name: &str) -> Result<KeyValueStore<'_, K, V>> {
        let index = self
            .specs
            .iter()
            .position(|s| &*s.name == name)
            .ok_or_else(|| Error::Store(format!("no store named `{name}` in this task")))?;
        KeyValueStore::bind(self, index)
    }

    /// The typed handle of the window store named `name`.
    pub fn window_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<WindowStore<'_, K, V>> {
        WindowStore::bind(self, self.index_of(name)?)
    }

    /// The typed handle of the versioned store named `name`.
    pub fn versioned_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<VersionedStore<'_, K, V>> {
        VersionedStore::bind(self, self.index_of(name)?)
    }

    /// The typed handle of the session store named `name`.
    pub fn session_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<SessionStore<'_, K, V>> {
        SessionStore::bind(self, self.index_of(name)?)
    }

    fn index_of(&self, name: &str) -> Result<usize> {
        self.specs
            .iter()
            .position(|s| &*s.name == name)
            .ok_or_else(|| Error::Store(format!("no store named `{name}` in this task")))
    }

    pub(crate) fn raw(&self) -> &(dyn RawTxn + '_) {
        self
    }

    /// Records, in this transaction, the next input offset of a partition.
    ///
    /// Not public API: the runtime calls it (`task`). It is `pub` and hidden only because the
    /// store conformance tests (`kstreams/tests/store_conformance.rs`) drive a [`StateStores`]
    /// directly, from outside the crate.
    #[doc(hidden)]
    pub fn set_input_position(&self, topic: &str, partition: i32, next_offset: i64) -> Result<()> {
        self.put_meta(&input_key(topic, partition), next_offset)
    }

    /// Records, in this transaction, the next changelog offset of a store.
    ///
    /// Not public API, like [`set_input_position`](Self::set_input_position): the runtime calls
    /// it (`task`); `pub` and hidden only for `kstreams/tests/store_conformance.rs`.
    #[doc(hidden)]
    pub fn set_changelog_position(&self, store: &str, next_offset: i64) -> Result<()> {
        self.put_meta(&changelog_key(store), next_offset)
    }

    fn put_meta(&self, key: &[u8], value: i64) -> Result<()> {
        self.check_writable(None)?;
        match &self.lmdb {
            Some(l) => l.put_meta(key, &value.to_be_bytes()),
            None => self
                .memory
                .borrow_mut()
                .put_meta(key.to_vec(), value.to_be_bytes().to_vec()),
        }
    }

    /// Writes raw bytes to a store without recording them for the changelog: the restore path.
    /// `key`, `value` and `timestamp` are a changelog record's: for a window or session store the
    /// key is Kafka Streams' windowed changelog key, decoded back to the store's layout; for a
    /// versioned store the record is a version at `timestamp` (a put, not logged again).
    ///
    /// Not public API: the runtime calls it (`task`). It is `pub` and hidden only because the
    /// store conformance tests (`kstreams/tests/store_conformance.rs`,
    /// `window_store_conformance.rs`) drive a [`StateStores`] directly, from outside the crate.
    #[doc(hidden)]
    pub fn restore_raw(
        &self,
        store: usize,
        key: &[u8],
        value: Option<&[u8]>,
        timestamp: i64,
    ) -> Result<()> {
        match self.specs.get(store).map(|s| s.kind) {
            Some(StoreKind::Window { .. } | StoreKind::Session { .. }) => {
                return window::restore(self, store, key, value);
            }
            Some(StoreKind::Versioned { .. }) => {
                return versioned::restore(self, store, key, value, timestamp);
            }
            Some(StoreKind::KeyValue) | None => {}
        }
        match value {
            Some(v) => self.write(store, key, Some(v), false),
            None => self.write(store, key, None, false),
        }
    }

    /// Takes the changelog writes made so far in this transaction.
    ///
    /// Not public API: the runtime calls it (`task`). It is `pub` and hidden only because the
    /// store conformance tests (`kstreams/tests/store_conformance.rs`,
    /// `window_store_conformance.rs`) drive a [`StateStores`] directly, from outside the crate.
    #[doc(hidden)]
    pub fn take_changelog(&self) -> Vec<ChangelogWrite> {
        std::mem::take(&mut *self.changelog.borrow_mut())
    }

    fn write(&self, store: usize, key: &[u8], value: Option<&[u8]>, log: bool) -> Result<()> {
        self.apply(store, key, value)?;
        if log && self.specs[store].changelog_enabled() {
            self.changelog.borrow_mut().push(ChangelogWrite {
                store,
                key: key.to_vec(),
                value: value.map(<[u8]>::to_vec),
                timestamp: None,
            });
        }
        Ok(())
    }

    /// Writes (`Some`) or deletes (`None`) in the store's backend, nothing else.
    fn apply(&self, store: usize, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.check_writable(Some(store))?;
        match self.slots.get(store) {
            Some(Slot::Lmdb(i)) => match (&self.lmdb, value) {
                (Some(l), Some(v)) => l.put(*i, key, v)?,
                (Some(l), None) => l.delete(*i, key)?,
                (None, _) => return Err(Error::Internal("LMDB store without environment".into())),
            },
            Some(Slot::Memory(i)) => {
                let mut m = self.memory.borrow_mut();
                match value {
                    Some(v) => m.put(*i, key.to_vec(), v.to_vec())?,
                    None => m.delete(*i, key)?,
                }
            }
            None => return Err(Error::Internal(format!("store index {store} out of range"))),
        }
        Ok(())
    }

    fn commit(self) -> Result<()> {
        if let Some(l) = self.lmdb {
            l.commit()?;
        }
        self.memory.into_inner().commit();
        Ok(())
    }
}

impl RawTxn for StateTxn<'_> {
    fn store_spec(&self, store: usize) -> &StoreSpec {
        &self.specs[store]
    }

    fn get(
        &self,
        store: usize,
        key: &[u8],
        f: &mut dyn FnMut(Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        match self.slots.get(store) {
            Some(Slot::Lmdb(i)) => match &self.lmdb {
                Some(l) => l.get(*i, key, f),
                None => Err(Error::Internal("LMDB store without environment".into())),
            },
            Some(Slot::Memory(i)) => f(self.memory.borrow().get(*i, key)),
            None => Err(Error::Internal(format!("store index {store} out of range"))),
        }
    }

    fn put(&self, store: usize, key: &[u8], value: &[u8]) -> Result<()> {
        self.write(store, key, Some(value), true)
    }

    fn put_owned(&self, store: usize, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.apply(store, &key, Some(&value))?;
        if self.specs[store].changelog_enabled() {
            self.changelog.borrow_mut().push(ChangelogWrite {
                store,
                key,
                value: Some(value),
                timestamp: None,
            });
        }
        Ok(())
    }

    fn delete(&self, store: usize, key: &[u8]) -> Result<()> {
        self.write(store, key, None, true)
    }

    fn put_unlogged(&self, store: usize, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.write(store, key, value, false)
    }

    fn log(&self, store: usize, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.log_at(store, key, value, None)
    }

    fn log_at(
        &self,
        store: usize,
        key: &[u8],
        value: Option<&[u8]>,
        timestamp: Option<i64>,
    ) -> Result<()> {
        self.check_writable(Some(store))?;
        let spec = self
            .specs
            .get(store)
            .ok_or_else(|| Error::Internal(format!("store index {store} out of range")))?;
        if spec.changelog_enabled() {
            self.changelog.borrow_mut().push(ChangelogWrite {
                store,
                key: key.to_vec(),
                value: value.map(<[u8]>::to_vec),
                timestamp,
            });
        }
        Ok(())
    }

    fn scan(
        &self,
        store: usize,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
        f: &mut dyn FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        match self.slots.get(store) {
            Some(Slot::Lmdb(i)) => match &self.lmdb {
                Some(l) => l.scan(*i, lower, upper, limit, f),
                None => Err(Error::Internal("LMDB store without environment".into())),
            },
            Some(Slot::Memory(i)) => self.memory.borrow().scan(*i, lower, upper, limit, f),
            None => Err(Error::Internal(format!("store index {store} out of range"))),
        }
    }
}
