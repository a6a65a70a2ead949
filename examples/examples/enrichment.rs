//! Enrichment on the embedded cluster: orders joined against a customers table in a store.
//!
//! ```text
//! cargo run --example enrichment
//! ```
//! Prints the topology, then one enriched order per line (stdout); logs go to stderr.

use kstreams_examples::enrichment;

#[tokio::main]
async fn main() -> kstreams::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut stdout = std::io::stdout().lock();
    use std::io::Write as _;
    let _ = writeln!(stdout, "{}", enrichment::topology()?.describe());
    let customers = [("c1", "Ada"), ("c2", "Grace")];
    let orders = [
        ("c1", "a keyboard"),
        ("c2", "a compiler"),
        ("c3", "a mystery box"),
    ];
    let state = std::env::temp_dir().join(format!("kstreams-enrichment-{}", std::process::id()));
    let lines = enrichment::run(&customers, &orders, &state).await;
    let _ = std::fs::remove_dir_all(&state);
    for line in lines? {
        let _ = writeln!(stdout, "{line}");
    }
    Ok(())
}
