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
