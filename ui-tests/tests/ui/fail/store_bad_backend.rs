use kstreams::store;

#[store(name = "counts", backend = "rocksdb")]
type Counts = kstreams::KeyValue<String, u64>;

fn main() {}
