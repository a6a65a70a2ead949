use kstreams::{batch_processor, Record};

#[batch_processor]
fn count(_line: &Record<(), String>) {}

fn main() {}
