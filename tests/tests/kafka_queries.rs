//! Interactive queries, local (issue #16 §1 and §4), on the real broker.
//!
//! - Two threads query a store in a loop while the app counts 1,000,000 records over a small key
//!   set: every answer is a count the key had at a batch boundary (the processor records each
//!   key's count after every batch in a side store, in the batch's own transaction), counts never
//!   go back, never exceed the final count, and a whole-store read is one batch of each task (each
//!   task also keeps the total of its keys' counts, which an `all()` must match). Processing goes
//!   on: the batch times and the throughput with no queries, with queries in a tight loop (on 2
//!   cores they take CPU from processing) and with paced queries are printed; the app finishes.
//! - A store being restored answers `Restoring` with its lag, then the restored values.
//! - A key of a partition assigned to another instance answers `NotHere` with its partition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kstreams::kafka::App;
use kstreams::partitioner::partition_for_key;
use kstreams::query::QueryError;
use kstreams::{BatchProcessor, Context, Record, Result, StoreSpec, Topology};
use kstreams_examples::wordcount::{CountWords, STORE};
use kstreams_tests::*;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const DONE: Duration = Duration::from_secs(180);

const COUNTS: &str = "counts";
const BOUNDARIES: &str = "count-boundaries";
const RECORDS: u64 = 1_000_000;
const KEYS: u64 = 8;

fn fast_producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
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
    part: Option<i32>,
    key: &[u8],
    v: &[u8],
) {
    let mut r = BaseRecord::<[u8], [u8]>::to(topic).key(key).payload(v);
    if let Some(part) = part {
        r = r.partition(part);
    }
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

/// Times of the processing, shared by a topology's tasks (microseconds since `base`).
#[derive(Debug)]
struct Timing {
    base: Instant,
    first: AtomicU64,
    last: AtomicU64,
    max_batch: AtomicU64,
    batches: AtomicU64,
}

impl Timing {
    fn new() -> Arc<Self> {
        Arc::new(Timing {
            base: Instant::now(),
            first: AtomicU64::new(u64::MAX),
            last: AtomicU64::new(0),
            max_batch: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        })
    }

    fn micros(&self, t: Instant) -> u64 {
        t.duration_since(self.base).as_micros() as u64
    }

    /// From the first batch's start to the last batch's end.
    fn span(&self) -> Duration {
        let (f, l) = (
            self.first.load(Ordering::SeqCst),
            self.last.load(Ordering::SeqCst),
        );
        Duration::from_micros(l.saturating_sub(f))
    }
}

/// Counts per key (`counts`) and records, in the same transaction, each key's count after the
/// batch (`count-boundaries`: `<key>/<count, 12 digits>`): the values a reader may see. It also
/// keeps the total of the task's counts under `~total/<partition>` in `counts`.
#[derive(Debug, Clone)]
struct CountAndMark(Arc<Timing>);

impl BatchProcessor<String, ()> for CountAndMark {
    type OutKey = String;
    type OutValue = u64;

    fn stores(&self) -> Vec<StoreSpec> {
        vec![
            StoreSpec::new::<String, u64>(COUNTS),
            StoreSpec::new::<String, ()>(BOUNDARIES).changelog(false),
        ]
    }

    fn process_batch(
        &mut self,
        records: &[Record<String, ()>],
        ctx: &mut Context<'_, String, u64>,
    ) -> Result<()> {
        let began = Instant::now();
        let mut added: BTreeMap<&str, u64> = BTreeMap::new();
        for r in records {
            *added.entry(r.key.as_str()).or_default() += 1;
        }
        let partition = records
            .first()
            .and_then(|r| r.origin.as_ref())
            .map_or(-1, |o| o.partition);
        let total_key = total_key(partition);
        added.insert(&total_key, records.len() as u64);
        let keys: Vec<String> = added.keys().map(|k| (*k).to_owned()).collect();
        let (new, marks): (Vec<(String, u64)>, Vec<(String, ())>) = {
            let counts = ctx.store::<String, u64>(COUNTS)?;
            let old = counts.get_batch(&keys)?;
            keys.iter()
                .zip(old)
                .zip(added.values())
                .map(|((k, o), a)| {
                    let n = o.unwrap_or(0) + a;
                    ((k.clone(), n), (format!("{k}/{n:012}"), ()))
                })
                .unzip()
        };
        ctx.store::<String, u64>(COUNTS)?.put_batch(&new)?;
        ctx.store::<String, ()>(BOUNDARIES)?.put_batch(&marks)?;
        if let Some(last) = records.last() {
            for (k, n) in &new {
                ctx.forward(last.derive(k.clone(), *n));
            }
        }
        let t = &self.0;
        let ended = Instant::now();
        t.first.fetch_min(t.micros(began), Ordering::SeqCst);
        t.last.fetch_max(t.micros(ended), Ordering::SeqCst);
        t.max_batch.fetch_max(
            ended.duration_since(began).as_micros() as u64,
            Ordering::SeqCst,
        );
        t.batches.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn total_key(partition: i32) -> String {
    format!("~total/{partition}")
}

fn count_topology(words: &str, output: &str, timing: Arc<Timing>) -> Topology {
    let mut t = Topology::builder();
    let words = t.source::<String, ()>(words);
    let counts = t.add(CountAndMark(timing), &words);
    t.sink(output, &counts);
    t.build().expect("topology")
}

/// What one query thread saw: per key, the counts answered, in order.
type Seen = BTreeMap<String, Vec<u64>>;

/// Queries `counts` in a loop until `stop` (sleeping `pace` between queries, if any): `get` of
/// each key in turn, and every 64th turn `all()`. Checks on the way that a key's count never
/// goes back and that each task's total matches its keys' counts in an `all()`; answers other
/// than a value are only allowed before the first value (the app starting up).
fn query_loop(app: Arc<App>, stop: Arc<AtomicBool>, pace: Option<Duration>) -> (Seen, u64) {
    let counts = app
        .queries()
        .store_by_name::<String, u64>(COUNTS)
        .expect("the counts store");
    let keys: Vec<String> = (0..KEYS).map(|k| format!("w{k}")).collect();
    let mut seen = Seen::new();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut answered = false;
    let mut queries = 0u64;
    let mut note = |seen: &mut Seen, k: &str, v: u64| {
        let before = last.insert(k.to_owned(), v).unwrap_or(0);
        assert!(
            v >= before,
            "the count of {k} went back from {before} to {v}"
        );
        seen.entry(k.to_owned()).or_default().push(v);
    };
    for turn in 0u64.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        queries += 1;
        if let Some(pace) = pace {
            std::thread::sleep(pace);
        }
        if turn % 64 == 63 {
            match counts.all() {
                Ok(all) => {
                    answered = true;
                    let mut sums: BTreeMap<i32, u64> = BTreeMap::new();
                    let mut totals: BTreeMap<i32, u64> = BTreeMap::new();
                    for (k, v) in all {
                        if let Some(p) = k.strip_prefix("~total/") {
                            totals.insert(p.parse().expect("a partition"), v);
                        } else {
                            *sums.entry(partition_for_key(k.as_bytes(), 2)).or_default() += v;
                            note(&mut seen, &k, v);
                        }
                    }
                    assert_eq!(
                        sums, totals,
                        "all() saw a task's counts of different batches"
                    );
                }
                Err(e) => assert!(!answered, "all() failed once running: {e}"),
            }
            continue;
        }
        let k = &keys[(turn % KEYS) as usize];
        match counts.get(k) {
            Ok(Some(v)) => {
                answered = true;
                note(&mut seen, k, v);
            }
            Ok(None) => {}
            Err(
                QueryError::NotHere { .. } | QueryError::Restoring { .. } | QueryError::Failed(_),
            ) if !answered => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("a query failed once the app was running: {e}"),
        }
    }
    (seen, queries)
}

/// Produces `RECORDS` records over `KEYS` keys (`w0`..), partitioned by murmur2 of the key.
fn produce_words(b: &str, topic: &str) {
    let p = fast_producer(b);
    for i in 0..RECORDS {
        send(&p, topic, None, format!("w{}", i % KEYS).as_bytes(), &[]);
    }
    p.flush(Duration::from_secs(120)).expect("flush");
}

struct Run {
    elapsed: Duration,
    timing: Arc<Timing>,
    /// Of the run with queries: what the threads saw and how many queries they made.
    seen: Vec<(Seen, u64)>,
    boundaries: BTreeMap<String, BTreeSet<u64>>,
    finals: BTreeMap<String, u64>,
}

/// Counts the words of `words` with a fresh app id, with `query_threads` querying meanwhile.
async fn count_run(b: &str, words: &str, query_threads: usize, pace: Option<Duration>) -> Run {
    let app_id = unique("queries-1m");
    let output = format!("{app_id}-counts");
    create_topics(b, &[(&output, 2)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let timing = Timing::new();
    let app = Arc::new(
        App::new(
            count_topology(words, &output, timing.clone()),
            config(&app_id, b, dir.path()),
        )
        .expect("app"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..query_threads)
        .map(|_| {
            let (app, stop) = (app.clone(), stop.clone());
            std::thread::spawn(move || query_loop(app, stop, pace))
        })
        .collect();
    let started = Instant::now();
    let run = spawn(app.clone());
    let ends = end_offsets(b, words, 2);
    while !committed_to(&app.status(), &ends) {
        assert!(
            started.elapsed() < DONE && !run.is_finished(),
            "not every word committed after {:?} (the app stopped: {}): {:?}",
            started.elapsed(),
            run.is_finished(),
            app.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    eprintln!("{query_threads} query threads (pace {pace:?}): committed all in {elapsed:?}");
    stop.store(true, Ordering::SeqCst);
    let seen: Vec<(Seen, u64)> = threads
        .into_iter()
        .map(|t| t.join().expect("a query thread"))
        .collect();
    // The batch boundaries and the final counts, read through the queries as well.
    let q = app.queries();
    let mut boundaries: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for (mark, ()) in q
        .store_by_name::<String, ()>(BOUNDARIES)
        .expect("boundaries store")
        .all()
        .expect("boundaries")
    {
        let (k, n) = mark.rsplit_once('/').expect("a boundary key");
        boundaries
            .entry(k.to_owned())
            .or_default()
            .insert(n.parse().expect("a count"));
    }
    let finals: BTreeMap<String, u64> = q
        .store_by_name::<String, u64>(COUNTS)
        .expect("counts store")
        .all()
        .expect("final counts")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("~total/"))
        .collect();
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
    Run {
        elapsed,
        timing,
        seen,
        boundaries,
        finals,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_from_two_threads_while_counting_a_million_records_see_batch_boundaries_only() {
    let b = bootstrap();
    let words = unique("queries-1m-words");
    create_topics(&b, &[(&words, 2)]).await;
    let produced = Instant::now();
    produce_words(&b, &words);
    eprintln!("produced {RECORDS} records in {:?}", produced.elapsed());

    let quiet = count_run(&b, &words, 0, None).await;
    let queried = count_run(&b, &words, 2, None).await;
    let paced = count_run(&b, &words, 2, Some(Duration::from_micros(500))).await;

    let per_key = RECORDS / KEYS;
    for run in [&quiet, &queried, &paced] {
        assert_eq!(run.finals.len() as u64, KEYS, "{:?}", run.finals);
        assert!(
            run.finals.values().all(|n| *n == per_key),
            "{:?}",
            run.finals
        );
    }
    let rate = |r: &Run| RECORDS as f64 / r.timing.span().as_secs_f64().max(1e-9);
    let describe = |what: &str, r: &Run| {
        eprintln!(
            "{what}: {:.0} records/s over {:?} of processing ({} batches, longest {} µs), {:?} \
             to commit all",
            rate(r),
            r.timing.span(),
            r.timing.batches.load(Ordering::SeqCst),
            r.timing.max_batch.load(Ordering::SeqCst),
            r.elapsed,
        )
    };
    describe("without queries", &quiet);
    for (what, run) in [
        ("with 2 query threads in a tight loop", &queried),
        (
            "with 2 query threads pausing 500 µs between queries",
            &paced,
        ),
    ] {
        describe(what, run);
        let mut answers = 0usize;
        let mut distinct: BTreeSet<(String, u64)> = BTreeSet::new();
        for (seen, _) in &run.seen {
            for (k, values) in seen {
                let marks = run.boundaries.get(k).expect("boundaries of a key seen");
                for v in values {
                    assert!(
                        *v <= run.finals[k],
                        "{k}: {v} over the final count {}",
                        run.finals[k]
                    );
                    assert!(
                        marks.contains(v),
                        "{k}: {v} is not a count at a batch boundary (part of a batch was seen)"
                    );
                    distinct.insert((k.clone(), *v));
                }
                answers += values.len();
            }
        }
        let queries: u64 = run.seen.iter().map(|(_, q)| q).sum();
        eprintln!(
            "    {queries} queries, {answers} counts answered, {} distinct (key, count) among {} \
             batch boundaries",
            distinct.len(),
            run.boundaries.values().map(BTreeSet::len).sum::<usize>(),
        );
        assert!(answers > 0, "the queries answered counts while the app ran");
        assert!(
            distinct.len() > KEYS as usize,
            "the queries saw counts move during the run, not only the final ones"
        );
    }
    // A batch that waited on a query would take about as long as the app runs; scheduling on a
    // loaded 2-core machine takes milliseconds.
    for run in [&queried, &paced] {
        let longest = Duration::from_micros(run.timing.max_batch.load(Ordering::SeqCst));
        assert!(longest < Duration::from_secs(2), "a batch took {longest:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_being_restored_answers_restoring_with_its_lag_then_its_values() {
    const CHANGELOG_RECORDS: u64 = 300_000;
    const CHANGELOG_KEYS: u64 = 1000;
    let b = bootstrap();
    let app_id = unique("queries-restoring");
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
    let p = fast_producer(&b);
    for i in 0..CHANGELOG_RECORDS {
        let key = format!("k{}", i % CHANGELOG_KEYS);
        send(&p, &changelog, Some(0), key.as_bytes(), &i.to_be_bytes());
    }
    p.flush(Duration::from_secs(60)).expect("flush");

    let mut t = Topology::builder();
    let w = t.source::<String, ()>(&words);
    let counts = t.add(CountWords, &w);
    t.sink(&output, &counts);
    let dir = tempfile::tempdir().expect("tempdir");
    let app = Arc::new(
        App::new(
            t.build().expect("topology"),
            config(&app_id, &b, dir.path()).restore_batch_records(500),
        )
        .expect("app"),
    );
    let query = app
        .queries()
        .store_by_name::<String, u64>(STORE)
        .expect("the store");
    let run = spawn(app.clone());
    let key = "k7".to_owned();
    let want = CHANGELOG_RECORDS - CHANGELOG_KEYS + 7;
    let started = Instant::now();
    let mut lags: Vec<u64> = Vec::new();
    let value = loop {
        assert!(started.elapsed() < DONE, "not restored: {:?}", app.status());
        match query.get(&key) {
            Ok(v) => break v,
            Err(QueryError::Restoring {
                store,
                partition,
                lag,
            }) => {
                assert_eq!((store.as_str(), partition), (STORE, 0));
                lags.push(lag);
            }
            // Before the assignment.
            Err(QueryError::NotHere { .. } | QueryError::Failed(_)) => {
                assert!(lags.is_empty(), "not here after restoring");
            }
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
    eprintln!(
        "{} Restoring answers, lags from {:?} to {:?}",
        lags.len(),
        lags.iter().max(),
        lags.iter().min()
    );
    assert_eq!(value, Some(want), "the restored value");
    assert!(
        lags.iter().any(|l| *l > 0),
        "a Restoring answer with a lag: {lags:?}"
    );
    assert!(
        lags.windows(2).all(|w| w[1] <= w[0] || w[0] == 0),
        "the lag shrinks as the restore goes on: {lags:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_a_partition_assigned_to_another_instance_answers_not_here() {
    let b = bootstrap();
    let app_id = unique("queries-not-here");
    let words = format!("{app_id}-words");
    let output = format!("{app_id}-counts");
    create_topics(&b, &[(&words, 2), (&output, 2)]).await;
    // A key of each partition, five times each.
    let key_of = |p: i32| {
        (0..)
            .map(|i| format!("key{i}"))
            .find(|k| partition_for_key(k.as_bytes(), 2) == p)
            .expect("a key")
    };
    let keys = [key_of(0), key_of(1)];
    let producer = fast_producer(&b);
    for _ in 0..5 {
        for k in &keys {
            send(&producer, &words, None, k.as_bytes(), &[]);
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");

    let topology = || {
        let mut t = Topology::builder();
        let w = t.source::<String, ()>(&words);
        let counts = t.add(CountWords, &w);
        t.sink(&output, &counts);
        t.build().expect("topology")
    };
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let apps: Vec<Arc<App>> = dirs
        .iter()
        .map(|d| {
            let config =
                config(&app_id, &b, d.path()).consumer_property("session.timeout.ms", "6000");
            Arc::new(App::new(topology(), config).expect("app"))
        })
        .collect();
    let runs: Vec<_> = apps.iter().map(|a| spawn(a.clone())).collect();
    let ends = end_offsets(&b, &words, 2);
    wait_for(
        "one partition on each instance, everything committed",
        DONE,
        || {
            let (s0, s1) = (apps[0].status(), apps[1].status());
            s0.assigned.len() == 1
                && s1.assigned.len() == 1
                && s0.restoring.is_empty()
                && s1.restoring.is_empty()
                && group_committed_to(&b, &app_id, &ends)
        },
    )
    .await;
    for app in &apps {
        let (_, mine) = app
            .status()
            .assigned
            .into_iter()
            .next()
            .expect("a partition");
        let q = app
            .queries()
            .store_by_name::<String, u64>(STORE)
            .expect("the store");
        assert_eq!(q.get(&keys[mine as usize]).expect("a local key"), Some(5));
        let other = 1 - mine;
        match q.get(&keys[other as usize]) {
            Err(QueryError::NotHere {
                store,
                partition,
                owner,
            }) => {
                assert_eq!((store.as_str(), partition, owner), (STORE, other, None));
            }
            answer => panic!("the key of partition {other}: {answer:?}"),
        }
        // A range covers this instance's partition only.
        let all = q.all().expect("all");
        assert_eq!(all, vec![(keys[mine as usize].clone(), 5)]);
    }
    for app in &apps {
        app.shutdown_handle().shutdown();
    }
    for run in runs {
        run.await.expect("join").expect("run");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_queries_answer_the_state_of_the_last_exactly_once_commit() {
    const COMMIT: Duration = Duration::from_secs(5);
    let b = bootstrap();
    let app_id = unique("queries-committed");
    let words = format!("{app_id}-words");
    let output = format!("{app_id}-counts");
    create_topics(&b, &[(&words, 1), (&output, 1)]).await;
    let mut t = Topology::builder();
    let w = t.source::<String, ()>(&words);
    let counts = t.add(CountWords, &w);
    t.sink(&output, &counts);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&app_id, &b, dir.path())
        .processing_guarantee(kstreams::kafka::ProcessingGuarantee::ExactlyOnce)
        .commit_interval(COMMIT);
    let app = Arc::new(App::new(t.build().expect("topology"), config).expect("app"));
    let latest = app
        .queries()
        .store_by_name::<String, u64>(STORE)
        .expect("the store");
    let committed = app
        .queries()
        .read_committed()
        .store_by_name::<String, u64>(STORE)
        .expect("the store");
    let run = spawn(app.clone());
    let key = "a".to_owned();
    // Running, restored (empty): the snapshot pinned when the task started answers.
    wait_for("the committed snapshot of the started task", DONE, || {
        committed.get(&key).is_ok()
    })
    .await;
    assert_eq!(committed.get(&key).expect("committed"), None);

    let producer = fast_producer(&b);
    for _ in 0..10 {
        send(&producer, &words, Some(0), key.as_bytes(), &[]);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    // Processed: the latest state has it at once, the committed one only after the commit.
    let mut ahead = 0;
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < DONE,
            "not committed: {:?}",
            app.status()
        );
        let c = committed.get(&key).expect("a committed answer");
        let l = latest.get(&key).expect("a latest answer");
        assert!(
            matches!(
                (c, l),
                (None, None) | (None, Some(10)) | (Some(10), Some(10))
            ),
            "committed {c:?}, latest {l:?}"
        );
        if (c, l) == (None, Some(10)) {
            ahead += 1;
        }
        if c == Some(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
    assert!(
        ahead > 0,
        "the committed answer lagged the processed state until the commit ({COMMIT:?} interval)"
    );
}

/// The windows a sliding count of time difference `d` has for one key's record timestamps
/// (distinct, at least `d`), derived from KIP-450's definition, not from the operator: each
/// record at `t` makes the window `[t - d, t]`, and a *right* window `[t + 1, t + 1 + d]` when
/// a later record lies within `d` after it; a window's count is the records in `[start, start +
/// d]` (both ends included).
fn sliding_windows(times: &[i64], d: i64) -> Vec<(i64, u64)> {
    let count = |start: i64| {
        times
            .iter()
            .filter(|t| (start..=start + d).contains(t))
            .count()
    };
    let mut starts = BTreeSet::new();
    for &t in times {
        starts.insert(t - d);
        if times.iter().any(|u| *u > t && *u <= t + d) {
            starts.insert(t + 1);
        }
    }
    starts.into_iter().map(|s| (s, count(s) as u64)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sliding_window_count_is_fetched_with_its_aggregates_and_window_bounds() {
    use kstreams::store::StoreKind;
    use kstreams::window::{self, SlidingWindows, Windowing, Windows};
    const DIFFERENCE: i64 = 1_000;
    const PARTITIONS: i32 = 2;
    let b = bootstrap();
    let app_id = unique("queries-sliding");
    let (clicks, output) = (format!("{app_id}-clicks"), format!("{app_id}-counts"));
    create_topics(&b, &[(&clicks, PARTITIONS), (&output, 1)]).await;
    // Three keys, irregular gaps (some within the time difference, some not), in time order.
    // Near now: a broker deletes records older than its retention (7 days) at its next check.
    let base = now_ms() - 600_000;
    let keys = ["alice", "bob", "carol"];
    let mut times: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut records = Vec::new();
    let mut t = base;
    for i in 0..60i64 {
        let key = keys[((i * i + i / 4) % 3) as usize];
        t += 100 + (i * i % 7) * 120;
        times.entry(key).or_default().push(t);
        let partition = partition_for_key(key.as_bytes(), PARTITIONS);
        records.push((
            key.as_bytes().to_vec(),
            b"c".to_vec(),
            partition,
            t,
            Vec::new(),
        ));
    }
    produce_with_metadata(&b, &clicks, &records);
    let ends = end_offsets(&b, &clicks, PARTITIONS);

    let sliding = SlidingWindows::new(
        Duration::from_millis(DIFFERENCE as u64),
        Duration::from_secs(3600),
    )
    .expect("windows");
    let mut builder = Topology::builder();
    let input = builder.source::<String, String>(&clicks);
    let counts = builder.add(
        window::count_with::<String>("click-slides", Windowing::new(Windows::Sliding(sliding)))
            .expect("count"),
        &input,
    );
    builder.sink(&output, &counts);
    let topology = builder.build().expect("topology");
    let size_ms = match topology.stores()[0].kind() {
        StoreKind::Window { size_ms, .. } => size_ms,
        other => panic!("a window store: {other:?}"),
    };
    assert_eq!(
        size_ms, DIFFERENCE,
        "a window ends at its start + the difference"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let app = Arc::new(App::new(topology, config(&app_id, &b, dir.path())).expect("app"));
    let run = spawn(app.clone());
    wait_for("the clicks processed", DONE, || {
        committed_to(&app.status(), &ends)
    })
    .await;
    let slides = app
        .queries()
        .window_store::<String, u64>("click-slides")
        .expect("the window store");
    for key in keys {
        let want = sliding_windows(&times[key], DIFFERENCE);
        let got = slides
            .fetch(&key.to_owned(), 0, i64::MAX)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(got, want, "{key}'s windows (start, count)");
        // A bounded fetch: the windows starting in [from, to] only.
        let (from, to) = (want[2].0, want[want.len() - 3].0);
        let inner = slides.fetch(&key.to_owned(), from, to).expect("fetch");
        let expected: Vec<(i64, u64)> = want
            .iter()
            .copied()
            .filter(|(s, _)| (from..=to).contains(s))
            .collect();
        assert_eq!(inner, expected, "{key} from {from} to {to}");
    }
    assert!(
        times.values().all(|t| t.len() > 5),
        "every key has windows of several records"
    );
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
}

/// Produces a tombstone (a null value) for `key`.
fn produce_tombstone(b: &str, topic: &str, key: &str) {
    let p = fast_producer(b);
    let mut r = BaseRecord::<[u8], [u8]>::to(topic).key(key.as_bytes());
    loop {
        match p.send(r) {
            Ok(()) => break,
            Err((_, back)) => {
                r = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    p.flush(Duration::from_secs(60)).expect("flush");
}

/// Polls `query.get(key)` until it answers `want` (the global thread applies updates shortly
/// after they are produced); panics after `DONE` with the last answer.
async fn wait_for_value(
    query: &kstreams::query::StoreQuery<String, String>,
    key: &str,
    want: Option<&str>,
) {
    let started = Instant::now();
    loop {
        let got = query.get(&key.to_owned());
        match &got {
            Ok(v) if v.as_deref() == want => return,
            Ok(_) => {}
            Err(e) => panic!("`{key}` while running: {e}"),
        }
        assert!(
            started.elapsed() < DONE,
            "`{key}` never became {want:?}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_table_is_queried_by_key_on_its_instance_and_over_http() {
    use kstreams::query::GLOBAL_PARTITION;
    use kstreams_tests::tables::Regions;
    let b = bootstrap();
    let app_id = unique("queries-global");
    let (global, input, output) = (
        format!("{app_id}-regions"),
        format!("{app_id}-users"),
        format!("{app_id}-output"),
    );
    create_topics(&b, &[(&global, 2), (&input, 2), (&output, 1)]).await;
    let customers: Vec<Input> = (0..10)
        .map(|c| {
            (
                Some(format!("c{c}").into_bytes()),
                format!("region{c}").into_bytes(),
                None,
            )
        })
        .collect();
    produce(&b, &global, &customers);
    produce_tombstone(&b, &global, "c9");
    let expected: Vec<(String, String)> = (0..9)
        .map(|c| (format!("c{c}"), format!("region{c}")))
        .collect();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let topology =
        kstreams_tests::tables::global_topology(&global, &input, &output).expect("topology");
    let dir = tempfile::tempdir().expect("tempdir");
    let app = Arc::new(
        App::new(
            topology,
            config(&app_id, &b, dir.path()).application_server(&addr),
        )
        .expect("app"),
    );
    let regions = app
        .queries()
        .store::<Regions<'static>>()
        .expect("the global store is in the registry");
    let server = kstreams::http::Server::new(&app)
        .store::<Regions<'static>>()
        .expect("served");
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let not_running = |answer: &std::result::Result<Option<String>, QueryError>| matches!(answer, Err(QueryError::Failed(e)) if e.to_string().contains("not running"));
    let before = regions.get(&"c3".to_owned());
    assert!(not_running(&before), "before the app runs: {before:?}");

    // From the start of the run: not running, restoring, then the whole restored table (never
    // an empty or partial answer).
    let run = spawn(app.clone());
    let started = Instant::now();
    let mut restoring = 0;
    loop {
        assert!(
            started.elapsed() < DONE,
            "never answered: {:?}",
            app.status()
        );
        match regions.get(&"c8".to_owned()) {
            Ok(v) => {
                assert_eq!(v.as_deref(), Some("region8"), "the first answer");
                break;
            }
            Err(QueryError::Restoring {
                store, partition, ..
            }) => {
                assert_eq!((store.as_str(), partition), ("regions", GLOBAL_PARTITION));
                restoring += 1;
            }
            other => assert!(
                not_running(&other) && restoring == 0,
                "while starting: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    eprintln!("{restoring} Restoring answers before the global table's first answer");
    assert_eq!(regions.all().expect("all"), expected);
    assert_eq!(regions.get(&"c9".to_owned()).expect("c9"), None, "deleted");
    assert_eq!(regions.get(&"nope".to_owned()).expect("nope"), None);
    let keys: Vec<String> = ["c2", "nope", "c5"].map(str::to_owned).to_vec();
    assert_eq!(
        regions.get_batch(&keys).expect("get_batch"),
        vec![Some("region2".to_owned()), None, Some("region5".to_owned())]
    );
    // Every instance has the whole global table: here, no partition, this instance's address.
    let q = app.queries();
    let m = tokio::task::spawn_blocking(move || q.metadata_for_key("regions", &"c3".to_owned()))
        .await
        .expect("join")
        .expect("metadata");
    assert_eq!(
        (m.partition, m.local, m.active.map(|h| h.to_string())),
        (GLOBAL_PARTITION, true, Some(addr.clone()))
    );

    // Over HTTP, as any store.
    let http = reqwest::Client::new();
    let get = |key: &str| {
        let (http, url) = (
            http.clone(),
            format!("http://{addr}/stores/regions/keys/{key}"),
        );
        async move {
            let r = http.get(&url).send().await.expect("request");
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.expect("JSON"))
        }
    };
    assert_eq!(
        get("c3").await,
        (200, serde_json::json!({"key": "c3", "value": "region3"}))
    );
    assert_eq!(get("c9").await.0, 404, "a deleted key");

    // Updates and deletes of the topic reach the answers (the global thread applies them).
    produce(
        &b,
        &global,
        &[(Some(b"c0".to_vec()), b"moved".to_vec(), None)],
    );
    wait_for_value(&regions, "c0", Some("moved")).await;
    produce_tombstone(&b, &global, "c1");
    wait_for_value(&regions, "c1", None).await;
    assert_eq!(
        get("c0").await,
        (200, serde_json::json!({"key": "c0", "value": "moved"}))
    );
    assert_eq!(get("c1").await.0, 404);

    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
    let after = regions.get(&"c3".to_owned());
    assert!(not_running(&after), "after the app stopped: {after:?}");
    let _ = stop_serving.send(());
    served.await.expect("join").expect("serve");
}
