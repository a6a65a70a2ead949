//! The attribute macros of [kstreams](https://docs.rs/kstreams): `#[batch_processor]`,
//! `#[processor]`, `#[punctuator]` and `#[store]`. Use them through `kstreams`, which re-exports them and documents
//! them with examples; this crate only holds their implementation.
//!
//! Each entry point hands `proc_macro2` tokens to a plain function; the work is done in
//! modules that unit tests can reach: `attr` parses the attribute's `key = value` arguments,
//! `ast` parses and shape-checks the item into a model, `valid` checks names and duplicates,
//! `expand` writes the code, and `fallback` what is emitted next to the `compile_error!`s
//! when there are mistakes (so one mistake gives one error). Errors are collected in
//! `ctxt::Errors`, all of them, each spanned at the offending tokens.
//!
//! Set `KSTREAMS_MACROS_DEBUG=1` while building to print every expansion to stderr (cargo does
//! not track that variable: touch the source file, or `cargo clean -p` the crate, to see it again).
//!
//! # What the macros generate
//!
//! ```text
//! #[store(name = "word-counts", backend = "in_memory")]
//! type WordCounts = kstreams::KeyValue<String, u64>;
//!
//! #[batch_processor]
//! fn count_words(
//!     lines: &[Record<(), String>],
//!     counts: &mut WordCounts,
//!     out: &mut Emit<String, u64>,
//! ) -> kstreams::Result<()> {
//!     /* body */
//! }
//! ```
//!
//! expands to (as printed by `KSTREAMS_MACROS_DEBUG=1`, with the generated doc lines shortened):
//!
//! ```text
//! #[doc = " The store `word-counts` (`String` → `u64`), declared with `#[kstreams::store]` ..."]
//! #[derive(::core::fmt::Debug)]
//! struct WordCounts<'t>(::kstreams::__private::KeyValueStore<'t, String, u64>);
//! const _: () = {
//!     // The alias must name `kstreams::KeyValue`, whatever it is imported as.
//!     const _: fn(kstreams::KeyValue<String, u64>) -> ::kstreams::__private::KeyValue<String, u64> =
//!         ::core::convert::identity;
//!     impl<'t> ::core::ops::Deref for WordCounts<'t> {
//!         type Target = ::kstreams::__private::KeyValueStore<'t, String, u64>;
//!         #[inline]
//!         fn deref(&self) -> &Self::Target { &self.0 }
//!     }
//!     impl<'t> ::core::ops::DerefMut for WordCounts<'t> {
//!         #[inline]
//!         fn deref_mut(&mut self) -> &mut Self::Target { &mut self.0 }
//!     }
//!     impl<'t> ::kstreams::__private::StoreHandle<'t> for WordCounts<'t> {
//!         const NAME: &'static str = "word-counts";
//!         type Key = String;
//!         type Value = u64;
//!         fn spec() -> ::kstreams::__private::StoreSpec {
//!             ::kstreams::__private::StoreSpec::with_serdes::<String, u64>(
//!                 "word-counts",
//!                 ::kstreams::__private::default_serde::<String>(),
//!                 ::kstreams::__private::default_serde::<u64>(),
//!             )
//!             .backend(::kstreams::__private::Backend::InMemory)
//!         }
//!         #[inline]
//!         fn bind(store: ::kstreams::__private::KeyValueStore<'t, String, u64>) -> Self {
//!             WordCounts(store)
//!         }
//!     }
//! };
//!
//! #[doc = " A processor made by `#[kstreams::batch_processor]` from the function `count_words` ..."]
//! #[allow(non_camel_case_types)]
//! #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug)]
//! struct count_words;
//! #[allow(elided_lifetimes_in_paths)]
//! const _: () = {
//!     // Checked first, so that a parameter that is not a store is the first error.
//!     #[allow(dead_code)]
//!     fn __kstreams_stores_first() {
//!         let _ = ::kstreams::__private::store_param::<WordCounts>();
//!     }
//!     fn __kstreams_count_words(
//!         lines: &[Record<(), String>],
//!         counts: &mut WordCounts,
//!         out: &mut Emit<String, u64>,
//!     ) -> kstreams::Result<()> { /* body */ }
//!     impl ::core::ops::Deref for count_words {
//!         type Target = fn(&[Record<(), String>], &mut WordCounts, &mut Emit<String, u64>) -> kstreams::Result<()>;
//!         #[inline]
//!         fn deref(&self) -> &Self::Target {
//!             static __KSTREAMS_FN: <count_words as ::core::ops::Deref>::Target = __kstreams_count_words;
//!             &__KSTREAMS_FN
//!         }
//!     }
//!     impl ::kstreams::__private::BatchProcessor<(), String> for count_words {
//!         type OutKey = String;
//!         type OutValue = u64;
//!         fn node_name(&self) -> ::core::option::Option<&str> {
//!             ::core::option::Option::Some("count_words")
//!         }
//!         fn stores(&self) -> ::kstreams::__private::Vec<::kstreams::__private::StoreSpec> {
//!             ::kstreams::__private::Vec::from([(::kstreams::__private::store_param::<WordCounts>().spec)()])
//!         }
//!         #[inline]
//!         fn process_batch(
//!             &mut self,
//!             __kstreams_records: &[::kstreams::__private::Record<(), String>],
//!             __kstreams_ctx: &mut ::kstreams::__private::Context<'_, String, u64>,
//!         ) -> ::kstreams::__private::Result<()> {
//!             let __kstreams_binder = ::kstreams::__private::binder(__kstreams_ctx);
//!             let mut __kstreams_store_0 =
//!                 (::kstreams::__private::store_param::<WordCounts>().bind)(__kstreams_binder)?;
//!             ::kstreams::__private::ProcessorReturn::into_result(
//!                 __kstreams_count_words(__kstreams_records, &mut __kstreams_store_0, __kstreams_ctx),
//!             )
//!         }
//!     }
//! };
//! ```
//!
//! `#[processor]` differs only in `process_batch`, which binds the stores once and calls the
//! function for each record, filling in the record's origin on an error.
//!
//! A store parameter taken by shared reference, `prices: &Prices` (read only: how a processor
//! reads a table, whose store only the table writes), goes through `store_ref_param` instead:
//! its spec is declared read-only and its handle bound with `let` and passed by `&`:
//!
//! ```text
//! fn stores(&self) -> Vec<StoreSpec> {
//!     Vec::from([(::kstreams::__private::store_ref_param::<Prices>().spec)()])   // `.read_only()`
//! }
//! // in process_batch:
//! let __kstreams_store_0 = (::kstreams::__private::store_ref_param::<Prices>().bind)(__kstreams_binder)?;
//! __kstreams_enrich(__kstreams_records, &__kstreams_store_0, __kstreams_ctx)
//! ```
//!
//! Through `&Prices` no write is reachable (the handles' writes take `&mut self`), and the
//! topology refuses a processor that takes a table's store `&mut`.
//!
//! With `punctuate(every = "10s", time = wall_clock, with = report)` (repeatable) and
//! `init = setup`, the impl also gets
//!
//! ```text
//! fn stores(&self) -> Vec<StoreSpec> {
//!     let mut __kstreams_stores = Vec::from([/* the function's own */]);
//!     ::kstreams::__private::merge_stores(&mut __kstreams_stores,
//!         <_ as ::kstreams::__private::Punctuator<String, u64>>::stores(&report));
//!     __kstreams_stores
//! }
//! fn init(&mut self, __kstreams_ctx: &mut InitContext<'_>) -> Result<()> {
//!     __kstreams_ctx.schedule(::core::time::Duration::from_millis(10000u64), PunctuationType::WallClock)?;
//!     ::kstreams::__private::run_init(__kstreams_ctx, setup)?;
//!     Ok(())
//! }
//! fn punctuate(&mut self, __kstreams_punctuation: Punctuation, __kstreams_ctx: &mut Context<'_, String, u64>) -> Result<()> {
//!     match __kstreams_punctuation.id {
//!         0usize => <_ as ::kstreams::__private::Punctuator<String, u64>>::punctuate(&report, &__kstreams_punctuation, __kstreams_ctx),
//!         _ => ::kstreams::__private::unknown_punctuation(__kstreams_ctx, &__kstreams_punctuation),
//!     }
//! }
//! ```
//!
//! A windowed store, `#[store(name = "counts", window = tumbling(size = "1m"), grace = "10s")]
//! type Counts = kstreams::WindowKeyValue<String, u64>;`, becomes the same shell over the window
//! state, plus the windowing read at compile time:
//!
//! ```text
//! struct Counts<'t>(::kstreams::__private::TimeWindowState<'t, String, u64>);
//! const _: () = {
//!     const _: fn(kstreams::WindowKeyValue<String, u64>) -> ::kstreams::__private::WindowKeyValue<String, u64> =
//!         ::core::convert::identity;
//!     /* Deref, DerefMut to TimeWindowState */
//!     impl<'t> ::kstreams::__private::StoreHandle<'t> for Counts<'t> {
//!         /* NAME, Key, Value as above */
//!         fn spec() -> StoreSpec {
//!             ::kstreams::__private::window_store_spec(/* the key-value spec as above */,
//!                 &<Self as ::kstreams::__private::WindowedHandle<'t>>::windowing())
//!         }
//!         fn bind(store: KeyValueStore<'t, String, u64>) -> Self {
//!             Counts(::kstreams::__private::time_window_state(store, <Self as WindowedHandle<'t>>::windowing()))
//!         }
//!     }
//!     impl<'t> ::kstreams::__private::WindowedHandle<'t> for Counts<'t> {
//!         type Kind = ::kstreams::__private::TimeKind;   // SessionKind for a SessionKeyValue
//!         fn windowing() -> Windowing {
//!             ::kstreams::__private::windowing(
//!                 ::kstreams::__private::time_windows_ms(60000i64, 60000i64, 10000i64),
//!                 ::kstreams::__private::EmitStrategy::OnWindowUpdate,
//!                 ::kstreams::__private::OnLate::Drop,
//!                 ::core::option::Option::None,   // retention: the default
//!                 ::core::option::Option::None,   // idle_advance
//!             )
//!         }
//!     }
//! };
//! ```
//!
//! and `#[punctuator] fn report(p: &Punctuation, counts: &mut WordCounts, out: &mut Emit<String, u64>)`
//! becomes a unit struct `report` implementing `__private::Punctuator<String, u64>` (for every
//! `<K, V>` when it has no output), whose `punctuate` binds its stores by name and calls the
//! function.

use proc_macro::TokenStream;

mod ast;
mod attr;
mod ctxt;
mod debug;
mod expand;
mod fallback;
mod valid;

/// Turns `fn(&[Record<K, V>], &mut Store.. or &Store.., &mut Emit<K2, V2>)` into a batch
/// processor (`&mut` stores read and write, `&` stores read only); see
/// `kstreams::batch_processor`.
#[proc_macro_attribute]
pub fn batch_processor(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::processor(ast::Kind::Batch, args.into(), item.into()).into()
}

/// Turns `fn(&Record<K, V>, &mut Store.. or &Store.., &mut Emit<K2, V2>)` into a processor of
/// one record at a time; see `kstreams::processor`.
#[proc_macro_attribute]
pub fn processor(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::processor(ast::Kind::PerRecord, args.into(), item.into()).into()
}

/// Turns `fn(&Punctuation, &mut Store.. or &Store.., &mut Emit<K2, V2>)` into a punctuation
/// handler that a processor names in `punctuate(with = ...)`; see `kstreams::punctuator`.
#[proc_macro_attribute]
pub fn punctuator(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::processor(ast::Kind::Punctuator, args.into(), item.into()).into()
}

/// Turns `type Name = KeyValue<K, V>;` into a typed store handle; see `kstreams::store`.
#[proc_macro_attribute]
pub fn store(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::store(args.into(), item.into()).into()
}

/// The macros over `proc_macro2` tokens: parse → validate → expand (or fall back).
mod entry {
    use proc_macro2::{Span, TokenStream};

    use crate::ast::{self, Kind};
    use crate::ctxt::Errors;
    use crate::{attr, debug, expand, fallback, valid};

    pub(crate) fn processor(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
        let mut errors = Errors::new();
        let args = if kind == Kind::Punctuator {
            attr::punctuator_args(args, &mut errors);
            attr::ProcessorArgs::default()
        } else {
            attr::processor_args(kind.macro_name(), args, &mut errors)
        };
        if let Some(name) = &args.name {
            valid::check_name("node", name, &mut errors);
        }
        let parsed = ast::processor_fn(kind, item, &mut errors);
        if let Some(syn::Item::Fn(f)) = &parsed.item {
            valid::check_param_names(kind.macro_name(), f, &mut errors);
        }
        if let Some(model) = &parsed.model {
            valid::check_processor(model, &mut errors);
        }
        let out = match (errors.finish(), &parsed.model) {
            (Ok(()), Some(model)) if kind == Kind::Punctuator => expand::punctuator(model),
            (Ok(()), Some(model)) => expand::processor(model, &args),
            (Err(e), _) => fallback::processor(kind, &parsed, e),
            (Ok(()), None) => fallback::processor(
                kind,
                &parsed,
                syn::Error::new(Span::call_site(), "kstreams-macros: unexpected input"),
            ),
        };
        debug::print(kind.macro_name(), &out);
        out
    }

    pub(crate) fn store(args: TokenStream, item: TokenStream) -> TokenStream {
        let mut errors = Errors::new();
        let args = attr::store_args(args, &mut errors);
        match &args.name {
            Some(name) => valid::check_name("store", name, &mut errors),
            None => errors.at(
                Span::call_site(),
                "a store needs a name: `#[store(name = \"...\")]` (it names the store's changelog topic too)",
            ),
        }
        let parsed = ast::store_alias(item, &mut errors);
        if let Some(model) = &parsed.model {
            valid::check_store(model, &args, &mut errors);
        }
        let out = match (errors.finish(), &parsed.model, &args.name) {
            (Ok(()), Some(model), Some(name)) => expand::store(model, &args, name),
            (Err(e), _, _) => fallback::store(&parsed, e),
            _ => fallback::store(
                &parsed,
                syn::Error::new(Span::call_site(), "kstreams-macros: unexpected input"),
            ),
        };
        debug::print("store", &out);
        out
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use crate::ast::Kind;
    use crate::entry;

    fn processor(tokens: proc_macro2::TokenStream) -> String {
        entry::processor(Kind::Batch, quote!(), tokens).to_string()
    }

    /// Every absolute path is `::kstreams::__private::…` or `::core::…`.
    fn assert_private_paths_only(out: &str) {
        for (i, _) in out.match_indices(":: ") {
            let before = &out[..i];
            let is_path_start = before.ends_with("< ")
                || before.ends_with("( ")
                || before.ends_with("= ")
                || before.ends_with("[ ")
                || before.ends_with("; ")
                || before.ends_with("{ ")
                || before.ends_with(", ")
                || before.ends_with("for ")
                || before.ends_with("& ")
                || before.ends_with("mut ")
                || before.ends_with("-> ")
                || before.ends_with("# [derive (");
            if is_path_start {
                let rest = &out[i + 3..];
                assert!(
                    rest.starts_with("kstreams :: __private ::") || rest.starts_with("core ::"),
                    "unexpected path at: {}",
                    &out[i..(i + 60).min(out.len())]
                );
            }
        }
    }

    #[test]
    fn expansions_name_only_private_and_core_paths() {
        let out = processor(quote! {
            fn count(lines: &[Record<(), String>], counts: &mut Counts, out: &mut Emit<String, u64>) -> kstreams::Result<()> {
                Ok(())
            }
        });
        assert_private_paths_only(&out);
        assert!(out.contains("struct count ;"));
        assert!(out.contains("fn __kstreams_count"));
        assert!(!out.contains("compile_error"));
        // Lines of the user's own code stay as written (`Ok(())`, `kstreams::Result`).
        assert!(out.contains("-> kstreams :: Result < () >"));
    }

    #[test]
    fn a_mistake_keeps_the_function_next_to_one_error() {
        let out = processor(quote! {
            fn count(lines: &[Record<(), String>], limit: usize) {}
        });
        assert_eq!(out.matches("compile_error").count(), 1);
        assert!(out.contains("struct count ;"));
        assert!(out.contains("fn __kstreams_count"));
        assert!(out.contains("BatchProcessor < __KstreamsK , __KstreamsV > for count"));
    }

    #[test]
    fn a_parameter_named_like_its_function_is_one_error_and_no_body() {
        let out = processor(quote! {
            fn totals(orders: &[Record<String, u64>], totals: &mut Totals) {
                totals.get(&orders[0].key);
            }
        });
        assert_eq!(out.matches("compile_error").count(), 1);
        assert!(out.contains("the parameter `totals` has the name of its function"));
        assert!(out.contains("struct totals ;"));
        // The body would only add errors (its `totals` is the unit struct): it is left out.
        assert!(!out.contains("totals . get"), "{out}");
    }

    #[test]
    fn punctuations_are_scheduled_in_init_and_dispatched_by_id() {
        let out = entry::processor(
            Kind::Batch,
            quote!(
                punctuate(every = "1m30s", time = wall_clock, with = report),
                punctuate(every = INTERVAL, time = stream_time, with = m::tick),
                init = setup
            ),
            quote! {
                fn count(lines: &[Record<(), String>], out: &mut Emit<String, u64>) {}
            },
        )
        .to_string();
        assert!(!out.contains("compile_error"), "{out}");
        assert!(out.contains("Duration :: from_millis (90000u64)"), "{out}");
        assert!(out.contains("PunctuationType :: WallClock"));
        assert!(out.contains("let __kstreams_every : :: core :: time :: Duration = INTERVAL ;"));
        assert!(out.contains("run_init (__kstreams_ctx , setup)"));
        assert!(out.contains("0usize => < _ as :: kstreams :: __private :: Punctuator < String , u64 >> :: punctuate (& report"), "{out}");
        assert!(out.contains("1usize => < _ as :: kstreams :: __private :: Punctuator < String , u64 >> :: punctuate (& m :: tick"));
        assert!(out.contains("merge_stores (& mut __kstreams_stores"));
    }

    #[test]
    fn a_punctuator_implements_the_handler_trait() {
        let out = entry::processor(
            Kind::Punctuator,
            quote!(),
            quote! {
                fn report(p: &Punctuation, counts: &mut Counts, out: &mut Emit<String, u64>) -> kstreams::Result<()> { Ok(()) }
            },
        )
        .to_string();
        assert!(!out.contains("compile_error"), "{out}");
        assert!(
            out.contains("impl :: kstreams :: __private :: Punctuator < String , u64 > for report")
        );
        assert!(out.contains("(:: kstreams :: __private :: store_param :: < Counts > () . bind) (__kstreams_binder)"), "{out}");

        // Without an output, it fits any processor; arguments are refused.
        let out = entry::processor(
            Kind::Punctuator,
            quote!(every = "1s"),
            quote! {
                fn tick(p: &Punctuation) {}
            },
        )
        .to_string();
        assert_eq!(out.matches("compile_error").count(), 1);
        assert!(out.contains("`#[punctuator]` takes no arguments"));
        assert!(out.contains("Punctuator < __KstreamsK , __KstreamsV > for tick"));
    }

    #[test]
    fn a_store_without_name_still_declares_its_type() {
        let out = entry::store(
            quote!(),
            quote!(
                type Counts = kstreams::KeyValue<String, u64>;
            ),
        )
        .to_string();
        assert_eq!(out.matches("compile_error").count(), 1);
        assert!(out.contains("struct Counts < 't >"));
        assert!(out.contains("StoreHandle < 't > for Counts < 't >"));
    }

    #[test]
    fn a_windowed_store_is_a_handle_over_its_window_state() {
        let out = entry::store(
            quote!(
                name = "counts",
                window = hopping(size = "1m", advance = "10s"),
                grace = "5s",
                emit = on_window_close,
                idle_advance = "30s"
            ),
            quote!(
                type Counts = kstreams::WindowKeyValue<String, u64>;
            ),
        )
        .to_string();
        assert!(!out.contains("compile_error"), "{out}");
        assert_private_paths_only(&out);
        assert!(out.contains("struct Counts < 't > (:: kstreams :: __private :: TimeWindowState < 't , String , u64 >) ;"), "{out}");
        assert!(out.contains("fn (kstreams :: WindowKeyValue < String , u64 >) -> :: kstreams :: __private :: WindowKeyValue < String , u64 >"));
        assert!(out.contains("WindowedHandle < 't > for Counts < 't >"));
        assert!(out.contains("type Kind = :: kstreams :: __private :: TimeKind ;"));
        assert!(
            out.contains("time_windows_ms (60000i64 , 10000i64 , 5000i64)"),
            "{out}"
        );
        assert!(out.contains("EmitStrategy :: OnWindowClose"));
        assert!(out.contains("OnLate :: Drop"));
        assert!(out.contains(":: core :: option :: Option :: None , :: core :: option :: Option :: Some (30000i64)"), "{out}");
        assert!(out.contains("window_store_spec"));
        assert!(out.contains("time_window_state (store ,"));

        let out = entry::store(
            quote!(
                name = "sessions",
                window = session(gap = "5m"),
                grace = "0s",
                retention = "1h",
                on_late = dead_letter
            ),
            quote!(
                type Sessions = kstreams::SessionKeyValue<String, u64>;
            ),
        )
        .to_string();
        assert!(!out.contains("compile_error"), "{out}");
        assert!(out.contains("SessionWindowState < 't , String , u64 >"));
        assert!(out.contains("type Kind = :: kstreams :: __private :: SessionKind ;"));
        assert!(
            out.contains("session_windows_ms (300000i64 , 0i64)"),
            "{out}"
        );
        assert!(out.contains("OnLate :: DeadLetter"));
        assert!(out.contains("Option :: Some (3600000i64)"));
        assert!(out.contains("session_window_state (store ,"));
    }

    #[test]
    fn a_windowed_store_with_mistakes_still_declares_its_handle() {
        let out = entry::store(
            quote!(name = "counts", window = tumbling(size = "1 minute")),
            quote!(
                type Counts = kstreams::WindowKeyValue<String, u64>;
            ),
        )
        .to_string();
        // The malformed size and the missing grace, each reported; the handle is still there
        // (over the right state, a windowed handle), so the code using it adds no errors.
        assert_eq!(out.matches("compile_error").count(), 2, "{out}");
        assert!(out.contains("struct Counts < 't > (:: kstreams :: __private :: TimeWindowState"));
        assert!(out.contains("WindowedHandle < 't > for Counts < 't >"));
        assert_private_paths_only(&out);
    }

    #[test]
    fn debug_output_is_indented() {
        let out = crate::debug::pretty(&quote!(
            const _: () = {
                fn f() {
                    a;
                    b;
                }
            };
        ));
        assert!(out.contains("\n    fn f()"), "{out}");
    }
}
