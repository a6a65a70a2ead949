//! kstreams: batch-first, compile-time checked Kafka stream processing with LMDB state.
#![warn(missing_docs)]

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
pub mod aggregate;
pub mod context;
pub mod error;
pub(crate) mod exec;
#[cfg(feature = "http")]
pub mod http;
pub mod join;
pub mod partitioner;
pub mod policy;
pub mod processor;
#[cfg(feature = "kafka")]
pub mod query;
pub mod record;
pub mod serde;
pub mod store;
// Not public API: the task the Kafka runtime and the test driver both drive, reachable for the
// workspace's own tests and benches. Its bad-record types are `OnBadRecord` and `ErrorPolicies`
// at the crate root.
pub mod table;
#[doc(hidden)]
pub mod task;
pub mod testing;
pub mod topology;
pub mod window;

pub use context::{Context, Emit, InitContext, Punctuation, PunctuationType, ReadOnly};
pub use error::{Error, Result};
pub use policy::{ErrorPolicies, OnBadRecord};
pub use processor::{BatchProcessor, PerRecord, Processor, ProcessorReturn, SliceOfOne};
pub use record::{Headers, Origin, Record};
pub use store::{Backend, KeyValue, KeyValueStore, StoreHandle, StoreSpec, VersionedKeyValue};
pub use topology::{Stream, Topology, TopologyBuilder};
pub use window::{SessionKeyValue, SessionWindowed, Window, WindowKeyValue, Windowed};

/// Turns a function over a batch of records into a [`BatchProcessor`].
///
/// ```text
/// #[batch_processor]                // or #[batch_processor(name = "node-name")]; default: the fn name
///                                   // also: punctuate(every = "10s", time = wall_clock, with = handler)
///                                   //       (repeatable) and init = function; see below
/// fn name(
///     records: &[Record<K, V>],     // first: the batch, records of one partition in offset order
///     store: &mut SomeStore, ...    // zero or more handles of `#[store]` types: `&mut` to read
///     table: &SomeTable, ...        //   and write, `&` to read only (a table's store), any order
///     out: &mut Emit<K2, V2>,       // optional, last: where the output goes; absent => `((), ())`
/// ) -> kstreams::Result<()>         // or `()`, or `Result<(), E>` with `E: Into<kstreams::Error>`
///                                   // (`String` and `&str` too: a message is `Error::processing`)
/// ```
///
/// The function becomes a unit struct of the same name (and visibility) that implements
/// `BatchProcessor<K, V>` with output `(K2, V2)`: connect it with [`TopologyBuilder::add`], which
/// checks at compile time that its records are what the upstream produces. Its stores are declared
/// by the processor itself ([`BatchProcessor::stores`]) and bound to each batch's transaction. The
/// struct derefs to the function, so it can still be called as one (see
/// [`testing::run_plain`] to test it that way).
///
/// A store taken by `&` is declared read-only ([`StoreSpec::read_only`]) and reaches the
/// function by shared reference, through which nothing writes (the handles' writes take
/// `&mut self`): that is how a processor reads a [table](TopologyBuilder::table), whose store
/// only the table writes (taking it `&mut` fails [`TopologyBuilder::build`]; see
/// `docs/joins.md`, "Reading a table in your own processor"). A
/// [global table](TopologyBuilder::global_table)'s store is taken the same way, and read from the
/// instance's global stores.
///
/// ```
/// use kstreams::{batch_processor, store, Emit, Record, Topology};
///
/// #[store(name = "prices")]
/// type Prices = kstreams::KeyValue<String, u64>;
///
/// /// Each order's total, from the table `prices`: one `get_batch` per batch.
/// #[batch_processor]
/// fn total(orders: &[Record<String, u64>], prices: &Prices, out: &mut Emit<String, u64>) -> kstreams::Result<()> {
///     let items: Vec<&str> = orders.iter().map(|o| o.key.as_str()).collect();
///     for (o, price) in orders.iter().zip(prices.get_batch(&items)?) {
///         out.forward(o.derive(o.key.clone(), o.value * price.unwrap_or(0)));
///     }
///     Ok(())
/// }
///
/// let mut t = Topology::builder();
/// let _prices = t.table::<Prices<'static>>("prices");
/// let orders = t.source::<String, u64>("orders");
/// let totals = t.add(total, &orders);
/// t.sink("totals", &totals);
/// let mut driver = kstreams::testing::TopologyTestDriver::new(t.build()?)?;
/// driver.pipe("prices", "apple".to_string(), Some(3u64))?;
/// driver.pipe("orders", "apple".to_string(), 2u64)?;
/// assert_eq!(driver.read_output::<String, u64>("totals")?[0].value, 6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// ```compile_fail
/// // Through `&Prices`, nothing writes.
/// use kstreams::{batch_processor, store, Record};
/// #[store(name = "prices")]
/// type Prices = kstreams::KeyValue<String, u64>;
/// #[batch_processor]
/// fn overwrite(orders: &[Record<String, u64>], prices: &Prices) -> kstreams::Result<()> {
///     prices.put(&orders[0].key, &0)
/// }
/// ```
///
/// ```
/// use kstreams::testing::TopologyTestDriver;
/// use kstreams::{batch_processor, store, Emit, Record, Topology};
///
/// #[store(name = "word-counts")]
/// type WordCounts = kstreams::KeyValue<String, u64>;
///
/// #[batch_processor]
/// fn count_words(
///     lines: &[Record<(), String>],
///     counts: &mut WordCounts,
///     out: &mut Emit<String, u64>,
/// ) -> kstreams::Result<()> {
///     for line in lines {
///         for word in line.value.split_whitespace() {
///             let n = counts.get(&word.to_string())?.unwrap_or(0) + 1;
///             counts.put(&word.to_string(), &n)?;
///             out.forward(line.derive(word.to_string(), n));
///         }
///     }
///     Ok(())
/// }
///
/// let mut t = Topology::builder();
/// let lines = t.source::<(), String>("text-input");
/// let counts = t.add(count_words, &lines);
/// t.sink("word-counts", &counts);
///
/// let mut driver = TopologyTestDriver::new(t.build()?)?;
/// driver.pipe("text-input", (), "to be or not to be".to_string())?;
/// let out = driver.read_output::<String, u64>("word-counts")?;
/// assert_eq!(out.last().map(|r| (r.key.as_str(), r.value)), Some(("be", 2)));
/// # Ok::<(), kstreams::Error>(())
/// ```
///
/// Connecting it to a stream of other types does not compile. The processor has one input type,
/// so rustc reads it from the processor and points at the stream: ``expected `&Stream<(), String>`,
/// found `&Stream<String, String>` `` on the `t.add(..)` line.
///
/// ```compile_fail,E0308
/// use kstreams::{batch_processor, Emit, Record, Topology};
/// #[batch_processor]
/// fn lengths(lines: &[Record<(), String>], out: &mut Emit<(), u64>) {
///     out.forward_batch(lines.iter().map(|l| l.derive((), l.value.len() as u64)));
/// }
/// let mut t = Topology::builder();
/// let keyed = t.source::<String, String>("keyed");
/// let _ = t.add(lengths, &keyed);
/// ```
///
/// Nor does a parameter that is not a store (`` `String` is not a store: declare it with
/// `#[kstreams::store]` ``):
///
/// ```compile_fail,E0277
/// use kstreams::{batch_processor, Record};
/// #[batch_processor]
/// fn f(lines: &[Record<(), String>], last: &mut String) {}
/// ```
///
/// # Punctuations and init
///
/// `punctuate(every = "...", time = wall_clock | stream_time, with = handler)` schedules a
/// punctuation ([`InitContext::schedule`]) when a task starts, and calls `handler` when it is due,
/// between batches. `handler` is a function marked [`#[punctuator]`](punctuator): it takes the
/// [`&Punctuation`](Punctuation) and then the same kinds of parameters as the processor (`&mut`
/// or `&` stores, optionally `&mut Emit<K2, V2>` with the processor's output types), and its
/// stores are declared with the processor's (read-write when either takes a store `&mut`). `every` is a literal of one or more `<number><unit>`, units `ms`,
/// `s`, `m`, `h` (`"10s"`, `"500ms"`, `"1m30s"`; a bad one is a compile error at the literal), or
/// any expression of type [`Duration`](std::time::Duration). Several `punctuate(...)` may be given;
/// their punctuations carry the ids 0, 1, ... in the order written.
///
/// `init = f` calls `fn f(ctx: &mut InitContext<'_>) -> R` (`R` as for the processor) when a
/// task starts, after the punctuations are scheduled; `init` also runs once when the topology is
/// built, so an error it returns fails [`TopologyBuilder::build`]. Its punctuations are the
/// `punctuate(...)` ones: one it schedules itself would have no handler, and is an error.
///
/// ```
/// use kstreams::testing::TopologyTestDriver;
/// use kstreams::{batch_processor, punctuator, store, Emit, Punctuation, Record, Topology};
///
/// #[store(name = "alert-count", backend = "in_memory")]
/// type AlertCount = kstreams::KeyValue<String, u64>;
///
/// #[batch_processor(punctuate(every = "10s", time = wall_clock, with = report))]
/// fn count(alerts: &[Record<String, String>], seen: &mut AlertCount, _out: &mut Emit<String, u64>) -> kstreams::Result<()> {
///     let n = seen.get(&"alerts".to_string())?.unwrap_or(0);
///     seen.put(&"alerts".to_string(), &(n + alerts.len() as u64))
/// }
///
/// #[punctuator]
/// fn report(p: &Punctuation, seen: &mut AlertCount, out: &mut Emit<String, u64>) -> kstreams::Result<()> {
///     let n = seen.get(&"alerts".to_string())?.unwrap_or(0);
///     out.forward(Record::new("alerts".to_string(), n).with_timestamp(p.timestamp));
///     Ok(())
/// }
///
/// let mut t = Topology::builder();
/// let alerts = t.source::<String, String>("alerts");
/// let counts = t.add(count, &alerts);
/// t.sink("alert-counts", &counts);
///
/// let mut driver = TopologyTestDriver::new(t.build()?)?;
/// driver.pipe("alerts", "sensor-1".to_string(), "too hot".to_string())?;
/// for _ in 0..2 {
///     // (The first wall-clock punctuation is due one interval after the task first sees the clock.)
///     driver.advance_wall_clock(std::time::Duration::from_secs(10))?;
/// }
/// let out = driver.read_output::<String, u64>("alert-counts")?;
/// assert_eq!(out.last().map(|r| r.value), Some(1));
/// # Ok::<(), kstreams::Error>(())
/// ```
///
/// A handler that forwards other types than the processor, or a function not marked
/// `#[punctuator]`, does not compile (`` `report` is not a punctuation handler of a processor
/// forwarding `Record<String, u64>` ``).
///
/// What still needs a hand-written [`BatchProcessor`] (state in fields, punctuations scheduled
/// from run-time values): see [`InitContext::require_store`] for stores reached with
/// [`Context::store_handle`].
///
/// # Good to know
///
/// - The function's name is now a unit struct, also in patterns: `let count = t.add(count, &s);`
///   does not compile (the `let` tries to match the struct); name the stream otherwise.
/// - `&mut Counts`, `&Prices` and `&mut Emit<K, V>` hide a lifetime; the expansion allows
///   `elided_lifetimes_in_paths` (part of `rust_2018_idioms`) on the function it keeps.
/// - Clippy's `unnecessary_operation` takes a plain call used as a statement, `upper(r, out);`,
///   for the construction of a tuple struct and suggests removing it. Do not: bind the result
///   (`let () = upper(r, out);`) or call the function pointer (`(*upper)(r, out)`).
/// - `KSTREAMS_MACROS_DEBUG=1` at build time prints each expansion to stderr.
pub use kstreams_macros::batch_processor;

/// Turns a function over one record into a [`BatchProcessor`] that calls it for each record of a
/// batch.
///
/// The same as [`batch_processor`], except that the first parameter is `&Record<K, V>`. Stores
/// are bound once per batch; an error names the record that caused it.
///
/// ```
/// use kstreams::{processor, Emit, Record, Topology};
///
/// #[processor]
/// fn upper(line: &Record<(), String>, out: &mut Emit<(), String>) {
///     out.forward(line.derive((), line.value.to_uppercase()));
/// }
///
/// let mut t = Topology::builder();
/// let lines = t.source::<(), String>("text-input");
/// let loud = t.add(upper, &lines);
/// t.sink("text-upper", &loud);
/// assert!(t.build()?.describe().contains("Processor: upper"));
/// # Ok::<(), kstreams::Error>(())
/// ```
///
/// ```compile_fail
/// // A `#[processor]` takes one record, not a slice (use `#[batch_processor]` for that).
/// use kstreams::{processor, Record};
/// #[processor]
/// fn f(lines: &[Record<(), String>]) {}
/// ```
pub use kstreams_macros::processor;

/// Turns a function into a punctuation handler, for `#[batch_processor(punctuate(with = ...))]`
/// (see [`batch_processor`]'s "Punctuations and init").
///
/// ```text
/// #[punctuator]
/// fn name(
///     punctuation: &Punctuation,    // first: which punctuation fired, and its time
///     store: &mut SomeStore, ...    // zero or more handles of `#[store]` types, `&mut` (read
///                                   // and write) or `&` (read only)
///     out: &mut Emit<K2, V2>,       // optional, last: the output types of the processor
/// ) -> kstreams::Result<()>         // or `()`, or `Result<(), E>` with `E: Into<kstreams::Error>`
/// ```
///
/// The function becomes a unit struct of the same name that the processor calls; it derefs to the
/// function, which can still be called as one.
pub use kstreams_macros::punctuator;

/// Declares a store: turns `type Name = kstreams::KeyValue<K, V>;` into a typed handle (or a
/// windowed aggregate's `kstreams::WindowKeyValue<K, A>` / `kstreams::SessionKeyValue<K, A>`: see
/// "Windowed stores" below; or a versioned `kstreams::VersionedKeyValue<K, V>`: "Versioned
/// stores").
///
/// ```text
/// #[store(
///     name = "word-counts",        // required: the store's name (and its changelog topic's)
///     backend = "in_memory",       // optional: "lmdb" (the default) or "in_memory"
///     changelog = false,           // optional: default true
///     key_serde = <expr>,          // optional: default `K`'s DefaultSerde
///     value_serde = <expr>,        // optional: default `V`'s DefaultSerde
/// )]
/// type WordCounts = kstreams::KeyValue<String, u64>;
/// ```
///
/// The alias becomes `struct WordCounts<'t>` (same visibility) that derefs to
/// [`KeyValueStore<'t, String, u64>`](KeyValueStore) and implements [`StoreHandle`]. A processor
/// function takes it as `&mut WordCounts` to read and write, or as `&WordCounts` to read only
/// (a table's store: see [`batch_processor`]).
///
/// ```
/// use kstreams::store::StoreHandle;
/// #[kstreams::store(name = "totals", backend = "in_memory", changelog = false)]
/// pub type Totals = kstreams::KeyValue<String, i64>;
/// let spec = Totals::spec();
/// assert_eq!((spec.name(), spec.changelog_enabled()), ("totals", false));
/// ```
///
/// Key and value types need a serde (`` `Point` has no default serde ``):
///
/// ```compile_fail,E0277
/// struct Point { x: i32 }
/// #[kstreams::store(name = "points")]
/// type Points = kstreams::KeyValue<String, Point>;
/// ```
///
/// # Windowed stores
///
/// A windowed aggregate's store names [`WindowKeyValue<K, A>`](WindowKeyValue) (tumbling,
/// hopping and sliding windows) or [`SessionKeyValue<K, A>`](SessionKeyValue) (session
/// windows), and its declaration holds the windows (see [`window`] for their semantics, which
/// are Kafka Streams'):
///
/// ```text
/// #[store(
///     name = "view-counts",
///     window = hopping(size = "60s", advance = "10s"),   // required, one of:
///              // tumbling(size = D)                     windows [start, start + size), starts multiples of size
///              // hopping(size = D, advance = D)         one every `advance` (at most `size`)
///              // sliding(difference = D)                KIP-450 sliding windows
///              // session(gap = D)                       a SessionKeyValue only
///     grace = "5s",                 // required: how long after its end a window accepts records
///     retention = "1h",             // optional: at least size (difference, gap) + grace, the default
///     emit = on_window_close,       // optional: on_window_update (the default) or on_window_close
///     on_late = dead_letter,        // optional: drop (the default: counted, logged) or dead_letter
///     idle_advance = "30s",         // optional: stream time follows the wall clock when idle this long
///     // backend, changelog, key_serde, value_serde: as for a key-value store
/// )]
/// type ViewCounts = kstreams::WindowKeyValue<String, u64>;
/// ```
///
/// Durations `D` are literals as in `punctuate(every = ..)`: `"250ms"`, `"10s"`, `"5m"`, `"1h"`,
/// `"1d"`, `"1m30s"`. Grace has no default (Kafka Streams' lesson, KIP-633): a default grace drops late
/// records nobody chose to drop. Every mistake the macro can see is a compile error at its token:
/// a missing grace or window, a malformed duration, a zero size, gap or advance, an advance longer
/// than the size, a retention shorter than a window's life, a `session(..)` window on a
/// `WindowKeyValue` (or a time window on a `SessionKeyValue`), a window on a `KeyValue`.
///
/// The alias becomes `struct ViewCounts<'t>` that derefs to
/// [`TimeWindowState<'t, String, u64>`](window::TimeWindowState) (sessions:
/// [`SessionWindowState`](window::SessionWindowState)) and implements [`StoreHandle`] (its spec
/// is a window or session store: [`StoreSpec::windowed`], [`StoreSpec::sessions`]) and
/// [`WindowedHandle`](window::WindowedHandle) (its [`Windowing`](window::Windowing)). A custom
/// windowed aggregation is then a plain function, and the library operators
/// ([`window::count`], [`window::reduce`], ...) take the handle as a type parameter:
///
/// ```
/// use kstreams::store::{StoreHandle, StoreKind};
/// use kstreams::window::{EmitStrategy, WindowedHandle};
/// use kstreams::{batch_processor, store, Emit, Record, Windowed};
///
/// #[store(name = "counts", window = tumbling(size = "1m"), grace = "10s", emit = on_window_close)]
/// type Counts = kstreams::WindowKeyValue<String, u64>;
///
/// #[batch_processor]
/// fn count(views: &[Record<String, String>], counts: &mut Counts, out: &mut Emit<Windowed<String>, u64>) -> kstreams::Result<()> {
///     counts.aggregate(views, out, |_| 0, |n, _| *n += 1)
/// }
///
/// assert_eq!(Counts::spec().kind(), StoreKind::Window { size_ms: 60_000, retention_ms: 70_000 });
/// assert_eq!(Counts::windowing().emit_strategy(), EmitStrategy::OnWindowClose);
/// ```
///
/// A windowed store without a grace does not compile:
///
/// ```compile_fail
/// #[kstreams::store(name = "counts", window = tumbling(size = "1m"))]
/// type Counts = kstreams::WindowKeyValue<String, u64>;
/// ```
///
/// # Versioned stores
///
/// A versioned key-value store (Kafka Streams' KIP-889: past values of each key, read as of a
/// timestamp) names [`VersionedKeyValue<K, V>`](VersionedKeyValue) and says how long it keeps
/// history, `history = D` (required, no default; `window` and the other windowed keys are refused,
/// and `history` is refused on every other store). The alias becomes `struct Prices<'t>` that
/// derefs to [`VersionedStore<'t, String, u64>`](store::VersionedStore) (see it for the rules)
/// and implements [`StoreHandle`] (its spec: [`StoreSpec::versioned`]). Key-value and versioned
/// handles implement [`table::TableStore`] (on their `'static` form), so they can hold a table;
/// windowed handles cannot.
///
/// ```
/// use kstreams::store::{StoreHandle, StoreKind};
/// use kstreams::{batch_processor, store, Emit, Record};
///
/// #[store(name = "prices", history = "1d")]
/// type Prices = kstreams::VersionedKeyValue<String, u64>;
///
/// /// Each record is a price valid from its timestamp; forwards the price an hour before.
/// #[batch_processor]
/// fn an_hour_ago(prices: &[Record<String, u64>], store: &mut Prices, out: &mut Emit<String, Option<u64>>) -> kstreams::Result<()> {
///     for p in prices {
///         let _ = store.put(&p.key, Some(&p.value), p.timestamp)?;
///         let then = store.get_as_of(&p.key, p.timestamp - 3_600_000)?;
///         out.forward(p.clone().with_value(then.map(|v| v.value)));
///     }
///     Ok(())
/// }
///
/// assert_eq!(Prices::spec().kind(), StoreKind::Versioned { history_ms: 86_400_000 });
/// ```
///
/// A versioned store without a history does not compile:
///
/// ```compile_fail
/// #[kstreams::store(name = "prices")]
/// type Prices = kstreams::VersionedKeyValue<String, u64>;
/// ```
pub use kstreams_macros::store;

#[cfg(feature = "kafka")]
pub mod kafka;

/// The README's example, compiled and run as a doctest so that it stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
