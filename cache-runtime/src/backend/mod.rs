//! Storage behind a [`Cache`](crate::Cache): Redis (single node or cluster)
//! or an in-process map. Backends only store bytes; what the bytes mean
//! (entries, tag versions, leases) is decided by the modules above them, so
//! both backends share one implementation of every cache rule.
//!
//! Every operation touches keys one command each (no multi-key command), so
//! the same calls run on Redis Cluster.

pub(crate) mod memory;
pub(crate) mod redis;

use std::time::Duration;

use crate::error::Error;

/// What one lookup read: the entry (if any), the current version of each of
/// its tags, and whether a fill lease is held on the key.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub entry: Option<Vec<u8>>,
    pub versions: Vec<Option<String>>,
    pub leased: bool,
}

/// An entry to write.
#[derive(Debug)]
pub(crate) struct Fill<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    pub ttl: Duration,
    /// The version keys the entry carries: each is kept alive at least as
    /// long as the entry, so versions expire with the last entry using them.
    pub version_keys: &'a [String],
}

/// One of the two storage backends.
#[derive(Debug)]
pub(crate) enum Backend {
    Redis(Box<redis::RedisBackend>),
    Memory(memory::MemoryBackend),
}

impl Backend {
    /// Reads an entry, its tag versions and (when `lease_key` is given)
    /// whether its lease is held, in one round trip.
    pub async fn read(
        &self,
        entry_key: &str,
        tag_keys: &[String],
        lease_key: Option<&str>,
    ) -> Result<Snapshot, Error> {
        match self {
            Backend::Redis(b) => b.read(entry_key, tag_keys, lease_key).await,
            Backend::Memory(b) => Ok(b.read(entry_key, tag_keys, lease_key)),
        }
    }

    /// For each key: its current value, or `fresh` stored under it with
    /// the TTL when it had none.
    pub async fn get_or_set(
        &self,
        keys: &[(&str, String)],
        ttl: Duration,
    ) -> Result<Vec<String>, Error> {
        match self {
            Backend::Redis(b) => b.get_or_set(keys, ttl).await,
            Backend::Memory(b) => Ok(b.get_or_set(keys)),
        }
    }

    /// Stores an entry with its TTL.
    pub async fn store(&self, fill: &Fill<'_>) -> Result<(), Error> {
        match self {
            Backend::Redis(b) => b.store(fill).await,
            Backend::Memory(b) => {
                b.store(fill.key, fill.value, fill.ttl);
                Ok(())
            }
        }
    }

    /// Deletes keys, one command each.
    pub async fn delete(&self, keys: &[String]) -> Result<(), Error> {
        match self {
            Backend::Redis(b) => b.delete(keys).await,
            Backend::Memory(b) => {
                b.delete(keys);
                Ok(())
            }
        }
    }

    /// The Redis backend, for what only it has (leases across processes).
    pub fn as_redis(&self) -> Option<&redis::RedisBackend> {
        match self {
            Backend::Redis(b) => Some(b),
            Backend::Memory(_) => None,
        }
    }
}
