//! Checks the function that `#[cached]` is applied to, and the options that
//! name its arguments (`skip`, `key`, `tags`, `cache_none`).

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::visit::Visit;
use syn::{
    FnArg, GenericArgument, Ident, Item, ItemFn, Pat, PathArguments, ReturnType, TraitItemFn, Type,
    TypeImplTrait,
};

use crate::args::Args;
use crate::ctxt::Ctxt;
use crate::suggest;
use crate::template::{Template, name_of};

/// A function that passed the checks (when the `Ctxt` has no errors).
pub(crate) struct Func {
    pub(crate) item: ItemFn,
    /// The function takes `self` in some form.
    pub(crate) receiver: bool,
    /// The typed arguments, in order.
    pub(crate) args: Vec<Arg>,
    pub(crate) ret: Ret,
    /// A refresh runs in a task of its own: the function refreshes
    /// (`grace`, `refresh_ahead`) and its arguments can move.
    pub(crate) detached: bool,
}

pub(crate) struct Arg {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
    /// Hashed into the key (when there is no `key` template): not skipped.
    pub(crate) hashed: bool,
    /// Part of the key: hashed, or named in the `key` template.
    pub(crate) in_key: bool,
}

pub(crate) struct Ret {
    pub(crate) ty: Type,
    pub(crate) kind: RetKind,
    /// The cached value type: `T` in `Result<T, E>` and `Option<T>`, else the
    /// whole type. `None` for `Result`/`Option` written without arguments
    /// (an alias such as `fmt::Result`), which cannot be seen through.
    pub(crate) value: Option<Type>,
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum RetKind {
    Result,
    /// `Result<Option<T>, E>`: `Ok(None)` is cached only with `cache_none`.
    ResultOption,
    Option,
    Plain,
}

impl RetKind {
    /// Whether the function can return `None` (directly or in `Ok`).
    pub(crate) fn has_none(self) -> bool {
        matches!(self, RetKind::Option | RetKind::ResultOption)
    }
}

/// Parses the item, or reports what it is instead of an `async fn`.
pub(crate) fn parse(cx: &Ctxt, tokens: TokenStream) -> Option<ItemFn> {
    if let Ok(item) = syn::parse2::<ItemFn>(tokens.clone()) {
        return Some(item);
    }
    if let Ok(method) = syn::parse2::<TraitItemFn>(tokens.clone()) {
        cx.error_spanned_by(
            &method.sig,
            "`#[cached]` needs the function's body; put it on the method in the `impl` block, with `companions = false` in a trait impl",
        );
        return None;
    }
    let (what, tokens) = match syn::parse2::<Item>(tokens.clone()) {
        Ok(item) => describe(&item),
        Err(_) => ("this item", tokens.into_iter().next().into_token_stream()),
    };
    cx.error_spanned_by(
        tokens,
        format!("`#[cached]` can only be applied to an `async fn`, not to {what}"),
    );
    None
}

/// What the item is, and the tokens that say so (`struct Name`).
fn describe(item: &Item) -> (&'static str, TokenStream) {
    fn head(keyword: impl ToTokens, name: impl ToTokens) -> TokenStream {
        quote::quote!(#keyword #name)
    }
    match item {
        Item::Struct(item) => ("a struct", head(item.struct_token, &item.ident)),
        Item::Enum(item) => ("an enum", head(item.enum_token, &item.ident)),
        Item::Union(item) => ("a union", head(item.union_token, &item.ident)),
        Item::Trait(item) => ("a trait", head(item.trait_token, &item.ident)),
        Item::Impl(item) => (
            "an `impl` block; put it on a method inside",
            item.impl_token.into_token_stream(),
        ),
        Item::Mod(item) => ("a module", head(item.mod_token, &item.ident)),
        Item::Const(item) => ("a constant", head(item.const_token, &item.ident)),
        Item::Static(item) => ("a static", head(item.static_token, &item.ident)),
        Item::Type(item) => ("a type alias", head(item.type_token, &item.ident)),
        Item::Use(item) => ("a `use` declaration", item.use_token.into_token_stream()),
        Item::ExternCrate(item) => (
            "an `extern crate` declaration",
            head(item.extern_token, &item.ident),
        ),
        Item::ForeignMod(item) => ("an `extern` block", item.abi.to_token_stream()),
        Item::Macro(item) => ("a macro invocation", item.mac.path.to_token_stream()),
        _ => (
            "this item",
            item.to_token_stream()
                .into_iter()
                .next()
                .into_token_stream(),
        ),
    }
}

pub(crate) fn check(cx: &Ctxt, args: &Args, item: ItemFn) -> Func {
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        cx.error_spanned_by(
            sig.fn_token,
            "`#[cached]` can only be applied to an `async fn`; add `async` before `fn`",
        );
    }

    let mut receiver = false;
    let mut typed = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(_) => receiver = true,
            FnArg::Typed(arg) => match &*arg.pat {
                Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                    typed.push((pat.ident.clone(), (*arg.ty).clone()));
                }
                Pat::Wild(_) => cx.error_spanned_by(
                    &arg.pat,
                    "`#[cached]` needs a name for every argument; name it (`_name` if unused)",
                ),
                _ => cx.error_spanned_by(
                    &arg.pat,
                    "`#[cached]` needs a plain name for every argument, not a pattern; bind the argument to a name and destructure it in the body",
                ),
            },
        }
    }
    let names: Vec<String> = typed.iter().map(|(ident, _)| name_of(ident)).collect();

    // `skip(...)`: each name an argument, once.
    let mut skipped: Vec<String> = Vec::new();
    for ident in &args.skip {
        let name = name_of(ident);
        if name == "self" {
            cx.error_spanned_by(
                ident,
                "`self` is never part of the cache key; remove it from `skip`",
            );
        } else if skipped.contains(&name) {
            cx.error_spanned_by(ident, format!("argument `{name}` is skipped twice"));
        } else if !names.contains(&name) {
            cx.error_spanned_by(ident, unknown_arg(&name, "in `skip`", &names));
        } else {
            skipped.push(name);
        }
    }

    // Templates: each `{name}` an argument, placeholders apart.
    let check_template = |template: &Template, option: &str| {
        if let Some((a, b)) = template.ambiguous_pair() {
            cx.error_at(
                template.span(),
                format!(
                    "`{{{a}}}` and `{{{b}}}` in `{option}` template must be separated by a character other than a letter, digit, `-`, `_` or `.` (such as `:` or `/`), so that different arguments never render the same {}",
                    if option == "key" { "key" } else { "tag" }
                ),
            );
        }
        for name in template.args() {
            if name == "self" {
                cx.error_at(
                    template.span(),
                    format!(
                        "`{{self}}` cannot be interpolated in `{option}`; interpolate an argument"
                    ),
                );
            } else if name == "Self" && option == "key" {
                // The `impl` type's name, for a key in a generic `impl`.
            } else if !names.iter().any(|arg| arg == name) {
                cx.error_at(
                    template.span(),
                    unknown_arg(name, &format!("in `{option}` template"), &names),
                );
            }
        }
    };
    if let Some(key) = &args.key {
        check_template(key, "key");
        let generic = sig
            .generics
            .params
            .iter()
            .any(|p| !matches!(p, syn::GenericParam::Lifetime(_)));
        if generic {
            cx.error_spanned_by(
                &sig.generics,
                "`key` cannot be used on a generic function: one key would serve every type; remove `key` (the default key includes the type parameters)",
            );
        }
    }
    for tag in args.tags.iter().flatten() {
        check_template(tag, "tags");
    }

    let args_checked: Vec<Arg> = typed
        .into_iter()
        .zip(&names)
        .map(|((ident, ty), name)| {
            let hashed = args.key.is_none() && !skipped.contains(name);
            let in_key = match &args.key {
                Some(key) => key.args().any(|arg| arg == name),
                None => hashed,
            };
            if hashed {
                if matches!(&ty, Type::Reference(reference) if reference.mutability.is_some()) {
                    cx.error_spanned_by(
                        &ty,
                        format!("a `&mut` argument cannot be part of the cache key; leave it out with `skip({name})`"),
                    );
                }
                // A `batch` argument is not hashed whole: its items are.
                let batch = args.batch.as_ref().is_some_and(|b| name_of(b) == *name);
                if let Some(set) = hash_set(&ty).filter(|_| !batch) {
                    cx.error_spanned_by(
                        set,
                        format!("a `HashSet` argument has no stable order, so its key would differ from process to process; use a `BTreeSet` (or a sorted `Vec`), or leave it out with `skip({name})`"),
                    );
                }
                for impl_trait in impl_traits(&ty) {
                    cx.error_spanned_by(
                        impl_trait,
                        format!("an `impl Trait` argument cannot be part of the cache key; use a generic type parameter, or leave it out with `skip({name})`"),
                    );
                }
            }
            Arg { ident, ty, hashed, in_key }
        })
        .collect();

    let ret = check_return(cx, &item);
    // With `batch`, `cache_none` stores the items the body leaves out.
    if let Some(cache_none) = &args.cache_none
        && !ret.kind.has_none()
        && args.batch.is_none()
    {
        cx.error_at(
            cache_none.name,
            "`cache_none` applies only to a function returning `Option<T>` or `Result<Option<T>, E>`",
        );
    }

    for (option, setting) in [
        ("ttl_from", &args.ttl_from),
        ("unless", &args.unless),
        ("tags_from", &args.tags_from),
    ] {
        if let Some(setting) = setting
            && ret.value.is_none()
        {
            cx.error_at(
                setting.name,
                format!("`{option}` needs to see the cached value type: write the return type with its arguments (`Result<T, E>`, `Option<T>`), not an alias without them"),
            );
        }
    }

    let detached = !receiver && movable(&item);
    let needs_task = [
        args.timeout_ms.as_ref().map(|t| ("timeout", t.name)),
        args.refresh_ahead
            .as_ref()
            .filter(|r| r.value)
            .map(|r| ("refresh_ahead", r.name)),
    ];
    if !detached {
        for (option, span) in needs_task.into_iter().flatten() {
            cx.error_at(
                span,
                format!(
                    "`{option}` runs the function's body in a background task, which its arguments must move into; this function borrows (`self`, a reference or a lifetime in an argument, `impl Trait`, or generics): take owned arguments (`String` for `&str`, an `Arc` or a clone of the state), or use `grace` alone, whose refresh runs in the calling task"
                ),
            );
        }
    }

    Func {
        item,
        receiver,
        args: args_checked,
        ret,
        detached,
    }
}

/// Whether the function's arguments can move into a task: no generics, and
/// no argument type with a reference, a lifetime or `impl Trait`.
fn movable(item: &ItemFn) -> bool {
    fn owned(tokens: TokenStream) -> bool {
        tokens.into_iter().all(|tree| match tree {
            proc_macro2::TokenTree::Punct(p) => p.as_char() != '&' && p.as_char() != '\'',
            proc_macro2::TokenTree::Ident(i) => i != "impl" && i != "dyn",
            proc_macro2::TokenTree::Group(g) => owned(g.stream()),
            proc_macro2::TokenTree::Literal(_) => true,
        })
    }
    item.sig.generics.params.is_empty()
        && item.sig.inputs.iter().all(|input| match input {
            FnArg::Receiver(_) => false,
            FnArg::Typed(arg) => owned(arg.ty.to_token_stream()),
        })
}

/// The `HashSet` path of an argument type (`HashSet<T>`, `&HashSet<T>`,
/// `std::collections::HashSet<T, S>`). `HashMap`s are fine: the key encoding
/// sorts map entries, but a set serializes as a sequence, in iteration order.
fn hash_set(ty: &Type) -> Option<&syn::Path> {
    match ty {
        Type::Reference(r) => hash_set(&r.elem),
        Type::Paren(p) => hash_set(&p.elem),
        Type::Group(g) => hash_set(&g.elem),
        Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "HashSet")
            .then_some(&p.path),
        _ => None,
    }
}

fn unknown_arg(name: &str, place: &str, names: &[String]) -> String {
    let mut msg = format!("unknown argument `{name}` {place}");
    if let Some(close) = suggest::closest(name, names.iter().map(String::as_str)) {
        msg += &format!("; did you mean `{close}`?");
    } else if names.is_empty() {
        msg += "; the function has no arguments";
    } else {
        msg += &format!(
            "; the arguments are {}",
            suggest::list(names.iter().map(String::as_str))
        );
    }
    msg
}

fn check_return(cx: &Ctxt, item: &ItemFn) -> Ret {
    let ty = match &item.sig.output {
        ReturnType::Type(_, ty) => (**ty).clone(),
        ReturnType::Default => {
            cx.error_spanned_by(
                &item.sig.ident,
                format!(
                    "`#[cached]` function `{}` has no return type; there is nothing to cache",
                    item.sig.ident
                ),
            );
            return Ret {
                ty: syn::parse_quote!(()),
                kind: RetKind::Plain,
                value: None,
            };
        }
    };
    match ungroup(&ty) {
        Type::Tuple(tuple) if tuple.elems.is_empty() => {
            cx.error_spanned_by(
                &ty,
                "`#[cached]` function returns `()`; there is nothing to cache",
            );
        }
        Type::Never(_) => {
            cx.error_spanned_by(
                &ty,
                "`#[cached]` function never returns; there is nothing to cache",
            );
        }
        _ => {}
    }
    for impl_trait in impl_traits(&ty) {
        cx.error_spanned_by(
            impl_trait,
            "`#[cached]` cannot return `impl Trait`: the cached value is read back as a concrete type; name the type",
        );
    }
    let (kind, value) = value_type(&ty);
    if let Some(value) = &value {
        for reference in references(value) {
            cx.error_spanned_by(
                reference,
                "`#[cached]` cannot return borrowed data: a cached value is read back from JSON and must own its data; return an owned type such as `String` or `Vec<T>`",
            );
        }
    }
    Ret { ty, kind, value }
}

/// The kind of return type and the cached value type, from the last path
/// segment: `Result<T, ..>` (or any generic `..Result<T>`, taken for an
/// alias of `Result`), `Option<T>` and `Result<Option<T>, ..>` cache `T`.
fn value_type(ty: &Type) -> (RetKind, Option<Type>) {
    match ungroup(ty) {
        Type::Path(path) if path.qself.is_none() => {
            let last = path.path.segments.last().expect("a path has a segment");
            let name = last.ident.to_string();
            let generic = matches!(last.arguments, PathArguments::AngleBracketed(_));
            let kind = match name.as_str() {
                "Result" => RetKind::Result,
                "Option" => RetKind::Option,
                // `AppResult<T>`, `ApiResult<T>`, diesel's `QueryResult<T>`:
                // aliases of `Result`, whose `Err` must not be cached.
                _ if generic && name.ends_with("Result") => RetKind::Result,
                _ => RetKind::Plain,
            };
            let first_type = match &last.arguments {
                PathArguments::AngleBracketed(generics) => {
                    generics.args.iter().find_map(|arg| match arg {
                        GenericArgument::Type(ty) => Some(ty.clone()),
                        _ => None,
                    })
                }
                _ => None,
            };
            match (kind, first_type) {
                (RetKind::Plain, _) => (kind, Some(ty.clone())),
                (RetKind::Result, Some(ok)) => match value_type(&ok) {
                    (RetKind::Option, inner) => (RetKind::ResultOption, inner),
                    _ => (kind, Some(ok)),
                },
                (kind, first_type) => (kind, first_type),
            }
        }
        _ => (RetKind::Plain, Some(ty.clone())),
    }
}

/// Every reference type in `ty`, but in `PhantomData<..>` (which
/// deserializes whatever it holds).
fn references(ty: &Type) -> Vec<&syn::TypeReference> {
    struct Finder<'a>(Vec<&'a syn::TypeReference>);
    impl<'a> Visit<'a> for Finder<'a> {
        fn visit_type_reference(&mut self, node: &'a syn::TypeReference) {
            self.0.push(node);
        }
        fn visit_path_segment(&mut self, node: &'a syn::PathSegment) {
            if node.ident != "PhantomData" {
                syn::visit::visit_path_segment(self, node);
            }
        }
    }
    let mut finder = Finder(Vec::new());
    finder.visit_type(ty);
    finder.0
}

pub(crate) fn ungroup(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(group) => ty = &group.elem,
            Type::Paren(paren) => ty = &paren.elem,
            _ => return ty,
        }
    }
}

/// Every `impl Trait` in `ty`.
fn impl_traits(ty: &Type) -> Vec<&TypeImplTrait> {
    struct Finder<'a>(Vec<&'a TypeImplTrait>);
    impl<'a> Visit<'a> for Finder<'a> {
        fn visit_type_impl_trait(&mut self, node: &'a TypeImplTrait) {
            self.0.push(node);
        }
    }
    let mut finder = Finder(Vec::new());
    finder.visit_type(ty);
    finder.0
}

/// Whether `tokens` mention the identifier `name` anywhere.
pub(crate) fn mentions(tokens: impl ToTokens, name: &str) -> bool {
    fn walk(tokens: TokenStream, name: &str) -> bool {
        tokens.into_iter().any(|tree| match tree {
            proc_macro2::TokenTree::Ident(ident) => name_of(&ident) == name,
            proc_macro2::TokenTree::Group(group) => walk(group.stream(), name),
            _ => false,
        })
    }
    walk(tokens.into_token_stream(), name)
}
