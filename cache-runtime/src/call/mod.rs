//! One call of a `#[cached]` function.
//!
//! ```text
//! lookup: read entry + versions ──current──▶ hit: decode and return
//!        │ absent / stale / undecodable
//!        ▼
//! miss: join the in-process flight ──follower──▶ the leader's value
//!        │ leader
//!        ▼
//! create missing versions + try the lease ──held by another process──▶ wait for its fill
//!        │ held (one round trip)                                       (announcement or backoff)
//!        ▼
//! fill: run the body, store value + versions, release the lease, land the flight
//! ```
//!
//! Any backend failure on the way makes the call go on without the cache
//! (`offline`): the body runs and its result is returned, the failure is
//! counted and logged, and concurrent callers of the key in this process
//! still share one computation.
//!
//! Only [`execute`] is generic (over the result, its [`Strategy`] and the
//! body): it decodes, encodes and runs the body. Everything else moves bytes
//! and is compiled once for all functions: [`lookup`] (what a hit does),
//! [`miss`] (flights, versions, where the lease is taken), [`fill`] (what
//! is written after the body), [`offline`].

mod fill;
mod lookup;
mod miss;
mod offline;

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::backend::Snapshot;
use crate::cache::{Cache, Inner};
use crate::codec::CodecError;
use crate::entry::{self, Check};
use crate::error::Error;
use crate::key::KeyPart;
use crate::outcome::Strategy;
use crate::spec::{KeysRef, Spec};
use crate::stats::Counters;

pub(crate) use fill::Fill;

/// Runs one call of a `#[cached]` function. Called by the generated code
/// only; `tags` are the rendered tags that interpolate arguments.
pub async fn execute<R, S, F>(
    cache: Option<Cache>,
    spec: &'static Spec,
    key: KeyPart,
    tags: &[String],
    strategy: S,
    body: F,
) -> R
where
    S: Strategy<R>,
    F: Future<Output = R>,
{
    let Some(cache) = cache else {
        warn_no_cache(spec);
        return body.await;
    };
    let call = match Call::new(&cache.inner, spec, key, tags) {
        Ok(call) => call,
        Err(error) => {
            Counters::add(&cache.inner.stats.errors);
            tracing::warn!(
                target: "cache_runtime",
                function = spec.path(),
                %error,
                "cannot derive the cache key; running uncached"
            );
            Counters::add(&cache.inner.stats.computations);
            return body.await;
        }
    };
    let codec = spec.options.codec;
    let mut step = call.lookup().await;
    loop {
        step = match step {
            Step::Serve(found) => match strategy.decode(codec, found.value()) {
                Ok(value) => {
                    call.served(&found);
                    return value;
                }
                Err(error) => call.undecodable(found, &error).await,
            },
            Step::Compute(mut fill) => {
                Counters::add(&call.inner.stats.computations);
                let result = body.await;
                let mut out = fill.start();
                let at = out.len();
                let encoded = match strategy.encode(codec, &result, &mut out) {
                    None => false,
                    Some(Ok(())) => true,
                    Some(Err(error)) => {
                        call.unencodable(&error);
                        false
                    }
                };
                fill.finish(encoded.then_some(out), at).await;
                return result;
            }
        };
    }
}

fn warn_no_cache(spec: &Spec) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            target: "cache_runtime",
            function = spec.path(),
            "no cache: call `cache_runtime::set_default` or pass `cache = ...`; running uncached"
        );
    }
}

/// What the call does next.
pub(crate) enum Step<'c> {
    /// Decode these bytes and return them.
    Serve(Found),
    /// Run the body, then hand its encoding to the fill.
    Compute(Fill<'c>),
}

/// A stored value found for the call.
pub(crate) struct Found {
    bytes: Bytes,
    source: Source,
}

enum Bytes {
    /// A whole entry read from the backend; the value starts at the offset.
    Entry(Vec<u8>, usize),
    /// A value another caller of this process shared.
    Shared(Arc<[u8]>),
}

enum Source {
    /// The call's own read: a hit. Keeps what the read saw, for the miss
    /// that follows if the value does not decode.
    Read {
        versions: Vec<Option<Vec<u8>>>,
        epoch: u64,
    },
    /// Computed by a concurrent caller of this process.
    Coalesced,
    /// Filled by another process while this call waited on its lease.
    Filled,
}

impl Found {
    fn value(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Entry(bytes, at) => &bytes[*at..],
            Bytes::Shared(bytes) => bytes,
        }
    }
}

/// The call's keys and settings, and whether the backend failed it.
pub(crate) struct Call<'c> {
    inner: &'c Inner,
    spec: &'static Spec,
    entry_key: String,
    /// The function's version key, the call's, then the tags'.
    version_keys: Vec<Cow<'static, str>>,
    ttl: Duration,
    /// Set by the first backend failure of this call: the call then makes
    /// no further write, so it waits on a failing Redis at most once.
    failed: AtomicBool,
}

impl<'c> Call<'c> {
    fn new(
        inner: &'c Inner,
        spec: &'static Spec,
        key: KeyPart,
        tags: &[String],
    ) -> Result<Self, crate::canonical::EncodeError> {
        let namespace = &inner.namespace;
        let keys = spec.keys(namespace);
        let entry_key = key.entry_key(&keys)?;
        let mut version_keys = Vec::with_capacity(keys.version_keys.len() + 1 + tags.len());
        let shared = |k: &'static String| Cow::Borrowed(k.as_str());
        let (function, constant) = keys.version_keys.split_first().expect("a function key");
        let call_key = Cow::Owned(crate::cache::call_key(namespace, &entry_key));
        match &keys {
            KeysRef::Shared(k) => {
                version_keys.push(shared(&k.version_keys[0]));
                version_keys.push(call_key);
                version_keys.extend(k.version_keys[1..].iter().map(shared));
            }
            KeysRef::Own(_) => {
                version_keys.push(Cow::Owned(function.clone()));
                version_keys.push(call_key);
                version_keys.extend(constant.iter().cloned().map(Cow::Owned));
            }
        }
        version_keys.extend(
            tags.iter()
                .map(|t| Cow::Owned(crate::cache::tag_key(namespace, t))),
        );
        Ok(Call {
            inner,
            spec,
            entry_key,
            version_keys,
            ttl: spec
                .options
                .ttl_secs
                .map_or(inner.default_ttl, Duration::from_secs),
            failed: AtomicBool::new(false),
        })
    }

    /// Whether the snapshot's entry is current for this call.
    fn check(&self, snap: &Snapshot) -> Check {
        entry::check(
            snap.entry.as_deref(),
            self.spec.options.codec,
            &snap.versions,
        )
    }

    /// Counts a value that decoded and is returned.
    fn served(&self, found: &Found) {
        let stats = &self.inner.stats;
        match found.source {
            Source::Read { .. } => {
                Counters::add(&stats.hits);
                tracing::trace!(target: "cache_runtime", key = %self.entry_key, "cache hit");
            }
            Source::Coalesced => Counters::add(&stats.coalesced),
            Source::Filled => {}
        }
    }

    /// A found value did not decode (a type changed in a deploy, or
    /// corruption): counted, then a miss if it was the call's own read, or
    /// the body without the cache otherwise.
    async fn undecodable(&self, found: Found, error: &CodecError) -> Step<'_> {
        Counters::add(&self.inner.stats.decode_errors);
        tracing::warn!(
            target: "cache_runtime",
            key = %self.entry_key,
            %error,
            "stored value does not decode; recomputing"
        );
        match found.source {
            Source::Read { versions, epoch } => {
                Counters::add(&self.inner.stats.misses);
                self.miss(versions, epoch).await
            }
            Source::Coalesced | Source::Filled => Step::Compute(Fill::uncached(self, None)),
        }
    }

    fn unencodable(&self, error: &CodecError) {
        tracing::warn!(
            target: "cache_runtime",
            key = %self.entry_key,
            %error,
            "value does not encode; not cached"
        );
    }

    /// How long a fill lease lasts: the longest a body is expected to run.
    fn lock_ttl(&self) -> Duration {
        self.spec
            .options
            .lock_ttl_ms
            .map_or(self.inner.lock_ttl, Duration::from_millis)
    }

    fn fail(&self, error: &Error, op: &'static str) {
        self.failed.store(true, Ordering::Relaxed);
        self.inner.record_error(error, op);
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}
