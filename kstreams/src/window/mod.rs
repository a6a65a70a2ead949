//! Windowed aggregation: window definitions, windowed keys, the state handles a custom windowed
//! aggregation is written against, and the library operators `count`, `reduce`, `aggregate`.
//!
//! Owns: [`Window`], [`Windowed`], [`SessionWindowed`] and their serdes (Java's wire format),
//! the definitions [`TimeWindows`], [`SlidingWindows`], [`SessionWindows`] (grace is required),
//! [`Windowing`] (what a windowed `#[store]` declares), [`TimeWindowState`] and
//! [`SessionWindowState`] (the handles' aggregations), and the operators. It decides stream time,
//! lateness and emission; the stores under it (`store::window`, `store::session`) only keep
//! windows and a stream time the operator gives them.
//!
//! Session windows (`session.rs`) and sliding windows (`sliding.rs`) are their own files; they
//! share the helpers of this module rather than copy them:
//!
//! - **Stream time** is the operator's store's: [`WindowStore::stream_time`] /
//!   `SessionStore::stream_time` read it (persisted in the store, in the batch's transaction),
//!   `OperatorTime` follows it record by record (the current record included), and
//!   `advance_stream_time_logged` (on both stores) writes it back *and logs it to the changelog*
//!   (a reserved 9-byte key that no Kafka Streams window or session key can be), so a restart,
//!   and a restore after the state directory is lost, neither re-emit a final window nor accept
//!   a record that was late before. Call it once per batch, at the end, after emitting.
//! - **Records that cannot be windowed**: `admit` sends a record of negative timestamp through
//!   the processing policy (Kafka Streams drops them with a metric; here it is a bad record,
//!   never a silent drop); `late` handles a record too late for every window (metric
//!   `kstreams_late_records_total{processor, store}`, DEBUG log, and the dead-letter topic with
//!   headers `kstreams.late.*` under [`OnLate::DeadLetter`]).
//! - **Emission on close**: `closing_range` says which windows a batch made final (those whose
//!   `end` is in `(before − grace, now − grace]`); fetch them *before* advancing the store (the
//!   store hides windows past its retention, KAFKA-12960), forward them in (end, start, key
//!   bytes) order with `final_timestamp`, then advance.

use std::marker::PhantomData;
use std::time::Duration;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::processor::BatchProcessor;
use crate::record::Headers;
use crate::record::Record;
use crate::store::{KeyValueStore, StoreHandle, StoreSpec, WindowStore, WindowWrite};

mod serde;
pub mod session;
pub mod sliding;

pub use serde::{SessionWindowedSerde, TimeWindowedSerde};

/// A window: `[start, end)` for time and sliding windows; for a session, `start` is the first
/// record's timestamp and `end` the last record's (both included, as Kafka's `SessionWindow`).
/// Milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// The window's start.
    pub start: i64,
    /// The window's end (exclusive for time and sliding windows, inclusive for sessions).
    pub end: i64,
}

/// The key of a time- or sliding-windowed result: the record's key and its window. Its default
/// serde is [`TimeWindowedSerde`] (Java's bytes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Windowed<K> {
    /// The record's key.
    pub key: K,
    /// The window.
    pub window: Window,
}

/// The key of a session-windowed result: the record's key and its session. Its default serde is
/// [`SessionWindowedSerde`] (Java's bytes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionWindowed<K> {
    /// The record's key.
    pub key: K,
    /// The session: first and last record's timestamps.
    pub window: Window,
}

fn ms(what: &str, d: Duration) -> Result<i64> {
    i64::try_from(d.as_millis())
        .map_err(|_| Error::Config(format!("the {what} {d:?} does not fit in i64 milliseconds")))
}

fn at_least_1ms(what: &str, d: Duration) -> Result<i64> {
    let v = ms(what, d)?;
    if v < 1 {
        return Err(Error::Config(format!(
            "the {what} must be at least 1 ms, not {d:?}"
        )));
    }
    Ok(v)
}

/// Tumbling or hopping time windows: `[start, start + size)`, starts multiples of the advance
/// from the epoch (Java's `TimeWindows`). Grace is required.
///
/// ```
/// use std::time::Duration;
/// use kstreams::window::{TimeWindows, Window};
/// let w = TimeWindows::hopping(Duration::from_secs(10), Duration::from_secs(5), Duration::ZERO)?;
/// let starts: Vec<i64> = w.windows_for(12_000).map(|w| w.start).collect();
/// assert_eq!(starts, [5_000, 10_000]);
/// assert!(TimeWindows::hopping(Duration::from_secs(5), Duration::from_secs(10), Duration::ZERO).is_err());
/// # Ok::<(), kstreams::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeWindows {
    size_ms: i64,
    advance_ms: i64,
    grace_ms: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size` (the advance is the size). Fails if `size` is under 1 ms.
    pub fn tumbling(size: Duration, grace: Duration) -> Result<TimeWindows> {
        Self::hopping(size, size, grace)
    }

    /// Hopping windows of `size`, one starting every `advance`. Fails if `size` or `advance`
    /// is under 1 ms, or `advance` is larger than `size` (Java's rule).
    pub fn hopping(size: Duration, advance: Duration, grace: Duration) -> Result<TimeWindows> {
        let size_ms = at_least_1ms("window size", size)?;
        let advance_ms = at_least_1ms("window advance", advance)?;
        let grace_ms = ms("grace", grace)?;
        if advance_ms > size_ms {
            return Err(Error::Config(format!(
                "the window advance ({advance:?}) must not be larger than the window size ({size:?})"
            )));
        }
        Ok(TimeWindows {
            size_ms,
            advance_ms,
            grace_ms,
        })
    }

    /// Validated by the caller (the `#[store]` macro checks its literals).
    pub(crate) fn from_ms(size_ms: i64, advance_ms: i64, grace_ms: i64) -> TimeWindows {
        let size_ms = size_ms.max(1);
        TimeWindows {
            size_ms,
            advance_ms: advance_ms.clamp(1, size_ms),
            grace_ms: grace_ms.max(0),
        }
    }

    /// The window size in milliseconds.
    pub fn size_ms(&self) -> i64 {
        self.size_ms
    }

    /// The advance in milliseconds (the size for tumbling windows).
    pub fn advance_ms(&self) -> i64 {
        self.advance_ms
    }

    /// The grace in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    /// The windows a record at `timestamp` belongs to, by start (Java's `windowsFor`); none for
    /// a negative timestamp.
    pub fn windows_for(&self, timestamp: i64) -> impl Iterator<Item = Window> + use<> {
        let (size, advance) = (self.size_ms, self.advance_ms);
        let first =
            (timestamp.saturating_sub(size).saturating_add(advance)).max(0) / advance * advance;
        let mut next = (timestamp >= 0).then_some(first);
        std::iter::from_fn(move || {
            let start = next.filter(|s| *s <= timestamp)?;
            next = start.checked_add(advance);
            Some(Window {
                start,
                end: start.saturating_add(size),
            })
        })
    }
}

/// Sliding windows (KIP-450, Java's `SlidingWindows`): windows of `time_difference` that a
/// record's timestamp defines, both ends inclusive in Java's terms. Grace is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlidingWindows {
    difference_ms: i64,
    grace_ms: i64,
}

impl SlidingWindows {
    /// Sliding windows of `time_difference` (at least 1 ms).
    pub fn new(time_difference: Duration, grace: Duration) -> Result<SlidingWindows> {
        Ok(SlidingWindows {
            difference_ms: at_least_1ms("sliding window time difference", time_difference)?,
            grace_ms: ms("grace", grace)?,
        })
    }

    pub(crate) fn from_ms(difference_ms: i64, grace_ms: i64) -> SlidingWindows {
        SlidingWindows {
            difference_ms: difference_ms.max(1),
            grace_ms: grace_ms.max(0),
        }
    }

    /// The time difference in milliseconds.
    pub fn difference_ms(&self) -> i64 {
        self.difference_ms
    }

    /// The grace in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }
}

/// Session windows (Java's `SessionWindows`): a key's records closer than `gap` to each other
/// form one session. Grace is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionWindows {
    gap_ms: i64,
    grace_ms: i64,
}

impl SessionWindows {
    /// Sessions of inactivity gap `gap` (at least 1 ms).
    pub fn new(gap: Duration, grace: Duration) -> Result<SessionWindows> {
        Ok(SessionWindows {
            gap_ms: at_least_1ms("session gap", gap)?,
            grace_ms: ms("grace", grace)?,
        })
    }

    pub(crate) fn from_ms(gap_ms: i64, grace_ms: i64) -> SessionWindows {
        SessionWindows {
            gap_ms: gap_ms.max(1),
            grace_ms: grace_ms.max(0),
        }
    }

    /// The inactivity gap in milliseconds.
    pub fn gap_ms(&self) -> i64 {
        self.gap_ms
    }

    /// The grace in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }
}

/// What a windowed store declaration holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Windows {
    /// Tumbling or hopping windows.
    Time(TimeWindows),
    /// Sliding windows.
    Sliding(SlidingWindows),
    /// Session windows.
    Session(SessionWindows),
}

impl Windows {
    /// The grace in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        match self {
            Windows::Time(w) => w.grace_ms,
            Windows::Sliding(w) => w.grace_ms,
            Windows::Session(w) => w.grace_ms,
        }
    }

    /// The default (and least) retention, as Kafka Streams: size + grace (time), twice the
    /// difference plus grace (sliding: `SlidingWindowedKStreamImpl`, since a record reads the
    /// windows of records up to one difference before its own window), gap + grace (sessions).
    pub fn default_retention_ms(&self) -> i64 {
        let span = match self {
            Windows::Time(w) => w.size_ms,
            Windows::Sliding(w) => w.difference_ms.saturating_mul(2),
            Windows::Session(w) => w.gap_ms,
        };
        span.saturating_add(self.grace_ms())
    }
}

/// When a windowed aggregation forwards results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum EmitStrategy {
    /// Every change of a window is forwarded (Kafka Streams' default).
    #[default]
    OnWindowUpdate,
    /// Each window is forwarded once, when it is final (`end + grace <= stream time`; KIP-825).
    OnWindowClose,
}

/// What to do with a record too late for every window it belongs to. It is always counted
/// (`kstreams_late_records_total{processor, store}`) and logged at DEBUG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum OnLate {
    /// Nothing more.
    #[default]
    Drop,
    /// Also written to the application's dead-letter topic, with headers saying why (late, its
    /// timestamp, the stream time, the grace).
    DeadLetter,
}

/// A windowed store's declaration: its windows, emit strategy, late-record policy, retention
/// and the idle opt-in.
///
/// ```
/// use std::time::Duration;
/// use kstreams::window::{EmitStrategy, TimeWindows, Windowing, Windows};
/// let w = Windowing::new(Windows::Time(TimeWindows::tumbling(Duration::from_secs(60), Duration::from_secs(10))?))
///     .emit(EmitStrategy::OnWindowClose);
/// assert_eq!(w.retention_ms(), 70_000);
/// assert!(w.clone().retention(Duration::from_secs(30)).is_err());
/// # Ok::<(), kstreams::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Windowing {
    windows: Windows,
    emit: EmitStrategy,
    on_late: OnLate,
    retention_ms: i64,
    idle_advance_ms: Option<i64>,
}

impl Windowing {
    /// These windows, emitting on update, dropping late records, with the default retention.
    pub fn new(windows: Windows) -> Windowing {
        Windowing {
            windows,
            emit: EmitStrategy::default(),
            on_late: OnLate::default(),
            retention_ms: windows.default_retention_ms(),
            idle_advance_ms: None,
        }
    }

    pub(crate) fn from_parts(
        windows: Windows,
        emit: EmitStrategy,
        on_late: OnLate,
        retention_ms: Option<i64>,
        idle_advance_ms: Option<i64>,
    ) -> Windowing {
        let default = windows.default_retention_ms();
        Windowing {
            windows,
            emit,
            on_late,
            retention_ms: retention_ms.map_or(default, |r| r.max(default)),
            idle_advance_ms: idle_advance_ms.map(|i| i.max(1)),
        }
    }

    /// The same, with this emit strategy.
    #[must_use]
    pub fn emit(mut self, emit: EmitStrategy) -> Windowing {
        self.emit = emit;
        self
    }

    /// The same, with this late-record policy.
    #[must_use]
    pub fn on_late(mut self, on_late: OnLate) -> Windowing {
        self.on_late = on_late;
        self
    }

    /// The same, with this retention; fails when it is shorter than the default (size, twice
    /// the time difference, or gap, plus grace).
    pub fn retention(mut self, retention: Duration) -> Result<Windowing> {
        let r = ms("retention", retention)?;
        if r < self.windows.default_retention_ms() {
            return Err(Error::Config(format!(
                "the retention ({retention:?}) must be at least the window's span plus the grace ({} ms)",
                self.windows.default_retention_ms()
            )));
        }
        self.retention_ms = r;
        Ok(self)
    }

    /// The same, advancing the operator's stream time with the wall clock once its task has seen
    /// no record for `idle` (so the last windows of an idle partition close). A difference from
    /// Kafka Streams, opt-in.
    #[must_use]
    pub fn advance_when_idle(mut self, idle: Duration) -> Windowing {
        self.idle_advance_ms = Some(i64::try_from(idle.as_millis()).unwrap_or(i64::MAX).max(1));
        self
    }

    /// The windows.
    pub fn windows(&self) -> Windows {
        self.windows
    }

    /// The emit strategy.
    pub fn emit_strategy(&self) -> EmitStrategy {
        self.emit
    }

    /// The late-record policy.
    pub fn late_policy(&self) -> OnLate {
        self.on_late
    }

    /// The store's retention in milliseconds.
    pub fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    /// The idle time after which stream time follows the wall clock, if opted in.
    pub fn idle_advance_ms(&self) -> Option<i64> {
        self.idle_advance_ms
    }

    /// The declaration of the store these windows keep: a window store (size = the window size,
    /// or the time difference for sliding windows) or a session store, with the retention.
    pub fn store_spec(&self, spec: StoreSpec) -> StoreSpec {
        spec.windowing(self)
    }
}

/// The type a windowed `#[kstreams::store]` alias names for time or sliding windows: keys `K`,
/// aggregates `A`. A marker, like [`KeyValue`](crate::KeyValue).
pub struct WindowKeyValue<K, A>(PhantomData<fn() -> (K, A)>);

/// The type a session-windowed `#[kstreams::store]` alias names: keys `K`, aggregates `A`.
pub struct SessionKeyValue<K, A>(PhantomData<fn() -> (K, A)>);

impl<K, A> std::fmt::Debug for WindowKeyValue<K, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WindowKeyValue")
    }
}

impl<K, A> std::fmt::Debug for SessionKeyValue<K, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeyValue")
    }
}

/// A windowed store handle (made by `#[kstreams::store(window = ...)]`): its windows and the
/// kind of its results.
pub trait WindowedHandle<'t>: StoreHandle<'t> {
    /// [`TimeKind`] (time and sliding windows) or [`SessionKind`]: says the output types.
    type Kind: WindowKind<Self::Key, Self::Value>;
    /// The declaration's windows, emit strategy and late-record policy.
    fn windowing() -> Windowing;
}

/// The results of time and sliding windows: `(Windowed<K>, A)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeKind;

/// The results of session windows: `(SessionWindowed<K>, Option<A>)` (`None`: a merged-away
/// session, on update).
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionKind;

/// The kind of a windowed store: its output types, and how the library operators run on it.
pub trait WindowKind<K, A>: 'static {
    /// The key of the results.
    type OutKey: Send + 'static;
    /// The value of the results.
    type OutValue: Send + 'static;

    /// Runs an aggregation on the store (the operators' common body). A new window's aggregate
    /// is `first(record)` (the record is not then added); `merge` is used by sessions only.
    #[doc(hidden)]
    fn run<V: 'static>(
        store: KeyValueStore<'_, K, A>,
        windowing: Windowing,
        records: &[Record<K, V>],
        out: &mut Context<'_, Self::OutKey, Self::OutValue>,
        first: &mut dyn FnMut(&Record<K, V>) -> A,
        add: &mut dyn FnMut(&mut A, &Record<K, V>),
        merge: &mut dyn FnMut(&K, A, A) -> A,
    ) -> Result<()>;

    /// Moves the store's stream time forward to `stream_time` without a record (the idle
    /// opt-in), emitting what that closes.
    #[doc(hidden)]
    fn advance_idle(
        store: KeyValueStore<'_, K, A>,
        windowing: Windowing,
        stream_time: i64,
        out: &mut Context<'_, Self::OutKey, Self::OutValue>,
    ) -> Result<()>;
}

impl<K: Clone + Send + 'static, A: Clone + Send + 'static> WindowKind<K, A> for TimeKind {
    type OutKey = Windowed<K>;
    type OutValue = A;

    fn run<V: 'static>(
        store: KeyValueStore<'_, K, A>,
        windowing: Windowing,
        records: &[Record<K, V>],
        out: &mut Context<'_, Windowed<K>, A>,
        first: &mut dyn FnMut(&Record<K, V>) -> A,
        add: &mut dyn FnMut(&mut A, &Record<K, V>),
        _merge: &mut dyn FnMut(&K, A, A) -> A,
    ) -> Result<()> {
        TimeWindowState::new(store, windowing).aggregate_first(records, out, first, add)
    }

    fn advance_idle(
        store: KeyValueStore<'_, K, A>,
        windowing: Windowing,
        stream_time: i64,
        out: &mut Context<'_, Windowed<K>, A>,
    ) -> Result<()> {
        TimeWindowState::new(store, windowing).advance_to(stream_time, out)
    }
}

impl<K: Clone + Send + 'static, A: Clone + Send + 'static> WindowKind<K, A> for SessionKind {
    type OutKey = SessionWindowed<K>;
    type OutValue = Option<A>;

    fn run<V: 'static>(
        store: KeyValueStore<'_, K, A>,
        windowing: Windowing,
        records: &[Record<K, V>],
        out: &mut Context<'_, SessionWindowed<K>, Option<A>>,
        first: &mut dyn FnMut(&Record<K, V>) -> A,
        add: &mut dyn FnMut(&mut A, &Record<K, V>),
        merge: &mut dyn FnMut(&K, A, A) -> A,
    ) -> Result<()> {
        SessionWindowState::new(store, windowing).aggregate_first(records, out, first, add, merge)
    }

    fn advance_idle(
        store: KeyValueStore<'_, K, A>,
        windowing: Windowing,
        stream_time: i64,
        out: &mut Context<'_, SessionWindowed<K>, Option<A>>,
    ) -> Result<()> {
        SessionWindowState::new(store, windowing).advance_idle(out, stream_time)
    }
}

/// The state of a time- or sliding-windowed store, bound to the batch's transaction: what a
/// windowed `#[store]` handle derefs to. See [`aggregate`](Self::aggregate).
pub struct TimeWindowState<'t, K, A> {
    pub(crate) store: KeyValueStore<'t, K, A>,
    pub(crate) windowing: Windowing,
}

impl<K, A> std::fmt::Debug for TimeWindowState<'_, K, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeWindowState")
            .field("windowing", &self.windowing)
            .finish_non_exhaustive()
    }
}

impl<'t, K, A> TimeWindowState<'t, K, A> {
    pub(crate) fn new(store: KeyValueStore<'t, K, A>, windowing: Windowing) -> Self {
        TimeWindowState { store, windowing }
    }

    /// The store's windowing.
    pub fn windowing(&self) -> &Windowing {
        &self.windowing
    }
}

impl<'t, K: Clone + 'static, A: Clone + 'static> TimeWindowState<'t, K, A> {
    /// Puts each record into its windows (in batch order; stream time = the largest timestamp
    /// so far, the current record included), skips windows already closed (`end + grace <=
    /// stream time`; a record with no open window is late: counted, and dead-lettered under
    /// [`OnLate::DeadLetter`]), updates the aggregates in the store, and forwards per the emit
    /// strategy: on update, one result per window changed (per record); on close, each window
    /// once when it becomes final, in (window end, window start, key bytes) order. Stream time
    /// is persisted with the state (same transaction, changelogged), so a restart neither
    /// re-emits nor reopens.
    pub fn aggregate<V>(
        &mut self,
        records: &[Record<K, V>],
        out: &mut Context<'_, Windowed<K>, A>,
        init: impl FnMut(&K) -> A,
        add: impl FnMut(&mut A, &Record<K, V>),
    ) -> Result<()> {
        let (mut init, add) = (init, std::cell::RefCell::new(add));
        self.aggregate_first(
            records,
            out,
            |r| {
                let mut a = init(&r.key);
                (add.borrow_mut())(&mut a, r);
                a
            },
            |a, r| (add.borrow_mut())(a, r),
        )
    }

    /// [`aggregate`](Self::aggregate) where a new window's aggregate is `first(record)` (the
    /// record is not then added): what `reduce` needs. Sliding windows go to `sliding.rs`.
    pub(crate) fn aggregate_first<V>(
        &mut self,
        records: &[Record<K, V>],
        out: &mut Context<'_, Windowed<K>, A>,
        first: impl FnMut(&Record<K, V>) -> A,
        add: impl FnMut(&mut A, &Record<K, V>),
    ) -> Result<()> {
        let tw = match self.windowing.windows {
            Windows::Time(tw) => tw,
            Windows::Sliding(_) => return sliding::aggregate_first(self, records, out, first, add),
            Windows::Session(_) => {
                return Err(Error::Config(format!(
                    "store `{}` keeps session windows: aggregate it with a `SessionKeyValue` handle",
                    self.store.name()
                )));
            }
        };
        let (mut first, mut add) = (first, add);
        let ws = self.window_store()?;
        let grace = tw.grace_ms;
        let on_update = self.windowing.emit == EmitStrategy::OnWindowUpdate;
        let mut time = OperatorTime::new(ws.stream_time()?);
        for r in records {
            if !admit(out, r)? {
                continue;
            }
            let now = time.observe(r.timestamp);
            let close = now.saturating_sub(grace);
            let mut accepted = false;
            for window in tw.windows_for(r.timestamp) {
                // A window accepts while `end + grace > stream time`.
                if window.end <= close {
                    continue;
                }
                let agg = match ws.get(&r.key, window.start)? {
                    Some(mut agg) => {
                        add(&mut agg, r);
                        agg
                    }
                    None => first(r),
                };
                if ws.put(&r.key, window.start, &agg)? == WindowWrite::Expired {
                    continue;
                }
                accepted = true;
                if on_update {
                    out.forward(r.derive(
                        Windowed {
                            key: r.key.clone(),
                            window,
                        },
                        agg,
                    ));
                }
            }
            if !accepted {
                late(out, ws.name(), &self.windowing, r, now)?;
            }
        }
        self.finish(&ws, time, out)
    }

    /// Moves the stream time forward to `stream_time` without a record (idle partitions, see
    /// [`Windowing::advance_when_idle`]): on close, the windows it makes final are forwarded;
    /// the new stream time is persisted and logged as after a batch. An earlier time does
    /// nothing.
    pub(crate) fn advance_to(
        &mut self,
        stream_time: i64,
        out: &mut Context<'_, Windowed<K>, A>,
    ) -> Result<()> {
        match self.windowing.windows {
            Windows::Time(_) => {}
            Windows::Sliding(_) => return sliding::advance_idle(self, out, stream_time),
            Windows::Session(_) => {
                return Err(Error::Config(format!(
                    "store `{}` keeps session windows: advance it with a `SessionKeyValue` handle",
                    self.store.name()
                )));
            }
        }
        let ws = self.window_store()?;
        let mut time = OperatorTime::new(ws.stream_time()?);
        if time.before.is_none() {
            // No record yet: nothing to close, and no stream time to follow.
            return Ok(());
        }
        time.observe(stream_time);
        self.finish(&ws, time, out)
    }

    /// The window store under the handle.
    pub(crate) fn window_store(&self) -> Result<WindowStore<'t, K, A>> {
        let (txn, index) = self.store.raw_parts();
        WindowStore::bind(txn, index)
    }

    /// The end of a batch (or of an idle advance) of a time-windowed aggregation: emits the
    /// windows that became final (on close), then advances (and logs) the store's stream time.
    pub(crate) fn finish(
        &self,
        ws: &WindowStore<'t, K, A>,
        time: OperatorTime,
        out: &mut Context<'_, Windowed<K>, A>,
    ) -> Result<()> {
        let Some(now) = time.moved() else {
            return Ok(());
        };
        let Windows::Time(tw) = self.windowing.windows else {
            return Err(Error::Internal("finish: not a time window".into()));
        };
        if self.windowing.emit == EmitStrategy::OnWindowClose
            && let Some((lo, hi)) = closing_range(time.before, now, tw.grace_ms)
        {
            // Windows of one size: ends in (lo, hi] are starts in (lo - size, hi - size], and
            // start order (then key bytes) is end order.
            let from = lo.saturating_sub(tw.size_ms).saturating_add(1);
            let to = hi.saturating_sub(tw.size_ms);
            if from <= to {
                for (key, start, agg) in ws.fetch_all(from, to)? {
                    let window = Window {
                        start,
                        end: start.saturating_add(tw.size_ms),
                    };
                    out.forward(
                        Record::new(Windowed { key, window }, agg)
                            .with_timestamp(final_timestamp(window)),
                    );
                }
            }
        }
        ws.advance_stream_time_logged(now)?;
        Ok(())
    }
}

/// The state of a session-windowed store, bound to the batch's transaction: what a session
/// `#[store]` handle derefs to. Its `aggregate` is in `window/session.rs`.
pub struct SessionWindowState<'t, K, A> {
    pub(crate) store: KeyValueStore<'t, K, A>,
    pub(crate) windowing: Windowing,
}

impl<K, A> std::fmt::Debug for SessionWindowState<'_, K, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionWindowState")
            .field("windowing", &self.windowing)
            .finish_non_exhaustive()
    }
}

impl<'t, K: 'static, A: 'static> SessionWindowState<'t, K, A> {
    /// The session store under the handle (for `session.rs`).
    #[allow(dead_code, reason = "used by the session aggregation in session.rs")]
    pub(crate) fn session_store(&self) -> Result<crate::store::SessionStore<'t, K, A>> {
        let (txn, index) = self.store.raw_parts();
        crate::store::SessionStore::bind(txn, index)
    }
}

impl<'t, K, A> SessionWindowState<'t, K, A> {
    pub(crate) fn new(store: KeyValueStore<'t, K, A>, windowing: Windowing) -> Self {
        SessionWindowState { store, windowing }
    }

    /// The store's windowing.
    pub fn windowing(&self) -> &Windowing {
        &self.windowing
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the time, sliding and session aggregations (see the module docs).

/// A windowed operator's stream time through a batch: `before` is what its store held, `now`
/// the largest timestamp seen since (the current record included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OperatorTime {
    /// The stream time persisted before this batch (`None`: the operator never saw a record).
    pub(crate) before: Option<i64>,
    /// The stream time now.
    pub(crate) now: Option<i64>,
}

impl OperatorTime {
    /// Starts from the store's persisted stream time.
    pub(crate) fn new(before: Option<i64>) -> Self {
        OperatorTime {
            before,
            now: before,
        }
    }

    /// Takes a record's timestamp into the stream time; returns the stream time.
    pub(crate) fn observe(&mut self, timestamp: i64) -> i64 {
        let now = self.now.map_or(timestamp, |t| t.max(timestamp));
        self.now = Some(now);
        now
    }

    /// The new stream time, if it moved past the persisted one.
    pub(crate) fn moved(&self) -> Option<i64> {
        match (self.before, self.now) {
            (Some(b), Some(n)) if n > b => Some(n),
            (None, Some(n)) => Some(n),
            _ => None,
        }
    }
}

/// Whether a record can be windowed: one of negative timestamp cannot (Java's windows start at
/// 0; Kafka Streams drops such records with a metric) and goes through the processing policy
/// as a bad record, named by its origin.
pub(crate) fn admit<K, V, OK: 'static, OV: 'static>(
    out: &mut Context<'_, OK, OV>,
    record: &Record<K, V>,
) -> Result<bool> {
    if record.timestamp >= 0 {
        return Ok(true);
    }
    let error = Error::processing(format!(
        "a windowed aggregation cannot take a record of negative timestamp {}",
        record.timestamp
    ));
    out.fail_record(record, error)?;
    Ok(false)
}

/// A record too late for every window it belongs to: counted in
/// `kstreams_late_records_total{processor, store}` and logged at DEBUG, and under
/// [`OnLate::DeadLetter`] written to the dead-letter topic with the headers
/// `kstreams.late.timestamp`, `kstreams.late.stream.time` and `kstreams.late.grace.ms`.
pub(crate) fn late<K, V, OK: 'static, OV: 'static>(
    out: &mut Context<'_, OK, OV>,
    store: &str,
    windowing: &Windowing,
    record: &Record<K, V>,
    stream_time: i64,
) -> Result<()> {
    let grace = windowing.windows.grace_ms();
    let message = format!(
        "late record: timestamp {} is past the grace ({grace} ms) of every window it belongs to \
         at stream time {stream_time}",
        record.timestamp
    );
    let dead_letter = (windowing.on_late == OnLate::DeadLetter).then(|| {
        Headers::new()
            .with("kstreams.late.timestamp", record.timestamp.to_string())
            .with("kstreams.late.stream.time", stream_time.to_string())
            .with("kstreams.late.grace.ms", grace.to_string())
    });
    out.failures.late_record(
        &out.node.name,
        store,
        record.origin.as_ref(),
        message,
        dead_letter,
    )
}

/// The ends of the windows that became final when stream time moved from `before` to `now`:
/// `(lower exclusive, upper inclusive)` = `(before − grace, now − grace]`, or `None` if none did.
/// A window is final once `end + grace <= stream time`.
pub(crate) fn closing_range(before: Option<i64>, now: i64, grace: i64) -> Option<(i64, i64)> {
    let hi = now.saturating_sub(grace);
    let lo = before.map_or(i64::MIN, |b| b.saturating_sub(grace));
    (lo < hi).then_some((lo, hi))
}

/// The timestamp of a result emitted on close: the window's last instant (`end − 1`), an upper
/// bound of its records' timestamps (Kafka Streams uses the largest of them, which the store does
/// not keep).
pub(crate) fn final_timestamp(window: Window) -> i64 {
    window.end.saturating_sub(1).max(window.start)
}

// ---------------------------------------------------------------------------------------------
// The library operators.

/// Binds the windowed store `name` declared by the node of `ctx`.
fn bind_state<'a, K: 'static, A: 'static, OK: 'static, OV: 'static>(
    ctx: &Context<'a, OK, OV>,
    name: &str,
) -> Result<KeyValueStore<'a, K, A>> {
    let binder = crate::__private::binder(ctx);
    binder.bind_any_named::<K, A>(name)
}

/// The idle opt-in of an operator instance (one per task): a wall-clock punctuation that,
/// once the task has seen no record for the declared time, moves the operator's stream time
/// forward by the wall-clock time that passed, so the last windows of an idle partition close.
#[derive(Debug, Clone, Copy, Default)]
struct Idle {
    /// The wall-clock time of the last batch.
    last_record: Option<i64>,
    /// The wall-clock time up to which stream time followed (last batch or last advance).
    followed: Option<i64>,
}

impl Idle {
    fn init(
        &mut self,
        windowing: &Windowing,
        ctx: &mut crate::context::InitContext<'_>,
    ) -> Result<()> {
        *self = Idle::default();
        let Some(idle) = windowing.idle_advance_ms() else {
            return Ok(());
        };
        let every = Duration::from_millis(idle.clamp(1, 1000) as u64);
        ctx.schedule(every, crate::context::PunctuationType::WallClock)?;
        Ok(())
    }

    fn seen(&mut self, wall: i64) {
        self.last_record = Some(wall);
        self.followed = Some(wall);
    }

    /// The punctuation of the operator over the store `name` (keys `K`, aggregates `A`, results
    /// of kind `W`) with `windowing`.
    fn punctuate<K: 'static, A: 'static, W: WindowKind<K, A>>(
        &mut self,
        name: &str,
        windowing: Windowing,
        punctuation: crate::context::Punctuation,
        ctx: &mut Context<'_, W::OutKey, W::OutValue>,
    ) -> Result<()> {
        let Some(idle) = windowing.idle_advance_ms() else {
            return Ok(());
        };
        let now = punctuation.timestamp;
        let (Some(last), Some(followed)) = (self.last_record, self.followed) else {
            // The first punctuation of a task that has seen no record: start counting now.
            self.seen(now);
            return Ok(());
        };
        if now.saturating_sub(last) < idle || now <= followed {
            return Ok(());
        }
        let store = bind_state::<K, A, _, _>(ctx, name)?;
        let (txn, index) = store.raw_parts();
        let stream_time = match windowing.windows() {
            Windows::Session(_) => session::operator_stream_time(&crate::store::SessionStore::<
                K,
                A,
            >::bind(txn, index)?)?,
            _ => WindowStore::<K, A>::bind(txn, index)?.stream_time()?,
        };
        let Some(stream_time) = stream_time else {
            return Ok(());
        };
        let target = stream_time.saturating_add(now - followed);
        self.followed = Some(now);
        W::advance_idle(store, windowing, target, ctx)
    }
}

macro_rules! operator_common {
    () => {
        fn stores(&self) -> Vec<StoreSpec> {
            vec![S::spec()]
        }
        fn node_name(&self) -> Option<&str> {
            Some(self.name)
        }
        fn init(&mut self, ctx: &mut crate::context::InitContext<'_>) -> Result<()> {
            self.idle.init(&S::windowing(), ctx)
        }
        fn punctuate(
            &mut self,
            punctuation: crate::context::Punctuation,
            ctx: &mut Context<'_, Self::OutKey, Self::OutValue>,
        ) -> Result<()> {
            self.idle.punctuate::<S::Key, S::Value, S::Kind>(
                S::NAME,
                S::windowing(),
                punctuation,
                ctx,
            )
        }
    };
}

/// The windowed count operator ([`count`]).
pub struct Count<S> {
    name: &'static str,
    idle: Idle,
    _s: PhantomData<fn() -> S>,
}

impl<S> Clone for Count<S> {
    fn clone(&self) -> Self {
        Count {
            name: self.name,
            idle: Idle::default(),
            _s: PhantomData,
        }
    }
}

impl<S> std::fmt::Debug for Count<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Count").field("name", &self.name).finish()
    }
}

/// Counts records per key and window of the windowed store `S`: outputs `(Windowed<K>, u64)`
/// for time and sliding windows, `(SessionWindowed<K>, Option<u64>)` for sessions.
///
/// ```
/// use kstreams::testing::TopologyTestDriver;
/// use kstreams::window::{self, TimeWindowedSerde};
/// use kstreams::serde::{StringSerde, U64Serde};
/// use kstreams::{Record, Topology};
///
/// #[kstreams::store(name = "counts", window = tumbling(size = "10s"), grace = "0s", emit = on_window_close)]
/// type Counts = kstreams::WindowKeyValue<String, u64>;
///
/// let mut t = Topology::builder();
/// let views = t.source::<String, String>("views");
/// let counts = t.add(window::count::<Counts<'static>>(), &views);
/// t.sink("counts", &counts);
/// let mut d = TopologyTestDriver::new(t.build()?)?;
/// let view = |ts| Record::new("page".to_string(), String::new()).with_timestamp(ts);
/// d.pipe_batch("views", [view(1_000), view(2_000), view(10_000)])?;
/// // Stream time 10 s closes [0 s, 10 s): emitted once, final.
/// let out = d.read_output_with("counts", &TimeWindowedSerde::new(StringSerde).with_window_size(10_000), &U64Serde)?;
/// assert_eq!(out.len(), 1);
/// assert_eq!((out[0].key.window.start, out[0].key.window.end, out[0].value), (0, 10_000, 2));
/// # Ok::<(), kstreams::Error>(())
/// ```
pub fn count<S: WindowedHandle<'static, Value = u64>>() -> Count<S> {
    Count {
        name: S::NAME,
        idle: Idle::default(),
        _s: PhantomData,
    }
}

impl<S, V> BatchProcessor<S::Key, V> for Count<S>
where
    S: WindowedHandle<'static, Value = u64> + 'static,
    V: 'static,
{
    type OutKey = <S::Kind as WindowKind<S::Key, u64>>::OutKey;
    type OutValue = <S::Kind as WindowKind<S::Key, u64>>::OutValue;

    operator_common!();

    fn process_batch(
        &mut self,
        records: &[Record<S::Key, V>],
        ctx: &mut Context<'_, Self::OutKey, Self::OutValue>,
    ) -> Result<()> {
        count_batch::<S::Key, V, S::Kind>(&mut self.idle, S::NAME, S::windowing(), records, ctx)
    }
}

/// The windowed count operator over a windowing given at run time ([`count_with`],
/// [`count_sessions_with`]): the same aggregation as [`count`], over a store `K` → `u64` that
/// it declares itself ([`Windowing::store_spec`] of `StoreSpec::new::<K, u64>(name)`). `W` is
/// [`TimeKind`] or [`SessionKind`], the kind of its results.
pub struct CountWith<K, W> {
    name: String,
    windowing: Windowing,
    idle: Idle,
    _k: PhantomData<fn() -> (K, W)>,
}

impl<K, W> Clone for CountWith<K, W> {
    fn clone(&self) -> Self {
        CountWith {
            name: self.name.clone(),
            windowing: self.windowing,
            idle: Idle::default(),
            _k: PhantomData,
        }
    }
}

impl<K, W> std::fmt::Debug for CountWith<K, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountWith")
            .field("name", &self.name)
            .field("windowing", &self.windowing)
            .finish()
    }
}

impl<K, W> CountWith<K, W> {
    fn new(store_name: &str, windowing: Windowing, session: bool) -> Result<Self> {
        if matches!(windowing.windows(), Windows::Session(_)) != session {
            let (want, other) = if session {
                ("session", "count_with")
            } else {
                ("time or sliding", "count_sessions_with")
            };
            return Err(Error::Config(format!(
                "the windowed count of store `{store_name}` takes {want} windows, not {:?}: use \
                 window::{other}",
                windowing.windows()
            )));
        }
        Ok(CountWith {
            name: store_name.to_owned(),
            windowing,
            idle: Idle::default(),
            _k: PhantomData,
        })
    }
}

/// Counts records per key and time or sliding window of `windowing`, given at run time (say,
/// from a command line), in the store `store_name`, which the operator declares: the same
/// operator as [`count`] over a `#[store(window = ...)]` of these windows, with results
/// `(Windowed<K>, u64)`. Fails (a config error) on session windows: see
/// [`count_sessions_with`].
///
/// ```
/// use std::time::Duration;
/// use kstreams::testing::TopologyTestDriver;
/// use kstreams::window::{self, EmitStrategy, TimeWindowedSerde, TimeWindows, Windowing, Windows};
/// use kstreams::serde::{StringSerde, U64Serde};
/// use kstreams::{Record, Topology};
///
/// let tumbling = TimeWindows::tumbling(Duration::from_secs(10), Duration::ZERO)?;
/// let windowing = Windowing::new(Windows::Time(tumbling)).emit(EmitStrategy::OnWindowClose);
/// let mut t = Topology::builder();
/// let views = t.source::<String, String>("views");
/// let counts = t.add(window::count_with::<String>("counts", windowing)?, &views);
/// t.sink("counts", &counts);
/// let mut d = TopologyTestDriver::new(t.build()?)?;
/// let view = |ts| Record::new("page".to_string(), String::new()).with_timestamp(ts);
/// d.pipe_batch("views", [view(1_000), view(2_000), view(10_000)])?;
/// let out = d.read_output_with("counts", &TimeWindowedSerde::new(StringSerde).with_window_size(10_000), &U64Serde)?;
/// assert_eq!(out.len(), 1);
/// assert_eq!((out[0].key.window.start, out[0].key.window.end, out[0].value), (0, 10_000, 2));
/// # Ok::<(), kstreams::Error>(())
/// ```
pub fn count_with<K>(store_name: &str, windowing: Windowing) -> Result<CountWith<K, TimeKind>> {
    CountWith::new(store_name, windowing, false)
}

/// Counts records per key and session of `windowing`, given at run time, in the store
/// `store_name`, which the operator declares: the same operator as [`count`] over a
/// `#[store(window = session(..))]`, with results `(SessionWindowed<K>, Option<u64>)` (`None`:
/// a merged-away session, on update). Fails (a config error) on time or sliding windows: see
/// [`count_with`].
///
/// ```
/// use std::time::Duration;
/// use kstreams::testing::TopologyTestDriver;
/// use kstreams::window::{self, SessionWindowedSerde, SessionWindows, Windowing, Windows};
/// use kstreams::serde::{OptionSerde, StringSerde, U64Serde};
/// use kstreams::{Record, Topology};
///
/// let sessions = SessionWindows::new(Duration::from_secs(5), Duration::ZERO)?;
/// let mut t = Topology::builder();
/// let views = t.source::<String, String>("views");
/// let counts = t.add(window::count_sessions_with::<String>("sessions", Windowing::new(Windows::Session(sessions)))?, &views);
/// t.sink("sessions", &counts);
/// let mut d = TopologyTestDriver::new(t.build()?)?;
/// let view = |ts| Record::new("page".to_string(), String::new()).with_timestamp(ts);
/// d.pipe_batch("views", [view(1_000), view(3_000)])?;
/// let out = d.read_output_with("sessions", &SessionWindowedSerde::new(StringSerde), &OptionSerde(U64Serde))?;
/// // On update: the session [1 s, 1 s], then its merge into [1 s, 3 s] (a tombstone, then 2).
/// let last = &out[out.len() - 1];
/// assert_eq!((last.key.window.start, last.key.window.end, last.value), (1_000, 3_000, Some(2)));
/// # Ok::<(), kstreams::Error>(())
/// ```
pub fn count_sessions_with<K>(
    store_name: &str,
    windowing: Windowing,
) -> Result<CountWith<K, SessionKind>> {
    CountWith::new(store_name, windowing, true)
}

impl<K, V, W> BatchProcessor<K, V> for CountWith<K, W>
where
    K: crate::serde::DefaultSerde + Send + 'static,
    V: 'static,
    W: WindowKind<K, u64>,
{
    type OutKey = W::OutKey;
    type OutValue = W::OutValue;

    fn stores(&self) -> Vec<StoreSpec> {
        vec![
            self.windowing
                .store_spec(StoreSpec::new::<K, u64>(&self.name)),
        ]
    }
    fn node_name(&self) -> Option<&str> {
        Some(&self.name)
    }
    fn init(&mut self, ctx: &mut crate::context::InitContext<'_>) -> Result<()> {
        self.idle.init(&self.windowing, ctx)
    }
    fn punctuate(
        &mut self,
        punctuation: crate::context::Punctuation,
        ctx: &mut Context<'_, Self::OutKey, Self::OutValue>,
    ) -> Result<()> {
        self.idle
            .punctuate::<K, u64, W>(&self.name, self.windowing, punctuation, ctx)
    }

    fn process_batch(
        &mut self,
        records: &[Record<K, V>],
        ctx: &mut Context<'_, Self::OutKey, Self::OutValue>,
    ) -> Result<()> {
        count_batch::<K, V, W>(&mut self.idle, &self.name, self.windowing, records, ctx)
    }
}

/// The body of [`Count`] and [`CountWith`]: one aggregation, whichever says the windowing.
fn count_batch<K: 'static, V: 'static, W: WindowKind<K, u64>>(
    idle: &mut Idle,
    name: &str,
    windowing: Windowing,
    records: &[Record<K, V>],
    ctx: &mut Context<'_, W::OutKey, W::OutValue>,
) -> Result<()> {
    idle.seen(ctx.wall_clock_time());
    let store = bind_state::<K, u64, _, _>(ctx, name)?;
    W::run(
        store,
        windowing,
        records,
        ctx,
        &mut |_| 1,
        &mut |n, _| *n += 1,
        &mut |_, a, b| a + b,
    )
}

/// The windowed reduce operator ([`reduce`]).
pub struct Reduce<S, F> {
    name: &'static str,
    idle: Idle,
    f: F,
    _s: PhantomData<fn() -> S>,
}

impl<S, F: Clone> Clone for Reduce<S, F> {
    fn clone(&self) -> Self {
        Reduce {
            name: self.name,
            idle: Idle::default(),
            f: self.f.clone(),
            _s: PhantomData,
        }
    }
}

impl<S, F> std::fmt::Debug for Reduce<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reduce").field("name", &self.name).finish()
    }
}

/// Reduces the values of each key and window of `S` with `f` (values of the store's type `A`):
/// a window's first value is its aggregate, each next one makes it `f(&aggregate, &value)`;
/// merged sessions are `f(&a, &b)`. Outputs as [`count`].
pub fn reduce<S, F>(f: F) -> Reduce<S, F>
where
    S: WindowedHandle<'static>,
    F: FnMut(&S::Value, &S::Value) -> S::Value + Send + 'static,
{
    Reduce {
        name: S::NAME,
        idle: Idle::default(),
        f,
        _s: PhantomData,
    }
}

impl<S, F> BatchProcessor<S::Key, S::Value> for Reduce<S, F>
where
    S: WindowedHandle<'static> + 'static,
    S::Value: Clone,
    F: FnMut(&S::Value, &S::Value) -> S::Value + Send + 'static,
{
    type OutKey = <S::Kind as WindowKind<S::Key, S::Value>>::OutKey;
    type OutValue = <S::Kind as WindowKind<S::Key, S::Value>>::OutValue;

    operator_common!();

    fn process_batch(
        &mut self,
        records: &[Record<S::Key, S::Value>],
        ctx: &mut Context<'_, Self::OutKey, Self::OutValue>,
    ) -> Result<()> {
        self.idle.seen(ctx.wall_clock_time());
        let store = bind_state::<S::Key, S::Value, _, _>(ctx, S::NAME)?;
        let f = std::cell::RefCell::new(&mut self.f);
        S::Kind::run(
            store,
            S::windowing(),
            records,
            ctx,
            &mut |r| r.value.clone(),
            &mut |a, r| {
                let next = (f.borrow_mut())(a, &r.value);
                *a = next;
            },
            &mut |_, a, b| (f.borrow_mut())(&a, &b),
        )
    }
}

/// The windowed aggregate operator over time or sliding windows ([`aggregate`]).
pub struct Aggregate<S, V, I, F> {
    name: &'static str,
    idle: Idle,
    init: I,
    add: F,
    _s: PhantomData<fn(V) -> S>,
}

impl<S, V, I: Clone, F: Clone> Clone for Aggregate<S, V, I, F> {
    fn clone(&self) -> Self {
        Aggregate {
            name: self.name,
            idle: Idle::default(),
            init: self.init.clone(),
            add: self.add.clone(),
            _s: PhantomData,
        }
    }
}

impl<S, V, I, F> std::fmt::Debug for Aggregate<S, V, I, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregate")
            .field("name", &self.name)
            .finish()
    }
}

/// Aggregates the records of each key and time (or sliding) window of `S`: a new window starts
/// at `init(key)`, then `add(&mut aggregate, record)` for each record. Outputs `(Windowed<K>, A)`.
pub fn aggregate<S, V, I, F>(init: I, add: F) -> Aggregate<S, V, I, F>
where
    S: WindowedHandle<'static, Kind = TimeKind>,
    I: FnMut(&S::Key) -> S::Value + Send + 'static,
    F: FnMut(&mut S::Value, &Record<S::Key, V>) + Send + 'static,
{
    Aggregate {
        name: S::NAME,
        idle: Idle::default(),
        init,
        add,
        _s: PhantomData,
    }
}

impl<S, V, I, F> BatchProcessor<S::Key, V> for Aggregate<S, V, I, F>
where
    S: WindowedHandle<'static, Kind = TimeKind> + 'static,
    S::Key: Clone + Send,
    S::Value: Clone + Send,
    V: 'static,
    I: FnMut(&S::Key) -> S::Value + Send + 'static,
    F: FnMut(&mut S::Value, &Record<S::Key, V>) + Send + 'static,
{
    type OutKey = Windowed<S::Key>;
    type OutValue = S::Value;

    operator_common!();

    fn process_batch(
        &mut self,
        records: &[Record<S::Key, V>],
        ctx: &mut Context<'_, Self::OutKey, Self::OutValue>,
    ) -> Result<()> {
        self.idle.seen(ctx.wall_clock_time());
        let store = bind_state::<S::Key, S::Value, _, _>(ctx, S::NAME)?;
        TimeWindowState::new(store, S::windowing()).aggregate(
            records,
            ctx,
            &mut self.init,
            &mut self.add,
        )
    }
}

/// The session aggregate operator ([`aggregate_sessions`]).
pub struct AggregateSessions<S, V, I, F, M> {
    name: &'static str,
    idle: Idle,
    init: I,
    add: F,
    merge: M,
    _s: PhantomData<fn(V) -> S>,
}

impl<S, V, I: Clone, F: Clone, M: Clone> Clone for AggregateSessions<S, V, I, F, M> {
    fn clone(&self) -> Self {
        AggregateSessions {
            name: self.name,
            idle: Idle::default(),
            init: self.init.clone(),
            add: self.add.clone(),
            merge: self.merge.clone(),
            _s: PhantomData,
        }
    }
}

impl<S, V, I, F, M> std::fmt::Debug for AggregateSessions<S, V, I, F, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateSessions")
            .field("name", &self.name)
            .finish()
    }
}

/// Aggregates the records of each key and session of `S`: a new session starts at
/// `init(key)`, `add` adds a record, `merge(key, a, b)` combines two sessions a record joins.
/// Outputs `(SessionWindowed<K>, Option<A>)`.
pub fn aggregate_sessions<S, V, I, F, M>(
    init: I,
    add: F,
    merge: M,
) -> AggregateSessions<S, V, I, F, M>
where
    S: WindowedHandle<'static, Kind = SessionKind>,
    I: FnMut(&S::Key) -> S::Value + Send + 'static,
    F: FnMut(&mut S::Value, &Record<S::Key, V>) + Send + 'static,
    M: FnMut(&S::Key, S::Value, S::Value) -> S::Value + Send + 'static,
{
    AggregateSessions {
        name: S::NAME,
        idle: Idle::default(),
        init,
        add,
        merge,
        _s: PhantomData,
    }
}

impl<S, V, I, F, M> BatchProcessor<S::Key, V> for AggregateSessions<S, V, I, F, M>
where
    S: WindowedHandle<'static, Kind = SessionKind> + 'static,
    S::Key: Clone + Send,
    S::Value: Clone + Send,
    V: 'static,
    I: FnMut(&S::Key) -> S::Value + Send + 'static,
    F: FnMut(&mut S::Value, &Record<S::Key, V>) + Send + 'static,
    M: FnMut(&S::Key, S::Value, S::Value) -> S::Value + Send + 'static,
{
    type OutKey = SessionWindowed<S::Key>;
    type OutValue = Option<S::Value>;

    operator_common!();

    fn process_batch(
        &mut self,
        records: &[Record<S::Key, V>],
        ctx: &mut Context<'_, Self::OutKey, Self::OutValue>,
    ) -> Result<()> {
        self.idle.seen(ctx.wall_clock_time());
        let store = bind_state::<S::Key, S::Value, _, _>(ctx, S::NAME)?;
        SessionWindowState::new(store, S::windowing()).aggregate(
            records,
            ctx,
            &mut self.init,
            &mut self.add,
            &mut self.merge,
        )
    }
}
