//! The test driver runs the task code over LMDB state, in any batching.

mod common;

use common::{CountWords, STORE};
use kstreams::testing::{Batching, SplitInput, TopologyTestDriver, check_split_invariance};
use kstreams::{Record, Topology};

fn topology() -> Topology {
    let mut t = Topology::builder();
    let lines = t.source::<(), String>("lines");
    let counts = t.add(CountWords, &lines);
    t.sink("counts", &counts);
    t.build().expect("valid topology")
}

#[test]
fn word_count_through_the_driver() -> kstreams::Result<()> {
    let mut d = TopologyTestDriver::new(topology())?;
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
        vec![
            ("the".into(), 1),
            ("cat".into(), 1),
            ("the".into(), 2),
            ("dog".into(), 1),
            ("a".into(), 1),
            ("cat".into(), 2),
        ]
    );
    let store = d.store::<String, u64>(STORE)?;
    assert_eq!(
        store,
        vec![
            ("a".into(), 1),
            ("cat".into(), 2),
            ("dog".into(), 1),
            ("the".into(), 2)
        ]
    );
    // Each write went to the changelog too, in write order, on the task's partition.
    let changelog = d.topic_partition("test-app-word-counts-changelog", 0);
    assert_eq!(changelog.len(), 5);
    Ok(())
}

#[test]
fn word_count_is_split_invariant() -> kstreams::Result<()> {
    let lines: Vec<Record<(), String>> = (0..300)
        .map(|i| Record::new((), format!("w{} w{} common", i % 17, i % 5)).with_timestamp(i))
        .collect();
    let input = SplitInput::new()
        .partitions("lines", 3)
        .records("lines", lines)?;
    check_split_invariance(&topology(), &input, 42, 4)
}

#[test]
fn batching_is_respected() -> kstreams::Result<()> {
    let mut d = TopologyTestDriver::builder(topology())
        .batching(Batching::Max(2))
        .build()?;
    d.pipe_batch("lines", (0..5).map(|i| Record::new((), format!("x{i}"))))?;
    let task = d.tasks().next().map(|(_, t)| t).expect("one task");
    // 5 records in batches of at most 2: 3 transactions.
    assert_eq!(task.committed_transactions(), 3);
    Ok(())
}
