//! Serving through expiry and failures: `grace`, `timeout` and
//! `refresh_ahead`.
//!
//! An entry of a function with `grace` records when its value stops being
//! fresh, and lives `grace` longer in the store. A call that finds it past
//! that point, but with every version still current (an invalidation
//! deletes a version, which ends grace too), has a *grace value*:
//!
//! - one refresh runs for the key, across processes (under the fill lease,
//!   in this process under the flight); callers that find a refresh already
//!   running get the grace value at once;
//! - when the refresh fails (`Err`, or a panic), its caller gets the grace
//!   value instead, and the failure is logged and counted; the grace value
//!   keeps serving until grace ends.
//!
//! Where the body can move into a task ([`Detached`]), the refresh runs
//! there and no caller waits for it, except up to `timeout` when one is
//! set (a fresh value in time is returned instead). Otherwise
//! ([`InPlace`]) the caller that takes the refresh waits for it.
//!
//! `refresh_ahead` refreshes a fresh value early, with probability growing
//! as its expiry nears and with the time its body took (XFetch: refresh
//! when `now + delta * beta * -ln(rand) >= expiry`, `beta = 2`, within the
//! last quarter of the TTL), so that a steadily read key is refreshed
//! before it expires and never misses, about once per TTL.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use super::{Call, Found, Step, fill_with};

use crate::backend::Snapshot;
use crate::duration::millis;
use crate::engine::Inner;
use crate::entry;
use crate::key::CallPart;
use crate::outcome::{Keep, Strategy};
use crate::spec::Spec;
use crate::stats::Stat;

impl Call<'_> {
    /// A current entry of a function that records freshness: fresh (a
    /// hit), due for an early refresh, or past its freshness (in grace).
    pub(super) fn by_freshness(&self, found: Found) -> Step<'_> {
        let Some((remaining, delta_ms)) = self.fresh_for(&found) else {
            return Step::Serve(found);
        };
        let options = &self.spec.options;
        if remaining == 0 {
            return if options.grace_secs.is_some() {
                Step::Refresh {
                    found,
                    expired: true,
                }
            } else {
                Step::Serve(found)
            };
        }
        if options.refresh_ahead {
            // XFetch, beta = 2, within the last quarter of the TTL (or
            // twice the body's duration, if longer): under heavy traffic
            // plain XFetch refreshes ever earlier (its earliness grows with
            // the log of the call rate), so the window keeps it near one
            // refresh per TTL; beta = 2 makes a refresh that starts too
            // late to finish before the expiry unlikely even for a key read
            // every few milliseconds. -ln(u) for u in (0, 1] is at least 0.
            const BETA: f64 = 2.0;
            let window = window(self.ttl, delta_ms);
            let u: f64 = 1.0 - rand::random::<f64>();
            if remaining <= window && BETA * delta_ms as f64 * -u.ln() >= remaining as f64 {
                return Step::Refresh {
                    found,
                    expired: false,
                };
            }
        }
        Step::Serve(found)
    }

    /// How long a found value stays fresh, in milliseconds (0: past its
    /// freshness), and how long the body that made it ran. On Redis, from
    /// the entry's remaining TTL read with it, less the grace it is kept
    /// for: the server's clock, so hosts whose clocks disagree agree on
    /// what is fresh. In process (one clock), from the time the header
    /// records.
    pub(super) fn fresh_for(&self, found: &Found) -> Option<(u64, u64)> {
        let ttl = match found {
            Found::Hit { snap, .. } | Found::Read { snap, .. } => snap.ttl,
            Found::Shared(_) => None,
        };
        self.freshness(found.entry(), ttl)
    }

    /// [`fresh_for`](Self::fresh_for) of an entry and its remaining TTL
    /// (when it was read).
    fn freshness(&self, entry: &[u8], ttl: Option<Duration>) -> Option<(u64, u64)> {
        let fresh = entry::freshness(entry)?;
        let remaining = match ttl {
            Some(ttl) => millis(ttl).saturating_sub(millis(self.spec.options.grace())),
            None => fresh.until_ms.saturating_sub(entry::now_ms()),
        };
        Some((remaining, fresh.delta_ms))
    }

    /// Counts a grace value served, and says why.
    fn served_grace(&self, why: &'static str) {
        self.count(Stat::grace_hits);
        tracing::debug!(target: "cache_runtime", key = %self.entry(), why, "served the grace value");
    }

    /// Whether a refresh of this key failed within [`REFRESH_BACKOFF`](crate::engine::REFRESH_BACKOFF).
    fn backing_off(&self) -> bool {
        self.inner
            .failed_refreshes
            .contains_key(&self.key_strings().entry)
    }

    /// A refresh's answer is not stored (`None`): the value it refreshed
    /// is invalidated, as `<fn>_invalidate(args)` does (its entry and its
    /// call's version), so no caller is served it again.
    async fn drop_refreshed(&self) {
        let keys = self.key_strings();
        let call_version = &keys.versions[1];
        let stale = [call_version.clone(), keys.entry.clone()];
        if let Err(error) = self.inner.invalidate(&stale, true).await {
            self.fail(&error, "invalidate");
        }
    }

    /// A refresh that failed: the grace value is served instead.
    fn refresh_failed(&self, what: &'static str) {
        self.inner
            .failed_refreshes
            .insert(self.key_strings().entry.clone(), ());
        self.count(Stat::grace_on_error);
        tracing::warn!(
            target: "cache_runtime",
            key = %self.entry(),
            what,
            "refresh failed; serving the grace value"
        );
    }
}

/// A value due for a refresh, found by the call's own read: `value` is
/// its decoding, a grace value when `expired`, else one still fresh, due
/// for an early refresh.
pub(crate) struct Due<R> {
    snap: Snapshot,
    epoch: u64,
    expired: bool,
    value: R,
}

impl<R> Due<R> {
    /// What both modes do first: a value not from the call's own read is
    /// served as it is, and so is a grace value whose key's refresh failed
    /// lately (in the last [`REFRESH_BACKOFF`](crate::engine::REFRESH_BACKOFF)).
    pub(super) fn of(call: &Call<'_>, found: Found, expired: bool, value: R) -> Result<Self, R> {
        let Found::Hit { snap, epoch, .. } = found else {
            return Err(value);
        };
        if expired && call.backing_off() {
            call.served_grace("a refresh failed within the backoff");
            return Err(value);
        }
        Ok(Due {
            snap,
            epoch,
            expired,
            value,
        })
    }
}

/// How a call refreshes a value it found in grace, or due for an early
/// refresh.
pub(crate) trait Mode<R, S, F> {
    fn refresh(self, call: &Call<'_>, due: Due<R>, strategy: S, body: F)
    -> impl Future<Output = R>;
}

/// The refresh runs in the caller that takes it.
pub(crate) struct InPlace;

impl<R, S: Strategy<R>, F: Future<Output = R>> Mode<R, S, F> for InPlace {
    async fn refresh(self, call: &Call<'_>, due: Due<R>, strategy: S, body: F) -> R {
        let Due {
            snap,
            epoch,
            expired,
            value,
        } = due;
        if !expired {
            // Early (refresh_ahead needs a body that can move): a hit.
            call.count(Stat::hits);
            return value;
        }
        call.start_refresh(snap.entry().map_or(0, super::fill_stamp));
        let fill = match call.miss(snap.into_versions(), epoch).await {
            Step::Compute(fill) => fill,
            Step::Serve(found) | Step::Refresh { found, .. } => {
                // Filled by another caller meanwhile.
                return match strategy.decode(call.spec.options.codec, found.value()) {
                    Ok(fresh) => {
                        call.served(&found);
                        fresh
                    }
                    Err(_) => {
                        call.served_grace("the new value does not decode");
                        value
                    }
                };
            }
            Step::RefreshedElsewhere => {
                call.served_grace("refresh running elsewhere");
                return value;
            }
            Step::Failed(_) => {
                call.served_grace("the refresh failed");
                return value;
            }
        };
        match run_refresh(call, fill, &strategy, body).await {
            Some((fresh, keep)) if keep != Keep::Nothing => fresh,
            _ => value,
        }
    }
}

/// The refresh runs in a task of its own; callers wait for it at most
/// `timeout` (a grace value) or not at all (an early refresh).
pub(crate) struct Detached;

impl<R, S, F> Mode<R, S, F> for Detached
where
    R: Send + 'static,
    S: Strategy<R> + Clone + Send + Sync + 'static,
    F: Future<Output = R> + Send + 'static,
{
    async fn refresh(self, call: &Call<'_>, due: Due<R>, strategy: S, body: F) -> R {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return InPlace.refresh(call, due, strategy, body).await;
        };
        let Due {
            snap,
            epoch,
            expired,
            value,
        } = due;
        let detached = DetachedCall {
            inner: call.inner.clone(),
            spec: call.spec,
            part: call.part.clone(),
            tags: call.tags.to_vec(),
            fill: snap.entry().map_or(0, super::fill_stamp),
            read: snap.into_versions(),
            epoch,
            started: call.started.load(std::sync::atomic::Ordering::Relaxed),
        };
        let task = runtime.spawn(refresh_task(detached, strategy, body));
        if !expired {
            call.count(Stat::hits);
            return value;
        }
        if let Some(ms) = call.spec.options.timeout_ms {
            match tokio::time::timeout(Duration::from_millis(ms), task).await {
                Ok(Ok(Some((fresh, keep)))) if keep != Keep::Nothing => return fresh,
                Ok(_) => {}
                Err(_) => {
                    call.count(Stat::body_timeouts);
                    call.served_grace("the refresh took longer than `timeout`");
                    return value;
                }
            }
        }
        call.served_grace("refreshing in the background");
        value
    }
}

/// What a refresh in the background takes of its call: the call's keys,
/// and the versions its read found (with the flights' epoch then).
struct DetachedCall {
    inner: Arc<Inner>,
    spec: &'static Spec,
    part: CallPart,
    tags: Vec<String>,
    /// The fill refreshed (its stamp).
    fill: u64,
    read: Vec<Option<Vec<u8>>>,
    epoch: u64,
    /// With `tags_from`: the call's start by the server's clock (before
    /// the refresh's body, so a tag of its value created since is seen).
    started: u64,
}

/// A refresh in the background: leads the key's refresh (or leaves it to
/// whoever does), runs the body, stores its value. Its result, when it ran.
async fn refresh_task<R, S, F>(detached: DetachedCall, strategy: S, body: F) -> Option<(R, Keep)>
where
    S: Strategy<R>,
    F: Future<Output = R>,
{
    let DetachedCall {
        inner,
        spec,
        part,
        tags,
        fill,
        read,
        epoch,
        started,
    } = detached;
    let call = Call::with_part(&inner, spec, part, &tags);
    call.started
        .store(started, std::sync::atomic::Ordering::Relaxed);
    // Spawned before another refresh of the key failed, and run after it
    // (a busy runtime): the backoff holds for it too.
    if call.backing_off() {
        return None;
    }
    call.start_refresh(fill);
    let fill = match Box::pin(call.miss(read, epoch)).await {
        Step::Compute(fill) => fill,
        _ => return None,
    };
    run_refresh(&call, fill, &strategy, body).await
}

/// Runs a refresh's body and stores its value: its result and what became
/// of it, or `None` when it panicked. A failure is logged and counted, and
/// backs the key off for [`REFRESH_BACKOFF`](crate::engine::REFRESH_BACKOFF).
async fn run_refresh<R, S, F>(
    call: &Call<'_>,
    fill: super::Fill<'_>,
    strategy: &S,
    body: F,
) -> Option<(R, Keep)>
where
    S: Strategy<R>,
    F: Future<Output = R>,
{
    call.count(Stat::computations);
    call.count(Stat::refreshes);
    let started = Instant::now();
    match AssertUnwindSafe(body).catch_unwind().await {
        Ok(result) => {
            let took = started.elapsed();
            call.function.body_took(took);
            let keep = fill_with(fill, strategy, None, &result, took).await;
            match keep {
                Keep::Store => {}
                // `None` without `cache_none`: an answer, not a failure
                // (the row is gone). The value being refreshed is not
                // served again: the next call computes.
                Keep::Share => call.drop_refreshed().await,
                Keep::Nothing => call.refresh_failed("the body returned an error"),
            }
            Some((result, keep))
        }
        Err(_) => {
            // The fill's drop releases the lease and tells the flight.
            drop(fill);
            call.refresh_failed("the body panicked");
            None
        }
    }
}

/// The last stretch of a `refresh_ahead` entry's freshness in which it may
/// be refreshed early: a quarter of the TTL, or twice the body's duration
/// if longer.
pub(super) fn window(ttl: Duration, delta_ms: u64) -> u64 {
    (crate::duration::millis(ttl) / 4).max(delta_ms.saturating_mul(2))
}
