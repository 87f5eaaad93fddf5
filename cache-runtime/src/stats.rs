//! Counters of what the cache did, readable at any time with
//! [`Cache::stats`](crate::Cache::stats).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// A snapshot of a cache's counters since it was built.
        ///
        /// ```
        /// let cache = cache_runtime::Cache::builder().memory().build()?;
        /// let s = cache.stats();
        /// assert_eq!(s.hits + s.misses, 0);
        /// # Ok::<(), cache_runtime::Error>(())
        /// ```
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Stats {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub $name: AtomicU64,)*
        }

        impl Counters {
            pub fn snapshot(&self) -> Stats {
                Stats { $($name: self.$name.load(Relaxed),)* }
            }

            pub fn get(&self, stat: Stat) -> &AtomicU64 {
                match stat {
                    $(Stat::$name => &self.$name,)*
                }
            }
        }

        /// One of the counters. The cache-wide ones (`round_trips`,
        /// `invalidations`) are counted by name, never as a `Stat`, but are
        /// listed in `Stat::ALL` (for the metrics).
        #[allow(non_camel_case_types)]
        #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Stat {
            $($name,)*
        }

        impl Stat {
            /// Every counter, in order.
            #[cfg(feature = "metrics")]
            pub const ALL: &[Stat] = &[$(Stat::$name,)*];
        }
    };
}

counters! {
    /// Calls answered from the cache without running the function.
    hits,
    /// Hits answered by the local tier, without a Redis command (counted
    /// in `hits` too).
    local_hits,
    /// Lookups that found no valid entry (absent, invalidated or undecodable).
    misses,
    /// Entries found but invalidated by a tag (counted in `misses` too).
    stale,
    /// Stored values that no longer decode (counted in `misses` too); they are overwritten.
    decode_errors,
    /// Backend operations that failed or timed out; the call went on without the cache.
    errors,
    /// Backend operations that timed out (counted in `errors` too).
    timeouts,
    /// Runs of a cached function's body.
    computations,
    /// Values written to the cache.
    stores,
    /// Callers that got the value computed by a concurrent caller in this process.
    coalesced,
    /// Callers that waited for another process to fill the entry.
    lease_waits,
    /// Version keys invalidated: one per tag, function or namespace, and
    /// two per call (its entry and its version).
    invalidations,
    /// Round trips to Redis (a pipeline is one; always 0 in memory).
    round_trips,
    /// Calls that skipped Redis, running uncached at once, because the
    /// circuit breaker was open.
    skipped,
    /// Values returned but not stored, being larger than `max_value_bytes`;
    /// and stored entries that large, deleted after a read of them timed out.
    oversized,
    /// Calls run without the cache inside [`bypass`](crate::bypass).
    bypassed,
    /// Calls answered with a value past its TTL, within `grace`: while it
    /// was refreshed, or because the refresh failed or took longer than
    /// `timeout`.
    grace_hits,
    /// Refreshes of a value in grace or ahead of its expiry
    /// (`refresh_ahead`), each a run of the body (counted in
    /// `computations` too).
    refreshes,
    /// Refreshes whose body failed (`Err` or a panic), the grace value
    /// served instead.
    grace_on_error,
    /// Callers that stopped waiting for a refresh after `timeout` and got
    /// the grace value.
    body_timeouts,
    /// Values returned but not stored because a tag they give their entry
    /// (`tags_from`) has a version newer than the call: it may have been
    /// invalidated while the body ran.
    value_tags_changed,
}

impl Stats {
    /// `hits / (hits + misses)`, or 0 when there were no lookups.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

impl Counters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}
