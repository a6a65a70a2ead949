use kstreams::store;

#[store(name = "counts")]
struct Counts;

fn main() {}
