use kstreams::{batch_processor, Record};

#[batch_processor]
async fn count(_lines: &[Record<(), String>]) {}

fn main() {}
