//! The programmatic API (`Cache::entry`) and the `<fn>_prime` companions,
//! on both backends (Redis: the shared test server, or a private one the
//! test breaks) with the guarantees of `#[cached]`: one computation, tags
//! as versions, fail-open, the local tier.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::proxy::Proxy;
use cache_tests::{RedisServer, backends, no_hang, unique_namespace};

/// Counts the computations of a test.
#[derive(Default, Clone)]
struct Runs(Arc<AtomicU64>);

impl Runs {
    fn add(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn get_or_compute_computes_once_then_hits() {
    for cache in backends("entry-once") {
        let name = cache.backend_name();
        let runs = Runs::default();
        for _ in 0..3 {
            let value = cache
                .entry("total", &(7u64, "EUR"))
                .ttl(Duration::from_secs(60))
                .get_or_compute(|| async {
                    runs.add();
                    vec![1u32, 2, 3]
                })
                .await;
            assert_eq!(value, vec![1, 2, 3], "{name}");
        }
        assert_eq!(runs.get(), 1, "{name}");
        // Other arguments, another entry.
        cache
            .entry("total", &(8u64, "EUR"))
            .get_or_compute(|| async {
                runs.add();
                vec![0u32]
            })
            .await;
        assert_eq!(runs.get(), 2, "{name}");
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.computations), (2, 2), "{name}");
        assert!(cache.function_stats().contains_key("@total"), "{name}");
    }
}

#[tokio::test]
async fn tags_invalidate_entries() {
    for cache in backends("entry-tags") {
        let name = cache.backend_name();
        let runs = Runs::default();
        let product = |id: u64| {
            let (cache, runs) = (cache.clone(), runs.clone());
            async move {
                cache
                    .entry("product", &id)
                    .tags(["products".to_owned(), format!("product:{id}")])
                    .get_or_compute(|| async move {
                        runs.add();
                        format!("product {id}")
                    })
                    .await
            }
        };
        product(1).await;
        product(2).await;
        product(1).await;
        assert_eq!(runs.get(), 2, "{name}");
        cache.invalidate_tag("product:1").await.unwrap();
        product(1).await;
        product(2).await;
        assert_eq!(runs.get(), 3, "{name}: only product 1 is computed again");
        cache.invalidate_tag("products").await.unwrap();
        product(1).await;
        product(2).await;
        assert_eq!(runs.get(), 5, "{name}");
    }
}

#[tokio::test]
async fn set_then_get_and_remove() {
    for cache in backends("entry-set") {
        let name = cache.backend_name();
        // An entry is read and written with the same tags (as a function's
        // calls render the same tags for the same arguments).
        let entry = || cache.entry("greeting", &"fr").tags(["greetings"]);
        assert_eq!(entry().get::<String>().await.unwrap(), None, "{name}");
        assert!(entry().set("bonjour").await, "{name}");
        assert_eq!(
            entry().get::<String>().await.unwrap().as_deref(),
            Some("bonjour"),
            "{name}"
        );
        // Read with other tags, it is a miss.
        assert_eq!(
            cache
                .entry("greeting", &"fr")
                .get::<String>()
                .await
                .unwrap(),
            None,
            "{name}"
        );
        // A computation finds the stored value.
        let runs = Runs::default();
        let got = entry()
            .get_or_compute(|| async {
                runs.add();
                "computed".to_owned()
            })
            .await;
        assert_eq!((got.as_str(), runs.get()), ("bonjour", 0), "{name}");
        // `set` replaces a current value.
        assert!(entry().set("salut").await, "{name}");
        assert_eq!(
            entry().get::<String>().await.unwrap().as_deref(),
            Some("salut"),
            "{name}"
        );
        entry().remove().await.unwrap();
        assert_eq!(entry().get::<String>().await.unwrap(), None, "{name}");
        // A value set with a tag goes with the tag.
        assert!(entry().set("coucou").await, "{name}");
        cache.invalidate_tag("greetings").await.unwrap();
        assert_eq!(entry().get::<String>().await.unwrap(), None, "{name}");
        // A value of another type reads as a miss, not an error.
        assert!(entry().set(&42u32).await, "{name}");
        assert_eq!(entry().get::<Vec<String>>().await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn an_err_or_a_none_is_not_cached() {
    for cache in backends("entry-err") {
        let name = cache.backend_name();
        let runs = Runs::default();
        for _ in 0..2 {
            let r: Result<u32, String> = cache
                .entry("rate", &"EUR")
                .try_get_or_compute(|| async {
                    runs.add();
                    Err("down".to_owned())
                })
                .await;
            assert_eq!(r, Err("down".to_owned()), "{name}");
        }
        assert_eq!(runs.get(), 2, "{name}: an `Err` is never cached");
        for _ in 0..2 {
            let r: Result<u32, String> = cache
                .entry("rate", &"EUR")
                .try_get_or_compute(|| async {
                    runs.add();
                    Ok(108)
                })
                .await;
            assert_eq!(r, Ok(108), "{name}");
        }
        assert_eq!(runs.get(), 3, "{name}: an `Ok` is");
        for _ in 0..2 {
            let r: Option<u32> = cache
                .entry("user", &404u64)
                .optionally_get_or_compute(|| async {
                    runs.add();
                    None
                })
                .await;
            assert_eq!(r, None, "{name}");
        }
        assert_eq!(runs.get(), 5, "{name}: a `None` is not cached");
    }
}

/// Concurrent callers of one entry share one computation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_computation() {
    for cache in backends("entry-flight") {
        let name = cache.backend_name();
        let runs = Runs::default();
        let (release, gate) = tokio::sync::watch::channel(false);
        let callers: Vec<_> = (0..16)
            .map(|_| {
                let (cache, runs, mut gate) = (cache.clone(), runs.clone(), gate.clone());
                tokio::spawn(async move {
                    cache
                        .entry("slow", &1u8)
                        .get_or_compute(|| async move {
                            runs.add();
                            let _ = gate.wait_for(|open| *open).await;
                            99u32
                        })
                        .await
                })
            })
            .collect();
        // The computation waits until the first caller runs it.
        no_hang(10, "the first computation", async {
            while runs.get() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        release.send(true).unwrap();
        for caller in callers {
            assert_eq!(no_hang(10, "a caller", caller).await.unwrap(), 99);
        }
        assert_eq!(runs.get(), 1, "{name}");
    }
}

/// An invalidation of the entry's tag after its versions were read (here,
/// while the value is computed) leaves the value stored then unserved.
#[tokio::test]
async fn an_invalidation_during_the_computation_leaves_the_value_unserved() {
    for cache in backends("entry-race") {
        let name = cache.backend_name();
        let runs = Runs::default();
        let stale = cache
            .entry("listing", &"books")
            .tags(["books"])
            .get_or_compute(|| async {
                runs.add();
                // The database is read, then written and the tag
                // invalidated, before the value is stored.
                let read = "old".to_owned();
                cache.invalidate_tag("books").await.unwrap();
                read
            })
            .await;
        assert_eq!(stale, "old", "{name}: the caller gets its value");
        assert_eq!(
            cache
                .entry("listing", &"books")
                .tags(["books"])
                .get::<String>()
                .await
                .unwrap(),
            None,
            "{name}: the value stored with the old version is not served"
        );
        let fresh = cache
            .entry("listing", &"books")
            .tags(["books"])
            .get_or_compute(|| async {
                runs.add();
                "new".to_owned()
            })
            .await;
        assert_eq!((fresh.as_str(), runs.get()), ("new", 2), "{name}");
    }
}

/// An entry's key starts with `@` and its name, a function's with its
/// path: `entry("square", ..)` never reads or writes `square`'s entries.
#[tokio::test]
async fn an_entry_and_a_function_of_the_same_name_do_not_share_keys() {
    #[cached(cache = cache, skip(cache), ttl = 60)]
    async fn square(cache: Cache, n: u32) -> u32 {
        let _ = cache;
        n * n
    }
    for cache in backends("entry-names") {
        let name = cache.backend_name();
        assert!(cache.entry("square", &(3u32,)).set(&0u32).await, "{name}");
        assert!(cache.entry("square", &3u32).set(&0u32).await, "{name}");
        assert_eq!(square(cache.clone(), 3).await, 9, "{name}");
        assert_eq!(
            cache.entry("square", &3u32).get::<u32>().await.unwrap(),
            Some(0),
            "{name}"
        );
    }
}

/// Redis down or black-holed: `get_or_compute` computes and returns the
/// value, `get` is a miss, `set` stores nothing; the failures are counted.
#[tokio::test]
async fn fail_open_when_redis_is_down_or_black_holed() {
    let mut server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    for url in [proxy.url(), server.url()] {
        let cache = Cache::builder()
            .redis(&url)
            .namespace(unique_namespace("entry-fail-open"))
            .op_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        // Up: stored.
        assert!(cache.entry("n", &1u8).set(&1u32).await);
        if url == proxy.url() {
            proxy.black_hole();
        } else {
            server.kill();
        }
        let runs = Runs::default();
        for _ in 0..2 {
            let value = no_hang(
                10,
                "get_or_compute on a failing Redis",
                cache.entry("n", &2u8).get_or_compute(|| async {
                    runs.add();
                    7u32
                }),
            )
            .await;
            assert_eq!(value, 7);
        }
        assert_eq!(runs.get(), 2, "{url}: computed each time");
        assert_eq!(
            no_hang(10, "get", cache.entry("n", &1u8).get::<u32>())
                .await
                .unwrap(),
            None,
            "{url}: a read is a miss"
        );
        assert!(
            !no_hang(10, "set", cache.entry("n", &1u8).set(&2u32)).await,
            "{url}: nothing stored"
        );
        assert!(cache.entry("n", &1u8).remove().await.is_err(), "{url}");
        assert!(cache.stats().errors >= 4, "{:?}", cache.stats());
    }
}

/// With a local tier, a hit is served in process, and a `set` in another
/// process replaces it there.
#[tokio::test]
async fn the_local_tier_serves_entries_and_a_set_replaces_them() {
    let server = RedisServer::start();
    let ns = unique_namespace("entry-local");
    let process = || {
        Cache::builder()
            .redis(server.url())
            .namespace(&ns)
            .local_cache(1 << 20)
            .build()
            .unwrap()
    };
    let (a, b) = (process(), process());
    for cache in [&a, &b] {
        no_hang(10, "the backplane", async {
            while !cache.local_ready() {
                let _ = cache.entry("warm", &0u8).get::<u8>().await;
                cache
                    .entry("warm", &0u8)
                    .get_or_compute(|| async { 0u8 })
                    .await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
    let read = |cache: &Cache| {
        let cache = cache.clone();
        async move {
            cache
                .entry("price", &5u64)
                .get_or_compute(|| async { 500u64 })
                .await
        }
    };
    assert_eq!(read(&a).await, 500);
    assert_eq!(read(&a).await, 500);
    let local = a.stats().local_hits;
    assert_eq!(read(&a).await, 500);
    assert_eq!(a.stats().local_hits, local + 1, "served in process");
    assert!(b.entry("price", &5u64).set(&600u64).await);
    no_hang(10, "the replacement to reach the other process", async {
        while read(&a).await != 600 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

struct Shop {
    cache: Cache,
    runs: Runs,
}

impl Shop {
    #[cached(cache = self.cache, ttl = 60, tags = ["product:{id}"])]
    async fn product(&self, id: u64) -> Result<String, String> {
        self.runs.add();
        Ok(format!("product {id} from the database"))
    }

    #[cached(cache = self.cache, ttl = 60, unless = Vec::is_empty)]
    async fn listing(&self, category: String) -> Vec<u64> {
        self.runs.add();
        vec![category.len() as u64]
    }

    #[cached(cache = cache, ttl = 60, skip(cache))]
    async fn associated(cache: &Cache, id: u64) -> Option<u64> {
        let _ = cache;
        Some(id)
    }
}

#[tokio::test]
async fn a_primed_value_is_served_without_a_computation() {
    for cache in backends("entry-prime") {
        let name = cache.backend_name();
        let shop = Shop {
            cache: cache.clone(),
            runs: Runs::default(),
        };
        assert!(shop.product_prime(1, Ok("primed".into())).await, "{name}");
        assert_eq!(shop.product(1).await.unwrap(), "primed", "{name}");
        assert_eq!(shop.runs.get(), 0, "{name}");
        // An `Err` is not stored, as from a computation.
        assert!(!shop.product_prime(2, Err("no".into())).await, "{name}");
        assert_eq!(
            shop.product(2).await.unwrap(),
            "product 2 from the database",
            "{name}"
        );
        assert_eq!(shop.runs.get(), 1, "{name}");
        // `unless` applies: an empty listing is not stored.
        assert!(!shop.listing_prime("toys".into(), vec![]).await, "{name}");
        assert!(shop.listing_prime("books".into(), vec![7]).await, "{name}");
        assert_eq!(shop.listing("books".into()).await, vec![7], "{name}");
        assert_eq!(shop.listing("toys".into()).await, vec![4], "{name}");
        assert_eq!(shop.runs.get(), 2, "{name}");
        // An associated function, its cache an argument.
        assert!(Shop::associated_prime(&cache, 3, Some(30)).await, "{name}");
        assert_eq!(Shop::associated(&cache, 3).await, Some(30), "{name}");
        // Priming replaces a current value.
        assert!(shop.product_prime(1, Ok("again".into())).await, "{name}");
        assert_eq!(shop.product(1).await.unwrap(), "again", "{name}");
        assert_eq!(shop.runs.get(), 2, "{name}");
    }
}

#[tokio::test]
async fn a_primed_value_goes_with_its_tag() {
    for cache in backends("entry-prime-tag") {
        let name = cache.backend_name();
        let shop = Shop {
            cache: cache.clone(),
            runs: Runs::default(),
        };
        assert!(shop.product_prime(9, Ok("primed".into())).await, "{name}");
        cache.invalidate_tag("product:9").await.unwrap();
        assert_eq!(
            shop.product(9).await.unwrap(),
            "product 9 from the database",
            "{name}"
        );
        assert_eq!(shop.runs.get(), 1, "{name}");
        // And with the call's own invalidation.
        assert!(shop.product_prime(9, Ok("primed".into())).await, "{name}");
        shop.product_invalidate(&9).await.unwrap();
        assert_eq!(
            shop.product(9).await.unwrap(),
            "product 9 from the database",
            "{name}"
        );
        assert_eq!(shop.runs.get(), 2, "{name}");
    }
}
