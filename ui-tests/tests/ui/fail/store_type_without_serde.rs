use kstreams::store;

struct Point {
    x: i32,
    y: i32,
}

#[store(name = "points")]
type Points = kstreams::KeyValue<String, Point>;

fn main() {}
