//! The span of each call, alone in its test binary: `tracing` caches
//! whether a callsite is enabled, and a test on another thread without a
//! subscriber could make it cache "never" for this one.

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
}

/// Captured log output.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
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
    for cache in backends("span") {
        let name = cache.backend_name();
        let shop = Shop {
            cache,
            runs: AtomicU64::new(0),
        };
        // The first misses on a new server also load the scripts.
        shop.product(1).await;
        shop.product(2).await;
        logs.0.lock().unwrap().clear();
        shop.product(7).await;
        shop.product(7).await;
        let _ = cache_runtime::bypass(shop.product(7)).await;
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let closes: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("cached{") && l.contains("close"))
            .collect();
        assert_eq!(closes.len(), 3, "{name}: {text}");
        // A miss: read, versions + lease, store; a hit: one read; a bypass
        // none. In memory, never one.
        let trips = if name == "redis" {
            [3, 1, 0]
        } else {
            [0, 0, 0]
        };
        for ((line, outcome), trips) in closes.iter().zip(["computed", "hit", "bypass"]).zip(trips)
        {
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
