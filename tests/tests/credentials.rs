//! `credentials`: a provider asked for the user name and password of each
//! new connection, as managed Redis with short-lived IAM tokens needs. A
//! private server (and cluster) with an ACL user whose password is rotated
//! under traffic: `ACL SETUSER u resetpass >new`, then `CLIENT KILL USER
//! u`, so that every connection is made again with the new password.
//! Counts calls, hits and the provider's answers; guards catch hangs only.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_runtime::{Cache, CacheBuilder, cached};
use cache_tests::{RedisCluster, RedisServer, no_hang, unique_namespace};

struct Api {
    cache: Cache,
    runs: AtomicU64,
}

impl Api {
    #[cached(cache = self.cache, ttl = 600, tags = ["products"])]
    async fn get(&self, id: u64) -> u64 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        id * 10
    }
}

/// The password the provider hands out, and how often it was asked.
#[derive(Clone, Default)]
struct Token {
    current: Arc<Mutex<String>>,
    asked: Arc<AtomicU64>,
}

impl Token {
    fn new(password: &str) -> Self {
        let token = Token::default();
        token.set(password);
        token
    }

    fn set(&self, password: &str) {
        *self.current.lock().unwrap() = password.to_owned();
    }

    fn asked(&self) -> u64 {
        self.asked.load(Ordering::SeqCst)
    }

    fn provide(&self, builder: CacheBuilder) -> CacheBuilder {
        let token = self.clone();
        builder.credentials(move || {
            token.asked.fetch_add(1, Ordering::SeqCst);
            let password = token.current.lock().unwrap().clone();
            async move { Ok(("u".to_owned(), password)) }
        })
    }
}

fn acl(conn: &mut redis::Connection, args: &[&str]) {
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("u")
        .arg(args)
        .query(conn)
        .expect("ACL SETUSER");
}

/// Creates user `u` with `password`, and turns the passwordless `default`
/// user off (the admin connection `conn`, made before, stays usable), so
/// that only the provider's credentials open a connection.
fn users(conn: &mut redis::Connection, password: &str) {
    acl(conn, &["on", &format!(">{password}"), "~*", "&*", "+@all"]);
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "off"])
        .query(conn)
        .expect("ACL SETUSER default off");
}

fn kill_user(conn: &mut redis::Connection) -> u64 {
    redis::cmd("CLIENT")
        .arg(&["KILL", "USER", "u"])
        .query(conn)
        .expect("CLIENT KILL USER")
}

/// Whether a connection of user `u` is subscribed to a channel, classic
/// (`sub=`) or sharded (`ssub=`).
fn subscribed(conn: &mut redis::Connection) -> bool {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(conn)
        .expect("CLIENT LIST");
    list.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        fields.contains(&"user=u")
            && fields
                .iter()
                .filter_map(|f| f.strip_prefix("sub=").or_else(|| f.strip_prefix("ssub=")))
                .any(|n| n != "0")
    })
}

/// Tasks calling `get` in a loop until told to stop; every answer must be
/// the body's value. Returns the number of calls made.
fn traffic(api: &Arc<Api>, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..6)
        .map(|t| {
            let (api, stop) = (api.clone(), stop.clone());
            tokio::spawn(async move {
                let mut calls = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let id = (calls + t) % 5;
                    assert_eq!(api.get(id).await, id * 10, "a call returned a wrong value");
                    calls += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                calls
            })
        })
        .collect()
}

/// Waits until `api` has made `more` hits past `from`.
async fn hits_resume(api: &Api, from: u64, more: u64, what: &str) {
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while api.cache.stats().hits < from + more {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "{what} did not come within 30 s: {:?}",
        api.cache.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_password_under_traffic_fails_no_call() {
    let server = RedisServer::start();
    let mut admin = server.conn();
    users(&mut admin, "pw-0");
    let token = Token::new("pw-0");
    // The URL has no password: every connection takes the provider's.
    let builder = |prefix: &str| {
        token.provide(
            Cache::builder()
                .redis(server.url())
                .namespace(unique_namespace(prefix))
                .op_timeout(cache_tests::TEST_OP_TIMEOUT),
        )
    };
    let api = Arc::new(Api {
        cache: builder("rotate").build().unwrap(),
        runs: AtomicU64::new(0),
    });
    // A second cache with a local tier: its subscription (a connection of
    // its own) must come back after each rotation too.
    let local = Api {
        cache: builder("rotate-local")
            .local_cache(1 << 20)
            .build()
            .unwrap(),
        runs: AtomicU64::new(0),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = traffic(&api, &stop);
    hits_resume(&api, 0, 20, "the first hits").await;
    no_hang(20, "the first subscription", async {
        while !local.cache.local_ready() {
            local.get(1).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(subscribed(&mut admin));

    for round in 1..=4 {
        let password = format!("pw-{round}");
        let (asked, hits) = (token.asked(), api.cache.stats().hits);
        token.set(&password);
        acl(&mut admin, &["resetpass", &format!(">{password}")]);
        assert!(
            kill_user(&mut admin) >= 2,
            "round {round}: connections killed"
        );
        hits_resume(&api, hits, 50, "hits after a rotation").await;
        assert!(
            token.asked() > asked,
            "round {round}: the provider was asked again"
        );
        no_hang(30, "the subscription after a rotation", async {
            while !subscribed(&mut admin) {
                local.get(1).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut calls = 0;
    for task in tasks {
        calls += no_hang(10, "a traffic task", task).await.unwrap();
    }
    assert!(calls > 200, "{calls} calls");
    // The 5 keys were computed once each, and again only when a call ran
    // uncached while its connection was being remade.
    assert!(api.runs.load(Ordering::SeqCst) >= 5);
    // At least one connection per round, for each cache (operations and
    // subscription).
    assert!(token.asked() > 4 * 2, "asked {} times", token.asked());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_is_a_counted_connection_error_and_calls_run() {
    let server = RedisServer::start();
    let mut admin = server.conn();
    users(&mut admin, "pw");
    let asked = Arc::new(AtomicU64::new(0));
    let fail = Arc::new(AtomicBool::new(true));
    let (a, f) = (asked.clone(), fail.clone());
    let api = Api {
        cache: Cache::builder()
            .redis(server.url())
            .namespace(unique_namespace("provider-fails"))
            .op_timeout(cache_tests::TEST_OP_TIMEOUT)
            .circuit_breaker(0, Duration::from_secs(1))
            .credentials(move || {
                a.fetch_add(1, Ordering::SeqCst);
                let fail = f.load(Ordering::SeqCst);
                async move {
                    if fail {
                        return Err("token service unavailable".into());
                    }
                    Ok(("u".to_owned(), "pw".to_owned()))
                }
            })
            .build()
            .unwrap(),
        runs: AtomicU64::new(0),
    };
    for _ in 0..3 {
        assert_eq!(no_hang(10, "a call", api.get(4)).await, 40);
    }
    let stats = api.cache.stats();
    assert_eq!(api.runs.load(Ordering::SeqCst), 3, "uncached");
    assert!(stats.errors >= 3, "{stats:?}");
    assert!(asked.load(Ordering::SeqCst) >= 1);
    // The provider recovers: the cache works again.
    fail.store(false, Ordering::SeqCst);
    no_hang(20, "caching after the provider recovered", async {
        while api.cache.stats().hits == 0 {
            api.get(4).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

// Known defect: in about one run in fourteen, caching did not resume
// within 30 s of a rotation on a cluster (no call failed; calls ran
// uncached). Run it with `-- --ignored`.
#[ignore = "caching sometimes does not resume within 30 s after a rotation on a cluster"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_on_a_cluster_fails_no_call() {
    let cluster = RedisCluster::start();
    let mut admins: Vec<redis::Connection> = cluster.nodes().iter().map(|n| n.conn()).collect();
    for admin in &mut admins {
        users(admin, "pw-0");
    }
    let token = Token::new("pw-0");
    let builder = |prefix: &str| {
        token.provide(
            Cache::builder()
                .redis_cluster(cluster.urls())
                .namespace(unique_namespace(prefix))
                .op_timeout(cache_tests::TEST_OP_TIMEOUT),
        )
    };
    let api = Arc::new(Api {
        cache: builder("rotate-cluster").build().unwrap(),
        runs: AtomicU64::new(0),
    });
    // With a local tier: its sharded subscriptions (a cluster connection
    // of their own, to every primary) must take the provider's
    // credentials, and come back after each rotation.
    let local = Api {
        cache: builder("rotate-cluster-local")
            .local_cache(1 << 20)
            .build()
            .unwrap(),
        runs: AtomicU64::new(0),
    };
    let all_subscribed = |admins: &mut [redis::Connection]| admins.iter_mut().all(subscribed);
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = traffic(&api, &stop);
    hits_resume(&api, 0, 20, "the first hits").await;
    no_hang(20, "the first subscriptions", async {
        while !local.cache.local_ready() || !all_subscribed(&mut admins) {
            local.get(1).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    for round in 1..=3 {
        let password = format!("pw-{round}");
        let (asked, hits) = (token.asked(), api.cache.stats().hits);
        // Every node takes the new password before any connection is
        // killed (a cluster client remakes connections to all nodes at
        // once).
        for admin in &mut admins {
            acl(admin, &["resetpass", &format!(">{password}")]);
        }
        token.set(&password);
        let mut killed = 0;
        for admin in &mut admins {
            killed += kill_user(admin);
        }
        assert!(killed >= 1, "round {round}: connections killed");
        hits_resume(&api, hits, 50, "hits after a rotation").await;
        assert!(
            token.asked() > asked,
            "round {round}: the provider was asked again"
        );
        no_hang(30, "the sharded subscriptions after a rotation", async {
            while !all_subscribed(&mut admins) {
                local.get(1).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut calls = 0;
    for task in tasks {
        calls += no_hang(10, "a traffic task", task).await.unwrap();
    }
    assert!(calls > 100, "{calls} calls");
}
