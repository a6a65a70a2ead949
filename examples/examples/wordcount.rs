//! Word count end to end: produce a file's lines to an input topic, count words with the
//! kstreams Kafka runtime, read the output topic to its end and print `word<TAB>count`.
//!
//! ```text
//! cargo run --release --example wordcount -- --input examples/data/sample.txt
//! cargo run --release --example wordcount -- --input FILE --brokers 127.0.0.1:9092 --partitions 4
//! cargo run --example wordcount -- --describe                # the topology, as text
//! cargo run --example wordcount -- --mermaid docs/topology.mmd # the topology, as Mermaid
//! cargo run --example wordcount -- --input FILE --serve 127.0.0.1:8080
//! curl http://127.0.0.1:8080/stores/word-counts/keys/hello   # {"key":"hello","value":3}
//! ```
//! Without `--brokers` it runs on librdkafka's embedded mock cluster. Logs go to stderr, counts
//! to stdout.
//!
//! With `--serve ADDR` the store `word-counts` is served over HTTP on ADDR from the start
//! (`kstreams::http`: `GET /stores/word-counts/keys/{word}`, `GET
//! /stores/word-counts/range?from=..&to=..`, `GET /metrics`), and ADDR is the instance's
//! advertised `application_server` (unless its IP is unspecified, `0.0.0.0` or `[::]`). Once
//! the whole input is processed the counts are printed as without it, the line `serving on
//! ADDR` (the address bound) goes to stderr, and the example keeps serving until SIGINT or
//! SIGTERM, then stops gracefully.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use kstreams::Record;
use kstreams::kafka::AppConfig;
use kstreams_examples::{embedded, wordcount};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Count the words of a file with kstreams on Kafka.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The text file to count.
    #[arg(long, required_unless_present_any = ["describe", "mermaid"])]
    input: Option<PathBuf>,
    /// Print the topology (`Topology::describe`) and exit.
    #[arg(long)]
    describe: bool,
    /// Write the topology as a Mermaid flowchart (`Topology::describe_mermaid`) to FILE and exit.
    #[arg(long, value_name = "FILE")]
    mermaid: Option<PathBuf>,
    /// Kafka bootstrap servers; without it, an embedded mock cluster is used.
    #[arg(long)]
    brokers: Option<String>,
    /// Partitions of the input, repartition and output topics (default: 4).
    #[arg(long)]
    partitions: Option<i32>,
    /// Keep the state here instead of a temporary directory.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Processing threads (default: 1).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Serve the word counts over HTTP on ADDR (`host:port`) and keep running, once the input
    /// is processed, until SIGINT or SIGTERM.
    #[arg(long, value_name = "ADDR")]
    serve: Option<String>,
}

/// Waits for SIGINT or SIGTERM.
async fn stop_signal() -> Result<(), BoxError> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// librdkafka 2.12's mock cluster keeps at most 5 MiB (and 100,000 record batches) per
/// partition, then moves the low watermark, whether the records were read or not. Chunks of input
/// are sized so that what waits to be processed stays well below that, counted uncompressed at a
/// generous per-record overhead.
const CHUNK_WORDS: u64 = 100_000;
const CHUNK_BYTES: u64 = 4 << 20;
const RECORD_OVERHEAD: u64 = 40;

/// How long one chunk of input may take to be processed (everything at once against a broker).
const PROCESS_TIMEOUT: Duration = Duration::from_secs(3600);

/// Reads the output topic from the beginning while the app runs (the embedded cluster forgets old
/// records, so `AppClient::read` at the end could miss some), keeping the last count of every
/// word, until the end of every partition once `done` says the app stopped; fails on a gap in the
/// offsets (records the cluster dropped before they were read).
fn read_counts(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    done: std::sync::mpsc::Receiver<()>,
) -> Result<BTreeMap<String, u64>, String> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    reader.assign(&tpl).map_err(|e| e.to_string())?;
    let mut next: HashMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    let mut counts = BTreeMap::new();
    let mut final_ends: Option<(HashMap<i32, i64>, Instant)> = None;
    loop {
        if final_ends.is_none() && done.try_recv().is_ok() {
            let mut ends = HashMap::new();
            for p in 0..partitions {
                let (_, high) = reader
                    .fetch_watermarks(topic, p, Duration::from_secs(30))
                    .map_err(|e| e.to_string())?;
                ends.insert(p, high);
            }
            final_ends = Some((ends, Instant::now() + Duration::from_secs(120)));
        }
        if let Some((e, deadline)) = &final_ends {
            if e.iter()
                .all(|(p, end)| next.get(p).is_some_and(|n| n >= end))
            {
                return Ok(counts);
            }
            if Instant::now() > *deadline {
                return Err("timed out reading the output topic".into());
            }
        }
        match reader.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                let expected = next.get(&m.partition()).copied().unwrap_or(0);
                if m.offset() != expected {
                    return Err(format!(
                        "the cluster dropped output records of partition {} (offsets {expected} \
                         to {}) before they were read; use a broker (--brokers)",
                        m.partition(),
                        m.offset() - 1
                    ));
                }
                next.insert(m.partition(), m.offset() + 1);
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let value = m
                    .payload()
                    .and_then(|v| <[u8; 8]>::try_from(v).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| format!("bad count for `{key}`"))?;
                counts.insert(key, value);
            }
            Some(Err(e)) => return Err(e.to_string()),
        }
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
    if args.describe || args.mermaid.is_some() {
        let topology = wordcount::topology("lines", "words-repartition", "counts")?;
        if args.describe {
            writeln!(std::io::stdout(), "{}", topology.describe())?;
        }
        if let Some(path) = &args.mermaid {
            std::fs::write(path, topology.describe_mermaid())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        return Ok(());
    }
    let input = args.input.clone().unwrap_or_default();
    let bytes =
        std::fs::read(&input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
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
        .commit_interval(Duration::from_millis(200))
        .num_threads(args.threads);
    if let Some(b) = &args.brokers {
        config = config.bootstrap_servers(b);
    }
    // Bound before anything runs, so a bad or busy address fails at once.
    let listener = match &args.serve {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("--serve {addr}: cannot listen: {e}"))?;
            let bound = listener.local_addr()?;
            if !bound.ip().is_unspecified() {
                config = config.application_server(bound.to_string());
            }
            Some(listener)
        }
        None => None,
    };
    let on_embedded = args.brokers.is_none();

    // The embedded cluster keeps only ~5 MiB per partition and drops older records, read or not.
    // So there, lines are fed in chunks small enough that the records not yet processed always fit
    // (the next chunk goes in once the last one is committed), and the output is read while it is
    // written. Against a broker, everything goes in at once.
    let partitions = args.partitions.unwrap_or(4).max(1);
    let chunks: Vec<&[&str]> = if on_embedded {
        config = config.producer_property("compression.type", "lz4");
        let mut chunks = Vec::new();
        let (mut start, mut words, mut bytes) = (0, 0u64, 0u64);
        for (i, l) in lines.iter().enumerate() {
            for w in wordcount::words(l) {
                words += 1;
                bytes += w.len() as u64 + RECORD_OVERHEAD;
            }
            bytes += l.len() as u64 + RECORD_OVERHEAD;
            if words >= CHUNK_WORDS || bytes >= CHUNK_BYTES {
                chunks.push(&lines[start..=i]);
                (start, words, bytes) = (i + 1, 0, 0);
            }
        }
        chunks.push(&lines[start..]);
        chunks
    } else {
        vec![&lines[..]]
    };

    let mut app = embedded::start(
        wordcount::topology(&input_topic, &words_topic, &output_topic)?,
        config,
        partitions,
        &[],
    )
    .await?;

    // Serve the store from the start; the server stops with the app.
    let (stop_serving, serving) = tokio::sync::oneshot::channel::<()>();
    let server = match listener {
        Some(listener) => {
            let server = kstreams::http::Server::new(app.client.app())
                .store_by_name::<String, u64>(wordcount::STORE)?;
            let addr = listener.local_addr()?;
            let task = tokio::spawn(server.serve(listener, async {
                let _ = serving.await;
            }));
            Some((addr, task))
        }
        None => None,
    };

    // Read the output as it is written (the last count of every word is its final count).
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let reading = {
        let (b, g, t) = (
            app.client.app().bootstrap_servers().to_owned(),
            format!("{app_id}-reader"),
            output_topic.clone(),
        );
        std::thread::spawn(move || read_counts(&b, &g, &t, partitions, done_rx))
    };

    let began = Instant::now();
    for chunk in &chunks {
        // Lines have no key: the producer spreads them over the partitions (librdkafka's sticky
        // partitioning for keyless records); the words are keyed and repartitioned.
        let records = chunk.iter().map(|line| Record::new((), (*line).to_owned()));
        app.client.produce(&input_topic, records).await?;
        // Every line processed and committed, and so every word of the repartition topic.
        app.processed_within(PROCESS_TIMEOUT).await?;
    }
    if server.is_none() {
        app.stop().await?;
    }
    let status = app.client.app().status();
    tracing::info!(
        lines = lines.len(),
        chunks = chunks.len(),
        partitions,
        records = status.processed_records,
        elapsed_ms = began.elapsed().as_millis() as u64,
        "input processed"
    );
    let _ = done_tx.send(());
    let counts = reading.join().map_err(|_| "the output reader panicked")??;
    // Nothing fell out of a topic before it was processed: every line and every word was.
    let words_in = lines
        .iter()
        .map(|l| wordcount::words(l).count() as u64)
        .sum::<u64>();
    let counted: u64 = counts.values().sum();
    if counted != words_in || status.processed_records != lines.len() as u64 + words_in {
        return Err(format!(
            "{} lines and {words_in} words written, {} records processed and {counted} words \
             counted: the cluster dropped records before they were processed; use a broker \
             (--brokers)",
            lines.len(),
            status.processed_records
        )
        .into());
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (word, count) in &counts {
        writeln!(out, "{word}\t{count}")?;
    }
    out.flush()?;
    drop(out);
    if let Some((addr, task)) = server {
        // Not a `tracing` line: whoever waits for it sees it whatever RUST_LOG says.
        eprintln!("serving on {addr}");
        stop_signal().await?;
        tracing::info!("signal: stopping the server and the app");
        let _ = stop_serving.send(());
        task.await??;
        app.stop().await?;
    }
    Ok(())
}
