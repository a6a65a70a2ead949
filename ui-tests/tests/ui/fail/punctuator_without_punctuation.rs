use kstreams::{punctuator, Emit, Record};

#[punctuator]
fn report(_records: &[Record<String, String>], _out: &mut Emit<String, u64>) {}

fn main() {}
