use kstreams::store;

#[store(name = "counts", window = hopping(size = "1m", advance = "5m"), grace = "10s")]
type Counts = kstreams::WindowKeyValue<String, u64>;

fn main() {}
