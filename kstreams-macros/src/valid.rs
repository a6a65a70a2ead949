//! Checks over the parsed model that need no types: names the topology would reject at run time,
//! a store taken twice by one function, and a parameter named like its function.

use quote::ToTokens;
use syn::LitStr;

use crate::ast::ProcessorFn;
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

#[cfg(test)]
mod tests {
    use super::*;

    include!("../../kstreams/tests/data/name_cases.rs");

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
