//! The `Serde` batch contract, as sources and sinks use it: sources read through
//! `deserialize_batch`, sinks write through `serialize_batch`, and a serde that breaks the
//! contract (appends for a failed item, reports an index out of range) gives a clear error, never
//! keys paired with the wrong values and never a panic.

use kstreams::OnBadRecord;
use kstreams::error::SerdeError;
use kstreams::serde::{I64Serde, Serde, StringSerde};
use kstreams::testing::TopologyTestDriver;
use kstreams::{Headers, Record, Result, Topology, processor};

/// What a broken `serialize_batch` does after the first negative value.
#[derive(Debug, Clone, Copy)]
enum Breaks {
    /// Honours the contract: stops at the first failure.
    Nothing,
    /// Appends every value that serializes, skipping the failures, and reports the first failing
    /// index: the outputs after it would pair with the wrong keys.
    AppendsOnlyOnSuccess,
    /// Reports an index past the end of the batch.
    BogusIndex,
}

/// i64 values, negative ones refused, with a batch form that may break the contract.
#[derive(Debug, Clone, Copy)]
struct Signed(Breaks);

impl Serde<i64> for Signed {
    fn serialize(&self, value: &i64) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        if *value < 0 {
            return Err(SerdeError::new(format!("{value} is negative")));
        }
        I64Serde.serialize(value)
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> std::result::Result<i64, SerdeError> {
        I64Serde.deserialize(bytes)
    }
    fn serialize_batch<'a>(
        &self,
        values: &mut dyn Iterator<Item = &'a i64>,
        out: &mut Vec<Option<Vec<u8>>>,
    ) -> std::result::Result<(), (usize, SerdeError)>
    where
        i64: 'a,
    {
        let mut first = None;
        for (i, v) in values.enumerate() {
            match self.serialize(v) {
                Ok(b) if first.is_none() || matches!(self.0, Breaks::AppendsOnlyOnSuccess) => {
                    out.push(b)
                }
                Ok(_) => {}
                Err(e) => {
                    let i = match self.0 {
                        Breaks::BogusIndex => i + 1000,
                        _ => i,
                    };
                    first.get_or_insert((i, e));
                    if matches!(self.0, Breaks::Nothing) {
                        break;
                    }
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

fn sink_driver(breaks: Breaks) -> Result<TopologyTestDriver> {
    let mut t = Topology::builder();
    let s = t.source::<String, i64>("nums");
    let m = t.add(processor::map(|r: &Record<String, i64>| r.clone()), &s);
    t.sink_with("out", &m, StringSerde, Signed(breaks));
    TopologyTestDriver::builder(t.build()?)
        .on_production_error(OnBadRecord::Skip)
        .build()
}

fn pipe_nums(d: &mut TopologyTestDriver) -> Result<()> {
    d.pipe_batch(
        "nums",
        [(1i64, "a"), (-2, "b"), (3, "c"), (4, "d")].map(|(v, k)| Record::new(k.to_string(), v)),
    )
}

#[test]
fn a_sink_pairs_keys_and_values_when_the_serde_keeps_the_contract() -> Result<()> {
    let mut d = sink_driver(Breaks::Nothing)?;
    pipe_nums(&mut d)?;
    let out: Vec<(String, i64)> = d
        .read_output::<String, i64>("out")?
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(out, [("a".into(), 1), ("c".into(), 3), ("d".into(), 4)]);
    Ok(())
}

#[test]
fn a_sink_serde_that_appends_only_on_success_is_an_error_not_a_mispairing() -> Result<()> {
    let mut d = sink_driver(Breaks::AppendsOnlyOnSuccess)?;
    let err = pipe_nums(&mut d).expect_err("contract broken").to_string();
    assert_eq!(
        err,
        "invalid configuration: the value serde of the sink of topic `out` breaks the `Serde` \
         batch contract: it reported index 1 as failed after appending 3 outputs (must be 1)"
    );
    assert!(d.read_output::<String, i64>("out")?.is_empty());
    Ok(())
}

#[test]
fn a_sink_serde_that_reports_a_bogus_index_is_an_error_not_a_panic() -> Result<()> {
    let mut d = sink_driver(Breaks::BogusIndex)?;
    let err = pipe_nums(&mut d).expect_err("contract broken").to_string();
    assert_eq!(
        err,
        "invalid configuration: the value serde of the sink of topic `out` breaks the `Serde` \
         batch contract: it reported index 1001 as failed in a batch of 4"
    );
    Ok(())
}

/// Reads i64 values in batches only: the single form refuses everything, so records that come
/// through prove that sources use `deserialize_batch`. A value of `-1` fails; `bogus` makes it
/// report an index out of range.
#[derive(Debug, Clone, Copy)]
struct BatchOnly {
    bogus: bool,
}

impl Serde<i64> for BatchOnly {
    fn serialize(&self, value: &i64) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        I64Serde.serialize(value)
    }
    fn deserialize(&self, _: Option<&[u8]>) -> std::result::Result<i64, SerdeError> {
        Err(SerdeError::new("only batches"))
    }
    fn deserialize_batch(
        &self,
        bytes: &mut dyn Iterator<Item = Option<&[u8]>>,
        out: &mut Vec<i64>,
    ) -> std::result::Result<(), (usize, SerdeError)> {
        for (i, b) in bytes.enumerate() {
            let v = I64Serde.deserialize(b).map_err(|e| (i, e))?;
            if v == -1 {
                let i = if self.bogus { usize::MAX } else { i };
                return Err((i, SerdeError::new("minus one")));
            }
            out.push(v);
        }
        Ok(())
    }
}

fn source_driver(bogus: bool) -> Result<TopologyTestDriver> {
    let mut t = Topology::builder();
    let s = t.source_with::<String, i64>("nums", StringSerde, BatchOnly { bogus });
    let m = t.add(processor::map(|r: &Record<String, i64>| r.clone()), &s);
    t.sink("out", &m);
    let mut d = TopologyTestDriver::builder(t.build()?)
        .on_deserialization_error(OnBadRecord::DeadLetter {
            topic: "dlq".into(),
        })
        .build()?;
    for v in [5i64, -1, 7] {
        d.append_raw(
            "nums",
            None,
            Some(b"k".to_vec()),
            Some(v.to_be_bytes().to_vec()),
            1,
            Headers::new(),
        )?;
    }
    Ok(d)
}

#[test]
fn sources_read_through_deserialize_batch_with_per_record_policies() -> Result<()> {
    let mut d = source_driver(false)?;
    d.process()?;
    let out: Vec<i64> = d
        .read_output::<String, i64>("out")?
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(out, [5, 7], "the batch form read them, resuming after -1");
    let dlq = d.read_output_raw("dlq");
    assert_eq!(dlq.len(), 1);
    let header = |name: &str| {
        dlq[0]
            .2
            .headers
            .last(name)
            .flatten()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("kstreams.error.offset").as_deref(), Some("1"));
    assert_eq!(
        header("kstreams.error.message").as_deref(),
        Some(
            "cannot deserialize the value of the record at topic `nums` partition 0 offset 1: minus one"
        )
    );
    Ok(())
}

#[test]
fn a_source_serde_that_reports_a_bogus_index_is_an_error_not_a_panic() -> Result<()> {
    let mut d = source_driver(true)?;
    let err = d.process().expect_err("contract broken").to_string();
    assert_eq!(
        err,
        format!(
            "invalid configuration: the value serde of the source of topic `nums` breaks the \
             `Serde` batch contract: it reported index {} as failed in a batch of 3",
            usize::MAX
        )
    );
    Ok(())
}
