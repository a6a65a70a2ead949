//! Punctuation: a wall-clock punctuator that emits a periodic summary.
//!
//! [`Summary`] counts the temperature alerts it sees per batch and, every `interval` of wall-clock
//! time (also while no input arrives), forwards one summary line: how many alerts came in since
//! the last summary and in total. The punctuation is scheduled in `init`, so it is a hand-written
//! [`BatchProcessor`] (the attribute macros cover processors without punctuations).

use std::time::Duration;

use kstreams::kafka::{AppConfig, TopicSpec};
use kstreams::{
    BatchProcessor, Context, InitContext, Punctuation, PunctuationType, Record, Result, Topology,
};

use crate::embedded::{self, Scenario};

/// Counts records and summarises them on a wall-clock schedule.
#[derive(Debug, Clone)]
pub struct Summary {
    interval: Duration,
    since_last: u64,
    total: u64,
}

impl Summary {
    /// A summary every `interval`.
    pub fn every(interval: Duration) -> Self {
        Summary {
            interval,
            since_last: 0,
            total: 0,
        }
    }
}

impl BatchProcessor<String, String> for Summary {
    type OutKey = String;
    type OutValue = String;

    fn node_name(&self) -> Option<&str> {
        Some("summary")
    }

    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
        ctx.schedule(self.interval, PunctuationType::WallClock)?;
        Ok(())
    }

    fn process_batch(
        &mut self,
        records: &[Record<String, String>],
        _ctx: &mut Context<'_, String, String>,
    ) -> Result<()> {
        self.since_last += records.len() as u64;
        self.total += records.len() as u64;
        Ok(())
    }

    fn punctuate(&mut self, p: Punctuation, ctx: &mut Context<'_, String, String>) -> Result<()> {
        // Quiet periods produce no line.
        if self.since_last > 0 {
            let mut r = Record::new(
                "summary".to_owned(),
                format!("{} new alerts, {} in total", self.since_last, self.total),
            );
            r.timestamp = p.timestamp;
            ctx.forward(r);
            self.since_last = 0;
        }
        Ok(())
    }
}

/// `alerts` → [`Summary`] (every `interval`) → `alert-summaries`.
pub fn topology(interval: Duration) -> Result<Topology> {
    let mut t = Topology::builder();
    let alerts = t.source::<String, String>("alerts");
    let summaries = t.add(Summary::every(interval), &alerts);
    t.sink("alert-summaries", &summaries);
    Ok(t.build()?)
}

/// Runs the example on the embedded cluster: `alerts` go in, the app keeps running for a few
/// intervals; returns the summary lines.
pub async fn run(
    alerts: &[&str],
    interval: Duration,
    state_dir: &std::path::Path,
) -> Result<Vec<String>> {
    let config = AppConfig::new("punctuation-example").state_dir(state_dir);
    let mut out = embedded::run(
        topology(interval)?,
        config,
        Scenario {
            topics: vec![
                TopicSpec::new("alerts", 1),
                TopicSpec::new("alert-summaries", 1),
            ],
            phases: vec![(
                "alerts".into(),
                alerts.iter().map(|a| embedded::kv("sensor", a)).collect(),
            )],
            linger: interval * 3,
            outputs: vec!["alert-summaries".into()],
        },
    )
    .await?;
    Ok(out
        .remove("alert-summaries")
        .unwrap_or_default()
        .iter()
        .map(|r| embedded::text(&r.value))
        .collect())
}
