//! (W2) Session windows: `SessionWindowState::aggregate`. This file is W2's; the core's first
//! commit only put the signatures here.

use super::{SessionWindowState, SessionWindowed};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::record::Record;

impl<'t, K: Clone + 'static, A: Clone + 'static> SessionWindowState<'t, K, A> {
    /// Puts each record into its session, merging the sessions within the gap (`merge(key, a,
    /// b)` combines two aggregates), as Kafka Streams' `KStreamSessionWindowAggregate`. Output
    /// values are `Option<A>`: on update, a merged-away session is forwarded with `None` (a
    /// tombstone). Stream time, lateness and emission as
    /// [`TimeWindowState::aggregate`](super::TimeWindowState::aggregate).
    pub fn aggregate<V>(
        &mut self,
        records: &[Record<K, V>],
        out: &mut Context<'_, SessionWindowed<K>, Option<A>>,
        init: impl FnMut(&K) -> A,
        add: impl FnMut(&mut A, &Record<K, V>),
        merge: impl FnMut(&K, A, A) -> A,
    ) -> Result<()> {
        let (mut init, add) = (init, std::cell::RefCell::new(add));
        self.aggregate_first(
            records,
            out,
            |r| {
                let mut a = init(&r.key);
                (add.borrow_mut())(&mut a, r);
                a
            },
            |a, r| (add.borrow_mut())(a, r),
            merge,
        )
    }

    /// [`aggregate`](Self::aggregate) where a new session's aggregate is `first(record)` (the
    /// record is not then added): what the library's `count` and `reduce` call.
    pub(crate) fn aggregate_first<V>(
        &mut self,
        records: &[Record<K, V>],
        out: &mut Context<'_, SessionWindowed<K>, Option<A>>,
        first: impl FnMut(&Record<K, V>) -> A,
        add: impl FnMut(&mut A, &Record<K, V>),
        merge: impl FnMut(&K, A, A) -> A,
    ) -> Result<()> {
        let _ = (records, out, first, add, merge);
        Err(Error::Config("session windows: not implemented yet".into()))
    }
}
