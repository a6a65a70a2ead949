use kstreams::{batch_processor, Emit, Record};

type Totals = kstreams::KeyValue<String, u64>;

#[batch_processor]
fn add_up(orders: &[Record<String, u64>], totals: &mut Totals, out: &mut Emit<String, u64>) -> kstreams::Result<()> {
    for o in orders {
        let total = totals.get(&o.key)?.unwrap_or(0) + o.value;
        totals.put(&o.key, &total)?;
        out.forward(o.derive(o.key.clone(), total));
    }
    Ok(())
}

fn main() {}
