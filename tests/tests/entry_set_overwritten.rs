//! `Entry::set` (and `<fn>_prime`) store a value the caller has now (the
//! row it just wrote). A computation of the same entry that started
//! before the `set` (in this process, or holding the lease in another)
//! computed from what was there before; when it finishes after the `set`
//! returned, its older value must never be served: the `set` replaced the
//! call's version first, so the older value is stored under a version
//! that no longer matches. It may displace the set value (the next call is
//! then a miss, and computes from the new row), but is never served.

use std::time::Duration;

use cache_runtime::Cache;
use cache_tests::{backends, no_hang, redis_cache, shared_url, unique_namespace};

/// Runs a computation of `("stock", 1)` on `computing` that returns 1 (the
/// value read before the `set`), `set`s 2 on `setter` while it runs, then
/// lets it finish: what the entry serves afterwards.
async fn older_computation_after_set(computing: &Cache, setter: &Cache) -> (Option<u32>, u32) {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let c = computing.clone();
    let computation = tokio::spawn(async move {
        c.entry("stock", &1u64)
            .ttl(Duration::from_secs(60))
            .get_or_compute(|| async move {
                let _ = started_tx.send(());
                let _ = go_rx.await;
                1u32
            })
            .await
    });
    started_rx.await.unwrap();
    assert!(
        setter
            .entry("stock", &1u64)
            .ttl(Duration::from_secs(60))
            .set(&2u32)
            .await
    );
    assert_eq!(
        setter.entry("stock", &1u64).get::<u32>().await.unwrap(),
        Some(2)
    );
    go_tx.send(()).unwrap();
    no_hang(10, "the computation", computation).await.unwrap();
    let read = setter.entry("stock", &1u64).get::<u32>().await.unwrap();
    let served = setter
        .entry("stock", &1u64)
        .get_or_compute(|| async { 0u32 })
        .await;
    (read, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computation_started_before_a_set_does_not_replace_it() {
    for cache in backends("entry-set-overwritten") {
        let name = cache.backend_name();
        let (read, served) = older_computation_after_set(&cache, &cache).await;
        assert_ne!(read, Some(1), "{name}: the older computed value is read");
        assert_ne!(served, 1, "{name}: the older computed value is served");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holder_in_another_process_does_not_replace_a_set() {
    let ns = unique_namespace("entry-set-overwritten-lease");
    let (holder, setter) = (
        redis_cache(&shared_url(), &ns),
        redis_cache(&shared_url(), &ns),
    );
    let (read, served) = older_computation_after_set(&holder, &setter).await;
    assert_ne!(read, Some(1), "the lease holder's older value is read");
    assert_ne!(served, 1, "the lease holder's older value is served");
}
