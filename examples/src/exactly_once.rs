//! Exactly-once processing: account balances from deposits, where every deposit changes its
//! balance exactly once, even across crashes.
//!
//! With `ProcessingGuarantee::ExactlyOnce` the balances written to the output, the store's
//! changelog and the consumed input offsets commit in one Kafka transaction; a reader with
//! `isolation.level=read_committed` sees exactly one update per deposit. It needs a real broker:
//! librdkafka's embedded mock cluster accepts transactions but does not apply them, so `App::new`
//! refuses exactly-once there.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kstreams::kafka::{AppConfig, ProcessingGuarantee};
use kstreams::{Emit, Record, Result, Topology, batch_processor, store};

use crate::embedded;

/// Balance per account.
#[store(name = "balances")]
pub type Balances = kstreams::KeyValue<String, i64>;

/// Applies deposits (key: account, value: amount in cents) and forwards the new balance after
/// each deposit: one read and one write of the store per account and batch.
#[batch_processor]
pub fn apply_deposits(
    deposits: &[Record<String, i64>],
    balances: &mut Balances,
    out: &mut Emit<String, i64>,
) -> kstreams::Result<()> {
    let accounts: Vec<String> = deposits
        .iter()
        .map(|d| d.key.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut current: BTreeMap<String, i64> = accounts
        .iter()
        .cloned()
        .zip(balances.get_batch(&accounts)?)
        .map(|(a, b)| (a, b.unwrap_or(0)))
        .collect();
    for d in deposits {
        let balance = current.entry(d.key.clone()).or_insert(0);
        *balance += d.value;
        out.forward(d.derive(d.key.clone(), *balance));
    }
    balances.put_batch(&current.into_iter().collect::<Vec<_>>())
}

/// `input` (account → amount) → [`apply_deposits`] → `output` (account → balance).
pub fn topology(input: &str, output: &str) -> Result<Topology> {
    let mut t = Topology::builder();
    let deposits = t.source::<String, i64>(input);
    let balances = t.add(apply_deposits, &deposits);
    t.sink(output, &balances);
    Ok(t.build()?)
}

/// What a run read back with `read_committed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The last committed balance of every account.
    pub balances: BTreeMap<String, i64>,
    /// How many committed balance updates the output holds (exactly one per deposit).
    pub updates: usize,
}

/// Runs the example exactly-once against the broker at `bootstrap` over `deposits`, on topics
/// named after `name` (so runs do not share state), and reads the output back `read_committed`.
pub async fn run(
    bootstrap: &str,
    name: &str,
    deposits: &[(&str, i64)],
    state_dir: &std::path::Path,
) -> Result<Outcome> {
    let (input, output) = (format!("{name}-deposits"), format!("{name}-balances"));
    let config = AppConfig::new(name)
        .bootstrap_servers(bootstrap)
        .state_dir(state_dir)
        .processing_guarantee(ProcessingGuarantee::ExactlyOnce)
        .commit_interval(Duration::from_millis(100));
    let mut app = embedded::start(topology(&input, &output)?, config, 2, &[]).await?;
    let deposits = deposits
        .iter()
        .map(|(account, amount)| Record::new((*account).to_owned(), *amount));
    app.client.produce(&input, deposits).await?;
    // The input is not transactional (the client writes it), so its end is the app's last
    // committed offset: waiting works under exactly-once here.
    app.processed().await?;
    // Under exactly-once the client reads `read_committed`: one update per deposit, whatever
    // the app did before it committed.
    let updates = app.client.read::<String, i64>(&output).await?;
    app.stop().await?;
    let mut outcome = Outcome {
        balances: BTreeMap::new(),
        updates: updates.len(),
    };
    for r in updates {
        outcome.balances.insert(r.key, r.value);
    }
    Ok(outcome)
}
