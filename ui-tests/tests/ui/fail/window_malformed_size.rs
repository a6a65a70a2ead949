use kstreams::store;

#[store(name = "counts", window = tumbling(size = "1min"), grace = "10s")]
type Counts = kstreams::WindowKeyValue<String, u64>;

fn main() {}
