//! Restore in the processing loop (issue #13 §1), on the real broker.
//!
//! - A changelog of 2,000,000 records (produced straight to the changelog topic) restores with
//!   `max.poll.interval.ms` = 10 s while the app's other task keeps processing its input: no
//!   rebalance besides the one the start causes, the other task commits progress during the
//!   restore, and the restored state is the changelog's.
//! - Exactly-once: a task restored here and then opened here again is trusted (its restore
//!   recorded the input position with the state), not wiped and rebuilt from scratch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kstreams::Topology;
use kstreams::kafka::{App, ProcessingGuarantee};
use kstreams_examples::wordcount::{CountWords, STORE};
use kstreams_tests::*;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const DONE: Duration = Duration::from_secs(120);

/// Changelog records produced for partition 0: keys `k0` .. `k999999`, twice over, the value of
/// record `i` being `i` (so key `kj` ends at `j + 1_000_000`).
const CHANGELOG_RECORDS: u64 = 2_000_000;
const KEYS: u64 = 1_000_000;

fn fast_producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "100000")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "lz4")
        .create()
        .expect("producer")
}

fn send(
    p: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    part: i32,
    key: &[u8],
    v: &[u8],
) {
    let mut r = BaseRecord::<[u8], [u8]>::to(topic)
        .key(key)
        .payload(v)
        .partition(part);
    loop {
        match p.send(r) {
            Ok(()) => return,
            Err((_, back)) => {
                r = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Words (partitioned as given) → [`CountWords`] → counts.
fn count_topology(words: &str, output: &str) -> Topology {
    let mut t = Topology::builder();
    let words = t.source::<String, ()>(words);
    let counts = t.add(CountWords, &words);
    t.sink(output, &counts);
    t.build().expect("topology")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_million_changelog_records_restore_while_the_other_task_processes() {
    let b = bootstrap();
    let app_id = unique("restore-2m");
    let words = format!("{app_id}-words");
    let output = format!("{app_id}-counts");
    let changelog = format!("{app_id}-{STORE}-changelog");
    create_topics(&b, &[(&words, 2), (&output, 2)]).await;
    // One segment for the whole changelog, so that the log cleaner leaves every record there.
    create_topics_with_configs(
        &b,
        &[(
            &changelog,
            2,
            &[
                ("cleanup.policy", "compact"),
                ("segment.bytes", "1073741824"),
            ],
        )],
    )
    .await;

    let produced = Instant::now();
    let producer = fast_producer(&b);
    for i in 0..CHANGELOG_RECORDS {
        let key = format!("k{}", i % KEYS);
        send(&producer, &changelog, 0, key.as_bytes(), &i.to_be_bytes());
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    eprintln!(
        "produced {CHANGELOG_RECORDS} changelog records in {:?}",
        produced.elapsed()
    );
    // Input of the restoring task: processed only once it is restored.
    for j in 0..1000u64 {
        send(&producer, &words, 0, format!("k{j}").as_bytes(), &[]);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");

    // The other task's input keeps coming during the restore.
    let stop = Arc::new(AtomicBool::new(false));
    let live = {
        let (b, words, stop) = (b.clone(), words.clone(), stop.clone());
        std::thread::spawn(move || {
            let p = fast_producer(&b);
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for _ in 0..20 {
                    send(&p, &words, 1, format!("live{}", n % 100).as_bytes(), &[]);
                    n += 1;
                }
                p.flush(Duration::from_secs(10)).expect("flush");
                std::thread::sleep(Duration::from_millis(10));
            }
            n
        })
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&app_id, &b, dir.path())
        .consumer_property("max.poll.interval.ms", "10000")
        .consumer_property("session.timeout.ms", "6000");
    let app = Arc::new(App::new(count_topology(&words, &output), config).expect("app"));
    let started = Instant::now();
    let run = spawn(app.clone());

    let restoring_key = (words.clone(), 0);
    let other = (words.clone(), 1);
    // Sample the status: while partition 0 restores, partition 1's committed offset moves on.
    let mut first_seen: Option<(Instant, i64)> = None;
    let mut progress_during_restore = 0i64;
    let restored_at = loop {
        let s = app.status();
        assert!(started.elapsed() < DONE, "restore not done: {s:?}");
        if s.restoring.contains(&restoring_key) {
            let c = s.committed.get(&other).copied().unwrap_or(0);
            match first_seen {
                None => first_seen = Some((Instant::now(), c)),
                Some((_, c0)) => progress_during_restore = progress_during_restore.max(c - c0),
            }
        } else if first_seen.is_some() && s.assigned.contains(&restoring_key) {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.store(true, Ordering::SeqCst);
    let live_records = live.join().expect("live producer");
    let restore_time = restored_at.duration_since(first_seen.map_or(started, |(t, _)| t));

    // Everything produced is processed and committed.
    let ends = end_offsets(&b, &words, 2);
    wait_for("every word committed", DONE, || {
        committed_to(&app.status(), &ends)
    })
    .await;
    let s = app.status();
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");

    let secs = restore_time.as_secs_f64();
    eprintln!(
        "restored {} records in {secs:.2} s ({:.0} records/s; {:?} from the app's start), \
         rebalances {}, the other task committed {progress_during_restore} records meanwhile \
         ({live_records} produced to it in all)",
        s.restored_records,
        s.restored_records as f64 / secs,
        restored_at.duration_since(started),
        s.rebalances
    );
    assert_eq!(
        s.restored_records, CHANGELOG_RECORDS,
        "every changelog record restored"
    );
    assert_eq!(
        s.rebalances, 1,
        "only the rebalance of the start: the restore never held up the poll loop"
    );
    assert!(
        progress_during_restore > 0,
        "the other task processed and committed input while partition 0 restored: {s:?}"
    );

    // The restored state is the changelog's: each `kj` counted once more than it ended at.
    let out = read_all(&b, &output, 2);
    let counts = last_counts(&out);
    for j in 0..1000u64 {
        assert_eq!(
            counts.get(&format!("k{j}")).copied(),
            Some(j + KEYS + 1),
            "count of k{j}"
        );
    }
    let live_total: u64 = (0..100)
        .map(|n| counts.get(&format!("live{n}")).copied().unwrap_or(0))
        .sum();
    assert_eq!(live_total, live_records, "every live word counted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_a_task_restored_here_is_trusted_when_it_opens_here_again() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "restore-eos-trust", 2).await;
    let lines = sample_lines(77, 400);
    produce_lines(&b, &t.input, t.partitions, &lines);
    let dir = tempfile::tempdir().expect("tempdir");
    let eos =
        || config(&t.app_id, &b, dir.path()).processing_guarantee(ProcessingGuarantee::ExactlyOnce);
    let all = (t.partitions * 2) as usize;

    // 1. Count everything, stop cleanly.
    let app = Arc::new(App::new(t.topology(), eos()).expect("app"));
    let run = spawn(app.clone());
    let words = independent_count(&lines).values().sum();
    wait_exactly_once_done(&b, &t, words, DONE).await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");

    // 2. The disk is lost: the state is restored from the changelog; nothing new to process.
    std::fs::remove_dir_all(dir.path().join(&t.app_id)).expect("remove the state");
    let restore_run = |what: &'static str| {
        let app = Arc::new(App::new(t.topology(), eos()).expect("app"));
        let run = spawn(app.clone());
        async move {
            wait_for(what, DONE, || app.status().assigned.len() == all).await;
            app.shutdown_handle().shutdown();
            run.await.expect("join").expect("run");
            app.status()
        }
    };
    let restored = restore_run("every task restored").await;
    assert!(restored.restored_records > 0, "{restored:?}");

    // 3. The tasks come back to this instance with nothing committed since: their local state
    //    is trusted (the restore recorded the committed input position with it), not wiped.
    let again = restore_run("every task open again").await;
    assert_eq!(
        again.restored_records, 0,
        "trusted local state: nothing restored again ({} records the first time)",
        restored.restored_records
    );
    assert_exactly_once_word_count(&b, &t, &independent_count(&lines));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_revoked_while_restoring_is_closed_without_a_commit() {
    const RECORDS: u64 = 2_000_000;
    const RKEYS: u64 = 1_000_000;
    let b = bootstrap();
    let app_id = unique("restore-revoked");
    let words = format!("{app_id}-words");
    let output = format!("{app_id}-counts");
    let changelog = format!("{app_id}-{STORE}-changelog");
    create_topics(&b, &[(&words, 2), (&output, 2)]).await;
    create_topics_with_configs(
        &b,
        &[(
            &changelog,
            2,
            &[
                ("cleanup.policy", "compact"),
                ("segment.bytes", "1073741824"),
            ],
        )],
    )
    .await;
    let producer = fast_producer(&b);
    for i in 0..RECORDS {
        let key = format!("k{}", i % RKEYS);
        send(&producer, &changelog, 0, key.as_bytes(), &i.to_be_bytes());
    }
    for j in 0..1000u64 {
        send(&producer, &words, 0, format!("k{j}").as_bytes(), &[]);
        send(
            &producer,
            &words,
            1,
            format!("w{}", j % 100).as_bytes(),
            &[],
        );
    }
    producer.flush(Duration::from_secs(60)).expect("flush");

    // A slow restore on the first instance (5 records a turn), so that the second one joins
    // mid-restore.
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let cfg = |dir: &std::path::Path, batch| config(&app_id, &b, dir).restore_batch_records(batch);
    let topology = count_topology(&words, &output);
    let a = Arc::new(App::new(topology.clone(), cfg(dir_a.path(), 5)).expect("app a"));
    let run_a = spawn(a.clone());
    let p0 = (words.clone(), 0);
    wait_for("a restores partition 0", DONE, || {
        a.status().restoring.contains(&p0)
    })
    .await;

    let bb = Arc::new(App::new(topology, cfg(dir_b.path(), 10_000)).expect("app b"));
    let run_b = spawn(bb.clone());
    let joined = Instant::now();
    let since_a = a.status();
    eprintln!("b starts; a restored {} so far", since_a.restored_records);
    let mut revoked_mid_restore = None;
    let mut a_was_restoring = true;
    loop {
        let (sa, sb) = (a.status(), bb.status());
        // (Between the revocation and the next assignment, a has no partition.)
        if sa.rebalances < 2 && !(sa.restoring.is_empty() && sa.assigned.is_empty()) {
            a_was_restoring = sa.restoring.contains(&p0);
        }
        assert!(
            joined.elapsed() < DONE,
            "no second rebalance: {sa:?} {sb:?}"
        );
        // No instance commits an offset of partition 0 before its task is restored somewhere.
        if revoked_mid_restore.is_none_or(|mid| mid)
            && !sa.assigned.contains(&p0)
            && !sb.assigned.contains(&p0)
        {
            assert!(
                !sa.committed.contains_key(&p0) && !sb.committed.contains_key(&p0),
                "an offset of partition 0 was committed while its task was restoring: {sa:?} {sb:?}"
            );
        }
        if sa.rebalances >= 2 && revoked_mid_restore.is_none() {
            revoked_mid_restore = Some(a_was_restoring);
            eprintln!(
                "second rebalance after {:?}: {sa:?} {sb:?}",
                joined.elapsed()
            );
        }
        if revoked_mid_restore.is_some() && (sa.assigned.contains(&p0) || sb.assigned.contains(&p0))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        revoked_mid_restore,
        Some(true),
        "the rebalance came after a's restore of partition 0 ended: make it slower"
    );
    let ends = end_offsets(&b, &words, 2);
    wait_for("every word committed", DONE, || {
        group_committed_to(&b, &app_id, &ends)
    })
    .await;
    let (sa, sb) = (a.status(), bb.status());
    a.shutdown_handle().shutdown();
    bb.shutdown_handle().shutdown();
    run_a.await.expect("join").expect("run a");
    run_b.await.expect("join").expect("run b");
    eprintln!(
        "restored: a {} (rebalances {}), b {} (rebalances {})",
        sa.restored_records, sa.rebalances, sb.restored_records, sb.rebalances
    );
    // What a restored before the revocation stayed in its state: whoever restores partition 0
    // at the end restores only the rest (a: from where it stopped; b: from scratch).
    assert!(
        sa.restored_records + sb.restored_records >= RECORDS,
        "{sa:?} {sb:?}"
    );

    // The state the new owner processed with is the whole changelog's.
    let counts = last_counts(&read_all(&b, &output, 2));
    for j in 0..1000u64 {
        assert_eq!(
            counts.get(&format!("k{j}")).copied(),
            Some(j + RKEYS + 1),
            "count of k{j}"
        );
    }
    let w: u64 = (0..100)
        .map(|n| counts.get(&format!("w{n}")).copied().unwrap_or(0))
        .sum();
    assert_eq!(w, 1000);
}

/// Exactly-once, with an offset committed for the restoring task's input (so its local state,
/// with no input position, differs from the group): a restore stopped halfway is kept and goes on
/// where it stopped, instead of being wiped and started over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_a_restore_cut_short_goes_on_where_it_stopped() {
    const RECORDS: u64 = 600_000;
    const RKEYS: u64 = 300_000;
    let b = bootstrap();
    let app_id = unique("restore-eos-resume");
    let words = format!("{app_id}-words");
    let output = format!("{app_id}-counts");
    let changelog = format!("{app_id}-{STORE}-changelog");
    create_topics(&b, &[(&words, 1), (&output, 1)]).await;
    create_topics_with_configs(
        &b,
        &[(
            &changelog,
            1,
            &[
                ("cleanup.policy", "compact"),
                ("segment.bytes", "1073741824"),
            ],
        )],
    )
    .await;
    let producer = fast_producer(&b);
    for i in 0..RECORDS {
        let key = format!("k{}", i % RKEYS);
        send(&producer, &changelog, 0, key.as_bytes(), &i.to_be_bytes());
    }
    for j in 0..1000u64 {
        send(&producer, &words, 0, format!("k{j}").as_bytes(), &[]);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    // The group committed offset 0 of the input: a state without an input position is not equal
    // to it.
    {
        use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .set("group.id", &app_id)
            .create()
            .expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(&words, 0, rdkafka::Offset::Offset(0))
            .expect("tpl");
        c.commit(&tpl, CommitMode::Sync).expect("commit offset 0");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = |batch| {
        config(&app_id, &b, dir.path())
            .processing_guarantee(ProcessingGuarantee::ExactlyOnce)
            .restore_batch_records(batch)
    };
    let topology = count_topology(&words, &output);
    // 1. A slow restore, stopped halfway.
    let app = Arc::new(App::new(topology.clone(), cfg(5)).expect("app"));
    let run = spawn(app.clone());
    let p0 = (words.clone(), 0);
    wait_for("part of the restore done", DONE, || {
        let s = app.status();
        s.restoring.contains(&p0) && s.restored_records >= 10_000
    })
    .await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
    let first = app.status();
    assert!(
        first.restored_records < RECORDS && first.processed_records == 0,
        "stopped mid-restore: {first:?}"
    );

    // 2. The rest of it, then the input.
    let app = Arc::new(App::new(topology, cfg(10_000)).expect("app"));
    let run = spawn(app.clone());
    let ends = end_offsets(&b, &words, 1);
    wait_for("every word committed", DONE, || {
        group_committed_to(&b, &app_id, &ends)
    })
    .await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
    let second = app.status();
    assert_eq!(
        first.restored_records + second.restored_records,
        RECORDS,
        "the second run restored only the rest ({} of {RECORDS} restored first)",
        first.restored_records
    );
    let counts = last_counts(&read_all_committed(&b, &output, 1));
    for j in 0..1000u64 {
        assert_eq!(
            counts.get(&format!("k{j}")).copied(),
            Some(j + RKEYS + 1),
            "count of k{j}"
        );
    }
}
