//! The test driver runs the task code over LMDB state, in any batching.

mod common;

use common::{CountWords, STORE};
use kstreams::OnBadRecord;
use kstreams::testing::{
    Batching, SplitCheck, SplitInput, TopologyTestDriver, check_split_invariance,
};
use kstreams::{Emit, Record, Topology, batch_processor, store};

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

#[test]
fn reading_a_topic_the_topology_does_not_write_is_an_error() -> kstreams::Result<()> {
    let mut d = TopologyTestDriver::builder(topology())
        .on_deserialization_error(OnBadRecord::DeadLetter {
            topic: "lines-dlq".into(),
        })
        .build()?;
    d.pipe("lines", (), "a b".to_string())?;
    let written = "it writes `counts`, `lines-dlq`, `test-app-word-counts-changelog`";
    for topic in ["cuonts", "lines"] {
        let err = d
            .read_output::<String, u64>(topic)
            .expect_err("not written by the topology");
        assert_eq!(
            err.to_string(),
            format!(
                "invalid configuration: the topology does not write topic `{topic}`; {written}"
            )
        );
    }
    // What it writes reads fine: the sink, the dead-letter topic (bytes: any types), the
    // changelog (with the store's types).
    assert_eq!(d.read_output::<String, u64>("counts")?.len(), 2);
    assert!(d.read_output::<String, String>("lines-dlq")?.is_empty());
    assert_eq!(
        d.read_output::<String, u64>("test-app-word-counts-changelog")?
            .len(),
        2
    );
    Ok(())
}

#[test]
fn reading_with_other_types_than_the_sinks_is_an_error() -> kstreams::Result<()> {
    let mut d = TopologyTestDriver::new(topology())?;
    d.pipe("lines", (), "a b".to_string())?;
    let err = d
        .read_output::<String, String>("counts")
        .expect_err("u64 values read as strings");
    assert_eq!(
        err.to_string(),
        "invalid configuration: topic `counts` is written with \
         `Record<alloc::string::String, u64>`, not read as \
         `Record<alloc::string::String, alloc::string::String>`: use the sink's types"
    );
    let err = d
        .read_output::<String, String>("test-app-word-counts-changelog")
        .expect_err("the store holds u64");
    assert!(
        err.to_string()
            .contains("is the changelog of store `word-counts`"),
        "{err}"
    );
    // Nothing was consumed by the failed reads.
    assert_eq!(d.read_output::<String, u64>("counts")?.len(), 2);
    Ok(())
}

/// The README's word count, as the README writes it.
mod readme {
    use super::*;

    #[store(name = "word-counts")]
    pub type WordCounts = kstreams::KeyValue<String, u64>;

    #[batch_processor]
    pub fn count_words(
        lines: &[Record<(), String>],
        counts: &mut WordCounts,
        out: &mut Emit<String, u64>,
    ) -> kstreams::Result<()> {
        let words: Vec<(usize, String)> = lines
            .iter()
            .enumerate()
            .flat_map(|(i, l)| {
                l.value
                    .to_lowercase()
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .map(|w| (i, w.to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let keys: Vec<String> = words.iter().map(|(_, w)| w.clone()).collect();
        let mut totals = std::collections::HashMap::new();
        for ((i, word), old) in words.into_iter().zip(counts.get_batch(&keys)?) {
            let n = totals.entry(word.clone()).or_insert(old.unwrap_or(0));
            *n += 1;
            out.forward(lines[i].derive(word, *n));
        }
        counts.put_batch(&totals.into_iter().collect::<Vec<_>>())
    }
}

#[test]
fn the_readme_word_count_is_split_invariant() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let lines = t.source::<(), String>("text-input");
    let counts = t.add(readme::count_words, &lines);
    t.sink("word-counts", &counts);
    let topology = t.build()?;
    let input = SplitInput::new().partitions("text-input", 2).records(
        "text-input",
        (0..200).map(|i| {
            Record::new((), format!("to be or not to be {} {}", i % 7, i % 3)).with_timestamp(i)
        }),
    )?;
    // One output per word, so record for record and as a table alike.
    SplitCheck::new(&topology).seed(3).runs(3).run(&input)?;
    SplitCheck::new(&topology)
        .table_output("word-counts")
        .seed(3)
        .runs(3)
        .run(&input)?;
    Ok(())
}

#[test]
fn piping_into_a_topic_the_topology_does_not_read_or_with_other_types_is_an_error()
-> kstreams::Result<()> {
    let mut d = TopologyTestDriver::new(topology())?;
    let err = d
        .pipe("lnies", (), "a b".to_string())
        .expect_err("misspelt");
    assert_eq!(
        err.to_string(),
        "invalid configuration: the topology does not read topic `lnies`; it reads `lines`"
    );
    let err = d
        .pipe("lines", "k".to_string(), "a b".to_string())
        .expect_err("a String key for a () source");
    assert_eq!(
        err.to_string(),
        "invalid configuration: topic `lines` is read as `Record<(), alloc::string::String>`, \
         not written as `Record<alloc::string::String, alloc::string::String>`: use the \
         source's types"
    );
    // Nothing was appended by the failed pipes.
    assert!(d.topic_names().iter().all(|t| t != "lnies"));
    assert!(d.topic_partition("lines", 0).is_empty());
    Ok(())
}
