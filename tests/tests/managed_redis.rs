//! Managed Redis as it is run in production: TLS with a private CA and
//! with client certificates, a network that black-holes a connection, and
//! a Sentinel failover that moves the primary. Every server (and the
//! certificates) is made by the test; nothing here touches a shared server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::proxy::Proxy;
use cache_tests::sentinel::{MASTER_NAME, SentinelGroup};
use cache_tests::tls::{Certificates, TlsCluster, TlsRedis};
use cache_tests::{RedisServer, no_hang, unique_namespace};

struct Api {
    cache: Cache,
    runs: AtomicU64,
}

impl Api {
    fn new(cache: Cache) -> Self {
        Api {
            cache,
            runs: AtomicU64::new(0),
        }
    }

    #[cached(cache = self.cache, ttl = 60, tags = ["products"])]
    async fn get(&self, id: u32) -> Result<String, String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(format!("value {id}"))
    }

    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }

    /// Calls `get(id)` twice; whether the second call was a hit.
    async fn cached_twice(&self, id: u32) -> bool {
        assert_eq!(
            no_hang(5, "a call", self.get(id)).await,
            Ok(format!("value {id}"))
        );
        let before = self.runs();
        assert_eq!(
            no_hang(5, "a call", self.get(id)).await,
            Ok(format!("value {id}"))
        );
        self.runs() == before
    }
}

fn builder(namespace: &str) -> cache_runtime::CacheBuilder {
    Cache::builder()
        .namespace(namespace)
        // A first connection makes a TLS handshake (one per node on a
        // cluster): on a loaded machine, in a debug build, it can take
        // longer than a production op timeout.
        .op_timeout(cache_tests::TEST_OP_TIMEOUT)
}

/// The number of keys of `namespace` on `server`, read over its plain port.
fn keys_on(server: &RedisServer, namespace: &str) -> usize {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}*"))
        .query(&mut server.conn())
        .unwrap();
    keys.len()
}

#[tokio::test]
async fn tls_with_a_private_ca_caches() {
    let certs = Certificates::generate();
    let redis = TlsRedis::start(&certs, false);
    let ns = unique_namespace("tls");
    let api = Api::new(
        builder(&ns)
            .redis(redis.url())
            .tls_root_cert(certs.pem("ca.crt"))
            .build()
            .unwrap(),
    );
    assert!(api.cached_twice(1).await, "{:?}", api.cache.stats());
    assert_eq!(api.cache.stats().errors, 0);
    assert!(
        keys_on(&redis.server, &ns) >= 1,
        "the entry is on the server"
    );
    // Tag invalidation works over TLS too.
    api.cache.invalidate_tag("products").await.unwrap();
    let before = api.runs();
    api.get(1).await.unwrap();
    assert_eq!(api.runs(), before + 1);
}

#[tokio::test]
async fn a_certificate_that_does_not_verify_fails_open_and_is_counted() {
    let certs = Certificates::generate();
    let other_ca = Certificates::generate();
    let redis = TlsRedis::start(&certs, false);
    let ns = unique_namespace("tls-bad");
    // The system's roots do not know the test CA; another CA does not
    // either: both are connection errors, never a failed call.
    let system_roots = builder(&ns).redis(redis.url()).build().unwrap();
    let wrong_ca = builder(&ns)
        .redis(redis.url())
        .tls_root_cert(other_ca.pem("ca.crt"))
        .build()
        .unwrap();
    for cache in [system_roots, wrong_ca] {
        let api = Api::new(cache);
        for _ in 0..3 {
            assert!(!api.cached_twice(2).await);
        }
        assert_eq!(api.runs(), 6, "every call ran the body");
        let stats = api.cache.stats();
        assert!(stats.errors >= 3, "{stats:?}");
        assert_eq!(stats.hits, 0);
    }
    assert_eq!(keys_on(&redis.server, &ns), 0, "nothing was written");
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let certs = Certificates::generate();
    let redis = TlsRedis::start(&certs, true);
    let ns = unique_namespace("mtls");
    let with_cert = Api::new(
        builder(&ns)
            .redis(redis.url())
            .tls_root_cert(certs.pem("ca.crt"))
            .tls_client_cert(certs.pem("client.crt"), certs.pem("client.key"))
            .build()
            .unwrap(),
    );
    assert!(
        with_cert.cached_twice(3).await,
        "{:?}",
        with_cert.cache.stats()
    );
    assert_eq!(with_cert.cache.stats().errors, 0);

    let without_cert = Api::new(
        builder(&ns)
            .redis(redis.url())
            .tls_root_cert(certs.pem("ca.crt"))
            .build()
            .unwrap(),
    );
    assert!(!without_cert.cached_twice(3).await);
    assert!(without_cert.cache.stats().errors >= 1);
}

#[tokio::test]
async fn a_cluster_over_tls_caches() {
    let certs = Certificates::generate();
    let cluster = TlsCluster::start(&certs);
    let ns = unique_namespace("tls-cluster");
    let api = Api::new(
        builder(&ns)
            .redis_cluster(cluster.urls())
            .tls_root_cert(certs.pem("ca.crt"))
            .build()
            .unwrap(),
    );
    for id in 0..5 {
        assert!(api.cached_twice(id).await, "{:?}", api.cache.stats());
    }
    assert_eq!(api.cache.stats().errors, 0);
    let keys: usize = cluster
        .cluster
        .nodes()
        .iter()
        .map(|n| keys_on(n, &ns))
        .sum();
    assert!(keys >= 5, "the entries are on the nodes");
}

#[test]
fn certificates_need_a_tls_url() {
    let certs = Certificates::generate();
    let err = Cache::builder()
        .redis("redis://:hunter2@127.0.0.1:6379/")
        .tls_root_cert(certs.pem("ca.crt"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("rediss://"), "{err}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

/// A connection the network black-holes (no reset, no answer) is given up
/// after a few timeouts, and the next connection reaches wherever the
/// address leads now: here, a new server behind the same proxy.
#[tokio::test]
async fn a_black_holed_connection_is_replaced() {
    let old = RedisServer::start();
    let new = RedisServer::start();
    let proxy = Proxy::start(old.port());
    let ns = unique_namespace("blackhole");
    let api = Api::new(
        builder(&ns)
            .redis(proxy.url())
            .op_timeout(Duration::from_millis(100))
            // The breaker would only space the attempts out; off, the test
            // counts calls instead of waiting for probes.
            .circuit_breaker(0, Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    assert!(api.cached_twice(1).await);
    assert!(keys_on(&old, &ns) >= 1);

    proxy.black_hole();
    let runs = api.runs();
    api.get(1).await.unwrap();
    assert_eq!(api.runs(), runs + 1, "a black-holed read fails open");
    assert!(api.cache.stats().timeouts >= 1);

    // New connections reach the new server; the old one stays silent
    // forever, so only a replaced connection can cache again.
    proxy.forward_new_to(new.port());
    let mut cached_again = false;
    for _ in 0..20 {
        if api.cached_twice(7).await {
            cached_again = true;
            break;
        }
    }
    assert!(cached_again, "{:?}", api.cache.stats());
    assert!(keys_on(&new, &ns) >= 1, "the entry is on the new server");
    let timeouts = api.cache.stats().timeouts;
    assert!(
        timeouts <= 6,
        "gave up the connection after a few timeouts: {timeouts}"
    );
}

/// `SENTINEL FAILOVER` under steady calls: no call fails, and caching
/// resumes on the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_moves_the_cache_to_the_new_primary() {
    let group = SentinelGroup::start();
    let ns = unique_namespace("sentinel");
    let api = std::sync::Arc::new(Api::new(
        builder(&ns)
            .sentinel([group.sentinel_url()], MASTER_NAME)
            .circuit_breaker(3, Duration::from_millis(200))
            .build()
            .unwrap(),
    ));
    assert!(api.cached_twice(1).await, "{:?}", api.cache.stats());
    assert!(keys_on(&group.primary, &ns) >= 1);

    // Calls keep coming while the primary moves.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn({
        let (api, stop) = (api.clone(), stop.clone());
        async move {
            let mut calls = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let id = 100 + calls % 10;
                assert_eq!(api.get(id).await, Ok(format!("value {id}")));
                calls += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            calls
        }
    });
    let old_primary = group.primary.port();
    tokio::task::block_in_place(|| group.failover());
    assert_ne!(group.primary_port(), old_primary);

    // Caching resumes on the new primary: a new key is filled there (the
    // old primary, a replica now, refuses writes) and served from it.
    let mut cached_again = false;
    for id in 1000..1100 {
        let keys_before = keys_on(&group.replica, &ns);
        if api.cached_twice(id).await && keys_on(&group.replica, &ns) > keys_before {
            cached_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let calls = load.await.expect("no call failed during the failover");
    assert!(calls > 0);
    assert!(cached_again, "{:?}", api.cache.stats());
}
