//! Stampede protection across processes: fill leases in Redis, and prompt
//! wake-ups of the callers that wait on them.
//!
//! - A caller that misses takes the entry's lease with
//!   `SET {ns}:lease:{key} token NX PX lock_ttl` (random token). Holding it,
//!   it computes and stores the value, then in the same round trip releases
//!   the lease with a compare-and-delete script (a holder whose lease already
//!   expired never deletes the next holder's) and `PUBLISH`es the lease key
//!   on `{ns}:__fills`.
//! - Callers that lose the race wait. Each process keeps one subscription to
//!   `{ns}:__fills` and wakes exactly the waiters of the announced key, which
//!   read the entry at once: the value reaches them a round trip after it is
//!   written. Reads on a short bounded backoff (5 ms doubling to 50 ms) cover
//!   a subscription that is not up yet or a cluster (no subscription).
//! - A leader that panics or is dropped releases its lease from `Drop` (and
//!   announces it), so waiters move on at once; a leader whose process died
//!   leaves a lease that expires after `lock_ttl`, and a waiter takes over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::cache::Inner;

/// Per-process waiters on fill announcements, by lease key.
#[derive(Default)]
pub(crate) struct Notifier {
    waiters: Mutex<HashMap<String, (Arc<Notify>, usize)>>,
    subscriber: Mutex<Option<JoinHandle<()>>>,
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
    pub fn register(&self, lease_key: &str) -> Registration<'_> {
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

    fn wake(&self, lease_key: &[u8]) {
        let Ok(key) = std::str::from_utf8(lease_key) else {
            return;
        };
        let waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((notify, _)) = waiters.get(key) {
            notify.notify_waiters();
        }
    }

    /// Starts this process's subscription to fill announcements, unless it
    /// runs. Must be called from within a Tokio runtime; a subscription whose
    /// runtime has shut down is started again on the caller's.
    pub fn start(&self, inner: &Arc<Inner>) {
        let Some(client) = inner.backend.as_redis().and_then(|r| r.single_client()) else {
            return;
        };
        let mut subscriber = self.subscriber.lock().unwrap_or_else(|p| p.into_inner());
        if subscriber.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let task = subscribe(client.clone(), inner.fill_channel(), Arc::downgrade(inner));
        *subscriber = Some(tokio::spawn(task));
    }
}

/// Keeps one subscription to `channel` up (reconnecting after failures) and
/// wakes the waiters of each announced key. Ends with the cache.
async fn subscribe(client: redis::Client, channel: String, cache: Weak<Inner>) {
    let connect_timeout = Duration::from_secs(1);
    loop {
        let connected = tokio::time::timeout(connect_timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match connected {
            Ok(Ok(pubsub)) => {
                tracing::debug!(target: "cache_runtime", %channel, "subscribed to fill announcements");
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Some(inner) = cache.upgrade() else { return };
                    inner.notifier.wake(msg.get_payload_bytes());
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
        if cache.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The next wait of a polling waiter: 5 ms doubling up to 50 ms.
pub(crate) fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(Duration::from_millis(50))
}

pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(5);

/// A held lease: released (and announced) on drop unless the leader
/// finished normally, so a panicking or cancelled leader frees its waiters
/// at once instead of after `lock_ttl`.
pub(crate) struct LeaseGuard {
    pub inner: Arc<Inner>,
    pub lease_key: String,
    pub token: String,
    pub armed: bool,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = self.inner.clone();
        let lease_key = std::mem::take(&mut self.lease_key);
        let token = std::mem::take(&mut self.token);
        handle.spawn(async move {
            if let Some(redis) = inner.backend.as_redis() {
                let channel = inner.fill_channel();
                if let Err(error) = redis.finish_lease(None, &lease_key, &token, &channel).await {
                    tracing::warn!(target: "cache_runtime", %error, %lease_key, "cannot release an abandoned lease; it expires on its own");
                }
            }
        });
    }
}

/// A random lease token.
pub(crate) fn token() -> String {
    crate::key::hex(&rand::random::<[u8; 16]>())
}
