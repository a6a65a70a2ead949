//! Word count end to end: produce a file's lines to an input topic, count words with the
//! kstreams Kafka runtime, read the output topic to its end and print `word<TAB>count`.
//!
//! ```text
//! cargo run --release --example wordcount -- --input examples/data/sample.txt
//! cargo run --release --example wordcount -- --input FILE --brokers 127.0.0.1:9092 --partitions 4
//! ```
//! Without `--brokers` it runs on librdkafka's embedded mock cluster. Logs go to stderr, counts
//! to stdout.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use kstreams::kafka::{App, AppConfig, TopicSpec};
use kstreams::partitioner::partition_for_key;
use kstreams_examples::wordcount;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Count the words of a file with kstreams on Kafka.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The text file to count.
    #[arg(long)]
    input: PathBuf,
    /// Kafka bootstrap servers; without it, an embedded mock cluster is used.
    #[arg(long)]
    brokers: Option<String>,
    /// Partitions of the input topic (default: 4, more when the embedded cluster needs them); the
    /// repartition and output topics get as many (or more on the embedded cluster).
    #[arg(long)]
    partitions: Option<i32>,
    /// Keep the state here instead of a temporary directory.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

/// What librdkafka's mock cluster keeps per partition before it drops old records, with margin.
const MOCK_MAX_RECORDS: u64 = 80_000;
const MOCK_MAX_BYTES: u64 = 4 << 20;
/// A rough per-record overhead in the mock's accounting.
const RECORD_OVERHEAD: u64 = 80;

fn fits(records: u64, bytes: u64) -> bool {
    records <= MOCK_MAX_RECORDS && bytes <= MOCK_MAX_BYTES
}

/// The fewest output partitions (at least `min`) such that no partition of the output topic
/// outgrows the mock cluster, given how often each word occurs.
fn output_partitions(occurrences: &HashMap<String, u64>, min: i32) -> Result<i32, BoxError> {
    for p in min..=4096 {
        let mut load = vec![(0u64, 0u64); p as usize];
        for (word, n) in occurrences {
            let slot = &mut load[partition_for_key(word.as_bytes(), p) as usize];
            slot.0 += n;
            slot.1 += n * (word.len() as u64 + 8 + RECORD_OVERHEAD);
        }
        if load.iter().all(|(r, b)| fits(*r, *b)) {
            return Ok(p);
        }
    }
    Err(
        "the input is too large for the embedded cluster (a word occurs too often for one \
         partition to keep every count); run against a broker with --brokers"
            .into(),
    )
}

/// Waits until the app committed every offset up to `ends` (or stopped).
async fn wait_committed(
    app: &App,
    ends: &BTreeMap<(String, i32), i64>,
    runner: &tokio::task::JoinHandle<kstreams::Result<()>>,
) {
    loop {
        let status = app.status();
        let done = ends
            .iter()
            .all(|(tp, end)| *end == 0 || status.committed.get(tp).is_some_and(|c| c >= end));
        if done || runner.is_finished() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let bytes = std::fs::read(&args.input)
        .map_err(|e| format!("cannot read {}: {e}", args.input.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();

    let run = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis()
    );
    let app_id = format!("wordcount-{run}");
    let input_topic = format!("{app_id}-lines");
    let words_topic = format!("{app_id}-words-repartition");
    let output_topic = format!("{app_id}-counts");
    let (state_dir, _tmp) = match &args.state_dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("kstreams-wordcount-")
                .tempdir()?;
            (t.path().to_owned(), Some(t))
        }
    };

    let mut config = AppConfig::new(&app_id)
        .state_dir(&state_dir)
        .batch_max_records(5000)
        .commit_interval(Duration::from_millis(200));
    if let Some(b) = &args.brokers {
        config = config.bootstrap_servers(b);
    }
    let embedded = args.brokers.is_none();

    // Size the topics: the embedded cluster keeps only ~100,000 records or ~5 MiB per partition.
    let mut partitions = args.partitions.unwrap_or(4).max(1);
    let mut out_partitions = partitions;
    if embedded {
        let line_bytes: u64 = lines.iter().map(|l| l.len() as u64 + RECORD_OVERHEAD).sum();
        let needed = (lines.len() as u64)
            .div_ceil(MOCK_MAX_RECORDS)
            .max(line_bytes.div_ceil(MOCK_MAX_BYTES)) as i32;
        if needed > partitions {
            tracing::info!(
                partitions = needed,
                "more input partitions for the embedded cluster"
            );
            partitions = needed;
        }
        let mut occurrences: HashMap<String, u64> = HashMap::new();
        for l in &lines {
            for w in wordcount::words(l) {
                *occurrences.entry(w).or_default() += 1;
            }
        }
        out_partitions = output_partitions(&occurrences, partitions)?;
    }

    let app = Arc::new(App::new(
        wordcount::topology(&input_topic, &words_topic, &output_topic)?,
        config,
    )?);
    let bootstrap = app.bootstrap_servers().to_owned();
    app.create_topics(&[
        TopicSpec::new(&input_topic, partitions),
        TopicSpec::new(&words_topic, out_partitions),
        TopicSpec::new(&output_topic, out_partitions),
    ])
    .await?;

    // Produce the lines, spread round-robin over the partitions.
    let began = Instant::now();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()?;
    for (i, line) in lines.iter().enumerate() {
        let mut record = BaseRecord::<(), str>::to(&input_topic)
            .payload(*line)
            .partition((i % partitions as usize) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    drop(producer);

    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("{app_id}-reader"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut input_end = BTreeMap::new();
    for p in 0..partitions {
        let (low, high) = reader.fetch_watermarks(&input_topic, p, Duration::from_secs(30))?;
        if low > 0 {
            return Err(format!(
                "the cluster dropped input records of partition {p} (low watermark {low}); use more --partitions"
            )
            .into());
        }
        input_end.insert((input_topic.clone(), p), high);
    }
    tracing::info!(
        lines = lines.len(),
        partitions,
        elapsed_ms = began.elapsed().as_millis() as u64,
        "input produced"
    );

    // Run the app until every input record is processed and committed, then stop it gracefully.
    let runner = {
        let app = app.clone();
        tokio::spawn(async move { app.run().await })
    };
    let began = Instant::now();
    wait_committed(&app, &input_end, &runner).await;
    // Every line is committed, so every word is acknowledged: the repartition topic is complete.
    let mut words_end = BTreeMap::new();
    for p in 0..out_partitions {
        let (_, high) = reader.fetch_watermarks(&words_topic, p, Duration::from_secs(30))?;
        words_end.insert((words_topic.clone(), p), high);
    }
    wait_committed(&app, &words_end, &runner).await;
    app.shutdown_handle().shutdown();
    runner.await??;
    let status = app.status();
    tracing::info!(
        records = status.processed_records,
        elapsed_ms = began.elapsed().as_millis() as u64,
        "input processed"
    );

    // Read the output topic to its end: the last count of every word is its final count.
    let mut tpl = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for p in 0..out_partitions {
        let (low, high) = reader.fetch_watermarks(&output_topic, p, Duration::from_secs(30))?;
        if low > 0 {
            return Err(format!(
                "the cluster dropped output records of partition {p} (low watermark {low})"
            )
            .into());
        }
        if high > 0 {
            tpl.add_partition_offset(&output_topic, p, Offset::Beginning)?;
            ends.insert(p, high);
        }
    }
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    if !ends.is_empty() {
        reader.assign(&tpl)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !ends.is_empty() {
            if Instant::now() > deadline {
                return Err("timed out reading the output topic".into());
            }
            match reader.poll(Duration::from_millis(200)) {
                None => {}
                Some(Ok(m)) => {
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    let value = m
                        .payload()
                        .and_then(|v| <[u8; 8]>::try_from(v).ok())
                        .map(u64::from_be_bytes)
                        .ok_or_else(|| format!("bad count for `{key}`"))?;
                    counts.insert(key, value);
                    if ends
                        .get(&m.partition())
                        .is_some_and(|end| m.offset() + 1 >= *end)
                    {
                        ends.remove(&m.partition());
                    }
                }
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (word, count) in &counts {
        writeln!(out, "{word}\t{count}")?;
    }
    out.flush()?;
    Ok(())
}
