use kstreams::store;

#[store(name = "prices")]
type Prices = kstreams::VersionedKeyValue<String, u64>;

fn main() {}
