//! What `#[batch_processor]`, `#[processor]` and `#[store]` generate, run through the test driver
//! and called as plain functions.

mod common;

use kstreams::store::{StateStores, StoreHandle};
use kstreams::testing::{
    Batching, SplitInput, TopologyTestDriver, check_split_invariance, run_plain,
};
use kstreams::{Emit, Error, Record, Topology, batch_processor, processor, store};

#[store(name = "word-counts")]
type WordCounts = kstreams::KeyValue<String, u64>;

/// Counts words; forwards each word with its running count (the same logic as the hand-written
/// `common::CountWords`).
#[batch_processor]
fn count_words(
    lines: &[Record<(), String>],
    counts: &mut WordCounts,
    out: &mut Emit<String, u64>,
) -> kstreams::Result<()> {
    common::count_words(lines, counts, out)
}

#[processor(name = "upper-case")]
fn upper(line: &Record<(), String>, out: &mut Emit<(), String>) {
    out.forward(line.derive((), line.value.to_uppercase()));
}

#[store(name = "lengths", backend = "in_memory", changelog = false)]
type Lengths = kstreams::KeyValue<String, u64>;

#[store(name = "seen", key_serde = kstreams::serde::StringSerde, value_serde = kstreams::serde::Json::<Vec<i64>>::new())]
type Seen = kstreams::KeyValue<String, Vec<i64>>;

#[derive(Debug, thiserror::Error)]
#[error("empty line")]
struct EmptyLine;

impl From<EmptyLine> for Error {
    fn from(e: EmptyLine) -> Self {
        Error::processing(e.to_string())
    }
}

/// Two stores, no output, a custom error type.
#[processor]
fn remember(
    line: &Record<(), String>,
    lengths: &mut Lengths,
    seen: &mut Seen,
) -> Result<(), EmptyLine> {
    if line.value.is_empty() {
        return Err(EmptyLine);
    }
    let n = lengths.get(&line.value).ok().flatten().unwrap_or(0);
    lengths.put(&line.value, &(n + 1)).map_err(|_| EmptyLine)?;
    let mut ts = seen.get(&line.value).ok().flatten().unwrap_or_default();
    ts.push(line.timestamp);
    seen.put(&line.value, &ts).map_err(|_| EmptyLine)?;
    Ok(())
}

fn word_count_topology() -> Topology {
    let mut t = Topology::builder();
    let lines = t.source::<(), String>("lines");
    let counts = t.add(count_words, &lines);
    t.sink("counts", &counts);
    t.build().expect("valid topology")
}

#[test]
fn a_batch_processor_runs_binds_its_store_and_forwards() -> kstreams::Result<()> {
    let topology = word_count_topology();
    assert!(
        topology
            .describe()
            .contains("Processor: count_words (stores: [word-counts])")
    );
    let mut d = TopologyTestDriver::new(topology)?;
    d.pipe_batch(
        "lines",
        [
            Record::new((), "the cat".to_string()),
            Record::new((), "The dog".to_string()),
        ],
    )?;
    d.pipe("lines", (), "a cat!".to_string())?;
    let out = d.read_output::<String, u64>("counts")?;
    let pairs: Vec<(String, u64)> = out.into_iter().map(|r| (r.key, r.value)).collect();
    assert_eq!(
        pairs,
        [
            ("the", 1),
            ("cat", 1),
            ("the", 2),
            ("dog", 1),
            ("a", 1),
            ("cat", 2)
        ]
        .map(|(w, c)| (w.to_string(), c))
    );
    assert_eq!(
        d.store::<String, u64>("word-counts")?,
        [("a", 1), ("cat", 2), ("dog", 1), ("the", 2)].map(|(w, c)| (w.to_string(), c))
    );
    // The store has a changelog (the default), on the task's partition.
    assert_eq!(
        d.topic_partition("test-app-word-counts-changelog", 0).len(),
        5
    );
    Ok(())
}

#[test]
fn a_batch_processor_is_split_invariant() -> kstreams::Result<()> {
    let lines: Vec<Record<(), String>> = (0..300)
        .map(|i| Record::new((), format!("w{} w{} common", i % 17, i % 5)).with_timestamp(i))
        .collect();
    let input = SplitInput::new()
        .partitions("lines", 3)
        .records("lines", lines)?;
    check_split_invariance(&word_count_topology(), &input, 42, 4)
}

#[test]
fn a_record_processor_runs_per_record_under_its_name() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let lines = t.source::<(), String>("lines");
    let up = t.add(upper, &lines);
    t.sink("upper", &up);
    let topology = t.build()?;
    assert!(topology.describe().contains("Processor: upper-case"));
    let mut d = TopologyTestDriver::builder(topology)
        .batching(Batching::Max(2))
        .build()?;
    d.pipe_batch(
        "lines",
        ["a", "b", "c"].map(|s| Record::new((), s.to_string())),
    )?;
    let out: Vec<String> = d
        .read_output::<(), String>("upper")?
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(out, ["A", "B", "C"]);
    Ok(())
}

#[test]
fn store_settings_and_stores_without_output() -> kstreams::Result<()> {
    assert_eq!(Lengths::NAME, "lengths");
    let spec = Lengths::spec();
    assert_eq!(spec.get_backend(), kstreams::Backend::InMemory);
    assert!(!spec.changelog_enabled());
    let mut t = Topology::builder();
    let lines = t.source::<(), String>("lines");
    // Output `((), ())`: nothing needs to be connected.
    let _ = t.add(remember, &lines);
    let mut d = TopologyTestDriver::new(t.build()?)?;
    d.pipe_batch(
        "lines",
        [("x", 1), ("y", 2), ("x", 3)]
            .map(|(s, ts)| Record::new((), s.to_string()).with_timestamp(ts)),
    )?;
    assert_eq!(
        d.store::<String, u64>("lengths")?,
        [("x".to_string(), 2), ("y".to_string(), 1)]
    );
    assert_eq!(
        d.store::<String, Vec<i64>>("seen")?,
        [("x".to_string(), vec![1, 3]), ("y".to_string(), vec![2])]
    );
    assert!(
        d.topic_partition("test-app-lengths-changelog", 0)
            .is_empty()
    );
    assert_eq!(d.topic_partition("test-app-seen-changelog", 0).len(), 3);
    Ok(())
}

#[test]
fn a_record_processor_error_names_the_record() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let lines = t.source::<(), String>("lines");
    let _ = t.add(remember, &lines);
    let mut d = TopologyTestDriver::new(t.build()?)?;
    let err = d
        .pipe_batch(
            "lines",
            ["ok", "", "later"].map(|s| Record::new((), s.to_string())),
        )
        .expect_err("the empty line fails");
    assert_eq!(
        err.to_string(),
        "processor `remember` failed at topic `lines` partition 0 offset 1: empty line"
    );
    Ok(())
}

#[test]
fn a_processor_is_still_a_plain_function() -> kstreams::Result<()> {
    let mut stores = StateStores::in_memory(vec![WordCounts::spec()])?;
    let lines = [Record::new((), "b a b".to_string())];
    let ((), out) = run_plain(&mut stores, |ctx| {
        let mut counts = ctx.store_handle::<WordCounts<'_>>()?;
        count_words(&lines, &mut counts, ctx)
    })?;
    let pairs: Vec<(String, u64)> = out.into_iter().map(|r| (r.key, r.value)).collect();
    assert_eq!(
        pairs,
        [("b", 1), ("a", 1), ("b", 2)].map(|(w, c)| (w.to_string(), c))
    );
    // The transaction committed: a second call sees the counts.
    let ((), out) = run_plain(&mut stores, |ctx| {
        let mut counts = ctx.store_handle::<WordCounts<'_>>()?;
        count_words(&lines, &mut counts, ctx)
    })?;
    assert_eq!(out.last().map(|r| r.value), Some(4));

    // A processor over a single record, without stores. (Clippy's `unnecessary_operation` takes
    // a statement `upper(..);` for the construction of a tuple struct: bind the `()`.)
    let ((), out) = run_plain(&mut StateStores::in_memory(Vec::new())?, |ctx| {
        let () = upper(&Record::new((), "hi".to_string()), ctx);
        Ok(())
    })?;
    assert_eq!(out[0].value, "HI");
    // The function pointer is reachable too.
    let f: fn(&Record<(), String>, &mut Emit<'_, (), String>) = *upper;
    let _ = f;
    Ok(())
}

#[test]
fn processors_are_small_copyable_values() {
    use kstreams::BatchProcessor;
    let p = count_words;
    let q = p;
    assert_eq!(format!("{q:?}"), "count_words");
    assert_eq!(p.node_name(), Some("count_words"));
    assert_eq!(p.stores().len(), 1);
    assert_eq!(upper.node_name(), Some("upper-case"));
    assert_eq!(std::mem::size_of_val(&p), 0);
}

// ---- Punctuations and init in the macros ----

#[store(name = "alert-tally", backend = "in_memory", changelog = false)]
type AlertTally = kstreams::KeyValue<String, u64>;

#[store(name = "ticks")]
type Ticks = kstreams::KeyValue<String, i64>;

/// Counts alerts; every 10 s of wall-clock time `summarise` reports them, and every 1 s of stream
/// time `tick` remembers when it fired (a store only the handler takes).
#[batch_processor(
    name = "alert-summary",
    punctuate(every = "10s", time = wall_clock, with = summarise),
    punctuate(every = "1s", time = stream_time, with = tick)
)]
fn count_alerts(
    alerts: &[Record<String, String>],
    tally: &mut AlertTally,
    _out: &mut Emit<String, String>,
) -> kstreams::Result<()> {
    let n = tally.get(&"new".to_string())?.unwrap_or(0);
    tally.put(&"new".to_string(), &(n + alerts.len() as u64))
}

#[kstreams::punctuator]
fn summarise(
    p: &kstreams::Punctuation,
    tally: &mut AlertTally,
    out: &mut Emit<String, String>,
) -> kstreams::Result<()> {
    assert_eq!((p.id, p.kind), (0, kstreams::PunctuationType::WallClock));
    let n = tally.get(&"new".to_string())?.unwrap_or(0);
    if n > 0 {
        out.forward(
            Record::new("summary".to_string(), format!("{n} new")).with_timestamp(p.timestamp),
        );
        tally.put(&"new".to_string(), &0)?;
    }
    Ok(())
}

/// No output parameter: it fits any processor.
#[kstreams::punctuator]
fn tick(p: &kstreams::Punctuation, ticks: &mut Ticks) -> kstreams::Result<()> {
    assert_eq!((p.id, p.kind), (1, kstreams::PunctuationType::StreamTime));
    ticks.put(&"last".to_string(), &p.timestamp)
}

fn tally_topology() -> Topology {
    let mut t = Topology::builder();
    let alerts = t.source::<String, String>("alerts");
    let summaries = t.add(count_alerts, &alerts);
    t.sink("summaries", &summaries);
    t.build().expect("valid topology")
}

#[test]
fn punctuations_declared_in_the_attribute_fire_with_their_stores() -> kstreams::Result<()> {
    use kstreams::BatchProcessor;
    // The handlers' stores are declared with the processor's, each once.
    let names: Vec<String> = count_alerts
        .stores()
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    assert_eq!(names, ["alert-tally", "ticks"]);
    let topology = tally_topology();
    assert!(
        topology
            .describe()
            .contains("Processor: alert-summary (stores: [alert-tally, ticks])"),
        "{}",
        topology.describe()
    );

    let mut d = TopologyTestDriver::new(topology)?;
    let ten_seconds = std::time::Duration::from_secs(10);
    // The wall clock is seen once before the first alert (whenever a first punctuation is due,
    // each step of one interval then fires once).
    d.advance_wall_clock(ten_seconds)?;
    d.pipe_batch(
        "alerts",
        ["too hot", "too cold"]
            .map(|a| Record::new("s".to_string(), a.to_string()).with_timestamp(500)),
    )?;
    d.advance_wall_clock(ten_seconds)?;
    d.pipe("alerts", "s".to_string(), "too hot".to_string())?;
    d.advance_wall_clock(ten_seconds)?;
    // A quiet interval forwards nothing.
    d.advance_wall_clock(ten_seconds)?;
    let lines: Vec<String> = d
        .read_output::<String, String>("summaries")?
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(lines, ["2 new", "1 new"]);

    // Stream time: pushed far ahead, the stream-time handler fires and writes its own store.
    d.advance_stream_time(10_000)?;
    d.advance_stream_time(20_000)?;
    let ticks = d.store::<String, i64>("ticks")?;
    assert_eq!(ticks.len(), 1, "{ticks:?}");
    assert!(ticks[0].1 >= 10_000, "{ticks:?}");
    Ok(())
}

/// Intervals as written: literals and any `Duration` expression.
const FIVE_SECONDS: std::time::Duration = std::time::Duration::from_secs(5);

#[batch_processor(
    punctuate(every = "1m30s", time = wall_clock, with = count_ticks),
    punctuate(every = FIVE_SECONDS, time = stream_time, with = count_ticks),
    init = check_partition
)]
fn quiet(_records: &[Record<String, String>]) {}

#[kstreams::punctuator]
fn count_ticks(_p: &kstreams::Punctuation, ticks: &mut Ticks) -> kstreams::Result<()> {
    let n = ticks.get(&"n".to_string())?.unwrap_or(0);
    ticks.put(&"n".to_string(), &(n + 1))
}

fn check_partition(ctx: &mut kstreams::InitContext<'_>) -> Result<(), String> {
    if ctx.partition() > 0 {
        return Err(format!("`{}` runs on partition 0 only", ctx.name()));
    }
    Ok(())
}

#[test]
fn schedules_follow_the_written_intervals_and_init_runs_per_task() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let input = t.source::<String, String>("input");
    let _ = t.add(quiet, &input);
    let topology = t.build()?;

    let mut d = TopologyTestDriver::new(topology.clone())?;
    d.pipe("input", "k".to_string(), "v".to_string())?;
    let ticks = |d: &mut TopologyTestDriver| -> kstreams::Result<i64> {
        Ok(d.store::<String, i64>("ticks")?
            .first()
            .map_or(0, |(_, n)| *n))
    };
    // Second by second: the wall-clock punctuation fires every 90 s.
    let mut fired_at = Vec::new();
    for second in 0..400 {
        let before = ticks(&mut d)?;
        d.advance_wall_clock(std::time::Duration::from_secs(1))?;
        if ticks(&mut d)? > before {
            fired_at.push(second);
        }
    }
    let gaps: Vec<i64> = fired_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.len() >= 2 && gaps.iter().all(|g| *g == 90),
        "{fired_at:?}"
    );

    // `init` runs when a task starts: on partition 1 it fails, naming the processor.
    let err = TopologyTestDriver::builder(topology)
        .partitions("input", 2)
        .build()
        .and_then(|mut d| d.pipe_batch("input", [Record::new("k".to_string(), "v".to_string())]))
        .expect_err("partition 1 is refused");
    assert!(
        err.to_string().contains("`quiet` runs on partition 0 only"),
        "{err}"
    );
    Ok(())
}

fn schedules_by_itself(ctx: &mut kstreams::InitContext<'_>) -> kstreams::Result<()> {
    ctx.schedule(
        std::time::Duration::from_secs(1),
        kstreams::PunctuationType::WallClock,
    )?;
    Ok(())
}

#[batch_processor(init = schedules_by_itself)]
fn unhandled(_records: &[Record<String, String>]) {}

#[test]
fn an_init_function_that_schedules_fails_the_build() {
    let mut t = Topology::builder();
    let input = t.source::<String, String>("input");
    let _ = t.add(unhandled, &input);
    let err = t.build().expect_err("a punctuation without handler");
    assert_eq!(
        err.to_string(),
        "processor `unhandled` cannot start: invalid configuration: processor `unhandled`: its `init` function scheduled a punctuation, which would have no handler; declare it with `punctuate(every = ..., time = ..., with = handler)` in the processor's attribute"
    );
}

/// `Result<(), String>`: the message becomes a processing error.
#[processor]
fn parse_number(line: &Record<(), String>, out: &mut Emit<(), u64>) -> Result<(), String> {
    let n = line
        .value
        .parse::<u64>()
        .map_err(|e| format!("not a number: {e}"))?;
    out.forward(line.derive((), n));
    Ok(())
}

#[test]
fn a_string_error_is_a_processing_error_with_its_origin() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let lines = t.source::<(), String>("lines");
    let numbers = t.add(parse_number, &lines);
    t.sink("numbers", &numbers);
    let mut d = TopologyTestDriver::new(t.build()?)?;
    let err = d
        .pipe_batch("lines", ["1", "x"].map(|s| Record::new((), s.to_string())))
        .expect_err("x is not a number");
    assert_eq!(
        err.to_string(),
        "processor `parse_number` failed at topic `lines` partition 0 offset 1: not a number: invalid digit found in string"
    );
    Ok(())
}

// ---- The hand-written escape hatch: a store missing from `stores()` fails the build ----

#[derive(Debug, Clone)]
struct HandWritten {
    declare: bool,
}

impl kstreams::BatchProcessor<String, String> for HandWritten {
    type OutKey = ();
    type OutValue = ();
    fn stores(&self) -> Vec<kstreams::StoreSpec> {
        if self.declare {
            vec![AlertTally::spec()]
        } else {
            Vec::new()
        }
    }
    fn init(&mut self, ctx: &mut kstreams::InitContext<'_>) -> kstreams::Result<()> {
        ctx.require_store::<AlertTally<'_>>()
    }
    fn process_batch(
        &mut self,
        records: &[Record<String, String>],
        ctx: &mut kstreams::Context<'_, (), ()>,
    ) -> kstreams::Result<()> {
        let mut tally = ctx.store_handle::<AlertTally<'_>>()?;
        tally.put(&"n".to_string(), &(records.len() as u64))
    }
}

#[test]
fn a_store_missing_from_stores_is_a_build_error() -> kstreams::Result<()> {
    let build = |declare: bool| {
        let mut t = Topology::builder();
        let input = t.source::<String, String>("input");
        let _ = t.add_named("hand-written", HandWritten { declare }, &input);
        t.build()
    };
    let err = build(false).expect_err("the store is not declared");
    assert_eq!(
        err.to_string(),
        "processor `hand-written` cannot start: invalid configuration: processor `hand-written` uses the store `alert-tally` (`AlertTally`) but does not declare it: list it in `stores()`, as `AlertTally::spec()`"
    );
    let mut d = TopologyTestDriver::new(build(true)?)?;
    d.pipe("input", "k".to_string(), "v".to_string())?;
    assert_eq!(
        d.store::<String, u64>("alert-tally")?,
        [("n".to_string(), 1)]
    );
    Ok(())
}

/// A hand-written processor that declares its store otherwise than the handle it uses.
#[derive(Debug, Clone)]
struct DeclaresOtherwise;

impl kstreams::BatchProcessor<String, String> for DeclaresOtherwise {
    type OutKey = ();
    type OutValue = ();
    fn stores(&self) -> Vec<kstreams::StoreSpec> {
        vec![kstreams::StoreSpec::new::<String, i64>("alert-tally")]
    }
    fn init(&mut self, ctx: &mut kstreams::InitContext<'_>) -> kstreams::Result<()> {
        ctx.require_store::<AlertTally<'_>>()
    }
    fn process_batch(
        &mut self,
        _: &[Record<String, String>],
        _: &mut kstreams::Context<'_, (), ()>,
    ) -> kstreams::Result<()> {
        Ok(())
    }
}

#[test]
fn a_store_declared_otherwise_than_its_handle_is_a_build_error() {
    let mut t = Topology::builder();
    let input = t.source::<String, String>("input");
    let _ = t.add_named("otherwise", DeclaresOtherwise, &input);
    let err = t.build().expect_err("declared with other types");
    assert_eq!(
        err.to_string(),
        "processor `otherwise` cannot start: invalid configuration: processor `otherwise` uses the store `alert-tally` as `AlertTally` (`String` → `u64` on the in-memory backend, without a changelog) but declares it in `stores()` as `String` → `i64` on LMDB, with a changelog; declare it with `AlertTally::spec()`"
    );
}

const NO_TIME: std::time::Duration = std::time::Duration::ZERO;

#[batch_processor(punctuate(every = NO_TIME, time = wall_clock, with = count_ticks))]
fn too_often(_records: &[Record<String, String>]) {}

#[test]
fn an_interval_below_one_millisecond_fails_the_build() {
    let mut t = Topology::builder();
    let input = t.source::<String, String>("input");
    let _ = t.add(too_often, &input);
    let err = t.build().expect_err("a zero interval");
    assert_eq!(
        err.to_string(),
        "processor `too_often` cannot start: invalid configuration: processor `too_often`: a punctuation interval must be at least 1 ms"
    );
}

// ---- Windowed stores -------------------------------------------------------------------------

mod windowed {
    use std::time::Duration;

    use kstreams::serde::{StringSerde, U64Serde};
    use kstreams::store::{StoreHandle, StoreKind};
    use kstreams::testing::{SplitInput, TopologyTestDriver, check_split_invariance};
    use kstreams::window::TimeWindowedSerde;
    use kstreams::window::{
        EmitStrategy, OnLate, SessionWindows, SlidingWindows, TimeWindows, WindowedHandle, Windows,
    };
    use kstreams::{Backend, Emit, Record, Topology, Windowed, store};

    #[store(name = "view-counts", window = hopping(size = "60s", advance = "10s"), grace = "5s",
            emit = on_window_close)]
    type ViewCounts = kstreams::WindowKeyValue<String, u64>;

    #[store(name = "tumbling-counts", window = tumbling(size = "1m"), grace = "0s",
            retention = "1h", on_late = dead_letter, idle_advance = "30s",
            backend = "in_memory", changelog = false)]
    type TumblingCounts = kstreams::WindowKeyValue<String, u64>;

    #[store(name = "sliding-sums", window = sliding(difference = "250ms"), grace = "1s")]
    type SlidingSums = kstreams::WindowKeyValue<u64, i64>;

    #[store(name = "sessions", window = session(gap = "5m"), grace = "30s", on_late = dead_letter)]
    type Sessions = kstreams::SessionKeyValue<String, u64>;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_hopping_declaration_is_what_was_written() -> kstreams::Result<()> {
        let spec = ViewCounts::spec();
        assert_eq!(spec.name(), "view-counts");
        assert_eq!(
            spec.kind(),
            StoreKind::Window {
                size_ms: 60_000,
                retention_ms: 65_000
            }
        );
        assert_eq!(spec.get_backend(), Backend::Lmdb);
        assert!(spec.changelog_enabled());
        let w = ViewCounts::windowing();
        assert_eq!(
            w.windows(),
            Windows::Time(TimeWindows::hopping(secs(60), secs(10), secs(5))?)
        );
        assert_eq!(w.emit_strategy(), EmitStrategy::OnWindowClose);
        assert_eq!(w.late_policy(), OnLate::Drop);
        assert_eq!(w.retention_ms(), 65_000);
        assert_eq!(w.idle_advance_ms(), None);
        Ok(())
    }

    #[test]
    fn every_windowed_key_reaches_the_declaration() -> kstreams::Result<()> {
        let spec = TumblingCounts::spec();
        assert_eq!(
            spec.kind(),
            StoreKind::Window {
                size_ms: 60_000,
                retention_ms: 3_600_000
            }
        );
        assert_eq!(spec.get_backend(), Backend::InMemory);
        assert!(!spec.changelog_enabled());
        let w = TumblingCounts::windowing();
        assert_eq!(
            w.windows(),
            Windows::Time(TimeWindows::tumbling(secs(60), Duration::ZERO)?)
        );
        assert_eq!(w.emit_strategy(), EmitStrategy::OnWindowUpdate);
        assert_eq!(w.late_policy(), OnLate::DeadLetter);
        assert_eq!(w.retention_ms(), 3_600_000);
        assert_eq!(w.idle_advance_ms(), Some(30_000));
        Ok(())
    }

    #[test]
    fn sliding_and_session_declarations_are_what_was_written() -> kstreams::Result<()> {
        let w = SlidingSums::windowing();
        assert_eq!(
            w.windows(),
            Windows::Sliding(SlidingWindows::new(Duration::from_millis(250), secs(1))?)
        );
        assert_eq!(
            SlidingSums::spec().kind(),
            StoreKind::Window {
                size_ms: 250,
                retention_ms: w.retention_ms()
            }
        );
        assert_eq!(w.retention_ms(), 1_500, "2 × difference + grace, as Java");

        let w = Sessions::windowing();
        assert_eq!(
            w.windows(),
            Windows::Session(SessionWindows::new(secs(300), secs(30))?)
        );
        assert_eq!(w.late_policy(), OnLate::DeadLetter);
        assert_eq!(
            Sessions::spec().kind(),
            StoreKind::Session {
                retention_ms: 330_000
            }
        );
        assert_eq!(<Sessions<'_> as StoreHandle>::NAME, "sessions");
        Ok(())
    }

    // The windowed count: a store declaration and a plain function over the batch.

    #[store(name = "counts", window = tumbling(size = "1m"), grace = "10s", emit = on_window_close)]
    type Counts = kstreams::WindowKeyValue<String, u64>;

    #[kstreams::batch_processor]
    fn count(
        views: &[Record<String, String>],
        counts: &mut Counts,
        out: &mut Emit<Windowed<String>, u64>,
    ) -> kstreams::Result<()> {
        counts.aggregate(views, out, |_| 0, |n, _| *n += 1)
    }

    fn count_topology() -> Topology {
        let mut t = Topology::builder();
        let views = t.source::<String, String>("views");
        let counts = t.add(count, &views);
        t.sink("view-counts", &counts);
        t.build().expect("valid topology")
    }

    fn views() -> Vec<Record<String, String>> {
        [
            ("a", 0),
            ("b", 5_000),
            ("a", 30_000),
            ("a", 61_000),
            ("b", 65_000),
            // Stream time 71 s: [0 s, 60 s) is final (60 s + 10 s grace <= 71 s).
            ("a", 71_000),
            // Late: its only window closed.
            ("a", 50_000),
            // Stream time 200 s: [60 s, 120 s) is final.
            ("b", 200_000),
        ]
        .into_iter()
        .map(|(k, ts)| Record::new(k.to_owned(), format!("view@{ts}")).with_timestamp(ts))
        .collect()
    }

    #[test]
    fn a_windowed_batch_processor_counts_per_window_and_emits_on_close() -> kstreams::Result<()> {
        let topology = count_topology();
        assert!(
            topology
                .describe()
                .contains("Processor: count (stores: [counts])"),
            "{}",
            topology.describe()
        );
        let mut d = TopologyTestDriver::new(topology)?;
        d.pipe_batch("views", views())?;
        let keys = TimeWindowedSerde::new(StringSerde).with_window_size(60_000);
        let out = d.read_output_with::<Windowed<String>, u64>("view-counts", &keys, &U64Serde)?;
        let got: Vec<(String, i64, i64, u64)> = out
            .into_iter()
            .map(|r| (r.key.key, r.key.window.start, r.key.window.end, r.value))
            .collect();
        assert_eq!(
            got,
            [
                ("a", 0, 60_000, 2),
                ("b", 0, 60_000, 1),
                ("a", 60_000, 120_000, 2),
                ("b", 60_000, 120_000, 1),
            ]
            .map(|(k, s, e, n)| (k.to_owned(), s, e, n))
        );
        Ok(())
    }

    #[test]
    fn a_windowed_batch_processor_is_split_invariant() -> kstreams::Result<()> {
        let input = SplitInput::new()
            .partitions("views", 2)
            .records("views", views())?;
        check_split_invariance(&count_topology(), &input, 7, 4)
    }
}

// ---- Versioned stores ------------------------------------------------------------------------

mod versioned {
    use kstreams::store::{StoreHandle, StoreKind};
    use kstreams::table::TableStore;
    use kstreams::testing::TopologyTestDriver;
    use kstreams::{Backend, Emit, Record, Topology, store};

    #[store(name = "prices", history = "1d")]
    type Prices = kstreams::VersionedKeyValue<String, u64>;

    #[store(
        name = "quick-prices",
        history = "1m30s",
        backend = "in_memory",
        changelog = false
    )]
    pub(crate) type QuickPrices = kstreams::VersionedKeyValue<String, u64>;

    #[store(name = "plain")]
    type Plain = kstreams::KeyValue<String, u64>;

    #[test]
    fn a_versioned_declaration_is_what_was_written() {
        let spec = Prices::spec();
        assert_eq!(spec.name(), "prices");
        assert_eq!(
            spec.kind(),
            StoreKind::Versioned {
                history_ms: 86_400_000
            }
        );
        assert_eq!(spec.get_backend(), Backend::Lmdb);
        assert!(spec.changelog_enabled());
        let spec = QuickPrices::spec();
        assert_eq!(spec.kind(), StoreKind::Versioned { history_ms: 90_000 });
        assert_eq!(spec.get_backend(), Backend::InMemory);
        assert!(!spec.changelog_enabled());
        assert_eq!(<QuickPrices<'_> as StoreHandle>::NAME, "quick-prices");
    }

    fn table_store<S: TableStore>() -> &'static str {
        S::NAME
    }

    #[test]
    fn key_value_and_versioned_handles_can_hold_a_table() {
        assert_eq!(table_store::<Prices<'static>>(), "prices");
        assert_eq!(table_store::<Plain<'static>>(), "plain");
    }

    /// Each record's value is a price valid from the record's timestamp; the output is the price
    /// as of an hour before (or `None`).
    #[kstreams::batch_processor]
    fn price_an_hour_ago(
        prices: &[Record<String, u64>],
        store: &mut Prices,
        out: &mut Emit<String, Option<u64>>,
    ) -> kstreams::Result<()> {
        for r in prices {
            let _ = store.put(&r.key, Some(&r.value), r.timestamp)?;
            let then = store.get_as_of(&r.key, r.timestamp - 3_600_000)?;
            out.forward(r.clone().with_value(then.map(|v| v.value)));
        }
        Ok(())
    }

    #[test]
    fn a_processor_takes_a_versioned_handle() -> kstreams::Result<()> {
        let mut t = Topology::builder();
        let s = t.source::<String, u64>("prices");
        let p = t.add(price_an_hour_ago, &s);
        t.sink("out", &p);
        let mut d = TopologyTestDriver::new(t.build()?)?;
        let hour = 3_600_000;
        let at = |v: u64, ts: i64| Record::new("apple".to_owned(), v).with_timestamp(ts);
        d.pipe_batch("prices", [at(1, 0), at(2, hour), at(3, 2 * hour + 1)])?;
        let got: Vec<Option<u64>> = d
            .read_output::<String, Option<u64>>("out")?
            .into_iter()
            .map(|r| r.value)
            .collect();
        assert_eq!(got, [None, Some(1), Some(2)]);
        Ok(())
    }

    /// A hand-written processor reaches the same handle with `Context::store_handle`.
    #[derive(Clone)]
    struct ByHand;

    impl kstreams::BatchProcessor<String, u64> for ByHand {
        type OutKey = String;
        type OutValue = Option<u64>;
        fn stores(&self) -> Vec<kstreams::StoreSpec> {
            vec![Prices::spec()]
        }
        fn process_batch(
            &mut self,
            records: &[Record<String, u64>],
            ctx: &mut kstreams::Context<'_, String, Option<u64>>,
        ) -> kstreams::Result<()> {
            let mut store = ctx.store_handle::<Prices<'_>>()?;
            let mut out = Vec::new();
            for r in records {
                let _ = store.put(&r.key, Some(&r.value), r.timestamp)?;
                let before = store.get_as_of(&r.key, r.timestamp - 1)?;
                out.push(r.clone().with_value(before.map(|v| v.value)));
            }
            for r in out {
                ctx.forward(r);
            }
            Ok(())
        }
    }

    #[test]
    fn a_hand_written_processor_binds_a_versioned_handle() -> kstreams::Result<()> {
        let mut t = Topology::builder();
        let s = t.source::<String, u64>("prices");
        let p = t.add(ByHand, &s);
        t.sink("out", &p);
        let mut d = TopologyTestDriver::new(t.build()?)?;
        let at = |v: u64, ts: i64| Record::new("apple".to_owned(), v).with_timestamp(ts);
        d.pipe_batch("prices", [at(1, 10), at(2, 20)])?;
        let got: Vec<Option<u64>> = d
            .read_output::<String, Option<u64>>("out")?
            .into_iter()
            .map(|r| r.value)
            .collect();
        assert_eq!(got, [None, Some(1)]);
        Ok(())
    }
}
