//! The word-count application as a process of its own, for tests that kill it (SIGKILL) or stop
//! it (SIGINT: graceful). Arguments, all required, in this order:
//!
//! ```text
//! wordcount_app BOOTSTRAP APP_ID INPUT WORDS OUTPUT STATE_DIR alo|eos BATCH_MAX_RECORDS
//! ```
//!
//! Optional environment variables, for fault tests (unset: the library's defaults):
//!
//! - `KSTREAMS_TEST_SESSION_TIMEOUT_MS`: the consumer's `session.timeout.ms` (a SIGKILLed member
//!   leaves the group after this long; librdkafka's default is 45 s);
//! - `KSTREAMS_TEST_LMDB_INITIAL_MAP_BYTES`, `KSTREAMS_TEST_LMDB_MAX_MAP_BYTES`:
//!   [`LmdbOptions`](kstreams::store::LmdbOptions);
//! - `KSTREAMS_TEST_COMMIT_INTERVAL_MS`: the commit interval (100 ms unless set);
//! - `KSTREAMS_TEST_THREADS`: the number of processing threads (1 unless set);
//! - `KSTREAMS_TEST_RDKAFKA_DEBUG`: librdkafka's `debug` property for every client (e.g.
//!   `cgrp,eos,broker`; its lines go to the `librdkafka` tracing target at debug level, so also set
//!   `RUST_LOG=warn,librdkafka=debug`), for post-mortems of fault tests;
//! - `KSTREAMS_TEST_STATUS_FILE`: a file rewritten every 100 ms (write to `.tmp`, rename) with
//!   the app's status, one `name=value` a line: `assigned` (`topic:partition`, comma-separated),
//!   `processed`, `restored`, `commits`, `rebalances`.
//!
//! Exits 0 after a graceful stop, 1 with the error on stderr otherwise.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::{App, AppConfig, AppStatus, ProcessingGuarantee};
use kstreams::store::LmdbOptions;

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
        eprintln!("wordcount_app: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [
        bootstrap,
        app_id,
        input,
        words,
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
    let mut config = AppConfig::new(app_id)
        .bootstrap_servers(bootstrap)
        .state_dir(state)
        .processing_guarantee(guarantee)
        .batch_max_records(batch.parse()?)
        .commit_interval(Duration::from_millis(100))
        .startup_timeout(Duration::from_secs(30))
        .handle_ctrl_c(true);
    if let Some(ms) = env_number("KSTREAMS_TEST_SESSION_TIMEOUT_MS")? {
        config = config.consumer_property("session.timeout.ms", ms.to_string());
    }
    if let Some(n) = env_number("KSTREAMS_TEST_THREADS")? {
        config = config.num_threads(n);
    }
    if let Some(ms) = env_number("KSTREAMS_TEST_COMMIT_INTERVAL_MS")? {
        config = config.commit_interval(Duration::from_millis(ms as u64));
    }
    if let Ok(debug) = std::env::var("KSTREAMS_TEST_RDKAFKA_DEBUG") {
        config = config.property("debug", debug);
    }
    let initial = env_number("KSTREAMS_TEST_LMDB_INITIAL_MAP_BYTES")?;
    let max = env_number("KSTREAMS_TEST_LMDB_MAX_MAP_BYTES")?;
    if initial.is_some() || max.is_some() {
        let d = LmdbOptions::default();
        config = config.lmdb(LmdbOptions {
            initial_map_size: initial.unwrap_or(d.initial_map_size),
            max_map_size: max.unwrap_or(d.max_map_size),
        });
    }
    let topology = kstreams_examples::wordcount::topology(input, words, output)?;
    let app = Arc::new(App::new(topology, config)?);
    if let Some(path) = std::env::var_os("KSTREAMS_TEST_STATUS_FILE") {
        let (app, path) = (app.clone(), PathBuf::from(path));
        tokio::spawn(async move {
            loop {
                // Best effort: a status that cannot be written is simply not updated.
                let _ = write_status(&path, &app.status());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    app.run().await?;
    Ok(())
}

fn env_number(name: &str) -> Result<Option<usize>, Box<dyn std::error::Error>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(
            v.parse()
                .map_err(|e| format!("{name}=`{v}`: not a number: {e}"))?,
        )),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(format!("{name}: {e}").into()),
    }
}

fn write_status(path: &std::path::Path, s: &AppStatus) -> std::io::Result<()> {
    let assigned: Vec<String> = s.assigned.iter().map(|(t, p)| format!("{t}:{p}")).collect();
    let text = format!(
        "assigned={}\nprocessed={}\nrestored={}\ncommits={}\nrebalances={}\n",
        assigned.join(","),
        s.processed_records,
        s.restored_records,
        s.commits,
        s.rebalances
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
