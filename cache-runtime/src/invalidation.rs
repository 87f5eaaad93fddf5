//! Where every invalidation goes: a tag's, a function's, a call's, a
//! namespace's, and the announcement of a value replaced in a
//! [`refresh`](crate::refresh) scope. Each deletes version keys (or only
//! announces them), publishes them on the backplane after the `DEL`, in the
//! same round trip, and applies them to this process's local tier before
//! it returns.

use std::sync::Arc;

use crate::engine::Inner;
use crate::error::Error;
use crate::invalidating;
use crate::schema;

impl Inner {
    /// Deletes version keys and announces them (see [`invalidate`](Self::invalidate)):
    /// counted in `invalidations`, or counted and logged as a backend
    /// failure. In an [`invalidating`](crate::invalidating()) scope, noted
    /// to be made again at its end.
    pub(crate) async fn invalidate_versions(
        self: &Arc<Self>,
        keys: Vec<String>,
    ) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        invalidating::record(self, &keys);
        self.invalidate_again(keys).await
    }

    /// [`invalidate_versions`](Self::invalidate_versions) without noting it
    /// in a scope: the second invalidation of an `invalidating` scope.
    pub(crate) async fn invalidate_again(self: &Arc<Self>, keys: Vec<String>) -> Result<(), Error> {
        let n = keys.len() as u64;
        match self.invalidate(&keys, true).await {
            Ok(()) => {
                self.stats
                    .invalidations
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(target: "cache_runtime", ?keys, "invalidated");
                Ok(())
            }
            Err(e) => {
                self.record_error(&e, "invalidate");
                Err(e)
            }
        }
    }

    /// Invalidates version keys: deletes them (with `delete`; without, a
    /// value was replaced under the same versions) and announces them on
    /// the backplane, in one round trip; then this process's local tier
    /// forgets the values read under them, before the caller goes on (also
    /// when Redis failed: a local value is then not to be trusted either).
    ///
    /// On a cluster the deletes and the announcements are separate round
    /// trips: the work runs in a task of its own (when a Tokio runtime is
    /// there), so that a caller whose future is dropped between them (a
    /// request timeout, a `select!`) does not leave keys deleted and
    /// unannounced, and other processes' local tiers serving what Redis no
    /// longer does.
    pub(crate) async fn invalidate(
        self: &Arc<Self>,
        keys: &[String],
        delete: bool,
    ) -> Result<(), Error> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.invalidate_here(keys, delete).await;
        };
        let (inner, keys) = (Arc::clone(self), keys.to_vec());
        let task = runtime.spawn(async move { inner.invalidate_here(&keys, delete).await });
        match task.await {
            Ok(result) => result,
            // Only a panic ends the task early (the runtime shutting down
            // ends the caller too).
            Err(_) => Err(Error::Reply("the invalidation's task ended early".into())),
        }
    }

    async fn invalidate_here(&self, keys: &[String], delete: bool) -> Result<(), Error> {
        let channel = schema::invalidation_channel(&self.namespace);
        let result = self.backend.invalidate(keys, delete, Some(&channel)).await;
        if let Some(local) = &self.local {
            local.invalidate(keys.iter().map(String::as_str));
        }
        result
    }
}
