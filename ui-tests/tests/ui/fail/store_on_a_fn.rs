use kstreams::store;

#[store(name = "counts")]
fn counts() {}

fn main() {}
