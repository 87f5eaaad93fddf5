//! Fail-open: every backend failure of a call ends here. It is counted
//! and logged ([`Call::fail`], [`Inner::record_error`]), the call makes no
//! further write, and it goes on without the cache ([`Call::offline`]):
//! the body runs and its result is returned.

use std::sync::atomic::Ordering;

use super::{Call, Fill, Found, Step};
use crate::engine::Inner;
use crate::error::Error;
use crate::singleflight::{Join, Landing};
use crate::stats::{Counters, Stat};

impl Call<'_> {
    /// Counts and logs a backend failure of this call: it makes no further
    /// write.
    pub(super) fn fail(&self, error: &Error, op: &'static str) {
        self.failed.store(true, Ordering::Relaxed);
        // The cache's counters are `record_error`'s.
        if matches!(error, Error::CircuitOpen) {
            self.function.count(Stat::skipped);
        } else {
            self.function.count(Stat::errors);
            if error.is_timeout() {
                self.function.count(Stat::timeouts);
            }
        }
        self.inner.record_error(error, op);
    }

    /// Whether the backend failed this call.
    pub(super) fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// The backend failed: run the body without the cache, still sharing
    /// one computation among concurrent callers of this process, so that a
    /// Redis outage does not turn into a stampede on the database.
    pub(super) async fn offline(&self) -> Step<'_> {
        if !self.spec.options.lock {
            return Step::Compute(Fill::uncached(self, None));
        }
        // Keyed by the count of invalidations this process made, so that a
        // call starting after one never joins a computation from before it.
        let epoch = self
            .inner
            .stats
            .invalidations
            .load(std::sync::atomic::Ordering::Acquire);
        let mut key = self.key_strings().entry.clone().into_bytes();
        key.extend_from_slice(b"\0offline\0");
        key.extend_from_slice(&epoch.to_le_bytes());
        // Another process's invalidation is not counted here, and may have
        // returned (its keys on a shard this call cannot reach, say) before
        // this call started: a value whose computation began before this
        // call went offline may be older than it. Such a value is left to
        // its own callers; this one waits for it to land and then shares
        // (or leads) the next computation, which begins after. Still one
        // computation of the key at a time in this process.
        let offline_since = std::time::Instant::now();
        loop {
            match self.inner.flights.join(key.clone()) {
                Join::Leader(flight) => return Step::Compute(Fill::uncached(self, Some(flight))),
                Join::Follower(follower) => {
                    self.park();
                    match (follower.began(), follower.wait().await) {
                        (began, Landing::Value(bytes)) if began >= offline_since => {
                            return Step::Serve(Found::Shared(bytes));
                        }
                        (_, Landing::Value(_)) => {}
                        (_, Landing::Failed(shared)) => return Step::Failed(shared),
                        (_, Landing::Abandoned) => {}
                    }
                }
            }
        }
    }
}

impl Inner {
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
