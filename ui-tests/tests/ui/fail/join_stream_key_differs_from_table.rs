// A stream-table join of a stream keyed by `u64` with a table keyed by `String`.
use kstreams::{join, Record, Topology};

#[kstreams::store(name = "prices")]
type Prices = kstreams::KeyValue<String, u64>;

fn main() {
    let mut t = Topology::builder();
    let prices = t.table::<Prices<'static>>("prices");
    let orders = t.source::<u64, String>("orders");
    let _ = t.add(
        join::stream_table(&prices, |o: &Record<_, String>, p: &u64| format!("{}@{p}", o.value)),
        &orders,
    );
}
