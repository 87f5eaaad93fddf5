//! What a hit does: one read of the entry and its versions (one `MGET` on a
//! single node, its keys written from their pieces), checked as bytes.

use super::{Call, Found, Step};
use crate::entry::Check;
use crate::stats::Counters;

impl Call<'_> {
    /// Reads the entry; a current one is served, anything else is a miss.
    pub(super) async fn lookup(&self) -> Step<'_> {
        let stats = &self.inner.stats;
        let epoch = self.inner.flights.epoch();
        let read = self
            .inner
            .backend
            .read(self.entry(), self.version_names(), None)
            .await;
        let snap = match read {
            Ok(snap) => snap,
            Err(e) => {
                self.fail(&e, "read");
                return Box::pin(self.offline()).await;
            }
        };
        match self.check(&snap) {
            Check::Current(at) => return Step::Serve(Found::Hit { snap, at, epoch }),
            Check::Absent | Check::OtherCodec => {}
            Check::Stale => Counters::add(&stats.stale),
            Check::Corrupt => {
                Counters::add(&stats.decode_errors);
                tracing::warn!(
                    target: "cache_runtime",
                    key = %self.entry(),
                    "stored entry is not one this version wrote; recomputing"
                );
            }
        }
        Counters::add(&stats.misses);
        tracing::debug!(target: "cache_runtime", key = %self.entry(), "cache miss");
        // Boxed: a hit's future stays small (it is moved and polled on
        // every call), and only a miss pays for the miss's state.
        Box::pin(self.miss(snap.into_versions(), epoch)).await
    }
}
