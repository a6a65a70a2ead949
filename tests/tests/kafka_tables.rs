//! Issue 15 §1 and §4, real broker: tables in the Kafka runtime.
//!
//! - A table whose topic is its changelog (`tests/src/tables.rs`: orders enriched with the current
//!   price of their key), SIGKILLed mid-stream under exactly-once and restarted, with and without
//!   its state directory: its store is restored from the table topic up to the group's committed
//!   offset, not to the topic's end (table updates produced while it was down, timestamped after
//!   every order, must not reach the orders processed again), and the committed output holds every
//!   order once with the price it had.
//! - A clean restart restores nothing: the state's position is recorded.
//! - A global table restored before processing (an entry produced before the app started is
//!   found by the first stream record) and kept up to date (an update is found by later records).
//! - A repartition topic created at start-up with its partition count, and used.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::App;
use kstreams_tests::*;

const EXE: &str = env!("CARGO_BIN_EXE_table_app");
const DONE: Duration = Duration::from_secs(180);
const PARTITIONS: i32 = 3;
const KEYS: usize = 30;
const ORDERS: usize = 3_000;

/// Timestamps near the present (a broker deletes segments whose records look too old).
fn base() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
            - 600_000
    })
}

fn key(k: usize) -> String {
    format!("k{k}")
}

/// A record of key `k` (on partition `k % PARTITIONS` of every topic: co-partitioned).
fn rec(k: usize, value: &str, ts: i64) -> (Vec<u8>, Vec<u8>, i32, i64, Vec<u8>) {
    (
        key(k).into_bytes(),
        value.as_bytes().to_vec(),
        (k % PARTITIONS as usize) as i32,
        ts,
        Vec::new(),
    )
}

/// Version `v` of every key's price, timestamped `ts`.
fn prices(v: u32, ts: i64) -> Vec<(Vec<u8>, Vec<u8>, i32, i64, Vec<u8>)> {
    (0..KEYS)
        .map(|k| rec(k, &format!("p{v}-{k}"), ts))
        .collect()
}

/// Order `i`: key `k<i % KEYS>`, value `o<i>`, after the first prices, before the second.
fn order(i: usize) -> (Vec<u8>, Vec<u8>, i32, i64, Vec<u8>) {
    rec(i % KEYS, &format!("o{i}"), base() + 1_000 + i as i64)
}

/// The partition count of `topic` in the cluster's metadata (`None`: it does not exist).
fn partition_count(bootstrap: &str, topic: &str) -> Option<usize> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    md.topics()
        .first()
        .filter(|t| t.error().is_none())
        .map(|t| t.partitions().len())
}

struct Topics {
    app_id: String,
    table: String,
    orders: String,
    output: String,
}

async fn topics(prefix: &str) -> Topics {
    let app_id = unique(prefix);
    let t = Topics {
        table: format!("{app_id}-prices"),
        orders: format!("{app_id}-orders"),
        output: format!("{app_id}-output"),
        app_id,
    };
    create_topics(
        &bootstrap(),
        &[
            (&t.table, PARTITIONS),
            (&t.orders, PARTITIONS),
            (&t.output, PARTITIONS),
        ],
    )
    .await;
    t
}

/// Starts `table_app` (killed when dropped).
fn start(t: &Topics, state: &std::path::Path, guarantee: &str, batch: usize) -> AppProcess {
    let (b, state, batch) = (bootstrap(), state.display().to_string(), batch.to_string());
    let child = std::process::Command::new(EXE)
        .args([
            &b, &t.app_id, &t.table, &t.orders, &t.output, &state, guarantee, &batch,
        ])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start table_app");
    AppProcess(child)
}

/// The committed output as (order, price), each order's value `o<i>|<price>`.
fn enriched(t: &Topics) -> Vec<(String, String)> {
    read_all_committed(&bootstrap(), &t.output, PARTITIONS)
        .into_iter()
        .map(|(p, o, _, v)| {
            let v =
                String::from_utf8(v.unwrap_or_else(|| panic!("{p}/{o}: no value"))).expect("utf-8");
            let (order, price) = v.split_once('|').expect("order|price");
            (order.to_owned(), price.to_owned())
        })
        .collect()
}

/// Prices v1, the app, the first half of the orders, then SIGKILL half-way through the second
/// half; prices v2 (timestamped after every order) while it is down; optionally the state dir
/// deleted; the restart; every order committed once with its v1 price.
async fn kill_and_restart_exactly_once(prefix: &str, delete_state: bool) {
    let b = bootstrap();
    let t = topics(prefix).await;
    let state = tempfile::tempdir().expect("tempdir");
    produce_with_metadata(&b, &t.table, &prices(1, base()));
    let all: Vec<_> = (0..ORDERS).map(order).collect();
    let (first, second) = all.split_at(ORDERS / 2);
    produce_with_metadata(&b, &t.orders, first);
    let app = start(&t, state.path(), "eos", 50);
    wait_for("enriched orders of the first half", DONE, || {
        total_end(&b, &t.output, PARTITIONS) >= (ORDERS / 4) as i64
    })
    .await;
    let producer = {
        let (b, topic, second) = (b.clone(), t.orders.clone(), second.to_vec());
        std::thread::spawn(move || {
            for chunk in second.chunks(100) {
                produce_with_metadata(&b, &topic, chunk);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    wait_for("half of the second half in the input", DONE, || {
        total_end(&b, &t.orders, PARTITIONS) >= (ORDERS * 3 / 4) as i64
    })
    .await;
    app.kill();
    producer.join().expect("the producer thread");
    // While it is down: new prices, later than every order. The orders processed again after
    // the restart come before them in time, so they must still see v1: the restore reads the
    // table topic up to the committed offset, not to its end.
    produce_with_metadata(&b, &t.table, &prices(2, base() + 1_000_000));
    if delete_state {
        std::fs::remove_dir_all(state.path()).expect("delete the state dir");
    }
    let mut ends = end_offsets(&b, &t.orders, PARTITIONS);
    ends.extend(end_offsets(&b, &t.table, PARTITIONS));
    let mut app = start(&t, state.path(), "eos", 500);
    wait_for("the input committed", DONE, || {
        group_committed_to(&b, &t.app_id, &ends)
    })
    .await;
    assert!(!app.exited(), "the restarted app died");
    app.stop();

    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (order, price) in enriched(&t) {
        if let Some(before) = seen.insert(order.clone(), price.clone()) {
            panic!("order {order} committed twice ({before}, then {price})");
        }
    }
    let want: BTreeMap<String, String> = (0..ORDERS)
        .map(|i| (format!("o{i}"), format!("p1-{}", i % KEYS)))
        .collect();
    assert_eq!(seen.len(), want.len(), "every order once");
    let wrong: Vec<_> = want
        .iter()
        .filter(|(o, p)| seen.get(*o) != Some(*p))
        .take(5)
        .map(|(o, p)| format!("{o}: {:?}, want {p}", seen.get(o)))
        .collect();
    assert!(wrong.is_empty(), "orders with the wrong price: {wrong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_sigkilled_under_exactly_once_is_restored_from_its_topic_up_to_the_committed_offset()
 {
    kill_and_restart_exactly_once("tbl-kill-eos", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_whose_state_dir_is_deleted_is_rebuilt_from_its_topic_exactly_once() {
    kill_and_restart_exactly_once("tbl-lost-eos", true).await;
}

/// Runs the enrich topology in this process until `ends` is committed, then stops it; returns
/// its status.
async fn run_until_committed(
    t: &Topics,
    state: &std::path::Path,
    ends: &BTreeMap<(String, i32), i64>,
    topology: fn(&str, &str, &str) -> kstreams::Result<kstreams::Topology>,
) -> kstreams::kafka::AppStatus {
    let b = bootstrap();
    let topology = topology(&t.table, &t.orders, &t.output).expect("topology");
    // The table topic's record without a key is skipped (and not restored either).
    let config = config(&t.app_id, &b, state)
        .on_deserialization_error_for(&t.table, kstreams::OnBadRecord::Skip);
    let app = Arc::new(App::new(topology, config).expect("app"));
    let run = spawn(app.clone());
    // Every task running (restored), and the input committed (by this run or an earlier one).
    wait_for("the input committed, every task running", DONE, || {
        let st = app.status();
        st.assigned.len() == ends.len()
            && st.restoring.is_empty()
            && group_committed_to(&b, &t.app_id, ends)
    })
    .await;
    let status = app.status();
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("a clean run");
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_restarted_after_a_clean_stop_restores_nothing_and_a_lost_one_restores_its_topic() {
    clean_restart_then_lost_state("tbl-clean", kstreams_tests::tables::enrich_topology).await;
}

/// The same with the table kept by a processor on a store whose changelog is the table's topic:
/// no changelog topic is created, and the lost state is restored from the table's topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_changelog_is_its_source_topic_has_no_changelog_topic_and_restores_from_it() {
    let t = clean_restart_then_lost_state(
        "tbl-source",
        kstreams_tests::tables::enrich_topology_by_processor,
    )
    .await;
    let changelog = format!("{}-prices-changelog", t.app_id);
    assert_eq!(
        partition_count(&bootstrap(), &changelog),
        None,
        "`{changelog}` created"
    );
}

/// Prices, 300 orders, a run, a clean restart (nothing restored), the state dir deleted and
/// a restart (the table restored from its topic, the record without a key left out).
async fn clean_restart_then_lost_state(
    prefix: &str,
    topology: fn(&str, &str, &str) -> kstreams::Result<kstreams::Topology>,
) -> Topics {
    let b = bootstrap();
    let t = topics(prefix).await;
    let state = tempfile::tempdir().expect("tempdir");
    produce_with_metadata(&b, &t.table, &prices(1, base()));
    produce(&b, &t.table, &[(None, b"no key".to_vec(), Some(0))]);
    produce_with_metadata(&b, &t.orders, &(0..300).map(order).collect::<Vec<_>>());
    let mut ends = end_offsets(&b, &t.orders, PARTITIONS);
    ends.extend(end_offsets(&b, &t.table, PARTITIONS));
    let first = run_until_committed(&t, state.path(), &ends, topology).await;
    assert_eq!(
        first.restored_records, 0,
        "nothing to restore at the first start"
    );
    // Again, on the same state: its position says it holds the whole table.
    let again = run_until_committed(&t, state.path(), &ends, topology).await;
    assert_eq!(
        again.restored_records, 0,
        "a clean restart restores nothing"
    );
    // Without its state: the table topic up to the committed offset, every record once.
    std::fs::remove_dir_all(state.path()).expect("delete the state dir");
    let lost = run_until_committed(&t, state.path(), &ends, topology).await;
    assert_eq!(
        lost.restored_records, KEYS as u64,
        "the whole table restored from its topic (the record without a key left out)"
    );
    // The orders were enriched once, by the first run, with v1.
    let out = read_all(&b, &t.output, PARTITIONS);
    assert_eq!(out.len(), 300);
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_table_is_restored_before_processing_and_kept_up_to_date() {
    let b = bootstrap();
    let app_id = unique("tbl-global");
    let (global, input, output) = (
        format!("{app_id}-regions"),
        format!("{app_id}-users"),
        format!("{app_id}-output"),
    );
    // Not co-partitioned: a global table needs none.
    create_topics(&b, &[(&global, 2), (&input, PARTITIONS), (&output, 1)]).await;
    let entries: Vec<Input> = (0..10)
        .map(|c| {
            (
                Some(format!("c{c}").into_bytes()),
                format!("region{c}").into_bytes(),
                None,
            )
        })
        .collect();
    produce(&b, &global, &entries);
    let state = tempfile::tempdir().expect("tempdir");
    let topology =
        kstreams_tests::tables::global_topology(&global, &input, &output).expect("topology");
    let app = Arc::new(App::new(topology, config(&app_id, &b, state.path())).expect("app"));
    let run = spawn(app.clone());
    // The first records, as soon as the app runs: every customer is already in the table.
    let users: Vec<Input> = (0..20)
        .map(|u| {
            (
                Some(format!("u{u}").into_bytes()),
                format!("c{}", u % 10).into_bytes(),
                None,
            )
        })
        .collect();
    produce(&b, &input, &users);
    wait_for("20 located users", DONE, || total_end(&b, &output, 1) >= 20).await;
    let located = |out: Vec<Output>| -> Vec<String> {
        out.into_iter()
            .map(|(_, _, _, v)| String::from_utf8(v.unwrap_or_default()).expect("utf-8"))
            .collect()
    };
    let first = located(read_all(&b, &output, 1));
    assert_eq!(first.len(), 20);
    for line in &first {
        let (customer, region) = line.split_once('|').expect("customer|region");
        assert_eq!(
            region,
            format!("region{}", &customer[1..]),
            "{customer} found in the global table restored before processing"
        );
    }
    // An update of the global topic reaches later records.
    produce(
        &b,
        &global,
        &[(Some(b"c0".to_vec()), b"moved".to_vec(), None)],
    );
    let deadline = std::time::Instant::now() + DONE;
    loop {
        produce(
            &b,
            &input,
            &[(Some(b"later".to_vec()), b"c0".to_vec(), None)],
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        if located(read_all(&b, &output, 1))
            .iter()
            .any(|l| l == "c0|moved")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the global table's update never reached the stream"
        );
    }
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("a clean run");
    // Its state: `<state dir>/<application id>/global`.
    assert!(state.path().join(&app_id).join("global").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repartition_topic_is_created_with_its_upstreams_partition_count_and_used() {
    let b = bootstrap();
    let app_id = unique("tbl-repart");
    let (input, output) = (format!("{app_id}-input"), format!("{app_id}-output"));
    create_topics(&b, &[(&input, PARTITIONS), (&output, 2)]).await;
    let records: Vec<Input> = (0..200)
        .map(|i| {
            (
                Some(format!("r{i}").into_bytes()),
                format!("v{}", i % 17).into_bytes(),
                None,
            )
        })
        .collect();
    produce(&b, &input, &records);
    let state = tempfile::tempdir().expect("tempdir");
    let topology =
        kstreams_tests::tables::repartition_topology(&input, "bykey", &output).expect("topology");
    let app = Arc::new(App::new(topology, config(&app_id, &b, state.path())).expect("app"));
    let run = spawn(app.clone());
    wait_for("200 records through the repartition topic", DONE, || {
        total_end(&b, &output, 2) >= 200
    })
    .await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("a clean run");
    let repartition = format!("{app_id}-bykey-repartition");
    assert_eq!(
        partition_count(&b, &repartition),
        Some(PARTITIONS as usize),
        "`{repartition}` created with its upstream's partition count"
    );
    assert_eq!(total_end(&b, &repartition, PARTITIONS), 200);
    let mut out: Vec<(String, String)> = read_all(&b, &output, 2)
        .into_iter()
        .map(|(_, _, k, v)| {
            (
                String::from_utf8(k.unwrap_or_default()).expect("utf-8"),
                String::from_utf8(v.unwrap_or_default()).expect("utf-8"),
            )
        })
        .collect();
    out.sort();
    let mut want: Vec<(String, String)> = (0..200)
        .map(|i| (format!("v{}", i % 17), format!("r{i}")))
        .collect();
    want.sort();
    assert_eq!(out, want, "every record re-keyed once");
}
