//! [`Cache`]: a cheap handle (an `Arc`) on a backend, its settings, its
//! counters and its in-flight computations.

use std::sync::Arc;

use crate::backend::Backend;
use crate::builder::CacheBuilder;
use crate::engine::Inner;
use crate::error::Error;
use crate::schema::{function_key, namespace_key, tag_key};
use crate::stats::Stats;

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

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.backend)
            .field("namespace", &self.inner.namespace)
            .field("default_ttl", &self.inner.default_ttl)
            .field("lock_ttl", &self.inner.lease_ttl)
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
        self.inner.function_stats()
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
        self.inner.invalidate_versions(keys).await
    }

    /// Makes every entry of one `#[cached]` function a miss, given its full
    /// path: `my_crate::module::fn_name`, or `my_crate::module::Type::fn_name`
    /// for an associated function (as `std::any::type_name` spells it). The
    /// generated `<fn>_invalidate_all()` companion calls this for you.
    ///
    /// # Errors
    /// As [`invalidate_tag`](Self::invalidate_tag).
    pub async fn invalidate_function(&self, function: &str) -> Result<(), Error> {
        self.inner
            .invalidate_versions(vec![function_key(&self.inner.namespace, function)])
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
        self.inner
            .invalidate_versions(vec![namespace_key(&self.inner.namespace)])
            .await
    }
}
