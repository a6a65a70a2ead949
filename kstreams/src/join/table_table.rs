//! Table-table joins: Kafka Streams' `KTableKTableInnerJoin`, `KTableKTableLeftJoin` (with
//! `KTableKTableRightJoin` on its right side) and `KTableKTableOuterJoin`, batch-first.

use std::marker::PhantomData;
use std::sync::Arc;

use super::{JoinKind, TableOf, versioned_history};
use crate::context::Context;
use crate::error::Result;
use crate::processor::BatchProcessor;
use crate::record::Record;
use crate::store::StoreSpec;
use crate::table::{Change, Table, TableStore};
use crate::topology::{Stream, TopologyBuilder};

type SideJoiner<TV, OV, VO> = Arc<dyn Fn(Option<&TV>, Option<&OV>) -> VO + Send + Sync>;

/// What one side's change emits, given the other side's current value (Java's rules; `None`
/// is nothing, `Some(None)` a tombstone).
fn result<TV, OV, VO>(
    kind: JoinKind,
    this_is_left: bool,
    change: &Change<TV>,
    other: Option<&OV>,
    joiner: &dyn Fn(Option<&TV>, Option<&OV>) -> VO,
) -> Option<Option<VO>> {
    match kind {
        // `KTableKTableInnerJoin`, both sides: nothing without the other side; a delete of
        // this side is a tombstone.
        JoinKind::Inner => {
            let other = other?;
            Some(change.new.as_ref().map(|n| joiner(Some(n), Some(other))))
        }
        // `KTableKTableLeftJoin` (the left side): always, a delete a tombstone.
        JoinKind::Left if this_is_left => {
            if other.is_none() && change.new.is_none() && change.old.is_none() {
                return None;
            }
            Some(change.new.as_ref().map(|n| joiner(Some(n), other)))
        }
        // `KTableKTableRightJoin` (the right side of a left join): only with a left value, and
        // then a value even when the right side was deleted.
        JoinKind::Left => {
            let other = other?;
            Some(Some(joiner(change.new.as_ref(), Some(other))))
        }
        // `KTableKTableOuterJoin`, both sides: a tombstone only when neither side has a value.
        _ => {
            if other.is_none() && change.new.is_none() && change.old.is_none() {
                return None;
            }
            if other.is_none() && change.new.is_none() {
                Some(None)
            } else {
                Some(Some(joiner(change.new.as_ref(), other)))
            }
        }
    }
}

/// One side of a table-table join: on each change of this table (values `TV`), looks up the
/// other table (values `OV`; one batched read per batch) and emits as Kafka Streams.
struct TableSide<K, TV, OV, VO> {
    kind: JoinKind,
    this_is_left: bool,
    /// The other table's store, as that table declares it.
    other: StoreSpec,
    joiner: SideJoiner<TV, OV, VO>,
    _s: PhantomData<fn() -> K>,
}

impl<K, TV, OV, VO> Clone for TableSide<K, TV, OV, VO> {
    fn clone(&self) -> Self {
        TableSide {
            kind: self.kind,
            this_is_left: self.this_is_left,
            other: self.other.clone(),
            joiner: self.joiner.clone(),
            _s: PhantomData,
        }
    }
}

impl<K, TV, OV, VO> BatchProcessor<K, Change<TV>> for TableSide<K, TV, OV, VO>
where
    K: Clone + Send + 'static,
    TV: Send + 'static,
    OV: Send + 'static,
    VO: Send + 'static,
{
    type OutKey = K;
    type OutValue = Option<VO>;

    fn stores(&self) -> Vec<StoreSpec> {
        vec![self.other.clone().read_only()]
    }

    fn process_batch(
        &mut self,
        records: &[Record<K, Change<TV>>],
        ctx: &mut Context<'_, K, Option<VO>>,
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let spec = &self.other;
        let keys: Vec<K> = records.iter().map(|r| r.key.clone()).collect();
        // The other side's current value, with its timestamp when the store keeps one.
        let others: Vec<Option<(OV, Option<i64>)>> = if versioned_history(spec).is_some() {
            let store = ctx.read_versioned_store::<K, OV>(spec.name())?;
            let latest: Vec<(K, i64)> = keys.into_iter().map(|k| (k, i64::MAX)).collect();
            store
                .get_batch_as_of(&latest)?
                .into_iter()
                .map(|v| v.map(|v| (v.value, Some(v.timestamp))))
                .collect()
        } else {
            let store = ctx.read_store::<K, OV>(spec.name())?;
            store
                .get_batch(&keys)?
                .into_iter()
                .map(|v| v.map(|v| (v, None)))
                .collect()
        };
        for (r, other) in records.iter().zip(&others) {
            let (value, other_ts) = match other {
                Some((v, t)) => (Some(v), *t),
                None => (None, None),
            };
            if let Some(out) = result(self.kind, self.this_is_left, &r.value, value, &*self.joiner)
            {
                let ts = other_ts.map_or(r.timestamp, |t| t.max(r.timestamp));
                ctx.forward(r.derive(r.key.clone(), out).with_timestamp(ts));
            }
        }
        Ok(())
    }
}

impl TopologyBuilder {
    /// A table-table join of `left` and `right` (same key type, co-partitioned): on every change
    /// of either table, the joined row of its key, as Kafka Streams' `KTable#join`, `leftJoin`,
    /// `outerJoin`: `Some(joiner(left value, right value))`, or `None` when the joined row is
    /// removed (a tombstone). The record keeps the change's timestamp (the later of both sides'
    /// when the other table is versioned). What each kind emits (docs/joins.md):
    ///
    /// | change of | other side present | other side absent |
    /// |---|---|---|
    /// | either, `Inner` | the row; a delete: tombstone | nothing |
    /// | left, `Left` | the row; a delete: tombstone | `joiner(Some(l), None)`; a delete: tombstone |
    /// | right, `Left` | `joiner(Some(l), r)` (`r` `None` on a delete) | nothing |
    /// | either, `Outer` | the row (a delete: with `None` on that side) | the row; a delete: tombstone |
    ///
    /// The two sides are processors `<name>-left` and `<name>-right`, each reading the other
    /// table's store once per batch, merged ([`merge`](Self::merge)) into one stream.
    ///
    /// ```
    /// use kstreams::join::JoinKind;
    /// use kstreams::testing::TopologyTestDriver;
    /// use kstreams::{store, Topology};
    ///
    /// #[store(name = "names")]
    /// type Names = kstreams::KeyValue<String, String>;
    /// #[store(name = "emails")]
    /// type Emails = kstreams::KeyValue<String, String>;
    ///
    /// let mut t = Topology::builder();
    /// let names = t.table::<Names<'static>>("names");
    /// let emails = t.table::<Emails<'static>>("emails");
    /// let rows = t.join_tables("contacts", &names, &emails, JoinKind::Inner, |n, e| {
    ///     format!("{} <{}>", n.map_or("", |s| s.as_str()), e.map_or("", |s| s.as_str()))
    /// });
    /// t.sink("contacts", &rows);
    ///
    /// let mut driver = TopologyTestDriver::new(t.build()?)?;
    /// driver.pipe("names", "u1".to_string(), Some("Ada".to_string()))?;
    /// driver.pipe("emails", "u1".to_string(), Some("ada@example.com".to_string()))?;
    /// driver.pipe("names", "u1".to_string(), None::<String>)?;
    /// let out = driver.read_output::<String, Option<String>>("contacts")?;
    /// let values: Vec<_> = out.iter().map(|r| r.value.clone()).collect();
    /// assert_eq!(values, [Some("Ada <ada@example.com>".to_string()), None]);
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn join_tables<L, R, K, LV, RV, VO>(
        &mut self,
        name: &str,
        left: &Table<L>,
        right: &Table<R>,
        kind: JoinKind,
        joiner: impl Fn(Option<&LV>, Option<&RV>) -> VO + Clone + Send + Sync + 'static,
    ) -> Stream<K, Option<VO>>
    where
        L: TableStore + TableOf<K, LV>,
        R: TableStore + TableOf<K, RV>,
        K: Clone + Send + 'static,
        LV: Send + 'static,
        RV: Send + 'static,
        VO: Send + 'static,
    {
        let from_left = TableSide::<K, LV, RV, VO> {
            kind,
            this_is_left: true,
            other: right.spec().clone(),
            joiner: Arc::new(joiner.clone()),
            _s: PhantomData,
        };
        let from_right = TableSide::<K, RV, LV, VO> {
            kind,
            this_is_left: false,
            other: left.spec().clone(),
            joiner: Arc::new(move |r, l| joiner(l, r)),
            _s: PhantomData,
        };
        let a = self.add_named(&format!("{name}-left"), from_left, left.changes());
        let b = self.add_named(&format!("{name}-right"), from_right, right.changes());
        self.merge(&[&a, &b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(l: Option<&i32>, r: Option<&i32>) -> String {
        format!("{l:?}/{r:?}")
    }

    fn change(new: Option<i32>, old: Option<i32>) -> Change<i32> {
        Change { new, old }
    }

    #[test]
    fn each_kind_emits_as_kafka_streams() {
        use JoinKind::*;
        let add = change(Some(1), None);
        let del = change(None, Some(1));
        let s = |v: &str| Some(Some(v.to_string()));
        // Inner: nothing without the other side; a delete is a tombstone.
        assert_eq!(result(Inner, true, &add, None, &j), None);
        assert_eq!(
            result(Inner, true, &add, Some(&2), &j),
            s("Some(1)/Some(2)")
        );
        assert_eq!(result(Inner, true, &del, Some(&2), &j), Some(None));
        assert_eq!(result(Inner, false, &del, None, &j), None);
        // Left, left side: always; a delete is a tombstone.
        assert_eq!(result(Left, true, &add, None, &j), s("Some(1)/None"));
        assert_eq!(result(Left, true, &del, None, &j), Some(None));
        assert_eq!(result(Left, true, &del, Some(&2), &j), Some(None));
        // Left, right side (`KTableKTableRightJoin`, joiner reversed by the caller): only with a
        // left value, never a tombstone.
        assert_eq!(result(Left, false, &add, None, &j), None);
        assert_eq!(
            result(Left, false, &add, Some(&2), &j),
            s("Some(1)/Some(2)")
        );
        assert_eq!(result(Left, false, &del, Some(&2), &j), s("None/Some(2)"));
        // Outer: a tombstone only when neither side has a value.
        assert_eq!(result(Outer, true, &add, None, &j), s("Some(1)/None"));
        assert_eq!(result(Outer, false, &del, Some(&2), &j), s("None/Some(2)"));
        assert_eq!(result(Outer, false, &del, None, &j), Some(None));
    }
}
