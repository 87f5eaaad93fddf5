//! Fail-open: a Redis that is down, refuses connections, or is frozen never
//! fails a call; the body runs and its result is returned, failures are
//! counted, and caching resumes on its own when Redis comes back.
//!
//! Each test that needs a server starts its own `RedisServer` (the others
//! point at a `free_port` nobody listens on). The hang guards (`no_hang`)
//! are far above the op timeout: they catch a call stuck in connection
//! retries (seconds), they do not measure latency (`cargo run --release -p
//! cache-tests --bin measure -- fail-open` does).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::{RedisServer, free_port, no_hang};

struct Api {
    cache: Cache,
    runs: AtomicU64,
}

impl Api {
    #[cached(cache = self.cache, ttl = 60, tags = ["t"])]
    async fn get(&self, id: u32) -> Result<String, String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(format!("value {id}"))
    }

    #[cached(cache = self.cache, ttl = 60)]
    async fn slow(&self, id: u32) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        format!("slow {id}")
    }

    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }
}

/// Whether, within 50 tries 50 ms apart, a call of `get(id)` is served from
/// the cache again (a call fills, the next one must not run the body).
async fn resumes_caching(api: &Api, id: u32) -> bool {
    for _ in 0..50 {
        no_hang(3, "call while Redis recovers", api.get(id))
            .await
            .unwrap();
        let before = api.runs();
        no_hang(3, "call while Redis recovers", api.get(id))
            .await
            .unwrap();
        if api.runs() == before {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn api(url: &str) -> Api {
    let cache = Cache::builder()
        .redis(url)
        .op_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    Api {
        cache,
        runs: AtomicU64::new(0),
    }
}

#[tokio::test]
async fn connection_refused_runs_the_body_and_counts_errors() {
    let api = api(&format!("redis://127.0.0.1:{}/", free_port()));
    for i in 0..5 {
        assert_eq!(
            no_hang(3, "call", api.get(i)).await.unwrap(),
            format!("value {i}")
        );
    }
    assert_eq!(api.runs(), 5);
    let s = api.cache.stats();
    assert!(s.errors >= 5, "{s:?}");
    assert_eq!(s.hits, 0);
    let invalidated = no_hang(3, "invalidate", api.cache.invalidate_tag("t")).await;
    assert!(
        invalidated.is_err(),
        "a failed invalidation is reported: {invalidated:?}"
    );
}

#[tokio::test]
async fn a_frozen_redis_costs_at_most_the_op_timeout_and_caching_resumes() {
    let server = RedisServer::start();
    let api = api(&server.url());
    api.get(1).await.unwrap();
    api.get(1).await.unwrap();
    assert_eq!(api.runs(), 1, "cached while Redis is up");

    server.pause();
    for _ in 0..3 {
        assert_eq!(
            no_hang(3, "call on a frozen server", api.get(1))
                .await
                .unwrap(),
            "value 1"
        );
    }
    let s = api.cache.stats();
    assert!(s.timeouts >= 3, "a frozen server times out: {s:?}");
    assert_eq!(api.runs(), 4);

    server.resume();
    // The first calls after the thaw may still see late replies; within a
    // few calls the cache serves again without rebuilding anything.
    assert!(
        resumes_caching(&api, 1).await,
        "caching did not resume after the server was thawed: {:?}",
        api.cache.stats()
    );
}

#[tokio::test]
async fn caching_resumes_after_redis_restarts() {
    let mut server = RedisServer::start();
    let api = api(&server.url());
    api.get(1).await.unwrap();
    api.get(1).await.unwrap();
    assert_eq!(api.runs(), 1);

    server.kill();
    for _ in 0..3 {
        assert_eq!(
            no_hang(3, "call with Redis down", api.get(1))
                .await
                .unwrap(),
            "value 1"
        );
    }
    assert_eq!(api.runs(), 4);
    assert!(api.cache.stats().errors >= 3);

    server.restart();
    assert!(
        resumes_caching(&api, 2).await,
        "caching did not resume after a restart: {:?}",
        api.cache.stats()
    );
}

/// With Redis down, concurrent callers of one key still share
/// computations, one at a time: an outage of the cache is no stampede on
/// the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_does_not_stampede_the_database() {
    let api = std::sync::Arc::new(api(&format!("redis://127.0.0.1:{}/", free_port())));
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.slow(7).await })
        })
        .collect();
    for c in calls {
        assert_eq!(no_hang(3, "call", c).await.unwrap(), "slow 7");
    }
    // One computation at a time: the first caller's, and at most one more
    // for the callers that went offline after it began (they never take a
    // value computed before they did).
    assert!(
        api.runs() <= 2,
        "{} runs: {:?}",
        api.runs(),
        api.cache.stats()
    );
}

#[test]
fn building_a_cache_does_no_io() {
    // Not even a runtime is needed: build() neither connects nor spawns.
    let cache = Cache::builder()
        .redis(format!("redis://127.0.0.1:{}/", free_port()))
        .build();
    assert!(cache.is_ok());
    let bad = Cache::builder().redis("not a url").build();
    assert!(
        matches!(bad, Err(cache_runtime::Error::InvalidUrl { .. })),
        "{bad:?}"
    );
    assert!(matches!(
        Cache::builder().build(),
        Err(cache_runtime::Error::NoBackend)
    ));
}

struct Big {
    cache: Cache,
    runs: AtomicU64,
}

impl Big {
    #[cached(cache = self.cache, key = "big:{id}")]
    async fn value(&self, id: u32) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        format!("value {id}")
    }
}

/// An entry larger than `max_value_bytes` (written by other code, or before
/// the bound) whose read times out is deleted in the background, so that it
/// does not cost every later call the op timeout until it expires.
#[tokio::test]
async fn an_oversized_entry_whose_read_timed_out_is_deleted() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .namespace("big")
        .op_timeout(Duration::from_millis(100))
        .max_value_bytes(1 << 20)
        .build()
        .unwrap();
    let big = Big {
        cache: cache.clone(),
        runs: AtomicU64::new(0),
    };
    big.value(0).await; // connected
    let mut conn = server.conn();
    let _: () = redis::cmd("SET")
        .arg("big:big:1")
        .arg(vec![b'x'; 2 << 20])
        .query(&mut conn)
        .unwrap();
    // The read of it times out (Redis answers nobody for 400 ms); the body
    // runs.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(400)
        .arg("ALL")
        .query(&mut conn)
        .unwrap();
    assert_eq!(no_hang(3, "call", big.value(1)).await, "value 1");
    assert!(cache.stats().timeouts >= 1, "{:?}", cache.stats());
    let mut gone = false;
    for _ in 0..50 {
        let exists: bool = redis::cmd("EXISTS")
            .arg("big:big:1")
            .query(&mut conn)
            .unwrap();
        if !exists {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the oversized entry is deleted");
    assert_eq!(cache.stats().oversized, 1);
    // Small entries are stored and served as before.
    big.value(2).await;
    let runs = big.runs.load(Ordering::SeqCst);
    big.value(2).await;
    assert_eq!(big.runs.load(Ordering::SeqCst), runs, "a hit");
}

/// A lease attempt that timed out may still have been applied by Redis: the
/// caller releases it, so that no other process waits out its `lock_ttl`.
#[tokio::test]
async fn a_lease_attempt_that_timed_out_is_released() {
    let server = RedisServer::start();
    let build = |op_timeout| {
        Cache::builder()
            .redis(server.url())
            .namespace("abandon")
            .op_timeout(op_timeout)
            .lock_ttl(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    let (a, b) = (
        Big {
            cache: build(Duration::from_millis(100)),
            runs: AtomicU64::new(0),
        },
        Big {
            cache: build(Duration::from_secs(2)),
            runs: AtomicU64::new(0),
        },
    );
    a.value(0).await; // connected, scripts loaded
    // Writes wait 400 ms: `a` reads, then its versions and lease attempt
    // time out, to be applied when the pause ends.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(400)
        .arg("WRITE")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(a.value(1).await, "value 1");
    assert!(a.cache.stats().timeouts >= 1, "{:?}", a.cache.stats());
    // Another process finds no lease of `a`'s to wait 30 s for.
    assert_eq!(no_hang(5, "call", b.value(1)).await, "value 1");
    assert_eq!(b.cache.stats().stores, 1, "{:?}", b.cache.stats());
}

/// With Redis frozen, the circuit breaker opens after `failures` timeouts:
/// later calls skip Redis at once (counted), until `open_for` has passed and
/// one call probes; once Redis is back, the probe closes it and caching
/// resumes.
#[tokio::test]
async fn the_circuit_breaker_skips_a_frozen_redis_and_closes_after_it_recovers() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .op_timeout(Duration::from_millis(50))
        .circuit_breaker(3, Duration::from_millis(300))
        .build()
        .unwrap();
    let api = Api {
        cache: cache.clone(),
        runs: AtomicU64::new(0),
    };
    api.get(1).await.unwrap();
    server.pause();
    for _ in 0..20 {
        assert_eq!(no_hang(3, "call", api.get(1)).await.unwrap(), "value 1");
    }
    let s = cache.stats();
    assert_eq!(s.timeouts, 3, "only the calls that opened it waited: {s:?}");
    assert_eq!(s.skipped, 17, "{s:?}");
    assert_eq!(s.errors, 3, "skips are not errors: {s:?}");
    // Still frozen after `open_for`: the probe times out and it reopens.
    tokio::time::sleep(Duration::from_millis(350)).await;
    api.get(1).await.unwrap();
    api.get(1).await.unwrap();
    let s = cache.stats();
    assert_eq!(
        (s.timeouts, s.skipped),
        (4, 18),
        "one probe, then open again: {s:?}"
    );
    server.resume();
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        resumes_caching(&api, 1).await,
        "caching resumes once the probe reaches Redis: {:?}",
        cache.stats()
    );
}

/// A function whose first run waits for the test, reading the "database"
/// (a version) before it waits.
struct Gated {
    cache: Cache,
    db: AtomicU64,
    runs: AtomicU64,
    read: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl Gated {
    #[cached(cache = self.cache, ttl = 60)]
    async fn version(&self) -> u64 {
        let version = self.db.load(Ordering::SeqCst);
        if self.runs.fetch_add(1, Ordering::SeqCst) == 0 {
            self.read.notify_one();
            self.release.notified().await;
        }
        version
    }
}

/// Offline, a caller shares only a computation that began after it went
/// offline: another process's invalidation (which this one cannot see,
/// its Redis unreachable from here) may have returned in between, and the
/// value computed before it is older. Here the database moves to version
/// 2 (its invalidation returned elsewhere) while the first call computes
/// version 1: the second call must not get 1. Before, it joined the first
/// call's computation and got it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_a_call_never_shares_a_computation_that_began_before_it() {
    let gated = std::sync::Arc::new(Gated {
        cache: Cache::builder()
            .redis(format!("redis://127.0.0.1:{}/", free_port()))
            .op_timeout(Duration::from_millis(100))
            .build()
            .unwrap(),
        db: AtomicU64::new(1),
        runs: AtomicU64::new(0),
        read: tokio::sync::Notify::new(),
        release: tokio::sync::Notify::new(),
    });
    let first = tokio::spawn({
        let gated = gated.clone();
        async move { gated.version().await }
    });
    no_hang(5, "the first body's read", gated.read.notified()).await;
    gated.db.store(2, Ordering::SeqCst);
    let second = tokio::spawn({
        let gated = gated.clone();
        async move { gated.version().await }
    });
    // Gives the second call time to fail over and find the first one's
    // computation (if it does not get there, it leads its own and the
    // test proves nothing, but does not fail).
    tokio::time::sleep(Duration::from_millis(300)).await;
    gated.release.notify_one();
    assert_eq!(no_hang(5, "the first call", first).await.unwrap(), 1);
    assert_eq!(
        no_hang(5, "the second call", second).await.unwrap(),
        2,
        "a call that started after version 2 got the computation of version 1"
    );
}
