//! The topologies of the real-broker table tests (`tests/tests/kafka_tables.rs`), shared with
//! their process binary (`src/bin/table_app.rs`).
//!
//! [`enrich_topology`]: a table `prices` (String -> String) materialized from its topic, which is
//! also its changelog, and a stream of orders (String -> String) enriched with the key's current
//! price by a plain batch processor reading the table's store: `<order>|<price>`, or
//! `<order>|-` when the table has none.

use kstreams::{Record, Result, Topology, store};

/// The table's store: key -> price, materialized from the table topic.
#[store(name = "prices")]
pub type Prices = kstreams::KeyValue<String, String>;

/// Each order with its key's current price: one `get_batch` per batch. It declares the store
/// as the table does ([`Table::spec`](kstreams::table::Table::spec): its topic is its
/// changelog), read-only (only the table writes its store), and reads it with
/// `Context::read_store`.
#[derive(Debug, Clone)]
pub struct Enrich {
    spec: kstreams::StoreSpec,
}

impl kstreams::BatchProcessor<String, String> for Enrich {
    type OutKey = String;
    type OutValue = String;

    fn stores(&self) -> Vec<kstreams::StoreSpec> {
        vec![self.spec.clone().read_only()]
    }

    fn process_batch(
        &mut self,
        orders: &[Record<String, String>],
        ctx: &mut kstreams::Context<'_, String, String>,
    ) -> Result<()> {
        let prices = ctx.read_store::<String, String>(self.spec.name())?;
        let keys: Vec<String> = orders.iter().map(|o| o.key.clone()).collect();
        for (order, price) in orders.iter().zip(prices.get_batch(&keys)?) {
            let price = price.unwrap_or_else(|| "-".to_owned());
            ctx.forward(order.derive(order.key.clone(), format!("{}|{price}", order.value)));
        }
        Ok(())
    }
}

/// `table` materialized into [`Prices`]; `orders` -> [`Enrich`] -> `output`.
pub fn enrich_topology(table: &str, orders: &str, output: &str) -> Result<Topology> {
    let mut t = Topology::builder();
    let prices = t.table::<Prices<'static>>(table);
    let orders = t.source::<String, String>(orders);
    let enrich = Enrich {
        spec: prices.spec().clone(),
    };
    let enriched = t.add(enrich, &orders);
    t.sink(output, &enriched);
    Ok(t.build()?)
}

/// The global table's store: customer -> region, on every instance.
#[store(name = "regions")]
pub type Regions = kstreams::KeyValue<String, String>;

/// Each record (user -> customer) with its customer's region from the global table:
/// `<customer>|<region>`, or `<customer>|-` when the table has none. One read of the global
/// store per batch.
#[derive(Debug, Clone, Copy)]
pub struct Locate;

impl kstreams::BatchProcessor<String, String> for Locate {
    type OutKey = String;
    type OutValue = String;

    fn process_batch(
        &mut self,
        records: &[Record<String, String>],
        ctx: &mut kstreams::Context<'_, String, String>,
    ) -> Result<()> {
        let regions = ctx.global_store::<String, String>("regions")?;
        let customers: Vec<String> = records.iter().map(|r| r.value.clone()).collect();
        let found = regions.get_batch(&customers)?;
        for (r, region) in records.iter().zip(found) {
            let region = region.unwrap_or_else(|| "-".to_owned());
            ctx.forward(r.derive(r.key.clone(), format!("{}|{region}", r.value)));
        }
        Ok(())
    }
}

/// `global` as the global table [`Regions`]; `input` -> [`Locate`] -> `output`.
pub fn global_topology(global: &str, input: &str, output: &str) -> Result<Topology> {
    let mut t = Topology::builder();
    let _regions = t.global_table::<Regions<'static>>(global);
    let input = t.source::<String, String>(input);
    let located = t.add(Locate, &input);
    t.sink(output, &located);
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

/// A table kept by a processor of its own (as the `enrichment` example does), on a store whose
/// changelog is the table's topic ([`StoreSpec::changelog_from_source`](kstreams::StoreSpec)):
/// the runtime's side of a table, whatever builds it.
#[derive(Debug, Clone)]
pub struct Load {
    spec: kstreams::StoreSpec,
}

impl kstreams::BatchProcessor<String, String> for Load {
    type OutKey = ();
    type OutValue = ();

    fn stores(&self) -> Vec<kstreams::StoreSpec> {
        vec![self.spec.clone()]
    }

    fn process_batch(
        &mut self,
        records: &[Record<String, String>],
        ctx: &mut kstreams::Context<'_, (), ()>,
    ) -> Result<()> {
        let mut prices = ctx.store::<String, String>(self.spec.name())?;
        for r in records {
            prices.put(&r.key, &r.value)?;
        }
        Ok(())
    }
}

/// [`enrich_topology`] with the table kept by [`Load`] instead of `TopologyBuilder::table`.
pub fn enrich_topology_by_processor(table: &str, orders: &str, output: &str) -> Result<Topology> {
    let spec = kstreams::StoreSpec::new::<String, String>("prices").changelog_from_source(table);
    let mut t = Topology::builder();
    let prices = t.source::<String, String>(table);
    let _loaded = t.add(Load { spec: spec.clone() }, &prices);
    let orders = t.source::<String, String>(orders);
    let enriched = t.add(Enrich { spec }, &orders);
    t.sink(output, &enriched);
    Ok(t.build()?)
}
