//! `bypass` and `refresh` scopes, `ttl_jitter`, on both backends where
//! they apply.

use std::sync::atomic::{AtomicU64, Ordering};

use cache_runtime::{Cache, cached};
use cache_tests::{backends, shared_url, unique_namespace};

struct Prices {
    cache: Cache,
    version: AtomicU64,
    runs: AtomicU64,
}

impl Prices {
    fn new(cache: Cache) -> Self {
        Prices {
            cache,
            version: AtomicU64::new(1),
            runs: AtomicU64::new(0),
        }
    }

    #[cached(cache = self.cache, ttl = 100, tags = ["prices"])]
    async fn price(&self, id: u64) -> u64 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        id * 1000 + self.version.load(Ordering::SeqCst)
    }

    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn bypass_runs_the_body_and_touches_nothing() {
    for cache in backends("bypass") {
        let name = cache.backend_name();
        let p = Prices::new(cache.clone());
        assert_eq!(p.price(1).await, 1001);
        p.version.store(2, Ordering::SeqCst);
        let before = cache.stats();
        // Inside the scope: the body, every time, and nothing stored.
        let fresh = cache_runtime::bypass(async { (p.price(1).await, p.price(2).await) }).await;
        assert_eq!(fresh, (1002, 2002), "{name}");
        assert_eq!(p.runs(), 3, "{name}");
        let after = cache.stats();
        assert_eq!(after.bypassed - before.bypassed, 2, "{name}");
        assert_eq!(
            (after.hits, after.misses, after.stores, after.round_trips),
            (
                before.hits,
                before.misses,
                before.stores,
                before.round_trips
            ),
            "{name}: nothing read or written"
        );
        // Outside it: the cached value, and no entry for the bypassed call.
        assert_eq!(p.price(1).await, 1001, "{name}");
        assert_eq!(p.price(2).await, 2002, "{name}");
        assert_eq!(p.runs(), 4, "{name}: price(2) was not stored by the bypass");
    }
}

#[tokio::test]
async fn refresh_recomputes_and_stores() {
    for cache in backends("refresh") {
        let name = cache.backend_name();
        let p = Prices::new(cache.clone());
        assert_eq!(p.price(1).await, 1001);
        p.version.store(2, Ordering::SeqCst);
        assert_eq!(p.price(1).await, 1001, "{name}: still cached");
        let refreshed = cache_runtime::refresh(p.price(1)).await;
        assert_eq!(refreshed, 1002, "{name}");
        assert_eq!(p.runs(), 2, "{name}");
        // The refreshed value is what later calls get, with no run.
        assert_eq!(p.price(1).await, 1002, "{name}");
        assert_eq!(p.runs(), 2, "{name}");
        // A refreshed entry still carries its tags.
        cache.invalidate_tag("prices").await.unwrap();
        p.price(1).await;
        assert_eq!(p.runs(), 3, "{name}");
    }
}

#[tokio::test]
async fn ttl_jitter_spreads_expiries_and_never_lengthens_them() {
    let namespace = unique_namespace("jitter");
    let cache = Cache::builder()
        .redis(shared_url())
        .namespace(&namespace)
        .ttl_jitter(0.5)
        .build()
        .unwrap();
    let p = Prices::new(cache);
    for id in 0..40 {
        p.price(id).await;
    }
    let mut conn = redis::Client::open(shared_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(keys.len(), 40);
    let ttls: Vec<i64> = keys
        .iter()
        .map(|k| redis::cmd("PTTL").arg(k).query(&mut conn).unwrap())
        .collect();
    let (min, max) = (*ttls.iter().min().unwrap(), *ttls.iter().max().unwrap());
    assert!(
        min >= 49_000 && max <= 100_000,
        "within 50..100 s: {ttls:?}"
    );
    assert!(max - min > 10_000, "spread out: {ttls:?}");

    let err = Cache::builder()
        .memory()
        .ttl_jitter(1.5)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("ttl_jitter"), "{err}");
}
