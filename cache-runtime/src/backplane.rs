//! Each process keeps one subscription per cache, for two channels:
//! - `{ns}#fills`, on which a leader `PUBLISH`es the lease key it
//!   released: it wakes exactly the waiters of that key, promptly;
//! - with a local tier, `{ns}#invalidations` (the backplane), on which
//!   every invalidation `PUBLISH`es the version keys it deleted: applied to
//!   the local tier as they arrive. The local tier is served only while
//!   this subscription is confirmed; a `PING` every second finds a
//!   connection that stopped answering.
//!
//! On a cluster, the subscription goes to one of the nodes given to
//! `redis_cluster`, the next one after each failure: a cluster forwards
//! every classic `PUBLISH` to all its nodes, so one subscription hears the
//! whole cluster (sharded pub/sub would need one per shard, and messages
//! for all keys). While none answers, the local tier is bypassed and
//! waiters poll (see [`lease`](crate::lease)).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

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
    ) -> Arc<Self> {
        Arc::new(Backplane {
            link,
            channel: channel.into(),
            local: local.map(|(tier, channel)| (tier, channel.into())),
            waiters: Mutex::default(),
            subscriber: Mutex::default(),
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

    fn on_message(&self, msg: &redis::Msg) {
        let Ok(payload) = std::str::from_utf8(msg.get_payload_bytes()) else {
            return;
        };
        match &self.local {
            Some((tier, backplane)) if msg.get_channel_name() == &**backplane => {
                tier.invalidate([payload]);
            }
            _ => self.wake(payload),
        }
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

/// Keeps one subscription up (reconnecting after failures), wakes the
/// waiters of each announced fill and applies each invalidation to the
/// local tier. Ends with the backplane.
async fn subscribe(backplane: Weak<Backplane>) {
    let connect_timeout = Duration::from_secs(1);
    // After a failure, the next try waits longer (see `Backoff`); after a
    // refusal for want of channel rights (`NOPERM`), the longest wait at
    // once.
    let mut backoff = Backoff::new();
    let mut warned = false;
    loop {
        let Some((link, channel, local)) = backplane
            .upgrade()
            .map(|n| (n.link.clone(), n.channel.clone(), n.local.clone()))
        else {
            return;
        };
        // Through Sentinel, a new primary means a new subscription: the old
        // one may not hear the new primary's announcements.
        let mut switches = link.switches();
        let connected = tokio::time::timeout(connect_timeout, async {
            // Through Sentinel, the primary of the moment.
            let client = link.subscriber().await?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&*channel).await?;
            if let Some((_, backplane)) = &local {
                pubsub.subscribe(&**backplane).await?;
            }
            Ok::<_, Error>(pubsub)
        })
        .await;
        match connected {
            Ok(Ok(pubsub)) => {
                backoff.reset();
                tracing::debug!(target: "cache_runtime", %channel, "subscribed to fill announcements");
                if let Some((tier, _)) = &local {
                    // Confirmed: both channels' subscriptions were answered.
                    tier.up();
                }
                let (mut sink, mut messages) = pubsub.split();
                let mut heartbeat = tokio::time::interval(HEARTBEAT);
                heartbeat.reset();
                loop {
                    tokio::select! {
                        msg = messages.next() => {
                            let Some(msg) = msg else { break };
                            let Some(backplane) = backplane.upgrade() else {
                                return;
                            };
                            backplane.on_message(&msg);
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
                tracing::debug!(target: "cache_runtime", %channel, "subscription lost; reconnecting");
            }
            Ok(Err(Error::Redis(e)))
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
            Ok(Err(Error::Redis(e))) if crate::backend::redis::is_no_channel_rights(&e) => {
                tracing::debug!(target: "cache_runtime", error = %e, "no rights to subscribe to fill announcements");
                backoff.longest();
            }
            Ok(Err(error)) => {
                tracing::debug!(target: "cache_runtime", %error, "cannot subscribe to fill announcements")
            }
            Err(_) => {
                tracing::debug!(target: "cache_runtime", "subscribing to fill announcements timed out")
            }
        }
        if backplane.strong_count() == 0 {
            return;
        }
        backoff.wait().await;
    }
}

/// How often an idle subscription is checked with a `PING`, and how long
/// its answer may take: a subscription that stopped answering (a
/// black-holed connection) is dropped within twice this, and the local
/// tier bypassed meanwhile.
const HEARTBEAT: Duration = Duration::from_secs(1);
