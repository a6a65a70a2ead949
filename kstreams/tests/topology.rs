//! What types cannot catch, `build()` does: each mistake is a clear error.

mod common;

use kstreams::topology::TopologyError;
use kstreams::{BatchProcessor, Context, Record, Result, StoreSpec, Topology, processor};

fn identity() -> impl BatchProcessor<String, String, OutKey = String, OutValue = String> + Clone {
    processor::map(|r: &Record<String, String>| r.clone())
}

#[test]
fn duplicate_names_are_rejected() {
    let mut t = Topology::builder();
    let s = t.source::<String, String>("in");
    let a = t.add_named("step", identity(), &s);
    let b = t.add_named("step", identity(), &a);
    t.sink("out", &b);
    assert_eq!(
        t.build().unwrap_err(),
        TopologyError::DuplicateName("step".into())
    );
}

#[test]
fn default_names_are_made_unique() -> Result<()> {
    let mut t = Topology::builder();
    let s = t.source::<String, String>("in");
    let a = t.add(identity(), &s);
    let b = t.add(identity(), &a);
    t.sink("out", &b);
    let d = t.build()?.describe();
    assert!(d.contains("Processor: flat_map (stores: [])"), "{d}");
    assert!(d.contains("Processor: flat_map-2 (stores: [])"), "{d}");
    Ok(())
}

#[test]
fn invalid_names_are_rejected() {
    let mut t = Topology::builder();
    let s = t.source::<String, String>("in");
    let a = t.add_named("has space", identity(), &s);
    t.sink("out", &a);
    assert_eq!(
        t.build().unwrap_err(),
        TopologyError::InvalidName("has space".into())
    );
}

#[test]
fn a_topology_needs_a_source() {
    assert_eq!(
        Topology::builder().build().unwrap_err(),
        TopologyError::NoSource
    );
}

#[test]
fn a_topic_is_read_by_one_source() {
    let mut t = Topology::builder();
    let a = t.source::<String, String>("in");
    let b = t.source::<String, String>("in");
    t.sink("x", &a);
    t.sink("y", &b);
    assert_eq!(
        t.build().unwrap_err(),
        TopologyError::DuplicateSourceTopic("in".into())
    );
}

#[test]
fn a_declared_store_must_be_used() {
    let mut t = Topology::builder();
    let s = t.source::<String, String>("in");
    t.sink("out", &s);
    t.store(StoreSpec::new::<String, u64>("orphan"));
    assert_eq!(
        t.build().unwrap_err(),
        TopologyError::UnusedStore("orphan".into())
    );
}

#[derive(Debug, Clone)]
struct UsesStore(StoreSpec);

impl BatchProcessor<(), String> for UsesStore {
    type OutKey = ();
    type OutValue = ();
    fn stores(&self) -> Vec<StoreSpec> {
        vec![self.0.clone()]
    }
    fn process_batch(
        &mut self,
        _: &[Record<(), String>],
        _: &mut Context<'_, (), ()>,
    ) -> Result<()> {
        Ok(())
    }
}

#[test]
fn two_declarations_of_a_store_must_agree() {
    let mut t = Topology::builder();
    let s = t.source::<(), String>("in");
    let _ = t.add(UsesStore(StoreSpec::new::<String, u64>("shared")), &s);
    let _ = t.add(UsesStore(StoreSpec::new::<String, String>("shared")), &s);
    let err = t.build().unwrap_err();
    assert!(
        matches!(err, TopologyError::StoreConflict { ref name, .. } if name == "shared"),
        "{err}"
    );
}

#[test]
fn processors_sharing_a_store_share_a_subtopology() -> Result<()> {
    let mut t = Topology::builder();
    let a = t.source::<(), String>("a");
    let b = t.source::<(), String>("b");
    let c = t.source::<(), String>("c");
    let _ = t.add(UsesStore(StoreSpec::new::<String, u64>("shared")), &a);
    let _ = t.add(UsesStore(StoreSpec::new::<String, u64>("shared")), &b);
    t.sink("c-out", &c);
    let topology = t.build()?;
    let subs = topology.subtopologies();
    assert_eq!(subs.len(), 2);
    assert_eq!(
        subs[0]
            .source_topics
            .iter()
            .map(|t| &**t)
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(
        subs[1]
            .source_topics
            .iter()
            .map(|t| &**t)
            .collect::<Vec<_>>(),
        ["c"]
    );
    Ok(())
}

#[test]
fn output_connected_nowhere_is_rejected() {
    let mut t = Topology::builder();
    let s = t.source::<String, String>("in");
    let _dangling = t.add_named("dangling", identity(), &s);
    let err = t.build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "processor `dangling` forwards `Record<alloc::string::String, alloc::string::String>` but nothing is connected to it: connect a processor or a sink to its stream, or make it forward nothing (output `()`, `()`)"
    );
}

#[test]
fn streams_of_another_builder_are_rejected() {
    let mut other = Topology::builder();
    let foreign = other.source::<String, String>("x");
    let mut t = Topology::builder();
    let _ = t.source::<String, String>("in");
    t.sink("out", &foreign);
    assert!(matches!(
        t.build().unwrap_err(),
        TopologyError::ForeignStream(_)
    ));
}

#[test]
fn describe_as_text_and_mermaid() -> Result<()> {
    let mut t = Topology::builder();
    let lines = t.source::<(), String>("lines");
    let counts = t.add(common::CountWords, &lines);
    t.sink("counts", &counts);
    let topology = t.build()?;
    assert_eq!(
        topology.describe(),
        "Topology\n  Sub-topology 0\n    Source: lines-source (topic: lines)\n      --> CountWords\n    Processor: CountWords (stores: [word-counts])\n      --> counts-sink\n      <-- lines-source\n    Sink: counts-sink (topic: counts)\n      <-- CountWords\n"
    );
    let m = topology.describe_mermaid();
    assert!(m.starts_with("flowchart LR\n"), "{m}");
    assert!(m.contains("topic_lines([\"lines\"])\n"), "{m}");
    assert!(m.contains("store_word_counts[(\"word-counts\")]"), "{m}");
    assert!(m.contains("node_CountWords --> node_counts_sink"), "{m}");
    Ok(())
}
