use kstreams::{batch_processor, Record};

#[batch_processor(name = "counter", name = "count")]
fn count(_lines: &[Record<(), String>]) {}

fn main() {}
