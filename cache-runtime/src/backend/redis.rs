//! The Redis backend: one multiplexed connection (redis-rs's
//! `ConnectionManager`, reconnecting on its own) or a cluster connection.
//!
//! Every operation is bounded by the cache's op timeout and never blocks the
//! caller longer: the connection is made lazily on first use, with a
//! connection timeout equal to the op timeout and a single retry, so a Redis
//! that is down or frozen costs each call at most the op timeout.
//!
//! On a single node, the commands of one operation go out as a pipeline (one
//! round trip). On a cluster they go out concurrently, one command per key,
//! each routed to its slot's node: still one round trip of wall time.

use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Value};

use super::{Fill, Snapshot};
use crate::error::Error;
use crate::stats::Counters;

/// Releases a lease only if it still holds our token, so a holder whose
/// lease expired never deletes the lease of the next holder.
const RELEASE_SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// Returns the key's value, or stores and returns `ARGV[1]` with a TTL of
/// `ARGV[2]` ms when the key has none.
const GET_OR_SET_SCRIPT: &str = "local v = redis.call('get', KEYS[1]) \
if v then return v end \
redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2]) \
return ARGV[1]";

/// Extends the key's TTL to `ARGV[1]` ms if it has a shorter one (`PEXPIRE
/// GT`, which Redis 6 lacks). A missing key stays missing.
const EXTEND_SCRIPT: &str = "local t = redis.call('pttl', KEYS[1]) \
if t >= 0 and t < tonumber(ARGV[1]) then redis.call('pexpire', KEYS[1], ARGV[1]) end \
return t";

pub(crate) enum Target {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

pub(crate) struct RedisBackend {
    target: Target,
    op_timeout: Duration,
    single: OnceLock<Result<ConnectionManager, String>>,
    cluster: tokio::sync::OnceCell<ClusterConnection>,
    stats: Arc<Counters>,
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
    pub fn new(target: Target, op_timeout: Duration, stats: Arc<Counters>) -> Self {
        RedisBackend {
            target,
            op_timeout,
            single: OnceLock::new(),
            cluster: tokio::sync::OnceCell::new(),
            stats,
        }
    }

    /// The client of a single-node backend (for pub/sub); `None` on a cluster.
    pub fn single_client(&self) -> Option<&redis::Client> {
        match &self.target {
            Target::Single(c) => Some(c),
            Target::Cluster(_) => None,
        }
    }

    async fn conn(&self) -> Result<Conn, Error> {
        match &self.target {
            Target::Single(client) => {
                let manager = self.single.get_or_init(|| {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(self.op_timeout))
                        .set_response_timeout(Some(self.op_timeout))
                        .set_number_of_retries(0)
                        .set_min_delay(Duration::from_millis(10))
                        .set_max_delay(Duration::from_millis(100));
                    ConnectionManager::new_lazy_with_config(client.clone(), config)
                        .map_err(|e| e.to_string())
                });
                match manager {
                    Ok(m) => Ok(Conn::Single(m.clone())),
                    Err(e) => Err(Error::Connect(e.clone())),
                }
            }
            Target::Cluster(client) => {
                let conn = self
                    .cluster
                    .get_or_try_init(|| client.get_async_connection())
                    .await?;
                Ok(Conn::Cluster(conn.clone()))
            }
        }
    }

    /// Runs commands in one round trip, bounded by the op timeout.
    async fn exec(&self, cmds: Vec<Cmd>) -> Result<Vec<Value>, Error> {
        Counters::add(&self.stats.round_trips);
        let run = async {
            match self.conn().await? {
                Conn::Single(mut c) => {
                    let mut pipe = redis::pipe();
                    for cmd in cmds {
                        pipe.add_command(cmd);
                    }
                    Ok(pipe.query_async::<Vec<Value>>(&mut c).await?)
                }
                Conn::Cluster(c) => Ok(try_join_all(cmds.into_iter().map(|cmd| {
                    let mut c = c.clone();
                    async move { cmd.query_async::<Value>(&mut c).await }
                }))
                .await?),
            }
        };
        match tokio::time::timeout(self.op_timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(self.op_timeout)),
        }
    }

    pub async fn read(
        &self,
        entry_key: &str,
        tag_keys: &[String],
        lease_key: Option<&str>,
    ) -> Result<Snapshot, Error> {
        // On one node, the entry and its versions in one `MGET`: a hit is a
        // single command, like a bare `GET`. On a cluster, the keys live in
        // different slots: one `GET` each.
        let mut cmds = Vec::with_capacity(tag_keys.len() + 2);
        match self.target {
            Target::Single(_) => {
                cmds.push(redis::cmd("MGET").arg(entry_key).arg(tag_keys).to_owned());
            }
            Target::Cluster(_) => {
                cmds.push(redis::cmd("GET").arg(entry_key).to_owned());
                cmds.extend(tag_keys.iter().map(|k| redis::cmd("GET").arg(k).to_owned()));
            }
        }
        if let Some(l) = lease_key {
            cmds.push(redis::cmd("EXISTS").arg(l).to_owned());
        }
        let mut values = self.exec(cmds).await?.into_iter();
        let mut strings = match self.target {
            Target::Single(_) => match values.next() {
                Some(Value::Array(items)) if items.len() == tag_keys.len() + 1 => items,
                other => {
                    return Err(Error::Reply(format!(
                        "expected {} values, got {other:?}",
                        tag_keys.len() + 1
                    )));
                }
            },
            Target::Cluster(_) => values.by_ref().take(tag_keys.len() + 1).collect(),
        }
        .into_iter();
        let entry = bytes(strings.next())?;
        let mut versions = Vec::with_capacity(tag_keys.len());
        for _ in tag_keys {
            versions.push(bytes(strings.next())?.map(|b| String::from_utf8_lossy(&b).into_owned()));
        }
        let leased = match lease_key {
            Some(_) => int(values.next())? > 0,
            None => false,
        };
        Ok(Snapshot {
            entry,
            versions,
            leased,
        })
    }

    /// One script per key: atomic, single-key (cluster-safe), and it runs
    /// on Redis 6 too (`SET NX GET` needs 7.0).
    pub async fn get_or_set(
        &self,
        keys: &[(&str, String)],
        ttl: Duration,
    ) -> Result<Vec<String>, Error> {
        let cmds = keys
            .iter()
            .map(|(k, fresh)| {
                redis::cmd("EVAL")
                    .arg(GET_OR_SET_SCRIPT)
                    .arg(1)
                    .arg(*k)
                    .arg(fresh)
                    .arg(millis(ttl))
                    .to_owned()
            })
            .collect();
        let values = self.exec(cmds).await?;
        let mut out = Vec::with_capacity(keys.len());
        for v in values {
            let version = bytes(Some(v))?.ok_or_else(|| Error::Reply("no version".into()))?;
            out.push(String::from_utf8_lossy(&version).into_owned());
        }
        Ok(out)
    }

    pub async fn store(&self, fill: &Fill<'_>) -> Result<(), Error> {
        self.exec(fill_cmds(fill)).await.map(drop)
    }

    pub async fn delete(&self, keys: &[String]) -> Result<(), Error> {
        let cmds = keys
            .iter()
            .map(|k| redis::cmd("DEL").arg(k).to_owned())
            .collect();
        self.exec(cmds).await.map(drop)
    }

    /// `SET lease token NX PX ttl`: whether we got the lease.
    pub async fn try_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, Error> {
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .to_owned();
        let v = self.exec(vec![cmd]).await?;
        Ok(!matches!(v.first(), Some(Value::Nil) | None))
    }

    /// Optionally stores an entry, then releases our lease and tells waiting
    /// processes, in one round trip.
    pub async fn finish_lease(
        &self,
        store: Option<&Fill<'_>>,
        lease_key: &str,
        token: &str,
        channel: &str,
    ) -> Result<(), Error> {
        let mut cmds = store.map(fill_cmds).unwrap_or_default();
        cmds.push(
            redis::cmd("EVAL")
                .arg(RELEASE_SCRIPT)
                .arg(1)
                .arg(lease_key)
                .arg(token)
                .to_owned(),
        );
        cmds.push(redis::cmd("PUBLISH").arg(channel).arg(lease_key).to_owned());
        self.exec(cmds).await.map(drop)
    }
}

/// `SET entry value PX ttl`, and each version the entry carries kept alive
/// at least as long as the entry.
fn fill_cmds(fill: &Fill<'_>) -> Vec<Cmd> {
    let ttl = millis(fill.ttl);
    let mut cmds = Vec::with_capacity(fill.version_keys.len() + 1);
    cmds.push(
        redis::cmd("SET")
            .arg(fill.key)
            .arg(fill.value)
            .arg("PX")
            .arg(ttl)
            .to_owned(),
    );
    for k in fill.version_keys {
        cmds.push(
            redis::cmd("EVAL")
                .arg(EXTEND_SCRIPT)
                .arg(1)
                .arg(k)
                .arg(ttl)
                .to_owned(),
        );
    }
    cmds
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
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
