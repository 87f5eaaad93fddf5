//! Generates the cached function and its companions.

use proc_macro2::{Delimiter, Group, Ident, Literal, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{GenericParam, ItemFn, Type, parse_quote};

use crate::args::{self, Args};
use crate::ctxt::Ctxt;
use crate::item::{self, Func, RetKind};
use crate::template::{Template, name_of};

/// The whole macro: parse, check, then expand; on any error, the errors and
/// the function as written.
pub(crate) fn cached(args: TokenStream, input: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let args = args::parse(&cx, args);
    let func = item::parse(&cx, input.clone()).map(|item| item::check(&cx, &args, item));
    if let Some(func) = &func {
        crate::batch::check(&cx, &args, func);
    }
    match (cx.check(), func) {
        (Ok(()), Some(func)) if args.batch.is_some() => Expand::new(&args, &func).batch(),
        (Ok(()), Some(func)) => Expand::new(&args, &func).all(),
        (Err(errors), _) => {
            let mut tokens = errors.into_compile_error();
            tokens.extend(input);
            tokens
        }
        (Ok(()), None) => unreachable!("`item::parse` failed without an error"),
    }
}

#[path = "expand_batch.rs"]
mod batch;

struct Expand<'a> {
    args: &'a Args,
    func: &'a Func,
    /// `<krate>::__private`
    private: TokenStream,
}

/// The spans of the first and last tokens of `tokens`: an expression made of
/// tokens at the first, then at the last, is reported across all of them.
fn span_range(tokens: impl ToTokens) -> (Span, Span) {
    let mut trees = tokens.into_token_stream().into_iter();
    let first = trees
        .next()
        .map_or_else(Span::call_site, |tree| tree.span());
    let last = trees.last().map_or(first, |tree| tree.span());
    (first, last)
}

/// `tokens`, all at `first` but the last token tree, at `last`; nested
/// groups take the span of their tree.
fn respan(tokens: TokenStream, (first, last): (Span, Span)) -> TokenStream {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let count = trees.len();
    trees
        .into_iter()
        .enumerate()
        .map(|(index, mut tree)| {
            let span = if index + 1 == count { last } else { first };
            if let TokenTree::Group(group) = &tree {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), (span, span)));
                inner.set_span(span);
                tree = TokenTree::Group(inner);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

/// A local of the generated code, invisible to the function's body.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

impl<'a> Expand<'a> {
    fn new(args: &'a Args, func: &'a Func) -> Self {
        let krate = args
            .krate
            .clone()
            .unwrap_or_else(|| parse_quote!(::cache_runtime));
        let private = quote!(#krate::__private);
        Expand {
            args,
            func,
            private,
        }
    }

    fn all(&self) -> TokenStream {
        let p = &self.private;
        let ItemFn {
            attrs,
            vis,
            sig,
            block,
        } = &self.func.item;
        let spec = self.spec();
        let checks = self.checks();
        let handle = self.handle();
        let key = self.key(false);
        let tags = self.tags();
        let (strategy, strategy_type) = (self.strategy(), self.strategy_type());
        // `strategy_type` is respanned with the rest of the turbofish below.
        let ret = &self.func.ret.ty;
        let (handle_var, key_var, tags_var) = (
            local("__cache_handle"),
            local("__cache_key"),
            local("__cache_tags"),
        );
        // At the cached value type, like the checks: an unmet bound of the
        // strategy, or a borrowed value type, is reported there.
        let (first, last) = self.value_span();
        let execute = if self.func.detached && self.args.refreshes() {
            respan(quote!(#p::execute_detached::<), (first, first))
        } else {
            respan(quote!(#p::execute::<), (first, first))
        };
        let turbofish_rest = respan(quote!(, #strategy_type, _>), (last, last));
        let await_ = respan(quote!(.await), (last, last));
        // How values are kept in process: decoded if their type is
        // `Clone`, and a result that is not stored shared with waiting
        // callers if it is `Clone`; chosen by autoref specialization at
        // this concrete type.
        let form = quote! {
            {
                use #p::{ViaBytes as _, ViaClone as _, ViaCloneResult as _};
                (&&&#p::LocalProbe::<#ret, #strategy_type>::NEW).local_form()
            }
        };
        let mut call = Group::new(
            Delimiter::Parenthesis,
            quote! {
                #handle_var,
                &__CACHE_SPEC,
                #key_var,
                &#tags_var,
                #strategy,
                #form,
                async move #block,
            },
        );
        call.set_span(last);
        let companions = self.companions();
        // `<name>_prime`: the same code, token for token (and span for
        // span), with the value as the body; rustc reports an error in it
        // once, at the function's tokens.
        let value_var = Ident::new("value", Span::mixed_site());
        let mut primed = Group::new(
            Delimiter::Parenthesis,
            quote! {
                #handle_var,
                &__CACHE_SPEC,
                #key_var,
                &#tags_var,
                #strategy,
                #form,
                async move { #value_var },
            },
        );
        primed.set_span(last);
        let prime = self.prime(quote! {
            #spec
            #checks
            let #handle_var = #handle;
            #key
            #tags
            #p::prime(async move { #execute #ret #turbofish_rest #primed #await_ }).await
        });
        quote! {
            #(#attrs)*
            #vis #sig {
                #spec
                #checks
                let #handle_var = #handle;
                #key
                #tags
                #execute #ret #turbofish_rest #call #await_
            }
            #companions
            #prime
        }
    }

    /// `<name>_prime(args, value)`, whose body is `body`: the function's
    /// receiver, the arguments its key, tags and cache use (as the
    /// function takes them), then the value it would return.
    fn prime(&self, body: TokenStream) -> TokenStream {
        if self.args.companions == Some(false) {
            return TokenStream::new();
        }
        let p = &self.private;
        let ItemFn {
            attrs, vis, sig, ..
        } = &self.func.item;
        let name = name_of(&sig.ident);
        let prime = format_ident!("{}_prime", sig.ident);
        let cfgs: Vec<_> = attrs
            .iter()
            .filter(|attr| attr.path().is_ident("cfg"))
            .collect();
        let receiver = sig.inputs.iter().find_map(|input| match input {
            syn::FnArg::Receiver(receiver) => Some(quote!(#receiver,)),
            syn::FnArg::Typed(_) => None,
        });
        let used = |ident: &Ident| {
            let name = name_of(ident);
            self.args
                .cache
                .as_ref()
                .is_some_and(|cache| item::mentions(cache, &name))
                || self
                    .args
                    .tags
                    .iter()
                    .flatten()
                    .any(|tag| tag.args().any(|arg| arg == name))
        };
        let params = self
            .func
            .args
            .iter()
            .filter(|arg| arg.in_key || used(&arg.ident))
            .map(|arg| {
                let (ident, ty) = (&arg.ident, &arg.ty);
                quote!(#ident: #ty)
            });
        let ret = &self.func.ret.ty;
        let generics = &sig.generics;
        let where_clause = &generics.where_clause;
        let value_var = Ident::new("value", Span::mixed_site());
        let doc = format!(
            " Stores `value` as what `{name}` returns for these arguments, without running `{name}`: under the same key and tags, with the same rules (TTL, `ttl_from`, `unless`; an `Err` or a `None` is not stored), and under the versions of the tags read before it is stored, as a computed value. Whether it was stored (not when Redis failed: fail-open)."
        );
        quote! {
            #(#cfgs)*
            #[doc = #doc]
            #[doc = ""]
            #[doc = " Generated by `#[cached]`."]
            #vis async fn #prime #generics (#receiver #(#params,)* #value_var: #ret) -> #p::bool #where_clause {
                #body
            }
        }
    }

    /// `static __CACHE_SPEC`, what the runtime knows of the function: its
    /// name, path and options, with the tags that interpolate nothing.
    fn spec(&self) -> TokenStream {
        let p = &self.private;
        let ident = &self.func.item.sig.ident;
        let name = Literal::string(&name_of(ident));
        let mut options = Vec::new();
        if let Some(secs) = self.args.ttl_secs {
            let secs = Literal::u64_unsuffixed(secs);
            options.push(quote!(ttl_secs: #p::Some(#secs)));
        }
        if let Some(lock) = &self.args.lock {
            let lock = lock.value;
            options.push(quote!(lock: #lock));
        }
        if let Some(ms) = &self.args.lock_ttl_ms {
            let ms = Literal::u64_unsuffixed(ms.value);
            options.push(quote!(lock_ttl_ms: #p::Some(#ms)));
        }
        if let Some(grace) = &self.args.grace_secs {
            let secs = Literal::u64_unsuffixed(grace.value);
            options.push(quote!(grace_secs: #p::Some(#secs)));
        }
        if let Some(timeout) = &self.args.timeout_ms {
            let ms = Literal::u64_unsuffixed(timeout.value);
            options.push(quote!(timeout_ms: #p::Some(#ms)));
        }
        if let Some(refresh_ahead) = &self.args.refresh_ahead {
            let on = refresh_ahead.value;
            options.push(quote!(refresh_ahead: #on));
        }
        if let Some(local) = self.args.local {
            options.push(quote!(local: #local));
        }
        if self.args.tags_from.is_some() {
            options.push(quote!(tags_from: true));
        }
        if let Some(codec) = self.args.codec {
            let codec = Ident::new(codec, Span::call_site());
            options.push(quote!(codec: #p::Codec::#codec));
        }
        let constant_tags: Vec<String> = self
            .args
            .tags
            .iter()
            .flatten()
            .filter_map(Template::constant)
            .collect();
        if !constant_tags.is_empty() {
            options.push(quote!(tags: &[#(#constant_tags),*]));
        }
        // A runtime of another version has no item of this name: the pair
        // fails to compile instead of misreading each other.
        let version = format_ident!(
            "VERSION_{}",
            env!("CARGO_PKG_VERSION").replace(['.', '-', '+'], "_")
        );
        // The marker's type name gives the function's full path, impl type
        // included (`app::User::get`), which `module_path!()` cannot.
        quote! {
            const _: () = #p::#version;
            fn __cache_marker() -> &'static str {
                #p::type_name_of_val(&__cache_marker)
            }
            static __CACHE_SPEC: #p::Spec = #p::Spec::new(#name, __cache_marker, #p::Options {
                #(#options,)*
                ..#p::Options::DEFAULT
            });
        }
    }

    /// Trait checks spanned at the user's tokens, so that a type error points
    /// at the argument or the return type at fault. (An argument of a
    /// template that is not `Display` fails in `format!`, at the template.)
    ///
    /// The calls that need the same traits later name the same types, with
    /// the same spans, so that rustc reports each unmet bound once.
    fn checks(&self) -> TokenStream {
        let p = &self.private;
        let mut checks = TokenStream::new();
        if let Some(value) = &self.func.ret.value {
            let (first, last) = span_range(value);
            let assert = respan(quote!(#p::assert_cacheable), (first, first));
            checks.extend(quote_spanned!(last=> #assert::<#value>();));
        }
        checks
    }

    /// The argument `name` of a template, spanned at the template.
    fn interpolated(&self, template: &Template, name: &str) -> Ident {
        let arg = self
            .func
            .args
            .iter()
            .find(|arg| name_of(&arg.ident) == name)
            .expect("template arguments are checked");
        let mut ident = arg.ident.clone();
        ident.set_span(template.span());
        ident
    }

    /// `format!("product:{}", TemplateValue::new(&id))` for the template
    /// `"product:{id}"`: each argument escaped and bounded (see the
    /// runtime's `template` module), at the template's span.
    fn format(&self, template: &Template) -> TokenStream {
        let p = &self.private;
        let format = template.format_string();
        let args = template.args().map(|name| {
            if name == "Self" {
                // The `impl` type, which a key in a generic `impl` names.
                let ty = Ident::new("Self", template.span());
                return quote_spanned!(template.span()=> #p::TemplateValue::new(&#p::type_name::<#ty>()));
            }
            let ident = self.interpolated(template, name);
            quote_spanned!(template.span()=> #p::TemplateValue::new(&#ident))
        });
        quote!(#p::format!(#format #(, #args)*))
    }

    /// The `Option<Cache>` to use.
    fn handle(&self) -> TokenStream {
        let p = &self.private;
        match &self.args.cache {
            Some(cache) => {
                let as_cache = quote_spanned!(cache.span()=> #p::AsCache::as_cache(&(#cache)));
                quote!(#p::Some(#p::Cache::clone(#as_cache)))
            }
            None => quote!(#p::default_cache()),
        }
    }

    /// `let __cache_key = ...;`: from the `key` template, or a digest of the
    /// type parameters, const parameters and key arguments. In a companion
    /// the arguments are references already.
    fn key(&self, companion: bool) -> TokenStream {
        let p = &self.private;
        let key = local("__cache_key");
        if let Some(template) = &self.args.key {
            let format = self.format(template);
            let scope = (!companion).then(|| self.key_scope_check(template));
            return quote! {
                #scope
                let #key: #p::KeyPart = #p::KeyPart::template(#format);
            };
        }
        let digest = local("__cache_digest");
        // The types of a generic `impl` (`Repo<User>`, `Repo<Admin>`), from
        // a closure's type name, which spells them: nothing elsewhere.
        let mut calls =
            vec![quote!(#digest.impl_scope(&__CACHE_SPEC, #p::type_name_of_val(&|| ()));)];
        if self.func.receiver {
            // Methods of different types in one module share a name.
            calls.push(quote!(#digest.type_param::<Self>();));
        }
        for param in &self.func.item.sig.generics.params {
            match param {
                GenericParam::Type(param) => {
                    let ident = &param.ident;
                    calls.push(quote!(#digest.type_param::<#ident>();));
                }
                GenericParam::Const(param) => {
                    let ident = &param.ident;
                    calls.push(quote!(#digest.arg(&#ident);));
                }
                GenericParam::Lifetime(_) => {}
            }
        }
        for arg in self.func.args.iter().filter(|arg| arg.hashed) {
            let (ident, ty) = (&arg.ident, &arg.ty);
            // A companion takes the argument by reference (see
            // `companion_param`): pass it on as it is.
            let value = if companion && !matches!(item::ungroup(ty), Type::Reference(_)) {
                quote!(#ident)
            } else {
                quote!(&#ident)
            };
            // Spanned at the argument's type, so that rustc reports a missing
            // `Serialize` there, once, with `KeyArg`'s note suggesting `skip`.
            let (first, last) = span_range(ty);
            let path = respan(quote!(#p::ArgsDigest::arg::<), (first, first));
            let close = respan(quote!(>), (last, last));
            let mut call = Group::new(Delimiter::Parenthesis, quote!(&mut #digest, #value));
            call.set_span(last);
            calls.push(quote!(#path #ty #close #call;));
        }
        quote! {
            let mut #digest = #p::ArgsDigest::new();
            #(#calls)*
            let #key: #p::KeyPart = #digest.finish();
        }
    }

    /// For a `key` template that does not name `{Self}`: a nested function
    /// with the signature's types, which fails to compile (E0401, at the
    /// type parameter, with this function named at the template) when
    /// they use a type parameter of the `impl` around: one key would serve
    /// every type. Lifetimes become `'static`, and types naming `Self` or
    /// `impl Trait` are left out, so that nothing else can fail here.
    fn key_scope_check(&self, template: &Template) -> Option<TokenStream> {
        if template.args().any(|name| name == "Self") {
            return None;
        }
        let usable = |ty: &Type| -> Option<TokenStream> {
            let tokens = ty.to_token_stream();
            (!mentions_any(&tokens, &["Self", "impl"])).then(|| static_lifetimes(tokens))
        };
        let args: Vec<TokenStream> = self
            .func
            .args
            .iter()
            .filter_map(|arg| usable(&arg.ty))
            .collect();
        let ret = usable(&self.func.ret.ty);
        if args.is_empty() && ret.is_none() {
            return None;
        }
        let ret = ret.map(|ty| quote!(-> #ty));
        let name = Ident::new(
            "__cached_key_in_a_generic_impl_must_name_Self",
            template.span(),
        );
        Some(quote! {
            #[allow(dead_code, non_snake_case, unused_variables, clippy::all)]
            fn #name(#(_: #args),*) #ret {
                loop {}
            }
        })
    }

    /// `let __cache_tags = [...];`: the tags that interpolate arguments,
    /// rendered (the others are in the spec).
    fn tags(&self) -> TokenStream {
        let p = &self.private;
        let tags_var = local("__cache_tags");
        let tags: Vec<_> = self
            .args
            .tags
            .iter()
            .flatten()
            .filter(|tag| tag.constant().is_none())
            .map(|tag| self.format(tag))
            .collect();
        let count = Literal::usize_unsuffixed(tags.len());
        quote!(let #tags_var: [#p::String; #count] = [#(#tags),*];)
    }

    /// The first and last spans of the cached value type.
    fn value_span(&self) -> (Span, Span) {
        match &self.func.ret.value {
            Some(value) => span_range(value),
            None => (Span::call_site(), Span::call_site()),
        }
    }

    /// The strategy value, at the cached value type: rustc reports its
    /// unmet `Strategy` bound at this argument.
    fn strategy(&self) -> TokenStream {
        let p = &self.private;
        let strategy = match self.func.ret.kind {
            RetKind::Result => quote!(#p::OkOnly),
            RetKind::ResultOption | RetKind::Option => {
                let cache_none = self
                    .args
                    .cache_none
                    .as_ref()
                    .is_some_and(|setting| setting.value);
                let ty = self.inner_strategy_type();
                quote!(#ty { cache_none: #cache_none })
            }
            RetKind::Plain => quote!(#p::Plain),
        };
        self.decide(respan(strategy, self.value_span()))
    }

    /// `strategy` with the decisions taken from the value (`ttl_from`,
    /// `unless`), if any: each path passed as the function pointer it must
    /// be, so that a wrong signature is a type error at the path.
    fn decide(&self, strategy: TokenStream) -> TokenStream {
        let (ttl_from, unless) = (&self.args.ttl_from, &self.args.unless);
        let Some(value) = self.decided_value() else {
            return strategy;
        };
        let p = &self.private;
        let inner = self.inner_strategy_type();
        let new = respan(quote!(#p::Decide::<#inner, #value>::new), self.value_span());
        let mut tokens = quote!(#new(#strategy));
        if let Some(ttl_from) = ttl_from {
            let path = &ttl_from.value;
            tokens.extend(quote!(.ttl_from(#path)));
        }
        if let Some(unless) = unless {
            let path = &unless.value;
            tokens.extend(quote!(.unless(#path)));
        }
        if let Some(tags_from) = &self.args.tags_from {
            let path = &tags_from.value;
            tokens.extend(quote!(.tags_from(#path)));
        }
        tokens
    }

    /// The value type the decisions take, when there are any.
    fn decided_value(&self) -> Option<&Type> {
        (self.args.ttl_from.is_some()
            || self.args.unless.is_some()
            || self.args.tags_from.is_some())
        .then_some(self.func.ret.value.as_ref())
        .flatten()
    }

    /// The type of [`Self::strategy`].
    fn strategy_type(&self) -> TokenStream {
        let inner = self.inner_strategy_type();
        match self.decided_value() {
            Some(value) => {
                let p = &self.private;
                respan(quote!(#p::Decide<#inner, #value>), self.value_span())
            }
            None => inner,
        }
    }

    /// The type of the strategy chosen by the return type.
    fn inner_strategy_type(&self) -> TokenStream {
        let p = &self.private;
        let ty = match self.func.ret.kind {
            RetKind::Result => quote!(#p::OkOnly),
            RetKind::ResultOption => quote!(#p::OkSome),
            RetKind::Option => quote!(#p::SomeOnly),
            RetKind::Plain => quote!(#p::Plain),
        };
        respan(ty, self.value_span())
    }

    /// `<name>_invalidate` and `<name>_invalidate_all`.
    fn companions(&self) -> TokenStream {
        if self.args.companions == Some(false) {
            return TokenStream::new();
        }
        let p = &self.private;
        let ItemFn {
            attrs, vis, sig, ..
        } = &self.func.item;
        let name = name_of(&sig.ident);
        let invalidate = format_ident!("{}_invalidate", sig.ident);
        let invalidate_all = format_ident!("{}_invalidate_all", sig.ident);
        let cfgs: Vec<_> = attrs
            .iter()
            .filter(|attr| attr.path().is_ident("cfg"))
            .collect();
        let receiver = self.func.receiver.then(|| quote!(&self,));

        // Arguments that the `cache` expression uses are needed to find the cache.
        let for_cache = |ident: &Ident| {
            self.args
                .cache
                .as_ref()
                .is_some_and(|cache| item::mentions(cache, &name_of(ident)))
        };
        let call_params = self
            .func
            .args
            .iter()
            .filter(|arg| arg.in_key || for_cache(&arg.ident))
            .map(|arg| {
                let (ident, ty) = (&arg.ident, &arg.ty);
                companion_param(ident, ty)
            });
        let cache_params: Vec<_> = self
            .func
            .args
            .iter()
            .filter(|arg| for_cache(&arg.ident))
            .map(|arg| {
                let (ident, ty) = (&arg.ident, &arg.ty);
                companion_param(ident, ty)
            })
            .collect();
        let generics = &sig.generics;
        let where_clause = &generics.where_clause;
        // The function's generic parameters matter to `_invalidate_all` only
        // through the arguments that find the cache.
        let (all_generics, all_where) = if cache_params.is_empty() {
            (None, None)
        } else {
            (Some(generics), where_clause.as_ref())
        };

        let spec = self.spec();
        let handle = self.handle();
        let key = self.key(true);
        let (handle_var, key_var) = (local("__cache_handle"), local("__cache_key"));
        let call_doc = format!(
            " Invalidates the value that `{name}` cached for these arguments, so that the next call with them runs `{name}` again."
        );
        let all_doc =
            format!(" Invalidates every value that `{name}` cached, whatever the arguments.");
        quote! {
            #(#cfgs)*
            #[doc = #call_doc]
            #[doc = ""]
            #[doc = " Generated by `#[cached]`."]

            #vis async fn #invalidate #generics (#receiver #(#call_params),*) -> #p::Result<(), #p::Error> #where_clause {
                #spec
                let #handle_var = #handle;
                #key
                #p::invalidate_call(#handle_var, &__CACHE_SPEC, #key_var).await
            }

            #(#cfgs)*
            #[doc = #all_doc]
            #[doc = ""]
            #[doc = " Generated by `#[cached]`."]

            #vis async fn #invalidate_all #all_generics (#receiver #(#cache_params),*) -> #p::Result<(), #p::Error> #all_where {
                #spec
                #p::invalidate_function(#handle, &__CACHE_SPEC).await
            }
        }
    }
}

/// Whether `tokens` hold one of the identifiers `names`.
fn mentions_any(tokens: &TokenStream, names: &[&str]) -> bool {
    tokens.clone().into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => names.iter().any(|n| ident == n),
        TokenTree::Group(group) => mentions_any(&group.stream(), names),
        _ => false,
    })
}

/// `tokens` with every lifetime made `'static`.
fn static_lifetimes(tokens: TokenStream) -> TokenStream {
    let mut out = TokenStream::new();
    let mut after_quote = false;
    for tree in tokens {
        let tree = match tree {
            TokenTree::Ident(ident) if after_quote => {
                TokenTree::Ident(Ident::new("static", ident.span()))
            }
            TokenTree::Group(group) => {
                let mut inner = Group::new(group.delimiter(), static_lifetimes(group.stream()));
                inner.set_span(group.span());
                TokenTree::Group(inner)
            }
            other => other,
        };
        after_quote = matches!(&tree, TokenTree::Punct(p) if p.as_char() == '\'');
        out.extend([tree]);
    }
    out
}

/// A companion's parameter: the argument by reference, or as it is when it
/// already is one (`id: u64` becomes `id: &u64`, `name: &str` stays).
fn companion_param(ident: &Ident, ty: &Type) -> TokenStream {
    match item::ungroup(ty) {
        Type::Reference(_) => quote!(#ident: #ty),
        _ => quote!(#ident: &#ty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(args: TokenStream, item: TokenStream) -> String {
        let output = cached(args, item);
        syn::parse2::<syn::File>(output.clone()).expect("the expansion parses as items");
        output.to_string()
    }

    /// The expansion of the design's example, as the documentation shows it.
    #[test]
    fn expansion_of_the_design_example() {
        let actual = expand(
            quote!(ttl = 600, tags = ["products", "category:{category}"]),
            quote! {
                async fn list_products(category: String) -> Result<Vec<u32>, std::io::Error> {
                    db::query(&category).await
                }
            },
        );
        let spec = quote! {
            const _: () = ::cache_runtime::__private::VERSION_0_1_0;
            fn __cache_marker() -> &'static str {
                ::cache_runtime::__private::type_name_of_val(&__cache_marker)
            }
            static __CACHE_SPEC: ::cache_runtime::__private::Spec = ::cache_runtime::__private::Spec::new(
                "list_products",
                __cache_marker,
                ::cache_runtime::__private::Options {
                    ttl_secs: ::cache_runtime::__private::Some(600),
                    tags: &["products"],
                    ..::cache_runtime::__private::Options::DEFAULT
                }
            );
        };
        let expected = quote! {
            async fn list_products(category: String) -> Result<Vec<u32>, std::io::Error> {
                #spec
                ::cache_runtime::__private::assert_cacheable::<Vec<u32> >();
                let __cache_handle = ::cache_runtime::__private::default_cache();
                let mut __cache_digest = ::cache_runtime::__private::ArgsDigest::new();
                __cache_digest.impl_scope(&__CACHE_SPEC, ::cache_runtime::__private::type_name_of_val(&|| ()));
                ::cache_runtime::__private::ArgsDigest::arg::<String>(&mut __cache_digest, &category);
                let __cache_key: ::cache_runtime::__private::KeyPart = __cache_digest.finish();
                let __cache_tags: [::cache_runtime::__private::String; 1] = [
                    ::cache_runtime::__private::format!("category:{}", ::cache_runtime::__private::TemplateValue::new(&category))
                ];
                ::cache_runtime::__private::execute::<Result<Vec<u32>, std::io::Error>, ::cache_runtime::__private::OkOnly, _>(
                    __cache_handle,
                    &__CACHE_SPEC,
                    __cache_key,
                    &__cache_tags,
                    ::cache_runtime::__private::OkOnly,
                    {
                        use ::cache_runtime::__private::{ViaBytes as _, ViaClone as _, ViaCloneResult as _};
                        (&&&::cache_runtime::__private::LocalProbe::<Result<Vec<u32>, std::io::Error>, ::cache_runtime::__private::OkOnly>::NEW).local_form()
                    },
                    async move { db::query(&category).await },
                ).await
            }
            #[doc = " Invalidates the value that `list_products` cached for these arguments, so that the next call with them runs `list_products` again."]
            #[doc = ""]
            #[doc = " Generated by `#[cached]`."]
            async fn list_products_invalidate(category: &String) -> ::cache_runtime::__private::Result<(), ::cache_runtime::__private::Error> {
                #spec
                let __cache_handle = ::cache_runtime::__private::default_cache();
                let mut __cache_digest = ::cache_runtime::__private::ArgsDigest::new();
                __cache_digest.impl_scope(&__CACHE_SPEC, ::cache_runtime::__private::type_name_of_val(&|| ()));
                ::cache_runtime::__private::ArgsDigest::arg::<String>(&mut __cache_digest, category);
                let __cache_key: ::cache_runtime::__private::KeyPart = __cache_digest.finish();
                ::cache_runtime::__private::invalidate_call(__cache_handle, &__CACHE_SPEC, __cache_key).await
            }
            #[doc = " Invalidates every value that `list_products` cached, whatever the arguments."]
            #[doc = ""]
            #[doc = " Generated by `#[cached]`."]
            async fn list_products_invalidate_all() -> ::cache_runtime::__private::Result<(), ::cache_runtime::__private::Error> {
                #spec
                ::cache_runtime::__private::invalidate_function(::cache_runtime::__private::default_cache(), &__CACHE_SPEC).await
            }
            #[doc = " Stores `value` as what `list_products` returns for these arguments, without running `list_products`: under the same key and tags, with the same rules (TTL, `ttl_from`, `unless`; an `Err` or a `None` is not stored), and under the versions of the tags read before it is stored, as a computed value. Whether it was stored (not when Redis failed: fail-open)."]
            #[doc = ""]
            #[doc = " Generated by `#[cached]`."]
            async fn list_products_prime(category: String, value: Result<Vec<u32>, std::io::Error>) -> ::cache_runtime::__private::bool {
                #spec
                ::cache_runtime::__private::assert_cacheable::<Vec<u32> >();
                let __cache_handle = ::cache_runtime::__private::default_cache();
                let mut __cache_digest = ::cache_runtime::__private::ArgsDigest::new();
                __cache_digest.impl_scope(&__CACHE_SPEC, ::cache_runtime::__private::type_name_of_val(&|| ()));
                ::cache_runtime::__private::ArgsDigest::arg::<String>(&mut __cache_digest, &category);
                let __cache_key: ::cache_runtime::__private::KeyPart = __cache_digest.finish();
                let __cache_tags: [::cache_runtime::__private::String; 1] = [
                    ::cache_runtime::__private::format!("category:{}", ::cache_runtime::__private::TemplateValue::new(&category))
                ];
                ::cache_runtime::__private::prime(async move { ::cache_runtime::__private::execute::<Result<Vec<u32>, std::io::Error>, ::cache_runtime::__private::OkOnly, _>(
                    __cache_handle,
                    &__CACHE_SPEC,
                    __cache_key,
                    &__cache_tags,
                    ::cache_runtime::__private::OkOnly,
                    {
                        use ::cache_runtime::__private::{ViaBytes as _, ViaClone as _, ViaCloneResult as _};
                        (&&&::cache_runtime::__private::LocalProbe::<Result<Vec<u32>, std::io::Error>, ::cache_runtime::__private::OkOnly>::NEW).local_form()
                    },
                    async move { value },
                ).await }).await
            }
        };
        assert_eq!(actual, expected.to_string());
    }

    #[test]
    fn options_reach_the_expansion() {
        let actual = expand(
            quote!(
                key = "user:{id}",
                cache = self.cache,
                cache_none = true,
                lock_ttl = "500ms",
                crate = "renamed",
                ttl = "1h",
                codec = "msgpack"
            ),
            quote! {
                pub async fn get<'a>(&self, id: u64, db: &'a mut Db) -> Option<User> { None }
            },
        );
        for expected in [
            "renamed :: __private :: KeyPart :: template (renamed :: __private :: format ! (\"user:{}\" , renamed :: __private :: TemplateValue :: new (& id)))",
            "renamed :: __private :: Some (renamed :: __private :: Cache :: clone (renamed :: __private :: AsCache :: as_cache (& (self . cache))))",
            "renamed :: __private :: SomeOnly { cache_none : true }",
            "Spec :: new (\"get\" , __cache_marker , renamed :: __private :: Options { ttl_secs : renamed :: __private :: Some (3600) , lock_ttl_ms : renamed :: __private :: Some (500) , codec : renamed :: __private :: Codec :: MsgPack , .. renamed :: __private :: Options :: DEFAULT })",
            "pub async fn get_invalidate < 'a > (& self , id : & u64)",
            "pub async fn get_invalidate_all (& self ,)",
        ] {
            assert!(
                actual.contains(expected),
                "missing {expected:?} in {actual}"
            );
        }
        // With `key`, arguments are neither hashed nor checked for `Serialize`.
        assert!(!actual.contains("ArgsDigest"), "{actual}");
    }

    #[test]
    fn digest_covers_self_generics_and_hashed_arguments_only() {
        let actual = expand(
            quote!(skip(db), companions = false),
            quote! {
                async fn get<'a, T: Send, const N: usize>(&self, db: &'a Db, id: T) -> u8 { 0 }
            },
        );
        let expected = quote! {
            let mut __cache_digest = ::cache_runtime::__private::ArgsDigest::new();
            __cache_digest.impl_scope(&__CACHE_SPEC, ::cache_runtime::__private::type_name_of_val(&|| ()));
            __cache_digest.type_param::<Self>();
            __cache_digest.type_param::<T>();
            __cache_digest.arg(&N);
            ::cache_runtime::__private::ArgsDigest::arg::<T>(&mut __cache_digest, &id);
            let __cache_key
        };
        assert!(actual.contains(&expected.to_string()), "{actual}");
        assert!(!actual.contains("get_invalidate"), "{actual}");
        assert!(
            actual.contains(":: cache_runtime :: __private :: Plain"),
            "{actual}"
        );
    }

    #[test]
    fn the_cache_expression_arguments_go_to_the_companions() {
        let actual = expand(
            quote!(cache = state.cache, skip(state)),
            quote! {
                async fn get(state: &State, id: u64) -> u8 { 0 }
            },
        );
        assert!(
            actual.contains("async fn get_invalidate (state : & State , id : & u64)"),
            "{actual}"
        );
        assert!(
            actual.contains("async fn get_invalidate_all (state : & State)"),
            "{actual}"
        );
    }

    /// On errors: all of them, and the function as written.
    #[test]
    fn errors_come_all_at_once_beside_the_function() {
        let item = quote!(
            fn f(db: &Db) {
                body()
            }
        );
        let output = cached(
            quote!(ttl = 0, tll = 5, tags = ["{x}"], lock = "no"),
            item.clone(),
        );
        let text = output.to_string();
        assert_eq!(text.matches("compile_error").count(), 6, "{text}");
        assert!(text.ends_with(&item.to_string()), "{text}");
    }
}
