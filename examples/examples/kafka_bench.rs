//! Throughput harness for the Kafka runtime, usable by `bench/run` (one system per mode) or on
//! its own with `--exit-at-end` (prints `records/s` on stdout when the input is committed).
//!
//! ```text
//! kafka_bench produce  --bootstrap B --topic T --records N --keys K --partitions P
//! kafka_bench raw      --bootstrap B --input T --output O --group G   # rdkafka consume→produce
//! kafka_bench raw      ... --copy-to C   # and a changelog-like record per record to C
//! kafka_bench identity --bootstrap B --input T --output O --group G --state-dir D
//! kafka_bench map      ...   # value ASCII-upper-cased
//! kafka_bench count    ...   # count per key in LMDB (+ changelog), u64 big-endian
//! kafka_bench wordcount --input LINES ...  # the word-count example topology
//! kafka_bench windowed-count ...  # count per key and hopping window (60 s by 10 s, grace 5 s), on close
//! kafka_bench enrich --table T ... # each record joined with its key's value in table topic T
//! kafka_bench enrich --table T --per-record-lookups ...  # the same, one table lookup per record
//! kafka_bench count --exactly-once ...       # any kstreams mode under exactly-once
//! ```
//! Every mode but `produce` runs until SIGTERM/Ctrl-C (graceful: flush, commit, close), or with
//! `--exit-at-end` until its group committed the input's end offsets.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use kstreams::kafka::{App, AppConfig, ProcessingGuarantee, TopicSpec};
use kstreams::{BatchProcessor, Context, Record, StoreSpec, Topology, processor};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Produce,
    Raw,
    Identity,
    Map,
    Count,
    Wordcount,
    /// The windowed_count example's topology: hopping windows of [`WINDOW_SIZE_MS`] advancing
    /// by [`WINDOW_ADVANCE_MS`], grace [`WINDOW_GRACE_MS`], emit on window close (Nexmark q5's
    /// shape; bench/java's `--topology windowed` and `verify --mode windowed` use the same).
    WindowedCount,
    /// Stream-table enrichment (`kstreams_examples::join::enrichment`): each input record joined
    /// with its key's value in `--table` (bench/java's `--topology enrich`, `verify --mode
    /// enriched`).
    Enrich,
}

/// The windowed workload's windows: bench/java `Main.WINDOW_SIZE_MS` and its siblings.
const WINDOW_SIZE_MS: u64 = 60_000;
const WINDOW_ADVANCE_MS: u64 = 10_000;
const WINDOW_GRACE_MS: u64 = 5_000;

#[derive(Debug, Parser)]
struct Args {
    mode: Mode,
    #[arg(long)]
    bootstrap: String,
    #[arg(long, default_value = "")]
    input: String,
    #[arg(long, default_value = "")]
    output: String,
    #[arg(long, default_value = "")]
    group: String,
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Milliseconds, or "default".
    #[arg(long, default_value = "default")]
    commit_interval_ms: String,
    #[arg(long, default_value_t = 1000)]
    batch_max_records: usize,
    /// kstreams modes: processing threads (`AppConfig::num_threads`).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long)]
    exit_at_end: bool,
    /// kstreams modes: exactly-once (transactions, read_committed) instead of at-least-once.
    #[arg(long)]
    exactly_once: bool,
    /// librdkafka producer property `NAME=VALUE` (repeatable): applied to `raw`'s producer and,
    /// through `AppConfig::producer_property`, to the kstreams runtime's producer.
    #[arg(long = "producer-property", value_parser = parse_property)]
    producer_properties: Vec<(String, String)>,
    /// librdkafka consumer property `NAME=VALUE` (repeatable): `raw`'s consumer and the runtime's.
    #[arg(long = "consumer-property", value_parser = parse_property)]
    consumer_properties: Vec<(String, String)>,
    // produce
    #[arg(long, default_value = "")]
    topic: String,
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// produce: write text lines (for wordcount) instead of 100-byte values.
    #[arg(long)]
    lines: bool,
    /// enrich: the table topic.
    #[arg(long, default_value = "")]
    table: String,
    /// enrich: one table lookup per record instead of one per batch.
    #[arg(long)]
    per_record_lookups: bool,
    /// raw: also produce, for each record, its key and an 8-byte value to this topic, in the
    /// record's partition (created compacted, with the input's partitions, if missing): the
    /// Kafka I/O of count (an output and a changelog record per input record) without count.
    #[arg(long, default_value = "")]
    copy_to: String,
}

/// A throwaway app on the cluster, only to create topics with (never run).
fn admin_app(args: &Args) -> Result<App, BoxError> {
    let mut t = Topology::builder();
    let s = t.source::<String, String>("unused");
    t.sink("unused-out", &s);
    Ok(App::new(
        t.build()?,
        AppConfig::new("kafka-bench-admin").bootstrap_servers(&args.bootstrap),
    )?)
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

#[derive(Debug, Clone, Default)]
struct CountPerKey;

impl BatchProcessor<String, String> for CountPerKey {
    type OutKey = String;
    type OutValue = u64;
    fn stores(&self) -> Vec<StoreSpec> {
        vec![StoreSpec::new::<String, u64>("counts")]
    }
    fn process_batch(
        &mut self,
        records: &[Record<String, String>],
        ctx: &mut Context<'_, String, u64>,
    ) -> kstreams::Result<()> {
        let mut store = ctx.store::<String, u64>("counts")?;
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut keys: Vec<String> = Vec::new();
        let mut which = Vec::with_capacity(records.len());
        for r in records {
            let next = keys.len();
            let i = *index.entry(r.key.as_str()).or_insert_with(|| {
                keys.push(r.key.clone());
                next
            });
            which.push(i);
        }
        let mut counts: Vec<u64> = store
            .get_batch(&keys)?
            .into_iter()
            .map(|c| c.unwrap_or(0))
            .collect();
        for (r, i) in records.iter().zip(which) {
            counts[i] += 1;
            ctx.forward(r.derive(keys[i].clone(), counts[i]));
        }
        let entries: Vec<(String, u64)> = keys.into_iter().zip(counts).collect();
        store.put_batch(&entries)
    }
}

fn end_offsets(bootstrap: &str, topic: &str) -> Result<BTreeMap<(String, i32), i64>, BoxError> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let n = md
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32);
    let mut m = BTreeMap::new();
    for p in 0..n {
        let (_, high) = c.fetch_watermarks(topic, p, Duration::from_secs(30))?;
        m.insert((topic.to_owned(), p), high);
    }
    Ok(m)
}

fn produce(args: &Args) -> Result<(), BoxError> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let app = admin_app(args)?;
    rt.block_on(app.create_topics(&[TopicSpec::new(&args.topic, args.partitions).replication(1)]))?;
    const WORDS: &[&str] = &[
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "lazy",
        "dog",
        "kafka",
        "stream",
        "batch",
        "state",
        "store",
        "commit",
        "offset",
        "partition",
        "record",
        "lmdb",
        "rust",
        "java",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..args.records {
        let key = format!("key-{}", i % args.keys.max(1));
        let value = if args.lines {
            let mut line = String::new();
            for w in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if w > 0 {
                    line.push(' ');
                }
                line.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
                if x.is_multiple_of(7) {
                    line.push_str(&(x % 5000).to_string());
                }
            }
            line
        } else {
            let mut v = format!("value-{i}-");
            while v.len() < 100 {
                v.push('x');
            }
            v
        };
        let mut r = BaseRecord::to(&args.topic)
            .key(key.as_bytes())
            .payload(value.as_bytes());
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    r = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(())
}

fn commit_interval(args: &Args) -> Duration {
    args.commit_interval_ms
        .parse()
        .map_or(Duration::from_secs(1), Duration::from_millis)
}

/// The baseline: rdkafka consume → produce, flush + synchronous commit every commit interval.
fn raw(args: &Args, stop: &AtomicBool) -> Result<u64, BoxError> {
    // The same base settings as the runtime's (kstreams::kafka::AppConfig), plus the properties
    // given on the command line (which the runtime gets too; bench/run gives none: every system
    // runs at its defaults).
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &args.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    // The runtime's consumer and producer defaults (kstreams::kafka::CONSUMER_DEFAULTS and
    // PRODUCER_DEFAULTS), so the ceiling runs with the settings kstreams runs with.
    for (k, v) in kstreams::kafka::CONSUMER_DEFAULTS {
        cc.set(*k, *v);
    }
    for (k, v) in &args.consumer_properties {
        cc.set(k, v);
    }
    let consumer: BaseConsumer = cc.create()?;
    let mut pc = ClientConfig::new();
    pc.set("bootstrap.servers", &args.bootstrap);
    for (k, v) in kstreams::kafka::PRODUCER_DEFAULTS {
        pc.set(*k, *v);
    }
    pc.set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true");
    for (k, v) in &args.producer_properties {
        pc.set(k, v);
    }
    let producer: ThreadedProducer<DefaultProducerContext> = pc.create()?;
    if !args.copy_to.is_empty() {
        let partitions = end_offsets(&args.bootstrap, &args.input)?.len() as i32;
        let spec = TopicSpec::new(&args.copy_to, partitions)
            .replication(1)
            .config("cleanup.policy", "compact");
        let app = admin_app(args)?;
        tokio::runtime::Handle::current().block_on(app.create_topics(&[spec]))?;
    }
    consumer.subscribe(&[&args.input])?;
    let ends = if args.exit_at_end {
        Some(end_offsets(&args.bootstrap, &args.input)?)
    } else {
        None
    };
    let interval = commit_interval(args);
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut committed: HashMap<i32, i64> = HashMap::new();
    let mut last_commit = Instant::now();
    let mut n = 0u64;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        if stopping || last_commit.elapsed() >= interval {
            while producer.in_flight_count() > 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut tpl = TopicPartitionList::new();
            for (p, o) in &next {
                if committed.get(p) != Some(o) {
                    tpl.add_partition_offset(&args.input, *p, Offset::Offset(*o))?;
                }
            }
            if tpl.count() > 0 {
                consumer.commit(&tpl, CommitMode::Sync)?;
                committed.extend(next.iter().map(|(p, o)| (*p, *o)));
            }
            last_commit = Instant::now();
            if stopping {
                return Ok(n);
            }
            if let Some(ends) = &ends
                && ends
                    .iter()
                    .all(|((_, p), e)| *e == 0 || committed.get(p).is_some_and(|c| c >= e))
            {
                return Ok(n);
            }
        }
        match consumer.poll(Duration::from_millis(50)) {
            None => {}
            Some(Ok(m)) => {
                let mut r = BaseRecord::<[u8], [u8]>::to(&args.output);
                if let Some(k) = m.key() {
                    r = r.key(k);
                }
                if let Some(v) = m.payload() {
                    r = r.payload(v);
                }
                send_retrying(&producer, r)?;
                if !args.copy_to.is_empty() {
                    let value = m.offset().to_be_bytes();
                    let mut c = BaseRecord::<[u8], [u8]>::to(&args.copy_to)
                        .partition(m.partition())
                        .payload(&value);
                    if let Some(k) = m.key() {
                        c = c.key(k);
                    }
                    send_retrying(&producer, c)?;
                }
                next.insert(m.partition(), m.offset() + 1);
                n += 1;
            }
            Some(Err(e)) => eprintln!("consumer error: {e}"),
        }
    }
}

/// Sends one record, waiting while the producer's queue is full.
fn send_retrying(
    producer: &ThreadedProducer<DefaultProducerContext>,
    mut r: BaseRecord<'_, [u8], [u8]>,
) -> Result<(), BoxError> {
    loop {
        match producer.send(r) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                r = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

fn topology(args: &Args) -> Result<Topology, BoxError> {
    let mut t = Topology::builder();
    match args.mode {
        Mode::Identity => {
            let s = t.source::<Option<Vec<u8>>, Option<Vec<u8>>>(&args.input);
            t.sink(&args.output, &s);
        }
        Mode::Map => {
            let s = t.source::<String, String>(&args.input);
            let m = t.add(
                processor::map(|r: &Record<String, String>| {
                    r.derive(r.key.clone(), r.value.to_ascii_uppercase())
                }),
                &s,
            );
            t.sink(&args.output, &m);
        }
        Mode::Count => {
            let s = t.source::<String, String>(&args.input);
            let c = t.add(CountPerKey, &s);
            t.sink(&args.output, &c);
        }
        Mode::Wordcount => {
            return Ok(kstreams_examples::wordcount::topology(
                &args.input,
                &format!("{}-words-repartition", args.group),
                &args.output,
            )?);
        }
        Mode::WindowedCount => {
            use kstreams_examples::windowed_count::{EmitMode, WindowSpec, topology};
            return Ok(topology(
                &args.input,
                &args.output,
                WindowSpec::Hopping {
                    size: WINDOW_SIZE_MS,
                    advance: WINDOW_ADVANCE_MS,
                },
                WINDOW_GRACE_MS,
                EmitMode::Final,
            )?);
        }
        Mode::Enrich => {
            return Ok(kstreams_examples::join::enrichment(
                &args.input,
                &args.table,
                &args.output,
                args.per_record_lookups,
            )?);
        }
        Mode::Produce | Mode::Raw => return Err("not a topology mode".into()),
    }
    Ok(t.build()?)
}

async fn run_app(args: &Args) -> Result<u64, BoxError> {
    let state = match &args.state_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("kafka-bench-{}", args.group)),
    };
    let mut config = AppConfig::new(&args.group)
        .bootstrap_servers(&args.bootstrap)
        .state_dir(state)
        .batch_max_records(args.batch_max_records)
        .num_threads(args.threads)
        .changelog_replication_factor(1);
    if args.exactly_once {
        config = config.processing_guarantee(ProcessingGuarantee::ExactlyOnce);
    }
    if let Ok(ms) = args.commit_interval_ms.parse::<u64>() {
        config = config.commit_interval(Duration::from_millis(ms));
    }
    for (k, v) in &args.producer_properties {
        config = config.producer_property(k, v);
    }
    for (k, v) in &args.consumer_properties {
        config = config.consumer_property(k, v);
    }
    let app = Arc::new(App::new(topology(args)?, config)?);
    if args.mode == Mode::Wordcount {
        let n = end_offsets(&args.bootstrap, &args.input)?.len() as i32;
        app.create_topics(&[
            TopicSpec::new(format!("{}-words-repartition", args.group), n).replication(1),
        ])
        .await?;
    }
    let runner = {
        let app = app.clone();
        tokio::spawn(async move { app.run().await })
    };
    let stop = app.shutdown_handle();
    tokio::spawn(async move {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
            stop.shutdown();
        }
    });
    if args.exit_at_end {
        let mut ends = end_offsets(&args.bootstrap, &args.input)?;
        let mut phase2 = args.mode == Mode::Wordcount;
        loop {
            let st = app.status();
            let done = ends
                .iter()
                .all(|(tp, e)| *e == 0 || st.committed.get(tp).is_some_and(|c| c >= e));
            if done && phase2 {
                ends = end_offsets(
                    &args.bootstrap,
                    &format!("{}-words-repartition", args.group),
                )?;
                phase2 = false;
                continue;
            }
            if done || runner.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        app.shutdown_handle().shutdown();
    }
    runner.await??;
    Ok(app.status().processed_records)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    let began = Instant::now();
    let n = match args.mode {
        Mode::Produce => {
            tokio::task::block_in_place(|| produce(&args))?;
            args.records
        }
        Mode::Raw => {
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            tokio::spawn(async move {
                if let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                {
                    term.recv().await;
                    s.store(true, Ordering::SeqCst);
                }
            });
            tokio::task::block_in_place(|| raw(&args, &stop))?
        }
        _ => run_app(&args).await?,
    };
    let secs = began.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:?}\trecords={n}\tseconds={secs:.3}\trecords/s={:.0}",
        args.mode,
        n as f64 / secs
    )?;
    Ok(())
}
