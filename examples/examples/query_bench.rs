//! Interactive queries under load (issue #16 §4): how many HTTP queries per second one instance
//! answers while it counts words at full speed, and how much they slow the counting down.
//!
//! Two runs of the word count over the same input on a broker, each on fresh topics: one without
//! queries (the reference), one with `--clients` HTTP clients asking
//! `GET /stores/word-counts/keys/{word}` for random words in a loop, from the first record to the
//! last (each client waits for its answer before the next request). Prints one Markdown table:
//! records/s of both runs, the slowdown, queries/s answered and their latency.
//!
//! ```text
//! bench/queries                      # starts the project's broker, runs this in release mode
//! cargo run --release --example query_bench -- --brokers 127.0.0.1:9092 [--lines 200000] [--clients 4]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use kstreams::Record;
use kstreams::kafka::AppConfig;
use kstreams_examples::{embedded, wordcount};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Parser)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// Lines of input (10 words each, from a vocabulary of `--words`).
    #[arg(long, default_value_t = 200_000)]
    lines: usize,
    /// Distinct words.
    #[arg(long, default_value_t = 10_000)]
    words: usize,
    /// Concurrent HTTP clients during the second run.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
}

/// A small deterministic generator (no dependency for a benchmark's input).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn word(i: u64) -> String {
    format!("w{i}")
}

struct Run {
    records: u64,
    elapsed: Duration,
    queries: u64,
    latencies: Vec<Duration>,
}

async fn run(args: &Args, lines: &[String], clients: usize) -> Result<Run, BoxError> {
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let app_id = format!("query-bench-{}-{stamp}", std::process::id());
    let (input, words, output) = (
        format!("{app_id}-lines"),
        format!("{app_id}-words"),
        format!("{app_id}-counts"),
    );
    let state = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = AppConfig::new(&app_id)
        .bootstrap_servers(&args.brokers)
        .state_dir(state.path())
        .application_server(addr.to_string())
        .progress_log_interval(None);
    let mut app = embedded::start(
        wordcount::topology(&input, &words, &output)?,
        config,
        args.partitions,
        &[],
    )
    .await?;
    let (stop_serving, serving) = tokio::sync::oneshot::channel::<()>();
    let server = kstreams::http::Server::new(app.client.app())
        .store_by_name::<String, u64>(wordcount::STORE)?;
    let served = tokio::spawn(server.serve(listener, async {
        let _ = serving.await;
    }));

    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut askers = Vec::new();
    for c in 0..clients {
        let (done, answered) = (done.clone(), answered.clone());
        let vocabulary = args.words as u64;
        askers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut seed = 0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1);
            let mut latencies = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let w = word(next(&mut seed) % vocabulary);
                let began = Instant::now();
                let Ok(r) = http
                    .get(format!("http://{addr}/stores/word-counts/keys/{w}"))
                    .send()
                    .await
                else {
                    continue;
                };
                let ok = matches!(r.status().as_u16(), 200 | 404);
                let _ = r.bytes().await;
                if ok {
                    latencies.push(began.elapsed());
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }

    let began = Instant::now();
    let records = lines.iter().map(|l| Record::new((), l.clone()));
    app.client.produce(&input, records).await?;
    app.processed_within(Duration::from_secs(3600)).await?;
    let elapsed = began.elapsed();
    done.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for a in askers {
        latencies.extend(a.await?);
    }
    let _ = stop_serving.send(());
    served.await??;
    app.stop().await?;
    Ok(Run {
        records: app.client.app().status().processed_records,
        elapsed,
        queries: answered.load(Ordering::Relaxed),
        latencies,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
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
    let mut seed = 42u64;
    let lines: Vec<String> = (0..args.lines)
        .map(|_| {
            (0..10)
                .map(|_| word(next(&mut seed) % args.words as u64))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let quiet = run(&args, &lines, 0).await?;
    let mut loaded = run(&args, &lines, args.clients).await?;
    loaded.latencies.sort();
    let rate = |r: &Run| r.records as f64 / r.elapsed.as_secs_f64();
    let slowdown = (loaded.elapsed.as_secs_f64() / quiet.elapsed.as_secs_f64() - 1.0) * 100.0;
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "| lines | records | clients | records/s without queries | records/s with queries | \
         slowdown | queries/s | p50 ms | p99 ms |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|")?;
    writeln!(
        out,
        "| {} | {} | {} | {:.0} | {:.0} | {slowdown:+.1} % | {:.0} | {:.2} | {:.2} |",
        args.lines,
        quiet.records,
        args.clients,
        rate(&quiet),
        rate(&loaded),
        loaded.queries as f64 / loaded.elapsed.as_secs_f64(),
        percentile(&loaded.latencies, 0.5),
        percentile(&loaded.latencies, 0.99),
    )?;
    Ok(())
}
