//! The application's configuration.
//!
//! Owns: [`AppConfig`] (a builder), [`ProcessingGuarantee`] and the translation of the config into
//! librdkafka properties for the consumer, the producer, the restore consumer and the admin client.
//! Properties the runtime must control (group id, offset commits, the partitioner) are rejected
//! with a clear error instead of being silently overridden. `Debug` redacts secrets.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;

use crate::error::{Error, Result};
use crate::policy::ErrorPolicies;
use crate::store::LmdbOptions;

/// What the runtime promises about input records and their effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProcessingGuarantee {
    /// Every input record's outputs and state changes are acknowledged before its offset is
    /// committed; after a crash, records since the last commit are processed again.
    #[default]
    AtLeastOnce,
    /// Outputs, changelog writes and offsets commit in one Kafka transaction (EOS v2, KIP-447:
    /// offsets are sent with the consumer's group metadata, so a zombie of an older group
    /// generation is fenced); inputs and changelogs are read `read_committed`; after a crash,
    /// local state is trusted only if its input position equals the committed offsets, otherwise
    /// it is rebuilt from the committed changelog. Needs a real cluster: the embedded mock
    /// cluster does not apply transactions, so [`App::new`](super::App::new) rejects it there.
    ExactlyOnce,
}

/// Properties the runtime sets itself; setting them is an error.
const RESERVED: &[(&str, &str)] = &[
    ("group.id", "the group id is the application id"),
    (
        "enable.auto.commit",
        "the runtime commits offsets itself, after outputs are acknowledged",
    ),
    (
        "enable.auto.offset.store",
        "the runtime commits offsets itself, after outputs are acknowledged",
    ),
    (
        "partitioner",
        "keys are partitioned with murmur2, as the Java clients do",
    ),
    (
        "transactional.id",
        "transactions are driven by the processing guarantee",
    ),
    (
        "isolation.level",
        "it is set by `processing_guarantee` (`read_committed` under exactly-once, which \
         `read_uncommitted` would silently break)",
    ),
    (
        "enable.partition.eof",
        "the runtime sets it per consumer (the restore consumer needs it to find the end of a \
         changelog; the group consumer must not see it)",
    ),
    (
        "transaction.timeout.ms",
        "it is set by `processing_guarantee` (under exactly-once 10 s, or twice the \
         `commit_interval` when that is longer, up to the broker's default maximum of 15 min; \
         `delivery_timeout` is clamped to it)",
    ),
];

/// The largest value of every [`Duration`] setting of [`AppConfig`]: librdkafka takes timeouts
/// as `int` milliseconds, so `i32::MAX` ms (about 24.8 days) is the longest any of them can mean,
/// and bounded settings keep every `Instant + setting` deadline of the runtime from overflowing.
pub const MAX_DURATION: Duration = Duration::from_millis(i32::MAX as u64);

/// The shortest `transaction.timeout.ms` under exactly-once (see
/// [`AppConfig::transaction_timeout`]).
const EOS_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker's default `transaction.max.timeout.ms`: the longest transaction timeout a broker
/// accepts unless it is configured otherwise.
pub(crate) const BROKER_MAX_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How much longer than a commit interval a transaction's timeout is at least, once twice the
/// interval would pass [`BROKER_MAX_TRANSACTION_TIMEOUT`].
const TRANSACTION_TIMEOUT_MARGIN: Duration = Duration::from_secs(60);

/// Consumer defaults the runtime sets for the group consumer and the restore consumer (librdkafka's
/// own defaults otherwise); a [`consumer_property`](AppConfig::consumer_property) or
/// [`property`](AppConfig::property) of the same name overrides them.
///
/// - `fetch.queue.backoff.ms=10`: how long the fetcher waits before the next fetch of a partition
///   whose local queue is past its thresholds. librdkafka's 1000 ms throttled every figure of the
///   first benchmark runs (issue #19: kstreams-map 135.9k records/s, 394k at 0 ms; count 128k,
///   232k at 0 ms). At 0 ms librdkafka's broker thread busy-loops while a queue is full (about
///   half of kstreams-map's CPU, in `rd_kafka_toppar_fetch_decide`); at 10 ms it sleeps.
///   Against 0 ms: kstreams-map 1.28x the records per second at 0.90x the CPU per record,
///   kstreams-count 1.49x at 0.63x (1, 5 and 50 ms measured alike: 1.16-1.29x and 0.80-0.83x for
///   map).
/// - `queued.min.messages=20000` (librdkafka: 100,000): the records librdkafka keeps prefetched
///   per partition. With the 10 ms backoff: peak RSS of kstreams-map 91 → 50 MiB and of count
///   100 → 72 MiB, and map 1.31x the records per second at 0.84x the CPU of the 0 ms default,
///   count 1.33x at 0.66x, count under exactly-once 1.21x at 0.45x (108 → 74 MiB), the raw
///   rdkafka loop 1.45x at 0.72x (50,000: 65 and 76 MiB, about the same speed).
///
/// How measured: A/B runs of `kafka_bench --exit-at-end` (1,000,000 records, 4 partitions, 100,000
/// keys, commit every 200 ms), the variants interleaved in 5 or 6 rounds, medians of the
/// per-round ratios; on a shared 2-core machine whose other processes used about 55-60% of its
/// CPU, so effects under about 10% are noise there. Measured and not kept:
/// - `fetch.min.bytes=65536` with `fetch.wait.max.ms=100` (librdkafka: 1 byte, 500 ms): map
///   1.02-1.21x in four sweeps, count 0.85-1.05x: noise; with records waiting on the broker a
///   fetch is full anyway, and on a quiet topic it would add up to 100 ms of latency.
/// - `queued.min.messages` 20,000 or 10,000 with the 0 ms backoff: map 0.91x and 0.69x (a
///   smaller queue is past its threshold more often: more busy-looping).
/// - `fetch.max.bytes=100 MiB` with `max.partition.fetch.bytes=4 MiB`: peak RSS 121 MiB;
///   `queued.max.messages.kbytes=16384`: no change.
pub const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("fetch.queue.backoff.ms", "10"),
    ("queued.min.messages", "20000"),
];

/// Producer defaults the runtime sets for its producers (librdkafka's own defaults otherwise); a
/// [`producer_property`](AppConfig::producer_property) or [`property`](AppConfig::property) of
/// the same name overrides them. They hold under exactly-once too (transactions need
/// idempotence, which the runtime sets, and accept any linger or batch size).
///
/// - `linger.ms=5`: how long the producer waits to fill a batch. Pinned at librdkafka's default
///   since 2.0, the best of the values measured (issue #19, A/B runs of kstreams-map): 0 moved
///   0.90x the records per second with 1.7x the broker's CPU per record (many small batches),
///   20 no more than 5.
///
/// Not kept, because they did not measurably help: `batch.num.messages` 2,000 or 50,000 with
/// `batch.size` 4 MB (librdkafka: 10,000 and 1 MB; both 0.92-0.97x), `compression.type=lz4`
/// (0.92x the CPU per record, records/s unchanged within the noise, on the benchmark's very
/// compressible values: a gain that depends on the data).
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[("linger.ms", "5")];

/// The configuration of an [`App`](super::App): the counterpart of Kafka Streams' `StreamsConfig`.
///
/// ```
/// use kstreams::kafka::AppConfig;
/// use std::time::Duration;
/// let config = AppConfig::new("word-count")
///     .bootstrap_servers("127.0.0.1:9092")
///     .state_dir("/tmp/kstreams-state")
///     .batch_max_records(5000)
///     .commit_interval(Duration::from_millis(500))
///     .property("security.protocol", "SASL_SSL")
///     .property("sasl.mechanism", "PLAIN")
///     .property("sasl.username", "alice")
///     .property("sasl.password", "hunter2")
///     .property("ssl.ca.location", "/etc/kafka/ca.pem")
///     .consumer_property("ssl.key.password", "hunter3")
///     .producer_property("sasl.jaas.config", "hunter4");
/// let shown = format!("{config:?}");
/// assert!(!shown.contains("hunter"));
/// assert!(shown.contains(r#""sasl.password": "[redacted]""#));
/// assert!(shown.contains("alice") && shown.contains("/etc/kafka/ca.pem"));
/// ```
///
/// # Secrets
/// SSL and SASL settings are librdkafka properties ([`property`](Self::property) for every
/// client). `Debug` shows every property name but replaces the values of secret ones
/// (passwords, passphrases, secrets, private keys, tokens, `sasl.jaas.config`,
/// `sasl.oauthbearer.config`) with `[redacted]`; the runtime never logs or puts properties into
/// error messages.
#[derive(Clone)]
pub struct AppConfig {
    pub(crate) application_id: String,
    pub(crate) bootstrap_servers: Option<String>,
    pub(crate) state_dir: PathBuf,
    pub(crate) batch_max_records: usize,
    pub(crate) batch_max_wait: Duration,
    pub(crate) commit_interval: Duration,
    pub(crate) guarantee: ProcessingGuarantee,
    pub(crate) properties: BTreeMap<String, String>,
    pub(crate) consumer_properties: BTreeMap<String, String>,
    pub(crate) producer_properties: BTreeMap<String, String>,
    pub(crate) startup_timeout: Duration,
    pub(crate) delivery_timeout: Duration,
    pub(crate) changelog_replication_factor: i32,
    pub(crate) errors: ErrorPolicies,
    pub(crate) transactional_id: Option<String>,
    pub(crate) lmdb: LmdbOptions,
    pub(crate) handle_ctrl_c: bool,
    pub(crate) restore_batch_records: usize,
    pub(crate) max_task_idle: Duration,
    pub(crate) num_threads: usize,
    // Metrics, progress log, Prometheus endpoint: see `observe.rs`.
    pub(crate) observe: super::observe::ObserveConfig,
    /// The advertised query address (`host:port`), checked by `validate`.
    pub(crate) application_server: Option<String>,
}

/// Whether a property's value is shown as `[redacted]` by `Debug`: passwords, passphrases,
/// secrets, private keys (`ssl.key.pem`, `*.private.key.pem`), tokens, JAAS configs and
/// `sasl.oauthbearer.config` (librdkafka marks the same properties sensitive). Names only: a
/// value is never looked at.
fn is_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password")
        || n.contains("passphrase")
        || n.contains("secret")
        || n.contains("oauthbearer.config")
        || n.ends_with(".key")
        || n.contains("key.pem")
        || n.contains("token")
        || n.contains("jaas")
}

const REDACTED: &str = "[redacted]";

/// The client error with the value of a secret property replaced by `[redacted]`: rdkafka's
/// `KafkaError::ClientConfig` (a property librdkafka rejected at client creation, e.g. the Java
/// client's `sasl.jaas.config`, which librdkafka does not know) carries the value, librdkafka's
/// message may quote it, and `Display` and `Debug` print both.
pub(crate) fn redact_client_error(e: KafkaError) -> KafkaError {
    match e {
        KafkaError::ClientConfig(res, desc, key, value) if is_secret(&key) => {
            let desc = if value.is_empty() {
                desc
            } else {
                desc.replace(&value, REDACTED)
            };
            KafkaError::ClientConfig(res, desc, key, REDACTED.to_owned())
        }
        e => e,
    }
}

fn redacted(map: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    map.iter()
        .map(|(k, v)| {
            let v = if is_secret(k) { REDACTED } else { v.as_str() };
            (k.as_str(), v)
        })
        .collect()
}

impl fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppConfig")
            .field("application_id", &self.application_id)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("state_dir", &self.state_dir)
            .field("batch_max_records", &self.batch_max_records)
            .field("batch_max_wait", &self.batch_max_wait)
            .field("commit_interval", &self.commit_interval)
            .field("guarantee", &self.guarantee)
            .field("properties", &redacted(&self.properties))
            .field("consumer_properties", &redacted(&self.consumer_properties))
            .field("producer_properties", &redacted(&self.producer_properties))
            .field("startup_timeout", &self.startup_timeout)
            .field("delivery_timeout", &self.delivery_timeout)
            .field(
                "changelog_replication_factor",
                &self.changelog_replication_factor,
            )
            .field("errors", &self.errors)
            .field("transactional_id", &self.transactional_id)
            .field("handle_ctrl_c", &self.handle_ctrl_c)
            .field("num_threads", &self.num_threads)
            .field("max_task_idle", &self.max_task_idle)
            .field("application_server", &self.application_server)
            .finish_non_exhaustive()
    }
}

impl AppConfig {
    /// A config with defaults: no bootstrap servers (an embedded mock cluster), state under
    /// `<temp dir>/kstreams`, batches of up to 1,000 records gathered for at most 10 ms, a commit
    /// every second, at-least-once.
    pub fn new(application_id: impl Into<String>) -> Self {
        AppConfig {
            application_id: application_id.into(),
            bootstrap_servers: None,
            state_dir: std::env::temp_dir().join("kstreams"),
            batch_max_records: 1000,
            batch_max_wait: Duration::from_millis(10),
            commit_interval: Duration::from_secs(1),
            guarantee: ProcessingGuarantee::AtLeastOnce,
            properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
            startup_timeout: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(120),
            changelog_replication_factor: -1,
            errors: ErrorPolicies::default(),
            transactional_id: None,
            lmdb: LmdbOptions::default(),
            handle_ctrl_c: true,
            restore_batch_records: 10_000,
            max_task_idle: Duration::ZERO,
            num_threads: 1,
            observe: Default::default(),
            application_server: None,
        }
    }

    /// The Kafka cluster (`host:port,host:port`). Without it, the app starts librdkafka's
    /// in-process mock cluster (for trying things out; it keeps only recent records).
    #[must_use]
    pub fn bootstrap_servers(mut self, servers: impl Into<String>) -> Self {
        let s = servers.into();
        self.bootstrap_servers = (!s.trim().is_empty()).then_some(s);
        self
    }

    /// Where tasks keep their LMDB environments: `<dir>/<application id>/<task id>`.
    #[must_use]
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = dir.into();
        self
    }

    /// The most records polled in one round and handed to tasks (a partition's batch is never
    /// larger).
    #[must_use]
    pub fn batch_max_records(mut self, n: usize) -> Self {
        self.batch_max_records = n;
        self
    }

    /// How long a round waits for more records once the first one arrived (at most
    /// [`MAX_DURATION`]).
    #[must_use]
    pub fn batch_max_wait(mut self, wait: Duration) -> Self {
        self.batch_max_wait = wait;
        self
    }

    /// How often processed offsets are committed (after outputs are acknowledged; positive, at
    /// most [`MAX_DURATION`]). Under exactly-once a transaction spans one interval, and the
    /// producer's `transaction.timeout.ms` is 10 s or twice the interval when that is longer, up
    /// to 15 min (the broker's default `transaction.max.timeout.ms`), and at least the interval
    /// and a minute: an interval over 14 min needs the broker's maximum raised.
    #[must_use]
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// The processing guarantee.
    #[must_use]
    pub fn processing_guarantee(mut self, guarantee: ProcessingGuarantee) -> Self {
        self.guarantee = guarantee;
        self
    }

    /// A librdkafka property for every client (consumer, producer, admin), e.g.
    /// `security.protocol`, `sasl.mechanism`.
    #[must_use]
    pub fn property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(name.into(), value.into());
        self
    }

    /// A librdkafka property for the consumers only.
    #[must_use]
    pub fn consumer_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.consumer_properties.insert(name.into(), value.into());
        self
    }

    /// A librdkafka property for the producer only.
    #[must_use]
    pub fn producer_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.producer_properties.insert(name.into(), value.into());
        self
    }

    /// How long start-up may take to reach the cluster and check topics (default 30 s, at most
    /// [`MAX_DURATION`]).
    #[must_use]
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// How long a commit waits for the broker to acknowledge outputs (default 120 s); it is also
    /// the producer's `message.timeout.ms` unless set. At most [`MAX_DURATION`].
    #[must_use]
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = timeout;
        self
    }

    /// The replication factor of changelog topics the app creates (default -1: the broker's).
    #[must_use]
    pub fn changelog_replication_factor(mut self, factor: i32) -> Self {
        self.changelog_replication_factor = factor;
        self
    }

    crate::policy::error_policy_builders!(
        per_topic: errors,
        production = "serialized, sent or delivered to their sink topic. Under exactly-once, a delivery error the broker reports always fails (it makes the transaction abortable); changelog records always fail",
        checked = "[`App::new`](crate::kafka::App::new)"
    );

    /// The producer's `transactional.id` under exactly-once. It must be stable across restarts of
    /// one instance (so that a restart fences its own zombie and aborts its open transaction) and
    /// differ between instances. Default: `<application id>-<process id>-<thread index>`, the
    /// process id being 128 random bits kept in `<state dir>/<application id>/kstreams.process-id`
    /// (created on the first start), as Kafka Streams does: replicas on different hosts with the
    /// same state-directory path get different ids. An id set here is used as it is.
    #[must_use]
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.transactional_id = Some(id.into());
        self
    }

    /// The `transactional.id` of processing thread `thread` under exactly-once: the one set with
    /// [`transactional_id`](Self::transactional_id) (with `-<thread>` after it from the second
    /// thread on), or the default, which reads the process id from the state directory, creating
    /// it the first time.
    pub(crate) fn transactional_id_of_thread(&self, thread: usize) -> Result<String> {
        if let Some(id) = &self.transactional_id {
            return Ok(if thread == 0 {
                id.clone()
            } else {
                format!("{id}-{thread}")
            });
        }
        let process = super::process_id::process_id(&self.state_dir, &self.application_id)?;
        Ok(format!("{}-{process}-{thread}", self.application_id))
    }

    /// LMDB tuning.
    #[must_use]
    pub fn lmdb(mut self, options: LmdbOptions) -> Self {
        self.lmdb = options;
        self
    }

    /// The number of processing threads (Kafka Streams' `num.stream.threads`; default 1, at
    /// least 1). Each thread has its own consumer in the group, its own restore consumer and its
    /// own producer (under exactly-once its own `transactional.id`, `<application id>-<process
    /// id>-<thread index>`), and runs the tasks of the partitions the group assigns to its
    /// consumer; co-partitioned topics still land on one task. [`App::run`](super::App::run),
    /// the status and the shutdown handle cover every thread; if one thread fails, the others
    /// stop gracefully and `run` returns the error.
    ///
    /// ```
    /// let config = kstreams::kafka::AppConfig::new("app").num_threads(2);
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn num_threads(mut self, n: usize) -> Self {
        self.num_threads = n;
        self
    }

    /// The most changelog records one turn of the processing loop restores (default 10,000, at
    /// least 1): restores advance this much between two polls of the group consumer, so running
    /// tasks keep processing while others restore, and a long restore never holds up the poll
    /// past `max.poll.interval.ms`.
    ///
    /// ```
    /// let config = kstreams::kafka::AppConfig::new("app").restore_batch_records(50_000);
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn restore_batch_records(mut self, n: usize) -> Self {
        self.restore_batch_records = n.max(1);
        self
    }

    /// How long a task that reads several topics waits for a caught-up input partition with
    /// nothing buffered before it processes its other inputs ahead of it (Kafka Streams'
    /// `max.task.idle.ms`, same default 0). A task processes its inputs in timestamp order; when
    /// one input partition has no record buffered, the task waits for it without a time limit
    /// while the partition's end offset says more records exist (or before its end offset is
    /// known), and for `max_task_idle` once it is caught up (0: processes the others at once).
    /// At most [`MAX_DURATION`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = kstreams::kafka::AppConfig::new("app").max_task_idle(Duration::from_millis(500));
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn max_task_idle(mut self, idle: Duration) -> Self {
        self.max_task_idle = idle;
        self
    }

    /// Whether `run` stops gracefully on Ctrl-C (default true).
    #[must_use]
    pub fn handle_ctrl_c(mut self, yes: bool) -> Self {
        self.handle_ctrl_c = yes;
        self
    }

    /// The address this instance serves interactive queries on, advertised to the other
    /// instances of the application (Kafka Streams' `application.server`): `host:port` as the
    /// others can reach it (`[v6 address]:port` for IPv6), checked by
    /// [`App::new`](super::App::new). It travels with the group's own membership (appended to
    /// the group consumer's `client.id` as `;q=host:port`), so
    /// [`KeyMetadata::active`](super::KeyMetadata::active) names the instance holding a key
    /// without any coordination of kstreams' own. The HTTP server (feature `http`) redirects a
    /// request for a key held elsewhere to it. Not set: the instance advertises nothing
    /// (others see `active: None` for its keys).
    ///
    /// ```
    /// let config = kstreams::kafka::AppConfig::new("app").application_server("10.0.0.5:8080");
    /// assert_eq!(config.get_application_server(), Some("10.0.0.5:8080"));
    /// ```
    #[must_use]
    pub fn application_server(mut self, host_port: impl Into<String>) -> Self {
        self.application_server = Some(host_port.into());
        self
    }

    /// The advertised query address, as given to
    /// [`application_server`](Self::application_server).
    pub fn get_application_server(&self) -> Option<&str> {
        self.application_server.as_deref()
    }

    /// The application id.
    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    /// The state directory.
    ///
    /// Named `get_state_dir` because [`state_dir`](Self::state_dir) is the builder (see
    /// [`StoreSpec::get_backend`](crate::StoreSpec::get_backend) for the naming rule).
    ///
    /// ```
    /// use kstreams::kafka::AppConfig;
    /// let config = AppConfig::new("app").state_dir("/var/lib/app");
    /// assert_eq!(config.get_state_dir(), std::path::Path::new("/var/lib/app"));
    /// ```
    pub fn get_state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// Checks the config; every problem is a [`Error::Config`] that says what to change.
    pub fn validate(&self) -> Result<()> {
        let id = &self.application_id;
        if !crate::topology::valid_name(id) {
            return Err(Error::Config(format!(
                "application id `{id}` must be 1 to 200 of the characters a-z A-Z 0-9 . _ - \
                 (it is the consumer group id and prefixes internal topic names)"
            )));
        }
        if let Some(server) = &self.application_server {
            super::metadata::HostInfo::parse(server)?;
        }
        if self.num_threads == 0 {
            return Err(Error::Config("num_threads must be at least 1".into()));
        }
        if self.batch_max_records == 0 {
            return Err(Error::Config("batch_max_records must be at least 1".into()));
        }
        if self.commit_interval.is_zero() {
            return Err(Error::Config("commit_interval must be positive".into()));
        }
        for (name, value) in self.durations() {
            if let Some(value) = value.filter(|v| *v > MAX_DURATION) {
                return Err(Error::Config(format!(
                    "{name} is {value:?}, more than the largest supported duration, \
                     {MAX_DURATION:?} (i32::MAX milliseconds: librdkafka's limit for timeouts)"
                )));
            }
        }
        for map in [
            &self.properties,
            &self.consumer_properties,
            &self.producer_properties,
        ] {
            for name in map.keys() {
                if let Some((_, why)) = RESERVED.iter().find(|(r, _)| r == name) {
                    return Err(Error::Config(format!(
                        "property `{name}` cannot be set: {why}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Every [`Duration`] setting with its name, for [`validate`](Self::validate).
    fn durations(&self) -> [(&'static str, Option<Duration>); 6] {
        [
            ("max_task_idle", Some(self.max_task_idle)),
            ("batch_max_wait", Some(self.batch_max_wait)),
            ("commit_interval", Some(self.commit_interval)),
            ("startup_timeout", Some(self.startup_timeout)),
            ("delivery_timeout", Some(self.delivery_timeout)),
            ("progress_log_interval", self.observe.progress_interval),
        ]
    }

    fn base(&self, bootstrap: &str) -> ClientConfig {
        self.base_with(bootstrap, &[])
    }

    /// The settings every client shares: `defaults` first, then the user's
    /// [`property`](Self::property) values (which override them).
    fn base_with(&self, bootstrap: &str, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap);
        c.set("client.id", format!("{}-kstreams", self.application_id));
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    pub(crate) fn consumer_config(&self, bootstrap: &str) -> ClientConfig {
        let mut c = self.base_with(bootstrap, CONSUMER_DEFAULTS);
        c.set("group.id", &self.application_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        self.isolation(&mut c);
        for (k, v) in &self.consumer_properties {
            c.set(k, v);
        }
        self.advertise_server(&mut c);
        c
    }

    /// Appends the advertised query address to the group consumer's `client.id` (whoever set
    /// it), where every instance reads it back from the group's description.
    fn advertise_server(&self, c: &mut ClientConfig) {
        let Some(server) = self
            .application_server
            .as_deref()
            .and_then(|s| super::metadata::HostInfo::parse(s).ok())
        else {
            return;
        };
        let id = c.get("client.id").unwrap_or_default().to_owned();
        c.set("client.id", super::metadata::advertise(&id, &server));
    }

    pub(crate) fn restore_consumer_config(&self, bootstrap: &str) -> ClientConfig {
        let mut c = self.base_with(bootstrap, CONSUMER_DEFAULTS);
        c.set("group.id", format!("{}-restore", self.application_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true");
        self.isolation(&mut c);
        for (k, v) in &self.consumer_properties {
            c.set(k, v);
        }
        c
    }

    fn isolation(&self, c: &mut ClientConfig) {
        if self.guarantee == ProcessingGuarantee::ExactlyOnce {
            c.set("isolation.level", "read_committed");
        }
    }

    /// The producer's `transaction.timeout.ms` under exactly-once: 10 s (Kafka Streams' default
    /// too), which bounds how long an instance that died for good blocks `read_committed` readers
    /// of its partitions, or twice the commit interval when that is longer. A transaction stays
    /// open for a whole commit interval, and the broker aborts one older than its timeout (the
    /// producer is then fenced): with 10 s, a 30 s commit interval failed every transaction
    /// (issue #19's commit-interval rows). Kafka Streams rejects such a config instead; here the
    /// timeout is the runtime's, so it follows the interval. The broker refuses a timeout above
    /// its `transaction.max.timeout.ms` (15 min by default), so past a 7.5 min interval the
    /// timeout is 15 min, or the interval and a minute when that is longer (then the broker's
    /// maximum must be raised, and start-up says so). At most [`MAX_DURATION`].
    pub(crate) fn transaction_timeout(&self) -> Duration {
        let twice = self.commit_interval.saturating_mul(2);
        let timeout = if twice <= BROKER_MAX_TRANSACTION_TIMEOUT {
            twice
        } else {
            BROKER_MAX_TRANSACTION_TIMEOUT.max(
                self.commit_interval
                    .saturating_add(TRANSACTION_TIMEOUT_MARGIN),
            )
        };
        timeout.clamp(EOS_TRANSACTION_TIMEOUT, MAX_DURATION)
    }

    /// The producer's config; `transactional_id` under exactly-once (ignored otherwise).
    pub(crate) fn producer_config(
        &self,
        bootstrap: &str,
        transactional_id: Option<&str>,
    ) -> ClientConfig {
        let mut c = self.base_with(bootstrap, PRODUCER_DEFAULTS);
        c.set("partitioner", "murmur2_random")
            .set("enable.idempotence", "true")
            .set(
                "message.timeout.ms",
                self.delivery_timeout.as_millis().max(1).to_string(),
            );
        if self.guarantee == ProcessingGuarantee::ExactlyOnce {
            // librdkafka requires message.timeout.ms <= transaction.timeout.ms.
            if let Some(id) = transactional_id {
                c.set("transactional.id", id);
            }
            let tx = self.transaction_timeout().as_millis();
            c.set("transaction.timeout.ms", tx.to_string()).set(
                "message.timeout.ms",
                self.delivery_timeout.as_millis().clamp(1, tx).to_string(),
            );
        }
        for (k, v) in &self.producer_properties {
            c.set(k, v);
        }
        c
    }

    pub(crate) fn admin_config(&self, bootstrap: &str) -> ClientConfig {
        self.base(bootstrap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The advertised address is checked at `validate` (so at `App::new`) with a reason, and
    /// only the group consumer's client id carries it, after the user's own client id.
    #[test]
    fn application_server_is_checked_and_advertised_in_the_group_client_id() {
        let e = AppConfig::new("app")
            .application_server("localhost")
            .validate()
            .expect_err("no port");
        assert!(
            matches!(&e, Error::Config(m) if m.contains("`localhost`") && m.contains("host:port")),
            "{e}"
        );
        let c = AppConfig::new("app").application_server("10.0.0.5:8080");
        c.validate().expect("valid");
        assert_eq!(
            c.consumer_config("b:1").get("client.id"),
            Some("app-kstreams;q=10.0.0.5:8080")
        );
        assert_eq!(
            c.restore_consumer_config("b:1").get("client.id"),
            Some("app-kstreams")
        );
        assert_eq!(
            c.producer_config("b:1", None).get("client.id"),
            Some("app-kstreams")
        );
        let mine = c.property("client.id", "mine");
        assert_eq!(
            mine.consumer_config("b:1").get("client.id"),
            Some("mine;q=10.0.0.5:8080")
        );
        assert_eq!(
            AppConfig::new("app")
                .consumer_config("b:1")
                .get("client.id"),
            Some("app-kstreams")
        );
    }

    /// Every secret property, set through each of the three property maps, is redacted; the
    /// names and the non-secret values stay visible.
    #[test]
    fn debug_redacts_secrets() {
        const SECRETS: &[&str] = &[
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.truststore.password",
            "sasl.jaas.config",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "ssl.key.pem",
            "sasl.oauthbearer.assertion.private.key.passphrase",
        ];
        type Setter = fn(AppConfig, String, String) -> AppConfig;
        let setters: [(&str, Setter); 3] = [
            ("property", |c, k, v| c.property(k, v)),
            ("consumer_property", |c, k, v| c.consumer_property(k, v)),
            ("producer_property", |c, k, v| c.producer_property(k, v)),
        ];
        for (setter, set) in setters {
            let mut c = AppConfig::new("app")
                .property("sasl.username", "alice")
                .property("security.protocol", "SASL_SSL")
                .property("ssl.ca.location", "/etc/kafka/ca.pem");
            for (i, name) in SECRETS.iter().enumerate() {
                c = set(c, (*name).to_owned(), format!("hunter{i}-via-{setter}"));
            }
            let d = format!("{c:?}");
            let pretty = format!("{c:#?}");
            for out in [&d, &pretty] {
                assert!(!out.contains("hunter"), "{setter}: {out}");
                for name in SECRETS {
                    assert!(out.contains(name), "{setter}: {name} missing in {out}");
                }
                assert_eq!(out.matches("[redacted]").count(), SECRETS.len(), "{out}");
                assert!(out.contains("SASL_SSL"), "{out}");
                assert!(out.contains("alice"), "{out}");
                assert!(out.contains("/etc/kafka/ca.pem"), "{out}");
            }
        }
    }

    #[test]
    fn client_config_errors_do_not_show_secret_values() {
        let c = AppConfig::new("app").property(
            "sasl.jaas.config",
            "PlainLoginModule required password=\"hunter9\";",
        );
        let e = c
            .consumer_config("b:1")
            .create::<rdkafka::consumer::BaseConsumer>()
            .err()
            .expect("librdkafka does not know sasl.jaas.config");
        assert!(
            format!("{e} {e:?}").contains("hunter9"),
            "rdkafka shows it: {e}"
        );
        let e = redact_client_error(e);
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("hunter9"), "{shown}");
        assert!(shown.contains("sasl.jaas.config"), "{shown}");
        // Other properties' values stay: they tell what was wrong.
        let e = AppConfig::new("app")
            .property("security.protocol", "NOPE")
            .consumer_config("b:1")
            .create::<rdkafka::consumer::BaseConsumer>()
            .err()
            .map(redact_client_error)
            .expect("bad protocol");
        assert!(e.to_string().contains("NOPE"), "{e}");
    }

    #[test]
    fn only_secret_names_are_redacted() {
        for name in [
            "sasl.username",
            "sasl.mechanism",
            "security.protocol",
            "ssl.ca.location",
            "ssl.keystore.location",
            "ssl.endpoint.identification.algorithm",
        ] {
            assert!(!is_secret(name), "{name}");
        }
        for name in ["SASL.PASSWORD", "ssl.key.pem", "sasl.oauthbearer.token"] {
            assert!(is_secret(name), "{name}");
        }
    }

    #[test]
    fn secrets_pass_through_to_every_client() {
        let c = AppConfig::new("app")
            .property("security.protocol", "SASL_PLAINTEXT")
            .property("sasl.mechanism", "PLAIN")
            .property("sasl.username", "alice")
            .property("sasl.password", "hunter2");
        for cc in [
            c.consumer_config("b:1"),
            c.restore_consumer_config("b:1"),
            c.producer_config("b:1", None),
            c.admin_config("b:1"),
        ] {
            assert_eq!(cc.get("sasl.password"), Some("hunter2"));
            assert_eq!(cc.get("security.protocol"), Some("SASL_PLAINTEXT"));
        }
    }

    #[test]
    fn exactly_once_is_transactional_and_read_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = AppConfig::new("app")
            .state_dir(dir.path())
            .processing_guarantee(ProcessingGuarantee::ExactlyOnce);
        assert!(c.validate().is_ok());
        let id = c.transactional_id_of_thread(0).expect("transactional id");
        let p = c.producer_config("b:1", Some(&id));
        assert_eq!(p.get("transactional.id"), Some(id.as_str()));
        assert!(id.starts_with("app-") && id.ends_with("-0"), "{id}");
        assert_eq!(
            id,
            c.transactional_id_of_thread(0).expect("again"),
            "stable"
        );
        assert_eq!(
            c.transactional_id_of_thread(1).expect("thread 1"),
            format!("{}-1", id.trim_end_matches("-0")),
            "one per thread"
        );
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(
            id,
            c.clone()
                .state_dir(other.path())
                .transactional_id_of_thread(0)
                .expect("other"),
            "another state dir, another instance"
        );
        let set = c.clone().transactional_id("mine");
        assert_eq!(set.transactional_id_of_thread(0).expect("set"), "mine");
        assert_eq!(set.transactional_id_of_thread(1).expect("set"), "mine-1");
        assert_eq!(
            c.consumer_config("b:1").get("isolation.level"),
            Some("read_committed")
        );
        assert_eq!(
            c.restore_consumer_config("b:1").get("isolation.level"),
            Some("read_committed")
        );
        let alo = AppConfig::new("app");
        assert_eq!(
            alo.producer_config("b:1", None).get("transactional.id"),
            None
        );
    }

    #[test]
    fn reserved_properties_and_bad_ids_are_rejected() {
        let e = AppConfig::new("app").property("group.id", "x").validate();
        assert!(matches!(e, Err(Error::Config(m)) if m.contains("group.id")));
        let e = AppConfig::new("bad id").validate();
        assert!(matches!(e, Err(Error::Config(m)) if m.contains("bad id")));
        assert!(AppConfig::new("good.id-1_2").validate().is_ok());
    }

    #[test]
    fn zero_processing_threads_are_rejected() {
        let e = AppConfig::new("app").num_threads(0).validate();
        assert!(matches!(e, Err(Error::Config(m)) if m.contains("num_threads")));
        assert!(AppConfig::new("app").num_threads(3).validate().is_ok());
    }

    /// Every `Duration` setting at `Duration::MAX` is a config error naming the setting and
    /// the bound (before, `Instant + Duration` panicked at run time); the bound itself is fine.
    #[test]
    fn huge_durations_are_rejected_naming_the_setting_and_its_bound() {
        type Setter = fn(AppConfig, Duration) -> AppConfig;
        let settings: [(&str, Setter); 6] = [
            ("batch_max_wait", AppConfig::batch_max_wait),
            ("max_task_idle", AppConfig::max_task_idle),
            ("commit_interval", AppConfig::commit_interval),
            ("startup_timeout", AppConfig::startup_timeout),
            ("delivery_timeout", AppConfig::delivery_timeout),
            ("progress_log_interval", |c, d| {
                c.progress_log_interval(Some(d))
            }),
        ];
        assert_eq!(settings.len(), AppConfig::new("app").durations().len());
        for (name, set) in settings {
            for huge in [Duration::MAX, MAX_DURATION + Duration::from_millis(1)] {
                match set(AppConfig::new("app"), huge).validate() {
                    Err(Error::Config(m)) => {
                        assert!(m.contains(name), "{name}: {m}");
                        assert!(m.contains(&format!("{MAX_DURATION:?}")), "{name}: {m}");
                    }
                    other => panic!("{name} = {huge:?}: {other:?}"),
                }
            }
            let ok = set(AppConfig::new("app"), MAX_DURATION);
            assert!(ok.validate().is_ok(), "{name} at the bound");
            // The runtime's deadlines at the bound do not overflow.
            let _ = std::time::Instant::now() + MAX_DURATION + Duration::from_secs(1);
        }
        // `App::new` validates: an error, not a panic.
        let t = {
            let mut t = crate::Topology::builder();
            let s = t.source::<String, String>("in");
            t.sink("out", &s);
            t.build().expect("topology")
        };
        let e = super::super::App::new(
            t,
            AppConfig::new("app")
                .bootstrap_servers("127.0.0.1:1")
                .startup_timeout(Duration::MAX),
        );
        assert!(matches!(e, Err(Error::Config(m)) if m.contains("startup_timeout")));
    }

    /// The properties the runtime sets from other settings are rejected in every map, with a
    /// message naming the setting that owns them.
    #[test]
    fn properties_owned_by_settings_are_rejected() {
        for (name, owner) in [
            ("isolation.level", "processing_guarantee"),
            ("enable.partition.eof", "restore consumer"),
            ("transaction.timeout.ms", "processing_guarantee"),
        ] {
            type Setter = fn(AppConfig, &str) -> AppConfig;
            let setters: [Setter; 3] = [
                |c, n| c.property(n, "x"),
                |c, n| c.consumer_property(n, "x"),
                |c, n| c.producer_property(n, "x"),
            ];
            for set in setters {
                match set(AppConfig::new("app"), name).validate() {
                    Err(Error::Config(m)) => {
                        assert!(m.contains(&format!("`{name}`")), "{m}");
                        assert!(m.contains(owner), "{m}");
                    }
                    other => panic!("{name}: {other:?}"),
                }
            }
        }
        let m = AppConfig::new("app")
            .consumer_property("isolation.level", "read_uncommitted")
            .validate();
        assert!(
            matches!(&m, Err(Error::Config(m)) if m.contains("is set by `processing_guarantee`")),
            "{m:?}"
        );
    }

    /// Under exactly-once the transaction timeout outlasts a commit interval (a transaction is
    /// open for a whole one): 10 s up to a 5 s interval, twice the interval beyond up to 15 min
    /// (the broker's default maximum), then the interval and a minute, never past
    /// `MAX_DURATION`; the delivery timeout is clamped to it; at-least-once has none.
    #[test]
    fn exactly_once_transaction_timeout_outlasts_the_commit_interval() {
        let dir = tempfile::tempdir().expect("tempdir");
        let eos = |ms: u64| {
            AppConfig::new("app")
                .state_dir(dir.path())
                .processing_guarantee(ProcessingGuarantee::ExactlyOnce)
                .commit_interval(Duration::from_millis(ms))
        };
        for (interval_ms, tx, message) in [
            (100, "10000", "10000"),
            (1_000, "10000", "10000"),
            (5_000, "10000", "10000"),
            (30_000, "60000", "60000"),
            (90_000, "180000", "120000"),
            // Past 7.5 min twice the interval would be refused by a broker at its default maximum.
            (450_000, "900000", "120000"),
            (600_000, "900000", "120000"),
            (840_000, "900000", "120000"),
            (900_000, "960000", "120000"),
            (1_200_000, "1260000", "120000"),
        ] {
            let c = eos(interval_ms);
            assert!(c.validate().is_ok());
            let p = c.producer_config("b:1", Some("app-tx"));
            assert_eq!(
                p.get("transaction.timeout.ms"),
                Some(tx),
                "{interval_ms} ms"
            );
            assert_eq!(
                p.get("message.timeout.ms"),
                Some(message),
                "{interval_ms} ms"
            );
            p.create::<rdkafka::producer::BaseProducer>()
                .expect("librdkafka accepts it");
        }
        assert_eq!(
            eos(u64::from(i32::MAX as u32)).transaction_timeout(),
            MAX_DURATION
        );
        let alos = AppConfig::new("app").commit_interval(Duration::from_secs(30));
        assert_eq!(
            alos.producer_config("b:1", None)
                .get("transaction.timeout.ms"),
            None
        );
    }

    /// Every entry of `CONSUMER_DEFAULTS` is set on both consumers and on no other client; a
    /// consumer or global property of the same name overrides it (in both consumers).
    #[test]
    fn consumer_defaults_apply_to_both_consumers_and_can_be_overridden() {
        let c = AppConfig::new("app");
        for (name, value) in CONSUMER_DEFAULTS {
            assert_eq!(c.consumer_config("b:1").get(name), Some(*value), "{name}");
            assert_eq!(
                c.restore_consumer_config("b:1").get(name),
                Some(*value),
                "{name}"
            );
            assert_eq!(c.producer_config("b:1", None).get(name), None, "{name}");
            assert_eq!(c.admin_config("b:1").get(name), None, "{name}");
            for mine in [
                AppConfig::new("app").consumer_property(*name, "7"),
                AppConfig::new("app").property(*name, "7"),
            ] {
                assert!(mine.validate().is_ok(), "{name}");
                assert_eq!(mine.consumer_config("b:1").get(name), Some("7"), "{name}");
                assert_eq!(
                    mine.restore_consumer_config("b:1").get(name),
                    Some("7"),
                    "{name}"
                );
            }
        }
    }

    /// Every entry of `PRODUCER_DEFAULTS` is set on the producer under both guarantees and on no
    /// other client; a producer or global property of the same name overrides it; the settings
    /// the runtime owns stay.
    #[test]
    fn producer_defaults_apply_to_the_producer_and_can_be_overridden() {
        assert!(!PRODUCER_DEFAULTS.is_empty());
        let dir = tempfile::tempdir().expect("tempdir");
        let alos = AppConfig::new("app");
        let eos = AppConfig::new("app")
            .state_dir(dir.path())
            .processing_guarantee(ProcessingGuarantee::ExactlyOnce);
        for (name, value) in PRODUCER_DEFAULTS {
            for c in [&alos, &eos] {
                let p = c.producer_config("b:1", Some("app-tx"));
                assert_eq!(p.get(name), Some(*value), "{name}");
                assert_eq!(p.get("enable.idempotence"), Some("true"));
                assert_eq!(p.get("partitioner"), Some("murmur2_random"));
                assert_eq!(c.consumer_config("b:1").get(name), None, "{name}");
                assert_eq!(c.restore_consumer_config("b:1").get(name), None, "{name}");
                assert_eq!(c.admin_config("b:1").get(name), None, "{name}");
            }
            for mine in [
                AppConfig::new("app").producer_property(*name, "7"),
                AppConfig::new("app").property(*name, "7"),
            ] {
                assert!(mine.validate().is_ok(), "{name}");
                assert_eq!(
                    mine.producer_config("b:1", None).get(name),
                    Some("7"),
                    "{name}"
                );
            }
        }
    }

    /// librdkafka accepts the runtime's defaults for every client it creates: both consumers under
    /// both guarantees, the at-least-once producer and the transactional producer (exactly-once
    /// constrains linger, idempotence, in-flight requests and timeouts; creating the producer
    /// checks them without a broker).
    #[test]
    fn librdkafka_accepts_the_defaults_under_both_guarantees() {
        let dir = tempfile::tempdir().expect("tempdir");
        let alos = AppConfig::new("app");
        let eos = AppConfig::new("app")
            .state_dir(dir.path())
            .processing_guarantee(ProcessingGuarantee::ExactlyOnce);
        let id = eos.transactional_id_of_thread(0).expect("transactional id");
        for c in [&alos, &eos] {
            for cc in [c.consumer_config("b:1"), c.restore_consumer_config("b:1")] {
                cc.create::<rdkafka::consumer::BaseConsumer>()
                    .expect("a consumer with the defaults");
            }
        }
        alos.producer_config("b:1", None)
            .create::<rdkafka::producer::BaseProducer>()
            .expect("an at-least-once producer with the defaults");
        let tx = eos.producer_config("b:1", Some(&id));
        assert_eq!(tx.get("transactional.id"), Some(id.as_str()));
        tx.create::<rdkafka::producer::BaseProducer>()
            .expect("a transactional producer with the defaults");
    }

    /// `fetch.queue.backoff.ms=10` is the default of both consumers (issue #19: librdkafka's
    /// 1000 ms throttles, 0 ms busy-loops) and not of the producer or the admin client; a consumer
    /// or global property overrides it.
    #[test]
    fn fetch_queue_backoff_defaults_to_10_ms_and_can_be_overridden() {
        const P: &str = "fetch.queue.backoff.ms";
        let c = AppConfig::new("app");
        assert_eq!(c.consumer_config("b:1").get(P), Some("10"));
        assert_eq!(c.restore_consumer_config("b:1").get(P), Some("10"));
        assert_eq!(c.producer_config("b:1", None).get(P), None);
        assert_eq!(c.admin_config("b:1").get(P), None);
        for c in [
            AppConfig::new("app").consumer_property(P, "250"),
            AppConfig::new("app").property(P, "250"),
        ] {
            assert!(c.validate().is_ok());
            assert_eq!(c.consumer_config("b:1").get(P), Some("250"));
            assert_eq!(c.restore_consumer_config("b:1").get(P), Some("250"));
        }
        // librdkafka accepts the default for both consumers.
        for cc in [c.consumer_config("b:1"), c.restore_consumer_config("b:1")] {
            cc.create::<rdkafka::consumer::BaseConsumer>()
                .expect("a consumer with the defaults");
        }
    }
}
