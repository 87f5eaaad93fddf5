//! Decisions from the result: `ttl_from` (the entry's TTL from its value)
//! and `unless` (values returned, not stored), on both backends; the TTL
//! Redis holds, read on a private server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::{RedisServer, backends, redis_cache, unique_namespace};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Token {
    value: String,
    /// Seconds it is valid for; 0: already expired.
    expires_in: u64,
}

fn token_ttl(token: &Token) -> Option<Duration> {
    match token.expires_in {
        u64::MAX => None,
        secs => Some(Duration::from_secs(secs)),
    }
}

struct Api {
    cache: Cache,
    runs: AtomicU64,
    /// What the next body returns as `expires_in`, or the listing's length.
    next: AtomicU64,
}

impl Api {
    fn new(cache: Cache) -> Arc<Self> {
        Arc::new(Api {
            cache,
            runs: AtomicU64::new(0),
            next: AtomicU64::new(0),
        })
    }

    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }

    #[cached(cache = self.cache, ttl = 600, key = "token:{user}", ttl_from = token_ttl)]
    async fn token(&self, user: u32) -> Result<Token, String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let expires_in = self.next.load(Ordering::SeqCst);
        if expires_in == 1 {
            return Err("the identity provider failed".into());
        }
        Ok(Token {
            value: format!("token-{user}"),
            expires_in,
        })
    }

    #[cached(cache = self.cache, ttl = 600, key = "listing:{page}", unless = Vec::is_empty)]
    async fn listing(&self, page: u32) -> Vec<u32> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        (0..self.next.load(Ordering::SeqCst) as u32)
            .map(|i| page * 100 + i)
            .collect()
    }

    #[cached(cache = self.cache, ttl = 600, key = "maybe:{page}", unless = Vec::is_empty, cache_none = true)]
    async fn maybe(&self, page: u32) -> Option<Vec<u32>> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        match self.next.load(Ordering::SeqCst) {
            u64::MAX => None,
            n => Some((0..n as u32).map(|i| page + i).collect()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unless_returns_accepted_values_without_storing_them() {
    for cache in backends("unless") {
        let api = Api::new(cache.clone());
        // An empty listing: returned, not stored.
        assert_eq!(api.listing(1).await, Vec::<u32>::new());
        assert_eq!(api.listing(1).await, Vec::<u32>::new());
        assert_eq!(api.runs(), 2, "{}", cache.backend_name());
        assert_eq!(cache.stats().stores, 0);
        // A listing with items: stored.
        api.next.store(2, Ordering::SeqCst);
        assert_eq!(api.listing(1).await, vec![100, 101]);
        assert_eq!(api.listing(1).await, vec![100, 101]);
        assert_eq!(api.runs(), 3);
        assert_eq!(cache.stats().stores, 1);
        assert_eq!(cache.stats().hits, 1);

        // On an `Option`, `unless` sees the `Some` value; a `None`
        // (here with `cache_none`) is stored as before.
        api.next.store(0, Ordering::SeqCst);
        assert_eq!(api.maybe(1).await, Some(vec![]));
        assert_eq!(api.maybe(1).await, Some(vec![]));
        assert_eq!(api.runs(), 5);
        api.next.store(u64::MAX, Ordering::SeqCst);
        assert_eq!(api.maybe(2).await, None);
        assert_eq!(api.maybe(2).await, None);
        assert_eq!(api.runs(), 6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unless_values_still_reach_concurrent_callers() {
    for cache in backends("unless-shared") {
        let api = Api::new(cache.clone());
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let api = Arc::clone(&api);
                tokio::spawn(async move { api.listing(7).await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), Vec::<u32>::new());
        }
        // Callers that joined a run got its value; none was stored.
        assert_eq!(
            api.runs() + cache.stats().coalesced,
            8,
            "{}",
            cache.backend_name()
        );
        assert_eq!(cache.stats().stores, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_from_sets_the_entry_ttl_from_the_ok_value() {
    let server = RedisServer::start();
    let namespace = unique_namespace("ttl-from");
    let cache = redis_cache(&server.url(), &namespace);
    let api = Api::new(cache.clone());
    let mut conn = server.conn();
    let pttl = |conn: &mut redis::Connection, user: u32| -> i64 {
        redis::cmd("PTTL")
            .arg(format!("{namespace}:token:{user}"))
            .query(conn)
            .unwrap()
    };

    // The value's TTL: 30 s, not the attribute's 600 s.
    api.next.store(30, Ordering::SeqCst);
    assert_eq!(api.token(1).await.unwrap().expires_in, 30);
    let ttl = pttl(&mut conn, 1);
    assert!(ttl > 0 && ttl <= 30_000, "PTTL {ttl}");
    assert_eq!(api.token(1).await.unwrap().expires_in, 30);
    assert_eq!(api.runs(), 1);

    // `None`: the attribute's TTL.
    api.next.store(u64::MAX, Ordering::SeqCst);
    api.token(2).await.unwrap();
    let ttl = pttl(&mut conn, 2);
    assert!(ttl > 30_000 && ttl <= 600_000, "PTTL {ttl}");

    // A zero TTL (a token already expired): returned, not stored.
    api.next.store(0, Ordering::SeqCst);
    api.token(3).await.unwrap();
    assert_eq!(pttl(&mut conn, 3), -2, "no entry");
    api.token(3).await.unwrap();
    assert_eq!(api.runs(), 4);

    // An `Err` is never given to `ttl_from`, and never stored.
    api.next.store(1, Ordering::SeqCst);
    assert!(api.token(4).await.is_err());
    assert_eq!(pttl(&mut conn, 4), -2);
    assert_eq!(cache.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_from_on_the_memory_backend() {
    let cache = Cache::builder().memory().build().unwrap();
    let api = Api::new(cache.clone());
    api.next.store(0, Ordering::SeqCst);
    api.token(1).await.unwrap();
    api.token(1).await.unwrap();
    assert_eq!(api.runs(), 2, "a zero TTL stores nothing");
    api.next.store(30, Ordering::SeqCst);
    api.token(2).await.unwrap();
    api.token(2).await.unwrap();
    assert_eq!(api.runs(), 3);
    assert_eq!(cache.stats().stores, 1);
}
