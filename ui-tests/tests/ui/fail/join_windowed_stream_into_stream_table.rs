// A windowed count (keys `Windowed<String>`) into a stream-table join of a table keyed by
// `String`.
use kstreams::{join, window, Record, Topology};

#[kstreams::store(name = "counts", window = tumbling(size = "1m"), grace = "0s")]
type Counts = kstreams::WindowKeyValue<String, u64>;

#[kstreams::store(name = "limits")]
type Limits = kstreams::KeyValue<String, u64>;

fn main() {
    let mut t = Topology::builder();
    let limits = t.table::<Limits<'static>>("limits");
    let views = t.source::<String, String>("views");
    let counts = t.add(window::count::<Counts<'static>>(), &views);
    let _ = t.add(
        join::stream_table(&limits, |c: &Record<_, u64>, l: &u64| c.value > *l),
        &counts,
    );
}
