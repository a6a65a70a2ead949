use kstreams::batch_processor;

#[batch_processor]
fn tick() {}

fn main() {}
