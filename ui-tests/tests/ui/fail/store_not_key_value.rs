use std::collections::HashMap;

use kstreams::store;

#[store(name = "counts")]
type Counts = HashMap<String, u64>;

fn main() {}
