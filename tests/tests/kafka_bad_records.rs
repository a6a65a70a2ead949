//! Malformed records on a real broker (invalid UTF-8 keys, integers of the wrong length, truncated
//! JSON): with `fail` the app stops with an error naming the record; with dead-letter every bad
//! record is in the dead-letter topic with its origin in headers and every good record is
//! processed.

use std::sync::Arc;
use std::time::Duration;

use kstreams::OnBadRecord;
use kstreams::kafka::App;
use kstreams::serde::{Json, StringSerde};
use kstreams::{Record, Topology, processor};
use kstreams_tests::*;

const DONE: Duration = Duration::from_secs(120);

struct Topics {
    app_id: String,
    nums: String,
    jsons: String,
    nums_out: String,
    jsons_out: String,
    dlq: String,
}

async fn setup(prefix: &str) -> (String, Topics) {
    let b = bootstrap();
    let app_id = unique(prefix);
    let t = Topics {
        nums: format!("{app_id}-nums"),
        jsons: format!("{app_id}-jsons"),
        nums_out: format!("{app_id}-nums-out"),
        jsons_out: format!("{app_id}-jsons-out"),
        dlq: format!("{app_id}-dlq"),
        app_id,
    };
    create_topics(
        &b,
        &[
            (&t.nums, 1),
            (&t.jsons, 1),
            (&t.nums_out, 1),
            (&t.jsons_out, 1),
            (&t.dlq, 1),
        ],
    )
    .await;
    let k = |s: &str| Some(s.as_bytes().to_vec());
    produce(
        &b,
        &t.nums,
        &[
            (k("a"), 1u64.to_be_bytes().to_vec(), Some(0)),
            (Some(vec![0xff, 0xfe]), 2u64.to_be_bytes().to_vec(), Some(0)),
            (k("b"), 3u64.to_be_bytes().to_vec(), Some(0)),
            (k("c"), vec![1, 2, 3], Some(0)),
            (k("d"), 5u64.to_be_bytes().to_vec(), Some(0)),
        ],
    );
    produce(
        &b,
        &t.jsons,
        &[
            (k("x"), b"[1,2]".to_vec(), Some(0)),
            (k("y"), b"[1,2".to_vec(), Some(0)),
            (k("z"), b"[3]".to_vec(), Some(0)),
        ],
    );
    (b, t)
}

fn topology(t: &Topics) -> Topology {
    let mut tb = Topology::builder();
    let nums = tb.source::<String, u64>(&t.nums);
    tb.sink(&t.nums_out, &nums);
    let jsons = tb.source_with::<String, Vec<u64>>(&t.jsons, StringSerde, Json::<Vec<u64>>::new());
    let sums = tb.add(
        processor::map(|r: &Record<String, Vec<u64>>| {
            r.derive(r.key.clone(), r.value.iter().sum::<u64>())
        }),
        &jsons,
    );
    tb.sink(&t.jsons_out, &sums);
    tb.build().expect("topology")
}

fn header<'a>(h: &'a [(String, Option<Vec<u8>>)], name: &str) -> &'a str {
    h.iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or_else(|| panic!("header {name} missing in {h:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_go_to_the_dead_letter_topic_and_good_ones_are_processed() {
    let (b, t) = setup("dlq").await;
    let state = tempfile::tempdir().expect("tempdir");
    let config =
        config(&t.app_id, &b, state.path()).on_deserialization_error(OnBadRecord::DeadLetter {
            topic: t.dlq.clone(),
        });
    let app = Arc::new(App::new(topology(&t), config).expect("app"));
    let run = spawn(app.clone());
    let ends = [end_offsets(&b, &t.nums, 1), end_offsets(&b, &t.jsons, 1)];
    wait_for("inputs committed", DONE, || {
        ends.iter().all(|e| group_committed_to(&b, &t.app_id, e))
    })
    .await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");

    let kv = |out: Vec<Output>| -> Vec<(String, u64)> {
        out.into_iter()
            .map(|(_, _, k, v)| {
                let k = String::from_utf8(k.unwrap_or_default()).expect("key");
                let v = v.as_deref().and_then(|v| <[u8; 8]>::try_from(v).ok());
                (k, u64::from_be_bytes(v.expect("u64")))
            })
            .collect()
    };
    assert_eq!(
        kv(read_all(&b, &t.nums_out, 1)),
        [("a".into(), 1), ("b".into(), 3), ("d".into(), 5)]
    );
    assert_eq!(
        kv(read_all(&b, &t.jsons_out, 1)),
        [("x".into(), 3), ("z".into(), 3)]
    );
    let dlq = read_all_full(&b, &t.dlq, 1);
    assert_eq!(dlq.len(), 3, "every bad record dead-lettered: {dlq:?}");
    let mut got: Vec<(String, String, Option<Vec<u8>>, Option<Vec<u8>>)> = dlq
        .iter()
        .map(|(_, _, k, v, _, h)| {
            assert_eq!(header(h, "kstreams.error.partition"), "0");
            assert!(!header(h, "kstreams.error.stage").is_empty());
            assert!(!header(h, "kstreams.error.message").is_empty());
            (
                header(h, "kstreams.error.topic").to_owned(),
                header(h, "kstreams.error.offset").to_owned(),
                k.clone(),
                v.clone(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (
            t.nums.clone(),
            "1".to_owned(),
            Some(vec![0xff, 0xfe]),
            Some(2u64.to_be_bytes().to_vec()),
        ),
        (
            t.nums.clone(),
            "3".to_owned(),
            Some(b"c".to_vec()),
            Some(vec![1, 2, 3]),
        ),
        (
            t.jsons.clone(),
            "1".to_owned(),
            Some(b"y".to_vec()),
            Some(b"[1,2".to_vec()),
        ),
    ];
    want.sort();
    assert_eq!(got, want, "original bytes and origin headers");
    let s = app.status();
    assert_eq!(s.processed_records, 8, "every input record was handled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fail_the_error_names_the_bad_record() {
    let (b, t) = setup("bad-fail").await;
    let state = tempfile::tempdir().expect("tempdir");
    let config = config(&t.app_id, &b, state.path()).on_deserialization_error(OnBadRecord::Fail);
    let app = App::new(topology(&t), config).expect("app");
    let err = tokio::time::timeout(DONE, app.run())
        .await
        .expect("the app stops by itself")
        .expect_err("a bad record fails the app")
        .to_string();
    // Which bad record comes first depends on which partition is polled first.
    let nums = format!("topic `{}` partition 0 offset 1", t.nums);
    let jsons = format!("topic `{}` partition 0 offset 1", t.jsons);
    assert!(
        err.contains(&nums) || err.contains(&jsons),
        "the error names the record: {err}"
    );
    assert!(err.contains("deserialize"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_source_overrides_dead_letter_one_topic_and_skip_the_other() {
    let (b, t) = setup("bad-per-source").await;
    let state = tempfile::tempdir().expect("tempdir");
    let config = config(&t.app_id, &b, state.path())
        .on_deserialization_error(OnBadRecord::Fail)
        .on_deserialization_error_for(
            t.nums.clone(),
            OnBadRecord::DeadLetter {
                topic: t.dlq.clone(),
            },
        )
        .on_deserialization_error_for(t.jsons.clone(), OnBadRecord::Skip);
    let app = Arc::new(App::new(topology(&t), config).expect("app"));
    let run = spawn(app.clone());
    let ends = [end_offsets(&b, &t.nums, 1), end_offsets(&b, &t.jsons, 1)];
    wait_for("inputs committed", DONE, || {
        assert!(!run.is_finished(), "the app stopped: {:?}", app.status());
        ends.iter().all(|e| group_committed_to(&b, &t.app_id, e))
    })
    .await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
    assert_eq!(read_all(&b, &t.nums_out, 1).len(), 3, "a, b, d");
    assert_eq!(read_all(&b, &t.jsons_out, 1).len(), 2, "x, z");
    // Only the bad records of `nums` are dead-lettered; the bad JSON is skipped.
    let dlq = read_all_full(&b, &t.dlq, 1);
    let origins: Vec<(String, String)> = dlq
        .iter()
        .map(|(_, _, _, _, _, h)| {
            (
                header(h, "kstreams.error.topic").to_owned(),
                header(h, "kstreams.error.offset").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        origins,
        [
            (t.nums.clone(), "1".to_owned()),
            (t.nums.clone(), "3".to_owned())
        ]
    );
    let s = app.status();
    assert_eq!(s.dead_lettered_records, 2, "{s:?}");
    assert_eq!(s.skipped_records, 1, "{s:?}");
    assert_eq!(s.processed_records, 8, "{s:?}");
}
