//! Cache-aside behaviour, run on both backends: the in-process one and a
//! real Redis (`REDIS_URL`, or a private server started by the harness).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::{backends, redis_cache, shared_url, unique_namespace};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
}

#[derive(Debug, PartialEq)]
struct DbError(&'static str);

/// A database handle: not `Serialize`, so it must be skipped.
struct Db {
    queries: AtomicU64,
}

struct Shop {
    cache: Cache,
    runs: AtomicU64,
}

impl Shop {
    #[cached(cache = self.cache, ttl = 600, tags = ["products", "category:{category}"])]
    async fn list_products(&self, category: String) -> Result<Vec<Product>, DbError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if category == "broken" {
            return Err(DbError("connection reset"));
        }
        Ok(vec![Product {
            id: 1,
            name: format!("{category} #1"),
        }])
    }

    #[cached(cache = self.cache, ttl = "10m", key = "product:{id}", tags = ["product:{id}"])]
    async fn find(&self, id: u64) -> Option<Product> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        (id < 100).then(|| Product {
            id,
            name: format!("product {id}"),
        })
    }

    #[cached(cache = self.cache, cache_none = true)]
    async fn find_or_none(&self, id: u64) -> Option<Product> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        (id < 100).then(|| Product {
            id,
            name: format!("product {id}"),
        })
    }

    #[cached(cache = self.cache)]
    async fn lookup(&self, id: u64) -> Result<Option<Product>, DbError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok((id < 100).then(|| Product {
            id,
            name: format!("product {id}"),
        }))
    }

    #[cached(cache = self.cache, cache_none = true)]
    async fn lookup_or_none(&self, id: u64) -> Result<Option<Product>, DbError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok((id < 100).then(|| Product {
            id,
            name: format!("product {id}"),
        }))
    }

    #[cached(cache = self.cache, skip(db))]
    async fn count(&self, db: &Db, filters: HashMap<String, u32>) -> u64 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        db.queries.fetch_add(1, Ordering::SeqCst);
        filters.values().map(|v| u64::from(*v)).sum()
    }

    #[cached(cache = self.cache, ttl = 1)]
    async fn short_lived(&self, n: u32) -> u32 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        n * 2
    }

    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }
}

fn shop(cache: Cache) -> Shop {
    Shop {
        cache,
        runs: AtomicU64::new(0),
    }
}

#[tokio::test]
async fn a_hit_returns_the_stored_value_without_running_the_body() {
    for cache in backends("aside") {
        let shop = shop(cache.clone());
        let first = shop.list_products("books".into()).await.unwrap();
        let second = shop.list_products("books".into()).await.unwrap();
        assert_eq!(first, second);
        assert_eq!(shop.runs(), 1, "{}", cache.backend_name());
        let s = cache.stats();
        assert_eq!(
            (s.hits, s.misses, s.computations, s.stores, s.errors),
            (1, 1, 1, 1, 0),
            "{s:?}"
        );
        shop.list_products("games".into()).await.unwrap();
        assert_eq!(shop.runs(), 2, "other arguments are another entry");
    }
}

#[tokio::test]
async fn err_is_never_cached() {
    for cache in backends("aside") {
        let shop = shop(cache.clone());
        assert_eq!(
            shop.list_products("broken".into()).await,
            Err(DbError("connection reset"))
        );
        assert!(shop.list_products("broken".into()).await.is_err());
        assert_eq!(shop.runs(), 2);
        assert_eq!(cache.stats().stores, 0);
    }
}

#[tokio::test]
async fn none_is_cached_only_when_asked() {
    for cache in backends("aside") {
        let shop = shop(cache.clone());
        assert_eq!(shop.find(500).await, None);
        assert_eq!(shop.find(500).await, None);
        assert_eq!(shop.runs(), 2, "None is not cached by default");
        assert_eq!(shop.find(5).await.unwrap().id, 5);
        assert_eq!(shop.find(5).await.unwrap().id, 5);
        assert_eq!(shop.runs(), 3, "Some is cached");

        assert_eq!(shop.find_or_none(500).await, None);
        assert_eq!(shop.find_or_none(500).await, None);
        assert_eq!(shop.runs(), 4, "cache_none = true caches None");
    }
}

#[tokio::test]
async fn ok_none_is_cached_only_when_asked() {
    for cache in backends("ok-none") {
        let shop = shop(cache.clone());
        assert_eq!(shop.lookup(500).await, Ok(None));
        assert_eq!(shop.lookup(500).await, Ok(None));
        assert_eq!(shop.runs(), 2, "Ok(None) is not cached by default");
        assert_eq!(shop.lookup(5).await.unwrap().unwrap().id, 5);
        assert_eq!(shop.lookup(5).await.unwrap().unwrap().id, 5);
        assert_eq!(shop.runs(), 3, "Ok(Some) is cached");
        assert_eq!(shop.lookup_or_none(500).await, Ok(None));
        assert_eq!(shop.lookup_or_none(500).await, Ok(None));
        assert_eq!(shop.runs(), 4, "cache_none = true caches Ok(None)");
    }
}

#[tokio::test]
async fn skipped_arguments_are_not_part_of_the_key() {
    for cache in backends("aside") {
        let shop = shop(cache.clone());
        let (db1, db2) = (
            Db {
                queries: AtomicU64::new(0),
            },
            Db {
                queries: AtomicU64::new(0),
            },
        );
        let filters: HashMap<String, u32> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
        assert_eq!(shop.count(&db1, filters.clone()).await, 3);
        assert_eq!(shop.count(&db2, filters).await, 3);
        assert_eq!(
            db1.queries.load(Ordering::SeqCst) + db2.queries.load(Ordering::SeqCst),
            1
        );
    }
}

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    for cache in backends("aside") {
        let shop = shop(cache.clone());
        assert_eq!(shop.short_lived(21).await, 42);
        assert_eq!(shop.short_lived(21).await, 42);
        assert_eq!(shop.runs(), 1);
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_eq!(shop.short_lived(21).await, 42);
        assert_eq!(
            shop.runs(),
            2,
            "{}: the entry outlived its TTL",
            cache.backend_name()
        );
    }
}

#[tokio::test]
async fn a_readable_key_and_json_value_in_redis() {
    let namespace = unique_namespace("readable");
    let cache = redis_cache(&shared_url(), &namespace);
    let shop = shop(cache);
    shop.find(7).await.unwrap();
    let mut conn = redis::Client::open(shared_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let stored: String = redis::cmd("GET")
        .arg(format!("{namespace}:product:7"))
        .query(&mut conn)
        .unwrap();
    // A header line: format, codec, then the versions of the function, the
    // call and each tag, read before the body ran; then the value's JSON.
    let (header, json) = stored.split_once('\n').unwrap();
    let json: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        json,
        // An `Option` is stored as zero or one value: `[product]`.
        serde_json::json!([{"id": 7, "name": "product 7"}])
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{namespace}:product:7"))
        .query(&mut conn)
        .unwrap();
    assert!(
        (590..=600).contains(&ttl),
        "ttl = \"10m\" gives a 600 s TTL, got {ttl}"
    );
    let versions: Vec<&str> = header
        .strip_prefix("cr1 json ")
        .unwrap_or_else(|| panic!("{header}"))
        .split(',')
        .collect();
    let tag_version: String = redis::cmd("GET")
        .arg(format!("{namespace}#tag:product:7"))
        .query(&mut conn)
        .unwrap();
    let namespace_version: String = redis::cmd("GET")
        .arg(format!("{namespace}#all"))
        .query(&mut conn)
        .unwrap();
    // The function's, the call's, the namespace's, then the tag's.
    assert_eq!(versions.len(), 4, "{header}");
    assert_eq!(versions[2], namespace_version, "{header}");
    assert_eq!(versions[3], tag_version, "{header}");
}

#[tokio::test]
async fn a_value_that_no_longer_decodes_is_a_counted_miss_and_is_overwritten() {
    let namespace = unique_namespace("decode");
    let cache = redis_cache(&shared_url(), &namespace);
    let shop = shop(cache.clone());
    shop.find(8).await.unwrap();
    let key = format!("{namespace}:product:8");
    let mut conn = redis::Client::open(shared_url())
        .unwrap()
        .get_connection()
        .unwrap();
    // A well-formed entry, with current tag versions, whose value has the
    // wrong shape (as after a deploy that changed the type).
    let good: String = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
    let (header, _) = good.split_once('\n').unwrap();
    let changed = format!("{header}\n{{\"id\":\"not a number\"}}").into_bytes();
    let garbage: [&[u8]; 4] = [b"\xff\xfe not json", &changed, br#"[1,2,3]"#, b""];
    for (i, bytes) in garbage.into_iter().enumerate() {
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(bytes)
            .query(&mut conn)
            .unwrap();
        assert_eq!(
            shop.find(8).await.unwrap().id,
            8,
            "garbage #{i} must be a miss"
        );
        let stored: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
        assert_ne!(stored, bytes, "garbage #{i} must be overwritten");
    }
    let s = cache.stats();
    assert_eq!(s.decode_errors, 4, "{s:?}");
    assert_eq!(s.errors, 0, "{s:?}");
    assert_eq!(shop.runs(), 5);
    shop.find(8).await.unwrap();
    assert_eq!(shop.runs(), 5, "the fresh value is a hit");
}

/// The same key read by two functions of different codecs, as when a
/// deploy changes a function's `codec`.
struct Codecs {
    cache: Cache,
    runs: AtomicU64,
}

impl Codecs {
    #[cached(cache = self.cache, key = "codec:{id}")]
    async fn json(&self, id: u64) -> Product {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Product {
            id,
            name: format!("json {id}"),
        }
    }

    #[cached(cache = self.cache, key = "codec:{id}", codec = "msgpack", tags = ["codecs"])]
    async fn msgpack(&self, id: u64) -> Product {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Product {
            id,
            name: format!("msgpack {id}"),
        }
    }
}

#[tokio::test]
async fn msgpack_round_trips_and_a_codec_change_is_a_miss() {
    for cache in backends("codec") {
        let c = Codecs {
            cache: cache.clone(),
            runs: AtomicU64::new(0),
        };
        let name = cache.backend_name();
        assert_eq!(c.msgpack(1).await.name, "msgpack 1");
        assert_eq!(c.msgpack(1).await.name, "msgpack 1", "{name}");
        assert_eq!(c.runs.load(Ordering::SeqCst), 1, "{name}: a msgpack hit");
        // The JSON function finds a MessagePack entry under its key: a
        // miss, not garbage and not a decode error; then the other way.
        assert_eq!(c.json(1).await.name, "json 1", "{name}");
        assert_eq!(c.msgpack(1).await.name, "msgpack 1", "{name}");
        assert_eq!(c.runs.load(Ordering::SeqCst), 3, "{name}");
        let s = cache.stats();
        assert_eq!(
            (s.hits, s.decode_errors, s.errors),
            (1, 0, 0),
            "{name}: {s:?}"
        );
    }
}

#[tokio::test]
async fn corrupt_msgpack_is_a_counted_miss_and_is_overwritten() {
    let namespace = unique_namespace("msgpack");
    let cache = redis_cache(&shared_url(), &namespace);
    let c = Codecs {
        cache: cache.clone(),
        runs: AtomicU64::new(0),
    };
    c.msgpack(2).await;
    let key = format!("{namespace}:codec:2");
    let mut conn = redis::Client::open(shared_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let good: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
    let header_end = good.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert!(good.starts_with(b"cr1 msgpack "), "{good:?}");
    // Current versions, then bytes that are not MessagePack of a `Product`.
    for (i, value) in [&b"\xc1\xc1"[..], b"\x92\x01", b""].into_iter().enumerate() {
        let mut corrupt = good[..header_end].to_vec();
        corrupt.extend_from_slice(value);
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(&corrupt)
            .query(&mut conn)
            .unwrap();
        assert_eq!(c.msgpack(2).await.name, "msgpack 2");
        let stored: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
        assert_eq!(stored, good, "corrupt value #{i} is overwritten");
    }
    let s = cache.stats();
    assert_eq!((s.decode_errors, s.errors), (3, 0), "{s:?}");
    assert_eq!(c.runs.load(Ordering::SeqCst), 4);
    c.msgpack(2).await;
    assert_eq!(c.runs.load(Ordering::SeqCst), 4, "the fresh value is a hit");
}

/// Key and tag templates whose arguments contain the templates' own
/// separators, or are huge.
struct Users {
    cache: Cache,
    runs: AtomicU64,
}

impl Users {
    #[cached(cache = self.cache, key = "user:{org}:{name}", tags = ["org:{org}"])]
    async fn user(&self, org: String, name: String) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        format!("{org}/{name}")
    }
}

#[tokio::test]
async fn template_arguments_never_render_the_same_key() {
    for cache in backends("template") {
        let u = Users {
            cache: cache.clone(),
            runs: AtomicU64::new(0),
        };
        let name = cache.backend_name();
        assert_eq!(u.user("a:b".into(), "c".into()).await, "a:b/c", "{name}");
        assert_eq!(u.user("a".into(), "b:c".into()).await, "a/b:c", "{name}");
        assert_eq!(u.user("a:b".into(), "c".into()).await, "a:b/c", "{name}");
        assert_eq!(
            u.runs.load(Ordering::SeqCst),
            2,
            "{name}: two keys, one hit"
        );
        // The tag of an org with a separator in its name, named by hand.
        cache
            .invalidate_tag(format!("org:{}", cache_runtime::template_value(&"a:b")))
            .await
            .unwrap();
        u.user("a:b".into(), "c".into()).await;
        u.user("a".into(), "b:c".into()).await;
        assert_eq!(
            u.runs.load(Ordering::SeqCst),
            3,
            "{name}: only org a:b invalidated"
        );
    }
}

#[tokio::test]
async fn a_huge_template_argument_makes_short_keys() {
    let namespace = unique_namespace("huge");
    let cache = redis_cache(&shared_url(), &namespace);
    let u = Users {
        cache: cache.clone(),
        runs: AtomicU64::new(0),
    };
    let huge = "x".repeat(5 << 20);
    let other = format!("{huge}y");
    u.user(huge.clone(), "n".into()).await;
    u.user(other.clone(), "n".into()).await;
    u.user(huge.clone(), "n".into()).await;
    assert_eq!(
        u.runs.load(Ordering::SeqCst),
        2,
        "distinct huge values, distinct keys"
    );
    let mut conn = redis::Client::open(shared_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}*"))
        .query(&mut conn)
        .unwrap();
    assert!(keys.len() >= 5, "{keys:?}");
    for key in &keys {
        assert!(
            key.len() < 200,
            "{} bytes: {}",
            key.len(),
            &key[..200.min(key.len())]
        );
    }
    assert_eq!(cache.stats().errors, 0);
}

struct Forever {
    cache: Cache,
}

impl Forever {
    #[cached(cache = self.cache, ttl = "36500d", lock_ttl = "36500d")]
    async fn longest(&self, id: u64) -> u64 {
        id
    }

    #[cached(cache = self.cache)]
    async fn default_ttl(&self, id: u64) -> u64 {
        id
    }
}

/// The longest durations the attribute and the builder take are ones Redis
/// accepts: the values are stored, with no error and no panic.
#[tokio::test]
async fn the_longest_durations_store() {
    let cache = Cache::builder()
        .redis(shared_url())
        .namespace(unique_namespace("forever"))
        .default_ttl(cache_runtime::MAX_DURATION)
        .lock_ttl(cache_runtime::MAX_DURATION)
        .build()
        .unwrap();
    let f = Forever {
        cache: cache.clone(),
    };
    for _ in 0..2 {
        assert_eq!(f.longest(1).await, 1);
        assert_eq!(f.default_ttl(2).await, 2);
    }
    let s = cache.stats();
    assert_eq!((s.stores, s.hits, s.errors), (2, 2, 0), "{s:?}");
}

mod default_cache {
    use super::*;

    static RUNS: AtomicU64 = AtomicU64::new(0);

    #[cached(ttl = 60)]
    async fn plain(n: u32) -> String {
        RUNS.fetch_add(1, Ordering::SeqCst);
        format!("n={n}")
    }

    /// The only test in this binary that touches the process-wide default.
    #[tokio::test]
    async fn functions_without_cache_use_the_default_and_run_uncached_before_one_is_set() {
        assert_eq!(plain(1).await, "n=1");
        assert_eq!(plain(1).await, "n=1");
        assert_eq!(RUNS.load(Ordering::SeqCst), 2, "no default yet: uncached");
        let cache = Cache::builder().memory().build().unwrap();
        cache_runtime::set_default(cache.clone());
        plain(1).await;
        plain(1).await;
        assert_eq!(RUNS.load(Ordering::SeqCst), 3);
        assert_eq!(cache.stats().hits, 1);
    }
}

mod same_name_in_two_impls {
    use super::*;

    struct User;
    struct Team;

    impl User {
        #[cached(cache = cache, skip(cache))]
        async fn name(cache: &Cache, id: u32) -> String {
            let _ = cache;
            format!("user {id}")
        }
    }

    impl Team {
        #[cached(cache = cache, skip(cache))]
        async fn name(cache: &Cache, id: u32) -> String {
            let _ = cache;
            format!("team {id}")
        }
    }

    /// Associated functions of one name in two `impl` blocks of one module
    /// have keys (and function tags) of their own.
    #[tokio::test]
    async fn never_share_entries() {
        for cache in backends("impls") {
            assert_eq!(User::name(&cache, 1).await, "user 1");
            assert_eq!(Team::name(&cache, 1).await, "team 1");
            assert_eq!(User::name(&cache, 1).await, "user 1");
            assert_eq!(cache.stats().hits, 1);
            Team::name_invalidate_all(&cache).await.unwrap();
            assert_eq!(User::name(&cache, 1).await, "user 1");
            assert_eq!(
                cache.stats().hits,
                2,
                "invalidating Team::name keeps User::name"
            );
        }
    }
}

struct Big {
    cache: Cache,
    runs: AtomicU64,
}

impl Big {
    #[cached(cache = self.cache, key = "big:{id}")]
    async fn value(&self, id: u64, bytes: usize) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        format!("{id}:{}", "x".repeat(bytes))
    }
}

/// A value larger than `max_value_bytes` is returned, not stored, and
/// counted.
#[tokio::test]
async fn a_value_over_max_value_bytes_is_returned_not_stored() {
    for backend in ["memory", "redis"] {
        let builder = Cache::builder().max_value_bytes(1_000);
        let cache = match backend {
            "memory" => builder.memory(),
            _ => builder
                .redis(shared_url())
                .namespace(unique_namespace("max")),
        }
        .build()
        .unwrap();
        let big = Big {
            cache: cache.clone(),
            runs: AtomicU64::new(0),
        };
        assert_eq!(big.value(1, 5_000).await.len(), 5_002);
        assert_eq!(big.value(1, 5_000).await.len(), 5_002);
        assert_eq!(
            big.runs.load(Ordering::SeqCst),
            2,
            "{backend}: never stored"
        );
        big.value(2, 10).await;
        big.value(2, 10).await;
        assert_eq!(
            big.runs.load(Ordering::SeqCst),
            3,
            "{backend}: a small one is"
        );
        let s = cache.stats();
        assert_eq!(
            (s.oversized, s.stores, s.errors),
            (2, 1, 0),
            "{backend}: {s:?}"
        );
    }
}

struct Items {
    cache: Cache,
    runs: AtomicU64,
}

impl Items {
    #[cached(cache = self.cache, tags = ["item:{id}"])]
    async fn item(&self, id: u64, bytes: usize) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        "x".repeat(bytes)
    }
}

/// The in-process backend never evicts a version a live entry carries: 2000
/// entries with a tag each fit a 2500-entry cache, though they carry 4001
/// versions (the function's, one per call, one per tag). It gave 759 false
/// misses of 2000 when versions were bounded like entries.
#[tokio::test]
async fn the_memory_backend_keeps_the_versions_of_live_entries() {
    let cache = Cache::builder()
        .memory()
        .memory_capacity(2500)
        .build()
        .unwrap();
    let items = Items {
        cache: cache.clone(),
        runs: AtomicU64::new(0),
    };
    for round in 0..2 {
        for id in 0..2000 {
            items.item(id, 10).await;
        }
        assert_eq!(items.runs.load(Ordering::SeqCst), 2000, "round {round}");
    }
    assert_eq!(cache.stats().hits, 2000);
}

/// The in-process backend is bounded by bytes as well as by entries.
#[tokio::test]
async fn the_memory_backend_is_bounded_by_bytes() {
    let cache = Cache::builder()
        .memory()
        .memory_capacity(1000)
        .memory_max_bytes(1 << 20)
        .build()
        .unwrap();
    let items = Items {
        cache: cache.clone(),
        runs: AtomicU64::new(0),
    };
    for id in 0..100 {
        items.item(id, 50_000).await;
    }
    for id in 0..100 {
        items.item(id, 50_000).await;
    }
    // 100 values of 50 KB in 1 MiB: about 20 of them stay.
    let hits = cache.stats().hits;
    assert!(hits <= 40, "{hits} hits: more than 1 MiB kept");
    assert!(hits > 0, "the cache still holds some");
}
