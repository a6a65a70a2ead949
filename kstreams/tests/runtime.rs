//! Behaviour of tasks as driven by the test driver: batching, metadata, adapters, routing,
//! punctuations, positions and bad input.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kstreams::OnBadRecord;
use kstreams::testing::{Batching, TopologyTestDriver};
use kstreams::{
    BatchProcessor, Context, Headers, InitContext, PerRecord, Processor, Punctuation,
    PunctuationType, Record, Result, SliceOfOne, StoreSpec, Topology, processor,
};

/// Remembers every batch it sees (partition, offsets) and forwards the records unchanged.
#[derive(Debug, Clone, Default)]
struct Spy(Arc<Mutex<Vec<Vec<(i32, i64, i64, Headers)>>>>);

impl BatchProcessor<String, String> for Spy {
    type OutKey = String;
    type OutValue = String;
    fn process_batch(
        &mut self,
        records: &[Record<String, String>],
        ctx: &mut Context<'_, String, String>,
    ) -> Result<()> {
        let batch = records
            .iter()
            .map(|r| {
                let o = r
                    .origin
                    .clone()
                    .expect("records from a source have an origin");
                (o.partition, o.offset, r.timestamp, r.headers.clone())
            })
            .collect();
        self.0.lock().expect("lock").push(batch);
        ctx.forward_batch(records.iter().cloned());
        Ok(())
    }
}

#[test]
fn a_batch_holds_one_partition_in_offset_order_with_its_metadata() -> Result<()> {
    let spy = Spy::default();
    let mut t = Topology::builder();
    let s = t.source::<String, String>("in");
    let f = t.add(spy.clone(), &s);
    t.sink("out", &f);
    let mut d = TopologyTestDriver::builder(t.build()?)
        .partitions("in", 3)
        .batching(Batching::Random { seed: 3, max: 7 })
        .build()?;
    let records: Vec<Record<String, String>> = (0..200)
        .map(|i| {
            Record::new(format!("k{}", i % 13), format!("v{i}"))
                .with_timestamp(1000 + i)
                .with_headers(Headers::new().with("i", i.to_string()).with("i", "again"))
        })
        .collect();
    d.pipe_batch("in", records)?;
    let batches = spy.0.lock().expect("lock").clone();
    assert!(batches.len() > 3, "random batching cut the input");
    let mut next_offset = [0i64; 3];
    let mut last_partition = -1;
    for batch in &batches {
        let p = batch[0].0;
        assert!(
            batch.iter().all(|(q, ..)| *q == p),
            "one partition per batch"
        );
        assert!(
            p >= last_partition,
            "partitions are handed over in a fixed (ascending) order"
        );
        last_partition = p;
        for (_, offset, ts, headers) in batch {
            assert_eq!(*offset, next_offset[p as usize], "offset order, no gaps");
            next_offset[p as usize] += 1;
            assert!(*ts >= 1000);
            assert_eq!(headers.all("i").count(), 2, "repeated header names survive");
        }
    }
    assert_eq!(next_offset.iter().sum::<i64>(), 200);
    // Origin and timestamp survive forwarding to the sink; each key sits where murmur2 puts it.
    let out = d.read_output::<String, String>("out")?;
    assert_eq!(out.len(), 200);
    for r in &out {
        let i: i64 = r.value[1..].parse().expect("number");
        assert_eq!(r.timestamp, 1000 + i);
        assert_eq!(r.headers.last("i"), Some(Some(&b"again"[..])));
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct Upper;

impl Processor<String, String> for Upper {
    type OutKey = String;
    type OutValue = String;
    fn process(
        &mut self,
        r: &Record<String, String>,
        ctx: &mut Context<'_, String, String>,
    ) -> Result<()> {
        if r.value == "fail" {
            return Err(kstreams::Error::processing("cannot upper-case `fail`"));
        }
        ctx.forward(r.derive(r.key.clone(), r.value.to_uppercase()));
        Ok(())
    }
}

#[test]
fn single_record_processors_run_on_batches_and_batch_processors_on_single_records() -> Result<()> {
    // PerRecord: a record processor where batches flow.
    let mut t = Topology::builder();
    let s = t.source::<String, String>("in");
    let u = t.add(PerRecord(Upper), &s);
    // SliceOfOne turned back into a batch processor: a batch processor fed slices of one.
    let again = t.add(PerRecord(SliceOfOne(PerRecord(Upper))), &u);
    t.sink("out", &again);
    let mut d = TopologyTestDriver::new(t.build()?)?;
    d.pipe_batch(
        "in",
        ["a", "b"].map(|v| Record::new("k".to_string(), v.to_string())),
    )?;
    let out: Vec<String> = d
        .read_output::<String, String>("out")?
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(out, ["A", "B"]);

    // A failing record processor names the processor and the record's origin.
    let err = d
        .pipe_batch(
            "in",
            ["x", "fail"].map(|v| Record::new("k".to_string(), v.to_string())),
        )
        .expect_err("fails");
    let msg = err.to_string();
    assert!(
        msg.contains("processor `Upper` failed at topic `in` partition 0 offset 3"),
        "{msg}"
    );
    assert!(msg.contains("cannot upper-case `fail`"), "{msg}");
    // ...and the failed batch left nothing: no output, no position change.
    assert!(d.read_output::<String, String>("out")?.is_empty());
    let positions = d.positions()?;
    assert_eq!(
        positions.values().next().and_then(|p| p.input("in", 0)),
        Some(2)
    );
    Ok(())
}

#[derive(Debug, Clone)]
struct Router;

impl BatchProcessor<String, i64> for Router {
    type OutKey = String;
    type OutValue = i64;
    fn process_batch(
        &mut self,
        records: &[Record<String, i64>],
        ctx: &mut Context<'_, String, i64>,
    ) -> Result<()> {
        for r in records {
            if r.value < 0 {
                ctx.forward_to("negatives", r.clone())?;
            } else {
                ctx.forward(r.clone());
            }
        }
        Ok(())
    }
}

#[test]
fn forward_to_reaches_one_named_child_in_order() -> Result<()> {
    let mut t = Topology::builder();
    let s = t.source::<String, i64>("numbers");
    let r = t.add(Router, &s);
    let neg = t.add_named(
        "negatives",
        processor::map(|r: &Record<String, i64>| r.clone()),
        &r,
    );
    let all = t.add_named(
        "all",
        processor::map(|r: &Record<String, i64>| r.clone()),
        &r,
    );
    t.sink("neg-out", &neg);
    t.sink("all-out", &all);
    let mut d = TopologyTestDriver::new(t.build()?)?;
    d.pipe_batch(
        "numbers",
        [3i64, -1, 4, -5].map(|v| Record::new("k".to_string(), v)),
    )?;
    let neg: Vec<i64> = d
        .read_output::<String, i64>("neg-out")?
        .into_iter()
        .map(|r| r.value)
        .collect();
    let all: Vec<i64> = d
        .read_output::<String, i64>("all-out")?
        .into_iter()
        .map(|r| r.value)
        .collect();
    // Broadcast records reach every child; targeted ones only theirs, in forward order.
    assert_eq!(neg, [3, -1, 4, -5]);
    assert_eq!(all, [3, 4]);

    // An unknown child is an error naming the children.
    #[derive(Debug, Clone)]
    struct Lost;
    impl BatchProcessor<String, i64> for Lost {
        type OutKey = String;
        type OutValue = i64;
        fn process_batch(
            &mut self,
            records: &[Record<String, i64>],
            ctx: &mut Context<'_, String, i64>,
        ) -> Result<()> {
            ctx.forward_to("nobody", records[0].clone())
        }
    }
    let mut t = Topology::builder();
    let s = t.source::<String, i64>("numbers");
    let l = t.add(Lost, &s);
    t.sink("x", &l);
    let mut d = TopologyTestDriver::new(t.build()?)?;
    let err = d
        .pipe("numbers", "k".to_string(), 1i64)
        .expect_err("no such child");
    assert!(
        err.to_string().contains(
            "forwards to a child named `nobody`, which it does not have (children: `x-sink`)"
        ),
        "{err}"
    );
    Ok(())
}

/// Counts records per key and emits a summary on each punctuation.
#[derive(Debug, Clone)]
struct Summary(PunctuationType);

impl BatchProcessor<String, String> for Summary {
    type OutKey = String;
    type OutValue = u64;
    fn stores(&self) -> Vec<StoreSpec> {
        vec![StoreSpec::new::<String, u64>("seen")]
    }
    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
        ctx.schedule(Duration::from_millis(100), self.0)?;
        Ok(())
    }
    fn process_batch(
        &mut self,
        records: &[Record<String, String>],
        ctx: &mut Context<'_, String, u64>,
    ) -> Result<()> {
        let mut seen = ctx.store::<String, u64>("seen")?;
        let n = seen.get(&"n".to_string())?.unwrap_or(0);
        seen.put(&"n".to_string(), &(n + records.len() as u64))
    }
    fn punctuate(&mut self, p: Punctuation, ctx: &mut Context<'_, String, u64>) -> Result<()> {
        let n = ctx
            .store::<String, u64>("seen")?
            .get(&"n".to_string())?
            .unwrap_or(0);
        ctx.forward(Record::new(format!("at-{}", p.timestamp), n).with_timestamp(p.timestamp));
        Ok(())
    }
}

fn summary_driver(kind: PunctuationType) -> Result<TopologyTestDriver> {
    let mut t = Topology::builder();
    let s = t.source::<String, String>("in");
    let p = t.add(Summary(kind), &s);
    t.sink("summary", &p);
    TopologyTestDriver::builder(t.build()?)
        .wall_clock(10_000)
        .build()
}

#[test]
fn wall_clock_punctuations_fire_on_idle_partitions() -> Result<()> {
    let mut d = summary_driver(PunctuationType::WallClock)?;
    d.pipe("in", "a".to_string(), "x".to_string())?;
    d.advance_wall_clock(Duration::from_millis(50))?; // first sight of the clock: due at +100
    d.advance_wall_clock(Duration::from_millis(99))?;
    assert!(
        d.read_output::<String, u64>("summary")?.is_empty(),
        "not due yet"
    );
    d.advance_wall_clock(Duration::from_millis(1))?;
    let out = d.read_output::<String, u64>("summary")?;
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].key.as_str(), out[0].value), ("at-10150", 1));
    // Without any input, a long pause fires once (missed intervals are not replayed).
    d.advance_wall_clock(Duration::from_millis(1000))?;
    assert_eq!(d.read_output::<String, u64>("summary")?.len(), 1);
    Ok(())
}

#[test]
fn stream_time_punctuations_follow_record_timestamps() -> Result<()> {
    let mut d = summary_driver(PunctuationType::StreamTime)?;
    let at = |ts: i64| Record::new("k".to_string(), "v".to_string()).with_timestamp(ts);
    d.pipe_batch("in", [at(1000)])?; // stream time starts at 1000; first due 1100 (a boundary)
    d.advance_wall_clock(Duration::from_secs(60))?;
    assert!(
        d.read_output::<String, u64>("summary")?.is_empty(),
        "wall clock does not move stream time"
    );
    d.pipe_batch("in", [at(1050), at(1020)])?;
    assert!(d.read_output::<String, u64>("summary")?.is_empty());
    d.pipe_batch("in", [at(1100)])?;
    let out = d.read_output::<String, u64>("summary")?;
    assert_eq!(out.len(), 1);
    // The punctuation runs right after the record that reached its due time, in the batch's
    // transaction: it sees all 4 records.
    assert_eq!((out[0].key.as_str(), out[0].value), ("at-1100", 4));
    d.advance_stream_time(1250)?;
    assert_eq!(d.read_output::<String, u64>("summary")?.len(), 1);
    Ok(())
}

/// The stream-time summaries of `timestamps` (one record each), cut into batches as `batching`.
fn stream_time_summaries(batching: Batching, timestamps: &[i64]) -> Result<Vec<(String, u64)>> {
    let mut t = Topology::builder();
    let s = t.source::<String, String>("in");
    let p = t.add(Summary(PunctuationType::StreamTime), &s);
    t.sink("summary", &p);
    let mut d = TopologyTestDriver::builder(t.build()?)
        .batching(batching)
        .build()?;
    d.pipe_batch(
        "in",
        timestamps
            .iter()
            .map(|&ts| Record::new("k".to_string(), "v".to_string()).with_timestamp(ts)),
    )?;
    Ok(d.read_output::<String, u64>("summary")?
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect())
}

#[test]
fn stream_time_punctuations_fire_on_interval_boundaries_inside_a_batch() -> Result<()> {
    // Interval 100 ms: due at 1100 (the first boundary after the first record's 1000), then at
    // each boundary after the last firing. A record that reaches a due time fires the punctuation
    // right after itself, before the next record, whatever the batch: the summary counts exactly
    // the records up to it. The jump to 1250 fires once (1200 is not replayed); a late record
    // (1020) does not move stream time.
    let timestamps = [1000, 1099, 1100, 1020, 1250, 1299, 1300, 1301];
    let want: Vec<(String, u64)> = [("at-1100", 3), ("at-1250", 5), ("at-1300", 7)]
        .map(|(k, n)| (k.to_string(), n))
        .to_vec();
    for batching in [
        Batching::Max(usize::MAX),
        Batching::Max(1),
        Batching::Max(3),
        Batching::Random { seed: 7, max: 4 },
    ] {
        assert_eq!(
            stream_time_summaries(batching, &timestamps)?,
            want,
            "{batching:?}"
        );
    }
    Ok(())
}

#[test]
fn stream_time_punctuations_pass_the_split_invariance_check() -> Result<()> {
    let mut t = Topology::builder();
    let s = t.source::<String, String>("in");
    let p = t.add(Summary(PunctuationType::StreamTime), &s);
    t.sink("summary", &p);
    let topology = t.build()?;
    let input = kstreams::testing::SplitInput::new()
        .partitions("in", 2)
        .records(
            "in",
            (0..300i64).map(|i| {
                // Mostly increasing, with late records and jumps over several intervals.
                let ts = 1_000 + i * 7 - (i % 5) * 13 + (i / 100) * 450;
                Record::new(format!("k{}", i % 3), format!("v{i}")).with_timestamp(ts)
            }),
        )?;
    kstreams::testing::check_split_invariance(&topology, &input, 11, 4)
}

#[test]
fn positions_are_recorded_with_the_state() -> Result<()> {
    let mut t = Topology::builder();
    let lines = t.source::<(), String>("lines");
    let c = t.add(common::CountWords, &lines);
    t.sink("counts", &c);
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut d = TopologyTestDriver::builder(t.build()?)
            .partitions("lines", 2)
            .state_dir(dir.path())
            .build()?;
        d.pipe_batch("lines", (0..10).map(|i| Record::new((), format!("w{i}"))))?;
        let positions = d.positions()?;
        let total: i64 = positions
            .iter()
            .map(|(id, p)| p.input("lines", id.partition).unwrap_or(0))
            .sum();
        assert_eq!(
            total, 10,
            "next offsets of both partitions add up to the input"
        );
    }
    // Reopened from disk: the state and its position are still there.
    let mut t = Topology::builder();
    let lines = t.source::<(), String>("lines");
    let c = t.add(common::CountWords, &lines);
    t.sink("counts", &c);
    let mut d = TopologyTestDriver::builder(t.build()?)
        .partitions("lines", 2)
        .state_dir(dir.path())
        .build()?;
    assert_eq!(d.store::<String, u64>(common::STORE)?.len(), 10);
    let total: i64 = d
        .positions()?
        .iter()
        .map(|(id, p)| p.input("lines", id.partition).unwrap_or(0))
        .sum();
    assert_eq!(total, 10);
    Ok(())
}

fn pass_through() -> Result<Topology> {
    let mut t = Topology::builder();
    let s = t.source::<String, i64>("nums");
    let m = t.add(processor::map(|r: &Record<String, i64>| r.clone()), &s);
    t.sink("out", &m);
    Ok(t.build()?)
}

fn pipe_mixed(d: &mut TopologyTestDriver) -> Result<()> {
    d.append_raw(
        "nums",
        None,
        Some(b"a".to_vec()),
        Some(7i64.to_be_bytes().to_vec()),
        1,
        Headers::new(),
    )?;
    d.append_raw(
        "nums",
        None,
        Some(b"b".to_vec()),
        Some(vec![1, 2, 3]),
        2,
        Headers::new(),
    )?;
    d.append_raw(
        "nums",
        None,
        Some(vec![0xff, 0xfe]),
        Some(8i64.to_be_bytes().to_vec()),
        3,
        Headers::new(),
    )?;
    d.append_raw(
        "nums",
        None,
        Some(b"c".to_vec()),
        Some(9i64.to_be_bytes().to_vec()),
        4,
        Headers::new(),
    )?;
    d.process()
}

#[test]
fn a_malformed_record_fails_with_its_origin_by_default() -> Result<()> {
    let mut d = TopologyTestDriver::new(pass_through()?)?;
    let err = pipe_mixed(&mut d).expect_err("bad value");
    assert_eq!(
        err.to_string(),
        "cannot deserialize the value of the record at topic `nums` partition 0 offset 1: 3 bytes where a i64 needs 8"
    );
    assert!(
        d.read_output::<String, i64>("out")?.is_empty(),
        "the batch is not half-applied"
    );
    Ok(())
}

#[test]
fn malformed_records_can_be_skipped_and_counted() -> Result<()> {
    let mut d = TopologyTestDriver::builder(pass_through()?)
        .on_deserialization_error(OnBadRecord::Skip)
        .build()?;
    pipe_mixed(&mut d)?;
    let out: Vec<i64> = d
        .read_output::<String, i64>("out")?
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(out, [7, 9]);
    Ok(())
}

#[test]
fn malformed_records_go_to_the_dead_letter_topic_with_their_origin() -> Result<()> {
    let mut d = TopologyTestDriver::builder(pass_through()?)
        .on_deserialization_error(OnBadRecord::DeadLetter {
            topic: "nums-dlq".into(),
        })
        .build()?;
    pipe_mixed(&mut d)?;
    let out: Vec<i64> = d
        .read_output::<String, i64>("out")?
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(out, [7, 9], "good records are processed");
    let dlq = d.read_output_raw("nums-dlq");
    assert_eq!(dlq.len(), 2);
    let (_, _, bad_value) = &dlq[0];
    assert_eq!(
        bad_value.value.as_deref(),
        Some(&[1u8, 2, 3][..]),
        "original bytes kept"
    );
    let h = |name: &str| {
        bad_value
            .headers
            .last(name)
            .flatten()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(h("kstreams.error.topic").as_deref(), Some("nums"));
    assert_eq!(h("kstreams.error.partition").as_deref(), Some("0"));
    assert_eq!(h("kstreams.error.offset").as_deref(), Some("1"));
    assert_eq!(h("kstreams.error.stage").as_deref(), Some("deserialize"));
    assert!(
        h("kstreams.error.message")
            .unwrap_or_default()
            .contains("3 bytes where a i64 needs 8")
    );
    let (_, _, bad_key) = &dlq[1];
    assert_eq!(bad_key.key.as_deref(), Some(&[0xffu8, 0xfe][..]));
    let key_message = bad_key
        .headers
        .last("kstreams.error.message")
        .flatten()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    assert!(
        key_message.contains("cannot deserialize the key"),
        "{key_message}"
    );
    assert_eq!(
        bad_key.headers.last("kstreams.error.offset"),
        Some(Some(&b"2"[..]))
    );
    Ok(())
}

/// Parses numbers; fails the records that are not, one by one.
#[derive(Debug, Clone)]
struct Parse;

impl BatchProcessor<String, String> for Parse {
    type OutKey = String;
    type OutValue = i64;
    fn process_batch(
        &mut self,
        records: &[Record<String, String>],
        ctx: &mut Context<'_, String, i64>,
    ) -> Result<()> {
        for r in records {
            match r.value.parse::<i64>() {
                Ok(n) => ctx.forward(r.derive(r.key.clone(), n)),
                Err(e) => ctx.fail_record(
                    r,
                    kstreams::Error::processing(format!("`{}` is not a number: {e}", r.value)),
                )?,
            }
        }
        Ok(())
    }
}

fn parse_driver(policy: OnBadRecord) -> Result<TopologyTestDriver> {
    let mut t = Topology::builder();
    let s = t.source::<String, String>("text");
    let p = t.add(Parse, &s);
    t.sink("numbers", &p);
    let mut d = TopologyTestDriver::builder(t.build()?)
        .on_processing_error(policy)
        .build()?;
    let _ = d.pipe_batch(
        "text",
        ["1", "two", "3", "4x"].map(|v| Record::new("k".to_string(), v.to_string())),
    );
    Ok(d)
}

#[test]
fn a_batch_processor_fails_single_records_through_the_handler() -> Result<()> {
    // Fail: the batch fails with the first bad record named; nothing of the batch stays, and the
    // input is not consumed past it (as a real consumer would, the driver retries it next time).
    let mut d = parse_driver(OnBadRecord::Fail)?;
    assert!(d.read_output::<String, i64>("numbers")?.is_empty());
    let err = d
        .pipe("text", "k".to_string(), "5".to_string())
        .expect_err("still stuck");
    assert_eq!(
        err.to_string(),
        "processor `Parse` failed at topic `text` partition 0 offset 1: `two` is not a number: invalid digit found in string"
    );
    assert!(d.read_output::<String, i64>("numbers")?.is_empty());

    // Skip: the good records go on.
    let mut d = parse_driver(OnBadRecord::Skip)?;
    let out: Vec<i64> = d
        .read_output::<String, i64>("numbers")?
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(out, [1, 3]);

    // Dead letter: the bad records' original bytes with the error and origin.
    let mut d = parse_driver(OnBadRecord::DeadLetter {
        topic: "text-dlq".into(),
    })?;
    let out: Vec<i64> = d
        .read_output::<String, i64>("numbers")?
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(out, [1, 3]);
    let dlq = d.read_output_raw("text-dlq");
    let values: Vec<&[u8]> = dlq
        .iter()
        .filter_map(|(_, _, r)| r.value.as_deref())
        .collect();
    assert_eq!(values, [&b"two"[..], &b"4x"[..]]);
    let header = |i: usize, name: &str| {
        dlq[i]
            .2
            .headers
            .last(name)
            .flatten()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(
        header(0, "kstreams.error.stage").as_deref(),
        Some("process")
    );
    assert_eq!(header(0, "kstreams.error.offset").as_deref(), Some("1"));
    assert_eq!(header(1, "kstreams.error.offset").as_deref(), Some("3"));
    assert_eq!(
        header(1, "kstreams.error.message").as_deref(),
        Some(
            "processor `Parse` failed at topic `text` partition 0 offset 3: `4x` is not a number: invalid digit found in string"
        )
    );
    Ok(())
}
