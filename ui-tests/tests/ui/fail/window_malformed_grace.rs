use kstreams::store;

#[store(name = "counts", window = tumbling(size = "1m"), grace = "10 seconds")]
type Counts = kstreams::WindowKeyValue<String, u64>;

fn main() {}
