use kstreams::{batch_processor, Emit, Record};

#[batch_processor]
fn parse(lines: &[Record<(), String>], out: &mut Emit<(), u64>) -> Result<(), String> {
    for l in lines {
        let n = l.value.parse::<u64>().map_err(|e| format!("not a number: {e}"))?;
        out.forward(l.derive((), n));
    }
    Ok(())
}

fn main() {}
