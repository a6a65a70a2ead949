use kstreams::store;

#[store(name = "recent", window = tumbling(size = "1m"), grace = "0s")]
type Recent = kstreams::WindowKeyValue<String, u64>;

fn main() {
    let mut t = kstreams::Topology::builder();
    let _ = t.table::<Recent<'static>>("recent");
}
