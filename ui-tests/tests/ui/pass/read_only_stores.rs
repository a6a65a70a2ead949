//! A store taken by `&` reads only: tables reach processors this way. Every processor kind takes
//! it, with batch lookups (`get_batch`, `get_batch_as_of`, ranges), under the strictest lints (no
//! `unused_mut` from the expansion).
#![deny(warnings, clippy::all, missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(rust_2018_idioms, unused_qualifications, unused_lifetimes, single_use_lifetimes)]
#![allow(elided_lifetimes_in_paths)] // the documented style: `&Prices`, `&mut Emit<K, V>`

use kstreams::{batch_processor, processor, punctuator, store, Emit, Punctuation, Record, Topology};

/// Prices, a table.
#[store(name = "prices")]
pub type Prices = kstreams::KeyValue<String, u64>;

/// Rates, a versioned table.
#[store(name = "rates", history = "1h")]
pub type Rates = kstreams::VersionedKeyValue<String, u64>;

/// Counts, written by the processor that reads the tables.
#[store(name = "counts")]
pub type Counts = kstreams::KeyValue<String, u64>;

/// Each order's price and rate as of its time: one batched read of each table.
#[batch_processor(punctuate(every = "1m", time = stream_time, with = report))]
pub fn enrich(
    orders: &[Record<String, u64>],
    prices: &Prices,
    rates: &Rates,
    counts: &mut Counts,
    out: &mut Emit<String, u64>,
) -> kstreams::Result<()> {
    let keys: Vec<String> = orders.iter().map(|r| r.key.clone()).collect();
    let as_of: Vec<(String, i64)> = orders.iter().map(|r| (r.key.clone(), r.timestamp)).collect();
    let found = prices.get_batch(&keys)?;
    let rated = rates.get_batch_as_of(&as_of)?;
    let first = prices.range("a".to_string().."b".to_string())?.next().transpose()?;
    for ((r, price), rate) in orders.iter().zip(found).zip(rated) {
        let rate = rate.map_or(1, |v| v.value);
        counts.put(&r.key, &(price.unwrap_or(0) * rate + first.as_ref().map_or(0, |(_, v)| *v)))?;
        out.forward(r.derive(r.key.clone(), r.value));
    }
    Ok(())
}

/// Reports a price.
#[punctuator]
pub fn report(p: &Punctuation, prices: &Prices, out: &mut Emit<String, u64>) -> kstreams::Result<()> {
    if let Some(n) = prices.get("a")? {
        out.forward(Record::new("a".to_string(), n).with_timestamp(p.timestamp));
    }
    Ok(())
}

/// One order at a time.
#[processor]
pub fn price_one(order: &Record<String, u64>, prices: &Prices, out: &mut Emit<String, u64>) -> kstreams::Result<()> {
    let p = prices.get(&order.key)?.unwrap_or(0);
    out.forward(order.derive(order.key.clone(), p * order.value));
    Ok(())
}

fn main() {
    let mut t = Topology::builder();
    let _prices = t.table::<Prices<'static>>("prices");
    let _rates = t.table::<Rates<'static>>("rates");
    let orders = t.source::<String, u64>("orders");
    let enriched = t.add(enrich, &orders);
    t.sink("enriched", &enriched);
    let priced = t.add(price_one, &orders);
    t.sink("priced", &priced);
    if let Err(e) = t.build() {
        panic!("{e}");
    }
}
