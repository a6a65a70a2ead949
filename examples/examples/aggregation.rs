//! Batch aggregation on the embedded cluster: page views per user with `get_batch`/`put_batch`.
//!
//! ```text
//! cargo run --example aggregation
//! ```
//! Prints the topology, then `user<TAB>views` (stdout); logs go to stderr.

use kstreams_examples::aggregation;

#[tokio::main]
async fn main() -> kstreams::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut stdout = std::io::stdout().lock();
    use std::io::Write as _;
    let _ = writeln!(stdout, "{}", aggregation::topology()?.describe());
    let views = [
        ("alice", "/home"),
        ("bob", "/home"),
        ("alice", "/cart"),
        ("carol", "/home"),
        ("alice", "/checkout"),
        ("bob", "/help"),
    ];
    let state = std::env::temp_dir().join(format!("kstreams-aggregation-{}", std::process::id()));
    let counts = aggregation::run(&views, &state).await;
    let _ = std::fs::remove_dir_all(&state);
    for (user, n) in counts? {
        let _ = writeln!(stdout, "{user}\t{n}");
    }
    Ok(())
}
