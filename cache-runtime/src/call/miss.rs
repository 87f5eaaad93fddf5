//! What a miss does before the body runs: share the computation with
//! concurrent callers of this process (flights), create the versions the
//! value will carry, and take the fill lease so that one process computes.
//!
//! Callers share a computation only if they saw the same versions, so that
//! one that read after an invalidation never receives a value computed from
//! data read before it:
//! - a flight is first found under the versions its leader *read* (a
//!   missing one marked as such), and the body does not start until the
//!   leader has created the missing ones: whoever joined by then read before
//!   the body ran;
//! - once the leader knows the versions the value will carry, the flight
//!   moves under them, where only callers that read those same versions
//!   find it.

use super::{Call, Fill, Found, Step};
use crate::backend::NewVersion;
use crate::entry::{self, Check};
use crate::lease::{Acquired, LeaseRequest, Wait};
use crate::singleflight::{Flight, Join, Landing};
use crate::stats::Stat;

/// The in-process flight of an entry under versions (`None` where one is
/// missing).
fn flight_key<'v>(entry_key: &str, versions: impl Iterator<Item = Option<&'v [u8]>>) -> Vec<u8> {
    let mut key = Vec::with_capacity(entry_key.len() + 100);
    key.extend_from_slice(entry_key.as_bytes());
    for v in versions {
        match v {
            Some(v) => {
                key.extend_from_slice(b"\0+");
                key.extend_from_slice(v);
            }
            None => key.extend_from_slice(b"\0-"),
        }
    }
    key
}

impl Call<'_> {
    /// A miss, given the versions the lookup read.
    pub(super) async fn miss(&self, read: Vec<Option<Vec<u8>>>, epoch: u64) -> Step<'_> {
        if !self.spec.options.lock {
            return match self.versions(read, None).await {
                Some((versions, _)) => Step::Compute(Fill::new(self, versions, None, None)),
                None => self.offline().await,
            };
        }
        let (mut read, mut epoch) = (read, epoch);
        loop {
            let key = flight_key(&self.key_strings().entry, read.iter().map(Option::as_deref));
            match self.inner.flights.join(key.clone()) {
                // A refresh leaves the key to the caller already on it.
                Join::Follower(_) if self.is_refresh() => return Step::RefreshedElsewhere,
                Join::Follower(follower) => {
                    epoch = self.inner.flights.epoch();
                    self.park();
                    match follower.wait().await {
                        // With `tags_from`, read back (see `reread_shared`).
                        Landing::Value(_) if self.spec.options.tags_from => {
                            return Box::pin(self.reread_shared()).await;
                        }
                        Landing::Value(bytes) => return Step::Serve(Found::Shared(bytes)),
                        // The leader's result is not stored (an `Err`):
                        // its clone, or the body now rather than a queue
                        // behind the next leader (the convoy).
                        Landing::Failed(shared) => return Step::Failed(shared),
                        // The leader panicked or was cancelled: start
                        // again; one of us leads.
                        Landing::Abandoned => {}
                    }
                }
                Join::Leader(flight) => {
                    if flight.landed_since(epoch) {
                        // A flight of this process may have filled the key
                        // after our read: look again before computing.
                        let freshness = self.spec.options.records_freshness() || self.reads_ttl;
                        let reread = match self
                            .inner
                            .backend
                            .read(self.entry(), self.version_names(), None, freshness)
                            .await
                        {
                            Ok(snap) => self.complete(snap).await,
                            Err(e) => Err(e),
                        };
                        let mut snap = match reread {
                            Ok(snap) => snap,
                            Err(e) => {
                                self.fail(&e, "read");
                                drop(flight);
                                return self.offline().await;
                            }
                        };
                        // A refresh (of a value in grace or ahead of its
                        // expiry) wants a newer fill than the one it
                        // refreshes, and a recomputation a new one: a
                        // re-read that finds the same fill current is not
                        // their answer (the epoch moves with any key's
                        // flight, not only this one's).
                        if let Check::Current(at) = self.check(&mut snap)
                            && !(self.is_refresh() && self.refreshes_this(&snap))
                            && !self.recomputing.load(std::sync::atomic::Ordering::Relaxed)
                        {
                            if let Some(entry) = snap.entry() {
                                flight.land_value(&entry[at..]);
                            }
                            return Step::Serve(Found::Read {
                                snap,
                                at,
                                coalesced: true,
                            });
                        }
                        read = snap.into_versions();
                    }
                    return self.lead(flight, &key, read).await;
                }
            }
        }
    }

    /// With `tags_from`, a caller that joined a computation does not take
    /// its value as handed: an invalidation of one of the value's tags may
    /// have landed after the leader read their versions and before this
    /// caller began (the flight is found under the function's versions,
    /// not the value's). The entry is read back, with its value's tags, and
    /// served only if current; otherwise this caller computes, uncached.
    async fn reread_shared(&self) -> Step<'_> {
        let freshness = self.spec.options.records_freshness() || self.reads_ttl;
        let reread = match self
            .inner
            .backend
            .read(self.entry(), self.version_names(), None, freshness)
            .await
        {
            Ok(snap) => self.complete(snap).await,
            Err(e) => Err(e),
        };
        match reread {
            Ok(mut snap) => match self.check(&mut snap) {
                Check::Current(at) => Step::Serve(Found::Read {
                    snap,
                    at,
                    coalesced: true,
                }),
                _ => Step::Compute(Fill::uncached(self, None)),
            },
            Err(e) => {
                self.fail(&e, "read");
                Step::Compute(Fill::uncached(self, None))
            }
        }
    }

    /// The flight's leader: creates the missing versions and tries the
    /// lease in one round trip, then computes, or waits for the process
    /// that holds the lease.
    async fn lead<'f>(
        &'f self,
        mut flight: Flight<'f>,
        joined: &[u8],
        read: Vec<Option<Vec<u8>>>,
    ) -> Step<'f> {
        let request = self.inner.backend.leases().map(|leases| {
            LeaseRequest::new(
                leases,
                self.inner.backplane.as_ref(),
                crate::schema::lease_key(&self.inner.namespace, &self.key_strings().entry),
                self.lease_ttl(),
            )
        });
        let mut request = request;
        let attempt = request.as_ref().map(LeaseRequest::attempt);
        let Some((versions, taken)) = self.versions(read, attempt.as_ref()).await else {
            if let Some(request) = request {
                request.abandon();
            }
            drop(flight);
            return self.offline().await;
        };
        if let Some(request) = &mut request {
            request.answered(taken);
        }
        let key = flight_key(
            &self.key_strings().entry,
            versions.values.iter().map(|v| Some(v.as_slice())),
        );
        if key != joined {
            // Another flight of this process that computes under the same
            // versions has our value, unless we hold the lease. If it ends
            // without one, we take its place.
            while let Some(other) = flight.rekey(key.clone()) {
                if taken {
                    break;
                }
                if self.is_refresh() {
                    return Step::RefreshedElsewhere;
                }
                self.park();
                if let Landing::Value(bytes) = other.wait().await {
                    flight.land(Landing::Value(bytes.clone()));
                    return Step::Serve(Found::Shared(bytes));
                }
            }
        }
        let Some(request) = request else {
            return Step::Compute(Fill::new(self, versions, None, Some(flight)));
        };
        if !taken && self.is_refresh() {
            // Another process holds the lease: it refreshes the key.
            return Step::RefreshedElsewhere;
        }
        // With `tags_from`, the versions of the value's tags are read once
        // the entry is found (below); a compressed value is opened then too.
        let filled = |snap: &crate::backend::Snapshot| match self.check_first(snap) {
            Check::Current(at) => Some(at),
            _ => None,
        };
        let keys = self.key_strings();
        let wait = Wait {
            entry_key: &keys.entry,
            version_keys: &keys.versions,
            filled: &filled,
            ttl: self.reads_ttl,
        };
        let waiting = std::sync::OnceLock::new();
        let waited = || {
            self.park();
            self.count(Stat::lease_waits);
            let _ = waiting.set(std::time::Instant::now());
        };
        let acquired = request.acquire(taken, wait, waited).await;
        if let Some(since) = waiting.get() {
            self.function.waited(since.elapsed());
        }
        match acquired {
            Ok(Acquired::Held(guard)) => {
                Step::Compute(Fill::new(self, versions, Some(guard), Some(flight)))
            }
            // The holder failed: compute now, as the waiters of this
            // process would, rather than queue for the lease.
            Ok(Acquired::HolderFailed) => {
                Step::Compute(Fill::new(self, versions, None, Some(flight)))
            }
            Ok(Acquired::Filled(snap, at)) => {
                let current = if self.spec.options.tags_from {
                    match self.complete(snap).await {
                        Ok(mut snap) => match self.check(&mut snap) {
                            Check::Current(at) => Some((snap, at)),
                            Check::Corrupt => {
                                self.count(Stat::decode_errors);
                                None
                            }
                            _ => None,
                        },
                        Err(e) => {
                            self.fail(&e, "read");
                            None
                        }
                    }
                } else {
                    let mut snap = snap;
                    match self.open(&mut snap, at) {
                        Check::Current(at) => Some((snap, at)),
                        _ => {
                            self.count(Stat::decode_errors);
                            None
                        }
                    }
                };
                // Filled, but one of the value's tags was invalidated
                // since, or with a value that does not decompress:
                // computed here (and stored over it).
                let Some((snap, at)) = current else {
                    return Step::Compute(Fill::new(self, versions, None, Some(flight)));
                };
                if let Some(entry) = snap.entry() {
                    flight.land_value(&entry[at..]);
                }
                Step::Serve(Found::Read {
                    snap,
                    at,
                    coalesced: false,
                })
            }
            Err(e) => {
                self.fail(&e, "lease");
                Step::Compute(Fill::new(self, versions, None, Some(flight)))
            }
        }
    }

    /// The version of every version key, the missing ones created (each a
    /// fresh random id, unless another caller created it first), with the
    /// lease attempt in the same round trip. `None` when the backend failed.
    pub(super) async fn versions(
        &self,
        read: Vec<Option<Vec<u8>>>,
        lease: Option<&crate::backend::LeaseTry<'_>>,
    ) -> Option<(Versions, bool)> {
        // A version read that this crate did not write (junk written over
        // it) is repaired like a missing one: adopted, it would make every
        // fill under it fail, and every call a miss.
        let usable = |v: &Option<Vec<u8>>| v.as_deref().is_some_and(entry::is_version);
        if lease.is_none() && read.iter().all(usable) {
            let values = read.into_iter().flatten().collect();
            return Some((Versions { values }, false));
        }
        let missing: Vec<NewVersion<'_>> = self
            .key_strings()
            .versions
            .iter()
            .zip(&read)
            .filter(|(_, v)| !usable(v))
            .map(|(k, v)| NewVersion {
                key: k.as_str(),
                fresh: crate::ids::random_id(),
                replace: v.clone(),
            })
            .collect();
        // A version starts with the entry's TTL (grace included), plus the
        // lease's as room for the body to run; each entry stored under it
        // extends it to its own, so versions expire with the last entry
        // that carries them.
        let version_ttl = self
            .ttl
            .saturating_add(self.spec.options.grace())
            .saturating_add(self.lease_ttl());
        let prepared = self
            .inner
            .backend
            .prepare(&missing, version_ttl, lease)
            .await;
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.fail(&e, "versions");
                return None;
            }
        };
        let mut found = prepared.versions.into_iter();
        let values = read
            .into_iter()
            .map(|v| match v {
                Some(v) if entry::is_version(&v) => Some(v),
                _ => found.next(),
            })
            .collect::<Option<Vec<_>>>()?;
        Some((Versions { values }, prepared.leased))
    }
}

/// The versions a value is stored under.
pub(crate) struct Versions {
    pub values: Vec<Vec<u8>>,
}
