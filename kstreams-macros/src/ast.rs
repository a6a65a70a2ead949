//! The model of the annotated items, parsed from the user's tokens: a processor function (its
//! records, store and output parameters) and a store alias (its key and value types).
//!
//! Parsing checks the *shape* of the item and records every mistake in [`Errors`]; what needs
//! the types (is this parameter's type really a store? do the serdes exist?) is left to the type
//! checker, through the bounds the expansion writes.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, Item, ItemFn, ItemType, PathArguments, ReturnType,
    Type, TypePath, TypeReference, Visibility,
};

use crate::ctxt::Errors;

/// Which macro: over a batch (`&[Record<K, V>]`), over one record (`&Record<K, V>`), or a
/// punctuation handler (`&Punctuation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Batch,
    PerRecord,
    Punctuator,
}

impl Kind {
    pub(crate) fn macro_name(self) -> &'static str {
        match self {
            Kind::Batch => "batch_processor",
            Kind::PerRecord => "processor",
            Kind::Punctuator => "punctuator",
        }
    }

    fn records_form(self) -> &'static str {
        match self {
            Kind::Batch => "&[Record<K, V>]",
            Kind::PerRecord => "&Record<K, V>",
            Kind::Punctuator => "&Punctuation",
        }
    }

    /// What the first parameter holds, and its usual name.
    fn first_param(self) -> &'static str {
        match self {
            Kind::Batch | Kind::PerRecord => "records",
            Kind::Punctuator => "punctuation",
        }
    }
}

/// A store parameter: `&mut T` (read and write) or `&T` (read only) where `T` should be a
/// `#[store]` type.
pub(crate) struct StoreParam {
    /// `T`.
    pub(crate) ty: Type,
    /// Taken by `&T`: the processor only reads the store.
    pub(crate) read_only: bool,
}

/// A processor function, as far as its shape is right.
pub(crate) struct ProcessorFn {
    pub(crate) kind: Kind,
    pub(crate) item: ItemFn,
    /// `K` and `V` of the records parameter.
    pub(crate) key: Type,
    pub(crate) value: Type,
    pub(crate) stores: Vec<StoreParam>,
    /// `K` and `V` of `&mut Emit<K, V>`, when there is one.
    pub(crate) emit: Option<(Type, Type)>,
}

impl ProcessorFn {
    pub(crate) fn ident(&self) -> &Ident {
        &self.item.sig.ident
    }
}

/// What parsing a processor item gave: the model when the shape is right, and otherwise as much
/// as the fallback needs to keep one mistake at one error.
pub(crate) struct ParsedFn {
    pub(crate) model: Option<ProcessorFn>,
    /// The item, as it came.
    pub(crate) item: Option<Item>,
    /// The output types, when an output parameter could be read.
    pub(crate) emit: Option<(Type, Type)>,
}

/// The last path segment of a type, if it is a plain path: `a::b::Name<..>` → `Name<..>`.
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(TypePath { qself: None, path }) => path.segments.last(),
        Type::Group(g) => last_segment(&g.elem),
        Type::Paren(p) => last_segment(&p.elem),
        _ => None,
    }
}

/// The two type arguments of `Name<A, B>` (lifetimes skipped), when the last segment is one of
/// `names` with exactly two type arguments.
pub(crate) fn two_type_args(ty: &Type, names: &[&str]) -> Option<(Type, Type)> {
    let seg = last_segment(ty)?;
    if !names.iter().any(|n| seg.ident == n) {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        GenericArgument::Lifetime(_) => None,
        _ => Some(Type::Verbatim(a.to_token_stream())),
    });
    let (k, v) = (types.next()?, types.next()?);
    if types.next().is_some() {
        return None;
    }
    Some((k, v))
}

/// The tokens of the marker type's name in a store alias (`WindowKeyValue` of
/// `kstreams::WindowKeyValue<K, A>`), for errors about the store's kind.
pub(crate) fn marker_tokens(ty: &Type) -> TokenStream {
    match last_segment(ty) {
        Some(seg) => seg.ident.to_token_stream(),
        None => ty.to_token_stream(),
    }
}

fn names_segment(ty: &Type, names: &[&str]) -> bool {
    last_segment(ty).is_some_and(|s| names.iter().any(|n| s.ident == n))
}

/// Whether `impl Trait` occurs anywhere in the tokens.
pub(crate) fn has_impl_trait(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|t| match t {
        proc_macro2::TokenTree::Ident(i) => i == "impl",
        proc_macro2::TokenTree::Group(g) => has_impl_trait(g.stream()),
        _ => false,
    })
}

const OUTPUT_NAMES: &[&str] = &["Emit", "Context"];

fn supported(kind: Kind) -> String {
    format!(
        "supported: the {} `{}` first, then zero or more stores (types declared with `#[kstreams::store]`), `&mut S` to read and write or `&S` to read only, then optionally the output `&mut Emit<K, V>`",
        kind.first_param(),
        kind.records_form()
    )
}

/// Whether a type taken by value looks like a store handle (a path whose last segment is
/// capitalized: not `usize` or `bool`).
fn looks_like_a_store(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| {
        s.ident
            .to_string()
            .trim_start_matches("r#")
            .starts_with(|c: char| c.is_ascii_uppercase())
    })
}

/// Tokens as a user would write them: `&mut Foo<A, B>`, not `& mut Foo < A , B >`.
pub(crate) fn code(tokens: impl ToTokens) -> String {
    let s = tokens.to_token_stream().to_string();
    s.replace(" :: ", "::")
        .replace(" < ", "<")
        .replace("< ", "<")
        .replace(" <", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace("& ", "&")
        .replace(" : ", ": ")
        .replace("[ ", "[")
        .replace(" ]", "]")
        .replace("( ", "(")
        .replace(" )", ")")
}

/// The span for an error about a whole item kind: its keyword and name.
fn item_head(item: &Item) -> TokenStream {
    let mut out = TokenStream::new();
    match item {
        Item::Struct(s) => {
            s.struct_token.to_tokens(&mut out);
            s.ident.to_tokens(&mut out);
        }
        Item::Enum(e) => {
            e.enum_token.to_tokens(&mut out);
            e.ident.to_tokens(&mut out);
        }
        Item::Type(t) => {
            t.type_token.to_tokens(&mut out);
            t.ident.to_tokens(&mut out);
        }
        Item::Fn(f) => {
            f.sig.fn_token.to_tokens(&mut out);
            f.sig.ident.to_tokens(&mut out);
        }
        Item::Const(c) => {
            c.const_token.to_tokens(&mut out);
            c.ident.to_tokens(&mut out);
        }
        Item::Static(s) => {
            s.static_token.to_tokens(&mut out);
            s.ident.to_tokens(&mut out);
        }
        Item::Mod(m) => {
            m.mod_token.to_tokens(&mut out);
            m.ident.to_tokens(&mut out);
        }
        Item::Trait(t) => {
            t.trait_token.to_tokens(&mut out);
            t.ident.to_tokens(&mut out);
        }
        Item::Impl(i) => i.impl_token.to_tokens(&mut out),
        Item::Use(u) => u.use_token.to_tokens(&mut out),
        other => other.to_tokens(&mut out),
    }
    out
}

/// Parses and shape-checks a processor function.
pub(crate) fn processor_fn(kind: Kind, tokens: TokenStream, errors: &mut Errors) -> ParsedFn {
    let macro_name = kind.macro_name();
    let item = match syn::parse2::<Item>(tokens) {
        Ok(item) => item,
        Err(e) => {
            errors.push(e);
            return ParsedFn {
                model: None,
                item: None,
                emit: None,
            };
        }
    };
    let Item::Fn(f) = &item else {
        errors.spanned(
            item_head(&item),
            format_args!(
                "`#[{macro_name}]` applies to a function: `fn name({}: {}, ...)`",
                kind.first_param(),
                kind.records_form()
            ),
        );
        return ParsedFn {
            model: None,
            item: Some(item),
            emit: None,
        };
    };
    let f = f.clone();
    let sig = &f.sig;

    // What the signature may not be.
    if let Some(t) = &sig.constness {
        errors.spanned(
            t,
            format_args!("a `#[{macro_name}]` function cannot be `const`"),
        );
    }
    if let Some(t) = &sig.asyncness {
        errors.spanned(
            t,
            format_args!(
                "a `#[{macro_name}]` function cannot be `async`: tasks run processors synchronously, one batch at a time"
            ),
        );
    }
    if let Some(t) = &sig.unsafety {
        errors.spanned(
            t,
            format_args!("a `#[{macro_name}]` function cannot be `unsafe`"),
        );
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(
            abi,
            format_args!("a `#[{macro_name}]` function cannot have an `extern` ABI"),
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        let mut at = sig.generics.to_token_stream();
        sig.generics.where_clause.to_tokens(&mut at);
        errors.spanned(
            at,
            format_args!(
                "a `#[{macro_name}]` function cannot be generic: a processor has one input type, one output type and fixed stores; write the concrete types"
            ),
        );
    }
    if let Some(v) = &sig.variadic {
        errors.spanned(
            v,
            format_args!(
                "a `#[{macro_name}]` function cannot be variadic; {}",
                supported(kind)
            ),
        );
    }
    if let ReturnType::Type(_, ty) = &sig.output
        && has_impl_trait(ty.to_token_stream())
    {
        errors.spanned(
            ty,
            format_args!(
                "a `#[{macro_name}]` function cannot return `impl Trait`: return `()`, `kstreams::Result<()>` or `Result<(), E>` where `E: Into<kstreams::Error>`"
            ),
        );
    }

    let mut inputs = sig.inputs.iter().peekable();
    // A receiver is reported once; the parameter after it is read as the records.
    if let Some(FnArg::Receiver(r)) = inputs.peek() {
        errors.spanned(
            r,
            format_args!(
                "a `#[{macro_name}]` function is a free function: it cannot take `self`; {}",
                supported(kind)
            ),
        );
        inputs.next();
    }
    // The records parameter.
    let mut records = None;
    match inputs.next() {
        None => errors.at(
            sig.paren_token.span.join(),
            format_args!(
                "`{}` has no {first} parameter: the first parameter of a `#[{macro_name}]` function is `{first}: {}`",
                sig.ident,
                kind.records_form(),
                first = kind.first_param(),
            ),
        ),
        Some(FnArg::Receiver(r)) => errors.spanned(
            r,
            format_args!("a `#[{macro_name}]` function is a free function: it cannot take `self`; {}", supported(kind)),
        ),
        Some(FnArg::Typed(pt)) => records = records_param(kind, &pt.ty, errors),
    }

    // Stores, then the output.
    let mut stores: Vec<StoreParam> = Vec::new();
    let mut emit: Option<(Type, Type)> = None;
    let mut emit_seen: Option<Span> = None;
    while let Some(arg) = inputs.next() {
        let last = inputs.peek().is_none();
        let pt = match arg {
            FnArg::Receiver(r) => {
                errors.spanned(
                    r,
                    format_args!("a `#[{macro_name}]` function is a free function: it cannot take `self`; {}", supported(kind)),
                );
                continue;
            }
            FnArg::Typed(pt) => pt,
        };
        let ty = &*pt.ty;
        if has_impl_trait(ty.to_token_stream()) {
            errors.spanned(
                ty,
                format_args!(
                    "`impl Trait` parameters are not supported; {}",
                    supported(kind)
                ),
            );
            continue;
        }
        match ty {
            Type::Reference(TypeReference {
                mutability: Some(_),
                elem,
                ..
            }) if names_segment(elem, OUTPUT_NAMES) => {
                match two_type_args(elem, OUTPUT_NAMES) {
                    Some(kv) => {
                        if emit.is_none() {
                            emit = Some(kv);
                        }
                    }
                    None => errors.spanned(
                        elem,
                        "the output parameter names the output key and value types: `&mut Emit<K, V>`",
                    ),
                }
                if emit_seen.is_some() {
                    errors.spanned(
                        ty,
                        format_args!("a `#[{macro_name}]` function has one output parameter"),
                    );
                } else if !last {
                    errors.spanned(
                        ty,
                        "the output parameter `&mut Emit<K, V>` comes last, after the store parameters",
                    );
                }
                emit_seen = Some(ty.span());
            }
            Type::Reference(TypeReference {
                mutability: None,
                elem,
                ..
            }) if names_segment(elem, OUTPUT_NAMES) => {
                errors.spanned(
                    ty,
                    format_args!(
                        "the output parameter is taken by `&mut`: write `&mut {}`",
                        code(elem)
                    ),
                );
            }
            Type::Reference(TypeReference {
                mutability, elem, ..
            }) if !names_segment(elem, &["Record"]) => {
                // One after the output is reported at the output ("comes last").
                if emit_seen.is_none() {
                    stores.push(StoreParam {
                        ty: (**elem).clone(),
                        read_only: mutability.is_none(),
                    });
                }
            }
            other if names_segment(other, OUTPUT_NAMES) => errors.spanned(
                other,
                format_args!(
                    "the output parameter is taken by `&mut`: write `&mut {}`",
                    code(other)
                ),
            ),
            other if looks_like_a_store(other) && !names_segment(other, &["Record"]) => errors
                .spanned(
                    other,
                    format_args!(
                        "a store parameter is taken by reference: `&mut {ty}` to read and write, `&{ty}` to read only",
                        ty = code(other)
                    ),
                ),
            other => errors.spanned(
                other,
                format_args!("unsupported parameter `{}`; {}", code(pt), supported(kind)),
            ),
        }
    }

    let model = match (errors.is_empty(), records) {
        (true, Some((key, value))) => Some(ProcessorFn {
            kind,
            item: f.clone(),
            key,
            value,
            stores,
            emit: emit.clone(),
        }),
        _ => None,
    };
    ParsedFn {
        model,
        item: Some(Item::Fn(f)),
        emit,
    }
}

/// Checks the records parameter: `&[Record<K, V>]` (batch) or `&Record<K, V>` (per record).
fn records_param(kind: Kind, ty: &Type, errors: &mut Errors) -> Option<(Type, Type)> {
    let macro_name = kind.macro_name();
    let wrong = |errors: &mut Errors, extra: &str| {
        errors.spanned(
            ty,
            format_args!(
                "the first parameter of a `#[{macro_name}]` function is its {}, `{}`{extra}",
                kind.first_param(),
                kind.records_form()
            ),
        );
        None
    };
    if kind == Kind::Punctuator {
        return match ty {
            Type::Reference(TypeReference {
                mutability: None,
                elem,
                ..
            }) if names_segment(elem, &["Punctuation"]) => {
                let unit: Type = syn::parse_quote!(());
                Some((unit.clone(), unit))
            }
            _ if names_segment(ty, &["Punctuation"]) => wrong(errors, ": take it by reference"),
            _ => wrong(errors, ""),
        };
    }
    let Type::Reference(TypeReference {
        mutability, elem, ..
    }) = ty
    else {
        if names_segment(ty, &["Vec"]) && kind == Kind::Batch {
            return wrong(errors, ": take them by slice, not `Vec`");
        }
        return wrong(errors, "");
    };
    if mutability.is_some() {
        return wrong(errors, ": records are read-only (forward changed copies)");
    }
    match (&**elem, kind) {
        (Type::Slice(s), Kind::Batch) => match two_type_args(&s.elem, &["Record"]) {
            Some(kv) => Some(kv),
            None => wrong(errors, ""),
        },
        (Type::Slice(s), Kind::PerRecord) if names_segment(&s.elem, &["Record"]) => {
            wrong(errors, ": for a whole batch, use `#[batch_processor]`")
        }
        (inner, Kind::PerRecord) => match two_type_args(inner, &["Record"]) {
            Some(kv) => Some(kv),
            None => wrong(errors, ""),
        },
        (inner, Kind::Batch) if names_segment(inner, &["Record"]) => {
            wrong(errors, ": for one record at a time, use `#[processor]`")
        }
        (inner, Kind::Batch) if names_segment(inner, &["Vec"]) => {
            wrong(errors, ": take them by slice, not `Vec`")
        }
        _ => wrong(errors, ""),
    }
}

/// Which store a `#[store]` alias names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// `kstreams::KeyValue<K, V>`.
    KeyValue,
    /// `kstreams::WindowKeyValue<K, A>`: time (tumbling, hopping) or sliding windows.
    Window,
    /// `kstreams::SessionKeyValue<K, A>`: session windows.
    Session,
    /// `kstreams::VersionedKeyValue<K, V>`: a versioned key-value store (KIP-889).
    Versioned,
}

impl StoreKind {
    /// The marker type's name.
    pub(crate) fn marker(self) -> &'static str {
        match self {
            StoreKind::KeyValue => "KeyValue",
            StoreKind::Window => "WindowKeyValue",
            StoreKind::Session => "SessionKeyValue",
            StoreKind::Versioned => "VersionedKeyValue",
        }
    }
}

/// A `#[store]` alias: `type Name = KeyValue<K, V>;` (or `WindowKeyValue`, `SessionKeyValue`,
/// `VersionedKeyValue`).
pub(crate) struct StoreAlias {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) ident: Ident,
    /// The aliased type as written.
    pub(crate) ty: Type,
    /// The marker type it names.
    pub(crate) kind: StoreKind,
    pub(crate) key: Type,
    pub(crate) value: Type,
}

/// What parsing a store item gave.
pub(crate) struct ParsedStore {
    pub(crate) model: Option<StoreAlias>,
    pub(crate) item: Option<Item>,
}

pub(crate) fn store_alias(tokens: TokenStream, errors: &mut Errors) -> ParsedStore {
    const FORM: &str = "`#[store(name = \"...\")] type Name = kstreams::KeyValue<K, V>;`, `kstreams::VersionedKeyValue<K, V>` (with `history = \"...\"`), or for windowed aggregates `kstreams::WindowKeyValue<K, A>` (time and sliding windows) or `kstreams::SessionKeyValue<K, A>` (session windows)";
    let item = match syn::parse2::<Item>(tokens) {
        Ok(item) => item,
        Err(e) => {
            errors.push(e);
            return ParsedStore {
                model: None,
                item: None,
            };
        }
    };
    let Item::Type(ItemType {
        attrs,
        vis,
        ident,
        generics,
        ty,
        ..
    }) = &item
    else {
        errors.spanned(
            item_head(&item),
            format_args!("`#[store]` applies to a type alias: {FORM}"),
        );
        return ParsedStore {
            model: None,
            item: Some(item),
        };
    };
    if !generics.params.is_empty() || generics.where_clause.is_some() {
        errors.spanned(
            generics,
            "a `#[store]` alias cannot be generic: a store has one key type and one value type",
        );
    }
    let kv = [
        StoreKind::KeyValue,
        StoreKind::Window,
        StoreKind::Session,
        StoreKind::Versioned,
    ]
    .into_iter()
    .find_map(|kind| two_type_args(ty, &[kind.marker()]).map(|(k, v)| (kind, k, v)));
    if kv.is_none() {
        errors.spanned(
            ty,
            format_args!("a `#[store]` alias names a store type: {FORM}"),
        );
    }
    let model = match kv {
        Some((kind, key, value))
            if generics.params.is_empty() && generics.where_clause.is_none() =>
        {
            Some(StoreAlias {
                attrs: attrs.clone(),
                vis: vis.clone(),
                ident: ident.clone(),
                ty: (**ty).clone(),
                kind,
                key,
                value,
            })
        }
        _ => None,
    };
    ParsedStore {
        model,
        item: Some(item),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn check(kind: Kind, tokens: TokenStream) -> (ParsedFn, Vec<String>) {
        let mut errors = Errors::new();
        let parsed = processor_fn(kind, tokens, &mut errors);
        let messages = match errors.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        };
        (parsed, messages)
    }

    #[test]
    fn a_full_signature_is_modelled() {
        let (parsed, errors) = check(
            Kind::Batch,
            quote! {
                fn count(lines: &[kstreams::Record<(), String>], a: &mut A, b: &mut m::B, out: &mut Emit<'_, String, u64>) -> kstreams::Result<()> { Ok(()) }
            },
        );
        assert!(errors.is_empty(), "{errors:?}");
        let m = parsed.model.expect("a model");
        assert_eq!(code(&m.key), "()");
        assert_eq!(code(&m.value), "String");
        assert_eq!(
            m.stores.iter().map(|s| code(&s.ty)).collect::<Vec<_>>(),
            ["A", "m::B"]
        );
        let (k, v) = m.emit.expect("an output");
        assert_eq!((code(k), code(v)), ("String".into(), "u64".into()));
    }

    #[test]
    fn records_only_has_no_output() {
        let (parsed, errors) = check(
            Kind::PerRecord,
            quote!(
                fn f(r: &Record<u64, Vec<u8>>) {}
            ),
        );
        assert!(errors.is_empty());
        let m = parsed.model.expect("a model");
        assert!(m.emit.is_none() && m.stores.is_empty());
        assert_eq!(code(&m.value), "Vec<u8>");
    }

    #[test]
    fn every_signature_mistake_is_reported() {
        let (parsed, errors) = check(
            Kind::Batch,
            quote!(
                async unsafe fn f<T>(
                    lines: Vec<Record<(), T>>,
                    n: usize,
                    s: S,
                    out: &mut Emit<u8>,
                ) {
                }
            ),
        );
        assert!(parsed.model.is_none());
        assert_eq!(
            errors,
            [
                "a `#[batch_processor]` function cannot be `async`: tasks run processors synchronously, one batch at a time",
                "a `#[batch_processor]` function cannot be `unsafe`",
                "a `#[batch_processor]` function cannot be generic: a processor has one input type, one output type and fixed stores; write the concrete types",
                "the first parameter of a `#[batch_processor]` function is its records, `&[Record<K, V>]`: take them by slice, not `Vec`",
                "unsupported parameter `n: usize`; supported: the records `&[Record<K, V>]` first, then zero or more stores (types declared with `#[kstreams::store]`), `&mut S` to read and write or `&S` to read only, then optionally the output `&mut Emit<K, V>`",
                "a store parameter is taken by reference: `&mut S` to read and write, `&S` to read only",
                "the output parameter names the output key and value types: `&mut Emit<K, V>`",
            ]
        );
    }

    #[test]
    fn a_store_by_shared_reference_is_read_only() {
        let (parsed, errors) = check(
            Kind::Batch,
            quote!(
                fn f(
                    r: &[Record<(), ()>],
                    prices: &Prices,
                    counts: &mut m::Counts,
                    out: &mut Emit<u8, u8>,
                ) {
                }
            ),
        );
        assert!(errors.is_empty(), "{errors:?}");
        let m = parsed.model.expect("a model");
        assert_eq!(
            m.stores
                .iter()
                .map(|s| (code(&s.ty), s.read_only))
                .collect::<Vec<_>>(),
            [("Prices".to_owned(), true), ("m::Counts".to_owned(), false)]
        );
    }

    #[test]
    fn the_output_is_taken_by_mut() {
        for output in [quote!(&Emit<u8, u8>), quote!(Emit<u8, u8>)] {
            let (_, errors) = check(
                Kind::Batch,
                quote!(
                    fn f(r: &[Record<(), ()>], out: #output) {}
                ),
            );
            assert_eq!(
                errors,
                ["the output parameter is taken by `&mut`: write `&mut Emit<u8, u8>`"]
            );
        }
    }

    #[test]
    fn the_output_comes_last() {
        let (_, errors) = check(
            Kind::Batch,
            quote!(
                fn f(r: &[Record<(), ()>], out: &mut Emit<u8, u8>, s: &mut S) {}
            ),
        );
        assert_eq!(
            errors,
            ["the output parameter `&mut Emit<K, V>` comes last, after the store parameters"]
        );
    }

    #[test]
    fn a_punctuator_takes_the_punctuation_first() {
        let (parsed, errors) = check(
            Kind::Punctuator,
            quote!(
                fn report(p: &kstreams::Punctuation, s: &mut S, out: &mut Emit<String, u64>) {}
            ),
        );
        assert!(errors.is_empty(), "{errors:?}");
        let m = parsed.model.expect("a model");
        assert_eq!(m.stores.len(), 1);
        assert!(m.emit.is_some());

        let (_, errors) = check(
            Kind::Punctuator,
            quote!(
                fn report(p: Punctuation) {}
            ),
        );
        assert_eq!(
            errors,
            [
                "the first parameter of a `#[punctuator]` function is its punctuation, `&Punctuation`: take it by reference"
            ]
        );
        let (_, errors) = check(
            Kind::Punctuator,
            quote!(
                fn report() {}
            ),
        );
        assert_eq!(
            errors,
            [
                "`report` has no punctuation parameter: the first parameter of a `#[punctuator]` function is `punctuation: &Punctuation`"
            ]
        );
    }

    #[test]
    fn not_a_function() {
        let (parsed, errors) = check(
            Kind::Batch,
            quote!(
                struct S;
            ),
        );
        assert!(parsed.model.is_none() && parsed.item.is_some());
        assert_eq!(
            errors,
            [
                "`#[batch_processor]` applies to a function: `fn name(records: &[Record<K, V>], ...)`"
            ]
        );
    }

    #[test]
    fn store_aliases() {
        let mut errors = Errors::new();
        let parsed = store_alias(
            quote!(
                pub type Counts = kstreams::KeyValue<String, u64>;
            ),
            &mut errors,
        );
        assert!(errors.is_empty());
        let m = parsed.model.expect("a model");
        assert_eq!(
            (code(&m.key), code(&m.value)),
            ("String".into(), "u64".into())
        );

        let mut errors = Errors::new();
        let parsed = store_alias(
            quote!(
                type Counts<T> = HashMap<String, T>;
            ),
            &mut errors,
        );
        assert!(parsed.model.is_none());
        assert_eq!(errors.finish().map_err(|e| e.into_iter().count()), Err(2));
    }

    #[test]
    fn code_reads_like_code() {
        assert_eq!(code(quote!(&mut a::Foo<'_, A, B>)), "&mut a::Foo<'_, A, B>");
        assert_eq!(code(quote!(n: usize)), "n: usize");
        assert_eq!(code(quote!(&[Record<(), String>])), "&[Record<(), String>]");
    }
}
