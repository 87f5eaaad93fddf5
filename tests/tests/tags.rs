//! Tag invalidation: version stamps, checked against real Redis (a private
//! server where the test counts commands or evicts keys), on the in-process
//! backend, and on a 3-node Redis Cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::{
    RedisCluster, RedisServer, backends, command_calls, redis_cache, shared_url, total_calls,
    unique_namespace,
};

/// A "database" row: a version bumped by every write.
#[derive(Default)]
struct Db {
    version: AtomicU64,
}

struct Catalog {
    cache: Cache,
    db: Arc<Db>,
    runs: AtomicU64,
}

impl Catalog {
    fn new(cache: Cache) -> Self {
        Catalog {
            cache,
            db: Arc::new(Db::default()),
            runs: AtomicU64::new(0),
        }
    }

    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }

    #[cached(cache = self.cache, tags = ["products", "category:{category}"])]
    async fn list(&self, category: String) -> Vec<String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        vec![format!(
            "{category} v{}",
            self.db.version.load(Ordering::SeqCst)
        )]
    }

    #[cached(cache = self.cache, tags = ["product:{id}"])]
    async fn product(&self, id: u64) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        format!("product {id} v{}", self.db.version.load(Ordering::SeqCst))
    }

    #[cached(cache = self.cache)]
    async fn untagged(&self, n: u32) -> u32 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        n
    }

    /// A slow read: takes the version, then sleeps `pause_us` before returning it.
    #[cached(cache = self.cache, tags = ["race"], skip(pause_us))]
    async fn slow_read(&self, pause_us: u64) -> u64 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let v = self.db.version.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_micros(pause_us)).await;
        v
    }
}

async fn invalidation_scenarios(cache: Cache) {
    let name = cache.backend_name();
    let c = Catalog::new(cache.clone());
    c.list("books".into()).await;
    c.list("games".into()).await;
    c.product(1).await;
    c.product(2).await;
    assert_eq!(c.runs(), 4);

    // A category tag drops exactly its entries.
    cache.invalidate_tag("category:books").await.unwrap();
    c.list("books".into()).await;
    c.list("games".into()).await;
    assert_eq!(c.runs(), 5, "{name}: only category:books is recomputed");

    // A shared tag drops all its entries.
    cache.invalidate_tag("products").await.unwrap();
    c.list("books".into()).await;
    c.list("games".into()).await;
    assert_eq!(c.runs(), 7, "{name}: `products` drops both listings");

    // Per-entity tags: exactly that product.
    cache
        .invalidate_tag(format!("product:{}", 2))
        .await
        .unwrap();
    c.product(1).await;
    assert_eq!(c.runs(), 7, "{name}: product 1 stays cached");
    c.product(2).await;
    assert_eq!(c.runs(), 8, "{name}: product 2 is recomputed");

    // Several at once.
    cache
        .invalidate_tags(["product:1", "product:2"])
        .await
        .unwrap();
    c.product(1).await;
    c.product(2).await;
    assert_eq!(c.runs(), 10, "{name}");

    // Every entry of one function, through the companion: other functions keep theirs.
    c.untagged(1).await;
    c.untagged(2).await;
    assert_eq!(c.runs(), 12);
    c.product_invalidate_all().await.unwrap();
    c.product(1).await;
    c.product(2).await;
    c.untagged(1).await;
    assert_eq!(
        c.runs(),
        14,
        "{name}: product's entries dropped, untagged's kept"
    );

    // The entry of one call, given its arguments.
    c.untagged_invalidate(&2).await.unwrap();
    c.untagged(1).await;
    c.untagged(2).await;
    assert_eq!(c.runs(), 15, "{name}: only untagged(2) is recomputed");
    c.list_invalidate(&"games".to_string()).await.unwrap();
    c.list("books".into()).await;
    c.list("games".into()).await;
    assert_eq!(c.runs(), 16, "{name}: only list(games) is recomputed");

    // The whole namespace: every function's entries, and nothing of
    // another namespace on the same backend.
    c.product(1).await;
    c.untagged(1).await;
    assert_eq!(c.runs(), 16);
    cache.invalidate_all().await.unwrap();
    c.list("books".into()).await;
    c.product(1).await;
    c.untagged(1).await;
    assert_eq!(c.runs(), 19, "{name}: everything is recomputed");
    c.list("books".into()).await;
    assert_eq!(c.runs(), 19, "{name}: and cached again");
}

#[tokio::test]
async fn invalidation_drops_exactly_the_tagged_entries() {
    for cache in backends("tags") {
        invalidation_scenarios(cache).await;
    }
}

#[tokio::test]
async fn an_invalidation_reaches_entries_written_by_another_process() {
    // Two caches share nothing but Redis, as two processes would.
    let namespace = unique_namespace("tags-xproc");
    let writer = redis_cache(&shared_url(), &namespace);
    let other = redis_cache(&shared_url(), &namespace);
    let a = Catalog::new(writer.clone());
    let b = Catalog::new(other.clone());
    a.list("books".into()).await;
    b.list("books".into()).await;
    assert_eq!((a.runs(), b.runs()), (1, 0), "b hits a's entry");
    other.invalidate_tag("products").await.unwrap();
    a.list("books".into()).await;
    assert_eq!(a.runs(), 2, "a sees b's invalidation");
}

/// How a test invalidates the entry of `slow_read`.
#[derive(Debug, Clone, Copy)]
enum Invalidation {
    /// `invalidate_tag("race")`.
    Tag,
    /// `slow_read_invalidate()`: the entry of that one call.
    Call,
    /// `slow_read_invalidate_all()`: every entry of the function.
    Function,
    /// `invalidate_all()`: every entry of the namespace.
    All,
}

/// The stale-set race: a fill that read the database before an invalidation
/// must never be served after it. Each round starts a slow read (takes the
/// version, sleeps), writes the database and invalidates during the sleep at
/// a random moment, then reads again: it must see the new version. The
/// second read goes through `reader` (another cache on the same backend, as
/// another process would, or the same one).
async fn stale_set_race(cache: Cache, reader: Cache, rounds: u32, how: Invalidation) {
    let c = Arc::new(Catalog::new(cache.clone()));
    let r = Catalog {
        cache: reader,
        db: c.db.clone(),
        runs: AtomicU64::new(0),
    };
    let invalidate = async |how| match how {
        Invalidation::Tag => cache.invalidate_tag("race").await.unwrap(),
        Invalidation::Call => c.slow_read_invalidate().await.unwrap(),
        Invalidation::Function => c.slow_read_invalidate_all().await.unwrap(),
        Invalidation::All => cache.invalidate_all().await.unwrap(),
    };
    let mut stale = 0;
    for round in 0..rounds {
        // Start cold, so that the slow read below computes and fills.
        invalidate(how).await;
        let pause_us = 200 + u64::from(rand_u32() % 3000);
        let write_after_us = u64::from(rand_u32() % 3200);
        let slow = {
            let c = c.clone();
            tokio::spawn(async move { c.slow_read(pause_us).await })
        };
        tokio::time::sleep(Duration::from_micros(write_after_us)).await;
        let new_version = c.db.version.fetch_add(1, Ordering::SeqCst) + 1;
        invalidate(how).await;
        slow.await.unwrap();
        let seen = r.slow_read(0).await;
        if seen != new_version {
            stale += 1;
            eprintln!(
                "round {round}: served version {seen} after version {new_version} was invalidated"
            );
        }
    }
    assert_eq!(
        stale,
        0,
        "{} ({how:?}): stale reads after an invalidation",
        cache.backend_name()
    );
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish() as u32
}
static COUNTER: AtomicU64 = AtomicU64::new(0);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_value_survives_an_invalidation() {
    for cache in backends("tags") {
        for how in [
            Invalidation::Tag,
            Invalidation::Call,
            Invalidation::Function,
            Invalidation::All,
        ] {
            stale_set_race(cache.clone(), cache.clone(), 150, how).await;
        }
    }
}

/// The same race when the late fill and the next read happen in two
/// processes (two caches sharing only Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_value_survives_an_invalidation_across_processes() {
    let namespace = unique_namespace("race-xproc");
    let build = || redis_cache(&shared_url(), &namespace);
    for how in [
        Invalidation::Tag,
        Invalidation::Call,
        Invalidation::Function,
        Invalidation::All,
    ] {
        stale_set_race(build(), build(), 150, how).await;
    }
}

struct Lifetimes {
    cache: Cache,
}

impl Lifetimes {
    #[cached(cache = self.cache, ttl = 2, tags = ["shared", "short:{n}"])]
    async fn short(&self, n: u32) -> u32 {
        n
    }

    #[cached(cache = self.cache, ttl = "10m", tags = ["shared"])]
    async fn long(&self, n: u32) -> u32 {
        n
    }

    #[cached(cache = self.cache, ttl = 2, tags = ["failed:{n}"])]
    async fn failing(&self, n: u32) -> Result<u32, String> {
        Err(format!("no {n}"))
    }
}

/// Version keys expire with the last entry that carries them, so per-entity
/// tags (`user:{id}` for every id ever asked) do not pile up in Redis.
#[tokio::test]
async fn versions_expire_with_the_last_entry_that_carries_them() {
    let namespace = unique_namespace("lifetimes");
    let cache = redis_cache(&shared_url(), &namespace);
    let l = Lifetimes { cache };
    let mut conn = redis::Client::open(shared_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut pttl = |key: String| -> i64 { redis::cmd("PTTL").arg(key).query(&mut conn).unwrap() };

    // `short`: ttl 2 s; the cache's default lease, 10 s, is room for the body.
    l.short(1).await;
    let shared = pttl(format!("{namespace}#tag:shared"));
    assert!(
        (1..=12_000).contains(&shared),
        "a version starts with its entry's TTL plus the lease's: {shared}"
    );
    assert!((1..=12_000).contains(&pttl(format!("{namespace}#tag:short:1"))));
    l.long(1).await;
    let shared = pttl(format!("{namespace}#tag:shared"));
    assert!(
        (590_000..=600_000).contains(&shared),
        "the longer entry extends it: {shared}"
    );
    assert!(
        pttl(format!("{namespace}#tag:short:1")) <= 12_000,
        "other versions keep theirs"
    );

    // A result that is not cached leaves only versions that expire.
    l.failing(7).await.unwrap_err();
    let failed = pttl(format!("{namespace}#tag:failed:7"));
    assert!((1..=12_000).contains(&failed), "{failed}");

    // Every key of the cache has a TTL.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}*"))
        .query(&mut conn)
        .unwrap();
    assert!(keys.len() >= 6, "{keys:?}");
    for key in keys {
        let t: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
        assert!(t > 0, "{key} has no TTL ({t})");
    }
}

/// Invalidating a tag costs the same number of Redis commands (two, in one
/// round trip) for 10 and for 10 000 entries (measured with `INFO commandstats` on a private server).
#[tokio::test]
async fn invalidation_cost_does_not_grow_with_entries() {
    let server = RedisServer::start();
    let cache = redis_cache(&server.url(), "cost");
    let c = Catalog::new(cache.clone());
    let mut conn = server.conn();
    let mut costs = Vec::new();
    let mut next_id = 0;
    for entries in [10u64, 10_000] {
        // Tag `products` on every entry: fill through `list`, one category each.
        let fills: Vec<_> = (0..entries)
            .map(|_| {
                next_id += 1;
                format!("c{next_id}")
            })
            .collect();
        for cat in fills {
            c.list(cat).await;
        }
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut conn)
            .unwrap();
        let before_rt = cache.stats().round_trips;
        cache.invalidate_tag("products").await.unwrap();
        let commands = total_calls(&mut conn, &["config|resetstat", "info"]);
        costs.push((entries, commands, cache.stats().round_trips - before_rt));
    }
    assert_eq!(
        costs[0].1, costs[1].1,
        "commands per invalidation (entries, commands, round trips): {costs:?}"
    );
    // A `DEL` of the tag's version and its announcement to local tiers
    // (`PUBLISH`), in one round trip.
    assert_eq!(costs[0].1, 2, "{costs:?}");
    assert_eq!(costs[1].2, 1, "{costs:?}");
}

/// A hit, tag check included, is one round trip to Redis.
#[tokio::test]
async fn a_hit_is_one_round_trip() {
    let cache = redis_cache(&shared_url(), &unique_namespace("rt"));
    let c = Catalog::new(cache.clone());
    c.list("books".into()).await;
    let before = cache.stats();
    c.list("books".into()).await;
    let after = cache.stats();
    assert_eq!(after.hits - before.hits, 1);
    assert_eq!(
        after.round_trips - before.round_trips,
        1,
        "a hit with two tags + the function tag"
    );
}

/// A miss is three round trips around the body: the read; the missing
/// versions and the lease, together; the store with the lease's release.
/// Scripts go by hash, and a server that lost them (`SCRIPT FLUSH`) gets
/// their text once more.
#[tokio::test]
async fn a_miss_is_three_round_trips_with_scripts_by_hash() {
    let server = RedisServer::start();
    let cache = redis_cache(&server.url(), "miss");
    let c = Catalog::new(cache.clone());
    let mut conn = server.conn();
    // Load the scripts on this new server (the second fill extends versions
    // the first created).
    c.list("warm1".into()).await;
    c.list("warm2".into()).await;
    for (i, flush) in [false, true, false].into_iter().enumerate() {
        if flush {
            let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut conn).unwrap();
        }
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut conn)
            .unwrap();
        let before = cache.stats();
        c.list(format!("miss{i}")).await;
        let after = cache.stats();
        assert_eq!(after.misses - before.misses, 1);
        let calls: std::collections::HashMap<String, u64> =
            command_calls(&mut conn).into_iter().collect();
        let eval = calls.get("eval").copied().unwrap_or(0);
        if flush {
            // Both script round trips are sent again by text.
            assert_eq!(after.round_trips - before.round_trips, 5, "{calls:?}");
            assert!(eval > 0, "{calls:?}");
        } else {
            assert_eq!(after.round_trips - before.round_trips, 3, "{calls:?}");
            assert_eq!(eval, 0, "scripts by hash only once loaded: {calls:?}");
        }
    }
}

/// Losing the tag bookkeeping (DEL, FLUSHDB, eviction) invalidates; it never
/// makes an old entry valid again.
#[tokio::test]
async fn lost_tag_versions_invalidate_and_never_revalidate() {
    let server = RedisServer::start();
    let cache = redis_cache(&server.url(), "lost");
    let c = Catalog::new(cache.clone());
    let mut conn = server.conn();

    c.product(1).await;
    let _: () = redis::cmd("DEL")
        .arg("lost#tag:product:1")
        .query(&mut conn)
        .unwrap();
    c.product(1).await;
    assert_eq!(c.runs(), 2, "a deleted tag version invalidates");

    // FLUSHDB between fill and read: entry and versions gone; the old entry
    // written back (as a late writer would) must not be valid.
    let _: () = redis::cmd("FLUSHDB").query(&mut conn).unwrap();
    c.product(3).await;
    let key = find_key(&mut conn, "lost:tags::Catalog::product:*");
    let old: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
    let _: () = redis::cmd("FLUSHDB").query(&mut conn).unwrap();
    c.db.version.fetch_add(1, Ordering::SeqCst);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&old)
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        c.product(3).await,
        "product 3 v1",
        "an entry from before the flush is not valid"
    );
    // Versions re-created after the flush are new: the old entry stays invalid.
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&old)
        .query(&mut conn)
        .unwrap();
    assert_eq!(c.product(3).await, "product 3 v1");
}

fn find_key(conn: &mut redis::Connection, pattern: &str) -> String {
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(conn).unwrap();
    assert_eq!(keys.len(), 1, "{pattern}: {keys:?}");
    keys.into_iter().next().unwrap()
}

/// Eviction under `maxmemory` with `allkeys-lru`: after an invalidation,
/// whatever survives, no read returns a value from before it.
#[tokio::test]
async fn eviction_never_revives_old_entries() {
    let server =
        RedisServer::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"]);
    let cache = redis_cache(&server.url(), "lru");
    let c = Catalog::new(cache.clone());
    for id in 0..300 {
        c.product(id).await;
    }
    cache
        .invalidate_tags((0..300).map(|id| format!("product:{id}")))
        .await
        .unwrap();
    c.db.version.fetch_add(1, Ordering::SeqCst);
    // Flood with other entries so that versions and entries get evicted.
    let mut conn = server.conn();
    let filler = vec![b'x'; 8 * 1024];
    for i in 0..2000 {
        let _: () = redis::cmd("SET")
            .arg(format!("filler:{i}"))
            .arg(&filler)
            .query(&mut conn)
            .unwrap();
    }
    let evicted: String = redis::cmd("INFO").arg("stats").query(&mut conn).unwrap();
    assert!(
        !evicted.contains("evicted_keys:0\r"),
        "the flood must evict keys"
    );
    for id in 0..300 {
        assert_eq!(
            c.product(id).await,
            format!("product {id} v1"),
            "an old value came back"
        );
    }
}

/// The same scenarios on a 3-node Redis Cluster: no command spans slots.
/// Leases work there too (waiters poll; there is no cluster pub/sub).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_leases_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let cache = Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace(unique_namespace("cluster"))
        .op_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    invalidation_scenarios(cache.clone()).await;
    stale_set_race(cache.clone(), cache.clone(), 50, Invalidation::Tag).await;

    // Two caches on the cluster, as two processes, 50 callers each, on a
    // cold key.
    cache.invalidate_tag("race").await.unwrap();
    let other = Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace(cache.namespace())
        .op_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let (a, b) = (
        Arc::new(Catalog::new(cache.clone())),
        Arc::new(Catalog::new(other.clone())),
    );
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let c = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { c.slow_read(100_000).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    assert_eq!(a.runs() + b.runs(), 1, "one computation across both caches");
    assert_eq!(other.stats().errors, 0);

    let s = cache.stats();
    assert_eq!(
        s.errors, 0,
        "no CROSSSLOT or other error on the cluster: {s:?}"
    );
    assert!(s.hits > 0, "{s:?}");
}

/// One URL of a cluster node (a managed cluster's single endpoint), given
/// to `.redis(url)`: the cache finds it is a cluster node and uses the
/// cluster client. Here a one-node cluster holding all 16384 slots, where
/// a command spanning slots (one `MGET` of an entry and its versions) is
/// refused with `CROSSSLOT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_url_of_a_cluster_node_uses_the_cluster_client() {
    let cluster = RedisCluster::start_single();
    let url = cluster.urls().remove(0);
    let cache = Cache::builder()
        .redis(url.as_str())
        .namespace(unique_namespace("one-url"))
        .op_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    invalidation_scenarios(cache.clone()).await;
    stale_set_race(cache.clone(), cache.clone(), 50, Invalidation::Tag).await;
    let s = cache.stats();
    assert_eq!(s.errors, 0, "no CROSSSLOT or other error: {s:?}");
    assert!(s.hits > 0, "{s:?}");
    assert!(s.misses > 0, "{s:?}");
}
