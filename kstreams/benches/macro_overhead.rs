//! The cost of `#[batch_processor]`: the same counting logic as a macro-generated processor and
//! as a hand-written `impl BatchProcessor`, through the test driver, on 1,000,000 records cut into
//! batches of 1,000, with in-memory state (no changelog, so that the store and the processor are
//! what is measured, not the driver's copy of changelog records).
//!
//! Only `TopologyTestDriver::process` is timed: the input is appended (serialized) in the
//! untimed setup, and the driver is dropped outside the measurement.
//!
//! Run: `cargo bench -p kstreams --no-default-features --bench macro_overhead`.

use std::collections::HashMap;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use kstreams::testing::{Batching, TopologyTestDriver};
use kstreams::{
    BatchProcessor, Context, Emit, Headers, KeyValueStore, Record, StoreSpec, Topology,
    batch_processor, store,
};

const RECORDS: usize = 1_000_000;
const WORDS: usize = 10_000;
const BATCH: usize = 1_000;
const STORE: &str = "counts";

/// The logic both processors run: a running count per word, read and written once per batch.
fn count(
    lines: &[Record<(), String>],
    counts: &KeyValueStore<'_, String, u64>,
    out: &mut Context<'_, String, u64>,
) -> kstreams::Result<()> {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(lines.len());
    let mut keys: Vec<String> = Vec::new();
    for l in lines {
        index.entry(l.value.as_str()).or_insert_with(|| {
            keys.push(l.value.clone());
            keys.len() - 1
        });
    }
    let mut totals: Vec<u64> = counts
        .get_batch(&keys)?
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    for l in lines {
        let i = index[l.value.as_str()];
        totals[i] += 1;
        out.forward(l.derive(l.value.clone(), totals[i]));
    }
    let updates: Vec<(String, u64)> = keys.into_iter().zip(totals).collect();
    counts.put_batch(&updates)
}

#[store(name = "counts", changelog = false)]
type Counts = kstreams::KeyValue<String, u64>;

#[batch_processor]
fn macro_count(
    lines: &[Record<(), String>],
    counts: &mut Counts,
    out: &mut Emit<String, u64>,
) -> kstreams::Result<()> {
    count(lines, counts, out)
}

#[derive(Debug, Clone, Copy)]
struct HandCount;

impl BatchProcessor<(), String> for HandCount {
    type OutKey = String;
    type OutValue = u64;

    fn stores(&self) -> Vec<StoreSpec> {
        vec![StoreSpec::new::<String, u64>(STORE).changelog(false)]
    }

    fn process_batch(
        &mut self,
        lines: &[Record<(), String>],
        ctx: &mut Context<'_, String, u64>,
    ) -> kstreams::Result<()> {
        let counts = ctx.store::<String, u64>(STORE)?;
        count(lines, &counts, ctx)
    }
}

fn topology<P: BatchProcessor<(), String, OutKey = String, OutValue = u64> + Clone>(
    p: P,
) -> Topology {
    let mut t = Topology::builder();
    let lines = t.source::<(), String>("lines");
    let counts = t.add(p, &lines);
    t.sink("counts", &counts);
    t.build().expect("valid topology")
}

/// A driver with the input appended but not processed yet.
fn loaded(topology: &Topology) -> TopologyTestDriver {
    let mut d = TopologyTestDriver::builder(topology.clone())
        .in_memory_state()
        .batching(Batching::Max(BATCH))
        .build()
        .expect("driver");
    for i in 0..RECORDS {
        let word = format!("w{:05}", (i * 7919) % WORDS);
        d.append_raw(
            "lines",
            Some(0),
            None,
            Some(word.into_bytes()),
            i as i64,
            Headers::new(),
        )
        .expect("append");
    }
    d
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("count 1M records, batches of 1000, in-memory store");
    g.sample_size(10);
    for (name, topology) in [
        ("hand-written impl BatchProcessor", topology(HandCount)),
        ("#[batch_processor]", topology(macro_count)),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || loaded(&topology),
                |mut d| {
                    d.process().expect("process");
                    d
                },
                BatchSize::PerIteration,
            );
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
