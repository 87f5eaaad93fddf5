//! `cache_runtime::invalidating`: the double delete around a database
//! transaction. A miss between the invalidation and the commit refills the
//! old row; without the scope that entry is served, with it it is not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached, invalidating};
use cache_tests::{backends, no_hang, shared_url, unique_namespace};

/// A product row and the cache in front of it.
struct Store {
    cache: Cache,
    price: AtomicU64,
    reads: AtomicU64,
}

impl Store {
    fn new(cache: Cache) -> Arc<Self> {
        Arc::new(Store {
            cache,
            price: AtomicU64::new(100),
            reads: AtomicU64::new(0),
        })
    }

    #[cached(cache = self.cache, ttl = 600, tags = ["product:{id}"])]
    async fn price(&self, id: u64) -> u64 {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.price.load(Ordering::SeqCst)
    }

    /// A reader in another task, as a concurrent request would be.
    async fn read_elsewhere(self: &Arc<Self>) -> u64 {
        let me = Arc::clone(self);
        tokio::spawn(async move { me.price(1).await })
            .await
            .unwrap()
    }

    /// The write: invalidate, then (before the commit) a concurrent miss
    /// reads the old row and stores it, then the commit.
    async fn update(self: &Arc<Self>, new_price: u64) {
        self.cache.invalidate_tag("product:1").await.unwrap();
        let refilled = self.read_elsewhere().await;
        assert_eq!(refilled, self.price.load(Ordering::SeqCst), "the old row");
        self.price.store(new_price, Ordering::SeqCst); // COMMIT
    }
}

/// The caches the scope is checked on: in process, Redis, Redis with the
/// local tier.
fn caches(prefix: &str) -> Vec<Cache> {
    let mut caches = backends(prefix);
    caches.push(
        Cache::builder()
            .redis(shared_url())
            .namespace(unique_namespace(prefix))
            .local_cache(1 << 20)
            .op_timeout(cache_tests::TEST_OP_TIMEOUT)
            .build()
            .unwrap(),
    );
    caches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_scope_the_refill_is_served() {
    for cache in caches("txn-unscoped") {
        let store = Store::new(cache.clone());
        assert_eq!(store.price(1).await, 100);
        store.update(120).await;
        // The entry refilled from the old row carries the tag's new
        // version: it is served until the next invalidation.
        assert_eq!(store.price(1).await, 100, "{}", cache.backend_name());
        assert_eq!(cache.stats().invalidations, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_scope_the_refill_is_never_served() {
    for cache in caches("txn-scoped") {
        let store = Store::new(cache.clone());
        assert_eq!(store.price(1).await, 100);
        invalidating(store.update(120)).await;
        assert_eq!(cache.stats().invalidations, 2, "once inside, once after");
        assert_eq!(store.price(1).await, 120, "{}", cache.backend_name());
        assert_eq!(store.price(1).await, 120);
        // The first read, the refill, the read after the commit.
        assert_eq!(store.reads.load(Ordering::SeqCst), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_scope_still_invalidates_again() {
    for cache in caches("txn-dropped") {
        let store = Store::new(cache.clone());
        assert_eq!(store.price(1).await, 100);
        let (committed, on_commit) = tokio::sync::oneshot::channel::<()>();
        let scoped = invalidating(async {
            store.update(120).await;
            committed.send(()).unwrap();
            // The caller gives up here (a timeout, a client gone away).
            std::future::pending::<()>().await;
        });
        tokio::select! {
            () = scoped => unreachable!(),
            _ = on_commit => {}
        }
        // The scope was dropped: its second invalidation runs in a task.
        no_hang(10, "the second invalidation", async {
            while cache.stats().invalidations < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert_eq!(cache.stats().invalidations, 2);
        assert_eq!(store.price(1).await, 120, "{}", cache.backend_name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_scopes_invalidate_again_at_each_end() {
    let cache = Cache::builder().memory().build().unwrap();
    invalidating(async {
        cache.invalidate_tag("a").await.unwrap();
        invalidating(async { cache.invalidate_tag("b").await.unwrap() }).await;
        // "b" made again at the inner end.
        assert_eq!(cache.stats().invalidations, 3);
    })
    .await;
    // "a" and "b" made again at the outer end.
    assert_eq!(cache.stats().invalidations, 5);
    // Outside any scope: once.
    cache.invalidate_tag("c").await.unwrap();
    assert_eq!(cache.stats().invalidations, 6);
}
