//! Trying an app for real: [`AppClient`] creates its topics, produces typed input, waits until the
//! app has processed it and reads typed output, on the embedded cluster or a real broker.
//!
//! Owns: [`AppClient`], a producer and short-lived readers on the app's cluster, made with the
//! app's client settings (bootstrap servers, security). It checks every typed access against the
//! topology as the test driver does (a topic the topology does not read or write, or other types
//! than its source's or sink's, is an error) and never processes records itself.
//!
//! Running an app on the embedded default (no bootstrap servers configured): the [`App`] starts
//! librdkafka's in-process mock cluster and lives as long as the `App`. With
//! [`AppConfig::bootstrap_servers`](super::AppConfig::bootstrap_servers) it runs against that
//! cluster instead, with the same code:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use kstreams::kafka::{App, AppClient, AppConfig};
//! use kstreams::{processor, Record, Topology};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut t = Topology::builder();
//! let lines = t.source::<String, String>("lines");
//! let upper = t.add(processor::map(|r: &Record<String, String>| r.derive(r.key.clone(), r.value.to_uppercase())), &lines);
//! t.sink("upper", &upper);
//!
//! let state = tempfile::tempdir()?;
//! let config = AppConfig::new("upper").state_dir(state.path()).handle_ctrl_c(false);
//! let app = Arc::new(App::new(t.build()?, config)?); // no bootstrap servers: embedded cluster
//! let client = AppClient::new(&app)?;
//! client.create_app_topics(2).await?; // `lines` and `upper`, 2 partitions each
//! let running = tokio::spawn({
//!     let app = app.clone();
//!     async move { app.run().await }
//! });
//! client.produce("lines", [Record::new("k".to_string(), "hello".to_string())]).await?;
//! client.wait_until_processed(Duration::from_secs(60)).await?;
//! let out = client.read::<String, String>("upper").await?;
//! assert_eq!(out[0].value, "HELLO");
//! app.shutdown_handle().shutdown();
//! running.await??;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::admin::TopicSpec;
use super::app::{App, AppStatus};
use crate::error::{Error, Part, Result};
use crate::record::{Headers, Origin, Record};
use crate::serde::{DefaultSerde, Serde};
use crate::task::TaskConfig;
use crate::testing::{TopicUse, check_topic_types, decode_record};

/// How long one metadata or watermark request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The client context of [`AppClient`]'s producer and readers: librdkafka's logs go to `tracing`
/// at their own level, as the app's own clients do.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::observe::librdkafka_log(level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        super::observe::client_error("app client", &error, reason);
    }
}

impl ConsumerContext for Quiet {}

fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> Error {
    let context = context.into();
    move |source| Error::kafka(context, source)
}

/// A client of a running [`App`]'s topics, for trying the app on the embedded cluster or a real
/// broker: create the topics, produce typed input with the default serdes (or given ones), wait
/// until the app has processed and committed it, read a topic typed from the beginning.
///
/// It holds the `App` (an [`Arc`]), so the embedded cluster outlives the client's producer and
/// readers and they close quietly (no ERROR or WARN on a normal run). See the
/// [module docs](self) for a runnable example.
pub struct AppClient {
    producer: FutureProducer<Quiet>,
    reader_config: ClientConfig,
    task_config: TaskConfig,
    /// Last, so that it is dropped after the clients above.
    app: Arc<App>,
}

impl std::fmt::Debug for AppClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppClient")
            .field("bootstrap_servers", &self.app.bootstrap_servers())
            .finish_non_exhaustive()
    }
}

impl AppClient {
    /// A client of `app`'s cluster, with the app's client settings (bootstrap servers, security
    /// properties). Nothing is sent before the first call.
    pub fn new(app: &Arc<App>) -> Result<AppClient> {
        let config = app.config();
        let bootstrap = app.bootstrap_servers();
        let mut producer_config = config.admin_config(bootstrap);
        // The Java client's default partitioner, as the app's sinks and the test driver use. One
        // request in flight keeps the records of a partition in the order given, without the
        // idempotent producer's id (whose retries on a starting broker log warnings).
        producer_config
            .set("partitioner", "murmur2_random")
            .set("max.in.flight.requests.per.connection", "1");
        let producer = producer_config
            .create_with_context(Quiet)
            .map_err(super::config::redact_client_error)
            .map_err(kafka("creating the app client's producer"))?;
        let mut reader_config = config.admin_config(bootstrap);
        // librdkafka assigns partitions only with a group id; the reader never joins the group
        // (it assigns) and never commits.
        reader_config
            .set(
                "group.id",
                format!("{}-app-client", config.application_id()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A partition is read once its end is reached: an exactly-once topic ends with a
            // transaction marker, past its last record.
            .set("enable.partition.eof", "true");
        if config.guarantee == super::ProcessingGuarantee::ExactlyOnce {
            // What the app committed, never an aborted or still open transaction's records.
            reader_config.set("isolation.level", "read_committed");
        }
        let mut task_config = TaskConfig::new(config.application_id(), config.get_state_dir());
        task_config.errors = config.errors.clone();
        Ok(AppClient {
            producer,
            reader_config,
            task_config,
            app: app.clone(),
        })
    }

    /// The app.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Creates topics on the app's cluster, leaving existing ones alone
    /// ([`App::create_topics`]).
    pub async fn create_topics(&self, topics: &[TopicSpec]) -> Result<()> {
        self.app.create_topics(topics).await
    }

    /// Creates every topic the topology reads or writes with `partitions` partitions (and the
    /// broker's default replication), leaving existing ones alone. Changelog topics are left to
    /// the app, which creates them at start-up.
    pub async fn create_app_topics(&self, partitions: i32) -> Result<()> {
        let topology = self.app.topology();
        let mut names: Vec<String> = topology
            .source_topics()
            .iter()
            .chain(topology.sink_topics().iter())
            .map(|t| t.to_string())
            .collect();
        names.sort();
        names.dedup();
        let specs: Vec<TopicSpec> = names
            .into_iter()
            .map(|n| TopicSpec::new(n, partitions))
            .collect();
        self.create_topics(&specs).await
    }

    /// Produces records to source topic `topic` with the default serdes of `K` and `V`, and
    /// returns once the cluster acknowledged every one. `K` and `V` must be the types of the
    /// topology's source of `topic` (else an [`Error::Config`], as for a topic it does not read).
    ///
    /// Records are partitioned by key as the Java client does (murmur2). A record's timestamp is
    /// sent as it is, except that a timestamp of 0 or less (what [`Record::new`] gives) is left
    /// to the producer, which stamps the current time. Headers are sent.
    pub async fn produce<K: DefaultSerde, V: DefaultSerde>(
        &self,
        topic: &str,
        records: impl IntoIterator<Item = Record<K, V>>,
    ) -> Result<()> {
        self.produce_with(topic, records, &K::Serde::default(), &V::Serde::default())
            .await
    }

    /// [`produce`](Self::produce) with explicit serdes.
    pub async fn produce_with<K: 'static, V: 'static>(
        &self,
        topic: &str,
        records: impl IntoIterator<Item = Record<K, V>>,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
    ) -> Result<()> {
        check_topic_types(
            self.app.topology(),
            &self.task_config,
            topic,
            (std::any::type_name::<K>(), std::any::type_name::<V>()),
            TopicUse::Write { typed: true },
        )?;
        let bad = |part, source| Error::Serialize {
            target: format!("topic `{topic}` (app client input)"),
            part,
            source,
        };
        self.send(
            topic,
            records.into_iter().map(|r| {
                Ok(Record {
                    key: key_serde.serialize(&r.key).map_err(|e| bad(Part::Key, e))?,
                    value: value_serde
                        .serialize(&r.value)
                        .map_err(|e| bad(Part::Value, e))?,
                    timestamp: r.timestamp,
                    headers: r.headers,
                    origin: None,
                })
            }),
        )
        .await
    }

    /// Produces records as they are, key and value bytes (`None`: null), to source topic
    /// `topic`, with no serde and no type check: for input the app's serdes may not accept,
    /// e.g. to try a dead-letter policy. Partitioning, timestamps and headers as in
    /// [`produce`](Self::produce).
    pub async fn produce_raw(
        &self,
        topic: &str,
        records: impl IntoIterator<Item = Record<Option<Vec<u8>>, Option<Vec<u8>>>>,
    ) -> Result<()> {
        check_topic_types(
            self.app.topology(),
            &self.task_config,
            topic,
            ("bytes", "bytes"),
            TopicUse::Write { typed: false },
        )?;
        self.send(topic, records.into_iter().map(Ok)).await
    }

    /// Sends serialized records and waits until the cluster acknowledged every one.
    async fn send(
        &self,
        topic: &str,
        records: impl IntoIterator<Item = Result<Record<Option<Vec<u8>>, Option<Vec<u8>>>>>,
    ) -> Result<()> {
        let mut pending = Vec::new();
        for r in records {
            let r = r?;
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (name, value) in r.headers.iter() {
                headers = headers.insert(Header { key: name, value });
            }
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
            if let Some(k) = r.key.as_deref() {
                record = record.key(k);
            }
            if let Some(v) = r.value.as_deref() {
                record = record.payload(v);
            }
            if r.timestamp > 0 {
                record = record.timestamp(r.timestamp);
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        // The local queue is full: wait for what is in flight first.
                        if pending.is_empty() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        for d in pending.drain(..) {
                            acknowledged(topic, d.await)?;
                        }
                    }
                    Err((e, _)) => return Err(kafka(format!("producing to `{topic}`"))(e)),
                }
            }
        }
        for d in pending {
            acknowledged(topic, d.await)?;
        }
        Ok(())
    }

    /// Waits until the app has processed and committed everything in its input topics: until
    /// [`AppStatus::committed`] reaches the end of every partition of every source topic, the
    /// ends read again after that (so a topic the app writes and reads itself is waited for
    /// too). An error after `timeout`, naming the partitions that lag.
    ///
    /// Limitation: under exactly-once, a topic the app writes and reads itself ends with a
    /// transaction marker, one offset past the last record the app can commit; waiting on such a
    /// topology times out. Read its outputs instead.
    pub async fn wait_until_processed(&self, timeout: Duration) -> Result<()> {
        let began = Instant::now();
        let sources: Vec<String> = self
            .app
            .topology()
            .source_topics()
            .iter()
            .map(|t| t.to_string())
            .collect();
        let mut caught_up: Option<BTreeMap<(String, i32), i64>> = None;
        loop {
            let ends = self.end_offsets(&sources).await?;
            let status = self.app.status();
            let lagging = lagging(&ends, &status);
            if lagging.is_empty() {
                // Caught up with ends read before the status: confirm with ends read after it.
                if caught_up.as_ref() == Some(&ends) {
                    return Ok(());
                }
                caught_up = Some(ends);
                continue;
            }
            caught_up = None;
            if began.elapsed() >= timeout {
                return Err(Error::Runtime(format!(
                    "the app did not process its input within {timeout:?} (running: {}): {}",
                    status.running,
                    lagging.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every record of `topic` from the beginning up to its end when called, partition by
    /// partition in offset order, with the default serdes. For an exactly-once app it reads
    /// `read_committed`: the records of committed transactions only. `K` and `V` must be the types of the
    /// topology's sink of `topic` (or source, or store for a changelog; dead-letter topics hold
    /// bytes, any types); a topic the topology neither reads nor writes is an [`Error::Config`]
    /// naming what it writes. Each record's `origin` is where it was read.
    pub async fn read<K: DefaultSerde, V: DefaultSerde>(
        &self,
        topic: &str,
    ) -> Result<Vec<Record<K, V>>> {
        self.read_with(topic, &K::Serde::default(), &V::Serde::default())
            .await
    }

    /// [`read`](Self::read) with explicit serdes.
    pub async fn read_with<K: 'static, V: 'static>(
        &self,
        topic: &str,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
    ) -> Result<Vec<Record<K, V>>> {
        check_topic_types(
            self.app.topology(),
            &self.task_config,
            topic,
            (std::any::type_name::<K>(), std::any::type_name::<V>()),
            TopicUse::Read { sources: true },
        )?;
        let raw = self.read_raw(topic).await?;
        raw.into_iter()
            .map(|r| {
                decode_record(
                    Origin::new(topic, r.partition, r.offset),
                    (r.key.as_deref(), r.value.as_deref()),
                    r.timestamp,
                    r.headers,
                    (key_serde, value_serde),
                )
            })
            .collect()
    }

    /// The end offset of every partition of `topics`.
    async fn end_offsets(&self, topics: &[String]) -> Result<BTreeMap<(String, i32), i64>> {
        let producer = self.producer.clone();
        let topics = topics.to_vec();
        blocking(move || {
            let client = producer.client();
            let mut ends = BTreeMap::new();
            for topic in &topics {
                for p in 0..partition_count(client, topic)? {
                    let (_, high) = super::admin::watermarks(client, topic, p, REQUEST_TIMEOUT)
                        .map_err(kafka(format!("reading the end of `{topic}` partition {p}")))?;
                    ends.insert((topic.clone(), p), high);
                }
            }
            Ok(ends)
        })
        .await
    }

    /// Every record of `topic` up to its end now, as bytes.
    async fn read_raw(&self, topic: &str) -> Result<Vec<RawMessage>> {
        let config = self.reader_config.clone();
        let topic = topic.to_owned();
        blocking(move || {
            let reader: BaseConsumer<Quiet> = config
                .create_with_context(Quiet)
                .map_err(super::config::redact_client_error)
                .map_err(kafka("creating the app client's reader"))?;
            let client = reader.client();
            let mut tpl = TopicPartitionList::new();
            let mut remaining = BTreeMap::new();
            for p in 0..partition_count(client, &topic)? {
                let (low, high) = super::admin::watermarks(client, &topic, p, REQUEST_TIMEOUT)
                    .map_err(kafka(format!("reading the end of `{topic}` partition {p}")))?;
                if high > low {
                    remaining.insert(p, high);
                    tpl.add_partition_offset(&topic, p, Offset::Beginning)
                        .map_err(kafka(format!("assigning `{topic}` partition {p}")))?;
                }
            }
            let mut out = Vec::new();
            if remaining.is_empty() {
                return Ok(out);
            }
            reader
                .assign(&tpl)
                .map_err(kafka(format!("assigning `{topic}`")))?;
            let mut quiet_since = Instant::now();
            while !remaining.is_empty() {
                match reader.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        quiet_since = Instant::now();
                        let p = m.partition();
                        let Some(&end) = remaining.get(&p) else {
                            continue;
                        };
                        if m.offset() >= end {
                            remaining.remove(&p);
                            continue;
                        }
                        if m.offset() + 1 >= end {
                            remaining.remove(&p);
                        }
                        out.push(RawMessage::of(&m));
                    }
                    // The end: every record below it was delivered (a transaction marker at
                    // the end, or aborted records under read_committed, are never delivered).
                    Some(Err(KafkaError::PartitionEOF(p))) => {
                        remaining.remove(&p);
                    }
                    Some(Err(e)) => return Err(kafka(format!("reading `{topic}`"))(e)),
                    None if quiet_since.elapsed() > REQUEST_TIMEOUT => {
                        // Records below the end that never come: compacted or deleted away.
                        let left: Vec<String> = remaining
                            .iter()
                            .map(|(p, end)| format!("partition {p} (end {end})"))
                            .collect();
                        return Err(Error::Runtime(format!(
                            "reading `{topic}`: no record for {REQUEST_TIMEOUT:?} before the end \
                             of {}",
                            left.join(", ")
                        )));
                    }
                    None => {}
                }
            }
            reader
                .unassign()
                .map_err(kafka(format!("unassigning `{topic}`")))?;
            out.sort_by_key(|m| (m.partition, m.offset));
            Ok(out)
        })
        .await
    }
}

/// A record read back, as bytes.
struct RawMessage {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    timestamp: i64,
    headers: Headers,
}

impl RawMessage {
    fn of(m: &BorrowedMessage<'_>) -> Self {
        RawMessage {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            timestamp: m.timestamp().to_millis().unwrap_or(-1),
            // Header names as bytes: rdkafka's own accessor panics on a name that is not UTF-8.
            headers: super::convert::message_headers(m),
        }
    }
}

/// The partitions of `ends` that `status` has not committed to their end, as text.
fn lagging(ends: &BTreeMap<(String, i32), i64>, status: &AppStatus) -> Vec<String> {
    ends.iter()
        .filter_map(|((topic, p), &end)| {
            let committed = status.committed.get(&(topic.clone(), *p)).copied();
            if end == 0 || committed.is_some_and(|c| c >= end) {
                return None;
            }
            Some(format!(
                "`{topic}` partition {p} committed {} of {end}",
                committed.map_or("nothing".to_owned(), |c| c.to_string())
            ))
        })
        .collect()
}

/// The partition count of `topic`; an error if the cluster does not know it.
fn partition_count<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
) -> Result<i32> {
    let md = client
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(kafka(format!("reading the metadata of `{topic}`")))?;
    let n = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    if n == 0 {
        return Err(Error::Runtime(format!(
            "topic `{topic}` does not exist on the cluster (create it first, e.g. with \
             `AppClient::create_app_topics`)"
        )));
    }
    i32::try_from(n).map_err(|_| Error::Runtime(format!("topic `{topic}` has {n} partitions")))
}

/// Whether a delivery succeeded.
fn acknowledged<E>(
    topic: &str,
    delivery: std::result::Result<rdkafka::producer::future_producer::OwnedDeliveryResult, E>,
) -> Result<()> {
    match delivery {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(kafka(format!("producing to `{topic}`"))(e)),
        Err(_) => Err(Error::Runtime(format!(
            "producing to `{topic}`: the producer went away before the delivery report"
        ))),
    }
}

/// Runs blocking client calls off the async executor.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("a blocking client call panicked: {e}")))?
}
