//! What a cache tells about itself: counters per function, beside the
//! cache-wide ones.

use std::sync::atomic::{AtomicU64, Ordering};

use cache_runtime::{Cache, cached};
use cache_tests::backends;

struct Shop {
    cache: Cache,
    runs: AtomicU64,
}

impl Shop {
    #[cached(cache = self.cache, ttl = 60)]
    async fn product(&self, id: u32) -> u32 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        id
    }

    #[cached(cache = self.cache, ttl = 60)]
    async fn listing(&self, page: u32) -> Result<Vec<u32>, String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if page == 0 {
            return Err("no page 0".into());
        }
        Ok(vec![page])
    }
}

#[tokio::test]
async fn each_function_has_its_own_counters_in_each_cache() {
    for cache in backends("observe") {
        let name = cache.backend_name();
        let shop = Shop {
            cache: cache.clone(),
            runs: AtomicU64::new(0),
        };
        // Another cache, same functions: its counters are its own.
        let other = Shop {
            cache: Cache::builder().memory().build().unwrap(),
            runs: AtomicU64::new(0),
        };
        for _ in 0..3 {
            shop.product(1).await;
        }
        shop.listing(1).await.unwrap();
        shop.listing(1).await.unwrap();
        assert!(shop.listing(0).await.is_err());
        other.product(1).await;

        let by_function = cache.function_stats();
        let get = |suffix: &str| {
            by_function
                .iter()
                .find(|(path, _)| path.ends_with(suffix))
                .map(|(_, s)| *s)
                .unwrap_or_else(|| panic!("{name}: no {suffix} in {by_function:?}"))
        };
        let (product, listing) = (get("Shop::product"), get("Shop::listing"));
        assert_eq!(
            (
                product.hits,
                product.misses,
                product.computations,
                product.stores
            ),
            (2, 1, 1, 1),
            "{name}: {product:?}"
        );
        assert_eq!(
            (
                listing.hits,
                listing.misses,
                listing.computations,
                listing.stores
            ),
            (1, 2, 2, 1),
            "{name}: {listing:?}"
        );
        // The cache-wide counters are the sums.
        let all = cache.stats();
        assert_eq!(all.hits, product.hits + listing.hits, "{name}");
        assert_eq!(all.misses, product.misses + listing.misses, "{name}");
        let other_product = *other.cache.function_stats().values().next().unwrap();
        assert_eq!((other_product.misses, other_product.hits), (1, 0), "{name}");
    }
}
