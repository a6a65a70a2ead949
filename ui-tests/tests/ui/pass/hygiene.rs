//! Expansions name only `::kstreams::__private::…` and `::core::…`: shadowing prelude names
//! does not break them.
#![allow(dead_code, non_camel_case_types)]

struct Option;
struct Result;
struct Box;
struct Vec;
struct String;
struct Some;
struct None;
struct Ok;
struct Err;
struct Clone;
struct Copy;
struct Debug;
struct Deref;
struct Send;
struct StoreHandle;
struct BatchProcessor;
struct Context;
mod kstreams_private {}

use kstreams::{batch_processor, processor, store, Emit, Record};

type Text = std::string::String;

#[store(name = "counts")]
type Counts = kstreams::KeyValue<Text, u64>;

#[batch_processor]
fn count(lines: &[Record<(), Text>], counts: &mut Counts, out: &mut Emit<Text, u64>) -> kstreams::Result<()> {
    for l in lines {
        counts.put(&l.value, &1)?;
        out.forward(l.derive(l.value.clone(), 1));
    }
    kstreams::Result::Ok(())
}

#[processor]
fn each(line: &Record<(), Text>, out: &mut Emit<(), Text>) {
    out.forward(line.clone());
}

fn main() {
    let mut t = kstreams::Topology::builder();
    let lines = t.source::<(), Text>("lines");
    let counted = t.add(count, &lines);
    t.sink("counts", &counted);
    let each_out = t.add(each, &lines);
    t.sink("each", &each_out);
    assert!(t.build().is_ok());
}
