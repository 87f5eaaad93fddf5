//! Storage behind a [`Cache`](crate::Cache): Redis (single node, Sentinel
//! or cluster) or an in-process map. Backends store bytes and run a few
//! single-key scripts on them (a version read or created, a TTL extended,
//! a lease released only by its holder, an oversized entry dropped); what
//! the bytes mean (entries, tag versions, leases) is decided by the modules
//! above them, so both backends share one implementation of every cache
//! rule.
//!
//! Every command touches one key, except the `MGET` of a hit on a single
//! node (the entry and its versions); on a cluster that read is one `GET`
//! per key. So the same calls run on Redis Cluster.

pub(crate) mod clients;
pub(crate) mod credentials;
pub(crate) mod link;
pub(crate) mod memory;
pub(crate) mod redis;

use std::sync::Arc;
use std::time::Duration;

use ::redis::Value;

use crate::error::Error;
use crate::schema::KeyName;

/// What one lookup read: the entry (if any) and the current value of each
/// of its version keys, as Redis answered them (no copy), and whether a
/// fill lease is held on the key.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The entry, then the versions: each `Nil` or `BulkString`.
    items: Vec<Value>,
    pub leased: bool,
    /// The entry's remaining time to live, when it was asked for.
    pub ttl: Option<Duration>,
    /// When the versions were not read but held in process: until when
    /// they may be used (a value kept locally from this read lives no
    /// longer).
    pub held_until: Option<std::time::Instant>,
    /// How many of the versions are those of the tags the entry took from
    /// its value (`tags_from`), appended by a second read.
    value_tags: usize,
}

impl Snapshot {
    /// Checks that each item is a string or nothing.
    pub fn new(mut items: Vec<Value>, leased: bool) -> Result<Self, Error> {
        if items.is_empty() {
            return Err(Error::Reply("no entry in the reply".into()));
        }
        for item in &mut items {
            match item {
                Value::Nil | Value::BulkString(_) => {}
                Value::SimpleString(s) => *item = Value::BulkString(std::mem::take(s).into_bytes()),
                other => return Err(Error::Reply(format!("expected a string, got {other:?}"))),
            }
        }
        Ok(Snapshot {
            items,
            leased,
            ttl: None,
            held_until: None,
            value_tags: 0,
        })
    }

    fn bytes(item: &Value) -> Option<&[u8]> {
        match item {
            Value::BulkString(b) => Some(b),
            _ => None,
        }
    }

    /// The stored entry.
    pub fn entry(&self) -> Option<&[u8]> {
        Self::bytes(&self.items[0])
    }

    /// Replaces the entry (with its value decompressed).
    pub fn set_entry(&mut self, entry: Vec<u8>) {
        self.items[0] = Value::BulkString(entry);
    }

    /// The current versions, in the order asked.
    pub fn versions(&self) -> impl ExactSizeIterator<Item = Option<&[u8]>> {
        self.items[1..].iter().map(Self::bytes)
    }

    /// Appends the current versions of the tags the entry took from its
    /// value.
    pub fn append_value_tags(&mut self, versions: Vec<Value>) -> Result<(), Error> {
        for v in versions {
            match v {
                Value::Nil | Value::BulkString(_) => self.items.push(v),
                Value::SimpleString(s) => self.items.push(Value::BulkString(s.into_bytes())),
                other => return Err(Error::Reply(format!("expected a string, got {other:?}"))),
            }
            self.value_tags += 1;
        }
        Ok(())
    }

    /// The current versions of the function's version keys (not those of
    /// the value's tags), owned.
    pub fn into_versions(self) -> Vec<Option<Vec<u8>>> {
        let statics = self.items.len() - 1 - self.value_tags;
        self.items
            .into_iter()
            .skip(1)
            .take(statics)
            .map(|item| match item {
                Value::BulkString(b) => Some(b),
                _ => None,
            })
            .collect()
    }
}

/// A version key to create: `fresh` is stored under it when it holds no
/// version, or holds `replace` (bytes this crate did not write, read
/// before: a version that cannot be used is repaired, not adopted).
#[derive(Debug)]
pub(crate) struct NewVersion<'a> {
    pub key: &'a str,
    pub fresh: String,
    pub replace: Option<Vec<u8>>,
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
    /// The version keys the entry carries that may expire before it: each
    /// is kept alive at least as long as the entry, so versions expire with
    /// the last entry using them.
    pub extend: Vec<&'a str>,
    /// Every version the entry recorded, by key (for the in-process
    /// backend, whose entries hold their versions).
    pub versions: Vec<(&'a str, &'a [u8])>,
}

/// One of the two storage backends.
#[derive(Debug)]
pub(crate) enum Backend {
    Redis(Arc<redis::RedisBackend>),
    Memory(memory::MemoryBackend),
}

impl Backend {
    /// Reads an entry, its versions and (when `lease_key` is given) whether
    /// its lease is held, in one round trip; with `ttl`, the entry's
    /// remaining time to live too.
    pub async fn read<'k>(
        &self,
        entry_key: KeyName<'_>,
        version_keys: impl ExactSizeIterator<Item = KeyName<'k>> + Clone,
        lease_key: Option<&str>,
        ttl: bool,
    ) -> Result<Snapshot, Error> {
        match self {
            Backend::Redis(b) => b.read(entry_key, version_keys, lease_key, ttl).await,
            Backend::Memory(b) => Ok(b.read(entry_key, version_keys, ttl)),
        }
    }

    /// Reads only an entry (one `GET` of one key) and, with `ttl`, its
    /// remaining time to live, in one round trip: a hit whose versions are
    /// held in process.
    pub async fn read_entry(
        &self,
        entry_key: KeyName<'_>,
        ttl: bool,
    ) -> Result<(Value, Option<Duration>), Error> {
        match self {
            Backend::Redis(b) => b.read_entry(entry_key, ttl).await,
            Backend::Memory(b) => {
                let snap = b.read(entry_key, std::iter::empty(), ttl);
                Ok((
                    snap.items.into_iter().next().unwrap_or(Value::Nil),
                    snap.ttl,
                ))
            }
        }
    }

    /// [`read`](Self::read) of many entries (a batch call's items), in one
    /// round trip: on one node a pipeline of one `MGET` per entry, on a
    /// cluster one `GET` per key, sent to every node at once. With `ttl`, on
    /// Redis, each entry's remaining time to live too.
    pub async fn read_many<'k>(
        &self,
        reads: &[(KeyName<'k>, Vec<KeyName<'k>>)],
        ttl: bool,
    ) -> Result<Vec<Snapshot>, Error> {
        match self {
            Backend::Redis(b) => b.read_many(reads, ttl).await,
            Backend::Memory(b) => Ok(reads
                .iter()
                .map(|(entry, versions)| b.read(*entry, versions.iter().copied(), ttl))
                .collect()),
        }
    }

    /// For each key: its current value, or `fresh` stored under it with the
    /// TTL when it had none; on Redis, and with `lease`, tries the lease in
    /// the same round trip.
    pub async fn prepare(
        &self,
        missing: &[NewVersion<'_>],
        version_ttl: Duration,
        lease: Option<&LeaseTry<'_>>,
    ) -> Result<Prepared, Error> {
        match self {
            Backend::Redis(b) => b.prepare(missing, version_ttl, lease).await,
            // Nothing but this crate writes there: no version to repair.
            Backend::Memory(b) => Ok(Prepared {
                versions: b.get_or_set(
                    &missing
                        .iter()
                        .map(|m| (m.key, m.fresh.clone()))
                        .collect::<Vec<_>>(),
                    version_ttl,
                ),
                leased: false,
            }),
        }
    }

    /// The current versions of `keys` (the tags an entry took from its
    /// value; none for an absent entry) and the server's clock
    /// (microseconds since 1970 on Redis, taken on the entry's node; a
    /// counter in process), in one round trip.
    pub async fn read_value_tags(
        &self,
        entry_key: KeyName<'_>,
        keys: &[String],
    ) -> Result<(Vec<Value>, u64), Error> {
        match self {
            Backend::Redis(b) => b.read_value_tags(entry_key, keys).await,
            Backend::Memory(b) => Ok(b.read_value_tags(keys)),
        }
    }

    /// The version of each key, created (stamped with the server's clock)
    /// where there is none or where it has no stamp, with the TTL: the
    /// versions of the tags a value gives its entry, after its body ran.
    pub async fn stamped_versions(
        &self,
        keys: &[String],
        version_ttl: Duration,
    ) -> Result<Vec<Vec<u8>>, Error> {
        match self {
            Backend::Redis(b) => b.stamped_versions(keys, version_ttl).await,
            Backend::Memory(b) => Ok(b.stamped_versions(keys, version_ttl)),
        }
    }

    /// How far the clocks of the servers that stamp versions may be
    /// apart, in their unit: a Redis Cluster's nodes each have their own
    /// clock (1 s allowed); one node, or the process, has one.
    pub fn clock_margin(&self) -> u64 {
        match self {
            Backend::Redis(b) if b.is_cluster_now() => 1_000_000,
            _ => 0,
        }
    }

    /// Stores an entry with its TTL.
    pub async fn store(&self, store: &Store<'_>) -> Result<(), Error> {
        match self {
            Backend::Redis(b) => b.store(store).await,
            Backend::Memory(b) => {
                b.store(store.key, store.value, store.ttl, &store.versions);
                Ok(())
            }
        }
    }

    /// Invalidates version keys: deletes them (with `delete`; one command
    /// each), and on Redis announces them on `channel` (see
    /// [`RedisBackend::invalidate`](redis::RedisBackend::invalidate)).
    pub async fn invalidate(
        &self,
        keys: &[String],
        delete: bool,
        channel: Option<&str>,
    ) -> Result<(), Error> {
        match self {
            Backend::Redis(b) => b.invalidate(keys, delete, channel).await,
            Backend::Memory(b) => {
                if delete {
                    b.delete(keys);
                }
                Ok(())
            }
        }
    }

    /// The leases of a backend that processes share (Redis); `None` for
    /// the in-process map, whose flights already span its whole "fleet".
    pub fn leases(&self) -> Option<Leases> {
        match self {
            Backend::Redis(b) => Some(Leases(b.clone())),
            Backend::Memory(_) => None,
        }
    }

    /// Deletes `key` if its value is longer than `max` bytes: whether it
    /// did (never, in process: no read of it times out). Bounded by
    /// `timeout`, off any call's path.
    pub async fn drop_if_larger(
        &self,
        key: &str,
        max: usize,
        timeout: Duration,
    ) -> Result<bool, Error> {
        match self {
            Backend::Redis(b) => b.drop_if_larger(key, max, timeout).await,
            Backend::Memory(_) => Ok(false),
        }
    }
}

/// A fill lease to try for: `SET key token NX PX ttl`.
pub(crate) struct LeaseTry<'a> {
    pub key: &'a str,
    pub token: &'a str,
    pub ttl: Duration,
}

/// What the fill lease needs of storage: a handle on the backend's leases,
/// cheap to clone (a guard keeps one to release its lease on drop).
#[derive(Clone)]
pub(crate) struct Leases(Arc<redis::RedisBackend>);

impl Leases {
    /// Tries `lease`: whether we got it.
    pub async fn try_take(&self, lease: &LeaseTry<'_>) -> Result<bool, Error> {
        self.0.try_lease(lease).await
    }

    /// Optionally stores an entry, then releases our lease (if it still
    /// holds our token) and announces the release: `announce` is the
    /// channel and the message.
    pub async fn finish(
        &self,
        store: Option<&Store<'_>>,
        lease_key: &str,
        token: &str,
        announce: Option<(&str, &str)>,
    ) -> Result<(), Error> {
        self.0.finish_lease(store, lease_key, token, announce).await
    }

    /// A waiter's read: the entry, its versions, and whether `lease_key`
    /// is held; with `ttl`, the entry's remaining TTL too.
    pub async fn read<'k>(
        &self,
        entry_key: KeyName<'_>,
        version_keys: impl ExactSizeIterator<Item = KeyName<'k>> + Clone,
        lease_key: &str,
        ttl: bool,
    ) -> Result<Snapshot, Error> {
        self.0
            .read(entry_key, version_keys, Some(lease_key), ttl)
            .await
    }
}
