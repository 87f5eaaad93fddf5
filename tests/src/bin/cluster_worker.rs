//! One process of the cluster tests under topology changes
//! (`tests/tests/cluster_topology.rs`) and of the fleet run (`measure
//! fleet`): `TASKS` tasks call `price(id)` (TTL 5 s, tag `prices`, ids
//! `0..IDS`, on a Redis Cluster) until the test sets `{namespace}:stop`
//! on the database server, 20 calls per check against the last
//! invalidated version (see `cache_tests::versioned_reads`).
//!
//! Every 100 ms it writes `{namespace}:served:{INDEX}`: for each id, the
//! calls that the cache answered without running the body (hits, and
//! waits for another process's fill), comma-separated; the test reads
//! them to see caching resume on every shard. At the end it prints
//! `calls=<n> stale=<n> failed=<n> computed=<n> hits=<n> skipped=<n>
//! p99_us=<n>`.
//!
//! usage: cluster_worker CACHE_URLS DB_URL NAMESPACE INDEX TASKS
//! (`CACHE_URLS` comma-separated)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, cached};
use cache_tests::versioned_reads;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

/// The ids called: enough that every shard holds some entries.
const IDS: u64 = 24;

/// The body's runs, by id.
static COMPUTED: [AtomicU64; IDS as usize] = [const { AtomicU64::new(0) }; IDS as usize];

#[cached(cache = cache, skip(cache, db, namespace), ttl = 5, tags = ["prices"])]
async fn price(
    cache: Cache,
    db: MultiplexedConnection,
    namespace: String,
    id: u64,
) -> Result<u64, String> {
    COMPUTED[id as usize].fetch_add(1, Ordering::SeqCst);
    let mut db = db;
    let version: u64 = redis::cmd("GET")
        .arg(format!("{namespace}:db"))
        .query_async(&mut db)
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(versioned_reads::rand_below(20))).await;
    Ok(id * 1_000_000 + version)
}

/// A connection to the database server that waits for its answers however
/// long a loaded machine takes (the default gives up after 500 ms: the
/// database failing, which is not what is measured).
async fn database(url: &str) -> MultiplexedConnection {
    let config = AsyncConnectionConfig::new().set_response_timeout(None);
    redis::Client::open(url)
        .expect("DB_URL")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("the database")
}

/// Latencies in buckets of 2^(n/4) µs, for a p99 without keeping samples.
struct Histogram([AtomicU64; 128]);

impl Histogram {
    fn record(&self, d: Duration) {
        let us = d.as_micros().max(1) as f64;
        let b = ((us.log2() * 4.0) as usize).min(127);
        self.0[b].fetch_add(1, Ordering::Relaxed);
    }

    fn p99_us(&self) -> u64 {
        let counts: Vec<u64> = self.0.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let mut seen = 0;
        for (b, n) in counts.iter().enumerate() {
            seen += n;
            if seen * 100 >= total * 99 {
                return 2f64.powf((b + 1) as f64 / 4.0) as u64;
            }
        }
        0
    }
}

/// The op timeout: `CLUSTER_OP_TIMEOUT_MS`, else the library's default
/// (100 ms), as a user would run it.
fn op_timeout() -> Duration {
    std::env::var("CLUSTER_OP_TIMEOUT_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_millis(100), Duration::from_millis)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        eprintln!("usage: cluster_worker CACHE_URLS DB_URL NAMESPACE INDEX TASKS");
        std::process::exit(2);
    }
    let (urls, db_url, namespace) = (&args[0], &args[1], args[2].clone());
    let index: usize = args[3].parse().expect("INDEX");
    let tasks: usize = args[4].parse().expect("TASKS");
    let cache = Cache::builder()
        .op_timeout(op_timeout())
        .redis_cluster(urls.split(','))
        .namespace(namespace.as_str())
        .build()
        .expect("cache");
    let db = database(db_url).await;
    let calls_by_id: Arc<Vec<AtomicU64>> = Arc::new((0..IDS).map(|_| AtomicU64::new(0)).collect());
    let failed = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Histogram([const { AtomicU64::new(0) }; 128]));
    let hard_stop = Instant::now() + Duration::from_secs(300);
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (cache, db, namespace) = (cache.clone(), db.clone(), namespace.clone());
            let (calls_by_id, failed, latency) =
                (calls_by_id.clone(), failed.clone(), latency.clone());
            tokio::spawn(async move {
                let mut conn = db.clone();
                let (mut calls, mut stale) = (0u64, 0u64);
                loop {
                    let (invalidated, stop): (Option<u64>, Option<String>) = redis::pipe()
                        .get(format!("{namespace}:invalidated"))
                        .get(format!("{namespace}:stop"))
                        .query_async(&mut conn)
                        .await
                        .expect("the database");
                    if stop.is_some() || Instant::now() > hard_stop {
                        return (calls, stale);
                    }
                    let invalidated = invalidated.unwrap_or(0);
                    for _ in 0..20 {
                        let id = versioned_reads::rand_below(IDS);
                        let started = Instant::now();
                        let result = price(cache.clone(), db.clone(), namespace.clone(), id).await;
                        latency.record(started.elapsed());
                        calls += 1;
                        calls_by_id[id as usize].fetch_add(1, Ordering::SeqCst);
                        match result {
                            Ok(v) if v / 1_000_000 != id => {
                                failed.fetch_add(1, Ordering::SeqCst);
                                eprintln!("price({id}) returned {v}");
                            }
                            Ok(v) if v % 1_000_000 < invalidated => {
                                stale += 1;
                                eprintln!(
                                    "served version {} after {invalidated} was invalidated",
                                    v % 1_000_000
                                );
                            }
                            Ok(_) => {}
                            Err(e) => {
                                failed.fetch_add(1, Ordering::SeqCst);
                                eprintln!("price({id}) failed: {e}");
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(versioned_reads::rand_below(3))).await;
                }
            })
        })
        .collect();
    // The calls served without the body, by id, for the test to watch.
    let reporter = {
        let (db, namespace, calls_by_id) = (db.clone(), namespace.clone(), calls_by_id.clone());
        tokio::spawn(async move {
            let mut conn = db.clone();
            loop {
                let served: Vec<String> = (0..IDS as usize)
                    .map(|id| {
                        let calls = calls_by_id[id].load(Ordering::SeqCst);
                        let computed = COMPUTED[id].load(Ordering::SeqCst);
                        calls.saturating_sub(computed).to_string()
                    })
                    .collect();
                let _: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(format!("{namespace}:served:{index}"))
                    .arg(served.join(","))
                    .query_async(&mut conn)
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let (mut calls, mut stale) = (0, 0);
    for h in handles {
        let (c, s) = h.await.expect("a task");
        calls += c;
        stale += s;
    }
    reporter.abort();
    let computed: u64 = COMPUTED.iter().map(|c| c.load(Ordering::SeqCst)).sum();
    let stats = cache.stats();
    println!(
        "calls={calls} stale={stale} failed={} computed={computed} hits={} skipped={} p99_us={}",
        failed.load(Ordering::SeqCst),
        stats.hits,
        stats.skipped,
        latency.p99_us()
    );
}
