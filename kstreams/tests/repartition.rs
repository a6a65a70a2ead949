//! Repartition topics and merges in the topology and the test driver: a repartition step ends
//! one sub-topology with a sink of an internal topic named from the application id and starts
//! another with its source; the driver routes the records through it by key.

use kstreams::partitioner::partition_for_key;
use kstreams::testing::TopologyTestDriver;
use kstreams::{Record, Topology, processor, store};

#[store(name = "word-counts")]
type WordCounts = kstreams::KeyValue<String, u64>;

#[store(name = "weights")]
type Weights = kstreams::KeyValue<String, u64>;

/// Lines keyed by their line number, re-keyed by word, repartitioned and counted.
fn word_count() -> Topology {
    let mut t = Topology::builder();
    let lines = t.source::<String, String>("lines");
    let words = t.add_named(
        "split",
        processor::flat_map(|r: &Record<String, String>| {
            r.value
                .split_whitespace()
                .map(|w| r.derive(w.to_owned(), String::new()))
                .collect::<Vec<_>>()
        }),
        &lines,
    );
    let by_word = t.repartition(&words, "words");
    let counts = t.add(
        kstreams::aggregate::count::<WordCounts<'static>>(),
        &by_word,
    );
    t.sink("counts", &counts);
    t.build().expect("topology")
}

#[test]
fn a_repartition_topic_is_named_from_the_application_id() {
    let topology = word_count();
    let before = topology.repartition_topics();
    assert_eq!(before.len(), 1);
    assert_eq!(
        (&*before[0].name, &*before[0].topic),
        ("words", "words-repartition")
    );
    let resolved = topology.resolve("wc");
    assert_eq!(resolved.application_id(), Some("wc"));
    assert_eq!(
        &*resolved.repartition_topics()[0].topic,
        "wc-words-repartition"
    );
    // Resolving again starts from the names as built.
    assert_eq!(
        &*resolved.resolve("other").repartition_topics()[0].topic,
        "other-words-repartition"
    );
    // Two sub-topologies: the sink of the topic ends one, its source starts the other.
    let subs = resolved.subtopologies();
    assert_eq!(subs.len(), 2);
    assert_eq!(
        subs[0].sink_topics,
        vec!["wc-words-repartition".into()] as Vec<std::sync::Arc<str>>
    );
    assert!(
        subs[1]
            .source_topics
            .iter()
            .any(|t| &**t == "wc-words-repartition")
    );
    let text = resolved.describe();
    assert!(
        text.contains("Sink: words-repartition-sink (topic: wc-words-repartition, repartition)"),
        "{text}"
    );
    assert!(
        text.contains(
            "Source: words-repartition-source (topic: wc-words-repartition, repartition)"
        ),
        "{text}"
    );
    let mermaid = resolved.describe_mermaid();
    // One topic node, written by one sub-topology and read by the other.
    assert!(
        mermaid.contains("node_words_repartition_sink --> topic_wc_words_repartition"),
        "{mermaid}"
    );
    assert!(
        mermaid.contains("topic_wc_words_repartition --> node_words_repartition_source"),
        "{mermaid}"
    );
    assert_eq!(
        mermaid
            .matches("topic_wc_words_repartition([\"repartition wc-words-repartition\"])")
            .count(),
        1,
        "{mermaid}"
    );
}

#[test]
fn the_driver_routes_repartitioned_records_by_their_new_key() -> kstreams::Result<()> {
    let mut d = TopologyTestDriver::builder(word_count())
        .application_id("wc")
        .partitions("lines", 3)
        .partitions("counts", 3)
        .build()?;
    let line = |k: &str, v: &str| Record::new(k.to_owned(), v.to_owned());
    d.pipe_batch(
        "lines",
        [
            line("1", "to be or not"),
            line("2", "to be"),
            line("3", "be quick"),
            line("4", "or not"),
        ],
    )?;
    // Every count of a word was made in one task: the word's partition.
    assert_eq!(
        d.store::<String, u64>("word-counts")?,
        vec![
            ("be".to_owned(), 3),
            ("not".to_owned(), 2),
            ("or".to_owned(), 2),
            ("quick".to_owned(), 1),
            ("to".to_owned(), 2),
        ]
    );
    // The internal topic has the upstream's three partitions; each word in its key's.
    let routed = d.read_output_raw("wc-words-repartition");
    assert_eq!(routed.len(), 10);
    for (partition, _, r) in &routed {
        let key = r.key.as_deref().expect("keyed");
        assert_eq!(*partition, partition_for_key(key, 3), "{key:?}");
    }
    assert!(routed.iter().any(|(p, _, _)| *p == 2), "{routed:?}");
    Ok(())
}

#[test]
fn a_repartition_topic_takes_the_partition_count_of_its_co_partitioned_sources() {
    // The reading sub-topology also reads the table `weights`: the repartition topic must be
    // co-partitioned with it, whatever the upstream's count.
    #[kstreams::processor]
    fn weigh(
        r: &Record<String, String>,
        weights: &Weights,
        out: &mut kstreams::Emit<String, u64>,
    ) -> kstreams::Result<()> {
        let w = weights.get(&r.key)?.unwrap_or(0);
        out.forward(r.derive(r.key.clone(), w));
        Ok(())
    }
    let mut t = Topology::builder();
    let _weights = t.table::<Weights<'static>>("weights");
    let lines = t.source::<String, String>("lines");
    let by_value = t.add_named(
        "by-value",
        processor::map(|r: &Record<String, String>| r.derive(r.value.clone(), r.key.clone())),
        &lines,
    );
    let rekeyed = t.repartition(&by_value, "by-value");
    let weighed = t.add(weigh, &rekeyed);
    t.sink("weighed", &weighed);
    let topology = t.build().expect("topology").resolve("app");
    let counts = |t: &str| match t {
        "weights" => Some(4),
        "lines" => Some(2),
        _ => None,
    };
    assert_eq!(
        topology.repartition_partitions("app-by-value-repartition", &counts),
        Some(4)
    );
    // Without the co-partitioned table, the upstream's.
    let mut t = Topology::builder();
    let lines = t.source::<String, String>("lines");
    let rekeyed = t.repartition(&lines, "again");
    t.sink("out", &rekeyed);
    let topology = t.build().expect("topology");
    assert_eq!(
        topology.repartition_partitions("again-repartition", &counts),
        Some(2)
    );
    assert_eq!(topology.repartition_partitions("lines", &counts), None);
}

#[test]
fn repartition_topics_feeding_each_other_follow_the_first_upstream() {
    let mut t = Topology::builder();
    let lines = t.source::<String, String>("lines");
    let once = t.repartition(&lines, "once");
    let twice = t.repartition(&once, "twice");
    t.sink("out", &twice);
    let topology = t.build().expect("topology");
    let counts = |t: &str| (t == "lines").then_some(5);
    assert_eq!(
        topology.repartition_partitions("twice-repartition", &counts),
        Some(5)
    );
    assert_eq!(topology.subtopologies().len(), 3);
}

#[test]
fn an_invalid_repartition_name_is_a_build_error() {
    let mut t = Topology::builder();
    let lines = t.source::<String, String>("lines");
    let bad = t.repartition(&lines, "no spaces");
    t.sink("out", &bad);
    assert!(
        matches!(t.build(), Err(kstreams::topology::TopologyError::InvalidName(n)) if n == "no spaces")
    );
}

#[test]
fn a_merge_forwards_the_records_of_every_input() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let a = t.source::<String, String>("a");
    let b = t.source::<String, String>("b");
    let both = t.merge(&[&a, &b]);
    let upper = t.add_named(
        "upper",
        processor::map(|r: &Record<String, String>| {
            r.derive(r.key.clone(), r.value.to_uppercase())
        }),
        &both,
    );
    t.sink("out", &upper);
    let topology = t.build()?;
    assert_eq!(topology.subtopologies().len(), 1);
    let text = topology.describe();
    assert!(
        text.contains("Merge: merge\n      --> upper\n      <-- a-source, b-source"),
        "{text}"
    );
    let mut d = TopologyTestDriver::new(topology)?;
    let at = |k: &str, v: &str, ts: i64| Record::new(k.to_owned(), v.to_owned()).with_timestamp(ts);
    d.append_batch("a", [at("k", "a1", 1), at("k", "a2", 3)])?;
    d.append_batch("b", [at("k", "b1", 2)])?;
    d.process()?;
    let out: Vec<String> = d
        .read_output::<String, String>("out")?
        .into_iter()
        .map(|r| r.value)
        .collect();
    // In timestamp order across the task's inputs.
    assert_eq!(out, vec!["A1", "B1", "A2"]);
    Ok(())
}

#[test]
fn a_repartitioned_count_is_split_invariant() -> kstreams::Result<()> {
    use kstreams::testing::{SplitCheck, SplitInput};
    let input = SplitInput::new()
        .partitions("lines", 3)
        .partitions("counts", 2)
        .records(
            "lines",
            (0..150).map(|i| {
                Record::new(i.to_string(), format!("w{} w{} common", i % 7, i % 3))
                    .with_timestamp(i64::from(i))
            }),
        )?;
    // `count` forwards one update per key and batch: its output is a table.
    Ok(SplitCheck::new(&word_count())
        .table_output("counts")
        .seed(3)
        .runs(4)
        .run(&input)?)
}
