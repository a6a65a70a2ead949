use kstreams::{batch_processor, Emit, Record};

#[batch_processor]
fn upper(lines: &[Record<(), String>], out: &Emit<(), String>) {
    let _ = (lines, out);
}

fn main() {}
