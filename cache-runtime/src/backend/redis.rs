//! The Redis backend: one multiplexed connection (redis-rs's
//! `ConnectionManager`, reconnecting on its own) or a cluster connection.
//!
//! Every operation is bounded by the cache's op timeout and never blocks the
//! caller longer: the connection is made lazily on first use, with a
//! connection timeout equal to the op timeout and no retry (a failed
//! operation fails open at once; the next one connects anew), so a Redis
//! that is down or frozen costs each call at most the op timeout.
//!
//! On a single node, the commands of one operation go out as one command or
//! a pipeline (one round trip). On a cluster they go out concurrently, one
//! command per key, each routed to its slot's node: still one round trip of
//! wall time, except where order matters (an entry is written before its
//! lease is released).
//!
//! Announcements (invalidations, fill releases) are `PUBLISH`ed; on a
//! cluster, `SPUBLISH`ed on the shard channel of the key's slot group (see
//! [`backplane`](crate::backplane)), unless the cluster refuses it as an
//! unknown command (before Redis 7): classic `PUBLISH` from then on.
//!
//! Scripts are sent by hash (`EVALSHA`); a server that does not know one
//! (restarted, `SCRIPT FLUSH`) gets the operation again with the scripts'
//! text (`EVAL`), which also loads them.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, ServerErrorKind, Value};

use super::link::{self, Health, Link};
use super::{LeaseTry, NewVersion, Prepared, Snapshot, Store};
use crate::breaker::{Admit, Breaker};
use crate::error::Error;
use crate::schema::{self, KeyName};
use crate::stats::Counters;

/// A Lua script, sent by its SHA-1 once the server knows it.
struct Lua {
    code: &'static str,
    hash: LazyLock<String>,
}

macro_rules! lua {
    ($code:expr) => {
        Lua {
            code: $code,
            hash: LazyLock::new(|| redis::Script::new($code).get_hash().to_owned()),
        }
    };
}

impl Lua {
    /// `EVALSHA hash 1 key` (or `EVAL code 1 key`), for the caller to add
    /// the arguments to.
    fn call(&self, by_hash: bool, key: &str) -> Cmd {
        let mut cmd = if by_hash {
            let mut c = redis::cmd("EVALSHA");
            c.arg(self.hash.as_str());
            c
        } else {
            let mut c = redis::cmd("EVAL");
            c.arg(self.code);
            c
        };
        cmd.arg(1).arg(key);
        cmd
    }
}

/// Releases a lease only if it still holds our token, so a holder whose
/// lease expired never deletes the lease of the next holder.
static RELEASE: Lua = lua!(
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
);

/// Returns the key's value, or stores and returns `ARGV[1]` with a TTL of
/// `ARGV[2]` ms when the key has none or holds `ARGV[3]` (bytes read
/// before that are no version: they are replaced, not adopted). `SET NX
/// GET` needs Redis 7.
static GET_OR_SET: Lua = lua!(
    "local v = redis.call('get', KEYS[1]) \
if v and v ~= ARGV[3] then return v end \
local t = redis.call('time') \
local n = ARGV[1] .. 't' .. t[1] .. string.format('%06d', tonumber(t[2])) \
redis.call('set', KEYS[1], n, 'px', ARGV[2]) \
return n"
);

/// Returns the key's version if it is stamped (`{hex}t{microseconds}`),
/// or stores and returns `ARGV[1]` stamped with the server's clock, with a
/// TTL of `ARGV[2]` ms: the version of a tag taken from a value, whose
/// stamp tells whether it changed while the body ran.
static STAMPED: Lua = lua!(
    "local v = redis.call('get', KEYS[1]) \
if v and string.find(v, '^%x+t%d+$') then return v end \
local t = redis.call('time') \
local n = ARGV[1] .. 't' .. t[1] .. string.format('%06d', tonumber(t[2])) \
redis.call('set', KEYS[1], n, 'px', ARGV[2]) \
return n"
);

/// The server's clock, in microseconds since 1970, on the node of
/// `KEYS[1]` (which it does not touch): a keyed script, so that a cluster
/// routes it like the entry's reads.
static CLOCK: Lua = lua!(
    "local t = redis.call('time') \
return t[1] .. string.format('%06d', tonumber(t[2]))"
);

/// Extends the key's TTL to `ARGV[1]` ms if it has a shorter one (`PEXPIRE
/// GT`, which Redis 6 lacks). A missing key stays missing.
static EXTEND: Lua = lua!(
    "local t = redis.call('pttl', KEYS[1]) \
if t >= 0 and t < tonumber(ARGV[1]) then redis.call('pexpire', KEYS[1], ARGV[1]) end \
return t"
);

/// Deletes the key if its value is longer than `ARGV[1]` bytes.
static DROP_LARGE: Lua = lua!(
    "if redis.call('strlen', KEYS[1]) > tonumber(ARGV[1]) then return redis.call('del', KEYS[1]) else return 0 end"
);

/// Whether an operation goes through the circuit breaker.
#[derive(Clone, Copy)]
enum Gate {
    Breaker,
    Always,
}

pub(crate) enum Target {
    Single(Arc<Link>),
    Cluster(Box<ClusterClient>),
}

/// Where one operation goes.
enum Route<'a> {
    Single(&'a Arc<Link>, Arc<link::Conn>),
    Cluster(&'a ClusterClient),
}

pub(crate) struct RedisBackend {
    target: Target,
    /// For a node given by one URL: whether it is a cluster node (see
    /// [`detect`](Self::detect)), and the cluster client to use then.
    mode: AtomicU8,
    found_cluster: Option<Box<ClusterClient>>,
    op_timeout: Duration,
    cluster: tokio::sync::OnceCell<ClusterConnection>,
    stats: Arc<Counters>,
    breaker: Breaker,
    /// Cleared when the user may not publish on the fill channel.
    can_publish: AtomicBool,
    /// On a cluster: whether announcements go by sharded pub/sub
    /// (`SPUBLISH` on the key's shard channel); cleared for good when the
    /// server does not know `SPUBLISH` (before Redis 7).
    sharded: AtomicBool,
    #[cfg(feature = "metrics")]
    round_trip: metrics::Histogram,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.target {
            Target::Single(_) => "single",
            Target::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisBackend")
            .field("kind", &kind)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    pub fn new(
        target: Target,
        op_timeout: Duration,
        stats: Arc<Counters>,
        breaker: Breaker,
    ) -> Self {
        RedisBackend {
            target,
            mode: AtomicU8::new(SINGLE),
            found_cluster: None,
            op_timeout,
            cluster: tokio::sync::OnceCell::new(),
            stats,
            breaker,
            can_publish: AtomicBool::new(true),
            sharded: AtomicBool::new(true),
            #[cfg(feature = "metrics")]
            round_trip: crate::metrics::round_trips(),
        }
    }

    /// Finds out on first use whether the node at the one URL given is a
    /// cluster node (`cluster_enabled:1`, as a managed cluster's single
    /// endpoint is), and then uses `cluster` for it; no I/O here.
    pub fn detecting_cluster(mut self, cluster: ClusterClient) -> Self {
        self.found_cluster = Some(Box::new(cluster));
        self.mode = AtomicU8::new(UNKNOWN);
        self
    }

    /// Asks the node whether it is a cluster node, once (until it
    /// answers): `INFO cluster`. A node that answers anything else (an ACL
    /// without `INFO`, a proxy that renames it) is taken as a single node.
    async fn detect(&self) -> Result<(), Error> {
        if self.mode.load(Ordering::Acquire) != UNKNOWN {
            return Ok(());
        }
        Box::pin(self.detect_now()).await
    }

    async fn detect_now(&self) -> Result<(), Error> {
        let info = redis::cmd("INFO").arg("cluster").to_owned();
        let mode = match self.exec_one(&info).await {
            Ok(Value::BulkString(text)) if contains(&text, b"cluster_enabled:1") => CLUSTER,
            Ok(Value::VerbatimString { text, .. }) if text.contains("cluster_enabled:1") => CLUSTER,
            Err(e) if e.is_unreachable() => return Err(e),
            _ => SINGLE,
        };
        if mode == CLUSTER {
            tracing::info!(
                target: "cache_runtime",
                "the Redis URL given is a cluster node: using the cluster client"
            );
        }
        self.mode.store(mode, Ordering::Release);
        Ok(())
    }

    /// Runs `op` unless the circuit breaker skips Redis (or `gate` is
    /// off), and tells the breaker whether Redis was reached.
    async fn gated<T>(
        &self,
        gate: Gate,
        op: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        // The admission releases the probe if this future is dropped
        // before the outcome is recorded.
        let admission = match gate {
            Gate::Breaker => Some(self.breaker.enter()),
            Gate::Always => None,
        };
        let admitted = admission.as_ref().map_or(Admit::Go, |a| a.admitted());
        if admitted == Admit::Skip {
            Counters::add(&self.stats.skipped);
            return Err(Error::CircuitOpen);
        }
        let result = op.await;
        let reached = !matches!(&result, Err(e) if e.is_unreachable());
        let opened = match admission {
            Some(admission) => admission.record(reached),
            None => self.breaker.record(Admit::Go, reached),
        };
        if opened {
            tracing::warn!(
                target: "cache_runtime",
                "Redis unreachable: circuit breaker open, calls skip the cache for a while"
            );
        }
        result
    }

    fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_)) || self.mode.load(Ordering::Relaxed) == CLUSTER
    }

    /// The cluster connection, made on first use. Boxed where it is
    /// awaited: its future is large, and a single node never needs it.
    async fn cluster(&self, client: &ClusterClient) -> Result<ClusterConnection, Error> {
        let conn = self
            .cluster
            .get_or_try_init(|| client.get_async_connection())
            .await?;
        Ok(conn.clone())
    }

    /// The connection of one operation: on a single node, the link's
    /// current connection (whose health the operation reports); on a
    /// cluster, the cluster connection (made inside the operation's timer).
    fn route(&self) -> Route<'_> {
        match (&self.target, &self.found_cluster) {
            (Target::Single(_), Some(client)) if self.mode.load(Ordering::Relaxed) == CLUSTER => {
                Route::Cluster(client)
            }
            (Target::Single(link), _) => Route::Single(link, link.current()),
            (Target::Cluster(client), _) => Route::Cluster(client),
        }
    }

    /// Runs commands in one round trip, bounded by the op timeout (the one
    /// timer of the operation: the connection has no response timeout of
    /// its own).
    async fn exec(&self, cmds: Vec<Cmd>) -> Result<Vec<Value>, Error> {
        self.gated(Gate::Breaker, self.exec_within(cmds, self.op_timeout))
            .await
    }

    async fn exec_within(&self, cmds: Vec<Cmd>, timeout: Duration) -> Result<Vec<Value>, Error> {
        self.within(timeout, async |route| {
            if let [cmd] = cmds.as_slice() {
                return Ok(vec![self.send_one(route, cmd).await?]);
            }
            match route {
                Route::Single(link, conn) => {
                    let mut c = link.manager(conn).await?;
                    let mut pipe = redis::pipe();
                    for cmd in cmds {
                        pipe.add_command(cmd);
                    }
                    let values = c.send_packed_commands(&pipe, 0, pipe.len()).await?;
                    Ok(values
                        .into_iter()
                        .map(Value::extract_error)
                        .collect::<Result<_, _>>()?)
                }
                Route::Cluster(client) => {
                    let c = Box::pin(self.cluster(client)).await?;
                    Ok(try_join_all(cmds.into_iter().map(|cmd| {
                        let mut c = c.clone();
                        async move { cmd.query_async::<Value>(&mut c).await?.extract_error() }
                    }))
                    .await?)
                }
            }
        })
        .await
    }

    /// One command, in one round trip, bounded by the op timeout: the
    /// path of a hit.
    async fn exec_one(&self, cmd: &Cmd) -> Result<Value, Error> {
        self.gated(
            Gate::Breaker,
            self.within(self.op_timeout, async |route| {
                self.send_one(route, cmd).await
            }),
        )
        .await
    }

    /// Sends one command on its own (no pipeline, no boxed request on a
    /// single node).
    async fn send_one(&self, route: &Route<'_>, cmd: &Cmd) -> Result<Value, Error> {
        match route {
            Route::Single(link, conn) => {
                let mut c = link.manager(conn).await?;
                Ok(c.send_packed_command(cmd).await?.extract_error()?)
            }
            Route::Cluster(client) => {
                let mut c = Box::pin(self.cluster(client)).await?;
                Ok(cmd.query_async::<Value>(&mut c).await?.extract_error()?)
            }
        }
    }

    /// One round trip, counted and bounded by `timeout`; on a single node,
    /// its outcome is reported to the link (which replaces a connection
    /// that looks dead).
    async fn within<T>(
        &self,
        timeout: Duration,
        run: impl AsyncFnOnce(&Route<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let _nth = self.stats.round_trips.fetch_add(1, Ordering::Relaxed);
        crate::span::count_round_trip();
        let route = self.route();
        // One round trip in 16 is timed: recording every one would cost a
        // hit about 0.5 µs, and a sample shows the same distribution.
        #[cfg(feature = "metrics")]
        let started = _nth.is_multiple_of(16).then(std::time::Instant::now);
        let result = match tokio::time::timeout(timeout, run(&route)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(timeout)),
        };
        #[cfg(feature = "metrics")]
        if let Some(started) = started {
            self.round_trip.record(started.elapsed().as_secs_f64());
        }
        if let Route::Single(link, conn) = &route {
            link.record(conn, Health::of(&result));
        }
        result
    }

    /// [`exec`](Self::exec) of commands that call scripts: by hash, and
    /// once more by text if the server does not know a script.
    async fn exec_scripts(&self, cmds: impl Fn(bool) -> Vec<Cmd>) -> Result<Vec<Value>, Error> {
        match self.exec(cmds(true)).await {
            Err(Error::Redis(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.exec(cmds(false)).await
            }
            other => other,
        }
    }

    /// The entry, its versions and (with `lease_key`) whether its lease is
    /// held, in one round trip. On one node the entry and its versions are a
    /// single `MGET`, so a hit costs one command like a bare `GET`; on a
    /// cluster, where the keys live in different slots, one `GET` each.
    /// With `ttl`, the entry's remaining time to live too (`PTTL`, in the
    /// same round trip), for a value the local tier may keep.
    pub async fn read<'k>(
        &self,
        entry_key: KeyName<'_>,
        version_keys: impl ExactSizeIterator<Item = KeyName<'k>> + Clone,
        lease_key: Option<&str>,
        ttl: bool,
    ) -> Result<Snapshot, Error> {
        self.detect().await?;
        let wanted = version_keys.len() + 1;
        let mget = || {
            let bytes = entry_key.byte_len()
                + version_keys.clone().map(|k| k.byte_len()).sum::<usize>()
                + 4;
            let mut mget = Cmd::with_capacity(wanted + 1, bytes);
            mget.arg("MGET").arg(entry_key);
            for k in version_keys.clone() {
                mget.arg(k);
            }
            mget
        };
        if self.is_cluster() || lease_key.is_some() || ttl {
            // Off a hit's path (a cluster, a waiter, a value for the local
            // tier): boxed, so that a hit's future stays small.
            let mget = mget();
            return Box::pin(self.read_more(entry_key, version_keys, mget, lease_key, ttl)).await;
        }
        match self.exec_one(&mget()).await? {
            Value::Array(items) if items.len() == wanted => Snapshot::new(items, false),
            other => Err(Error::Reply(format!(
                "expected {wanted} values, got {other:?}"
            ))),
        }
    }

    /// Only the entry (`GET`) and, with `ttl`, its remaining time to live
    /// (`PTTL`, in the same round trip; `None` for a key without one):
    /// a hit whose versions are held in process. One key, so one slot on a
    /// cluster.
    pub async fn read_entry(
        &self,
        entry_key: KeyName<'_>,
        ttl: bool,
    ) -> Result<(Value, Option<Duration>), Error> {
        let get = redis::cmd("GET").arg(entry_key).to_owned();
        if !ttl {
            return Ok((self.exec_one(&get).await?, None));
        }
        let pttl = redis::cmd("PTTL").arg(entry_key).to_owned();
        let mut values = Box::pin(self.exec(vec![get, pttl])).await?;
        let pttl = int(values.pop())?;
        let entry = values
            .pop()
            .ok_or_else(|| Error::Reply("no entry in the reply".into()))?;
        Ok((entry, u64::try_from(pttl).ok().map(Duration::from_millis)))
    }

    /// [`read`](Self::read) of many entries, in one round trip (see
    /// [`Backend::read_many`](super::Backend::read_many)).
    pub async fn read_many<'k>(
        &self,
        reads: &[(KeyName<'k>, Vec<KeyName<'k>>)],
        ttl: bool,
    ) -> Result<Vec<Snapshot>, Error> {
        if reads.is_empty() {
            return Ok(Vec::new());
        }
        let cluster = self.is_cluster();
        let mut cmds = Vec::new();
        for (entry, versions) in reads {
            if cluster {
                cmds.push(redis::cmd("GET").arg(*entry).to_owned());
                cmds.extend(
                    versions
                        .iter()
                        .map(|k| redis::cmd("GET").arg(*k).to_owned()),
                );
            } else {
                let mut mget = redis::cmd("MGET");
                mget.arg(*entry);
                for k in versions {
                    mget.arg(*k);
                }
                cmds.push(mget);
            }
            if ttl {
                cmds.push(redis::cmd("PTTL").arg(*entry).to_owned());
            }
        }
        let mut values = self.exec(cmds).await?.into_iter();
        let mut snaps = Vec::with_capacity(reads.len());
        for (_, versions) in reads {
            let wanted = versions.len() + 1;
            let items: Vec<Value> = if cluster {
                values.by_ref().take(wanted).collect()
            } else {
                match values.next() {
                    Some(Value::Array(items)) => items,
                    other => {
                        return Err(Error::Reply(format!(
                            "expected {wanted} values, got {other:?}"
                        )));
                    }
                }
            };
            if items.len() != wanted {
                return Err(Error::Reply(format!(
                    "expected {wanted} values, got {}",
                    items.len()
                )));
            }
            let mut snap = Snapshot::new(items, false)?;
            if ttl {
                snap.ttl = u64::try_from(int(values.next())?)
                    .ok()
                    .map(Duration::from_millis);
            }
            snaps.push(snap);
        }
        Ok(snaps)
    }

    /// [`read`](Self::read) on a cluster, or with the lease or the TTL.
    async fn read_more<'k>(
        &self,
        entry_key: KeyName<'_>,
        version_keys: impl ExactSizeIterator<Item = KeyName<'k>>,
        mget: Cmd,
        lease_key: Option<&str>,
        ttl: bool,
    ) -> Result<Snapshot, Error> {
        let wanted = version_keys.len() + 1;
        let mut cmds = Vec::with_capacity(wanted + 2);
        if self.is_cluster() {
            cmds.push(redis::cmd("GET").arg(entry_key).to_owned());
            cmds.extend(version_keys.map(|k| redis::cmd("GET").arg(k).to_owned()));
        } else {
            cmds.push(mget);
        }
        let items = cmds.len();
        if let Some(l) = lease_key {
            cmds.push(redis::cmd("EXISTS").arg(l).to_owned());
        }
        if ttl {
            cmds.push(redis::cmd("PTTL").arg(entry_key).to_owned());
        }
        let mut values = self.exec(cmds).await?;
        let pttl = if ttl { Some(int(values.pop())?) } else { None };
        let leased = match lease_key {
            Some(_) => int(values.pop())? > 0,
            None => false,
        };
        let items = if items == 1 {
            match values.pop() {
                Some(Value::Array(items)) if items.len() == wanted => items,
                other => {
                    return Err(Error::Reply(format!(
                        "expected {wanted} values, got {other:?}"
                    )));
                }
            }
        } else {
            values
        };
        let mut snap = Snapshot::new(items, leased)?;
        // `PTTL` is -2 for a key gone since, -1 for one without a TTL
        // (not ours): neither is kept locally.
        snap.ttl = pttl
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis);
        Ok(snap)
    }

    /// Creates the missing versions (one script per key: atomic and
    /// single-key, so cluster-safe) and tries the lease (`SET NX PX`), in
    /// one round trip.
    pub async fn prepare(
        &self,
        missing: &[NewVersion<'_>],
        version_ttl: Duration,
        lease: Option<&LeaseTry<'_>>,
    ) -> Result<Prepared, Error> {
        self.detect().await?;
        let ttl = millis(version_ttl);
        let values = self
            .exec_scripts(|by_hash| {
                let mut cmds: Vec<Cmd> = missing
                    .iter()
                    .map(|m| {
                        // An empty value is no version either: never
                        // adopted.
                        let replace = m.replace.as_deref().unwrap_or(b"");
                        GET_OR_SET
                            .call(by_hash, m.key)
                            .arg(&m.fresh)
                            .arg(ttl)
                            .arg(replace)
                            .to_owned()
                    })
                    .collect();
                if let Some(l) = lease {
                    cmds.push(lease_cmd(l));
                    if !by_hash {
                        // The first try's `SET NX` may have landed.
                        cmds.push(redis::cmd("GET").arg(l.key).to_owned());
                    }
                }
                cmds
            })
            .await?;
        let mut values = values.into_iter();
        let mut versions = Vec::with_capacity(missing.len());
        for v in values.by_ref().take(missing.len()) {
            versions.push(bytes(Some(v))?.ok_or_else(|| Error::Reply("no version".into()))?);
        }
        let leased = match lease {
            None => false,
            Some(l) => {
                let set = !matches!(values.next(), Some(Value::Nil) | None);
                let ours =
                    matches!(values.next(), Some(Value::BulkString(t)) if t == l.token.as_bytes());
                set || ours
            }
        };
        Ok(Prepared { versions, leased })
    }

    /// See [`Backend::read_value_tags`](super::Backend::read_value_tags):
    /// one `MGET` and the clock's script in one round trip on one node;
    /// on a cluster one `GET` per key, and the clock from the entry's node.
    pub async fn read_value_tags(
        &self,
        entry_key: KeyName<'_>,
        keys: &[String],
    ) -> Result<(Vec<Value>, u64), Error> {
        self.detect().await?;
        let entry_key = entry_key.to_string();
        let cluster = self.is_cluster();
        let mut values = self
            .exec_scripts(|by_hash| {
                let mut cmds = Vec::with_capacity(keys.len() + 1);
                cmds.push(CLOCK.call(by_hash, &entry_key));
                if cluster {
                    cmds.extend(keys.iter().map(|k| redis::cmd("GET").arg(k).to_owned()));
                } else if !keys.is_empty() {
                    cmds.push(redis::cmd("MGET").arg(keys).to_owned());
                }
                cmds
            })
            .await?
            .into_iter();
        let clock = bytes(values.next())?
            .and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
            .ok_or_else(|| Error::Reply("no clock".into()))?;
        let versions: Vec<Value> = if cluster {
            values.collect()
        } else if keys.is_empty() {
            Vec::new()
        } else {
            match values.next() {
                Some(Value::Array(items)) => items,
                other => return Err(Error::Reply(format!("expected versions, got {other:?}"))),
            }
        };
        if versions.len() != keys.len() {
            return Err(Error::Reply(format!(
                "expected {} versions, got {}",
                keys.len(),
                versions.len()
            )));
        }
        Ok((versions, clock))
    }

    /// See [`Backend::stamped_versions`](super::Backend::stamped_versions):
    /// one single-key script per key, in one round trip.
    pub async fn stamped_versions(
        &self,
        keys: &[String],
        version_ttl: Duration,
    ) -> Result<Vec<Vec<u8>>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.detect().await?;
        let ttl = millis(version_ttl);
        let values = self
            .exec_scripts(|by_hash| {
                keys.iter()
                    .map(|k| {
                        STAMPED
                            .call(by_hash, k)
                            .arg(crate::ids::random_id())
                            .arg(ttl)
                            .to_owned()
                    })
                    .collect()
            })
            .await?;
        values
            .into_iter()
            .map(|v| bytes(Some(v))?.ok_or_else(|| Error::Reply("no version".into())))
            .collect()
    }

    /// Whether this backend talks to a cluster now.
    pub(crate) fn is_cluster_now(&self) -> bool {
        self.is_cluster()
    }

    pub async fn store(&self, store: &Store<'_>) -> Result<(), Error> {
        self.detect().await?;
        self.exec_scripts(|by_hash| store_cmds(store, by_hash))
            .await
            .map(drop)
    }

    /// Deletes keys (with `delete`), then announces each on `channel` (the
    /// backplane of local tiers: `PUBLISH`, or on a cluster `SPUBLISH` on
    /// the key's shard channel), in one round trip on one node; on a
    /// cluster the deletes land before the announcements go out. An
    /// invalidation is asked of Redis even while the breaker is open (its
    /// caller must know whether it happened), and its outcome tells the
    /// breaker.
    pub async fn invalidate(
        &self,
        keys: &[String],
        delete: bool,
        channel: Option<&str>,
    ) -> Result<(), Error> {
        self.detect().await?;
        self.publishing(channel, |channel| self.invalidate_on(keys, delete, channel))
            .await
    }

    /// Runs `op` with `channel` to publish on (none once publishing was
    /// refused). An ACL user without channel rights gets `NOPERM`: it is
    /// said once, publishing stops for good (other processes' waiters then
    /// poll, and their local tiers are bypassed for want of invalidations),
    /// and `op` runs again without the channel.
    async fn publishing<'a, T, F>(
        &self,
        channel: Option<&'a str>,
        op: impl Fn(Option<&'a str>) -> F,
    ) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        let channel = channel.filter(|_| self.can_publish.load(Ordering::Relaxed));
        let sharded = self.publishes_sharded();
        match op(channel).await {
            Err(Error::Redis(e)) if channel.is_some() && sharded && is_unknown_command(&e) => {
                if self.sharded.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        target: "cache_runtime",
                        error = %e,
                        "the cluster has no sharded pub/sub (`SPUBLISH`): announcements use classic pub/sub"
                    );
                }
                op(channel).await
            }
            Err(Error::Redis(e)) if channel.is_some() && is_no_channel_rights(&e) => {
                if self.can_publish.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        target: "cache_runtime",
                        error = %e,
                        "no rights to publish on the cache's channels: other processes' waiters poll, and their local tiers do not see invalidations (they are bypassed)"
                    );
                }
                op(None).await
            }
            other => other,
        }
    }

    /// Whether announcements go by sharded pub/sub now: on a cluster whose
    /// servers know `SPUBLISH` (as far as we know).
    fn publishes_sharded(&self) -> bool {
        self.is_cluster() && self.sharded.load(Ordering::Relaxed)
    }

    /// The command that announces `message` about `key` on `channel`: on a
    /// cluster with sharded pub/sub, `SPUBLISH` on the shard channel of the
    /// key's slot group (which every subscriber hears); else `PUBLISH`,
    /// which a cluster forwards to every node.
    fn announcement(&self, channel: &str, key: &str, message: &str) -> Cmd {
        if self.publishes_sharded() {
            let shard = schema::shard_channel(channel, schema::shard_group(key));
            redis::cmd("SPUBLISH").arg(shard).arg(message).to_owned()
        } else {
            redis::cmd("PUBLISH").arg(channel).arg(message).to_owned()
        }
    }

    async fn invalidate_on(
        &self,
        keys: &[String],
        delete: bool,
        channel: Option<&str>,
    ) -> Result<(), Error> {
        let dels: Vec<Cmd> = match delete {
            true => keys
                .iter()
                .map(|k| redis::cmd("DEL").arg(k).to_owned())
                .collect(),
            false => Vec::new(),
        };
        let publishes: Vec<Cmd> = channel
            .map(|channel| {
                keys.iter()
                    .map(|k| self.announcement(channel, k, k))
                    .collect()
            })
            .unwrap_or_default();
        let run = async {
            if self.is_cluster() {
                if !dels.is_empty() {
                    self.exec_within(dels, self.op_timeout).await?;
                }
                if !publishes.is_empty() {
                    self.exec_within(publishes, self.op_timeout).await?;
                }
                Ok(())
            } else {
                let mut cmds = dels;
                cmds.extend(publishes);
                if cmds.is_empty() {
                    return Ok(());
                }
                self.exec_within(cmds, self.op_timeout).await.map(drop)
            }
        };
        self.gated(Gate::Always, run).await
    }

    /// Deletes `key` if its value is longer than `max` bytes: whether it
    /// did. Off any call's path, so bounded by `timeout` rather than the op
    /// timeout (a rare operation: the script goes by text).
    pub async fn drop_if_larger(
        &self,
        key: &str,
        max: usize,
        timeout: Duration,
    ) -> Result<bool, Error> {
        self.detect().await?;
        let cmd = DROP_LARGE.call(false, key).arg(max).to_owned();
        let values = self.exec_within(vec![cmd], timeout).await?;
        Ok(int(values.into_iter().next())? > 0)
    }

    /// `SET lease token NX PX ttl`: whether we got the lease.
    pub async fn try_lease(&self, lease: &LeaseTry<'_>) -> Result<bool, Error> {
        self.detect().await?;
        let v = self.exec(vec![lease_cmd(lease)]).await?;
        Ok(!matches!(v.first(), Some(Value::Nil) | None))
    }

    /// Optionally stores an entry, then releases our lease and announces it
    /// (`announce`: the channel and the message): one round trip on one
    /// node; on a cluster the entry is written before the lease is
    /// released, so that no waiter takes the lease before the entry is
    /// there.
    pub async fn finish_lease(
        &self,
        store: Option<&Store<'_>>,
        lease_key: &str,
        token: &str,
        announce: Option<(&str, &str)>,
    ) -> Result<(), Error> {
        self.detect().await?;
        let message = announce.map_or("", |(_, message)| message);
        self.publishing(announce.map(|(channel, _)| channel), |channel| {
            let announce = channel.map(|channel| (channel, message));
            self.finish_lease_on(store, lease_key, token, announce)
        })
        .await
    }

    async fn finish_lease_on(
        &self,
        store: Option<&Store<'_>>,
        lease_key: &str,
        token: &str,
        announce: Option<(&str, &str)>,
    ) -> Result<(), Error> {
        let release = |by_hash: bool| {
            let mut cmds = vec![RELEASE.call(by_hash, lease_key).arg(token).to_owned()];
            if let Some((channel, message)) = announce {
                cmds.push(self.announcement(channel, lease_key, message));
            }
            cmds
        };
        match (store, self.is_cluster()) {
            (Some(store), true) => {
                self.store(store).await?;
                self.exec_scripts(release).await.map(drop)
            }
            (store, _) => self
                .exec_scripts(|by_hash| {
                    let mut cmds = store.map(|s| store_cmds(s, by_hash)).unwrap_or_default();
                    cmds.extend(release(by_hash));
                    cmds
                })
                .await
                .map(drop),
        }
    }
}

/// Whether `haystack` holds `needle`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// [`RedisBackend::mode`]: a single node, a node not asked yet, a cluster
/// node.
const SINGLE: u8 = 0;
const UNKNOWN: u8 = 1;
const CLUSTER: u8 = 2;

/// `NOPERM` about a channel: an ACL user without channel rights (Redis 7's
/// default `acl-pubsub-default resetchannels`).
pub(crate) fn is_no_channel_rights(e: &redis::RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoPerm) && e.to_string().contains("channel")
}

/// An error reply about a command the server does not know (`SPUBLISH`
/// before Redis 7, or a renamed one).
pub(crate) fn is_unknown_command(e: &redis::RedisError) -> bool {
    e.to_string()
        .to_ascii_lowercase()
        .contains("unknown command")
}

fn lease_cmd(lease: &LeaseTry<'_>) -> Cmd {
    redis::cmd("SET")
        .arg(lease.key)
        .arg(lease.token)
        .arg("NX")
        .arg("PX")
        .arg(millis(lease.ttl))
        .to_owned()
}

/// `SET entry value PX ttl`, and each version the entry carries kept alive
/// at least as long as the entry.
fn store_cmds(store: &Store<'_>, by_hash: bool) -> Vec<Cmd> {
    let ttl = millis(store.ttl);
    let mut cmds = Vec::with_capacity(store.extend.len() + 1);
    cmds.push(
        redis::cmd("SET")
            .arg(store.key)
            .arg(store.value)
            .arg("PX")
            .arg(ttl)
            .to_owned(),
    );
    for k in &store.extend {
        cmds.push(EXTEND.call(by_hash, k).arg(ttl).to_owned());
    }
    cmds
}

/// A TTL for `PX`, which takes no 0: at least 1 ms.
fn millis(d: Duration) -> u64 {
    crate::duration::millis(d).max(1)
}

fn bytes(v: Option<Value>) -> Result<Option<Vec<u8>>, Error> {
    match v {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::BulkString(b)) => Ok(Some(b)),
        Some(Value::SimpleString(s)) => Ok(Some(s.into_bytes())),
        Some(Value::ServerError(e)) => Err(Error::Reply(format!("{e:?}"))),
        Some(other) => Err(Error::Reply(format!("expected a string, got {other:?}"))),
    }
}

fn int(v: Option<Value>) -> Result<i64, Error> {
    match v {
        Some(Value::Int(n)) => Ok(n),
        other => Err(Error::Reply(format!("expected an integer, got {other:?}"))),
    }
}
