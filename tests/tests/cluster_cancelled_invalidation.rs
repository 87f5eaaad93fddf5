//! On a Redis Cluster an invalidation deletes its version keys, then
//! announces them (two round trips). An invalidation cancelled between the
//! two (its caller's future dropped: a request timeout, a `select!`) has
//! deleted the keys but announced nothing: another process's local tier
//! must not keep serving the value Redis no longer serves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, cached};
use cache_tests::{RedisCluster, no_hang, unique_namespace};

#[derive(Clone, Default)]
struct Db {
    version: Arc<AtomicU64>,
}

#[cached(cache = cache, skip(cache, db), ttl = 3600, tags = ["prices"])]
async fn price(cache: Cache, db: Db, id: u64) -> u64 {
    id * 1000 + db.version.load(Ordering::SeqCst)
}

fn cache(urls: &[String], namespace: &str, local: bool) -> Cache {
    let builder = Cache::builder()
        .redis_cluster(urls.to_vec())
        .namespace(namespace)
        .op_timeout(cache_tests::TEST_OP_TIMEOUT);
    match local {
        true => builder
            .local_cache(1 << 20)
            .local_max_age(Duration::from_secs(3600))
            .build()
            .unwrap(),
        false => builder.build().unwrap(),
    }
}

/// Whether `reader` serves `expected` within `secs` seconds.
async fn serves_within(reader: &Cache, db: &Db, expected: u64, secs: u64) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if price(reader.clone(), db.clone(), 1).await == expected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_cancelled_after_its_deletes_does_not_leave_a_local_tier_stale() {
    let cluster = RedisCluster::start();
    let namespace = unique_namespace("cancelled-inval");
    let urls = cluster.urls();
    let reader = cache(&urls, &namespace, true);
    let writer = cache(&urls, &namespace, false);
    let db = Db::default();
    no_hang(20, "the backplane subscriptions", async {
        while !reader.local_ready() {
            let _ = price(reader.clone(), db.clone(), 1).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut cancelled_after_deletes = 0;
    // Cancelled after more and more polls, so that some land between the
    // deletes and the announcements.
    for (step, polls) in (0..400u64).step_by(4).enumerate() {
        let version = step as u64 + 1;
        assert!(serves_within(&reader, &db, 1000 + version - 1, 10).await);
        // Twice: the second one is served by the local tier.
        let _ = price(reader.clone(), db.clone(), 1).await;
        db.version.store(version, Ordering::SeqCst);
        let finished = {
            let invalidation = writer.invalidate_tag("prices");
            let mut invalidation = std::pin::pin!(invalidation);
            let mut finished = false;
            for _ in 0..polls {
                if futures_util::poll!(invalidation.as_mut()).is_ready() {
                    finished = true;
                    break;
                }
                tokio::task::yield_now().await;
            }
            finished
        };
        // Redis, read without a local tier, serves the new value: the
        // deletes landed.
        if !finished && price(writer.clone(), db.clone(), 1).await == 1000 + version {
            cancelled_after_deletes += 1;
            assert!(
                serves_within(&reader, &db, 1000 + version, 5).await,
                "after {polls} polls: Redis serves version {version}, the reader's local tier \
                 (ready {}) still the one before",
                reader.local_ready()
            );
        }
        writer.invalidate_tag("prices").await.unwrap();
    }
    assert!(
        cancelled_after_deletes > 0,
        "no cancellation fell after the deletes"
    );
}
