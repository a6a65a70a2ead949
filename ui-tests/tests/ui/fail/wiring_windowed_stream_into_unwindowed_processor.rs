use kstreams::{batch_processor, store, window, Emit, Record, Topology};

#[store(name = "counts", window = tumbling(size = "1m"), grace = "10s")]
type Counts = kstreams::WindowKeyValue<String, u64>;

#[batch_processor]
fn plain_count(counts: &[Record<String, u64>], out: &mut Emit<String, u64>) {
    out.forward_batch(counts.iter().cloned());
}

fn main() {
    let mut t = Topology::builder();
    let views = t.source::<String, String>("views");
    let windowed_stream = t.add(window::count::<Counts>(), &views);
    let _ = t.add(plain_count, &windowed_stream);
}
