//! The call without the cache, after a backend failure.

use super::{Call, Fill, Found, Step};
use crate::singleflight::{Join, Landing};

impl Call<'_> {
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
        let mut key = self.owned().entry.clone().into_bytes();
        key.extend_from_slice(b"\0offline\0");
        key.extend_from_slice(&epoch.to_le_bytes());
        loop {
            match self.inner.flights.join(key.clone()) {
                Join::Leader(flight) => return Step::Compute(Fill::uncached(self, Some(flight))),
                Join::Follower(follower) => match follower.wait().await {
                    Landing::Value(bytes) => return Step::Serve(Found::Shared(bytes)),
                    Landing::Failed => return Step::Compute(Fill::uncached(self, None)),
                    Landing::Abandoned => {}
                },
            }
        }
    }
}
