//! Batch aggregation: page views per user, counted a batch at a time.
//!
//! `#[batch_processor]` gets the whole batch: it reads every distinct user's count with one
//! `get_batch`, adds the batch's views in memory, writes all counts back with one `put_batch` and
//! forwards one record per user per batch (the latest count), not one per input record.

use std::collections::BTreeMap;

use kstreams::kafka::AppConfig;
use kstreams::{Emit, Record, Result, Topology, batch_processor, store};

use crate::embedded;

/// Views per user.
#[store(name = "views-per-user")]
pub type ViewsPerUser = kstreams::KeyValue<String, u64>;

/// Counts page views (key: user, value: page) per user; emits `user → views so far` once per
/// user and batch.
#[batch_processor]
pub fn count_views(
    views: &[Record<String, String>],
    counts: &mut ViewsPerUser,
    out: &mut Emit<String, u64>,
) -> kstreams::Result<()> {
    // Distinct users, each with the index of its last record in the batch (its output's origin).
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    let mut added: BTreeMap<&str, u64> = BTreeMap::new();
    for (i, v) in views.iter().enumerate() {
        last.insert(&v.key, i);
        *added.entry(&v.key).or_default() += 1;
    }
    let users: Vec<String> = last.keys().map(|u| (*u).to_owned()).collect();
    let old = counts.get_batch(&users)?;
    let mut totals = Vec::with_capacity(users.len());
    for ((user, old), (_, &i)) in users.into_iter().zip(old).zip(&last) {
        let total = old.unwrap_or(0) + added.get(user.as_str()).copied().unwrap_or(0);
        out.forward(views[i].derive(user.clone(), total));
        totals.push((user, total));
    }
    counts.put_batch(&totals)
}

/// `page-views` (user → page) → [`count_views`] → `views-per-user` (user → count).
pub fn topology() -> Result<Topology> {
    let mut t = Topology::builder();
    let views = t.source::<String, String>("page-views");
    let counts = t.add(count_views, &views);
    t.sink("views-per-user", &counts);
    Ok(t.build()?)
}

/// Runs the example on the embedded cluster over `views` (user, page); returns the final count
/// per user.
pub async fn run(
    views: &[(&str, &str)],
    state_dir: &std::path::Path,
) -> Result<BTreeMap<String, u64>> {
    let config = AppConfig::new("aggregation-example").state_dir(state_dir);
    let mut app = embedded::start(topology()?, config, 2, &[]).await?;
    let views = views
        .iter()
        .map(|(user, page)| Record::new((*user).to_owned(), (*page).to_owned()));
    app.client.produce("page-views", views).await?;
    app.processed().await?;
    app.stop().await?;
    // One update per user and batch, by partition then offset: the last one is the count.
    let counts = app.client.read::<String, u64>("views-per-user").await?;
    Ok(counts.into_iter().map(|r| (r.key, r.value)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kstreams::testing::{SplitCheck, SplitCheckError, SplitInput, TopologyTestDriver};

    fn views() -> Vec<Record<String, String>> {
        (0..200)
            .map(|i| Record::new(format!("user-{}", i % 3), format!("/page/{i}")).with_timestamp(i))
            .collect()
    }

    /// `views-per-user` is a table's changelog: one update per user and batch. Compared as a
    /// table (the last count per user in each partition), it does not depend on the cut.
    #[test]
    fn counts_are_split_invariant_as_a_table() -> Result<()> {
        let topology = topology()?;
        let input = SplitInput::new()
            .partitions("page-views", 2)
            .partitions("views-per-user", 2)
            .records("page-views", views())?;
        SplitCheck::new(&topology)
            .table_output("views-per-user")
            .seed(17)
            .runs(4)
            .run(&input)?;
        // Record for record it does depend on the cut: bigger batches, fewer updates.
        let err = SplitCheck::new(&topology)
            .run(&input)
            .expect_err("fewer updates in bigger batches");
        assert!(matches!(err, SplitCheckError::Differs { .. }), "{err}");

        let mut driver = TopologyTestDriver::new(topology)?;
        driver.pipe_batch("page-views", views())?;
        let out = driver.read_output::<String, u64>("views-per-user")?;
        let last: BTreeMap<String, u64> = out.into_iter().map(|r| (r.key, r.value)).collect();
        assert_eq!(
            last,
            BTreeMap::from([
                ("user-0".to_owned(), 67),
                ("user-1".to_owned(), 67),
                ("user-2".to_owned(), 66)
            ])
        );
        Ok(())
    }
}
