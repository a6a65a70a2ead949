//! Expansions are warning-free under the strictest settings a user may have. (Clippy does not
//! run here: `kstreams/tests/macros_clippy.rs` holds the same code for `cargo clippy -D warnings`.)
#![deny(warnings, clippy::all, missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(rust_2018_idioms, unused_qualifications, unused_lifetimes, single_use_lifetimes)]
#![allow(elided_lifetimes_in_paths)] // the documented style: `&mut Counts`, `&mut Emit<K, V>`

use kstreams::{batch_processor, processor, store, Emit, Record, Topology};

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
    assert!(t.build().is_ok());
}
