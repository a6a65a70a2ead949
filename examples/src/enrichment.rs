//! Enrichment: a stream of orders joined against a table of customers.
//!
//! The `customers` topic (id → name) is a table: `t.table::<Customers>("customers")` materializes
//! it into the `customers` store (the topic is the store's changelog; a null value deletes). The
//! `orders` stream (customer id → item) is enriched by [`enrich_orders`], which takes the table
//! read-only (`&Customers`: a table is written only from its topic) and looks up a whole batch's
//! customers with one `get_batch`. Table and stream share the store, so the topology puts them in
//! one sub-topology: `customers` and `orders` must be co-partitioned (same partition count, keyed
//! by customer id), and partition `p` of both is handled by the same task with the same LMDB
//! environment. (The library's own operator for this is `kstreams::join::left_stream_table`; see
//! the `join` example.)

use kstreams::kafka::AppConfig;
use kstreams::{Emit, Record, Result, Topology, batch_processor, store};

use crate::embedded;

/// Customer id → name: the table of the `customers` topic.
#[store(name = "customers")]
pub type Customers = kstreams::KeyValue<String, String>;

/// Stream side: each order with its customer's name (`unknown` when the table has none).
#[batch_processor]
pub fn enrich_orders(
    orders: &[Record<String, String>],
    customers: &Customers,
    out: &mut Emit<String, String>,
) -> kstreams::Result<()> {
    let ids: Vec<String> = orders.iter().map(|o| o.key.clone()).collect();
    for (order, name) in orders.iter().zip(customers.get_batch(&ids)?) {
        let name = name.unwrap_or_else(|| "unknown".to_owned());
        out.forward(order.derive(
            order.key.clone(),
            format!("{} ordered {}", name, order.value),
        ));
    }
    Ok(())
}

/// `customers` → the `customers` table; `orders` → [`enrich_orders`] → `enriched-orders`.
pub fn topology() -> Result<Topology> {
    let mut t = Topology::builder();
    let _customers = t.table::<Customers<'static>>("customers");
    let orders = t.source::<String, String>("orders");
    let enriched = t.add(enrich_orders, &orders);
    t.sink("enriched-orders", &enriched);
    Ok(t.build()?)
}

/// Runs the example on the embedded cluster: loads `customers` (id, name), then enriches
/// `orders` (customer id, item); returns the enriched orders as `id: text` lines, sorted.
pub async fn run(
    customers: &[(&str, &str)],
    orders: &[(&str, &str)],
    state_dir: &std::path::Path,
) -> Result<Vec<String>> {
    let config = AppConfig::new("enrichment-example").state_dir(state_dir);
    let mut app = embedded::start(topology()?, config, 2, &[]).await?;
    let records = |pairs: &[(&str, &str)]| -> Vec<Record<String, String>> {
        pairs
            .iter()
            .map(|(k, v)| Record::new((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    // The table first: the orders are produced once every customer is in the store.
    app.client.produce("customers", records(customers)).await?;
    app.processed().await?;
    app.client.produce("orders", records(orders)).await?;
    app.processed().await?;
    app.stop().await?;
    let mut lines: Vec<String> = app
        .client
        .read::<String, String>("enriched-orders")
        .await?
        .into_iter()
        .map(|r| format!("{}: {}", r.key, r.value))
        .collect();
    lines.sort();
    Ok(lines)
}
