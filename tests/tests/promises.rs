//! One regression test per promise that an adversarial read found broken
//! (numbered as that list): each states the promise it checks and fails
//! for the reason the defect gave when the defect is there.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::{RedisServer, backends, no_hang, redis_cache, shared_url, unique_namespace};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------
// Defect 1: a generic `impl` must key every concrete `Self` apart.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Admin {
    name: String,
    rights: Vec<String>,
}

trait Row: Serialize + serde::de::DeserializeOwned + Send + 'static {
    fn load(id: u64) -> Self;
}

impl Row for User {
    fn load(id: u64) -> Self {
        User {
            name: format!("user {id}"),
        }
    }
}

impl Row for Admin {
    fn load(id: u64) -> Self {
        Admin {
            name: format!("admin {id}"),
            rights: vec!["all".into()],
        }
    }
}

struct Repo<T>(PhantomData<T>);

static REPO_RUNS: AtomicU64 = AtomicU64::new(0);

impl<T: Row> Repo<T> {
    /// No receiver: nothing but the `impl` tells `Repo<User>` from
    /// `Repo<Admin>`.
    #[cached(cache = cache, skip(cache))]
    async fn get(cache: Cache, id: u64) -> T {
        REPO_RUNS.fetch_add(1, Ordering::SeqCst);
        T::load(id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_impl_keys_each_self_apart() {
    for cache in backends("promise1") {
        let before = REPO_RUNS.load(Ordering::SeqCst);
        let user = Repo::<User>::get(cache.clone(), 1).await;
        assert_eq!(user, User::load(1));
        // Before the fix, this read `Repo<User>`'s entry: an `Admin` that
        // does not decode from it is a miss, but one that did would be
        // served (the `User` entry of another type).
        let admin = Repo::<Admin>::get(cache.clone(), 1).await;
        assert_eq!(admin, Admin::load(1));
        assert_eq!(Repo::<User>::get(cache.clone(), 1).await, User::load(1));
        assert_eq!(Repo::<Admin>::get(cache.clone(), 1).await, Admin::load(1));
        let s = cache.stats();
        assert_eq!(
            REPO_RUNS.load(Ordering::SeqCst) - before,
            2,
            "one computation per type ({}): {s:?}",
            cache.backend_name()
        );
        assert_eq!(s.decode_errors, 0, "one type read the other's entry: {s:?}");
        assert_eq!(s.hits, 2, "{s:?}");
        // The companion finds the entry of its own type, and only that one.
        Repo::<Admin>::get_invalidate(&cache, &1).await.unwrap();
        assert_eq!(Repo::<User>::get(cache.clone(), 1).await, User::load(1));
        assert_eq!(REPO_RUNS.load(Ordering::SeqCst) - before, 2);
        assert_eq!(Repo::<Admin>::get(cache.clone(), 1).await, Admin::load(1));
        assert_eq!(
            REPO_RUNS.load(Ordering::SeqCst) - before,
            3,
            "the companion missed `Repo<Admin>`'s entry"
        );
    }
}

/// Types that encode alike: without `Self` in the key, one is served as
/// the other, silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Celsius(f64);
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fahrenheit(f64);

trait Reading: Serialize + serde::de::DeserializeOwned + Send + 'static {
    fn of(raw: f64) -> Self;
}
impl Reading for Celsius {
    fn of(raw: f64) -> Self {
        Celsius(raw)
    }
}
impl Reading for Fahrenheit {
    fn of(raw: f64) -> Self {
        Fahrenheit(raw * 9.0 / 5.0 + 32.0)
    }
}

struct Sensor<T>(PhantomData<T>);

impl<T: Reading> Sensor<T> {
    #[cached(cache = cache, skip(cache))]
    async fn read(cache: Cache, id: u64) -> T {
        T::of(id as f64)
    }

    /// A readable key names the type.
    #[cached(cache = cache, skip(cache), key = "sensor:{Self}:{id}")]
    async fn keyed(cache: Cache, id: u64) -> T {
        T::of(id as f64)
    }

    /// The companion, with the same key as `read`.
    async fn forget(cache: &Cache, id: u64) {
        Self::read_invalidate(cache, &id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_impl_never_serves_one_types_value_as_anothers() {
    for cache in backends("promise1b") {
        assert_eq!(
            Sensor::<Celsius>::read(cache.clone(), 100).await,
            Celsius(100.0)
        );
        assert_eq!(
            Sensor::<Fahrenheit>::read(cache.clone(), 100).await,
            Fahrenheit(212.0),
            "{}: the Celsius entry was served as Fahrenheit",
            cache.backend_name()
        );
        Sensor::<Fahrenheit>::forget(&cache, 100).await;
        assert_eq!(
            Sensor::<Celsius>::keyed(cache.clone(), 100).await,
            Celsius(100.0)
        );
        assert_eq!(
            Sensor::<Fahrenheit>::keyed(cache.clone(), 100).await,
            Fahrenheit(212.0),
            "{}: a `{{Self}}` key template served Celsius as Fahrenheit",
            cache.backend_name()
        );
    }
}

// ---------------------------------------------------------------------
// Defect 3: a probe cancelled while it is under way must not leave the
// circuit breaker open for good.

static PROBE_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = cache, skip(cache), ttl = 600)]
async fn probed(cache: Cache, id: u64) -> u64 {
    PROBE_RUNS.fetch_add(1, Ordering::SeqCst);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_probe_does_not_keep_the_breaker_open() {
    let mut server = RedisServer::start();
    let open_for = Duration::from_millis(300);
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(unique_namespace("promise3"))
        // Long enough that the cancelled probe is always cut short by the
        // caller's timeout, never by the op timeout.
        .op_timeout(Duration::from_secs(10))
        .circuit_breaker(3, open_for)
        .build()
        .unwrap();
    assert_eq!(probed(cache.clone(), 1).await, 1);
    // Refused connections open the breaker.
    server.kill();
    let mut calls = 0;
    while cache.stats().skipped == 0 {
        calls += 1;
        assert!(calls < 50, "the breaker never opened: {:?}", cache.stats());
        no_hang(20, "a call to a dead server", probed(cache.clone(), 2)).await;
    }
    // Back, but frozen: a probe hangs until its caller gives up on it. (A
    // probe may also fail at once, while the connection is being made
    // again: then the breaker opens for another while, and the next one
    // is tried.)
    server.restart();
    server.pause();
    let mut cancelled = false;
    for _ in 0..20 {
        tokio::time::sleep(open_for * 2).await;
        let skipped = cache.stats().skipped;
        let probe =
            tokio::time::timeout(Duration::from_millis(200), probed(cache.clone(), 3)).await;
        if probe.is_err() && cache.stats().skipped == skipped {
            cancelled = true;
            break;
        }
    }
    assert!(cancelled, "no probe was cancelled: {:?}", cache.stats());
    server.resume();
    // Redis is up: within a few open periods a probe reaches it and the
    // breaker closes, so a call is a hit again.
    let mut hits = 0;
    for _ in 0..20 {
        tokio::time::sleep(open_for * 2).await;
        probed(cache.clone(), 4).await;
        hits = cache.stats().hits;
        if hits > 0 {
            break;
        }
    }
    let s = cache.stats();
    assert!(
        hits > 0,
        "the breaker stayed open after the probe was cancelled: {s:?}"
    );
}

// ---------------------------------------------------------------------
// Defect 6: the memory backend's versions count against its bounds.

#[cached(cache = cache, skip(cache), ttl = "1h", tags = ["user:{id}"])]
async fn profile(cache: Cache, id: u64) -> u64 {
    id
}

/// `versions: N` from the memory backend's `Debug`.
fn memory_versions(cache: &Cache) -> u64 {
    let debug = format!("{cache:?}");
    debug
        .split("versions: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no version count in {debug}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_versions_count_against_the_capacity() {
    let capacity = 100;
    let cache = Cache::builder()
        .memory()
        .namespace("promise6")
        .memory_capacity(capacity)
        .build()
        .unwrap();
    for id in 0..20_000 {
        profile(cache.clone(), id).await;
    }
    let versions = memory_versions(&cache);
    // Each entry holds its own version and its tag's, plus the function's
    // and the namespace's: about 2 per entry, twice that with the versions
    // of fills that are done but whose entries were evicted.
    assert!(
        versions <= 5 * capacity,
        "{versions} versions kept for {capacity} entries: {cache:?}"
    );
    // And the cache still works: a recent id is a hit, an invalidated one
    // is not.
    let hits = cache.stats().hits;
    profile(cache.clone(), 19_999).await;
    assert_eq!(cache.stats().hits, hits + 1, "{:?}", cache.stats());
    cache.invalidate_tag("user:19999").await.unwrap();
    let misses = cache.stats().misses;
    profile(cache.clone(), 19_999).await;
    assert_eq!(cache.stats().misses, misses + 1);
}

// ---------------------------------------------------------------------
// Defect 7: no password in `Error::InvalidUrl`, whatever it holds.

#[test]
fn no_password_in_an_invalid_url_error_whatever_its_characters() {
    let reserved = [
        '/', '?', '#', '@', ':', '[', ']', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=',
        '%', ' ', '"', '<', '>', '\\', '^', '`', '{', '|', '}',
    ];
    let mut checked = 0;
    for c in reserved {
        // Three recognisable pieces around the character, twice, and the
        // example of the issue (a base64 password).
        let password = format!("Alpha{c}Bravo{c}Charlie");
        for url in [
            format!("redis://default:{password}@host/0"),
            format!("redis://default:{password}@host:6379/0?protocol=resp3"),
            format!("rediss://{password}@host/"),
            format!("redis://default:{password}@host:notaport/"),
        ] {
            let builder = Cache::builder().redis(url.clone());
            let mut shown = format!("{builder:?}");
            if let Err(e) = builder.build() {
                shown.push_str(&format!(" {e} {e:?}"));
                checked += 1;
            }
            for piece in ["Alpha", "Bravo", "Charlie"] {
                assert!(
                    !shown.contains(piece),
                    "`{url}` shows a piece of its password: {shown}"
                );
            }
        }
    }
    let e = Cache::builder()
        .redis("redis://default:s3cr/et+pw==@host/0")
        .build()
        .unwrap_err();
    let shown = format!("{e} {e:?}");
    for piece in ["s3cr", "et+pw"] {
        assert!(!shown.contains(piece), "{shown}");
    }
    assert!(checked > 0, "no URL was rejected");
}

// ---------------------------------------------------------------------
// Defect 10: a user without channel rights must not reconnect in a loop.

/// `total_connections_received` from `INFO stats`.
fn connections_received(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("total_connections_received")
}

/// Denied channel subscriptions, from `ACL LOG`.
fn channel_denials(conn: &mut redis::Connection) -> u64 {
    let log: Vec<redis::Value> = redis::cmd("ACL").arg("LOG").query(conn).unwrap();
    let mut denials = 0;
    for entry in log {
        let text = format!("{entry:?}");
        if !text.contains("channel") {
            continue;
        }
        let count = text
            .split("count")
            .nth(1)
            .and_then(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .find(|s| !s.is_empty())?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(1);
        denials += count;
    }
    denials
}

static ACL_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = cache, skip(cache))]
async fn acl_value(cache: Cache, id: u64) -> u64 {
    ACL_RUNS.fetch_add(1, Ordering::SeqCst);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_channel_rights_is_not_retried_in_a_loop() {
    let server = RedisServer::start();
    let url = server.user_without_channel_rights("nochannels");
    let cache = Cache::builder()
        .redis(url)
        .namespace(unique_namespace("promise10"))
        .local_cache(1 << 20)
        .build()
        .unwrap();
    // One connection for the checks, made before the count starts.
    let mut admin = server.conn();
    // Start-up: the first calls start the subscription, which is denied.
    for round in 0..100 {
        acl_value(cache.clone(), round).await;
        if channel_denials(&mut admin) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        channel_denials(&mut admin) > 0,
        "the subscription was never tried"
    );
    // Idle: whatever happens now is the subscriber's doing.
    let (connections, denials) = (
        connections_received(&mut admin),
        channel_denials(&mut admin),
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let new_connections = connections_received(&mut admin) - connections;
    let new_denials = channel_denials(&mut admin) - denials;
    assert!(
        new_connections <= 1 && new_denials <= 1,
        "{new_connections} new connections and {new_denials} denied subscriptions in 4 idle seconds"
    );
    // The cache works meanwhile, without its local tier.
    let hits = cache.stats().hits;
    acl_value(cache.clone(), 0).await;
    assert_eq!(cache.stats().hits, hits + 1);
}

// ---------------------------------------------------------------------
// Defect 2: on Redis, `grace` must outlive `ttl + lock_ttl`: the versions
// an entry carries live as long as the entry.

/// A row store that can be switched off, counting its reads.
#[derive(Default)]
struct Rows {
    reads: AtomicU64,
    down: AtomicBool,
}

impl Rows {
    fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
}

#[cached(cache = cache, skip(cache, rows), ttl = 1, grace = "1h", lock_ttl = "1s")]
async fn graced(cache: Cache, rows: Arc<Rows>, id: u64) -> Result<u64, String> {
    rows.reads.fetch_add(1, Ordering::SeqCst);
    if rows.down.load(Ordering::SeqCst) {
        return Err("database down".into());
    }
    Ok(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_on_redis_outlives_ttl_plus_lock_ttl() {
    let cache = redis_cache(&shared_url(), &unique_namespace("promise2"));
    let rows = Arc::new(Rows::default());
    assert_eq!(graced(cache.clone(), rows.clone(), 7).await, Ok(7));
    // Past ttl + lock_ttl (2 s), well within ttl + grace (1 h).
    tokio::time::sleep(Duration::from_secs(3)).await;
    rows.down.store(true, Ordering::SeqCst);
    let got = graced(cache.clone(), rows.clone(), 7).await;
    assert_eq!(
        got,
        Ok(7),
        "the grace value was lost with its versions: {:?}",
        cache.stats()
    );
}

// ---------------------------------------------------------------------
// Defect 4: a leader cancelled during its first round trip must not leave
// its lease behind.

static LEASED_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = cache, skip(cache), ttl = 600)]
async fn leased(cache: Cache, id: u64) -> u64 {
    LEASED_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cancelled_in_its_first_round_trip_leaves_no_lease() {
    let server = RedisServer::start();
    let namespace = unique_namespace("promise4");
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(namespace.as_str())
        .op_timeout(Duration::from_secs(5))
        .lock_ttl(Duration::from_secs(10))
        .build()
        .unwrap();
    // Connected, so that the pause below holds back the first round trip
    // of the fill (its writes: versions and `SET NX` of the lease), not
    // the connection.
    assert_eq!(leased(cache.clone(), 0).await, 0);
    let mut admin = server.conn();
    let _: () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "4000", "WRITE"])
        .query(&mut admin)
        .unwrap();
    let leader = tokio::time::timeout(Duration::from_millis(500), leased(cache.clone(), 1)).await;
    assert!(leader.is_err(), "the leader was not held up by the pause");
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query(&mut admin)
        .unwrap();
    // The lease's TTL is 10 s: a caller that waits it out would need more
    // than the 5 s allowed here.
    let value = no_hang(
        5,
        "the next caller (waiting out an orphan lease)",
        leased(cache.clone(), 1),
    )
    .await;
    assert_eq!(value, 1);
    let leases: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}#lease:*"))
        .query(&mut admin)
        .unwrap();
    assert!(leases.is_empty(), "orphan leases: {leases:?}");
}

// ---------------------------------------------------------------------
// Defect 9: a fill repairs what it read as unusable, so the next call hits.

static JUNK_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = cache, skip(cache), ttl = 600, tags = ["junk:{id}"])]
async fn junked(cache: Cache, id: u64) -> u64 {
    JUNK_RUNS.fetch_add(1, Ordering::SeqCst);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_repairs_junk_in_the_version_keys() {
    let url = shared_url();
    let namespace = unique_namespace("promise9");
    let cache = redis_cache(&url, &namespace);
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    assert_eq!(junked(cache.clone(), 1).await, 1);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}*"))
        .query(&mut conn)
        .unwrap();
    assert!(keys.len() >= 2, "an entry and its versions: {keys:?}");
    for key in &keys {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(b"\xff\x00 not the cache's bytes \n".as_slice())
            .query(&mut conn)
            .unwrap();
    }
    let before = JUNK_RUNS.load(Ordering::SeqCst);
    assert_eq!(junked(cache.clone(), 1).await, 1);
    assert_eq!(
        JUNK_RUNS.load(Ordering::SeqCst) - before,
        1,
        "junk is a miss"
    );
    assert_eq!(junked(cache.clone(), 1).await, 1);
    assert_eq!(
        JUNK_RUNS.load(Ordering::SeqCst) - before,
        1,
        "the fill after the junk did not repair it: {:?}",
        cache.stats()
    );
}

/// Across processes: a lease holder whose body failed lets the waiters of
/// the other processes run at once, instead of each process's leader
/// taking the lease in turn. 4 processes x 5 callers, a 1 s body: the
/// first body of each other process starts before any of theirs ends (in
/// turn, each starts after the one before it ended).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lease_holder_lets_other_processes_run_at_once() {
    use std::process::{Command, Stdio};
    let url = shared_url();
    let namespace = unique_namespace("promise8x");
    let workers: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_failing_worker"))
                .args([url.as_str(), namespace.as_str(), "5", "1000"])
                .stdout(Stdio::piped())
                .spawn()
                .expect("cannot start failing_worker")
        })
        .collect();
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    for _ in 0..1000 {
        let ready: Option<u64> = redis::cmd("GET")
            .arg(format!("{namespace}:ready"))
            .query(&mut conn)
            .unwrap();
        if ready == Some(4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _: () = redis::cmd("SET")
        .arg(format!("{namespace}:go"))
        .arg(1)
        .query(&mut conn)
        .unwrap();
    // Each process's body runs, as (start, end) in µs.
    let mut runs: Vec<Vec<(u128, u128)>> = Vec::new();
    for worker in workers {
        let out = tokio::task::spawn_blocking(move || worker.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert!(out.status.success());
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let bodies = line
            .trim()
            .strip_prefix("bodies=")
            .unwrap_or_else(|| panic!("unexpected output: {line}"));
        runs.push(
            bodies
                .split(',')
                .filter(|b| !b.is_empty())
                .map(|b| {
                    let (s, e) = b.split_once('-').unwrap();
                    (s.parse().unwrap(), e.parse().unwrap())
                })
                .collect(),
        );
    }
    // The process whose body ran first held the lease first; the others'
    // first bodies must all start before any of them ends.
    let mut firsts: Vec<(u128, u128)> = runs
        .iter()
        .filter_map(|r| r.iter().min().copied())
        .collect();
    firsts.sort();
    assert_eq!(firsts.len(), 4, "a process never ran the body: {runs:?}");
    let others = &firsts[1..];
    let first_end = others.iter().map(|(_, e)| *e).min().unwrap();
    let queued = others.iter().filter(|(s, _)| *s >= first_end).count();
    assert_eq!(
        queued, 0,
        "{queued} processes waited for another's failed run before their own: {firsts:?}"
    );
}

// ---------------------------------------------------------------------
// Defect 12: the flaky grace test. A background refresh is lost when a
// flight of any other key of the cache lands between the read that found
// the grace value and the refresh task's start: the task reads again, finds
// the (expired, still current) entry and returns without running the body,
// counting nothing and backing nothing off. On a current-thread runtime
// the spawned task starts only when the caller yields, so the order is
// certain.

static OTHER_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = cache, skip(cache))]
async fn other_key(cache: Cache, id: u64) -> u64 {
    OTHER_RUNS.fetch_add(1, Ordering::SeqCst);
    id
}

#[tokio::test(flavor = "current_thread")]
async fn a_background_refresh_is_not_lost_when_another_flight_lands() {
    let cache = Cache::builder()
        .memory()
        .namespace(unique_namespace("promise12"))
        .build()
        .unwrap();
    let rows = Arc::new(Rows::default());
    assert_eq!(graced(cache.clone(), rows.clone(), 7).await, Ok(7));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    rows.down.store(true, Ordering::SeqCst);
    // The grace value; its refresh is spawned, not yet started.
    assert_eq!(graced(cache.clone(), rows.clone(), 7).await, Ok(7));
    assert_eq!(rows.reads(), 1);
    // Another key's flight lands meanwhile.
    assert_eq!(other_key(cache.clone(), 1).await, 1);
    no_hang(5, "the background refresh", async {
        while rows.reads() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    no_hang(5, "the failed refresh's count", async {
        while cache.stats().grace_on_error < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[cached(cache = cache, skip(cache), ttl = 3, refresh_ahead = true)]
async fn ahead(cache: Cache, id: u64) -> u64 {
    // As long as the TTL: every hit is within the refresh window.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    id
}

/// The same race for a refresh ahead of the expiry: the value it refreshes
/// is still fresh, and a re-read after another key's flight found it
/// current and returned it instead of running the body.
#[tokio::test(flavor = "current_thread")]
async fn an_early_refresh_is_not_lost_when_another_flight_lands() {
    let cache = Cache::builder()
        .memory()
        .namespace(unique_namespace("promise12-ahead"))
        .build()
        .unwrap();
    assert_eq!(ahead(cache.clone(), 3).await, 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Hits well within the TTL, each of which may spawn an early refresh;
    // after each, another key's flight lands before the refresh starts.
    for other in 100..120 {
        assert_eq!(ahead(cache.clone(), 3).await, 3);
        assert_eq!(other_key(cache.clone(), other).await, other);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    no_hang(10, "an early refresh to run", async {
        while cache.stats().refreshes == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
