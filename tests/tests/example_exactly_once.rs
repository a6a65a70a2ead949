//! The exactly-once example against the real broker: one committed update per deposit, exact
//! balances.

use kstreams_examples::exactly_once;
use kstreams_tests::{bootstrap, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exactly_once_example_commits_one_update_per_deposit() -> kstreams::Result<()> {
    let bootstrap = bootstrap();
    let name = unique("eos-example");
    let state = tempfile::tempdir().expect("tempdir");
    let deposits: Vec<(&str, i64)> = (0..200)
        .map(|i| (["alice", "bob", "carol"][i % 3], (i as i64) - 50))
        .collect();
    let outcome = exactly_once::run(&bootstrap, &name, &deposits, state.path()).await?;
    assert_eq!(
        outcome.updates,
        deposits.len(),
        "exactly one committed update per deposit"
    );
    let mut truth = std::collections::BTreeMap::new();
    for (a, v) in &deposits {
        *truth.entry(a.to_string()).or_insert(0i64) += v;
    }
    assert_eq!(outcome.balances, truth);
    Ok(())
}
