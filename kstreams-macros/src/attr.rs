//! Parsing the attribute arguments:
//! `#[batch_processor(name = "...", init = f, punctuate(every = "10s", time = wall_clock, with = g))]`,
//! `#[store(name = "...", backend = "...", changelog = bool, key_serde = expr, value_serde = expr)]`,
//! and for windowed stores `window = tumbling(size = "1m")` (or `hopping(size, advance)`,
//! `sliding(difference)`, `session(gap)`), `grace`, `retention`, `idle_advance` (durations read at
//! compile time by [`duration`], the parser of `punctuate(every = ..)` too), `emit`, `on_late`;
//! for versioned stores `history` (a duration too).
//!
//! Every argument is `key = value`, except `punctuate(...)`, a list of such pairs that may be
//! repeated; a window form's pairs are read here too (zero sizes and an advance over the size
//! are errors at their literal; what needs the store's type is `valid::check_store`'s). Unknown keys are reported with the list of valid ones; duplicates go through
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
    /// `window = tumbling(..) | hopping(..) | sliding(..) | session(..)`.
    pub(crate) window: Option<WindowArg>,
    pub(crate) grace: Option<Dur>,
    pub(crate) retention: Option<Dur>,
    pub(crate) emit: Option<EmitArg>,
    pub(crate) on_late: Option<OnLateArg>,
    pub(crate) idle_advance: Option<Dur>,
    /// The keys only a windowed store takes, as written (also those whose value was wrong).
    pub(crate) windowed_keys: Vec<syn::Ident>,
    /// `history = "1d"`: a versioned store's history retention.
    pub(crate) history: Option<Dur>,
    /// The key `history` as written (also when its value was wrong).
    pub(crate) history_key: Option<syn::Ident>,
}

/// A duration literal, read at compile time.
#[derive(Clone)]
pub(crate) struct Dur {
    pub(crate) ms: u64,
    pub(crate) lit: LitStr,
}

/// Which store type a window form goes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `tumbling`, `hopping`, `sliding`: a `WindowKeyValue`.
    Time,
    /// `session`: a `SessionKeyValue`.
    Session,
}

/// A window form whose keys are all right.
pub(crate) enum WindowForm {
    Tumbling { size: Dur },
    Hopping { size: Dur, advance: Dur },
    Sliding { difference: Dur },
    Session { gap: Dur },
}

/// `window = ...`, as far as it could be read.
pub(crate) struct WindowArg {
    /// The key `window`.
    pub(crate) key: syn::Ident,
    /// The form's name (`tumbling`), when it is one of the four.
    pub(crate) name: Option<syn::Ident>,
    pub(crate) shape: Option<Shape>,
    /// The form, when its keys are all right.
    pub(crate) form: Option<WindowForm>,
}

/// `emit = ...` (mirrors `kstreams::window::EmitStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmitArg {
    OnWindowUpdate,
    OnWindowClose,
}

/// `on_late = ...` (mirrors `kstreams::window::OnLate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnLateArg {
    Drop,
    DeadLetter,
}

/// The window forms, their keys, and an example of each.
const WINDOW_FORMS: &[(&str, Shape, &[&str], &str)] = &[
    (
        "tumbling",
        Shape::Time,
        &["size"],
        "tumbling(size = \"1m\")",
    ),
    (
        "hopping",
        Shape::Time,
        &["size", "advance"],
        "hopping(size = \"1m\", advance = \"10s\")",
    ),
    (
        "sliding",
        Shape::Time,
        &["difference"],
        "sliding(difference = \"1m\")",
    ),
    ("session", Shape::Session, &["gap"], "session(gap = \"5m\")"),
];

/// What a window form's key may not be zero as (for the parser's message).
fn form_key_what(key: &str) -> &'static str {
    match key {
        "size" => "a window's size",
        "advance" => "a window's advance",
        "difference" => "a sliding window's time difference",
        _ => "a session's inactivity gap",
    }
}

pub(crate) const PROCESSOR_KEYS: &[&str] = &["name", "init", "punctuate"];
pub(crate) const PUNCTUATE_KEYS: &[&str] = &["every", "time", "with"];
pub(crate) const STORE_KEYS: &[&str] = &[
    "name",
    "backend",
    "changelog",
    "key_serde",
    "value_serde",
    "window",
    "grace",
    "retention",
    "emit",
    "on_late",
    "idle_advance",
    "history",
];
/// The keys of [`STORE_KEYS`] that only a windowed store takes.
pub(crate) const WINDOWED_KEYS: &[&str] = &[
    "window",
    "grace",
    "retention",
    "emit",
    "on_late",
    "idle_advance",
];

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
                    "`every` takes a duration such as `\"10s\"`, `\"500ms\"`, `\"1m30s\"` (units ms, s, m, h, d), or an expression of type `Duration`",
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
/// `ms`, `s`, `m`, `h`, `d` (`"10s"`, `"500ms"`, `"1m30s"`), in milliseconds, at least 1 ms.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    duration(text, Some("a punctuation interval"))
}

/// The one duration parser of every attribute key (`every`, a window's `size`, `advance`,
/// `difference`, `gap`, and `grace`, `retention`, `idle_advance`, `history`): see
/// [`parse_duration`]. Units: `ms`, `s`, `m`, `h`, `d` (a day: 24 h).
/// `at_least_1ms` names what may not be zero (`None`: zero is allowed, as for a grace).
pub(crate) fn duration(text: &str, at_least_1ms: Option<&str>) -> Result<u64, String> {
    let wrong = |why: &str| {
        format!(
            "invalid duration {text:?}: {why}; write a number and a unit (ms, s, m, h, d), such as \"10s\", \"500ms\" or \"1m30s\""
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
            "d" => 86_400_000,
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
    if let Some(what) = at_least_1ms
        && total == 0
    {
        return Err(wrong(&format!("{what} is at least 1 ms")));
    }
    if total > i64::MAX as u64 {
        return Err(wrong("it is too long"));
    }
    Ok(total)
}

/// A duration written as a string literal (`grace = "10s"`), read with [`duration`].
fn dur(
    key: &syn::Ident,
    value: &Expr,
    at_least_1ms: Option<&str>,
    errors: &mut Errors,
) -> Option<Dur> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => match duration(&s.value(), at_least_1ms) {
            Ok(ms) => Some(Dur { ms, lit: s.clone() }),
            Err(why) => {
                errors.spanned(s, why);
                None
            }
        },
        other => {
            errors.spanned(
                other,
                format_args!(
                    "`{key}` takes a duration such as `\"10s\"`, `\"500ms\"` or `\"1m30s\"` (units ms, s, m, h, d)"
                ),
            );
            None
        }
    }
}

/// `window = tumbling(size = "1m")` and the other forms of [`WINDOW_FORMS`].
fn window_arg(key: &syn::Ident, value: &Expr, errors: &mut Errors) -> WindowArg {
    let mut arg = WindowArg {
        key: key.clone(),
        name: None,
        shape: None,
        form: None,
    };
    let forms = || {
        WINDOW_FORMS
            .iter()
            .map(|f| format!("`{}`", f.3))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (name, args) = match value {
        Expr::Call(c) => match &*c.func {
            Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => {
                (p.path.get_ident().cloned(), Some(&c.args))
            }
            _ => (None, None),
        },
        Expr::Path(p) if p.qself.is_none() => (p.path.get_ident().cloned(), None),
        _ => (None, None),
    };
    let Some(name) = name else {
        errors.spanned(value, format_args!("`window` takes a window: {}", forms()));
        return arg;
    };
    let given = name.to_string();
    let Some(&(form_name, shape, keys, example)) = WINDOW_FORMS.iter().find(|f| f.0 == given)
    else {
        let hint = WINDOW_FORMS
            .iter()
            .find(|f| edit_distance(f.0, &given) <= 2)
            .map(|f| format!(" (did you mean `{}`?)", f.0))
            .unwrap_or_default();
        errors.spanned(
            &name,
            format_args!(
                "unknown window `{given}`{hint}; the windows are {}",
                forms()
            ),
        );
        return arg;
    };
    arg.name = Some(name.clone());
    arg.shape = Some(shape);
    let Some(args) = args else {
        errors.spanned(
            &name,
            format_args!(
                "`{form_name}` takes its {}: `{example}`",
                keys.join(" and ")
            ),
        );
        return arg;
    };
    let before = errors.len();
    let mut values: Vec<Once<Dur>> = keys.iter().map(|k| Once::new(k)).collect();
    let context = format!("store(window = {form_name}(..))");
    for a in args {
        let Expr::Assign(assign) = a else {
            errors.spanned(
                a,
                format_args!("`{form_name}(..)` takes `key = \"duration\"` pairs: `{example}`"),
            );
            continue;
        };
        let k = match &*assign.left {
            Expr::Path(p) if p.qself.is_none() => p.path.clone(),
            other => {
                errors.spanned(
                    other,
                    format_args!("`{form_name}(..)` takes `key = \"duration\"` pairs: `{example}`"),
                );
                continue;
            }
        };
        let Some((i, ident)) = k.get_ident().and_then(|ident| {
            keys.iter()
                .position(|v| ident == v)
                .map(|i| (i, ident.clone()))
        }) else {
            errors.spanned(&k, unknown_key(&context, keys, &k));
            continue;
        };
        if let Some(d) = dur(&ident, &assign.right, Some(form_key_what(keys[i])), errors) {
            values[i].set(errors, &ident, d);
        }
    }
    let values: Vec<Option<Dur>> = values.into_iter().map(Once::get).collect();
    if errors.len() > before {
        // A key already reported as wrong is not reported again as missing.
        return arg;
    }
    for (k, v) in keys.iter().zip(&values) {
        if v.is_none() {
            errors.spanned(
                &name,
                format_args!("`{form_name}(..)` needs `{k}`: `{example}`"),
            );
        }
    }
    let mut values = values.into_iter();
    let (Some(first), second) = (values.next().flatten(), values.next().flatten()) else {
        return arg;
    };
    arg.form = match form_name {
        "tumbling" => Some(WindowForm::Tumbling { size: first }),
        "hopping" => match second {
            Some(advance) if advance.ms > first.ms => {
                errors.spanned(
                    &advance.lit,
                    format_args!(
                        "the advance ({:?}) is longer than the size ({:?}): hopping windows would leave gaps between them; the advance is at most the size (equal to it, the windows are tumbling)",
                        advance.lit.value(),
                        first.lit.value()
                    ),
                );
                None
            }
            Some(advance) => Some(WindowForm::Hopping {
                size: first,
                advance,
            }),
            None => None,
        },
        "sliding" => Some(WindowForm::Sliding { difference: first }),
        _ => Some(WindowForm::Session { gap: first }),
    };
    arg
}

/// `emit = on_window_update | on_window_close`.
fn emit_arg(value: &Expr, errors: &mut Errors) -> Option<EmitArg> {
    match value {
        Expr::Path(p) if p.path.is_ident("on_window_update") => Some(EmitArg::OnWindowUpdate),
        Expr::Path(p) if p.path.is_ident("on_window_close") => Some(EmitArg::OnWindowClose),
        other => {
            errors.spanned(
                other,
                "`emit` is `on_window_update` (the default: every change of a window is forwarded) or `on_window_close` (each window once, when it is final)",
            );
            None
        }
    }
}

/// `on_late = drop | dead_letter`.
fn on_late_arg(value: &Expr, errors: &mut Errors) -> Option<OnLateArg> {
    match value {
        Expr::Path(p) if p.path.is_ident("drop") => Some(OnLateArg::Drop),
        Expr::Path(p) if p.path.is_ident("dead_letter") => Some(OnLateArg::DeadLetter),
        other => {
            errors.spanned(
                other,
                "`on_late` is `drop` (the default: a late record is counted and logged at DEBUG) or `dead_letter` (also written to the dead-letter topic)",
            );
            None
        }
    }
}

/// Parses the arguments of `#[store]`.
pub(crate) fn store_args(args: TokenStream, errors: &mut Errors) -> StoreArgs {
    let mut name = Once::new("name");
    let mut backend = Once::new("backend");
    let mut changelog = Once::new("changelog");
    let mut key_serde = Once::new("key_serde");
    let mut value_serde = Once::new("value_serde");
    let mut window = Once::new("window");
    let mut grace = Once::new("grace");
    let mut retention = Once::new("retention");
    let mut emit = Once::new("emit");
    let mut on_late = Once::new("on_late");
    let mut idle_advance = Once::new("idle_advance");
    let mut history = Once::new("history");
    let mut history_key = None;
    let mut windowed_keys = Vec::new();
    key_values("store", STORE_KEYS, args, errors, |key, value, errors| {
        if WINDOWED_KEYS.contains(&key.to_string().as_str()) {
            windowed_keys.push(key.clone());
        }
        match key.to_string().as_str() {
            "window" => {
                let w = window_arg(&key, &value, errors);
                window.set(errors, &key, w);
            }
            "grace" => {
                if let Some(d) = dur(&key, &value, None, errors) {
                    grace.set(errors, &key, d);
                }
            }
            "retention" => {
                if let Some(d) = dur(&key, &value, None, errors) {
                    retention.set(errors, &key, d);
                }
            }
            "idle_advance" => {
                if let Some(d) = dur(&key, &value, Some("an idle advance"), errors) {
                    idle_advance.set(errors, &key, d);
                }
            }
            "history" => {
                history_key.get_or_insert_with(|| key.clone());
                if let Some(d) = dur(&key, &value, None, errors) {
                    history.set(errors, &key, d);
                }
            }
            "emit" => {
                if let Some(e) = emit_arg(&value, errors) {
                    emit.set(errors, &key, e);
                }
            }
            "on_late" => {
                if let Some(l) = on_late_arg(&value, errors) {
                    on_late.set(errors, &key, l);
                }
            }
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
        }
    });
    StoreArgs {
        name: name.get(),
        backend: backend.get(),
        changelog: changelog.get(),
        key_serde: key_serde.get(),
        value_serde: value_serde.get(),
        window: window.get(),
        grace: grace.get(),
        retention: retention.get(),
        emit: emit.get(),
        on_late: on_late.get(),
        idle_advance: idle_advance.get(),
        windowed_keys,
        history: history.get(),
        history_key,
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
                "unknown key `durable`; `#[store]` takes: `name`, `backend`, `changelog`, `key_serde`, `value_serde`, `window`, `grace`, `retention`, `emit`, `on_late`, `idle_advance`, `history`"
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
                "unknown key `colour`; `#[store]` takes: `name`, `backend`, `changelog`, `key_serde`, `value_serde`, `window`, `grace`, `retention`, `emit`, `on_late`, `idle_advance`, `history`",
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
        assert_eq!(parse_duration("1d12h"), Ok(129_600_000));
        for (text, why) in [
            ("", "it is empty"),
            ("10", "`10` has no unit"),
            ("10 s", "`10` has no unit"),
            ("s", "a part does not start with a number"),
            ("3w", "unknown unit `w`"),
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
                "invalid duration \"10\": `10` has no unit; write a number and a unit (ms, s, m, h, d), such as \"10s\", \"500ms\" or \"1m30s\"",
                "`every` takes a duration such as `\"10s\"`, `\"500ms\"`, `\"1m30s\"` (units ms, s, m, h, d), or an expression of type `Duration`",
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
    fn window_forms_are_read_in_milliseconds() {
        let mut errors = Errors::new();
        let args = store_args(
            quote!(
                name = "v",
                window = hopping(size = "1m", advance = "10s"),
                grace = "0s",
                retention = "2h",
                emit = on_window_close,
                on_late = dead_letter,
                idle_advance = "30s"
            ),
            &mut errors,
        );
        assert!(errors.is_empty(), "{:?}", messages(errors));
        let w = args.window.expect("a window");
        assert_eq!(w.shape, Some(Shape::Time));
        assert!(matches!(
            w.form,
            Some(WindowForm::Hopping {
                size: Dur { ms: 60_000, .. },
                advance: Dur { ms: 10_000, .. }
            })
        ));
        assert_eq!(args.grace.map(|g| g.ms), Some(0));
        assert_eq!(args.retention.map(|g| g.ms), Some(7_200_000));
        assert_eq!(args.emit, Some(EmitArg::OnWindowClose));
        assert_eq!(args.on_late, Some(OnLateArg::DeadLetter));
        assert_eq!(args.idle_advance.map(|g| g.ms), Some(30_000));
        assert_eq!(args.windowed_keys.len(), 6);

        for (tokens, shape) in [
            (quote!(window = tumbling(size = "250ms")), Shape::Time),
            (quote!(window = sliding(difference = "5m")), Shape::Time),
            (quote!(window = session(gap = "1h")), Shape::Session),
        ] {
            let mut errors = Errors::new();
            let args = store_args(tokens, &mut errors);
            assert!(errors.is_empty());
            let w = args.window.expect("a window");
            assert_eq!(w.shape, Some(shape));
            assert!(w.form.is_some());
        }
    }

    #[test]
    fn window_mistakes_are_each_reported_at_their_token() {
        let mut errors = Errors::new();
        let args = store_args(
            quote!(
                window = rolling(size = "1m"),
                grace = "10 s",
                retention = 5,
                emit = on_close,
                on_late = ignore,
                idle_advance = "0s"
            ),
            &mut errors,
        );
        assert!(args.window.is_some_and(|w| w.shape.is_none()));
        assert_eq!(
            messages(errors),
            [
                "unknown window `rolling`; the windows are `tumbling(size = \"1m\")`, `hopping(size = \"1m\", advance = \"10s\")`, `sliding(difference = \"1m\")`, `session(gap = \"5m\")`",
                "invalid duration \"10 s\": `10` has no unit; write a number and a unit (ms, s, m, h, d), such as \"10s\", \"500ms\" or \"1m30s\"",
                "`retention` takes a duration such as `\"10s\"`, `\"500ms\"` or `\"1m30s\"` (units ms, s, m, h, d)",
                "`emit` is `on_window_update` (the default: every change of a window is forwarded) or `on_window_close` (each window once, when it is final)",
                "`on_late` is `drop` (the default: a late record is counted and logged at DEBUG) or `dead_letter` (also written to the dead-letter topic)",
                "invalid duration \"0s\": an idle advance is at least 1 ms; write a number and a unit (ms, s, m, h, d), such as \"10s\", \"500ms\" or \"1m30s\"",
            ]
        );

        let cases: &[(TokenStream, &str)] = &[
            (
                quote!(window = tumblin(size = "1m")),
                "unknown window `tumblin` (did you mean `tumbling`?)",
            ),
            (
                quote!(window = tumbling),
                "`tumbling` takes its size: `tumbling(size = \"1m\")`",
            ),
            (
                quote!(window = "tumbling"),
                "`window` takes a window: `tumbling(size = \"1m\")`",
            ),
            (
                quote!(window = tumbling(sise = "1m")),
                "unknown key `sise` (did you mean `size`?); `#[store(window = tumbling(..))]` takes: `size`",
            ),
            (
                quote!(window = tumbling("1m")),
                "`tumbling(..)` takes `key = \"duration\"` pairs: `tumbling(size = \"1m\")`",
            ),
            (
                quote!(window = tumbling(size = "1m", size = "2m")),
                "duplicate key `size`",
            ),
            (
                quote!(window = hopping(size = "1m")),
                "`hopping(..)` needs `advance`: `hopping(size = \"1m\", advance = \"10s\")`",
            ),
            (
                quote!(window = hopping(size = "1m", advance = "2m")),
                "the advance (\"2m\") is longer than the size (\"1m\")",
            ),
            (
                quote!(window = hopping(size = "1m", advance = "0ms")),
                "invalid duration \"0ms\": a window's advance is at least 1 ms",
            ),
            (
                quote!(window = tumbling(size = "0s")),
                "invalid duration \"0s\": a window's size is at least 1 ms",
            ),
            (
                quote!(window = session(gap = "0s")),
                "invalid duration \"0s\": a session's inactivity gap is at least 1 ms",
            ),
            (
                quote!(window = sliding(difference = "0s")),
                "invalid duration \"0s\": a sliding window's time difference is at least 1 ms",
            ),
            (
                quote!(window = session(gap = SOME_GAP)),
                "`gap` takes a duration such as",
            ),
        ];
        for (tokens, expected) in cases {
            let mut errors = Errors::new();
            store_args(tokens.clone(), &mut errors);
            let got = messages(errors);
            assert_eq!(got.len(), 1, "{tokens}: {got:?}");
            assert!(got[0].starts_with(expected), "{tokens}: {got:?}");
        }
    }

    #[test]
    fn bad_syntax_is_one_error() {
        let mut errors = Errors::new();
        processor_args("processor", quote!(= = "x"), &mut errors);
        assert_eq!(messages(errors).len(), 1);
    }
}
