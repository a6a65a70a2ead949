//! Helpers for the Kafka integration tests: the broker, topics, producing, reading, waiting.
//!
//! The broker is the one named by `KSTREAMS_BOOTSTRAP`; when that is set but unreachable, tests
//! fail. When it is unset, `scripts/kafka/kafka start` is run (idempotent) and its address used.
//! Nothing is ever skipped.

pub mod tables;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kstreams::kafka::{App, AppConfig, AppStatus};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn reachable(bootstrap: &str) -> Result<(), String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    c.fetch_metadata(None, Duration::from_secs(20))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Installs the tests' log subscriber once (`RUST_LOG`, default `warn`; the test writer).
fn init_test_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
}

/// The broker's bootstrap address (see the module docs). Panics when there is no usable broker.
pub fn bootstrap() -> String {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP
        .get_or_init(|| {
            init_test_logs();
            if let Ok(b) = std::env::var("KSTREAMS_BOOTSTRAP") {
                if let Err(e) = reachable(&b) {
                    panic!("KSTREAMS_BOOTSTRAP={b} is not reachable: {e}");
                }
                return b;
            }
            let script = repo_root().join("scripts/kafka/kafka");
            let out = Command::new(&script)
                .arg("start")
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            assert!(
                out.status.success(),
                "{} start failed:\n{}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let b = stdout
                .lines()
                .last()
                .map(str::trim)
                .unwrap_or_default()
                .to_owned();
            if let Err(e) = reachable(&b) {
                panic!(
                    "the broker started by {} at `{b}` is not reachable: {e}",
                    script.display()
                );
            }
            b
        })
        .clone()
}

/// The wall clock in milliseconds since the epoch: for record timestamps near now (a broker
/// deletes records older than its retention, 7 days, at its next retention check, which in a
/// long test run comes while a test still reads them).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A name no other test or run uses.
pub fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{prefix}-{}-{t}-{n}", std::process::id())
}

/// Creates topics (name, partitions) and waits until they are in metadata.
pub async fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    let with: Vec<(&str, i32, &[(&str, &str)])> =
        topics.iter().map(|(n, p)| (*n, *p, &[][..])).collect();
    create_topics_with_configs(bootstrap, &with).await;
}

/// Creates topics (name, partitions, topic configs) and waits until they are in metadata.
pub async fn create_topics_with_configs(bootstrap: &str, topics: &[(&str, i32, &[(&str, &str)])]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(n, p, configs)| {
            configs.iter().fold(
                NewTopic::new(n, *p, TopicReplication::Fixed(1)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let results = admin
        .create_topics(new.iter(), &AdminOptions::new())
        .await
        .expect("create topics");
    for r in results {
        r.expect("topic created");
    }
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(30);
    for (name, p, _) in topics {
        loop {
            let md = c.fetch_metadata(Some(name), Duration::from_secs(10));
            if md.is_ok_and(|m| {
                m.topics()
                    .first()
                    .is_some_and(|t| t.partitions().len() == *p as usize)
            }) {
                break;
            }
            assert!(Instant::now() < deadline, "topic {name} did not appear");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A record to produce: key, value, partition (`None`: murmur2 of the key).
pub type Input = (Option<Vec<u8>>, Vec<u8>, Option<i32>);

/// Produces records in order and waits for every acknowledgement.
pub fn produce(bootstrap: &str, topic: &str, records: &[Input]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (k, v, p) in records {
        let mut r = BaseRecord::<[u8], [u8]>::to(topic).payload(v.as_slice());
        if let Some(k) = k {
            r = r.key(k.as_slice());
        }
        if let Some(p) = p {
            r = r.partition(*p);
        }
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// Produces records with a timestamp and one header `h` each, to fixed partitions.
pub fn produce_with_metadata(
    bootstrap: &str,
    topic: &str,
    records: &[(Vec<u8>, Vec<u8>, i32, i64, Vec<u8>)],
) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (k, v, p, ts, h) in records {
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "h",
            value: Some(h.as_slice()),
        });
        let mut r = BaseRecord::<[u8], [u8]>::to(topic)
            .key(k.as_slice())
            .payload(v.as_slice())
            .partition(*p)
            .timestamp(*ts)
            .headers(headers);
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// A record read back with its metadata: partition, offset, key, value, timestamp, headers.
pub type FullOutput = (
    i32,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    i64,
    Vec<(String, Option<Vec<u8>>)>,
);

/// Every record of a topic with timestamps and headers, in partition then offset order.
pub fn read_all_full(bootstrap: &str, topic: &str, partitions: i32) -> Vec<FullOutput> {
    use rdkafka::message::Headers as _;
    read_with(bootstrap, topic, partitions, |m| {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        (
            m.partition(),
            m.offset(),
            m.key().map(<[u8]>::to_vec),
            m.payload().map(<[u8]>::to_vec),
            m.timestamp().to_millis().unwrap_or(-1),
            headers,
        )
    })
}

/// Produces lines round-robin over `partitions` partitions, without keys.
pub fn produce_lines(bootstrap: &str, topic: &str, partitions: i32, lines: &[String]) {
    let records: Vec<Input> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (None, l.as_bytes().to_vec(), Some(i as i32 % partitions)))
        .collect();
    produce(bootstrap, topic, &records);
}

/// The high watermark of every partition of a topic.
pub fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<(String, i32), i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            let (_, high) = watermarks(&c, topic, p);
            ((topic.to_owned(), p), high)
        })
        .collect()
}

/// A partition's low and high offsets, asked again for up to 30 s while the broker answers that
/// the partition has no leader yet (a topic just created); any other error panics. An empty
/// answer (low = high) is asked once more and taken when it repeats: librdkafka sends the low
/// and the high query at once, and when one of them fails and both answers are served together
/// the failure is lost and the other answer comes back as both offsets (the runtime's
/// `kafka::admin::watermarks` guards the same way).
fn watermarks(c: &BaseConsumer, topic: &str, p: i32) -> (i64, i64) {
    let began = std::time::Instant::now();
    let mut empty = None;
    loop {
        match c.fetch_watermarks(topic, p, Duration::from_secs(30)) {
            Ok((low, high)) if low == high && empty != Some(low) => empty = Some(low),
            Ok(w) => return w,
            Err(e)
                if began.elapsed() < Duration::from_secs(30)
                    && matches!(
                        e.rdkafka_error_code(),
                        Some(
                            rdkafka::types::RDKafkaErrorCode::NotLeaderForPartition
                                | rdkafka::types::RDKafkaErrorCode::LeaderNotAvailable
                                | rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
                        )
                    ) =>
            {
                empty = None;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("watermarks of `{topic}` partition {p}: {e}"),
        }
    }
}

/// A record read back: partition, offset, key, value.
pub type Output = (i32, i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Every record of a topic up to its current end, in partition then offset order.
pub fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Output> {
    read_with(bootstrap, topic, partitions, |m| {
        (
            m.partition(),
            m.offset(),
            m.key().map(<[u8]>::to_vec),
            m.payload().map(<[u8]>::to_vec),
        )
    })
}

fn read_with<T>(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    f: impl Fn(&rdkafka::message::BorrowedMessage<'_>) -> T,
) -> Vec<T> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, high) = watermarks(&c, topic, p);
        if high > 0 {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("tpl");
        }
    }
    let mut out: Vec<(i32, i64, T)> = Vec::new();
    if ends.is_empty() {
        return Vec::new();
    }
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        assert!(Instant::now() < deadline, "timed out reading {topic}");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("message");
            out.push((m.partition(), m.offset(), f(&m)));
            if ends
                .get(&m.partition())
                .is_some_and(|e| m.offset() + 1 >= *e)
            {
                ends.remove(&m.partition());
            }
        }
    }
    out.sort_by_key(|(p, o, _)| (*p, *o));
    out.into_iter().map(|(_, _, t)| t).collect()
}

/// The last value of every key as a big-endian u64 (the final count of every word).
pub fn last_counts(records: &[Output]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for (_, _, k, v) in records {
        let k = String::from_utf8(k.clone().unwrap_or_default()).expect("utf-8 key");
        let v = u64::from_be_bytes(
            v.as_deref()
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .expect("8-byte count"),
        );
        m.insert(k, v);
    }
    m
}

/// Counts words without kstreams: lowercase, split on non-alphanumeric chars, drop empties.
pub fn independent_count<S: AsRef<str>>(lines: &[S]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in lines {
        let mut word = String::new();
        for c in l.as_ref().chars().chain(std::iter::once(' ')) {
            if c.is_alphanumeric() {
                word.push(c);
            } else if !word.is_empty() {
                *m.entry(std::mem::take(&mut word).to_lowercase())
                    .or_insert(0) += 1;
            }
        }
    }
    m
}

/// Deterministic text: `n` lines of words from a small vocabulary, with punctuation and case.
pub fn sample_lines(seed: u64, n: usize) -> Vec<String> {
    const VOCAB: &[&str] = &[
        "the",
        "Kafka",
        "stream",
        "batch",
        "LMDB",
        "state",
        "word",
        "count",
        "Straße",
        "über",
        "42",
        "log",
        "offset",
        "commit",
        "a",
        "of",
        "to",
        "in",
        "and",
        "partition",
    ];
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let words = 1 + next() % 12;
            let mut line = String::new();
            for i in 0..words {
                if i > 0 {
                    line.push_str([" ", ", ", "; ", " -- ", "!"][(next() % 5) as usize]);
                }
                let extra = next() % 40;
                let w = VOCAB[(next() % VOCAB.len() as u64) as usize];
                line.push_str(w);
                if extra == 0 {
                    line.push_str(&format!("{}", next() % 1000));
                }
            }
            line
        })
        .collect()
}

/// The config every test app uses: fast commits, no Ctrl-C handler.
pub fn config(app_id: &str, bootstrap: &str, state_dir: &std::path::Path) -> AppConfig {
    AppConfig::new(app_id)
        .bootstrap_servers(bootstrap)
        .state_dir(state_dir)
        .commit_interval(Duration::from_millis(100))
        .startup_timeout(Duration::from_secs(30))
        .handle_ctrl_c(false)
}

/// Polls `f` until it returns true; panics with `what` after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the status shows every offset up to `ends` committed.
pub fn committed_to(status: &AppStatus, ends: &BTreeMap<(String, i32), i64>) -> bool {
    ends.iter()
        .all(|(tp, end)| *end == 0 || status.committed.get(tp).is_some_and(|c| c >= end))
}

/// The offsets group `group` committed for `partitions` (`None` if they cannot be read).
pub fn group_committed_offsets<'a>(
    bootstrap: &str,
    group: &str,
    partitions: impl IntoIterator<Item = (&'a str, i32)>,
) -> Option<TopicPartitionList> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (t, p) in partitions {
        tpl.add_partition(t, p);
    }
    c.committed_offsets(tpl, Duration::from_secs(10)).ok()
}

/// Whether the offsets committed in the group (by any instance) reach `ends`.
pub fn group_committed_to(
    bootstrap: &str,
    group: &str,
    ends: &BTreeMap<(String, i32), i64>,
) -> bool {
    let partitions = ends.keys().map(|(t, p)| (t.as_str(), *p));
    let Some(committed) = group_committed_offsets(bootstrap, group, partitions) else {
        return false;
    };
    ends.iter().all(|((t, p), end)| {
        *end == 0
            || committed
                .find_partition(t, *p)
                .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= *end))
    })
}

/// The state of consumer group `group` (`Stable`, `PreparingRebalance`, ...) and how many
/// members it has now (`("", 0)` if it cannot be read).
pub fn group_state(bootstrap: &str, group: &str) -> (String, usize) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    c.fetch_group_list(Some(group), Duration::from_secs(10))
        .ok()
        .and_then(|l| {
            l.groups()
                .first()
                .map(|g| (g.state().to_owned(), g.members().len()))
        })
        .unwrap_or_default()
}

/// Runs an app on a tokio task; returns the join handle.
pub fn spawn(app: std::sync::Arc<App>) -> tokio::task::JoinHandle<kstreams::Result<()>> {
    tokio::spawn(async move { app.run().await })
}

/// Runs `app` until it has committed the end offsets (as of now) of each of `topics` (name,
/// partition count), in turn, then shuts it down and waits for the run, which must end cleanly.
pub async fn run_until_committed(
    app: &std::sync::Arc<App>,
    bootstrap: &str,
    topics: &[(&str, i32)],
    within: Duration,
) {
    let run = spawn(app.clone());
    for (topic, partitions) in topics {
        let ends = end_offsets(bootstrap, topic, *partitions);
        wait_for(&format!("`{topic}` committed"), within, || {
            committed_to(&app.status(), &ends)
        })
        .await;
    }
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
}

/// Topic names and app id of one word-count run.
#[derive(Debug, Clone)]
pub struct WordCountTopics {
    /// The application id.
    pub app_id: String,
    /// Lines.
    pub input: String,
    /// Words keyed by word.
    pub words: String,
    /// Counts.
    pub output: String,
    /// Partitions of each.
    pub partitions: i32,
}

impl WordCountTopics {
    /// Fresh names; creates the topics.
    pub async fn create(bootstrap: &str, prefix: &str, partitions: i32) -> Self {
        let app_id = unique(prefix);
        let t = WordCountTopics {
            input: format!("{app_id}-lines"),
            words: format!("{app_id}-words"),
            output: format!("{app_id}-counts"),
            app_id,
            partitions,
        };
        create_topics(
            bootstrap,
            &[
                (&t.input, partitions),
                (&t.words, partitions),
                (&t.output, partitions),
            ],
        )
        .await;
        t
    }

    /// The word-count topology over these topics.
    pub fn topology(&self) -> kstreams::Topology {
        kstreams_examples::wordcount::topology(&self.input, &self.words, &self.output)
            .expect("topology")
    }

    /// Waits until the lines and then the words are committed in the group.
    pub async fn wait_done(&self, bootstrap: &str, timeout: Duration) {
        let lines = end_offsets(bootstrap, &self.input, self.partitions);
        wait_for("lines committed", timeout, || {
            group_committed_to(bootstrap, &self.app_id, &lines)
        })
        .await;
        let words = end_offsets(bootstrap, &self.words, self.partitions);
        wait_for("words committed", timeout, || {
            group_committed_to(bootstrap, &self.app_id, &words)
        })
        .await;
    }
}

/// Every committed record of a topic (`isolation.level=read_committed`: records of aborted or
/// open transactions and transaction markers are skipped), in partition then offset order; reads
/// each partition to its end.
pub fn read_all_committed(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Output> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut open: std::collections::BTreeSet<i32> = (0..partitions).collect();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !open.is_empty() {
        assert!(Instant::now() < deadline, "timed out reading {topic}");
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                m.partition(),
                m.offset(),
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
            )),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out.sort_by_key(|(p, o, _, _)| (*p, *o));
    out
}

/// The word-count app as a separate process (`src/bin/wordcount_app.rs`), to be killed.
#[derive(Debug)]
pub struct AppProcess(pub std::process::Child);

impl AppProcess {
    /// Starts `wordcount_app` (path from the integration test's `env!("CARGO_BIN_EXE_wordcount_app")`).
    pub fn start(
        exe: &str,
        bootstrap: &str,
        t: &WordCountTopics,
        state: &std::path::Path,
        guarantee: &str,
        batch: usize,
    ) -> Self {
        Self::start_with(
            exe,
            bootstrap,
            t,
            state,
            guarantee,
            batch,
            &ProcessOptions::default(),
        )
    }

    /// SIGKILL: no flush, no commit, no cleanup.
    pub fn kill(mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("wait");
    }

    /// SIGINT (graceful stop); asserts a clean exit within 60 s.
    pub fn stop(mut self) {
        let pid = self.0.id().to_string();
        let ok = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill -INT");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                assert!(status.success(), "wordcount_app exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "wordcount_app did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGINT (graceful stop) of a process started with `capture_stderr`; asserts a clean exit
    /// within 60 s and returns the WARN and ERROR lines of its stderr ([`loud_lines`]).
    pub fn stop_collecting_loud_lines(self) -> Vec<String> {
        let ok = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status()
            .expect("kill -INT");
        assert!(ok.success());
        let (status, stderr) = self.wait_exit(Duration::from_secs(60));
        assert!(status.success(), "wordcount_app: {status}\n{stderr}");
        loud_lines(&stderr)
    }

    /// Whether it exited already.
    pub fn exited(&mut self) -> bool {
        self.0.try_wait().ok().flatten().is_some()
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sum of a topic's high watermarks.
pub fn total_end(bootstrap: &str, topic: &str, partitions: i32) -> i64 {
    end_offsets(bootstrap, topic, partitions).values().sum()
}

/// At-least-once after a crash: every word is there, none counted below the truth, and none more
/// than three times (state and the repartition topic may each hold a word again).
pub fn assert_at_least_once_counts(got: &BTreeMap<String, u64>, want: &BTreeMap<String, u64>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (word, n) in want {
        let g = got[word];
        assert!(
            *n <= g && g <= 3 * n,
            "`{word}`: {g} counted, {n} in the input"
        );
    }
}

/// How to start `wordcount_app` beyond its arguments (see [`AppProcess::start_with`]).
#[derive(Debug, Default, Clone)]
pub struct ProcessOptions {
    /// Environment variables (the `KSTREAMS_TEST_*` knobs of `wordcount_app`).
    pub env: Vec<(String, String)>,
    /// `RLIMIT_FSIZE` in bytes for the child, with `SIGXFSZ` ignored, so that a write or an
    /// `fallocate` past it fails with `EFBIG` (a full disk, simulated) instead of killing it.
    pub file_size_limit: Option<u64>,
    /// Pipe stderr, to be read by [`AppProcess::wait_exit`] (otherwise inherited).
    pub capture_stderr: bool,
    /// The child's working directory (otherwise the test's), for relative state directories.
    pub current_dir: Option<std::path::PathBuf>,
}

impl ProcessOptions {
    /// Adds an environment variable.
    #[must_use]
    pub fn env(mut self, name: &str, value: impl ToString) -> Self {
        self.env.push((name.to_owned(), value.to_string()));
        self
    }

    /// Runs the child in `dir`.
    #[must_use]
    pub fn current_dir(mut self, dir: &std::path::Path) -> Self {
        self.current_dir = Some(dir.to_owned());
        self
    }

    /// Writes the app's status to `path` (`KSTREAMS_TEST_STATUS_FILE`).
    #[must_use]
    pub fn status_file(self, path: &std::path::Path) -> Self {
        self.env("KSTREAMS_TEST_STATUS_FILE", path.display())
    }
}

impl AppProcess {
    /// Starts `wordcount_app` as [`AppProcess::start`] does, with `options`.
    pub fn start_with(
        exe: &str,
        bootstrap: &str,
        t: &WordCountTopics,
        state: &std::path::Path,
        guarantee: &str,
        batch: usize,
        options: &ProcessOptions,
    ) -> Self {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(exe);
        cmd.args([
            bootstrap,
            &t.app_id,
            &t.input,
            &t.words,
            &t.output,
            &state.to_string_lossy(),
            guarantee,
            &batch.to_string(),
        ])
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null());
        if options.capture_stderr {
            cmd.stderr(std::process::Stdio::piped());
        }
        if let Some(dir) = &options.current_dir {
            cmd.current_dir(dir);
        }
        if let Some(limit) = options.file_size_limit {
            let limit = libc::rlim_t::try_from(limit).expect("limit fits rlim_t");
            // SAFETY: between fork and exec only async-signal-safe calls: `signal` and
            // `setrlimit`, on plain values.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                        return Err(std::io::Error::last_os_error());
                    }
                    let rl = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        AppProcess(cmd.spawn().expect("start wordcount_app"))
    }

    /// Waits (at most `timeout`) for the process to exit by itself; returns its exit status and
    /// its stderr (empty unless captured).
    pub fn wait_exit(mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        use std::io::Read;
        let reader = self.0.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = e.read_to_string(&mut s);
                s
            })
        });
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "wordcount_app did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = reader
            .map(|r| r.join().expect("stderr reader"))
            .unwrap_or_default();
        (status, stderr)
    }
}

/// The lines of a process's stderr that `tracing-subscriber` logged at WARN or ERROR level
/// (`<timestamp> <LEVEL> ...`, ANSI colours stripped).
pub fn loud_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .map(|l| {
            let mut out = String::new();
            let mut chars = l.chars();
            while let Some(c) = chars.next() {
                if c == '\u{1b}' {
                    // An `ESC [ ... m` colour sequence.
                    for c in chars.by_ref() {
                        if c == 'm' {
                            break;
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            out
        })
        .filter(|l| matches!(l.split_whitespace().nth(1), Some("WARN" | "ERROR")))
        .collect()
}

/// The status `wordcount_app` writes to `KSTREAMS_TEST_STATUS_FILE`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessStatus {
    /// Assigned input partitions.
    pub assigned: std::collections::BTreeSet<(String, i32)>,
    /// Input records processed.
    pub processed: u64,
    /// Changelog records restored.
    pub restored: u64,
    /// Commits made.
    pub commits: u64,
}

/// Reads a status file; `None` until the first one is written.
pub fn read_status(path: &std::path::Path) -> Option<ProcessStatus> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut s = ProcessStatus::default();
    for line in text.lines() {
        let (name, value) = line.split_once('=')?;
        match name {
            "assigned" => {
                for tp in value.split(',').filter(|v| !v.is_empty()) {
                    let (t, p) = tp.rsplit_once(':')?;
                    s.assigned.insert((t.to_owned(), p.parse().ok()?));
                }
            }
            "processed" => s.processed = value.parse().ok()?,
            "restored" => s.restored = value.parse().ok()?,
            "commits" => s.commits = value.parse().ok()?,
            _ => {}
        }
    }
    Some(s)
}

/// Exactly-once word count: the committed counts equal `want`, the committed output holds one
/// update per input word, and per word the updates are 1, 2, ..., n in order; the repartition
/// topic, read committed, holds each word occurrence once.
pub fn assert_exactly_once_word_count(
    bootstrap: &str,
    t: &WordCountTopics,
    want: &BTreeMap<String, u64>,
) {
    let words: u64 = want.values().sum();
    let out = read_all_committed(bootstrap, &t.output, t.partitions);
    assert_eq!(&last_counts(&out), want, "final counts equal the truth");
    assert_eq!(
        out.len() as u64,
        words,
        "one committed update per input word: no duplicates"
    );
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for (p, o, k, v) in &out {
        let k = String::from_utf8(k.clone().unwrap_or_default()).expect("utf-8");
        let v = u64::from_be_bytes(
            v.as_deref()
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .expect("u64"),
        );
        let prev = seen.entry(k.clone()).or_insert(0);
        assert_eq!(v, *prev + 1, "`{k}` at partition {p} offset {o}");
        *prev = v;
    }
    let words_out = read_all_committed(bootstrap, &t.words, t.partitions);
    assert_eq!(
        words_out.len() as u64,
        words,
        "no duplicate in the repartition topic"
    );
}

/// Exactly-once: waits until the group committed every line and the committed output holds
/// `words` updates (transactional topics end in a marker no consumer commits past, so the
/// repartition topic's committed offset is not waited on).
pub async fn wait_exactly_once_done(
    bootstrap: &str,
    t: &WordCountTopics,
    words: u64,
    timeout: Duration,
) {
    let lines_end = end_offsets(bootstrap, &t.input, t.partitions);
    wait_for("lines committed", timeout, || {
        group_committed_to(bootstrap, &t.app_id, &lines_end)
    })
    .await;
    wait_for("every update committed", timeout, || {
        read_all_committed(bootstrap, &t.output, t.partitions).len() as u64 >= words
    })
    .await;
}

/// The SASL_SSL listener of the test broker (`scripts/kafka/kafka` gives the broker one, with a
/// CA made at start and a test user for SASL PLAIN and SCRAM-SHA-256).
#[derive(Debug, Clone)]
pub struct SaslSsl {
    /// `127.0.0.1:PORT` of the SASL_SSL listener.
    pub bootstrap: String,
    /// The CA that signed the broker's certificate (PEM), for `ssl.ca.location`.
    pub ca_location: PathBuf,
    /// The test user.
    pub username: String,
    /// The test user's password.
    pub password: String,
}

impl SaslSsl {
    /// The client properties for this listener with SASL PLAIN as `user` with `password`:
    /// `security.protocol`, `sasl.mechanism`, `sasl.username`, `sasl.password`,
    /// `ssl.ca.location`.
    pub fn properties(&self, user: &str, password: &str) -> Vec<(&'static str, String)> {
        vec![
            ("security.protocol", "SASL_SSL".to_owned()),
            ("sasl.mechanism", "PLAIN".to_owned()),
            ("sasl.username", user.to_owned()),
            ("sasl.password", password.to_owned()),
            ("ssl.ca.location", self.ca_location.display().to_string()),
        ]
    }

    /// `config` pointed at this listener (bootstrap servers and every property for every client)
    /// as the test user with `password`.
    pub fn apply(&self, config: AppConfig, password: &str) -> AppConfig {
        self.properties(&self.username, password)
            .into_iter()
            .fold(config.bootstrap_servers(&self.bootstrap), |c, (k, v)| {
                c.property(k, v)
            })
    }
}

/// Where `scripts/kafka/kafka` keeps the state of the broker it runs: `$KAFKA_HOME/run`, with
/// `KAFKA_HOME` defaulting to `<repo>/.kafka` as in the script.
pub fn kafka_run_dir() -> PathBuf {
    std::env::var_os("KAFKA_HOME")
        .filter(|h| !h.is_empty())
        .map_or_else(|| repo_root().join(".kafka"), PathBuf::from)
        .join("run")
}

/// The SASL_SSL details of the broker the tests use ([`bootstrap`]), read from the files
/// `scripts/kafka/kafka start` writes into [`kafka_run_dir`]. Panics (never skips) when they are
/// missing, belong to another broker than [`bootstrap`], or the listener does not answer.
pub fn sasl_ssl() -> SaslSsl {
    let plain = bootstrap();
    let run = kafka_run_dir();
    let read = |name: &str| -> String {
        let path = run.join(name);
        let s = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the broker at {plain} has no SASL_SSL details: cannot read {} ({e}). Start it \
                 with `scripts/kafka/kafka start` (it adds a SASL_SSL listener) and set \
                 KAFKA_HOME to its home when that is not <repo>/.kafka",
                path.display()
            )
        });
        s.trim().to_owned()
    };
    let run_plain = read("bootstrap");
    assert_eq!(
        run_plain,
        plain,
        "{} belongs to another broker than the one the tests use ({plain}); set KAFKA_HOME to \
         the home of the broker at {plain}",
        run.display()
    );
    let details = SaslSsl {
        bootstrap: read("bootstrap-sasl-ssl"),
        ca_location: run.join("ssl/ca.pem"),
        username: read("sasl-user"),
        password: read("sasl-password"),
    };
    assert!(
        details.ca_location.is_file(),
        "no CA file at {}",
        details.ca_location.display()
    );
    assert!(
        !details.username.is_empty() && !details.password.is_empty(),
        "empty SASL credentials in {}",
        run.display()
    );
    std::net::TcpStream::connect_timeout(
        &details
            .bootstrap
            .parse()
            .unwrap_or_else(|e| panic!("bad SASL_SSL address `{}`: {e}", details.bootstrap)),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| {
        panic!(
            "the SASL_SSL listener at {} does not answer: {e}",
            details.bootstrap
        )
    });
    details
}

/// A broker of the test's own (`scripts/kafka/kafka` in a temporary `KAFKA_HOME`) that the test
/// may stop and start again, for outages: the shared broker must never be stopped. It borrows the
/// jars of the default instance through `KAFKA_LIB` (`KSTREAMS_KAFKA_LIB` when set, else
/// `<repo>/.kafka/lib`, fetched there first if missing: no copy per broker) and runs with a small
/// heap. Dropping it stops it and deletes its data.
#[derive(Debug)]
pub struct PrivateBroker {
    home: tempfile::TempDir,
    lib: PathBuf,
    bootstrap: String,
}

impl PrivateBroker {
    /// Starts a fresh broker on free ports; panics (naming the script's output) if it cannot.
    /// Also installs the tests' log subscriber (`RUST_LOG`, default `warn`), as [`bootstrap`].
    pub fn start() -> Self {
        init_test_logs();
        let lib = match std::env::var_os("KSTREAMS_KAFKA_LIB") {
            Some(lib) => PathBuf::from(lib),
            None => {
                // Idempotent: a no-op once the default instance's jars are there.
                let out = Command::new(repo_root().join("scripts/kafka/kafka"))
                    .arg("fetch")
                    .env_remove("KAFKA_HOME")
                    .env_remove("KAFKA_LIB")
                    .output()
                    .expect("run scripts/kafka/kafka fetch");
                assert!(
                    out.status.success(),
                    "scripts/kafka/kafka fetch failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                repo_root().join(".kafka/lib")
            }
        };
        let home = tempfile::Builder::new()
            .prefix("kstreams-private-broker-")
            .tempdir()
            .expect("tempdir for KAFKA_HOME");
        let mut broker = PrivateBroker {
            home,
            lib,
            bootstrap: String::new(),
        };
        broker.bootstrap = broker.script_start();
        broker
    }

    fn script(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new(repo_root().join("scripts/kafka/kafka"))
            .args(args)
            .env("KAFKA_HOME", self.home.path())
            .env("KAFKA_LIB", &self.lib)
            .env("KAFKA_HEAP_OPTS", "-Xms128m -Xmx512m")
            .output()
            .unwrap_or_else(|e| panic!("cannot run scripts/kafka/kafka {args:?}: {e}"));
        assert!(
            out.status.success(),
            "scripts/kafka/kafka {args:?} (KAFKA_HOME={}) failed:\n{}",
            self.home.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn script_start(&self) -> String {
        let out = self.script(&["start"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    }

    /// Its bootstrap address (`127.0.0.1:PORT`), the same before and after an outage.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Kills the broker (SIGKILL: a crash, as a power cut or an OOM kill) and keeps its data,
    /// config and port. Not a graceful stop: a single broker's controlled shutdown first drops the
    /// leadership of every partition, and a transaction completing at that moment has its markers
    /// skipped by the broker's transaction coordinator and hangs (a Kafka broker defect that no
    /// client can repair; see `scripts/kafka/kafka`'s `stop --kill`).
    pub fn kill_keeping_data(&self) {
        self.script(&["stop", "--kill", "--keep-data"]);
    }

    /// The lines of the broker's log (`run/broker.log`, every run of this broker) that contain
    /// every one of `needles`; none if the log cannot be read.
    pub fn log_lines_with(&self, needles: &[&str]) -> Vec<String> {
        std::fs::read_to_string(self.home.path().join("run/broker.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .collect()
    }

    /// Starts the stopped broker again on its data and port; returns once it serves.
    pub fn start_again(&self) {
        let b = self.script_start();
        assert_eq!(b, self.bootstrap, "the broker came back on another address");
    }
}

impl Drop for PrivateBroker {
    /// Stops the broker and deletes its home, except after a failed test: then the home (with
    /// `run/broker.log`) stays for a post-mortem and its path is printed.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.home.disable_cleanup(true);
            eprintln!(
                "private broker kept for a post-mortem: {}",
                self.home.path().join("run/broker.log").display()
            );
        }
        let _ = Command::new(repo_root().join("scripts/kafka/kafka"))
            .arg("stop")
            .env("KAFKA_HOME", self.home.path())
            .env("KAFKA_LIB", &self.lib)
            .output();
    }
}

/// A small deterministic generator (xorshift64*), so the input never changes with a crate's
/// version.
#[derive(Debug, Clone)]
pub struct Gen(pub u64);

impl Gen {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The class path of `bench/java`'s jar and its libraries, for the differential tests against
/// Java Kafka Streams: built once per test binary with `mvn` when missing or older than its
/// sources (offline once Maven's cache has Kafka Streams); panics naming the command that builds
/// it when it cannot.
pub fn java_classpath() -> String {
    static BUILT: Mutex<Option<String>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cp) = built.as_ref() {
        return cp.clone();
    }
    let dir = repo_root().join("bench/java");
    let jar = dir.join("target/kstreams-bench.jar");
    let lib = dir.join("target/lib");
    let build = format!("mvn -q -B -f {} package", dir.join("pom.xml").display());
    if !jar.exists()
        || !lib.is_dir()
        || newest(&dir.join("src")).max(mtime(&dir.join("pom.xml"))) > mtime(&jar)
    {
        let out = Command::new("mvn")
            .args(["-q", "-B", "-f"])
            .arg(dir.join("pom.xml"))
            .arg("package")
            .output();
        match out {
            Ok(o) if o.status.success() && jar.exists() => {}
            Ok(o) => panic!(
                "building the Java side failed (`{build}`):\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!(
                "the Java side ({}) is missing or older than its sources and `mvn` cannot run \
                 ({e}): build it with `{build}` (or `bench/build`)",
                jar.display()
            ),
        }
    }
    let cp = format!("{}:{}/*", jar.display(), lib.display());
    *built = Some(cp.clone());
    cp
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or(UNIX_EPOCH)
}

fn newest(dir: &Path) -> SystemTime {
    let mut t = UNIX_EPOCH;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            t = t.max(if p.is_dir() { newest(&p) } else { mtime(&p) });
        }
    }
    t
}

/// A record to produce with [`produce_timestamped`]: key, value (`None`: a tombstone), timestamp.
pub type Timestamped = (Vec<u8>, Option<Vec<u8>>, i64);

/// Produces records in order, partitioned by key as the Java client does (murmur2), with their
/// timestamps (null values for `None`), and waits for every acknowledgement.
pub fn produce_timestamped(bootstrap: &str, topic: &str, records: &[Timestamped]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (k, v, ts) in records {
        let mut r = BaseRecord::<[u8], [u8]>::to(topic)
            .key(k.as_slice())
            .timestamp(*ts);
        if let Some(v) = v {
            r = r.payload(v.as_slice());
        }
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}
