//! The engine under a [`Cache`](crate::Cache) handle: the backend, the
//! settings, the counters, the flights in progress, the backplane and the
//! local tier of one cache, shared by its clones and by every call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backend::Backend;
use crate::backplane::Backplane;
use crate::function_counters::FunctionCounters;
use crate::local::LocalTier;
use crate::singleflight::Flights;
use crate::spec::{CountersRef, Spec};
use crate::stats::Counters;

pub(crate) struct Inner {
    /// Unique among the caches of this process.
    id: u64,
    /// The counters of each function called with this cache, by its path
    /// (a function and its `<fn>_prime` companion share them).
    functions: Mutex<HashMap<String, Arc<FunctionCounters>>>,
    pub backend: Backend,
    pub namespace: String,
    pub default_ttl: Duration,
    pub lease_ttl: Duration,
    pub max_value_bytes: usize,
    /// Values whose encoding is longer are stored compressed.
    pub compress_above: Option<usize>,
    /// The largest share of a TTL taken off at random (`ttl_jitter`).
    pub ttl_jitter: f64,
    pub stats: Arc<Counters>,
    pub flights: Flights,
    /// Fill announcements and the backplane (Redis only).
    pub backplane: Option<Arc<Backplane>>,
    /// The local tier (`local_cache`, Redis only).
    pub local: Option<Arc<LocalTier>>,
    /// Whether a check for an oversized entry runs (at most one at a time).
    pub sweeping: Arc<std::sync::atomic::AtomicBool>,
    /// Entry keys whose refresh failed lately (see [`failed_refreshes`]).
    pub failed_refreshes: moka::sync::Cache<String, ()>,
}

/// What the builder checked and wired; [`Inner::new`] adds the rest.
pub(crate) struct Parts {
    pub backend: Backend,
    pub namespace: String,
    pub default_ttl: Duration,
    pub lease_ttl: Duration,
    pub max_value_bytes: usize,
    pub compress_above: Option<usize>,
    pub ttl_jitter: f64,
    pub stats: Arc<Counters>,
    pub backplane: Option<Arc<Backplane>>,
    pub local: Option<Arc<LocalTier>>,
}

impl Inner {
    pub(crate) fn new(parts: Parts) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Inner {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            functions: Mutex::default(),
            backend: parts.backend,
            namespace: parts.namespace,
            default_ttl: parts.default_ttl,
            lease_ttl: parts.lease_ttl,
            max_value_bytes: parts.max_value_bytes,
            compress_above: parts.compress_above,
            ttl_jitter: parts.ttl_jitter,
            stats: parts.stats,
            flights: Flights::default(),
            backplane: parts.backplane,
            local: parts.local,
            sweeping: Arc::default(),
            failed_refreshes: failed_refreshes(),
        }
    }

    /// The counters of the function `spec` in this cache, made on first use.
    fn function_counters(&self, spec: &'static Spec) -> Arc<FunctionCounters> {
        let mut functions = self.functions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(counters) = functions.get(spec.path()) {
            return counters.clone();
        }
        let counters = Arc::new(FunctionCounters::new(spec.path()));
        functions.insert(spec.path().to_owned(), counters.clone());
        counters
    }

    /// The counters of the function `spec` in this cache: without a lock
    /// for the first cache the function is called with.
    pub(crate) fn counters(&self, spec: &'static Spec) -> CountersRef {
        spec.counters(self.id, || self.function_counters(spec))
    }

    /// The counters of each function called with this cache, by its path.
    pub(crate) fn function_stats(&self) -> std::collections::BTreeMap<String, crate::Stats> {
        let functions = self.functions.lock().unwrap_or_else(|p| p.into_inner());
        functions
            .values()
            .map(|f| (f.path.to_owned(), f.counters.snapshot()))
            .collect()
    }
}

/// How long after a failed refresh of a key its grace value is served
/// without trying again (in this process).
pub(crate) const REFRESH_BACKOFF: Duration = Duration::from_secs(1);

/// The entry keys whose refresh failed in the last [`REFRESH_BACKOFF`]:
/// their grace value is served without another try, so a failing database
/// gets one refresh per key per process per backoff, not one per call.
pub(crate) fn failed_refreshes() -> moka::sync::Cache<String, ()> {
    moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(REFRESH_BACKOFF)
        .build()
}
