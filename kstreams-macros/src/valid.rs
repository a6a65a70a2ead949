//! Checks over the parsed model that need no types: names the topology would reject at run time,
//! and a store taken twice by one function.

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

    #[test]
    fn names_follow_the_topology_rule() {
        assert!(valid_name("word-counts.v2_x"));
        assert!(!valid_name(""));
        assert!(!valid_name("word counts"));
        assert!(!valid_name("ünïcode"));
        assert!(!valid_name(&"x".repeat(201)));
    }
}
