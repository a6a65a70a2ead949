// `join::stream_table` joins a co-partitioned `Table`; a `GlobalTable` goes through
// `join::stream_global` with a key extractor.
use kstreams::{join, Record, Topology};

#[kstreams::store(name = "customers")]
type Customers = kstreams::KeyValue<String, String>;

fn main() {
    let mut t = Topology::builder();
    let customers = t.global_table::<Customers<'static>>("customers");
    let orders = t.source::<String, String>("orders");
    let _ = t.add(
        join::stream_table(&customers, |o: &Record<String, String>, c: &String| format!("{}:{c}", o.value)),
        &orders,
    );
}
