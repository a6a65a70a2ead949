//! Error collection: every check records its error here and carries on, so that one run of a
//! macro reports every mistake it can see (the `Ctxt` of serde_derive), each spanned at the
//! offending tokens.

use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;

/// The errors found so far.
#[derive(Default)]
pub(crate) struct Errors {
    errors: Vec<syn::Error>,
}

impl Errors {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// An error spanned at `tokens` (the offending part of the user's code).
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.errors.push(syn::Error::new_spanned(tokens, message));
    }

    /// An error at `span`; for "missing X", where there is no offending token.
    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.errors.push(syn::Error::new(span, message));
    }

    pub(crate) fn push(&mut self, error: syn::Error) {
        self.errors.push(error);
    }

    /// How many errors were recorded so far.
    pub(crate) fn len(&self) -> usize {
        self.errors.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// All errors folded into one (each still carries its own span), or `Ok` if there were none.
    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        let mut iter = self.errors.into_iter();
        match iter.next() {
            None => Ok(()),
            Some(mut first) => {
                for e in iter {
                    first.combine(e);
                }
                Err(first)
            }
        }
    }
}

/// A value that may be set once: the one duplicate-key check every attribute key goes through.
pub(crate) struct Once<T> {
    key: &'static str,
    value: Option<T>,
}

impl<T> Once<T> {
    pub(crate) fn new(key: &'static str) -> Self {
        Once { key, value: None }
    }

    /// Sets the value, or records a "duplicate key" error spanned at `at` if it was set before.
    pub(crate) fn set(&mut self, errors: &mut Errors, at: impl ToTokens, value: T) {
        if self.value.is_some() {
            errors.spanned(at, format_args!("duplicate key `{}`", self.key));
        } else {
            self.value = Some(value);
        }
    }

    pub(crate) fn get(self) -> Option<T> {
        self.value
    }
}
