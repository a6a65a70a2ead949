//! Parsing the attribute arguments:
//! `#[batch_processor(name = "...", init = f, punctuate(every = "10s", time = wall_clock, with = g))]`,
//! `#[store(name = "...", backend = "...", changelog = bool, key_serde = expr, value_serde = expr)]`.
//!
//! Every argument is `key = value`, except `punctuate(...)`, a list of such pairs that may be
//! repeated. Unknown keys are reported with the list of valid ones; duplicates go through
//! [`Once`]; all errors are collected.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, Lit, LitBool, LitStr, Meta, Token};

use crate::ctxt::{Errors, Once};

/// The arguments of `#[batch_processor]` and `#[processor]`.
#[derive(Default)]
pub(crate) struct ProcessorArgs {
    /// The node name, if given.
    pub(crate) name: Option<LitStr>,
    /// `init = f`: a function called with the `InitContext` when a task starts.
    pub(crate) init: Option<syn::Path>,
    /// `punctuate(...)`, in the order written (that order gives the punctuation ids).
    pub(crate) punctuate: Vec<Punctuate>,
}

/// Which clock a punctuation follows (mirrors `kstreams::PunctuationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clock {
    WallClock,
    StreamTime,
}

/// How often a punctuation fires.
pub(crate) enum Every {
    /// A literal such as `"10s"`, read at compile time (milliseconds).
    Millis(u64),
    /// Any other expression: a `core::time::Duration`, evaluated when the task starts.
    Expr(Expr),
}

/// One `punctuate(every = ..., time = ..., with = ...)`.
pub(crate) struct Punctuate {
    pub(crate) every: Every,
    pub(crate) clock: Clock,
    /// The handler: a function marked `#[kstreams::punctuator]`.
    pub(crate) with: syn::Path,
}

/// Where a store keeps its data (mirrors `kstreams::Backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Lmdb,
    InMemory,
}

/// The arguments of `#[store]`.
#[derive(Default)]
pub(crate) struct StoreArgs {
    pub(crate) name: Option<LitStr>,
    pub(crate) backend: Option<Backend>,
    pub(crate) changelog: Option<LitBool>,
    pub(crate) key_serde: Option<Expr>,
    pub(crate) value_serde: Option<Expr>,
}

pub(crate) const PROCESSOR_KEYS: &[&str] = &["name", "init", "punctuate"];
pub(crate) const PUNCTUATE_KEYS: &[&str] = &["every", "time", "with"];
pub(crate) const STORE_KEYS: &[&str] =
    &["name", "backend", "changelog", "key_serde", "value_serde"];

/// What follows a key: `key = value` or `key(...)`.
enum Arg {
    Value(Expr),
    List(syn::MetaList),
}

/// Calls `each` on the `key = value` pairs in order; what is not of that form is reported in
/// its place.
fn key_values(
    macro_name: &str,
    valid: &[&str],
    args: TokenStream,
    errors: &mut Errors,
    mut each: impl FnMut(syn::Ident, Expr, &mut Errors),
) {
    key_args(macro_name, valid, &[], args, errors, |key, arg, errors| {
        if let Arg::Value(v) = arg {
            each(key, v, errors);
        }
    });
}

/// [`key_values`], where the keys in `lists` are written `key(...)` instead.
fn key_args(
    macro_name: &str,
    valid: &[&str],
    lists: &[&str],
    args: TokenStream,
    errors: &mut Errors,
    mut each: impl FnMut(syn::Ident, Arg, &mut Errors),
) {
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args) {
        Ok(m) => m,
        Err(e) => {
            errors.push(e);
            return;
        }
    };
    for meta in metas {
        let path = meta.path();
        let Some(key) = path
            .get_ident()
            .filter(|k| valid.contains(&k.to_string().as_str()))
            .cloned()
        else {
            errors.spanned(path, unknown_key(macro_name, valid, path));
            continue;
        };
        let is_list = lists.contains(&key.to_string().as_str());
        match meta {
            Meta::NameValue(nv) if !is_list => each(key, Arg::Value(nv.value), errors),
            Meta::List(list) if is_list => each(key, Arg::List(list), errors),
            other if is_list => {
                errors.spanned(&other, format_args!("`{key}` takes a list: `{key}(...)`"))
            }
            other => errors.spanned(&other, format_args!("`{key}` takes a value: `{key} = ...`")),
        }
    }
}

fn unknown_key(macro_name: &str, valid: &[&str], path: &syn::Path) -> String {
    let given = quote::quote!(#path).to_string().replace(' ', "");
    let list = valid
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let hint = valid
        .iter()
        .find(|k| edit_distance(k, &given) <= 2)
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    format!("unknown key `{given}`{hint}; `#[{macro_name}]` takes: {list}")
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

fn lit_str(key: &syn::Ident, value: &Expr, errors: &mut Errors) -> Option<LitStr> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s.clone()),
        other => {
            errors.spanned(
                other,
                format_args!("`{key}` takes a string: `{key} = \"...\"`"),
            );
            None
        }
    }
}

/// Parses the arguments of `#[batch_processor]` / `#[processor]`.
pub(crate) fn processor_args(
    macro_name: &str,
    args: TokenStream,
    errors: &mut Errors,
) -> ProcessorArgs {
    let mut name = Once::new("name");
    let mut init = Once::new("init");
    let mut punctuate = Vec::new();
    key_args(
        macro_name,
        PROCESSOR_KEYS,
        &["punctuate"],
        args,
        errors,
        |key, arg, errors| match (key.to_string().as_str(), arg) {
            ("name", Arg::Value(value)) => {
                if let Some(s) = lit_str(&key, &value, errors) {
                    name.set(errors, &key, s);
                }
            }
            ("init", Arg::Value(value)) => {
                if let Some(p) = fn_path(&key, &value, errors) {
                    init.set(errors, &key, p);
                }
            }
            ("punctuate", Arg::List(list)) => {
                if let Some(p) = punctuate_args(&list, errors) {
                    punctuate.push(p);
                }
            }
            _ => {}
        },
    );
    ProcessorArgs {
        name: name.get(),
        init: init.get(),
        punctuate,
    }
}

/// `#[punctuator]` takes no arguments: its schedule is written where the processor is.
pub(crate) fn punctuator_args(args: TokenStream, errors: &mut Errors) {
    if !args.is_empty() {
        errors.spanned(
            args,
            "`#[punctuator]` takes no arguments: the schedule is written on the processor, `#[batch_processor(punctuate(every = \"10s\", time = wall_clock, with = handler))]`",
        );
    }
}

/// A function named by a key: `with = emit_summary`, `init = setup`.
fn fn_path(key: &syn::Ident, value: &Expr, errors: &mut Errors) -> Option<syn::Path> {
    match value {
        Expr::Path(p) if p.qself.is_none() => Some(p.path.clone()),
        other => {
            errors.spanned(
                other,
                format_args!("`{key}` names a function: `{key} = function_name`"),
            );
            None
        }
    }
}

/// `punctuate(every = "10s", time = wall_clock, with = handler)`.
fn punctuate_args(list: &syn::MetaList, errors: &mut Errors) -> Option<Punctuate> {
    let mut every = Once::new("every");
    let mut clock = Once::new("time");
    let mut with = Once::new("with");
    let before = errors.len();
    key_values(
        "batch_processor(punctuate(...))",
        PUNCTUATE_KEYS,
        list.tokens.clone(),
        errors,
        |key, value, errors| {
            match key.to_string().as_str() {
            "every" => match &value {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(s), ..
                }) => match parse_duration(&s.value()) {
                    Ok(ms) => every.set(errors, &key, Every::Millis(ms)),
                    Err(why) => errors.spanned(s, why),
                },
                Expr::Lit(other) => errors.spanned(
                    other,
                    "`every` takes a duration such as `\"10s\"`, `\"500ms\"`, `\"1m30s\"` (units ms, s, m, h), or an expression of type `Duration`",
                ),
                _ => every.set(errors, &key, Every::Expr(value)),
            },
            "time" => {
                let clock_of = |e: &Expr| match e {
                    Expr::Path(p) if p.path.is_ident("wall_clock") => Some(Clock::WallClock),
                    Expr::Path(p) if p.path.is_ident("stream_time") => Some(Clock::StreamTime),
                    _ => None,
                };
                match clock_of(&value) {
                    Some(c) => clock.set(errors, &key, c),
                    None => errors.spanned(
                        &value,
                        "`time` is `wall_clock` (fires on idle partitions too) or `stream_time` (advances with record timestamps)",
                    ),
                }
            }
            "with" => {
                if let Some(p) = fn_path(&key, &value, errors) {
                    with.set(errors, &key, p);
                }
            }
            _ => {}
        }
        },
    );
    let (every, clock, with) = (every.get(), clock.get(), with.get());
    let span = &list.path;
    let missing = |what: &str| {
        format!(
            "`punctuate(...)` needs `{what}`: `punctuate(every = \"10s\", time = wall_clock, with = handler)`"
        )
    };
    // A key already reported as wrong is not reported again as missing.
    let reported = errors.len() > before;
    if every.is_none() && !reported {
        errors.spanned(span, missing("every"));
    }
    if clock.is_none() && !reported {
        errors.spanned(span, missing("time"));
    }
    if with.is_none() && !reported {
        errors.spanned(span, missing("with"));
    }
    Some(Punctuate {
        every: every?,
        clock: clock?,
        with: with?,
    })
}

/// A punctuation interval written as a literal: one or more `<number><unit>` with the units
/// `ms`, `s`, `m`, `h` (`"10s"`, `"500ms"`, `"1m30s"`), in milliseconds, at least 1 ms.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let wrong = |why: &str| {
        format!(
            "invalid duration {text:?}: {why}; write a number and a unit (ms, s, m, h), such as \"10s\", \"500ms\" or \"1m30s\""
        )
    };
    let mut total: u64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return Err(wrong("it is empty"));
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(wrong("a part does not start with a number"));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        if unit_len == 0 {
            return Err(wrong(&format!("`{number}` has no unit")));
        }
        let (unit, after) = after.split_at(unit_len);
        let factor: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            other => return Err(wrong(&format!("unknown unit `{other}`"))),
        };
        let part = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .ok_or_else(|| wrong("it is too long"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| wrong("it is too long"))?;
        rest = after;
    }
    if total == 0 {
        return Err(wrong("a punctuation interval is at least 1 ms"));
    }
    if total > i64::MAX as u64 {
        return Err(wrong("it is too long"));
    }
    Ok(total)
}

/// Parses the arguments of `#[store]`.
pub(crate) fn store_args(args: TokenStream, errors: &mut Errors) -> StoreArgs {
    let mut name = Once::new("name");
    let mut backend = Once::new("backend");
    let mut changelog = Once::new("changelog");
    let mut key_serde = Once::new("key_serde");
    let mut value_serde = Once::new("value_serde");
    key_values(
        "store",
        STORE_KEYS,
        args,
        errors,
        |key, value, errors| match key.to_string().as_str() {
            "name" => {
                if let Some(s) = lit_str(&key, &value, errors) {
                    name.set(errors, &key, s);
                }
            }
            "backend" => {
                if let Some(s) = lit_str(&key, &value, errors) {
                    match s.value().as_str() {
                        "lmdb" => backend.set(errors, &key, Backend::Lmdb),
                        "in_memory" => backend.set(errors, &key, Backend::InMemory),
                        other => errors.spanned(
                            &s,
                            format_args!(
                                "unknown backend `{other}`; the backends are \"lmdb\" (the default) and \"in_memory\""
                            ),
                        ),
                    }
                }
            }
            "changelog" => match &value {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Bool(b), ..
                }) => {
                    changelog.set(errors, &key, b.clone());
                }
                other => errors.spanned(other, "`changelog` takes `true` or `false`"),
            },
            "key_serde" => key_serde.set(errors, &key, value),
            "value_serde" => value_serde.set(errors, &key, value),
            _ => {}
        },
    );
    StoreArgs {
        name: name.get(),
        backend: backend.get(),
        changelog: changelog.get(),
        key_serde: key_serde.get(),
        value_serde: value_serde.get(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn messages(errors: Errors) -> Vec<String> {
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn processor_name_is_read() {
        let mut errors = Errors::new();
        let args = processor_args("batch_processor", quote!(name = "counter"), &mut errors);
        assert!(errors.is_empty());
        assert_eq!(args.name.map(|n| n.value()).as_deref(), Some("counter"));
    }

    #[test]
    fn unknown_key_lists_the_valid_keys_and_suggests() {
        let mut errors = Errors::new();
        processor_args("batch_processor", quote!(nme = "x"), &mut errors);
        assert_eq!(
            messages(errors),
            [
                "unknown key `nme` (did you mean `name`?); `#[batch_processor]` takes: `name`, `init`, `punctuate`"
            ]
        );
        let mut errors = Errors::new();
        store_args(quote!(name = "s", durable = true), &mut errors);
        assert_eq!(
            messages(errors),
            [
                "unknown key `durable`; `#[store]` takes: `name`, `backend`, `changelog`, `key_serde`, `value_serde`"
            ]
        );
    }

    #[test]
    fn every_mistake_is_reported_once() {
        let mut errors = Errors::new();
        let args = store_args(
            quote!(
                name = "a",
                name = "b",
                backend = "rocksdb",
                changelog = "yes",
                colour = 1
            ),
            &mut errors,
        );
        assert_eq!(
            messages(errors),
            [
                "duplicate key `name`",
                "unknown backend `rocksdb`; the backends are \"lmdb\" (the default) and \"in_memory\"",
                "`changelog` takes `true` or `false`",
                "unknown key `colour`; `#[store]` takes: `name`, `backend`, `changelog`, `key_serde`, `value_serde`",
            ]
        );
        assert_eq!(args.name.map(|n| n.value()).as_deref(), Some("a"));
    }

    #[test]
    fn store_keys_are_read() {
        let mut errors = Errors::new();
        let args = store_args(
            quote!(
                name = "s",
                backend = "in_memory",
                changelog = false,
                key_serde = my::Serde,
                value_serde = Json::new()
            ),
            &mut errors,
        );
        assert!(errors.is_empty());
        assert_eq!(args.backend, Some(Backend::InMemory));
        assert!(!args.changelog.map(|b| b.value).unwrap_or(true));
        assert!(args.key_serde.is_some() && args.value_serde.is_some());
    }

    #[test]
    fn flags_and_non_strings_are_rejected() {
        let mut errors = Errors::new();
        store_args(quote!(name, backend = lmdb), &mut errors);
        assert_eq!(
            messages(errors),
            [
                "`name` takes a value: `name = ...`",
                "`backend` takes a string: `backend = \"...\"`"
            ]
        );
    }

    #[test]
    fn durations_are_read_in_milliseconds() {
        assert_eq!(parse_duration("10s"), Ok(10_000));
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("1m30s"), Ok(90_000));
        assert_eq!(parse_duration("2h"), Ok(7_200_000));
        for (text, why) in [
            ("", "it is empty"),
            ("10", "`10` has no unit"),
            ("10 s", "`10` has no unit"),
            ("s", "a part does not start with a number"),
            ("3d", "unknown unit `d`"),
            ("0s", "a punctuation interval is at least 1 ms"),
            ("99999999999999999999h", "it is too long"),
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(
                err.starts_with(&format!("invalid duration {text:?}: {why};")),
                "{err}"
            );
        }
    }

    #[test]
    fn punctuations_are_read_in_order() {
        let mut errors = Errors::new();
        let args = processor_args(
            "batch_processor",
            quote!(
                punctuate(every = "10s", time = wall_clock, with = a::report),
                init = setup,
                punctuate(with = tick, time = stream_time, every = INTERVAL)
            ),
            &mut errors,
        );
        assert!(errors.is_empty());
        assert_eq!(args.punctuate.len(), 2);
        let p = &args.punctuate[0];
        assert!(matches!(p.every, Every::Millis(10_000)));
        assert_eq!(p.clock, Clock::WallClock);
        let with = &p.with;
        assert_eq!(quote!(#with).to_string().replace(' ', ""), "a::report");
        let p = &args.punctuate[1];
        assert!(matches!(p.every, Every::Expr(_)));
        assert_eq!(p.clock, Clock::StreamTime);
        assert!(args.init.is_some_and(|f| f.is_ident("setup")));
    }

    #[test]
    fn punctuation_mistakes_are_each_reported() {
        let mut errors = Errors::new();
        processor_args(
            "batch_processor",
            quote!(
                punctuate(every = "10", time = wall_clock, with = f),
                punctuate(every = 10, time = now, with = "f"),
                punctuate(with = f),
                punctuate = 3,
                init(f)
            ),
            &mut errors,
        );
        assert_eq!(
            messages(errors),
            [
                "invalid duration \"10\": `10` has no unit; write a number and a unit (ms, s, m, h), such as \"10s\", \"500ms\" or \"1m30s\"",
                "`every` takes a duration such as `\"10s\"`, `\"500ms\"`, `\"1m30s\"` (units ms, s, m, h), or an expression of type `Duration`",
                "`time` is `wall_clock` (fires on idle partitions too) or `stream_time` (advances with record timestamps)",
                "`with` names a function: `with = function_name`",
                "`punctuate(...)` needs `every`: `punctuate(every = \"10s\", time = wall_clock, with = handler)`",
                "`punctuate(...)` needs `time`: `punctuate(every = \"10s\", time = wall_clock, with = handler)`",
                "`punctuate` takes a list: `punctuate(...)`",
                "`init` takes a value: `init = ...`",
            ]
        );
    }

    #[test]
    fn bad_syntax_is_one_error() {
        let mut errors = Errors::new();
        processor_args("processor", quote!(= = "x"), &mut errors);
        assert_eq!(messages(errors).len(), 1);
    }
}
