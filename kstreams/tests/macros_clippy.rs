//! Expansions are clean under `#![deny(warnings, clippy::all)]`: `cargo clippy --all-targets -- -D
//! warnings` checks this file (the trybuild pass case `ui-tests/tests/ui/pass/deny_warnings.rs`
//! holds the same code for rustc's own lints, which trybuild runs without clippy).
#![deny(warnings, clippy::all)]
#![deny(missing_debug_implementations, unused_qualifications, unused_lifetimes)]
#![allow(elided_lifetimes_in_paths)] // the documented style: `&mut Counts`, `&mut Emit<K, V>`

use kstreams::testing::TopologyTestDriver;
use kstreams::{Emit, Record, Topology, batch_processor, processor, store};

/// Counts per word.
#[store(name = "counts", backend = "in_memory")]
pub type Counts = kstreams::KeyValue<String, u64>;

/// Counts words.
#[batch_processor]
pub fn count(
    lines: &[Record<(), String>],
    counts: &mut Counts,
    out: &mut Emit<String, u64>,
) -> kstreams::Result<()> {
    for l in lines {
        let n = counts.get(&l.value)?.unwrap_or(0) + 1;
        counts.put(&l.value, &n)?;
        out.forward(l.derive(l.value.clone(), n));
    }
    Ok(())
}

/// Forgets words counted twice.
#[processor(name = "forget")]
fn forget_twice(record: &Record<String, u64>, counts: &mut Counts) -> kstreams::Result<()> {
    if record.value >= 2 {
        counts.delete(&record.key)?;
    }
    Ok(())
}

/// Lines seen.
#[store(name = "line-count", backend = "in_memory")]
pub type LineCount = kstreams::KeyValue<String, u64>;

/// Counts lines; reports them every second of stream time.
#[batch_processor(punctuate(every = "1s", time = stream_time, with = report), init = check)]
fn count_lines(
    lines: &[Record<(), String>],
    counts: &mut LineCount,
    _out: &mut Emit<String, u64>,
) -> kstreams::Result<()> {
    let n = counts.get(&"lines".to_string())?.unwrap_or(0);
    counts.put(&"lines".to_string(), &(n + lines.len() as u64))
}

/// Forwards the line count.
#[kstreams::punctuator]
fn report(
    p: &kstreams::Punctuation,
    counts: &mut LineCount,
    out: &mut Emit<String, u64>,
) -> kstreams::Result<()> {
    let n = counts.get(&"lines".to_string())?.unwrap_or(0);
    out.forward(Record::new("lines".to_string(), n).with_timestamp(p.timestamp));
    Ok(())
}

/// Checks nothing.
fn check(_ctx: &mut kstreams::InitContext<'_>) {}

/// Only records.
#[processor]
fn ignore(_: &Record<(), String>) {}

/// Views per key and minute.
#[store(name = "views", window = hopping(size = "1m", advance = "10s"), grace = "5s",
        retention = "1h", emit = on_window_close, on_late = drop, idle_advance = "30s")]
pub type Views = kstreams::WindowKeyValue<String, u64>;

/// Sessions per key.
#[store(name = "sessions", window = session(gap = "5m"), grace = "0s", backend = "in_memory")]
pub type Sessions = kstreams::SessionKeyValue<String, u64>;

/// Counts views per window.
#[batch_processor]
fn count_views(
    views: &[Record<String, String>],
    counts: &mut Views,
    out: &mut Emit<kstreams::Windowed<String>, u64>,
) -> kstreams::Result<()> {
    counts.aggregate(views, out, |_| 0, |n, _| *n += 1)
}

#[test]
fn clippy_clean_windowed_stores_build() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let views = t.source::<String, String>("views");
    let counted = t.add(count_views, &views);
    t.sink("view-counts", &counted);
    let sessions = t.add(kstreams::window::count::<Sessions>(), &views);
    t.sink("session-counts", &sessions);
    assert!(t.build()?.describe().contains("stores: [views]"));
    Ok(())
}

#[test]
fn clippy_clean_processors_run() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let lines = t.source::<(), String>("lines");
    let counted = t.add(count, &lines);
    t.sink("counts", &counted);
    let _ = t.add(forget_twice, &counted);
    let _ = t.add(ignore, &lines);
    let reported = t.add(count_lines, &lines);
    t.sink("line-counts", &reported);
    let mut d = TopologyTestDriver::new(t.build()?)?;
    d.pipe_batch(
        "lines",
        ["a", "b", "a"].map(|w| Record::new((), w.to_string())),
    )?;
    assert_eq!(d.store::<String, u64>("counts")?, [("b".to_string(), 1)]);
    Ok(())
}

/// A table, read by shared reference.
#[store(name = "prices", backend = "in_memory")]
pub type Prices = kstreams::KeyValue<String, u64>;

/// Each order's total, from the table: one `get_batch`, the store taken by `&`.
#[batch_processor(punctuate(every = "1m", time = stream_time, with = report_price))]
pub fn total(
    orders: &[Record<String, u64>],
    prices: &Prices,
    out: &mut Emit<String, u64>,
) -> kstreams::Result<()> {
    let items: Vec<&str> = orders.iter().map(|o| o.key.as_str()).collect();
    for (o, p) in orders.iter().zip(prices.get_batch(&items)?) {
        out.forward(o.derive(o.key.clone(), o.value * p.unwrap_or(0)));
    }
    Ok(())
}

/// Reports the price of "a", reading the table by `&`.
#[kstreams::punctuator]
pub fn report_price(
    p: &kstreams::Punctuation,
    prices: &Prices,
    out: &mut Emit<String, u64>,
) -> kstreams::Result<()> {
    if let Some(n) = prices.get("a")? {
        out.forward(Record::new("a".to_owned(), n).with_timestamp(p.timestamp));
    }
    Ok(())
}

/// One order at a time, the table taken by `&`.
#[processor]
pub fn total_one(
    order: &Record<String, u64>,
    prices: &Prices,
    out: &mut Emit<String, u64>,
) -> kstreams::Result<()> {
    let p = prices.get(&order.key)?.unwrap_or(0);
    out.forward(order.derive(order.key.clone(), p * order.value));
    Ok(())
}

#[test]
fn clippy_clean_read_only_stores_run() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let _prices = t.table::<Prices<'static>>("prices");
    let orders = t.source::<String, u64>("orders");
    let totals = t.add(total, &orders);
    t.sink("totals", &totals);
    let one = t.add(total_one, &orders);
    t.sink("totals-one", &one);
    let mut d = TopologyTestDriver::new(t.build()?)?;
    d.pipe("prices", "a".to_owned(), Some(3u64))?;
    d.pipe("orders", "a".to_owned(), 2u64)?;
    assert_eq!(d.read_output::<String, u64>("totals")?[0].value, 6);
    assert_eq!(d.read_output::<String, u64>("totals-one")?[0].value, 6);
    Ok(())
}
