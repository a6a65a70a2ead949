//! What a macro emits when the item has mistakes: the `compile_error!`s, plus enough of the
//! expansion that the rest of the crate type-checks, so one mistake gives one error
//! (thiserror's `fallback.rs`). The user's function is kept, so errors in its body still show.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::{FnArg, Item, LitStr};

use crate::ast::{Kind, ParsedFn, ParsedStore, StoreKind, has_impl_trait};
use crate::{expand, valid};

fn has_receiver(f: &syn::ItemFn) -> bool {
    f.sig.inputs.iter().any(|a| matches!(a, FnArg::Receiver(_)))
}

/// Whether the function's type can be written as a `fn(..)` pointer.
fn nameable(f: &syn::ItemFn) -> bool {
    let s = &f.sig;
    s.generics.params.is_empty()
        && s.generics.where_clause.is_none()
        && s.asyncness.is_none()
        && s.constness.is_none()
        && s.unsafety.is_none()
        && s.abi.is_none()
        && s.variadic.is_none()
        && !has_receiver(f)
        && !has_impl_trait(s.to_token_stream())
}

pub(crate) fn processor(kind: Kind, parsed: &ParsedFn, errors: syn::Error) -> TokenStream {
    let compile_errors = errors.to_compile_error();
    let f = match &parsed.item {
        Some(Item::Fn(f)) => f,
        Some(other) => return quote!(#other #compile_errors),
        None => return compile_errors,
    };
    let ident = &f.sig.ident;
    let (out_key, out_value) = match &parsed.emit {
        Some((k, v)) => (k.to_token_stream(), v.to_token_stream()),
        None => (quote!(()), quote!(())),
    };
    let unit = expand::unit_struct(kind, f);
    // A function with `self` or `...` would only add errors of its own; so would one with a
    // parameter named like the function (the unit struct above would shadow it in the body).
    let misnamed = !valid::params_named_like_fn(f).is_empty();
    let inner = if has_receiver(f) || f.sig.variadic.is_some() || misnamed {
        // Still name the parameter types, so that their imports are used.
        let types = f.sig.inputs.iter().filter_map(|a| match a {
            FnArg::Typed(pt) if !has_impl_trait(pt.ty.to_token_stream()) => Some(&pt.ty),
            _ => None,
        });
        quote!(#[allow(dead_code)] type __KstreamsSignature = fn(#(#types),*);)
    } else {
        let inner = expand::inner_fn(f);
        quote!(#[allow(dead_code, elided_lifetimes_in_paths)] #inner)
    };
    let deref = if nameable(f) && !misnamed {
        expand::deref_impl(f)
    } else {
        quote!()
    };
    if kind == Kind::Punctuator {
        return quote! {
            #compile_errors
            #unit
            #[allow(elided_lifetimes_in_paths)]
            const _: () = {
                #inner
                #deref
                impl<__KstreamsK: 'static, __KstreamsV: 'static> ::kstreams::__private::Punctuator<__KstreamsK, __KstreamsV> for #ident {
                    fn stores(&self) -> ::kstreams::__private::Vec<::kstreams::__private::StoreSpec> {
                        ::core::unreachable!()
                    }
                    fn punctuate(
                        &self,
                        _: &::kstreams::__private::Punctuation,
                        _: &mut ::kstreams::__private::Context<'_, __KstreamsK, __KstreamsV>,
                    ) -> ::kstreams::__private::Result<()> {
                        ::core::unreachable!()
                    }
                }
            };
        };
    }
    quote! {
        #compile_errors
        #unit
        #[allow(elided_lifetimes_in_paths)]
        const _: () = {
            #inner
            #deref
            impl<__KstreamsK: 'static, __KstreamsV: 'static> ::kstreams::__private::BatchProcessor<__KstreamsK, __KstreamsV> for #ident {
                type OutKey = #out_key;
                type OutValue = #out_value;
                fn process_batch(
                    &mut self,
                    _: &[::kstreams::__private::Record<__KstreamsK, __KstreamsV>],
                    _: &mut ::kstreams::__private::Context<'_, #out_key, #out_value>,
                ) -> ::kstreams::__private::Result<()> {
                    ::core::unreachable!()
                }
            }
        };
    }
}

pub(crate) fn store(parsed: &ParsedStore, errors: syn::Error) -> TokenStream {
    let compile_errors = errors.to_compile_error();
    match (&parsed.model, &parsed.item) {
        (Some(s), _) => {
            let ident = &s.ident;
            let never = quote!(::core::unreachable!());
            let body = expand::StoreBody {
                spec: never.clone(),
                bind: match s.kind {
                    StoreKind::KeyValue => quote!(#ident(store)),
                    StoreKind::Window | StoreKind::Session | StoreKind::Versioned => never.clone(),
                },
                windowing: never,
            };
            let handle = expand::store_handle(s, None, &LitStr::new("", Span::call_site()), &body);
            quote! {
                #compile_errors
                #handle
            }
        }
        (None, Some(item)) => quote!(#item #compile_errors),
        (None, None) => compile_errors,
    }
}
