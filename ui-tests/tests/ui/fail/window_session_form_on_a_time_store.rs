use kstreams::store;

#[store(name = "visits", window = session(gap = "5m"), grace = "30s")]
type Visits = kstreams::WindowKeyValue<String, u64>;

fn main() {}
