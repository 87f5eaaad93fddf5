//! Stampede protection across processes: the fill lease of an entry.
//!
//! - A caller that misses tries the entry's lease,
//!   `SET {ns}#lease:{entry key} token NX PX lock_ttl` with a random token,
//!   in the same round trip that creates the entry's missing versions.
//!   Holding it, it computes and stores the value, then in the same round
//!   trip releases the lease with a compare-and-delete script (a holder
//!   whose lease already expired never deletes the next holder's) and
//!   announces the release (see [`backplane`](crate::backplane)).
//! - Callers that lose the race wait: they read the entry when the release
//!   is announced (the value reaches them a round trip after it is
//!   written), and on a short bounded backoff (5 ms doubling to 50 ms) that
//!   covers a subscription that is not up yet (or down). When the lease
//!   is gone without a value (the holder failed) or its time is up, they try
//!   to take it.
//! - A holder that panics or is dropped releases its lease from
//!   [`LeaseGuard`]'s `Drop` (and announces it), so waiters move on at once;
//!   a holder whose process died leaves a lease that expires after
//!   `lock_ttl`, and a waiter takes over.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::Snapshot;
use crate::backend::{LeaseTry, Leases, Store};
use crate::backplane::{Backplane, Registration};
use crate::error::Error;
use crate::schema::{self, KeyName};

/// The lease of one entry, not taken yet. Made before the first attempt, so
/// that no announcement of a release after it is missed.
///
/// From the moment the first attempt can be sent until its answer is known
/// ([`answered`](Self::answered)), the request's guard is armed: a request
/// dropped in between (its caller cancelled during that round trip)
/// releases the lease, which its `SET NX` may have taken, so that no lease
/// of ours is left for others to wait out.
pub(crate) struct LeaseRequest<'a> {
    registration: Option<Registration<'a>>,
    guard: LeaseGuard,
    ttl: Duration,
}

/// How a wait for another caller's fill ended.
pub(crate) enum Acquired {
    /// The lease is ours: compute, then release it through the guard.
    Held(LeaseGuard),
    /// The entry was filled meanwhile: the value starts at the offset.
    Filled(Snapshot, usize),
    /// The holder announced that its computation failed: compute now,
    /// without the lease, rather than queue for it behind the other
    /// processes' waiters.
    HolderFailed,
}

/// What a waiter reads, and how it knows the entry is filled.
pub(crate) struct Wait<'a> {
    pub entry_key: &'a str,
    pub version_keys: &'a [String],
    /// The value's offset in a snapshot whose entry is current.
    pub filled: &'a (dyn Fn(&Snapshot) -> Option<usize> + Sync),
    /// Whether the waiter's reads ask for the entry's remaining TTL.
    pub ttl: bool,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(50);

impl<'a> LeaseRequest<'a> {
    pub fn new(
        leases: Leases,
        backplane: Option<&'a Arc<Backplane>>,
        key: String,
        ttl: Duration,
    ) -> Self {
        LeaseRequest {
            registration: backplane.map(|n| n.register(&key)),
            guard: LeaseGuard {
                leases,
                channel: backplane.map(|n| n.channel().clone()),
                key,
                token: crate::ids::random_id(),
                armed: true,
            },
            ttl,
        }
    }

    /// The `SET NX` to send.
    pub fn attempt(&self) -> LeaseTry<'_> {
        LeaseTry {
            key: &self.guard.key,
            token: &self.guard.token,
            ttl: self.ttl,
        }
    }

    /// The first attempt was answered: `taken` says whether the lease is
    /// ours (and to release if the request is dropped from now on).
    pub fn answered(&mut self, taken: bool) {
        self.guard.armed = taken;
    }

    /// Gives up after the first attempt failed or timed out: Redis may
    /// have applied it, so the lease is released (off the caller's path),
    /// and no lease of ours is left for others to wait out.
    pub fn abandon(mut self) {
        self.guard.armed = true;
    }

    /// Takes the lease, given whether the first attempt (sent with the
    /// versions) took it; or waits until whoever holds it has filled the
    /// entry (or given up, or died and let it expire). `waited` is called
    /// once if it waits.
    pub async fn acquire(
        self,
        taken: bool,
        wait: Wait<'_>,
        waited: impl FnOnce(),
    ) -> Result<Acquired, Error> {
        // While the guard is armed, a `SET NX` of ours may have landed: if
        // a later one timed out but Redis applied it, dropping the guard
        // releases the lease, so none of ours is left for others to wait
        // out.
        let mut guard = self.guard;
        if taken {
            guard.armed = true;
            return Ok(Acquired::Held(guard));
        }
        guard.armed = false;
        waited();
        loop {
            let now = Instant::now();
            let deadline = now.checked_add(self.ttl).unwrap_or(now);
            let mut backoff = FIRST_BACKOFF;
            loop {
                if self
                    .registration
                    .as_ref()
                    .is_some_and(|r| r.waiting.holder_failed())
                {
                    return Ok(Acquired::HolderFailed);
                }
                let notified = self
                    .registration
                    .as_ref()
                    .map(|r| r.waiting.notify.notified());
                let mut notified = std::pin::pin!(notified);
                if let Some(n) = notified.as_mut().as_pin_mut() {
                    n.enable();
                }
                let snap = guard
                    .leases
                    .read(
                        KeyName::whole(wait.entry_key),
                        wait.version_keys.iter().map(|k| KeyName::whole(k)),
                        &guard.key,
                        wait.ttl,
                    )
                    .await?;
                let leased = snap.leased;
                if let Some(at) = (wait.filled)(&snap) {
                    return Ok(Acquired::Filled(snap, at));
                }
                let now = Instant::now();
                if !leased || now >= deadline {
                    break; // free (or expired by now): try to take it
                }
                let sleep = tokio::time::sleep(backoff.min(deadline - now));
                match notified.as_mut().as_pin_mut() {
                    Some(notified) => tokio::select! {
                        () = notified => {}
                        () = sleep => backoff = (backoff * 2).min(MAX_BACKOFF),
                    },
                    None => {
                        sleep.await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            guard.armed = true;
            let attempt = LeaseTry {
                key: &guard.key,
                token: &guard.token,
                ttl: self.ttl,
            };
            if guard.leases.try_take(&attempt).await? {
                return Ok(Acquired::Held(guard));
            }
            guard.armed = false;
        }
    }
}

/// A held lease: released (and announced) on drop unless released by
/// [`finish`](Self::finish), so a panicking or cancelled holder frees its
/// waiters at once instead of after `lock_ttl`. It owns what the release
/// needs.
pub(crate) struct LeaseGuard {
    leases: Leases,
    channel: Option<Arc<str>>,
    key: String,
    token: String,
    armed: bool,
}

impl LeaseGuard {
    /// Stores the entry (if any), releases the lease and announces it, in
    /// one round trip: as a failure when `failed` (the computation's result
    /// is not stored), so that other processes' waiters compute at once.
    /// On failure the guard's drop tries the release again, off the
    /// caller's path.
    pub async fn finish(mut self, store: Option<&Store<'_>>, failed: bool) -> Result<(), Error> {
        let message = match failed {
            true => schema::failed_fill_message(&self.key),
            false => self.key.clone(),
        };
        let announce = self.channel.as_deref().map(|c| (c, message.as_str()));
        let result = self
            .leases
            .finish(store, &self.key, &self.token, announce)
            .await;
        self.armed = result.is_err();
        result
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let leases = self.leases.clone();
        let channel = self.channel.take();
        let key = std::mem::take(&mut self.key);
        let token = std::mem::take(&mut self.token);
        handle.spawn(async move {
            let announce = channel.as_deref().map(|c| (c, key.as_str()));
            if let Err(error) = leases
                .finish(None, &key, &token, announce)
                .await
            {
                tracing::warn!(target: "cache_runtime", %error, lease_key = %key, "cannot release an abandoned lease; it expires on its own");
            }
        });
    }
}
