//! What a hit does: one read of the entry and its versions, checked as
//! bytes.

use super::{Bytes, Call, Found, Source, Step};
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
            .read(&self.entry_key, &self.version_keys, None)
            .await;
        let snap = match read {
            Ok(snap) => snap,
            Err(e) => {
                self.fail(&e, "read");
                return self.offline().await;
            }
        };
        match self.check(&snap) {
            Check::Current(at) => {
                return Step::Serve(Found {
                    bytes: Bytes::Entry(snap.entry.unwrap_or_default(), at),
                    source: Source::Read {
                        versions: snap.versions,
                        epoch,
                    },
                });
            }
            Check::Absent | Check::OtherCodec => {}
            Check::Stale => Counters::add(&stats.stale),
            Check::Corrupt => {
                Counters::add(&stats.decode_errors);
                tracing::warn!(
                    target: "cache_runtime",
                    key = %self.entry_key,
                    "stored entry is not one this version wrote; recomputing"
                );
            }
        }
        Counters::add(&stats.misses);
        tracing::debug!(target: "cache_runtime", key = %self.entry_key, "cache miss");
        self.miss(snap.versions, epoch).await
    }
}
