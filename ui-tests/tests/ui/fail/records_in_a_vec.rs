use kstreams::{batch_processor, Record};

#[batch_processor]
fn count(_lines: Vec<Record<(), String>>) {}

fn main() {}
