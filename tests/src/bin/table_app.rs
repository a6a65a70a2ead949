//! A table application as a process of its own, for the fault tests that kill it (SIGKILL)
//! (`tests/tests/kafka_tables.rs`). Arguments, all required:
//!
//! ```text
//! table_app BOOTSTRAP APP_ID TABLE ORDERS OUTPUT STATE_DIR alo|eos BATCH_MAX_RECORDS
//! ```
//!
//! The topology is [`kstreams_tests::tables::enrich_topology`]: orders enriched with the current
//! value of a table materialized from its own topic. Commits every 100 ms. Exits 0 after a
//! graceful stop (SIGINT), 1 with the error on stderr otherwise.

use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::{App, AppConfig, ProcessingGuarantee};

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
        eprintln!("table_app: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [
        bootstrap,
        app_id,
        table,
        orders,
        output,
        state,
        guarantee,
        batch,
    ] = args.as_slice()
    else {
        return Err(format!("expected 8 arguments, got {args:?}").into());
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
    let topology = kstreams_tests::tables::enrich_topology(table, orders, output)?;
    let app = Arc::new(App::new(topology, config)?);
    app.run().await?;
    Ok(())
}
