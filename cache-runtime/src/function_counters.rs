//! The counters of one `#[cached]` function in one cache, as
//! [`Cache::function_stats`](crate::Cache::function_stats) reports them,
//! and its metric handles (with the `metrics` feature).

use crate::stats::{Counters, Stat};

/// The counters of one `#[cached]` function in one cache (and its metric
/// handles, with the `metrics` feature).
#[derive(Debug)]
pub(crate) struct FunctionCounters {
    pub path: &'static str,
    pub counters: Counters,
    #[cfg(feature = "metrics")]
    pub metrics: crate::metrics::FunctionMetrics,
}

impl FunctionCounters {
    pub fn new(path: &'static str) -> Self {
        FunctionCounters {
            path,
            counters: Counters::default(),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::FunctionMetrics::new(path),
        }
    }

    /// Counts one event of the function, not in the cache's counters.
    pub fn count(&self, stat: Stat) {
        Counters::add(self.counters.get(stat));
        #[cfg(feature = "metrics")]
        self.metrics.count(stat);
    }

    /// Records how long the body ran.
    pub fn body_took(&self, _took: std::time::Duration) {
        #[cfg(feature = "metrics")]
        self.metrics.body(_took);
    }

    /// Records how long a call waited for another process's fill.
    pub fn waited(&self, _took: std::time::Duration) {
        #[cfg(feature = "metrics")]
        self.metrics.lease_wait(_took);
    }
}
