use kstreams::{batch_processor, Record};

#[batch_processor(nmae = "counter")]
fn count(_lines: &[Record<(), String>]) {}

fn main() {}
