// What `Context::read_store` and the global stores give only reads.
use kstreams::{Context, Result};

fn overwrite(ctx: &Context<'_, String, String>) -> Result<()> {
    let prices = ctx.read_store::<String, u64>("prices")?;
    prices.put(&"apple".to_string(), &3)?;
    let rates = ctx.global_store::<String, u64>("rates")?;
    rates.delete("apple")
}

fn main() {
    let _ = overwrite;
}
