//! Exactly-once processing against a real Kafka broker: account balances from deposits.
//!
//! ```text
//! scripts/kafka/kafka start            # prints 127.0.0.1:PORT
//! cargo run --example exactly_once -- --brokers 127.0.0.1:PORT
//! ```
//! Prints the topology, then `account<TAB>balance` and the number of committed updates (one per
//! deposit, read with `read_committed`) on stdout; logs go to stderr. Exactly-once needs a real
//! broker: the embedded mock cluster does not apply transactions.

use clap::Parser;
use kstreams_examples::exactly_once;

#[derive(Parser)]
#[command(about = "Account balances from deposits, exactly once (needs a real broker)")]
struct Args {
    /// Kafka bootstrap servers (required: exactly-once does not run on the embedded cluster).
    #[arg(long)]
    brokers: String,
}

#[tokio::main]
async fn main() -> kstreams::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut stdout = std::io::stdout().lock();
    use std::io::Write as _;
    let _ = writeln!(
        stdout,
        "{}",
        exactly_once::topology("deposits", "balances")?.describe()
    );
    let deposits = [
        ("alice", 1000),
        ("bob", 250),
        ("alice", -300),
        ("carol", 75),
        ("bob", 250),
    ];
    let id = format!(
        "exactly-once-example-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let state = std::env::temp_dir().join(&id);
    let outcome = exactly_once::run(&args.brokers, &id, &deposits, &state).await;
    let _ = std::fs::remove_dir_all(&state);
    let outcome = outcome?;
    for (account, balance) in &outcome.balances {
        let _ = writeln!(stdout, "{account}\t{balance}");
    }
    let _ = writeln!(stdout, "committed updates\t{}", outcome.updates);
    Ok(())
}
