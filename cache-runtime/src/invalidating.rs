//! The [`invalidating`] scope: invalidations made inside it are made again
//! when it ends (the double delete around a database transaction).

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::engine::Inner;

tokio::task_local! {
    static RECORDER: Arc<Recorder>;
}

/// The invalidations made in one [`invalidating`] scope, to make again at
/// its end; an inner scope also records into the scopes around it.
#[derive(Default)]
pub(crate) struct Recorder {
    made: Mutex<Vec<(Arc<Inner>, Vec<String>)>>,
    outer: Option<Arc<Recorder>>,
}

impl Recorder {
    fn take(&self) -> Vec<(Arc<Inner>, Vec<String>)> {
        std::mem::take(&mut *self.made.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Notes version keys just invalidated on `inner`, when the current task
/// is in an [`invalidating`] scope (and in each scope around it).
pub(crate) fn record(inner: &Arc<Inner>, keys: &[String]) {
    let _ = RECORDER.try_with(|recorder| {
        let mut scope = Some(recorder);
        while let Some(r) = scope {
            let mut made = r.made.lock().unwrap_or_else(|p| p.into_inner());
            made.push((Arc::clone(inner), keys.to_vec()));
            scope = r.outer.as_ref();
        }
    });
}

/// Invalidates again what a scope recorded. Failures are counted in
/// [`Stats::errors`](crate::Stats::errors) and logged, not returned.
async fn repeat(made: Vec<(Arc<Inner>, Vec<String>)>) {
    for (inner, keys) in made {
        // `invalidate_versions` counts and logs a failure.
        let _ = inner.invalidate_again(keys).await;
    }
}

/// Makes the second invalidation of a scope that did not end (its future
/// was dropped): in a task of its own, when a Tokio runtime is there.
struct Pending {
    recorder: Arc<Recorder>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let made = self.recorder.take();
        if made.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(repeat(made));
            }
            Err(_) => tracing::warn!(
                target: "cache_runtime",
                "an `invalidating` scope was dropped outside a Tokio runtime: its second invalidation was not made"
            ),
        }
    }
}

/// Runs `fut` (a database write and its invalidations) so that every
/// invalidation made in it is made once more after `fut` completes: the
/// *double delete*. Between an invalidation and the commit of the write it
/// announces, a concurrent miss can read the old row and store it under
/// the tag's new version, which would serve it until the next
/// invalidation; the second invalidation, after the commit, makes that
/// entry a miss too.
///
/// Covered: [`Cache::invalidate_tag`](crate::Cache::invalidate_tag) and
/// `_tags`, [`invalidate_function`](crate::Cache::invalidate_function),
/// [`invalidate_all`](crate::Cache::invalidate_all), the generated
/// `<fn>_invalidate(args)` / `<fn>_invalidate_all()`, called in the task
/// that polls `fut` (not in tasks it spawns). Each is made at once (its
/// result returned to its caller as usual), and again, in the order made,
/// when `fut` has completed and before this returns. The second
/// invalidations' failures are counted in
/// [`Stats::errors`](crate::Stats::errors) and logged, not returned: the
/// output is `fut`'s.
///
/// If this future is dropped before it completes (a timeout, a client gone
/// away), the second invalidations of what was invalidated so far are
/// still made, in a task spawned on the current Tokio runtime: the write
/// may have committed. Scopes nest: an inner scope's invalidations are
/// made again at its end and at the outer scope's end.
///
/// ```
/// # use cache_runtime::{Cache, cached};
/// # use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
/// static PRICE: AtomicU32 = AtomicU32::new(100);
///
/// #[cached(ttl = 60, tags = ["product:{id}"])]
/// async fn price(id: u32) -> u32 { PRICE.load(SeqCst) }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_runtime::Error> {
/// let cache = Cache::builder().memory().build()?;
/// cache_runtime::set_default(cache.clone());
/// price(1).await;
/// cache_runtime::invalidating(async {
///     // BEGIN; UPDATE ...
///     cache.invalidate_tag("product:1").await?;
///     PRICE.store(120, SeqCst); // COMMIT
///     Ok::<_, cache_runtime::Error>(())
/// })
/// .await?;
/// assert_eq!(price(1).await, 120);
/// assert_eq!(cache.stats().invalidations, 2); // once inside, once after
/// # Ok(()) }
/// ```
pub async fn invalidating<F: Future>(fut: F) -> F::Output {
    let recorder = Arc::new(Recorder {
        made: Mutex::default(),
        outer: RECORDER.try_with(Arc::clone).ok(),
    });
    let pending = Pending {
        recorder: Arc::clone(&recorder),
    };
    let output = RECORDER.scope(Arc::clone(&recorder), fut).await;
    let made = recorder.take();
    // From here a drop loses nothing already taken but what `repeat` has
    // not reached; it is taken into a task so that it completes anyway.
    let again = tokio::spawn(repeat(made));
    drop(pending);
    let _ = again.await;
    output
}
