//! Errors about one record go through the processing policy once per input record:
//! - a record that a `flat_map` turns into several, all of which a processor fails, counts once and
//!   is dead-lettered once (it used to underflow the processed counter and be dead-lettered once
//!   per derived record);
//! - a processor that returns an error about the data (a store `put` whose value the store's serde
//!   refuses) has its batch run again one record at a time: the bad record goes through its
//!   policy, naming processor, store and origin, and the other records' effects stay.

mod common;

use std::sync::Arc;

use common::CountOne;

use kstreams::OnBadRecord;
use kstreams::error::SerdeError;
use kstreams::record::RawRecord;
use kstreams::serde::{Serde, StringSerde};
use kstreams::task::{Task, TaskConfig, TaskId, TaskOutput};
use kstreams::testing::{Batching, TopologyTestDriver};
use kstreams::{
    BatchProcessor, Context, Error, Headers, Record, Result, StoreSpec, Topology, processor,
};

fn dlq() -> OnBadRecord {
    OnBadRecord::DeadLetter {
        topic: "dlq".into(),
    }
}

/// Fails every record whose value is `bad`, through `fail_record`; forwards the others.
#[derive(Debug, Clone)]
struct RejectBad;

impl BatchProcessor<String, String> for RejectBad {
    type OutKey = String;
    type OutValue = String;
    fn process_batch(
        &mut self,
        records: &[Record<String, String>],
        ctx: &mut Context<'_, String, String>,
    ) -> Result<()> {
        for r in records {
            if r.value == "bad" {
                ctx.fail_record(r, Error::processing("a bad value"))?;
            } else {
                ctx.forward(r.clone());
            }
        }
        Ok(())
    }
}

/// `in` → flat_map (each record three times; the input `x` becomes three `bad`) → RejectBad → `out`.
fn fan_out() -> Result<Topology> {
    let mut t = Topology::builder();
    let s = t.source::<String, String>("in");
    let f = t.add(
        processor::flat_map(|r: &Record<String, String>| {
            let value = if r.value == "x" { "bad" } else { "ok" };
            (0..3)
                .map(|i| r.derive(format!("{}-{i}", r.key), value.to_string()))
                .collect::<Vec<_>>()
        }),
        &s,
    );
    let p = t.add(RejectBad, &f);
    t.sink("out", &p);
    Ok(t.build()?)
}

fn fan_out_task(policy: OnBadRecord, dir: &std::path::Path) -> Result<Task> {
    let mut config = TaskConfig::new("record-errors", dir);
    config.errors = config.errors.on_processing_error(policy);
    Task::new(
        &fan_out()?,
        TaskId {
            subtopology: 0,
            partition: 0,
        },
        Arc::new(config),
    )
}

/// Offsets 0..3 with values `a`, `x`, `b`: `x` fans out into three bad records.
fn fan_out_batch(task: &mut Task) -> Result<TaskOutput> {
    let values: [&[u8]; 3] = [b"a", b"x", b"b"];
    let batch: Vec<RawRecord<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| RawRecord {
            key: Some(b"k"),
            value: Some(v),
            timestamp: 1,
            offset: i as i64,
            headers: Headers::new(),
        })
        .collect();
    task.process("in", 0, &batch, 0)
}

#[test]
fn an_input_whose_derived_records_all_fail_is_skipped_and_counted_once() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::Runtime(e.to_string()))?;
    let mut task = fan_out_task(OnBadRecord::Skip, dir.path())?;
    let out = fan_out_batch(&mut task)?;
    assert_eq!((out.processed, out.skipped, out.dead_lettered), (2, 1, 0));
    assert_eq!(out.records.len(), 6, "three outputs of `a` and of `b`");
    Ok(())
}

#[test]
fn an_input_whose_derived_records_all_fail_is_dead_lettered_once() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::Runtime(e.to_string()))?;
    let mut task = fan_out_task(dlq(), dir.path())?;
    let out = fan_out_batch(&mut task)?;
    assert_eq!((out.processed, out.skipped, out.dead_lettered), (2, 0, 1));
    let dead: Vec<_> = out.records.iter().filter(|r| &*r.topic == "dlq").collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        dead[0].value.as_deref(),
        Some(&b"x"[..]),
        "the input's bytes"
    );
    assert_eq!(
        dead[0].headers.last("kstreams.error.offset"),
        Some(Some(&b"1"[..]))
    );
    assert_eq!(out.records.len(), 7);
    Ok(())
}

#[test]
fn an_input_whose_derived_records_all_fail_fails_the_batch_naming_it() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::Runtime(e.to_string()))?;
    let mut task = fan_out_task(OnBadRecord::Fail, dir.path())?;
    let err = fan_out_batch(&mut task).expect_err("fails");
    assert_eq!(
        err.to_string(),
        "processor `RejectBad` failed at topic `in` partition 0 offset 1: a bad value"
    );
    assert_eq!(
        task.committed_transactions(),
        0,
        "nothing of the batch stays"
    );
    Ok(())
}

/// Strings, except the marker `poison`, which it refuses to write.
#[derive(Debug, Clone, Copy, Default)]
struct NoPoison;

impl Serde<String> for NoPoison {
    fn serialize(&self, value: &String) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        if value == "poison" {
            return Err(SerdeError::new("`poison` cannot be stored"));
        }
        StringSerde.serialize(value)
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> std::result::Result<String, SerdeError> {
        StringSerde.deserialize(bytes)
    }
}

/// Stores the last value of each key, forwards `key=value`; a `put` of `poison` fails (its error
/// returned with `?`, as users write it: no `fail_record`).
#[derive(Debug, Clone)]
struct Remember;

impl BatchProcessor<String, String> for Remember {
    type OutKey = String;
    type OutValue = String;
    fn stores(&self) -> Vec<StoreSpec> {
        vec![StoreSpec::with_serdes::<String, String>(
            "last",
            StringSerde,
            NoPoison,
        )]
    }
    fn process_batch(
        &mut self,
        records: &[Record<String, String>],
        ctx: &mut Context<'_, String, String>,
    ) -> Result<()> {
        let mut last = ctx.store::<String, String>("last")?;
        for r in records {
            last.put(&r.key, &r.value)?;
            ctx.forward(r.derive(r.key.clone(), format!("{}={}", r.key, r.value)));
        }
        Ok(())
    }
}

fn remember_driver(policy: OnBadRecord, batching: Batching) -> Result<TopologyTestDriver> {
    let mut t = Topology::builder();
    let s = t.source::<String, String>("in");
    let p = t.add(Remember, &s);
    t.sink("out", &p);
    let mut d = TopologyTestDriver::builder(t.build()?)
        .on_processing_error(policy)
        .batching(batching)
        .build()?;
    let _ = d.pipe_batch(
        "in",
        [("a", "1"), ("b", "2"), ("c", "poison"), ("d", "4")]
            .map(|(k, v)| Record::new(k.to_string(), v.to_string())),
    );
    Ok(d)
}

fn out_values(d: &mut TopologyTestDriver) -> Result<Vec<String>> {
    Ok(d.read_output::<String, String>("out")?
        .into_iter()
        .map(|r| r.value)
        .collect())
}

#[test]
fn a_store_error_about_one_record_fails_naming_store_and_record() -> Result<()> {
    for batching in [Batching::Max(usize::MAX), Batching::Max(1)] {
        let mut d = remember_driver(OnBadRecord::Fail, batching)?;
        let err = d.process().expect_err("still fails").to_string();
        assert_eq!(
            err,
            "processor `Remember` failed at topic `in` partition 0 offset 2: cannot serialize the \
             value for store `last`: `poison` cannot be stored"
        );
        let out = out_values(&mut d)?;
        assert!(!out.contains(&"c=poison".to_string()), "{out:?}");
        assert!(
            !out.contains(&"d=4".to_string()),
            "nothing after it: {out:?}"
        );
    }
    Ok(())
}

#[test]
fn a_store_error_about_one_record_is_skipped_and_the_rest_goes_on() -> Result<()> {
    let mut d = remember_driver(OnBadRecord::Skip, Batching::Max(usize::MAX))?;
    assert_eq!(out_values(&mut d)?, ["a=1", "b=2", "d=4"]);
    let stored = d.store::<String, String>("last")?;
    assert_eq!(
        stored,
        [("a", "1"), ("b", "2"), ("d", "4")].map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert!(d.read_output_raw("dlq").is_empty());
    Ok(())
}

#[test]
fn a_store_error_about_one_record_is_dead_lettered_and_the_rest_goes_on() -> Result<()> {
    let mut d = remember_driver(dlq(), Batching::Max(usize::MAX))?;
    assert_eq!(out_values(&mut d)?, ["a=1", "b=2", "d=4"]);
    assert_eq!(d.store::<String, String>("last")?.len(), 3);
    let dead = d.read_output_raw("dlq");
    assert_eq!(dead.len(), 1);
    let r = &dead[0].2;
    assert_eq!(r.value.as_deref(), Some(&b"poison"[..]));
    let header = |name: &str| {
        r.headers
            .last(name)
            .flatten()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("kstreams.error.stage").as_deref(), Some("process"));
    assert_eq!(header("kstreams.error.offset").as_deref(), Some("2"));
    assert_eq!(
        header("kstreams.error.message").as_deref(),
        Some(
            "processor `Remember` failed at topic `in` partition 0 offset 2: cannot serialize \
             the value for store `last`: `poison` cannot be stored"
        )
    );
    Ok(())
}

/// An infrastructure error is not about a record: it fails the batch as it is, with no re-run.
#[test]
fn an_error_that_is_not_about_a_record_fails_the_batch_as_it_is() -> Result<()> {
    #[derive(Debug, Clone)]
    struct Undeclared;
    impl BatchProcessor<String, String> for Undeclared {
        type OutKey = String;
        type OutValue = String;
        fn process_batch(
            &mut self,
            _: &[Record<String, String>],
            ctx: &mut Context<'_, String, String>,
        ) -> Result<()> {
            ctx.store::<String, String>("nowhere").map(|_| ())
        }
    }
    let mut t = Topology::builder();
    let s = t.source::<String, String>("in");
    let p = t.add(Undeclared, &s);
    t.sink("out", &p);
    let mut d = TopologyTestDriver::builder(t.build()?)
        .on_processing_error(OnBadRecord::Skip)
        .build()?;
    let err = d
        .pipe("in", "k".to_string(), "v".to_string())
        .expect_err("fails");
    assert_eq!(
        err.to_string(),
        "processor `Undeclared` did not declare a store named `nowhere`: list it in `stores()`"
    );
    Ok(())
}

fn remember_task(policy: OnBadRecord, dir: &std::path::Path) -> Result<Task> {
    let mut t = Topology::builder();
    let s = t.source::<String, String>("in");
    let p = t.add(Remember, &s);
    t.sink("out", &p);
    let mut config = TaskConfig::new("record-errors", dir);
    config.errors = config.errors.on_processing_error(policy);
    Task::new(
        &t.build()?,
        TaskId {
            subtopology: 0,
            partition: 0,
        },
        Arc::new(config),
    )
}

#[test]
fn several_bad_records_in_one_batch_each_go_through_the_policy_once() -> Result<()> {
    let values: [&[u8]; 8] = [
        b"1", b"poison", b"3", b"4", b"5", b"poison", b"7", b"poison",
    ];
    let batch: Vec<RawRecord<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| RawRecord {
            key: Some(b"k"),
            value: Some(v),
            timestamp: 1,
            offset: 100 + i as i64,
            headers: Headers::new(),
        })
        .collect();
    let dir = tempfile::tempdir().map_err(|e| Error::Runtime(e.to_string()))?;
    let mut task = remember_task(dlq(), dir.path())?;
    let out = task.process("in", 0, &batch, 0)?;
    assert_eq!((out.processed, out.skipped, out.dead_lettered), (5, 0, 3));
    let offsets: Vec<Option<&[u8]>> = out
        .records
        .iter()
        .filter(|r| &*r.topic == "dlq")
        .map(|r| r.headers.last("kstreams.error.offset").flatten())
        .collect();
    assert_eq!(offsets, [Some(&b"101"[..]), Some(b"105"), Some(b"107")]);
    let good: Vec<Option<&[u8]>> = out
        .records
        .iter()
        .filter(|r| &*r.topic == "out")
        .map(|r| r.value.as_deref())
        .collect();
    assert_eq!(
        good,
        [
            Some(&b"k=1"[..]),
            Some(b"k=3"),
            Some(b"k=4"),
            Some(b"k=5"),
            Some(b"k=7")
        ]
    );
    assert_eq!(task.committed_transactions(), 1, "one commit for the batch");
    assert_eq!(
        task.store_entries_raw("last")?,
        [(b"k".to_vec(), b"7".to_vec())]
    );
    Ok(())
}

#[test]
fn a_batch_run_several_times_counts_its_bad_records_once() -> Result<()> {
    // Two bad values and an undecodable one: the batch runs five times before it commits; the
    // skipped-records counter says 3, not once per attempt.
    let values: [&[u8]; 6] = [b"1", b"poison", b"\xff", b"4", b"poison", b"6"];
    let batch: Vec<RawRecord<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| RawRecord {
            key: Some(b"k"),
            value: Some(v),
            timestamp: 1,
            offset: i as i64,
            headers: Headers::new(),
        })
        .collect();
    let dir = tempfile::tempdir().map_err(|e| Error::Runtime(e.to_string()))?;
    let mut task = {
        let mut t = Topology::builder();
        let s = t.source::<String, String>("in");
        let p = t.add(Remember, &s);
        t.sink("out", &p);
        let mut config = TaskConfig::new("record-errors", dir.path());
        config.errors = config
            .errors
            .on_processing_error(OnBadRecord::Skip)
            .on_deserialization_error(OnBadRecord::Skip);
        Task::new(
            &t.build()?,
            TaskId {
                subtopology: 0,
                partition: 0,
            },
            Arc::new(config),
        )?
    };
    let recorder = CountOne {
        name: "kstreams_skipped_records_total",
        ..CountOne::default()
    };
    let out = metrics::with_local_recorder(&recorder, || task.process("in", 0, &batch, 0))?;
    assert_eq!((out.processed, out.skipped), (3, 3));
    assert_eq!(
        recorder.total.load(std::sync::atomic::Ordering::Relaxed),
        3,
        "one count per bad record"
    );
    Ok(())
}
