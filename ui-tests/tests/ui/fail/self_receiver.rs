use kstreams::{batch_processor, Record};

#[batch_processor]
fn count(self, lines: &[Record<(), String>]) {}

fn main() {}
