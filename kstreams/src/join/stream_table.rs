//! Stream-table and stream-global-table joins: Kafka Streams' `KStreamKTableJoinProcessor`
//! (with KIP-923's grace buffer) and `KStreamGlobalKTableJoin`, batch-first.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::{TKey, TValue, versioned_history};
use crate::context::{Context, InitContext};
use crate::error::{Error, Result, SerdeError};
use crate::processor::BatchProcessor;
use crate::record::{Headers, Origin, Record};
use crate::serde::{DefaultSerde, Serde};
use crate::store::StoreSpec;
use crate::table::{GlobalTable, Table, TableStore};

type Joiner<K, V, TV, VO> = Arc<dyn Fn(&Record<K, V>, Option<&TV>) -> Option<VO> + Send + Sync>;
type KeyFn<K, V, TK> = Arc<dyn Fn(&Record<K, V>) -> Option<TK> + Send + Sync>;

/// Where a lookup join reads its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The task's own store (a co-partitioned [`Table`]).
    Task,
    /// The instance's global store (a [`GlobalTable`]).
    Global,
}

/// Reads `store` for each `(key, timestamp)`: its current value, or, for a versioned store, its
/// value as of the timestamp. One batched read, or one read per key when `per_record`.
fn lookup<K: 'static, V: 'static, OK: 'static, OV: 'static>(
    ctx: &Context<'_, OK, OV>,
    side: Side,
    store: &str,
    versioned: bool,
    keys: Vec<(K, i64)>,
    per_record: bool,
) -> Result<Vec<Option<V>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    if versioned {
        let s = match side {
            Side::Task => ctx.read_versioned_store::<K, V>(store)?,
            Side::Global => ctx.global_versioned_store::<K, V>(store)?,
        };
        let found = if per_record {
            keys.iter()
                .map(|(k, t)| s.get_as_of(k, *t))
                .collect::<Result<Vec<_>>>()?
        } else {
            s.get_batch_as_of(&keys)?
        };
        return Ok(found.into_iter().map(|r| r.map(|r| r.value)).collect());
    }
    let only_keys: Vec<K> = keys.into_iter().map(|(k, _)| k).collect();
    let s = match side {
        Side::Task => ctx.read_store::<K, V>(store)?,
        Side::Global => ctx.global_store::<K, V>(store)?,
    };
    if per_record {
        only_keys.iter().map(|k| s.get(k)).collect()
    } else {
        s.get_batch(&only_keys)
    }
}

// ---- The grace buffer (KIP-923) -------------------------------------------------------------

/// An entry of a stream-table join's grace buffer: the operator's stream time and next sequence
/// number (under the reserved key [`META_KEY`]), or a buffered stream record.
#[derive(Debug, Clone, PartialEq)]
#[doc(hidden)]
pub enum Buffered<K, V> {
    /// The operator's stream time and the next buffered record's sequence number.
    Meta {
        /// The largest timestamp the operator has seen.
        stream_time: i64,
        /// The sequence number of the next buffered record.
        next_seq: u64,
    },
    /// A stream record waiting for the table to catch up.
    Record(Record<K, V>),
}

/// The key of the buffer's stream time and sequence number (shorter than any record's key).
const META_KEY: [u8; 1] = [0x00];

/// A buffered record's key: `0x01 ‖ timestamp (sign flipped, big-endian) ‖ seq`, so key order is
/// (timestamp, arrival) order, as Java's `TimeOrderedKeyValueBuffer`.
fn buffer_key(timestamp: i64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(0x01);
    k.extend_from_slice(&((timestamp as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The serde of a grace buffer's entries, over the stream's key and value serdes.
struct BufferSerde<K, V> {
    key: Box<dyn Serde<K>>,
    value: Box<dyn Serde<V>>,
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
        Some(b) => {
            // Lengths over u32::MAX - 1 cannot occur: a Kafka record is far smaller.
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// A cursor over a buffer entry's bytes; every read is checked (a corrupt entry is an error).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], SerdeError> {
        if self.0.len() < n {
            return Err(SerdeError::new("truncated grace-buffer entry"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], SerdeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn bytes(&mut self) -> std::result::Result<Option<&'a [u8]>, SerdeError> {
        let len = u32::from_be_bytes(self.array()?);
        if len == u32::MAX {
            return Ok(None);
        }
        self.take(len as usize).map(Some)
    }
}

impl<K: Send + 'static, V: Send + 'static> Serde<Buffered<K, V>> for BufferSerde<K, V> {
    fn serialize(
        &self,
        entry: &Buffered<K, V>,
    ) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        let mut out = Vec::new();
        match entry {
            Buffered::Meta {
                stream_time,
                next_seq,
            } => {
                out.push(0);
                out.extend_from_slice(&stream_time.to_be_bytes());
                out.extend_from_slice(&next_seq.to_be_bytes());
            }
            Buffered::Record(r) => {
                out.push(1);
                out.extend_from_slice(&r.timestamp.to_be_bytes());
                put_bytes(&mut out, self.key.serialize(&r.key)?.as_deref());
                put_bytes(&mut out, self.value.serialize(&r.value)?.as_deref());
                out.extend_from_slice(&(r.headers.len() as u32).to_be_bytes());
                for (name, value) in r.headers.iter_raw() {
                    put_bytes(&mut out, Some(name));
                    put_bytes(&mut out, value);
                }
                match &r.origin {
                    None => out.push(0),
                    Some(o) => {
                        out.push(1);
                        put_bytes(&mut out, Some(o.topic.as_bytes()));
                        out.extend_from_slice(&o.partition.to_be_bytes());
                        out.extend_from_slice(&o.offset.to_be_bytes());
                    }
                }
            }
        }
        Ok(Some(out))
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> std::result::Result<Buffered<K, V>, SerdeError> {
        let mut r = Reader(bytes.ok_or_else(|| SerdeError::new("null grace-buffer entry"))?);
        let entry = match r.array::<1>()?[0] {
            0 => Buffered::Meta {
                stream_time: i64::from_be_bytes(r.array()?),
                next_seq: u64::from_be_bytes(r.array()?),
            },
            1 => {
                let timestamp = i64::from_be_bytes(r.array()?);
                let key = self.key.deserialize(r.bytes()?)?;
                let value = self.value.deserialize(r.bytes()?)?;
                let n = u32::from_be_bytes(r.array()?);
                let mut headers = Headers::new();
                for _ in 0..n {
                    let name = r
                        .bytes()?
                        .ok_or_else(|| SerdeError::new("null header name in grace-buffer entry"))?;
                    headers.push_raw(name.to_vec(), r.bytes()?.map(<[u8]>::to_vec));
                }
                let origin = match r.array::<1>()?[0] {
                    0 => None,
                    _ => {
                        let topic = r
                            .bytes()?
                            .ok_or_else(|| SerdeError::new("null topic in grace-buffer entry"))?;
                        let topic = String::from_utf8_lossy(topic).into_owned();
                        let partition = i32::from_be_bytes(r.array()?);
                        let offset = i64::from_be_bytes(r.array()?);
                        Some(Origin::new(topic, partition, offset))
                    }
                };
                let mut rec = Record::new(key, value)
                    .with_timestamp(timestamp)
                    .with_headers(headers);
                rec.origin = origin;
                Buffered::Record(rec)
            }
            tag => {
                return Err(SerdeError::new(format!(
                    "unknown grace-buffer entry tag {tag}"
                )));
            }
        };
        if !r.0.is_empty() {
            return Err(SerdeError::new("trailing bytes in grace-buffer entry"));
        }
        Ok(entry)
    }
}

/// A stream-table join's grace: how long a stream record waits for table updates.
#[derive(Debug, Clone)]
struct Grace {
    ms: i64,
    /// The buffer's store (`Vec<u8>` keys, [`Buffered`] values) under a name.
    spec: fn(&str) -> StoreSpec,
}

/// A grace buffer's store: `Vec<u8>` keys, [`Buffered`] values over the stream's serdes.
fn buffer_spec<K: DefaultSerde + Send, V: DefaultSerde + Send>(name: &str) -> StoreSpec {
    let serde = BufferSerde::<K, V> {
        key: Box::new(K::Serde::default()),
        value: Box::new(V::Serde::default()),
    };
    StoreSpec::with_serdes::<Vec<u8>, Buffered<K, V>>(
        name,
        <Vec<u8> as DefaultSerde>::Serde::default(),
        serde,
    )
}

/// What the grace buffer hands to the join, in order: records of this batch joined at once and
/// records whose wait is over.
enum Due<'r, K, V> {
    Now(&'r Record<K, V>),
    Evicted(Record<K, V>),
}

impl<K, V> Due<'_, K, V> {
    fn record(&self) -> &Record<K, V> {
        match self {
            Due::Now(r) => r,
            Due::Evicted(r) => r,
        }
    }
}

/// Runs a batch through the grace buffer (Java's `KStreamKTableJoinProcessor` with a buffer):
/// stream time is the largest timestamp seen; a record at or before `stream time - grace` is
/// joined at once, a later one is buffered; each advance of stream time evicts, in (timestamp,
/// arrival) order, the buffered records at or before `stream time - grace`.
fn through_buffer<'r, K, V, OK, OV>(
    ctx: &Context<'_, OK, OV>,
    store: &str,
    grace_ms: i64,
    records: &'r [Record<K, V>],
) -> Result<Vec<Due<'r, K, V>>>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    OK: 'static,
    OV: 'static,
{
    let mut buffer = ctx.store::<Vec<u8>, Buffered<K, V>>(store)?;
    let meta_key = META_KEY.to_vec();
    let (mut stream_time, mut next_seq) = match buffer.get(&meta_key)? {
        Some(Buffered::Meta {
            stream_time,
            next_seq,
        }) => (stream_time, next_seq),
        Some(Buffered::Record(_)) => {
            return Err(Error::Store(format!(
                "store `{}`: a record under the grace buffer's reserved key",
                store
            )));
        }
        None => (i64::MIN, 0),
    };
    let before = (stream_time, next_seq);
    let mut due = Vec::with_capacity(records.len());
    for r in records {
        let advanced = r.timestamp > stream_time;
        stream_time = stream_time.max(r.timestamp);
        let deadline = stream_time.saturating_sub(grace_ms);
        if r.timestamp <= deadline {
            due.push(Due::Now(r));
        } else {
            buffer.put(
                &buffer_key(r.timestamp, next_seq),
                &Buffered::Record(r.clone()),
            )?;
            next_seq += 1;
        }
        if advanced {
            let upper = buffer_key(deadline, u64::MAX);
            let lower = buffer_key(i64::MIN, 0);
            let mut evicted = Vec::new();
            for entry in buffer.range(lower..=upper)? {
                let (k, v) = entry?;
                match v {
                    Buffered::Record(rec) => due.push(Due::Evicted(rec)),
                    Buffered::Meta { .. } => {
                        return Err(Error::Store(format!(
                            "store `{}`: grace-buffer metadata under a record's key",
                            store
                        )));
                    }
                }
                evicted.push(k);
            }
            buffer.delete_batch(&evicted)?;
        }
    }
    if (stream_time, next_seq) != before {
        buffer.put(
            &meta_key,
            &Buffered::Meta {
                stream_time,
                next_seq,
            },
        )?;
    }
    Ok(due)
}

// ---- Stream-table ----------------------------------------------------------------------------

/// A stream-table join ([`stream_table`], [`left_stream_table`]): a [`BatchProcessor`] of the
/// stream's records, keyed as the table.
pub struct StreamTableJoin<S: TableStore, V, VO> {
    name: String,
    /// The table's store, as the table declares it.
    table: StoreSpec,
    left: bool,
    joiner: Joiner<TKey<S>, V, TValue<S>, VO>,
    grace: Option<Grace>,
    per_record: bool,
    _s: PhantomData<fn() -> S>,
}

impl<S: TableStore, V, VO> Clone for StreamTableJoin<S, V, VO> {
    fn clone(&self) -> Self {
        StreamTableJoin {
            name: self.name.clone(),
            table: self.table.clone(),
            left: self.left,
            joiner: self.joiner.clone(),
            grace: self.grace.clone(),
            per_record: self.per_record,
            _s: PhantomData,
        }
    }
}

impl<S: TableStore, V, VO> std::fmt::Debug for StreamTableJoin<S, V, VO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTableJoin")
            .field("name", &self.name)
            .field("table", &self.table.name())
            .field("left", &self.left)
            .field("grace_ms", &self.grace.as_ref().map(|g| g.ms))
            .field("per_record", &self.per_record)
            .finish()
    }
}

fn new_stream_table<S: TableStore, V, VO>(
    table: &Table<S>,
    left: bool,
    joiner: Joiner<TKey<S>, V, TValue<S>, VO>,
) -> StreamTableJoin<S, V, VO> {
    StreamTableJoin {
        name: format!("{}-join", table.spec().name()),
        table: table.spec().clone(),
        left,
        joiner,
        grace: None,
        per_record: false,
        _s: PhantomData,
    }
}

/// An inner stream-table join: each stream record whose key has a value in the table (for a
/// versioned table: a value as of the record's timestamp) gives one record, keyed as the
/// stream record, with its timestamp and headers and the value `joiner(record, table value)`;
/// a record without a table value gives nothing (Kafka Streams' `KStream#join(KTable)`).
///
/// The stream and the table are co-partitioned: the join runs in the table's tasks. One
/// batched read of the table per batch. Key types must match: the table's key type is the
/// stream's (a compile error otherwise).
///
/// ```
/// use kstreams::testing::TopologyTestDriver;
/// use kstreams::{join, store, Record, Topology};
///
/// #[store(name = "customers")]
/// type Customers = kstreams::KeyValue<String, String>;
///
/// let mut t = Topology::builder();
/// let customers = t.table::<Customers<'static>>("customers");
/// let orders = t.source::<String, u64>("orders");
/// let enriched = t.add(
///     join::stream_table(&customers, |order: &Record<String, u64>, name: &String| {
///         format!("{name} ordered {}", order.value)
///     }),
///     &orders,
/// );
/// t.sink("enriched", &enriched);
///
/// let mut driver = TopologyTestDriver::new(t.build()?)?;
/// driver.pipe("customers", "c1".to_string(), Some("Ada".to_string()))?;
/// driver.pipe("orders", "c1".to_string(), 3u64)?;
/// driver.pipe("orders", "c2".to_string(), 4u64)?; // no such customer: no output
/// let out = driver.read_output::<String, String>("enriched")?;
/// assert_eq!(out.iter().map(|r| r.value.as_str()).collect::<Vec<_>>(), ["Ada ordered 3"]);
/// # Ok::<(), kstreams::Error>(())
/// ```
pub fn stream_table<S, V, VO, F>(table: &Table<S>, joiner: F) -> StreamTableJoin<S, V, VO>
where
    S: TableStore,
    F: Fn(&Record<TKey<S>, V>, &TValue<S>) -> VO + Send + Sync + 'static,
{
    new_stream_table(
        table,
        false,
        Arc::new(move |r: &Record<TKey<S>, V>, v: Option<&TValue<S>>| v.map(|v| joiner(r, v))),
    )
}

/// A left stream-table join: as [`stream_table`], but every stream record gives one record,
/// `joiner(record, None)` when the table has no value for its key (Kafka Streams'
/// `KStream#leftJoin(KTable)`).
pub fn left_stream_table<S, V, VO, F>(table: &Table<S>, joiner: F) -> StreamTableJoin<S, V, VO>
where
    S: TableStore,
    F: Fn(&Record<TKey<S>, V>, Option<&TValue<S>>) -> VO + Send + Sync + 'static,
{
    new_stream_table(
        table,
        true,
        Arc::new(move |r: &Record<TKey<S>, V>, v: Option<&TValue<S>>| Some(joiner(r, v))),
    )
}

impl<S: TableStore, V, VO> StreamTableJoin<S, V, VO> {
    /// The node's name (default `<table store>-join`), also the prefix of its grace buffer's
    /// store (`<name>-buffer`): give two joins of one table with a grace distinct names.
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    fn buffer_name(&self) -> String {
        format!("{}-buffer", self.name)
    }

    /// One table read per stream record instead of one per batch: the same results, for
    /// measuring what batching saves.
    #[must_use]
    pub fn lookup_per_record(mut self) -> Self {
        self.per_record = true;
        self
    }
}

impl<S, V, VO> StreamTableJoin<S, V, VO>
where
    S: TableStore,
    TKey<S>: DefaultSerde + Send,
    V: DefaultSerde + Send,
{
    /// KIP-923's stream-side grace: a stream record waits until stream time (the largest
    /// stream timestamp the join has seen) is `grace` past its timestamp, so that table updates
    /// with earlier timestamps that arrive meanwhile are part of its lookup; records are then
    /// joined in timestamp order. A record already older than that is joined at once.
    ///
    /// The waiting records are kept in a store of the join's own, `<name>-buffer`
    /// (changelogged, with the join's stream time), so a restart loses none. Only for a
    /// versioned table, with a history of at least `grace` (as Kafka Streams: an error of
    /// [`TopologyBuilder::build`](crate::TopologyBuilder::build) otherwise).
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams::testing::TopologyTestDriver;
    /// use kstreams::{join, store, Record, Topology};
    ///
    /// #[store(name = "rates", history = "1h")]
    /// type Rates = kstreams::VersionedKeyValue<String, u64>;
    ///
    /// let mut t = Topology::builder();
    /// let rates = t.table::<Rates<'static>>("rates");
    /// let trades = t.source::<String, u64>("trades");
    /// let valued = t.add(
    ///     join::stream_table(&rates, |tr: &Record<String, u64>, rate: &u64| tr.value * rate)
    ///         .grace(Duration::from_millis(100)),
    ///     &trades,
    /// );
    /// t.sink("valued", &valued);
    ///
    /// let mut driver = TopologyTestDriver::new(t.build()?)?;
    /// driver.pipe_batch("rates", [Record::new("EUR".to_string(), Some(2u64)).with_timestamp(0)])?;
    /// driver.pipe_batch("trades", [Record::new("EUR".to_string(), 5u64).with_timestamp(50)])?;
    /// // The rate as of 50 arrives late, within the grace: the waiting trade sees it.
    /// driver.pipe_batch("rates", [Record::new("EUR".to_string(), Some(3u64)).with_timestamp(40)])?;
    /// driver.pipe_batch("trades", [Record::new("EUR".to_string(), 1u64).with_timestamp(200)])?;
    /// let out = driver.read_output::<String, u64>("valued")?;
    /// assert_eq!(out.iter().map(|r| r.value).collect::<Vec<_>>(), [15]);
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        let ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        self.grace = Some(Grace {
            ms,
            spec: buffer_spec::<TKey<S>, V>,
        });
        self
    }
}

impl<S, V, VO> BatchProcessor<TKey<S>, V> for StreamTableJoin<S, V, VO>
where
    S: TableStore + 'static,
    TKey<S>: Clone + Send,
    TValue<S>: Send,
    V: Clone + Send + 'static,
    VO: Send + 'static,
{
    type OutKey = TKey<S>;
    type OutValue = VO;

    fn stores(&self) -> Vec<StoreSpec> {
        let mut specs = vec![self.table.clone().read_only()];
        if let Some(g) = &self.grace {
            specs.push((g.spec)(&self.buffer_name()));
        }
        specs
    }

    fn node_name(&self) -> Option<&str> {
        Some(&self.name)
    }

    fn init(&mut self, _ctx: &mut InitContext<'_>) -> Result<()> {
        let Some(grace) = &self.grace else {
            return Ok(());
        };
        let table = self.table.name();
        match versioned_history(&self.table) {
            None => Err(Error::Config(format!(
                "join `{}`: a grace period needs a versioned table, and `{table}` is not versioned \
                 (declare it as a `VersionedKeyValue` with a history)",
                self.name
            ))),
            Some(history) if history < grace.ms => Err(Error::Config(format!(
                "join `{}`: the grace period ({} ms) is longer than the history of the versioned \
                 table `{table}` ({history} ms); the history must be at least the grace period",
                self.name, grace.ms
            ))),
            Some(_) => Ok(()),
        }
    }

    fn process_batch(
        &mut self,
        records: &[Record<TKey<S>, V>],
        ctx: &mut Context<'_, TKey<S>, VO>,
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let spec = &self.table;
        let versioned = versioned_history(spec).is_some();
        let due: Vec<Due<'_, TKey<S>, V>> = match &self.grace {
            Some(g) => through_buffer(ctx, &self.buffer_name(), g.ms, records)?,
            None => records.iter().map(Due::Now).collect(),
        };
        let keys: Vec<(TKey<S>, i64)> = due
            .iter()
            .map(|d| (d.record().key.clone(), d.record().timestamp))
            .collect();
        let values = lookup::<TKey<S>, TValue<S>, _, _>(
            ctx,
            Side::Task,
            spec.name(),
            versioned,
            keys,
            self.per_record,
        )?;
        for (d, v) in due.iter().zip(&values) {
            let r = d.record();
            if let Some(out) = (self.joiner)(r, v.as_ref()) {
                ctx.forward(r.derive(r.key.clone(), out));
            }
        }
        Ok(())
    }
}

// ---- Stream-global-table ---------------------------------------------------------------------

/// A stream-global-table join ([`stream_global`], [`left_stream_global`]).
pub struct StreamGlobalJoin<S: TableStore, K, V, VO> {
    name: String,
    /// The global table's store.
    table: StoreSpec,
    left: bool,
    key_fn: KeyFn<K, V, TKey<S>>,
    joiner: Joiner<K, V, TValue<S>, VO>,
    per_record: bool,
    _s: PhantomData<fn() -> S>,
}

impl<S: TableStore, K, V, VO> Clone for StreamGlobalJoin<S, K, V, VO> {
    fn clone(&self) -> Self {
        StreamGlobalJoin {
            name: self.name.clone(),
            table: self.table.clone(),
            left: self.left,
            key_fn: self.key_fn.clone(),
            joiner: self.joiner.clone(),
            per_record: self.per_record,
            _s: PhantomData,
        }
    }
}

impl<S: TableStore, K, V, VO> std::fmt::Debug for StreamGlobalJoin<S, K, V, VO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamGlobalJoin")
            .field("name", &self.name)
            .field("table", &self.table.name())
            .field("left", &self.left)
            .field("per_record", &self.per_record)
            .finish()
    }
}

fn new_stream_global<S: TableStore, K, V, VO>(
    global: &GlobalTable<S>,
    left: bool,
    key_fn: KeyFn<K, V, TKey<S>>,
    joiner: Joiner<K, V, TValue<S>, VO>,
) -> StreamGlobalJoin<S, K, V, VO> {
    StreamGlobalJoin {
        name: format!("{}-global-join", global.spec().name()),
        table: global.spec().clone(),
        left,
        key_fn,
        joiner,
        per_record: false,
        _s: PhantomData,
    }
}

/// An inner stream-global-table join: `key_fn(record)` picks the global table's key (returning
/// the key, or an `Option` of it); a record whose key has a value gives one record with the
/// stream record's key, timestamp and headers and the value `joiner(record, table value)`, a
/// record without one gives nothing (Kafka Streams' `KStream#join(GlobalKTable, ..)`).
///
/// No co-partitioning: every instance holds the whole global table. A `None` key goes through
/// the processing policy of the record's topic (Kafka Streams drops it with a warning).
///
/// ```
/// use kstreams::testing::TopologyTestDriver;
/// use kstreams::{join, store, Record, Topology};
///
/// #[store(name = "currencies")]
/// type Currencies = kstreams::KeyValue<String, String>;
///
/// let mut t = Topology::builder();
/// let currencies = t.global_table::<Currencies<'static>>("currencies");
/// let payments = t.source::<String, String>("payments"); // value: "<currency> <amount>"
/// let named = t.add(
///     join::stream_global(
///         &currencies,
///         |p: &Record<String, String>| p.value.split_once(' ').map(|(c, _)| c.to_string()),
///         |p: &Record<String, String>, name: &String| format!("{} ({name})", p.value),
///     ),
///     &payments,
/// );
/// t.sink("named", &named);
///
/// let mut driver = TopologyTestDriver::new(t.build()?)?;
/// driver.pipe("currencies", "EUR".to_string(), Some("euro".to_string()))?;
/// driver.pipe("payments", "p1".to_string(), "EUR 12".to_string())?;
/// let out = driver.read_output::<String, String>("named")?;
/// assert_eq!(out[0].value, "EUR 12 (euro)");
/// # Ok::<(), kstreams::Error>(())
/// ```
pub fn stream_global<S, K, V, VO, KF, R, F>(
    global: &GlobalTable<S>,
    key_fn: KF,
    joiner: F,
) -> StreamGlobalJoin<S, K, V, VO>
where
    S: TableStore,
    KF: Fn(&Record<K, V>) -> R + Send + Sync + 'static,
    R: Into<Option<TKey<S>>>,
    F: Fn(&Record<K, V>, &TValue<S>) -> VO + Send + Sync + 'static,
{
    new_stream_global(
        global,
        false,
        Arc::new(move |r: &Record<K, V>| key_fn(r).into()),
        Arc::new(move |r: &Record<K, V>, v: Option<&TValue<S>>| v.map(|v| joiner(r, v))),
    )
}

/// A left stream-global-table join: as [`stream_global`], but every stream record gives one
/// record, `joiner(record, None)` when the table has no value for its key, or when `key_fn`
/// returns `None` (Kafka Streams 4.x, KIP-962).
pub fn left_stream_global<S, K, V, VO, KF, R, F>(
    global: &GlobalTable<S>,
    key_fn: KF,
    joiner: F,
) -> StreamGlobalJoin<S, K, V, VO>
where
    S: TableStore,
    KF: Fn(&Record<K, V>) -> R + Send + Sync + 'static,
    R: Into<Option<TKey<S>>>,
    F: Fn(&Record<K, V>, Option<&TValue<S>>) -> VO + Send + Sync + 'static,
{
    new_stream_global(
        global,
        true,
        Arc::new(move |r: &Record<K, V>| key_fn(r).into()),
        Arc::new(move |r: &Record<K, V>, v: Option<&TValue<S>>| Some(joiner(r, v))),
    )
}

impl<S: TableStore, K, V, VO> StreamGlobalJoin<S, K, V, VO> {
    /// The node's name (default `<global store>-global-join`).
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// One table read per stream record instead of one per batch (for measurements).
    #[must_use]
    pub fn lookup_per_record(mut self) -> Self {
        self.per_record = true;
        self
    }
}

impl<S, K, V, VO> BatchProcessor<K, V> for StreamGlobalJoin<S, K, V, VO>
where
    S: TableStore + 'static,
    TKey<S>: Send,
    TValue<S>: Send,
    K: Clone + Send + 'static,
    V: Send + 'static,
    VO: Send + 'static,
{
    type OutKey = K;
    type OutValue = VO;

    fn node_name(&self) -> Option<&str> {
        Some(&self.name)
    }

    fn process_batch(
        &mut self,
        records: &[Record<K, V>],
        ctx: &mut Context<'_, K, VO>,
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let spec = &self.table;
        let versioned = versioned_history(spec).is_some();
        // Records with a key, and where they are in `records`.
        let mut keyed = Vec::with_capacity(records.len());
        let mut keys = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            if let Some(k) = (self.key_fn)(r) {
                keyed.push(i);
                keys.push((k, r.timestamp));
            }
        }
        let values = lookup::<TKey<S>, TValue<S>, _, _>(
            ctx,
            Side::Global,
            spec.name(),
            versioned,
            keys,
            self.per_record,
        )?;
        let mut values = keyed.into_iter().zip(values).peekable();
        for (i, r) in records.iter().enumerate() {
            let value = match values.peek() {
                Some((j, _)) if *j == i => values.next().and_then(|(_, v)| v),
                _ if self.left => None,
                _ => {
                    ctx.fail_record(
                        r,
                        Error::processing(format!(
                            "join `{}`: the key extractor gave no key for the global table `{}`",
                            self.name,
                            spec.name()
                        )),
                    )?;
                    continue;
                }
            };
            if let Some(out) = (self.joiner)(r, value.as_ref()) {
                ctx.forward(r.derive(r.key.clone(), out));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serde::StringSerde;

    fn serde() -> BufferSerde<String, String> {
        BufferSerde {
            key: Box::new(StringSerde),
            value: Box::new(StringSerde),
        }
    }

    #[test]
    fn buffer_keys_sort_by_timestamp_then_arrival_negative_timestamps_first() {
        let mut keys = vec![
            buffer_key(5, 0),
            buffer_key(-3, 7),
            buffer_key(5, 1),
            buffer_key(0, 9),
            buffer_key(i64::MIN, 0),
            buffer_key(-3, 2),
        ];
        keys.sort();
        assert_eq!(
            keys,
            [
                buffer_key(i64::MIN, 0),
                buffer_key(-3, 2),
                buffer_key(-3, 7),
                buffer_key(0, 9),
                buffer_key(5, 0),
                buffer_key(5, 1),
            ]
        );
        // The reserved key sorts before every record.
        assert!(META_KEY.to_vec() < buffer_key(i64::MIN, 0));
    }

    #[test]
    fn buffered_records_keep_key_value_timestamp_headers_and_origin() -> Result<()> {
        let s = serde();
        let mut r = Record::new("k".to_string(), "v".to_string())
            .with_timestamp(-42)
            .with_headers(Headers::new().with("a", "1"));
        r.headers.push("empty", None);
        r.origin = Some(Origin::new("orders", 3, 17));
        for entry in [
            Buffered::Record(r.clone()),
            Buffered::Record(Record::new(String::new(), String::new())),
            Buffered::Meta {
                stream_time: i64::MIN,
                next_seq: 9,
            },
        ] {
            let bytes = s
                .serialize(&entry)
                .map_err(|e| Error::processing(e.to_string()))?;
            let back = s
                .deserialize(bytes.as_deref())
                .map_err(|e| Error::processing(e.to_string()))?;
            assert_eq!(back, entry);
        }
        Ok(())
    }

    #[test]
    fn a_corrupt_buffer_entry_is_an_error_not_a_panic() {
        let s = serde();
        let Ok(Some(good)) = s.serialize(&Buffered::Record(Record::new("k".into(), "v".into())))
        else {
            panic!("serialize failed");
        };
        for cut in 0..good.len() {
            assert!(s.deserialize(Some(&good[..cut])).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(s.deserialize(Some(&trailing)).is_err());
        assert!(s.deserialize(Some(&[7])).is_err());
        assert!(s.deserialize(None).is_err());
    }
}
