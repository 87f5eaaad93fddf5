//! One process of the multi-process stampede test: `CALLERS` concurrent
//! calls of `Probe::slow(KEY)` on a cold key, each body run counted in
//! Redis under `computations:{KEY}`. Prints one line:
//! `runs=<n> ok=<n> done_us=<t1>,<t2>,…`: the wall-clock time (µs since
//! the Unix epoch) at which each caller got its value.
//!
//! usage: stampede_worker REDIS_URL NAMESPACE KEY CALLERS BODY_MS [nolock]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use cache_runtime::Cache;
use cache_tests::fixtures::Probe;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        eprintln!("usage: stampede_worker REDIS_URL NAMESPACE KEY CALLERS BODY_MS [nolock]");
        std::process::exit(2);
    }
    let (url, namespace, key) = (&args[0], &args[1], &args[2]);
    let callers: usize = args[3].parse().expect("CALLERS");
    let body_ms: u64 = args[4].parse().expect("BODY_MS");
    let lock = args.get(5).map(String::as_str) != Some("nolock");
    let cache = Cache::builder()
        .op_timeout(cache_tests::TEST_OP_TIMEOUT)
        .redis(url.as_str())
        .namespace(namespace.as_str())
        .build()
        .expect("cache");
    let counter = redis::Client::open(url.as_str()).expect("url");
    let probe = Arc::new(Probe::new(
        cache.clone(),
        &format!("pid{}", std::process::id()),
    ));
    let mut tasks = Vec::with_capacity(callers);
    for _ in 0..callers {
        let probe = probe.clone();
        let key = key.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let v = if lock {
                probe.slow(key, Some(counter), body_ms).await
            } else {
                probe.slow_unlocked(key, Some(counter), body_ms).await
            };
            (v, SystemTime::now())
        }));
    }
    let mut done = Vec::with_capacity(callers);
    for t in tasks {
        done.push(t.await.expect("caller panicked").1);
    }
    let micros: Vec<String> = done
        .iter()
        .map(|t| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros())
                .to_string()
        })
        .collect();
    println!(
        "runs={} ok={} done_us={}",
        probe.runs.load(Ordering::SeqCst),
        done.len(),
        micros.join(",")
    );
}
