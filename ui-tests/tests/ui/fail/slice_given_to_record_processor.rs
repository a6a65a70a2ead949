use kstreams::{processor, Record};

#[processor]
fn count(_lines: &[Record<(), String>]) {}

fn main() {}
