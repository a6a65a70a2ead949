use kstreams::batch_processor;

#[batch_processor]
struct Counter;

fn main() {}
