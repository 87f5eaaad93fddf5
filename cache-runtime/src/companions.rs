//! The invalidation companions generated next to each `#[cached]` function.

use crate::cache::Cache;
use crate::error::Error;
use crate::key::KeyPart;
use crate::spec::Spec;

/// Deletes the entry of one call (`<fn>_invalidate(args)`).
pub async fn invalidate_call(
    cache: Option<Cache>,
    spec: &'static Spec,
    key: KeyPart,
) -> Result<(), Error> {
    let cache = cache.ok_or(Error::NoCache)?;
    let namespace = &cache.inner.namespace;
    let key = key.entry_key(&spec.keys(namespace))?;
    // The call's own version goes with the entry, so that a fill already
    // running cannot bring the entry back (see the crate docs, "Tags").
    cache
        .inner
        .invalidate_versions(vec![crate::schema::call_key(namespace, &key), key])
        .await
}

/// Invalidates every entry of one function (`<fn>_invalidate_all()`).
pub async fn invalidate_function(cache: Option<Cache>, spec: &'static Spec) -> Result<(), Error> {
    let cache = cache.ok_or(Error::NoCache)?;
    cache.invalidate_function(spec.path()).await
}
