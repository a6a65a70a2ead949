//! Windowed count over a file (issue 14 §5, a contract): lines `<timestamp ms>\t<key>` become
//! records of an input topic, a windowed count runs on them, and the results are printed as
//! `<key>\t<window start>\t<window end>\t<count>`.
//!
//! The window definition and the grace period come from the command line, so the windowing is
//! built at run time ([`windowing`]) and the operator is the library's windowed count over it
//! ([`kstreams::window::count_with`], [`kstreams::window::count_sessions_with`]: the same
//! aggregation as `window::count::<S>()` over a `#[store(window = ..)]`, with its stream time,
//! grace, emission and late-record rules, see `docs/windowing.md`). Late records are dropped and
//! counted in `kstreams_late_records_total`. The same topology ([`topology`]) runs on the embedded cluster (the
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
use kstreams::serde::{OptionSerde, StringSerde, U64Serde};
use kstreams::window::{
    self, EmitStrategy, SessionWindowed, SessionWindowedSerde, SessionWindows, SlidingWindows,
    TimeWindowedSerde, TimeWindows, Window, Windowed, Windowing, Windows,
};
use kstreams::{Record, Topology};

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

/// Reads every result in `topic` (partition by partition, in offset order), with the library's
/// windowed serdes (a time window's end is its start plus the size, or the time difference for
/// sliding windows).
async fn read_output(
    client: &kstreams::kafka::AppClient,
    topic: &str,
    spec: WindowSpec,
) -> kstreams::Result<Vec<Counted>> {
    let size = match spec {
        WindowSpec::Tumbling { size } | WindowSpec::Hopping { size, .. } => size,
        WindowSpec::Sliding { difference } => difference,
        WindowSpec::Session { .. } => {
            let records = client
                .read_with::<SessionWindowed<String>, Option<u64>>(
                    topic,
                    &SessionWindowedSerde::new(StringSerde),
                    &OptionSerde(U64Serde),
                )
                .await?;
            return Ok(records
                .into_iter()
                .map(|r| counted(r.key.key, r.key.window, r.value))
                .collect());
        }
    };
    let records = client
        .read_with::<Windowed<String>, u64>(
            topic,
            // `WindowSpec::from_str` keeps durations within i64.
            &TimeWindowedSerde::new(StringSerde).with_window_size(size as i64),
            &U64Serde,
        )
        .await?;
    Ok(records
        .into_iter()
        .map(|r| counted(r.key.key, r.key.window, Some(r.value)))
        .collect())
}

fn counted(key: String, window: Window, count: Option<u64>) -> Counted {
    Counted {
        key,
        start: window.start,
        end: window.end,
        count,
    }
}

/// The store of the counts.
const STORE: &str = "windowed-counts";

/// The library's windowing of `spec` with a grace of `grace_ms`, emitting as `emit` says; late
/// records are dropped and counted (`kstreams_late_records_total`), as Kafka Streams does.
pub fn windowing(spec: WindowSpec, grace_ms: u64, emit: EmitMode) -> kstreams::Result<Windowing> {
    let ms = Duration::from_millis;
    let grace = ms(grace_ms);
    let windows = match spec {
        WindowSpec::Tumbling { size } => Windows::Time(TimeWindows::tumbling(ms(size), grace)?),
        WindowSpec::Hopping { size, advance } => {
            Windows::Time(TimeWindows::hopping(ms(size), ms(advance), grace)?)
        }
        WindowSpec::Sliding { difference } => {
            Windows::Sliding(SlidingWindows::new(ms(difference), grace)?)
        }
        WindowSpec::Session { gap } => Windows::Session(SessionWindows::new(ms(gap), grace)?),
    };
    Ok(Windowing::new(windows).emit(match emit {
        EmitMode::Final => EmitStrategy::OnWindowClose,
        EmitMode::Update => EmitStrategy::OnWindowUpdate,
    }))
}

/// The windowed count's topology: `input` (String keys, String values) counted per key and
/// window by the library's operator ([`window::count_with`], [`window::count_sessions_with`])
/// into `output`: keys as Kafka's windowed serdes write them ([`TimeWindowedSerde`],
/// [`SessionWindowedSerde`]), values the count as 8 big-endian bytes (null for a merged-away
/// session, on update).
pub fn topology(
    input: &str,
    output: &str,
    spec: WindowSpec,
    grace_ms: u64,
    emit: EmitMode,
) -> kstreams::Result<Topology> {
    let mut t = Topology::builder();
    let records = t.source::<String, String>(input);
    let windowing = windowing(spec, grace_ms, emit)?;
    if let WindowSpec::Session { .. } = spec {
        let counts = t.add(
            window::count_sessions_with::<String>(STORE, windowing)?,
            &records,
        );
        t.sink(output, &counts);
    } else {
        let counts = t.add(window::count_with::<String>(STORE, windowing)?, &records);
        t.sink(output, &counts);
    }
    Ok(t.build()?)
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
}
