//! `window::count_with` and `window::count_sessions_with` (a windowing given at run time) are
//! the library's `window::count::<S>()` (a windowing declared by a `#[store]` type): on the same
//! input, out of order and with late records, they forward the same records, byte for byte, and
//! leave the same store, for time, sliding and session windows and both emit strategies.

use std::time::Duration;

use kstreams::testing::TopologyTestDriver;
use kstreams::window::{
    self, EmitStrategy, SessionKind, SessionWindows, SlidingWindows, TimeKind, TimeWindows,
    WindowedHandle, Windowing, Windows,
};
use kstreams::{Record, Result, Topology};

#[kstreams::store(name = "counts", window = hopping(size = "5s", advance = "1s"), grace = "2s", emit = on_window_close)]
type HoppingFinal = kstreams::WindowKeyValue<String, u64>;

#[kstreams::store(name = "counts", window = hopping(size = "5s", advance = "1s"), grace = "2s")]
type HoppingUpdate = kstreams::WindowKeyValue<String, u64>;

#[kstreams::store(name = "counts", window = sliding(difference = "2s"), grace = "2s", emit = on_window_close)]
type SlidingFinal = kstreams::WindowKeyValue<String, u64>;

#[kstreams::store(name = "counts", window = session(gap = "1s"), grace = "2s", emit = on_window_close)]
type SessionFinal = kstreams::SessionKeyValue<String, u64>;

#[kstreams::store(name = "counts", window = session(gap = "1s"), grace = "2s")]
type SessionUpdate = kstreams::SessionKeyValue<String, u64>;

#[kstreams::store(name = "counts", window = tumbling(size = "10ms"), grace = "5ms", emit = on_window_close, idle_advance = "20ms")]
type TumblingIdle = kstreams::WindowKeyValue<String, u64>;

#[kstreams::store(name = "counts", window = session(gap = "10ms"), grace = "5ms", emit = on_window_close, idle_advance = "20ms")]
type SessionIdle = kstreams::SessionKeyValue<String, u64>;

/// Out-of-order records over three keys, with pauses that close windows and records far enough
/// back to be late.
fn input() -> Vec<Record<String, String>> {
    (0..200_i64)
        .map(|i| {
            let back = if i % 7 == 3 { 4_000 } else { 0 };
            let pause = (i / 40) * 6_000;
            Record::new(format!("k{}", i % 3), i.to_string())
                .with_timestamp(100_000 + i * 150 + pause - back)
        })
        .collect()
}

/// What a topology with one windowed count (`add` adds it) forwards and keeps, piped `input()`
/// in batches of 9: `(key, value, timestamp)` of each output record, and the store's bytes.
type Outcome = (
    Vec<(Option<Vec<u8>>, Option<Vec<u8>>, i64)>,
    Vec<(Vec<u8>, Vec<u8>)>,
);

fn outcome(build: impl FnOnce(&mut kstreams::TopologyBuilder) -> Result<()>) -> Result<Outcome> {
    let mut t = Topology::builder();
    build(&mut t)?;
    let mut d = TopologyTestDriver::new(t.build()?)?;
    for batch in input().chunks(9) {
        d.pipe_batch("in", batch.to_vec())?;
    }
    let out = d
        .read_output_raw("out")
        .into_iter()
        .map(|(_, _, r)| (r.key, r.value, r.timestamp))
        .collect();
    Ok((out, d.store_raw("counts")?))
}

/// Asserts that the two topologies (the `#[store]` one, then the run-time one) forward the same
/// records and keep the same store.
fn assert_same(
    windowing: Windowing,
    by_type: impl FnOnce(&mut kstreams::TopologyBuilder) -> Result<()>,
    by_value: impl FnOnce(&mut kstreams::TopologyBuilder) -> Result<()>,
) -> Result<()> {
    let by_type = outcome(by_type)?;
    let by_value = outcome(by_value)?;
    assert!(!by_type.0.is_empty(), "the count forwarded nothing");
    assert_eq!(by_value, by_type, "{windowing:?}");
    Ok(())
}

/// `count_with` over `S::windowing()` equals `count::<S>()` (time and sliding windows).
fn same_as_count<S>() -> Result<()>
where
    S: WindowedHandle<'static, Key = String, Value = u64, Kind = TimeKind> + 'static,
{
    assert_same(
        S::windowing(),
        |t| {
            let records = t.source::<String, String>("in");
            let counts = t.add(window::count::<S>(), &records);
            t.sink("out", &counts);
            Ok(())
        },
        |t| {
            let records = t.source::<String, String>("in");
            let counts = t.add(
                window::count_with::<String>("counts", S::windowing())?,
                &records,
            );
            t.sink("out", &counts);
            Ok(())
        },
    )
}

/// `count_sessions_with` over `S::windowing()` equals `count::<S>()` (sessions).
fn same_as_count_sessions<S>() -> Result<()>
where
    S: WindowedHandle<'static, Key = String, Value = u64, Kind = SessionKind> + 'static,
{
    assert_same(
        S::windowing(),
        |t| {
            let records = t.source::<String, String>("in");
            let counts = t.add(window::count::<S>(), &records);
            t.sink("out", &counts);
            Ok(())
        },
        |t| {
            let records = t.source::<String, String>("in");
            let counts = t.add(
                window::count_sessions_with::<String>("counts", S::windowing())?,
                &records,
            );
            t.sink("out", &counts);
            Ok(())
        },
    )
}

#[test]
fn count_with_is_count_on_hopping_windows_on_close() -> Result<()> {
    same_as_count::<HoppingFinal<'static>>()
}

#[test]
fn count_with_is_count_on_hopping_windows_on_update() -> Result<()> {
    same_as_count::<HoppingUpdate<'static>>()
}

#[test]
fn count_with_is_count_on_sliding_windows_on_close() -> Result<()> {
    same_as_count::<SlidingFinal<'static>>()
}

#[test]
fn count_sessions_with_is_count_on_sessions_on_close() -> Result<()> {
    same_as_count_sessions::<SessionFinal<'static>>()
}

#[test]
fn count_sessions_with_is_count_on_sessions_on_update() -> Result<()> {
    same_as_count_sessions::<SessionUpdate<'static>>()
}

#[test]
fn a_windowing_of_the_other_kind_is_a_config_error_naming_the_store() -> Result<()> {
    let second = Duration::from_secs(1);
    let session = Windowing::new(Windows::Session(SessionWindows::new(second, second)?));
    let sliding = Windowing::new(Windows::Sliding(SlidingWindows::new(second, second)?));
    let tumbling = Windowing::new(Windows::Time(TimeWindows::tumbling(second, second)?))
        .emit(EmitStrategy::OnWindowClose);
    let e = window::count_with::<String>("my-counts", session)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("my-counts") && e.contains("count_sessions_with"),
        "{e}"
    );
    assert!(window::count_sessions_with::<String>("s", sliding).is_err());
    assert!(window::count_sessions_with::<String>("s", tumbling).is_err());
    assert!(window::count_with::<String>("s", sliding).is_ok());
    Ok(())
}

/// The raw outputs of `t` after two records and then 50 ms of wall-clock time with no record.
fn idle_outputs(
    build: impl FnOnce(&mut kstreams::TopologyBuilder) -> Result<()>,
) -> Result<Vec<(Option<Vec<u8>>, Option<Vec<u8>>, i64)>> {
    let mut t = Topology::builder();
    build(&mut t)?;
    let mut d = TopologyTestDriver::new(t.build()?)?;
    let rec = |ts| Record::new("a".to_string(), String::new()).with_timestamp(ts);
    d.pipe_batch("in", [rec(1), rec(12)])?;
    // As `idle_advance_closes_the_last_windows_of_an_idle_partition` (tests/windowing.rs).
    d.advance_wall_clock(Duration::from_millis(10))?;
    d.advance_wall_clock(Duration::from_millis(40))?;
    Ok(d.read_output_raw("out")
        .into_iter()
        .map(|(_, _, r)| (r.key, r.value, r.timestamp))
        .collect())
}

#[test]
fn count_with_advances_stream_time_when_idle_as_count() -> Result<()> {
    let by_type = idle_outputs(|t| {
        let records = t.source::<String, String>("in");
        let counts = t.add(window::count::<TumblingIdle<'static>>(), &records);
        t.sink("out", &counts);
        Ok(())
    })?;
    let by_value = idle_outputs(|t| {
        let records = t.source::<String, String>("in");
        let windowing = <TumblingIdle<'static> as WindowedHandle<'static>>::windowing();
        let counts = t.add(window::count_with::<String>("counts", windowing)?, &records);
        t.sink("out", &counts);
        Ok(())
    })?;
    // Stream time 12, grace 5: only the idle advance closes [0, 10) and [10, 20).
    assert_eq!(by_type.len(), 2, "{by_type:?}");
    assert_eq!(by_value, by_type);
    Ok(())
}

#[test]
fn count_sessions_with_advances_stream_time_when_idle_as_count() -> Result<()> {
    let by_type = idle_outputs(|t| {
        let records = t.source::<String, String>("in");
        let counts = t.add(window::count::<SessionIdle<'static>>(), &records);
        t.sink("out", &counts);
        Ok(())
    })?;
    let by_value = idle_outputs(|t| {
        let records = t.source::<String, String>("in");
        let windowing = <SessionIdle<'static> as WindowedHandle<'static>>::windowing();
        let counts = t.add(
            window::count_sessions_with::<String>("counts", windowing)?,
            &records,
        );
        t.sink("out", &counts);
        Ok(())
    })?;
    // Two sessions, [1, 1] and [12, 12] (11 ms apart, more than the gap), closed only by the
    // idle advance: at stream time 12 neither has `end + gap + grace < stream time`.
    assert_eq!(by_type.len(), 2, "{by_type:?}");
    assert_eq!(by_value, by_type);
    Ok(())
}
