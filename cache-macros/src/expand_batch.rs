//! Generates a `batch` function: the items' keys and tags, each computed
//! with the batch argument standing for one item, and the call of the
//! runtime's batch path with the body as a closure of the missing items.

use proc_macro2::{Delimiter, Group, Ident, TokenStream};
use quote::{format_ident, quote};
use syn::{GenericParam, ItemFn, Type};

use super::{Expand, companion_param, local, respan, span_range};
use crate::item::{self, RetKind};
use crate::template::name_of;

impl Expand<'_> {
    /// The batch argument's name and type.
    fn batch_arg(&self) -> (&Ident, &Type) {
        let name = name_of(self.args.batch.as_ref().expect("a batch function"));
        let arg = self
            .func
            .args
            .iter()
            .find(|arg| name_of(&arg.ident) == name)
            .expect("the batch argument is checked");
        (&arg.ident, &arg.ty)
    }

    /// The whole macro for a `batch` function.
    pub(super) fn batch(&self) -> TokenStream {
        let p = &self.private;
        let ItemFn {
            attrs,
            vis,
            sig,
            block,
        } = &self.func.item;
        let (ident, ty) = self.batch_arg();
        let spec = self.spec();
        let handle = self.handle();
        let key = self.item_key(false);
        let tags = self.tags();
        let ret = &self.func.ret.ty;
        let (handle_var, key_var, tags_var, items_var) = (
            local("__cache_handle"),
            local("__cache_key"),
            local("__cache_tags"),
            local("__cache_items"),
        );
        // The collection check at the argument's type, the map check at the
        // return type: a misuse is reported at the token at fault.
        let (first, last) = span_range(ty);
        let assert_arg = respan(quote!(#p::assert_batch_arg::<), (first, first));
        let close = respan(quote!(>();), (last, last));
        let mut checks = quote!(#assert_arg #ty #close);
        let map = match self.func.ret.kind {
            RetKind::Result => self.func.ret.value.clone(),
            _ => Some(ret.clone()),
        };
        if let Some(map) = &map {
            let (first, last) = span_range(map);
            let assert_map = respan(quote!(#p::assert_batch_map::<#ty,), (first, first));
            let close = respan(quote!(>();), (last, last));
            checks.extend(quote!(#assert_map #map #close));
        }
        let cache_none = self
            .args
            .cache_none
            .as_ref()
            .is_some_and(|setting| setting.value);
        let shape = match self.func.ret.kind {
            RetKind::Result | RetKind::ResultOption => quote!(#p::BatchOk),
            RetKind::Plain | RetKind::Option => quote!(#p::BatchPlain),
        };
        let shape = respan(quote!(#shape { cache_none: #cache_none }), span_range(ret));
        let mut call = Group::new(
            Delimiter::Parenthesis,
            quote! {
                #handle_var,
                &__CACHE_SPEC,
                #items_var,
                #shape,
                move |#ident: #ty| async move #block,
            },
        );
        call.set_span(span_range(ret).1);
        let companions = self.batch_companions();
        quote! {
            #(#attrs)*
            #vis #sig {
                #spec
                #checks
                let #handle_var = #handle;
                let #items_var = #p::batch_items(#ident, |#ident| {
                    #key
                    #tags
                    #p::BatchItem::new(#ident, #key_var, #tags_var)
                });
                #p::execute_batch::<_, #ty, #ret, _, _, _> #call .await
            }
            #companions
        }
    }

    /// `let __cache_key = ...;` for one item: as [`Expand::key`], with the
    /// batch argument bound to the item (in a companion, a reference to
    /// it).
    fn item_key(&self, companion: bool) -> TokenStream {
        if self.args.key.is_some() {
            return self.key(companion);
        }
        let p = &self.private;
        let key = local("__cache_key");
        let digest = local("__cache_digest");
        let (batch, _) = self.batch_arg();
        let mut calls =
            vec![quote!(#digest.impl_scope(&__CACHE_SPEC, #p::type_name_of_val(&|| ()));)];
        if self.func.receiver {
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
            if ident == batch {
                let value = if companion {
                    quote!(#ident)
                } else {
                    quote!(&#ident)
                };
                calls.push(quote!(#digest.arg(#value);));
                continue;
            }
            let value = if companion && !matches!(item::ungroup(ty), Type::Reference(_)) {
                quote!(#ident)
            } else {
                quote!(&#ident)
            };
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

    /// `<name>_invalidate` (of one item) and `<name>_invalidate_all`.
    fn batch_companions(&self) -> TokenStream {
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
        let (batch, _) = self.batch_arg();
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
                if ident == batch {
                    quote!(#ident: &<#ty as ::core::iter::IntoIterator>::Item)
                } else {
                    companion_param(ident, ty)
                }
            });
        let cache_params: Vec<_> = self
            .func
            .args
            .iter()
            .filter(|arg| for_cache(&arg.ident))
            .map(|arg| companion_param(&arg.ident, &arg.ty))
            .collect();
        let generics = &sig.generics;
        let where_clause = &generics.where_clause;
        let (all_generics, all_where) = if cache_params.is_empty() {
            (None, None)
        } else {
            (Some(generics), where_clause.as_ref())
        };
        let spec = self.spec();
        let handle = self.handle();
        let key = self.item_key(true);
        let (handle_var, key_var) = (local("__cache_handle"), local("__cache_key"));
        let call_doc = format!(
            " Invalidates the value that `{name}` cached for this item (and these other arguments), so that the next call with it runs `{name}` for it again."
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
