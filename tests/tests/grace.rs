//! `grace`, `timeout` and `refresh_ahead`: serving the last good value
//! through expiry and failures, one refresh per key, and never a value that
//! was invalidated. On both backends, with the refresh in a task of its own
//! (a function whose arguments move) and in the caller (a `&self` method).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::versioned_reads::{set, spawn_workers, totals};
use cache_tests::{backends, no_hang, redis_cache, shared_url, unique_namespace};

/// The database: a version to read, a switch to fail, a delay per read.
#[derive(Default)]
struct Db {
    version: AtomicU64,
    runs: AtomicU64,
    fail: AtomicBool,
    delay_ms: AtomicU64,
}

impl Db {
    fn new() -> Arc<Self> {
        let db = Db::default();
        db.version.store(1, Ordering::SeqCst);
        Arc::new(db)
    }

    async fn read(&self, id: u64) -> Result<u64, String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        // Reads, then takes its time to answer: a write and an
        // invalidation can come in between.
        let version = self.version.load(Ordering::SeqCst);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err("database down".into());
        }
        Ok(id * 1000 + version)
    }

    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }
}

// Owned arguments: the refresh runs in a task of its own.
#[cached(cache = cache, skip(cache, db), ttl = 1, grace = "1h", tags = ["prices"])]
async fn price(cache: Cache, db: Arc<Db>, id: u64) -> Result<u64, String> {
    db.read(id).await
}

#[cached(cache = cache, skip(cache, db), ttl = 1, grace = "1h", timeout = "100ms")]
async fn price_within(cache: Cache, db: Arc<Db>, id: u64) -> Result<u64, String> {
    db.read(id).await
}

#[cached(cache = cache, skip(cache, db), ttl = 1)]
async fn price_without_grace(cache: Cache, db: Arc<Db>, id: u64) -> Result<u64, String> {
    db.read(id).await
}

#[cached(cache = cache, skip(cache, db), ttl = 2, refresh_ahead = true)]
async fn hot(cache: Cache, db: Arc<Db>, id: u64) -> Result<u64, String> {
    db.read(id).await
}

/// A `&self` method: the refresh runs in the caller that takes it.
struct Api {
    cache: Cache,
    db: Arc<Db>,
}

impl Api {
    #[cached(cache = self.cache, ttl = 1, grace = "1h", tags = ["prices"])]
    async fn price(&self, id: u64) -> Result<u64, String> {
        self.db.read(id).await
    }
}

async fn past_ttl() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_value_is_served_while_one_refresh_runs_in_the_background() {
    for cache in backends("grace-swr") {
        let name = cache.backend_name();
        let db = Db::new();
        assert_eq!(price(cache.clone(), db.clone(), 1).await, Ok(1001));
        db.version.store(2, Ordering::SeqCst);
        db.delay_ms.store(300, Ordering::SeqCst);
        past_ttl().await;
        // Every caller gets the old value at once; one refresh runs.
        let calls = (0..20).map(|_| price(cache.clone(), db.clone(), 1));
        let got = no_hang(1, "grace values", futures_join(calls)).await;
        assert!(got.iter().all(|v| *v == Ok(1001)), "{name}: {got:?}");
        // The refresh lands; then the new value is served.
        let mut fresh = false;
        for _ in 0..100 {
            if price(cache.clone(), db.clone(), 1).await == Ok(1002) {
                fresh = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(fresh, "{name}: {:?}", cache.stats());
        let s = cache.stats();
        assert_eq!(db.runs(), 2, "{name}: one refresh: {s:?}");
        assert_eq!(s.refreshes, 1, "{name}: {s:?}");
        assert!(s.grace_hits >= 20, "{name}: {s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_body_serves_the_grace_value_and_without_grace_fails() {
    for cache in backends("grace-error") {
        let name = cache.backend_name();
        let db = Db::new();
        let api = Api {
            cache: cache.clone(),
            db: db.clone(),
        };
        assert_eq!(price(cache.clone(), db.clone(), 2).await, Ok(2001));
        assert_eq!(api.price(3).await, Ok(3001));
        assert_eq!(
            price_without_grace(cache.clone(), db.clone(), 4).await,
            Ok(4001)
        );
        db.fail.store(true, Ordering::SeqCst);
        past_ttl().await;
        for _ in 0..5 {
            // In the background: the caller never sees the failure.
            assert_eq!(
                price(cache.clone(), db.clone(), 2).await,
                Ok(2001),
                "{name}"
            );
            // In the caller: its refresh fails, it gets the grace value.
            assert_eq!(api.price(3).await, Ok(3001), "{name}");
            // Without grace, the failure is the caller's.
            assert!(
                price_without_grace(cache.clone(), db.clone(), 4)
                    .await
                    .is_err()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The background refresh may still be on its way on a loaded
        // machine: wait for it (a count, not a time).
        no_hang(5, "the background refresh", async {
            while cache.stats().grace_on_error < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        let s = cache.stats();
        // One failed refresh per key: the next waits a second, serving the
        // grace value meanwhile (the database is not hammered).
        assert_eq!(s.grace_on_error, 2, "{name}: {s:?}");
        assert_eq!(db.runs(), 3 + 2 + 5, "{name}: {s:?}");
        // The database comes back: the next refresh replaces the value.
        db.fail.store(false, Ordering::SeqCst);
        db.version.store(2, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(api.price(3).await, Ok(3002), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_refresh_serves_the_grace_value() {
    struct Panicky {
        cache: Cache,
        panic: AtomicBool,
    }
    impl Panicky {
        #[cached(cache = self.cache, ttl = 1, grace = "1h")]
        async fn value(&self) -> u64 {
            assert!(!self.panic.load(Ordering::SeqCst), "the body panics");
            7
        }
    }
    for cache in backends("grace-panic") {
        let p = Panicky {
            cache: cache.clone(),
            panic: AtomicBool::new(false),
        };
        assert_eq!(p.value().await, 7);
        p.panic.store(true, Ordering::SeqCst);
        past_ttl().await;
        assert_eq!(p.value().await, 7);
        assert_eq!(cache.stats().grace_on_error, 1);
    }
}

/// Invalidation ends grace: after `invalidate_tag` returns, no call gets
/// the old value, whether it had expired or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_ends_grace() {
    for cache in backends("grace-invalidate") {
        let name = cache.backend_name();
        let db = Db::new();
        let api = Api {
            cache: cache.clone(),
            db: db.clone(),
        };
        assert_eq!(price(cache.clone(), db.clone(), 5).await, Ok(5001));
        assert_eq!(api.price(6).await, Ok(6001));
        past_ttl().await;
        db.version.store(2, Ordering::SeqCst);
        cache.invalidate_tag("prices").await.unwrap();
        assert_eq!(
            price(cache.clone(), db.clone(), 5).await,
            Ok(5002),
            "{name}"
        );
        assert_eq!(api.price(6).await, Ok(6002), "{name}");
        // The same with the whole namespace, on values still fresh.
        db.version.store(3, Ordering::SeqCst);
        cache.invalidate_all().await.unwrap();
        assert_eq!(
            price(cache.clone(), db.clone(), 5).await,
            Ok(5003),
            "{name}"
        );
        assert_eq!(api.price(6).await, Ok(6003), "{name}");
    }
}

/// The stale-set race with grace on, across two caches sharing Redis (as
/// two processes): a refresh that read the database before an invalidation
/// never makes its value served after it, and neither does the grace value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_grace_value_survives_an_invalidation_across_processes() {
    let namespace = unique_namespace("grace-race");
    let (a, b) = (
        redis_cache(&shared_url(), &namespace),
        redis_cache(&shared_url(), &namespace),
    );
    let db = Db::new();
    let mut stale = 0;
    for round in 0..20u64 {
        db.delay_ms.store(0, Ordering::SeqCst);
        // Fill, let it expire: the next call has a grace value and
        // starts a refresh (slow) in the background.
        price(a.clone(), db.clone(), 9).await.unwrap();
        past_ttl_short().await;
        db.delay_ms.store(1 + round % 7, Ordering::SeqCst);
        let _ = price(a.clone(), db.clone(), 9).await;
        // The database changes and is invalidated while that refresh runs.
        tokio::time::sleep(Duration::from_millis(round % 5)).await;
        let new = db.version.fetch_add(1, Ordering::SeqCst) + 1;
        b.invalidate_tag("prices").await.unwrap();
        let seen = price(b.clone(), db.clone(), 9).await.unwrap();
        if seen != 9000 + new {
            stale += 1;
            eprintln!("round {round}: served {seen} after version {new} was invalidated");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stale, 0);
}

/// Invalidation ends grace across processes, under load: three processes
/// read a key whose values keep expiring into grace and being refreshed,
/// while this one writes the database and invalidates the tag, again and
/// again. No read that started after an invalidation returned gets a value
/// from before it.
#[test]
fn invalidation_ends_grace_across_processes() {
    let server = cache_tests::RedisServer::start();
    let namespace = unique_namespace("grace-xproc");
    let mut conn = server.conn();
    set(&mut conn, &namespace, "db", 1);
    set(&mut conn, &namespace, "invalidated", 0);
    let workers = spawn_workers(
        env!("CARGO_BIN_EXE_grace_worker"),
        &server.url(),
        &namespace,
        3,
        6,
        6,
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cache = redis_cache(&server.url(), &namespace);
    let started = std::time::Instant::now();
    let mut version = 1;
    while started.elapsed() < Duration::from_millis(5500) {
        std::thread::sleep(Duration::from_millis(150));
        version += 1;
        set(&mut conn, &namespace, "db", version);
        runtime.block_on(cache.invalidate_tag("prices")).unwrap();
        set(&mut conn, &namespace, "invalidated", version);
    }
    let [calls, stale] = totals(workers, ["calls", "stale"]);
    assert!(
        version > 20 && calls > 300,
        "{version} invalidations, {calls} reads"
    );
    assert_eq!(stale, 0, "stale reads in {calls}");
}

async fn past_ttl_short() {
    // TTLs are whole seconds: the shortest is 1 s.
    tokio::time::sleep(Duration::from_millis(1010)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_bounds_the_wait_for_a_refresh() {
    for cache in backends("grace-timeout") {
        let name = cache.backend_name();
        let db = Db::new();
        assert_eq!(price_within(cache.clone(), db.clone(), 1).await, Ok(1001));
        // A refresh that takes long: the caller gets the grace value after
        // the timeout, and the refresh fills the cache anyway.
        db.version.store(2, Ordering::SeqCst);
        db.delay_ms.store(700, Ordering::SeqCst);
        past_ttl().await;
        let got = no_hang(1, "the timeout", price_within(cache.clone(), db.clone(), 1)).await;
        assert_eq!(got, Ok(1001), "{name}");
        assert_eq!(cache.stats().body_timeouts, 1, "{name}");
        tokio::time::sleep(Duration::from_millis(800)).await;
        db.delay_ms.store(0, Ordering::SeqCst);
        assert_eq!(
            price_within(cache.clone(), db.clone(), 1).await,
            Ok(1002),
            "{name}"
        );
        assert_eq!(db.runs(), 2, "{name}: the refresh was not cut short");
        // A quick refresh: the caller gets the new value.
        db.version.store(3, Ordering::SeqCst);
        past_ttl().await;
        assert_eq!(
            price_within(cache.clone(), db.clone(), 1).await,
            Ok(1003),
            "{name}"
        );
    }
}

/// Steady reads of a hot key: refreshed before it expires, so that after
/// the first call no caller ever misses or waits for the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_keeps_a_hot_key_from_expiring() {
    for cache in backends("refresh-ahead") {
        let name = cache.backend_name();
        let db = Db::new();
        db.delay_ms.store(200, Ordering::SeqCst);
        hot(cache.clone(), db.clone(), 1).await.unwrap();
        let start = tokio::time::Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            // A call never waits for the 200 ms body.
            no_hang(1, "a hot read", hot(cache.clone(), db.clone(), 1))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let s = cache.stats();
        assert_eq!(s.misses, 1, "{name}: only the first call missed: {s:?}");
        assert!(s.refreshes >= 2, "{name}: refreshed ahead: {s:?}");
        assert!(
            s.refreshes <= 10,
            "{name}: about one refresh per TTL, not per call: {s:?}"
        );
    }
}

async fn futures_join<F>(calls: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = calls.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// A row that may be deleted: `None` once it is gone.
#[derive(Default)]
struct Rows {
    gone: AtomicBool,
    runs: AtomicU64,
}

struct RowRepo {
    cache: Cache,
    rows: Arc<Rows>,
}

impl RowRepo {
    // A `&self` method: the caller that finds the value in grace refreshes.
    #[cached(cache = &self.cache, ttl = 1, grace = "1h")]
    async fn row(&self, id: u64) -> Option<String> {
        self.rows.runs.fetch_add(1, Ordering::SeqCst);
        (!self.rows.gone.load(Ordering::SeqCst)).then(|| format!("row {id}"))
    }
}

// Owned arguments: the refresh runs in the background.
#[cached(cache = cache, skip(cache, rows), ttl = 1, grace = "1h")]
async fn row_detached(cache: Cache, rows: Arc<Rows>, id: u64) -> Option<String> {
    rows.runs.fetch_add(1, Ordering::SeqCst);
    (!rows.gone.load(Ordering::SeqCst)).then(|| format!("row {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_finds_the_row_gone_is_an_answer_not_a_failure() {
    for cache in backends("grace-none") {
        let rows = Arc::new(Rows::default());
        let repo = RowRepo {
            cache: cache.clone(),
            rows: rows.clone(),
        };
        assert_eq!(repo.row(1).await.as_deref(), Some("row 1"));
        rows.gone.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1300)).await;
        // The refreshing caller gets the answer, and nobody the old row.
        for call in 0..6 {
            assert_eq!(repo.row(1).await, None, "call {call} after the row went");
        }

        let rows = Arc::new(Rows::default());
        let detached = |rows: &Arc<Rows>| row_detached(cache.clone(), rows.clone(), 1);
        assert_eq!(detached(&rows).await.as_deref(), Some("row 1"));
        rows.gone.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1300)).await;
        // This caller gets the grace value while the refresh runs; once it
        // has run, the old row is not served again.
        detached(&rows).await;
        no_hang(10, "the background refresh", async {
            while rows.runs.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        no_hang(10, "the row to read as gone", async {
            while detached(&rows).await.is_some() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        for call in 0..6 {
            assert_eq!(detached(&rows).await, None, "call {call} after the refresh");
        }
    }
}

struct Prices {
    cache: Cache,
    db: Arc<Db>,
}

impl Prices {
    #[cached(cache = &self.cache, ttl = 2, grace = "1h")]
    async fn price(&self, id: u64) -> Result<u64, String> {
        self.db.read(id).await
    }
}

/// Moves the freshness an entry's header records by `shift_ms`, as a
/// writer whose clock is that far off would have written it (its TTL in
/// Redis kept).
fn skew_writer(conn: &mut redis::Connection, namespace: &str, shift_ms: i64) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query(conn)
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let entry: Vec<u8> = redis::cmd("GET").arg(&keys[0]).query(conn).unwrap();
    let tilde = entry
        .iter()
        .position(|&b| b == b'~')
        .expect("a freshness record");
    let slash = tilde + entry[tilde..].iter().position(|&b| b == b'/').unwrap();
    let until: i64 = std::str::from_utf8(&entry[tilde + 1..slash])
        .unwrap()
        .parse()
        .unwrap();
    let mut skewed = entry[..=tilde].to_vec();
    skewed.extend_from_slice((until + shift_ms).to_string().as_bytes());
    skewed.extend_from_slice(&entry[slash..]);
    let _: () = redis::cmd("SET")
        .arg(&keys[0])
        .arg(skewed)
        .arg("KEEPTTL")
        .query(conn)
        .unwrap();
}

/// Freshness is the server's: a writer whose clock is a minute behind
/// does not make every reader refresh, and one a minute ahead does not
/// keep a value fresh past its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshness_does_not_depend_on_the_writers_clock() {
    let mut conn = redis::Client::open(shared_url())
        .unwrap()
        .get_connection()
        .unwrap();

    let namespace = unique_namespace("skew-behind");
    let prices = Prices {
        cache: redis_cache(&shared_url(), &namespace),
        db: Db::new(),
    };
    assert_eq!(prices.price(1).await, Ok(1001));
    skew_writer(&mut conn, &namespace, -60_000);
    for _ in 0..3 {
        assert_eq!(prices.price(1).await, Ok(1001));
    }
    assert_eq!(prices.db.runs(), 1, "a fresh value was refreshed");

    let namespace = unique_namespace("skew-ahead");
    let prices = Prices {
        cache: redis_cache(&shared_url(), &namespace),
        db: Db::new(),
    };
    assert_eq!(prices.price(1).await, Ok(1001));
    skew_writer(&mut conn, &namespace, 60_000);
    prices.db.version.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    // Past its TTL by the server's clock: this caller refreshes it.
    assert_eq!(prices.price(1).await, Ok(1002));
    assert_eq!(
        prices.db.runs(),
        2,
        "a value past its TTL was served as fresh"
    );
}

/// A value that grows past `max_value_bytes`: returned, not stored.
#[cached(cache = cache, skip(cache, size), ttl = 1, grace = "1h")]
async fn sized(cache: Cache, size: Arc<AtomicU64>, id: u64) -> String {
    "x".repeat(size.load(Ordering::SeqCst) as usize) + &id.to_string()
}

/// A refresh whose new value is too large to store is an answer like a
/// `None`: the old value is not served again for the whole grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_too_large_to_store_ends_the_old_value() {
    let cache = Cache::builder()
        .redis(shared_url())
        .namespace(unique_namespace("grace-oversized"))
        .op_timeout(cache_tests::TEST_OP_TIMEOUT)
        .max_value_bytes(1000)
        .build()
        .unwrap();
    let size = Arc::new(AtomicU64::new(10));
    let small = sized(cache.clone(), size.clone(), 1).await;
    assert_eq!(small.len(), 11);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    size.store(5000, Ordering::SeqCst);
    // The grace value, while the refresh runs in the background.
    assert_eq!(sized(cache.clone(), size.clone(), 1).await, small);
    no_hang(10, "the old value to end", async {
        while sized(cache.clone(), size.clone(), 1).await == small {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    for _ in 0..5 {
        assert_eq!(sized(cache.clone(), size.clone(), 1).await.len(), 5001);
    }
}
