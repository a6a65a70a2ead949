//! Punctuation on the embedded cluster: a wall-clock punctuator emits a periodic summary.
//!
//! ```text
//! cargo run --example punctuation
//! ```
//! Prints the topology, then the summary lines (stdout); logs go to stderr.

use kstreams_examples::punctuation;

#[tokio::main]
async fn main() -> kstreams::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut stdout = std::io::stdout().lock();
    use std::io::Write as _;
    let _ = writeln!(stdout, "{}", punctuation::topology()?.describe());
    let alerts = ["too hot", "too cold", "too hot"];
    let state = std::env::temp_dir().join(format!("kstreams-punctuation-{}", std::process::id()));
    let lines = punctuation::run(&alerts, &state).await;
    let _ = std::fs::remove_dir_all(&state);
    for line in lines? {
        let _ = writeln!(stdout, "{line}");
    }
    Ok(())
}
