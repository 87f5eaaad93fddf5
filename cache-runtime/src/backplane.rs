//! Each process keeps subscriptions per cache for two channels:
//! - `{ns}#fills`, on which a leader announces the lease key it released:
//!   it wakes exactly the waiters of that key, promptly;
//! - with a local tier, `{ns}#invalidations` (the backplane), on which
//!   every invalidation announces the version keys it deleted: applied to
//!   the local tier as they arrive. The local tier (and the versions it
//!   holds) is served only while every subscription is confirmed; a
//!   `PING` every second finds a connection that stopped answering.
//!
//! On a single node (or through Sentinel, to the primary of the moment):
//! one classic subscription (`SUBSCRIBE`), and `PUBLISH`.
//!
//! On a cluster, sharded pub/sub (Redis 7, Valkey), so that a message
//! costs one shard rather than every node (a cluster forwards a classic
//! `PUBLISH` to all its nodes, a `SPUBLISH` only within the shard of the
//! channel's slot):
//! - each channel is split into [`SHARD_GROUPS`](schema::SHARD_GROUPS)
//!   shard channels `{channel}{sN}`, one per group of 1024 slots, each
//!   named to hash into its group; a message about a key (the version key
//!   invalidated, the lease key released) is `SPUBLISH`ed on its slot
//!   group's channel, so it usually stays on the shard that owns the key;
//! - each process `SSUBSCRIBE`s to every shard channel, each at the
//!   primary that owns its slot, over one cluster connection (RESP3), and
//!   so hears every message, once;
//! - confirmed once every shard channel's subscription was answered. At
//!   the first sign that a message may have been missed, the local tier is
//!   bypassed and every subscription made again from a fresh view of the
//!   cluster: a connection dropped (a primary died), a subscription the
//!   server ended (`SUNSUBSCRIBE`: its slot moved to another shard, or
//!   its primary stepped down in a failover), or a primary that stopped
//!   answering `PING`. A subscription that cannot be
//!   made (a slot map that is not settled yet) is tried again after a
//!   backoff.
//!
//! Beside the sharded subscriptions, each process keeps one classic
//! subscription to any of the nodes given to `redis_cluster` (the next one
//! after each failure), which hears the whole cluster, confirmed and lost
//! together with them. A publisher whose `SPUBLISH` is refused as an
//! unknown command (a cluster before Redis 7, or part way through an
//! upgrade) publishes classic from then on, and a shard channel whose node
//! refuses `SSUBSCRIBE` is left out: every message is heard by one of the
//! two, whatever each node runs, and so is one from a process of an older
//! release of this crate. An invalidation whose `SPUBLISH` no subscriber
//! heard at its node (no process there has a local tier, or the slot is
//! moving and its subscribers are still at the old owner, until that one
//! ends their subscriptions) is published classic too. The classic
//! subscription carries nothing else while every publisher uses
//! `SPUBLISH`. A single
//! URL to a cluster node (a managed cluster's endpoint) is asked whether it
//! is a cluster node (`INFO cluster`), as the backend asks it, so that
//! publishers and subscribers always agree. While a subscription is down,
//! the local tier is bypassed and waiters poll (see [`lease`](crate::lease)).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::try_join_all;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use crate::backend::clients::{self, Tls};
use crate::backend::credentials::Credentials;
use crate::backend::link::Link;
use crate::error::Error;
use crate::local::LocalTier;
use crate::retry::Backoff;
use crate::schema;

/// Per-process waiters on fill announcements, by lease key, and the
/// subscription that wakes them.
pub(crate) struct Backplane {
    link: Arc<Link>,
    channel: Arc<str>,
    /// The local tier, and the backplane's channel.
    local: Option<(Arc<LocalTier>, Arc<str>)>,
    waiters: Mutex<HashMap<String, (Arc<Waiting>, usize)>>,
    subscriber: Mutex<Option<JoinHandle<()>>>,
    /// On a cluster (or a node that may be one): how to reach its shards.
    shards: Option<Arc<Shards>>,
}

/// How the subscriptions reach a cluster's shards.
pub(crate) struct Shards {
    /// The cluster's nodes (any one of them leads to the rest).
    pub urls: Vec<String>,
    pub tls: Tls,
    pub op_timeout: Duration,
    /// The credentials provider (`credentials`), asked by each connection
    /// the subscriptions make.
    pub credentials: Option<Credentials>,
    /// Whether the one URL given must be asked first whether it is a
    /// cluster node (`INFO cluster`), as the backend does.
    pub detect: bool,
}

impl Shards {
    pub fn new(
        urls: Vec<String>,
        tls: Tls,
        op_timeout: Duration,
        credentials: Option<Credentials>,
        detect: bool,
    ) -> Self {
        Shards {
            urls,
            tls,
            op_timeout,
            credentials,
            detect,
        }
    }
}

impl std::fmt::Debug for Backplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backplane")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Drop for Backplane {
    fn drop(&mut self) {
        let subscriber = self.subscriber.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = subscriber.take() {
            task.abort();
        }
    }
}

/// A registered interest in one lease key; unregisters on drop.
pub(crate) struct Registration<'a> {
    backplane: &'a Backplane,
    key: String,
    pub waiting: Arc<Waiting>,
}

/// The waiters of one lease key: woken by each announcement; `failed`
/// once its holder announced that its computation failed.
#[derive(Default)]
pub(crate) struct Waiting {
    pub notify: Notify,
    failed: AtomicBool,
}

impl Waiting {
    /// Whether a holder of the lease announced a failure since the
    /// registration.
    pub fn holder_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut waiters = self
            .backplane
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((_, count)) = waiters.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                waiters.remove(&self.key);
            }
        }
    }
}

impl Backplane {
    pub fn new(
        link: Arc<Link>,
        channel: String,
        local: Option<(Arc<LocalTier>, String)>,
        shards: Option<Shards>,
    ) -> Arc<Self> {
        Arc::new(Backplane {
            link,
            channel: channel.into(),
            local: local.map(|(tier, channel)| (tier, channel.into())),
            waiters: Mutex::default(),
            subscriber: Mutex::default(),
            shards: shards.map(Arc::new),
        })
    }

    /// The channel fills are announced on.
    pub fn channel(&self) -> &Arc<str> {
        &self.channel
    }

    /// Registers interest in `lease_key`, starting the subscription if it
    /// is not running (must be called within a Tokio runtime; a
    /// subscription whose runtime has shut down is started again on the
    /// caller's).
    pub fn register(self: &Arc<Self>, lease_key: &str) -> Registration<'_> {
        self.start();
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let (waiting, count) = waiters
            .entry(lease_key.to_owned())
            .or_insert_with(|| (Arc::default(), 0));
        *count += 1;
        Registration {
            backplane: self,
            key: lease_key.to_owned(),
            waiting: waiting.clone(),
        }
    }

    /// Starts the subscription if it is not running.
    pub fn start(self: &Arc<Self>) {
        let mut subscriber = self.subscriber.lock().unwrap_or_else(|p| p.into_inner());
        if subscriber.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        *subscriber = Some(tokio::spawn(subscribe(Arc::downgrade(self))));
    }

    /// Applies a message heard on `channel`: the backplane's (or one of
    /// its shard channels, which start with its name) or the fills'.
    fn on_message(&self, channel: &[u8], payload: &[u8]) {
        let Ok(payload) = std::str::from_utf8(payload) else {
            return;
        };
        match &self.local {
            Some((tier, backplane)) if channel.starts_with(backplane.as_bytes()) => {
                tier.invalidate([payload]);
            }
            _ => self.wake(payload),
        }
    }

    /// Every channel this process subscribes to: the fills', and with a
    /// local tier the backplane's.
    fn channels(&self) -> Vec<&str> {
        let mut channels = vec![&*self.channel];
        if let Some((_, backplane)) = &self.local {
            channels.push(backplane);
        }
        channels
    }

    /// Wakes the waiters of a lease key, told whether its holder failed.
    fn wake(&self, message: &str) {
        let (key, failed) = match message.strip_prefix(schema::FAILED_FILL) {
            Some(key) => (key, true),
            None => (message, false),
        };
        let waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((waiting, _)) = waiters.get(key) {
            if failed {
                waiting.failed.store(true, Ordering::Release);
            }
            waiting.notify.notify_waiters();
        }
    }
}

/// How one try at subscribing ended.
enum Ended {
    /// It was confirmed, and later lost.
    Lost,
    /// It could not be made.
    Failed(Error),
    /// It took longer than allowed.
    TimedOut,
}

/// Keeps the subscriptions up (reconnecting after failures), wakes the
/// waiters of each announced fill and applies each invalidation to the
/// local tier. Ends with the backplane.
async fn subscribe(backplane: Weak<Backplane>) {
    // After a failure, the next try waits longer (see `Backoff`); after a
    // refusal for want of channel rights (`NOPERM`), the longest wait at
    // once.
    let mut backoff = Backoff::new();
    let mut warned = false;
    loop {
        let Some((link, local, shards)) = backplane
            .upgrade()
            .map(|n| (n.link.clone(), n.local.clone(), n.shards.clone()))
        else {
            return;
        };
        let ended = match shards {
            Some(shards) => match is_cluster(&link, &shards).await {
                Ok(true) => both(&backplane, &link, &shards).await,
                Ok(false) => classic(&backplane, &link, None).await,
                Err(e) => Ended::Failed(e),
            },
            _ => classic(&backplane, &link, None).await,
        };
        match ended {
            Ended::Lost => {
                backoff.reset();
                tracing::debug!(target: "cache_runtime", "subscription lost; reconnecting");
            }
            Ended::Failed(Error::Redis(e))
                if local.is_some() && crate::backend::redis::is_no_channel_rights(&e) =>
            {
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!(
                        target: "cache_runtime",
                        error = %e,
                        "no rights to subscribe to the cache's channels: the local tier is bypassed"
                    );
                }
                // A configuration fact, which a retry within seconds will
                // not change: the next try waits the longest.
                backoff.longest();
            }
            Ended::Failed(Error::Redis(e)) if crate::backend::redis::is_no_channel_rights(&e) => {
                tracing::debug!(target: "cache_runtime", error = %e, "no rights to subscribe to fill announcements");
                backoff.longest();
            }
            Ended::Failed(error) => {
                tracing::debug!(target: "cache_runtime", %error, "cannot subscribe to fill announcements")
            }
            Ended::TimedOut => {
                tracing::debug!(target: "cache_runtime", "subscribing to fill announcements timed out")
            }
        }
        if backplane.strong_count() == 0 {
            return;
        }
        backoff.wait().await;
    }
}

/// How long making the subscriptions may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the subscriptions go to a cluster: told, or for the one URL
/// given, asked of its node (`INFO cluster`), as the backend asks it.
async fn is_cluster(link: &Link, shards: &Shards) -> Result<bool, Error> {
    if !shards.detect {
        return Ok(true);
    }
    let asked = tokio::time::timeout(CONNECT_TIMEOUT, async {
        // A connection of its own: with the provider's credentials.
        let client = link.subscriber().await?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let info: redis::Value = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut conn)
            .await?;
        Ok::<_, Error>(match info {
            redis::Value::BulkString(text) => text
                .windows(b"cluster_enabled:1".len())
                .any(|w| w == b"cluster_enabled:1"),
            redis::Value::VerbatimString { text, .. } => text.contains("cluster_enabled:1"),
            _ => false,
        })
    })
    .await;
    match asked {
        Ok(Ok(cluster)) => Ok(cluster),
        // A node that refuses `INFO` is taken as a single node, as the
        // backend takes it.
        Ok(Err(Error::Redis(e))) if e.kind() != redis::ErrorKind::Io => Ok(false),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Timeout(CONNECT_TIMEOUT)),
    }
}

/// On a cluster: the sharded subscriptions and, beside them, one classic
/// subscription, confirmed together and lost together. Publishers use
/// `SPUBLISH` where the key's node has it and `PUBLISH` where it does not
/// (a cluster part way through an upgrade to Redis 7, a process of an
/// older release of this crate): a subscriber that listens to both misses
/// neither. The classic subscription costs a connection; it carries a
/// message only when a publisher fell back.
async fn both(backplane: &Weak<Backplane>, link: &Link, shards: &Shards) -> Ended {
    let local = backplane.upgrade().and_then(|n| n.local.clone());
    let (classic_up, classic_confirmed) = oneshot::channel();
    let (sharded_up, sharded_confirmed) = oneshot::channel();
    let up = async {
        if classic_confirmed.await.is_ok()
            && sharded_confirmed.await.is_ok()
            && let Some((tier, _)) = &local
        {
            tier.up();
        }
        std::future::pending::<()>().await
    };
    let ended = tokio::select! {
        ended = classic(backplane, link, Some(classic_up)) => ended,
        ended = sharded(backplane, shards, sharded_up) => ended,
        () = up => Ended::Lost,
    };
    if let Some((tier, _)) = &local {
        tier.down();
    }
    ended
}

/// One classic subscription (`SUBSCRIBE`) to one node: through Sentinel,
/// the primary of the moment; on a cluster, any node, which hears every
/// node's `PUBLISH`.
///
/// With `confirmed`, the confirmation is sent there instead of raising
/// the local tier (see [`both`]).
async fn classic(
    backplane: &Weak<Backplane>,
    link: &Link,
    confirmed: Option<oneshot::Sender<()>>,
) -> Ended {
    let Some((channels, local)) = backplane.upgrade().map(|n| {
        (
            n.channels()
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
            n.local.clone(),
        )
    }) else {
        return Ended::Lost;
    };
    // Through Sentinel, a new primary means a new subscription: the old
    // one may not hear the new primary's announcements.
    let mut switches = link.switches();
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
        // Through Sentinel, the primary of the moment.
        let client = link.subscriber().await?;
        let mut pubsub = client.get_async_pubsub().await?;
        for channel in &channels {
            pubsub.subscribe(channel).await?;
        }
        Ok::<_, Error>(pubsub)
    })
    .await;
    let pubsub = match connected {
        Ok(Ok(pubsub)) => pubsub,
        Ok(Err(e)) => return Ended::Failed(e),
        Err(_) => return Ended::TimedOut,
    };
    tracing::debug!(target: "cache_runtime", ?channels, "subscribed (classic pub/sub)");
    match (confirmed, &local) {
        (Some(confirmed), _) => {
            let _ = confirmed.send(());
        }
        // Confirmed: every channel's subscription was answered.
        (None, Some((tier, _))) => tier.up(),
        (None, None) => {}
    }
    let (mut sink, mut messages) = pubsub.split();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.reset();
    loop {
        tokio::select! {
            msg = messages.next() => {
                let Some(msg) = msg else { break };
                let Some(backplane) = backplane.upgrade() else { break };
                backplane.on_message(msg.get_channel_name().as_bytes(), msg.get_payload_bytes());
            }
            _ = switches.changed() => break,
            _ = heartbeat.tick() => {
                let ping = tokio::time::timeout(HEARTBEAT, sink.ping::<redis::Value>());
                if !matches!(ping.await, Ok(Ok(_))) {
                    break;
                }
            }
        }
    }
    if let Some((tier, _)) = &local {
        tier.down();
    }
    Ended::Lost
}

/// The sharded subscriptions to a cluster (`SSUBSCRIBE`): every shard
/// channel of each channel, each at the primary that owns its slot, over
/// one cluster connection (RESP3). Confirmed once every channel's
/// subscription was answered; lost, for a new try from a fresh view of
/// the cluster, at the first sign that one may have missed a message: a
/// connection dropped (`Disconnection`), a subscription the server ended
/// (`SUNSUBSCRIBE`: its slot moved to another shard), or a primary that
/// stopped answering `PING`.
///
/// A shard channel whose node does not know `SSUBSCRIBE` (a cluster part
/// way through an upgrade to Redis 7) is left out: a publisher's
/// `SPUBLISH` to that node fails the same way, and it publishes classic
/// instead, which the classic subscription beside this one hears (see
/// [`both`]). The confirmation is sent to `confirmed`.
async fn sharded(
    backplane: &Weak<Backplane>,
    shards: &Shards,
    confirmed: oneshot::Sender<()>,
) -> Ended {
    let Some((channels, local)) = backplane.upgrade().map(|n| {
        (
            n.channels()
                .into_iter()
                .flat_map(schema::shard_channels)
                .collect::<Vec<_>>(),
            n.local.clone(),
        )
    }) else {
        return Ended::Lost;
    };
    let (pushes, mut received) = tokio::sync::mpsc::unbounded_channel();
    let client = match clients::cluster_subscriber(
        &shards.urls,
        &shards.tls,
        shards.op_timeout,
        shards.credentials.as_ref(),
        pushes,
    ) {
        Ok(client) => client,
        Err(e) => return Ended::Failed(e),
    };
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let conn = client.get_async_connection().await?;
        // One channel a command: each goes to its own slot's primary.
        try_join_all(channels.iter().map(|channel| {
            let mut conn = conn.clone();
            async move {
                match conn.ssubscribe(channel).await {
                    Err(e) if crate::backend::redis::is_unknown_command(&e) => Ok(()),
                    other => other,
                }
            }
        }))
        .await?;
        Ok::<_, Error>(conn)
    })
    .await;
    let conn = match connected {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Ended::Failed(e),
        Err(_) => return Ended::TimedOut,
    };
    tracing::debug!(target: "cache_runtime", channels = channels.len(), "subscribed (sharded pub/sub)");
    let _ = confirmed.send(());
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.reset();
    let ping = || {
        let routing = RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllMasters,
            Some(ResponsePolicy::AllSucceeded),
        ));
        let mut conn = conn.clone();
        async move { conn.route_command(redis::cmd("PING"), routing).await }
    };
    loop {
        tokio::select! {
            push = received.recv() => {
                let Some(push) = push else { break };
                match push.kind {
                    redis::PushKind::SMessage => {
                        let Some(backplane) = backplane.upgrade() else { break };
                        if let [redis::Value::BulkString(channel), redis::Value::BulkString(payload), ..] =
                            push.data.as_slice()
                        {
                            backplane.on_message(channel, payload);
                        }
                    }
                    redis::PushKind::Disconnection | redis::PushKind::SUnsubscribe => break,
                    _ => {}
                }
            }
            _ = heartbeat.tick() => {
                if !matches!(tokio::time::timeout(HEARTBEAT, ping()).await, Ok(Ok(_))) {
                    break;
                }
            }
        }
    }
    if let Some((tier, _)) = &local {
        tier.down();
    }
    // Dropping the connection closes every node's.
    drop(conn);
    Ended::Lost
}

/// How often an idle subscription is checked with a `PING`, and how long
/// its answer may take: a subscription that stopped answering (a
/// black-holed connection) is dropped within twice this, and the local
/// tier bypassed meanwhile.
const HEARTBEAT: Duration = Duration::from_secs(1);
