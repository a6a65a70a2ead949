// A table-table join of a table keyed by `String` with one keyed by `u64`.
use kstreams::join::JoinKind;
use kstreams::Topology;

#[kstreams::store(name = "names")]
type Names = kstreams::KeyValue<String, String>;

#[kstreams::store(name = "scores")]
type Scores = kstreams::KeyValue<u64, u64>;

fn main() {
    let mut t = Topology::builder();
    let names = t.table::<Names<'static>>("names");
    let scores = t.table::<Scores<'static>>("scores");
    let _ = t.join_tables("rows", &names, &scores, JoinKind::Inner, |n, s| (n.cloned(), s.copied()));
}
