//! Processors: plain logic over a batch of records, or over one record.
//!
//! Owns: the [`BatchProcessor`] and [`Processor`] traits, the adapters that run each where the other
//! is expected ([`PerRecord`], [`SliceOfOne`]) and small closure processors ([`map`], [`filter`],
//! [`flat_map`]). Dispatch is static: an adapter is a type chosen at compile time, not a run-time
//! test. Processors never see Kafka; they see records, a [`Context`] and their stores.

use std::marker::PhantomData;

use crate::context::{Context, InitContext, Punctuation};
use crate::error::{Error, Result};
use crate::record::Record;
use crate::store::StoreSpec;

/// A processor of batches: it receives `&[Record<K, V>]`, records of one partition in offset order.
///
/// The input types are trait parameters, so connecting a processor to a stream of other types is a
/// compile error naming both. `#[batch_processor]` implements this trait for a plain function.
///
/// ```
/// use kstreams::{BatchProcessor, Context, Record, Result};
///
/// #[derive(Clone)]
/// struct Lengths;
///
/// impl BatchProcessor<String, String> for Lengths {
///     type OutKey = String;
///     type OutValue = u64;
///     fn process_batch(&mut self, records: &[Record<String, String>], ctx: &mut Context<'_, String, u64>) -> Result<()> {
///         for r in records {
///             ctx.forward(r.derive(r.key.clone(), r.value.len() as u64));
///         }
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not take records of type `Record<{K}, {V}>`",
    label = "this processor cannot be connected to a stream of `Record<{K}, {V}>`",
    note = "the upstream node produces `Record<{K}, {V}>`: make the processor's records parameter `&[Record<{K}, {V}>]`, or put a processor that converts them in between"
)]
pub trait BatchProcessor<K, V>: Send + 'static {
    /// The key type of the records it forwards.
    type OutKey: Send + 'static;
    /// The value type of the records it forwards.
    type OutValue: Send + 'static;

    /// The stores this processor uses; the topology declares them by itself.
    fn stores(&self) -> Vec<StoreSpec> {
        Vec::new()
    }

    /// The node name [`TopologyBuilder::add`](crate::TopologyBuilder::add) gives this processor;
    /// `None` (the default) uses its type name. `#[batch_processor]` returns the function's name, or
    /// the `name = "..."` of its attribute.
    fn node_name(&self) -> Option<&str> {
        None
    }

    /// Called once per task before the first batch; schedule punctuations here, and check the
    /// stores reached with [`Context::store_handle`] ([`InitContext::require_store`]).
    ///
    /// [`TopologyBuilder::build`](crate::TopologyBuilder::build) also calls it once, on a fresh
    /// copy (as for partition 0) that it then drops, so that an error it returns fails the
    /// build: keep it to scheduling and checks.
    fn init(&mut self, _ctx: &mut InitContext<'_>) -> Result<()> {
        Ok(())
    }

    /// Processes one batch: records of one partition, in offset order.
    ///
    /// An `Err` about the data ([`task::is_record_level`](crate::task::is_record_level): your own
    /// [`Error::processing`], a store value its serde cannot read or write, ...) does not fail the
    /// application by itself: the task runs the batch again record by record to find the record
    /// it is about, and applies the processing policy of its source topic to it, as
    /// [`Context::fail_record`] does; other errors fail the batch. Calling `fail_record` yourself
    /// saves the search.
    fn process_batch(
        &mut self,
        records: &[Record<K, V>],
        ctx: &mut Context<'_, Self::OutKey, Self::OutValue>,
    ) -> Result<()>;

    /// Called when a punctuation scheduled in [`init`](Self::init) is due: for stream time,
    /// right after the record that reached its due time (see
    /// [`InitContext::schedule`](crate::InitContext::schedule)); for wall-clock time, between
    /// batches.
    fn punctuate(
        &mut self,
        _punctuation: Punctuation,
        _ctx: &mut Context<'_, Self::OutKey, Self::OutValue>,
    ) -> Result<()> {
        Ok(())
    }
}

/// A processor of single records. Wrap it in [`PerRecord`] to run it where batches flow: the batch
/// is fed to it record by record.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not take records of type `Record<{K}, {V}>`",
    label = "this processor cannot be connected to a stream of `Record<{K}, {V}>`"
)]
pub trait Processor<K, V>: Send + 'static {
    /// The key type of the records it forwards.
    type OutKey: Send + 'static;
    /// The value type of the records it forwards.
    type OutValue: Send + 'static;

    /// The stores this processor uses.
    fn stores(&self) -> Vec<StoreSpec> {
        Vec::new()
    }

    /// Called once per task before the first record.
    fn init(&mut self, _ctx: &mut InitContext<'_>) -> Result<()> {
        Ok(())
    }

    /// Processes one record.
    fn process(
        &mut self,
        record: &Record<K, V>,
        ctx: &mut Context<'_, Self::OutKey, Self::OutValue>,
    ) -> Result<()>;

    /// Called when a punctuation is due.
    fn punctuate(
        &mut self,
        _punctuation: Punctuation,
        _ctx: &mut Context<'_, Self::OutKey, Self::OutValue>,
    ) -> Result<()> {
        Ok(())
    }
}

/// Fills in the origin of a processing error from the record that caused it.
#[doc(hidden)]
pub fn with_origin<K, V>(err: Error, record: &Record<K, V>) -> Error {
    // The processor's name is filled in by its node.
    err.labelled("", record.origin.as_ref())
}

/// What a `#[batch_processor]` or `#[processor]` function may return: `()`, or
/// `Result<(), E>` where `E: Into<kstreams::Error>` (such as [`kstreams::Result<()>`](crate::Result),
/// or `Result<(), String>`: a message becomes [`Error::processing`]).
#[diagnostic::on_unimplemented(
    message = "a processor function cannot return `{Self}`",
    label = "return `()`, `kstreams::Result<()>` or `Result<(), E>` where `E: Into<kstreams::Error>`",
    note = "a processor hands its output to `out.forward(..)`; its return value only says whether it failed"
)]
pub trait ProcessorReturn {
    /// The return value as a kstreams result.
    fn into_result(self) -> Result<()>;
}

impl ProcessorReturn for () {
    #[inline]
    fn into_result(self) -> Result<()> {
        Ok(())
    }
}

impl<E: Into<Error>> ProcessorReturn for core::result::Result<(), E> {
    #[inline]
    fn into_result(self) -> Result<()> {
        self.map_err(Into::into)
    }
}

/// Runs a single-record [`Processor`] where a [`BatchProcessor`] is expected: record by record.
#[derive(Debug, Clone, Default)]
pub struct PerRecord<P>(pub P);

impl<K: 'static, V: 'static, P: Processor<K, V>> BatchProcessor<K, V> for PerRecord<P> {
    type OutKey = P::OutKey;
    type OutValue = P::OutValue;

    fn stores(&self) -> Vec<StoreSpec> {
        self.0.stores()
    }
    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
        self.0.init(ctx)
    }
    fn process_batch(
        &mut self,
        records: &[Record<K, V>],
        ctx: &mut Context<'_, P::OutKey, P::OutValue>,
    ) -> Result<()> {
        for r in records {
            self.0.process(r, ctx).map_err(|e| with_origin(e, r))?;
        }
        Ok(())
    }
    fn punctuate(
        &mut self,
        punctuation: Punctuation,
        ctx: &mut Context<'_, P::OutKey, P::OutValue>,
    ) -> Result<()> {
        self.0.punctuate(punctuation, ctx)
    }
}

/// Runs a [`BatchProcessor`] where a single-record [`Processor`] is expected: each record as a
/// slice of one.
#[derive(Debug, Clone, Default)]
pub struct SliceOfOne<P>(pub P);

impl<K: 'static, V: 'static, P: BatchProcessor<K, V>> Processor<K, V> for SliceOfOne<P> {
    type OutKey = P::OutKey;
    type OutValue = P::OutValue;

    fn stores(&self) -> Vec<StoreSpec> {
        self.0.stores()
    }
    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
        self.0.init(ctx)
    }
    fn process(
        &mut self,
        record: &Record<K, V>,
        ctx: &mut Context<'_, P::OutKey, P::OutValue>,
    ) -> Result<()> {
        self.0.process_batch(std::slice::from_ref(record), ctx)
    }
    fn punctuate(
        &mut self,
        punctuation: Punctuation,
        ctx: &mut Context<'_, P::OutKey, P::OutValue>,
    ) -> Result<()> {
        self.0.punctuate(punctuation, ctx)
    }
}

/// A processor made of a closure over one record that returns the records to forward.
pub struct FlatMap<F, K, V, K2, V2> {
    f: F,
    _types: PhantomData<fn(K, V) -> (K2, V2)>,
}

impl<F: Clone, K, V, K2, V2> Clone for FlatMap<F, K, V, K2, V2> {
    fn clone(&self) -> Self {
        FlatMap {
            f: self.f.clone(),
            _types: PhantomData,
        }
    }
}

impl<F, K, V, K2, V2> std::fmt::Debug for FlatMap<F, K, V, K2, V2> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatMap").finish_non_exhaustive()
    }
}

impl<F, K, V, K2, V2, I> BatchProcessor<K, V> for FlatMap<F, K, V, K2, V2>
where
    F: FnMut(&Record<K, V>) -> I + Send + 'static,
    I: IntoIterator<Item = Record<K2, V2>>,
    K: 'static,
    V: 'static,
    K2: Send + 'static,
    V2: Send + 'static,
{
    type OutKey = K2;
    type OutValue = V2;

    fn process_batch(
        &mut self,
        records: &[Record<K, V>],
        ctx: &mut Context<'_, K2, V2>,
    ) -> Result<()> {
        for r in records {
            ctx.forward_batch((self.f)(r));
        }
        Ok(())
    }
}

/// A processor forwarding zero or more records per input record.
///
/// ```
/// use kstreams::{processor, Record};
/// let split = processor::flat_map(|r: &Record<(), String>| {
///     r.value.split(' ').map(|w| r.derive(w.to_string(), 1u64)).collect::<Vec<_>>()
/// });
/// # let _ = split;
/// ```
pub fn flat_map<F, K, V, K2, V2, I>(f: F) -> FlatMap<F, K, V, K2, V2>
where
    F: FnMut(&Record<K, V>) -> I + Send + 'static,
    I: IntoIterator<Item = Record<K2, V2>>,
{
    FlatMap {
        f,
        _types: PhantomData,
    }
}

/// A processor forwarding one record per input record.
pub fn map<K, V, K2, V2>(
    mut f: impl FnMut(&Record<K, V>) -> Record<K2, V2> + Send + Clone + 'static,
) -> FlatMap<
    impl FnMut(&Record<K, V>) -> Option<Record<K2, V2>> + Send + Clone + 'static,
    K,
    V,
    K2,
    V2,
> {
    flat_map(move |r: &Record<K, V>| Some(f(r)))
}

/// A processor forwarding the records for which `f` is true.
pub fn filter<K: Clone, V: Clone>(
    mut f: impl FnMut(&Record<K, V>) -> bool + Send + Clone + 'static,
) -> FlatMap<impl FnMut(&Record<K, V>) -> Option<Record<K, V>> + Send + Clone + 'static, K, V, K, V>
{
    flat_map(move |r: &Record<K, V>| if f(r) { Some(r.clone()) } else { None })
}
