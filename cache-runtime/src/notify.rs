//! Prompt wake-ups of callers waiting on another process's fill: each
//! process keeps one subscription to `{ns}#fills`, on which a leader
//! `PUBLISH`es the lease key it released, and wakes exactly the waiters of
//! that key. Single-node Redis only: a cluster has no subscription, and its
//! waiters poll (see [`lease`](crate::lease)).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::backend::link::Link;
use crate::error::Error;

/// Per-process waiters on fill announcements, by lease key, and the
/// subscription that wakes them.
pub(crate) struct Notifier {
    link: Arc<Link>,
    channel: Arc<str>,
    waiters: Mutex<HashMap<String, (Arc<Notify>, usize)>>,
    subscriber: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        let subscriber = self.subscriber.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = subscriber.take() {
            task.abort();
        }
    }
}

/// A registered interest in one lease key; unregisters on drop.
pub(crate) struct Registration<'a> {
    notifier: &'a Notifier,
    key: String,
    pub notify: Arc<Notify>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut waiters = self
            .notifier
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

impl Notifier {
    pub fn new(link: Arc<Link>, channel: String) -> Arc<Self> {
        Arc::new(Notifier {
            link,
            channel: channel.into(),
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
        let (notify, count) = waiters
            .entry(lease_key.to_owned())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        *count += 1;
        Registration {
            notifier: self,
            key: lease_key.to_owned(),
            notify: notify.clone(),
        }
    }

    fn start(self: &Arc<Self>) {
        let mut subscriber = self.subscriber.lock().unwrap_or_else(|p| p.into_inner());
        if subscriber.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        *subscriber = Some(tokio::spawn(subscribe(Arc::downgrade(self))));
    }

    fn wake(&self, lease_key: &[u8]) {
        let Ok(key) = std::str::from_utf8(lease_key) else {
            return;
        };
        let waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((notify, _)) = waiters.get(key) {
            notify.notify_waiters();
        }
    }
}

/// Keeps one subscription up (reconnecting after failures) and wakes the
/// waiters of each announced key. Ends with the notifier.
async fn subscribe(notifier: Weak<Notifier>) {
    let connect_timeout = Duration::from_secs(1);
    // After a failure, the next try waits longer (250 ms doubling to 30 s):
    // a user without channel rights must not make a subscription every
    // 250 ms forever.
    let mut retry = FIRST_RETRY;
    loop {
        let Some((link, channel)) = notifier
            .upgrade()
            .map(|n| (n.link.clone(), n.channel.clone()))
        else {
            return;
        };
        // Through Sentinel, a new primary means a new subscription: the old
        // one may not hear the new primary's announcements.
        let mut switches = link.switches();
        let connected = tokio::time::timeout(connect_timeout, async {
            // Through Sentinel, the primary of the moment.
            let client = link.client().await?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&*channel).await?;
            Ok::<_, Error>(pubsub)
        })
        .await;
        match connected {
            Ok(Ok(pubsub)) => {
                retry = FIRST_RETRY;
                tracing::debug!(target: "cache_runtime", %channel, "subscribed to fill announcements");
                let mut messages = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        msg = messages.next() => {
                            let Some(msg) = msg else { break };
                            let Some(notifier) = notifier.upgrade() else {
                                return;
                            };
                            notifier.wake(msg.get_payload_bytes());
                        }
                        _ = switches.changed() => break,
                    }
                }
                tracing::debug!(target: "cache_runtime", %channel, "fill announcements lost; reconnecting");
            }
            Ok(Err(error)) => {
                tracing::debug!(target: "cache_runtime", %error, "cannot subscribe to fill announcements")
            }
            Err(_) => {
                tracing::debug!(target: "cache_runtime", "subscribing to fill announcements timed out")
            }
        }
        if notifier.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}

/// The wait before a subscription's next try after a failure: doubled
/// after each failure up to [`MAX_RETRY`], back to this after a success
/// (here and for the sentinels' announcements).
pub(crate) const FIRST_RETRY: Duration = Duration::from_millis(250);
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(30);
