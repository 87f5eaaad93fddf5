//! [`Cache`]: a cheap handle (an `Arc`) on a backend, its settings, its
//! counters and its in-flight computations.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::builder::CacheBuilder;
use crate::error::Error;
use crate::notify::Notifier;
use crate::singleflight::Flights;
use crate::spec::Spec;
use crate::stats::{Counters, FunctionCounters, Stats};

/// A cache that `#[cached]` functions read and fill. Clone it freely: clones
/// share everything.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_runtime::Error> {
/// use cache_runtime::Cache;
///
/// let cache = Cache::builder().memory().namespace("shop").build()?;
/// cache_runtime::set_default(cache.clone());
///
/// cache.invalidate_tag("products").await?;
/// cache.invalidate_tags(["products", "category:books"]).await?;
/// assert_eq!(cache.stats().invalidations, 3);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Unique among the caches of this process.
    pub id: u64,
    /// The counters of each function called with this cache, by the
    /// address of its `Spec`.
    pub functions: std::sync::Mutex<std::collections::HashMap<usize, Arc<FunctionCounters>>>,
    pub backend: Backend,
    pub namespace: String,
    pub default_ttl: Duration,
    pub lock_ttl: Duration,
    pub max_value_bytes: usize,
    /// The largest share of a TTL taken off at random (`ttl_jitter`).
    pub ttl_jitter: f64,
    pub stats: Arc<Counters>,
    pub flights: Flights,
    /// Fill announcements and the backplane (Redis only).
    pub notifier: Option<Arc<Notifier>>,
    /// The local tier (`local_cache`, Redis only).
    pub local: Option<Arc<crate::local::LocalTier>>,
    /// Whether a check for an oversized entry runs (at most one at a time).
    pub sweeping: Arc<std::sync::atomic::AtomicBool>,
    /// Entry keys whose refresh failed in the last
    /// [`REFRESH_BACKOFF`](crate::call::REFRESH_BACKOFF): their grace value
    /// is served without another try, so a failing database gets one
    /// refresh per key per process per backoff, not one per call.
    pub failed_refreshes: moka::sync::Cache<String, ()>,
}

// Entries live under `{ns}:`; the cache's own keys under `{ns}#`, so that no
// entry key, whatever a `key = "..."` template renders, is ever one of them.

/// The key that holds the current version of a user tag.
pub(crate) fn tag_key(namespace: &str, tag: &str) -> String {
    format!("{namespace}#tag:{tag}")
}

/// The key that holds the current version of a function's implicit tag,
/// carried by every entry of that function.
pub(crate) fn function_key(namespace: &str, function: &str) -> String {
    format!("{namespace}#fn:{function}")
}

/// The key that holds the version of a whole namespace, which every entry
/// carries ([`Cache::invalidate_all`] deletes it).
pub(crate) fn namespace_key(namespace: &str) -> String {
    format!("{namespace}#all")
}

/// The key that holds the version of one call's entry (its implicit tag,
/// which `<fn>_invalidate(args)` deletes).
pub(crate) fn call_key(namespace: &str, entry_key: &str) -> String {
    format!("{namespace}#call:{entry_key}")
}

/// The key of the fill lease of an entry.
pub(crate) fn lease_key(namespace: &str, entry_key: &str) -> String {
    format!("{namespace}#lease:{entry_key}")
}

/// The channel on which invalidations are announced to local tiers (the
/// backplane).
pub(crate) fn invalidation_channel(namespace: &str) -> String {
    format!("{namespace}#invalidations")
}

/// The channel on which fills are announced to waiting processes.
pub(crate) fn fill_channel(namespace: &str) -> String {
    format!("{namespace}#fills")
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.backend)
            .field("namespace", &self.inner.namespace)
            .field("default_ttl", &self.inner.default_ttl)
            .field("lock_ttl", &self.inner.lock_ttl)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// Starts configuring a cache.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// The prefix of every key of this cache.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// `"redis"` or `"memory"`.
    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::Redis(_) => "redis",
            Backend::Memory(_) => "memory",
        }
    }

    /// Whether the local tier ([`local_cache`](crate::CacheBuilder::local_cache))
    /// answers hits now: its backplane subscription is confirmed. `false`
    /// without a local tier, and until the first call has started the
    /// subscription.
    pub fn local_ready(&self) -> bool {
        self.inner.local.as_ref().is_some_and(|l| l.is_up())
    }

    /// The counters since this cache was built.
    pub fn stats(&self) -> Stats {
        self.inner.stats.snapshot()
    }

    /// The counters of each `#[cached]` function called with this cache,
    /// by its path (`my_crate::module::fn_name`): the call outcomes (hits,
    /// misses, grace hits, coalesced calls, lease waits, computations,
    /// stores, refreshes, errors, ...). Counters that belong to no function
    /// (`round_trips`, `invalidations`, `skipped`) stay 0 here; see
    /// [`stats`](Self::stats).
    ///
    /// ```
    /// # use cache_runtime::{Cache, cached};
    /// #[cached(ttl = 60)]
    /// async fn price(id: u32) -> u32 { id * 100 }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cache_runtime::Error> {
    /// let cache = Cache::builder().memory().build()?;
    /// cache_runtime::set_default(cache.clone());
    /// price(1).await;
    /// price(1).await;
    /// let by_function = cache.function_stats();
    /// let (path, stats) = by_function.iter().next().unwrap();
    /// assert!(path.ends_with("::price"));
    /// assert_eq!((stats.misses, stats.hits), (1, 1));
    /// # Ok(()) }
    /// ```
    pub fn function_stats(&self) -> std::collections::BTreeMap<String, Stats> {
        let functions = self
            .inner
            .functions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        functions
            .values()
            .map(|f| (f.path.to_owned(), f.counters.snapshot()))
            .collect()
    }

    /// Makes every entry carrying `tag` a miss on its next read, in every
    /// process sharing the backend. One single-key write, whatever the number
    /// of entries, and its announcement to local tiers (a `PUBLISH` in the
    /// same round trip); this process's local tier drops the entries before
    /// the call returns.
    ///
    /// # Errors
    /// When the backend cannot be reached within the op timeout: the tag was
    /// then not invalidated.
    pub async fn invalidate_tag(&self, tag: impl AsRef<str>) -> Result<(), Error> {
        self.invalidate_tags([tag]).await
    }

    /// [`invalidate_tag`](Self::invalidate_tag) for several tags in one round
    /// trip (one single-key write per tag).
    pub async fn invalidate_tags<I, S>(&self, tags: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys: Vec<String> = tags
            .into_iter()
            .map(|t| tag_key(&self.inner.namespace, t.as_ref()))
            .collect();
        self.delete_versions(keys).await
    }

    /// Makes every entry of one `#[cached]` function a miss, given its full
    /// path: `my_crate::module::fn_name`, or `my_crate::module::Type::fn_name`
    /// for an associated function (as `std::any::type_name` spells it). The
    /// generated `<fn>_invalidate_all()` companion calls this for you.
    ///
    /// # Errors
    /// As [`invalidate_tag`](Self::invalidate_tag).
    pub async fn invalidate_function(&self, function: &str) -> Result<(), Error> {
        self.delete_versions(vec![function_key(&self.inner.namespace, function)])
            .await
    }

    /// Makes every entry of this cache's namespace a miss, in every process
    /// sharing the backend: one single-key write, with the guarantee of
    /// [`invalidate_tag`](Self::invalidate_tag) (every entry carries the
    /// namespace's version as if it were a tag, so a fill that read the
    /// database before this call is never served after it).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cache_runtime::Error> {
    /// let cache = cache_runtime::Cache::builder().memory().build()?;
    /// cache.invalidate_all().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`invalidate_tag`](Self::invalidate_tag).
    pub async fn invalidate_all(&self) -> Result<(), Error> {
        self.delete_versions(vec![namespace_key(&self.inner.namespace)])
            .await
    }

    pub(crate) async fn delete_versions(&self, keys: Vec<String>) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let n = keys.len() as u64;
        let deleted = self.inner.invalidate(&keys, true).await;
        match deleted {
            Ok(()) => {
                self.inner
                    .stats
                    .invalidations
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(target: "cache_runtime", ?keys, "invalidated");
                Ok(())
            }
            Err(e) => {
                self.inner.record_error(&e, "invalidate");
                Err(e)
            }
        }
    }
}

impl Inner {
    /// Invalidates version keys: deletes them (with `delete`; without, a
    /// value was replaced under the same versions) and announces them on
    /// the backplane, in one round trip; then this process's local tier
    /// forgets the values read under them, before the caller goes on (also
    /// when Redis failed: a local value is then not to be trusted either).
    pub(crate) async fn invalidate(&self, keys: &[String], delete: bool) -> Result<(), Error> {
        let channel = invalidation_channel(&self.namespace);
        let result = self.backend.invalidate(keys, delete, Some(&channel)).await;
        if let Some(local) = &self.local {
            local.invalidate(keys.iter().map(String::as_str));
        }
        result
    }

    /// The counters of the function `spec` in this cache, made on first use.
    pub(crate) fn function_counters(&self, spec: &'static Spec) -> Arc<FunctionCounters> {
        let mut functions = self.functions.lock().unwrap_or_else(|p| p.into_inner());
        functions
            .entry(std::ptr::from_ref(spec) as usize)
            .or_insert_with(|| Arc::new(FunctionCounters::new(spec.path())))
            .clone()
    }

    /// Counts and logs a backend failure.
    pub(crate) fn record_error(&self, error: &Error, op: &'static str) {
        if matches!(error, Error::CircuitOpen) {
            return; // counted in `skipped` where it was decided
        }
        Counters::add(&self.stats.errors);
        if error.is_timeout() {
            Counters::add(&self.stats.timeouts);
        }
        tracing::warn!(target: "cache_runtime", op, %error, "cache backend failed; going on without it");
    }
}
