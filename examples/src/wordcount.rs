//! Word count: lowercase each line, split on every char that is not alphanumeric, drop empty
//! words, count per word in an LMDB store and forward each word's new count.
//!
//! Two sub-topologies: lines → words, written to a repartition topic keyed by word (so every
//! occurrence of a word lands in the same partition, murmur2 as in Java), then words → counts.
//! Counting straight from the lines would count per input partition, not per word.

use std::collections::HashMap;

use kstreams::{BatchProcessor, Context, Record, Result, StoreSpec, Topology, processor};

/// The store holding the count of every word.
pub const STORE: &str = "word-counts";

/// The words of a line, as the word count sees them.
pub fn words(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// Counts words, a batch at a time: one `get_batch` and one `put_batch` per batch, and one output
/// record per word occurrence (so the outputs do not depend on how the input was cut).
#[derive(Debug, Clone, Default)]
pub struct CountWords;

impl BatchProcessor<String, ()> for CountWords {
    type OutKey = String;
    type OutValue = u64;

    fn stores(&self) -> Vec<StoreSpec> {
        vec![StoreSpec::new::<String, u64>(STORE)]
    }

    fn process_batch(
        &mut self,
        records: &[Record<String, ()>],
        ctx: &mut Context<'_, String, u64>,
    ) -> Result<()> {
        let mut store = ctx.store::<String, u64>(STORE)?;
        let mut distinct: Vec<String> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut occurrences: Vec<(usize, usize)> = Vec::with_capacity(records.len());
        for (r, record) in records.iter().enumerate() {
            let next = distinct.len();
            let w = *index.entry(record.key.as_str()).or_insert_with(|| {
                distinct.push(record.key.clone());
                next
            });
            occurrences.push((r, w));
        }
        let mut counts: Vec<u64> = store
            .get_batch(&distinct)?
            .into_iter()
            .map(|c| c.unwrap_or(0))
            .collect();
        for (r, w) in occurrences {
            counts[w] += 1;
            ctx.forward(records[r].derive(distinct[w].clone(), counts[w]));
        }
        let entries: Vec<(String, u64)> = distinct.into_iter().zip(counts).collect();
        store.put_batch(&entries)
    }
}

/// `input` (lines, any key) → words → `words_topic` (word → null) → [`CountWords`] → `output`
/// (word → count, big-endian u64). `words_topic` must exist, with as many partitions as `output`
/// for outputs to stay in their task's order per partition.
pub fn topology(input: &str, words_topic: &str, output: &str) -> Result<Topology> {
    let mut t = Topology::builder();
    let lines = t.source::<(), String>(input);
    let split = t.add(
        processor::flat_map(|r: &Record<(), String>| {
            words(&r.value).map(|w| r.derive(w, ())).collect::<Vec<_>>()
        }),
        &lines,
    );
    t.sink(words_topic, &split);
    let words = t.source::<String, ()>(words_topic);
    let counts = t.add(CountWords, &words);
    t.sink(output, &counts);
    Ok(t.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kstreams::testing::{SplitInput, TopologyTestDriver, check_split_invariance};

    #[test]
    fn counts_words_and_is_split_invariant() -> Result<()> {
        let topology = topology("lines", "words", "counts")?;
        let mut driver = TopologyTestDriver::new(topology.clone())?;
        driver.pipe_batch(
            "lines",
            [
                Record::new((), "Hello, hello WORLD!".to_string()),
                Record::new((), "world--héllo 42".to_string()),
            ],
        )?;
        let out = driver.read_output::<String, u64>("counts")?;
        let got: Vec<(String, u64)> = out.into_iter().map(|r| (r.key, r.value)).collect();
        let want: Vec<(String, u64)> = [
            ("hello", 1),
            ("hello", 2),
            ("world", 1),
            ("world", 2),
            ("héllo", 1),
            ("42", 1),
        ]
        .iter()
        .map(|(w, c)| (w.to_string(), *c))
        .collect();
        assert_eq!(got, want);
        let input = SplitInput::new()
            .partitions("lines", 3)
            .partitions("words", 2)
            .partitions("counts", 2)
            .records(
                "lines",
                (0..200).map(|i| Record::new((), format!("w{} w{} common", i % 7, i % 3))),
            )?;
        check_split_invariance(&topology, &input, 11, 3)
    }
}
