//! Non-windowed aggregation over a key-value store: the library operators [`count`], [`reduce`]
//! and [`aggregate`], usable with `t.add(...)`.
//!
//! Owns: the operators' types. Each reads the store once per distinct key of a batch
//! (`get_batch`), folds the batch's records into the aggregates, writes them back once
//! (`put_batch`) and forwards one update per key and batch (a table's changelog, as Kafka
//! Streams' cache would), at the position of the key's last record in the batch, with that
//! record's metadata. Windowed aggregation is `window`'s.

use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;

use crate::context::Context;
use crate::error::Result;
use crate::processor::BatchProcessor;
use crate::record::Record;
use crate::store::{StoreHandle, StoreSpec};

/// The common body: `first(record)` is a new key's aggregate; `add` folds a record into one.
fn run<S, V, OK>(
    records: &[Record<S::Key, V>],
    ctx: &mut Context<'_, OK, S::Value>,
    mut first: impl FnMut(&Record<S::Key, V>) -> S::Value,
    mut add: impl FnMut(&mut S::Value, &Record<S::Key, V>),
) -> Result<()>
where
    S: StoreHandle<'static>,
    S::Key: Clone + Eq + Hash + Into<OK>,
    S::Value: Clone,
    OK: 'static,
    V: 'static,
{
    if records.is_empty() {
        return Ok(());
    }
    let mut store = crate::__private::binder(ctx).bind_named::<S::Key, S::Value>(S::NAME)?;
    let mut slot: HashMap<&S::Key, usize> = HashMap::new();
    let mut keys: Vec<&S::Key> = Vec::new();
    for r in records {
        slot.entry(&r.key).or_insert_with(|| {
            keys.push(&r.key);
            keys.len() - 1
        });
    }
    let owned: Vec<S::Key> = keys.iter().map(|k| (*k).clone()).collect();
    let mut aggs: Vec<Option<S::Value>> = store.get_batch(&owned)?;
    let mut last = vec![0usize; keys.len()];
    for (i, r) in records.iter().enumerate() {
        let j = slot[&r.key];
        last[j] = i;
        match &mut aggs[j] {
            Some(a) => add(a, r),
            none => *none = Some(first(r)),
        }
    }
    let mut updates: Vec<(usize, S::Key, S::Value)> = keys
        .iter()
        .zip(aggs)
        .zip(&last)
        .filter_map(|((k, a), l)| a.map(|a| (*l, (*k).clone(), a)))
        .collect();
    let puts: Vec<(S::Key, S::Value)> = updates
        .iter()
        .map(|(_, k, a)| (k.clone(), a.clone()))
        .collect();
    store.put_batch(&puts)?;
    updates.sort_by_key(|(l, _, _)| *l);
    ctx.forward_batch(
        updates
            .into_iter()
            .map(|(l, k, a)| records[l].derive(k.into(), a)),
    );
    Ok(())
}

macro_rules! common {
    () => {
        fn stores(&self) -> Vec<StoreSpec> {
            vec![S::spec()]
        }
        fn node_name(&self) -> Option<&str> {
            Some(self.name)
        }
    };
}

/// The count operator ([`count`]).
pub struct Count<S> {
    name: &'static str,
    _s: PhantomData<fn() -> S>,
}

impl<S> Clone for Count<S> {
    fn clone(&self) -> Self {
        Count {
            name: self.name,
            _s: PhantomData,
        }
    }
}

impl<S> std::fmt::Debug for Count<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Count").field("name", &self.name).finish()
    }
}

/// Counts records per key in the key-value store `S` (values `u64`); outputs `(K, u64)`, one
/// update per key and batch. The node is named after the store.
///
/// ```
/// use kstreams::testing::TopologyTestDriver;
/// use kstreams::{aggregate, store, Topology};
///
/// #[store(name = "word-counts")]
/// type WordCounts = kstreams::KeyValue<String, u64>;
///
/// let mut t = Topology::builder();
/// let words = t.source::<String, String>("words");
/// let counts = t.add(aggregate::count::<WordCounts>(), &words);
/// t.sink("counts", &counts);
/// let mut driver = TopologyTestDriver::new(t.build()?)?;
/// driver.pipe("words", "be".to_string(), String::new())?;
/// driver.pipe("words", "be".to_string(), String::new())?;
/// let out = driver.read_output::<String, u64>("counts")?;
/// assert_eq!(out.last().map(|r| (r.key.as_str(), r.value)), Some(("be", 2)));
/// # Ok::<(), kstreams::Error>(())
/// ```
pub fn count<S: StoreHandle<'static, Value = u64>>() -> Count<S> {
    Count {
        name: S::NAME,
        _s: PhantomData,
    }
}

impl<S, V> BatchProcessor<S::Key, V> for Count<S>
where
    S: StoreHandle<'static, Value = u64> + 'static,
    S::Key: Clone + Eq + Hash + Send,
    V: 'static,
{
    type OutKey = S::Key;
    type OutValue = u64;

    common!();

    fn process_batch(
        &mut self,
        records: &[Record<S::Key, V>],
        ctx: &mut Context<'_, S::Key, u64>,
    ) -> Result<()> {
        run::<S, V, S::Key>(records, ctx, |_| 1, |n, _| *n += 1)
    }
}

/// The reduce operator ([`reduce`]).
pub struct Reduce<S, F> {
    name: &'static str,
    f: F,
    _s: PhantomData<fn() -> S>,
}

impl<S, F: Clone> Clone for Reduce<S, F> {
    fn clone(&self) -> Self {
        Reduce {
            name: self.name,
            f: self.f.clone(),
            _s: PhantomData,
        }
    }
}

impl<S, F> std::fmt::Debug for Reduce<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reduce").field("name", &self.name).finish()
    }
}

/// Reduces each key's values with `f` in the key-value store `S`: a key's first value is its
/// aggregate, each next value makes it `f(&aggregate, &value)`. Outputs `(K, A)`.
pub fn reduce<S, F>(f: F) -> Reduce<S, F>
where
    S: StoreHandle<'static>,
    F: FnMut(&S::Value, &S::Value) -> S::Value + Send + 'static,
{
    Reduce {
        name: S::NAME,
        f,
        _s: PhantomData,
    }
}

impl<S, F> BatchProcessor<S::Key, S::Value> for Reduce<S, F>
where
    S: StoreHandle<'static> + 'static,
    S::Key: Clone + Eq + Hash + Send,
    S::Value: Clone + Send,
    F: FnMut(&S::Value, &S::Value) -> S::Value + Send + 'static,
{
    type OutKey = S::Key;
    type OutValue = S::Value;

    common!();

    fn process_batch(
        &mut self,
        records: &[Record<S::Key, S::Value>],
        ctx: &mut Context<'_, S::Key, S::Value>,
    ) -> Result<()> {
        let f = &mut self.f;
        let f = std::cell::RefCell::new(f);
        run::<S, S::Value, S::Key>(
            records,
            ctx,
            |r| r.value.clone(),
            |a, r| {
                let next = (f.borrow_mut())(a, &r.value);
                *a = next;
            },
        )
    }
}

/// The aggregate operator ([`aggregate`]).
pub struct Aggregate<S, V, I, F> {
    name: &'static str,
    init: I,
    add: F,
    _s: PhantomData<fn(V) -> S>,
}

impl<S, V, I: Clone, F: Clone> Clone for Aggregate<S, V, I, F> {
    fn clone(&self) -> Self {
        Aggregate {
            name: self.name,
            init: self.init.clone(),
            add: self.add.clone(),
            _s: PhantomData,
        }
    }
}

impl<S, V, I, F> std::fmt::Debug for Aggregate<S, V, I, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregate")
            .field("name", &self.name)
            .finish()
    }
}

/// Aggregates each key's records in the key-value store `S`: a new key starts at `init(key)`,
/// then `add(&mut aggregate, record)` for each record. Outputs `(K, A)`.
pub fn aggregate<S, V, I, F>(init: I, add: F) -> Aggregate<S, V, I, F>
where
    S: StoreHandle<'static>,
    I: FnMut(&S::Key) -> S::Value + Send + 'static,
    F: FnMut(&mut S::Value, &Record<S::Key, V>) + Send + 'static,
{
    Aggregate {
        name: S::NAME,
        init,
        add,
        _s: PhantomData,
    }
}

impl<S, V, I, F> BatchProcessor<S::Key, V> for Aggregate<S, V, I, F>
where
    S: StoreHandle<'static> + 'static,
    S::Key: Clone + Eq + Hash + Send,
    S::Value: Clone + Send,
    V: 'static,
    I: FnMut(&S::Key) -> S::Value + Send + 'static,
    F: FnMut(&mut S::Value, &Record<S::Key, V>) + Send + 'static,
{
    type OutKey = S::Key;
    type OutValue = S::Value;

    common!();

    fn process_batch(
        &mut self,
        records: &[Record<S::Key, V>],
        ctx: &mut Context<'_, S::Key, S::Value>,
    ) -> Result<()> {
        let (init, add) = (&mut self.init, std::cell::RefCell::new(&mut self.add));
        run::<S, V, S::Key>(
            records,
            ctx,
            |r| {
                let mut a = init(&r.key);
                (add.borrow_mut())(&mut a, r);
                a
            },
            |a, r| (add.borrow_mut())(a, r),
        )
    }
}
