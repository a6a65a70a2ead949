//! Stream-stream joins end to end through the test driver (issue 15 §3, §4): pairs in the
//! window and at its edges, duplicates, unmatched left and outer results only once the window has
//! closed, grace and late records, a restart on the same state directory, and split invariance as
//! a property.

use std::time::Duration;

use proptest::prelude::*;

use kstreams::join::{JoinKind, JoinWindows};
use kstreams::store::{LmdbOptions, StateStores};
use kstreams::testing::{SplitCheck, SplitInput, TopologyTestDriver};
use kstreams::window::OnLate;
use kstreams::{BatchProcessor, Context, OnBadRecord, Record, Result, Topology};

/// `left` and `right` (String → String, co-partitioned) joined into `joined`: values
/// `"<left value>@<ts>|<right value>@<ts>"`, `-` for a missing side.
fn topology(kind: JoinKind, difference: u64, grace: u64, on_late: OnLate) -> Result<Topology> {
    let windows = JoinWindows::of(
        Duration::from_millis(difference),
        Duration::from_millis(grace),
    )?
    .on_late(on_late);
    topology_with(kind, windows)
}

fn topology_with(kind: JoinKind, windows: JoinWindows) -> Result<Topology> {
    let mut t = Topology::builder();
    let left = t.source::<String, String>("left");
    let right = t.source::<String, String>("right");
    let joined = t.join_streams("j", &left, &right, windows, kind, |_k, l, r| {
        let side =
            |v: Option<(&String, i64)>| v.map_or("-".to_owned(), |(v, ts)| format!("{v}@{ts}"));
        format!(
            "{}|{}",
            side(l.map(|l| (&l.value, l.timestamp))),
            side(r.map(|r| (&r.value, r.timestamp)))
        )
    });
    t.sink("joined", &joined);
    t.build()
        .map_err(|e| kstreams::Error::Config(e.to_string()))
}

fn rec(key: &str, value: &str, ts: i64) -> Record<String, String> {
    Record::new(key.to_owned(), value.to_owned()).with_timestamp(ts)
}

/// (key, value, timestamp) of each output record, in order.
fn out(d: &mut TopologyTestDriver) -> Result<Vec<(String, String, i64)>> {
    Ok(d.read_output::<String, String>("joined")?
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect())
}

fn row(key: &str, value: &str, ts: i64) -> (String, String, i64) {
    (key.to_owned(), value.to_owned(), ts)
}

#[test]
fn inner_pairs_join_within_the_difference_edges_included() -> Result<()> {
    // Grace 100 keeps every record of this test out of lateness: only the window decides.
    let mut d = TopologyTestDriver::new(topology(JoinKind::Inner, 10, 100, OnLate::Drop)?)?;
    d.pipe_batch("left", [rec("a", "L", 100)])?;
    d.pipe_batch(
        "right",
        [
            rec("a", "R110", 110), // |dt| = 10: joins
            rec("a", "R111", 111), // 11: does not
            rec("a", "R90", 90),   // 10 before: joins
            rec("a", "R89", 89),   // 11 before: does not
            rec("b", "R100", 100), // another key: does not
        ],
    )?;
    assert_eq!(
        out(&mut d)?,
        vec![
            row("a", "L@100|R110@110", 110), // the result's timestamp is the larger one
            row("a", "L@100|R90@90", 100),
        ]
    );
    // The other way round: a left record finds the right records of its window.
    d.pipe_batch("left", [rec("a", "L2", 101)])?;
    assert_eq!(
        out(&mut d)?,
        vec![
            // 90 is 11 before 101: outside.
            row("a", "L2@101|R110@110", 110),
            row("a", "L2@101|R111@111", 111),
        ]
    );
    Ok(())
}

#[test]
fn asymmetric_windows_reach_before_and_after_the_left_timestamp() -> Result<()> {
    let mut t = Topology::builder();
    let left = t.source::<String, String>("left");
    let right = t.source::<String, String>("right");
    // Right records from 2 ms before to 5 ms after a left record's timestamp.
    let windows = JoinWindows::of(Duration::from_millis(10), Duration::from_millis(100))?
        .before(Duration::from_millis(2))?
        .after(Duration::from_millis(5))?;
    let joined = t.join_streams("j", &left, &right, windows, JoinKind::Inner, |_k, l, r| {
        format!(
            "{}|{}",
            l.map_or(0, |l| l.timestamp),
            r.map_or(0, |r| r.timestamp)
        )
    });
    t.sink("joined", &joined);
    let mut d = TopologyTestDriver::new(
        t.build()
            .map_err(|e| kstreams::Error::Config(e.to_string()))?,
    )?;
    d.pipe_batch("left", [rec("a", "L", 100)])?;
    d.pipe_batch("right", [97, 98, 105, 106].map(|ts| rec("a", "R", ts)))?;
    // Seen from the right: left records from 5 ms before to 2 ms after.
    d.pipe_batch("left", [rec("a", "L", 104), rec("a", "L", 108)])?;
    let values: Vec<String> = out(&mut d)?.into_iter().map(|r| r.1).collect();
    assert_eq!(
        values,
        ["100|98", "100|105", "104|105", "104|106", "108|106"]
    );
    Ok(())
}

#[test]
fn duplicates_on_both_sides_give_every_pair() -> Result<()> {
    let mut d = TopologyTestDriver::new(topology(JoinKind::Inner, 10, 0, OnLate::Drop)?)?;
    d.pipe_batch("left", [rec("a", "L1", 100), rec("a", "L2", 100)])?;
    d.pipe_batch("right", [rec("a", "R1", 100)])?;
    d.pipe_batch("right", [rec("a", "R2", 100)])?;
    assert_eq!(
        out(&mut d)?,
        vec![
            row("a", "L1@100|R1@100", 100),
            row("a", "L2@100|R1@100", 100),
            row("a", "L1@100|R2@100", 100),
            row("a", "L2@100|R2@100", 100),
        ]
    );
    // A third left duplicate joins both right ones, in arrival order.
    d.pipe_batch("left", [rec("a", "L3", 100)])?;
    assert_eq!(
        out(&mut d)?,
        vec![
            row("a", "L3@100|R1@100", 100),
            row("a", "L3@100|R2@100", 100)
        ]
    );
    Ok(())
}

#[test]
fn left_join_emits_an_unmatched_left_record_only_once_its_window_closed() -> Result<()> {
    // Difference 10, grace 5: the left record at 100 may still be matched until stream time 115.
    let mut d = TopologyTestDriver::new(topology(JoinKind::Left, 10, 5, OnLate::Drop)?)?;
    d.pipe_batch("left", [rec("a", "L", 100)])?;
    d.pipe_batch("right", [rec("z", "R", 114)])?;
    d.pipe_batch("right", [rec("z", "R", 115)])?;
    assert_eq!(out(&mut d)?, vec![], "100 + 10 + 5 is not before 115");
    d.pipe_batch("right", [rec("z", "R", 116)])?;
    assert_eq!(out(&mut d)?, vec![row("a", "L@100|-", 100)]);
    // Emitted once: stream time moving on emits nothing more for it.
    d.pipe_batch("right", [rec("z", "R", 500)])?;
    assert_eq!(out(&mut d)?, vec![]);
    Ok(())
}

#[test]
fn a_match_inside_the_grace_replaces_the_unmatched_result() -> Result<()> {
    let mut d = TopologyTestDriver::new(topology(JoinKind::Left, 10, 5, OnLate::Drop)?)?;
    d.pipe_batch("left", [rec("c", "L", 200)])?;
    // Stream time 212: c's window [190, 210] has ended, but the grace keeps it open.
    d.pipe_batch("right", [rec("x", "R", 212)])?;
    assert_eq!(out(&mut d)?, vec![]);
    // An out-of-order right record of c inside its window: the pair, and never `L|-`.
    d.pipe_batch("right", [rec("c", "Rc", 205)])?;
    assert_eq!(out(&mut d)?, vec![row("c", "L@200|Rc@205", 205)]);
    d.pipe_batch("right", [rec("x", "R", 400)])?;
    assert_eq!(out(&mut d)?, vec![]);
    Ok(())
}

#[test]
fn a_left_record_whose_window_already_ended_is_emitted_unmatched_at_once() -> Result<()> {
    // Kafka Streams' rule (`timeTo < streamTime`): no need to hold it in the outer store.
    let mut d = TopologyTestDriver::new(topology(JoinKind::Left, 10, 5, OnLate::Drop)?)?;
    d.pipe_batch("right", [rec("z", "R", 120)])?;
    d.pipe_batch("left", [rec("a", "L", 100)])?;
    assert_eq!(out(&mut d)?, vec![row("a", "L@100|-", 100)]);
    Ok(())
}

#[test]
fn inner_join_never_emits_unmatched_records() -> Result<()> {
    let mut d = TopologyTestDriver::new(topology(JoinKind::Inner, 10, 0, OnLate::Drop)?)?;
    d.pipe_batch("left", [rec("a", "L", 100)])?;
    d.pipe_batch("right", [rec("b", "R", 100), rec("z", "R", 1_000)])?;
    assert_eq!(out(&mut d)?, vec![]);
    Ok(())
}

#[test]
fn outer_join_emits_both_sides_unmatched_right_first_at_equal_timestamps() -> Result<()> {
    let mut d = TopologyTestDriver::new(topology(JoinKind::Outer, 10, 0, OnLate::Drop)?)?;
    d.pipe_batch("left", [rec("a", "La", 100)])?;
    d.pipe_batch("right", [rec("b", "Rb", 100), rec("b", "Rb2", 100)])?;
    d.pipe_batch("left", [rec("c", "Lc", 105)])?;
    assert_eq!(out(&mut d)?, vec![]);
    // Stream time 111: both records at 100 closed (100 + 10 + 0 < 111); 105's has not.
    d.pipe_batch("left", [rec("z", "Lz", 111)])?;
    assert_eq!(
        out(&mut d)?,
        vec![
            row("b", "-|Rb@100", 100),
            row("b", "-|Rb2@100", 100),
            row("a", "La@100|-", 100),
        ]
    );
    // The right side matches pending left records too, which then never come out unmatched.
    d.pipe_batch("right", [rec("c", "Rc", 110)])?;
    assert_eq!(out(&mut d)?, vec![row("c", "Lc@105|Rc@110", 110)]);
    d.pipe_batch("right", [rec("y", "Ry", 200)])?;
    // Rc matched, so only z (111 + 10 < 200) comes out; y waits.
    assert_eq!(out(&mut d)?, vec![row("z", "Lz@111|-", 111)]);
    Ok(())
}

#[test]
fn late_records_are_dead_lettered_and_never_joined_later() -> Result<()> {
    // Difference 10, grace 5: each side's store keeps 10 + 10 + 5 = 25 ms behind its stream time.
    let mut d = TopologyTestDriver::builder(topology(JoinKind::Inner, 10, 5, OnLate::DeadLetter)?)
        .on_processing_error(OnBadRecord::DeadLetter {
            topic: "dlq".into(),
        })
        .build()?;
    d.pipe_batch(
        "left",
        [
            rec("a", "L100", 100),
            rec("a", "L75", 75), // 75 <= 100 - 25: late
            rec("a", "L76", 76), // 76 > 75: kept
        ],
    )?;
    let dlq = d.read_output_raw("dlq");
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let r = &dlq[0].2;
    assert_eq!(r.value.as_deref(), Some(&b"L75"[..]));
    let h = |n: &str| {
        r.headers
            .last(n)
            .flatten()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(h("kstreams.error.stage").as_deref(), Some("late"));
    assert_eq!(h("kstreams.late.timestamp").as_deref(), Some("75"));
    assert_eq!(h("kstreams.late.stream.time").as_deref(), Some("100"));
    // A right record in both windows joins the kept record only.
    d.pipe_batch("right", [rec("a", "R", 80)])?;
    assert_eq!(out(&mut d)?, vec![row("a", "L76@76|R@80", 80)]);
    Ok(())
}

#[test]
fn dead_lettering_late_records_needs_a_dead_letter_topic() -> Result<()> {
    let err = TopologyTestDriver::new(topology(JoinKind::Inner, 10, 5, OnLate::DeadLetter)?)
        .expect_err("no dead-letter topic");
    assert!(err.to_string().contains("dead-letter topic"), "{err}");
    Ok(())
}

#[test]
fn negative_timestamps_are_bad_records() -> Result<()> {
    let mut d = TopologyTestDriver::builder(topology(JoinKind::Left, 10, 0, OnLate::Drop)?)
        .on_processing_error(OnBadRecord::DeadLetter {
            topic: "dlq".into(),
        })
        .build()?;
    d.pipe_batch("left", [rec("a", "L", -5), rec("a", "L2", 5)])?;
    assert_eq!(d.read_output_raw("dlq").len(), 1);
    Ok(())
}

#[test]
fn the_stores_are_named_for_the_join_and_changelogged() -> Result<()> {
    let t = topology(JoinKind::Left, 10, 0, OnLate::Drop)?;
    let mut names: Vec<(&str, bool)> = t
        .stores()
        .iter()
        .map(|s| (s.name(), s.changelog_enabled()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("j-other", true),
            ("j-outer", true),
            ("j-outer-time", true),
            ("j-this", true)
        ]
    );
    assert_eq!(t.subtopologies().len(), 1, "{}", t.describe());
    // An inner join has no outer store.
    let inner = topology(JoinKind::Inner, 10, 0, OnLate::Drop)?;
    assert_eq!(inner.stores().len(), 2);
    Ok(())
}

/// Forwards its records, and fails (a record-level error) on a value containing `BAD`.
#[derive(Clone)]
struct FailOnBad;

impl BatchProcessor<String, String> for FailOnBad {
    type OutKey = String;
    type OutValue = String;
    fn process_batch(
        &mut self,
        records: &[Record<String, String>],
        ctx: &mut Context<'_, String, String>,
    ) -> Result<()> {
        for r in records {
            if r.value.contains("BAD") {
                return Err(kstreams::Error::processing("a bad joined value"));
            }
            ctx.forward(r.clone());
        }
        Ok(())
    }
}

#[test]
fn a_batch_run_again_after_a_record_error_still_emits_closed_windows() -> Result<()> {
    let mut t = Topology::builder();
    let left = t.source::<String, String>("left");
    let right = t.source::<String, String>("right");
    let windows = JoinWindows::of(Duration::from_millis(10), Duration::ZERO)?;
    let joined = t.join_streams("j", &left, &right, windows, JoinKind::Left, |_k, l, r| {
        format!(
            "{}|{}",
            l.map_or("-", |l| l.value.as_str()),
            r.map_or("-", |r| r.value.as_str())
        )
    });
    let checked = t.add(FailOnBad, &joined);
    t.sink("joined", &checked);
    let topology = t
        .build()
        .map_err(|e| kstreams::Error::Config(e.to_string()))?;
    let mut d = TopologyTestDriver::builder(topology)
        .on_processing_error(OnBadRecord::DeadLetter {
            topic: "dlq".into(),
        })
        .build()?;
    d.pipe_batch("left", [rec("a", "L", 100)])?;
    d.pipe_batch("right", [rec("x", "BAD", 105)])?;
    // w at 111 closes a's window (a comes out unmatched); x, at the same stream time, joins
    // BAD, which fails downstream: the batch is rolled back and run again record by record, x
    // dead-lettered. a must come out all the same, and w stay pending.
    d.pipe_batch("left", [rec("w", "W", 111), rec("x", "X", 111)])?;
    assert_eq!(out(&mut d)?, vec![row("a", "L|-", 100)]);
    assert_eq!(d.read_output_raw("dlq").len(), 1);
    // a only once; x was dead-lettered as a whole, so only w is still pending.
    d.pipe_batch("left", [rec("z", "Z", 500)])?;
    assert_eq!(out(&mut d)?, vec![row("w", "W|-", 111)]);
    Ok(())
}

/// The inputs of the restart test: the first two before the restart, the others after.
fn restart_input() -> [(&'static str, Vec<Record<String, String>>); 4] {
    [
        ("left", vec![rec("a", "La", 100), rec("b", "Lb", 101)]),
        // Stream time 200 closes a and c (b matched).
        (
            "right",
            vec![
                rec("b", "Rb", 104),
                rec("c", "Rc", 102),
                rec("z", "Rz", 200),
            ],
        ),
        // After the restart: Lc's window [175, 195] ended before the stream time 200, which
        // only the kept state knows, so Lc comes out at once; La2 waits.
        ("left", vec![rec("c", "Lc", 185), rec("a", "La2", 195)]),
        ("right", vec![rec("a", "Ra", 198), rec("y", "Ry", 300)]),
    ]
}

#[test]
fn a_restart_on_the_same_state_emits_nothing_twice_and_loses_nothing() -> Result<()> {
    let topo = || topology(JoinKind::Outer, 10, 5, OnLate::Drop);
    // The reference: one driver for all of it.
    let mut one = TopologyTestDriver::new(topo()?)?;
    for (topic, records) in restart_input() {
        one.pipe_batch(topic, records)?;
    }
    let expected = out(&mut one)?;
    assert_eq!(
        expected,
        vec![
            row("b", "Lb@101|Rb@104", 104),
            row("a", "La@100|-", 100),
            row("c", "-|Rc@102", 102),
            row("c", "Lc@185|-", 185),
            row("a", "La2@195|Ra@198", 198),
            row("z", "-|Rz@200", 200),
        ]
    );

    let dir = tempfile::tempdir().map_err(|e| kstreams::Error::Config(e.to_string()))?;
    let mut got = Vec::new();
    let [first, second, third, fourth] = restart_input();
    {
        let mut d = TopologyTestDriver::builder(topo()?)
            .state_dir(dir.path())
            .build()?;
        d.pipe_batch(first.0, first.1)?;
        d.pipe_batch(second.0, second.1)?;
        got.extend(out(&mut d)?);
    }
    let mut d = TopologyTestDriver::builder(topo()?)
        .state_dir(dir.path())
        .build()?;
    d.pipe_batch(third.0, third.1)?;
    d.pipe_batch(fourth.0, fourth.1)?;
    got.extend(out(&mut d)?);
    assert_eq!(got, expected);
    Ok(())
}

#[test]
fn the_stores_restore_from_their_changelogs_alone() -> Result<()> {
    // A lost disk: the join's stores rebuilt from their changelogs (held values, pending
    // records and the logged stream times) carry on exactly as the original state would.
    let topo = || topology(JoinKind::Outer, 10, 5, OnLate::Drop);
    let io = |e: std::io::Error| kstreams::Error::Config(e.to_string());
    let [first, second, third, fourth] = restart_input();
    let mut got = Vec::new();
    let mut logs = Vec::new();
    {
        let mut d = TopologyTestDriver::builder(topo()?)
            .application_id("app")
            .build()?;
        d.pipe_batch(first.0, first.1)?;
        d.pipe_batch(second.0, second.1)?;
        got.extend(out(&mut d)?);
        for store in ["j-this", "j-other", "j-outer"] {
            let log: Vec<(Vec<u8>, Option<Vec<u8>>, i64)> = d
                .topic_partition(&format!("app-{store}-changelog"), 0)
                .iter()
                .filter_map(|r| Some((r.key.clone()?, r.value.clone(), r.timestamp)))
                .collect();
            assert!(!log.is_empty(), "{store} logged nothing");
            logs.push((store, log));
        }
    }
    let fresh = tempfile::tempdir().map_err(io)?;
    let specs = topo()?.stores().to_vec();
    let mut stores = StateStores::open(
        &fresh.path().join("app").join("0_0"),
        specs.clone(),
        &LmdbOptions::default(),
    )?;
    stores.transaction(|txn| {
        for (store, log) in &logs {
            let index = specs
                .iter()
                .position(|s| s.name() == *store)
                .ok_or_else(|| kstreams::Error::Config(format!("no store {store}")))?;
            for (key, value, timestamp) in log {
                txn.restore_raw(index, key, value.as_deref(), *timestamp)?;
            }
        }
        Ok(())
    })?;
    drop(stores);
    let mut d = TopologyTestDriver::builder(topo()?)
        .application_id("app")
        .state_dir(fresh.path())
        .build()?;
    d.pipe_batch(third.0, third.1)?;
    d.pipe_batch(fourth.0, fourth.1)?;
    got.extend(out(&mut d)?);
    assert_eq!(
        got,
        vec![
            row("b", "Lb@101|Rb@104", 104),
            row("a", "La@100|-", 100),
            row("c", "-|Rc@102", 102),
            row("c", "Lc@185|-", 185),
            row("a", "La2@195|Ra@198", 198),
            row("z", "-|Rz@200", 200),
        ]
    );
    Ok(())
}

fn arb_records() -> impl Strategy<Value = Vec<(bool, u8, i64, u8)>> {
    // (left?, key, timestamp, value), timestamps mostly increasing with some disorder.
    prop::collection::vec((any::<bool>(), 0u8..4, 0i64..120, 0u8..3), 1..40)
}

fn split_input(records: &[(bool, u8, i64, u8)]) -> Result<SplitInput> {
    let mut left = Vec::new();
    let mut right = Vec::new();
    for (i, &(is_left, key, jitter, value)) in records.iter().enumerate() {
        // A rising base plus jitter: in-window pairs, out-of-order and late records alike.
        let ts = i64::try_from(i).unwrap_or(0) * 8 + jitter - 60;
        let r = rec(&format!("k{key}"), &format!("v{value}"), ts.max(0));
        if is_left { left.push(r) } else { right.push(r) }
    }
    SplitInput::new()
        .partitions("left", 2)
        .partitions("right", 2)
        .records("left", left)?
        .records("right", right)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Every join kind and window gives the same outputs, record for record (dead-lettered late records
    /// included), and the same stores however the input is cut into batches.
    #[test]
    fn stream_stream_joins_are_split_invariant(
        records in arb_records(),
        kind in prop::sample::select(vec![JoinKind::Inner, JoinKind::Left, JoinKind::Outer]),
        dead_letter in any::<bool>(),
        (before, after, grace) in (0u64..12, 0u64..12, 0u64..8),
        seed in any::<u64>(),
    ) {
        let on_late = if dead_letter { OnLate::DeadLetter } else { OnLate::Drop };
        let ms = Duration::from_millis;
        let windows = JoinWindows::of(ms(0), ms(grace))
            .and_then(|w| w.before(ms(before)))
            .and_then(|w| w.after(ms(after)))
            .map(|w| w.on_late(on_late))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let topology = topology_with(kind, windows).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let input = split_input(&records).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut check = SplitCheck::new(&topology).seed(seed).runs(2);
        if dead_letter {
            check = check.on_processing_error(OnBadRecord::DeadLetter { topic: "dlq".into() });
        }
        check.run(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

/// Scenarios of Kafka Streams' own tests (`KStreamKStreamLeftJoinTest`,
/// `KStreamKStreamOuterJoinTest`), with the results Java expects: values `left+right`, `null`
/// for a missing side.
mod as_kafka_streams {
    use super::*;

    fn java_join(kind: JoinKind, difference: u64, grace: u64) -> Result<TopologyTestDriver> {
        let mut t = Topology::builder();
        let left = t.source::<String, String>("left");
        let right = t.source::<String, String>("right");
        let windows = JoinWindows::of(
            Duration::from_millis(difference),
            Duration::from_millis(grace),
        )?;
        let joined = t.join_streams("j", &left, &right, windows, kind, |_k, l, r| {
            format!(
                "{}+{}",
                l.map_or("null", |l| l.value.as_str()),
                r.map_or("null", |r| r.value.as_str())
            )
        });
        t.sink("joined", &joined);
        TopologyTestDriver::new(
            t.build()
                .map_err(|e| kstreams::Error::Config(e.to_string()))?,
        )
    }

    fn pipe(
        d: &mut TopologyTestDriver,
        topic: &str,
        key: &str,
        value: &str,
        ts: i64,
    ) -> Result<()> {
        d.pipe_batch(topic, [rec(key, value, ts)])
    }

    #[test]
    fn left_join_duplicates() -> Result<()> {
        let mut d = java_join(JoinKind::Left, 100, 10)?;
        pipe(&mut d, "left", "0", "A0", 0)?;
        pipe(&mut d, "left", "0", "A0-0", 0)?;
        pipe(&mut d, "right", "1", "a0", 111)?;
        pipe(&mut d, "right", "2", "dummy", 500)?;
        assert_eq!(
            out(&mut d)?,
            vec![row("0", "A0+null", 0), row("0", "A0-0+null", 0)]
        );
        pipe(&mut d, "left", "2", "A2", 1000)?;
        pipe(&mut d, "left", "2", "A2-0", 1000)?;
        pipe(&mut d, "right", "2", "a2", 1001)?;
        assert_eq!(
            out(&mut d)?,
            vec![row("2", "A2+a2", 1001), row("2", "A2-0+a2", 1001)]
        );
        // Would close A2's window, but A2 and A2-0 were joined.
        pipe(&mut d, "right", "3", "a3", 315)?;
        assert_eq!(out(&mut d)?, vec![]);
        Ok(())
    }

    #[test]
    fn left_expired_non_joined_records_are_emitted_by_either_processor() -> Result<()> {
        for (dummy_topic, other_topic) in [("left", "right"), ("right", "left")] {
            let mut d = java_join(JoinKind::Left, 100, 0)?;
            pipe(&mut d, "left", "0", "A0", 1)?;
            pipe(&mut d, "left", "1", "A1", 2)?;
            pipe(&mut d, "left", "0", "A0-0", 3)?;
            assert_eq!(out(&mut d)?, vec![]);
            pipe(&mut d, "right", "1", "a1", 3)?;
            assert_eq!(out(&mut d)?, vec![row("1", "A1+a1", 3)]);
            pipe(&mut d, dummy_topic, "2", "dummy", 401)?;
            assert_eq!(
                out(&mut d)?,
                vec![row("0", "A0+null", 1), row("0", "A0-0+null", 3)],
                "emitted by the {dummy_topic} processor"
            );
            pipe(&mut d, other_topic, "2", "dummy", 402)?;
            assert_eq!(out(&mut d)?, vec![row("2", "dummy+dummy", 402)]);
        }
        Ok(())
    }

    #[test]
    fn outer_join_duplicates() -> Result<()> {
        let mut d = java_join(JoinKind::Outer, 100, 10)?;
        pipe(&mut d, "left", "0", "A0", 0)?;
        pipe(&mut d, "left", "0", "A0-0", 0)?;
        pipe(&mut d, "right", "1", "a1", 0)?;
        pipe(&mut d, "right", "1", "a1-0", 0)?;
        pipe(&mut d, "right", "1", "a0", 111)?;
        pipe(&mut d, "right", "3", "dummy", 211)?;
        assert_eq!(
            out(&mut d)?,
            vec![
                row("1", "null+a1", 0),
                row("1", "null+a1-0", 0),
                row("0", "A0+null", 0),
                row("0", "A0-0+null", 0),
            ]
        );
        pipe(&mut d, "left", "2", "A2", 200)?;
        pipe(&mut d, "left", "2", "A2-0", 200)?;
        pipe(&mut d, "right", "2", "a2", 201)?;
        pipe(&mut d, "right", "2", "a2-0", 201)?;
        assert_eq!(
            out(&mut d)?,
            vec![
                row("2", "A2+a2", 201),
                row("2", "A2-0+a2", 201),
                row("2", "A2+a2-0", 201),
                row("2", "A2-0+a2-0", 201),
            ]
        );
        pipe(&mut d, "right", "3", "dummy", 1500)?;
        assert_eq!(
            out(&mut d)?,
            vec![row("1", "null+a0", 111), row("3", "null+dummy", 211)]
        );
        Ok(())
    }

    #[test]
    fn outer_join_ordering_closed_records_before_the_pair() -> Result<()> {
        let mut d = java_join(JoinKind::Outer, 100, 0)?;
        pipe(&mut d, "left", "0", "A0", 0)?;
        pipe(&mut d, "left", "1", "A1", 100)?;
        assert_eq!(out(&mut d)?, vec![]);
        pipe(&mut d, "right", "1", "a1", 110)?;
        assert_eq!(
            out(&mut d)?,
            vec![row("0", "A0+null", 0), row("1", "A1+a1", 110)]
        );
        Ok(())
    }

    #[test]
    fn outer_join_grace_period() -> Result<()> {
        let mut d = java_join(JoinKind::Outer, 100, 10)?;
        pipe(&mut d, "left", "0", "A0", 0)?;
        pipe(&mut d, "right", "1", "a1", 0)?;
        assert_eq!(out(&mut d)?, vec![]);
        // Windows ended, not closed: no pair, no unmatched result yet.
        pipe(&mut d, "right", "0", "a0", 101)?;
        pipe(&mut d, "left", "1", "A1", 101)?;
        assert_eq!(out(&mut d)?, vec![]);
        pipe(&mut d, "right", "0", "dummy", 211)?;
        assert_eq!(
            out(&mut d)?,
            vec![row("1", "null+a1", 0), row("0", "A0+null", 0)]
        );
        Ok(())
    }
}
