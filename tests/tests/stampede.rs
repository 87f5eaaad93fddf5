//! Stampede protection: one computation per key across tasks and processes,
//! and no waiter left hanging when the leader fails, panics, is cancelled,
//! dies, or Redis goes away. Counts computations; the guards only catch hangs.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::fixtures::Probe;
use cache_tests::{RedisServer, backends, no_hang, redis_cache, shared_url, unique_namespace};

/// Starts `n` concurrent callers, each with its own handle on `target`.
fn spawn_callers<S, F>(
    n: usize,
    target: &Arc<S>,
    call: impl Fn(Arc<S>) -> F,
) -> Vec<tokio::task::JoinHandle<F::Output>>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    (0..n).map(|_| tokio::spawn(call(target.clone()))).collect()
}

struct Svc {
    cache: Cache,
    runs: AtomicU64,
    /// Bodies running now, and the most that ever ran together.
    running: AtomicU64,
    most_running: AtomicU64,
}

impl Svc {
    fn new(cache: Cache) -> Arc<Self> {
        Arc::new(Svc {
            cache,
            runs: AtomicU64::new(0),
            running: AtomicU64::new(0),
            most_running: AtomicU64::new(0),
        })
    }

    /// A 100 ms database query, counted.
    async fn query(&self) {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    /// The database is down: every run fails (an error that is not `Clone`).
    #[cached(cache = self.cache, lock_ttl = "30s")]
    async fn down(&self, key: String) -> Result<String, std::io::Error> {
        self.query().await;
        Err(std::io::Error::other(format!("no {key}")))
    }

    /// A missing row: `Ok(None)`, not cached.
    #[cached(cache = self.cache, lock_ttl = "30s")]
    async fn missing(&self, key: String) -> Result<Option<String>, String> {
        self.query().await;
        let _ = key;
        Ok(None)
    }

    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }

    #[cached(cache = self.cache, lock_ttl = "30s")]
    async fn cold(&self, key: String) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        format!("value of {key}")
    }

    /// Fails on its first run only.
    #[cached(cache = self.cache, lock_ttl = "30s")]
    async fn flaky(&self, key: String) -> Result<String, String> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        if run == 0 {
            Err("first run fails".into())
        } else {
            Ok(format!("value of {key}"))
        }
    }

    /// Panics on its first run only.
    #[cached(cache = self.cache, lock_ttl = "30s")]
    async fn panicky(&self, key: String) -> String {
        let run = self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(run != 0, "the first run panics");
        format!("value of {key}")
    }

    /// Sleeps `millis`: long enough to be cancelled.
    #[cached(cache = self.cache, lock_ttl = "30s", skip(millis))]
    async fn sleepy(&self, key: String, millis: u64) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        format!("value of {key}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_computation() {
    for cache in backends("stampede") {
        let svc = Svc::new(cache.clone());
        let calls = spawn_callers(200, &svc, |svc| async move { svc.cold("hot".into()).await });
        for c in calls {
            assert_eq!(no_hang(8, "caller", c).await.unwrap(), "value of hot");
        }
        assert_eq!(
            svc.runs(),
            1,
            "{}: {:?}",
            cache.backend_name(),
            cache.stats()
        );
        assert_eq!(cache.stats().computations, 1);
    }
}

/// A leader whose result has nothing to share (an `Err`) leaves its waiters
/// to run the body at once, each for itself, instead of queueing behind one
/// new leader after another (the convoy: 40 callers of a 100 ms failing
/// query took 4 s, one run at a time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiters_of_a_failed_leader_run_at_once_not_in_a_convoy() {
    for cache in backends("convoy") {
        let svc = Svc::new(cache.clone());
        let calls = spawn_callers(40, &svc, |svc| async move { svc.down("k".into()).await });
        for c in calls {
            assert!(no_hang(8, "caller", c).await.unwrap().is_err());
        }
        let name = cache.backend_name();
        assert!(svc.runs() <= 40, "{name}: at most one run per caller");
        assert!(
            svc.most_running.load(Ordering::SeqCst) >= 8,
            "{name}: the waiters ran together, not one after another ({} at most)",
            svc.most_running.load(Ordering::SeqCst)
        );
    }
}

/// A `None` that is not cached is still handed to the callers waiting for
/// it: one query for all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncached_none_is_shared_with_the_waiters() {
    for cache in backends("none") {
        let svc = Svc::new(cache.clone());
        let calls = spawn_callers(40, &svc, |svc| async move { svc.missing("k".into()).await });
        for c in calls {
            assert_eq!(no_hang(8, "caller", c).await.unwrap(), Ok(None));
        }
        // One query for the 40 (a caller that a busy scheduler starts only
        // after that query ended asks again, as `None` is not stored);
        // before, 40 queries one after another.
        let runs = svc.runs();
        assert!(runs <= 2, "{}: {runs} runs", cache.backend_name());
        assert_eq!(cache.stats().stores, 0, "`None` is not stored");
        svc.missing("k".into()).await.unwrap();
        assert_eq!(svc.runs(), runs + 1, "and the next call asks again");
    }
}

/// A leader that fails once with an error that is `Clone`: the callers
/// that waited for it get its error (as Go's singleflight shares a
/// failure) instead of each running the failing query again; callers that
/// come after it get the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiters_of_a_failed_leader_share_its_clone_error() {
    for cache in backends("stampede") {
        let svc = Svc::new(cache.clone());
        let calls = spawn_callers(50, &svc, |svc| async move { svc.flaky("k".into()).await });
        let mut errors = 0;
        for c in calls {
            match no_hang(8, "caller", c).await.unwrap() {
                Ok(v) => assert_eq!(v, "value of k"),
                Err(e) => {
                    assert_eq!(e, "first run fails");
                    errors += 1;
                }
            }
        }
        assert!(errors >= 1, "the leader's caller sees its error");
        assert!(
            svc.runs() <= 3,
            "{}: {} runs for 50 callers",
            cache.backend_name(),
            svc.runs()
        );
        assert_eq!(svc.flaky("k".into()).await.as_deref(), Ok("value of k"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_leader_leaves_no_one_hanging() {
    for cache in backends("stampede") {
        let svc = Svc::new(cache.clone());
        let calls = spawn_callers(50, &svc, |svc| async move { svc.panicky("k".into()).await });
        let mut panics = 0;
        for c in calls {
            match no_hang(8, "caller", c).await {
                Ok(v) => assert_eq!(v, "value of k"),
                Err(e) => {
                    assert!(e.is_panic());
                    panics += 1;
                }
            }
        }
        assert_eq!(panics, 1);
        assert_eq!(svc.runs(), 2, "{}", cache.backend_name());
    }
}

/// Two caches on one Redis, as two processes: the leader is in `a`, the
/// waiter in `b` with a 30 s lease. The waiter goes on long before that.
async fn leader_and_remote_waiter() -> (Arc<Svc>, Arc<Svc>, String) {
    let namespace = unique_namespace("st-remote");
    let a = Svc::new(redis_cache(&shared_url(), &namespace));
    let b = Svc::new(redis_cache(&shared_url(), &namespace));
    (a, b, namespace)
}

async fn lease_count(namespace: &str) -> usize {
    let mut conn = redis::Client::open(shared_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}#lease:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_leader_releases_its_lease_at_once() {
    let (a, b, namespace) = leader_and_remote_waiter().await;
    b.runs.store(1, Ordering::SeqCst); // b's body does not panic
    let leader = {
        let a = a.clone();
        tokio::spawn(async move { a.panicky("k".into()).await })
    };
    while lease_count(&namespace).await == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let waiter = no_hang(8, "remote waiter", b.panicky("k".into())).await;
    assert_eq!(waiter, "value of k");
    assert!(leader.await.unwrap_err().is_panic());
    assert_eq!(b.runs(), 2, "the waiter took over after the panic");
    assert_eq!(b.cache.stats().lease_waits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_releases_its_lease_at_once() {
    let (a, b, namespace) = leader_and_remote_waiter().await;
    let leader = {
        let a = a.clone();
        tokio::spawn(async move {
            tokio::time::timeout(Duration::from_millis(300), a.sleepy("k".into(), 60_000)).await
        })
    };
    while lease_count(&namespace).await == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let waiter = no_hang(8, "remote waiter", b.sleepy("k".into(), 10)).await;
    assert_eq!(waiter, "value of k");
    assert!(
        leader.await.unwrap().is_err(),
        "the leader was cancelled by its timeout"
    );
    assert_eq!((a.runs(), b.runs()), (1, 1));
    assert_eq!(lease_count(&namespace).await, 0, "no lease left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_never_takes_the_lease() {
    let server = RedisServer::start();
    let svc = Svc::new(Cache::builder().redis(server.url()).build().unwrap());
    svc.cold("k".into()).await;
    let mut conn = server.conn();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut conn)
        .unwrap();
    for _ in 0..10 {
        svc.cold("k".into()).await;
    }
    let calls = server.command_calls();
    let names: Vec<&str> = calls.iter().map(|(c, _)| c.as_str()).collect();
    assert!(
        !names.iter().any(|c| *c == "set" || *c == "eval"),
        "hits only read: {calls:?}"
    );
    assert_eq!(svc.runs(), 1);
}

/// Waiters on a lease held by another process fall back to running the body
/// when Redis goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_fail_open_when_redis_goes_down() {
    let mut server = RedisServer::start();
    let svc = Svc::new(redis_cache(&server.url(), "down"));
    // Find the lease key of cold("k") by letting one call fill it once...
    svc.cold("k".into()).await;
    let mut conn = server.conn();
    let entry: Vec<String> = redis::cmd("KEYS")
        .arg("down:stampede::Svc::cold:*")
        .query(&mut conn)
        .unwrap();
    let entry = entry.into_iter().next().expect("the entry of cold(k)");
    // ...then drop it and hold its lease as a foreign process would.
    let _: () = redis::cmd("DEL").arg(&entry).query(&mut conn).unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("down#lease:{entry}"))
        .arg("other-process")
        .arg("PX")
        .arg(60_000)
        .query(&mut conn)
        .unwrap();
    let calls = spawn_callers(20, &svc, |svc| async move { svc.cold("k".into()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(svc.runs(), 1, "callers wait on the foreign lease");
    server.kill();
    for c in calls {
        assert_eq!(
            no_hang(8, "waiter with Redis down", c).await.unwrap(),
            "value of k"
        );
    }
    assert_eq!(svc.runs(), 2, "one computation for all 20 waiters");
    assert!(svc.cache.stats().errors >= 1);
}

/// A leader process killed while holding the lease: waiters in other
/// processes go on once the lease expires (`lock_ttl = "5s"` on `slow`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_process_delays_waiters_by_lock_ttl_at_most() {
    let server = RedisServer::start();
    let namespace = "killed";
    let mut leader = Command::new(env!("CARGO_BIN_EXE_stampede_worker"))
        .args([&server.url(), namespace, "k", "1", "600000"])
        .stdout(Stdio::null())
        .spawn()
        .expect("cannot start stampede_worker");
    let mut conn = server.conn();
    let mut leased = false;
    for _ in 0..500 {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{namespace}#lease:*"))
            .query(&mut conn)
            .unwrap();
        if !keys.is_empty() {
            leased = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(leased, "the leader process never took the lease");
    leader.kill().unwrap();
    leader.wait().unwrap();

    let cache = redis_cache(&server.url(), namespace);
    let probe = Arc::new(Probe::new(cache.clone(), "survivor"));
    let calls = spawn_callers(20, &probe, |probe| async move {
        probe.slow("k".into(), None, 10).await
    });
    for c in calls {
        assert_eq!(
            no_hang(8, "waiter after the leader died", c)
                .await
                .unwrap()
                .by,
            "survivor"
        );
    }
    assert_eq!(probe.runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        cache.stats().lease_waits,
        1,
        "the caller waited on the dead leader's lease first"
    );
}

/// Four processes with 200 concurrent callers each on one cold key whose
/// body takes 200 ms: the body runs once in total.
#[test]
fn four_processes_compute_a_cold_key_once() {
    let server = RedisServer::start();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_stampede_worker"))
                .args([&server.url(), "fleet", "cold", "200", "200"])
                .stdout(Stdio::piped())
                .spawn()
                .expect("cannot start stampede_worker")
        })
        .collect();
    let mut local_runs = 0;
    for w in workers {
        let out = w.wait_with_output().unwrap();
        assert!(out.status.success());
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(line.contains("ok=200"), "{line}");
        local_runs += line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("runs="))
            .unwrap()
            .parse::<u64>()
            .unwrap();
    }
    let total: u64 = redis::cmd("GET")
        .arg("computations:cold")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(total, 1, "computations across 4 processes x 200 callers");
    assert_eq!(local_runs, 1);
}

/// An ACL user without channel rights (Redis 7's default for new users):
/// fills succeed quietly without announcements, the other process's waiters
/// poll for the value, and the subscriber backs off instead of retrying
/// every 250 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_without_channel_rights_fills_quietly() {
    let server = RedisServer::start();
    let url = server.user_without_channel_rights("cacheuser");
    let caches = [redis_cache(&url, "acl"), redis_cache(&url, "acl")];
    let svcs: Vec<_> = caches.iter().map(|c| Svc::new(c.clone())).collect();
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let svc = svcs[i % 2].clone();
            tokio::spawn(async move { svc.cold("k".into()).await })
        })
        .collect();
    for c in calls {
        assert_eq!(no_hang(8, "caller", c).await.unwrap(), "value of k");
    }
    let runs: u64 = svcs.iter().map(|s| s.runs()).sum();
    assert_eq!(runs, 1, "one computation across the two processes");
    for cache in &caches {
        let s = cache.stats();
        assert_eq!(s.errors, 0, "fills succeed without announcing: {s:?}");
    }
    // Two seconds of a subscriber without rights: a few tries, not eight a
    // second (Redis counts the denials in its ACL log).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log: redis::Value = redis::cmd("ACL")
        .arg("LOG")
        .query(&mut server.conn())
        .unwrap();
    let denied = format!("{log:?}");
    let count = denied
        .split("count")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .find(|s| !s.is_empty())?
                .parse::<u64>()
                .ok()
        })
        .sum::<u64>();
    assert!(count <= 12, "{count} denials in 2 s: {denied}");
}
