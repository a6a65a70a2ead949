//! Running an example topology end to end on the embedded mock cluster: create the topics,
//! produce the input in phases, run the [`App`] until it committed each phase, read the outputs.
//!
//! The examples' `run` functions use it, so their tests run exactly what the example binaries
//! print.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kstreams::kafka::{App, AppConfig, TopicSpec};
use kstreams::{Error, Result, Topology};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers as _, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Key and value bytes.
pub type Bytes = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A record read back from an output topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Its partition.
    pub partition: i32,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers (name, value as lossy UTF-8).
    pub headers: Vec<(String, String)>,
}

/// What to run: topics, input phases, how long to let wall-clock punctuations fire at the end.
#[derive(Debug)]
pub struct Scenario {
    /// Every topic the topology reads or writes (created before the app starts).
    pub topics: Vec<TopicSpec>,
    /// Records produced phase by phase (topic, records); each phase is processed and committed
    /// before the next is produced (so a table is loaded before the stream that looks it up).
    pub phases: Vec<(String, Vec<Bytes>)>,
    /// Time to keep running after the last phase was committed.
    pub linger: Duration,
    /// Topics to read back at the end.
    pub outputs: Vec<String>,
}

const TIMEOUT: Duration = Duration::from_secs(120);

fn kafka(context: &str) -> impl FnOnce(rdkafka::error::KafkaError) -> Error + '_ {
    move |source| Error::Kafka {
        context: context.to_owned(),
        source,
    }
}

/// Runs `topology` with `config` (no bootstrap servers: the embedded cluster) through
/// `scenario`; returns each output topic's records, by partition then offset.
pub async fn run(
    topology: Topology,
    config: AppConfig,
    scenario: Scenario,
) -> Result<BTreeMap<String, Vec<Output>>> {
    let app = Arc::new(App::new(topology, config.handle_ctrl_c(false))?);
    let bootstrap = app.bootstrap_servers().to_owned();
    app.create_topics(&scenario.topics).await?;
    let partitions: BTreeMap<String, i32> = scenario
        .topics
        .iter()
        .map(|t| (t.name.clone(), t.partitions))
        .collect();
    let running = {
        let app = app.clone();
        tokio::spawn(async move { app.run().await })
    };
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("partitioner", "murmur2_random")
        .create()
        .map_err(kafka("creating the producer"))?;
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "kstreams-examples-reader")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(kafka("creating the reader"))?;
    for (topic, records) in &scenario.phases {
        for (k, v) in records {
            let mut r = BaseRecord::<[u8], [u8]>::to(topic);
            if let Some(k) = k {
                r = r.key(k.as_slice());
            }
            if let Some(v) = v {
                r = r.payload(v.as_slice());
            }
            producer.send(r).map_err(|(e, _)| kafka("producing")(e))?;
        }
        producer
            .flush(Duration::from_secs(60))
            .map_err(kafka("flushing"))?;
        let n = partitions.get(topic).copied().unwrap_or(1);
        let mut ends = Vec::new();
        for p in 0..n {
            let (_, high) = reader
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_err(kafka("reading watermarks"))?;
            ends.push(((topic.clone(), p), high));
        }
        let began = Instant::now();
        loop {
            if running.is_finished() {
                break;
            }
            let status = app.status();
            if ends
                .iter()
                .all(|(k, high)| *high == 0 || status.committed.get(k).is_some_and(|c| c >= high))
            {
                break;
            }
            if began.elapsed() > TIMEOUT {
                app.shutdown_handle().shutdown();
                return Err(Error::Runtime(format!(
                    "`{topic}` was not processed within {TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(scenario.linger).await;
    app.shutdown_handle().shutdown();
    running
        .await
        .map_err(|e| Error::Runtime(format!("the app's task failed: {e}")))??;

    let mut out = BTreeMap::new();
    for topic in &scenario.outputs {
        let n = partitions.get(topic).copied().unwrap_or(1);
        out.insert(topic.clone(), read_all(&reader, topic, n)?);
    }
    Ok(out)
}

fn read_all(reader: &BaseConsumer, topic: &str, partitions: i32) -> Result<Vec<Output>> {
    let mut tpl = TopicPartitionList::new();
    let mut remaining = BTreeMap::new();
    for p in 0..partitions {
        let (low, high) = reader
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .map_err(kafka("reading watermarks"))?;
        if high > low {
            remaining.insert(p, high);
        }
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(kafka("assigning"))?;
    }
    reader.assign(&tpl).map_err(kafka("assigning"))?;
    let mut out = Vec::new();
    let began = Instant::now();
    while !remaining.is_empty() {
        if began.elapsed() > TIMEOUT {
            return Err(Error::Runtime(format!("reading `{topic}` timed out")));
        }
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if m.offset() + 1 >= remaining.get(&m.partition()).copied().unwrap_or(0) {
                    remaining.remove(&m.partition());
                }
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let v = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                                (h.key.to_owned(), v.into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Output {
                    partition: m.partition(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
            Some(Err(e)) => return Err(kafka("reading")(e)),
            None => {}
        }
    }
    reader.unassign().map_err(kafka("unassigning"))?;
    out.sort_by_key(|o| o.partition);
    Ok(out)
}

/// UTF-8 text of optional bytes (lossy; empty for `None`).
pub fn text(bytes: &Option<Vec<u8>>) -> String {
    bytes
        .as_deref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// A big-endian `u64` (the default serde of `u64`); `None` if the bytes are not 8 long.
pub fn be_u64(bytes: &Option<Vec<u8>>) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.as_deref()?.try_into().ok()?))
}

/// `(key, value)` as UTF-8 bytes.
pub fn kv(key: &str, value: &str) -> Bytes {
    (
        Some(key.as_bytes().to_vec()),
        Some(value.as_bytes().to_vec()),
    )
}
