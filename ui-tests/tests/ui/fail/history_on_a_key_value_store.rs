use kstreams::store;

#[store(name = "prices", history = "1d")]
type Prices = kstreams::KeyValue<String, u64>;

fn main() {}
