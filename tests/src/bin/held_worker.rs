//! One process of the cross-process test of held versions: `TASKS` tasks
//! read `price(id)` (TTL 5 s, tag `prices`, `local = false` in a cache with
//! a local tier of 1 MiB: every hit reads Redis, with held versions) for
//! `SECONDS`, 20 calls per check against the last invalidated version
//! (see `cache_tests::versioned_reads`; the test sets it once the
//! invalidation had time to reach every process). Prints `calls=<n>
//! stale=<n> hits=<n>`.
//!
//! usage: held_worker REDIS_URL NAMESPACE TASKS SECONDS

use cache_runtime::{Cache, cached};
use cache_tests::versioned_reads::{self, WorkerArgs};

#[cached(cache = cache, skip(cache, db, namespace), ttl = 5, local = false, tags = ["prices"])]
async fn price(cache: Cache, db: redis::Client, namespace: String, id: u64) -> Result<u64, String> {
    Ok(id * 1_000_000 + versioned_reads::db_version(&db, &namespace).await?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = WorkerArgs::parse("held_worker REDIS_URL NAMESPACE TASKS SECONDS");
    let cache = Cache::builder()
        .op_timeout(cache_tests::TEST_OP_TIMEOUT)
        .redis(args.url.as_str())
        .namespace(args.namespace.as_str())
        .local_cache(1 << 20)
        .build()
        .expect("cache");
    let db = redis::Client::open(args.url.as_str()).expect("url");
    let namespace = args.namespace.clone();
    let reader = cache.clone();
    let (calls, stale) = versioned_reads::read_and_check(&args, 20, 3, move || {
        let (cache, db, namespace) = (reader.clone(), db.clone(), namespace.clone());
        async move { price(cache, db, namespace, 1).await.expect("a read") % 1_000_000 }
    })
    .await;
    println!("calls={calls} stale={stale} hits={}", cache.stats().hits);
}
