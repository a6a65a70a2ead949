// Shared by the driver tests: a hand-written word-count batch processor, and the counting logic
// it shares with its `#[batch_processor]` twin in `macros.rs`.
#![allow(dead_code)] // each test binary uses part of it

use kstreams::{BatchProcessor, Context, KeyValueStore, Record, Result, StoreSpec};

#[derive(Debug, Clone, Default)]
pub struct CountWords;

pub const STORE: &str = "word-counts";

impl BatchProcessor<(), String> for CountWords {
    type OutKey = String;
    type OutValue = u64;

    fn stores(&self) -> Vec<StoreSpec> {
        vec![StoreSpec::new::<String, u64>(STORE)]
    }

    fn process_batch(
        &mut self,
        lines: &[Record<(), String>],
        ctx: &mut Context<'_, String, u64>,
    ) -> Result<()> {
        let mut counts = ctx.store::<String, u64>(STORE)?;
        count_words(lines, &mut counts, ctx)
    }
}

/// Counts the words of a batch of lines: one `get_batch` of the distinct words, one `put_batch`
/// of their new counts, and each word forwarded with its running count, in batch order.
pub fn count_words(
    lines: &[Record<(), String>],
    counts: &mut KeyValueStore<'_, String, u64>,
    out: &mut Context<'_, String, u64>,
) -> Result<()> {
    let mut words: Vec<(String, usize)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        for w in line
            .value
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            words.push((w.to_owned(), i));
        }
    }
    let mut distinct: Vec<String> = words.iter().map(|(w, _)| w.clone()).collect();
    distinct.sort();
    distinct.dedup();
    let current = counts.get_batch(&distinct)?;
    let mut totals: std::collections::BTreeMap<String, u64> = distinct
        .into_iter()
        .zip(current)
        .map(|(w, c)| (w, c.unwrap_or(0)))
        .collect();
    for (w, i) in words {
        let c = totals.entry(w.clone()).or_insert(0);
        *c += 1;
        out.forward(lines[i].derive(w, *c));
    }
    let updates: Vec<(String, u64)> = totals.into_iter().collect();
    counts.put_batch(&updates)
}

/// Counts the increments of one counter name, labels ignored.
#[derive(Debug, Default)]
pub struct CountOne {
    pub name: &'static str,
    pub total: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Debug)]
pub struct Add(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl metrics::CounterFn for Add {
    fn increment(&self, value: u64) {
        self.0
            .fetch_add(value, std::sync::atomic::Ordering::Relaxed);
    }
    fn absolute(&self, _: u64) {}
}

impl metrics::Recorder for CountOne {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        if key.name() == self.name {
            metrics::Counter::from_arc(std::sync::Arc::new(Add(self.total.clone())))
        } else {
            metrics::Counter::noop()
        }
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}
