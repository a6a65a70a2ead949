//! Stream-stream joins over time windows: Kafka Streams' `KStreamKStreamJoin` (4.x, with the
//! spurious-results fix), batch-first.
//!
//! Owns: [`JoinWindows`], [`TopologyBuilder::join_streams`], the two side processors and the
//! byte forms of what they keep (the values held per key and timestamp, the pending unmatched
//! records of the shared "outer" store). It may not touch the window stores' layout or retention
//! rules (`store::window`) nor the order in which a task hands over its inputs (`task`).
//!
//! # Shape
//!
//! `join_streams(name, left, right, ..)` adds two processors, `<name>-left` over the left stream
//! and `<name>-right` over the right one, and a merge of their outputs. They share the
//! window stores `<name>-this` (left records), `<name>-other` (right records) and, for left and
//! outer joins, `<name>-outer` (records that matched nothing yet) and the one-entry
//! `<name>-outer-time` (Java's `minTime`: when the waiting records are looked at), so they are one
//! sub-topology: the two input topics must be co-partitioned (the start-up check). A window store
//! keeps one value per (key, start); the join keeps duplicates by storing, per (key, timestamp),
//! the list of values in arrival order.
//!
//! # Semantics (Kafka Streams')
//!
//! A left record at `tl` and a right record at `tr` of the same key join when `tr` lies in
//! `[tl − before, tl + after]` ([`JoinWindows::of`]: both are the time difference); the result's
//! timestamp is `max(tl, tr)`, its headers and origin the arriving record's. For a record at `t`
//! on one side, in order:
//! 1. The join's stream time (the largest timestamp either side has seen) moves to `t`.
//! 2. When `t` is the stream time, the pending unmatched records whose window has closed
//!    (`ts + after + grace < stream time` for a left one, `ts + before + grace` for a right one)
//!    are forwarded joined with `None`, in (timestamp, right before left, key) order, and removed.
//! 3. The other side's records of its key in the window are fetched; each match is forwarded, and
//!    the other side's pending entry at that timestamp (if any) is removed.
//! 4. A record that matched nothing, on a side whose unmatched records are emitted (the left
//!    side of a left join, both sides of an outer join), is forwarded joined with `None` at once
//!    if its window has already ended (`t + after < stream time`), else kept as pending.
//! 5. The record is put into its side's window store, whose retention is `before + after +
//!    grace` from that store's own stream time (the largest timestamp put into it): a record at or
//!    before `store time − retention` is refused, and is *late*.
//!
//! Late records: counted (`kstreams_late_records_total{processor, store}`, DEBUG) and under
//! [`OnLate::DeadLetter`] dead-lettered; as in Kafka Streams, such a record still joins what the
//! other side's store holds (step 3), but no later record will join it. Records the other store
//! no longer holds (at or before its stream time − retention) are not found.
//!
//! Differences from Kafka Streams, on purpose: unmatched results are not throttled by wall-clock
//! time (Java's `emit.interval.ms` for the spurious-results fix, 1 s by default: Java emits the
//! same results, possibly later and batched); the stream time is persisted (logged with the outer
//! store) so that a restart neither re-emits nor delays; a value that serializes to null joins
//! like any other (Rust's `Option` tells it from a missing record; Java skips null values); a
//! negative timestamp is a bad record (as in the windowed aggregations). A key that serializes to
//! null is forwarded unmatched at once on a side that emits unmatched records (Kafka Streams'
//! KIP-962), and on the other sides is a bad record (Java drops it with a warning). Joining a
//! stream with itself is not supported: both processors would see each batch one after the other
//! rather than record by record.
//!
//! # Batches
//!
//! While one side processes a batch, the other side's store does not change, so the batch costs
//! one range scan of the other store per distinct key (over the union of its records' windows)
//! and one of the outer store's entries of that side; the side's own puts are gathered and
//! written once per (key, timestamp). Steps 2 and 4 touch the outer store record by record, as
//! their order matters; step 2 scans only when the stream time moved.

use std::collections::{BTreeSet, HashMap};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::context::{Context, InitContext};
use crate::error::{Error, Result, SerdeError};
use crate::join::JoinKind;
use crate::processor::BatchProcessor;
use crate::record::{Headers, Record};
use crate::serde::{DefaultSerde, Serde};
use crate::store::{StoreSpec, WindowStore, WindowWrite};
use crate::topology::{Stream, TopologyBuilder};
use crate::window::OnLate;

/// The largest time difference, grace or sum of them a join accepts: 100 years, so that every
/// sum of timestamps and windows fits in `i64`. Also the outer store's retention: its entries
/// never expire, they leave when emitted or matched.
const MAX_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// The windows of a stream-stream join (Kafka Streams' `JoinWindows`): a left record at `tl`
/// joins right records at `tr` in `[tl − before, tl + after]`, and a record is kept for records
/// arriving up to `grace` after its window ended.
///
/// ```
/// use std::time::Duration;
/// use kstreams::join::JoinWindows;
/// let w = JoinWindows::of(Duration::from_secs(5), Duration::from_secs(1))?;
/// assert_eq!((w.before_ms(), w.after_ms(), w.grace_ms()), (5_000, 5_000, 1_000));
/// // Right records up to 2 s before and 5 s after the left record's timestamp.
/// let w = w.before(Duration::from_secs(2))?;
/// assert_eq!(w.retention_ms(), 2_000 + 5_000 + 1_000);
/// # Ok::<(), kstreams::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JoinWindows {
    before_ms: i64,
    after_ms: i64,
    grace_ms: i64,
    on_late: OnLate,
}

fn join_millis(what: &str, d: Duration) -> Result<i64> {
    i64::try_from(d.as_millis())
        .ok()
        .filter(|ms| *ms <= MAX_MS)
        .ok_or_else(|| {
            Error::Config(format!(
                "join windows: the {what} {d:?} is longer than the 100 years a join accepts"
            ))
        })
}

impl JoinWindows {
    /// Records join when their timestamps differ by at most `time_difference` (either way);
    /// records arriving up to `grace` after a window ended still join (Kafka Streams'
    /// `JoinWindows.ofTimeDifferenceAndGrace`). Fails when a duration is over 100 years.
    pub fn of(time_difference: Duration, grace: Duration) -> Result<JoinWindows> {
        let d = join_millis("time difference", time_difference)?;
        JoinWindows {
            before_ms: d,
            after_ms: d,
            grace_ms: join_millis("grace", grace)?,
            on_late: OnLate::default(),
        }
        .checked()
    }

    /// The same windows reaching `time_difference` before a left record's timestamp (Kafka
    /// Streams' `JoinWindows.before`).
    pub fn before(mut self, time_difference: Duration) -> Result<JoinWindows> {
        self.before_ms = join_millis("time difference before", time_difference)?;
        self.checked()
    }

    /// The same windows reaching `time_difference` after a left record's timestamp (Kafka
    /// Streams' `JoinWindows.after`).
    pub fn after(mut self, time_difference: Duration) -> Result<JoinWindows> {
        self.after_ms = join_millis("time difference after", time_difference)?;
        self.checked()
    }

    /// What to do with late records besides counting them: [`OnLate::DeadLetter`] also writes
    /// them to the dead-letter topic (the application then needs one).
    #[must_use]
    pub fn on_late(mut self, on_late: OnLate) -> JoinWindows {
        self.on_late = on_late;
        self
    }

    fn checked(self) -> Result<JoinWindows> {
        if self.before_ms + self.after_ms + self.grace_ms > MAX_MS {
            return Err(Error::Config(format!(
                "join windows: before ({} ms) + after ({} ms) + grace ({} ms) is longer than the \
                 100 years a join accepts",
                self.before_ms, self.after_ms, self.grace_ms
            )));
        }
        Ok(self)
    }

    /// How far before a left record's timestamp right records join, in milliseconds.
    pub fn before_ms(&self) -> i64 {
        self.before_ms
    }

    /// How far after a left record's timestamp right records join, in milliseconds.
    pub fn after_ms(&self) -> i64 {
        self.after_ms
    }

    /// The grace in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    /// The late-record policy.
    pub fn late_policy(&self) -> OnLate {
        self.on_late
    }

    /// How long each side's window store keeps a record, from that store's stream time: `before
    /// + after + grace` (Kafka Streams' `size() + gracePeriodMs()`), at least 1 ms.
    pub fn retention_ms(&self) -> i64 {
        (self.before_ms + self.after_ms + self.grace_ms).max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// What the stores hold.

/// The values one side holds for one key and timestamp, in arrival order (duplicates kept).
#[derive(Debug, Clone, PartialEq)]
struct Held<V>(Vec<V>);

impl<V> Default for Held<V> {
    fn default() -> Self {
        Held(Vec::new())
    }
}

/// `Held`'s bytes: per value a tag (0: null, 1: bytes follow), then a 4-byte big-endian length
/// and the value's bytes.
struct HeldSerde<S>(S);

fn corrupt(what: &str) -> SerdeError {
    SerdeError::new(format!("malformed {what} in a stream-stream join store"))
}

impl<V: 'static, S: Serde<V>> Serde<Held<V>> for HeldSerde<S> {
    fn serialize(&self, held: &Held<V>) -> Result<Option<Vec<u8>>, SerdeError> {
        let mut out = Vec::new();
        for v in &held.0 {
            match self.0.serialize(v)? {
                None => out.push(0),
                Some(bytes) => {
                    let len = u32::try_from(bytes.len())
                        .map_err(|_| SerdeError::new("a joined value of 4 GiB or more"))?;
                    out.push(1);
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(&bytes);
                }
            }
        }
        Ok(Some(out))
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Held<V>, SerdeError> {
        let mut rest = bytes.ok_or_else(|| corrupt("null list of values"))?;
        let mut out = Vec::new();
        while let Some((&tag, tail)) = rest.split_first() {
            match tag {
                0 => {
                    out.push(self.0.deserialize(None)?);
                    rest = tail;
                }
                1 => {
                    let (len, tail) = tail
                        .split_first_chunk::<4>()
                        .ok_or_else(|| corrupt("value length"))?;
                    let len = u32::from_be_bytes(*len) as usize;
                    if tail.len() < len {
                        return Err(corrupt("value (shorter than its length)"));
                    }
                    let (value, tail) = tail.split_at(len);
                    out.push(self.0.deserialize(Some(value))?);
                    rest = tail;
                }
                _ => return Err(corrupt("value tag")),
            }
        }
        Ok(Held(out))
    }
}

/// A record that matched nothing yet, waiting in the outer store: its side and value.
#[derive(Debug, Clone, PartialEq)]
enum Pending<VL, VR> {
    Left(VL),
    Right(VR),
}

/// `Pending`'s bytes: the side (1 left, 0 right), a null flag (0 null, 1 bytes follow), the
/// value's bytes.
struct PendingSerde<SL, SR>(SL, SR);

fn with_null_flag(side: u8, bytes: Option<Vec<u8>>) -> Vec<u8> {
    match bytes {
        None => vec![side, 0],
        Some(b) => {
            let mut out = Vec::with_capacity(b.len() + 2);
            out.extend_from_slice(&[side, 1]);
            out.extend_from_slice(&b);
            out
        }
    }
}

impl<VL: 'static, VR: 'static, SL: Serde<VL>, SR: Serde<VR>> Serde<Pending<VL, VR>>
    for PendingSerde<SL, SR>
{
    fn serialize(&self, p: &Pending<VL, VR>) -> Result<Option<Vec<u8>>, SerdeError> {
        Ok(Some(match p {
            Pending::Left(v) => with_null_flag(1, self.0.serialize(v)?),
            Pending::Right(v) => with_null_flag(0, self.1.serialize(v)?),
        }))
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Pending<VL, VR>, SerdeError> {
        let bytes = bytes.ok_or_else(|| corrupt("null pending record"))?;
        let value = match bytes.get(1) {
            Some(0) if bytes.len() == 2 => None,
            Some(1) => bytes.get(2..),
            _ => return Err(corrupt("pending record")),
        };
        match bytes.first() {
            Some(1) => Ok(Pending::Left(self.0.deserialize(value)?)),
            Some(0) => Ok(Pending::Right(self.1.deserialize(value)?)),
            _ => Err(corrupt("pending record side")),
        }
    }
}

/// The outer store's key: the side, then the record's key, so that its time index orders
/// pending records as Kafka Streams' `TimestampedKeyAndJoinSide` does (timestamp, right before
/// left, key bytes).
#[derive(Debug, Clone, PartialEq)]
struct OuterKey<K> {
    left: bool,
    key: K,
}

struct OuterKeySerde<S>(S);

impl<K: 'static, S: Serde<K>> Serde<OuterKey<K>> for OuterKeySerde<S> {
    fn serialize(&self, k: &OuterKey<K>) -> Result<Option<Vec<u8>>, SerdeError> {
        let key = self
            .0
            .serialize(&k.key)?
            .ok_or_else(|| SerdeError::new("store keys cannot be null"))?;
        let mut out = Vec::with_capacity(key.len() + 1);
        out.push(u8::from(k.left));
        out.extend_from_slice(&key);
        Ok(Some(out))
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<OuterKey<K>, SerdeError> {
        match bytes.and_then(<[u8]>::split_first) {
            Some((&side, key)) if side <= 1 => Ok(OuterKey {
                left: side == 1,
                key: self.0.deserialize(Some(key))?,
            }),
            _ => Err(corrupt("outer store key")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The processors.

/// The one key of a join's `<name>-outer-time` store.
const MIN_TIME_KEY: &str = "min";

/// What both side processors of one join share.
#[derive(Debug)]
struct Config {
    left_store: String,
    right_store: String,
    outer_store: String,
    /// Left and outer joins: the smallest timestamp the outer store may hold an unmatched record
    /// of, as Kafka Streams' shared `TimeTracker.minTime` (see `Side::emit_closed`).
    outer_time_store: String,
    windows: JoinWindows,
    kind: JoinKind,
    specs: Vec<StoreSpec>,
    /// A store declaration that could not be made: fails the build (from `init`).
    error: Option<String>,
}

fn store_specs<K, VL, VR>(config: &Config) -> Result<Vec<StoreSpec>>
where
    K: DefaultSerde + Send,
    VL: DefaultSerde + Send,
    VR: DefaultSerde + Send,
{
    let w = &config.windows;
    let size = Duration::from_millis((w.before_ms + w.after_ms).max(1).unsigned_abs());
    let retention = Duration::from_millis(
        w.retention_ms()
            .max(w.before_ms + w.after_ms)
            .max(1)
            .unsigned_abs(),
    );
    let dead_letters = w.on_late == OnLate::DeadLetter;
    let mut specs = vec![
        StoreSpec::with_serdes::<K, Held<VL>>(
            &config.left_store,
            K::Serde::default(),
            HeldSerde(VL::Serde::default()),
        )
        .windowed(size, retention)?
        .with_late_dead_letters(dead_letters),
        StoreSpec::with_serdes::<K, Held<VR>>(
            &config.right_store,
            K::Serde::default(),
            HeldSerde(VR::Serde::default()),
        )
        .windowed(size, retention)?
        .with_late_dead_letters(dead_letters),
    ];
    if config.kind != JoinKind::Inner {
        specs.push(
            StoreSpec::with_serdes::<OuterKey<K>, Held<Pending<VL, VR>>>(
                &config.outer_store,
                OuterKeySerde(K::Serde::default()),
                HeldSerde(PendingSerde(VL::Serde::default(), VR::Serde::default())),
            )
            .windowed(
                Duration::from_millis(1),
                Duration::from_millis(MAX_MS.unsigned_abs()),
            )?,
        );
        specs.push(StoreSpec::new::<String, i64>(&config.outer_time_store));
    }
    Ok(specs)
}

/// Which side a processor is: its input type, the other side's, and how the user's joiner
/// (always `(key, left, right)`) is called from it.
trait Orientation<VL, VR>: Send + Sync + 'static {
    type This: Clone + Send + 'static;
    type Other: Clone + Send + 'static;
    const LEFT: bool;
    fn pending(value: Self::This) -> Pending<VL, VR>;
    fn call<K, VO>(
        joiner: &impl Fn(&K, Option<&Record<K, VL>>, Option<&Record<K, VR>>) -> VO,
        key: &K,
        this: Option<&Record<K, Self::This>>,
        other: Option<&Record<K, Self::Other>>,
    ) -> VO;
}

struct LeftSide;
struct RightSide;

impl<VL: Clone + Send + 'static, VR: Clone + Send + 'static> Orientation<VL, VR> for LeftSide {
    type This = VL;
    type Other = VR;
    const LEFT: bool = true;
    fn pending(value: VL) -> Pending<VL, VR> {
        Pending::Left(value)
    }
    fn call<K, VO>(
        joiner: &impl Fn(&K, Option<&Record<K, VL>>, Option<&Record<K, VR>>) -> VO,
        key: &K,
        this: Option<&Record<K, VL>>,
        other: Option<&Record<K, VR>>,
    ) -> VO {
        joiner(key, this, other)
    }
}

impl<VL: Clone + Send + 'static, VR: Clone + Send + 'static> Orientation<VL, VR> for RightSide {
    type This = VR;
    type Other = VL;
    const LEFT: bool = false;
    fn pending(value: VR) -> Pending<VL, VR> {
        Pending::Right(value)
    }
    fn call<K, VO>(
        joiner: &impl Fn(&K, Option<&Record<K, VL>>, Option<&Record<K, VR>>) -> VO,
        key: &K,
        this: Option<&Record<K, VR>>,
        other: Option<&Record<K, VL>>,
    ) -> VO {
        joiner(key, other, this)
    }
}

/// One side of a join: the processor over that side's stream.
struct Side<K, VL, VR, VO, F, O> {
    config: Arc<Config>,
    joiner: F,
    _types: PhantomData<fn() -> (K, VL, VR, VO, O)>,
}

impl<K, VL, VR, VO, F: Clone, O> Clone for Side<K, VL, VR, VO, F, O> {
    fn clone(&self) -> Self {
        Side {
            config: self.config.clone(),
            joiner: self.joiner.clone(),
            _types: PhantomData,
        }
    }
}

/// The records of one key in a batch: the other side's records in the batch's windows, and
/// the timestamps of the other side's pending entries there.
struct Group<K, VX> {
    key: K,
    from: i64,
    to: i64,
    others: Vec<(i64, Vec<Record<K, VX>>)>,
    pending_other: BTreeSet<i64>,
    /// This side's records to put, by index in the batch.
    puts: Vec<usize>,
}

/// What a record of the batch is to the join.
enum Role {
    /// Joins: its group's index.
    Join(usize),
    /// Its key serializes to null.
    NullKey,
    /// Already sent through its bad-record policy.
    Skip,
}

type OuterStore<'a, K, VL, VR> = WindowStore<'a, OuterKey<K>, Held<Pending<VL, VR>>>;

impl<K, VL, VR, VO, F, O> Side<K, VL, VR, VO, F, O>
where
    K: DefaultSerde + Clone + Send,
    VL: DefaultSerde + Clone + Send,
    VR: DefaultSerde + Clone + Send,
    VO: Send + 'static,
    F: Fn(&K, Option<&Record<K, VL>>, Option<&Record<K, VR>>) -> VO + Clone + Send + Sync + 'static,
    O: Orientation<VL, VR>,
{
    /// (before, after) seen from this side.
    fn reach(&self) -> (i64, i64) {
        let w = &self.config.windows;
        if O::LEFT {
            (w.before_ms, w.after_ms)
        } else {
            (w.after_ms, w.before_ms)
        }
    }

    fn emits_unmatched(&self) -> bool {
        match self.config.kind {
            JoinKind::Inner => false,
            JoinKind::Left => O::LEFT,
            JoinKind::Outer => true,
        }
    }

    /// Whether the other side keeps pending records (which this side's matches remove).
    fn other_emits_unmatched(&self) -> bool {
        match self.config.kind {
            JoinKind::Inner => false,
            JoinKind::Left => !O::LEFT,
            JoinKind::Outer => true,
        }
    }

    fn store_names(&self) -> (&str, &str) {
        let c = &*self.config;
        if O::LEFT {
            (&c.left_store, &c.right_store)
        } else {
            (&c.right_store, &c.left_store)
        }
    }

    fn output(trigger: &Record<K, O::This>, key: K, value: VO, timestamp: i64) -> Record<K, VO> {
        Record {
            key,
            value,
            timestamp,
            headers: trigger.headers.clone(),
            origin: trigger.origin.clone(),
        }
    }

    fn run(&mut self, records: &[Record<K, O::This>], ctx: &mut Context<'_, K, VO>) -> Result<()> {
        let (before, after) = self.reach();
        let retention = self.config.windows.retention_ms();
        let (this_name, other_name) = self.store_names();
        let this_name = this_name.to_owned();
        let this_store = ctx.window_store::<K, Held<O::This>>(&this_name)?;
        let other_store = ctx.window_store::<K, Held<O::Other>>(other_name)?;
        let outer = match self.config.kind {
            JoinKind::Inner => None,
            _ => Some(
                ctx.window_store::<OuterKey<K>, Held<Pending<VL, VR>>>(&self.config.outer_store)?,
            ),
        };
        let key_serde = K::Serde::default();
        // Kafka Streams' `minTime`, kept with the state (so a batch run again after a record
        // error, or a restart, starts from what the state says): `i64::MAX` until a record waits.
        let mut min_store = match &outer {
            Some(_) => Some(ctx.store::<String, i64>(&self.config.outer_time_store)?),
            None => None,
        };
        let mut min_time = match &min_store {
            Some(s) => s.get(MIN_TIME_KEY)?.unwrap_or(i64::MAX),
            None => i64::MAX,
        };
        let min_time_before = min_time;
        let grace = self.config.windows.grace_ms;

        // The batch's keys, grouped by their bytes, in order of first appearance.
        let mut roles = Vec::with_capacity(records.len());
        let mut groups: Vec<Group<K, O::Other>> = Vec::new();
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        for r in records {
            let t = r.timestamp;
            if t < 0 {
                let e = Error::processing(format!(
                    "a stream-stream join cannot take a record of negative timestamp {t}"
                ));
                ctx.fail_record(r, e)?;
                roles.push(Role::Skip);
                continue;
            }
            let bytes = match key_serde.serialize(&r.key) {
                Ok(Some(b)) => b,
                Ok(None) => {
                    roles.push(Role::NullKey);
                    continue;
                }
                Err(e) => {
                    let e = Error::processing(format!(
                        "the join cannot serialize the record's key: {e}"
                    ));
                    ctx.fail_record(r, e)?;
                    roles.push(Role::Skip);
                    continue;
                }
            };
            let (from, to) = ((t - before).max(0), (t + after).max(0));
            let g = *index.entry(bytes).or_insert_with(|| {
                groups.push(Group {
                    key: r.key.clone(),
                    from,
                    to,
                    others: Vec::new(),
                    pending_other: BTreeSet::new(),
                    puts: Vec::new(),
                });
                groups.len() - 1
            });
            let group = &mut groups[g];
            group.from = group.from.min(from);
            group.to = group.to.max(to);
            roles.push(Role::Join(g));
        }

        // One scan of the other side's store (and of its pending entries) per key.
        for g in &mut groups {
            for (ts, held) in other_store.fetch(&g.key, g.from, g.to)? {
                let recs = held
                    .0
                    .into_iter()
                    .map(|value| Record {
                        key: g.key.clone(),
                        value,
                        timestamp: ts,
                        headers: Headers::new(),
                        origin: None,
                    })
                    .collect();
                g.others.push((ts, recs));
            }
            if let Some(outer) = &outer
                && self.other_emits_unmatched()
            {
                let other_key = OuterKey {
                    left: !O::LEFT,
                    key: g.key.clone(),
                };
                g.pending_other = outer
                    .fetch(&other_key, g.from, g.to)?
                    .into_iter()
                    .map(|(ts, _)| ts)
                    .collect();
            }
        }

        let mut stream_time = match &outer {
            Some(o) => o.stream_time()?,
            None => None,
        };
        let mut this_time = this_store.stream_time()?;
        for (i, r) in records.iter().enumerate() {
            let t = r.timestamp;
            let g = match roles[i] {
                Role::Skip => continue,
                Role::Join(g) => Some(g),
                Role::NullKey => None,
            };
            let now = stream_time.map_or(t, |s| s.max(t));
            stream_time = Some(now);
            let Some(g) = g else {
                if self.emits_unmatched() {
                    let v = O::call(&self.joiner, &r.key, Some(r), None);
                    ctx.forward(Self::output(r, r.key.clone(), v, t));
                } else {
                    let e = Error::processing(
                        "a stream-stream join cannot take a record whose key is null",
                    );
                    ctx.fail_record(r, e)?;
                }
                continue;
            };
            // As Java: only a record at the stream time looks, and only when a waiting record
            // may have closed (`minTime + after + grace < stream time`).
            if let Some(outer) = &outer
                && t == now
                && min_time.saturating_add(after).saturating_add(grace) < now
            {
                self.emit_closed(
                    outer,
                    now,
                    r,
                    ctx,
                    &mut groups,
                    &index,
                    &key_serde,
                    &mut min_time,
                )?;
            }
            let group = &mut groups[g];
            let (from, to) = ((t - before).max(0), (t + after).max(0));
            let mut matched = false;
            for (ts, others) in &group.others {
                if *ts < from || *ts > to {
                    continue;
                }
                matched = true;
                if let Some(outer) = &outer
                    && group.pending_other.remove(ts)
                {
                    let other_key = OuterKey {
                        left: !O::LEFT,
                        key: group.key.clone(),
                    };
                    outer.delete(&other_key, *ts)?;
                }
                for other in others {
                    let v = O::call(&self.joiner, &r.key, Some(r), Some(other));
                    ctx.forward(Self::output(r, r.key.clone(), v, t.max(*ts)));
                }
            }
            if !matched && self.emits_unmatched() {
                match &outer {
                    Some(outer) if to >= now => {
                        let this_key = OuterKey {
                            left: O::LEFT,
                            key: r.key.clone(),
                        };
                        let mut held = outer.get(&this_key, t)?.unwrap_or_default();
                        held.0.push(O::pending(r.value.clone()));
                        min_time = min_time.min(t);
                        if outer.put(&this_key, t, &held)? == WindowWrite::Expired {
                            return Err(Error::Internal(format!(
                                "the outer store `{}` refused a pending record at {t}",
                                self.config.outer_store
                            )));
                        }
                    }
                    _ => {
                        let v = O::call(&self.joiner, &r.key, Some(r), None);
                        ctx.forward(Self::output(r, r.key.clone(), v, t));
                    }
                }
            }
            // The put into this side's store (Kafka Streams' `KStreamJoinWindow`): refused when
            // expired by the store's own stream time.
            let late_at = this_time.filter(|s| t <= s - retention);
            this_time = Some(this_time.map_or(t, |s| s.max(t)));
            match late_at {
                None => group.puts.push(i),
                Some(store_time) => self.late(ctx, &this_name, r, store_time)?,
            }
        }

        // This side's puts, one per (key, timestamp), appended to what the store holds.
        for g in &groups {
            let (Some(lo), Some(hi)) = (
                g.puts.iter().map(|&i| records[i].timestamp).min(),
                g.puts.iter().map(|&i| records[i].timestamp).max(),
            ) else {
                continue;
            };
            let mut held: std::collections::BTreeMap<i64, Held<O::This>> =
                this_store.fetch(&g.key, lo, hi)?.into_iter().collect();
            for &i in &g.puts {
                held.entry(records[i].timestamp)
                    .or_default()
                    .0
                    .push(records[i].value.clone());
            }
            for (ts, values) in &held {
                // Accepted above against the store's stream time, which has not moved yet.
                let _ = this_store.put(&g.key, *ts, values)?;
            }
        }
        if let Some(t) = this_time {
            this_store.advance_stream_time_logged(t)?;
        }
        if let (Some(outer), Some(t)) = (&outer, stream_time) {
            outer.advance_stream_time_logged(t)?;
        }
        if let Some(s) = &mut min_store
            && min_time != min_time_before
        {
            s.put(&MIN_TIME_KEY.to_owned(), &min_time)?;
        }
        Ok(())
    }

    /// Forwards (joined with `None`) and removes the pending records whose window has closed at
    /// stream time `now`, in (timestamp, right before left, key) order.
    ///
    /// Kafka Streams' `emitNonJoinedOuterRecords`, rule for rule, since the rules decide when an
    /// unmatched record comes out (and so whether a later record of the other side still matches
    /// it first): every entry visited sets `min_time` to its timestamp; an entry whose window is
    /// still open is passed over, and the scan stops once an open entry of each side was seen.
    #[allow(clippy::too_many_arguments)]
    fn emit_closed(
        &self,
        outer: &OuterStore<'_, K, VL, VR>,
        now: i64,
        trigger: &Record<K, O::This>,
        ctx: &mut Context<'_, K, VO>,
        groups: &mut [Group<K, O::Other>],
        index: &HashMap<Vec<u8>, usize>,
        key_serde: &K::Serde,
        min_time: &mut i64,
    ) -> Result<()> {
        let w = &self.config.windows;
        let (mut left_open, mut right_open) = (false, false);
        for (pending_key, ts, held) in outer.fetch_all(i64::MIN, i64::MAX)? {
            if left_open && right_open {
                break;
            }
            *min_time = ts;
            let reach = if pending_key.left {
                w.after_ms
            } else {
                w.before_ms
            };
            if ts.saturating_add(reach).saturating_add(w.grace_ms) >= now {
                if pending_key.left {
                    left_open = true;
                } else {
                    right_open = true;
                }
                continue;
            }
            for p in held.0 {
                let key = &pending_key.key;
                let v = match p {
                    Pending::Left(value) => {
                        let left = stored(key, value, ts);
                        (self.joiner)(key, Some(&left), None)
                    }
                    Pending::Right(value) => {
                        let right = stored(key, value, ts);
                        (self.joiner)(key, None, Some(&right))
                    }
                };
                ctx.forward(Self::output(trigger, key.clone(), v, ts));
            }
            outer.delete(&pending_key, ts)?;
            if pending_key.left != O::LEFT
                && let Ok(Some(bytes)) = key_serde.serialize(&pending_key.key)
                && let Some(&g) = index.get(&bytes)
            {
                groups[g].pending_other.remove(&ts);
            }
        }
        Ok(())
    }

    fn late(
        &self,
        ctx: &mut Context<'_, K, VO>,
        store: &str,
        record: &Record<K, O::This>,
        store_time: i64,
    ) -> Result<()> {
        let w = &self.config.windows;
        let message = format!(
            "late record: timestamp {} is at or before the stream time {store_time} of join \
             store `{store}` minus its retention ({} ms: before + after + grace); later records \
             will not join it",
            record.timestamp,
            w.retention_ms()
        );
        let dead_letter = (w.on_late == OnLate::DeadLetter).then(|| {
            Headers::new()
                .with("kstreams.late.timestamp", record.timestamp.to_string())
                .with("kstreams.late.stream.time", store_time.to_string())
                .with("kstreams.late.grace.ms", w.grace_ms.to_string())
        });
        ctx.failures.late_record(
            &ctx.node.name,
            store,
            record.origin.as_ref(),
            message,
            dead_letter,
        )
    }
}

/// A record read back from a join store: its key, value and timestamp (stores keep no headers).
fn stored<K: Clone, V>(key: &K, value: V, timestamp: i64) -> Record<K, V> {
    Record {
        key: key.clone(),
        value,
        timestamp,
        headers: Headers::new(),
        origin: None,
    }
}

impl<K, VL, VR, VO, F, O> BatchProcessor<K, O::This> for Side<K, VL, VR, VO, F, O>
where
    K: DefaultSerde + Clone + Send,
    VL: DefaultSerde + Clone + Send,
    VR: DefaultSerde + Clone + Send,
    VO: Send + 'static,
    F: Fn(&K, Option<&Record<K, VL>>, Option<&Record<K, VR>>) -> VO + Clone + Send + Sync + 'static,
    O: Orientation<VL, VR>,
{
    type OutKey = K;
    type OutValue = VO;

    fn stores(&self) -> Vec<StoreSpec> {
        self.config.specs.clone()
    }

    fn init(&mut self, _ctx: &mut InitContext<'_>) -> Result<()> {
        match &self.config.error {
            Some(e) => Err(Error::Config(e.clone())),
            None => Ok(()),
        }
    }

    fn process_batch(
        &mut self,
        records: &[Record<K, O::This>],
        ctx: &mut Context<'_, K, VO>,
    ) -> Result<()> {
        self.run(records, ctx)
    }
}

impl TopologyBuilder {
    /// Joins two streams of the same key type over time windows (Kafka Streams'
    /// `KStream#join` / `leftJoin` / `outerJoin` with `JoinWindows`, 4.x; the whole story in
    /// `docs/joins-stream-stream.md`).
    ///
    /// `joiner(key, left, right)` makes each result: both `Some` for a matched pair, a left
    /// record at `tl` and a right one at `tr` with `tl − before <= tr <= tl + after`, timestamped
    /// `max(tl, tr)`; duplicates give every pair. In a left (outer) join, a left (any) record
    /// that matched nothing comes out with `None` for the other side once its window has closed
    /// (`ts + after + grace < stream time` for a left record, `ts + before + grace` for a right
    /// one; stream time is the largest timestamp the join has seen), never while a match can
    /// still arrive. Each side's store keeps a record for [`JoinWindows::retention_ms`] behind
    /// its own stream time; a record older than that is late: counted, dead-lettered under
    /// [`OnLate::DeadLetter`], and never joined by later records. A record read back from the
    /// join's stores has no headers and no origin. The two input topics must be co-partitioned.
    ///
    /// Adds the processors `<name>-left` and `<name>-right`, a merge of their outputs and the window
    /// stores `<name>-this`, `<name>-other` and (left and outer joins) `<name>-outer` and the
    /// key-value store `<name>-outer-time`, all changelogged.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams::join::{JoinKind, JoinWindows};
    /// use kstreams::testing::TopologyTestDriver;
    /// use kstreams::{Record, Topology};
    ///
    /// let mut t = Topology::builder();
    /// let orders = t.source::<String, String>("orders");
    /// let payments = t.source::<String, u64>("payments");
    /// let windows = JoinWindows::of(Duration::from_secs(60), Duration::ZERO)?;
    /// let paid = t.join_streams("paid", &orders, &payments, windows, JoinKind::Inner, |_k, o, p| {
    ///     format!("{} paid {}", o.map_or("-", |o| o.value.as_str()), p.map_or(0, |p| p.value))
    /// });
    /// t.sink("paid-orders", &paid);
    /// let mut driver = TopologyTestDriver::new(t.build()?)?;
    /// driver.pipe_batch("orders", [Record::new("o1".to_string(), "book".to_string()).with_timestamp(1_000)])?;
    /// driver.pipe_batch("payments", [Record::new("o1".to_string(), 12u64).with_timestamp(30_000)])?;
    /// let out = driver.read_output::<String, String>("paid-orders")?;
    /// assert_eq!(out[0].value, "book paid 12");
    /// assert_eq!(out[0].timestamp, 30_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join_streams<K, VL, VR, VO>(
        &mut self,
        name: &str,
        left: &Stream<K, VL>,
        right: &Stream<K, VR>,
        windows: JoinWindows,
        kind: JoinKind,
        joiner: impl Fn(&K, Option<&Record<K, VL>>, Option<&Record<K, VR>>) -> VO
        + Clone
        + Send
        + Sync
        + 'static,
    ) -> Stream<K, VO>
    where
        K: DefaultSerde + Clone + Send,
        VL: DefaultSerde + Clone + Send,
        VR: DefaultSerde + Clone + Send,
        VO: Send + 'static,
    {
        let mut config = Config {
            left_store: format!("{name}-this"),
            right_store: format!("{name}-other"),
            outer_store: format!("{name}-outer"),
            outer_time_store: format!("{name}-outer-time"),
            windows,
            kind,
            specs: Vec::new(),
            error: None,
        };
        match store_specs::<K, VL, VR>(&config) {
            Ok(specs) => config.specs = specs,
            Err(e) => config.error = Some(format!("stream-stream join `{name}`: {e}")),
        }
        let config = Arc::new(config);
        let left_side = Side::<K, VL, VR, VO, _, LeftSide> {
            config: config.clone(),
            joiner: joiner.clone(),
            _types: PhantomData,
        };
        let right_side = Side::<K, VL, VR, VO, _, RightSide> {
            config,
            joiner,
            _types: PhantomData,
        };
        let l = self.add_named(&format!("{name}-left"), left_side, left);
        let r = self.add_named(&format!("{name}-right"), right_side, right);
        self.merge(&[&l, &r])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serde::{StringSerde, U64Serde};

    #[test]
    fn held_values_round_trip_with_nulls() -> Result<(), SerdeError> {
        let s = HeldSerde(crate::serde::OptionSerde(StringSerde));
        let held = Held(vec![Some("a".to_owned()), None, Some(String::new())]);
        let bytes = s.serialize(&held)?;
        assert_eq!(s.deserialize(bytes.as_deref())?, held);
        assert!(s.deserialize(Some(&[1, 0, 0])).is_err());
        assert!(s.deserialize(Some(&[7])).is_err());
        Ok(())
    }

    #[test]
    fn outer_keys_order_right_before_left_then_key() -> Result<(), SerdeError> {
        let s = OuterKeySerde(StringSerde);
        let k = |left, key: &str| {
            s.serialize(&OuterKey {
                left,
                key: key.to_owned(),
            })
        };
        assert!(k(false, "b")? < k(true, "a")?);
        assert!(k(true, "a")? < k(true, "b")?);
        let p = PendingSerde(StringSerde, U64Serde);
        let left: Pending<String, u64> = Pending::Left("x".into());
        assert_eq!(p.deserialize(p.serialize(&left)?.as_deref())?, left);
        let right: Pending<String, u64> = Pending::Right(7);
        assert_eq!(p.deserialize(p.serialize(&right)?.as_deref())?, right);
        Ok(())
    }

    #[test]
    fn windows_refuse_sums_past_100_years() {
        let year = Duration::from_secs(365 * 24 * 3600);
        assert!(JoinWindows::of(year * 60, year * 10).is_err());
        assert!(JoinWindows::of(year * 200, Duration::ZERO).is_err());
        assert!(JoinWindows::of(year, Duration::ZERO).is_ok());
    }
}
