//! A windowed-count application as a process of its own, for the fault tests that kill it
//! (SIGKILL) mid-window (`tests/tests/kafka_windowed_faults.rs`). Arguments, all required:
//!
//! ```text
//! windowed_app BOOTSTRAP APP_ID INPUT OUTPUT STATE_DIR alo|eos BATCH_MAX_RECORDS
//! ```
//!
//! The topology is the `windowed_count` example's: a count per key (String) and tumbling
//! window of [`WINDOW_MS`], grace [`GRACE_MS`], emitted on window close to OUTPUT (keys as
//! Kafka's `TimeWindowedSerde`, counts as 8 big-endian bytes). Commits every 100 ms. Exits 0
//! after a graceful stop (SIGINT), 1 with the error on stderr otherwise.

use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::{App, AppConfig, ProcessingGuarantee};
use kstreams_examples::windowed_count::{EmitMode, WindowSpec, topology};

/// The window size, ms (the fault tests compute the truth with it).
pub const WINDOW_MS: u64 = 10_000;
/// The grace period, ms.
pub const GRACE_MS: u64 = 1_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    if let Err(e) = run().await {
        eprintln!("windowed_app: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, app_id, input, output, state, guarantee, batch] = args.as_slice() else {
        return Err(format!("expected 7 arguments, got {args:?}").into());
    };
    let guarantee = match guarantee.as_str() {
        "alo" => ProcessingGuarantee::AtLeastOnce,
        "eos" => ProcessingGuarantee::ExactlyOnce,
        other => return Err(format!("guarantee `{other}`: alo or eos").into()),
    };
    let config = AppConfig::new(app_id)
        .bootstrap_servers(bootstrap)
        .state_dir(state)
        .processing_guarantee(guarantee)
        .batch_max_records(batch.parse()?)
        .commit_interval(Duration::from_millis(100))
        .startup_timeout(Duration::from_secs(30))
        .changelog_replication_factor(1)
        .handle_ctrl_c(true);
    let topology = topology(
        input,
        output,
        WindowSpec::Tumbling { size: WINDOW_MS },
        GRACE_MS,
        EmitMode::Final,
    )?;
    let app = Arc::new(App::new(topology, config)?);
    app.run().await?;
    Ok(())
}
