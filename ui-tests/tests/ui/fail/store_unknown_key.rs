use kstreams::store;

#[store(name = "counts", changelg = false)]
type Counts = kstreams::KeyValue<String, u64>;

fn main() {}
