//! A processor is still callable as the function it was made from.

use kstreams::store::StateStores;
use kstreams::testing::run_plain;
use kstreams::{batch_processor, processor, store, Emit, Record};

#[store(name = "counts", backend = "in_memory")]
type Counts = kstreams::KeyValue<String, u64>;

#[batch_processor]
fn count(lines: &[Record<(), String>], counts: &mut Counts, out: &mut Emit<String, u64>) -> kstreams::Result<()> {
    for l in lines {
        let n = counts.get(&l.value)?.unwrap_or(0) + 1;
        counts.put(&l.value, &n)?;
        out.forward(l.derive(l.value.clone(), n));
    }
    Ok(())
}

#[processor]
fn shout(line: &Record<(), String>, out: &mut Emit<(), String>) {
    out.forward(line.derive((), line.value.to_uppercase()));
}

fn main() -> kstreams::Result<()> {
    use kstreams::StoreHandle;
    let mut stores = StateStores::in_memory(vec![Counts::spec()])?;
    let lines = [Record::new((), "a".to_string()), Record::new((), "a".to_string())];
    let ((), out) = run_plain(&mut stores, |ctx| {
        let mut counts = ctx.store_handle::<Counts>()?;
        count(&lines, &mut counts, ctx)
    })?;
    assert_eq!(out[1].value, 2);
    let ((), out) = run_plain(&mut StateStores::in_memory(Vec::new())?, |ctx| {
        shout(&lines[0], ctx);
        Ok(())
    })?;
    assert_eq!(out[0].value, "A");
    Ok(())
}
