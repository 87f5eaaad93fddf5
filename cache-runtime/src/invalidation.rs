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
    pub(crate) async fn invalidate_again(&self, keys: Vec<String>) -> Result<(), Error> {
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
    pub(crate) async fn invalidate(&self, keys: &[String], delete: bool) -> Result<(), Error> {
        let channel = schema::invalidation_channel(&self.namespace);
        let result = self.backend.invalidate(keys, delete, Some(&channel)).await;
        if let Some(local) = &self.local {
            local.invalidate(keys.iter().map(String::as_str));
        }
        result
    }
}
