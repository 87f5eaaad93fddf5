//! The in-process backend: the same bytes Redis would hold, in bounded
//! `moka` maps, with per-entry TTLs. Tag versions live in a map of their own
//! whose evictions, like Redis's, make entries invalid, never valid again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache as Map;

use redis::Value;

use super::{KeyName, Snapshot};

#[derive(Clone)]
struct Stored {
    bytes: Arc<[u8]>,
    ttl: Duration,
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

pub(crate) struct MemoryBackend {
    entries: Map<String, Stored>,
    versions: Map<String, Arc<[u8]>>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("entries", &self.entries.entry_count())
            .field("versions", &self.versions.entry_count())
            .finish()
    }
}

impl MemoryBackend {
    pub fn new(capacity: u64) -> Self {
        MemoryBackend {
            entries: Map::builder()
                .max_capacity(capacity)
                .expire_after(PerEntryTtl)
                .build(),
            versions: Map::builder().max_capacity(capacity.max(1024)).build(),
        }
    }

    pub fn read<'k>(
        &self,
        entry_key: KeyName<'_>,
        version_keys: impl Iterator<Item = KeyName<'k>>,
    ) -> Snapshot {
        let string =
            |bytes: Option<&[u8]>| bytes.map_or(Value::Nil, |b| Value::BulkString(b.to_vec()));
        let mut items = vec![string(
            self.entries
                .get(&entry_key.to_string())
                .as_ref()
                .map(|s| &*s.bytes),
        )];
        items.extend(version_keys.map(|k| string(self.versions.get(&k.to_string()).as_deref())));
        Snapshot {
            items,
            leased: false,
        }
    }

    /// TTLs are not kept here: the map is bounded, and an evicted version
    /// only invalidates.
    pub fn get_or_set(&self, keys: &[(&str, String)]) -> Vec<Vec<u8>> {
        keys.iter()
            .map(|(k, fresh)| {
                self.versions
                    .get_with(k.to_string(), || Arc::from(fresh.as_bytes()))
                    .to_vec()
            })
            .collect()
    }

    pub fn store(&self, key: &str, value: &[u8], ttl: Duration) {
        self.entries.insert(
            key.to_owned(),
            Stored {
                bytes: value.into(),
                ttl,
            },
        );
    }

    pub fn delete(&self, keys: &[String]) {
        for k in keys {
            self.entries.invalidate(k);
            self.versions.invalidate(k);
        }
    }
}
