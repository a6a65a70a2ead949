//! Punctuation: a wall-clock punctuation that emits a periodic summary.
//!
//! [`count_alerts`] counts the temperature alerts it sees in a store and, every [`INTERVAL`] of
//! wall-clock time (also while no input arrives), its punctuation handler [`summarise`] forwards
//! one summary line: how many alerts came in since the last summary and in total. Both are plain
//! functions: `#[batch_processor(punctuate(...))]` schedules the punctuation and names its
//! handler, a `#[punctuator]` function that takes the same kinds of parameters (stores, output).
//!
//! The hand-written form, for what the attributes do not cover (state in struct fields, intervals
//! known only at run time), is [`kstreams::BatchProcessor`] with `init` (schedule with
//! [`kstreams::InitContext::schedule`], check stores with
//! [`kstreams::InitContext::require_store`]) and `punctuate`.

use std::time::Duration;

use kstreams::kafka::AppConfig;
use kstreams::{Emit, Punctuation, Record, Result, Topology, batch_processor, punctuator, store};

use crate::embedded;

/// How often a summary is due (wall-clock time).
pub const INTERVAL: Duration = Duration::from_millis(300);

/// Alerts since the last summary (`"since-last"`) and in total (`"total"`). Like the fields of a
/// struct, it is not kept across restarts: in memory, without a changelog.
#[store(name = "alert-counts", backend = "in_memory", changelog = false)]
pub type AlertCounts = kstreams::KeyValue<String, u64>;

const SINCE_LAST: &str = "since-last";
const TOTAL: &str = "total";

/// Counts the alerts of each batch; [`summarise`] reports them every [`INTERVAL`].
#[batch_processor(
    name = "summary",
    punctuate(every = INTERVAL, time = wall_clock, with = summarise)
)]
pub fn count_alerts(
    alerts: &[Record<String, String>],
    counts: &mut AlertCounts,
    _out: &mut Emit<String, String>,
) -> Result<()> {
    let n = alerts.len() as u64;
    for key in [SINCE_LAST, TOTAL] {
        let key = key.to_owned();
        let before = counts.get(&key)?.unwrap_or(0);
        counts.put(&key, &(before + n))?;
    }
    Ok(())
}

/// Forwards one summary line, if alerts came in since the last one (quiet periods produce no
/// line).
#[punctuator]
pub fn summarise(
    p: &Punctuation,
    counts: &mut AlertCounts,
    out: &mut Emit<String, String>,
) -> Result<()> {
    let since_last = counts.get(&SINCE_LAST.to_owned())?.unwrap_or(0);
    if since_last > 0 {
        let total = counts.get(&TOTAL.to_owned())?.unwrap_or(0);
        let mut r = Record::new(
            "summary".to_owned(),
            format!("{since_last} new alerts, {total} in total"),
        );
        r.timestamp = p.timestamp;
        out.forward(r);
        counts.put(&SINCE_LAST.to_owned(), &0)?;
    }
    Ok(())
}

/// `alerts` → [`count_alerts`] (summaries every [`INTERVAL`]) → `alert-summaries`.
pub fn topology() -> Result<Topology> {
    let mut t = Topology::builder();
    let alerts = t.source::<String, String>("alerts");
    let summaries = t.add(count_alerts, &alerts);
    t.sink("alert-summaries", &summaries);
    Ok(t.build()?)
}

/// Runs the example on the embedded cluster: `alerts` go in, the app keeps running for a few
/// intervals; returns the summary lines.
pub async fn run(alerts: &[&str], state_dir: &std::path::Path) -> Result<Vec<String>> {
    let config = AppConfig::new("punctuation-example").state_dir(state_dir);
    let mut app = embedded::start(topology()?, config, 1, &[]).await?;
    let alerts = alerts
        .iter()
        .map(|a| Record::new("sensor".to_owned(), (*a).to_owned()));
    app.client.produce("alerts", alerts).await?;
    app.processed().await?;
    // Wall-clock punctuations fire while no input arrives.
    tokio::time::sleep(INTERVAL * 3).await;
    app.stop().await?;
    Ok(app
        .client
        .read::<String, String>("alert-summaries")
        .await?
        .into_iter()
        .map(|r| r.value)
        .collect())
}

#[cfg(test)]
mod tests {
    use kstreams::testing::TopologyTestDriver;

    use super::*;

    /// The summary logic without a broker: one line per interval that saw alerts.
    #[test]
    fn summaries_count_new_and_total_alerts() -> Result<()> {
        let mut d = TopologyTestDriver::new(topology()?)?;
        d.advance_wall_clock(INTERVAL)?;
        for a in ["too hot", "too cold"] {
            d.pipe("alerts", "sensor".to_owned(), a.to_owned())?;
        }
        d.advance_wall_clock(INTERVAL)?;
        d.advance_wall_clock(INTERVAL)?;
        d.pipe("alerts", "sensor".to_owned(), "too hot".to_owned())?;
        d.advance_wall_clock(INTERVAL)?;
        let lines: Vec<String> = d
            .read_output::<String, String>("alert-summaries")?
            .into_iter()
            .map(|r| r.value)
            .collect();
        assert_eq!(
            lines,
            ["2 new alerts, 2 in total", "1 new alerts, 3 in total"]
        );
        Ok(())
    }
}
