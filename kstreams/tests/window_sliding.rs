//! Sliding windows end to end: `TimeWindowState::aggregate` over sliding windows in a topology,
//! through the test driver, and split invariance (any batching, same outputs record for record,
//! same stores) with out-of-order and late records, for both emit strategies.
//!
//! The store handles are written by hand (what `#[kstreams::store(window = sliding(..))]`
//! generates), so the test does not depend on the macros.

use std::time::Duration;

use proptest::prelude::*;

use kstreams::store::{StoreHandle, StoreSpec};
use kstreams::testing::{SplitCheck, SplitInput, TopologyTestDriver};
use kstreams::window::{
    EmitStrategy, SlidingWindows, TimeKind, TimeWindowState, TimeWindowedSerde, Window, Windowed,
    WindowedHandle, Windowing, Windows,
};
use kstreams::{Emit, Record, Result, Topology, batch_processor};

/// A sliding store handle of time difference 10 ms and grace 5 ms with emit strategy `$emit`.
macro_rules! sliding_handle {
    ($name:ident, $store:literal, $emit:expr) => {
        sliding_handle!($name, $store, $emit, |w: Windowing| w);
    };
    ($name:ident, $store:literal, $emit:expr, $more:expr) => {
        #[allow(dead_code, reason = "a handle used only through the library operators")]
        struct $name<'t>(TimeWindowState<'t, String, u64>);

        impl<'t> StoreHandle<'t> for $name<'t> {
            const NAME: &'static str = $store;
            type Key = String;
            type Value = u64;
            fn spec() -> StoreSpec {
                <Self as WindowedHandle<'t>>::windowing()
                    .store_spec(StoreSpec::new::<String, u64>($store))
            }
            fn bind(store: kstreams::KeyValueStore<'t, String, u64>) -> Self {
                $name(kstreams::__private::time_window_state(
                    store,
                    <Self as WindowedHandle<'t>>::windowing(),
                ))
            }
        }

        impl<'t> WindowedHandle<'t> for $name<'t> {
            type Kind = TimeKind;
            fn windowing() -> Windowing {
                let windows =
                    SlidingWindows::new(Duration::from_millis(10), Duration::from_millis(5))
                        .map(Windows::Sliding)
                        .unwrap_or_else(|e| unreachable!("valid sliding windows: {e}"));
                ($more)(Windowing::new(windows).emit($emit))
            }
        }
    };
}

sliding_handle!(OnUpdate, "sliding-update", EmitStrategy::OnWindowUpdate);
sliding_handle!(OnClose, "sliding-close", EmitStrategy::OnWindowClose);
sliding_handle!(
    IdleClose,
    "sliding-idle",
    EmitStrategy::OnWindowClose,
    |w: Windowing| w.advance_when_idle(Duration::from_millis(20))
);

#[batch_processor]
fn count_on_update(
    views: &[Record<String, String>],
    windows: &mut OnUpdate,
    out: &mut Emit<Windowed<String>, u64>,
) -> Result<()> {
    windows.0.aggregate(views, out, |_| 0, |n, _| *n += 1)
}

#[batch_processor]
fn count_on_close(
    views: &[Record<String, String>],
    windows: &mut OnClose,
    out: &mut Emit<Windowed<String>, u64>,
) -> Result<()> {
    windows.0.aggregate(views, out, |_| 0, |n, _| *n += 1)
}

fn topology(on_close: bool) -> Result<Topology> {
    let mut t = Topology::builder();
    let views = t.source::<String, String>("views");
    let counts = if on_close {
        t.add(count_on_close, &views)
    } else {
        t.add(count_on_update, &views)
    };
    t.sink("sliding", &counts);
    t.build()
        .map_err(|e| kstreams::Error::Config(e.to_string()))
}

fn view(key: &str, ts: i64) -> Record<String, String> {
    Record::new(key.to_owned(), "v".to_owned()).with_timestamp(ts)
}

/// (key, start, end, count, timestamp) of each output record.
fn outputs(driver: &mut TopologyTestDriver) -> Result<Vec<(String, i64, i64, u64, i64)>> {
    Ok(driver
        .read_output_with::<Windowed<String>, u64>(
            "sliding",
            &TimeWindowedSerde::new(kstreams::serde::StringSerde).with_window_size(10),
            &kstreams::serde::U64Serde,
        )?
        .into_iter()
        .map(|r| {
            let Window { start, end } = r.key.window;
            (r.key.key, start, end, r.value, r.timestamp)
        })
        .collect())
}

#[test]
fn on_update_each_created_or_changed_window_is_forwarded() -> Result<()> {
    let mut driver = TopologyTestDriver::new(topology(false)?)?;
    // Difference 10: 20 makes [10,20]; 30 makes 20's right window [21,31] and its left window
    // [20,30] (20 included: both ends are); 25, out of order, is added to [21,31] and [20,30],
    // makes its left window [15,25] from [10,20] and its right window [26,36] from [21,31].
    driver.pipe_batch("views", [view("a", 20), view("a", 30), view("a", 25)])?;
    assert_eq!(
        outputs(&mut driver)?,
        vec![
            ("a".into(), 10, 20, 1, 20),
            ("a".into(), 21, 31, 1, 30),
            ("a".into(), 20, 30, 2, 30),
            ("a".into(), 21, 31, 2, 30),
            ("a".into(), 20, 30, 3, 30),
            ("a".into(), 15, 25, 2, 25),
            ("a".into(), 26, 36, 1, 30),
        ]
    );
    Ok(())
}

#[test]
fn on_close_each_window_comes_out_once_after_grace() -> Result<()> {
    let mut driver = TopologyTestDriver::new(topology(true)?)?;
    // Grace 5: [10,20] is final once stream time passes 20 + 5.
    driver.pipe_batch("views", [view("a", 20), view("b", 25)])?;
    assert_eq!(outputs(&mut driver)?, vec![]);
    driver.pipe_batch("views", [view("b", 26)])?;
    assert_eq!(outputs(&mut driver)?, vec![("a".into(), 10, 20, 1, 20)]);
    // A late record (even its right window [10,20] would be closed: 9 + 1 + 10 <= 26 - 5).
    driver.pipe_batch("views", [view("a", 9)])?;
    assert_eq!(outputs(&mut driver)?, vec![]);
    driver.pipe_batch("views", [view("c", 100)])?;
    assert_eq!(
        outputs(&mut driver)?,
        vec![
            ("b".into(), 15, 25, 1, 25),
            ("b".into(), 16, 26, 2, 26),
            // 25's right window, made by 26.
            ("b".into(), 26, 36, 1, 26),
        ]
    );
    Ok(())
}

#[test]
fn the_library_count_equals_the_hand_written_aggregation() -> Result<()> {
    let records = [
        view("a", 20),
        view("a", 30),
        view("a", 25),
        view("b", 3),
        view("b", 7),
        view("a", 60),
    ];
    let mut t = Topology::builder();
    let views = t.source::<String, String>("views");
    let counts = t.add(kstreams::window::count::<OnUpdate<'static>>(), &views);
    t.sink("sliding", &counts);
    let library = t
        .build()
        .map_err(|e| kstreams::Error::Config(e.to_string()))?;
    let mut by_library = TopologyTestDriver::new(library)?;
    by_library.pipe_batch("views", records.clone())?;
    let mut by_hand = TopologyTestDriver::new(topology(false)?)?;
    by_hand.pipe_batch("views", records)?;
    let expected = outputs(&mut by_hand)?;
    assert_eq!(expected[0], ("a".into(), 10, 20, 1, 20));
    assert_eq!(outputs(&mut by_library)?, expected);
    Ok(())
}

#[test]
fn idle_advance_closes_the_last_windows_of_an_idle_partition() -> Result<()> {
    let mut t = Topology::builder();
    let views = t.source::<String, String>("views");
    let counts = t.add(kstreams::window::count::<IdleClose<'static>>(), &views);
    t.sink("sliding", &counts);
    let topology = t
        .build()
        .map_err(|e| kstreams::Error::Config(e.to_string()))?;
    let mut d = TopologyTestDriver::new(topology)?;
    // Difference 10, grace 5: the last window, 20's right window [21,31], is final once stream
    // time passes 36; without records, only the idle advance gets it there.
    d.pipe_batch("views", [view("a", 20), view("a", 25)])?;
    d.advance_wall_clock(Duration::from_millis(10))?;
    assert_eq!(outputs(&mut d)?, vec![], "not idle for 20 ms yet");
    d.advance_wall_clock(Duration::from_millis(40))?;
    assert_eq!(
        outputs(&mut d)?,
        vec![
            ("a".into(), 10, 20, 1, 20),
            ("a".into(), 15, 25, 2, 25),
            ("a".into(), 21, 31, 1, 25)
        ]
    );
    d.advance_wall_clock(Duration::from_secs(10))?;
    assert_eq!(outputs(&mut d)?, vec![], "each window once");
    Ok(())
}

/// The same count declared with the macros: the user's side in a few lines.
mod declared {
    use kstreams::{Emit, Record, Result, Windowed, batch_processor, store};

    #[store(name = "declared-sliding", window = sliding(difference = "10ms"), grace = "5ms")]
    pub type Counts = kstreams::WindowKeyValue<String, u64>;

    #[batch_processor]
    pub fn count(
        views: &[Record<String, String>],
        counts: &mut Counts,
        out: &mut Emit<Windowed<String>, u64>,
    ) -> Result<()> {
        counts.aggregate(views, out, |_| 0, |n, _| *n += 1)
    }
}

#[test]
fn a_store_declared_with_the_macros_counts_the_same() -> Result<()> {
    let records: Vec<Record<String, String>> = [20, 30, 25, 3, 7, 60, 41, 5]
        .iter()
        .enumerate()
        .map(|(i, ts)| view(if i % 3 == 0 { "a" } else { "b" }, *ts))
        .collect();
    let mut t = Topology::builder();
    let views = t.source::<String, String>("views");
    let counts = t.add(declared::count, &views);
    t.sink("sliding", &counts);
    let declared = t
        .build()
        .map_err(|e| kstreams::Error::Config(e.to_string()))?;
    let mut by_macro = TopologyTestDriver::new(declared)?;
    by_macro.pipe_batch("views", records.clone())?;
    let mut by_hand = TopologyTestDriver::new(topology(false)?)?;
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

    /// Sliding counts are split invariant on update: outputs record for record and the final
    /// store.
    #[test]
    fn sliding_counts_on_update_are_split_invariant(records in timestamps(), seed in any::<u64>()) {
        let topology = topology(false).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let input = input(&records).map_err(|e| TestCaseError::fail(e.to_string()))?;
        SplitCheck::new(&topology).seed(seed).runs(2).run(&input)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }

    /// Sliding counts emitted on close are split invariant, record for record.
    #[test]
    fn sliding_counts_on_close_are_split_invariant(records in timestamps(), seed in any::<u64>()) {
        let topology = topology(true).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let input = input(&records).map_err(|e| TestCaseError::fail(e.to_string()))?;
        SplitCheck::new(&topology).seed(seed).runs(2).run(&input)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

#[test]
fn the_driver_reads_a_sliding_store_as_its_aggregates() -> Result<()> {
    let mut driver = TopologyTestDriver::new(topology(false)?)?;
    driver.pipe_batch(
        "views",
        [view("a", 20), view("a", 30), view("a", 25), view("b", 3)],
    )?;
    // Each window's latest forwarded count is what its store holds (the stored value is the
    // 8-byte timestamp, then the count: the driver strips the timestamp).
    let mut latest = std::collections::BTreeMap::new();
    for (key, start, _, count, _) in outputs(&mut driver)? {
        latest.insert((key, start), count);
    }
    let mut stored: Vec<((String, i64), u64)> = driver
        .window_store::<String, u64>("sliding-update")?
        .into_iter()
        .map(|(k, start, n)| ((k, start), n))
        .collect();
    stored.sort();
    assert_eq!(stored, latest.into_iter().collect::<Vec<_>>());
    assert!(stored.contains(&(("a".into(), 20), 3)));
    Ok(())
}
