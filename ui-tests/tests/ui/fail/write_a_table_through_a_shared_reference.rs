// A table's store taken by `&` only reads: its writes take `&mut self`.
use kstreams::{batch_processor, store, Record};

#[store(name = "prices")]
type Prices = kstreams::KeyValue<String, u64>;

#[store(name = "rates", history = "1h")]
type Rates = kstreams::VersionedKeyValue<String, u64>;

#[batch_processor]
fn overwrite(orders: &[Record<String, u64>], prices: &Prices, rates: &Rates) -> kstreams::Result<()> {
    for r in orders {
        prices.put(&r.key, &r.value)?;
        prices.delete(&r.key)?;
        rates.put(&r.key, Some(&r.value), r.timestamp)?;
    }
    Ok(())
}

fn main() {}
