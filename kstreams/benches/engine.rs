//! The engine's ceiling without a broker (issue 17, part 2): pre-built [`RawRecord`]s pushed
//! through [`Task::process`], the very code the Kafka runtime runs per partition (deserialize at
//! the source, run the nodes over the batch, serialize at the sink, record the input position and
//! commit the state transaction), with LMDB state in a temporary directory.
//!
//! The two topologies are those of `bench/run` (`examples/examples/kafka_bench.rs`): **map** (the
//! value ASCII-upper-cased) and **count** (a count per key in an LMDB store with its changelog,
//! read and written once per batch). The input mirrors one task of the full harness run: 100-byte
//! values, keys `key-<i % 25,000>` (100,000 keys over 4 partitions). Each case is timed at batch
//! sizes 1, 100 and 1,000; one iteration is [`PASS`] records. Criterion reports records/s
//! (`Throughput::Elements`) on one core: the broker-bound figures of `bench/run` are the other
//! side of the comparison.
//!
//! What a task returns (`TaskOutput`: the serialized output and changelog records) is dropped
//! inside the timed loop, as the runtime drops it once handed to the producer; the producer's own
//! cost (librdkafka) is not part of this figure.
//!
//! **chain-1** and **chain-5** measure what the type erasure between nodes costs (issue 13 §5): 1
//! and 5 pass-through map nodes over records whose copy allocates nothing, at batch sizes 1 and
//! 1,000. Every node boundary is one call through `Box<dyn NodeRun>` and one `&dyn Any` downcast
//! of the batch (plus a `Context` and the node's reused output `Vec`), so `(chain-5 - chain-1) / 4`
//! is the cost of one node: at batch size 1 per batch (of one record), at 1,000 almost all per
//! record. The factory closures run once per task when it opens, never per batch, so no case
//! times them.
//!
//! Measured 2026-12-01 on the shared 2-core dev machine (load 2-4 from other work), release build:
//! - Wall time is too noisy here for a difference of this size: over four runs, chain-5/1 minus
//!   chain-1/1 came out between -18% and +114% of chain-1/1 (8-18 ms a pass). At batch size
//!   1,000, `(chain-5 - chain-1) / 4` was 7-60 ns per record per node.
//! - Instructions inside `Task::process` (callgrind, `--toggle-collect=kstreams::task::Task::process`
//!   on `--bench '^chain-1/1$' --profile-time 2`, instructions / calls): chain-1/1 6,647 and
//!   chain-5/1 8,179 a batch, so 383 a node per batch of one record; chain-1/1000 2,168,265 and
//!   chain-5/1000 2,670,130, so 125 a node per record. A node's fixed cost per batch is thus
//!   about 260 instructions (`Exec::run` taking the node out and back, the call through
//!   `dyn NodeRun`, the `Context`, `deliver` to the children); the `&dyn Any` downcast itself (a
//!   virtual `type_id` call and a compare: the `core::any` lines of chain-5/1, 3.9 M instructions
//!   over 350,000 downcasts) is 11. That is 0.2% of a one-record batch's 6,647, and nothing
//!   measurable at 1,000 (11 of the node's 125,000).
//!
//! Run: `cargo bench -p kstreams --no-default-features --bench engine` (about 45 s: 10 cases of
//! 10 samples, 3 s of measurement each). Filter with e.g. `-- count/1000` or `-- chain`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kstreams::record::RawRecord;
use kstreams::task::{Task, TaskConfig, TaskId};
use kstreams::{BatchProcessor, Context, Headers, Record, StoreSpec, Topology, processor};

/// Records per timed iteration (a multiple of every batch size).
const PASS: usize = 10_000;
/// Distinct keys of one task: 100,000 keys of the harness over its 4 partitions.
const KEYS: usize = 25_000;
/// The harness's value size.
const VALUE_BYTES: usize = 100;
const INPUT: &str = "input";
const OUTPUT: &str = "output";
const BATCHES: [usize; 3] = [1, 100, 1_000];

/// The count of `examples/examples/kafka_bench.rs` (a bench cannot depend on the examples
/// crate): one `get_batch` and one `put_batch` per batch, one output record per input record.
#[derive(Debug, Clone, Default)]
struct CountPerKey;

impl BatchProcessor<String, String> for CountPerKey {
    type OutKey = String;
    type OutValue = u64;
    fn stores(&self) -> Vec<StoreSpec> {
        vec![StoreSpec::new::<String, u64>("counts")]
    }
    fn process_batch(
        &mut self,
        records: &[Record<String, String>],
        ctx: &mut Context<'_, String, u64>,
    ) -> kstreams::Result<()> {
        let mut store = ctx.store::<String, u64>("counts")?;
        let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut keys: Vec<String> = Vec::new();
        let mut which = Vec::with_capacity(records.len());
        for r in records {
            let next = keys.len();
            let i = *index.entry(r.key.as_str()).or_insert_with(|| {
                keys.push(r.key.clone());
                next
            });
            which.push(i);
        }
        let mut counts: Vec<u64> = store
            .get_batch(&keys)?
            .into_iter()
            .map(|c| c.unwrap_or(0))
            .collect();
        for (r, i) in records.iter().zip(which) {
            counts[i] += 1;
            ctx.forward(r.derive(keys[i].clone(), counts[i]));
        }
        let entries: Vec<(String, u64)> = keys.into_iter().zip(counts).collect();
        store.put_batch(&entries)
    }
}

fn map_topology() -> Topology {
    let mut t = Topology::builder();
    let s = t.source::<String, String>(INPUT);
    let m = t.add(
        processor::map(|r: &Record<String, String>| {
            r.derive(r.key.clone(), r.value.to_ascii_uppercase())
        }),
        &s,
    );
    t.sink(OUTPUT, &m);
    t.build().expect("the map topology builds")
}

/// A chain of `nodes` pass-through maps between the source and the sink, over records whose
/// clone allocates nothing (`u64` key and value, no headers: a node costs its dispatch, not a
/// copy of 100-byte strings). A first map turns the `String`s into their lengths.
fn chain_topology(nodes: usize) -> Topology {
    let mut t = Topology::builder();
    let s = t.source::<String, String>(INPUT);
    let mut s = t.add(
        processor::map(|r: &Record<String, String>| {
            r.derive(r.key.len() as u64, r.value.len() as u64)
        }),
        &s,
    );
    for _ in 0..nodes {
        s = t.add(
            processor::map(|r: &Record<u64, u64>| r.derive(r.key, r.value)),
            &s,
        );
    }
    t.sink(OUTPUT, &s);
    t.build().expect("the chain topology builds")
}

fn count_topology() -> Topology {
    let mut t = Topology::builder();
    let s = t.source::<String, String>(INPUT);
    let c = t.add(CountPerKey, &s);
    t.sink(OUTPUT, &c);
    t.build().expect("the count topology builds")
}

/// The serialized input: (key, value) bytes of `PASS` records.
fn input() -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..PASS)
        .map(|i| {
            let key = format!("key-{}", i % KEYS).into_bytes();
            let mut value = format!("value-{i:08}-").into_bytes();
            value.resize(VALUE_BYTES, b'x');
            (key, value)
        })
        .collect()
}

/// Pushes the pass through the task `batch` records at a time. Offsets keep growing across
/// passes, as they would on a partition.
fn run_pass(task: &mut Task, input: &[(Vec<u8>, Vec<u8>)], batch: usize, next_offset: &mut i64) {
    for chunk in input.chunks(batch) {
        let raw: Vec<RawRecord<'_>> = chunk
            .iter()
            .enumerate()
            .map(|(i, (k, v))| RawRecord {
                key: Some(k),
                value: Some(v),
                timestamp: 1_700_000_000_000 + *next_offset + i as i64,
                offset: *next_offset + i as i64,
                headers: Headers::new(),
            })
            .collect();
        *next_offset += chunk.len() as i64;
        let out = task
            .process(INPUT, 0, &raw, 0)
            .expect("the bench's own records process");
        std::hint::black_box(out);
    }
}

fn engine(c: &mut Criterion) {
    let input = input();
    // (group, topology, batch sizes, whether a first pass warms the task before timing)
    let cases = [
        ("map", map_topology(), &BATCHES[..], true),
        ("count", count_topology(), &BATCHES[..], true),
        // No store to warm; and with no warm-up pass, every `Task::process` call of a profile
        // (callgrind) is a timed one of the case's batch size.
        ("chain-1", chain_topology(1), &[1, 1_000][..], false),
        ("chain-5", chain_topology(5), &[1, 1_000][..], false),
    ];
    for (name, topology, batches, warm) in cases {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(PASS as u64));
        for &batch in batches {
            // Set up on the first call only, so a filtered-out case costs nothing (and a profile
            // of one case holds that case alone, plus its one warm-up pass).
            let mut state: Option<(tempfile::TempDir, Task, i64)> = None;
            group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
                let (_dir, task, offset) = state.get_or_insert_with(|| {
                    let dir = tempfile::tempdir().expect("a temporary directory");
                    let config = Arc::new(TaskConfig::new("engine-bench", dir.path()));
                    let id = TaskId {
                        subtopology: 0,
                        partition: 0,
                    };
                    let mut task =
                        Task::new(&topology, id, config).expect("the task opens its stores");
                    let mut offset = 0_i64;
                    if warm {
                        // Warm the store: every key present, as in a long run.
                        run_pass(&mut task, &input, 1_000, &mut offset);
                    }
                    (dir, task, offset)
                });
                b.iter(|| run_pass(task, &input, batch, offset))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = engine
}
criterion_main!(benches);
