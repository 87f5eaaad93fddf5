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
pub use ::core::result::Result;
pub use ::std::format;
pub use ::std::string::String;

pub use crate::call::{LocalForm, LocalProbe, ViaBytes, ViaClone, ViaCloneResult};
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
