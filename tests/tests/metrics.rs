//! The `metrics` feature: a recorder installed before the first call sees
//! every outcome of every function, by function and outcome, and the
//! durations.

use std::sync::atomic::{AtomicU64, Ordering};

use cache_runtime::{Cache, cached};
use cache_tests::{shared_url, unique_namespace};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

type Entries = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

struct Shop {
    cache: Cache,
    runs: AtomicU64,
}

impl Shop {
    #[cached(cache = self.cache, ttl = 60)]
    async fn product(&self, id: u32) -> u32 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        id
    }

    #[cached(cache = self.cache, ttl = 60)]
    async fn listing(&self, page: u32) -> Result<Vec<u32>, String> {
        if page == 0 {
            return Err("no page 0".into());
        }
        Ok(vec![page])
    }
}

/// The counter `name` with these labels (and `function` ending in
/// `function`), or 0.
fn counter(entries: &Entries, name: &str, function: &str, outcome: Option<&str>) -> u64 {
    entries
        .iter()
        .filter(|(key, _, _, _)| key.key().name() == name)
        .filter(|(key, _, _, _)| {
            let labels: Vec<_> = key.key().labels().collect();
            labels
                .iter()
                .any(|l| l.key() == "function" && l.value().ends_with(function))
                && outcome.is_none_or(|o| {
                    labels
                        .iter()
                        .any(|l| l.key() == "outcome" && l.value() == o)
                })
        })
        .map(|(_, _, _, value)| match value {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

fn histogram_count(entries: &Entries, name: &str) -> usize {
    entries
        .iter()
        .filter(|(key, _, _, _)| key.key().name() == name)
        .map(|(_, _, _, value)| match value {
            DebugValue::Histogram(v) => v.len(),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_is_recorded_by_function() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let shop = std::sync::Arc::new(Shop {
        cache: Cache::builder()
            .redis(shared_url())
            .namespace(unique_namespace("metrics"))
            .build()
            .unwrap(),
        runs: AtomicU64::new(0),
    });
    // product: 1 miss; then 8 concurrent callers of a new key (8 misses, 7
    // of them coalesced on the 8th's computation); then 3 hits.
    shop.product(1).await;
    let concurrent: Vec<_> = (0..8)
        .map(|_| {
            let shop = shop.clone();
            tokio::spawn(async move { shop.product(2).await })
        })
        .collect();
    for c in concurrent {
        c.await.unwrap();
    }
    for _ in 0..3 {
        shop.product(1).await;
    }
    // listing: 1 miss and a hit; 2 errors of the body (misses, not stored).
    shop.listing(1).await.unwrap();
    shop.listing(1).await.unwrap();
    let _ = shop.listing(0).await;
    let _ = shop.listing(0).await;

    // One snapshot: taking one drains the histograms.
    let entries: Entries = snapshotter.snapshot().into_vec();
    let requests =
        |function, outcome| counter(&entries, "cache_requests_total", function, Some(outcome));
    let product_misses = requests("Shop::product", "miss");
    let product_coalesced = requests("Shop::product", "coalesced");
    assert_eq!(requests("Shop::product", "hit"), 3);
    assert_eq!(product_misses, 9, "every call of a cold key missed");
    // 7 got the value computed for the 8th: shared in process
    // (`coalesced`), or, for a caller that read the versions on the other
    // side of the leader's creating them (another flight), read after
    // waiting on the leader's lease (`lease_waits`).
    let product_waits = counter(&entries, "cache_lease_waits_total", "Shop::product", None);
    assert_eq!(
        product_coalesced + product_waits,
        7,
        "and 7 got the value computed for the 8th"
    );
    assert_eq!(shop.runs.load(Ordering::SeqCst), 2, "one run per key");
    assert_eq!(
        product_misses,
        shop.cache.stats().misses - 3,
        "listing has 3"
    );
    assert_eq!(
        counter(&entries, "cache_computations_total", "Shop::product", None),
        shop.runs.load(Ordering::SeqCst)
    );
    assert_eq!(
        counter(&entries, "cache_stores_total", "Shop::product", None),
        2
    );
    assert_eq!(requests("Shop::listing", "hit"), 1);
    assert_eq!(requests("Shop::listing", "miss"), 3);
    assert_eq!(
        counter(&entries, "cache_stores_total", "Shop::listing", None),
        1
    );
    // The per-function stats agree with the metrics.
    let stats = shop.cache.function_stats();
    let listing = stats
        .iter()
        .find(|(p, _)| p.ends_with("Shop::listing"))
        .unwrap()
        .1;
    assert_eq!((listing.hits, listing.misses), (1, 3));
    // Durations: one per body run, one per round trip.
    assert_eq!(
        histogram_count(&entries, "cache_body_duration_seconds") as u64,
        shop.runs.load(Ordering::SeqCst) + 3
    );
    // Round trips are sampled, one in 16.
    let round_trips = shop.cache.stats().round_trips as usize;
    assert!(round_trips >= 16, "{round_trips}");
    assert_eq!(
        histogram_count(&entries, "cache_redis_round_trip_seconds"),
        round_trips.div_ceil(16)
    );
    // No key anywhere in the labels.
    for (key, _, _, _) in &entries {
        for label in key.key().labels() {
            assert!(!label.value().contains("metrics-"), "{label:?}");
        }
    }
}
