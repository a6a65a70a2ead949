use kstreams::{batch_processor, Record};

#[batch_processor(name = "count words!")]
fn count(_lines: &[Record<(), String>]) {}

fn main() {}
