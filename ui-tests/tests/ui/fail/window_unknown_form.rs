use kstreams::store;

#[store(name = "counts", window = tumbeling(size = "1m"), grace = "10s")]
type Counts = kstreams::WindowKeyValue<String, u64>;

fn main() {}
