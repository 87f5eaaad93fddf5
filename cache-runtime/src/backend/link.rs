//! The connection to a single-node Redis (or the primary that Sentinel
//! names), and when to give it up for a new one.
//!
//! redis-rs's `ConnectionManager` reconnects after a connection *breaks*,
//! but a connection that a network black-holes, or a primary that Sentinel
//! has demoted to a replica, is not broken: it just stops answering, or
//! answers writes with `READONLY`. So the link counts what happens on each
//! connection: after [`REPLACE_AFTER`] consecutive operations that could not
//! reach Redis (timeouts, refused or dropped connections), or at once after
//! a `READONLY`, the next operation gets a new connection; through Sentinel,
//! to the primary it names now.
//!
//! Sockets have TCP keepalive and a user timeout on, so that a peer gone
//! silent is also noticed by the kernel within about half a minute.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::sentinel::SentinelClient;
use redis::{ErrorKind, ServerErrorKind};
use tokio::sync::{Mutex, OnceCell, watch};
use tokio::task::JoinHandle;

use super::credentials::Credentials;
use crate::error::Error;
use crate::retry::Backoff;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Consecutive unreachable operations on one connection before it is
/// replaced.
const REPLACE_AFTER: u32 = 3;

/// Where the node is.
pub(crate) enum Node {
    /// A fixed address.
    Fixed(redis::Client),
    /// Any of these nodes, each connection to the next in turn (the nodes
    /// of a cluster, for its subscription: any one hears every message).
    Any {
        clients: Vec<redis::Client>,
        next: std::sync::atomic::AtomicUsize,
    },
    /// The primary of a Sentinel-monitored group, asked of the sentinels
    /// each time a connection is made.
    Sentinel {
        client: Mutex<SentinelClient>,
        master_name: String,
    },
}

/// One connection and its record of consecutive failures.
pub(crate) struct Conn {
    manager: OnceCell<ConnectionManager>,
    failures: AtomicU32,
}

/// The current connection to the node.
pub(crate) struct Link {
    node: Node,
    /// Asked for each new connection's user name and password.
    credentials: Option<Credentials>,
    op_timeout: Duration,
    current: RwLock<Arc<Conn>>,
    /// Counts the primary's moves that the sentinels announced.
    switches: watch::Sender<u64>,
    /// The task that listens to the sentinels' announcements.
    watcher: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// How an operation on a connection ended, for [`Link::record`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Health {
    /// Redis answered (maybe with an error about the command).
    Answered,
    /// Redis could not be reached: a timeout, a refused or dropped connection.
    Unreachable,
    /// The node is a replica now (after a failover): `READONLY`.
    Demoted,
}

impl Health {
    pub fn of<T>(result: &Result<T, Error>) -> Health {
        match result {
            Ok(_) => Health::Answered,
            Err(Error::Redis(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) => {
                Health::Demoted
            }
            Err(e) if e.is_unreachable() && !matches!(e, Error::CircuitOpen) => Health::Unreachable,
            Err(_) => Health::Answered,
        }
    }
}

/// TCP settings of every connection: no Nagle delay, keepalive probes after
/// 15 s idle (every 5 s, 3 of them), and unacknowledged data for 30 s
/// closes the connection.
pub(crate) fn tcp_settings() -> TcpSettings {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(15))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    let settings = TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive);
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let settings = settings.set_user_timeout(Duration::from_secs(30));
    settings
}

impl Link {
    pub fn new(node: Node, op_timeout: Duration, credentials: Option<Credentials>) -> Self {
        Link {
            node,
            credentials,
            op_timeout,
            current: RwLock::new(Arc::new(Conn::new())),
            switches: watch::Sender::new(0),
            watcher: std::sync::Mutex::default(),
        }
    }

    /// Changes each time the sentinels announce that the primary moved.
    pub fn switches(&self) -> watch::Receiver<u64> {
        self.switches.subscribe()
    }

    /// The connection that operations use now.
    pub fn current(&self) -> Arc<Conn> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The connection's manager, made on first use (through Sentinel, after
    /// asking for the primary). Call it inside the operation's timeout.
    pub async fn manager(self: &Arc<Self>, conn: &Conn) -> Result<ConnectionManager, Error> {
        if let Some(manager) = conn.manager.get() {
            return Ok(manager.clone());
        }
        self.watch_sentinels();
        let init: BoxFuture<'_, Result<&ConnectionManager, Error>> =
            Box::pin(conn.manager.get_or_try_init(|| async {
                let client = self.client().await?;
                ConnectionManager::new_lazy_with_config(client, self.config())
                    .map_err(|e| Error::Connect(e.to_string()))
            }));
        Ok(init.await?.clone())
    }

    /// A client for the node as it is now: the fixed one, or the primary
    /// that the sentinels name.
    pub async fn client(&self) -> Result<redis::Client, Error> {
        match &self.node {
            Node::Fixed(client) => Ok(client.clone()),
            Node::Any { clients, next } => {
                let i = next.fetch_add(1, Ordering::Relaxed) % clients.len().max(1);
                clients
                    .get(i)
                    .cloned()
                    .ok_or(Error::InvalidConfig("no node to connect to"))
            }
            Node::Sentinel { client, .. } => {
                // Boxed as a trait object: the sentinel's future is large
                // and deep, and callers' futures must not carry its type.
                let resolve: BoxFuture<'_, redis::RedisResult<redis::Client>> =
                    Box::pin(async move { client.lock().await.async_get_client().await });
                Ok(resolve.await?)
            }
        }
    }

    /// A client for a subscription: [`client`](Self::client), with the
    /// provider's current credentials (redis-rs asks no provider for
    /// pub/sub connections).
    pub async fn subscriber(&self) -> Result<redis::Client, Error> {
        let client = self.client().await?;
        Ok(match &self.credentials {
            Some(credentials) => credentials.apply(&client).await?,
            None => client,
        })
    }

    fn config(&self) -> ConnectionManagerConfig {
        // No response timeout and no retries: each operation is bounded by
        // the caller's own timer, and a failed one fails open at once.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.op_timeout))
            .set_response_timeout(None)
            .set_number_of_retries(0)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        // Asked by each connection the manager makes, reconnections included.
        match &self.credentials {
            Some(credentials) => config.set_credentials_provider(credentials.clone()),
            None => config,
        }
    }

    /// Records how an operation on `conn` ended, and replaces `conn` when
    /// it looks dead or demoted.
    pub fn record(&self, conn: &Arc<Conn>, health: Health) {
        let replace = match health {
            Health::Answered => {
                // No write on the hot path unless there is something to reset.
                if conn.failures.load(Ordering::Relaxed) != 0 {
                    conn.failures.store(0, Ordering::Relaxed);
                }
                false
            }
            Health::Unreachable => {
                conn.failures.fetch_add(1, Ordering::Relaxed) + 1 == REPLACE_AFTER
            }
            Health::Demoted => true,
        };
        if replace && self.replace(Some(conn)) {
            tracing::warn!(
                target: "cache_runtime",
                ?health,
                "Redis connection given up after failures; the next operation connects anew"
            );
        }
    }

    /// Replaces the current connection (only if it is still `failed`, when
    /// given: operations still in flight on a replaced connection must not
    /// replace its successor). Whether it did.
    fn replace(&self, failed: Option<&Arc<Conn>>) -> bool {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if failed.is_some_and(|failed| !Arc::ptr_eq(&current, failed)) {
            return false;
        }
        *current = Arc::new(Conn::new());
        true
    }

    /// Starts (or restarts) the task that listens to the sentinels'
    /// `+switch-master` announcements, so that a failover moves the
    /// connection at once, not when the old primary starts refusing writes
    /// (Sentinel demotes it some seconds later, and until then it takes
    /// writes that the new primary never sees).
    fn watch_sentinels(self: &Arc<Self>) {
        if !matches!(self.node, Node::Sentinel { .. }) {
            return;
        }
        let mut watcher = self.watcher.lock().unwrap_or_else(|p| p.into_inner());
        if watcher.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            *watcher = Some(runtime.spawn(watch_switches(Arc::downgrade(self))));
        }
    }

    /// The primary moved: new connections for operations and pub/sub.
    fn switched(&self) {
        self.replace(None);
        self.switches.send_modify(|n| *n += 1);
        tracing::warn!(
            target: "cache_runtime",
            "Sentinel announced a new primary; the next operation connects to it"
        );
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let watcher = self.watcher.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = watcher.take() {
            task.abort();
        }
    }
}

/// Listens to `+switch-master` on a sentinel (reconnecting after
/// failures, to whichever sentinel answers) until the link is gone.
async fn watch_switches(link: Weak<Link>) {
    let mut backoff = Backoff::new();
    loop {
        let subscribed = {
            let Some(link) = link.upgrade() else { return };
            let Node::Sentinel {
                client,
                master_name,
            } = &link.node
            else {
                return;
            };
            let master_name = master_name.clone();
            let subscribe: BoxFuture<'_, redis::RedisResult<redis::aio::PubSub>> =
                Box::pin(async move {
                    let sentinel = client.lock().await.async_get_sentinel_client().await?;
                    let mut pubsub = sentinel.get_async_pubsub().await?;
                    pubsub.subscribe("+switch-master").await?;
                    Ok(pubsub)
                });
            tokio::time::timeout(Duration::from_secs(1), subscribe)
                .await
                .map(|r| r.map(|pubsub| (pubsub, master_name)))
        };
        match subscribed {
            Ok(Ok((pubsub, master_name))) => {
                backoff.reset();
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    // "<master name> <old ip> <old port> <new ip> <new port>"
                    let payload = msg.get_payload_bytes();
                    if payload.split(|b| *b == b' ').next() == Some(master_name.as_bytes()) {
                        let Some(link) = link.upgrade() else { return };
                        link.switched();
                    }
                }
            }
            Ok(Err(error)) => {
                tracing::debug!(target: "cache_runtime", %error, "cannot subscribe to Sentinel announcements")
            }
            Err(_) => {
                tracing::debug!(target: "cache_runtime", "subscribing to Sentinel announcements timed out")
            }
        }
        if link.strong_count() == 0 {
            return;
        }
        backoff.wait().await;
    }
}

impl Conn {
    fn new() -> Self {
        Conn {
            manager: OnceCell::new(),
            failures: AtomicU32::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Health, Link, Node, REPLACE_AFTER};

    fn link() -> Link {
        let client = redis::Client::open("redis://127.0.0.1:1/").unwrap();
        Link::new(Node::Fixed(client), Duration::from_millis(10), None)
    }

    #[test]
    fn a_connection_is_replaced_after_consecutive_failures_only() {
        let link = link();
        let first = link.current();
        for _ in 0..REPLACE_AFTER - 1 {
            link.record(&first, Health::Unreachable);
        }
        link.record(&first, Health::Answered);
        for _ in 0..REPLACE_AFTER - 1 {
            link.record(&first, Health::Unreachable);
        }
        assert!(
            Arc::ptr_eq(&first, &link.current()),
            "an answer resets the count"
        );
        link.record(&first, Health::Unreachable);
        let second = link.current();
        assert!(!Arc::ptr_eq(&first, &second));
        // Late failures of the old connection do not touch the new one.
        for _ in 0..10 {
            link.record(&first, Health::Unreachable);
        }
        assert!(Arc::ptr_eq(&second, &link.current()));
        link.record(&second, Health::Demoted);
        assert!(
            !Arc::ptr_eq(&second, &link.current()),
            "READONLY replaces at once"
        );
    }
}
