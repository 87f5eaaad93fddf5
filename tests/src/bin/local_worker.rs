//! One process of the cross-process tests of the local tier: `TASKS` tasks
//! read `price(id)` (TTL 5 s, tag `prices`, a local tier of 1 MiB) for
//! `SECONDS`. The "database" is the Redis key `{NAMESPACE}:db`; the body
//! reads it, then takes 0-20 ms to answer (so fills race invalidations).
//! Before each call a task reads `{NAMESPACE}:invalidated`: the last version
//! whose write was followed by a completed `invalidate_tag("prices")` and
//! the time the test gives the invalidation to reach every process. A call
//! must not return an older version. Prints `calls=<n> stale=<n>
//! local_hits=<n>`.
//!
//! usage: local_worker REDIS_URL NAMESPACE TASKS SECONDS

use std::time::{Duration, Instant};

use cache_runtime::{Cache, cached};

#[cached(cache = cache, skip(cache, db, namespace), ttl = 5, tags = ["prices"])]
async fn price(cache: Cache, db: redis::Client, namespace: String, id: u64) -> Result<u64, String> {
    let mut conn = db
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let version: u64 = redis::cmd("GET")
        .arg(format!("{namespace}:db"))
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(rand_below(20))).await;
    Ok(id * 1_000_000 + version)
}

fn rand_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() % n
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: local_worker REDIS_URL NAMESPACE TASKS SECONDS");
        std::process::exit(2);
    }
    let (url, namespace) = (args[0].clone(), args[1].clone());
    let tasks: usize = args[2].parse().expect("TASKS");
    let seconds: u64 = args[3].parse().expect("SECONDS");
    let cache = Cache::builder()
        .redis(url.as_str())
        .namespace(namespace.as_str())
        .local_cache(1 << 20)
        .build()
        .expect("cache");
    let db = redis::Client::open(url.as_str()).expect("url");
    let until = Instant::now() + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (cache, db, namespace) = (cache.clone(), db.clone(), namespace.clone());
            tokio::spawn(async move {
                let mut conn = db.get_multiplexed_async_connection().await.expect("conn");
                let (mut calls, mut stale) = (0u64, 0u64);
                while Instant::now() < until {
                    let invalidated: u64 = redis::cmd("GET")
                        .arg(format!("{namespace}:invalidated"))
                        .query_async(&mut conn)
                        .await
                        .expect("GET invalidated");
                    // Several calls per check: most of them local hits.
                    for _ in 0..20 {
                        let v = price(cache.clone(), db.clone(), namespace.clone(), 1)
                            .await
                            .expect("a read");
                        calls += 1;
                        if v % 1_000_000 < invalidated {
                            stale += 1;
                            eprintln!(
                                "served version {} after {invalidated} was invalidated",
                                v % 1_000_000
                            );
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(rand_below(3))).await;
                }
                (calls, stale)
            })
        })
        .collect();
    let (mut calls, mut stale) = (0, 0);
    for h in handles {
        let (c, s) = h.await.expect("task");
        calls += c;
        stale += s;
    }
    println!(
        "calls={calls} stale={stale} local_hits={}",
        cache.stats().local_hits
    );
}
