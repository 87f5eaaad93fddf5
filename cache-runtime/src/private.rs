//! Support items for the code that `#[cached]` generates.
//!
//! **Not public API.** Everything here may change in any release; only the
//! macro may name these items. The generated code refers to nothing but
//! `::cache_runtime::__private::*` (or `<crate>::__private::*` with
//! `#[cached(crate = "...")]`), so that a user's own imports never change
//! what the expansion means.

pub use ::core::any::{type_name, type_name_of_val};
pub use ::core::future::Future;
pub use ::core::option::Option::{self, None, Some};
pub use ::core::primitive::bool;
pub use ::core::result::Result;
pub use ::std::format;
pub use ::std::string::String;

pub use crate::call::{
    BatchItem, BatchMap, BatchOk, BatchPlain, BatchShape, LocalForm, LocalProbe, ViaBytes,
    ViaClone, ViaCloneResult,
};
pub use crate::codec::{Codec, CodecError};
pub use crate::companions::{invalidate_call, invalidate_function};
pub use crate::default_cache::{AsCache, default_cache};
pub use crate::key::{ArgsDigest, KeyArg, KeyPart};
pub use crate::outcome::{Decidable, Decide, OkOnly, OkSome, Plain, SomeOnly, Strategy};
pub use crate::spec::{Options, Spec};
pub use crate::template::{TemplateArg, TemplateValue};
pub use crate::{Cache, Error};
pub use ::core::time::Duration;

use crate::call;

/// Runs one call of a `#[cached]` function. Called by the generated code
/// only; `tags` are the rendered tags that interpolate arguments. With
/// `grace`, an expired value is refreshed by this caller (the others get
/// the grace value meanwhile); see [`execute_detached`] for the refresh in
/// a task of its own.
pub fn execute<R, S, F>(
    cache: Option<Cache>,
    spec: &'static Spec,
    key: KeyPart,
    tags: &[String],
    strategy: S,
    form: LocalForm<R, S>,
    body: F,
) -> impl Future<Output = R>
where
    S: Strategy<R>,
    F: Future<Output = R>,
{
    let request = call::Request::new(
        cache.map(|c| c.inner),
        spec,
        key,
        tags,
        strategy,
        form,
        body,
    );
    call::execute(request, call::InPlace)
}

/// [`execute`] for a function whose body can move into a task of its own
/// (its arguments are owned): with `grace` or `refresh_ahead`, a refresh
/// runs in the background, so that no caller waits for it (or waits at
/// most `timeout`).
pub fn execute_detached<R, S, F>(
    cache: Option<Cache>,
    spec: &'static Spec,
    key: KeyPart,
    tags: &[String],
    strategy: S,
    form: LocalForm<R, S>,
    body: F,
) -> impl Future<Output = R>
where
    R: Send + 'static,
    S: Strategy<R> + Clone + Send + Sync + 'static,
    F: Future<Output = R> + Send + 'static,
{
    let request = call::Request::new(
        cache.map(|c| c.inner),
        spec,
        key,
        tags,
        strategy,
        form,
        body,
    );
    call::execute(request, call::Detached)
}

/// Runs `call`, one call of a `#[cached]` function made by its
/// `<fn>_prime` companion with the given value as the body, so that it
/// stores the value without a lookup (and without waiting for another
/// computation): whether it was stored. No bound on the call: the
/// companion's call of [`execute`] is the function's own, token for token,
/// so that a type error in it is reported once.
pub async fn prime<F: Future>(call: F) -> bool {
    call::prime(call).await
}

/// Runs one call of a `#[cached(batch = ...)]` function: `items` are the
/// batch argument's items with their keys and rendered tags, `body` the
/// function's body given the items it must compute.
pub fn execute_batch<K, C, R, Sh, B, Fut>(
    cache: Option<Cache>,
    spec: &'static Spec,
    items: ::std::vec::Vec<BatchItem<K>>,
    shape: Sh,
    body: B,
) -> impl Future<Output = R>
where
    K: Clone,
    C: FromIterator<K>,
    Sh: BatchShape<R>,
    <Sh::Map as BatchMap>::Value: ::serde::Serialize + ::serde::de::DeserializeOwned,
    Sh::Map: BatchMap<Key = K>,
    B: FnOnce(C) -> Fut,
    Fut: Future<Output = R>,
{
    call::execute_batch(cache.map(|c| c.inner), spec, items, shape, body)
}

/// The items of a batch argument, each with its key and tags.
pub fn batch_items<C: IntoIterator>(
    items: C,
    item: impl FnMut(C::Item) -> BatchItem<C::Item>,
) -> ::std::vec::Vec<BatchItem<C::Item>> {
    items.into_iter().map(item).collect()
}

/// Fails to compile, at the argument's type, when a `batch` argument is
/// not a collection the missing items can be gathered in.
#[inline(always)]
pub fn assert_batch_arg<C: BatchCollection>() {}

/// Fails to compile, at the return type, when a `batch` function does not
/// return a map from the batch argument's items.
#[inline(always)]
pub fn assert_batch_map<C: IntoIterator, M: BatchMap<Key = C::Item>>() {}

/// A collection a `batch` argument can be: its items are iterated, and
/// the missing ones gathered in another of its kind for the body.
#[diagnostic::on_unimplemented(
    message = "a `batch` argument must be a collection of items, not `{Self}`",
    label = "the body is given the missing items in a collection of this type",
    note = "use an owned collection such as `Vec<u64>`, `HashSet<u64>` or `BTreeSet<String>`"
)]
pub trait BatchCollection {}
impl<C: IntoIterator + FromIterator<C::Item>> BatchCollection for C {}

/// Names the version of `cache-macros` this runtime is built for: the
/// expansion refers to `VERSION_<its own version>`, so a macro crate of
/// another version fails to compile against this runtime instead of
/// misusing these items.
pub const VERSION_0_1_0: () = ();

/// Fails to compile, at the return type, when the cached value is not
/// `Serialize + DeserializeOwned`.
#[inline(always)]
pub fn assert_cacheable<T: CacheableValue>() {}

/// A value that can be stored in the cache.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached because it does not implement both `Serialize` and `DeserializeOwned`",
    label = "the cached value is stored with serde (JSON or MessagePack)",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it (a type that borrows, such as `&str`, cannot be read back from the cache)"
)]
pub trait CacheableValue {}
impl<T: ::serde::Serialize + ::serde::de::DeserializeOwned> CacheableValue for T {}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_item_names_this_version() {
        let () = super::VERSION_0_1_0;
        assert_eq!(
            env!("CARGO_PKG_VERSION"),
            "0.1.0",
            "rename `VERSION_0_1_0` to the new version"
        );
    }
}
