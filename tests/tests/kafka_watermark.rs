//! Invariant 3 without draining: an interval commit commits each input partition only up to its
//! watermark, the first offset whose outputs are not all acknowledged, and processing goes on
//! meanwhile. One output topic of the app has no partition leader for a while (librdkafka's mock
//! cluster, `rd_kafka_mock_partition_set_leader(.., -1)`: a real single-broker cluster cannot
//! hold a delivery back without failing it; `min.insync.replicas` above the replication factor
//! is capped to it by Kafka 4), so the one record routed to it stays in flight. Meanwhile the app
//! keeps processing and producing the records after it to its other output topic, and keeps
//! committing, but the group's committed offset stays at the held record's offset: one past it
//! would lose that output if the app died now. Once the partition has a leader again, the
//! delivery succeeds and the committed offset catches up. (Draining at every commit instead
//! stalls processing while the record is held: the test fails on the outputs that never come;
//! committing what is processed fails it on the offset.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::{App, AppStatus};
use kstreams::{Record, Topology, processor};
use kstreams_tests::*;
use rdkafka::Offset;
use rdkafka::mocking::MockCluster;

const WAIT: Duration = Duration::from_secs(60);
/// The input offset whose output is held back.
const HELD: i64 = 10;

fn input(from: i64, to: i64) -> Vec<Input> {
    (from..to)
        .map(|i| {
            let v = if i == HELD { "hold" } else { "go" };
            (
                Some(format!("k{i}").into_bytes()),
                v.as_bytes().to_vec(),
                Some(0),
            )
        })
        .collect()
}

/// The offset the group committed for partition 0 of `topic` (`None`: nothing yet).
fn group_committed(bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    let committed =
        group_committed_offsets(bootstrap, group, [(topic, 0)]).expect("committed offsets");
    match committed.find_partition(topic, 0).map(|e| e.offset()) {
        Some(Offset::Offset(o)) => Some(o),
        _ => None,
    }
}

fn status_committed(status: &AppStatus, topic: &str) -> Option<i64> {
    status.committed.get(&(topic.to_owned(), 0)).copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_is_never_committed_past_an_unacknowledged_output_and_processing_goes_on() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let b = cluster.bootstrap_servers();
    let app_id = unique("watermark");
    let (inp, out, held) = (
        format!("{app_id}-in"),
        format!("{app_id}-out"),
        format!("{app_id}-held"),
    );
    for t in [&inp, &out, &held] {
        cluster.create_topic(t, 1, 1).expect("topic");
    }
    let mut tb = Topology::builder();
    let s = tb.source::<String, String>(&inp);
    let go = tb.add(
        processor::filter(|r: &Record<String, String>| r.value != "hold"),
        &s,
    );
    let hold = tb.add(
        processor::filter(|r: &Record<String, String>| r.value == "hold"),
        &s,
    );
    tb.sink(&out, &go);
    tb.sink(&held, &hold);
    let state = tempfile::tempdir().expect("state dir");
    let app = Arc::new(
        App::new(
            tb.build().expect("topology"),
            config(&app_id, &b, state.path()).delivery_timeout(Duration::from_secs(120)),
        )
        .expect("app"),
    );
    let run = spawn(app.clone());

    // 1. Nothing held: the input is committed to its end.
    produce(&b, &inp, &input(0, HELD));
    wait_for("the first records committed", WAIT, || {
        status_committed(&app.status(), &inp) == Some(HELD)
    })
    .await;

    // 2. The record at `HELD` goes to the topic that has no leader; the ones after it go on.
    cluster
        .partition_leader(&held, 0, None)
        .expect("leaderless");
    produce(&b, &inp, &input(HELD, 20));
    wait_for("the outputs after the held one", WAIT, || {
        read_all(&b, &out, 1).len() == 19
    })
    .await;
    let commits = app.status().commits;
    wait_for("more commits while the output is held", WAIT, || {
        app.status().commits >= commits + 5
    })
    .await;
    assert_eq!(status_committed(&app.status(), &inp), Some(HELD));
    assert_eq!(group_committed(&b, &app_id, &inp), Some(HELD));

    // 3. Processing goes on while it is held, and still nothing past it is committed.
    produce(&b, &inp, &input(20, 40));
    wait_for("the outputs of the input produced meanwhile", WAIT, || {
        read_all(&b, &out, 1).len() == 39
    })
    .await;
    let status = app.status();
    assert_eq!(status.processed_records, 40, "{status:?}");
    assert_eq!(status_committed(&status, &inp), Some(HELD), "{status:?}");
    assert_eq!(group_committed(&b, &app_id, &inp), Some(HELD));

    // 4. The partition has a leader again: the delivery succeeds and the commits catch up.
    cluster
        .partition_leader(&held, 0, Some(1))
        .expect("leader back");
    let ends: BTreeMap<(String, i32), i64> = [((inp.clone(), 0), 40)].into();
    wait_for("the input committed to its end", WAIT, || {
        group_committed_to(&b, &app_id, &ends)
    })
    .await;
    let delivered = read_all(&b, &held, 1);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0].2.as_deref(), Some(&b"k10"[..]));
    assert_eq!(read_all(&b, &out, 1).len(), 39);

    app.shutdown_handle().shutdown();
    tokio::time::timeout(WAIT, run)
        .await
        .expect("stops")
        .expect("joins")
        .expect("no error");
}
