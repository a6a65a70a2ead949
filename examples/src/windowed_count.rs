//! Windowed count over a file (issue 14 §5, a contract): lines `<timestamp ms>\t<key>` become
//! records of an input topic, a windowed count runs on them, and the results are printed as
//! `<key>\t<window start>\t<window end>\t<count>`.
//!
//! The window definition and the grace period come from the command line, so the operator is
//! built at run time ([`topology`]). The same topology runs on the embedded cluster (the
//! `windowed_count` example), against a real broker (the differential test against Java Kafka
//! Streams, `tests/tests/windowed_differential.rs`) and in the fault tests' app.
//!
//! Timestamps: librdkafka sends a record of timestamp 0 with the current time instead (0 means
//! "now" in its API), so a line of timestamp 0 cannot be produced as written: it is an error, like
//! a negative timestamp.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use kstreams::kafka::AppConfig;
use kstreams::store::{SessionWindow, WindowWrite};
use kstreams::{BatchProcessor, Context, InitContext, Record, StoreSpec, Topology};

use crate::embedded;

/// A window definition, as `--window` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// `tumbling:SIZE_MS`.
    Tumbling {
        /// Window size, ms.
        size: u64,
    },
    /// `hopping:SIZE_MS:ADVANCE_MS`.
    Hopping {
        /// Window size, ms.
        size: u64,
        /// Advance, ms (at most the size).
        advance: u64,
    },
    /// `sliding:DIFF_MS`.
    Sliding {
        /// The largest time difference between two records of one window, ms.
        difference: u64,
    },
    /// `session:GAP_MS`.
    Session {
        /// Inactivity gap, ms.
        gap: u64,
    },
}

/// A `--window` or input line the example cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// `--window` is not one of the four forms.
    #[error(
        "--window must be tumbling:SIZE_MS, hopping:SIZE_MS:ADVANCE_MS, sliding:DIFF_MS or \
         session:GAP_MS, not `{0}`"
    )]
    Spec(String),
    /// A duration of `--window` that is 0, or an advance larger than the size.
    #[error("--window `{spec}`: {reason}")]
    SpecValue {
        /// The spec given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An input line that is not `<timestamp ms>\t<key>`, or whose timestamp cannot be produced.
    #[error("{source_name} line {line}: {reason}")]
    Line {
        /// The input's name (its path).
        source_name: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl FromStr for WindowSpec {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, InputError> {
        let parts: Vec<&str> = s.split(':').collect();
        let ms = |v: &str| -> Result<u64, InputError> {
            let n: u64 = v.parse().map_err(|_| InputError::Spec(s.to_owned()))?;
            if n == 0 {
                return Err(InputError::SpecValue {
                    spec: s.to_owned(),
                    reason: "a duration must be positive, not 0".into(),
                });
            }
            // Kafka's durations are signed 64-bit milliseconds.
            if i64::try_from(n).is_err() {
                return Err(InputError::SpecValue {
                    spec: s.to_owned(),
                    reason: format!("{n} ms is out of range"),
                });
            }
            Ok(n)
        };
        match parts.as_slice() {
            ["tumbling", size] => Ok(WindowSpec::Tumbling { size: ms(size)? }),
            ["hopping", size, advance] => {
                let (size, advance) = (ms(size)?, ms(advance)?);
                if advance > size {
                    return Err(InputError::SpecValue {
                        spec: s.to_owned(),
                        reason: format!("the advance ({advance} ms) exceeds the size ({size} ms)"),
                    });
                }
                Ok(WindowSpec::Hopping { size, advance })
            }
            ["sliding", difference] => Ok(WindowSpec::Sliding {
                difference: ms(difference)?,
            }),
            ["session", gap] => Ok(WindowSpec::Session { gap: ms(gap)? }),
            _ => Err(InputError::Spec(s.to_owned())),
        }
    }
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowSpec::Tumbling { size } => write!(f, "tumbling:{size}"),
            WindowSpec::Hopping { size, advance } => write!(f, "hopping:{size}:{advance}"),
            WindowSpec::Sliding { difference } => write!(f, "sliding:{difference}"),
            WindowSpec::Session { gap } => write!(f, "session:{gap}"),
        }
    }
}

/// `--emit`: when results are forwarded, and so what is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmitMode {
    /// Each window once, when it closes (`EmitStrategy::OnWindowClose`).
    #[default]
    Final,
    /// Every update (`EmitStrategy::OnWindowUpdate`); the last one per window is printed.
    Update,
}

impl FromStr for EmitMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "final" => Ok(EmitMode::Final),
            "update" => Ok(EmitMode::Update),
            _ => Err(format!("--emit must be final or update, not `{s}`")),
        }
    }
}

/// One input record: a line `<timestamp ms>\t<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The record's timestamp, ms (at least 1).
    pub timestamp: i64,
    /// The record's key.
    pub key: String,
}

/// Parses the input: one record per line `<timestamp ms>\t<key>` (the key is the rest of the
/// line, possibly empty; a trailing `\r` is dropped), blank lines ignored. A line without a tab,
/// with a timestamp that is not an integer, negative or 0 is an error naming `source_name` and
/// the line number.
pub fn parse_input(text: &str, source_name: &str) -> Result<Vec<Line>, InputError> {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let bad = |reason: String| InputError::Line {
            source_name: source_name.to_owned(),
            line: i + 1,
            reason,
        };
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        if l.trim().is_empty() {
            continue;
        }
        let Some((ts, key)) = l.split_once('\t') else {
            return Err(bad(format!(
                "expected `<timestamp ms>\\t<key>`, got `{}`",
                l.escape_debug()
            )));
        };
        let timestamp: i64 = ts
            .parse()
            .map_err(|_| bad(format!("`{}` is not a timestamp in ms", ts.escape_debug())))?;
        if timestamp < 0 {
            return Err(bad(format!("negative timestamp {timestamp}")));
        }
        if timestamp == 0 {
            return Err(bad(
                "timestamp 0 cannot be produced: librdkafka sends a record of timestamp 0 with \
                 the current time instead"
                    .into(),
            ));
        }
        lines.push(Line {
            timestamp,
            key: key.to_owned(),
        });
    }
    Ok(lines)
}

/// One result the app emitted: a key's count in one window. A session's `end` is its last
/// record's timestamp.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Counted {
    /// The key.
    pub key: String,
    /// Window start, ms.
    pub start: i64,
    /// Window end, ms.
    pub end: i64,
    /// The count; `None` for a deletion (a merged-away session, emitted on update).
    pub count: Option<u64>,
}

/// What the example prints, from every result the app emitted in offset order per partition:
/// with [`EmitMode::Final`] every result; with [`EmitMode::Update`] the last result per window
/// (key, start, end), windows whose last result is a deletion left out. Sorted by key (bytes),
/// start, end, count: one line `<key>\t<start>\t<end>\t<count>` each.
pub fn output_lines(emitted: &[Counted], emit: EmitMode) -> Vec<String> {
    let mut shown: Vec<&Counted> = match emit {
        EmitMode::Final => emitted.iter().filter(|c| c.count.is_some()).collect(),
        EmitMode::Update => {
            let mut last: BTreeMap<(&str, i64, i64), &Counted> = BTreeMap::new();
            for c in emitted {
                last.insert((c.key.as_str(), c.start, c.end), c);
            }
            last.into_values().filter(|c| c.count.is_some()).collect()
        }
    };
    shown.sort_by(|a, b| {
        (a.key.as_bytes(), a.start, a.end, a.count).cmp(&(
            b.key.as_bytes(),
            b.start,
            b.end,
            b.count,
        ))
    });
    shown
        .into_iter()
        .map(|c| {
            format!(
                "{}\t{}\t{}\t{}",
                c.key,
                c.start,
                c.end,
                c.count.unwrap_or_default()
            )
        })
        .collect()
}

/// The input records: the line's key and timestamp, the line number as the value.
fn records(lines: &[Line]) -> impl Iterator<Item = Record<String, String>> + '_ {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| Record::new(l.key.clone(), (i + 1).to_string()).with_timestamp(l.timestamp))
}

/// How long the input may take to be processed.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the windowed count on `lines` with `config` (the embedded cluster unless it names
/// bootstrap servers): creates `<app id>-input` and `<app id>-output` with `partitions`
/// partitions, produces the records in order (Java's default partitioning), waits until all are
/// processed and committed, reads every result the app emitted and stops it.
pub async fn run(
    lines: &[Line],
    spec: WindowSpec,
    grace_ms: u64,
    emit: EmitMode,
    partitions: i32,
    config: AppConfig,
) -> kstreams::Result<Vec<Counted>> {
    let input = format!("{}-input", config.application_id());
    let output = format!("{}-output", config.application_id());
    let topology = topology(&input, &output, spec, grace_ms, emit)?;
    let mut app = embedded::start(topology, config, partitions, &[]).await?;
    app.client.produce(&input, records(lines)).await?;
    app.processed_within(TIMEOUT).await?;
    let emitted = read_output(&app.client, &output, spec).await?;
    app.stop().await?;
    let processed = app.client.app().status().processed_records;
    if processed != lines.len() as u64 {
        return Err(kstreams::Error::Runtime(format!(
            "{} records produced but {processed} processed: the embedded cluster keeps about \
             100,000 records per partition; use a broker for a larger input",
            lines.len()
        )));
    }
    Ok(emitted)
}

/// Reads every result in `topic` (partition by partition, in offset order).
async fn read_output(
    client: &kstreams::kafka::AppClient,
    topic: &str,
    spec: WindowSpec,
) -> kstreams::Result<Vec<Counted>> {
    let records = client
        .read_with::<WindowKey, Option<u64>>(
            topic,
            &WindowKeySerde::for_spec(spec),
            &<Option<u64> as kstreams::serde::DefaultSerde>::Serde::default(),
        )
        .await?;
    Ok(records
        .into_iter()
        .map(|r| Counted {
            key: r.key.key,
            start: r.key.start,
            end: r.key.end,
            count: r.value,
        })
        .collect())
}

/// The windowed count's topology: `input` (String keys, String values) counted per key and
/// window into `output` (keys [`WindowKey`], Kafka's windowed serdes' bytes; values the count as
/// 8 big-endian bytes, null for a merged-away session).
pub fn topology(
    input: &str,
    output: &str,
    spec: WindowSpec,
    grace_ms: u64,
    emit: EmitMode,
) -> kstreams::Result<Topology> {
    let mut t = Topology::builder();
    let records = t.source::<String, String>(input);
    let counts = t.add(WindowedCount::new(spec, grace_ms, emit)?, &records);
    t.sink_with(
        output,
        &counts,
        WindowKeySerde::for_spec(spec),
        <Option<u64> as kstreams::serde::DefaultSerde>::Serde::default(),
    );
    Ok(t.build()?)
}

/// The key of a result: the record's key and its window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowKey {
    /// The record's key.
    pub key: String,
    /// Window start, ms.
    pub start: i64,
    /// Window end, ms (exclusive for time windows; a session's last record's timestamp).
    pub end: i64,
}

/// [`WindowKey`] as Java's windowed serdes write it: time windows as `TimeWindowedSerde` (the
/// key's bytes, then the start as 8 big-endian bytes; the end is start + size when read),
/// sessions as `SessionWindowedSerde` (key bytes, end, start).
#[derive(Debug, Clone, Copy)]
pub struct WindowKeySerde {
    /// `Some(size)`: a time window of that size; `None`: a session.
    size: Option<i64>,
}

impl WindowKeySerde {
    /// The serde of `spec`'s results.
    pub fn for_spec(spec: WindowSpec) -> Self {
        let size = match spec {
            WindowSpec::Tumbling { size } | WindowSpec::Hopping { size, .. } => Some(size),
            WindowSpec::Sliding { difference } => Some(difference),
            WindowSpec::Session { .. } => None,
        };
        WindowKeySerde {
            size: size.map(|s| s as i64),
        }
    }
}

impl kstreams::serde::Serde<WindowKey> for WindowKeySerde {
    fn serialize(&self, k: &WindowKey) -> Result<Option<Vec<u8>>, kstreams::error::SerdeError> {
        let mut out = Vec::with_capacity(k.key.len() + 16);
        out.extend_from_slice(k.key.as_bytes());
        if self.size.is_none() {
            out.extend_from_slice(&k.end.to_be_bytes());
        }
        out.extend_from_slice(&k.start.to_be_bytes());
        Ok(Some(out))
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<WindowKey, kstreams::error::SerdeError> {
        let bytes = bytes
            .ok_or_else(|| kstreams::error::SerdeError::new("a windowed key cannot be null"))?;
        let suffix = if self.size.is_some() { 8 } else { 16 };
        let cut = bytes.len().checked_sub(suffix).ok_or_else(|| {
            kstreams::error::SerdeError::new(format!(
                "a windowed key of {} bytes is shorter than its {suffix} bytes of window",
                bytes.len()
            ))
        })?;
        let key = String::from_utf8(bytes[..cut].to_vec())
            .map_err(|e| kstreams::error::SerdeError::new(format!("windowed key: {e}")))?;
        let long = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            i64::from_be_bytes(b)
        };
        Ok(match self.size {
            Some(size) => {
                let start = long(cut);
                WindowKey {
                    key,
                    start,
                    end: start.saturating_add(size),
                }
            }
            None => WindowKey {
                key,
                end: long(cut),
                start: long(cut + 8),
            },
        })
    }
}

/// The store of the counts.
const STORE: &str = "windowed-counts";

/// The operator's stream time, in a key-value store of its own (changelogged, so a task
/// restored from the changelog knows which windows it emitted already: the window store keeps
/// its own stream time locally only).
const STREAM_TIME_STORE: &str = "windowed-counts-stream-time";
const STREAM_TIME_KEY: &str = "stream-time";

/// The stream time the task's last batch reached, if any.
fn stream_time_before<K: 'static, V: 'static>(
    ctx: &Context<'_, K, V>,
) -> kstreams::Result<Option<i64>> {
    ctx.store::<String, i64>(STREAM_TIME_STORE)?
        .get(STREAM_TIME_KEY)
}

/// Records the stream time a batch reached (in the batch's transaction, changelogged).
fn save_stream_time<K: 'static, V: 'static>(
    ctx: &Context<'_, K, V>,
    before: Option<i64>,
    now: i64,
) -> kstreams::Result<()> {
    if before.is_none_or(|b| now > b) {
        ctx.store::<String, i64>(STREAM_TIME_STORE)?
            .put(&STREAM_TIME_KEY.to_owned(), &now)?;
    }
    Ok(())
}

/// A windowed count with its windows given at run time, with Kafka Streams' semantics
/// (`KStreamWindowAggregate`, `KStreamSessionWindowAggregate`, `KStreamSlidingWindowAggregate`:
/// see [`WindowedCount::sliding`] for sliding windows): stream time is the task's largest
/// timestamp so far (the current record included, kept in a changelogged store in the batch's
/// transaction); a time
/// window accepts a record while `end > stream time - grace`, a session while its end (merged)
/// is at least `stream time - grace - gap`; a record no window accepts is late (logged at debug,
/// not counted). On close, a window is emitted once when `end <= stream time - grace` (a session
/// when `end < stream time - grace - gap`), every one, also those a jump of stream time closes at
/// once (Kafka Streams skips those its store expired already, KAFKA-12960);
/// on update, every change, and for sessions a deletion (null) of each session merged away.
///
/// An interim operator over the store layer's `WindowStore` / `SessionStore`, until the
/// library's `kstreams::window::count` (issue 14 §2) can be used with windows given at run time.
#[derive(Debug, Clone)]
struct WindowedCount {
    spec: WindowSpec,
    grace: i64,
    emit: EmitMode,
}

impl WindowedCount {
    fn new(spec: WindowSpec, grace_ms: u64, emit: EmitMode) -> kstreams::Result<Self> {
        let grace = i64::try_from(grace_ms)
            .map_err(|_| kstreams::Error::Config(format!("grace {grace_ms} ms is out of range")))?;
        Ok(WindowedCount { spec, grace, emit })
    }

    fn spec(&self) -> kstreams::Result<StoreSpec> {
        let ms = |v: u64| Duration::from_millis(v);
        let base = StoreSpec::new::<String, u64>(STORE);
        match self.spec {
            WindowSpec::Tumbling { size } | WindowSpec::Hopping { size, .. } => {
                base.windowed(ms(size), ms(size) + ms(self.grace as u64))
            }
            // A session ending at stream time - gap - grace still takes records: one more ms.
            WindowSpec::Session { gap } => base.sessions(ms(gap + 1) + ms(self.grace as u64)),
            // A window's count and its latest record's timestamp (`SlidingValue`); a record
            // reads the windows starting up to 2 differences before it.
            WindowSpec::Sliding { difference } => StoreSpec::new::<String, Vec<u8>>(STORE)
                .windowed(
                    ms(difference),
                    ms(2 * difference + 1) + ms(self.grace as u64),
                ),
        }
    }

    fn time_windows(
        &self,
        size: i64,
        advance: i64,
        records: &[Record<String, String>],
        ctx: &mut Context<'_, WindowKey, Option<u64>>,
    ) -> kstreams::Result<()> {
        let store = ctx.window_store::<String, u64>(STORE)?;
        let before = stream_time_before(ctx)?;
        let mut stream_time = before.unwrap_or(i64::MIN);
        // Windows ending at or before this are emitted (on close).
        let mut emitted_to = before.map(|t| t - self.grace);
        let mut out = Vec::new();
        for r in records {
            stream_time = stream_time.max(r.timestamp);
            let close = stream_time - self.grace;
            // Kafka's TimeWindows.windowsFor.
            let mut start = (r.timestamp - size + advance).max(0) / advance * advance;
            let mut counted = false;
            while start <= r.timestamp {
                let end = start + size;
                if end > close {
                    let n = store.get(&r.key, start)?.unwrap_or(0) + 1;
                    // An open window is never expired (retention = size + grace): if the store
                    // says so, the record is late all the same.
                    if store.put(&r.key, start, &n)? == WindowWrite::Expired {
                        start += advance;
                        continue;
                    }
                    counted = true;
                    if self.emit == EmitMode::Update {
                        out.push(r.derive(window_key(&r.key, start, end), Some(n)));
                    }
                }
                start += advance;
            }
            if !counted {
                late(r, stream_time, self.grace);
            }
            if self.emit == EmitMode::Final && emitted_to.is_none_or(|e| e < close) {
                let from = emitted_to.map_or(i64::MIN, |e| e - size + 1);
                for (key, start, n) in store.fetch_all(from, close - size)? {
                    let k = window_key(&key, start, start + size);
                    out.push(r.derive(k, Some(n)));
                }
                emitted_to = Some(close);
            }
        }
        save_stream_time(ctx, before, stream_time)?;
        store.advance_stream_time(stream_time)?;
        ctx.forward_batch(out);
        Ok(())
    }

    fn sessions(
        &self,
        gap: i64,
        records: &[Record<String, String>],
        ctx: &mut Context<'_, WindowKey, Option<u64>>,
    ) -> kstreams::Result<()> {
        let store = ctx.session_store::<String, u64>(STORE)?;
        let before = stream_time_before(ctx)?;
        let mut stream_time = before.unwrap_or(i64::MIN);
        // Sessions ending before this are emitted (on close).
        let mut emitted_to = before.map(|t| t - self.grace - gap);
        let mut out = Vec::new();
        for r in records {
            stream_time = stream_time.max(r.timestamp);
            // As Kafka Streams: a session may still grow by a record within the gap.
            let close = stream_time - self.grace - gap;
            let found = store.find_sessions(&r.key, r.timestamp - gap, r.timestamp + gap)?;
            let (mut start, mut end, mut n) = (r.timestamp, r.timestamp, 1);
            for (s, c) in &found {
                start = start.min(s.start);
                end = end.max(s.end);
                n += c;
            }
            if end < close {
                late(r, stream_time, self.grace);
            } else {
                for (s, _) in &found {
                    store.remove(&r.key, *s)?;
                    if self.emit == EmitMode::Update {
                        out.push(r.derive(window_key(&r.key, s.start, s.end), None));
                    }
                }
                // Not expired: its end is at least stream time - grace (retention gap + grace).
                if store.put(&r.key, SessionWindow::new(start, end), &n)? == WindowWrite::Expired {
                    late(r, stream_time, self.grace);
                } else if self.emit == EmitMode::Update {
                    out.push(r.derive(window_key(&r.key, start, end), Some(n)));
                }
            }
            if self.emit == EmitMode::Final && emitted_to.is_none_or(|e| e < close) {
                let from = emitted_to.unwrap_or(i64::MIN);
                for (key, s, n) in store.find_all_sessions(from, close - 1)? {
                    out.push(r.derive(window_key(&key, s.start, s.end), Some(n)));
                }
                emitted_to = Some(close);
            }
        }
        save_stream_time(ctx, before, stream_time)?;
        store.advance_stream_time(stream_time)?;
        ctx.forward_batch(out);
        Ok(())
    }
}

/// A sliding window's value in the store: the count and the largest timestamp of its records
/// (Kafka Streams' `ValueAndTimestamp`), 16 big-endian bytes.
#[derive(Debug, Clone, Copy)]
struct SlidingValue {
    count: u64,
    max_timestamp: i64,
}

impl SlidingValue {
    fn encode(self) -> Vec<u8> {
        let mut v = self.count.to_be_bytes().to_vec();
        v.extend_from_slice(&self.max_timestamp.to_be_bytes());
        v
    }

    fn decode(bytes: &[u8], key: &str, start: i64) -> kstreams::Result<Self> {
        let corrupt = || kstreams::Error::StoreCorrupt {
            store: STORE.to_owned(),
            part: kstreams::error::Part::Value,
            source: kstreams::error::SerdeError::new(format!(
                "the sliding window of `{key}` at {start} holds {} bytes, not 16",
                bytes.len()
            )),
        };
        let (c, t) = bytes.split_at_checked(8).ok_or_else(corrupt)?;
        Ok(SlidingValue {
            count: u64::from_be_bytes(c.try_into().map_err(|_| corrupt())?),
            max_timestamp: i64::from_be_bytes(t.try_into().map_err(|_| corrupt())?),
        })
    }
}

impl WindowedCount {
    /// Kafka Streams' `KStreamSlidingWindowAggregate` (KIP-450), its in-order path: a record's
    /// left window `[ts - difference, ts]`, the right window `[ts + 1, ts + 1 + difference]` of the
    /// record before it when it falls in it, its own right window when a later record exists,
    /// every existing window it falls in updated. A window takes records while
    /// `end >= stream time - grace`; a record with `ts + 1 + difference <= stream time - grace`
    /// is late. On close, a window is emitted once when `end < stream time - grace`.
    fn sliding(
        &self,
        diff: i64,
        records: &[Record<String, String>],
        ctx: &mut Context<'_, WindowKey, Option<u64>>,
    ) -> kstreams::Result<()> {
        let store = ctx.window_store::<String, Vec<u8>>(STORE)?;
        let before = stream_time_before(ctx)?;
        let mut stream_time = before.unwrap_or(i64::MIN);
        // Windows ending before this are emitted (on close).
        let mut emitted_to = before.map(|t| t - self.grace);
        let mut out = Vec::new();
        for r in records {
            stream_time = stream_time.max(r.timestamp);
            let close = stream_time - self.grace;
            let ts = r.timestamp;
            if ts + 1 + diff <= close {
                late(r, stream_time, self.grace);
            } else if ts < diff {
                // Kafka Streams puts such records in a window [0, difference] of their own.
                return Err(kstreams::Error::processing(format!(
                    "sliding windows: a record at {ts} ms, earlier than the time difference \
                     ({diff} ms), is not supported yet"
                )));
            } else {
                let mut update = |start: i64, old: Option<SlidingValue>| -> kstreams::Result<()> {
                    if start + diff < close {
                        late(r, stream_time, self.grace);
                        return Ok(());
                    }
                    let new = match old {
                        Some(v) => SlidingValue {
                            count: v.count + 1,
                            max_timestamp: v.max_timestamp.max(ts),
                        },
                        None => SlidingValue {
                            count: 1,
                            max_timestamp: ts,
                        },
                    };
                    if store.put(&r.key, start, &new.encode())? == WindowWrite::Stored
                        && self.emit == EmitMode::Update
                    {
                        out.push(
                            r.derive(window_key(&r.key, start, start + diff), Some(new.count)),
                        );
                    }
                    Ok(())
                };
                let mut starts = std::collections::HashSet::new();
                let (mut left_agg, mut right_agg) = (None, None);
                let (mut left_exists, mut right_exists) = (false, false);
                let mut previous: Option<i64> = None;
                for (start, bytes) in store.fetch(&r.key, (ts - 2 * diff).max(0), ts + 1)? {
                    let v = SlidingValue::decode(&bytes, &r.key, start)?;
                    starts.insert(start);
                    let end = start + diff;
                    if end < ts {
                        left_agg = Some(v);
                        previous = Some(v.max_timestamp);
                    } else if end == ts {
                        left_exists = true;
                        if v.max_timestamp < ts {
                            previous = Some(v.max_timestamp);
                        }
                        update(start, Some(v))?;
                    } else if start <= ts {
                        right_agg = Some(v);
                        update(start, Some(v))?;
                    } else {
                        // start == ts + 1, the fetch's upper bound.
                        right_exists = true;
                    }
                }
                // The previous record's right window, which this record falls in.
                if let Some(p) = previous
                    && !starts.contains(&(p + 1))
                    && p + 1 + diff >= ts
                {
                    update(p + 1, None)?;
                }
                // This record's left window.
                if !left_exists {
                    let old = match (previous, left_agg) {
                        (Some(p), Some(agg)) if ts - diff <= p => Some(SlidingValue {
                            count: agg.count,
                            max_timestamp: ts,
                        }),
                        _ => None,
                    };
                    update(ts - diff, old)?;
                }
                // This record's right window, holding the later records (not this one).
                if !right_exists && let Some(agg) = right_agg.filter(|a| a.max_timestamp > ts) {
                    let _ = store.put(&r.key, ts + 1, &agg.encode())?;
                    if self.emit == EmitMode::Update {
                        out.push(
                            r.derive(window_key(&r.key, ts + 1, ts + 1 + diff), Some(agg.count)),
                        );
                    }
                }
            }
            if self.emit == EmitMode::Final && emitted_to.is_none_or(|e| e < close) {
                let from = emitted_to.map_or(i64::MIN, |e| e - diff);
                for (key, start, bytes) in store.fetch_all(from, close - 1 - diff)? {
                    let v = SlidingValue::decode(&bytes, &key, start)?;
                    out.push(r.derive(window_key(&key, start, start + diff), Some(v.count)));
                }
                emitted_to = Some(close);
            }
        }
        save_stream_time(ctx, before, stream_time)?;
        store.advance_stream_time(stream_time)?;
        ctx.forward_batch(out);
        Ok(())
    }
}

fn window_key(key: &str, start: i64, end: i64) -> WindowKey {
    WindowKey {
        key: key.to_owned(),
        start,
        end,
    }
}

/// A record too late for every window it belongs to: dropped, as Kafka Streams does, with a
/// trace naming it.
fn late(r: &Record<String, String>, stream_time: i64, grace: i64) {
    tracing::debug!(
        key = %r.key,
        timestamp = r.timestamp,
        stream_time,
        grace,
        origin = ?r.origin,
        "late record dropped: no open window"
    );
}

impl BatchProcessor<String, String> for WindowedCount {
    type OutKey = WindowKey;
    type OutValue = Option<u64>;

    fn stores(&self) -> Vec<StoreSpec> {
        // `new` checked the durations; a spec that still fails is reported by `init`.
        let mut specs: Vec<StoreSpec> = self.spec().into_iter().collect();
        specs.push(StoreSpec::new::<String, i64>(STREAM_TIME_STORE));
        specs
    }

    fn init(&mut self, _ctx: &mut InitContext<'_>) -> kstreams::Result<()> {
        self.spec().map(|_| ())
    }

    fn process_batch(
        &mut self,
        records: &[Record<String, String>],
        ctx: &mut Context<'_, WindowKey, Option<u64>>,
    ) -> kstreams::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        match self.spec {
            WindowSpec::Tumbling { size } => {
                self.time_windows(size as i64, size as i64, records, ctx)
            }
            WindowSpec::Hopping { size, advance } => {
                self.time_windows(size as i64, advance as i64, records, ctx)
            }
            WindowSpec::Session { gap } => self.sessions(gap as i64, records, ctx),
            WindowSpec::Sliding { difference } => self.sliding(difference as i64, records, ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kstreams::testing::{SplitInput, check_split_invariance};

    /// Invariant 2 for the operator: however the input is cut into batches, the same outputs and
    /// the same stores, for every window kind and both emit modes (out-of-order and late records,
    /// sessions that merge).
    #[test]
    fn every_window_kind_is_split_invariant() -> kstreams::Result<()> {
        let records: Vec<Record<String, String>> = (0..300_i64)
            .map(|i| {
                let back = if i % 7 == 3 { 4_000 } else { 0 };
                let pause = (i / 50) * 6_000;
                Record::new(format!("k{}", i % 5), i.to_string())
                    .with_timestamp(100_000 + i * 150 + pause - back)
            })
            .collect();
        for spec in [
            WindowSpec::Tumbling { size: 5_000 },
            WindowSpec::Hopping {
                size: 5_000,
                advance: 1_000,
            },
            WindowSpec::Sliding { difference: 2_000 },
            WindowSpec::Session { gap: 1_000 },
        ] {
            for emit in [EmitMode::Final, EmitMode::Update] {
                let topology = topology("in", "out", spec, 2_000, emit)?;
                let input = SplitInput::new()
                    .partitions("in", 2)
                    .partitions("out", 2)
                    .records("in", records.iter().cloned())?;
                check_split_invariance(&topology, &input, 14, 3)
                    .map_err(|e| kstreams::Error::Runtime(format!("{spec} {emit:?}: {e}")))?;
            }
        }
        Ok(())
    }

    #[test]
    fn window_keys_are_java_windowed_serde_bytes() {
        use kstreams::serde::Serde;
        let k = WindowKey {
            key: "ab".into(),
            start: 1,
            end: 11,
        };
        let time = WindowKeySerde::for_spec(WindowSpec::Tumbling { size: 10 });
        let bytes = time.serialize(&k).ok().flatten().unwrap_or_default();
        assert_eq!(bytes, [b"ab".as_slice(), &1i64.to_be_bytes()].concat());
        assert_eq!(time.deserialize(Some(&bytes)).ok(), Some(k.clone()));
        let session = WindowKeySerde::for_spec(WindowSpec::Session { gap: 10 });
        let bytes = session.serialize(&k).ok().flatten().unwrap_or_default();
        // SessionWindowedSerde: key, end, start.
        assert_eq!(
            bytes,
            [b"ab".as_slice(), &11i64.to_be_bytes(), &1i64.to_be_bytes()].concat()
        );
        assert_eq!(session.deserialize(Some(&bytes)).ok(), Some(k));
        assert!(time.deserialize(Some(b"short")).is_err());
        assert!(time.deserialize(None).is_err());
    }
}
