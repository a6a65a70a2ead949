use kstreams::{batch_processor, Emit, Record, Topology};

#[derive(Debug)]
struct Length(usize);

#[batch_processor]
fn lengths(lines: &[Record<(), String>], out: &mut Emit<(), Length>) {
    out.forward_batch(lines.iter().map(|l| l.derive((), Length(l.value.len()))));
}

fn main() {
    let mut t = Topology::builder();
    let lines = t.source::<(), String>("lines");
    let out = t.add(lengths, &lines);
    t.sink("lengths", &out);
}
