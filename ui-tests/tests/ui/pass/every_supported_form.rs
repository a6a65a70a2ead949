//! Every supported signature and attribute key compiles, and wires.

use kstreams::serde::{Json, StringSerde};
use kstreams::{batch_processor, processor, punctuator, store, Emit, Error, InitContext, Punctuation, Record, Topology};

#[store(name = "counts")]
type Counts = kstreams::KeyValue<String, u64>;

#[store(name = "in-memory", backend = "in_memory", changelog = false)]
pub type InMemory = kstreams::KeyValue<u64, Option<String>>;

#[store(name = "on-lmdb", backend = "lmdb", changelog = true)]
pub(crate) type OnLmdb = kstreams::KeyValue<i64, Vec<u8>>;

#[store(name = "custom-serdes", key_serde = StringSerde, value_serde = Json::<Vec<u32>>::new())]
type CustomSerdes = kstreams::KeyValue<String, Vec<u32>>;

/// Records only: output `((), ())`, returns `()`.
#[batch_processor]
fn records_only(lines: &[Record<(), String>]) {
    let _ = lines;
}

/// Records and output, returning `kstreams::Result<()>`.
#[batch_processor(name = "with-output")]
pub fn with_output(lines: &[Record<(), String>], out: &mut Emit<String, u64>) -> kstreams::Result<()> {
    for l in lines {
        out.forward(l.derive(l.value.clone(), 1));
    }
    Ok(())
}

/// Every store, output through the full path of `Context`.
#[batch_processor]
fn all_stores(
    _: &[kstreams::Record<String, u64>],
    counts: &mut Counts,
    memory: &mut InMemory,
    lmdb: &mut OnLmdb,
    custom: &mut CustomSerdes,
    out: &mut kstreams::Context<'_, String, u64>,
) -> Result<(), Error> {
    counts.put(&"a".to_string(), &1)?;
    memory.put(&1, &None)?;
    lmdb.delete(&-1)?;
    custom.put(&"x".to_string(), &vec![1])?;
    let _ = out.name();
    Ok(())
}

#[derive(Debug)]
struct MyError;

impl From<MyError> for Error {
    fn from(_: MyError) -> Self {
        Error::processing("mine")
    }
}

/// A custom error type.
#[processor]
fn per_record(line: &Record<String, u64>, counts: &mut Counts) -> Result<(), MyError> {
    counts.put(&line.key, &line.value).map_err(|_| MyError)
}

/// One record, output, `mut` patterns.
#[processor(name = "upper")]
fn upper(mut_line: &Record<(), String>, mut out: &mut Emit<(), String>) {
    let o: &mut &mut Emit<'_, (), String> = &mut out;
    o.forward(mut_line.derive((), mut_line.value.to_uppercase()));
}

/// Punctuations on a record processor, handlers with and without output, an interval expression,
/// an init function returning `()`.
#[processor(
    name = "punctuated",
    punctuate(every = "250ms", time = stream_time, with = emit_count),
    punctuate(every = std::time::Duration::from_secs(60), time = wall_clock, with = nested::forget_all),
    init = nothing_to_check
)]
fn punctuated(line: &Record<String, u64>, counts: &mut Counts, _out: &mut Emit<String, u64>) -> kstreams::Result<()> {
    counts.put(&line.key, &line.value)
}

#[punctuator]
fn emit_count(p: &Punctuation, counts: &mut Counts, memory: &mut InMemory, out: &mut kstreams::Context<'_, String, u64>) -> Result<(), String> {
    let n = counts.get(&"a".to_string()).map_err(|e| e.to_string())?.unwrap_or(0);
    memory.put(&n, &None).map_err(|e| e.to_string())?;
    out.forward(Record::new("a".to_string(), n).with_timestamp(p.timestamp));
    Ok(())
}

fn nothing_to_check(_: &mut InitContext<'_>) {}

mod nested {
    use kstreams::{batch_processor, Emit, Record};

    #[kstreams::punctuator]
    pub(crate) fn forget_all(_: &kstreams::Punctuation, counts: &mut super::Counts) -> kstreams::Result<()> {
        counts.delete(&"a".to_string())
    }

    #[batch_processor]
    pub fn public_in_a_module(lines: &[Record<(), String>], out: &mut Emit<(), u64>) {
        out.forward_batch(lines.iter().map(|l| l.derive((), l.value.len() as u64)));
    }
}

fn main() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let lines = t.source::<(), String>("lines");
    let _ = t.add(records_only, &lines);
    let counted = t.add(with_output, &lines);
    let all = t.add(all_stores, &counted);
    t.sink("all", &all);
    let _ = t.add(per_record, &counted);
    let up = t.add(upper, &lines);
    t.sink("upper", &up);
    let lens = t.add(nested::public_in_a_module, &lines);
    t.sink("lengths", &lens);
    let punctuated_out = t.add(punctuated, &counted);
    t.sink("punctuated", &punctuated_out);
    let topology = t.build()?;
    assert!(topology.describe().contains("with-output"));
    assert!(topology.describe().contains("Processor: punctuated (stores: [counts, in-memory])"));
    assert_eq!(topology.stores().len(), 4);
    Ok(())
}
