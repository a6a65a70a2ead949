//! Joins over two files (issue 15 §5: this command line is a contract).
//!
//! ```text
//! cargo run --release --example join -- --join KIND --left FILE --right FILE \
//!     [--partitions N] [--grace-ms G]
//! ```
//! FILE: lines `<timestamp ms>\t<key>\t<value>` (UTF-8; blank lines ignored), each file produced
//! in file order to its own topic of N partitions (default 4) with Java's default partitioning,
//! one record per line (that key, that timestamp, that value), both before the app starts
//! processing; the app runs on the embedded cluster (no broker) and the example exits once the
//! whole input is processed. In the right file of a table join an empty value is a tombstone.
//!
//! KIND: `stream-table` (inner: each left record with the right table's value as of the left
//! record's timestamp; the table keeps its history for the whole input), `left-stream-table`
//! (the same, a left join), `stream-stream:WINDOW_MS` (inner, windowed: a pair joins when its
//! timestamps are at most WINDOW_MS apart; also `left-stream-stream:WINDOW_MS`). `--grace-ms G`
//! (default 0): the join window's grace for the stream-stream kinds, the stream-side grace for the
//! table kinds.
//!
//! Output on stdout, one line per join result, grouped by key (keys sorted), each key's results
//! in the order the join produced them: for the table kinds `<key>\t<left ts>\t<left
//! value>\t<right value, or - when a left join found none>`; for the stream-stream kinds
//! `<key>\t<left ts>\t<left value>\t<right ts>\t<right value>`. Logs go to stderr. A bad line
//! (fewer than two tabs, a timestamp that is not an integer, negative, or 0, which librdkafka
//! cannot send) is an error naming its file and line.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use kstreams::kafka::AppConfig;
use kstreams_examples::join::{self, JoinSpec, Line};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Join two files' records with kstreams on the embedded Kafka cluster.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// `stream-table`, `left-stream-table`, `stream-stream:WINDOW_MS` or
    /// `left-stream-stream:WINDOW_MS`.
    #[arg(long)]
    join: JoinSpec,
    /// The stream: lines `<timestamp ms>\t<key>\t<value>`.
    #[arg(long)]
    left: PathBuf,
    /// The table (or the other stream): lines `<timestamp ms>\t<key>\t<value>`.
    #[arg(long)]
    right: PathBuf,
    /// Partitions of the input and output topics.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: i32,
    /// Grace period, ms: the join window's (stream-stream), the stream side's (stream-table).
    #[arg(long, default_value_t = 0)]
    grace_ms: u64,
}

fn read(path: &Path) -> Result<Vec<Line>, BoxError> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text =
        String::from_utf8(bytes).map_err(|e| format!("{} is not UTF-8: {e}", path.display()))?;
    Ok(join::parse_input(&text, &path.display().to_string())?)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let left = read(&args.left)?;
    let right = read(&args.right)?;
    let state = tempfile::Builder::new()
        .prefix("kstreams-join-")
        .tempdir()?;
    let app_id = format!(
        "join-{}-{}",
        std::process::id(),
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis()
    );
    let config = AppConfig::new(&app_id)
        .state_dir(state.path())
        .commit_interval(std::time::Duration::from_millis(100));
    let emitted = join::run(
        &left,
        &right,
        args.join,
        args.grace_ms,
        args.partitions,
        config,
    )
    .await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in join::output_lines(&emitted) {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The message names what was wrong and where (the file's line, the topic).
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::FAILURE
        }
    }
}
