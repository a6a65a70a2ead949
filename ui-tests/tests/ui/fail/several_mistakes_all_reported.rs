use kstreams::{batch_processor, Record};

// Every mistake the macro can see is reported at once, each at its own place.
#[batch_processor(nmae = "counter")]
async fn count(_lines: Vec<Record<(), String>>, _limit: usize) {}

fn main() {}
