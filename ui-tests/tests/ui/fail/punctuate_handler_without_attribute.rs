use kstreams::{batch_processor, Emit, Punctuation, Record};

#[batch_processor(punctuate(every = "10s", time = wall_clock, with = report))]
fn count(_alerts: &[Record<String, String>], _out: &mut Emit<String, u64>) {}

fn report(_p: &Punctuation, _out: &mut Emit<String, u64>) {}

fn main() {}
