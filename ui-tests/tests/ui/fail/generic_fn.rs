use kstreams::{batch_processor, Record};

#[batch_processor]
fn count<V: Clone>(_lines: &[Record<(), V>]) {}

fn main() {}
