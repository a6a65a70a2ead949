//! The LMDB store on a 1,000,000-key store (16-byte keys, 100-byte values): one write transaction
//! per put (with and without fsync) vs `put_batch` of 100, 1,000 and 10,000 vs per-record puts in
//! one transaction; random `get` vs `get_batch`.
//!
//! Run: `cargo bench -p kstreams --no-default-features --bench lmdb_store`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kstreams::store::{LmdbOptions, StateStores, StoreSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const KEYS: u64 = 1_000_000;
const STORE: &str = "bench";

fn key(i: u64) -> Vec<u8> {
    // 16 bytes: a scrambled prefix (random placement in the B-tree) and the index.
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    k.extend_from_slice(&i.to_be_bytes());
    k
}

fn value(i: u64) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; 100];
    v[..8].copy_from_slice(&i.to_be_bytes());
    v
}

fn open_filled(dir: &std::path::Path) -> StateStores {
    let mut s = StateStores::open(
        dir,
        vec![StoreSpec::new::<Vec<u8>, Vec<u8>>(STORE)],
        &LmdbOptions::default(),
    )
    .expect("open");
    for chunk in 0..(KEYS / 10_000) {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = (chunk * 10_000..(chunk + 1) * 10_000)
            .map(|i| (key(i), value(i)))
            .collect();
        s.transaction(|txn| txn.store::<Vec<u8>, Vec<u8>>(STORE)?.put_batch(&entries))
            .expect("fill");
    }
    s.sync().expect("sync");
    s
}

fn random_entries(rng: &mut StdRng, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|_| {
            let i = rng.random_range(0..KEYS);
            (key(i), value(i + 1))
        })
        .collect()
}

fn writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open_filled(dir.path());
    let mut rng = StdRng::seed_from_u64(1);
    let mut g = c.benchmark_group("lmdb_put");
    g.sample_size(10);

    let n = 1_000;
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("txn_per_put", |b| {
        b.iter_batched(
            || random_entries(&mut rng, n),
            |entries| {
                for (k, v) in &entries {
                    s.transaction(|txn| txn.store::<Vec<u8>, Vec<u8>>(STORE)?.put(k, v))
                        .expect("put");
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });

    let n_sync = 200;
    g.throughput(Throughput::Elements(n_sync as u64));
    g.bench_function("txn_per_put_fsync", |b| {
        b.iter_batched(
            || random_entries(&mut rng, n_sync),
            |entries| {
                for (k, v) in &entries {
                    s.transaction(|txn| txn.store::<Vec<u8>, Vec<u8>>(STORE)?.put(k, v))
                        .expect("put");
                    s.sync().expect("sync");
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });

    g.throughput(Throughput::Elements(1_000));
    g.bench_function("puts_in_one_txn/1000", |b| {
        b.iter_batched(
            || random_entries(&mut rng, 1_000),
            |entries| {
                s.transaction(|txn| {
                    let mut store = txn.store::<Vec<u8>, Vec<u8>>(STORE)?;
                    for (k, v) in &entries {
                        store.put(k, v)?;
                    }
                    Ok(())
                })
                .expect("puts");
            },
            criterion::BatchSize::LargeInput,
        )
    });

    for batch in [100usize, 1_000, 10_000] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::new("put_batch", batch), &batch, |b, &batch| {
            b.iter_batched(
                || random_entries(&mut rng, batch),
                |entries| {
                    s.transaction(|txn| txn.store::<Vec<u8>, Vec<u8>>(STORE)?.put_batch(&entries))
                        .expect("put_batch");
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open_filled(dir.path());
    let mut rng = StdRng::seed_from_u64(2);
    let mut g = c.benchmark_group("lmdb_get");
    g.sample_size(10);
    let n = 1_000;
    g.throughput(Throughput::Elements(n as u64));
    let keys = |rng: &mut StdRng| -> Vec<Vec<u8>> {
        (0..n).map(|_| key(rng.random_range(0..KEYS))).collect()
    };
    g.bench_function("txn_per_get", |b| {
        b.iter_batched(
            || keys(&mut rng),
            |keys| {
                for k in &keys {
                    let v = s
                        .transaction(|txn| txn.store::<Vec<u8>, Vec<u8>>(STORE)?.get(k))
                        .expect("get");
                    assert!(v.is_some());
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.bench_function("gets_in_one_txn/1000", |b| {
        b.iter_batched(
            || keys(&mut rng),
            |keys| {
                s.transaction(|txn| {
                    let store = txn.store::<Vec<u8>, Vec<u8>>(STORE)?;
                    for k in &keys {
                        assert!(store.get(k)?.is_some());
                    }
                    Ok(())
                })
                .expect("gets");
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.bench_function("get_batch/1000", |b| {
        b.iter_batched(
            || keys(&mut rng),
            |keys| {
                let got = s
                    .transaction(|txn| txn.store::<Vec<u8>, Vec<u8>>(STORE)?.get_batch(&keys))
                    .expect("get_batch");
                assert_eq!(got.len(), keys.len());
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, writes, reads);
criterion_main!(benches);
