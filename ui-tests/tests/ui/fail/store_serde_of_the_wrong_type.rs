use kstreams::store;

#[store(name = "counts", key_serde = kstreams::serde::StringSerde)]
type Counts = kstreams::KeyValue<u64, u64>;

fn main() {}
