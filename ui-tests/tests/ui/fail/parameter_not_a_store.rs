use kstreams::{batch_processor, Record};

#[batch_processor]
fn count(_lines: &[Record<(), String>], _last: &mut String) {}

fn main() {}
