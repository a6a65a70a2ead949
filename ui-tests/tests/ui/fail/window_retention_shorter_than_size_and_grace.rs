use kstreams::store;

#[store(name = "counts", window = tumbling(size = "1m"), grace = "10s", retention = "1m")]
type Counts = kstreams::WindowKeyValue<String, u64>;

fn main() {}
