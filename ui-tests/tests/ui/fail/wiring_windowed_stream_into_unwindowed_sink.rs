use kstreams::serde::{StringSerde, U64Serde};
use kstreams::{store, window, Topology};

#[store(name = "counts", window = tumbling(size = "1m"), grace = "10s")]
type Counts = kstreams::WindowKeyValue<String, u64>;

fn main() {
    let mut t = Topology::builder();
    let views = t.source::<String, String>("views");
    let windowed_stream = t.add(window::count::<Counts>(), &views);
    // A sink whose key serde is for unwindowed `String` keys.
    t.sink_with("counts", &windowed_stream, StringSerde, U64Serde);
}
