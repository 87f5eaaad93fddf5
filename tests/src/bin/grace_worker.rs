//! One process of the cross-process test that invalidation ends grace:
//! `TASKS` tasks read `price(id)` (TTL 1 s, `grace = "1h"`, tag `prices`)
//! for `SECONDS`, checking each value against the last invalidated version
//! (see `cache_tests::versioned_reads`). Prints `calls=<n> stale=<n>`.
//!
//! usage: grace_worker REDIS_URL NAMESPACE TASKS SECONDS

use cache_runtime::{Cache, cached};
use cache_tests::versioned_reads::{self, WorkerArgs};

#[cached(cache = cache, skip(cache, db, namespace), ttl = 1, grace = "1h", tags = ["prices"])]
async fn price(cache: Cache, db: redis::Client, namespace: String, id: u64) -> Result<u64, String> {
    Ok(id * 1_000_000 + versioned_reads::db_version(&db, &namespace).await?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = WorkerArgs::parse("grace_worker REDIS_URL NAMESPACE TASKS SECONDS");
    let cache = Cache::builder()
        .op_timeout(cache_tests::TEST_OP_TIMEOUT)
        .redis(args.url.as_str())
        .namespace(args.namespace.as_str())
        .build()
        .expect("cache");
    let db = redis::Client::open(args.url.as_str()).expect("url");
    let namespace = args.namespace.clone();
    let (calls, stale) = versioned_reads::read_and_check(&args, 1, 5, move || {
        let (cache, db, namespace) = (cache.clone(), db.clone(), namespace.clone());
        async move { price(cache, db, namespace, 1).await.expect("a read") % 1_000_000 }
    })
    .await;
    println!("calls={calls} stale={stale}");
}
