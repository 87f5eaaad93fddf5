//! The other process of the sharded backplane's tests
//! (`tests/tests/sharded_backplane.rs`): a cache on a Redis Cluster with a
//! local tier (kept up to an hour: only an invalidation's message makes
//! it drop a value) reads `price(id)` for ids `0..IDS`, spread over every
//! shard, whenever a line `read` comes on its standard input, and answers
//! with one line: `versions=<v0>,<v1>,... local_hits=<n> ready=<0|1>`,
//! the database version each id's value was made from.
//!
//! usage: sharded_worker CACHE_URLS DB_URL NAMESPACE (`CACHE_URLS`
//! comma-separated)

use std::io::BufRead;
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::versioned_reads;

/// The ids read: enough that every shard holds some entries.
const IDS: u64 = 12;

#[cached(cache = cache, skip(cache, db, namespace), ttl = 3600, tags = ["prices"])]
async fn price(cache: Cache, db: redis::Client, namespace: String, id: u64) -> Result<u64, String> {
    Ok(id * 1_000_000 + versioned_reads::db_version(&db, &namespace).await?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: sharded_worker CACHE_URLS DB_URL NAMESPACE";
    let (Some(urls), Some(db), Some(namespace)) = (args.next(), args.next(), args.next()) else {
        panic!("{usage}");
    };
    let cache = Cache::builder()
        .op_timeout(cache_tests::TEST_OP_TIMEOUT)
        .redis_cluster(urls.split(','))
        .namespace(namespace.as_str())
        .local_cache(1 << 20)
        .local_max_age(Duration::from_secs(3600))
        .build()
        .expect("cache");
    let db = redis::Client::open(db.as_str()).expect("DB_URL");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        if line.expect("stdin").trim() != "read" {
            continue;
        }
        let mut versions = Vec::new();
        for id in 0..IDS {
            let v = price(cache.clone(), db.clone(), namespace.clone(), id).await;
            versions.push(v.map_or_else(|e| format!("error:{e}"), |v| (v % 1_000_000).to_string()));
        }
        println!(
            "versions={} local_hits={} ready={}",
            versions.join(","),
            cache.stats().local_hits,
            u8::from(cache.local_ready())
        );
    }
}
