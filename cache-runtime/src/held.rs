//! Held versions: the version values (the function's, the call's, the
//! namespace's and the tags') that this process read from Redis, kept so
//! that a Redis hit whose versions are all held reads only its entry (one
//! `GET` of one key) and checks the entry's header against them.
//!
//! A held version is a promise that the version key still holds that
//! value, and it is kept under the local tier's rules (the local tier owns
//! this map and applies them, under its lock; see [`crate::local`]):
//! - only while the backplane subscription is confirmed, and only for the
//!   session it was read in: every held version goes when the subscription
//!   drops or is confirmed anew (invalidations may have been missed);
//! - an invalidation message naming a version key, or an invalidation made
//!   in this process, removes it (before that invalidation returns, here);
//! - a value whose read started before an invalidation was applied is not
//!   held (the local tier's epoch, checked under its lock);
//! - never past the Redis TTL of the version key: a version is held only
//!   from a read that found an entry current under it, and for no longer
//!   than that entry's remaining TTL (each entry stored under a version
//!   extends the version's TTL to at least its own, so the version key
//!   lives at least as long);
//! - never longer than `local_max_age` after it was read from Redis: a
//!   version key evicted or deleted without a message (`maxmemory`,
//!   `FLUSHDB`) is seen within that bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// A version value held, and until when.
pub(crate) struct Held {
    value: Box<[u8]>,
    session: u64,
    until: Instant,
}

impl Held {
    /// The version's value.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// Until when it may be used.
    pub fn until(&self) -> Instant {
        self.until
    }
}

/// Expires a held version at its `until`.
struct Expiry;

impl moka::Expiry<Box<str>, Arc<Held>> for Expiry {
    fn expire_after_create(
        &self,
        _key: &Box<str>,
        held: &Arc<Held>,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(held.until.saturating_duration_since(created_at))
    }

    fn expire_after_update(
        &self,
        _key: &Box<str>,
        held: &Arc<Held>,
        updated_at: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(held.until.saturating_duration_since(updated_at))
    }
}

/// The held versions, by version key. Bounded in count: a version key per
/// call (`{ns}#call:…`) makes them as many as the entries read.
pub(crate) struct HeldVersions {
    map: moka::sync::Cache<Box<str>, Arc<Held>>,
}

impl std::fmt::Debug for HeldVersions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldVersions")
            .field("count", &self.map.entry_count())
            .finish()
    }
}

impl HeldVersions {
    /// At most `max` versions held (the least used go first).
    pub fn new(max: u64) -> Self {
        HeldVersions {
            map: moka::sync::Cache::builder()
                .max_capacity(max)
                .expire_after(Expiry)
                .build(),
        }
    }

    /// The version held under `key` in `session`, if it may be used.
    pub fn get(&self, key: &str, session: u64) -> Option<Arc<Held>> {
        let held = self.map.get(key)?;
        (held.session == session && Instant::now() < held.until).then_some(held)
    }

    /// Holds `value` under `key` until `until` (the caller checked the
    /// epoch and the session under its lock).
    pub fn hold(&self, key: Box<str>, value: &[u8], session: u64, until: Instant) {
        self.map.insert(
            key,
            Arc::new(Held {
                value: value.into(),
                session,
                until,
            }),
        );
    }

    /// Forgets the version held under `key`.
    pub fn forget(&self, key: &str) {
        self.map.invalidate(key);
    }

    /// Forgets every held version.
    pub fn forget_all(&self) {
        self.map.invalidate_all();
    }
}
