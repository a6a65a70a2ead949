use kstreams::store;

#[store(name = "sessions", grace = "10s")]
type Sessions = kstreams::SessionKeyValue<String, u64>;

fn main() {}
