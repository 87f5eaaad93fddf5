//! `tags_from`: tags taken from the value (a listing tagged with the ids
//! of the products it shows), invalidated like any tag, race-free: an
//! invalidation of such a tag while the body runs leaves its value
//! unserved. On both backends, on a cluster, across a local tier, and the
//! round trips of a hit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::{RedisCluster, RedisServer, backends, no_hang, redis_cache, unique_namespace};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Item {
    id: u64,
    name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Listing {
    items: Vec<Item>,
}

fn product_tags(listing: &Listing) -> Vec<String> {
    listing
        .items
        .iter()
        .map(|item| format!("product:{}", item.id))
        .collect()
}

/// A catalogue: the products of a category, whose names carry the
/// catalogue's edition (what a write changes).
struct Shop {
    cache: Cache,
    runs: AtomicU64,
    edition: AtomicU64,
    /// While set, a body tells `entered` once it has read, then waits for
    /// `release`.
    gated: AtomicBool,
    entered: Notify,
    release: Notify,
}

impl Shop {
    fn new(cache: Cache) -> Arc<Self> {
        Arc::new(Shop {
            cache,
            runs: AtomicU64::new(0),
            edition: AtomicU64::new(1),
            gated: AtomicBool::new(false),
            entered: Notify::new(),
            release: Notify::new(),
        })
    }

    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }

    fn expected(&self, ids: &[u64]) -> Listing {
        let edition = self.edition.load(Ordering::SeqCst);
        Listing {
            items: ids
                .iter()
                .map(|&id| Item {
                    id,
                    name: format!("p{id}-e{edition}"),
                })
                .collect(),
        }
    }

    #[cached(cache = self.cache, ttl = 600, key = "listing:{category}", tags_from = product_tags)]
    async fn listing(&self, category: String) -> Result<Listing, String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let ids: &[u64] = if category == "books" {
            &[7, 8]
        } else {
            &[7, 9]
        };
        // The query reads before it waits.
        let listing = self.expected(ids);
        if self.gated.load(Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.notified().await;
        }
        Ok(listing)
    }
}

async fn books(shop: &Shop) -> Listing {
    shop.listing("books".into()).await.unwrap()
}

/// A listing tagged by its products is invalidated by a product's tag, and
/// by no other; the counts of computations and stores. `settle`: how long
/// a new version is taken for one created after a call's start (the
/// margin allowed between the clocks of a cluster's nodes).
async fn invalidated_by_a_product(cache: Cache, settle: Duration) {
    let name = cache.backend_name();
    let shop = Shop::new(cache.clone());
    // The first fill creates the products' versions after it started: it
    // cannot tell them from versions re-created by an invalidation during
    // its body, so its value is returned, not stored.
    assert_eq!(books(&shop).await, shop.expected(&[7, 8]));
    assert_eq!((shop.runs(), cache.stats().stores), (1, 0), "{name}");
    assert_eq!(cache.stats().value_tags_changed, 1, "{name}");
    tokio::time::sleep(settle).await;
    assert_eq!(books(&shop).await, shop.expected(&[7, 8]));
    assert_eq!((shop.runs(), cache.stats().stores), (2, 1), "{name}");
    assert_eq!(books(&shop).await, shop.expected(&[7, 8]));
    assert_eq!((shop.runs(), cache.stats().hits), (2, 1), "{name}");

    // Another product's tag: still a hit.
    cache.invalidate_tag("product:9").await.unwrap();
    assert_eq!(books(&shop).await, shop.expected(&[7, 8]));
    assert_eq!((shop.runs(), cache.stats().hits), (2, 2), "{name}");

    // Product 7 changes: the listing that shows it is recomputed.
    shop.edition.fetch_add(1, Ordering::SeqCst);
    cache.invalidate_tag("product:7").await.unwrap();
    assert_eq!(books(&shop).await, shop.expected(&[7, 8]), "{name}");
    assert_eq!(shop.runs(), 3, "{name}");
    tokio::time::sleep(settle).await;
    // Its version was re-created after that call started: not stored.
    assert_eq!(books(&shop).await, shop.expected(&[7, 8]));
    assert_eq!(shop.runs(), 4, "{name}");
    assert_eq!(cache.stats().stores, 2, "{name}");
    assert_eq!(books(&shop).await, shop.expected(&[7, 8]));
    assert_eq!(shop.runs(), 4, "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_is_invalidated_by_the_tag_of_a_product_it_shows() {
    for cache in backends("tags-from") {
        invalidated_by_a_product(cache, Duration::ZERO).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_listing_is_invalidated_by_a_product_tag() {
    let cluster = RedisCluster::start();
    let cache = Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace(unique_namespace("tags-from-cluster"))
        .op_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    // The nodes' clocks may be 1 s apart: a version is new for 1 s more.
    invalidated_by_a_product(cache.clone(), Duration::from_millis(1100)).await;
    assert_eq!(cache.stats().errors, 0);
}

/// The stale-set race of a tag from the value: the body reads, the tag is
/// invalidated, the body returns. Its value is returned to its caller but
/// never served to a later one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_while_the_body_runs_leaves_its_value_unserved() {
    for cache in backends("tags-from-race") {
        let name = cache.backend_name();
        let shop = Shop::new(cache.clone());
        // The products' versions exist, stamped before what follows.
        books(&shop).await;
        books(&shop).await;
        assert_eq!(cache.stats().stores, 1, "{name}");
        let stores = cache.stats().stores;

        shop.gated.store(true, Ordering::SeqCst);
        let running = {
            let shop = shop.clone();
            tokio::spawn(async move { shop.listing("games".into()).await })
        };
        no_hang(10, "the body", shop.entered.notified()).await;
        let read = shop.expected(&[7, 9]);
        shop.edition.fetch_add(1, Ordering::SeqCst);
        cache.invalidate_tag("product:7").await.unwrap();
        shop.gated.store(false, Ordering::SeqCst);
        shop.release.notify_one();
        // Its caller gets what the body read.
        assert_eq!(running.await.unwrap(), Ok(read));
        assert_eq!(cache.stats().stores, stores, "{name}: stored");

        let runs = shop.runs();
        let next = shop.listing("games".into()).await.unwrap();
        assert_eq!(
            next,
            shop.expected(&[7, 9]),
            "{name}: the value read before the invalidation was served"
        );
        assert_eq!(shop.runs(), runs + 1, "{name}");
    }
}

/// Calls until the backplane is confirmed.
async fn ready(cache: &Cache) {
    no_hang(10, "the backplane subscription", async {
        let shop = Shop::new(cache.clone());
        while !cache.local_ready() {
            let _ = shop.listing("warm-up".into()).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_local_tier_drops_a_value_on_its_product_tag() {
    let server = RedisServer::start();
    let namespace = unique_namespace("tags-from-local");
    let reader = Cache::builder()
        .redis(server.url())
        .namespace(namespace.as_str())
        .local_cache(1 << 20)
        .build()
        .unwrap();
    let writer = redis_cache(&server.url(), &namespace);
    ready(&reader).await;
    let shop = Shop::new(reader.clone());
    // Not stored, stored, read from Redis and kept, then local.
    for _ in 0..4 {
        assert_eq!(books(&shop).await, shop.expected(&[7, 8]));
    }
    let local = reader.stats().local_hits;
    assert!(local >= 1, "never served locally");
    let runs = shop.runs();

    shop.edition.fetch_add(1, Ordering::SeqCst);
    writer.invalidate_tag("product:8").await.unwrap();
    no_hang(10, "the invalidation message", async {
        // Until the message lands, the local value may still be served;
        // once it has, the listing is recomputed with the new edition.
        while books(&shop).await != shop.expected(&[7, 8]) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(shop.runs(), runs + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_with_tags_from_the_value_costs_two_round_trips() {
    let server = RedisServer::start();
    let cache = redis_cache(&server.url(), &unique_namespace("tags-from-trips"));
    let shop = Shop::new(cache.clone());
    books(&shop).await;
    books(&shop).await;
    assert_eq!(cache.stats().stores, 1);
    let before = cache.stats();
    for _ in 0..10 {
        assert_eq!(books(&shop).await, shop.expected(&[7, 8]));
    }
    let after = cache.stats();
    assert_eq!(after.hits - before.hits, 10);
    // The entry and the function's versions; then the versions of the
    // tags the entry names, with the server's clock.
    assert_eq!(after.round_trips - before.round_trips, 20);
}
