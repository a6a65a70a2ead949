//! Session windows end to end: `SessionWindowState::aggregate` in a topology, through the test
//! driver, and split invariance (any batching, same outputs record for record, same stores) with
//! out-of-order and late records, for both emit strategies.
//!
//! The store handles are written by hand (what `#[kstreams::store(window = session(..))]`
//! generates), so the test does not depend on the macros.

use std::time::Duration;

use proptest::prelude::*;

use kstreams::store::{SessionWindow, StoreHandle, StoreSpec};
use kstreams::testing::{SplitCheck, SplitInput, TopologyTestDriver};
use kstreams::window::{
    EmitStrategy, OnLate, SessionKind, SessionWindowState, SessionWindowed, SessionWindows, Window,
    WindowedHandle, Windowing, Windows,
};
use kstreams::{Emit, Record, Result, Topology, batch_processor};

/// A session store handle of gap 10 ms and grace 5 ms with emit strategy `$emit` and late-record
/// policy `$late`.
macro_rules! session_handle {
    ($name:ident, $store:literal, $emit:expr, $late:expr) => {
        session_handle!($name, $store, $emit, $late, |w: Windowing| w);
    };
    ($name:ident, $store:literal, $emit:expr, $late:expr, $more:expr) => {
        #[allow(dead_code, reason = "a handle used only through the library operators")]
        struct $name<'t>(SessionWindowState<'t, String, u64>);

        impl<'t> StoreHandle<'t> for $name<'t> {
            const NAME: &'static str = $store;
            type Key = String;
            type Value = u64;
            fn spec() -> StoreSpec {
                <Self as WindowedHandle<'t>>::windowing()
                    .store_spec(StoreSpec::new::<String, u64>($store))
            }
            fn bind(store: kstreams::KeyValueStore<'t, String, u64>) -> Self {
                $name(kstreams::__private::session_window_state(
                    store,
                    <Self as WindowedHandle<'t>>::windowing(),
                ))
            }
        }

        impl<'t> WindowedHandle<'t> for $name<'t> {
            type Kind = SessionKind;
            fn windowing() -> Windowing {
                let windows =
                    SessionWindows::new(Duration::from_millis(10), Duration::from_millis(5))
                        .map(Windows::Session)
                        .unwrap_or_else(|e| unreachable!("valid session windows: {e}"));
                ($more)(Windowing::new(windows).emit($emit).on_late($late))
            }
        }
    };
}

session_handle!(
    OnUpdate,
    "sessions-update",
    EmitStrategy::OnWindowUpdate,
    OnLate::Drop
);
session_handle!(
    OnClose,
    "sessions-close",
    EmitStrategy::OnWindowClose,
    OnLate::Drop
);
session_handle!(
    IdleClose,
    "sessions-idle",
    EmitStrategy::OnWindowClose,
    OnLate::Drop,
    |w: Windowing| w.advance_when_idle(Duration::from_millis(20))
);
session_handle!(
    LateToDlq,
    "sessions-dlq",
    EmitStrategy::OnWindowUpdate,
    OnLate::DeadLetter
);

#[batch_processor]
fn count_on_update(
    views: &[Record<String, String>],
    sessions: &mut OnUpdate,
    out: &mut Emit<SessionWindowed<String>, Option<u64>>,
) -> Result<()> {
    sessions
        .0
        .aggregate(views, out, |_| 0, |n, _| *n += 1, |_, a, b| a + b)
}

#[batch_processor]
fn count_on_close(
    views: &[Record<String, String>],
    sessions: &mut OnClose,
    out: &mut Emit<SessionWindowed<String>, Option<u64>>,
) -> Result<()> {
    sessions
        .0
        .aggregate(views, out, |_| 0, |n, _| *n += 1, |_, a, b| a + b)
}

fn topology(on_close: bool) -> Result<Topology> {
    let mut t = Topology::builder();
    let views = t.source::<String, String>("views");
    let counts = if on_close {
        t.add(count_on_close, &views)
    } else {
        t.add(count_on_update, &views)
    };
    t.sink("sessions", &counts);
    t.build()
        .map_err(|e| kstreams::Error::Config(e.to_string()))
}

fn view(key: &str, ts: i64) -> Record<String, String> {
    Record::new(key.to_owned(), "v".to_owned()).with_timestamp(ts)
}

/// (key, start, end, count or None, timestamp) of each output record.
fn outputs(driver: &mut TopologyTestDriver) -> Result<Vec<(String, i64, i64, Option<u64>, i64)>> {
    Ok(driver
        .read_output::<SessionWindowed<String>, Option<u64>>("sessions")?
        .into_iter()
        .map(|r| {
            let Window { start, end } = r.key.window;
            (r.key.key, start, end, r.value, r.timestamp)
        })
        .collect())
}

#[test]
fn on_update_a_merge_forwards_the_tombstone_then_the_merged_session() -> Result<()> {
    let mut driver = TopologyTestDriver::new(topology(false)?)?;
    driver.pipe_batch(
        "views",
        [view("a", 0), view("a", 12), view("a", 6), view("b", 15)],
    )?;
    assert_eq!(
        outputs(&mut driver)?,
        vec![
            ("a".into(), 0, 0, Some(1), 0),
            ("a".into(), 12, 12, Some(1), 12),
            // 6 is within the gap (10) of both sessions (and [0,0] is not expired: 0 > 12 - 15).
            ("a".into(), 0, 0, None, 0),
            ("a".into(), 12, 12, None, 12),
            ("a".into(), 0, 12, Some(3), 12),
            ("b".into(), 15, 15, Some(1), 15),
        ]
    );
    assert_eq!(
        driver.session_store::<String, u64>("sessions-update")?,
        vec![
            ("a".to_owned(), SessionWindow::new(0, 12), 3),
            ("b".to_owned(), SessionWindow::new(15, 15), 1)
        ]
    );
    Ok(())
}

#[test]
fn on_close_each_session_comes_out_once_after_gap_and_grace() -> Result<()> {
    let mut driver = TopologyTestDriver::new(topology(true)?)?;
    // Gap 10, grace 5: [0,5] is final once stream time passes 5 + 15 = 20.
    driver.pipe_batch("views", [view("a", 0), view("a", 5), view("b", 20)])?;
    assert_eq!(outputs(&mut driver)?, vec![]);
    driver.pipe_batch("views", [view("b", 21)])?;
    assert_eq!(outputs(&mut driver)?, vec![("a".into(), 0, 5, Some(2), 5)]);
    // A late record (would join [0,5], ends before close 31 - 15 = 16) changes nothing.
    driver.pipe_batch("views", [view("b", 31), view("a", 4)])?;
    assert_eq!(outputs(&mut driver)?, vec![]);
    driver.pipe_batch("views", [view("c", 100)])?;
    assert_eq!(
        outputs(&mut driver)?,
        vec![("b".into(), 20, 31, Some(3), 31)]
    );
    Ok(())
}

#[test]
fn a_negative_timestamp_is_a_bad_record_not_a_silent_drop() -> Result<()> {
    let mut driver = TopologyTestDriver::new(topology(false)?)?;
    let err = driver
        .pipe_batch("views", [view("a", -1)])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("negative timestamp -1"), "{err}");
    assert!(err.contains("views"), "names the record's topic: {err}");
    Ok(())
}

#[test]
fn the_library_count_equals_the_hand_written_aggregation() -> Result<()> {
    let records = [
        view("a", 0),
        view("a", 12),
        view("a", 6),
        view("b", 15),
        view("a", 40),
        view("b", 3),
    ];
    let mut t = Topology::builder();
    let views = t.source::<String, String>("views");
    let counts = t.add(kstreams::window::count::<OnUpdate<'static>>(), &views);
    t.sink("sessions", &counts);
    let library = t
        .build()
        .map_err(|e| kstreams::Error::Config(e.to_string()))?;
    let mut by_library = TopologyTestDriver::new(library)?;
    by_library.pipe_batch("views", records.clone())?;
    let mut by_hand = TopologyTestDriver::new(topology(false)?)?;
    by_hand.pipe_batch("views", records)?;
    let expected = outputs(&mut by_hand)?;
    assert_eq!(expected[0], ("a".into(), 0, 0, Some(1), 0));
    assert_eq!(outputs(&mut by_library)?, expected);
    Ok(())
}

#[test]
fn a_restart_neither_re_emits_nor_reopens_a_session() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| kstreams::Error::Config(e.to_string()))?;
    let driver = || {
        TopologyTestDriver::builder(topology(true)?)
            .state_dir(dir.path())
            .build()
    };
    let mut d = driver()?;
    d.pipe_batch("views", [view("a", 0), view("a", 5), view("b", 21)])?;
    assert_eq!(outputs(&mut d)?, vec![("a".into(), 0, 5, Some(2), 5)]);
    drop(d);
    let mut d = driver()?;
    // Stream time is still 21 (close 6): a@4 is late, not a new session; b@22 closes nothing
    // already emitted.
    d.pipe_batch("views", [view("a", 4), view("b", 22)])?;
    assert_eq!(outputs(&mut d)?, vec![]);
    d.pipe_batch("views", [view("c", 60)])?;
    assert_eq!(outputs(&mut d)?, vec![("b".into(), 21, 22, Some(2), 22)]);
    Ok(())
}

#[test]
fn late_records_go_to_the_dead_letter_topic() -> Result<()> {
    let mut t = Topology::builder();
    let views = t.source::<String, String>("views");
    let counts = t.add(kstreams::window::count::<LateToDlq<'static>>(), &views);
    t.sink("sessions", &counts);
    let topology = t
        .build()
        .map_err(|e| kstreams::Error::Config(e.to_string()))?;
    let mut d = TopologyTestDriver::builder(topology)
        .on_processing_error(kstreams::OnBadRecord::DeadLetter {
            topic: "dlq".into(),
        })
        .build()?;
    // Close = 40 - 15 = 25: a@20 is late.
    d.pipe_batch("views", [view("a", 40), view("a", 20)])?;
    let dlq = d.read_output_raw("dlq");
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let header = |n: &str| {
        dlq[0]
            .2
            .headers
            .last(n)
            .flatten()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("kstreams.late.timestamp").as_deref(), Some("20"));
    assert_eq!(header("kstreams.late.stream.time").as_deref(), Some("40"));
    assert_eq!(header("kstreams.error.offset").as_deref(), Some("1"));
    assert_eq!(outputs(&mut d)?, vec![("a".into(), 40, 40, Some(1), 40)]);
    Ok(())
}

#[test]
fn idle_advance_closes_the_last_sessions_of_an_idle_partition() -> Result<()> {
    let mut t = Topology::builder();
    let views = t.source::<String, String>("views");
    let counts = t.add(kstreams::window::count::<IdleClose<'static>>(), &views);
    t.sink("sessions", &counts);
    let topology = t
        .build()
        .map_err(|e| kstreams::Error::Config(e.to_string()))?;
    let mut d = TopologyTestDriver::new(topology)?;
    // Gap 10, grace 5: [0,5] is final once stream time passes 20.
    d.pipe_batch("views", [view("a", 0), view("a", 5)])?;
    d.advance_wall_clock(Duration::from_millis(10))?;
    assert_eq!(outputs(&mut d)?, vec![], "not idle for 20 ms yet");
    d.advance_wall_clock(Duration::from_millis(40))?;
    assert_eq!(outputs(&mut d)?, vec![("a".into(), 0, 5, Some(2), 5)]);
    d.advance_wall_clock(Duration::from_secs(10))?;
    assert_eq!(outputs(&mut d)?, vec![], "each session once");
    Ok(())
}

/// The same count declared with the macros: the user's side in a few lines.
mod declared {
    use kstreams::{Emit, Record, Result, SessionWindowed, batch_processor, store};

    #[store(name = "declared-sessions", window = session(gap = "10ms"), grace = "5ms",
            emit = on_window_close)]
    pub type Sessions = kstreams::SessionKeyValue<String, u64>;

    #[batch_processor]
    pub fn count(
        views: &[Record<String, String>],
        sessions: &mut Sessions,
        out: &mut Emit<SessionWindowed<String>, Option<u64>>,
    ) -> Result<()> {
        sessions.aggregate(views, out, |_| 0, |n, _| *n += 1, |_, a, b| a + b)
    }
}

#[test]
fn a_store_declared_with_the_macros_counts_the_same() -> Result<()> {
    let records: Vec<Record<String, String>> = [0, 5, 3, 21, 40, 31, 4, 90]
        .iter()
        .enumerate()
        .map(|(i, ts)| view(if i % 2 == 0 { "a" } else { "b" }, *ts))
        .collect();
    let mut t = Topology::builder();
    let views = t.source::<String, String>("views");
    let counts = t.add(declared::count, &views);
    t.sink("sessions", &counts);
    let declared = t
        .build()
        .map_err(|e| kstreams::Error::Config(e.to_string()))?;
    let mut by_macro = TopologyTestDriver::new(declared)?;
    by_macro.pipe_batch("views", records.clone())?;
    let mut by_hand = TopologyTestDriver::new(topology(true)?)?;
    by_hand.pipe_batch("views", records)?;
    let expected = outputs(&mut by_hand)?;
    assert!(!expected.is_empty());
    assert_eq!(outputs(&mut by_macro)?, expected);
    Ok(())
}

fn input(records: &[(u8, i64)]) -> Result<SplitInput> {
    let records = records.iter().enumerate().map(|(i, (k, ts))| {
        view(&format!("k{k}"), *ts).with_headers(kstreams::Headers::new().with("n", i.to_string()))
    });
    SplitInput::new()
        .partitions("views", 2)
        .records("views", records)
}

/// Timestamps that move forward with jitter, so that some records are out of order within the
/// grace and some are late.
fn timestamps() -> impl Strategy<Value = Vec<(u8, i64)>> {
    prop::collection::vec((0u8..4, 0i64..12, -25i64..3), 1..60).prop_map(|steps| {
        let mut t = 0i64;
        steps
            .into_iter()
            .map(|(k, forward, jitter)| {
                t += forward;
                (k, (t + jitter).max(0))
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Session counts are split invariant on update: outputs record for record (the tombstones
    /// included) and the final store.
    #[test]
    fn session_counts_on_update_are_split_invariant(records in timestamps(), seed in any::<u64>()) {
        let topology = topology(false).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let input = input(&records).map_err(|e| TestCaseError::fail(e.to_string()))?;
        SplitCheck::new(&topology).seed(seed).runs(2).run(&input)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }

    /// Session counts emitted on close are split invariant, record for record.
    #[test]
    fn session_counts_on_close_are_split_invariant(records in timestamps(), seed in any::<u64>()) {
        let topology = topology(true).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let input = input(&records).map_err(|e| TestCaseError::fail(e.to_string()))?;
        SplitCheck::new(&topology).seed(seed).runs(2).run(&input)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}
