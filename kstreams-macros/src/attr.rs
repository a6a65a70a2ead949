//! Parsing the attribute arguments: `#[batch_processor(name = "...")]`,
//! `#[store(name = "...", backend = "...", changelog = bool, key_serde = expr, value_serde = expr)]`.
//!
//! Every argument is `key = value`. Unknown keys are reported with the list of valid ones;
//! duplicates go through [`Once`]; all errors are collected.

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

pub(crate) const PROCESSOR_KEYS: &[&str] = &["name"];
pub(crate) const STORE_KEYS: &[&str] =
    &["name", "backend", "changelog", "key_serde", "value_serde"];

/// Calls `each` on the `key = value` pairs in order; what is not of that form is reported in
/// its place.
fn key_values(
    macro_name: &str,
    valid: &[&str],
    args: TokenStream,
    errors: &mut Errors,
    mut each: impl FnMut(syn::Ident, Expr, &mut Errors),
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
        match meta {
            Meta::NameValue(nv) => each(key, nv.value, errors),
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
    key_values(
        macro_name,
        PROCESSOR_KEYS,
        args,
        errors,
        |key, value, errors| {
            if key == "name"
                && let Some(s) = lit_str(&key, &value, errors)
            {
                name.set(errors, &key, s);
            }
        },
    );
    ProcessorArgs { name: name.get() }
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
            ["unknown key `nme` (did you mean `name`?); `#[batch_processor]` takes: `name`"]
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
    fn bad_syntax_is_one_error() {
        let mut errors = Errors::new();
        processor_args("processor", quote!(= = "x"), &mut errors);
        assert_eq!(messages(errors).len(), 1);
    }
}
