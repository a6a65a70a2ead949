//! Joins over two files (issue 15 §5, a contract): lines `<timestamp ms>\t<key>\t<value>` of a
//! left and a right file become records of two topics, the library's join of the kind given runs
//! on them, and each result is printed as a line (see [`output_lines`]).
//!
//! Kinds ([`JoinSpec`]): `stream-table` (inner: each left record joined with the right table's
//! value *as of the left record's timestamp*, a versioned table whose history covers the whole
//! input), `left-stream-table` (the same, a left join), `stream-stream:WINDOW_MS` (inner,
//! windowed: a pair joins when its timestamps are at most WINDOW_MS apart) and, beyond the
//! example's contract, `left-stream-stream:WINDOW_MS` (the left windowed join the differential
//! test against Java Kafka Streams needs). `--grace-ms` is the join window's grace for the
//! stream-stream kinds, the stream-side grace (KIP-923) for the table kinds. In the right file of
//! a table kind an empty value is a tombstone (the key is deleted as of that timestamp).
//!
//! Every result's value is the output line past the key, built by the joiner from the records it
//! was given, so the timestamps printed are the records' own: `<left ts>\t<left value>\t<right
//! value>` for the table kinds (`-` when a left join found nothing), `<left ts>\t<left
//! value>\t<right ts>\t<right value>` for the stream-stream kinds (`-\t-` for a left record no
//! right record matched). The same topology ([`topology`]) runs on the embedded cluster (the
//! `join` example), against a real broker (the differential test against Java Kafka Streams,
//! `tests/tests/join_differential.rs`) and in the fault tests' app (`tests/src/bin/join_app.rs`).
//!
//! Timestamps: librdkafka sends a record of timestamp 0 with the current time instead (0 means
//! "now" in its API), so a line of timestamp 0 cannot be produced as written: it is an error, like
//! a negative timestamp.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use kstreams::join::{self, JoinKind, JoinWindows};
use kstreams::kafka::AppConfig;
use kstreams::{Record, Topology};

use crate::embedded;

/// A join kind, as `--join` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinSpec {
    /// `stream-table`: inner, against a versioned table, as of the left record's timestamp.
    StreamTable,
    /// `left-stream-table`: the same, a left join.
    LeftStreamTable,
    /// `stream-stream:WINDOW_MS`: inner, windowed.
    StreamStream {
        /// The largest difference between the timestamps of a pair that joins, ms.
        window_ms: u64,
    },
    /// `left-stream-stream:WINDOW_MS`: left, windowed (beyond the example's contract).
    LeftStreamStream {
        /// The largest difference between the timestamps of a pair that joins, ms.
        window_ms: u64,
    },
}

impl JoinSpec {
    /// Whether the right input is a table (an empty value a tombstone).
    pub fn is_table(self) -> bool {
        matches!(self, JoinSpec::StreamTable | JoinSpec::LeftStreamTable)
    }
}

/// A `--join` or input line the example cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// `--join` is not one of the kinds.
    #[error(
        "--join must be stream-table, left-stream-table, stream-stream:WINDOW_MS or \
         left-stream-stream:WINDOW_MS, not `{0}`"
    )]
    Kind(String),
    /// A window of `--join` out of range.
    #[error("--join `{spec}`: {reason}")]
    KindValue {
        /// The kind given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An input line that is not `<timestamp ms>\t<key>\t<value>`, or whose timestamp cannot be
    /// produced.
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

impl FromStr for JoinSpec {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, InputError> {
        let window = |v: &str| -> Result<u64, InputError> {
            let n: u64 = v.parse().map_err(|_| InputError::Kind(s.to_owned()))?;
            // Kafka's durations are signed 64-bit milliseconds.
            if i64::try_from(n).is_err() {
                return Err(InputError::KindValue {
                    spec: s.to_owned(),
                    reason: format!("{n} ms is out of range"),
                });
            }
            Ok(n)
        };
        match s.split_once(':') {
            None if s == "stream-table" => Ok(JoinSpec::StreamTable),
            None if s == "left-stream-table" => Ok(JoinSpec::LeftStreamTable),
            Some(("stream-stream", w)) => Ok(JoinSpec::StreamStream {
                window_ms: window(w)?,
            }),
            Some(("left-stream-stream", w)) => Ok(JoinSpec::LeftStreamStream {
                window_ms: window(w)?,
            }),
            _ => Err(InputError::Kind(s.to_owned())),
        }
    }
}

impl fmt::Display for JoinSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinSpec::StreamTable => write!(f, "stream-table"),
            JoinSpec::LeftStreamTable => write!(f, "left-stream-table"),
            JoinSpec::StreamStream { window_ms } => write!(f, "stream-stream:{window_ms}"),
            JoinSpec::LeftStreamStream { window_ms } => {
                write!(f, "left-stream-stream:{window_ms}")
            }
        }
    }
}

/// One input record: a line `<timestamp ms>\t<key>\t<value>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The record's timestamp, ms (at least 1).
    pub timestamp: i64,
    /// The record's key.
    pub key: String,
    /// The record's value (the rest of the line, possibly empty).
    pub value: String,
}

/// Parses an input: one record per line `<timestamp ms>\t<key>\t<value>` (the key up to the
/// second tab, the value the rest of the line, possibly empty; a trailing `\r` is dropped), blank
/// lines ignored. A line with fewer than two tabs, or with a timestamp that is not an integer,
/// negative or 0 is an error naming `source_name` and the line number.
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
        let mut fields = l.splitn(3, '\t');
        let (Some(ts), Some(key), Some(value)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad(format!(
                "expected `<timestamp ms>\\t<key>\\t<value>`, got `{}`",
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
            value: value.to_owned(),
        });
    }
    Ok(lines)
}

/// One join result: its key and the rest of its output line (see the module docs), as the
/// joiner wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The key.
    pub key: String,
    /// The output line past the key and its tab.
    pub rest: String,
}

/// What the example prints, from every result the app emitted (in offset order per partition):
/// one line `<key>\t<rest>` per result, grouped by key (keys sorted by their bytes), each key's
/// results in the order the app emitted them.
///
/// Why per key and in order: a key's records (left and right) are all in one partition of each
/// topic (both are partitioned by key alike), so one task joins them, in its inputs' timestamp
/// order, and writes its results to one partition of the output, where their order is the order
/// the join produced them: defined by the join's semantics. Across keys there is no such order
/// (tasks run side by side), so keys are sorted.
pub fn output_lines(emitted: &[Joined]) -> Vec<String> {
    let mut by_key: BTreeMap<&[u8], Vec<&str>> = BTreeMap::new();
    for j in emitted {
        by_key.entry(j.key.as_bytes()).or_default().push(&j.rest);
    }
    by_key
        .into_iter()
        .flat_map(|(key, rests)| {
            let key = String::from_utf8_lossy(key).into_owned();
            rests.into_iter().map(move |r| format!("{key}\t{r}"))
        })
        .collect()
}

/// The text printed for a missing right side.
pub const NONE: &str = "-";

/// A stream-table result's line past the key: `<left ts>\t<left value>\t<right value or ->`.
pub fn table_result(left: &Record<String, String>, right: Option<&String>) -> String {
    format!(
        "{}\t{}\t{}",
        left.timestamp,
        left.value,
        right.map_or(NONE, String::as_str)
    )
}

/// A stream-stream result's line past the key: `<left ts>\t<left value>\t<right ts>\t<right
/// value>`, `-\t-` for the right side of an unmatched left record (and `-\t-` for the left side of
/// an unmatched right one, which no kind of this example emits).
pub fn stream_result(
    left: Option<&Record<String, String>>,
    right: Option<&Record<String, String>>,
) -> String {
    let side = |r: Option<&Record<String, String>>| {
        r.map_or_else(
            || format!("{NONE}\t{NONE}"),
            |r| format!("{}\t{}", r.timestamp, r.value),
        )
    };
    format!("{}\t{}", side(left), side(right))
}

/// The right input of the table kinds: a versioned table of String keys and values whose
/// history (a hundred years) covers any input's timestamps, so that every lookup as of a stream
/// record's time finds the version it had then.
#[kstreams::store(name = "join-right", history = "36500d")]
pub type Right = kstreams::VersionedKeyValue<String, String>;

/// How long the input may take to be processed.
const TIMEOUT: Duration = Duration::from_secs(300);

/// The example's topics for an application id: (left, right, output).
pub fn topics(application_id: &str) -> (String, String, String) {
    (
        format!("{application_id}-left"),
        format!("{application_id}-right"),
        format!("{application_id}-output"),
    )
}

/// Runs the join `spec` on `left` and `right` with `config` (the embedded cluster unless it names
/// bootstrap servers): creates the topics ([`topics`]) with `partitions` partitions, produces
/// both inputs in file order (Java's default partitioning; in the right input of a table kind an
/// empty value is produced as a null: a tombstone) before the app starts, waits until all is
/// processed and committed, reads every result the app emitted and stops it.
pub async fn run(
    left: &[Line],
    right: &[Line],
    spec: JoinSpec,
    grace_ms: u64,
    partitions: i32,
    config: AppConfig,
) -> kstreams::Result<Vec<Joined>> {
    let (left_topic, right_topic, output) = topics(config.application_id());
    let topology = topology(&left_topic, &right_topic, &output, spec, grace_ms)?;
    let prepared = embedded::prepare(topology, config, partitions, &[]).await?;
    let client = &prepared.client;
    client
        .produce_raw(&left_topic, raw_records(left, false))
        .await?;
    client
        .produce_raw(&right_topic, raw_records(right, spec.is_table()))
        .await?;
    let mut app = prepared.run();
    app.processed_within(TIMEOUT).await?;
    let emitted = app.client.read::<String, String>(&output).await?;
    app.stop().await?;
    let processed = app.client.app().status().processed_records;
    let produced = (left.len() + right.len()) as u64;
    if processed < produced {
        return Err(kstreams::Error::Runtime(format!(
            "{produced} records produced but {processed} processed: the embedded cluster keeps \
             about 100,000 records per partition; use a broker for a larger input"
        )));
    }
    Ok(emitted
        .into_iter()
        .map(|r| Joined {
            key: r.key,
            rest: r.value,
        })
        .collect())
}

/// The records of `lines` as bytes (UTF-8), with their timestamps; an empty value is a null
/// when `empty_is_tombstone`.
fn raw_records(
    lines: &[Line],
    empty_is_tombstone: bool,
) -> impl Iterator<Item = Record<Option<Vec<u8>>, Option<Vec<u8>>>> + '_ {
    lines.iter().map(move |l| {
        let value = if empty_is_tombstone && l.value.is_empty() {
            None
        } else {
            Some(l.value.clone().into_bytes())
        };
        Record::new(Some(l.key.clone().into_bytes()), value).with_timestamp(l.timestamp)
    })
}

/// The join's topology: `left` (String keys, String values) joined with `right` as `spec` says,
/// the results (String keys, the line past the key as a String value, see the module docs)
/// written to `output`. The table kinds read `right` into the versioned table [`Right`] and
/// join each left record with its key's version as of the record's timestamp
/// ([`join::stream_table`], [`join::left_stream_table`], with KIP-923's stream-side
/// [`grace`](join::StreamTableJoin::grace) when `grace_ms` is not 0: its buffer is the store
/// `join-right-join-buffer`). The stream-stream kinds join the two streams in windows of the kind's
/// time difference with `grace_ms` of grace ([`TopologyBuilder::join_streams`]: window stores
/// `join-this`, `join-other` and, for the left join, `join-outer`).
///
/// [`TopologyBuilder::join_streams`]: kstreams::TopologyBuilder::join_streams
pub fn topology(
    left: &str,
    right: &str,
    output: &str,
    spec: JoinSpec,
    grace_ms: u64,
) -> kstreams::Result<Topology> {
    let grace = Duration::from_millis(grace_ms);
    let mut t = Topology::builder();
    let stream = t.source::<String, String>(left);
    match spec {
        JoinSpec::StreamTable => {
            let table = t.table::<Right<'static>>(right);
            let join = join::stream_table(&table, |r: &Record<String, String>, v: &String| {
                table_result(r, Some(v))
            });
            let join = if grace_ms > 0 {
                join.grace(grace)
            } else {
                join
            };
            let joined = t.add(join, &stream);
            t.sink(output, &joined);
        }
        JoinSpec::LeftStreamTable => {
            let table = t.table::<Right<'static>>(right);
            let join = join::left_stream_table(
                &table,
                |r: &Record<String, String>, v: Option<&String>| table_result(r, v),
            );
            let join = if grace_ms > 0 {
                join.grace(grace)
            } else {
                join
            };
            let joined = t.add(join, &stream);
            t.sink(output, &joined);
        }
        JoinSpec::StreamStream { window_ms } | JoinSpec::LeftStreamStream { window_ms } => {
            let other = t.source::<String, String>(right);
            let windows = JoinWindows::of(Duration::from_millis(window_ms), grace)?;
            let kind = if matches!(spec, JoinSpec::StreamStream { .. }) {
                JoinKind::Inner
            } else {
                JoinKind::Left
            };
            let joined = t.join_streams(
                "join",
                &stream,
                &other,
                windows,
                kind,
                |_key: &String,
                 l: Option<&Record<String, String>>,
                 r: Option<&Record<String, String>>| { stream_result(l, r) },
            );
            t.sink(output, &joined);
        }
    }
    Ok(t.build()?)
}

/// The benchmark's stream-table enrichment (`bench/run`'s `kstreams-enrich` rows, through
/// `kafka_bench enrich`): each record of `stream` joined with its key's value in the table
/// materialized from `table` (a key-value table: the benchmark's table has one value per key),
/// the result `<value>|<table value>` written to `output`. With `per_record_lookups` the
/// operator reads the table once per record instead of once per batch (the comparison the
/// benchmark makes).
pub fn enrichment(
    stream: &str,
    table: &str,
    output: &str,
    per_record_lookups: bool,
) -> kstreams::Result<Topology> {
    let mut t = Topology::builder();
    let records = t.source::<String, String>(stream);
    let table = t.table::<EnrichmentTable<'static>>(table);
    let join = join::stream_table(&table, |r: &Record<String, String>, v: &String| {
        format!("{}|{v}", r.value)
    });
    let join = if per_record_lookups {
        join.lookup_per_record()
    } else {
        join
    };
    let enriched = t.add(join, &records);
    t.sink(output, &enriched);
    Ok(t.build()?)
}

/// The enrichment's table: one value per key, a plain key-value table.
#[kstreams::store(name = "enrichment-table")]
pub type EnrichmentTable = kstreams::KeyValue<String, String>;

#[cfg(test)]
mod tests {
    use super::*;
    use kstreams::testing::{SplitInput, check_split_invariance};

    /// Left and right records over 5 keys and 2 partitions, one in 7 out of order (some later
    /// than a 2 s grace), the right ones with an empty value (a delete, for a table) one in 9.
    fn split_input(spec: JoinSpec) -> kstreams::Result<SplitInput> {
        let at = |i: i64, back: bool| 100_000 + i * 150 - if back { 3_000 } else { 0 };
        let left = (0..300_i64).map(|i| {
            Record::new(format!("k{}", i % 5), format!("l{i}")).with_timestamp(at(i, i % 7 == 3))
        });
        let input = SplitInput::new()
            .partitions("left", 2)
            .partitions("right", 2)
            .partitions("out", 2)
            .records("left", left)?;
        let right = (0..200_i64).map(|i| {
            let value = (i % 9 != 4).then(|| format!("r{i}"));
            (format!("k{}", i % 5), value, at(i * 3 / 2, i % 7 == 5))
        });
        if spec.is_table() {
            input.records(
                "right",
                right.map(|(k, v, ts)| Record::new(k, v).with_timestamp(ts)),
            )
        } else {
            input.records(
                "right",
                right.map(|(k, v, ts)| Record::new(k, v.unwrap_or_default()).with_timestamp(ts)),
            )
        }
    }

    /// Invariant 2 for the example's topologies: however the inputs are cut into batches, the
    /// same results and the same stores, for every kind, with and without a grace.
    #[test]
    fn every_kind_is_split_invariant() -> kstreams::Result<()> {
        for spec in [
            JoinSpec::StreamTable,
            JoinSpec::LeftStreamTable,
            JoinSpec::StreamStream { window_ms: 1_000 },
            JoinSpec::LeftStreamStream { window_ms: 1_000 },
        ] {
            for grace_ms in [0, 2_000] {
                let topology = topology("left", "right", "out", spec, grace_ms)?;
                check_split_invariance(&topology, &split_input(spec)?, 15, 3).map_err(|e| {
                    kstreams::Error::Runtime(format!("{spec} grace {grace_ms}: {e}"))
                })?;
            }
        }
        Ok(())
    }

    #[test]
    fn the_right_table_is_versioned_over_a_century() {
        use kstreams::StoreHandle;
        assert!(matches!(
            <Right<'static>>::spec().kind(),
            kstreams::store::StoreKind::Versioned { history_ms } if history_ms == 3_153_600_000_000
        ));
    }

    #[test]
    fn kinds_parse_and_print_back() {
        for s in [
            "stream-table",
            "left-stream-table",
            "stream-stream:1000",
            "left-stream-stream:0",
        ] {
            assert_eq!(s.parse::<JoinSpec>().map(|k| k.to_string()), Ok(s.into()));
        }
        for s in [
            "table",
            "stream-table:5",
            "stream-stream",
            "stream-stream:x",
        ] {
            assert_eq!(
                s.parse::<JoinSpec>(),
                Err(InputError::Kind(s.into())),
                "{s}"
            );
        }
        assert!(matches!(
            "stream-stream:9223372036854775808".parse::<JoinSpec>(),
            Err(InputError::KindValue { .. })
        ));
    }

    #[test]
    fn a_value_may_be_empty_or_hold_tabs() {
        let lines = parse_input("5\ta\t\n\n6\tb\tx\ty\r\n", "f").expect("parses");
        assert_eq!(
            lines,
            [
                Line {
                    timestamp: 5,
                    key: "a".into(),
                    value: String::new()
                },
                Line {
                    timestamp: 6,
                    key: "b".into(),
                    value: "x\ty".into()
                }
            ]
        );
    }

    #[test]
    fn output_groups_by_key_keeping_each_key_order() {
        let j = |k: &str, r: &str| Joined {
            key: k.into(),
            rest: r.into(),
        };
        let got = output_lines(&[j("b", "2"), j("a", "9"), j("b", "1"), j("a", "3")]);
        assert_eq!(got, ["a\t9", "a\t3", "b\t2", "b\t1"]);
    }
}
