//! One process of `measure steady`: 16 tasks read one hot key (TTL 2 s,
//! body 200 ms) every 10 ms for `SECONDS`, with `MODE` = `plain` (stampede
//! protection only), `grace` (`grace = "1h"`) or `ahead`
//! (`refresh_ahead = true`). Each body run is counted in Redis under
//! `{NAMESPACE}:runs`. Prints one line: `lat_us=<t1>,<t2>,…`, the latency of
//! every call in microseconds.
//!
//! usage: steady_worker REDIS_URL NAMESPACE MODE SECONDS

use std::time::{Duration, Instant};

use cache_runtime::{Cache, cached};

async fn body(counter: &redis::Client, namespace: &str) -> u64 {
    let mut conn = counter
        .get_multiplexed_async_connection()
        .await
        .expect("counter");
    let _: u64 = redis::cmd("INCR")
        .arg(format!("{namespace}:runs"))
        .query_async(&mut conn)
        .await
        .expect("INCR");
    tokio::time::sleep(Duration::from_millis(200)).await;
    42
}

#[cached(cache = cache, skip(cache, counter, namespace), ttl = 2)]
async fn plain(cache: Cache, counter: redis::Client, namespace: String, id: u64) -> u64 {
    body(&counter, &namespace).await + id
}

#[cached(cache = cache, skip(cache, counter, namespace), ttl = 2, grace = "1h")]
async fn graced(cache: Cache, counter: redis::Client, namespace: String, id: u64) -> u64 {
    body(&counter, &namespace).await + id
}

#[cached(cache = cache, skip(cache, counter, namespace), ttl = 2, refresh_ahead = true)]
async fn ahead(cache: Cache, counter: redis::Client, namespace: String, id: u64) -> u64 {
    body(&counter, &namespace).await + id
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: steady_worker REDIS_URL NAMESPACE MODE SECONDS");
        std::process::exit(2);
    }
    let (url, namespace, mode) = (args[0].clone(), args[1].clone(), args[2].clone());
    let seconds: u64 = args[3].parse().expect("SECONDS");
    let cache = Cache::builder()
        .op_timeout(cache_tests::TEST_OP_TIMEOUT)
        .redis(url.as_str())
        .namespace(namespace.as_str())
        .build()
        .expect("cache");
    let counter = redis::Client::open(url.as_str()).expect("url");
    // The first fill (a cold key) is not what is measured: one call
    // warms the key before the clock starts.
    let _ = plain(cache.clone(), counter.clone(), namespace.clone(), 0).await;
    match mode.as_str() {
        "grace" => graced(cache.clone(), counter.clone(), namespace.clone(), 0).await,
        "ahead" => ahead(cache.clone(), counter.clone(), namespace.clone(), 0).await,
        _ => 0,
    };
    let until = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (cache, counter, namespace, mode) = (
                cache.clone(),
                counter.clone(),
                namespace.clone(),
                mode.clone(),
            );
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < until {
                    let (c, n) = (cache.clone(), namespace.clone());
                    let start = Instant::now();
                    let v = match mode.as_str() {
                        "plain" => plain(c, counter.clone(), n, 0).await,
                        "grace" => graced(c, counter.clone(), n, 0).await,
                        "ahead" => ahead(c, counter.clone(), n, 0).await,
                        other => panic!("unknown mode {other}"),
                    };
                    assert_eq!(v, 42);
                    lat.push(start.elapsed().as_micros().to_string());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    println!("lat_us={}", all.join(","));
}
