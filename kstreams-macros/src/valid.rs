//! Checks over the parsed model that need no types: names the topology would reject at run time,
//! a store taken twice by one function, a parameter named like its function, and a store's keys
//! against its type (windows, grace, retention).

use quote::ToTokens;
use syn::LitStr;

use crate::ast::{ProcessorFn, StoreAlias, StoreKind};
use crate::attr::{Shape, StoreArgs, WindowForm};
use crate::ctxt::Errors;

/// Node and store names appear in topic names: 1 to 200 of `a-z A-Z 0-9 . _ -`
/// (the rule of `TopologyBuilder`, checked here at compile time).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(crate) fn check_name(what: &str, name: &LitStr, errors: &mut Errors) {
    if !valid_name(&name.value()) {
        errors.spanned(
            name,
            format_args!(
                "invalid {what} name {:?}: use 1 to 200 of the characters a-z A-Z 0-9 . _ -",
                name.value()
            ),
        );
    }
}

/// The parameters of `f` whose name is the function's own: the macro turns the function into a
/// unit struct of that name, so such a parameter would be read as that struct (a pattern), and
/// rustc's errors would speak of unit structs.
pub(crate) fn params_named_like_fn(f: &syn::ItemFn) -> Vec<&syn::PatIdent> {
    let name = crate::expand::unraw(&f.sig.ident);
    f.sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            syn::FnArg::Typed(pt) => match &*pt.pat {
                syn::Pat::Ident(p) if crate::expand::unraw(&p.ident) == name => Some(p),
                _ => None,
            },
            syn::FnArg::Receiver(_) => None,
        })
        .collect()
}

/// A parameter named like its function (see [`params_named_like_fn`]).
pub(crate) fn check_param_names(macro_name: &str, f: &syn::ItemFn, errors: &mut Errors) {
    for p in params_named_like_fn(f) {
        errors.spanned(
            &p.ident,
            format_args!(
                "the parameter `{name}` has the name of its function: `#[{macro_name}]` turns `fn {name}` into a type named `{name}`, which the parameter's name would then refer to; rename the parameter (or the function)",
                name = crate::expand::unraw(&p.ident),
            ),
        );
    }
}

/// Two parameters of one function naming the same store type.
pub(crate) fn check_processor(f: &ProcessorFn, errors: &mut Errors) {
    let mut seen: Vec<String> = Vec::new();
    for s in &f.stores {
        let key = s.ty.to_token_stream().to_string();
        if seen.contains(&key) {
            errors.spanned(
                &s.ty,
                format_args!(
                    "`{}` is taken twice: a store is one parameter; use that parameter wherever the store is needed",
                    crate::ast::code(&s.ty)
                ),
            );
        } else {
            seen.push(key);
        }
    }
}

/// What the least retention adds the grace to, and the words for it: `size + grace` (time
/// windows), `2 × difference + grace` (sliding windows: a record reads the windows of records up
/// to one difference before its own, as Kafka Streams' `SlidingWindowedKStreamImpl` requires),
/// `gap + grace` (sessions); the runtime's default (`Windows::default_retention_ms`) is the same.
pub(crate) fn retention_base(form: &WindowForm) -> (u64, String) {
    match form {
        WindowForm::Tumbling { size } | WindowForm::Hopping { size, .. } => {
            (size.ms, format!("the size {:?}", size.lit.value()))
        }
        WindowForm::Sliding { difference } => (
            difference.ms.saturating_mul(2),
            format!("twice the difference {:?}", difference.lit.value()),
        ),
        WindowForm::Session { gap } => (gap.ms, format!("the gap {:?}", gap.lit.value())),
    }
}

/// The store's keys against its type: windows only on windowed stores, the right form for each,
/// a grace on every windowed store, a retention that keeps a window until it is final.
pub(crate) fn check_store(alias: &StoreAlias, args: &StoreArgs, errors: &mut Errors) {
    let name = crate::expand::unraw(&alias.ident);
    let marker = alias.kind.marker();
    let at_marker = crate::ast::marker_tokens(&alias.ty);
    if alias.kind != StoreKind::Versioned
        && let Some(key) = &args.history_key
    {
        let what = match alias.kind {
            StoreKind::KeyValue => "a key-value store",
            _ => "a windowed store (its `retention` says how long it keeps windows)",
        };
        errors.spanned(
            key,
            format_args!(
                "`history` is for versioned stores, and `{name}` is {what}: declare `type {name} = kstreams::VersionedKeyValue<K, V>;` to keep past values by timestamp"
            ),
        );
    }
    if alias.kind == StoreKind::Versioned {
        // One mistake (a windowed store declared as `VersionedKeyValue`), one error: at `window`
        // if given.
        let keys: Vec<&syn::Ident> = match args.windowed_keys.iter().find(|k| *k == "window") {
            Some(w) => vec![w],
            None => args.windowed_keys.iter().collect(),
        };
        for key in &keys {
            errors.spanned(
                key,
                format_args!(
                    "`{key}` is for windowed stores, and `{name}` is a versioned key-value store: its `history` says how long it keeps past values; a windowed aggregate's store is a `kstreams::WindowKeyValue<K, A>` or `kstreams::SessionKeyValue<K, A>`"
                ),
            );
        }
        if args.history_key.is_none() && keys.is_empty() {
            errors.spanned(
                &at_marker,
                "a `VersionedKeyValue` store needs its history retention: `history = \"1d\"` (how far back reads as of a timestamp are answered; puts older than that are refused); there is no default, as in Kafka Streams",
            );
        }
        return;
    }
    if alias.kind == StoreKind::KeyValue {
        // One mistake (a windowed store declared as `KeyValue`), one error: at `window` if given.
        let keys: Vec<&syn::Ident> = match args.windowed_keys.iter().find(|k| *k == "window") {
            Some(w) => vec![w],
            None => args.windowed_keys.iter().collect(),
        };
        for key in keys {
            errors.spanned(
                key,
                format_args!(
                    "`{key}` is for windowed stores, and `{name}` is a key-value store: declare `type {name} = kstreams::WindowKeyValue<K, A>;` (tumbling, hopping and sliding windows) or `kstreams::SessionKeyValue<K, A>` (session windows)"
                ),
            );
        }
        return;
    }
    let (wanted, forms) = match alias.kind {
        StoreKind::Session => (Shape::Session, "`window = session(gap = \"5m\")`"),
        _ => (
            Shape::Time,
            "`window = tumbling(size = \"1m\")`, `hopping(size = \"1m\", advance = \"10s\")` or `sliding(difference = \"1m\")`",
        ),
    };
    match &args.window {
        None => errors.spanned(
            &at_marker,
            format_args!("a `{marker}` store needs its windows: {forms}"),
        ),
        Some(w) => {
            if let (Some(shape), Some(form)) = (w.shape, &w.name)
                && shape != wanted
            {
                let (home, what) = match shape {
                    Shape::Session => ("SessionKeyValue", "session windows"),
                    Shape::Time => ("WindowKeyValue", "time and sliding windows"),
                };
                let here = match alias.kind {
                    StoreKind::Session => "session windows",
                    _ => "tumbling, hopping and sliding windows",
                };
                errors.spanned(
                    form,
                    format_args!(
                        "`{form}(..)` windows are kept in a `kstreams::{home}<K, A>` ({what}), and `{name}` is a `{marker}` ({here}): {forms}"
                    ),
                );
            }
        }
    }
    if !args.windowed_keys.iter().any(|k| k == "grace") {
        let msg = "a windowed store needs `grace = \"...\"`: how long after a window ends it still accepts out-of-order records (`grace = \"0s\"` accepts none); there is no default, because a defaulted grace drops late records nobody asked to drop (Kafka Streams removed its default in KIP-633)";
        match &args.window {
            Some(w) => errors.spanned(&w.key, msg),
            None => errors.at(proc_macro2::Span::call_site(), msg),
        }
    }
    if let (Some(form), Some(grace), Some(retention)) = (
        args.window.as_ref().and_then(|w| w.form.as_ref()),
        &args.grace,
        &args.retention,
    ) {
        let (base, words) = retention_base(form);
        let least = base.saturating_add(grace.ms);
        if retention.ms < least {
            errors.spanned(
                &retention.lit,
                format_args!(
                    "the retention {:?} is shorter than {words} plus the grace {:?} ({least} ms): a window must be kept until it is final; leave `retention` out for that minimum (the default, as in Kafka Streams)",
                    retention.lit.value(),
                    grace.lit.value(),
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    include!("../../kstreams/tests/data/name_cases.rs");

    fn store_errors(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> Vec<String> {
        let mut errors = Errors::new();
        let args = crate::attr::store_args(args, &mut errors);
        let parsed = crate::ast::store_alias(item, &mut errors);
        let model = parsed.model.expect("an alias");
        check_store(&model, &args, &mut errors);
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn versioned_stores_take_a_history_and_only_they_do() {
        use quote::quote;
        let versioned = quote!(
            type P = kstreams::VersionedKeyValue<String, u64>;
        );
        let kv = quote!(
            type C = kstreams::KeyValue<String, u64>;
        );
        let window = quote!(
            type V = kstreams::WindowKeyValue<String, u64>;
        );
        for history in ["1d", "0s", "36h30m"] {
            assert_eq!(
                store_errors(quote!(name = "p", history = #history), versioned.clone()),
                Vec::<String>::new(),
                "{history}"
            );
        }
        let cases = [
            (
                quote!(name = "p"),
                &versioned,
                vec![
                    "a `VersionedKeyValue` store needs its history retention: `history = \"1d\"` (how far back reads as of a timestamp are answered; puts older than that are refused); there is no default, as in Kafka Streams",
                ],
            ),
            (
                quote!(name = "c", history = "1d"),
                &kv,
                vec![
                    "`history` is for versioned stores, and `C` is a key-value store: declare `type C = kstreams::VersionedKeyValue<K, V>;` to keep past values by timestamp",
                ],
            ),
            (
                quote!(
                    name = "v",
                    window = tumbling(size = "1m"),
                    grace = "0s",
                    history = "1d"
                ),
                &window,
                vec![
                    "`history` is for versioned stores, and `V` is a windowed store (its `retention` says how long it keeps windows): declare `type V = kstreams::VersionedKeyValue<K, V>;` to keep past values by timestamp",
                ],
            ),
            (
                quote!(
                    name = "p",
                    history = "1d",
                    window = tumbling(size = "1m"),
                    grace = "0s"
                ),
                &versioned,
                vec![
                    "`window` is for windowed stores, and `P` is a versioned key-value store: its `history` says how long it keeps past values; a windowed aggregate's store is a `kstreams::WindowKeyValue<K, A>` or `kstreams::SessionKeyValue<K, A>`",
                ],
            ),
            (
                quote!(name = "p", grace = "1s"),
                &versioned,
                vec![
                    "`grace` is for windowed stores, and `P` is a versioned key-value store: its `history` says how long it keeps past values; a windowed aggregate's store is a `kstreams::WindowKeyValue<K, A>` or `kstreams::SessionKeyValue<K, A>`",
                ],
            ),
        ];
        for (args, item, want) in cases {
            assert_eq!(store_errors(args.clone(), item.clone()), want, "{args}");
        }
    }

    #[test]
    fn windowed_stores_take_windows_of_their_kind() {
        use quote::quote;
        let window = quote!(
            type V = kstreams::WindowKeyValue<String, u64>;
        );
        let session = quote!(
            type S = kstreams::SessionKeyValue<String, u64>;
        );
        let kv = quote!(
            type C = kstreams::KeyValue<String, u64>;
        );
        for (args, item) in [
            (
                quote!(name = "v", window = tumbling(size = "1m"), grace = "10s"),
                &window,
            ),
            (
                quote!(
                    name = "v",
                    window = hopping(size = "1m", advance = "1m"),
                    grace = "0s",
                    retention = "61s"
                ),
                &window,
            ),
            (
                quote!(
                    name = "v",
                    window = sliding(difference = "1m"),
                    grace = "1s",
                    retention = "121s"
                ),
                &window,
            ),
            (
                quote!(
                    name = "s",
                    window = session(gap = "5m"),
                    grace = "30s",
                    retention = "330s"
                ),
                &session,
            ),
            (quote!(name = "c"), &kv),
        ] {
            assert_eq!(
                store_errors(args.clone(), item.clone()),
                Vec::<String>::new(),
                "{args}"
            );
        }

        let cases = [
            (
                quote!(name = "c", window = tumbling(size = "1m"), grace = "1s"),
                &kv,
                vec![
                    "`window` is for windowed stores, and `C` is a key-value store: declare `type C = kstreams::WindowKeyValue<K, A>;` (tumbling, hopping and sliding windows) or `kstreams::SessionKeyValue<K, A>` (session windows)",
                ],
            ),
            (
                quote!(name = "c", grace = "1s", emit = on_window_close),
                &kv,
                vec![
                    "`grace` is for windowed stores",
                    "`emit` is for windowed stores",
                ],
            ),
            (
                quote!(name = "v", window = session(gap = "1m"), grace = "1s"),
                &window,
                vec![
                    "`session(..)` windows are kept in a `kstreams::SessionKeyValue<K, A>` (session windows), and `V` is a `WindowKeyValue` (tumbling, hopping and sliding windows)",
                ],
            ),
            (
                quote!(
                    name = "s",
                    window = hopping(size = "1m", advance = "1s"),
                    grace = "1s"
                ),
                &session,
                vec![
                    "`hopping(..)` windows are kept in a `kstreams::WindowKeyValue<K, A>` (time and sliding windows), and `S` is a `SessionKeyValue` (session windows): `window = session(gap = \"5m\")`",
                ],
            ),
            (
                quote!(name = "v", grace = "1s"),
                &window,
                vec![
                    "a `WindowKeyValue` store needs its windows: `window = tumbling(size = \"1m\")`",
                ],
            ),
            (
                quote!(name = "s", window = session(gap = "1m")),
                &session,
                vec![
                    "a windowed store needs `grace = \"...\"`: how long after a window ends it still accepts out-of-order records (`grace = \"0s\"` accepts none); there is no default, because a defaulted grace drops late records nobody asked to drop (Kafka Streams removed its default in KIP-633)",
                ],
            ),
            // A grace given in the wrong form is that error only, not also "missing".
            (
                quote!(
                    name = "v",
                    window = tumbling(size = "1m"),
                    grace = "ten seconds"
                ),
                &window,
                vec!["invalid duration \"ten seconds\""],
            ),
            (
                quote!(
                    name = "v",
                    window = tumbling(size = "1m"),
                    grace = "10s",
                    retention = "69999ms"
                ),
                &window,
                vec![
                    "the retention \"69999ms\" is shorter than the size \"1m\" plus the grace \"10s\" (70000 ms): a window must be kept until it is final",
                ],
            ),
            (
                quote!(
                    name = "v",
                    window = sliding(difference = "1m"),
                    grace = "10s",
                    retention = "129s"
                ),
                &window,
                vec![
                    "the retention \"129s\" is shorter than twice the difference \"1m\" plus the grace \"10s\" (130000 ms)",
                ],
            ),
            (
                quote!(
                    name = "s",
                    window = session(gap = "1m"),
                    grace = "10s",
                    retention = "1m"
                ),
                &session,
                vec![
                    "the retention \"1m\" is shorter than the gap \"1m\" plus the grace \"10s\" (70000 ms)",
                ],
            ),
        ];
        for (args, item, expected) in cases {
            let got = store_errors(args.clone(), item.clone());
            assert_eq!(got.len(), expected.len(), "{args}: {got:?}");
            for (g, e) in got.iter().zip(&expected) {
                assert!(g.starts_with(e), "{args}: {g}");
            }
        }
    }

    /// The same cases as the runtime's copy (`topology::tests`), from one file.
    #[test]
    fn names_follow_the_topology_rule() {
        let cases = name_cases();
        assert!(cases.len() >= 8, "{cases:?}");
        for (name, ok) in cases {
            assert_eq!(valid_name(&name), ok, "{name:?}");
        }
    }
}
