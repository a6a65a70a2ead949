//! A join application as a process of its own, for the fault tests that kill it (SIGKILL)
//! mid-stream (`tests/tests/kafka_join_faults.rs`). Arguments, all required:
//!
//! ```text
//! join_app BOOTSTRAP APP_ID LEFT RIGHT OUTPUT STATE_DIR alo|eos BATCH_MAX_RECORDS KIND GRACE_MS
//! ```
//!
//! The topology is the `join` example's ([`kstreams_examples::join::topology`]) for KIND
//! (`stream-table`, `left-stream-table`, `stream-stream:WINDOW_MS`, `left-stream-stream:WINDOW_MS`)
//! and the grace GRACE_MS: LEFT joined with RIGHT into OUTPUT, String keys, each result's value
//! the example's output line past the key. Commits every 100 ms. Exits 0 after a graceful stop
//! (SIGINT), 1 with the error on stderr otherwise.

use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::{App, AppConfig, ProcessingGuarantee};
use kstreams_examples::join::{JoinSpec, topology};

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
        eprintln!("join_app: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [
        bootstrap,
        app_id,
        left,
        right,
        output,
        state,
        guarantee,
        batch,
        kind,
        grace,
    ] = args.as_slice()
    else {
        return Err(format!("expected 10 arguments, got {args:?}").into());
    };
    let guarantee = match guarantee.as_str() {
        "alo" => ProcessingGuarantee::AtLeastOnce,
        "eos" => ProcessingGuarantee::ExactlyOnce,
        other => return Err(format!("guarantee `{other}`: alo or eos").into()),
    };
    let kind: JoinSpec = kind.parse()?;
    let config = AppConfig::new(app_id)
        .bootstrap_servers(bootstrap)
        .state_dir(state)
        .processing_guarantee(guarantee)
        .batch_max_records(batch.parse()?)
        .commit_interval(Duration::from_millis(100))
        .startup_timeout(Duration::from_secs(30))
        .changelog_replication_factor(1)
        .handle_ctrl_c(true);
    let topology = topology(left, right, output, kind, grace.parse()?)?;
    let app = Arc::new(App::new(topology, config)?);
    app.run().await?;
    Ok(())
}
