use kstreams::store;

#[store(name = "prices", history = "1d", window = tumbling(size = "1m"), grace = "0s")]
type Prices = kstreams::VersionedKeyValue<String, u64>;

fn main() {}
