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
struct Punctuation;
struct Punctuator;
struct PunctuationType;
struct InitContext;
struct Duration;
struct StoreSpec;
struct Windowing;
struct Windows;
struct WindowedHandle;
struct TimeKind;
struct SessionKind;
struct EmitStrategy;
struct OnLate;
struct TimeWindowState;
struct SessionWindowState;
struct WindowKeyValue;
struct SessionKeyValue;
struct VersionedKeyValue;
struct VersionedStore;
struct TableStore;
mod core {}
mod kstreams_private {}

use kstreams::{batch_processor, processor, store, Emit, Record};

type Text = std::string::String;

#[store(name = "counts")]
type Counts = kstreams::KeyValue<Text, u64>;

#[store(name = "windowed", window = hopping(size = "1m", advance = "10s"), grace = "5s", retention = "1h",
        emit = on_window_close, on_late = dead_letter, idle_advance = "1m")]
type WindowCounts = kstreams::WindowKeyValue<Text, u64>;

#[store(name = "sessions", window = session(gap = "5m"), grace = "0s")]
type Sessions = kstreams::SessionKeyValue<Text, u64>;

#[batch_processor]
fn windowed_count(
    views: &[Record<Text, Text>],
    counts: &mut WindowCounts,
    out: &mut Emit<kstreams::Windowed<Text>, u64>,
) -> kstreams::Result<()> {
    counts.aggregate(views, out, |_| 0, |n, _| *n += 1)
}

fn uses_sessions(_: &mut Sessions) {}

#[store(name = "prices", history = "1d")]
type Prices = kstreams::VersionedKeyValue<Text, u64>;

#[batch_processor]
fn price(prices: &[Record<Text, u64>], store: &mut Prices) -> kstreams::Result<()> {
    for p in prices {
        let _ = store.put(&p.key, ::core::option::Option::Some(&p.value), p.timestamp)?;
    }
    kstreams::Result::Ok(())
}

#[batch_processor]
fn count(lines: &[Record<(), Text>], counts: &mut Counts, out: &mut Emit<Text, u64>) -> kstreams::Result<()> {
    for l in lines {
        counts.put(&l.value, &1)?;
        out.forward(l.derive(l.value.clone(), 1));
    }
    kstreams::Result::Ok(())
}

#[batch_processor(punctuate(every = "1s", time = wall_clock, with = tick), punctuate(every = std::time::Duration::from_secs(2), time = stream_time, with = tick), init = start)]
fn with_punctuations(_lines: &[Record<(), Text>], _counts: &mut Counts) {}

#[kstreams::punctuator]
fn tick(_p: &kstreams::Punctuation, counts: &mut Counts) -> kstreams::Result<()> {
    counts.delete(&Text::new())
}

fn start(_ctx: &mut kstreams::InitContext<'_>) {}

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
    let _ = t.add(with_punctuations, &lines);
    let views = t.source::<Text, Text>("views");
    let windowed = t.add(windowed_count, &views);
    t.sink("windowed", &windowed);
    let prices = t.source::<Text, u64>("prices");
    let _ = t.add(price, &prices);
    assert!(t.build().is_ok());
}
