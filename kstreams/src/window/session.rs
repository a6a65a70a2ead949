//! Session windows: [`SessionWindowState::aggregate`], Kafka Streams' `KStreamSessionWindowAggregate`
//! (4.x) over a [`SessionStore`].
//!
//! Owns: merging a record with its key's sessions, session lateness, and what a session
//! aggregation forwards (on update and on close). May not touch the store's layout or retention
//! (`store/session.rs`).
//!
//! Per record, in batch order, exactly as Java's processor:
//! - stream time = the largest timestamp so far, the record's included; `close = stream time −
//!   grace − gap` (Java's `windowCloseTime`: a session stays open for one more gap after its end,
//!   plus the grace).
//! - the record at `ts` merges with every session of its key that ends at or after `ts − gap` and
//!   starts at or before `ts + gap` (and is not expired: its end is after `stream time −
//!   retention`, the store's rule in Java); the merged session is `[min start, max end]`, its
//!   aggregate `merge(merge(init, s1), s2) ..` in the sessions' order (by end), then the record
//!   added.
//! - the record is late when the merged session ends before `close` (so a record that would join
//!   a closed session is late too, unless it extends the session past `close`); late records go to
//!   the late path (counted, dead-lettered under `OnLate::DeadLetter`) and change nothing.
//! - otherwise the merged-away sessions are removed (on update each is forwarded as `None`, a
//!   tombstone), and the merged session is written (on update forwarded); forwarded results carry
//!   the session's end as timestamp.
//! - on close, once per record whose `close` moved forward, every session ending in
//!   `[max(0, previous close), close − 1]` is forwarded, in (end, start, key bytes) order (Java's time-first
//!   session key): each session once, when final.
//!
//! Differences from Java, on purpose: emission on close is not throttled by wall-clock time
//! (Java's internal `emit.interval.ms`, 1 s by default, only delays it: the same sessions come
//! out, at most one second of processing later there); a record with a negative timestamp (Java's
//! timestamp extractors drop it) is a bad record, through the processing policy.
//!
//! The store's stream time is kept one millisecond behind the operator's, so that a session
//! whose end is exactly `stream time − retention` (hidden from merges, as in Java, by the
//! operator's own check) is still readable when it closes one millisecond later, and emitted; the
//! stream time the store persists and logs (`advance_stream_time_logged`, once per batch) is
//! therefore the operator's minus 1 ms.

use super::{EmitStrategy, SessionWindowState, SessionWindowed, Window, Windows};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::record::{Headers, Record};
use crate::store::{SessionStore, SessionWindow, WindowWrite};

/// How a new session's aggregate starts.
enum Start<'a, K, V, A> {
    /// `init(key)`, then merged sessions, then the record added (the public `aggregate`).
    Init(&'a mut dyn FnMut(&K) -> A),
    /// `first(record)` when nothing merges; otherwise the merged sessions, then the record
    /// added (the library's `count` and `reduce`, whose `init` would be an identity).
    First(&'a mut dyn FnMut(&Record<K, V>) -> A),
}

/// The parameters of one session aggregation.
#[derive(Debug, Clone, Copy)]
struct Params {
    gap: i64,
    grace: i64,
    retention: i64,
    emit: EmitStrategy,
}

/// What processing a batch produced, in order.
#[derive(Debug, Clone, PartialEq)]
enum Event<K, A> {
    /// A result to forward: caused by `records[trigger]`; `trigger_headers` says whether it
    /// carries that record's headers (emission on close does, updates do not, as Java).
    Forward {
        trigger: usize,
        key: K,
        window: Window,
        value: Option<A>,
        trigger_headers: bool,
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

fn window(s: SessionWindow) -> Window {
    Window {
        start: s.start,
        end: s.end,
    }
}

/// The operator's stream time, kept in the store one millisecond behind (see the module docs).
pub(crate) fn operator_stream_time<K: 'static, A: 'static>(
    store: &SessionStore<'_, K, A>,
) -> Result<Option<i64>> {
    Ok(store.stream_time()?.map(|t| t.saturating_add(1)))
}

/// Runs the session aggregation over `records`, writing the store, and returns what to forward
/// and which records are late.
fn process<K: Clone + 'static, A: Clone + 'static, V>(
    store: &SessionStore<'_, K, A>,
    p: Params,
    records: &[Record<K, V>],
    start: &mut Start<'_, K, V, A>,
    add: &mut dyn FnMut(&mut A, &Record<K, V>),
    merge: &mut dyn FnMut(&K, A, A) -> A,
) -> Result<Vec<Event<K, A>>> {
    let mut events = Vec::new();
    let before = operator_stream_time(store)?;
    let mut now = before;
    let on_update = p.emit == EmitStrategy::OnWindowUpdate;
    for (index, r) in records.iter().enumerate() {
        let ts = r.timestamp;
        if r.timestamp < 0 {
            events.push(Event::Negative { index });
            continue;
        }
        let previous = now;
        let st = now.map_or(ts, |t| t.max(ts));
        now = Some(st);
        let close = st.saturating_sub(p.grace).saturating_sub(p.gap);
        let expired_at_or_before = st.saturating_sub(p.retention);

        let found: Vec<(SessionWindow, A)> = store
            .find_sessions(&r.key, ts.saturating_sub(p.gap), ts.saturating_add(p.gap))?
            .into_iter()
            .filter(|(s, _)| s.end > expired_at_or_before)
            .collect();
        let new_session = SessionWindow::new(ts, ts);
        let merged = found.iter().fold(new_session, |m, (s, _)| {
            SessionWindow::new(m.start.min(s.start), m.end.max(s.end))
        });

        if merged.end < close {
            events.push(Event::Late {
                index,
                stream_time: st,
                window: window(merged),
            });
        } else {
            if merged != new_session {
                for (s, _) in &found {
                    store.remove(&r.key, *s)?;
                    if on_update {
                        events.push(Event::Forward {
                            trigger: index,
                            key: r.key.clone(),
                            window: window(*s),
                            value: None,
                            trigger_headers: false,
                        });
                    }
                }
            }
            let agg = aggregate(&r.key, r, found, start, add, merge);
            // The store (one millisecond behind) never hides a session that ends at or after
            // `close`: retention >= gap + grace.
            if store.put(&r.key, merged, &agg)? == WindowWrite::Expired {
                return Err(Error::Internal(format!(
                    "session store `{}` refused the open session [{}, {}] at stream time {st}",
                    store.name(),
                    merged.start,
                    merged.end
                )));
            }
            if on_update {
                events.push(Event::Forward {
                    trigger: index,
                    key: r.key.clone(),
                    window: window(merged),
                    value: Some(agg),
                    trigger_headers: false,
                });
            }
        }

        if p.emit == EmitStrategy::OnWindowClose {
            for (key, s, agg) in closed_sessions(store, p, previous, st)? {
                events.push(Event::Forward {
                    trigger: index,
                    key,
                    window: window(s),
                    value: Some(agg),
                    trigger_headers: true,
                });
            }
        }
    }
    // Once per batch: the store's own hiding (by its older stream time) shows a superset of
    // what Java's store shows, which the checks above narrow record by record.
    if let Some(st) = now.filter(|n| Some(*n) != before) {
        store.advance_stream_time_logged(st.saturating_sub(1))?;
    }
    Ok(events)
}

/// The sessions that became final when stream time moved from `previous` to `now` (Java's
/// `maybeForwardFinalResult`): those ending in `[max(0, previous close), close − 1]`, in (end,
/// start, key bytes) order; none unless the close moved forward.
fn closed_sessions<K: 'static, A: 'static>(
    store: &SessionStore<'_, K, A>,
    p: Params,
    previous: Option<i64>,
    now: i64,
) -> Result<Vec<(K, SessionWindow, A)>> {
    let close_at = |t: i64| t.saturating_sub(p.grace).saturating_sub(p.gap);
    let close = close_at(now);
    // Java's lastEmitWindowCloseTime: the previous close (NO_TIMESTAMP before the first record).
    let previous_close = previous.map_or(-1, close_at);
    let (lower, upper) = (previous_close.max(0), close.saturating_sub(1));
    if (previous.is_some() && previous_close >= close) || upper < 0 || upper < lower {
        return Ok(Vec::new());
    }
    // The store gives (end, key bytes, start); Java's time-first session key is (end, start,
    // key bytes): a stable sort by (end, start) keeps key byte order.
    let mut closed = store.find_all_sessions(lower, upper)?;
    closed.sort_by_key(|(_, s, _)| (s.end, s.start));
    Ok(closed)
}

/// The merged session's aggregate (Java: `init`, merged with each session in order, then the
/// record added).
fn aggregate<K, V, A>(
    key: &K,
    r: &Record<K, V>,
    found: Vec<(SessionWindow, A)>,
    start: &mut Start<'_, K, V, A>,
    add: &mut dyn FnMut(&mut A, &Record<K, V>),
    merge: &mut dyn FnMut(&K, A, A) -> A,
) -> A {
    let mut found = found.into_iter().map(|(_, a)| a);
    let mut agg = match start {
        Start::Init(init) => init(key),
        Start::First(first) => match found.next() {
            Some(a) => a,
            None => return first(r),
        },
    };
    for a in found {
        agg = merge(key, agg, a);
    }
    add(&mut agg, r);
    agg
}

impl<'t, K: Clone + 'static, A: Clone + 'static> SessionWindowState<'t, K, A> {
    /// Puts each record into its session, merging the sessions within the gap (`merge(key, a,
    /// b)` combines two aggregates), as Kafka Streams' `KStreamSessionWindowAggregate`. Output
    /// values are `Option<A>`: on update, a merged-away session is forwarded with `None` (a
    /// tombstone) before the merged session's value.
    ///
    /// Stream time is the largest timestamp so far (the current record included); a session
    /// accepts a record while the merged session's `end + gap + grace >= stream time` (Java's
    /// check); a record that fails it is late (counted, and dead-lettered under
    /// [`OnLate::DeadLetter`](super::OnLate::DeadLetter)). On close, each session is forwarded
    /// once, when `end + gap + grace < stream time`, in (end, start, key bytes) order, with the
    /// session's end as timestamp. See the module docs of `window::session` for the rules.
    ///
    /// A new session's aggregate is `init(key)`; when a record joins sessions their aggregates
    /// are merged into it in the order of their ends, then the record is added.
    pub fn aggregate<V>(
        &mut self,
        records: &[Record<K, V>],
        out: &mut Context<'_, SessionWindowed<K>, Option<A>>,
        init: impl FnMut(&K) -> A,
        add: impl FnMut(&mut A, &Record<K, V>),
        merge: impl FnMut(&K, A, A) -> A,
    ) -> Result<()> {
        let (mut init, mut add, mut merge) = (init, add, merge);
        self.run(records, out, Start::Init(&mut init), &mut add, &mut merge)
    }

    /// [`aggregate`](Self::aggregate) where a new session's aggregate is `first(record)` (the
    /// record is not then added): what the library's `count` and `reduce` call. A record that
    /// joins sessions starts from the first of them (by end), merges the others into it, then is
    /// added.
    pub(crate) fn aggregate_first<V>(
        &mut self,
        records: &[Record<K, V>],
        out: &mut Context<'_, SessionWindowed<K>, Option<A>>,
        first: impl FnMut(&Record<K, V>) -> A,
        add: impl FnMut(&mut A, &Record<K, V>),
        merge: impl FnMut(&K, A, A) -> A,
    ) -> Result<()> {
        let (mut first, mut add, mut merge) = (first, add, merge);
        self.run(records, out, Start::First(&mut first), &mut add, &mut merge)
    }

    fn params(&self) -> Result<Params> {
        let Windows::Session(w) = self.windowing.windows() else {
            return Err(Error::Config(format!(
                "store `{}` keeps time or sliding windows: its aggregation is \
                 TimeWindowState::aggregate, not a session aggregation",
                self.store.name()
            )));
        };
        Ok(Params {
            gap: w.gap_ms(),
            grace: w.grace_ms(),
            retention: self.windowing.retention_ms(),
            emit: self.windowing.emit_strategy(),
        })
    }

    /// Moves stream time to `now` without a record (the idle advance,
    /// [`Windowing::advance_when_idle`](super::Windowing::advance_when_idle)): on close, forwards
    /// the sessions that became final (no headers, no origin: no record caused them), then
    /// advances the store. Nothing happens if `now` is not past the stream time, or before the
    /// first record.
    #[allow(
        dead_code,
        reason = "called by the idle advance of the core (window/mod.rs)"
    )]
    pub(crate) fn advance_idle(
        &mut self,
        out: &mut Context<'_, SessionWindowed<K>, Option<A>>,
        now: i64,
    ) -> Result<()> {
        let p = self.params()?;
        let store = self.session_store()?;
        let Some(before) = operator_stream_time(&store)? else {
            return Ok(());
        };
        if now <= before {
            return Ok(());
        }
        if p.emit == EmitStrategy::OnWindowClose {
            for (key, s, agg) in closed_sessions(&store, p, Some(before), now)? {
                out.forward(
                    Record::new(
                        SessionWindowed {
                            key,
                            window: window(s),
                        },
                        Some(agg),
                    )
                    .with_timestamp(s.end),
                );
            }
        }
        store.advance_stream_time_logged(now.saturating_sub(1))?;
        Ok(())
    }

    fn run<V>(
        &mut self,
        records: &[Record<K, V>],
        out: &mut Context<'_, SessionWindowed<K>, Option<A>>,
        mut start: Start<'_, K, V, A>,
        add: &mut dyn FnMut(&mut A, &Record<K, V>),
        merge: &mut dyn FnMut(&K, A, A) -> A,
    ) -> Result<()> {
        let params = self.params()?;
        let store = self.session_store()?;
        let events = process(&store, params, records, &mut start, add, merge)?;
        for event in events {
            match event {
                Event::Forward {
                    trigger,
                    key,
                    window,
                    value,
                    trigger_headers,
                } => {
                    let r = &records[trigger];
                    out.forward(Record {
                        key: SessionWindowed { key, window },
                        value,
                        timestamp: window.end,
                        headers: if trigger_headers {
                            r.headers.clone()
                        } else {
                            Headers::new()
                        },
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
                    &self.windowing,
                    &records[index],
                    stream_time,
                )?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Hand-computed against Java's `KStreamSessionWindowAggregate` (4.x): each expected list is
    //! what Java forwards (`Change.newValue`, key, window) for the same input.
    use super::*;
    use crate::store::{StateStores, StoreSpec};
    use std::time::Duration;

    type Ev = Event<String, u64>;

    fn rec(key: &str, ts: i64) -> Record<String, ()> {
        Record::new(key.to_owned(), ()).with_timestamp(ts)
    }

    fn upd(trigger: usize, key: &str, start: i64, end: i64, value: Option<u64>) -> Ev {
        Event::Forward {
            trigger,
            key: key.to_owned(),
            window: Window { start, end },
            value,
            trigger_headers: false,
        }
    }

    fn fin(trigger: usize, key: &str, start: i64, end: i64, value: u64) -> Ev {
        Event::Forward {
            trigger,
            key: key.to_owned(),
            window: Window { start, end },
            value: Some(value),
            trigger_headers: true,
        }
    }

    fn late(index: usize, stream_time: i64, start: i64, end: i64) -> Ev {
        Event::Late {
            index,
            stream_time,
            window: Window { start, end },
        }
    }

    /// A session count (Java's `count()`: init 0, add 1, merge a + b) over `batches`, in one
    /// store; returns the events of every batch, concatenated, and the store's sessions.
    fn count(
        gap: i64,
        grace: i64,
        retention: Option<i64>,
        emit: EmitStrategy,
        batches: &[&[Record<String, ()>]],
    ) -> Result<(Vec<Ev>, Vec<(String, i64, i64, u64)>)> {
        let retention = retention.unwrap_or(gap + grace);
        let spec = StoreSpec::new::<String, u64>("s").sessions(Duration::from_millis(
            u64::try_from(retention).map_err(|e| Error::Internal(e.to_string()))?,
        ))?;
        let mut stores = StateStores::in_memory(vec![spec])?;
        let p = Params {
            gap,
            grace,
            retention,
            emit,
        };
        let mut events = Vec::new();
        let mut offset = 0;
        for batch in batches {
            let evs = stores.transaction(|txn| {
                let store = txn.session_store::<String, u64>("s")?;
                process(
                    &store,
                    p,
                    batch,
                    &mut Start::Init(&mut |_| 0),
                    &mut |n, _| *n += 1,
                    &mut |_, a, b| a + b,
                )
            })?;
            events.extend(evs.into_iter().map(|e| match e {
                Event::Forward {
                    trigger,
                    key,
                    window,
                    value,
                    trigger_headers,
                } => Event::Forward {
                    trigger: trigger + offset,
                    key,
                    window,
                    value,
                    trigger_headers,
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
        let sessions = stores.transaction(|txn| {
            let store = txn.session_store::<String, u64>("s")?;
            Ok(store
                .find_all_sessions(i64::MIN, i64::MAX)?
                .into_iter()
                .map(|(k, s, v)| (k, s.start, s.end, v))
                .collect::<Vec<_>>())
        })?;
        Ok((events, sessions))
    }

    const UPDATE: EmitStrategy = EmitStrategy::OnWindowUpdate;
    const CLOSE: EmitStrategy = EmitStrategy::OnWindowClose;

    #[test]
    fn a_record_within_the_gap_merges_and_the_old_session_is_tombstoned() -> Result<()> {
        let input = [rec("a", 0), rec("a", 5), rec("a", 20)];
        let (events, sessions) = count(10, 100, None, UPDATE, &[&input])?;
        assert_eq!(
            events,
            vec![
                upd(0, "a", 0, 0, Some(1)),
                upd(1, "a", 0, 0, None),
                upd(1, "a", 0, 5, Some(2)),
                // 20 - 10 = 10 > 5: a new session.
                upd(2, "a", 20, 20, Some(1)),
            ]
        );
        assert_eq!(
            sessions,
            vec![("a".into(), 0, 5, 2), ("a".into(), 20, 20, 1)]
        );
        Ok(())
    }

    #[test]
    fn a_record_bridging_two_sessions_merges_both() -> Result<()> {
        // Sessions [0,0] and [20,20] (gap 10); a record at 10 is within the gap of both.
        let input = [rec("a", 0), rec("a", 20), rec("a", 10)];
        let (events, sessions) = count(10, 100, None, UPDATE, &[&input])?;
        assert_eq!(
            events,
            vec![
                upd(0, "a", 0, 0, Some(1)),
                upd(1, "a", 20, 20, Some(1)),
                upd(2, "a", 0, 0, None),
                upd(2, "a", 20, 20, None),
                upd(2, "a", 0, 20, Some(3)),
            ]
        );
        assert_eq!(sessions, vec![("a".into(), 0, 20, 3)]);
        Ok(())
    }

    #[test]
    fn three_sessions_merge_into_one_in_two_steps() -> Result<()> {
        // Gap 10. One record joins at most two sessions (two sessions of a key are more than a
        // gap apart), so three become one in two steps: [0,0], [15,15], [30,30]; 8 joins the
        // first two, 22 joins [0,15] and [30,30].
        let input = [
            rec("a", 0),
            rec("a", 15),
            rec("a", 30),
            rec("a", 8),
            rec("a", 22),
        ];
        let (events, sessions) = count(10, 100, None, UPDATE, &[&input])?;
        assert_eq!(
            events,
            vec![
                upd(0, "a", 0, 0, Some(1)),
                upd(1, "a", 15, 15, Some(1)),
                upd(2, "a", 30, 30, Some(1)),
                upd(3, "a", 0, 0, None),
                upd(3, "a", 15, 15, None),
                upd(3, "a", 0, 15, Some(3)),
                upd(4, "a", 0, 15, None),
                upd(4, "a", 30, 30, None),
                upd(4, "a", 0, 30, Some(5)),
            ]
        );
        assert_eq!(sessions, vec![("a".into(), 0, 30, 5)]);
        Ok(())
    }

    #[test]
    fn a_record_inside_a_session_tombstones_and_rewrites_it() -> Result<()> {
        // [0,8] exists; a record at 4 merges into [0,8], which differs from [4,4]: Java removes
        // the session (forwarding its tombstone) and writes it again with the new count.
        let input = [rec("a", 0), rec("a", 8), rec("a", 4)];
        let (events, sessions) = count(10, 100, None, UPDATE, &[&input])?;
        assert_eq!(
            events[3..],
            [upd(2, "a", 0, 8, None), upd(2, "a", 0, 8, Some(3))]
        );
        assert_eq!(sessions, vec![("a".into(), 0, 8, 3)]);
        Ok(())
    }

    #[test]
    fn keys_have_their_own_sessions_and_a_repeat_timestamp_is_no_merge() -> Result<()> {
        let input = [rec("a", 0), rec("b", 1), rec("a", 0)];
        let (events, _) = count(10, 100, None, UPDATE, &[&input])?;
        // The second record at 0 finds [0,0]: the merged session equals the new one, so nothing
        // is removed (Java's `!mergedWindow.equals(newSessionWindow)`).
        assert_eq!(
            events,
            vec![
                upd(0, "a", 0, 0, Some(1)),
                upd(1, "b", 1, 1, Some(1)),
                upd(2, "a", 0, 0, Some(2)),
            ]
        );
        Ok(())
    }

    #[test]
    fn lateness_is_end_plus_gap_plus_grace_against_stream_time() -> Result<()> {
        // Gap 10, grace 5: close = stream time - 15.
        let input = [
            rec("a", 100), // stream time 100, close 85
            rec("b", 85),  // [85,85]: end 85 >= 85, accepted
            rec("c", 84),  // [84,84]: end 84 < 85, late
            rec("b", 80),  // [85,85] is expired (85 <= 100 - retention 15): alone, late
            rec("b", 86),  // [86,86]: accepted
            rec("b", 80),  // merges with [86,86] -> [80,86]: accepted
            rec("a", 90),  // merges with [100,100] -> [90,100]
        ];
        let (events, _) = count(10, 5, None, UPDATE, &[&input])?;
        assert_eq!(
            events,
            vec![
                upd(0, "a", 100, 100, Some(1)),
                upd(1, "b", 85, 85, Some(1)),
                late(2, 100, 84, 84),
                late(3, 100, 80, 80),
                upd(4, "b", 86, 86, Some(1)),
                upd(5, "b", 86, 86, None),
                upd(5, "b", 80, 86, Some(2)),
                upd(6, "a", 100, 100, None),
                upd(6, "a", 90, 100, Some(2)),
            ]
        );
        Ok(())
    }

    #[test]
    fn a_record_that_would_join_a_closed_session_is_late_unless_it_reaches_past_close() -> Result<()>
    {
        // Gap 10, grace 0, retention 1000 (so closed sessions stay readable, as a long
        // retention keeps them in Java). [0,0], then stream time 30 (close 20).
        let input = [
            rec("a", 0),
            rec("b", 30),
            rec("a", 5),  // would merge into [0,0] -> [0,5]: end 5 < 20, late
            rec("a", 21), // 21 - 10 = 11 > 0: alone, [21,21] is open
            rec("a", 19), // merges with [21,21] -> [19,21], end 21 >= 20: accepted
        ];
        let (events, _) = count(10, 0, Some(1000), UPDATE, &[&input])?;
        assert_eq!(
            events,
            vec![
                upd(0, "a", 0, 0, Some(1)),
                upd(1, "b", 30, 30, Some(1)),
                late(2, 30, 0, 5),
                upd(3, "a", 21, 21, Some(1)),
                upd(4, "a", 21, 21, None),
                upd(4, "a", 19, 21, Some(2)),
            ]
        );
        // A record that would join a closed session and still ends before close is late.
        let input = [rec("a", 12), rec("b", 40), rec("a", 22)];
        let (events, _) = count(10, 0, Some(1000), UPDATE, &[&input])?;
        assert_eq!(
            events,
            vec![
                upd(0, "a", 12, 12, Some(1)),
                upd(1, "b", 40, 40, Some(1)),
                late(2, 40, 12, 22),
            ]
        );
        // One that extends it to close or later merges with it (Java merges whatever the store
        // still holds): close = 32 - 10 = 22, [12,12] is closed, [12,22] ends at 22 >= 22.
        let input = [rec("a", 12), rec("b", 32), rec("a", 22)];
        let (events, _) = count(10, 0, Some(1000), UPDATE, &[&input])?;
        assert_eq!(
            events,
            vec![
                upd(0, "a", 12, 12, Some(1)),
                upd(1, "b", 32, 32, Some(1)),
                upd(2, "a", 12, 12, None),
                upd(2, "a", 12, 22, Some(2)),
            ]
        );
        Ok(())
    }

    #[test]
    fn expired_sessions_are_not_merged_with() -> Result<()> {
        // Gap 10, grace 0, default retention 10: at stream time 20 the session [10,10] is
        // expired (10 <= 20 - 10) though not closed (close 10, end 10 is not < 10). Java's
        // store hides it from findSessions, so a record at 15 starts a session of its own.
        let input = [rec("a", 10), rec("b", 20), rec("a", 15)];
        let (events, _) = count(10, 0, None, UPDATE, &[&input])?;
        assert_eq!(
            events,
            vec![
                upd(0, "a", 10, 10, Some(1)),
                upd(1, "b", 20, 20, Some(1)),
                upd(2, "a", 15, 15, Some(1)),
            ]
        );
        Ok(())
    }

    #[test]
    fn out_of_order_records_within_grace_merge_as_in_order_ones() -> Result<()> {
        let input = [rec("a", 30), rec("a", 10), rec("a", 20)];
        let (events, sessions) = count(10, 100, None, UPDATE, &[&input])?;
        assert_eq!(
            events,
            vec![
                upd(0, "a", 30, 30, Some(1)),
                upd(1, "a", 10, 10, Some(1)),
                upd(2, "a", 10, 10, None),
                upd(2, "a", 30, 30, None),
                upd(2, "a", 10, 30, Some(3)),
            ]
        );
        assert_eq!(sessions, vec![("a".into(), 10, 30, 3)]);
        Ok(())
    }

    #[test]
    fn on_close_each_session_is_emitted_once_when_final() -> Result<()> {
        // Gap 10, grace 5: a session is final when end + 15 < stream time.
        let input = [
            rec("a", 0),
            rec("b", 3),
            rec("a", 5),  // [0,5]
            rec("c", 20), // close 5: sessions ending in [0, 4]: b [3,3]
            rec("a", 21), // close 6: ending in [5, 5]: a [0,5]
            rec("a", 21), // close 6 again: nothing
            rec("c", 60), // close 45: ending in [6, 44]: c [20,20], then a [21,21] (by end)
        ];
        let (events, sessions) = count(10, 5, None, CLOSE, &[&input])?;
        assert_eq!(
            events,
            vec![
                fin(3, "b", 3, 3, 1),
                fin(4, "a", 0, 5, 2),
                fin(6, "c", 20, 20, 1),
                fin(6, "a", 21, 21, 2),
            ]
        );
        // The open session is kept; the emitted ones expire with the store's retention.
        assert!(sessions.contains(&("c".into(), 60, 60, 1)));
        Ok(())
    }

    #[test]
    fn on_close_sessions_of_one_end_come_out_by_start_then_key() -> Result<()> {
        // Gap 10, grace 0: a [5,5] and b [0,5] both end at 5; Java's order is (end, start, key
        // bytes): b first.
        let input = [rec("b", 0), rec("b", 5), rec("a", 5), rec("c", 16)];
        let (events, _) = count(10, 0, None, CLOSE, &[&input])?;
        assert_eq!(events, vec![fin(3, "b", 0, 5, 2), fin(3, "a", 5, 5, 1)]);
        Ok(())
    }

    #[test]
    fn an_idle_advance_emits_what_a_record_at_that_time_would() -> Result<()> {
        let windowing = super::super::Windowing::new(Windows::Session(
            super::super::SessionWindows::new(Duration::from_millis(10), Duration::from_millis(5))?,
        ))
        .emit(CLOSE);
        let spec = windowing.store_spec(StoreSpec::new::<String, u64>("s"));
        let mut stores = StateStores::in_memory(vec![spec])?;
        let input = [rec("a", 0), rec("b", 3), rec("a", 5)];
        let ((), out) = crate::testing::run_plain(&mut stores, |ctx| {
            let kv = crate::__private::binder(ctx).bind_any_named::<String, u64>("s")?;
            let mut state = SessionWindowState::new(kv, windowing);
            state.aggregate(&input, ctx, |_| 0, |n, _| *n += 1, |_, a, b| a + b)?;
            // Stream time 5 -> 21: close 6; both sessions are final.
            state.advance_idle(ctx, 21)?;
            // Not past the stream time: nothing.
            state.advance_idle(ctx, 21)
        })?;
        let got: Vec<(String, i64, i64, Option<u64>, i64)> = out
            .into_iter()
            .map(|r| {
                (
                    r.key.key,
                    r.key.window.start,
                    r.key.window.end,
                    r.value,
                    r.timestamp,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("b".into(), 3, 3, Some(1), 3),
                ("a".into(), 0, 5, Some(2), 5)
            ]
        );
        Ok(())
    }

    #[test]
    fn on_close_a_session_at_the_retention_boundary_is_still_emitted() -> Result<()> {
        // Retention = gap + grace = 10. At stream time 20 the session [10,10] is hidden from
        // merges (10 <= 20 - 10) but closes only at stream time 21 (10 < 21 - 10).
        // One batch per record, so the store's stream time moves between them.
        let input = [rec("a", 10), rec("b", 20), rec("b", 21)];
        let batches: Vec<&[Record<String, ()>]> = input.chunks(1).collect();
        let (events, _) = count(10, 0, None, CLOSE, &batches)?;
        assert_eq!(events, vec![fin(2, "a", 10, 10, 1)]);
        Ok(())
    }

    #[test]
    fn on_close_emission_does_not_depend_on_batches() -> Result<()> {
        let input: Vec<Record<String, ()>> = [0, 3, 5, 30, 2, 31, 50, 44, 90]
            .iter()
            .enumerate()
            .map(|(i, ts)| rec(if i % 2 == 0 { "a" } else { "b" }, *ts))
            .collect();
        let whole = count(10, 5, None, CLOSE, &[&input])?;
        let singles: Vec<&[Record<String, ()>]> = input.chunks(1).collect();
        assert_eq!(count(10, 5, None, CLOSE, &singles)?, whole);
        let pairs: Vec<&[Record<String, ()>]> = input.chunks(2).collect();
        assert_eq!(count(10, 5, None, CLOSE, &pairs)?, whole);
        assert!(!whole.0.is_empty());
        Ok(())
    }

    #[test]
    fn negative_timestamps_are_bad_records_and_do_not_move_stream_time() -> Result<()> {
        let input = [rec("a", -5), rec("a", 3)];
        let (events, _) = count(10, 0, None, UPDATE, &[&input])?;
        assert_eq!(
            events,
            vec![Event::Negative { index: 0 }, upd(1, "a", 3, 3, Some(1))]
        );
        Ok(())
    }

    #[test]
    fn first_starts_from_the_first_merged_session() -> Result<()> {
        // A reduce that concatenates: merged sessions in order of their ends, then the record.
        let spec = StoreSpec::new::<String, String>("s").sessions(Duration::from_millis(100))?;
        let mut stores = StateStores::in_memory(vec![spec])?;
        let p = Params {
            gap: 10,
            grace: 90,
            retention: 100,
            emit: UPDATE,
        };
        let input: Vec<Record<String, String>> = [(0, "x"), (20, "y"), (10, "z")]
            .iter()
            .map(|(ts, v)| Record::new("k".to_owned(), (*v).to_owned()).with_timestamp(*ts))
            .collect();
        let events = stores.transaction(|txn| {
            let store = txn.session_store::<String, String>("s")?;
            process(
                &store,
                p,
                &input,
                &mut Start::First(&mut |r| r.value.clone()),
                &mut |a, r| a.push_str(&r.value),
                &mut |_, a, b| a + &b,
            )
        })?;
        let Some(Event::Forward { value, window, .. }) = events.last() else {
            return Err(Error::Internal("no event".into()));
        };
        assert_eq!(
            (value.as_deref(), *window),
            (Some("xyz"), Window { start: 0, end: 20 })
        );
        Ok(())
    }
}
