use kstreams::{batch_processor, Record};

#[batch_processor]
fn count(_lines: &[Record<(), String>], _: ...) {}

fn main() {}
