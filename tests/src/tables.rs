//! The topologies of the real-broker table tests (`tests/tests/kafka_tables.rs`), shared with
//! their process binary (`src/bin/table_app.rs`).
//!
//! [`enrich_topology`]: a table `prices` (String -> String) materialized from its topic, which is
//! also its changelog, and a stream of orders (String -> String) enriched with the key's current
//! price by a plain batch processor reading the table's store: `<order>|<price>`, or
//! `<order>|-` when the table has none.

use kstreams::{Emit, Record, Result, Topology, batch_processor, store};

/// The table's store: key -> price, materialized from the table topic.
#[store(name = "prices")]
pub type Prices = kstreams::KeyValue<String, String>;

/// Each order with its key's current price: one `get_batch` per batch.
#[batch_processor]
pub fn enrich(
    orders: &[Record<String, String>],
    prices: &mut Prices,
    out: &mut Emit<String, String>,
) -> Result<()> {
    let keys: Vec<String> = orders.iter().map(|o| o.key.clone()).collect();
    for (order, price) in orders.iter().zip(prices.get_batch(&keys)?) {
        let price = price.unwrap_or_else(|| "-".to_owned());
        out.forward(order.derive(order.key.clone(), format!("{}|{price}", order.value)));
    }
    Ok(())
}

/// `table` materialized into [`Prices`]; `orders` -> [`enrich`] -> `output`.
pub fn enrich_topology(table: &str, orders: &str, output: &str) -> Result<Topology> {
    let mut t = Topology::builder();
    let _prices = t.table::<Prices<'static>>(table);
    let orders = t.source::<String, String>(orders);
    let enriched = t.add(enrich, &orders);
    t.sink(output, &enriched);
    Ok(t.build()?)
}

/// `input` (key -> value) re-keyed by its value, through the repartition topic named `name`,
/// to `output` unchanged (key = the input's value).
pub fn repartition_topology(input: &str, name: &str, output: &str) -> Result<Topology> {
    let mut t = Topology::builder();
    let input = t.source::<String, String>(input);
    let rekeyed = t.add(
        kstreams::processor::map(|r: &Record<String, String>| {
            r.derive(r.value.clone(), r.key.clone())
        }),
        &input,
    );
    let repartitioned = t.repartition(&rekeyed, name);
    t.sink(output, &repartitioned);
    Ok(t.build()?)
}
