//! Exactly-once processing: account balances from deposits, where every deposit changes its
//! balance exactly once, even across crashes.
//!
//! With `ProcessingGuarantee::ExactlyOnce` the balances written to the output, the store's
//! changelog and the consumed input offsets commit in one Kafka transaction; a reader with
//! `isolation.level=read_committed` sees exactly one update per deposit. It needs a real broker:
//! librdkafka's embedded mock cluster accepts transactions but does not apply them, so `App::new`
//! refuses exactly-once there.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kstreams::kafka::{AppConfig, ProcessingGuarantee};
use kstreams::{Emit, Error, Record, Result, Topology, batch_processor, store};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::embedded;

/// Balance per account.
#[store(name = "balances")]
pub type Balances = kstreams::KeyValue<String, i64>;

/// Applies deposits (key: account, value: amount in cents) and forwards the new balance after
/// each deposit: one read and one write of the store per account and batch.
#[batch_processor]
pub fn apply_deposits(
    deposits: &[Record<String, i64>],
    balances: &mut Balances,
    out: &mut Emit<String, i64>,
) -> kstreams::Result<()> {
    let accounts: Vec<String> = deposits
        .iter()
        .map(|d| d.key.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut current: BTreeMap<String, i64> = accounts
        .iter()
        .cloned()
        .zip(balances.get_batch(&accounts)?)
        .map(|(a, b)| (a, b.unwrap_or(0)))
        .collect();
    for d in deposits {
        let balance = current.entry(d.key.clone()).or_insert(0);
        *balance += d.value;
        out.forward(d.derive(d.key.clone(), *balance));
    }
    balances.put_batch(&current.into_iter().collect::<Vec<_>>())
}

/// `input` (account → amount) → [`apply_deposits`] → `output` (account → balance).
pub fn topology(input: &str, output: &str) -> Result<Topology> {
    let mut t = Topology::builder();
    let deposits = t.source::<String, i64>(input);
    let balances = t.add(apply_deposits, &deposits);
    t.sink(output, &balances);
    Ok(t.build()?)
}

/// What a run read back with `read_committed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The last committed balance of every account.
    pub balances: BTreeMap<String, i64>,
    /// How many committed balance updates the output holds (exactly one per deposit).
    pub updates: usize,
}

/// Runs the example exactly-once against the broker at `bootstrap` over `deposits`, on topics
/// named after `name` (so runs do not share state), and reads the output back `read_committed`.
pub async fn run(
    bootstrap: &str,
    name: &str,
    deposits: &[(&str, i64)],
    state_dir: &std::path::Path,
) -> Result<Outcome> {
    let (input, output) = (format!("{name}-deposits"), format!("{name}-balances"));
    let config = AppConfig::new(name)
        .bootstrap_servers(bootstrap)
        .state_dir(state_dir)
        .processing_guarantee(ProcessingGuarantee::ExactlyOnce)
        .commit_interval(Duration::from_millis(100));
    let mut app = embedded::start(topology(&input, &output)?, config, 2, &[]).await?;
    let deposits = deposits
        .iter()
        .map(|(account, amount)| Record::new((*account).to_owned(), *amount));
    app.client.produce(&input, deposits).await?;
    // The input is not transactional (the client writes it), so its end is the app's last
    // committed offset: waiting works under exactly-once here.
    app.processed().await?;
    app.stop().await?;
    // Every transaction of the output ends with a marker, so the last record is not at the end
    // of its partition: `AppClient::read` waits for a record that never comes (and fails after
    // 10 s). A `read_committed` reader that stops at the end of each partition reads it.
    read_committed(bootstrap, &output, 2)
}

fn kafka(context: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
    move |source| Error::Kafka {
        context: context.to_owned(),
        source,
    }
}

/// The reader's client context: the end of a partition is what the reader waits for, not an
/// error (rdkafka's default context logs librdkafka's `PartitionEOF` event at error level).
struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            eprintln!("reader: {error}: {reason}");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// Reads every committed record of `topic` to the end of each partition (past transaction
/// markers, which a plain offset count would never reach).
fn read_committed(bootstrap: &str, topic: &str, partitions: i32) -> Result<Outcome> {
    let reader: BaseConsumer<ReaderContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create_with_context(ReaderContext)
        .map_err(kafka("creating the reader"))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(kafka("assigning"))?;
    }
    reader.assign(&tpl).map_err(kafka("assigning"))?;
    let mut open: BTreeSet<i32> = (0..partitions).collect();
    let mut outcome = Outcome {
        balances: BTreeMap::new(),
        updates: 0,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !open.is_empty() {
        if Instant::now() > deadline {
            return Err(Error::Runtime(format!("reading `{topic}` timed out")));
        }
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let balance = m
                    .payload()
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(i64::from_be_bytes)
                    .ok_or_else(|| {
                        Error::Runtime(format!("offset {} of `{topic}` is not an i64", m.offset()))
                    })?;
                let account = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                outcome.balances.insert(account, balance);
                outcome.updates += 1;
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => return Err(kafka("reading")(e)),
            None => {}
        }
    }
    Ok(outcome)
}
