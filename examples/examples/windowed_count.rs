//! Windowed count over a file (issue 14 §5: this command line is a contract).
//!
//! ```text
//! cargo run --release --example windowed_count -- --input FILE --window SPEC --grace-ms G \
//!     [--partitions N] [--emit final|update]
//! ```
//! FILE: lines `<timestamp ms>\t<key>` (UTF-8; blank lines ignored), produced in file order to
//! an input topic of N partitions (default 4) with Java's default partitioning, one record per
//! line (that key, that timestamp). SPEC: `tumbling:SIZE_MS`, `hopping:SIZE_MS:ADVANCE_MS`,
//! `sliding:DIFF_MS` or `session:GAP_MS`. The app counts records per key and window on the
//! embedded cluster (no broker) and the example exits once the whole input is processed.
//!
//! Output on stdout, one line per result, sorted by key, window start, window end:
//! `<key>\t<window start ms>\t<window end ms>\t<count>` (a session's end is its last record's
//! timestamp). `--emit final` (the default): every result emitted on window close, each window
//! once. `--emit update`: the last value emitted per window; a window whose last emission is a
//! deletion (a merged-away session) is left out. Logs go to stderr. A bad line (not
//! `<timestamp>\t<key>`, a negative timestamp, or 0, which librdkafka cannot send) is an error
//! naming its line number.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use kstreams::kafka::AppConfig;
use kstreams_examples::windowed_count::{self, EmitMode, WindowSpec};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Count records per key and window with kstreams on the embedded Kafka cluster.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Lines `<timestamp ms>\t<key>`.
    #[arg(long)]
    input: PathBuf,
    /// `tumbling:SIZE_MS`, `hopping:SIZE_MS:ADVANCE_MS`, `sliding:DIFF_MS` or `session:GAP_MS`.
    #[arg(long)]
    window: WindowSpec,
    /// Grace period, ms: how long after a window's end a record out of order is still counted.
    #[arg(long)]
    grace_ms: u64,
    /// Partitions of the input and output topics.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: i32,
    /// `final` (each window once, on close) or `update` (the last update of each window).
    #[arg(long, default_value = "final")]
    emit: EmitMode,
}

async fn run(args: Args) -> Result<(), BoxError> {
    let bytes = std::fs::read(&args.input)
        .map_err(|e| format!("cannot read {}: {e}", args.input.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| format!("{} is not UTF-8: {e}", args.input.display()))?;
    let lines = windowed_count::parse_input(&text, &args.input.display().to_string())?;
    let state = tempfile::Builder::new()
        .prefix("kstreams-windowed-count-")
        .tempdir()?;
    let app_id = format!(
        "windowed-count-{}-{}",
        std::process::id(),
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis()
    );
    let config = AppConfig::new(&app_id)
        .state_dir(state.path())
        .commit_interval(std::time::Duration::from_millis(100));
    let emitted = windowed_count::run(
        &lines,
        args.window,
        args.grace_ms,
        args.emit,
        args.partitions,
        config,
    )
    .await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in windowed_count::output_lines(&emitted, args.emit) {
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
            // The message names what was wrong and where (the input's line, the topic).
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::FAILURE
        }
    }
}
