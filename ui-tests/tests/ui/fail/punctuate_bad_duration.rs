use kstreams::{batch_processor, punctuator, Punctuation, Record};

#[batch_processor(punctuate(every = "10 seconds", time = wall_clock, with = report))]
fn count(_alerts: &[Record<String, String>]) {}

#[punctuator]
fn report(_p: &Punctuation) {}

fn main() {}
