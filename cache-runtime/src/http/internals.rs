//! The layer's one door into the rest of the crate: storing and reading
//! entries through the call path of `#[cached]` (one computation per key
//! across processes, fail-open, tags), keys, the clock. Nothing else in
//! `http` names a crate internal.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Cache;
pub(super) use crate::call::ServedFrom;
use crate::call::{self, InPlace, LocalForm, Served};
use crate::codec::Codec;
use crate::key::{ArgsDigest, KeyPart};
use crate::outcome::OkOnly;
use crate::spec::{Options, Spec};

/// The description of one layer's entries: kept `keep_secs` exactly (no
/// jitter: an entry's age is its TTL less what remains of it), MessagePack,
/// not in the local tier (a response's freshness is the layer's to judge,
/// and a replaced one then needs no announcement).
pub(super) fn spec(name: &'static str, keep_secs: u64) -> &'static Spec {
    let options = Options {
        ttl_secs: Some(keep_secs.max(1)),
        codec: Codec::MsgPack,
        local: false,
        jitter: false,
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
/// callers of one key share one fetch, across processes too. With the
/// value, where it came from: read from storage with the entry's remaining
/// TTL by the storage's clock (read in the same round trip), or fetched by
/// this call or handed over by a concurrent one. No host's wall clock
/// enters it.
pub(super) async fn get_or_fetch<T, E, F>(
    cache: &Cache,
    spec: &'static Spec,
    key: KeyPart,
    tags: &[String],
    fetch: F,
) -> (Result<T, E>, ServedFrom)
where
    T: Serialize + DeserializeOwned,
    F: Future<Output = Result<T, E>>,
{
    let served = Served::default();
    let request = call::Request::new(
        Some(cache.inner.clone()),
        spec,
        key,
        tags,
        OkOnly,
        LocalForm::bytes(),
        fetch,
    )
    .reporting(&served);
    let result = call::execute(request, InPlace).await;
    (result, served.from())
}

/// `fetch`'s result, stored in place of the entry under `key` when `Ok`
/// (one fetch per key at a time, as on a miss); an `Err` leaves the entry.
/// With the value, where it came from, as [`get_or_fetch`] says.
pub(super) async fn refetch<T, E, F>(
    cache: &Cache,
    spec: &'static Spec,
    key: KeyPart,
    tags: &[String],
    fetch: F,
) -> (Result<T, E>, ServedFrom)
where
    T: Serialize + DeserializeOwned,
    F: Future<Output = Result<T, E>>,
{
    crate::refresh(get_or_fetch(cache, spec, key, tags, fetch)).await
}

/// The time now on this process's monotonic clock, in milliseconds since
/// its first reading. Only differences of these are used (how long ago a
/// response was read here): no wall clock, this host's or another's.
pub(super) fn now_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    crate::duration::millis(START.get_or_init(std::time::Instant::now).elapsed())
}

/// How long the layer's entries are kept in storage (their TTL).
pub(super) fn kept(spec: &Spec) -> Duration {
    Duration::from_secs(spec.options.ttl_secs.unwrap_or(0))
}

/// The cache's default TTL.
pub(super) fn default_ttl(cache: &Cache) -> Duration {
    cache.inner.default_ttl
}
