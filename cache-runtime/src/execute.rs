//! One call of a `#[cached]` function: look up, and on a miss compute once
//! (in this process and across processes) and fill.
//!
//! ```text
//! read entry + tag versions ──valid──▶ hit: decode and return
//!        │ miss / stale / undecodable
//!        ▼
//! join the in-process flight ──follower──▶ wait for the leader's value
//!        │ leader
//!        ▼
//! take the Redis lease ──taken by another process──▶ wait for its fill
//!        │ held                                      (announcement or backoff)
//!        ▼
//! run the body, store value + versions, release lease, announce, land flight
//! ```
//!
//! Any backend failure on the way makes the call go on without the cache
//! (fail-open): the body runs and its result is returned, the failure is
//! counted and logged.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::redis::RedisBackend;
use crate::backend::{Fill, Snapshot};
use crate::cache::Cache;
use crate::entry::{self, Envelope};
use crate::key::KeyPart;
use crate::lease::{self, LeaseGuard};
use crate::outcome::Strategy;
use crate::singleflight::{Flight, Join};
use crate::spec::Spec;
use crate::stats::Counters;
use crate::tags;

/// Runs one call of a `#[cached]` function. Called by the generated code
/// only.
pub async fn execute<R, S, F>(
    cache: Option<Cache>,
    spec: &'static Spec,
    key: KeyPart,
    tags: Vec<String>,
    strategy: S,
    body: F,
) -> R
where
    S: Strategy<R>,
    F: Future<Output = R>,
{
    let Some(cache) = cache else {
        warn_no_cache(spec);
        return body.await;
    };
    let inner = &cache.inner;
    let entry_key = match key.full_key(&inner.namespace, spec.path()) {
        Ok(k) => k,
        Err(error) => {
            Counters::add(&inner.stats.errors);
            tracing::warn!(
                target: "cache_runtime",
                function = spec.path(),
                %error,
                "cannot derive the cache key; running uncached"
            );
            Counters::add(&inner.stats.computations);
            return body.await;
        }
    };
    // Implicit tags first: the function's, then the call's own.
    let mut tag_keys = Vec::with_capacity(tags.len() + 2);
    tag_keys.push(inner.function_key(spec.path()));
    tag_keys.push(inner.call_key(&entry_key));
    tag_keys.extend(tags.iter().map(|t| inner.tag_key(t)));
    let ttl = spec.ttl_secs.map_or(inner.default_ttl, Duration::from_secs);
    let call = Call {
        cache: &cache,
        spec,
        key: entry_key,
        tag_keys,
        ttl,
        failed: AtomicBool::new(false),
    };
    call.run(strategy, body).await
}

fn warn_no_cache(spec: &Spec) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            target: "cache_runtime",
            function = spec.path(),
            "no cache: call `cache_runtime::set_default` or pass `cache = ...`; running uncached"
        );
    }
}

fn flight_key(key: &str, versions: &[String]) -> String {
    let mut k = String::with_capacity(key.len() + versions.len() * 33);
    k.push_str(key);
    for v in versions {
        k.push('\0');
        k.push_str(v);
    }
    k
}

enum Checked<'s, R> {
    Hit(R, &'s [u8]),
    Absent,
    Stale,
    Undecodable(String),
}

enum Acquired<R> {
    Lease(LeaseGuard),
    Filled(R, Arc<[u8]>),
    Unprotected,
}

struct Call<'c> {
    cache: &'c Cache,
    spec: &'static Spec,
    key: String,
    tag_keys: Vec<String>,
    ttl: Duration,
    /// Set by the first backend failure of this call: the call then makes
    /// no further write, so it waits on a failing Redis at most once.
    failed: AtomicBool,
}

impl Call<'_> {
    async fn run<R, S, F>(&self, strategy: S, body: F) -> R
    where
        S: Strategy<R>,
        F: Future<Output = R>,
    {
        let inner = &self.cache.inner;
        let stats = &inner.stats;
        let epoch = inner.flights.epoch();
        let mut snap = match inner.backend.read(&self.key, &self.tag_keys, None).await {
            Ok(s) => s,
            Err(e) => {
                self.fail(&e, "read");
                return self.offline(&strategy, body).await;
            }
        };
        match self.check(&snap, &strategy) {
            Checked::Hit(value, _) => {
                Counters::add(&stats.hits);
                tracing::debug!(target: "cache_runtime", key = %self.key, "cache hit");
                return value;
            }
            Checked::Absent => {}
            Checked::Stale => Counters::add(&stats.stale),
            Checked::Undecodable(error) => {
                Counters::add(&stats.decode_errors);
                tracing::warn!(
                    target: "cache_runtime",
                    key = %self.key,
                    %error,
                    "stored value does not decode; recomputing"
                );
            }
        }
        Counters::add(&stats.misses);
        tracing::debug!(target: "cache_runtime", key = %self.key, "cache miss");
        // The versions the value will be stored under, read before the body
        // runs (missing ones are created now).
        let Some(mut versions) = self.establish_versions(snap.versions).await else {
            return self.offline(&strategy, body).await;
        };
        if !self.spec.lock {
            return self.fill(versions, &strategy, body, None, None).await;
        }
        let mut epoch = epoch;
        loop {
            // Callers share a computation only if they saw the same tag
            // versions: one that read after an invalidation never receives
            // a value computed from data read before it.
            match inner.flights.join(&flight_key(&self.key, &versions)) {
                Join::Leader(flight) => {
                    if flight.landed_since(epoch) {
                        // A flight of this process may have filled the key
                        // after our read: look again before computing.
                        snap = match inner.backend.read(&self.key, &self.tag_keys, None).await {
                            Ok(s) => s,
                            Err(e) => {
                                self.fail(&e, "read");
                                drop(flight);
                                return self.offline(&strategy, body).await;
                            }
                        };
                        if let Checked::Hit(value, json) = self.check(&snap, &strategy) {
                            Counters::add(&stats.coalesced);
                            flight.land(Some(Arc::from(json)));
                            return value;
                        }
                        versions = match self.establish_versions(snap.versions).await {
                            Some(v) => v,
                            None => {
                                drop(flight);
                                return self.offline(&strategy, body).await;
                            }
                        };
                    }
                    return self.lead(flight, versions, &strategy, body).await;
                }
                Join::Follower(follower) => {
                    epoch = inner.flights.epoch();
                    if let Some(json) = follower.wait().await {
                        match strategy.decode(&json) {
                            Ok(value) => {
                                Counters::add(&stats.coalesced);
                                return value;
                            }
                            Err(error) => {
                                Counters::add(&stats.decode_errors);
                                tracing::warn!(
                                    target: "cache_runtime",
                                    key = %self.key,
                                    %error,
                                    "shared value does not decode"
                                );
                                return self.compute(body).await;
                            }
                        }
                    }
                    // The leader left no value (error, `None`, panic or
                    // cancellation): start again; one of us leads.
                }
            }
        }
    }

    /// The backend failed: run the body without the cache, still sharing
    /// one computation among concurrent callers of this process, so that a
    /// Redis outage does not turn into a stampede on the database.
    async fn offline<R, S, F>(&self, strategy: &S, body: F) -> R
    where
        S: Strategy<R>,
        F: Future<Output = R>,
    {
        if !self.spec.lock {
            return self.compute(body).await;
        }
        // Keyed by the count of invalidations this process made, so that a
        // call starting after one never joins a computation from before it.
        let epoch = self.cache.inner.stats.invalidations.load(Ordering::Acquire);
        let flight_key = format!("{}\0offline\0{epoch}", self.key);
        loop {
            match self.cache.inner.flights.join(&flight_key) {
                Join::Leader(flight) => {
                    let result = self.compute(body).await;
                    let json = strategy.encode(&result).and_then(Result::ok);
                    flight.land(json.map(Arc::from));
                    return result;
                }
                Join::Follower(follower) => {
                    let shared = follower.wait().await;
                    if let Some(value) = shared.and_then(|json| strategy.decode(&json).ok()) {
                        Counters::add(&self.cache.inner.stats.coalesced);
                        return value;
                    }
                }
            }
        }
    }

    async fn lead<R, S, F>(
        &self,
        flight: Flight<'_>,
        versions: Vec<String>,
        strategy: &S,
        body: F,
    ) -> R
    where
        S: Strategy<R>,
        F: Future<Output = R>,
    {
        let inner = &self.cache.inner;
        let lease = match inner.backend.as_redis() {
            None => None,
            Some(redis) => match self.acquire(redis, strategy).await {
                Acquired::Lease(guard) => Some(guard),
                Acquired::Filled(value, json) => {
                    flight.land(Some(json));
                    return value;
                }
                Acquired::Unprotected => None,
            },
        };
        self.fill(versions, strategy, body, lease, Some(flight))
            .await
    }

    /// Takes the fill lease, or waits until whoever holds it has filled the
    /// entry (or given up, or died and let it expire).
    async fn acquire<R, S: Strategy<R>>(&self, redis: &RedisBackend, strategy: &S) -> Acquired<R> {
        let inner = &self.cache.inner;
        inner.notifier.start(&self.cache.inner);
        let lock_ttl = self.lock_ttl();
        // Armed while a `SET NX` of ours may have landed: if it timed out
        // but Redis applied it, dropping the guard releases the lease, so no
        // lease of ours is left for others to wait out.
        let mut guard = LeaseGuard {
            inner: self.cache.inner.clone(),
            lease_key: inner.lease_key(&self.key),
            token: lease::token(),
            armed: false,
        };
        let registration = inner.notifier.register(&guard.lease_key);
        let mut counted = false;
        loop {
            guard.armed = true;
            match redis
                .try_lease(&guard.lease_key, &guard.token, lock_ttl)
                .await
            {
                Ok(true) => return Acquired::Lease(guard),
                Ok(false) => guard.armed = false,
                Err(e) => {
                    self.fail(&e, "lease");
                    return Acquired::Unprotected;
                }
            }
            if !counted {
                counted = true;
                Counters::add(&inner.stats.lease_waits);
            }
            let deadline = Instant::now() + lock_ttl;
            let mut backoff = lease::FIRST_BACKOFF;
            loop {
                let notified = registration.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let read = inner
                    .backend
                    .read(&self.key, &self.tag_keys, Some(&guard.lease_key));
                let snap = match read.await {
                    Ok(s) => s,
                    Err(e) => {
                        self.fail(&e, "wait");
                        return Acquired::Unprotected;
                    }
                };
                if let Checked::Hit(value, json) = self.check(&snap, strategy) {
                    return Acquired::Filled(value, Arc::from(json));
                }
                let now = Instant::now();
                if !snap.leased || now >= deadline {
                    break; // free (or expired by now): try to take it
                }
                tokio::select! {
                    () = &mut notified => {}
                    () = tokio::time::sleep(backoff.min(deadline - now)) => {
                        backoff = lease::next_backoff(backoff);
                    }
                }
            }
        }
    }

    /// Runs the body and stores its result (if it is cached) under the
    /// versions read before it ran, then releases the lease and lands the
    /// flight.
    async fn fill<R, S, F>(
        &self,
        versions: Vec<String>,
        strategy: &S,
        body: F,
        lease: Option<LeaseGuard>,
        flight: Option<Flight<'_>>,
    ) -> R
    where
        S: Strategy<R>,
        F: Future<Output = R>,
    {
        let inner = &self.cache.inner;
        let result = self.compute(body).await;
        let json = match strategy.encode(&result) {
            None => None,
            Some(Ok(json)) => Some(json),
            Some(Err(error)) => {
                tracing::warn!(
                    target: "cache_runtime",
                    key = %self.key,
                    %error,
                    "value does not encode; not cached"
                );
                None
            }
        };
        // After a failure in this call, write nothing: the lease (if any)
        // is released from its guard's drop, off this call's path.
        if !self.failed.load(Ordering::Relaxed) {
            let stored = json
                .as_ref()
                .map(|json| entry::encode(json, &self.tag_keys, &versions));
            let fill = stored.as_deref().map(|value| Fill {
                key: &self.key,
                value,
                ttl: self.ttl,
                version_keys: &self.tag_keys,
            });
            let written = match lease {
                Some(mut guard) => {
                    let redis = inner
                        .backend
                        .as_redis()
                        .expect("leases exist on Redis only");
                    let channel = inner.fill_channel();
                    let r = redis
                        .finish_lease(fill.as_ref(), &guard.lease_key, &guard.token, &channel)
                        .await;
                    // On failure the guard stays armed and retries the release.
                    guard.armed = r.is_err();
                    r.map(|()| fill.is_some())
                }
                None => match &fill {
                    Some(fill) => inner.backend.store(fill).await.map(|()| true),
                    None => Ok(false),
                },
            };
            match written {
                Ok(true) => Counters::add(&inner.stats.stores),
                Ok(false) => {}
                Err(e) => self.fail(&e, "store"),
            }
        }
        if let Some(flight) = flight {
            flight.land(json.map(Arc::from));
        }
        result
    }

    /// The current version of every tag, creating the missing ones. `None`
    /// when the backend failed: the call then runs uncached.
    async fn establish_versions(&self, versions: Vec<Option<String>>) -> Option<Vec<String>> {
        if versions.iter().all(Option::is_some) {
            return Some(versions.into_iter().flatten().collect());
        }
        // A version starts with the entry's TTL, plus the lease's as room
        // for the body to run; each entry stored under it extends it to its
        // own (see `Fill`), so versions expire with the last entry that
        // carries them.
        let missing: Vec<(&str, String)> = self
            .tag_keys
            .iter()
            .zip(&versions)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| (k.as_str(), tags::fresh_version()))
            .collect();
        let created = match self
            .cache
            .inner
            .backend
            .get_or_set(&missing, self.ttl + self.lock_ttl())
            .await
        {
            Ok(c) => c,
            Err(e) => {
                self.fail(&e, "versions");
                return None;
            }
        };
        let mut created = created.into_iter();
        versions
            .into_iter()
            .map(|v| v.or_else(|| created.next()))
            .collect()
    }

    /// How long a fill lease lasts: the longest a body is expected to run.
    fn lock_ttl(&self) -> Duration {
        self.spec
            .lock_ttl_ms
            .map_or(self.cache.inner.lock_ttl, Duration::from_millis)
    }

    fn fail(&self, error: &crate::Error, op: &'static str) {
        self.failed.store(true, Ordering::Relaxed);
        self.cache.record_error(error, op);
    }

    async fn compute<R, F: Future<Output = R>>(&self, body: F) -> R {
        Counters::add(&self.cache.inner.stats.computations);
        body.await
    }

    fn check<'s, R, S: Strategy<R>>(&self, snap: &'s Snapshot, strategy: &S) -> Checked<'s, R> {
        let Some(bytes) = snap.entry.as_deref() else {
            return Checked::Absent;
        };
        let envelope = match Envelope::decode(bytes) {
            Ok(e) => e,
            Err(e) => return Checked::Undecodable(e.to_string()),
        };
        if !envelope.is_current(&self.tag_keys, &snap.versions) {
            return Checked::Stale;
        }
        match strategy.decode(envelope.value()) {
            Ok(value) => Checked::Hit(value, envelope.value()),
            Err(e) => Checked::Undecodable(e.to_string()),
        }
    }
}
