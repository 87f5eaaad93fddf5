//! The layer's one door into the rest of the crate: storing and reading
//! entries through the call path of `#[cached]` (one computation per key
//! across processes, fail-open, tags), keys, the clock. Nothing else in
//! `http` names a crate internal.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Cache;
use crate::call::LocalForm;
use crate::codec::Codec;
use crate::key::{ArgsDigest, KeyPart};
use crate::outcome::OkOnly;
use crate::spec::{Options, Spec};

/// The description of one layer's entries: kept `keep_secs`, MessagePack,
/// not in the local tier (a response's freshness is the layer's to judge,
/// and a replaced one then needs no announcement).
pub(super) fn spec(name: &'static str, keep_secs: u64) -> &'static Spec {
    let options = Options {
        ttl_secs: Some(keep_secs.max(1)),
        codec: Codec::MsgPack,
        local: false,
        ..Options::DEFAULT
    };
    Box::leak(Box::new(Spec::new(name, marker, options)))
}

fn marker() -> &'static str {
    "cache_runtime::http"
}

/// The key of the parts of a request that tell its entry apart.
pub(super) fn key(parts: &impl Serialize) -> KeyPart {
    let mut digest = ArgsDigest::new();
    digest.arg(parts);
    digest.finish()
}

/// The entry under `key`, or `fetch`'s (stored when `Ok`); concurrent
/// callers of one key share one fetch, across processes too.
pub(super) fn get_or_fetch<T, E, F>(
    cache: &Cache,
    spec: &'static Spec,
    key: KeyPart,
    tags: &[String],
    fetch: F,
) -> impl Future<Output = Result<T, E>>
where
    T: Serialize + DeserializeOwned,
    F: Future<Output = Result<T, E>>,
{
    crate::__private::execute(
        Some(cache.clone()),
        spec,
        key,
        tags,
        OkOnly,
        LocalForm::bytes(),
        fetch,
    )
}

/// `fetch`'s result, stored in place of the entry under `key` when `Ok`
/// (one fetch per key at a time, as on a miss); an `Err` leaves the entry.
pub(super) async fn refetch<T, E, F>(
    cache: &Cache,
    spec: &'static Spec,
    key: KeyPart,
    tags: &[String],
    fetch: F,
) -> Result<T, E>
where
    T: Serialize + DeserializeOwned,
    F: Future<Output = Result<T, E>>,
{
    crate::refresh(get_or_fetch(cache, spec, key, tags, fetch)).await
}

/// The time now on this server, in milliseconds since 1970.
pub(super) fn now_ms() -> u64 {
    crate::entry::now_ms()
}

/// The cache's default TTL.
pub(super) fn default_ttl(cache: &Cache) -> Duration {
    cache.inner.default_ttl
}
