//! Expansions are warning-free under the strictest settings a user may have. (Clippy does not
//! run here: `kstreams/tests/macros_clippy.rs` holds the same code for `cargo clippy -D warnings`.)
#![deny(warnings, clippy::all, missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(rust_2018_idioms, unused_qualifications, unused_lifetimes, single_use_lifetimes)]
#![allow(elided_lifetimes_in_paths)] // the documented style: `&mut Counts`, `&mut Emit<K, V>`

use kstreams::{batch_processor, processor, punctuator, store, Emit, InitContext, Punctuation, Record, Topology};

/// Counts per word.
#[store(name = "counts")]
pub type Counts = kstreams::KeyValue<String, u64>;

/// Counts words.
#[batch_processor]
pub fn count(lines: &[Record<(), String>], counts: &mut Counts, out: &mut Emit<String, u64>) -> kstreams::Result<()> {
    for l in lines {
        let n = counts.get(&l.value)?.unwrap_or(0) + 1;
        counts.put(&l.value, &n)?;
        out.forward(l.derive(l.value.clone(), n));
    }
    Ok(())
}

/// Counts words, reports every 10 s and checks its task at start-up.
#[batch_processor(
    name = "reported",
    punctuate(every = "10s", time = wall_clock, with = report),
    punctuate(every = "1m", time = stream_time, with = reset),
    init = check
)]
pub fn count_and_report(lines: &[Record<(), String>], counts: &mut Counts, _out: &mut Emit<String, u64>) -> kstreams::Result<()> {
    for l in lines {
        counts.put(&l.value, &1)?;
    }
    Ok(())
}

/// Reports the count of "a".
#[punctuator]
pub fn report(p: &Punctuation, counts: &mut Counts, out: &mut Emit<String, u64>) -> kstreams::Result<()> {
    if let Some(n) = counts.get(&"a".to_string())? {
        out.forward(Record::new("a".to_string(), n).with_timestamp(p.timestamp));
    }
    Ok(())
}

/// Forgets "a".
#[punctuator]
pub fn reset(_p: &Punctuation, counts: &mut Counts) -> kstreams::Result<()> {
    counts.delete(&"a".to_string())
}

/// Checks the task.
pub fn check(ctx: &mut InitContext<'_>) -> Result<(), String> {
    if ctx.name().is_empty() {
        return Err("no name".to_string());
    }
    Ok(())
}

/// Forgets words.
#[processor]
pub fn forget(record: &Record<String, u64>, counts: &mut Counts) -> kstreams::Result<()> {
    counts.delete(&record.key)
}

fn main() {
    let mut t = Topology::builder();
    let lines = t.source::<(), String>("lines");
    let counted = t.add(count, &lines);
    t.sink("counts", &counted);
    let _ = t.add(forget, &counted);
    let reported = t.add(count_and_report, &lines);
    t.sink("reported", &reported);
    assert!(t.build().is_ok());
}
