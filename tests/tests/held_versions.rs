//! Held versions (with `local_cache`): a Redis hit whose versions this
//! process holds reads one key, and every invalidation, from this process
//! or another, a lost subscription and a version key evicted without a
//! message end them as the local tier's values end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::sentinel::{MASTER_NAME, SentinelGroup};
use cache_tests::versioned_reads::{set, spawn_workers, totals};
use cache_tests::{RedisCluster, RedisServer, no_hang, unique_namespace};

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

/// Off the local tier: every hit reads Redis, with held versions.
#[cached(cache = cache, skip(cache, db), ttl = 60, local = false, tags = ["prices", "item:{id}"])]
async fn price(cache: Cache, db: Db, id: u64) -> u64 {
    db.runs.fetch_add(1, Ordering::SeqCst);
    id * 1000 + db.version.load(Ordering::SeqCst)
}

/// On the local tier.
#[cached(cache = cache, skip(cache, db), ttl = 60, tags = ["prices"])]
async fn price_local(cache: Cache, db: Db, id: u64) -> u64 {
    db.runs.fetch_add(1, Ordering::SeqCst);
    id * 1000 + db.version.load(Ordering::SeqCst)
}

fn build(url: String, namespace: &str, max_age: Duration) -> Cache {
    Cache::builder()
        .redis(url)
        .namespace(namespace)
        .local_cache(1 << 20)
        .local_max_age(max_age)
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

/// Keys Redis looked up (`keyspace_hits + keyspace_misses`), and calls of
/// `MGET` and of `GET`.
fn reads(server: &RedisServer) -> (u64, u64, u64) {
    let mut conn = server.conn();
    let info: String = redis::cmd("INFO").arg("stats").query(&mut conn).unwrap();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap()
    };
    let keys = field("keyspace_hits") + field("keyspace_misses");
    let calls = cache_tests::command_calls(&mut conn);
    let count = |c: &str| calls.iter().find(|(n, _)| n == c).map_or(0, |(_, n)| *n);
    (keys, count("mget"), count("get"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_with_held_versions_reads_one_key() {
    let server = RedisServer::start();
    let cache = build(
        server.url(),
        &unique_namespace("held-one"),
        Duration::from_secs(60),
    );
    ready(&cache).await;
    let db = Db::default();
    db.set(1);
    assert_eq!(price(cache.clone(), db.clone(), 1).await, 1001); // miss
    assert_eq!(price(cache.clone(), db.clone(), 1).await, 1001); // reads the versions
    let before = (reads(&server), cache.stats());
    for _ in 0..50 {
        assert_eq!(price(cache.clone(), db.clone(), 1).await, 1001);
    }
    let after = (reads(&server), cache.stats());
    assert_eq!(after.1.hits - before.1.hits, 50);
    assert_eq!(
        after.1.local_hits, before.1.local_hits,
        "not the local tier"
    );
    assert_eq!(after.0.0 - before.0.0, 50, "one key read per hit");
    assert_eq!(after.0.1 - before.0.1, 0, "no MGET");
    assert_eq!(after.0.2 - before.0.2, 50, "one GET per hit");
    assert_eq!(db.runs(), 1);

    // Without a local tier, every hit reads the entry and its five
    // versions (function, call, namespace, two tags).
    let plain = Cache::builder()
        .redis(server.url())
        .namespace(cache.namespace())
        .build()
        .unwrap();
    let before = reads(&server);
    for _ in 0..10 {
        assert_eq!(price(plain.clone(), db.clone(), 1).await, 1001);
    }
    let after = reads(&server);
    assert_eq!(after.0 - before.0, 60);
    assert_eq!(after.1 - before.1, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_hit_with_held_versions_reads_one_key() {
    let cluster = RedisCluster::start();
    let namespace = unique_namespace("held-cluster");
    let cache = Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace(namespace.as_str())
        .op_timeout(Duration::from_secs(1))
        .local_cache(1 << 20)
        .build()
        .unwrap();
    let writer = Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace(namespace.as_str())
        .op_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    ready(&cache).await;
    let db = Db::default();
    db.set(1);
    assert_eq!(price(cache.clone(), db.clone(), 1).await, 1001);
    assert_eq!(price(cache.clone(), db.clone(), 1).await, 1001);
    let gets = || -> u64 {
        cluster
            .nodes()
            .iter()
            .map(|n| {
                n.command_calls()
                    .iter()
                    .filter(|(c, _)| c == "get")
                    .map(|(_, n)| n)
                    .sum::<u64>()
            })
            .sum()
    };
    let before = gets();
    for _ in 0..20 {
        assert_eq!(price(cache.clone(), db.clone(), 1).await, 1001);
    }
    assert_eq!(gets() - before, 20, "one GET per hit, of the entry");
    db.set(2);
    writer.invalidate_tag("item:1").await.unwrap();
    no_hang(5, "the invalidation's message", async {
        while price(cache.clone(), db.clone(), 1).await != 1002 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(cache.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_sentinel_held_versions_read_one_key_and_restart_with_a_failover() {
    let group = SentinelGroup::start();
    let namespace = unique_namespace("held-sentinel");
    let build = |local: bool| {
        let builder = Cache::builder()
            .sentinel([group.sentinel_url()], MASTER_NAME)
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
    db.set(1);
    assert_eq!(price(reader.clone(), db.clone(), 1).await, 1001);
    assert_eq!(price(reader.clone(), db.clone(), 1).await, 1001);
    let before = reads(&group.primary);
    for _ in 0..10 {
        assert_eq!(price(reader.clone(), db.clone(), 1).await, 1001);
    }
    let after = reads(&group.primary);
    assert_eq!(after.0 - before.0, 10, "one key read per hit");
    assert_eq!(after.1, before.1, "no MGET");
    db.set(2);
    writer.invalidate_tag("prices").await.unwrap();
    serves_after_the_message(&reader, &db, 1002).await;

    // The primary moves: the subscription restarts on the new one (which
    // drops what was held), and an invalidation there is seen.
    let old_primary = group.primary.port();
    tokio::task::block_in_place(|| group.failover());
    assert_ne!(group.primary_port(), old_primary);
    no_hang(20, "an invalidation on the new primary", async {
        db.set(3);
        while writer.invalidate_tag("item:1").await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    no_hang(20, "the new value", async {
        while price(reader.clone(), db.clone(), 1).await != 1003 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Once the invalidation's message is applied, `reader` serves the new
/// value (it would serve the old one for `local_max_age`, a minute here,
/// with its versions still held).
async fn serves_after_the_message(reader: &Cache, db: &Db, expected: u64) {
    no_hang(5, "the invalidation's message", async {
        while price(reader.clone(), db.clone(), 1).await != expected {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(price(reader.clone(), db.clone(), 1).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_invalidation_ends_held_versions() {
    let server = RedisServer::start();
    let namespace = unique_namespace("held-kinds");
    let minute = Duration::from_secs(60);
    let (reader, writer) = (
        build(server.url(), &namespace, minute),
        build(server.url(), &namespace, minute),
    );
    ready(&reader).await;
    ready(&writer).await;
    let db = Db::default();
    let function = format!("{}::price", module_path!());
    // Warms the reader, whose hits then read no version.
    let warm = async |cache: &Cache, expected: u64| {
        for _ in 0..2 {
            assert_eq!(price(cache.clone(), db.clone(), 1).await, expected);
        }
        let mgets = reads(&server).1;
        for _ in 0..3 {
            assert_eq!(price(cache.clone(), db.clone(), 1).await, expected);
        }
        assert_eq!(reads(&server).1, mgets, "hits with held versions");
    };
    type Invalidate<'a> = &'a dyn Fn(
        &'a Cache,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), cache_runtime::Error>> + 'a>,
    >;
    let kinds: [(&str, Invalidate); 5] = [
        ("tag", &|c| Box::pin(c.invalidate_tag("prices"))),
        ("argument tag", &|c| Box::pin(c.invalidate_tag("item:1"))),
        ("function", &|c| Box::pin(c.invalidate_function(&function))),
        ("namespace", &|c| Box::pin(c.invalidate_all())),
        ("call", &|c| Box::pin(price_invalidate(c, &1))),
    ];
    let mut version = 1;
    for (kind, invalidate) in kinds {
        // From this process: applied before the invalidation returns.
        db.set(version);
        warm(&reader, 1000 + version).await;
        version += 1;
        db.set(version);
        invalidate(&reader).await.unwrap();
        assert_eq!(
            price(reader.clone(), db.clone(), 1).await,
            1000 + version,
            "{kind}, from this process"
        );
        // From another cache: applied as its message arrives.
        warm(&reader, 1000 + version).await;
        version += 1;
        db.set(version);
        invalidate(&writer).await.unwrap();
        serves_after_the_message(&reader, &db, 1000 + version).await;
    }
    assert_eq!(reader.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_killed_between_a_read_and_an_invalidation_never_serves_stale() {
    let server = RedisServer::start();
    let namespace = unique_namespace("held-killed");
    let minute = Duration::from_secs(60);
    let (reader, writer) = (
        build(server.url(), &namespace, minute),
        Cache::builder()
            .redis(server.url())
            .namespace(namespace.as_str())
            .build()
            .unwrap(),
    );
    let db = Db::default();
    db.set(1);
    let mut expected = 1001;
    for round in 1..=3u64 {
        ready(&reader).await;
        for _ in 0..3 {
            assert_eq!(price(reader.clone(), db.clone(), 1).await, expected);
        }
        let mgets = reads(&server).1;
        assert_eq!(price(reader.clone(), db.clone(), 1).await, expected);
        assert_eq!(reads(&server).1, mgets, "versions held");
        // The subscription dies; the invalidation's message is lost to it.
        let killed: u64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut server.conn())
            .unwrap();
        assert_eq!(killed, 1);
        db.set(round + 1);
        expected = 1001 + round;
        writer.invalidate_tag("prices").await.unwrap();
        no_hang(5, "the subscription's loss", async {
            while reader.local_ready() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        if round == 2 {
            // Down: nothing held is used.
            assert_eq!(price(reader.clone(), db.clone(), 1).await, expected);
        }
        // Back up: still nothing from before the loss.
        ready(&reader).await;
        assert_eq!(price(reader.clone(), db.clone(), 1).await, expected);
    }
}

/// How long the test gives an invalidation to reach every process before
/// it counts an older value as a stale read: a bound on delivery, far
/// above what it takes, never a performance assertion.
const PROPAGATION: Duration = Duration::from_millis(200);

#[test]
fn no_stale_read_with_held_versions_across_processes_even_with_the_subscription_killed() {
    let server = RedisServer::start();
    let namespace = unique_namespace("held-xproc");
    let mut conn = server.conn();
    set(&mut conn, &namespace, "db", 1);
    set(&mut conn, &namespace, "invalidated", 0);
    let workers = spawn_workers(
        env!("CARGO_BIN_EXE_held_worker"),
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
    let mgets = reads(&server).1;
    while started.elapsed() < Duration::from_millis(7000) {
        version += 1;
        set(&mut conn, &namespace, "db", version);
        if version % 3 == 0 {
            // Every process's subscription, right before the invalidation:
            // its message is lost to them.
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
    let mgets = reads(&server).1 - mgets;
    let [calls, stale, hits] = totals(workers, ["calls", "stale", "hits"]);
    assert!(
        version > 15 && kills >= 5,
        "{version} invalidations, {kills} subscriptions killed"
    );
    // Most hits read the entry alone (a full read after each invalidation
    // and each loss of the subscription).
    assert!(
        mgets * 2 < hits,
        "{mgets} reads of versions for {hits} hits: versions barely held"
    );
    assert_eq!(stale, 0, "stale reads in {calls}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_evicted_without_a_message_is_seen_after_local_max_age() {
    let server =
        RedisServer::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"]);
    let namespace = unique_namespace("held-evicted");
    let max_age = Duration::from_millis(500);
    let cache = build(server.url(), &namespace, max_age);
    ready(&cache).await;
    let db = Db::default();
    db.set(1);
    for _ in 0..3 {
        assert_eq!(price(cache.clone(), db.clone(), 1).await, 1001);
        assert_eq!(price_local(cache.clone(), db.clone(), 2).await, 2001);
    }
    // Fill Redis until the tag's version key is evicted (no message).
    let mut conn = server.conn();
    let version_key = format!("{namespace}#tag:prices");
    let filler = vec![b'x'; 16 << 10];
    let mut filled = 0;
    loop {
        let exists: u64 = redis::cmd("EXISTS")
            .arg(&version_key)
            .query(&mut conn)
            .unwrap();
        if exists == 0 {
            break;
        }
        assert!(filled < 10_000, "the version key was never evicted");
        let _: () = redis::cmd("SET")
            .arg(format!("filler:{filled}"))
            .arg(&filler)
            .query(&mut conn)
            .unwrap();
        filled += 1;
    }
    db.set(2);
    // Past `local_max_age` since the versions were read, the next calls read
    // Redis: the version is missing, and the values are computed again.
    std::thread::sleep(max_age + Duration::from_millis(100));
    let (before, mgets) = (cache.stats(), reads(&server).1);
    assert_eq!(price(cache.clone(), db.clone(), 1).await, 1002);
    assert_eq!(price_local(cache.clone(), db.clone(), 2).await, 2002);
    let after = cache.stats();
    assert_eq!(after.local_hits, before.local_hits, "served from memory");
    assert_eq!(reads(&server).1 - mgets, 2, "each read its versions");
    assert_eq!(after.computations - before.computations, 2);
}
