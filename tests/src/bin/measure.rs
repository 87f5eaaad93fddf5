//! Measurements noted on the issues, each in one run on private servers:
//!
//! - `measure stampede`: 4 processes x 200 concurrent callers on one cold
//!   key whose body takes 200 ms, with stampede protection on and off:
//!   computations, and each caller's latency after the value was first
//!   available anywhere (p50/p99/max).
//! - `measure fail-open`: latency of a cached call when Redis refuses
//!   connections and when it is frozen (SIGSTOP), op timeout 100 ms, with
//!   the circuit breaker off, then on (the default): the calls that open
//!   it, and those after.
//! - `measure hit [contender] [seconds]`: hits on a small value (one
//!   product, ~320 bytes of JSON) by 64 tasks on a 2-worker runtime: calls
//!   per second and this process's CPU per call, for raw `GET` +
//!   `serde_json`, raw `MGET` of the value and two versions + `serde_json`
//!   (what a hit without tags reads), `#[cached]` untagged, with two tags,
//!   and with `codec = "msgpack"`; or only the contender named (`raw`,
//!   `mget4`, `ours`, `tagged`, `msgpack`), for a profiler to watch. The
//!   side-by-side figures are the benchmark's (`BENCHMARKS.md`). With
//!   `MEASURE_RECORDER=prometheus` the metrics are recorded by a
//!   Prometheus recorder (the cost of the `metrics` feature in use).
//!
//! - `measure grace`: 16 tasks read a hot key (TTL 1 s, body 20 ms) for
//!   14 s, the body failing from second 2 to 12, with `grace = "1h"` and
//!   without: errors returned to callers, and latency p50/p99 during the
//!   failure.
//! - `measure steady`: 4 processes x 16 tasks read one hot key (TTL 2 s,
//!   body 200 ms) every 10 ms for 20 s, with stampede protection only,
//!   with `grace` and with `refresh_ahead`: caller latency p50/p99/p99.9/
//!   max, calls slower than 50 ms, and body runs across the fleet (the
//!   warm-up fill of the cold key excluded).
//!
//! - `measure propagation [rounds]`: one process invalidates a tag, another
//!   reads a value carrying it from its local tier in a loop: the time
//!   from `invalidate_tag` returning in the first process to the second's
//!   first call that no longer serves the old value (p50/p99/max), over
//!   `rounds` (default 500).
//!
//! - `measure fleet [seconds]`: 8 `cluster_worker` processes x 16 tasks
//!   read `price(id)` (24 ids, TTL 5 s, tag `prices`) on a 6-node cluster
//!   (3 primaries, 1 replica each) for `seconds` (default 60), while this
//!   process writes the database and invalidates the tag every second; a
//!   third of the way in a primary is killed (its replica takes over), two
//!   thirds in the slots holding keys move to another primary: calls per
//!   second, p99 (the highest of the processes'), failed calls, stale
//!   reads, computations per key per TTL.
//! - `measure local-share`: 10 000 keys read 20 times each (16 tasks,
//!   two tags, local tier on), once with no invalidations and once while
//!   another process invalidates other tags 24 000 times a second: the
//!   share of calls the local tier answered.
//! - `measure batch [rounds]`: 100 ids of which 90 are cached, read by
//!   one `batch` call, by 100 concurrent single-id calls, and by one
//!   uncached query (a body that takes 1 ms, like a database round trip):
//!   Redis round trips, commands and body runs per read, and the median
//!   time of a read over `rounds` (default 30), each round in a fresh
//!   namespace.
//!
//! - `measure compression [rounds]`: LZ4 (`lz4_flex`) against zstd
//!   (levels 1 and 3) on the 5 KB value of the benchmark (50 small
//!   structs) and a 200 KB one (640 products), as JSON: size, ratio and the
//!   median time to compress and to decompress; then, on a private Redis,
//!   each value cached with `compress_above(1024)` and without: the stored
//!   bytes, Redis's `MEMORY USAGE` of the key and the median latency of a
//!   sequential hit over `rounds` (default 2000).
//!
//! Run: `cargo run --release -p cache-tests --bin measure -- stampede`
//! (needs `redis-server` on the PATH).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, cached};
use cache_tests::{RedisServer, free_port, versioned_reads};

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("stampede") => stampede(),
        Some("fail-open") => fail_open(),
        Some("hit") => hit::run(std::env::args().nth(2), std::env::args().nth(3)),
        Some("grace") => grace::run(),
        Some("steady") => steady(),
        Some("fleet") => fleet(std::env::args().nth(2)),
        Some("propagation") => propagation::run(std::env::args().nth(2)),
        Some("batch") => batch::run(std::env::args().nth(2)),
        Some("compression") => compression::run(std::env::args().nth(2)),
        Some("local-share") => local_share::run(),
        Some("local-share-invalidator") => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            local_share::invalidator(&args[0], &args[1]);
        }
        Some("propagation-reader") => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            propagation::reader(&args[0], &args[1]);
        }
        _ => {
            eprintln!(
                "usage: measure stampede|fail-open|grace|steady|fleet [seconds]|propagation [rounds]|local-share|batch [rounds]|hit [raw|mget4|ours|tagged|msgpack|local] [seconds]|compression [rounds]"
            );
            std::process::exit(2);
        }
    }
}

/// `measure fleet`: see the module's doc.
fn fleet(seconds: Option<String>) {
    const PROCESSES: usize = 8;
    const TASKS: usize = 16;
    const IDS: u64 = 24;
    const TTL_S: u64 = 5;
    let seconds: u64 = seconds.map_or(60, |s| s.parse().expect("SECONDS"));
    let worker = std::env::current_exe()
        .unwrap()
        .with_file_name("cluster_worker");
    let mut cluster = cache_tests::RedisCluster::start_replicated();
    let db = RedisServer::start();
    let ns = cache_tests::unique_namespace("fleet");
    let mut conn = db.conn();
    versioned_reads::set(&mut conn, &ns, "db", 1);
    versioned_reads::set(&mut conn, &ns, "invalidated", 0);
    println!(
        "{PROCESSES} processes x {TASKS} tasks, {IDS} ids, TTL {TTL_S} s, {seconds} s on 3 primaries + 3 replicas ({})",
        cache_tests::server_identity(&mut cluster.nodes()[0].conn())
    );
    let urls = cluster.urls().join(",");
    let workers: Vec<_> = (0..PROCESSES)
        .map(|i| {
            Command::new(&worker)
                .args([&urls, &db.url(), &ns, &i.to_string(), &TASKS.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .expect("cannot start cluster_worker (build it: cargo build -p cache-tests --bins)")
        })
        .collect();
    let cache = Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace(ns.as_str())
        .build()
        .expect("cache");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let (mut version, mut invalidations, mut refused) = (1u64, 0u64, 0u64);
    let (mut killed, mut migrated) = (false, false);
    while started.elapsed() < Duration::from_secs(seconds) {
        version += 1;
        versioned_reads::set(&mut conn, &ns, "db", version);
        match runtime.block_on(cache.invalidate_tag("prices")) {
            Ok(()) => {
                versioned_reads::set(&mut conn, &ns, "invalidated", version);
                invalidations += 1;
            }
            Err(_) => refused += 1,
        }
        let at = started.elapsed().as_secs();
        if !killed && at >= seconds / 3 {
            killed = true;
            let primary = cluster.primaries()[0];
            let replica = cluster.replica_of(primary);
            cluster.kill(primary);
            let t = Instant::now();
            cluster.wait_until_primary(replica);
            println!(
                "{at:>3} s: primary killed; replica promoted, cluster ok after {} ms",
                t.elapsed().as_millis()
            );
        }
        if !migrated && at >= 2 * seconds / 3 {
            migrated = true;
            let primaries = cluster.primaries();
            let t = Instant::now();
            let slots = cluster.migrate_busy_slots(primaries[0], primaries[1]);
            println!(
                "{at:>3} s: {} slots holding keys moved key by key in {} ms",
                slots.len(),
                t.elapsed().as_millis()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    versioned_reads::set(&mut conn, &ns, "stop", 1);
    let elapsed = started.elapsed().as_secs_f64();
    let mut sums = [0u64; 6];
    let mut p99_us = 0u64;
    for w in workers {
        let out = w.wait_with_output().unwrap();
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("worker output: {line}"))
        };
        for (sum, name) in sums
            .iter_mut()
            .zip(["calls", "stale", "failed", "computed", "hits", "skipped"])
        {
            *sum += field(name);
        }
        p99_us = p99_us.max(field("p99_us"));
    }
    let [calls, stale, failed, computed, hits, skipped] = sums;
    let windows = (elapsed / TTL_S as f64).max(1.0);
    println!(
        "calls/s {:.0}, p99 {:.1} ms, failed {failed}, stale {stale}, hits {hits}, skipped Redis {skipped}",
        calls as f64 / elapsed,
        p99_us as f64 / 1000.0,
    );
    println!(
        "computations {computed}: {:.1} per key per TTL ({invalidations} invalidations returned, {refused} refused while a shard was down)",
        computed as f64 / IDS as f64 / windows
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn stampede() {
    const PROCESSES: usize = 4;
    const CALLERS: &str = "200";
    const BODY_MS: &str = "200";
    let worker = std::env::current_exe()
        .unwrap()
        .with_file_name("stampede_worker");
    println!("cold key, {PROCESSES} processes x {CALLERS} callers, body {BODY_MS} ms");
    println!(
        "{:<10} {:>13} {:>22} {:>22} {:>22}",
        "locking", "computations", "wait after fill p50", "p99", "max"
    );
    for (label, mode) in [("on", "lock"), ("off", "nolock")] {
        let server = RedisServer::start();
        let workers: Vec<_> = (0..PROCESSES)
            .map(|_| {
                Command::new(&worker)
                    .args([&server.url(), "measure", "cold", CALLERS, BODY_MS, mode])
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("cannot start stampede_worker (build it: cargo build -p cache-tests --bins)")
            })
            .collect();
        let mut done: Vec<u128> = Vec::new();
        for w in workers {
            let out = w.wait_with_output().unwrap();
            let line = String::from_utf8_lossy(&out.stdout).to_string();
            let list = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix("done_us="))
                .expect("worker output");
            done.extend(list.split(',').map(|t| t.parse::<u128>().unwrap()));
        }
        let computations: u64 = redis::cmd("GET")
            .arg("computations:cold")
            .query(&mut server.conn())
            .unwrap();
        let first = *done.iter().min().unwrap();
        let mut waits: Vec<f64> = done.iter().map(|t| (t - first) as f64 / 1000.0).collect();
        waits.sort_by(f64::total_cmp);
        println!(
            "{label:<10} {computations:>13} {:>19.2} ms {:>19.2} ms {:>19.2} ms",
            percentile(&waits, 0.5),
            percentile(&waits, 0.99),
            waits[waits.len() - 1]
        );
    }
}

fn steady() {
    const PROCESSES: usize = 4;
    const SECONDS: &str = "20";
    let worker = std::env::current_exe()
        .unwrap()
        .with_file_name("steady_worker");
    println!(
        "one hot key, TTL 2 s, body 200 ms; {PROCESSES} processes x 16 tasks, a call every 10 ms each, {SECONDS} s"
    );
    println!(
        "{:<22} {:>8} {:>11} {:>11} {:>11} {:>11} {:>15} {:>10}",
        "mode", "calls", "p50", "p99", "p99.9", "max", "calls > 50 ms", "body runs"
    );
    for (label, mode) in [
        ("lock only", "plain"),
        ("grace = \"1h\"", "grace"),
        ("refresh_ahead = true", "ahead"),
    ] {
        let server = RedisServer::start();
        let namespace = format!("steady-{mode}");
        let workers: Vec<_> = (0..PROCESSES)
            .map(|_| {
                Command::new(&worker)
                    .args([&server.url(), &namespace, mode, SECONDS])
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("cannot start steady_worker (build it: cargo build --release -p cache-tests --bins)")
            })
            .collect();
        let mut lat: Vec<f64> = Vec::new();
        for w in workers {
            let out = w.wait_with_output().unwrap();
            let line = String::from_utf8_lossy(&out.stdout).to_string();
            let list = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix("lat_us="))
                .expect("worker output");
            lat.extend(list.split(',').map(|t| t.parse::<f64>().unwrap() / 1000.0));
        }
        let runs: u64 = redis::cmd("GET")
            .arg(format!("{namespace}:runs"))
            .query(&mut server.conn())
            .unwrap();
        lat.sort_by(f64::total_cmp);
        let slow = lat.iter().filter(|l| **l > 50.0).count();
        println!(
            "{label:<22} {:>8} {:>8.2} ms {:>8.2} ms {:>8.2} ms {:>8.2} ms {slow:>15} {runs:>10}",
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            percentile(&lat, 0.999),
            lat[lat.len() - 1]
        );
    }
}

mod grace {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use cache_runtime::{Cache, cached};
    use cache_tests::RedisServer;

    use super::percentile;

    #[derive(Default)]
    struct Db {
        failing: AtomicBool,
        runs: AtomicU64,
    }

    impl Db {
        async fn query(&self) -> Result<u64, String> {
            self.runs.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.failing.load(Ordering::Relaxed) {
                Err("database down".into())
            } else {
                Ok(42)
            }
        }
    }

    #[cached(cache = cache, skip(cache, db), ttl = 1, grace = "1h")]
    async fn with_grace(cache: Cache, db: Arc<Db>, id: u64) -> Result<u64, String> {
        db.query().await.map(|v| v + id)
    }

    #[cached(cache = cache, skip(cache, db), ttl = 1)]
    async fn without_grace(cache: Cache, db: Arc<Db>, id: u64) -> Result<u64, String> {
        db.query().await.map(|v| v + id)
    }

    #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    pub async fn run() {
        println!(
            "one hot key, TTL 1 s, body 20 ms failing from 2 s to 12 s; 16 tasks, a call every 5 ms each, 14 s"
        );
        println!(
            "{:<16} {:>8} {:>16} {:>16} {:>16} {:>10}",
            "", "calls", "errors returned", "p50 in failure", "p99 in failure", "body runs"
        );
        for label in ["grace = \"1h\"", "no grace"] {
            let server = RedisServer::start();
            let cache = Cache::builder().redis(server.url()).build().unwrap();
            let db = Arc::new(Db::default());
            let start = Instant::now();
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let (cache, db) = (cache.clone(), db.clone());
                    tokio::spawn(async move {
                        let (mut calls, mut errors, mut lat) = (0u64, 0u64, Vec::new());
                        while start.elapsed() < Duration::from_secs(14) {
                            let in_failure = (2.0..12.0).contains(&start.elapsed().as_secs_f64());
                            let t = Instant::now();
                            let r = if label == "no grace" {
                                without_grace(cache.clone(), db.clone(), 0).await
                            } else {
                                with_grace(cache.clone(), db.clone(), 0).await
                            };
                            if in_failure {
                                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                            }
                            calls += 1;
                            errors += u64::from(r.is_err());
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        (calls, errors, lat)
                    })
                })
                .collect();
            let switch = tokio::spawn({
                let db = db.clone();
                async move {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    db.failing.store(true, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    db.failing.store(false, Ordering::Relaxed);
                }
            });
            let (mut calls, mut errors, mut lat) = (0, 0, Vec::new());
            for t in tasks {
                let (c, e, l) = t.await.unwrap();
                calls += c;
                errors += e;
                lat.extend(l);
            }
            switch.await.unwrap();
            lat.sort_by(f64::total_cmp);
            println!(
                "{label:<16} {calls:>8} {errors:>16} {:>13.3} ms {:>13.3} ms {:>10}",
                percentile(&lat, 0.5),
                percentile(&lat, 0.99),
                db.runs.load(Ordering::Relaxed)
            );
        }
    }
}

struct Api {
    cache: Cache,
    runs: AtomicU64,
}

impl Api {
    #[cached(cache = self.cache, ttl = 60, tags = ["t"])]
    async fn get(&self, id: u32) -> String {
        self.runs.fetch_add(1, Ordering::Relaxed);
        format!("value {id}")
    }
}

async fn time_calls(api: &Api, n: u32) -> Vec<f64> {
    let mut lat = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t = Instant::now();
        std::hint::black_box(api.get(i).await);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    lat
}

#[tokio::main(flavor = "current_thread")]
async fn fail_open() {
    let op_timeout = Duration::from_millis(100);
    let build = |url: String, breaker: bool| {
        let builder = Cache::builder().redis(url).op_timeout(op_timeout);
        let builder = if breaker {
            builder // the default: 5 failures, open for 1 s
        } else {
            builder.circuit_breaker(0, Duration::from_secs(1))
        };
        Api {
            cache: builder.build().unwrap(),
            runs: AtomicU64::new(0),
        }
    };
    println!("op timeout {op_timeout:?}; latency of one cached call (miss path)");
    println!(
        "{:<44} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "redis", "p50 ms", "p99 ms", "max ms", "errors", "skipped"
    );
    let row = |label: &str, lat: &[f64], api: &Api| {
        let s = api.cache.stats();
        println!(
            "{label:<44} {:>10.3} {:>10.3} {:>10.3} {:>8} {:>8}",
            percentile(lat, 0.5),
            percentile(lat, 0.99),
            lat[lat.len() - 1],
            s.errors,
            s.skipped
        );
    };
    let server = RedisServer::start();
    let up = build(server.url(), true);
    let lat = time_calls(&up, 200).await;
    row("up (miss + store)", &lat, &up);

    let refused = build(format!("redis://127.0.0.1:{}/", free_port()), false);
    let lat = time_calls(&refused, 200).await;
    row("down (connection refused), breaker off", &lat, &refused);

    let frozen = build(server.url(), false);
    frozen.get(0).await; // connect first, then freeze
    server.pause();
    let lat = time_calls(&frozen, 20).await;
    row("frozen (SIGSTOP), breaker off", &lat, &frozen);
    server.resume();

    // The default breaker: after 5 timeouts it opens; the calls after those
    // skip Redis until it has been open 1 s.
    let breaker = build(server.url(), true);
    breaker.get(0).await;
    server.pause();
    let opening = time_calls(&breaker, 5).await;
    row(
        "frozen, breaker on: the 5 calls that open it",
        &opening,
        &breaker,
    );
    let lat = time_calls(&breaker, 500).await;
    row("frozen, breaker on: the 500 calls after", &lat, &breaker);
    server.resume();
}

mod hit {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use cache_tests::fixtures::Product;

    use super::*;

    fn product(id: u64) -> Product {
        Product::sample(id)
    }

    #[cached(ttl = 600)]
    async fn ours(id: u64) -> Product {
        product(id)
    }

    #[cached(ttl = 600, tags = ["items", "item:{id}"])]
    async fn tagged(id: u64) -> Product {
        product(id)
    }

    #[cached(ttl = 600, codec = "msgpack")]
    async fn msgpack(id: u64) -> Product {
        product(id)
    }

    /// `tagged` through a local tier.
    #[cached(ttl = 600, tags = ["items", "item:{id}"], cache = LOCAL.get().unwrap())]
    async fn local(id: u64) -> Product {
        product(id)
    }

    /// `tagged` off the local tier of a cache that has one: every hit
    /// reads Redis, the entry alone once its versions are held.
    #[cached(ttl = 600, tags = ["items", "item:{id}"], local = false, cache = LOCAL.get().unwrap())]
    async fn held(id: u64) -> Product {
        product(id)
    }

    static LOCAL: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();

    /// Keys Redis looked up (`keyspace_hits + keyspace_misses`) and the
    /// microseconds Redis spent in `GET` and `MGET` (`INFO commandstats`).
    fn redis_work(conn: &mut redis::Connection) -> (u64, f64) {
        let info: String = redis::cmd("INFO").arg("all").query(conn).unwrap();
        let field = |name: &str| -> f64 {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let keys = field("keyspace_hits") + field("keyspace_misses");
        let usec: f64 = info
            .lines()
            .filter(|l| l.starts_with("cmdstat_get:") || l.starts_with("cmdstat_mget:"))
            .filter_map(|l| {
                l.split(',')
                    .find_map(|f| f.strip_prefix("usec="))
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .sum();
        (keys as u64, usec)
    }

    /// A value shaped like a tag version: 32 hex digits.
    const VERSION: &str = "0123456789abcdef0123456789abcdef";

    fn cpu() -> Duration {
        // utime + stime of this process, in clock ticks (100 per second).
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10)
    }

    async fn call(who: &str, conn: &redis::aio::MultiplexedConnection) -> usize {
        match who {
            "raw" => {
                let mut conn = conn.clone();
                let bytes: Vec<u8> = redis::cmd("GET")
                    .arg("raw:1")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let p: Product = serde_json::from_slice(&bytes).unwrap();
                p.name.len()
            }
            // The floor of a read that checks versions: the entry and three
            // more keys in one `MGET`, as a hit without tags reads them.
            "mget4" => {
                let mut conn = conn.clone();
                let mut values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                    .arg("raw:1")
                    .arg("raw:v1")
                    .arg("raw:v2")
                    .arg("raw:v3")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let p: Product = serde_json::from_slice(&values.swap_remove(0).unwrap()).unwrap();
                p.name.len()
            }
            "ours" => ours(1).await.name.len(),
            "tagged" => tagged(1).await.name.len(),
            "msgpack" => msgpack(1).await.name.len(),
            "local" => local(1).await.name.len(),
            "held" => held(1).await.name.len(),
            other => panic!("unknown contender {other}"),
        }
    }

    pub fn run(only: Option<String>, seconds: Option<String>) {
        let seconds: f64 = seconds.map_or(2.0, |s| s.parse().unwrap());
        // With `MEASURE_RECORDER=prometheus`, the metrics go to a
        // Prometheus recorder (installed before the first call), as in a
        // service that exports them; without it, to no recorder.
        if std::env::var("MEASURE_RECORDER").as_deref() == Ok("prometheus") {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            metrics::set_global_recorder(recorder).unwrap();
            println!("metrics: a Prometheus recorder");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = RedisServer::start();
        runtime.block_on(async {
            let cache = Cache::builder().redis(server.url()).build().unwrap();
            cache_runtime::set_default(cache.clone());
            let local_cache = Cache::builder()
                .redis(server.url())
                .namespace("local")
                .local_cache(64 << 20)
                .build()
                .unwrap();
            LOCAL.set(local_cache.clone()).unwrap();
            while !local_cache.local_ready() {
                local(0).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let client = redis::Client::open(server.url()).unwrap();
            let conn = client.get_multiplexed_async_connection().await.unwrap();
            let json = serde_json::to_vec(&product(1)).unwrap();
            let _: () = redis::cmd("SET")
                .arg("raw:1")
                .arg(&json)
                .query_async(&mut conn.clone())
                .await
                .unwrap();
            for v in ["raw:v1", "raw:v2", "raw:v3"] {
                let _: () = redis::cmd("SET")
                    .arg(v)
                    .arg(VERSION)
                    .query_async(&mut conn.clone())
                    .await
                    .unwrap();
            }
            println!(
                "value: {} bytes of JSON; 64 tasks, {seconds} s each; future of a call: {} bytes",
                json.len(),
                std::mem::size_of_val(&ours(1))
            );
            let all = ["raw", "mget4", "ours", "tagged", "held", "msgpack", "local"];
            let who: Vec<&str> = match &only {
                Some(one) => vec![
                    all.iter()
                        .find(|w| *w == one)
                        .expect("raw|mget4|ours|tagged|held|msgpack|local"),
                ],
                None => all.to_vec(),
            };
            for w in &who {
                for _ in 0..100 {
                    call(w, &conn).await;
                }
            }
            let hits = cache.stats().hits;
            let mut info = server.conn();
            for w in who {
                let stop = Arc::new(AtomicBool::new(false));
                let work = redis_work(&mut info);
                let (t0, c0) = (Instant::now(), cpu());
                let tasks: Vec<_> = (0..64)
                    .map(|_| {
                        let (stop, conn) = (stop.clone(), conn.clone());
                        tokio::spawn(async move {
                            let mut n = 0u64;
                            while !stop.load(Ordering::Relaxed) {
                                std::hint::black_box(call(w, &conn).await);
                                n += 1;
                            }
                            n
                        })
                    })
                    .collect();
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                stop.store(true, Ordering::Relaxed);
                let mut calls = 0;
                for t in tasks {
                    calls += t.await.unwrap();
                }
                let (wall, cpu) = (t0.elapsed(), cpu() - c0);
                let after = redis_work(&mut info);
                println!(
                    "{w:<8} {:>9.0} calls/s {:>6.2} µs CPU/call {:>5.2} keys/call {:>5.2} Redis µs/call",
                    calls as f64 / wall.as_secs_f64(),
                    cpu.as_secs_f64() * 1e6 / calls as f64,
                    (after.0 - work.0) as f64 / calls as f64,
                    (after.1 - work.1) / calls as f64
                );
            }
            let s = cache.stats();
            assert_eq!(s.computations, 3.min(s.computations), "hits only: {s:?}");
            // The raw contenders alone do not touch the cache, nor does the
            // local tier's (which has a cache of its own).
            let cached = only
                .as_deref()
                .is_none_or(|w| !matches!(w, "raw" | "mget4" | "local" | "held"));
            assert!(s.errors == 0 && (s.hits > hits || !cached), "{s:?}");
            let l = local_cache.stats();
            let local_ran = only.as_deref().is_none_or(|w| w == "local");
            assert!(l.errors == 0 && (l.local_hits > 0 || !local_ran), "{l:?}");
        });
    }
}

mod propagation {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::*;

    /// Nanoseconds since 1970: one clock for both processes.
    fn now_ns() -> u128 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }

    /// The value under test: the version of `{ns}:db`, tagged `stamps`.
    #[cached(cache = cache, skip(cache, db, namespace), ttl = 600, tags = ["stamps"])]
    async fn stamp(cache: Cache, db: redis::Client, namespace: String, id: u64) -> u64 {
        let mut conn = db.get_multiplexed_async_connection().await.unwrap();
        let v: u64 = redis::cmd("GET")
            .arg(format!("{namespace}:db"))
            .query_async(&mut conn)
            .await
            .unwrap();
        v + id
    }

    fn cache(url: &str, namespace: &str) -> Cache {
        Cache::builder()
            .redis(url)
            .namespace(namespace)
            .local_cache(1 << 20)
            .build()
            .unwrap()
    }

    /// The reading process: calls `stamp` in a loop and prints, for each
    /// new value, the time the first call that returned it started.
    #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    pub async fn reader(url: &str, namespace: &str) {
        let cache = cache(url, namespace);
        let db = redis::Client::open(url).unwrap();
        let call = || stamp(cache.clone(), db.clone(), namespace.to_owned(), 0);
        while !cache.local_ready() {
            call().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut last = u64::MAX;
        loop {
            let started = now_ns();
            let v = call().await;
            if v != last {
                println!("{v} {started}");
                last = v;
            }
        }
    }

    pub fn run(rounds: Option<String>) {
        let rounds: u64 = rounds.map_or(500, |r| r.parse().unwrap());
        let server = RedisServer::start();
        let namespace = "propagation";
        let mut conn = server.conn();
        let set = |conn: &mut redis::Connection, v: u64| {
            let _: () = redis::cmd("SET")
                .arg(format!("{namespace}:db"))
                .arg(v)
                .query(conn)
                .unwrap();
        };
        set(&mut conn, 0);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["propagation-reader", &server.url(), namespace])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let line = line.unwrap();
                let (v, t) = line.split_once(' ').unwrap();
                let _ = tx.send((v.parse::<u64>().unwrap(), t.parse::<u128>().unwrap()));
            }
        });
        // The reader serves version 0 from its local tier.
        while rx.recv().unwrap().0 != 0 {}
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let writer = cache(&server.url(), namespace);
        let mut took = Vec::new();
        let mut before = 0;
        for round in 1..=rounds {
            // Time for the reader to read the last value back into its
            // local tier (a miss, then a Redis hit it keeps).
            std::thread::sleep(Duration::from_millis(20));
            set(&mut conn, round);
            runtime.block_on(writer.invalidate_tag("stamps")).unwrap();
            let returned = now_ns();
            let seen = loop {
                let (v, t) = rx.recv().unwrap();
                if v == round {
                    break t;
                }
            };
            if seen < returned {
                before += 1;
            }
            took.push(seen.saturating_sub(returned) as f64 / 1000.0);
        }
        let _ = child.kill();
        let _ = child.wait();
        took.sort_by(f64::total_cmp);
        println!(
            "propagation over {rounds} invalidations (invalidate_tag returned -> the other process's first call not serving the old value): p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs; {before} already before the call returned",
            percentile(&took, 0.5),
            percentile(&took, 0.99),
            took.last().unwrap()
        );
    }
}

mod batch {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use cache_runtime::{Cache, cached};
    use cache_tests::RedisServer;

    /// Body runs.
    static QUERIES: AtomicU64 = AtomicU64::new(0);

    async fn query(ids: &[u64]) -> HashMap<u64, String> {
        QUERIES.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1)).await;
        ids.iter()
            .map(|&id| (id, format!("product {id}")))
            .collect()
    }

    #[cached(cache = cache, ttl = 600, tags = ["product:{ids}"], batch = ids, skip(cache))]
    async fn products(cache: &Cache, ids: Vec<u64>) -> HashMap<u64, String> {
        query(&ids).await
    }

    #[cached(cache = cache, ttl = 600, tags = ["product:{id}"], skip(cache))]
    async fn product(cache: &Cache, id: u64) -> Option<String> {
        query(&[id]).await.remove(&id)
    }

    fn commands(conn: &mut redis::Connection) -> u64 {
        cache_tests::total_calls(
            conn,
            &["info", "config", "client", "hello", "subscribe", "ping"],
        )
    }

    struct Read {
        round_trips: u64,
        commands: u64,
        queries: u64,
        micros: f64,
    }

    async fn read<F: std::future::Future>(
        cache: &Cache,
        conn: &mut redis::Connection,
        f: F,
    ) -> Read {
        let (trips, cmds, queries) = (
            cache.stats().round_trips,
            commands(conn),
            QUERIES.load(Ordering::Relaxed),
        );
        let started = Instant::now();
        f.await;
        let micros = started.elapsed().as_secs_f64() * 1e6;
        Read {
            round_trips: cache.stats().round_trips - trips,
            commands: commands(conn).saturating_sub(cmds),
            queries: QUERIES.load(Ordering::Relaxed) - queries,
            micros,
        }
    }

    pub fn run(rounds: Option<String>) {
        let rounds: usize = rounds.map_or(30, |r| r.parse().expect("rounds"));
        let server = RedisServer::start();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut conn = server.conn();
            let cached: Vec<u64> = (0..100).filter(|id| id % 10 != 3).collect();
            let mut results: Vec<(&str, Vec<Read>)> = vec![
                ("batch", vec![]),
                ("100 single calls", vec![]),
                ("uncached query", vec![]),
            ];
            for round in 0..rounds {
                let cache = Cache::builder()
                    .redis(server.url())
                    .namespace(format!("batch-{round}"))
                    .build()
                    .unwrap();
                // Warm: a first call connects; then the 90.
                products(&cache, vec![1000]).await;
                products(&cache, cached.clone()).await;
                for &id in &cached {
                    product(&cache, id).await;
                }
                let r = read(&cache, &mut conn, products(&cache, (0..100).collect())).await;
                results[0].1.push(r);
                let r = read(
                    &cache,
                    &mut conn,
                    futures_util::future::join_all((0..100).map(|id| product(&cache, id))),
                )
                .await;
                results[1].1.push(r);
                let ids: Vec<u64> = (0..100).collect();
                let r = read(&cache, &mut conn, query(&ids)).await;
                results[2].1.push(r);
            }
            println!(
                "100 ids, 90 cached ({rounds} rounds, 1 ms body; per read: median of each figure)"
            );
            println!(
                "{:<18} {:>11} {:>9} {:>10} {:>12}",
                "", "round trips", "commands", "body runs", "median µs"
            );
            for (name, reads) in results {
                let median = |f: &dyn Fn(&Read) -> f64| {
                    let mut v: Vec<f64> = reads.iter().map(f).collect();
                    v.sort_by(f64::total_cmp);
                    v[v.len() / 2]
                };
                println!(
                    "{:<18} {:>11} {:>9} {:>10} {:>12.0}",
                    name,
                    median(&|r| r.round_trips as f64),
                    median(&|r| r.commands as f64),
                    median(&|r| r.queries as f64),
                    median(&|r| r.micros),
                );
            }
        });
    }
}

mod local_share {
    //! The local tier's share of calls while another process invalidates
    //! tags the calls do not carry.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use cache_runtime::{Cache, cached};
    use cache_tests::RedisServer;

    use super::{Command, Stdio};

    const KEYS: u64 = 10_000;
    const READS: u64 = 20;
    /// Invalidations a second the other process aims at.
    const RATE: u64 = 24_000;
    /// Invalidations in flight at once in the other process.
    const TASKS: u64 = 64;

    #[cached(cache = cache, skip(cache), ttl = 600, tags = ["items", "item:{id}"])]
    async fn item(cache: &Cache, id: u64) -> String {
        format!("item {id}")
    }

    fn cache(url: &str, namespace: &str) -> Cache {
        Cache::builder()
            .redis(url)
            .namespace(namespace)
            .local_cache(64 << 20)
            .build()
            .unwrap()
    }

    /// Reads every key `READS` times, round after round, 16 tasks sharing
    /// each round; the share of calls the local tier answered.
    async fn read(cache: &Cache) -> (f64, u64) {
        while !cache.local_ready() {
            let _ = item(cache, u64::MAX).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let before = cache.stats();
        for _ in 0..READS {
            let next = Arc::new(AtomicU64::new(0));
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let (cache, next) = (cache.clone(), next.clone());
                    tokio::spawn(async move {
                        loop {
                            let id = next.fetch_add(1, Ordering::Relaxed);
                            if id >= KEYS {
                                break;
                            }
                            std::hint::black_box(item(&cache, id).await);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        }
        let after = cache.stats();
        let calls = KEYS * READS;
        let local = after.local_hits - before.local_hits;
        (local as f64 / calls as f64, after.errors - before.errors)
    }

    /// The other process: invalidates `other:{n}` tags at `RATE` a second
    /// (`TASKS` tasks) until killed, printing how many it made each second.
    #[tokio::main(flavor = "multi_thread", worker_threads = 1)]
    pub async fn invalidator(url: &str, namespace: &str) {
        let cache = cache(url, namespace);
        let made = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        for task in 0..TASKS {
            let (cache, made, stop) = (cache.clone(), made.clone(), stop.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Paced: each task makes `RATE / TASKS` a second at most.
                    let due = Duration::from_secs_f64((n * TASKS) as f64 / RATE as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                    if cache
                        .invalidate_tag(format!("other:{}", n * TASKS + task))
                        .await
                        .is_ok()
                    {
                        made.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
            });
        }
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = made.load(Ordering::Relaxed);
            println!("{}", now - last);
            last = now;
        }
    }

    pub fn run() {
        let server = RedisServer::start();
        let url = server.url();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let quiet = runtime.block_on(read(&cache(&url, "share-quiet")));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["local-share-invalidator", &url, "share-busy"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let rates = std::thread::spawn(move || {
            use std::io::{BufRead, BufReader};
            BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        });
        // The invalidations reach full rate before the reads start.
        std::thread::sleep(Duration::from_secs(2));
        let busy = runtime.block_on(read(&cache(&url, "share-busy")));
        let _ = child.kill();
        let _ = child.wait();
        let rates = rates.join().unwrap();
        // The first two seconds are the warm-up; the last may be partial.
        let during = rates.get(2..rates.len().saturating_sub(1)).unwrap_or(&[]);
        let rate = during.iter().sum::<u64>() as f64 / during.len().max(1) as f64;
        println!(
            "{KEYS} keys read {READS} times each by 16 tasks (two tags each), local tier 64 MB"
        );
        println!(
            "no invalidations:                       {:.1} % of calls answered locally ({} errors)",
            quiet.0 * 100.0,
            quiet.1
        );
        println!(
            "{rate:>6.0} invalidations/s of other tags: {:.1} % of calls answered locally ({} errors)",
            busy.0 * 100.0,
            busy.1
        );
    }
}

/// `measure compression [rounds]`: see the module's doc.
mod compression {
    use std::time::{Duration, Instant};

    use cache_runtime::{Cache, cached};
    use cache_tests::RedisServer;
    use cache_tests::fixtures::Product;
    use serde::{Deserialize, Serialize};

    /// One of the 50 small structs of the 5 KB value (the benchmark's).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Item {
        id: u64,
        sku: String,
        name: String,
        price_cents: i64,
        in_stock: bool,
    }

    /// The 5 KB value: 50 items (`examples/benches/peers.rs`).
    pub fn list(seed: u64) -> Vec<Item> {
        (0..50)
            .map(|i| Item {
                id: seed * 100 + i,
                sku: format!("SKU-{seed:06}-{i:02}"),
                name: format!("Everyday Steel Kettle {i}"),
                price_cents: 1_999 + i as i64 * 100,
                in_stock: i % 7 != 0,
            })
            .collect()
    }

    /// The 200 KB value: a page of 640 products.
    pub fn page(seed: u64) -> Vec<Product> {
        (0..640).map(|i| Product::sample(seed * 1000 + i)).collect()
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// Median microseconds of `f` over `rounds`.
    fn time<T>(rounds: usize, mut f: impl FnMut() -> T) -> f64 {
        median(
            (0..rounds)
                .map(|_| {
                    let started = Instant::now();
                    std::hint::black_box(f());
                    started.elapsed().as_secs_f64() * 1e6
                })
                .collect(),
        )
    }

    fn codecs(rounds: usize) {
        println!(
            "{:<14} {:<14} {:>9} {:>7} {:>14} {:>16}",
            "value", "codec", "bytes", "ratio", "compress µs", "decompress µs"
        );
        let values = [
            ("5 KB list", serde_json::to_vec(&list(1)).unwrap()),
            ("200 KB page", serde_json::to_vec(&page(1)).unwrap()),
        ];
        for (label, json) in &values {
            println!("{label:<14} {:<14} {:>9}", "none", json.len());
            let lz4 = lz4_flex::block::compress_prepend_size(json);
            let c = time(rounds, || lz4_flex::block::compress_prepend_size(json));
            let d = time(rounds, || {
                lz4_flex::block::decompress_size_prepended(&lz4).unwrap()
            });
            println!(
                "{label:<14} {:<14} {:>9} {:>7.2} {c:>14.1} {d:>16.1}",
                "lz4_flex",
                lz4.len(),
                json.len() as f64 / lz4.len() as f64
            );
            for level in [1, 3] {
                let z = zstd::bulk::compress(json, level).unwrap();
                let c = time(rounds, || zstd::bulk::compress(json, level).unwrap());
                let d = time(rounds, || zstd::bulk::decompress(&z, json.len()).unwrap());
                println!(
                    "{label:<14} {:<14} {:>9} {:>7.2} {c:>14.1} {d:>16.1}",
                    format!("zstd level {level}"),
                    z.len(),
                    json.len() as f64 / z.len() as f64
                );
            }
        }
    }

    pub fn run(rounds: Option<String>) {
        let rounds: usize = rounds.map_or(2000, |r| r.parse().expect("ROUNDS"));
        println!("## Codecs ({rounds} rounds, median)");
        codecs(rounds);
        redis_side(rounds);
    }

    #[cached(cache = cache, ttl = 600, skip(cache))]
    async fn small(cache: &Cache, seed: u64) -> Vec<Item> {
        list(seed)
    }

    #[cached(cache = cache, ttl = 600, skip(cache))]
    async fn large(cache: &Cache, seed: u64) -> Vec<Product> {
        page(seed)
    }

    #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_side(rounds: usize) {
        let server = RedisServer::start();
        let mut conn = server.conn();
        println!();
        println!("## Redis: one key, sequential hits ({rounds} rounds, median)");
        println!(
            "{:<14} {:<22} {:>13} {:>14} {:>10}",
            "value", "setting", "stored bytes", "MEMORY USAGE", "hit µs"
        );
        for (label, seed) in [("5 KB list", 1), ("200 KB page", 2)] {
            for (setting, above) in [("none", None), ("compress_above(1024)", Some(1024))] {
                let namespace = format!("compression-{seed}-{}", above.is_some());
                let mut builder = Cache::builder()
                    .redis(server.url())
                    .namespace(&namespace)
                    .op_timeout(Duration::from_secs(1));
                if let Some(bytes) = above {
                    builder = builder.compress_above(bytes);
                }
                let cache = builder.build().unwrap();
                let hit = if seed == 1 {
                    small(&cache, seed).await;
                    time_async(rounds, || async {
                        small(&cache, seed).await;
                    })
                    .await
                } else {
                    large(&cache, seed).await;
                    time_async(rounds, || async {
                        large(&cache, seed).await;
                    })
                    .await
                };
                let key: String = redis::cmd("KEYS")
                    .arg(format!("{namespace}:*::*"))
                    .query::<Vec<String>>(&mut conn)
                    .unwrap()
                    .into_iter()
                    .find(|k| k.contains("::small:") || k.contains("::large:"))
                    .expect("the entry");
                let stored: usize = redis::cmd("STRLEN").arg(&key).query(&mut conn).unwrap();
                let usage: usize = redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(&key)
                    .query(&mut conn)
                    .unwrap();
                let stats = cache.stats();
                assert_eq!(stats.hits, rounds as u64, "every timed call is a hit");
                println!("{label:<14} {setting:<22} {stored:>13} {usage:>14} {hit:>10.1}");
            }
        }
    }

    async fn time_async<F: std::future::Future<Output = ()>>(
        rounds: usize,
        mut f: impl FnMut() -> F,
    ) -> f64 {
        let mut samples = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let started = Instant::now();
            f().await;
            samples.push(started.elapsed().as_secs_f64() * 1e6);
        }
        median(samples)
    }
}
