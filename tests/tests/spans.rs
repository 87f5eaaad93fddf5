//! The span of each call, alone in its test binary: `tracing` caches
//! whether a callsite is enabled, and a test on another thread without a
//! subscriber could make it cache "never" for this one.

use std::sync::atomic::{AtomicU64, Ordering};

use cache_runtime::{Cache, cached};
use cache_tests::logs::Logs;
use cache_tests::{backends, shared_url, unique_namespace};

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
}

/// One `DEBUG` span per call, named `cached`, with the function and the
/// outcome.
#[tokio::test(flavor = "current_thread")]
async fn each_call_has_a_span_with_its_function_and_outcome() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let local = Cache::builder()
        .redis(shared_url())
        .namespace(unique_namespace("span-local"))
        .local_cache(1 << 20)
        .build()
        .unwrap();
    let mut caches: Vec<(Cache, &str)> = backends("span")
        .into_iter()
        .map(|c| {
            let name = c.backend_name();
            (c, name)
        })
        .collect();
    caches.push((local, "redis with a local tier"));
    for (cache, name) in caches {
        let shop = Shop {
            cache,
            runs: AtomicU64::new(0),
        };
        // The first misses on a new server also load the scripts.
        shop.product(1).await;
        shop.product(2).await;
        let local = name == "redis with a local tier";
        while local && !shop.cache.local_ready() {
            shop.product(2).await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        logs.clear();
        shop.product(7).await;
        shop.product(7).await;
        if local {
            shop.product(7).await;
        }
        let _ = cache_runtime::bypass(shop.product(7)).await;
        let text = logs.text();
        let closes: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("cached{") && l.contains("close"))
            .collect();
        // A miss: read, versions + lease, store; a hit: one read; a local
        // hit and a bypass none. In memory, never one.
        let (outcomes, trips): (&[&str], &[u32]) = match name {
            "redis" => (&["computed", "hit", "bypass"], &[3, 1, 0]),
            "memory" => (&["computed", "hit", "bypass"], &[0, 0, 0]),
            _ => (&["computed", "hit", "local hit", "bypass"], &[3, 1, 0, 0]),
        };
        assert_eq!(closes.len(), outcomes.len(), "{name}: {text}");
        for ((line, outcome), trips) in closes.iter().zip(outcomes).zip(trips) {
            assert!(line.contains("Shop::product"), "{line}");
            assert!(
                line.contains(&format!("outcome=\"{outcome}\"")),
                "{name}: {line}"
            );
            assert!(
                line.contains(&format!("round_trips={trips}")),
                "{name}: {line}"
            );
        }
    }
}
