//! [`Cache::entry`]: the cache without an attribute, for a value that is
//! not the result of one function (a computation inside a handler, a
//! value another system hands over). Every operation goes through the
//! call path of `#[cached]`, with its guarantees.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::call::{self, InPlace, LocalForm, StoreOnly};
use crate::codec::{Codec, CodecError};
use crate::error::Error;
use crate::key::{ArgsDigest, KeyArg, KeyPart};
use crate::outcome::{Keep, OkOnly, Plain, SomeOnly, Strategy};
use crate::spec::{Options, Spec};

impl Cache {
    /// The entry of `args` in the family `name`: read it, compute it once,
    /// store or remove it, with the guarantees of `#[cached]`.
    ///
    /// `args` is anything `#[cached]` accepts as an argument
    /// (`Serialize`), a tuple for several; it is hashed into the key as
    /// one argument, with the same canonical encoding. The key is
    /// `{namespace}:@{name}:{digest}`: the `@` keeps entries apart from
    /// `#[cached]` functions, whose keys start with a path, so an entry
    /// never shares a key with a function of the same name (nor with
    /// another name: the digest is the last 32 characters).
    ///
    /// A name is a family of entries, like a function: keep it fixed and
    /// put what varies in `args`. Each name (with each set of the options
    /// `grace`, `lock`, `lock_ttl`, `local`) is described once and kept for
    /// the life of the process.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cache_runtime::Error> {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().memory().namespace("shop").build()?;
    ///
    /// let order_total = |id: u64| {
    ///     cache
    ///         .entry("order_total", &(id, "EUR"))
    ///         .ttl(Duration::from_secs(60))
    ///         .tags(["orders".to_owned(), format!("order:{id}")])
    /// };
    /// let total: u64 = order_total(42).get_or_compute(|| async { 1999 }).await;
    /// assert_eq!(total, 1999);
    ///
    /// assert_eq!(order_total(42).get::<u64>().await?, Some(1999));
    /// cache.invalidate_tag("order:42").await?;
    /// assert_eq!(order_total(42).get::<u64>().await?, None);
    /// # Ok(()) }
    /// ```
    pub fn entry<'a, A: KeyArg + ?Sized>(&'a self, name: &'a str, args: &A) -> Entry<'a> {
        let mut digest = ArgsDigest::new();
        digest.arg(args);
        Entry {
            cache: self,
            name,
            key: digest.finish(),
            tags: Vec::new(),
            ttl: None,
            options: Options::DEFAULT,
        }
    }
}

/// One entry of a [`Cache`], made by [`Cache::entry`]: set its options,
/// then read, compute, store or remove it.
///
/// What each operation guarantees, as a `#[cached]` call does:
/// - **Tags are versions**: the entry records the versions of its tags (and
///   of its name, of itself and of the namespace) read *before* the value
///   is computed (or, for [`set`](Self::set), before it is stored); an
///   invalidation after that read leaves the value unserved.
/// - **One computation**: concurrent [`get_or_compute`](Self::get_or_compute)
///   callers of one entry share one run in a process, and processes take
///   a lease (unless [`lock(false)`](Self::lock)).
/// - **Fail-open**: a Redis error, timeout or outage never fails an
///   operation but [`remove`](Self::remove): the value is computed and
///   returned, a read is a miss, a store does not happen. Failures are
///   counted in [`Stats::errors`](crate::Stats::errors) and logged.
/// - The local tier ([`CacheBuilder::local_cache`](crate::CacheBuilder::local_cache))
///   serves and keeps the entry like a function's value (unless
///   [`local(false)`](Self::local)).
#[must_use = "an entry does nothing until it is read, computed, set or removed"]
pub struct Entry<'a> {
    cache: &'a Cache,
    name: &'a str,
    key: KeyPart,
    tags: Vec<String>,
    ttl: Option<Duration>,
    options: Options,
}

impl std::fmt::Debug for Entry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("tags", &self.tags)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<'a> Entry<'a> {
    /// How long a stored value lives (jittered by the cache's
    /// `ttl_jitter`); the cache's default TTL without it. A TTL under a
    /// millisecond stores nothing.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Tags the entry: [`Cache::invalidate_tag`] of any of them makes it a
    /// miss. Adds to the tags given before. The tags are part of what a
    /// read checks: read an entry with the tags it is stored with (as a
    /// function's calls render the same tags from the same arguments); read
    /// with others, it is a miss.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cache_runtime::Error> {
    /// let cache = cache_runtime::Cache::builder().memory().build()?;
    /// let id = 7u64;
    /// cache.entry("user", &id).tags([format!("user:{id}")]).set(&"Ada".to_owned()).await;
    /// cache.invalidate_tag("user:7").await?;
    /// assert_eq!(cache.entry("user", &id).get::<String>().await?, None);
    /// # Ok(()) }
    /// ```
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Keeps an expired value `grace` longer (rounded up to a second):
    /// served while one caller recomputes it, and when the computation
    /// fails (stale-if-error), as `#[cached(grace = ...)]`. [`get`](Self::get)
    /// does not return a value past its TTL.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.options.grace_secs = Some(ceil_secs(grace));
        self
    }

    /// `false`: no stampede protection (concurrent callers each compute),
    /// as `#[cached(lock = false)]`.
    pub fn lock(mut self, lock: bool) -> Self {
        self.options.lock = lock;
        self
    }

    /// How long the fill lease lasts (the longest a computation is expected
    /// to run), as `#[cached(lock_ttl = ...)]`; the cache's default
    /// without it.
    pub fn lock_ttl(mut self, lock_ttl: Duration) -> Self {
        self.options.lock_ttl_ms = Some(crate::duration::millis(lock_ttl).max(1));
        self
    }

    /// `false`: the local tier neither serves nor keeps this entry, as
    /// `#[cached(local = false)]`.
    pub fn local(mut self, local: bool) -> Self {
        self.options.local = local;
        self
    }

    /// The stored value, or `compute`'s, stored. Concurrent callers of the
    /// entry share one run of `compute`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cache_runtime::Error> {
    /// let cache = cache_runtime::Cache::builder().memory().build()?;
    /// let a = cache.entry("square", &12u32).get_or_compute(|| async { 12u32 * 12 }).await;
    /// let b = cache.entry("square", &12u32).get_or_compute(|| async { 0 }).await; // a hit
    /// assert_eq!((a, b), (144, 144));
    /// assert_eq!(cache.stats().computations, 1);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_compute<T, F, Fut>(self, compute: F) -> T
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.run(Plain, async move { compute().await }).await
    }

    /// [`get_or_compute`](Self::get_or_compute) for a computation that may
    /// fail: only an `Ok` is stored; an `Err` is returned, never cached (the
    /// callers that waited for it compute for themselves).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cache_runtime::Error> {
    /// let cache = cache_runtime::Cache::builder().memory().build()?;
    /// let failed: Result<u32, String> =
    ///     cache.entry("rate", &"EUR").try_get_or_compute(|| async { Err("down".to_owned()) }).await;
    /// assert!(failed.is_err());
    /// let rate: Result<u32, String> =
    ///     cache.entry("rate", &"EUR").try_get_or_compute(|| async { Ok(108) }).await;
    /// assert_eq!(rate, Ok(108));
    /// # Ok(()) }
    /// ```
    pub async fn try_get_or_compute<T, E, F, Fut>(self, compute: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run(OkOnly, async move { compute().await }).await
    }

    /// [`get_or_compute`](Self::get_or_compute) for a value that may be
    /// missing: only a `Some` is stored; a `None` is returned (and handed
    /// to the callers that waited for it), never cached.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cache_runtime::Error> {
    /// let cache = cache_runtime::Cache::builder().memory().build()?;
    /// let user: Option<String> =
    ///     cache.entry("user", &404u64).optionally_get_or_compute(|| async { None }).await;
    /// assert_eq!(user, None);
    /// # Ok(()) }
    /// ```
    pub async fn optionally_get_or_compute<T, F, Fut>(self, compute: F) -> Option<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        self.run(
            SomeOnly { cache_none: false },
            async move { compute().await },
        )
        .await
    }

    /// The stored value, without computing: `Ok(Some(value))` for an entry
    /// that is current (no tag of it invalidated since it was stored, and
    /// within its TTL, grace not included), `Ok(None)` otherwise. Redis
    /// failing (an error, a timeout, an outage) is a miss, `Ok(None)`,
    /// counted and logged like any failure; so is a stored value that no
    /// longer decodes as `T`. Reads Redis, not the local tier.
    ///
    /// # Errors
    /// [`Error::Key`] when `args` cannot be encoded into a key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cache_runtime::Error> {
    /// let cache = cache_runtime::Cache::builder().memory().build()?;
    /// assert_eq!(cache.entry("greeting", &"fr").get::<String>().await?, None);
    /// cache.entry("greeting", &"fr").set(&"bonjour".to_owned()).await;
    /// assert_eq!(cache.entry("greeting", &"fr").get::<String>().await?.as_deref(), Some("bonjour"));
    /// # Ok(()) }
    /// ```
    pub async fn get<T: DeserializeOwned>(self) -> Result<Option<T>, Error> {
        let spec = self.spec();
        let codec = spec.options.codec;
        call::read_current(&self.cache.inner, spec, self.key, &self.tags, |bytes| {
            codec.decode(bytes)
        })
        .await
        .map_err(Error::Key)
    }

    /// Stores `value` as the entry's, with the TTL and tags set on this
    /// entry, without computing: under the versions of its tags read when
    /// `set` starts, so an invalidation after that read leaves it
    /// unserved (an invalidation before it does not: `set` a value read
    /// after the invalidation, as a computation would). The local tiers
    /// of every process drop what they held for the entry. Whether it was
    /// stored: not when Redis failed (counted and logged), when `args` or
    /// the value does not encode, or when the value is larger than
    /// `max_value_bytes`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cache_runtime::Error> {
    /// let cache = cache_runtime::Cache::builder().memory().build()?;
    /// assert!(cache.entry("stock", &7u64).set(&3u32).await);
    /// let stock = cache.entry("stock", &7u64).get_or_compute(|| async { 0u32 }).await;
    /// assert_eq!(stock, 3); // the stored value: no computation
    /// # Ok(()) }
    /// ```
    pub async fn set<T: Serialize + ?Sized>(self, value: &T) -> bool {
        let spec = self.spec();
        let mark = StoreOnly::default();
        let strategy = Timed {
            strategy: Given(value),
            ttl: self.ttl,
        };
        let request = call::Request::new(
            Some(self.cache.inner.clone()),
            spec,
            self.key,
            &self.tags,
            strategy,
            LocalForm::bytes(),
            std::future::ready(()),
        )
        .store_only(&mark);
        call::execute(request, InPlace).await;
        mark.stored()
    }

    /// Removes the entry: the next read is a miss, in every process, and a
    /// computation of it already running cannot bring it back (its own
    /// version goes with it), as the generated `<fn>_invalidate(args)`.
    ///
    /// # Errors
    /// When Redis cannot be reached within the op timeout (the entry was
    /// then not removed), or `args` cannot be encoded into a key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cache_runtime::Error> {
    /// let cache = cache_runtime::Cache::builder().memory().build()?;
    /// cache.entry("stock", &7u64).set(&3u32).await;
    /// cache.entry("stock", &7u64).remove().await?;
    /// assert_eq!(cache.entry("stock", &7u64).get::<u32>().await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn remove(self) -> Result<(), Error> {
        let spec = self.spec();
        crate::companions::invalidate_call(Some(self.cache.clone()), spec, self.key).await
    }

    /// Runs the call path with `strategy` for the result and `body` to
    /// compute it.
    async fn run<R, S, F>(self, strategy: S, body: F) -> R
    where
        S: Strategy<R>,
        F: Future<Output = R>,
    {
        let spec = self.spec();
        let strategy = Timed {
            strategy,
            ttl: self.ttl,
        };
        let request = call::Request::new(
            Some(self.cache.inner.clone()),
            spec,
            self.key,
            &self.tags,
            strategy,
            LocalForm::bytes(),
            body,
        );
        call::execute(request, InPlace).await
    }

    /// The description of this name with these options, made once.
    fn spec(&self) -> &'static Spec {
        spec_of(self.name, &self.options)
    }
}

/// Seconds, rounded up (a grace of 1 ms is kept 1 s, not none).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// What tells two descriptions of entries apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SpecKey {
    name: String,
    grace_secs: Option<u64>,
    lock: bool,
    lock_ttl_ms: Option<u64>,
    msgpack: bool,
    local: bool,
}

/// How many descriptions of entries a process makes before it warns that
/// names are not fixed.
const MANY_NAMES: usize = 10_000;

/// The description of the entries named `name` with `options`: made on
/// first use and kept (as a function's is) for the life of the process,
/// so that the call path, its counters and its keys treat the name as a
/// function. One per name and options, whatever the number of calls.
fn spec_of(name: &str, options: &Options) -> &'static Spec {
    static SPECS: OnceLock<Mutex<HashMap<SpecKey, &'static Spec>>> = OnceLock::new();
    let key = SpecKey {
        name: name.to_owned(),
        grace_secs: options.grace_secs,
        lock: options.lock,
        lock_ttl_ms: options.lock_ttl_ms,
        msgpack: options.codec == Codec::MsgPack,
        local: options.local,
    };
    let mut specs = SPECS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(spec) = specs.get(&key) {
        return spec;
    }
    if specs.len() == MANY_NAMES {
        tracing::warn!(
            target: "cache_runtime",
            names = MANY_NAMES,
            "many entry names: each is kept for the life of the process; keep names fixed and put what varies in the arguments"
        );
    }
    let path: &'static str = Box::leak(format!("@{name}").into_boxed_str());
    let spec: &'static Spec = Box::leak(Box::new(Spec::with_path(path, *options)));
    specs.insert(key, spec);
    spec
}

/// A strategy with the entry's TTL, chosen per call (as `ttl_from` does)
/// rather than fixed in the description.
#[derive(Debug, Clone, Copy)]
struct Timed<S> {
    strategy: S,
    ttl: Option<Duration>,
}

impl<R, S: Strategy<R>> Strategy<R> for Timed<S> {
    type Stored = S::Stored;
    fn encode(&self, codec: Codec, result: &R, out: &mut Vec<u8>) -> Result<Keep, CodecError> {
        self.strategy.encode(codec, result, out)
    }
    fn decode(&self, codec: Codec, bytes: &[u8]) -> Result<R, CodecError> {
        self.strategy.decode(codec, bytes)
    }
    fn stored<'r>(&self, result: &'r R) -> Option<&'r Self::Stored> {
        self.strategy.stored(result)
    }
    fn result_of(&self, stored: Self::Stored) -> R {
        self.strategy.result_of(stored)
    }
    fn ttl(&self, _result: &R) -> Option<Duration> {
        self.ttl
    }
}

/// The strategy of [`Entry::set`]: the call's result is nothing, and what
/// it stores is the value given by reference.
struct Given<'v, T: ?Sized>(&'v T);

impl<T: Serialize + ?Sized> Strategy<()> for Given<'_, T> {
    type Stored = ();
    fn encode(&self, codec: Codec, _: &(), out: &mut Vec<u8>) -> Result<Keep, CodecError> {
        codec.encode_into(self.0, out).map(|()| Keep::Store)
    }
    fn decode(&self, _: Codec, _: &[u8]) -> Result<(), CodecError> {
        Ok(())
    }
    fn stored<'r>(&self, result: &'r ()) -> Option<&'r ()> {
        Some(result)
    }
    fn result_of(&self, (): ()) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_description_per_name_and_options() {
        let a = spec_of("a", &Options::DEFAULT);
        assert!(std::ptr::eq(a, spec_of("a", &Options::DEFAULT)));
        assert!(!std::ptr::eq(a, spec_of("b", &Options::DEFAULT)));
        let graced = Options {
            grace_secs: Some(1),
            ..Options::DEFAULT
        };
        assert!(!std::ptr::eq(a, spec_of("a", &graced)));
        assert_eq!(a.path(), "@a");
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
    }
}
