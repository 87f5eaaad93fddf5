//! A value given instead of computed: `Entry::set` and the `<fn>_prime`
//! companions. The call neither looks up the entry nor waits for another
//! computation: it reads the entry's versions, creates the missing ones,
//! then takes its body's result (the given value, at hand) and stores it
//! under them through the fill, as a miss stores a computed value. An
//! invalidation after that read leaves the value unserved.
//!
//! A `<fn>_prime` companion derives the key and tags with the same code,
//! at the same spans, as its function, and passes `async { value }` as the
//! body: it runs the call in [`prime`], whose task-local tells the call
//! path to store rather than look up.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Call, Fill, fill_with};
use crate::engine::Inner;
use crate::key::KeyPart;
use crate::outcome::{Keep, Strategy};
use crate::spec::Spec;
use crate::stats::Counters;

tokio::task_local! {
    static PRIMING: Arc<StoreOnly>;
}

/// A call that stores its body's result without a lookup, and whether it
/// did.
#[derive(Debug, Default)]
pub(crate) struct StoreOnly {
    /// Taken by the first call that finds it in the task-local.
    taken: AtomicBool,
    stored: AtomicBool,
}

impl StoreOnly {
    /// Whether the value was stored: not when the backend failed, there is
    /// no cache, the key did not encode, or the rules of the function
    /// (`unless`, `ttl_from`, `max_value_bytes`, an `Err`, a `None`, a
    /// value that does not encode) keep it out.
    pub(crate) fn stored(&self) -> bool {
        self.stored.load(Ordering::Acquire)
    }
}

/// The store-only mark of the current task's call, if it is the first
/// call of the task's [`prime`] scope to ask.
pub(super) fn take() -> Option<Arc<StoreOnly>> {
    PRIMING
        .try_with(|mark| (!mark.taken.swap(true, Ordering::AcqRel)).then(|| mark.clone()))
        .ok()
        .flatten()
}

/// Runs `call` (one call of a `#[cached]` function whose body gives the
/// value) so that it stores the value without a lookup: whether it did.
pub(crate) async fn prime<Fut: Future>(call: Fut) -> bool {
    let mark = Arc::new(StoreOnly::default());
    PRIMING.scope(mark.clone(), call).await;
    mark.stored()
}

/// Stores `body`'s result as the value of the call described by the rest
/// (without a lookup, a flight or the lease), and returns it.
pub(super) async fn store<R, S: Strategy<R>, F: Future<Output = R>>(
    inner: Option<&Arc<Inner>>,
    spec: &'static Spec,
    key: KeyPart,
    tags: &[String],
    strategy: &S,
    body: F,
    mark: &StoreOnly,
) -> R {
    let Some(inner) = inner else {
        tracing::warn!(
            target: "cache_runtime",
            function = spec.path(),
            "no cache: the given value is not stored"
        );
        return body.await;
    };
    let call = match Call::new(inner, spec, key, tags) {
        Ok(call) => call,
        Err(error) => {
            Counters::add(&inner.stats.errors);
            tracing::warn!(
                target: "cache_runtime",
                function = spec.path(),
                %error,
                "cannot derive the cache key; the given value is not stored"
            );
            return body.await;
        }
    };
    let read = match inner
        .backend
        .read(call.entry(), call.version_names(), None, false)
        .await
    {
        Ok(snap) => Some(snap.into_versions()),
        Err(error) => {
            call.fail(&error, "read");
            None
        }
    };
    let versions = match read {
        Some(read) => call.versions(read, None).await,
        None => None,
    };
    let value = body.await;
    let Some((versions, _)) = versions else {
        return value;
    };
    let fill = Fill::new(&call, versions, None, None);
    let keep = fill_with(fill, strategy, None, &value, Duration::ZERO).await;
    if keep == Keep::Store && !call.failed() {
        mark.stored.store(true, Ordering::Release);
        if spec.options.local && inner.local.is_some() {
            // The value replaces whatever the local tiers hold for the call.
            call.announce_replaced().await;
        }
    }
    value
}
