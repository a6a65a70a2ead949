use kstreams::store;

#[store(name = "counts", window = tumbling(size = "1m"), grace = "10s")]
type Counts = kstreams::KeyValue<String, u64>;

fn main() {}
