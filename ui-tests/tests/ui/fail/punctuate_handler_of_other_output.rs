use kstreams::{batch_processor, punctuator, Emit, Punctuation, Record};

#[batch_processor(punctuate(every = "10s", time = wall_clock, with = report))]
fn count(_alerts: &[Record<String, String>], _out: &mut Emit<String, u64>) {}

#[punctuator]
fn report(p: &Punctuation, out: &mut Emit<String, String>) {
    out.forward(Record::new("summary".to_string(), format!("at {}", p.timestamp)));
}

fn main() {}
