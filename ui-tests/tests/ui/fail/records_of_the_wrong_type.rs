use kstreams::batch_processor;

#[batch_processor]
fn count(_lines: &[String]) {}

fn main() {}
