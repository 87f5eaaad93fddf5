//! `credentials`: a provider that panics. A call must not panic with it:
//! it runs uncached (fail-open, as with a provider that fails), and once
//! the provider answers again the cache works again. Each call runs in a
//! task of its own, so that a panic is seen as the task's result.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::{RedisServer, no_hang, unique_namespace};

struct Api {
    cache: Cache,
    runs: AtomicU64,
}

impl Api {
    #[cached(cache = self.cache, ttl = 600, tags = ["products"])]
    async fn get(&self, id: u64) -> u64 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        id * 10
    }
}

/// Calls `get(4)` in a task of its own; `None` if the call panicked.
async fn call(api: &Arc<Api>) -> Option<u64> {
    let api = api.clone();
    no_hang(10, "a call", tokio::spawn(async move { api.get(4).await }))
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_provider_fails_no_call_and_the_cache_recovers() {
    let server = RedisServer::start();
    let mut admin = server.conn();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "u", "on", ">pw", "~*", "&*", "+@all"])
        .query(&mut admin)
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "off"])
        .query(&mut admin)
        .unwrap();
    let panics = Arc::new(AtomicBool::new(true));
    let p = panics.clone();
    let api = Arc::new(Api {
        cache: Cache::builder()
            .redis(server.url())
            .namespace(unique_namespace("provider-panics"))
            .op_timeout(cache_tests::TEST_OP_TIMEOUT)
            .circuit_breaker(0, Duration::from_secs(1))
            .credentials(move || {
                let panics = p.load(Ordering::SeqCst);
                async move {
                    if panics {
                        panic!("the token client panicked");
                    }
                    Ok(("u".to_owned(), "pw".to_owned()))
                }
            })
            .build()
            .unwrap(),
        runs: AtomicU64::new(0),
    });
    for i in 0..3 {
        assert_eq!(
            call(&api).await,
            Some(40),
            "call {i} while the provider panics"
        );
    }
    assert_eq!(api.runs.load(Ordering::SeqCst), 3, "uncached");
    // The provider answers again: a call stores the value, the next hits.
    panics.store(false, Ordering::SeqCst);
    no_hang(20, "caching after the provider recovered", async {
        while api.cache.stats().hits == 0 {
            assert_eq!(
                call(&api).await,
                Some(40),
                "a call after the provider recovered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_panic_of_the_provider_does_not_break_later_calls() {
    let server = RedisServer::start();
    let asked = Arc::new(AtomicU64::new(0));
    let a = asked.clone();
    let api = Arc::new(Api {
        cache: Cache::builder()
            .redis(server.url())
            .namespace(unique_namespace("provider-panics-once"))
            .op_timeout(cache_tests::TEST_OP_TIMEOUT)
            .circuit_breaker(0, Duration::from_secs(1))
            .credentials(move || {
                let first = a.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        panic!("the token client panicked");
                    }
                    Ok(("default".to_owned(), String::new()))
                }
            })
            .build()
            .unwrap(),
        runs: AtomicU64::new(0),
    });
    // The first call may meet the panic (and must still return the
    // value); the provider answers every later ask.
    let first = call(&api).await;
    let mut failed = 0;
    for _ in 0..20 {
        if call(&api).await != Some(40) {
            failed += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (first, failed),
        (Some(40), 0),
        "the first call, and how many of 20 later calls panicked"
    );
    assert!(api.cache.stats().hits > 0, "{:?}", api.cache.stats());
}
