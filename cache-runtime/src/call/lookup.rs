//! What a hit does: one read of the entry and its versions (one `MGET` on a
//! single node, its keys written from their pieces), checked as bytes.

use std::sync::atomic::Ordering;

use super::{Call, Found, Step};
use crate::entry::Check;
use crate::stats::{Counters, Stat};

impl Call<'_> {
    /// Reads the entry; a current one is served, anything else is a miss.
    /// With `ttl`, reads the entry's TTL too, for the local tier; a
    /// function that records freshness always does (freshness is read
    /// from it, by the server's clock).
    pub(super) async fn lookup(&self, ttl: bool) -> Step<'_> {
        let ttl = ttl || self.reads_ttl || self.spec.options.records_freshness();
        let epoch = self.inner.flights.epoch();
        let read = self
            .inner
            .backend
            .read(self.entry(), self.version_names(), None, ttl)
            .await;
        let snap = match read {
            Ok(snap) => snap,
            Err(e) => {
                self.fail(&e, "read");
                if e.is_timeout() {
                    self.sweep_oversized();
                }
                return Box::pin(self.offline()).await;
            }
        };
        match self.check(&snap) {
            Check::Current(at) => {
                let found = Found::Hit { snap, at, epoch };
                if self.spec.options.records_freshness() {
                    return self.by_freshness(found);
                }
                return Step::Serve(found);
            }
            Check::Absent | Check::OtherCodec => {}
            Check::Stale => self.count(Stat::stale),
            Check::Corrupt => {
                self.count(Stat::decode_errors);
                tracing::warn!(
                    target: "cache_runtime",
                    key = %self.entry(),
                    "stored entry is not one this version wrote; recomputing"
                );
            }
        }
        self.count(Stat::misses);
        tracing::debug!(target: "cache_runtime", key = %self.entry(), "cache miss");
        // Boxed: a hit's future stays small (it is moved and polled on
        // every call), and only a miss pays for the miss's state.
        Box::pin(self.miss(snap.into_versions(), epoch)).await
    }
}

/// How long the check for an oversized entry may take.
const SWEEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl Call<'_> {
    /// After a read timed out: in the background, deletes the entry if it is
    /// larger than `max_value_bytes` (written before that bound, or by other
    /// code), so that it does not cost every later call the op timeout
    /// until it expires. One such check at a time per cache, so that an
    /// outage, where every read times out, does not double the load.
    fn sweep_oversized(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = self.inner.clone();
        if inner.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let key = self.entry().to_string();
        let max = inner.max_value_bytes;
        runtime.spawn(async move {
            // Longer than the op timeout: the read may have timed out
            // because Redis was slow, and this runs off the call's path.
            if let Ok(true) = inner.backend.drop_if_larger(&key, max, SWEEP_TIMEOUT).await {
                Counters::add(&inner.stats.oversized);
                tracing::warn!(
                    target: "cache_runtime",
                    %key,
                    max_value_bytes = max,
                    "deleted an entry larger than `max_value_bytes` whose read timed out"
                );
            }
            inner.sweeping.store(false, Ordering::Release);
        });
    }
}
