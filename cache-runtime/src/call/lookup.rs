//! What a hit does: one read of the entry and its versions (one `MGET` on a
//! single node, its keys written from their pieces), checked as bytes; or,
//! when every version is held in process ([`crate::held`]), one `GET` of
//! the entry, checked against the held versions.

use std::sync::atomic::Ordering;

use ::redis::Value;

use super::{Call, Found, Step};
use crate::backend::Snapshot;
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
        let tier = self.inner.local.as_deref();
        // A function with `tags_from` reads the versions its entries name:
        // the held ones are not enough.
        let holds = !self.spec.options.tags_from;
        if let Some(held) = tier
            .filter(|_| holds)
            .and_then(|t| t.held(self.version_names()))
        {
            match self.read_held(&held, ttl).await {
                Ok(Some((snap, at))) => return self.current(snap, at, epoch),
                // Not current under the held versions: read as when
                // nothing is held.
                Ok(None) => {}
                Err(e) => return self.read_failed(&e).await,
            }
        }
        // Taken before the read: versions read before an invalidation was
        // applied are not held after it.
        let ticket = tier.and_then(|t| t.ticket());
        if tier.is_some() && ticket.is_none() {
            // The backplane is down: nothing is held until it is (back) up.
            if let Some(backplane) = &self.inner.backplane {
                backplane.start();
            }
        }
        let read = self
            .inner
            .backend
            .read(
                self.entry(),
                self.version_names(),
                None,
                ttl || ticket.is_some(),
            )
            .await;
        let snap = match read {
            Ok(snap) => snap,
            Err(e) => return self.read_failed(&e).await,
        };
        let mut snap = if self.spec.options.tags_from {
            match Box::pin(self.complete(snap)).await {
                Ok(snap) => snap,
                Err(e) => return self.read_failed(&e).await,
            }
        } else {
            snap
        };
        match self.check(&mut snap) {
            Check::Current(at) => {
                if let (Some(tier), Some(ticket), Some(life)) = (tier, ticket, snap.ttl) {
                    // Its versions' keys live at least as long as the
                    // entry: each entry stored under one extends it.
                    let versions = self
                        .version_names()
                        .map(|k| k.to_string())
                        .zip(snap.versions().map(|v| v.unwrap_or_default()));
                    tier.hold(ticket, versions, ticket.at() + life);
                }
                return self.current(snap, at, epoch);
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

impl Call<'_> {
    /// Reads only the entry, for versions all held: the snapshot of a hit
    /// (the held values standing for the versions), or `None` when the
    /// entry is not current under them.
    async fn read_held(
        &self,
        held: &[std::sync::Arc<crate::held::Held>],
        ttl: bool,
    ) -> Result<Option<(Snapshot, usize)>, crate::error::Error> {
        let (entry, pttl) = self.inner.backend.read_entry(self.entry(), ttl).await?;
        let mut items = Vec::with_capacity(held.len() + 1);
        items.push(entry);
        items.extend(held.iter().map(|h| Value::BulkString(h.value().to_vec())));
        let mut snap = Snapshot::new(items, false)?;
        snap.ttl = pttl;
        snap.held_until = held.iter().map(|h| h.until()).min();
        Ok(match self.check(&mut snap) {
            Check::Current(at) => Some((snap, at)),
            _ => None,
        })
    }

    /// A current entry: served, or (with `grace` or `refresh_ahead`) as its
    /// freshness says.
    fn current(&self, snap: Snapshot, at: usize, epoch: u64) -> Step<'_> {
        let found = Found::Hit { snap, at, epoch };
        if self.spec.options.records_freshness() {
            return self.by_freshness(found);
        }
        Step::Serve(found)
    }

    /// A read that failed: counted and logged, then the call goes on
    /// without the cache.
    async fn read_failed(&self, e: &crate::error::Error) -> Step<'_> {
        self.fail(e, "read");
        if e.is_timeout() {
            self.sweep_oversized();
        }
        Box::pin(self.offline()).await
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

/// A read that never computes (`Entry::get`): the value of a current
/// entry, decoded with `decode`, or `None` when the entry is absent, stale
/// (a tag, the call or the namespace was invalidated), past its freshness
/// (within `grace`), or does not decode. A backend failure is a miss too
/// (counted and logged: fail-open). An error only when the key cannot be
/// derived.
pub(crate) async fn read_current<T>(
    inner: &std::sync::Arc<crate::engine::Inner>,
    spec: &'static crate::spec::Spec,
    key: crate::key::KeyPart,
    tags: &[String],
    decode: impl FnOnce(&[u8]) -> Result<T, crate::codec::CodecError>,
) -> Result<Option<T>, crate::canonical::EncodeError> {
    let call = Call::new(inner, spec, key, tags)?;
    let freshness = spec.options.records_freshness();
    let read = inner
        .backend
        .read(call.entry(), call.version_names(), None, freshness)
        .await;
    let mut snap = match read {
        Ok(snap) => snap,
        Err(e) => {
            call.fail(&e, "read");
            call.count(Stat::misses);
            return Ok(None);
        }
    };
    let Check::Current(at) = call.check(&mut snap) else {
        call.count(Stat::misses);
        return Ok(None);
    };
    let found = Found::Hit { snap, at, epoch: 0 };
    if freshness
        && call
            .fresh_for(&found)
            .is_none_or(|(fresh_ms, _)| fresh_ms == 0)
    {
        call.count(Stat::misses);
        return Ok(None);
    }
    match decode(found.value()) {
        Ok(value) => {
            call.served(&found);
            Ok(Some(value))
        }
        Err(error) => {
            call.count(Stat::decode_errors);
            call.count(Stat::misses);
            tracing::warn!(
                target: "cache_runtime",
                key = %call.entry(),
                %error,
                "stored value does not decode; read as a miss"
            );
            Ok(None)
        }
    }
}
