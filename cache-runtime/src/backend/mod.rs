//! Storage behind a [`Cache`](crate::Cache): Redis (single node or cluster)
//! or an in-process map. Backends only store bytes; what the bytes mean
//! (entries, tag versions, leases) is decided by the modules above them, so
//! both backends share one implementation of every cache rule.
//!
//! Every command touches one key, except the `MGET` of a hit on a single
//! node (the entry and its versions); on a cluster that read is one `GET`
//! per key. So the same calls run on Redis Cluster.

pub(crate) mod memory;
pub(crate) mod redis;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;

/// What one lookup read: the entry (if any), the current value of each of
/// its version keys, and whether a fill lease is held on the key.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub entry: Option<Vec<u8>>,
    pub versions: Vec<Option<Vec<u8>>>,
    pub leased: bool,
}

/// What [`Backend::prepare`] did: the versions it found or created (in the
/// order asked), and whether it took the lease.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub versions: Vec<Vec<u8>>,
    pub leased: bool,
}

/// An entry to write.
#[derive(Debug)]
pub(crate) struct Store<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    pub ttl: Duration,
    /// The version keys the entry carries: each is kept alive at least as
    /// long as the entry, so versions expire with the last entry using them.
    pub version_keys: &'a [Cow<'static, str>],
}

/// One of the two storage backends.
#[derive(Debug)]
pub(crate) enum Backend {
    Redis(Arc<redis::RedisBackend>),
    Memory(memory::MemoryBackend),
}

impl Backend {
    /// Reads an entry, its versions and (when `lease_key` is given) whether
    /// its lease is held, in one round trip.
    pub async fn read(
        &self,
        entry_key: &str,
        version_keys: &[Cow<'static, str>],
        lease_key: Option<&str>,
    ) -> Result<Snapshot, Error> {
        match self {
            Backend::Redis(b) => b.read(entry_key, version_keys, lease_key).await,
            Backend::Memory(b) => Ok(b.read(entry_key, version_keys)),
        }
    }

    /// For each key: its current value, or `fresh` stored under it with the
    /// TTL when it had none; on Redis, and with `lease`, tries the lease in
    /// the same round trip.
    pub async fn prepare(
        &self,
        missing: &[(&str, String)],
        version_ttl: Duration,
        lease: Option<&redis::LeaseTry<'_>>,
    ) -> Result<Prepared, Error> {
        match self {
            Backend::Redis(b) => b.prepare(missing, version_ttl, lease).await,
            Backend::Memory(b) => Ok(Prepared {
                versions: b.get_or_set(missing),
                leased: false,
            }),
        }
    }

    /// Stores an entry with its TTL.
    pub async fn store(&self, store: &Store<'_>) -> Result<(), Error> {
        match self {
            Backend::Redis(b) => b.store(store).await,
            Backend::Memory(b) => {
                b.store(store.key, store.value, store.ttl);
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
    pub fn as_redis(&self) -> Option<&Arc<redis::RedisBackend>> {
        match self {
            Backend::Redis(b) => Some(b),
            Backend::Memory(_) => None,
        }
    }
}
