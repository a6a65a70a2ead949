#![deny(warnings)]

use kstreams::{batch_processor, Emit, Record, Topology};

#[batch_processor]
fn lengths(lines: &[Record<(), String>], out: &mut Emit<(), u64>) {
    out.forward_batch(lines.iter().map(|l| l.derive((), l.value.len() as u64)));
}

fn main() {
    let mut t = Topology::builder();
    let lines = t.source::<(), String>("lines");
    // The output goes nowhere: `Stream` is `#[must_use]`.
    t.add(lengths, &lines);
    let _ = t.build();
}
