//! `Entry::set` promises that "the local tiers of every process drop what
//! they held for the entry". A process that holds the entry in its local
//! tier must be told of a `set` whatever the setter's own settings: a
//! setter without a local tier, or a `set` with `local(false)`, still
//! replaces the value in Redis, so the old value must not go on being
//! served from memory (here for up to `local_max_age`, an hour).

use std::time::Duration;

use cache_runtime::Cache;
use cache_tests::{RedisServer, no_hang, unique_namespace};

/// A process with a local tier, ready (its backplane subscribed).
async fn with_local_tier(server: &RedisServer, ns: &str) -> Cache {
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(ns)
        .local_cache(1 << 20)
        .local_max_age(Duration::from_secs(3600))
        .build()
        .unwrap();
    no_hang(10, "the backplane", async {
        while !cache.local_ready() {
            let _ = cache
                .entry("warm", &0u8)
                .get_or_compute(|| async { 0u8 })
                .await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    cache
}

/// `reader` holds 500 in its local tier; `set` stores 600: the reader
/// serves 600 once the replacement reaches it.
async fn check(reader: &Cache, set: impl std::future::Future<Output = bool>) {
    let read = || {
        reader
            .entry("price", &5u64)
            .get_or_compute(|| async { 500u64 })
    };
    assert_eq!(read().await, 500);
    assert_eq!(read().await, 500);
    let local = reader.stats().local_hits;
    assert_eq!(read().await, 500);
    assert_eq!(reader.stats().local_hits, local + 1, "served in process");
    assert!(set.await);
    assert_eq!(
        reader.entry("price", &5u64).get::<u64>().await.unwrap(),
        Some(600),
        "stored in Redis"
    );
    no_hang(10, "the replacement to reach the local tier", async {
        while read().await != 600 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_set_from_a_process_without_a_local_tier_replaces_local_copies() {
    let server = RedisServer::start();
    let ns = unique_namespace("entry-set-local-none");
    let reader = with_local_tier(&server, &ns).await;
    let setter = Cache::builder()
        .redis(server.url())
        .namespace(&ns)
        .build()
        .unwrap();
    check(&reader, setter.entry("price", &5u64).set(&600u64)).await;
}

#[tokio::test]
async fn a_set_with_local_false_replaces_local_copies() {
    let server = RedisServer::start();
    let ns = unique_namespace("entry-set-local-false");
    let reader = with_local_tier(&server, &ns).await;
    check(
        &reader,
        reader.entry("price", &5u64).local(false).set(&600u64),
    )
    .await;
}
