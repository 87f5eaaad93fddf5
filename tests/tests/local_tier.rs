//! The local tier (`local_cache`): hits without a Redis command, coherent
//! with every invalidation, in this process and in others, and bypassed
//! while its backplane subscription is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::versioned_reads::{set, spawn_workers, totals};
use cache_tests::{RedisCluster, RedisServer, free_port, no_hang, unique_namespace};
use serde::{Deserialize, Serialize};

/// The "database": a version, and how many times the body ran.
#[derive(Clone, Default)]
struct Db {
    version: Arc<AtomicU64>,
    runs: Arc<AtomicU64>,
}

impl Db {
    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }
    fn set(&self, v: u64) {
        self.version.store(v, Ordering::SeqCst);
    }
}

#[cached(cache = cache, skip(cache, db), ttl = 60, tags = ["prices", "item:{id}"])]
async fn price(cache: Cache, db: Db, id: u64) -> Result<u64, String> {
    db.runs.fetch_add(1, Ordering::SeqCst);
    Ok(id * 1000 + db.version.load(Ordering::SeqCst))
}

#[cached(cache = cache, skip(cache, db), ttl = 60, local = false)]
async fn price_remote(cache: Cache, db: Db, id: u64) -> u64 {
    db.runs.fetch_add(1, Ordering::SeqCst);
    id * 1000 + db.version.load(Ordering::SeqCst)
}

#[cached(cache = cache, skip(cache, db), ttl = 1)]
async fn price_short(cache: Cache, db: Db, id: u64) -> u64 {
    db.runs.fetch_add(1, Ordering::SeqCst);
    id * 1000 + db.version.load(Ordering::SeqCst)
}

#[cached(cache = cache, skip(cache, db), ttl = 1, grace = "1h")]
async fn price_graced(cache: Cache, db: Db, id: u64) -> u64 {
    db.runs.fetch_add(1, Ordering::SeqCst);
    id * 1000 + db.version.load(Ordering::SeqCst)
}

#[cached(cache = cache, skip(cache), ttl = 60, key = "shared:{id}", tags = ["a"])]
async fn shared_a(cache: Cache, id: u64) -> String {
    format!("a{id}")
}

#[cached(cache = cache, skip(cache), ttl = 60, key = "shared:{id}", tags = ["b"])]
async fn shared_b(cache: Cache, id: u64) -> String {
    format!("b{id}")
}

/// Not `Clone`: kept locally as its encoding.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Receipt {
    id: u64,
    version: u64,
}

#[cached(cache = cache, skip(cache, db), ttl = 60, tags = ["prices"])]
async fn receipt(cache: Cache, db: Db, id: u64) -> Receipt {
    db.runs.fetch_add(1, Ordering::SeqCst);
    Receipt {
        id,
        version: db.version.load(Ordering::SeqCst),
    }
}

fn local_cache(server: &RedisServer, prefix: &str) -> Cache {
    Cache::builder()
        .redis(server.url())
        .namespace(unique_namespace(prefix))
        .local_cache(1 << 20)
        .build()
        .unwrap()
}

/// Calls until the backplane is confirmed (the first call starts it).
async fn ready(cache: &Cache) {
    no_hang(10, "the backplane subscription", async {
        while !cache.local_ready() {
            let _ = price(cache.clone(), Db::default(), 0).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

fn redis_reads(server: &RedisServer) -> u64 {
    server
        .command_calls()
        .iter()
        .filter(|(c, _)| c == "mget" || c == "get")
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_hits_make_no_redis_command() {
    let server = RedisServer::start();
    let cache = local_cache(&server, "local-hits");
    ready(&cache).await;
    let db = Db::default();
    db.set(1);
    assert_eq!(price(cache.clone(), db.clone(), 1).await, Ok(1001)); // miss
    assert_eq!(price(cache.clone(), db.clone(), 1).await, Ok(1001)); // Redis hit, kept
    let before = (cache.stats(), redis_reads(&server));
    for _ in 0..100 {
        assert_eq!(price(cache.clone(), db.clone(), 1).await, Ok(1001));
    }
    let after = (cache.stats(), redis_reads(&server));
    assert_eq!(after.0.local_hits - before.0.local_hits, 100);
    assert_eq!(after.0.hits - before.0.hits, 100, "local hits are hits");
    assert_eq!(after.0.round_trips, before.0.round_trips);
    assert_eq!(after.1, before.1, "no read reached Redis");
    assert_eq!(db.runs(), 1);
    // The subscription's heartbeat (a `PING` a second) keeps it up: the
    // value is still served locally seconds later.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(cache.local_ready());
    assert_eq!(price(cache.clone(), db.clone(), 1).await, Ok(1001));
    assert_eq!(cache.stats().local_hits, after.0.local_hits + 1);
    assert_eq!(redis_reads(&server), after.1);
    let by_function = cache.function_stats();
    let (_, stats) = by_function
        .iter()
        .find(|(path, _)| path.ends_with("::price"))
        .unwrap();
    assert_eq!(stats.local_hits, 101);

    // A value that is not `Clone` is kept too (as bytes).
    for _ in 0..3 {
        assert_eq!(
            receipt(cache.clone(), db.clone(), 1).await,
            Receipt { id: 1, version: 1 }
        );
    }
    assert_eq!(cache.stats().local_hits, 102);

    // `local = false`: every hit reads Redis.
    for _ in 0..3 {
        assert_eq!(price_remote(cache.clone(), db.clone(), 1).await, 1001);
    }
    assert_eq!(cache.stats().local_hits, 102);
    assert!(redis_reads(&server) >= after.1 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalidation_made_here_applies_before_it_returns() {
    let server = RedisServer::start();
    let cache = local_cache(&server, "local-inval");
    ready(&cache).await;
    let db = Db::default();
    let warm = async |db: &Db, expected: u64| {
        for _ in 0..3 {
            assert_eq!(price(cache.clone(), db.clone(), 1).await, Ok(expected));
        }
    };
    let local_hits = || cache.stats().local_hits;

    db.set(1);
    warm(&db, 1001).await;
    let hits = local_hits();
    db.set(2);
    cache.invalidate_tag("prices").await.unwrap();
    assert_eq!(price(cache.clone(), db.clone(), 1).await, Ok(1002), "tag");
    assert_eq!(local_hits(), hits);

    warm(&db, 1002).await;
    db.set(3);
    cache.invalidate_tag("item:1").await.unwrap();
    assert_eq!(
        price(cache.clone(), db.clone(), 1).await,
        Ok(1003),
        "argument tag"
    );

    warm(&db, 1003).await;
    db.set(4);
    cache
        .invalidate_function(&format!("{}::price", module_path!()))
        .await
        .unwrap();
    assert_eq!(
        price(cache.clone(), db.clone(), 1).await,
        Ok(1004),
        "function"
    );

    warm(&db, 1004).await;
    db.set(5);
    cache.invalidate_all().await.unwrap();
    assert_eq!(
        price(cache.clone(), db.clone(), 1).await,
        Ok(1005),
        "namespace"
    );

    // One call's entry.
    warm(&db, 1005).await;
    db.set(6);
    price_invalidate(&cache, &1).await.unwrap();
    assert_eq!(price(cache.clone(), db.clone(), 1).await, Ok(1006), "call");

    // A refresh scope replaces the value: the local one goes too.
    warm(&db, 1006).await;
    db.set(7);
    let refreshed = cache_runtime::refresh(price(cache.clone(), db.clone(), 1)).await;
    assert_eq!(refreshed, Ok(1007));
    assert_eq!(
        price(cache.clone(), db.clone(), 1).await,
        Ok(1007),
        "refresh"
    );
    assert!(local_hits() > hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_sharing_a_key_template_check_their_own_versions() {
    let server = RedisServer::start();
    let cache = local_cache(&server, "local-shared");
    ready(&cache).await;
    for _ in 0..3 {
        assert_eq!(shared_a(cache.clone(), 1).await, "a1");
    }
    assert!(cache.stats().local_hits >= 1);
    // The same Redis entry, read by a function with other tags: in Redis
    // it does not carry `b`'s version, so it is a miss there; locally too.
    assert_eq!(shared_b(cache.clone(), 1).await, "b1");
    assert_eq!(shared_a(cache.clone(), 1).await, "a1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_value_never_outlives_its_redis_entry() {
    let server = RedisServer::start();
    let cache = local_cache(&server, "local-ttl");
    ready(&cache).await;
    let db = Db::default();
    db.set(1);
    for _ in 0..3 {
        assert_eq!(price_short(cache.clone(), db.clone(), 1).await, 1001);
    }
    assert!(cache.stats().local_hits >= 1);
    db.set(2);
    // TTLs are whole seconds: the shortest is 1 s.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(price_short(cache.clone(), db.clone(), 1).await, 1002);
    assert_eq!(db.runs(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_grace_a_local_value_ends_with_its_freshness() {
    let server = RedisServer::start();
    let cache = local_cache(&server, "local-grace");
    ready(&cache).await;
    let db = Db::default();
    db.set(1);
    for _ in 0..3 {
        assert_eq!(price_graced(cache.clone(), db.clone(), 1).await, 1001);
    }
    let local_hits = cache.stats().local_hits;
    assert!(local_hits >= 1);
    db.set(2);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    // Past its TTL: the grace rules run on the Redis path (the old value,
    // and a refresh), not a local hit.
    assert_eq!(price_graced(cache.clone(), db.clone(), 1).await, 1001);
    let s = cache.stats();
    assert_eq!((s.local_hits, s.grace_hits), (local_hits, 1));
    no_hang(5, "the refresh", async {
        while price_graced(cache.clone(), db.clone(), 1).await != 1002 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Once the invalidation's message is applied, `reader` serves the new
/// value, and keeps serving it (from its local tier after a Redis hit).
async fn serves_after_the_message(reader: &Cache, db: &Db, expected: u64) {
    no_hang(5, "the invalidation's message", async {
        while price(reader.clone(), db.clone(), 1).await != Ok(expected) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    for _ in 0..5 {
        assert_eq!(price(reader.clone(), db.clone(), 1).await, Ok(expected));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_from_another_cache_reach_the_local_tier() {
    let server = RedisServer::start();
    let namespace = unique_namespace("local-other");
    let build = || {
        Cache::builder()
            .redis(server.url())
            .namespace(namespace.as_str())
            .local_cache(1 << 20)
            .build()
            .unwrap()
    };
    let (reader, writer) = (build(), build());
    ready(&reader).await;
    let db = Db::default();
    for round in 1..=20u64 {
        db.set(round);
        writer.invalidate_tag("prices").await.unwrap();
        // The message is on its way: once applied, the old value is gone.
        serves_after_the_message(&reader, &db, 1000 + round).await;
    }
    assert!(reader.stats().local_hits >= 20 * 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_invalidations_reach_the_local_tier_through_any_node() {
    let cluster = RedisCluster::start();
    let namespace = unique_namespace("local-cluster");
    // The first node given does not answer: the subscription goes to the
    // next.
    let mut urls = vec![format!("redis://127.0.0.1:{}/", free_port())];
    urls.extend(cluster.urls());
    let build = |local: bool| {
        let builder = Cache::builder()
            .redis_cluster(urls.clone())
            .namespace(namespace.as_str())
            .op_timeout(Duration::from_secs(1));
        if local {
            builder.local_cache(1 << 20).build().unwrap()
        } else {
            builder.build().unwrap()
        }
    };
    let (reader, writer) = (build(true), build(false));
    ready(&reader).await;
    let db = Db::default();
    for round in 1..=10u64 {
        db.set(round);
        if round % 2 == 0 {
            writer.invalidate_tag("prices").await.unwrap();
        } else {
            writer.invalidate_all().await.unwrap();
        }
        serves_after_the_message(&reader, &db, 1000 + round).await;
    }
    let s = reader.stats();
    assert!(s.local_hits >= 10 * 3, "{s:?}");
    assert_eq!(s.errors + writer.stats().errors, 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_tier_is_bypassed_while_its_subscription_is_down() {
    let server = RedisServer::start();
    let cache = local_cache(&server, "local-down");
    ready(&cache).await;
    let db = Db::default();
    db.set(1);
    for _ in 0..3 {
        assert_eq!(price(cache.clone(), db.clone(), 1).await, Ok(1001));
    }
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(killed, 1);
    no_hang(5, "the subscription's loss", async {
        while cache.local_ready() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    // Down: reads go to Redis (an invalidation made behind the local
    // tier's back, with a raw DEL and no message, is seen at once).
    let hits = cache.stats().local_hits;
    let version_key = format!("{}#tag:prices", cache.namespace());
    let _: u64 = redis::cmd("DEL")
        .arg(&version_key)
        .query(&mut server.conn())
        .unwrap();
    db.set(2);
    assert_eq!(price(cache.clone(), db.clone(), 1).await, Ok(1002));
    assert_eq!(price(cache.clone(), db.clone(), 1).await, Ok(1002));
    assert_eq!(cache.stats().local_hits, hits);
    // Back up, and empty: what was kept before is not served.
    ready(&cache).await;
    assert_eq!(price(cache.clone(), db.clone(), 1).await, Ok(1002));
    assert_eq!(price(cache.clone(), db.clone(), 1).await, Ok(1002));
    assert!(cache.stats().local_hits > hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_backend_ignores_the_local_tier() {
    let cache = Cache::builder()
        .memory()
        .local_cache(1 << 20)
        .build()
        .unwrap();
    let db = Db::default();
    for _ in 0..3 {
        assert_eq!(price(cache.clone(), db.clone(), 1).await, Ok(1000));
    }
    assert!(!cache.local_ready());
    assert_eq!((cache.stats().hits, cache.stats().local_hits), (2, 0));
}

/// How long the test gives an invalidation to reach every process before
/// it counts an older value as a stale read: a bound on delivery, far
/// above what it takes (see BENCHMARKS.md), never a performance assertion.
const PROPAGATION: Duration = Duration::from_millis(200);

#[test]
fn no_stale_local_read_across_processes_even_with_the_subscription_killed() {
    let server = RedisServer::start();
    let namespace = unique_namespace("local-xproc");
    let mut conn = server.conn();
    set(&mut conn, &namespace, "db", 1);
    set(&mut conn, &namespace, "invalidated", 0);
    let workers = spawn_workers(
        env!("CARGO_BIN_EXE_local_worker"),
        &server.url(),
        &namespace,
        3,
        4,
        8,
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cache = cache_tests::redis_cache(&server.url(), &namespace);
    let started = std::time::Instant::now();
    let (mut version, mut kills) = (1, 0);
    std::thread::sleep(Duration::from_millis(500));
    while started.elapsed() < Duration::from_millis(7000) {
        version += 1;
        set(&mut conn, &namespace, "db", version);
        if version % 3 == 0 {
            // Every local tier's subscription, right before the
            // invalidation: its message is lost to them.
            let killed: u64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .query(&mut conn)
                .unwrap();
            kills += killed;
        }
        runtime.block_on(cache.invalidate_tag("prices")).unwrap();
        std::thread::sleep(PROPAGATION);
        set(&mut conn, &namespace, "invalidated", version);
        std::thread::sleep(Duration::from_millis(50));
    }
    let [calls, stale, local_hits] = totals(workers, ["calls", "stale", "local_hits"]);
    assert!(
        version > 15 && kills >= 5,
        "{version} invalidations, {kills} subscriptions killed"
    );
    // Bypassed for a while after each kill, and a miss after each
    // invalidation: still most reads on a quiet machine (over 70 %).
    assert!(
        local_hits * 4 > calls,
        "{local_hits} local hits in {calls} reads: the local tier barely served"
    );
    assert_eq!(stale, 0, "stale reads in {calls}");
}
