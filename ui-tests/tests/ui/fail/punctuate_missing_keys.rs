use kstreams::{batch_processor, punctuator, Punctuation, Record};

#[batch_processor(punctuate(every = "10s", with = report), punctuate(time = wall_clock, every = "1s", with = report, colour = 3))]
fn count(_alerts: &[Record<String, String>]) {}

#[punctuator]
fn report(_p: &Punctuation) {}

fn main() {}
