use kstreams::{batch_processor, store, Emit, Record};

#[store(name = "counts")]
type Counts = kstreams::KeyValue<String, u64>;

#[batch_processor]
fn count(_lines: &[Record<(), String>], _out: &mut Emit<String, u64>, _counts: &mut Counts) {}

fn main() {}
