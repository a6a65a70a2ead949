use kstreams::{batch_processor, store, Record};

#[store(name = "counts")]
type Counts = kstreams::KeyValue<String, u64>;

#[batch_processor]
fn count(_lines: &[Record<(), String>], _counts: Counts) {}

fn main() {}
