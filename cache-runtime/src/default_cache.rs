//! The process-wide default cache, used by `#[cached]` functions that do not
//! name one with `cache = ...`.

use std::sync::{Arc, LazyLock, RwLock};

use crate::Cache;

static DEFAULT: RwLock<Option<Cache>> = RwLock::new(None);

/// Installs `cache` as the default of `#[cached]` functions without
/// `cache = ...`. Calling it again replaces the default.
///
/// Until a default is set, such functions run uncached (and say so once,
/// with a `tracing` warning).
///
/// ```
/// let cache = cache_runtime::Cache::builder().memory().build()?;
/// cache_runtime::set_default(cache);
/// # Ok::<(), cache_runtime::Error>(())
/// ```
pub fn set_default(cache: Cache) {
    *DEFAULT
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(cache);
}

/// The default cache, if one was set.
pub fn default_cache() -> Option<Cache> {
    DEFAULT
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// What `#[cached(cache = expr)]` accepts: a [`Cache`], a reference to one,
/// or an `Arc` of one.
pub trait AsCache {
    /// The cache.
    fn as_cache(&self) -> &Cache;
}

impl AsCache for Cache {
    fn as_cache(&self) -> &Cache {
        self
    }
}

impl<T: AsCache + ?Sized> AsCache for &T {
    fn as_cache(&self) -> &Cache {
        (**self).as_cache()
    }
}

impl<T: AsCache + ?Sized> AsCache for Arc<T> {
    fn as_cache(&self) -> &Cache {
        (**self).as_cache()
    }
}

impl<T: AsCache + ?Sized> AsCache for Box<T> {
    fn as_cache(&self) -> &Cache {
        (**self).as_cache()
    }
}

/// `#[cached(cache = CACHE)]` with `static CACHE: LazyLock<Cache>`.
impl<T: AsCache, F: FnOnce() -> T> AsCache for LazyLock<T, F> {
    fn as_cache(&self) -> &Cache {
        LazyLock::force(self).as_cache()
    }
}
