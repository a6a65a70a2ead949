//! Sliding windows (KIP-450): Kafka Streams' `KStreamSlidingWindowAggregate` (4.x), called by
//! `TimeWindowState::aggregate` for `Windows::Sliding`.
//!
//! Owns: which sliding windows a record creates or updates, their aggregates, sliding lateness
//! and emission. May not touch the store's layout (`store/window.rs`).
//!
//! A sliding window of time difference `d` is `[start, start + d]`, both ends included (Java's
//! definition); its result key carries `Window { start, end: start + d }`. Windows exist only
//! where records are: each record at `t` has a *left* window `[t − d, t]` (it is the window's
//! last record) and, when a later record lies within `d` of it, a *right* window `[t + 1, t + 1 +
//! d]`. Records before `d` (`0 <= t < d`) share the window `[0, d]` instead of a left window.
//! Each window stores its aggregate with the largest record timestamp it holds (Java's
//! `ValueAndTimestamp`, Java's bytes), which new windows are built from:
//!
//! - a record reads its key's windows starting in `[max(0, t − 2d), t + 1]`, latest first;
//!   windows containing `t` get the record added (those not closed); the latest window ending
//!   before `t` gives the previous record's timestamp `p` and the aggregate the new left window
//!   starts from (when `p >= t − d`, else it starts empty);
//! - the previous record's right window `[p + 1, ..]` is created (from the record alone) when
//!   missing and the record falls in it; the record's own right window is created, from the
//!   aggregate of the earliest window after the record that contains it, when a later record lies
//!   within `d`.
//!
//! Stream time is the largest timestamp so far (the record included); `close = stream time −
//! grace`. A record is late when even its right window is closed (`t + 1 + d <= close`); a window
//! takes a record while `end >= close`. On update, each changed or created window is forwarded
//! with its largest record timestamp; on close, once per record whose `close` moved forward,
//! every window ending in `[previous close, close − 1]` is forwarded in (start, key bytes) order.
//!
//! Differences from Java: emission on close is not throttled by wall-clock time (Java's internal
//! `emit.interval.ms`, 1 s by default, only delays it); a record with a negative timestamp is a
//! bad record, through the processing policy; a window closed for a record is skipped without a metric (Java counts one
//! dropped record per skipped window; here only a record too late for every window is late); the
//! windows a record reads are those starting after `stream time − retention` (Java's store
//! measures retention from the largest window start it was written, at most `d` ms behind).

use std::collections::HashSet;

use super::{EmitStrategy, TimeWindowState, Window, Windowed, Windows};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::record::Record;
use crate::store::WindowStore;

/// The parameters of one sliding aggregation.
#[derive(Debug, Clone, Copy)]
struct Params {
    diff: i64,
    grace: i64,
    retention: i64,
    emit: EmitStrategy,
}

/// What processing a batch produced, in order.
#[derive(Debug, Clone, PartialEq)]
enum Event<K, A> {
    /// A result to forward, caused by `records[trigger]` (it carries that record's headers).
    Forward {
        trigger: usize,
        key: K,
        window: Window,
        value: A,
        timestamp: i64,
    },
    /// `records[index]` has a negative timestamp: it cannot be windowed (Java's timestamp
    /// extractors drop it); it goes through the processing policy as a bad record.
    Negative { index: usize },
    /// `records[index]` is late.
    Late {
        index: usize,
        stream_time: i64,
        window: Window,
    },
}

/// An aggregate and the largest record timestamp it holds.
type Agg<A> = (A, i64);

/// One record's pass over its key's windows.
struct Step<'s, 'f, 't, K: 'static, V, A: 'static> {
    store: &'s WindowStore<'t, K, A>,
    p: Params,
    index: usize,
    r: &'s Record<K, V>,
    close: i64,
    first: &'f mut dyn FnMut(&Record<K, V>) -> A,
    add: &'f mut dyn FnMut(&mut A, &Record<K, V>),
    events: &'s mut Vec<Event<K, A>>,
    /// Whether an open window took the record.
    accepted: bool,
}

impl<K: Clone + 'static, V, A: Clone + 'static> Step<'_, '_, '_, K, V, A> {
    fn window(&self, start: i64) -> Window {
        Window {
            start,
            end: start.saturating_add(self.p.diff),
        }
    }

    fn on_update(&mut self, start: i64, value: A, timestamp: i64) {
        if self.p.emit == EmitStrategy::OnWindowUpdate {
            let window = self.window(start);
            self.events.push(Event::Forward {
                trigger: self.index,
                key: self.r.key.clone(),
                window,
                value,
                timestamp,
            });
        }
    }

    /// Java's `updateWindowAndForward`: adds the record to the window starting at `start`
    /// (`existing`: its aggregate; `None`: a new window, `first(record)`), unless the window is
    /// closed.
    fn update(&mut self, start: i64, existing: Option<Agg<A>>) -> Result<()> {
        let end = start.saturating_add(self.p.diff);
        if end < self.close {
            tracing::debug!(
                store = self.store.name(),
                timestamp = self.r.timestamp,
                window.start = start,
                window.end = end,
                close = self.close,
                "sliding window closed for this record: skipped"
            );
            return Ok(());
        }
        self.accepted = true;
        let (agg, timestamp) = match existing {
            Some((mut agg, t)) => {
                (self.add)(&mut agg, self.r);
                (agg, t.max(self.r.timestamp))
            }
            None => ((self.first)(self.r), self.r.timestamp),
        };
        let _ = self
            .store
            .put_timestamped(&self.r.key, start, &agg, timestamp)?;
        self.on_update(start, agg, timestamp);
        Ok(())
    }

    /// Java's `createCurrentRecordRightWindow`: the window `[t + 1, t + 1 + d]` holds exactly
    /// what `right` (a window after the record that contains it) holds.
    fn create_right(&mut self, (agg, timestamp): Agg<A>) -> Result<()> {
        let start = self.r.timestamp.saturating_add(1);
        let _ = self
            .store
            .put_timestamped(&self.r.key, start, &agg, timestamp)?;
        self.on_update(start, agg, timestamp);
        Ok(())
    }

    /// The windows of the record's key starting in `[from, to]` that Java's store shows (start
    /// after `stream time − retention`), in start order.
    fn fetch(&self, from: i64, to: i64, stream_time: i64) -> Result<Vec<(i64, A, i64)>> {
        let cut = stream_time.saturating_sub(self.p.retention);
        self.store
            .fetch_timestamped(&self.r.key, from.max(cut.saturating_add(1)), to)
    }

    /// Java's `processReverse` (a record at `t >= d`).
    fn process(&mut self, stream_time: i64) -> Result<()> {
        let (t, d) = (self.r.timestamp, self.p.diff);
        let windows = self.fetch(
            t.saturating_sub(d.saturating_mul(2)).max(0),
            t.saturating_add(1),
            stream_time,
        )?;
        let mut starts = HashSet::new();
        let (mut left_agg, mut right_agg) = (None, None);
        let (mut left_created, mut right_created) = (false, false);
        let mut previous = None;
        for (start, agg, max) in windows.into_iter().rev() {
            starts.insert(start);
            let end = start.saturating_add(d);
            if start == t.saturating_add(1) {
                right_created = true;
            } else if end > t {
                if right_agg.is_none() {
                    right_agg = Some((agg.clone(), max));
                }
                self.update(start, Some((agg, max)))?;
            } else if end == t {
                left_created = true;
                self.update(start, Some((agg, max)))?;
                if max < t {
                    previous = Some(max);
                } else {
                    return Ok(());
                }
            } else {
                left_agg = Some(agg);
                previous = Some(max);
                break;
            }
        }
        // Java's `createWindows`.
        if let Some(p) = previous {
            let start = p.saturating_add(1);
            if !starts.contains(&start) && start.saturating_add(d) >= t {
                self.update(start, None)?;
            }
        }
        if !left_created {
            let existing = match (previous, left_agg) {
                (Some(p), Some(agg)) if t.saturating_sub(d) <= p => Some((agg, t)),
                _ => None,
            };
            self.update(t.saturating_sub(d), existing)?;
        }
        if let Some(right) = right_agg.filter(|(_, max)| *max > t)
            && !right_created
        {
            self.create_right(right)?;
        }
        Ok(())
    }

    /// Java's `processEarly` (a record at `0 <= t < d`): it goes into `[0, d]` instead of a left
    /// window.
    fn process_early(&mut self, stream_time: i64) -> Result<()> {
        let t = self.r.timestamp;
        let windows = self.fetch(0, t.saturating_add(1), stream_time)?;
        let mut starts = HashSet::new();
        let (mut combined, mut right_agg) = (None, None);
        let mut right_created = false;
        let mut previous = None;
        for (start, agg, max) in windows {
            starts.insert(start);
            if start == 0 {
                if max < t {
                    previous = Some(max);
                }
                combined = Some((agg, max));
            } else if start <= t {
                right_agg = Some((agg.clone(), max));
                self.update(start, Some((agg, max)))?;
            } else {
                // start == t + 1: the fetch ends there.
                right_created = true;
            }
        }
        if right_agg.is_none()
            && let Some((agg, max)) = &combined
            && *max > t
        {
            right_agg = Some((agg.clone(), *max));
        }
        if let Some(right) = right_agg.filter(|(_, max)| *max > t)
            && !right_created
        {
            self.create_right(right)?;
        }
        if let Some(p) = previous {
            let start = p.saturating_add(1);
            if !starts.contains(&start) {
                self.update(start, None)?;
            }
        }
        self.update(0, combined)
    }
}

/// Runs the sliding aggregation over `records` from stream time `before` (the store's), writing
/// the store; returns what to forward and which records are late, and the new stream time.
#[allow(clippy::too_many_arguments)]
fn process<K: Clone + 'static, A: Clone + 'static, V>(
    store: &WindowStore<'_, K, A>,
    p: Params,
    before: Option<i64>,
    records: &[Record<K, V>],
    first: &mut dyn FnMut(&Record<K, V>) -> A,
    add: &mut dyn FnMut(&mut A, &Record<K, V>),
) -> Result<(Vec<Event<K, A>>, Option<i64>)> {
    let mut events = Vec::new();
    let mut now = before;
    for (index, r) in records.iter().enumerate() {
        let t = r.timestamp;
        if r.timestamp < 0 {
            events.push(Event::Negative { index });
            continue;
        }
        let previous = now;
        let st = now.map_or(t, |n| n.max(t));
        now = Some(st);
        let close = st.saturating_sub(p.grace);
        if t.saturating_add(1).saturating_add(p.diff) <= close {
            events.push(Event::Late {
                index,
                stream_time: st,
                window: Window {
                    start: t.saturating_sub(p.diff),
                    end: t,
                },
            });
            continue;
        }
        let mut step = Step {
            store,
            p,
            index,
            r,
            close,
            first: &mut *first,
            add: &mut *add,
            events: &mut events,
            accepted: false,
        };
        if t < p.diff {
            step.process_early(st)?;
        } else {
            step.process(st)?;
        }
        if !step.accepted {
            events.push(Event::Late {
                index,
                stream_time: st,
                window: Window {
                    start: t.saturating_sub(p.diff),
                    end: t,
                },
            });
        }
        if p.emit == EmitStrategy::OnWindowClose {
            for (key, start, value, timestamp) in closed_windows(store, p, previous, st)? {
                events.push(Event::Forward {
                    trigger: index,
                    key,
                    window: Window {
                        start,
                        end: start.saturating_add(p.diff),
                    },
                    value,
                    timestamp,
                });
            }
        }
    }
    Ok((events, now))
}

/// The windows that became final when stream time moved from `previous` to `now` (Java's
/// `maybeForwardFinalResult`): those ending in `[previous close, close − 1]` (starts in
/// `[max(0, previous close − d), close − d − 1]`), as (key, start, aggregate, timestamp) in
/// (start, key bytes) order; none unless the close moved forward.
fn closed_windows<K: 'static, A: 'static>(
    store: &WindowStore<'_, K, A>,
    p: Params,
    previous: Option<i64>,
    now: i64,
) -> Result<Vec<(K, i64, A, i64)>> {
    let close = now.saturating_sub(p.grace);
    // Java's lastEmitWindowCloseTime is the previous close once one was past `d`.
    let previous_close = previous.map(|b| b.saturating_sub(p.grace));
    let lower = previous_close.map_or(0, |c| c.saturating_sub(p.diff).max(0));
    let upper = close.saturating_sub(p.diff).saturating_sub(1);
    if previous_close.is_some_and(|c| c >= close) || upper < 0 || upper < lower {
        return Ok(Vec::new());
    }
    store.fetch_all_timestamped(lower, upper)
}

/// Moves stream time to `now` without a record (the idle advance,
/// [`Windowing::advance_when_idle`](super::Windowing::advance_when_idle)): on close, forwards the
/// windows that became final (no headers, no origin: no record caused them), then advances the
/// store. Nothing happens if `now` is not past the stream time, or before the first record.
#[allow(
    dead_code,
    reason = "called by the idle advance of the core (window/mod.rs)"
)]
pub(crate) fn advance_idle<K: Clone + 'static, A: Clone + 'static>(
    state: &mut TimeWindowState<'_, K, A>,
    out: &mut Context<'_, Windowed<K>, A>,
    now: i64,
) -> Result<()> {
    let p = params(state)?;
    let store = state.window_store()?;
    let Some(before) = store.stream_time()? else {
        return Ok(());
    };
    if now <= before {
        return Ok(());
    }
    if p.emit == EmitStrategy::OnWindowClose {
        for (key, start, value, timestamp) in closed_windows(&store, p, Some(before), now)? {
            let window = Window {
                start,
                end: start.saturating_add(p.diff),
            };
            out.forward(Record::new(Windowed { key, window }, value).with_timestamp(timestamp));
        }
    }
    store.advance_stream_time_logged(now)?;
    Ok(())
}

fn params<K, A>(state: &TimeWindowState<'_, K, A>) -> Result<Params> {
    let Windows::Sliding(w) = state.windowing.windows() else {
        return Err(Error::Internal(
            "a sliding aggregation called for windows that are not sliding".into(),
        ));
    };
    Ok(Params {
        diff: w.difference_ms(),
        grace: w.grace_ms(),
        retention: state.windowing.retention_ms(),
        emit: state.windowing.emit_strategy(),
    })
}

/// Sliding-window aggregation (Kafka Streams' `KStreamSlidingWindowAggregate`): a new window's
/// aggregate is `first(record)`, `add` adds a record to an existing one. See the module docs.
pub(crate) fn aggregate_first<K: Clone + 'static, A: Clone + 'static, V>(
    state: &mut TimeWindowState<'_, K, A>,
    records: &[Record<K, V>],
    out: &mut Context<'_, Windowed<K>, A>,
    first: impl FnMut(&Record<K, V>) -> A,
    add: impl FnMut(&mut A, &Record<K, V>),
) -> Result<()> {
    let p = params(state)?;
    let (mut first, mut add) = (first, add);
    let store = state.window_store()?;
    let before = store.stream_time()?;
    let (events, now) = process(&store, p, before, records, &mut first, &mut add)?;
    for event in events {
        match event {
            Event::Forward {
                trigger,
                key,
                window,
                value,
                timestamp,
            } => {
                let r = &records[trigger];
                out.forward(Record {
                    key: Windowed { key, window },
                    value,
                    timestamp,
                    headers: r.headers.clone(),
                    origin: r.origin.clone(),
                });
            }
            Event::Negative { index } => {
                super::admit(out, &records[index])?;
            }
            Event::Late {
                index,
                stream_time,
                window: _,
            } => super::late(
                out,
                store.name(),
                &state.windowing,
                &records[index],
                stream_time,
            )?,
        }
    }
    if let Some(now) = now.filter(|n| Some(*n) != before) {
        store.advance_stream_time_logged(now)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Hand-computed against Java's `KStreamSlidingWindowAggregate` (4.x, `processReverse`, the
    //! RocksDB store's path): each expected list is what Java forwards (window, count, record
    //! timestamp) for the same input.
    use super::*;
    use crate::store::{StateStores, StoreSpec};
    use std::time::Duration;

    type Ev = Event<String, u64>;

    fn rec(key: &str, ts: i64) -> Record<String, ()> {
        Record::new(key.to_owned(), ()).with_timestamp(ts)
    }

    /// A forwarded count of `key`'s window `[start, start + 10]` (time difference 10).
    fn fwd(trigger: usize, key: &str, start: i64, value: u64, timestamp: i64) -> Ev {
        Event::Forward {
            trigger,
            key: key.to_owned(),
            window: Window {
                start,
                end: start + 10,
            },
            value,
            timestamp,
        }
    }

    /// A sliding count (difference 10) over `batches`; returns every batch's events (trigger
    /// indexes across batches) and the store's windows `(key, start, count, max timestamp)`.
    fn count(
        grace: i64,
        emit: EmitStrategy,
        batches: &[&[Record<String, ()>]],
    ) -> Result<(Vec<Ev>, Vec<(String, i64, u64, i64)>)> {
        let p = Params {
            diff: 10,
            grace,
            retention: 20 + grace,
            emit,
        };
        let spec = StoreSpec::new::<String, u64>("w").windowed(
            Duration::from_millis(10),
            Duration::from_millis(u64::try_from(p.retention).unwrap_or(0)),
        )?;
        let mut stores = StateStores::in_memory(vec![spec])?;
        let mut events = Vec::new();
        let mut offset = 0;
        for batch in batches {
            let evs = stores.transaction(|txn| {
                let store = txn.window_store::<String, u64>("w")?;
                let before = store.stream_time()?;
                let (evs, now) =
                    process(&store, p, before, batch, &mut |_| 1, &mut |n, _| *n += 1)?;
                if let Some(now) = now {
                    store.advance_stream_time(now)?;
                }
                Ok(evs)
            })?;
            events.extend(evs.into_iter().map(|e| match e {
                Event::Forward {
                    trigger,
                    key,
                    window,
                    value,
                    timestamp,
                } => Event::Forward {
                    trigger: trigger + offset,
                    key,
                    window,
                    value,
                    timestamp,
                },
                Event::Late {
                    index,
                    stream_time,
                    window,
                } => Event::Late {
                    index: index + offset,
                    stream_time,
                    window,
                },
                Event::Negative { index } => Event::Negative {
                    index: index + offset,
                },
            }));
            offset += batch.len();
        }
        let windows = stores.transaction(|txn| {
            let store = txn.window_store::<String, u64>("w")?;
            store.fetch_all_timestamped(i64::MIN, i64::MAX)
        })?;
        Ok((events, windows))
    }

    const UPDATE: EmitStrategy = EmitStrategy::OnWindowUpdate;
    const CLOSE: EmitStrategy = EmitStrategy::OnWindowClose;

    #[test]
    fn a_record_makes_its_left_window_and_a_later_one_the_right_windows() -> Result<()> {
        // 20: left [10,20]. 25: previous record 20, its right window [21,31] holds 25; left
        // [15,25] starts from [10,20]'s aggregate (20 >= 25 - 10): 2.
        let input = [rec("a", 20), rec("a", 25)];
        let (events, windows) = count(100, UPDATE, &[&input])?;
        assert_eq!(
            events,
            vec![
                fwd(0, "a", 10, 1, 20),
                fwd(1, "a", 21, 1, 25),
                fwd(1, "a", 15, 2, 25)
            ]
        );
        assert_eq!(
            windows,
            vec![
                ("a".into(), 10, 1, 20),
                ("a".into(), 15, 2, 25),
                ("a".into(), 21, 1, 25)
            ]
        );
        Ok(())
    }

    #[test]
    fn a_record_far_after_the_previous_one_starts_empty() -> Result<()> {
        // 20, then 40: 20's right window [21,31] would not hold 40 (31 < 40): not created; left
        // [30,40] does not reach 20: a count of 1.
        let input = [rec("a", 20), rec("a", 40)];
        let (events, _) = count(100, UPDATE, &[&input])?;
        assert_eq!(events, vec![fwd(0, "a", 10, 1, 20), fwd(1, "a", 30, 1, 40)]);
        Ok(())
    }

    #[test]
    fn an_out_of_order_record_updates_windows_and_creates_its_right_window() -> Result<()> {
        // 20, 30, then 25: windows [10,20]=1 ts20, [21,31]=1 ts30 (20's right window, made by
        // 30), [20,30]=2 ts30. Then 25 (reverse): [21,31] contains 25 -> 2 (rightAgg = its old
        // value 1 ts30); [20,30] contains 25 -> 3; [10,20] ends before 25: previous = 20,
        // leftAgg 1. Previous record's right window [21,..] exists. Left [15,25] from leftAgg:
        // 1 + 1 = 2, ts 25. Right window [26,36] from rightAgg (30 > 25): 1, ts 30.
        let input = [rec("a", 20), rec("a", 30), rec("a", 25)];
        let (events, windows) = count(100, UPDATE, &[&input])?;
        assert_eq!(
            events,
            vec![
                fwd(0, "a", 10, 1, 20),
                fwd(1, "a", 21, 1, 30),
                fwd(1, "a", 20, 2, 30),
                fwd(2, "a", 21, 2, 30),
                fwd(2, "a", 20, 3, 30),
                fwd(2, "a", 15, 2, 25),
                fwd(2, "a", 26, 1, 30),
            ]
        );
        assert_eq!(
            windows,
            vec![
                ("a".into(), 10, 1, 20),
                ("a".into(), 15, 2, 25),
                ("a".into(), 20, 3, 30),
                ("a".into(), 21, 2, 30),
                ("a".into(), 26, 1, 30),
            ]
        );
        Ok(())
    }

    #[test]
    fn a_record_at_a_window_edge_belongs_to_it() -> Result<()> {
        // 20 then 30 = 20 + d: the left window [20,30] includes 20 (both ends inclusive):
        // count 2; 20's right window [21,31] holds 30.
        let input = [rec("a", 20), rec("a", 30)];
        let (events, _) = count(100, UPDATE, &[&input])?;
        assert_eq!(
            events,
            vec![
                fwd(0, "a", 10, 1, 20),
                fwd(1, "a", 21, 1, 30),
                fwd(1, "a", 20, 2, 30)
            ]
        );
        // A second record at 30: its left window exists with max 30: updated, nothing else.
        let input = [rec("a", 20), rec("a", 30), rec("a", 30)];
        let (events, _) = count(100, UPDATE, &[&input])?;
        assert_eq!(
            events[3..],
            [fwd(2, "a", 21, 2, 30), fwd(2, "a", 20, 3, 30)]
        );
        Ok(())
    }

    #[test]
    fn early_records_share_the_first_window() -> Result<()> {
        // d = 10: 3 and 7 go to [0,10]; 7 also makes 3's right window [4,14].
        let input = [rec("a", 3), rec("a", 7)];
        let (events, _) = count(100, UPDATE, &[&input])?;
        assert_eq!(
            events,
            vec![
                fwd(0, "a", 0, 1, 3),
                fwd(1, "a", 4, 1, 7),
                fwd(1, "a", 0, 2, 7)
            ]
        );
        // Then 5, out of order: [4,14] holds it (rightAgg 1 ts 7) -> 2; its right window
        // [6,16] from rightAgg; 3's right window exists; [0,10] -> 3.
        let input = [rec("a", 3), rec("a", 7), rec("a", 5)];
        let (events, _) = count(100, UPDATE, &[&input])?;
        assert_eq!(
            events[3..],
            [
                fwd(2, "a", 4, 2, 7),
                fwd(2, "a", 6, 1, 7),
                fwd(2, "a", 0, 3, 7)
            ]
        );
        Ok(())
    }

    #[test]
    fn late_records_and_closed_windows() -> Result<()> {
        // Grace 5. Stream time 100 (close 95). A record at 84: 84 + 1 + 10 = 95 <= 95: late.
        // One at 85: its right window would end at 96 >= 95, so not late; its left window
        // [75,85] is closed (85 < 95): skipped; no window after it holds a record, so it is in
        // no open window: late too (Java counts it as a dropped record of its skipped window).
        let input = [rec("a", 100), rec("a", 84), rec("a", 85), rec("a", 95)];
        let (events, _) = count(5, UPDATE, &[&input])?;
        assert_eq!(
            events,
            vec![
                fwd(0, "a", 90, 1, 100),
                Event::Late {
                    index: 1,
                    stream_time: 100,
                    window: Window { start: 74, end: 84 }
                },
                Event::Late {
                    index: 2,
                    stream_time: 100,
                    window: Window { start: 75, end: 85 }
                },
                // 95: [90,100] holds it -> 2 (rightAgg 1 ts 100); left [85,95] ends at 95 >=
                // 95: created empty + 1; right [96,106] from rightAgg.
                fwd(3, "a", 90, 2, 100),
                fwd(3, "a", 85, 1, 95),
                fwd(3, "a", 96, 1, 100),
            ]
        );
        Ok(())
    }

    #[test]
    fn on_close_each_window_is_emitted_once_when_final() -> Result<()> {
        // Grace 0: close = stream time; a window is final when end < close.
        let input = [rec("a", 20), rec("a", 25), rec("b", 31), rec("b", 60)];
        let (events, _) = count(0, CLOSE, &[&input])?;
        // At 25 (close 25): windows ending in [20, 24] (starts in [10, 14]): [10,20]=1.
        // At 31 (close 31): ends in [25, 30], starts in [15, 20]: [15,25]=2.
        // At 60 (close 60): ends in [31, 59], starts in [21, 49]: a [21,31]=1 ts25, b [21,31]=1.
        assert_eq!(
            events,
            vec![
                fwd(1, "a", 10, 1, 20),
                fwd(2, "a", 15, 2, 25),
                fwd(3, "a", 21, 1, 25),
                fwd(3, "b", 21, 1, 31),
            ]
        );
        Ok(())
    }

    #[test]
    fn an_idle_advance_emits_what_a_record_at_that_time_would() -> Result<()> {
        let windowing = super::super::Windowing::new(Windows::Sliding(
            super::super::SlidingWindows::new(Duration::from_millis(10), Duration::ZERO)?,
        ))
        .emit(CLOSE);
        let spec = windowing.store_spec(StoreSpec::new::<String, u64>("w"));
        let mut stores = StateStores::in_memory(vec![spec])?;
        let input = [rec("a", 20), rec("a", 25)];
        let ((), out) = crate::testing::run_plain(&mut stores, |ctx| {
            let kv = crate::__private::binder(ctx).bind_any_named::<String, u64>("w")?;
            let mut state = TimeWindowState::new(kv, windowing);
            state.aggregate(&input, ctx, |_| 0, |n, _| *n += 1)?;
            // Stream time 25 -> 60: windows ending before 60 are final (the test above, by a
            // record at 60 of another key, gives the same).
            advance_idle(&mut state, ctx, 60)?;
            advance_idle(&mut state, ctx, 60)
        })?;
        let got: Vec<(i64, i64, u64, i64)> = out
            .into_iter()
            .map(|r| (r.key.window.start, r.key.window.end, r.value, r.timestamp))
            .collect();
        assert_eq!(got, vec![(10, 20, 1, 20), (15, 25, 2, 25), (21, 31, 1, 25)]);
        Ok(())
    }

    #[test]
    fn results_do_not_depend_on_batches() -> Result<()> {
        let input: Vec<Record<String, ()>> = [3, 20, 7, 25, 31, 22, 60, 45, 58, 90, 77]
            .iter()
            .enumerate()
            .map(|(i, ts)| rec(if i % 3 == 0 { "a" } else { "b" }, *ts))
            .collect();
        for emit in [UPDATE, CLOSE] {
            let whole = count(12, emit, &[&input])?;
            let singles: Vec<&[Record<String, ()>]> = input.chunks(1).collect();
            assert_eq!(count(12, emit, &singles)?, whole);
            let threes: Vec<&[Record<String, ()>]> = input.chunks(3).collect();
            assert_eq!(count(12, emit, &threes)?, whole);
            assert!(!whole.0.is_empty());
        }
        Ok(())
    }
}
