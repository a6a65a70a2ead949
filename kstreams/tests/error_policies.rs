//! Error policies in the test driver: per-topic overrides (the most specific policy wins),
//! overrides naming unknown topics are rejected, and a value a sink cannot serialize goes through
//! the production policy (fail, skip, dead-letter).

use kstreams::OnBadRecord;
use kstreams::error::SerdeError;
use kstreams::kafka::{App, AppConfig};
use kstreams::serde::{I64Serde, Serde, StringSerde};
use kstreams::testing::{StoredRecord, TopologyTestDriver};
use kstreams::{BatchProcessor, Context, Headers, Record, Result, Topology, processor};

fn dlq(topic: &str) -> OnBadRecord {
    OnBadRecord::DeadLetter {
        topic: topic.into(),
    }
}

fn header(r: &StoredRecord, name: &str) -> Option<String> {
    r.headers
        .last(name)
        .flatten()
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Fails the records whose value is negative, through the processing policy.
#[derive(Debug, Clone)]
struct RejectNegative;

impl BatchProcessor<String, i64> for RejectNegative {
    type OutKey = String;
    type OutValue = i64;
    fn process_batch(
        &mut self,
        records: &[Record<String, i64>],
        ctx: &mut Context<'_, String, i64>,
    ) -> Result<()> {
        for r in records {
            if r.value < 0 {
                ctx.fail_record(r, kstreams::Error::processing("negative"))?;
            } else {
                ctx.forward(r.clone());
            }
        }
        Ok(())
    }
}

/// Three sources `a`, `b`, `c` of `<String, i64>`, each through [`RejectNegative`] to `<x>-out`.
fn three_sources() -> Topology {
    let mut t = Topology::builder();
    for name in ["a", "b", "c"] {
        let s = t.source::<String, i64>(name);
        let p = t.add(RejectNegative, &s);
        t.sink(&format!("{name}-out"), &p);
    }
    t.build().expect("topology")
}

fn append(d: &mut TopologyTestDriver, topic: &str, value: Vec<u8>) {
    d.append_raw(
        topic,
        None,
        Some(b"k".to_vec()),
        Some(value),
        1,
        Headers::new(),
    )
    .expect("append");
}

fn outputs(d: &mut TopologyTestDriver, topic: &str) -> Vec<i64> {
    d.read_output::<String, i64>(topic)
        .expect("output")
        .into_iter()
        .map(|r| r.value)
        .collect()
}

#[test]
fn per_topic_overrides_pick_the_most_specific_policy() {
    let mut d = TopologyTestDriver::builder(three_sources())
        .on_deserialization_error(OnBadRecord::Fail)
        .on_processing_error(OnBadRecord::Fail)
        .on_deserialization_error_for("a", OnBadRecord::Skip)
        .on_deserialization_error_for("b", dlq("b-dlq"))
        .on_processing_error_for("a", dlq("a-dlq"))
        .on_processing_error_for("b", OnBadRecord::Skip)
        .build()
        .expect("driver");
    for topic in ["a", "b"] {
        append(&mut d, topic, 1i64.to_be_bytes().to_vec());
        append(&mut d, topic, vec![1, 2, 3]); // not an i64: deserialization error
        append(&mut d, topic, (-5i64).to_be_bytes().to_vec()); // processing error
        append(&mut d, topic, 4i64.to_be_bytes().to_vec());
    }
    d.process().expect("a and b have policies that go on");
    assert_eq!(outputs(&mut d, "a-out"), [1, 4]);
    assert_eq!(outputs(&mut d, "b-out"), [1, 4]);
    // a: deserialization skipped, processing dead-lettered.
    let a = d.read_output_raw("a-dlq");
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        header(&a[0].2, "kstreams.error.topic").as_deref(),
        Some("a")
    );
    assert_eq!(
        header(&a[0].2, "kstreams.error.offset").as_deref(),
        Some("2")
    );
    assert_eq!(
        header(&a[0].2, "kstreams.error.stage").as_deref(),
        Some("process")
    );
    // b: deserialization dead-lettered, processing skipped.
    let b = d.read_output_raw("b-dlq");
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0].2.value.as_deref(), Some(&[1u8, 2, 3][..]));
    assert_eq!(
        header(&b[0].2, "kstreams.error.topic").as_deref(),
        Some("b")
    );
    assert_eq!(
        header(&b[0].2, "kstreams.error.offset").as_deref(),
        Some("1")
    );
    assert_eq!(
        header(&b[0].2, "kstreams.error.stage").as_deref(),
        Some("deserialize")
    );
    // c has no override: the application's policy (fail) applies.
    append(&mut d, "c", vec![9]);
    let err = d.process().expect_err("c fails").to_string();
    assert!(
        err.contains("topic `c` partition 0 offset 0"),
        "the error names the record: {err}"
    );
}

#[test]
fn an_override_for_a_topic_the_topology_lacks_is_rejected() {
    let err = TopologyTestDriver::builder(three_sources())
        .on_deserialization_error_for("typo", OnBadRecord::Skip)
        .build()
        .expect_err("unknown source")
        .to_string();
    assert!(
        err.contains("`typo`") && err.contains("not a source topic"),
        "{err}"
    );
    // A source is not a sink.
    let err = TopologyTestDriver::builder(three_sources())
        .on_production_error_for("a", OnBadRecord::Skip)
        .build()
        .expect_err("not a sink")
        .to_string();
    assert!(
        err.contains("`a`") && err.contains("not a sink topic"),
        "{err}"
    );
    let err = TopologyTestDriver::builder(three_sources())
        .on_processing_error_for("a-out", OnBadRecord::Skip)
        .build()
        .expect_err("not a source")
        .to_string();
    assert!(err.contains("not a source topic"), "{err}");
    // The Kafka app checks the same before it touches the network.
    let config = AppConfig::new("overrides")
        .bootstrap_servers("127.0.0.1:1")
        .on_production_error_for("b-outt", OnBadRecord::Skip);
    let err = App::new(three_sources(), config)
        .expect_err("unknown sink")
        .to_string();
    assert!(
        err.contains("`b-outt`") && err.contains("not a sink topic"),
        "{err}"
    );
    let ok = AppConfig::new("overrides")
        .bootstrap_servers("127.0.0.1:1")
        .on_deserialization_error_for("a", OnBadRecord::Skip)
        .on_processing_error_for("b", OnBadRecord::Skip)
        .on_production_error_for("c-out", OnBadRecord::Skip);
    assert!(App::new(three_sources(), ok).is_ok());
}

/// Writes i64 big-endian, refusing negative values.
#[derive(Debug, Clone, Copy)]
struct NonNegative;

impl Serde<i64> for NonNegative {
    fn serialize(&self, value: &i64) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        if *value < 0 {
            return Err(SerdeError::new(format!("{value} is negative")));
        }
        I64Serde.serialize(value)
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> std::result::Result<i64, SerdeError> {
        I64Serde.deserialize(bytes)
    }
}

fn serialize_driver(
    build: impl FnOnce(kstreams::testing::DriverBuilder) -> kstreams::testing::DriverBuilder,
) -> TopologyTestDriver {
    let mut t = Topology::builder();
    let s = t.source::<String, i64>("nums");
    let m = t.add(processor::map(|r: &Record<String, i64>| r.clone()), &s);
    t.sink_with("out", &m, StringSerde, NonNegative);
    let mut d = build(TopologyTestDriver::builder(t.build().expect("topology")))
        .build()
        .expect("driver");
    for v in [1i64, -2, 3, -4] {
        append(&mut d, "nums", v.to_be_bytes().to_vec());
    }
    d
}

#[test]
fn a_value_a_sink_cannot_serialize_fails_by_default() {
    let mut d = serialize_driver(|b| b);
    let err = d.process().expect_err("fails").to_string();
    assert_eq!(
        err,
        "cannot serialize the value for topic `out` (the output of the record at topic `nums` \
         partition 0 offset 1): -2 is negative"
    );
    assert!(outputs(&mut d, "out").is_empty(), "the batch failed whole");
}

#[test]
fn a_value_a_sink_cannot_serialize_is_skipped() {
    // The override for the sink wins over the application's fail.
    let mut d = serialize_driver(|b| {
        b.on_production_error(OnBadRecord::Fail)
            .on_production_error_for("out", OnBadRecord::Skip)
    });
    d.process().expect("skips");
    assert_eq!(outputs(&mut d, "out"), [1, 3]);
    assert!(d.read_output_raw("dlq").is_empty());
}

#[test]
fn a_value_a_sink_cannot_serialize_is_dead_lettered_with_its_input_bytes() {
    let mut d = serialize_driver(|b| b.on_production_error(dlq("dlq")));
    d.process().expect("dead-letters");
    assert_eq!(outputs(&mut d, "out"), [1, 3]);
    let dead = d.read_output_raw("dlq");
    let got: Vec<(
        Option<String>,
        Option<String>,
        Option<String>,
        Option<Vec<u8>>,
    )> = dead
        .iter()
        .map(|(_, _, r)| {
            (
                header(r, "kstreams.error.offset"),
                header(r, "kstreams.error.stage"),
                header(r, "kstreams.error.sink.topic"),
                r.value.clone(),
            )
        })
        .collect();
    let want = |offset: &str, v: i64| {
        (
            Some(offset.to_owned()),
            Some("produce".to_owned()),
            Some("out".to_owned()),
            Some(v.to_be_bytes().to_vec()),
        )
    };
    assert_eq!(got, [want("1", -2), want("3", -4)]);
    for (_, _, r) in &dead {
        assert_eq!(header(r, "kstreams.error.topic").as_deref(), Some("nums"));
        assert_eq!(header(r, "kstreams.error.partition").as_deref(), Some("0"));
        assert!(
            header(r, "kstreams.error.message")
                .unwrap_or_default()
                .contains("is negative"),
            "{r:?}"
        );
    }
}
