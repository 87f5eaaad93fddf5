//! `#[cached]` against its floor and its peer, on a private Redis.
//!
//! ```text
//! cargo bench -p cache-examples --features peers --bench peers
//! ```
//!
//! One run measures, side by side, and prints ratios:
//! 1. hits: latency (sequential) and throughput (64 concurrent tasks) of
//!    raw `redis` GET + `serde_json` decode (the floor), `#[cached]` without
//!    tags, `#[cached]` with two tags, the `cached` crate's Redis macro
//!    (`#[concurrent_cached]` with `AsyncRedisCache`, its 4.x name for
//!    `#[io_cached]`), and raw GET + MessagePack decode (the floor of the
//!    `cached` crate's format), all on the same value: a `Vec` of 50 small
//!    structs; then where a hit's CPU goes, without I/O;
//! 2. misses: body + store, against raw GET + SET;
//! 3. a cold-key stampede: 256 concurrent callers on one key whose body
//!    takes 150 ms (a sleep, then the same on an 8-connection "database"),
//!    in one process and in two caches standing for two processes;
//! 4. the products API's dashboard: uncached against cached, as a function
//!    and over HTTP.
//!
//! Contenders are measured in interleaved rounds, so that drift does not
//! favour whoever runs first, on a worker thread of a 2-worker runtime.
//! Every hit is checked to be one (the bodies count their runs), and Redis
//! commands per call are counted from `INFO commandstats`.
//!
//! It starts its own `redis-server` on a free port (never the shared one)
//! and stops it at the end. The dashboard part uses the example's database
//! (`DB_PATH`, or the default path of `products-api`), seeding it first if
//! needed (about 5 s on 2 cores). A custom harness: a table with ratios is
//! the point, and criterion cannot measure a stampede. The `cached` crate
//! sits behind the `peers` feature: it needs a newer Rust than the
//! workspace (1.92, and 1.95 for its `r2d2` dependency's `parking_lot`).

use std::future::Future;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cache_examples::products::{self, SeedConfig, seed};
use cache_runtime::{Cache, cached};
use cached::AsyncRedisCache;
use cached::macros::concurrent_cached;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tokio::sync::{Barrier, Semaphore};

use cache_tests::RedisServer;

// ---------------------------------------------------------------- the value

/// One of the 50 small structs of the cached value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    id: u64,
    sku: String,
    name: String,
    price_cents: i64,
    in_stock: bool,
}

fn value(seed: u64) -> Vec<Item> {
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

/// The body of every contender: counts its runs, then builds the value.
static BODY_RUNS: AtomicU64 = AtomicU64::new(0);

fn body(id: u64) -> Vec<Item> {
    BODY_RUNS.fetch_add(1, Relaxed);
    value(id)
}

/// The stampede's body: 150 ms, like a slow query.
const SLOW: Duration = Duration::from_millis(150);

/// The stampede's database: 8 connections, each held for the query.
static DB_POOL: Semaphore = Semaphore::const_new(8);

async fn slow_body(id: u64, pool: bool) -> Vec<Item> {
    let _conn = if pool {
        Some(DB_POOL.acquire().await.expect("never closed"))
    } else {
        None
    };
    tokio::time::sleep(SLOW).await;
    body(id)
}

// ------------------------------------------------------------- #[cached]

#[cached(ttl = 600)]
async fn ours(id: u64) -> Vec<Item> {
    body(id)
}

#[cached(ttl = 600, tags = ["items", "item:{id}"])]
async fn ours_tagged(id: u64) -> Vec<Item> {
    body(id)
}

/// The memory backend: what a hit costs without any I/O.
static MEMORY: OnceLock<Cache> = OnceLock::new();

#[cached(ttl = 600, cache = MEMORY.get().expect("set in run"))]
async fn ours_in_memory(id: u64) -> Vec<Item> {
    body(id)
}

#[cached(ttl = 600, lock = false)]
async fn ours_unlocked(id: u64) -> Vec<Item> {
    body(id)
}

#[cached(ttl = 600)]
async fn ours_slow(id: u64, pool: bool) -> Vec<Item> {
    slow_body(id, pool).await
}

/// The same, on a given cache: two `Cache`s on one Redis share nothing in
/// process (flights, notifier), like two processes; only the Redis lease
/// stands between them.
#[cached(ttl = 600, cache = cache, skip(cache))]
async fn ours_slow_on(cache: &Cache, id: u64, pool: bool) -> Vec<Item> {
    slow_body(id, pool).await
}

/// Two caches playing two processes.
static PROCESSES: OnceLock<[Cache; 2]> = OnceLock::new();

// ------------------------------------------------------- the `cached` crate

static REDIS_URL: OnceLock<String> = OnceLock::new();

fn redis_url() -> &'static str {
    REDIS_URL.get().expect("set in main")
}

/// The error the `cached` crate's store errors are mapped to (read through
/// `Debug` when a call fails).
#[derive(Debug, Clone)]
#[allow(dead_code)]
struct PeerError(String);

#[concurrent_cached(
    ty = "AsyncRedisCache<u64, Vec<Item>>",
    create = r##"{
        AsyncRedisCache::builder("peer")
            .ttl(Duration::from_secs(600))
            .connection_string(redis_url())
            .build()
            .await
            .expect("cached crate: AsyncRedisCache")
    }"##,
    map_error = r##"|e| PeerError(format!("{e:?}"))"##
)]
async fn peer(id: u64) -> Result<Vec<Item>, PeerError> {
    Ok(body(id))
}

#[concurrent_cached(
    ty = "AsyncRedisCache<String, Vec<Item>>",
    create = r##"{
        AsyncRedisCache::builder("peer_slow")
            .ttl(Duration::from_secs(600))
            .connection_string(redis_url())
            .build()
            .await
            .expect("cached crate: AsyncRedisCache")
    }"##,
    map_error = r##"|e| PeerError(format!("{e:?}"))"##,
    key = "String",
    convert = r##"{ format!("{id}:{pool}") }"##
)]
async fn peer_slow(id: u64, pool: bool) -> Result<Vec<Item>, PeerError> {
    Ok(slow_body(id, pool).await)
}

// ------------------------------------------------------------ contenders

#[derive(Clone)]
enum Who {
    Raw(MultiplexedConnection),
    RawMsgpack(MultiplexedConnection),
    Ours,
    OursTagged,
    OursUnlocked,
    Peer,
}

impl Who {
    fn name(&self) -> &'static str {
        match self {
            Who::Raw(_) => "raw redis GET + serde_json (floor)",
            Who::RawMsgpack(_) => "raw redis GET + MessagePack (cached crate's format)",
            Who::Ours => "#[cached], no tags",
            Who::OursTagged => "#[cached], two tags",
            Who::OursUnlocked => "#[cached], no tags, lock = false",
            Who::Peer => "cached 4.1 #[concurrent_cached] AsyncRedisCache",
        }
    }

    /// A call that should hit.
    async fn call(&self, id: u64) -> usize {
        match self {
            Who::Raw(conn) => {
                let mut conn = conn.clone();
                let bytes: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(format!("raw:{id}"))
                    .query_async(&mut conn)
                    .await
                    .expect("GET");
                let v: Vec<Item> = serde_json::from_slice(&bytes.expect("warmed")).expect("decode");
                v.len()
            }
            Who::RawMsgpack(conn) => {
                let mut conn = conn.clone();
                let bytes: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(format!("rawmp:{id}"))
                    .query_async(&mut conn)
                    .await
                    .expect("GET");
                let v: Vec<Item> = rmp_serde::from_slice(&bytes.expect("warmed")).expect("decode");
                v.len()
            }
            Who::Ours => ours(id).await.len(),
            Who::OursTagged => ours_tagged(id).await.len(),
            Who::OursUnlocked => ours_unlocked(id).await.len(),
            Who::Peer => peer(id).await.expect("peer").len(),
        }
    }

    /// Cache-aside on a key nobody has filled: look up, compute, store.
    async fn miss(&self, id: u64) -> usize {
        match self {
            Who::Raw(conn) => {
                let mut conn = conn.clone();
                let key = format!("raw:{id}");
                let found: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .expect("GET");
                assert!(found.is_none());
                let v = body(id);
                let json = serde_json::to_vec(&v).expect("encode");
                let () = redis::cmd("SET")
                    .arg(&key)
                    .arg(json)
                    .arg("PX")
                    .arg(600_000)
                    .query_async(&mut conn)
                    .await
                    .expect("SET");
                v.len()
            }
            _ => self.call(id).await,
        }
    }
}

// ------------------------------------------------------------ measuring

#[derive(Debug, Clone, Copy)]
struct Lat {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn lat(mut d: Vec<Duration>) -> Lat {
    d.sort_unstable();
    let at = |q: f64| d[((d.len() as f64 * q) as usize).min(d.len() - 1)];
    let mean = d.iter().sum::<Duration>() / d.len() as u32;
    Lat {
        p50: at(0.50),
        p99: at(0.99),
        mean,
    }
}

async fn timed<F: Future<Output = usize>>(f: F) -> Duration {
    let t = Instant::now();
    black_box(f.await);
    t.elapsed()
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Redis commands executed, all clients together.
async fn commands(conn: &mut MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

const HIT_CALLS: u32 = 5_000;
const HIT_ROUNDS: usize = 5;
const THROUGHPUT_ROUNDS: usize = 3;
const MISS_CALLS: u64 = 2_000;
const TASKS: usize = 64;
const THROUGHPUT_FOR: Duration = Duration::from_millis(1_500);
const STAMPEDE: usize = 256;
const STAMPEDE_ROUNDS: u64 = 3;

struct HitRow {
    name: &'static str,
    lat: Lat,
    cmds: f64,
    ops: f64,
}

/// Sequential hit latencies of every contender, measured in interleaved
/// rounds (rotating the order) so that drift (CPU frequency, allocator,
/// Redis) does not favour whoever runs first; then throughput the same way.
async fn hits(who: &[Who], admin: &mut MultiplexedConnection) -> Vec<HitRow> {
    // Warm: fill the key, and the connections.
    for w in who {
        for _ in 0..500 {
            w.call(1).await;
        }
    }
    let runs = BODY_RUNS.load(Relaxed);
    let n = who.len();
    let mut lats = vec![Vec::with_capacity(HIT_CALLS as usize); n];
    let mut cmds = vec![0u64; n];
    for round in 0..HIT_ROUNDS {
        for k in 0..n {
            let i = (k + round) % n;
            let c0 = commands(admin).await;
            for _ in 0..HIT_CALLS / HIT_ROUNDS as u32 {
                lats[i].push(timed(who[i].call(1)).await);
            }
            cmds[i] += commands(admin).await - c0 - 1;
        }
    }
    let mut ops = vec![0f64; n];
    for round in 0..THROUGHPUT_ROUNDS {
        for k in 0..n {
            let i = (k + round) % n;
            let c0 = commands(admin).await;
            let (calls, per_sec) = throughput(&who[i]).await;
            let per_call = (commands(admin).await - c0 - 1) as f64 / calls as f64;
            eprintln!(
                "throughput {}: {calls} calls, {per_call:.2} Redis cmds/call",
                who[i].name()
            );
            ops[i] += per_sec / THROUGHPUT_ROUNDS as f64;
        }
    }
    assert_eq!(BODY_RUNS.load(Relaxed), runs, "a hit ran the body");
    who.iter()
        .zip(lats)
        .zip(cmds)
        .zip(ops)
        .map(|(((w, l), c), ops)| HitRow {
            name: w.name(),
            lat: lat(l),
            cmds: c as f64 / f64::from(HIT_CALLS),
            ops,
        })
        .collect()
}

/// Calls, and calls per second, of `TASKS` tasks calling in a loop.
async fn throughput(who: &Who) -> (u64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(TASKS + 1));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (who, stop, start) = (who.clone(), stop.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    black_box(who.call(1).await);
                    n += 1;
                }
                n
            })
        })
        .collect();
    start.wait().await;
    let t = Instant::now();
    tokio::time::sleep(THROUGHPUT_FOR).await;
    stop.store(true, Relaxed);
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("task");
    }
    (total, total as f64 / t.elapsed().as_secs_f64())
}

/// Sequential misses (a new key each call) of every contender, in
/// interleaved rounds.
async fn misses(who: &[Who], admin: &mut MultiplexedConnection) -> Vec<(Lat, f64)> {
    let n = who.len();
    let first = |i: usize| 1_000_000 * (i as u64 + 1);
    let mut next: Vec<u64> = (0..n).map(first).collect();
    // Warm the connections (and the tag versions, which every key shares).
    for (w, id) in who.iter().zip(&mut next) {
        for _ in 0..200 {
            w.miss(*id).await;
            *id += 1;
        }
    }
    let mut lats = vec![Vec::with_capacity(MISS_CALLS as usize); n];
    let mut cmds = vec![0u64; n];
    let per_round = MISS_CALLS / HIT_ROUNDS as u64;
    for round in 0..HIT_ROUNDS {
        for k in 0..n {
            let i = (k + round) % n;
            let runs = BODY_RUNS.load(Relaxed);
            let c0 = commands(admin).await;
            for _ in 0..per_round {
                lats[i].push(timed(who[i].miss(next[i])).await);
                next[i] += 1;
            }
            cmds[i] += commands(admin).await - c0 - 1;
            assert_eq!(
                BODY_RUNS.load(Relaxed) - runs,
                per_round,
                "{}: every call must miss",
                who[i].name()
            );
        }
    }
    lats.into_iter()
        .zip(cmds)
        .map(|(l, c)| (lat(l), c as f64 / (per_round * HIT_ROUNDS as u64) as f64))
        .collect()
}

struct StampedeRow {
    name: String,
    computations: Vec<u64>,
    lat: Lat,
    max: Duration,
}

#[derive(Clone, Copy)]
enum Herd {
    Ours,
    OursTwoProcesses,
    Peer,
}

async fn stampede(name: &str, herd: Herd, pool: bool, first_id: u64) -> StampedeRow {
    let mut computations = Vec::new();
    let mut all = Vec::new();
    for round in 0..STAMPEDE_ROUNDS {
        let id = first_id + round;
        let runs = BODY_RUNS.load(Relaxed);
        let start = Arc::new(Barrier::new(STAMPEDE));
        let tasks: Vec<_> = (0..STAMPEDE)
            .map(|caller| {
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    let t = Instant::now();
                    let v = match herd {
                        Herd::Ours => ours_slow(id, pool).await,
                        Herd::OursTwoProcesses => {
                            let cache = &PROCESSES.get().expect("set in run")[caller % 2];
                            ours_slow_on(cache, id, pool).await
                        }
                        Herd::Peer => peer_slow(id, pool).await.expect("peer"),
                    };
                    assert_eq!(v.len(), 50);
                    t.elapsed()
                })
            })
            .collect();
        for task in tasks {
            all.push(task.await.expect("task"));
        }
        computations.push(BODY_RUNS.load(Relaxed) - runs);
    }
    let max = *all.iter().max().expect("calls");
    StampedeRow {
        name: name.to_owned(),
        computations,
        lat: lat(all),
        max,
    }
}

/// Where the CPU of a hit goes: decoding, and the cache's own work.
async fn cpu_only(admin: &mut MultiplexedConnection) {
    const N: u32 = 20_000;
    let v = value(1);
    let json = serde_json::to_vec(&v).expect("json");
    let msgpack = rmp_serde::to_vec(&v).expect("msgpack");
    let per_call = |t: Instant| t.elapsed() / N;
    let t = Instant::now();
    for _ in 0..N {
        black_box(
            serde_json::from_slice::<Vec<Item>>(black_box(&json))
                .expect("json")
                .len(),
        );
    }
    let json_decode = per_call(t);
    let t = Instant::now();
    for _ in 0..N {
        black_box(
            rmp_serde::from_slice::<Vec<Item>>(black_box(&msgpack))
                .expect("msgpack")
                .len(),
        );
    }
    let msgpack_decode = per_call(t);
    MEMORY
        .set(Cache::builder().memory().build().expect("memory cache"))
        .expect("once");
    ours_in_memory(1).await;
    let t = Instant::now();
    for _ in 0..N {
        black_box(ours_in_memory(1).await.len());
    }
    let memory_hit = per_call(t);
    let stored = |pattern: &'static str| {
        let mut admin = admin.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut admin)
                .await
                .expect("KEYS");
            let key = keys
                .first()
                .unwrap_or_else(|| panic!("no key matches {pattern}"));
            redis::cmd("STRLEN")
                .arg(key)
                .query_async::<u64>(&mut admin)
                .await
                .expect("STRLEN")
        }
    };
    println!();
    println!("Where a hit's CPU goes (no I/O, one task, {N} calls):");
    println!();
    println!("| work | per call | bytes stored in Redis |");
    println!("|---|---:|---:|");
    println!(
        "| serde_json decode of the value (raw floor, #[cached]) | {} | {} |",
        us(json_decode),
        json.len()
    );
    println!(
        "| rmp_serde (MessagePack) decode of the value (cached crate) | {} | {} |",
        us(msgpack_decode),
        stored("*peer:1").await
    );
    println!(
        "| #[cached] hit on the memory backend (key digest, envelope, decode) | {} | {} |",
        us(memory_hit),
        stored("bench:*::ours:*").await
    );
}

fn redis_version() -> String {
    std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too: a
    // smoke test is not what this is for.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let started = Instant::now();
    let server = RedisServer::start();
    REDIS_URL.set(server.url()).expect("once");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("# cache-examples peers benchmark");
    println!();
    println!(
        "- machine: {cores} cores; {}; private server on {}",
        redis_version(),
        server.url()
    );
    println!("- tokio multi-thread runtime, 2 workers; client and server share the cores");
    println!(
        "- value: Vec of 50 structs ({} bytes of JSON)",
        serde_json::to_vec(&value(1)).expect("json").len()
    );
    println!();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // On a worker thread, like a request handler (not on the `block_on`
    // thread, whose every wake-up crosses threads).
    rt.block_on(async {
        tokio::spawn(run(server.url()))
            .await
            .expect("benchmark panicked")
    });
    drop(server);
    println!("\nwhole run: {:.0?}", started.elapsed());
}

async fn run(url: String) {
    let client = redis::Client::open(url.as_str()).expect("url");
    let raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let mut admin = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let cache = Cache::builder()
        .redis(&url)
        .namespace("bench")
        .op_timeout(Duration::from_secs(1))
        .build()
        .expect("cache");
    cache_runtime::set_default(cache.clone());

    // Fill the floors' keys the way cache-aside would.
    Who::Raw(raw.clone()).miss(1).await;
    let () = redis::cmd("SET")
        .arg("rawmp:1")
        .arg(rmp_serde::to_vec(&value(1)).expect("msgpack"))
        .query_async(&mut raw.clone())
        .await
        .expect("SET");

    // ---- 1. hits
    let rows = hits(
        &[
            Who::Raw(raw.clone()),
            Who::Ours,
            Who::OursTagged,
            Who::Peer,
            Who::RawMsgpack(raw.clone()),
        ],
        &mut admin,
    )
    .await;
    let floor = (rows[0].lat.p50, rows[0].ops);
    println!("## Hits (same key, warm)");
    println!();
    println!(
        "| contender | p50 | p99 | mean | Redis cmds/call | p50 vs floor | 64 tasks: calls/s | throughput vs floor |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.2}x | {:.0} | {:.2}x |",
            r.name,
            us(r.lat.p50),
            us(r.lat.p99),
            us(r.lat.mean),
            r.cmds,
            r.lat.p50.as_secs_f64() / floor.0.as_secs_f64(),
            r.ops,
            r.ops / floor.1
        );
    }
    let (ours_row, peer_row, mp_row) = (&rows[1], &rows[3], &rows[4]);
    let p50 = |a: &HitRow, b: &HitRow| a.lat.p50.as_secs_f64() / b.lat.p50.as_secs_f64();
    println!();
    println!(
        "- #[cached] (no tags) vs the JSON floor: p50 {:.2}x, throughput {:.2}x",
        p50(ours_row, &rows[0]),
        ours_row.ops / rows[0].ops
    );
    println!(
        "- cached crate vs its MessagePack floor: p50 {:.2}x, throughput {:.2}x",
        p50(peer_row, mp_row),
        peer_row.ops / mp_row.ops
    );
    println!(
        "- #[cached] (no tags) vs cached crate: p50 {:.2}x, throughput {:.2}x",
        p50(ours_row, peer_row),
        ours_row.ops / peer_row.ops
    );
    let mut headline = vec![format!(
        "hit, #[cached] vs raw GET + serde_json: p50 {:.2}x, 64-task throughput {:.2}x; vs the cached crate: p50 {:.2}x, throughput {:.2}x",
        p50(ours_row, &rows[0]),
        ours_row.ops / rows[0].ops,
        p50(ours_row, peer_row),
        ours_row.ops / peer_row.ops
    )];

    cpu_only(&mut admin).await;

    // ---- 2. misses
    println!();
    println!("## Misses (body + store, a new key each call, sequential)");
    println!();
    println!("| contender | p50 | p99 | mean | Redis cmds/call | p50 vs raw GET+SET |");
    println!("|---|---:|---:|---:|---:|---:|");
    let who = [
        Who::Raw(raw.clone()),
        Who::Ours,
        Who::OursUnlocked,
        Who::OursTagged,
        Who::Peer,
    ];
    let results = misses(&who, &mut admin).await;
    let f = results[0].0.p50;
    headline.push(format!(
        "miss (body + store) vs raw GET + SET: p50 {:.2}x ({:.2}x with lock = false)",
        results[1].0.p50.as_secs_f64() / f.as_secs_f64(),
        results[2].0.p50.as_secs_f64() / f.as_secs_f64()
    ));
    for (w, (l, cmds)) in who.iter().zip(results) {
        let name = if matches!(w, Who::Raw(_)) {
            "raw redis GET + SET"
        } else {
            w.name()
        };
        println!(
            "| {name} | {} | {} | {} | {cmds:.1} | {:.2}x |",
            us(l.p50),
            us(l.p99),
            us(l.mean),
            l.p50.as_secs_f64() / f.as_secs_f64()
        );
    }

    // ---- 3. stampede
    println!();
    println!(
        "## Cold-key stampede: {STAMPEDE} concurrent callers, one cold key, 150 ms body ({STAMPEDE_ROUNDS} rounds)"
    );
    println!();
    println!("| contender | body | computations per round | p50 | p99 | max |");
    println!("|---|---|---|---:|---:|---:|");
    let processes = || {
        Cache::builder()
            .redis(&url)
            .namespace("bench")
            .op_timeout(Duration::from_secs(1))
            .build()
    };
    PROCESSES
        .set([processes().expect("cache"), processes().expect("cache")])
        .expect("once");
    let cases = [
        ("#[cached]", Herd::Ours, false, "sleep 150 ms"),
        (
            "#[cached], 2 caches as 2 processes",
            Herd::OursTwoProcesses,
            false,
            "sleep 150 ms",
        ),
        (
            "cached 4.1 #[concurrent_cached]",
            Herd::Peer,
            false,
            "sleep 150 ms",
        ),
        (
            "#[cached]",
            Herd::Ours,
            true,
            "150 ms on an 8-connection pool",
        ),
        (
            "#[cached], 2 caches as 2 processes",
            Herd::OursTwoProcesses,
            true,
            "150 ms on an 8-connection pool",
        ),
        (
            "cached 4.1 #[concurrent_cached]",
            Herd::Peer,
            true,
            "150 ms on an 8-connection pool",
        ),
    ];
    let mut herds = Vec::new();
    for (i, (name, herd, pool, what)) in cases.into_iter().enumerate() {
        let r = stampede(name, herd, pool, 9_000_000 + 10 * i as u64).await;
        herds.push((
            r.computations.iter().sum::<u64>() / STAMPEDE_ROUNDS,
            r.lat.p99,
        ));
        println!(
            "| {} | {what} | {} | {} | {} | {} |",
            r.name,
            r.computations
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            ms(r.lat.p50),
            ms(r.lat.p99),
            ms(r.max)
        );
    }

    headline.push(format!(
        "stampede, {STAMPEDE} callers on a cold key: {} computation(s) vs {} for the cached crate (p99 {} vs {}); with an 8-connection database: p99 {} vs {} ({:.0}x)",
        herds[0].0,
        herds[2].0,
        ms(herds[0].1),
        ms(herds[2].1),
        ms(herds[3].1),
        ms(herds[5].1),
        herds[5].1.as_secs_f64() / herds[3].1.as_secs_f64()
    ));

    // ---- 4. the products API's dashboard
    headline.push(dashboard(&url).await);

    let s = cache.stats();
    println!();
    println!("## Headline");
    println!();
    for h in headline {
        println!("- {h}");
    }
    println!();
    println!(
        "(#[cached] cache counters over the run: {} hits, {} misses, {} coalesced, {} lease waits, {} errors, {} timeouts)",
        s.hits, s.misses, s.coalesced, s.lease_waits, s.errors, s.timeouts
    );
    assert_eq!(s.errors, 0, "a cache error skews the figures");
}

/// Returns the headline line.
async fn dashboard(url: &str) -> String {
    let cfg = SeedConfig::from_env().expect("SEED_*");
    let path =
        std::env::var_os("DB_PATH").map_or_else(|| seed::default_db_path(&cfg), PathBuf::from);
    let (info, fresh) = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || seed::ensure_seeded(&path, &cfg, |l| eprintln!("{l}")))
            .await
            .expect("seeding task")
            .expect("seeding")
    };
    let cache = Cache::builder()
        .redis(url)
        .namespace("bench-shop")
        .op_timeout(Duration::from_secs(1))
        .build()
        .expect("cache");
    let catalog = products::open_catalog(cache.clone(), &path).expect("catalog");
    println!();
    println!(
        "## Products API: GET /api/stats/dashboard ({} products, {} orders, {} items{})",
        info.products,
        info.orders,
        info.order_items,
        if fresh { ", seeded by this run" } else { "" }
    );
    println!();

    let mut uncached = Vec::new();
    for _ in 0..10 {
        uncached.push(
            timed(async {
                catalog
                    .dashboard_uncached()
                    .await
                    .expect("query")
                    .hourly
                    .len()
            })
            .await,
        );
    }
    let uncached = lat(uncached);
    catalog.dashboard().await.expect("fill");
    let mut hit = Vec::new();
    for _ in 0..2_000 {
        hit.push(timed(async { catalog.dashboard().await.expect("hit").hourly.len() }).await);
    }
    let hit = lat(hit);
    let memory = products::open_catalog(Cache::builder().memory().build().expect("cache"), &path)
        .expect("catalog");
    memory.dashboard().await.expect("fill");
    let mut mem = Vec::new();
    for _ in 0..2_000 {
        mem.push(timed(async { memory.dashboard().await.expect("hit").hourly.len() }).await);
    }
    let mem = lat(mem);

    // Over HTTP, the whole request.
    let app = products::app(cache.clone(), &path).expect("app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let http = reqwest::Client::new();
    let endpoint = format!("http://{addr}/api/stats/dashboard");
    let get = |expect: &'static str| {
        let (http, endpoint) = (http.clone(), endpoint.clone());
        async move {
            let r = http.get(&endpoint).send().await.expect("GET");
            assert_eq!(r.headers()["x-cache"], expect);
            r.bytes().await.expect("body").len()
        }
    };
    let mut http_miss = Vec::new();
    for _ in 0..10 {
        cache.invalidate_tag("dashboard").await.expect("invalidate");
        http_miss.push(timed(get("MISS")).await);
    }
    let http_miss = lat(http_miss);
    let mut http_hit = Vec::new();
    for _ in 0..1_000 {
        http_hit.push(timed(get("HIT")).await);
    }
    let http_hit = lat(http_hit);

    println!("| path | p50 | p99 | p50 speed-up |");
    println!("|---|---:|---:|---:|");
    let row = |what: &str, l: Lat| {
        println!(
            "| {what} | {} | {} | {:.0}x |",
            if l.p50 > Duration::from_millis(1) {
                ms(l.p50)
            } else {
                us(l.p50)
            },
            if l.p99 > Duration::from_millis(1) {
                ms(l.p99)
            } else {
                us(l.p99)
            },
            uncached.p50.as_secs_f64() / l.p50.as_secs_f64()
        )
    };
    row("query fn, uncached (SQLite)", uncached);
    row("query fn, #[cached] hit, Redis", hit);
    row("query fn, #[cached] hit, memory backend", mem);
    row("HTTP GET, MISS (invalidated before each)", http_miss);
    row("HTTP GET, HIT (Redis)", http_hit);
    format!(
        "dashboard: query {} uncached vs {} from Redis ({:.0}x); GET /api/stats/dashboard {} MISS vs {} HIT ({:.0}x)",
        ms(uncached.p50),
        us(hit.p50),
        uncached.p50.as_secs_f64() / hit.p50.as_secs_f64(),
        ms(http_miss.p50),
        us(http_hit.p50),
        http_miss.p50.as_secs_f64() / http_hit.p50.as_secs_f64()
    )
}
