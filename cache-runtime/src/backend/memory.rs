//! The in-process backend: the same bytes Redis would hold, with per-entry
//! TTLs, bounded by entry count and by bytes.
//!
//! Entries live in a `moka` map whose weigher counts an entry as its share
//! of the byte budget (at least one slot), so that the map holds at most
//! `memory_capacity` entries and about `memory_max_bytes` bytes.
//!
//! Tag versions live in a map of their own, which nothing evicts while an
//! entry carries them: each stored entry holds a reference on the versions
//! it recorded, released when the entry goes (expired, evicted, replaced or
//! invalidated). A version nobody holds lives for the window it was created
//! with (the entry's TTL and the lease's, room for the body to run), then
//! goes. So versions never cost a live entry a false miss, and those held
//! are bounded by the live entries. Those nobody holds count against the
//! same bounds again: at most `memory_capacity` of them and
//! `memory_max_bytes` of their bytes, the first to expire going first. As
//! in Redis, a version that is gone (invalidated or evicted) makes entries
//! invalid, never valid again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache as Map;
use redis::Value;

use super::Snapshot;
use crate::schema::KeyName;

#[derive(Clone)]
struct Stored {
    bytes: Arc<[u8]>,
    ttl: Duration,
    /// When it expires (`ttl` after it was stored; `None` past what the
    /// clock can say).
    expires_at: Option<Instant>,
    /// The versions this entry holds: (key, value).
    holds: Arc<[(String, Arc<[u8]>)]>,
}

struct PerEntryTtl;

impl Expiry<String, Stored> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Stored,
        _now: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
    fn expire_after_update(
        &self,
        _key: &String,
        value: &Stored,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

struct Version {
    value: Arc<[u8]>,
    /// Entries that hold it.
    holders: usize,
    /// Kept at least until then, held or not.
    until: Instant,
}

/// The tag versions, by key.
struct Versions {
    map: Mutex<HashMap<String, Version>>,
    /// Operations since the last sweep of versions nobody holds.
    ops: AtomicU64,
    /// The versions nobody holds are kept to at most these (count and
    /// bytes), the backend's own bounds: see [`Versions::bound`].
    unheld_max: (usize, u64),
    /// The size of the map at which [`Versions::bound`] runs next.
    next_bound: AtomicUsize,
    /// The process's clock for versions: a counter, moved by each version
    /// created and each clock read, so that a version created after a
    /// read of the clock has a larger stamp whatever the wall clock does.
    clock: AtomicU64,
}

/// How often (in version operations) versions nobody holds are swept.
const SWEEP_EVERY: u64 = 1024;

impl Versions {
    fn new(capacity: u64, max_bytes: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        Versions {
            map: Mutex::default(),
            ops: AtomicU64::new(0),
            unheld_max: (capacity, max_bytes),
            next_bound: AtomicUsize::new(capacity),
            clock: AtomicU64::new(0),
        }
    }

    /// Keeps the versions nobody holds (those of entries evicted or
    /// replaced, and of fills under way) within the backend's bounds:
    /// expired ones go, then, while there are more than `memory_capacity`
    /// of them or they weigh more than `memory_max_bytes`, those that would
    /// expire first, down to three quarters of the bounds. A version that
    /// goes early only costs a miss (an entry whose version is missing is
    /// invalid), never a stale read. Held versions are bounded by the
    /// entries holding them.
    fn bound(&self, map: &mut HashMap<String, Version>, now: Instant) {
        map.retain(|_, v| Self::live(v, now));
        let (max_count, max_bytes) = self.unheld_max;
        let weight = |key: &String, v: &Version| (key.len() + v.value.len()) as u64;
        let mut unheld: Vec<(Instant, u64, &String)> = map
            .iter()
            .filter(|(_, v)| v.holders == 0)
            .map(|(key, v)| (v.until, weight(key, v), key))
            .collect();
        let mut count = unheld.len();
        let mut bytes: u64 = unheld.iter().map(|(_, w, _)| w).sum();
        let mut evict = Vec::new();
        if count > max_count || bytes > max_bytes {
            let (keep_count, keep_bytes) = (max_count / 4 * 3, max_bytes / 4 * 3);
            unheld.sort_unstable_by_key(|(until, _, _)| *until);
            for (_, w, key) in unheld {
                if count <= keep_count && bytes <= keep_bytes {
                    break;
                }
                evict.push(key.clone());
                count -= 1;
                bytes -= w;
            }
        }
        for key in evict {
            map.remove(&key);
        }
        let slack = (max_count / 4).max(1);
        self.next_bound
            .store(map.len().saturating_add(slack), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Version>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live(v: &Version, now: Instant) -> bool {
        v.holders > 0 || now < v.until
    }

    fn tick(&self, map: &mut HashMap<String, Version>, now: Instant) {
        if self
            .ops
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            map.retain(|_, v| Self::live(v, now));
        }
    }

    /// The current value of each key, under one lock.
    fn get_all<'k>(&self, keys: impl Iterator<Item = KeyName<'k>>) -> Vec<Value> {
        let now = Instant::now();
        let mut map = self.lock();
        self.tick(&mut map, now);
        keys.map(|key| {
            let key = key.to_string();
            match map.get(&key) {
                Some(v) if Self::live(v, now) => Value::BulkString(v.value.to_vec()),
                Some(_) => {
                    map.remove(&key);
                    Value::Nil
                }
                None => Value::Nil,
            }
        })
        .collect()
    }

    /// The clock's next reading.
    fn now(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn get_or_set(&self, key: &str, fresh: &str, window: Duration) -> Arc<[u8]> {
        let now = Instant::now();
        let mut map = self.lock();
        self.tick(&mut map, now);
        if let Some(v) = map.get(key).filter(|v| Self::live(v, now)) {
            return v.value.clone();
        }
        // Stamped like Redis's versions, by this process's clock.
        let value: Arc<[u8]> = Arc::from(format!("{fresh}t{}", self.now()).as_bytes());
        let version = Version {
            value: value.clone(),
            holders: 0,
            until: now.checked_add(window).unwrap_or(now),
        };
        map.insert(key.to_owned(), version);
        if map.len() >= self.next_bound.load(Ordering::Relaxed) {
            self.bound(&mut map, now);
        }
        value
    }

    /// Holds the versions an entry recorded, where they are still current:
    /// which ones it holds.
    fn hold(&self, versions: &[(&str, &[u8])]) -> Arc<[(String, Arc<[u8]>)]> {
        let mut map = self.lock();
        versions
            .iter()
            .filter_map(|(key, value)| {
                let v = map.get_mut(*key).filter(|v| &*v.value == *value)?;
                v.holders += 1;
                Some((key.to_string(), v.value.clone()))
            })
            .collect()
    }

    fn release(&self, holds: &[(String, Arc<[u8]>)]) {
        let now = Instant::now();
        let mut map = self.lock();
        for (key, value) in holds {
            if let Some(v) = map.get_mut(key).filter(|v| v.value == *value) {
                v.holders = v.holders.saturating_sub(1);
                if !Self::live(v, now) {
                    map.remove(key);
                }
            }
        }
    }

    fn delete(&self, key: &str) {
        self.lock().remove(key);
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

pub(crate) struct MemoryBackend {
    entries: Map<String, Stored>,
    versions: Arc<Versions>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("entries", &self.entries.entry_count())
            .field("versions", &self.versions.len())
            .finish()
    }
}

impl MemoryBackend {
    /// At most `capacity` entries and about `max_bytes` bytes of them.
    pub fn new(capacity: u64, max_bytes: u64) -> Self {
        let capacity = capacity.max(1);
        // An entry weighs its share of the byte budget, at least one slot.
        let slot = (max_bytes / capacity).max(1);
        let versions = Arc::new(Versions::new(capacity, max_bytes));
        let released = versions.clone();
        MemoryBackend {
            entries: Map::builder()
                .max_capacity(capacity)
                .weigher(move |key: &String, value: &Stored| {
                    let bytes = (key.len() + value.bytes.len()) as u64;
                    u32::try_from(bytes.div_ceil(slot).max(1)).unwrap_or(u32::MAX)
                })
                .expire_after(PerEntryTtl)
                .eviction_listener(move |_key, value: Stored, _cause| {
                    released.release(&value.holds);
                })
                .build(),
            versions,
        }
    }

    /// The entry and its versions; with `ttl`, the entry's remaining time
    /// to live too (as Redis's `PTTL` gives it).
    pub fn read<'k>(
        &self,
        entry_key: KeyName<'_>,
        version_keys: impl Iterator<Item = KeyName<'k>>,
        ttl: bool,
    ) -> Snapshot {
        let entry = self.entries.get(&entry_key.to_string());
        let remaining = match &entry {
            Some(stored) if ttl => Some(stored.expires_at.map_or(stored.ttl, |at| {
                at.saturating_duration_since(Instant::now())
            })),
            _ => None,
        };
        let mut items = vec![entry.map_or(Value::Nil, |s| Value::BulkString(s.bytes.to_vec()))];
        items.extend(self.versions.get_all(version_keys));
        Snapshot {
            items,
            leased: false,
            ttl: remaining,
            held_until: None,
            value_tags: 0,
        }
    }

    /// The versions of `keys` and the clock's reading, after them.
    pub fn read_value_tags(&self, keys: &[String]) -> (Vec<Value>, u64) {
        let versions = self
            .versions
            .get_all(keys.iter().map(|k| KeyName::whole(k)));
        (versions, self.versions.now())
    }

    /// For each key its version, or a fresh one (stamped, as every version
    /// created here is), kept at least `window`.
    pub fn stamped_versions(&self, keys: &[String], window: Duration) -> Vec<Vec<u8>> {
        keys.iter()
            .map(|k| {
                let fresh = crate::ids::random_id();
                self.versions.get_or_set(k, &fresh, window).to_vec()
            })
            .collect()
    }

    /// For each key its version, or the fresh one, kept at least `window`.
    pub fn get_or_set(&self, keys: &[(&str, String)], window: Duration) -> Vec<Vec<u8>> {
        keys.iter()
            .map(|(k, fresh)| self.versions.get_or_set(k, fresh, window).to_vec())
            .collect()
    }

    pub fn store(&self, key: &str, value: &[u8], ttl: Duration, versions: &[(&str, &[u8])]) {
        let holds = self.versions.hold(versions);
        self.entries.insert(
            key.to_owned(),
            Stored {
                bytes: value.into(),
                ttl,
                expires_at: Instant::now().checked_add(ttl),
                holds,
            },
        );
    }

    pub fn delete(&self, keys: &[String]) {
        for k in keys {
            self.entries.invalidate(k);
            self.versions.delete(k);
        }
    }
}
