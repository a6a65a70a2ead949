use kstreams::{batch_processor, store, Record};

#[store]
type Counts = kstreams::KeyValue<String, u64>;

// Still a store for the type checker: no second error here.
#[batch_processor]
fn count(_lines: &[Record<(), String>], _counts: &mut Counts) {}

fn main() {}
