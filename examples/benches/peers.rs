//! `#[cached]` against its floor and its peer, on a private Redis.
//!
//! ```text
//! cargo bench -p cache-examples --features peers --bench peers
//! ```
//!
//! One run measures, side by side, and prints ratios:
//! 1. hits, on two values: a `Vec` of 50 small structs (about 5 KB of JSON)
//!    and one product struct (about 320 bytes of JSON). For each, latency
//!    (sequential), throughput (64 concurrent tasks) and the client's CPU
//!    time per hit (this process's user + system time over the throughput
//!    runs, from `getrusage`; Redis runs in its own process) of: raw `redis`
//!    GET + `serde_json` decode (the floor), raw GET + MessagePack decode
//!    (the floor of the `cached` crate's format), raw `MGET` of the value
//!    and three versions + decode (the floor of any read that checks versions
//!    in its round trip, as a hit without tags does), `#[cached]` without tags,
//!    with two tags, and with `codec = "msgpack"`, and the `cached` crate's
//!    Redis macro (`#[concurrent_cached]` with `AsyncRedisCache`, its 4.x
//!    name for `#[io_cached]`); then where a hit's CPU goes, without I/O;
//! 2. misses (on the 5 KB value): body + store, against raw GET + SET, with
//!    Redis commands and round trips per miss;
//! 3. a cold-key stampede: 256 concurrent callers on one key whose body
//!    takes 150 ms (a sleep, then the same on an 8-connection "database"),
//!    in one process and in two caches standing for two processes; then 40
//!    concurrent callers of a 100 ms query that fails (the convoy case);
//! 4. the products API's dashboard: uncached against cached, as a function
//!    and over HTTP.
//!
//! Contenders are measured in interleaved rounds, so that drift does not
//! favour whoever runs first, on a worker thread of a 2-worker runtime.
//! Every hit is checked to be one (the bodies count their runs), Redis
//! commands per call are counted from `INFO commandstats`, and `#[cached]`'s
//! round trips from its `Stats`.
//!
//! It starts its own `redis-server` on a free port (never the shared one)
//! and stops it at the end. The dashboard part uses the example's database
//! (`DB_PATH`, or the default path of `products-api`), seeding it first if
//! needed (about 5 s on 2 cores). A custom harness: a table with ratios is
//! the point, and criterion cannot measure a stampede. The `cached` crate
//! sits behind the `peers` feature: it needs a newer Rust than the
//! workspace (1.92, and 1.95 for its `r2d2` dependency's `parking_lot`).

use std::fmt::Display;
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
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{Barrier, Semaphore};

use cache_tests::RedisServer;
use cache_tests::fixtures::Product;

// --------------------------------------------------------------- the values

/// A cached value, built from a seed by the bodies.
trait Value: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    fn make(seed: u64) -> Self;
}

/// One of the 50 small structs of the 5 KB value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    id: u64,
    sku: String,
    name: String,
    price_cents: i64,
    in_stock: bool,
}

impl Value for Vec<Item> {
    fn make(seed: u64) -> Self {
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
}

/// The small value: one product, about 320 bytes of JSON.
impl Value for Product {
    fn make(seed: u64) -> Self {
        Product::sample(seed)
    }
}

/// The values measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    List,
    Product,
}

impl Shape {
    const ALL: [Shape; 2] = [Shape::List, Shape::Product];

    fn label(self) -> &'static str {
        match self {
            Shape::List => "5 KB value (Vec of 50 items)",
            Shape::Product => "small value (one product)",
        }
    }

    /// The part of its keys that tells the values apart (also the module of
    /// its contenders).
    fn key(self) -> &'static str {
        match self {
            Shape::List => "list",
            Shape::Product => "product",
        }
    }

    /// The `cached` crate's key prefix for this value.
    fn peer_prefix(self) -> String {
        format!("peer_{}", self.key())
    }

    /// A contender on this value.
    fn who(self, kind: Kind, conn: &MultiplexedConnection) -> Who {
        Who {
            kind,
            shape: self,
            conn: conn.clone(),
        }
    }

    /// Bytes of JSON and of (compact) MessagePack of the value.
    fn sizes(self) -> (usize, usize) {
        fn sizes<V: Value>() -> (usize, usize) {
            let v = V::make(1);
            let json = serde_json::to_vec(&v).expect("json").len();
            (json, rmp_serde::to_vec(&v).expect("msgpack").len())
        }
        match self {
            Shape::List => sizes::<Vec<Item>>(),
            Shape::Product => sizes::<Product>(),
        }
    }
}

/// The body of every contender: counts its runs, then builds the value.
static BODY_RUNS: AtomicU64 = AtomicU64::new(0);

fn body<V: Value>(id: u64) -> V {
    BODY_RUNS.fetch_add(1, Relaxed);
    V::make(id)
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

// --------------------------------------------------------------- the floors

/// A raw floor's encoding: JSON, or the `cached` crate's compact MessagePack.
fn encode<V: Value>(kind: Kind, v: &V) -> Vec<u8> {
    match kind {
        Kind::RawMsgpack => rmp_serde::to_vec(v).expect("msgpack"),
        _ => serde_json::to_vec(v).expect("json"),
    }
}

fn decode<V: Value>(kind: Kind, bytes: &[u8]) -> V {
    match kind {
        Kind::RawMsgpack => rmp_serde::from_slice(bytes).expect("msgpack"),
        _ => serde_json::from_slice(bytes).expect("json"),
    }
}

/// A raw floor's hit: GET, decode.
async fn raw_get<V: Value>(who: &Who, id: u64) -> V {
    let bytes: Option<Vec<u8>> = redis::cmd("GET")
        .arg(who.raw_key(id))
        .query_async(&mut who.conn.clone())
        .await
        .expect("GET");
    decode(who.kind, &bytes.expect("warmed"))
}

/// The version keys the `MGET` floor reads beside the value, as a hit
/// without tags reads its function's, its own and its namespace's version.
const RAW_VERSIONS: [&str; 3] = ["rawv:fn", "rawv:call", "rawv:all"];

/// The floor of any read that checks versions in the same round trip: one
/// `MGET` of the value and three 32-digit versions, then decode.
async fn raw_mget<V: Value>(who: &Who, id: u64) -> V {
    let mut values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
        .arg(who.raw_key(id))
        .arg(&RAW_VERSIONS[..])
        .query_async(&mut who.conn.clone())
        .await
        .expect("MGET");
    assert!(values.iter().all(Option::is_some), "warmed");
    decode(who.kind, &values.swap_remove(0).expect("warmed"))
}

/// A raw floor's miss, cache-aside: GET (nothing), compute, SET.
async fn raw_miss<V: Value>(who: &Who, id: u64) -> V {
    let mut conn = who.conn.clone();
    let key = who.raw_key(id);
    let found: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert!(found.is_none());
    let v = body(id);
    let () = redis::cmd("SET")
        .arg(&key)
        .arg(encode(who.kind, &v))
        .arg("PX")
        .arg(600_000)
        .query_async(&mut conn)
        .await
        .expect("SET");
    v
}

// ---------------------------------------- #[cached] and the peer, per value

/// The memory backend: what a hit costs without any I/O.
static MEMORY: OnceLock<Cache> = OnceLock::new();

/// A Redis cache with a local tier (`local_cache`).
static LOCAL: OnceLock<Cache> = OnceLock::new();

/// The `cached` crate's store for a function, under `prefix`.
async fn peer_cache<K, V>(prefix: String) -> AsyncRedisCache<K, V>
where
    K: Display + Send + Sync,
    V: Serialize + DeserializeOwned + Send,
{
    AsyncRedisCache::builder(prefix)
        .ttl(Duration::from_secs(600))
        .connection_string(redis_url())
        .build()
        .await
        .expect("cached crate: AsyncRedisCache")
}

/// The cached contenders on one value, in a module of their own (their keys
/// hold its path), and `call`, which runs any contender on it.
macro_rules! contenders {
    ($($module:ident: $value:ty = $shape:ident;)*) => {$(
        mod $module {
            use super::*;

            type V = $value;
            const SHAPE: Shape = Shape::$shape;

            #[cached(ttl = 600)]
            async fn ours(id: u64) -> V {
                body(id)
            }

            #[cached(ttl = 600, tags = ["items", "item:{id}"])]
            async fn ours_tagged(id: u64) -> V {
                body(id)
            }

            #[cached(ttl = 600, codec = "msgpack")]
            async fn ours_msgpack(id: u64) -> V {
                body(id)
            }

            #[cached(ttl = 600, lock = false)]
            async fn ours_unlocked(id: u64) -> V {
                body(id)
            }

            #[cached(ttl = 600, cache = MEMORY.get().expect("set in cpu_only"))]
            async fn ours_in_memory(id: u64) -> V {
                body(id)
            }

            #[cached(ttl = 600, tags = ["items", "item:{id}"], cache = LOCAL.get().expect("set in run"))]
            async fn ours_local(id: u64) -> V {
                body(id)
            }

            /// Off the local tier of a cache that has one: a Redis hit
            /// with its versions held in process (one `GET`).
            #[cached(ttl = 600, tags = ["items", "item:{id}"], local = false, cache = LOCAL.get().expect("set in run"))]
            async fn ours_held(id: u64) -> V {
                body(id)
            }

            #[cached::macros::cached(ttl_secs = 600)]
            async fn peer_local(id: u64) -> V {
                body(id)
            }

            #[concurrent_cached(
                ty = "AsyncRedisCache<u64, V>",
                create = r##"{ peer_cache(SHAPE.peer_prefix()).await }"##,
                map_error = r##"|e| PeerError(format!("{e:?}"))"##
            )]
            async fn peer(id: u64) -> Result<V, PeerError> {
                Ok(body(id))
            }

            /// A call of `who` that should hit, or with `miss` one on a key
            /// nobody has filled.
            pub(super) async fn call(who: &Who, id: u64, miss: bool) -> V {
                debug_assert_eq!(who.shape, SHAPE);
                match who.kind {
                    Kind::RawJson | Kind::RawMsgpack if miss => raw_miss(who, id).await,
                    Kind::RawJson | Kind::RawMsgpack => raw_get(who, id).await,
                    Kind::RawMget => raw_mget(who, id).await,
                    Kind::Ours => ours(id).await,
                    Kind::OursTagged => ours_tagged(id).await,
                    Kind::OursMsgpack => ours_msgpack(id).await,
                    Kind::OursUnlocked => ours_unlocked(id).await,
                    Kind::OursInMemory => ours_in_memory(id).await,
                    Kind::OursLocal => ours_local(id).await,
                    Kind::OursHeld => ours_held(id).await,
                    Kind::Peer => peer(id).await.expect("peer"),
                    Kind::PeerLocal => peer_local(id).await,
                }
            }
        }
    )*};
}

contenders! {
    list: Vec<Item> = List;
    product: Product = Product;
}

// ------------------------------------------------ #[cached] in the stampede

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

/// The failing database: a 100 ms query that returns an error.
async fn failing_body() -> String {
    BODY_RUNS.fetch_add(1, Relaxed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    "the database is down".to_owned()
}

#[cached(ttl = 600)]
async fn ours_failing(id: u64) -> Result<Vec<Item>, String> {
    let _ = id;
    Err(failing_body().await)
}

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
    ty = "AsyncRedisCache<String, Vec<Item>>",
    create = r##"{ peer_cache("peer_slow".to_owned()).await }"##,
    map_error = r##"|e| PeerError(format!("{e:?}"))"##,
    key = "String",
    convert = r##"{ format!("{id}:{pool}") }"##
)]
async fn peer_slow(id: u64, pool: bool) -> Result<Vec<Item>, PeerError> {
    Ok(slow_body(id, pool).await)
}

#[concurrent_cached(
    ty = "AsyncRedisCache<u64, Vec<Item>>",
    create = r##"{ peer_cache("peer_failing".to_owned()).await }"##,
    map_error = r##"|e| PeerError(format!("{e:?}"))"##
)]
async fn peer_failing(id: u64) -> Result<Vec<Item>, PeerError> {
    let _ = id;
    Err(PeerError(failing_body().await))
}

// ------------------------------------------------------------ contenders

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    RawJson,
    RawMsgpack,
    RawMget,
    Ours,
    OursTagged,
    OursMsgpack,
    OursUnlocked,
    OursInMemory,
    OursLocal,
    OursHeld,
    Peer,
    PeerLocal,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::RawJson => "raw redis GET + serde_json (floor)",
            Kind::RawMsgpack => "raw redis GET + MessagePack (cached crate's format)",
            Kind::RawMget => "raw redis MGET of the value + 3 versions + serde_json",
            Kind::Ours => "#[cached], no tags",
            Kind::OursTagged => "#[cached], two tags",
            Kind::OursMsgpack => "#[cached], codec = \"msgpack\"",
            Kind::OursUnlocked => "#[cached], no tags, lock = false",
            Kind::OursInMemory => "#[cached], memory backend",
            Kind::OursLocal => "#[cached], two tags, local tier (local_cache)",
            Kind::OursHeld => "#[cached], two tags, local = false, versions held (local_cache)",
            Kind::Peer => "cached 4.1 #[concurrent_cached] AsyncRedisCache",
            Kind::PeerLocal => "cached 4.1 #[cached(ttl_secs = 600)], in process only",
        }
    }

    /// Runs on the default `Cache`, whose stats count its round trips.
    fn on_default_cache(self) -> bool {
        matches!(
            self,
            Kind::Ours | Kind::OursTagged | Kind::OursMsgpack | Kind::OursUnlocked
        )
    }
}

/// A contender on a value (the raw floors use `conn`).
#[derive(Clone)]
struct Who {
    kind: Kind,
    shape: Shape,
    conn: MultiplexedConnection,
}

impl Who {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// The key of a raw floor.
    fn raw_key(&self, id: u64) -> String {
        let format = if self.kind == Kind::RawMsgpack {
            "rawmp"
        } else {
            "raw"
        };
        format!("{format}:{}:{id}", self.shape.key())
    }

    async fn run(&self, id: u64, miss: bool) {
        match self.shape {
            Shape::List => drop(black_box(list::call(self, id, miss).await)),
            Shape::Product => drop(black_box(product::call(self, id, miss).await)),
        }
    }

    /// A call that should hit.
    async fn call(&self, id: u64) {
        self.run(id, false).await;
    }

    /// Cache-aside on a key nobody has filled: look up, compute, store.
    async fn miss(&self, id: u64) {
        self.run(id, true).await;
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

async fn timed<T, F: Future<Output = T>>(f: F) -> Duration {
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

/// CPU time of this process so far, user + system, all threads: the
/// client's side of every call (Redis runs in its own process).
fn cpu_time() -> Duration {
    // SAFETY: `getrusage` only writes the `rusage` it is given, and an
    // all-zero `rusage` (integers and `timeval`s) is a valid value.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(
            libc::getrusage(libc::RUSAGE_SELF, &mut usage),
            0,
            "getrusage"
        );
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
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

/// The hit contenders, in the order of the tables.
const HIT_KINDS: [Kind; 10] = [
    Kind::RawJson,
    Kind::RawMsgpack,
    Kind::RawMget,
    Kind::Ours,
    Kind::OursTagged,
    Kind::OursHeld,
    Kind::OursMsgpack,
    Kind::Peer,
    Kind::OursLocal,
    Kind::PeerLocal,
];

struct HitRow {
    kind: Kind,
    lat: Lat,
    cmds: f64,
    ops: f64,
    /// Client CPU per call in the throughput runs, in µs.
    cpu_us: f64,
}

/// Sequential hit latencies of every contender, measured in interleaved
/// rounds (rotating the order) so that drift (CPU frequency, allocator,
/// Redis) does not favour whoever runs first; then throughput, and the
/// client's CPU per call, the same way.
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
    let mut cpu = vec![(Duration::ZERO, 0u64); n];
    for round in 0..THROUGHPUT_ROUNDS {
        for k in 0..n {
            let i = (k + round) % n;
            let c0 = commands(admin).await;
            let t = throughput(&who[i]).await;
            let per_call = (commands(admin).await - c0 - 1) as f64 / t.calls as f64;
            eprintln!(
                "throughput {} ({}): {} calls, {per_call:.2} Redis cmds/call, {:.1} µs client CPU/call",
                who[i].name(),
                who[i].shape.key(),
                t.calls,
                t.cpu.as_secs_f64() * 1e6 / t.calls as f64
            );
            ops[i] += t.per_sec / THROUGHPUT_ROUNDS as f64;
            cpu[i].0 += t.cpu;
            cpu[i].1 += t.calls;
        }
    }
    assert_eq!(BODY_RUNS.load(Relaxed), runs, "a hit ran the body");
    who.iter()
        .zip(lats)
        .zip(cmds)
        .zip(ops.into_iter().zip(cpu))
        .map(|(((w, l), c), (ops, (cpu, calls)))| HitRow {
            kind: w.kind,
            lat: lat(l),
            cmds: c as f64 / f64::from(HIT_CALLS),
            ops,
            cpu_us: cpu.as_secs_f64() * 1e6 / calls as f64,
        })
        .collect()
}

struct Throughput {
    calls: u64,
    per_sec: f64,
    /// This process's CPU time over the run.
    cpu: Duration,
}

/// `TASKS` tasks calling in a loop for `THROUGHPUT_FOR`.
async fn throughput(who: &Who) -> Throughput {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(TASKS + 1));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (who, stop, start) = (who.clone(), stop.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    who.call(1).await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    start.wait().await;
    let (t, cpu) = (Instant::now(), cpu_time());
    tokio::time::sleep(THROUGHPUT_FOR).await;
    stop.store(true, Relaxed);
    let mut calls = 0;
    for task in tasks {
        calls += task.await.expect("task");
    }
    Throughput {
        calls,
        per_sec: calls as f64 / t.elapsed().as_secs_f64(),
        cpu: cpu_time() - cpu,
    }
}

/// Measures the hits on one value and prints its table; returns the rows.
async fn hit_table(
    shape: Shape,
    conn: &MultiplexedConnection,
    admin: &mut MultiplexedConnection,
) -> Vec<HitRow> {
    let who: Vec<Who> = HIT_KINDS.iter().map(|&k| shape.who(k, conn)).collect();
    let rows = hits(&who, admin).await;
    let floor = row(&rows, Kind::RawJson);
    let (json, msgpack) = shape.sizes();
    println!();
    println!(
        "### {}: {json} bytes of JSON, {msgpack} of MessagePack",
        shape.label()
    );
    println!();
    println!(
        "| contender | p50 | p99 | Redis cmds/call | 64 tasks: calls/s | throughput vs floor | client CPU/hit | CPU over floor |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1} | {:.0} | {:.2}x | {:.1} µs | {:+.1} µs |",
            r.kind.name(),
            us(r.lat.p50),
            us(r.lat.p99),
            r.cmds,
            r.ops,
            r.ops / floor.ops,
            r.cpu_us,
            r.cpu_us - floor.cpu_us
        );
    }
    rows
}

fn row(rows: &[HitRow], kind: Kind) -> &HitRow {
    rows.iter().find(|r| r.kind == kind).expect("measured")
}

/// The ratios that matter on one value, one line each; returns the headline.
fn hit_ratios(shape: Shape, rows: &[HitRow]) -> String {
    let [
        floor,
        mget,
        ours,
        tagged,
        msgpack,
        peer,
        local,
        peer_local,
        held,
    ] = [
        Kind::RawJson,
        Kind::RawMget,
        Kind::Ours,
        Kind::OursTagged,
        Kind::OursMsgpack,
        Kind::Peer,
        Kind::OursLocal,
        Kind::PeerLocal,
        Kind::OursHeld,
    ]
    .map(|k| row(rows, k));
    let vs = |a: &HitRow, b: &HitRow| {
        format!(
            "throughput {:.2}x (p50 {:.2}x)",
            a.ops / b.ops,
            a.lat.p50.as_secs_f64() / b.lat.p50.as_secs_f64()
        )
    };
    let over = |r: &HitRow| format!("{:+.1} µs", r.cpu_us - floor.cpu_us);
    let label = shape.label();
    println!(
        "- {label}: #[cached] (no tags) / raw GET + serde_json: {}",
        vs(ours, floor)
    );
    println!(
        "- {label}: #[cached], two tags / raw GET + serde_json: {}",
        vs(tagged, floor)
    );
    println!(
        "- {label}: raw MGET of 4 keys / raw GET: {}; #[cached] (no tags, 4 keys) / raw MGET of 4 keys: {}, client CPU {:+.1} µs",
        vs(mget, floor),
        vs(ours, mget),
        ours.cpu_us - mget.cpu_us
    );
    println!(
        "- {label}: #[cached], codec = \"msgpack\" / cached crate: {}",
        vs(msgpack, peer)
    );
    println!(
        "- {label}: #[cached], two tags, versions held / raw GET + serde_json: {}; / cached crate: {}; / #[cached], two tags (6 keys): {}, client CPU {:.1} µs",
        vs(held, floor),
        vs(held, peer),
        vs(held, tagged),
        held.cpu_us
    );
    println!(
        "- {label}: client CPU per hit over raw GET + serde_json ({:.1} µs): no tags {}, two tags {}, msgpack {}, cached crate {}",
        floor.cpu_us,
        over(ours),
        over(tagged),
        over(msgpack),
        over(peer)
    );
    println!(
        "- {label}: local tier / #[cached] Redis hit (two tags): {}, client CPU {:.2} µs vs {:.1} µs per hit; local tier / cached crate in process: {}; local tier / cached crate on Redis: {}",
        vs(local, tagged),
        local.cpu_us,
        tagged.cpu_us,
        vs(local, peer_local),
        vs(local, peer)
    );
    format!(
        "hit, {label}: #[cached] vs raw GET + serde_json: p50 {:.2}x, 64-task throughput {:.2}x, client CPU {} per hit; codec = \"msgpack\" vs the cached crate: throughput {:.2}x; local tier vs a Redis hit: throughput {:.1}x, p50 {}, {:.2} µs CPU per hit",
        ours.lat.p50.as_secs_f64() / floor.lat.p50.as_secs_f64(),
        ours.ops / floor.ops,
        over(ours),
        msgpack.ops / peer.ops,
        local.ops / tagged.ops,
        us(local.lat.p50),
        local.cpu_us
    )
}

struct MissRow {
    lat: Lat,
    cmds: f64,
    /// Round trips per miss: `#[cached]`'s from its stats, the raw floor's
    /// 2 (GET, SET); unknown for the `cached` crate.
    round_trips: Option<f64>,
}

/// Sequential misses (a new key each call) of every contender, in
/// interleaved rounds.
async fn misses(who: &[Who], admin: &mut MultiplexedConnection, cache: &Cache) -> Vec<MissRow> {
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
    let mut round_trips = vec![0u64; n];
    let per_round = MISS_CALLS / HIT_ROUNDS as u64;
    for round in 0..HIT_ROUNDS {
        for k in 0..n {
            let i = (k + round) % n;
            let runs = BODY_RUNS.load(Relaxed);
            let c0 = commands(admin).await;
            let r0 = cache.stats().round_trips;
            for _ in 0..per_round {
                lats[i].push(timed(who[i].miss(next[i])).await);
                next[i] += 1;
            }
            round_trips[i] += cache.stats().round_trips - r0;
            cmds[i] += commands(admin).await - c0 - 1;
            assert_eq!(
                BODY_RUNS.load(Relaxed) - runs,
                per_round,
                "{}: every call must miss",
                who[i].name()
            );
        }
    }
    let calls = (per_round * HIT_ROUNDS as u64) as f64;
    who.iter()
        .zip(lats)
        .zip(cmds.into_iter().zip(round_trips))
        .map(|((w, l), (c, rt))| MissRow {
            lat: lat(l),
            cmds: c as f64 / calls,
            round_trips: match w.kind {
                k if k.on_default_cache() => Some(rt as f64 / calls),
                Kind::RawJson | Kind::RawMsgpack => Some(2.0),
                _ => None,
            },
        })
        .collect()
}

struct StampedeRow {
    name: String,
    computations: Vec<u64>,
    lat: Lat,
    max: Duration,
}

impl StampedeRow {
    /// The table cells after the name: computations per round, p50, p99,
    /// max.
    fn cells(&self) -> String {
        let computations: Vec<String> = self.computations.iter().map(u64::to_string).collect();
        format!(
            "{} | {} | {} | {}",
            computations.join(", "),
            ms(self.lat.p50),
            ms(self.lat.p99),
            ms(self.max)
        )
    }
}

#[derive(Clone, Copy)]
enum Herd {
    Ours,
    OursTwoProcesses,
    Peer,
    /// The failing query, 40 callers.
    OursFailing,
    PeerFailing,
}

impl Herd {
    fn callers(self) -> usize {
        match self {
            Herd::OursFailing | Herd::PeerFailing => FAILING_CALLERS,
            _ => STAMPEDE,
        }
    }
}

/// Callers of the failing query at once.
const FAILING_CALLERS: usize = 40;

async fn stampede(name: &str, herd: Herd, pool: bool, first_id: u64) -> StampedeRow {
    let mut computations = Vec::new();
    let mut all = Vec::new();
    for round in 0..STAMPEDE_ROUNDS {
        let id = first_id + round;
        let runs = BODY_RUNS.load(Relaxed);
        let start = Arc::new(Barrier::new(herd.callers()));
        let tasks: Vec<_> = (0..herd.callers())
            .map(|caller| {
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    let t = Instant::now();
                    let v = match herd {
                        Herd::Ours => ours_slow(id, pool).await.len(),
                        Herd::OursTwoProcesses => {
                            let cache = &PROCESSES.get().expect("set in run")[caller % 2];
                            ours_slow_on(cache, id, pool).await.len()
                        }
                        Herd::Peer => peer_slow(id, pool).await.expect("peer").len(),
                        Herd::OursFailing => ours_failing(id).await.expect_err("fails").len(),
                        Herd::PeerFailing => peer_failing(id).await.expect_err("fails").0.len(),
                    };
                    assert!(v > 0);
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

/// Time per call of `f`, called `n` times.
fn per_call<T>(n: u32, mut f: impl FnMut() -> T) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    t.elapsed() / n
}

/// Decoding the value from JSON, compact MessagePack (the `cached` crate's)
/// and MessagePack with field names (`#[cached(codec = "msgpack")]`).
fn decode_costs<V: Value>(n: u32) -> [Duration; 3] {
    let v = V::make(1);
    let json = serde_json::to_vec(&v).expect("json");
    let compact = rmp_serde::to_vec(&v).expect("msgpack");
    let named = rmp_serde::to_vec_named(&v).expect("msgpack");
    [
        per_call(n, || {
            serde_json::from_slice::<V>(black_box(&json)).expect("json")
        }),
        per_call(n, || {
            rmp_serde::from_slice::<V>(black_box(&compact)).expect("msgpack")
        }),
        per_call(n, || {
            rmp_serde::from_slice::<V>(black_box(&named)).expect("msgpack")
        }),
    ]
}

/// The length of the value stored under the first key matching `pattern`.
async fn stored(admin: &mut MultiplexedConnection, pattern: &str) -> u64 {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(admin)
        .await
        .expect("KEYS");
    let key = keys
        .first()
        .unwrap_or_else(|| panic!("no key matches {pattern}"));
    redis::cmd("STRLEN")
        .arg(key)
        .query_async(admin)
        .await
        .expect("STRLEN")
}

/// Where the CPU of a hit goes, on each value: decoding, and the cache's
/// own work, without I/O.
async fn cpu_only(conn: &MultiplexedConnection, admin: &mut MultiplexedConnection) {
    const N: u32 = 20_000;
    const WORK: [&str; 4] = [
        "serde_json decode (raw floor, #[cached])",
        "rmp_serde decode, compact (cached crate)",
        "rmp_serde decode, with field names (#[cached], codec = \"msgpack\")",
        "#[cached] hit on the memory backend (key digest, envelope, decode)",
    ];
    MEMORY
        .set(Cache::builder().memory().build().expect("memory cache"))
        .expect("once");
    let mut columns = Vec::new();
    for shape in Shape::ALL {
        let [json, compact, named] = match shape {
            Shape::List => decode_costs::<Vec<Item>>(N),
            Shape::Product => decode_costs::<Product>(N),
        };
        let memory = shape.who(Kind::OursInMemory, conn);
        memory.call(1).await;
        let t = Instant::now();
        for _ in 0..N {
            memory.call(1).await;
        }
        let memory_hit = t.elapsed() / N;
        let key = shape.key();
        let patterns = [
            format!("raw:{key}:1"),
            format!("*{}:1", shape.peer_prefix()),
            format!("bench:*::{key}::ours_msgpack:*"),
            format!("bench:*::{key}::ours:*"),
        ];
        let mut cells = Vec::new();
        for (time, pattern) in [json, compact, named, memory_hit].into_iter().zip(patterns) {
            cells.push(format!("{}, {} B", us(time), stored(admin, &pattern).await));
        }
        columns.push(cells);
    }
    println!();
    println!(
        "### Where a hit's CPU goes (no I/O, one task, {N} calls; per call, and bytes stored in Redis)"
    );
    println!();
    println!(
        "| work | {} | {} |",
        Shape::List.label(),
        Shape::Product.label()
    );
    println!("|---|---:|---:|");
    for (i, work) in WORK.iter().enumerate() {
        println!("| {work} | {} | {} |", columns[0][i], columns[1][i]);
    }
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
        cache_tests::server_identity(&mut server.conn()),
        server.url()
    );
    println!("- tokio multi-thread runtime, 2 workers; client and server share the cores");
    for shape in Shape::ALL {
        let (json, msgpack) = shape.sizes();
        println!(
            "- {}: {json} bytes of JSON, {msgpack} of MessagePack",
            shape.label()
        );
    }
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
    let local = Cache::builder()
        .redis(&url)
        .namespace("bench-local")
        .op_timeout(Duration::from_secs(1))
        .local_cache(64 << 20)
        .build()
        .expect("cache");
    LOCAL.set(local.clone()).expect("once");
    // The first call starts the backplane subscription; hits are local
    // once it is confirmed.
    while !local.local_ready() {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Shape::Product.who(Kind::OursLocal, &raw).call(0).await;
    }

    // Fill the floors' keys the way cache-aside would.
    for version in RAW_VERSIONS {
        let () = redis::cmd("SET")
            .arg(version)
            .arg("0123456789abcdef0123456789abcdef")
            .query_async(&mut raw.clone())
            .await
            .expect("SET");
    }
    for shape in Shape::ALL {
        for kind in [Kind::RawJson, Kind::RawMsgpack] {
            shape.who(kind, &raw).miss(1).await;
        }
    }

    // ---- 1. hits
    println!("## Hits (same key, warm)");
    let mut tables = Vec::new();
    for shape in Shape::ALL {
        tables.push((shape, hit_table(shape, &raw, &mut admin).await));
    }
    println!();
    println!("### Ratios");
    println!();
    let mut headline: Vec<String> = tables
        .iter()
        .map(|(shape, rows)| hit_ratios(*shape, rows))
        .collect();

    cpu_only(&raw, &mut admin).await;

    // ---- 2. misses
    println!();
    println!("## Misses (body + store, a new key each call, sequential, 5 KB value)");
    println!();
    println!(
        "| contender | p50 | p99 | mean | Redis cmds/call | round trips/miss | p50 vs raw GET+SET |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let who = [
        Kind::RawJson,
        Kind::Ours,
        Kind::OursUnlocked,
        Kind::OursTagged,
        Kind::OursMsgpack,
        Kind::Peer,
    ]
    .map(|kind| Shape::List.who(kind, &raw));
    let results = misses(&who, &mut admin, &cache).await;
    let f = results[0].lat.p50;
    headline.push(format!(
        "miss (body + store) vs raw GET + SET: p50 {:.2}x ({:.2}x with lock = false)",
        results[1].lat.p50.as_secs_f64() / f.as_secs_f64(),
        results[2].lat.p50.as_secs_f64() / f.as_secs_f64()
    ));
    for (w, r) in who.iter().zip(results) {
        let name = if w.kind == Kind::RawJson {
            "raw redis GET + SET"
        } else {
            w.name()
        };
        println!(
            "| {name} | {} | {} | {} | {:.1} | {} | {:.2}x |",
            us(r.lat.p50),
            us(r.lat.p99),
            us(r.lat.mean),
            r.cmds,
            r.round_trips
                .map_or_else(|| "n/a".to_owned(), |rt| format!("{rt:.1}")),
            r.lat.p50.as_secs_f64() / f.as_secs_f64()
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
        println!("| {} | {what} | {} |", r.name, r.cells());
    }

    println!();
    println!(
        "## Failing database: {FAILING_CALLERS} concurrent callers, a 100 ms query that fails ({STAMPEDE_ROUNDS} rounds)"
    );
    println!();
    println!("| contender | runs of the query per round | p50 | p99 | max |");
    println!("|---|---|---:|---:|---:|");
    let mut failing = Vec::new();
    for (i, (name, herd)) in [
        ("#[cached]", Herd::OursFailing),
        ("cached 4.1 #[concurrent_cached]", Herd::PeerFailing),
    ]
    .into_iter()
    .enumerate()
    {
        let r = stampede(name, herd, false, 9_500_000 + 10 * i as u64).await;
        println!("| {} | {} |", r.name, r.cells());
        failing.push(r.max);
    }
    headline.push(format!(
        "failing database, {FAILING_CALLERS} callers of a 100 ms failing query: the last answered after {} (the cached crate: {})",
        ms(failing[0]),
        ms(failing[1])
    ));

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
        "(#[cached] cache counters over the run: {} hits, {} misses, {} coalesced, {} lease waits, {} round trips, {} errors, {} timeouts)",
        s.hits, s.misses, s.coalesced, s.lease_waits, s.round_trips, s.errors, s.timeouts
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
