//! Code generation from a valid model. Generated code names only `::kstreams::__private::…` and
//! `::core::…`; its helpers are `__kstreams_*` items inside `const _: () = { … };`.
//!
//! Type checks are left to rustc, with the bounds spanned at the user's tokens:
//! - a store parameter's type goes through `__private::store_param::<T>()` (`&mut T`) or
//!   `__private::store_ref_param::<T>()` (`&T`: declared read-only, passed by shared reference),
//!   one generic function each, so a type that is not a store is one error, "`T` is not a
//!   store", at `T`;
//! - a store's key and value serdes come from `__private::default_serde::<K>()` spanned at `K`;
//! - the return value goes through `ProcessorReturn`, spanned at the return type.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, LitStr, ReturnType, Type};

use crate::ast::{Kind, ProcessorFn, StoreAlias, StoreKind, StoreParam};
use crate::attr::{
    Backend, Clock, Dur, EmitArg, Every, OnLateArg, ProcessorArgs, StoreArgs, WindowForm,
};

/// `r#type` → `type`.
pub(crate) fn unraw(ident: &Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map(str::to_owned).unwrap_or(s)
}

/// Splits attributes into (docs, cfgs, the rest).
pub(crate) fn split_attrs(
    attrs: &[Attribute],
) -> (Vec<&Attribute>, Vec<&Attribute>, Vec<&Attribute>) {
    let (mut docs, mut cfgs, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    for a in attrs {
        if a.path().is_ident("doc") {
            docs.push(a);
        } else if a.path().is_ident("cfg") || a.path().is_ident("cfg_attr") {
            cfgs.push(a);
        } else {
            rest.push(a);
        }
    }
    (docs, cfgs, rest)
}

/// The hidden name of the user's function.
pub(crate) fn inner_ident(ident: &Ident) -> Ident {
    format_ident!("__kstreams_{}", unraw(ident), span = ident.span())
}

/// `fn(A, B) -> R`: the type of the user's function as a pointer.
pub(crate) fn fn_pointer_type(f: &syn::ItemFn) -> TokenStream {
    let inputs = f.sig.inputs.iter().filter_map(|a| match a {
        FnArg::Typed(pt) => Some(&pt.ty),
        FnArg::Receiver(_) => None,
    });
    let output = &f.sig.output;
    quote!(fn(#(#inputs),*) #output)
}

/// The unit struct that stands for the function.
pub(crate) fn unit_struct(kind: Kind, item: &syn::ItemFn) -> TokenStream {
    let (docs, cfgs, _) = split_attrs(&item.attrs);
    let vis = &item.vis;
    let ident = &item.sig.ident;
    let note = match kind {
        Kind::Punctuator => format!(
            " A punctuation handler made by `#[kstreams::punctuator]` from the function `{}`: name it in `#[batch_processor(punctuate(with = {}, ..))]`, or call it like that function.",
            unraw(ident),
            unraw(ident)
        ),
        Kind::Batch | Kind::PerRecord => format!(
            " A processor made by `#[kstreams::{}]` from the function `{}`: connect it with `TopologyBuilder::add`, or call it like that function.",
            kind.macro_name(),
            unraw(ident)
        ),
    };
    let sep = if docs.is_empty() {
        quote!()
    } else {
        quote!(#[doc = ""])
    };
    quote! {
        #(#cfgs)*
        #(#docs)*
        #sep
        #[doc = #note]
        #[allow(non_camel_case_types)]
        #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug)]
        #vis struct #ident;
    }
}

/// A function that names every store parameter's type through `store_param`, placed before the
/// user's function: rustc checks items in order, so a type that is not a store (such as a
/// `type Totals = KeyValue<..>` without `#[store]`) is reported before the errors it causes in
/// the body (`no method named get`).
fn stores_check(params: &[TokenStream]) -> TokenStream {
    if params.is_empty() {
        return quote!();
    }
    quote! {
        #[allow(dead_code)]
        fn __kstreams_stores_first() {
            #(let _ = #params;)*
        }
    }
}

/// A store parameter's `StoreParam` (its spec and binds), spanned at its type:
/// `store_param::<T>()` for `&mut T`, `store_ref_param::<T>()` for `&T`.
fn store_param(s: &StoreParam) -> TokenStream {
    let ty = &s.ty;
    if s.read_only {
        quote_spanned!(ty.span()=> ::kstreams::__private::store_ref_param::<#ty>())
    } else {
        quote_spanned!(ty.span()=> ::kstreams::__private::store_param::<#ty>())
    }
}

/// The bound handles of the store parameters: `let` (`&T`) or `let mut` (`&mut T`) of each
/// variable, bound by the store's name (a `&T` of a global table's store is in no task: it is
/// not in the node's list, so a position would not do), and each variable as the function's
/// argument, `&var` or `&mut var`.
fn bound_stores(stores: &[StoreParam], params: &[TokenStream]) -> (TokenStream, Vec<TokenStream>) {
    let mut lets = TokenStream::new();
    let mut args = Vec::with_capacity(stores.len());
    for (i, (s, param)) in stores.iter().zip(params).enumerate() {
        let var = format_ident!("__kstreams_store_{}", i);
        let bind = quote!((#param.bind)(__kstreams_binder)?);
        if s.read_only {
            lets.extend(quote!(let #var = #bind;));
            args.push(quote!(&#var));
        } else {
            lets.extend(quote!(let mut #var = #bind;));
            args.push(quote!(&mut #var));
        }
    }
    (lets, args)
}

/// The user's function, renamed, with its non-doc attributes.
pub(crate) fn inner_fn(item: &syn::ItemFn) -> TokenStream {
    let (_, _, rest) = split_attrs(&item.attrs);
    let mut f = item.clone();
    f.attrs = Vec::new();
    f.vis = syn::Visibility::Inherited;
    f.sig.ident = inner_ident(&item.sig.ident);
    quote! {
        #(#rest)*
        #f
    }
}

/// `impl Deref<Target = fn(..)>`, so the processor is still callable as the function.
pub(crate) fn deref_impl(item: &syn::ItemFn) -> TokenStream {
    let ident = &item.sig.ident;
    let inner = inner_ident(ident);
    let ptr = fn_pointer_type(item);
    quote! {
        impl ::core::ops::Deref for #ident {
            type Target = #ptr;
            #[inline]
            fn deref(&self) -> &Self::Target {
                static __KSTREAMS_FN: <#ident as ::core::ops::Deref>::Target = #inner;
                &__KSTREAMS_FN
            }
        }
    }
}

pub(crate) fn processor(f: &ProcessorFn, args: &ProcessorArgs) -> TokenStream {
    let item = &f.item;
    let ident = f.ident();
    let inner = inner_ident(ident);
    let (_, cfgs, _) = split_attrs(&item.attrs);
    let (key, value) = (&f.key, &f.value);
    let (out_key, out_value) = match &f.emit {
        Some((k, v)) => (k.to_token_stream(), v.to_token_stream()),
        None => (quote!(()), quote!(())),
    };
    let node_name = match &args.name {
        Some(n) => n.clone(),
        None => LitStr::new(&unraw(ident), ident.span()),
    };

    // Each use of a store type goes through `store_param::<T>()` (or `store_ref_param`),
    // spanned at `T`.
    let params: Vec<TokenStream> = f.stores.iter().map(store_param).collect();
    // A punctuation handler named by `with`, as a value: the unit struct of a
    // `#[punctuator]`, checked against the processor's output types at the path.
    let handler = |with: &syn::Path| quote_spanned!(with.span()=> <_ as ::kstreams::__private::Punctuator<#out_key, #out_value>>);
    let handler_stores: Vec<TokenStream> = args
        .punctuate
        .iter()
        .map(|p| {
            let (h, with) = (handler(&p.with), &p.with);
            quote!(::kstreams::__private::merge_stores(&mut __kstreams_stores, #h::stores(&#with));)
        })
        .collect();
    let stores_fn = if params.is_empty() && handler_stores.is_empty() {
        quote!()
    } else if handler_stores.is_empty() {
        quote! {
            fn stores(&self) -> ::kstreams::__private::Vec<::kstreams::__private::StoreSpec> {
                ::kstreams::__private::Vec::from([#((#params.spec)()),*])
            }
        }
    } else {
        quote! {
            fn stores(&self) -> ::kstreams::__private::Vec<::kstreams::__private::StoreSpec> {
                let mut __kstreams_stores: ::kstreams::__private::Vec<::kstreams::__private::StoreSpec> =
                    ::kstreams::__private::Vec::from([#((#params.spec)()),*]);
                #(#handler_stores)*
                __kstreams_stores
            }
        }
    };
    let init_fn = init_fn(args);
    let punctuate_fn = if args.punctuate.is_empty() {
        quote!()
    } else {
        let arms = args.punctuate.iter().enumerate().map(|(i, p)| {
            let (h, with) = (handler(&p.with), &p.with);
            quote!(#i => #h::punctuate(&#with, &__kstreams_punctuation, __kstreams_ctx),)
        });
        quote! {
            fn punctuate(
                &mut self,
                __kstreams_punctuation: ::kstreams::__private::Punctuation,
                __kstreams_ctx: &mut ::kstreams::__private::Context<'_, #out_key, #out_value>,
            ) -> ::kstreams::__private::Result<()> {
                match __kstreams_punctuation.id {
                    #(#arms)*
                    _ => ::kstreams::__private::unknown_punctuation(__kstreams_ctx, &__kstreams_punctuation),
                }
            }
        }
    };
    let (lets, store_args) = bound_stores(&f.stores, &params);
    let bind = quote! {
        let __kstreams_binder = ::kstreams::__private::binder(__kstreams_ctx);
        #lets
    };
    let out_arg = f.emit.as_ref().map(|_| quote!(__kstreams_ctx));
    let ret_span = match &item.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => Span::call_site(),
    };
    // The call is spanned at the return type: a return type that is not `()` or a `Result` is
    // reported there ("a processor function cannot return `usize`").
    let call_inner = Ident::new(&inner.to_string(), ret_span);
    let call = |records: TokenStream| {
        quote_spanned! {ret_span=>
            ::kstreams::__private::ProcessorReturn::into_result(
                #call_inner(#records, #(#store_args,)* #out_arg)
            )
        }
    };
    let body = match f.kind {
        Kind::Batch => {
            let call = call(quote!(__kstreams_records));
            quote! {
                #bind
                #call
            }
        }
        Kind::PerRecord | Kind::Punctuator => {
            let call = call(quote!(__kstreams_record));
            quote! {
                #bind
                for __kstreams_record in __kstreams_records {
                    #call.map_err(|__kstreams_e| ::kstreams::__private::with_origin(__kstreams_e, __kstreams_record))?;
                }
                ::core::result::Result::Ok(())
            }
        }
    };
    let unit = unit_struct(f.kind, item);
    let check = stores_check(&params);
    let inner_fn = inner_fn(item);
    let deref = deref_impl(item);
    quote! {
        #unit

        #(#cfgs)*
        #[allow(elided_lifetimes_in_paths)]
        const _: () = {
            #check

            #inner_fn

            #deref

            impl ::kstreams::__private::BatchProcessor<#key, #value> for #ident {
                type OutKey = #out_key;
                type OutValue = #out_value;

                fn node_name(&self) -> ::core::option::Option<&str> {
                    ::core::option::Option::Some(#node_name)
                }

                #stores_fn

                #init_fn

                #punctuate_fn

                #[inline]
                fn process_batch(
                    &mut self,
                    __kstreams_records: &[::kstreams::__private::Record<#key, #value>],
                    __kstreams_ctx: &mut ::kstreams::__private::Context<'_, #out_key, #out_value>,
                ) -> ::kstreams::__private::Result<()> {
                    #body
                }
            }
        };
    }
}

/// `BatchProcessor::init`: schedules the `punctuate(...)`s in order (their ids are 0, 1, ...),
/// then calls the `init = f` function.
fn init_fn(args: &ProcessorArgs) -> TokenStream {
    if args.punctuate.is_empty() && args.init.is_none() {
        return quote!();
    }
    let schedules = args.punctuate.iter().map(|p| {
        let every = match &p.every {
            Every::Millis(ms) => quote!(::core::time::Duration::from_millis(#ms)),
            Every::Expr(e) => quote_spanned! {e.span()=>
                {
                    let __kstreams_every: ::core::time::Duration = #e;
                    __kstreams_every
                }
            },
        };
        let clock = match p.clock {
            Clock::WallClock => quote!(::kstreams::__private::PunctuationType::WallClock),
            Clock::StreamTime => quote!(::kstreams::__private::PunctuationType::StreamTime),
        };
        quote!(__kstreams_ctx.schedule(#every, #clock)?;)
    });
    let init = args.init.as_ref().map(|f| {
        let call = quote_spanned!(f.span()=> ::kstreams::__private::run_init(__kstreams_ctx, #f));
        quote!(#call?;)
    });
    quote! {
        fn init(
            &mut self,
            __kstreams_ctx: &mut ::kstreams::__private::InitContext<'_>,
        ) -> ::kstreams::__private::Result<()> {
            #(#schedules)*
            #init
            ::core::result::Result::Ok(())
        }
    }
}

/// `#[punctuator]`: the unit struct, the renamed function and its `Punctuator` impl. Its stores
/// are bound by name (they are part of the processor's stores, wherever they are in its list).
pub(crate) fn punctuator(f: &ProcessorFn) -> TokenStream {
    let item = &f.item;
    let ident = f.ident();
    let inner = inner_ident(ident);
    let (_, cfgs, _) = split_attrs(&item.attrs);
    let (generics, out_key, out_value) = match &f.emit {
        Some((k, v)) => (quote!(), k.to_token_stream(), v.to_token_stream()),
        None => (
            quote!(<__KstreamsK: 'static, __KstreamsV: 'static>),
            quote!(__KstreamsK),
            quote!(__KstreamsV),
        ),
    };
    let params: Vec<TokenStream> = f.stores.iter().map(store_param).collect();
    let (lets, store_args) = bound_stores(&f.stores, &params);
    let out_arg = f.emit.as_ref().map(|_| quote!(__kstreams_ctx));
    let ret_span = match &item.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => Span::call_site(),
    };
    let call_inner = Ident::new(&inner.to_string(), ret_span);
    let call = quote_spanned! {ret_span=>
        ::kstreams::__private::ProcessorReturn::into_result(
            #call_inner(__kstreams_punctuation, #(#store_args,)* #out_arg)
        )
    };
    let unit = unit_struct(f.kind, item);
    let check = stores_check(&params);
    let inner_fn = inner_fn(item);
    let deref = deref_impl(item);
    quote! {
        #unit

        #(#cfgs)*
        #[allow(elided_lifetimes_in_paths)]
        const _: () = {
            #check

            #inner_fn

            #deref

            impl #generics ::kstreams::__private::Punctuator<#out_key, #out_value> for #ident {
                fn stores(&self) -> ::kstreams::__private::Vec<::kstreams::__private::StoreSpec> {
                    ::kstreams::__private::Vec::from([#((#params.spec)()),*])
                }

                #[inline]
                fn punctuate(
                    &self,
                    __kstreams_punctuation: &::kstreams::__private::Punctuation,
                    __kstreams_ctx: &mut ::kstreams::__private::Context<'_, #out_key, #out_value>,
                ) -> ::kstreams::__private::Result<()> {
                    let __kstreams_binder = ::kstreams::__private::binder(__kstreams_ctx);
                    #lets
                    #call
                }
            }
        };
    }
}

/// What differs between the kinds of store in a handle's code.
pub(crate) struct StoreBody {
    /// `StoreHandle::spec`'s body.
    pub(crate) spec: TokenStream,
    /// `StoreHandle::bind`'s body, with the key-value handle in `store`.
    pub(crate) bind: TokenStream,
    /// `WindowedHandle::windowing`'s body (windowed stores only).
    pub(crate) windowing: TokenStream,
}

/// The type a handle of this kind wraps (and derefs to), and the marker type its alias names.
fn store_types(kind: StoreKind, key: &Type, value: &Type) -> (TokenStream, TokenStream) {
    match kind {
        StoreKind::KeyValue => (
            quote!(::kstreams::__private::KeyValueStore<'t, #key, #value>),
            quote!(::kstreams::__private::KeyValue<#key, #value>),
        ),
        StoreKind::Window => (
            quote!(::kstreams::__private::TimeWindowState<'t, #key, #value>),
            quote!(::kstreams::__private::WindowKeyValue<#key, #value>),
        ),
        StoreKind::Session => (
            quote!(::kstreams::__private::SessionWindowState<'t, #key, #value>),
            quote!(::kstreams::__private::SessionKeyValue<#key, #value>),
        ),
        StoreKind::Versioned => (
            quote!(::kstreams::__private::VersionedStore<'t, #key, #value>),
            quote!(::kstreams::__private::VersionedKeyValue<#key, #value>),
        ),
    }
}

/// The handle type of a store alias and its impls: the struct (with `doc`), the check that the
/// alias names the kstreams marker, `Deref`/`DerefMut`, `StoreHandle`, for windowed stores
/// `WindowedHandle`, and for key-value and versioned stores `TableStore` (on the `'static` form,
/// as tables name their store: `t.table::<Prices<'static>>(..)`). Used by the expansion and by the fallback (with bodies that never run).
pub(crate) fn store_handle(
    s: &StoreAlias,
    doc: Option<&str>,
    name: &LitStr,
    body: &StoreBody,
) -> TokenStream {
    let StoreAlias {
        attrs,
        vis,
        ident,
        ty,
        kind,
        key,
        value,
    } = s;
    let (docs, cfgs, rest) = split_attrs(attrs);
    let (inner, marker) = store_types(*kind, key, value);
    let doc = doc.map(|note| {
        let sep = if docs.is_empty() {
            quote!()
        } else {
            quote!(#[doc = ""])
        };
        quote!(#sep #[doc = #note] #(#rest)*)
    });
    let StoreBody {
        spec,
        bind,
        windowing,
    } = body;
    let windowed = match kind {
        StoreKind::KeyValue | StoreKind::Versioned => quote! {
            impl ::kstreams::__private::TableStore for #ident<'static> {}
        },
        StoreKind::Window | StoreKind::Session => {
            let kind_ty = match kind {
                StoreKind::Session => quote!(::kstreams::__private::SessionKind),
                _ => quote!(::kstreams::__private::TimeKind),
            };
            quote! {
                impl<'t> ::kstreams::__private::WindowedHandle<'t> for #ident<'t> {
                    type Kind = #kind_ty;

                    fn windowing() -> ::kstreams::__private::Windowing {
                        #windowing
                    }
                }
            }
        }
    };
    quote! {
        #(#cfgs)*
        #(#docs)*
        #doc
        #[derive(::core::fmt::Debug)]
        #vis struct #ident<'t>(#inner);

        #(#cfgs)*
        const _: () = {
            // The alias must name the kstreams marker type, whatever it is imported as.
            const _: fn(#ty) -> #marker = ::core::convert::identity;

            impl<'t> ::core::ops::Deref for #ident<'t> {
                type Target = #inner;
                #[inline]
                fn deref(&self) -> &Self::Target {
                    &self.0
                }
            }

            impl<'t> ::core::ops::DerefMut for #ident<'t> {
                #[inline]
                fn deref_mut(&mut self) -> &mut Self::Target {
                    &mut self.0
                }
            }

            impl<'t> ::kstreams::__private::StoreHandle<'t> for #ident<'t> {
                const NAME: &'static str = #name;
                type Key = #key;
                type Value = #value;

                fn spec() -> ::kstreams::__private::StoreSpec {
                    #spec
                }

                #[inline]
                fn bind(store: ::kstreams::__private::KeyValueStore<'t, #key, #value>) -> Self {
                    #bind
                }
            }

            #windowed
        };
    }
}

/// Milliseconds the macro validated (at most `i64::MAX`), as an `i64` literal.
fn ms(d: &Dur) -> proc_macro2::Literal {
    proc_macro2::Literal::i64_suffixed(i64::try_from(d.ms).unwrap_or(i64::MAX))
}

/// `WindowedHandle::windowing`'s body: the declaration's windows, emit strategy, late policy,
/// retention and idle advance, from the literals read at compile time.
fn windowing_body(args: &StoreArgs) -> TokenStream {
    let grace = args.grace.as_ref().map(ms);
    let windows = match args.window.as_ref().and_then(|w| w.form.as_ref()) {
        Some(WindowForm::Tumbling { size }) => {
            let size = ms(size);
            quote!(::kstreams::__private::time_windows_ms(#size, #size, #grace))
        }
        Some(WindowForm::Hopping { size, advance }) => {
            let (size, advance) = (ms(size), ms(advance));
            quote!(::kstreams::__private::time_windows_ms(#size, #advance, #grace))
        }
        Some(WindowForm::Sliding { difference }) => {
            let difference = ms(difference);
            quote!(::kstreams::__private::sliding_windows_ms(#difference, #grace))
        }
        Some(WindowForm::Session { gap }) => {
            let gap = ms(gap);
            quote!(::kstreams::__private::session_windows_ms(#gap, #grace))
        }
        // Not reached: a windowed store without a valid form is a macro error.
        None => quote!(::core::unreachable!()),
    };
    let emit = match args.emit.unwrap_or(EmitArg::OnWindowUpdate) {
        EmitArg::OnWindowUpdate => quote!(::kstreams::__private::EmitStrategy::OnWindowUpdate),
        EmitArg::OnWindowClose => quote!(::kstreams::__private::EmitStrategy::OnWindowClose),
    };
    let on_late = match args.on_late.unwrap_or(OnLateArg::Drop) {
        OnLateArg::Drop => quote!(::kstreams::__private::OnLate::Drop),
        OnLateArg::DeadLetter => quote!(::kstreams::__private::OnLate::DeadLetter),
    };
    let option = |d: &Option<Dur>| match d {
        Some(d) => {
            let d = ms(d);
            quote!(::core::option::Option::Some(#d))
        }
        None => quote!(::core::option::Option::None),
    };
    let (retention, idle) = (option(&args.retention), option(&args.idle_advance));
    quote! {
        ::kstreams::__private::windowing(#windows, #emit, #on_late, #retention, #idle)
    }
}

pub(crate) fn store(s: &StoreAlias, args: &StoreArgs, name: &LitStr) -> TokenStream {
    let StoreAlias {
        ident,
        kind,
        key,
        value,
        ..
    } = s;
    let key_serde = match &args.key_serde {
        Some(e) => e.to_token_stream(),
        None => quote_spanned!(key.span()=> ::kstreams::__private::default_serde::<#key>()),
    };
    let value_serde = match &args.value_serde {
        Some(e) => e.to_token_stream(),
        None => quote_spanned!(value.span()=> ::kstreams::__private::default_serde::<#value>()),
    };
    let backend = match args.backend {
        None => quote!(),
        Some(Backend::Lmdb) => quote!(.backend(::kstreams::__private::Backend::Lmdb)),
        Some(Backend::InMemory) => quote!(.backend(::kstreams::__private::Backend::InMemory)),
    };
    let changelog = match &args.changelog {
        None => quote!(),
        Some(b) => quote!(.changelog(#b)),
    };
    let base_spec = quote! {
        ::kstreams::__private::StoreSpec::with_serdes::<#key, #value>(#name, #key_serde, #value_serde)
            #backend
            #changelog
    };
    let windowing_of_self =
        quote!(<Self as ::kstreams::__private::WindowedHandle<'t>>::windowing());
    let (what, body) = match kind {
        StoreKind::KeyValue => (
            "store",
            StoreBody {
                spec: base_spec,
                bind: quote!(#ident(store)),
                windowing: quote!(),
            },
        ),
        StoreKind::Versioned => {
            // Not reached without a history: a versioned store without one is a macro error.
            let history = match &args.history {
                Some(d) => ms(d).to_token_stream(),
                None => quote!(0i64),
            };
            (
                "versioned store",
                StoreBody {
                    spec: quote!(::kstreams::__private::versioned_store_spec(#base_spec, #history)),
                    bind: quote!(#ident(::kstreams::__private::versioned_store(store, #history))),
                    windowing: quote!(),
                },
            )
        }
        StoreKind::Window | StoreKind::Session => {
            let state = match kind {
                StoreKind::Session => quote!(::kstreams::__private::session_window_state),
                _ => quote!(::kstreams::__private::time_window_state),
            };
            (
                "windowed store",
                StoreBody {
                    spec: quote!(::kstreams::__private::window_store_spec(#base_spec, &#windowing_of_self)),
                    bind: quote!(#ident(#state(store, #windowing_of_self))),
                    windowing: windowing_body(args),
                },
            )
        }
    };
    let note = format!(
        " The {what} `{}` (`{}` → `{}`), declared with `#[kstreams::store]`: take it as `&mut {ident}` (read and write) or `&{ident}` (read only: a table's store) in a processor function.",
        name.value(),
        crate::ast::code(key),
        crate::ast::code(value),
        ident = unraw(ident)
    );
    store_handle(s, Some(&note), name, &body)
}
