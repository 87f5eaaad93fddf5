//! What a call writes after its body ran: the entry under the versions read
//! before it ran, the lease's release, and the value for the callers that
//! waited in this process.

use std::time::Duration;

use super::Call;
use super::miss::Versions;
use crate::backend::Store;
use crate::duration::millis;
use crate::entry;
use crate::lease::LeaseGuard;
use crate::outcome::Keep;
use crate::singleflight::{Flight, Landing, Shared};
use crate::stats::Stat;

/// The writes pending on the body's result.
pub(crate) struct Fill<'c> {
    call: &'c Call<'c>,
    /// The versions the entry carries; `None` when it is not stored.
    versions: Option<Versions>,
    lease: Option<LeaseGuard>,
    flight: Option<Flight<'c>>,
    /// The entry's time to live (jittered), set by `start`.
    ttl: Duration,
    /// With `tags_from`: the tags the value gives its entry.
    value_tags: Vec<String>,
}

impl<'c> Fill<'c> {
    pub(super) fn new(
        call: &'c Call<'c>,
        versions: Versions,
        lease: Option<LeaseGuard>,
        flight: Option<Flight<'c>>,
    ) -> Self {
        Fill {
            call,
            versions: Some(versions),
            lease,
            flight,
            ttl: call.ttl,
            value_tags: Vec::new(),
        }
    }

    /// Nothing is stored; the value still goes to the flight's followers.
    pub(super) fn uncached(call: &'c Call<'c>, flight: Option<Flight<'c>>) -> Self {
        Fill {
            call,
            versions: None,
            lease: None,
            flight,
            ttl: call.ttl,
            value_tags: Vec::new(),
        }
    }

    /// The call this fill belongs to.
    pub(crate) fn call(&self) -> &'c Call<'c> {
        self.call
    }

    /// The TTL the value chose (`ttl_from`), instead of the function's:
    /// at most 100 years. Whether the value can be stored with it (not
    /// under a millisecond). Before [`start`](Self::start).
    pub(crate) fn choose_ttl(&mut self, ttl: Duration) -> bool {
        const LONGEST: Duration = Duration::from_secs(36_500 * 24 * 60 * 60);
        self.ttl = ttl.min(LONGEST);
        self.ttl >= Duration::from_millis(1)
    }

    /// The tags the value gives its entry (`tags_from`), before
    /// [`start`](Self::start).
    pub(crate) fn tag_value(&mut self, mut tags: Vec<String>) {
        tags.sort_unstable();
        tags.dedup();
        self.value_tags = tags;
    }

    /// The buffer to encode the value into: the entry's header, if the
    /// entry is to be stored. `took` is how long the body ran (recorded
    /// for `refresh_ahead`).
    pub(crate) fn start(&mut self, took: Duration) -> Vec<u8> {
        let Some(versions) = &self.versions else {
            return Vec::new();
        };
        let options = &self.call.spec.options;
        self.ttl = if options.jitter {
            jittered(self.ttl, self.call.inner.ttl_jitter)
        } else {
            self.ttl
        };
        let fresh = options.records_freshness().then(|| entry::Fresh {
            until_ms: entry::now_ms().saturating_add(millis(self.ttl)),
            delta_ms: millis(took),
        });
        match entry::header(options.codec, fresh, &versions.values, 256) {
            Ok(header) => header,
            Err(entry::BadVersion) => {
                tracing::warn!(
                    target: "cache_runtime",
                    key = %self.call.entry(),
                    "a tag version in Redis is not one this crate wrote; not cached"
                );
                self.versions = None;
                Vec::new()
            }
        }
    }

    /// Stores `encoded` (the buffer of [`start`](Self::start) with the
    /// value from `at`) if it is to be kept, releases the lease and lands
    /// the flight: with the value for the callers waiting in this process,
    /// or, when there is nothing to share, telling them to run the body
    /// themselves. After a backend failure in the call it writes nothing:
    /// the lease, if any, is released from its guard's drop. What became
    /// of the value: `Share` for one too large to store.
    pub(crate) async fn finish(
        mut self,
        encoded: Vec<u8>,
        at: usize,
        keep: Keep,
        shared: Option<Shared>,
    ) -> Keep {
        let call = self.call;
        let inner = call.inner;
        // Too large to store: still the callers' value.
        let keep = match keep {
            Keep::Store if encoded.len() - at > inner.max_value_bytes => {
                call.count(Stat::oversized);
                if call.spec.first_oversized() {
                    tracing::warn!(
                        target: "cache_runtime",
                        function = call.spec.path(),
                        bytes = encoded.len() - at,
                        max_value_bytes = inner.max_value_bytes,
                        "value larger than `max_value_bytes`: returned, not stored (logged once per function)"
                    );
                }
                Keep::Share
            }
            keep => keep,
        };
        // With `tags_from`: the versions of the value's tags, read (or
        // created) now; the value is not stored if one of them changed
        // since the call started.
        let (keep, refused, encoded, at, value_keys) = match (keep, &self.versions) {
            (Keep::Store, Some(_)) if call.spec.options.tags_from && !call.failed() => {
                match self.value_versions(&encoded[..at]).await {
                    Ok(Some((header, keys))) => {
                        let mut entry = header;
                        let start = entry.len();
                        entry.extend_from_slice(&encoded[at..]);
                        (Keep::Store, false, entry, start, keys)
                    }
                    Ok(None) => (Keep::Share, true, encoded, at, Vec::new()),
                    Err(e) => {
                        call.fail(&e, "versions");
                        (Keep::Share, false, encoded, at, Vec::new())
                    }
                }
            }
            _ => (keep, false, encoded, at, Vec::new()),
        };
        // Compressed when larger than `compress_above`: the value only,
        // after the header (the tags from the value included); a refused
        // value is not stored, so not compressed. The callers of this
        // process get the value as encoded.
        let compressed = match (keep, inner.compress_above) {
            (Keep::Store, Some(above)) if encoded.len() - at > above && self.versions.is_some() => {
                Some(entry::compress(&encoded, at))
            }
            _ => None,
        };
        let store = match (keep, &self.versions) {
            (Keep::Store, Some(versions)) => {
                let keys = call.key_strings();
                Some(Store {
                    key: &keys.entry,
                    value: compressed.as_deref().unwrap_or(&encoded),
                    // Kept `grace` past its freshness.
                    ttl: self.ttl.saturating_add(call.spec.options.grace()),
                    // Every version outlives the entry that carries it,
                    // grace included: one this call created too (its body
                    // may have run past the lease's room).
                    extend: keys
                        .versions
                        .iter()
                        .chain(value_keys.iter().map(|(k, _)| k))
                        .map(String::as_str)
                        .collect(),
                    versions: keys
                        .versions
                        .iter()
                        .map(String::as_str)
                        .zip(versions.values.iter().map(Vec::as_slice))
                        .chain(value_keys.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                        .collect(),
                })
            }
            _ => None,
        };
        if !call.failed() {
            let written = match self.lease.take() {
                // A refused value is announced like a failure: the other
                // processes' waiters compute rather than take it.
                Some(guard) => {
                    guard
                        .finish(store.as_ref(), keep == Keep::Nothing || refused)
                        .await
                }
                None => match &store {
                    Some(store) => inner.backend.store(store).await,
                    None => Ok(()),
                },
            };
            match written {
                Ok(()) if store.is_some() => call.count(Stat::stores),
                Ok(()) => {}
                Err(e) => call.fail(&e, "store"),
            }
        }
        if let Some(flight) = self.flight.take() {
            match keep {
                // Callers that joined this flight may have started after
                // the invalidation that refused it: each computes.
                _ if refused => flight.land(Landing::Failed(None)),
                Keep::Store | Keep::Share => flight.land_value(&encoded[at..]),
                Keep::Nothing => flight.land(Landing::Failed(shared)),
            }
        }
        keep
    }
}

impl Fill<'_> {
    /// With `tags_from`, after the body: the versions of the tags the
    /// value gives its entry, created where missing (stamped by the
    /// server's clock), in one round trip. `None` when one of them was
    /// created at or after the call's start (less the clocks' margin): the
    /// tag may have been invalidated while the body ran, and the value,
    /// read before that, is not stored. Otherwise the header with the
    /// tags and their versions, and their keys with the versions.
    async fn value_versions(
        &self,
        header: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<(String, Vec<u8>)>)>, crate::error::Error> {
        let call = self.call;
        let inner = call.inner;
        let keys: Vec<String> = self
            .value_tags
            .iter()
            .map(|tag| crate::schema::tag_key(&inner.namespace, tag))
            .collect();
        // Created like the other versions: the entry's life and the
        // lease's; the store extends them to the entry's.
        let version_ttl = call
            .ttl
            .saturating_add(call.spec.options.grace())
            .saturating_add(call.lease_ttl());
        let versions = inner.backend.stamped_versions(&keys, version_ttl).await?;
        let started = call.started.load(std::sync::atomic::Ordering::Relaxed);
        let since = started.saturating_sub(inner.backend.clock_margin());
        let changed = started == 0
            || versions
                .iter()
                .any(|v| entry::stamp(v).is_none_or(|stamp| stamp >= since));
        if changed {
            call.count(Stat::value_tags_changed);
            tracing::debug!(
                target: "cache_runtime",
                key = %call.entry(),
                "a tag from the value is newer than the call: returned, not stored"
            );
            return Ok(None);
        }
        let tags: Vec<(&str, &[u8])> = self
            .value_tags
            .iter()
            .map(String::as_str)
            .zip(versions.iter().map(Vec::as_slice))
            .collect();
        let Ok(header) = entry::with_value_tags(header.to_vec(), &tags) else {
            return Ok(None);
        };
        Ok(Some((header, keys.into_iter().zip(versions).collect())))
    }
}

/// `ttl` shortened by a random share of it, up to `jitter` (never below
/// 1 ms, never lengthened).
fn jittered(ttl: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return ttl;
    }
    let cut = ttl.mul_f64(jitter * rand::random::<f64>());
    ttl.saturating_sub(cut).max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::jittered;

    #[test]
    fn jitter_only_shortens_within_its_fraction() {
        let ttl = Duration::from_secs(100);
        assert_eq!(jittered(ttl, 0.0), ttl);
        let ttls: Vec<Duration> = (0..1000).map(|_| jittered(ttl, 0.1)).collect();
        assert!(
            ttls.iter()
                .all(|t| *t <= ttl && *t >= Duration::from_secs(90))
        );
        let (min, max) = (ttls.iter().min().unwrap(), ttls.iter().max().unwrap());
        assert!(
            *max - *min > Duration::from_secs(5),
            "spread: {min:?}..{max:?}"
        );
        assert_eq!(
            jittered(Duration::from_millis(1), 1.0),
            Duration::from_millis(1)
        );
    }
}
