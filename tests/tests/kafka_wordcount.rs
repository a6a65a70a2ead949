//! Word count and pass-through against the real broker: counts, order, partitioning, Java interop.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::App;
use kstreams::partitioner::partition_for_key;
use kstreams::{Record, Topology, processor};
use kstreams_tests::*;

const DONE: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_over_four_partitions_equals_an_independent_count() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "wc-count", 4).await;
    let lines = sample_lines(1, 3000);
    produce_lines(&b, &t.input, 4, &lines);
    let state = tempfile::tempdir().expect("tempdir");
    let app = Arc::new(App::new(t.topology(), config(&t.app_id, &b, state.path())).expect("app"));
    let run = spawn(app.clone());
    t.wait_done(&b, DONE).await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");

    let want = independent_count(&lines);
    let out = read_all(&b, &t.output, 4);
    assert_eq!(last_counts(&out), want);
    // One output per word occurrence, no duplicates: every word's counts are 1, 2, 3, ... in
    // offset order within its partition, and the partition is murmur2's.
    assert_eq!(out.len() as u64, want.values().sum::<u64>());
    let mut last: HashMap<Vec<u8>, u64> = HashMap::new();
    for (p, o, k, v) in &out {
        let k = k.clone().expect("key");
        assert_eq!(*p, partition_for_key(&k, 4), "partition of {k:?}");
        let v = u64::from_be_bytes(v.as_deref().and_then(|v| v.try_into().ok()).expect("u64"));
        let prev = last.insert(k.clone(), v).unwrap_or(0);
        assert_eq!(v, prev + 1, "count of {k:?} at partition {p} offset {o}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_of_each_partition_come_in_input_offset_order() {
    let b = bootstrap();
    let id = unique("order");
    let (input, output) = (format!("{id}-in"), format!("{id}-out"));
    create_topics(&b, &[(&input, 4), (&output, 4)]).await;
    let records: Vec<Input> = (0..4000)
        .map(|i| {
            (
                Some(format!("key-{}", i % 97).into_bytes()),
                format!("v{i}").into_bytes(),
                None,
            )
        })
        .collect();
    produce(&b, &input, &records);
    let mut t = Topology::builder();
    let s = t.source::<String, String>(&input);
    let m = t.add(
        processor::map(|r: &Record<String, String>| {
            r.derive(r.key.clone(), r.origin.as_ref().map_or(-1, |o| o.offset))
        }),
        &s,
    );
    t.sink(&output, &m);
    let state = tempfile::tempdir().expect("tempdir");
    let app = Arc::new(
        App::new(
            t.build().expect("topology"),
            config(&id, &b, state.path()).batch_max_records(333),
        )
        .expect("app"),
    );
    let run = spawn(app.clone());
    let ends = end_offsets(&b, &input, 4);
    wait_for("input committed", DONE, || {
        committed_to(&app.status(), &ends)
    })
    .await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");

    let inputs = read_all(&b, &input, 4);
    let outputs = read_all(&b, &output, 4);
    for p in 0..4 {
        let want: Vec<(Option<Vec<u8>>, i64)> = inputs
            .iter()
            .filter(|r| r.0 == p)
            .map(|(_, o, k, _)| (k.clone(), *o))
            .collect();
        let got: Vec<(Option<Vec<u8>>, i64)> = outputs
            .iter()
            .filter(|r| r.0 == p)
            .map(|(_, _, k, v)| {
                let v = v.as_deref().and_then(|v| v.try_into().ok()).expect("i64");
                (k.clone(), i64::from_be_bytes(v))
            })
            .collect();
        assert!(!want.is_empty());
        assert_eq!(got, want, "partition {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_java_consumer_reads_our_output_in_murmur2_partitions() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "wc-java", 3).await;
    let lines = sample_lines(7, 200);
    produce_lines(&b, &t.input, 3, &lines);
    let state = tempfile::tempdir().expect("tempdir");
    let app = Arc::new(App::new(t.topology(), config(&t.app_id, &b, state.path())).expect("app"));
    let run = spawn(app.clone());
    t.wait_done(&b, DONE).await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");

    let want = independent_count(&lines);
    let total: u64 = want.values().sum();
    let script = repo_root().join("scripts/kafka/kafka");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(script)
            .args(["console-consumer", "--topic", &t.output, "--from-beginning"])
            .args([
                "--timeout-ms",
                "20000",
                "--max-messages",
                &total.to_string(),
            ])
            .args([
                "--property",
                "print.key=true",
                "--property",
                "print.partition=true",
            ])
            .args([
                "--property",
                "value.deserializer=org.apache.kafka.common.serialization.LongDeserializer",
            ])
            .output()
    })
    .await
    .expect("join")
    .expect("console consumer");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut finals: HashMap<String, u64> = HashMap::new();
    let mut n = 0u64;
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let partition: i32 = fields
            .iter()
            .find_map(|f| f.strip_prefix("Partition:"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no partition in `{line}`"));
        let [.., key, value] = fields.as_slice() else {
            panic!("bad line `{line}`");
        };
        assert_eq!(
            partition,
            partition_for_key(key.as_bytes(), 3),
            "key `{key}`"
        );
        let value: u64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in `{line}`"));
        let e = finals.entry((*key).to_owned()).or_insert(0);
        *e = (*e).max(value);
        n += 1;
    }
    assert_eq!(n, total, "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let want: HashMap<String, u64> = want.into_iter().collect();
    assert_eq!(finals, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_values_timestamps_and_headers_survive_the_runtime() {
    let b = bootstrap();
    let id = unique("meta");
    let (input, output) = (format!("{id}-in"), format!("{id}-out"));
    create_topics(&b, &[(&input, 3), (&output, 3)]).await;
    // Near now: a broker deletes records older than its retention (7 days) at its next check.
    let base = now_ms() - 600_000;
    let records: Vec<(Vec<u8>, Vec<u8>, i32, i64, Vec<u8>)> = (0..1000)
        .map(|i| {
            (
                format!("k{}", i % 50).into_bytes(),
                format!("value {i}").into_bytes(),
                i % 3,
                base + i64::from(i),
                format!("header {i}").into_bytes(),
            )
        })
        .collect();
    produce_with_metadata(&b, &input, &records);
    let mut t = Topology::builder();
    let s = t.source::<String, String>(&input);
    let m = t.add(processor::map(|r: &Record<String, String>| r.clone()), &s);
    t.sink(&output, &m);
    let state = tempfile::tempdir().expect("tempdir");
    let app = Arc::new(
        App::new(
            t.build().expect("topology"),
            config(&id, &b, state.path()).batch_max_records(100),
        )
        .expect("app"),
    );
    let run = spawn(app.clone());
    let ends = end_offsets(&b, &input, 3);
    wait_for("input committed", DONE, || {
        committed_to(&app.status(), &ends)
    })
    .await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");

    let mut got: Vec<(Vec<u8>, Vec<u8>, i64, Vec<u8>)> = Vec::new();
    for (p, _, k, v, ts, headers) in read_all_full(&b, &output, 3) {
        let k = k.expect("key");
        assert_eq!(p, partition_for_key(&k, 3), "murmur2 partition of {k:?}");
        let [(name, Some(h))] = headers.as_slice() else {
            panic!("headers {headers:?}");
        };
        assert_eq!(name, "h");
        got.push((k, v.expect("value"), ts, h.clone()));
    }
    let mut want: Vec<(Vec<u8>, Vec<u8>, i64, Vec<u8>)> = records
        .into_iter()
        .map(|(k, v, _, ts, h)| (k, v, ts, h))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}
