// `join::stream_global` joins a `GlobalTable`; a co-partitioned `Table` goes through
// `join::stream_table`.
use kstreams::{join, Record, Topology};

#[kstreams::store(name = "customers")]
type Customers = kstreams::KeyValue<String, String>;

fn main() {
    let mut t = Topology::builder();
    let customers = t.table::<Customers<'static>>("customers");
    let orders = t.source::<String, String>("orders");
    let _ = t.add(
        join::stream_global(
            &customers,
            |o: &Record<String, String>| o.value.clone(),
            |o: &Record<String, String>, c: &String| format!("{}:{c}", o.value),
        ),
        &orders,
    );
}
