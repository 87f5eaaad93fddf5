//! Scopes that change what `#[cached]` calls do inside them, for admin
//! tools, tests and warm-up jobs: [`bypass`] (no cache at all) and
//! [`refresh`] (recompute and store, whatever is cached).
//!
//! A scope covers the future it wraps, in the task that polls it: not
//! tasks that future spawns.

use std::future::Future;

tokio::task_local! {
    static SCOPE: Scope;
}

/// What `#[cached]` calls do in the current scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Run the body; read and write nothing.
    Bypass,
    /// Skip the cached value: run the body (one run per key, as on a
    /// miss) and store its result (the [`refresh`] scope; the code says
    /// recompute, keeping "refresh" for a value in grace or ahead of its
    /// expiry).
    Recompute,
}

/// The scope the current task is in, if any.
pub(crate) fn current() -> Option<Scope> {
    SCOPE.try_with(|scope| *scope).ok()
}

/// Runs `fut` with every `#[cached]` call in it bypassing the cache: the
/// body runs, nothing is read or written, nothing is counted but
/// [`Stats::bypassed`](crate::Stats::bypassed).
///
/// ```
/// # use cache_runtime::{Cache, cached};
/// # static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
/// #[cached(ttl = 60)]
/// async fn price(id: u32) -> u32 {
///     RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
///     id * 100
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_runtime::Error> {
/// cache_runtime::set_default(Cache::builder().memory().build()?);
/// price(1).await;
/// let fresh = cache_runtime::bypass(price(1)).await; // runs the body
/// assert_eq!((fresh, RUNS.load(std::sync::atomic::Ordering::SeqCst)), (100, 2));
/// # Ok(()) }
/// ```
pub async fn bypass<F: Future>(fut: F) -> F::Output {
    SCOPE.scope(Scope::Bypass, fut).await
}

/// Runs `fut` with every `#[cached]` call in it recomputing its value and
/// storing it, as if the entry were missing (concurrent callers of one key
/// still share one run): to warm a cache, or to repair one entry without
/// invalidating a tag.
///
/// ```
/// # use cache_runtime::{Cache, cached};
/// # static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
/// #[cached(ttl = 60)]
/// async fn price(id: u32) -> u32 {
///     RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
///     id * 100
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_runtime::Error> {
/// cache_runtime::set_default(Cache::builder().memory().build()?);
/// price(1).await;
/// cache_runtime::refresh(price(1)).await; // runs the body, stores it
/// price(1).await; // a hit on the refreshed value
/// assert_eq!(RUNS.load(std::sync::atomic::Ordering::SeqCst), 2);
/// # Ok(()) }
/// ```
pub async fn refresh<F: Future>(fut: F) -> F::Output {
    SCOPE.scope(Scope::Recompute, fut).await
}
