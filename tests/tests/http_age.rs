//! `Age` read off the entry's remaining TTL, attacked: a revalidation handed
//! back the very store it found stale (a wait on another host's lease), two
//! layers of one name with different keep TTLs, an entry without a TTL, a
//! huge `max_ttl`, TTL jitter, a `304`, a paused Redis, coalesced requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use cache_runtime::http::CacheLayer;
use cache_tests::RedisServer;

type Runs = Arc<AtomicU64>;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn get_it(base: &str, path: &str) -> (String, Option<String>, Option<String>) {
    let r = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header("host", "shop.example")
        .send()
        .await
        .unwrap();
    let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
    let (age, xc) = (h("age"), h("x-cache"));
    (r.text().await.unwrap(), age, xc)
}

async fn ten_minutes(State(r): State<Runs>) -> impl IntoResponse {
    let n = r.fetch_add(1, Ordering::SeqCst);
    ([(header::CACHE_CONTROL, "max-age=600")], format!("v{n}"))
}

async fn one_second(State(r): State<Runs>) -> impl IntoResponse {
    let n = r.fetch_add(1, Ordering::SeqCst);
    ([(header::CACHE_CONTROL, "max-age=1")], format!("v{n}"))
}

fn entry_keys(conn: &mut redis::Connection, ns: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("{ns}:*"))
        .query(conn)
        .unwrap()
}

/// Two layers with one name (a rolling deploy that lowered `max_ttl`):
/// they share entries, but each reads "stored for" as ITS keep TTL less
/// the PTTL. An entry written by the 1-day layer and stored 700 s is read
/// by the 1-hour layer as stored 0 s: a max-age=600 response 100 s past
/// its freshness is served as fresh, Age 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_layers_one_name_different_max_ttl() {
    let server = RedisServer::start();
    let ns = cache_tests::unique_namespace("adv-age-two");
    let count: Runs = Arc::new(AtomicU64::new(0));
    let day = serve(
        Router::new()
            .route("/p", get(ten_minutes))
            .layer(CacheLayer::new(
                cache_tests::redis_cache(&server.url(), &ns),
                "same",
            ))
            .with_state(count.clone()),
    )
    .await;
    let hour = serve(
        Router::new()
            .route("/p", get(ten_minutes))
            .layer(
                CacheLayer::new(cache_tests::redis_cache(&server.url(), &ns), "same")
                    .max_ttl(Duration::from_secs(3600)),
            )
            .with_state(count.clone()),
    )
    .await;
    assert_eq!(get_it(&day, "/p").await.0, "v0");
    let mut conn = server.conn();
    let keys = entry_keys(&mut conn, &ns);
    assert_eq!(keys.len(), 1, "{keys:?}");
    // Stored 700 s by Redis's clock (the day layer keeps 86 400 s).
    let _: i64 = redis::cmd("PEXPIRE")
        .arg(&keys[0])
        .arg(86_400_000 - 700_000)
        .query(&mut conn)
        .unwrap();
    // The day layer sees it stale (control).
    let (_, age_day, _) = {
        // Read-only check of what the day layer would say is done last;
        // first the hour layer.
        let got = get_it(&hour, "/p").await;
        eprintln!(
            "hour layer: body {} age {:?} x-cache {:?}",
            got.0, got.1, got.2
        );
        // Stored 23 h 01 min by the day layer's TTL: 59 min left, within
        // the hour layer's keep: it reads "stored 60 s".
        let _: i64 = redis::cmd("PEXPIRE")
            .arg(&keys[0])
            .arg(59 * 60 * 1000)
            .query(&mut conn)
            .unwrap();
        let later = get_it(&hour, "/p").await;
        eprintln!(
            "hour layer, 23 h stored: body {} age {:?} x-cache {:?}",
            later.0, later.1, later.2
        );
        assert_eq!(
            got.0, "v1",
            "the hour layer served a response stored 700 s (max-age 600) as {:?} with Age {:?}",
            got.2, got.1
        );
        got
    };
    let _ = age_day;
}

/// An entry whose TTL was removed (`PERSIST`: PTTL -1) reads as new on
/// every read: its Age never grows, it stays fresh for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persisted_entry_never_ages() {
    let server = RedisServer::start();
    let ns = cache_tests::unique_namespace("adv-age-persist");
    let count: Runs = Arc::new(AtomicU64::new(0));
    let base = serve(
        Router::new()
            .route("/s", get(one_second))
            .layer(CacheLayer::new(
                cache_tests::redis_cache(&server.url(), &ns),
                "p",
            ))
            .with_state(count.clone()),
    )
    .await;
    assert_eq!(get_it(&base, "/s").await.0, "v0");
    let mut conn = server.conn();
    let keys = entry_keys(&mut conn, &ns);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let _: i64 = redis::cmd("PERSIST")
        .arg(&keys[0])
        .query(&mut conn)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let got = get_it(&base, "/s").await;
    eprintln!(
        "persisted: body {} age {:?} x-cache {:?}",
        got.0, got.1, got.2
    );
    assert_eq!(
        got.0, "v1",
        "a max-age=1 response 2 s old served as {:?} Age {:?}",
        got.2, got.1
    );
}

/// `max_ttl` past what `Instant` can add (memory backend: `expires_at`
/// None, remaining reported as the full TTL): stored for 0 on every read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_max_ttl_on_memory_never_ages() {
    let cache = cache_runtime::Cache::builder()
        .memory()
        .namespace(cache_tests::unique_namespace("adv-age-huge"))
        .build()
        .unwrap();
    let count: Runs = Arc::new(AtomicU64::new(0));
    let base = serve(
        Router::new()
            .route("/s", get(one_second))
            .layer(CacheLayer::new(cache, "huge").max_ttl(Duration::from_secs(u64::MAX)))
            .with_state(count.clone()),
    )
    .await;
    assert_eq!(get_it(&base, "/s").await.0, "v0");
    eprintln!("huge memory at once: {:?}", get_it(&base, "/s").await);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let got = get_it(&base, "/s").await;
    eprintln!(
        "huge memory: body {} age {:?} x-cache {:?}",
        got.0, got.1, got.2
    );
    // Held: moka keeps nothing this long (nothing is cached at all), so
    // the `expires_at: None` branch is not reached through the layer.
    assert_ne!(
        got.0, "v0",
        "a max-age=1 response 2 s old served as {:?} Age {:?}",
        got.2, got.1
    );
}

/// The same on Redis: what happens (store refused?).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_max_ttl_on_redis() {
    let server = RedisServer::start();
    let ns = cache_tests::unique_namespace("adv-age-huge-r");
    let count: Runs = Arc::new(AtomicU64::new(0));
    let base = serve(
        Router::new()
            .route("/s", get(one_second))
            .layer(
                CacheLayer::new(cache_tests::redis_cache(&server.url(), &ns), "huge")
                    .max_ttl(Duration::from_secs(u64::MAX)),
            )
            .with_state(count.clone()),
    )
    .await;
    let a = get_it(&base, "/s").await;
    let b = get_it(&base, "/s").await;
    let mut conn = server.conn();
    let keys = entry_keys(&mut conn, &ns);
    eprintln!("huge redis: {a:?} {b:?} keys {keys:?}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let c = get_it(&base, "/s").await;
    eprintln!("huge redis later: {c:?}");
    assert_ne!(c.0, "v0");
}

/// `ttl_jitter(0.5)` in front of the layer: its entries keep their TTL
/// exactly, so a hit right after the fill has Age 0 (a jittered TTL would
/// read as up to half a day of age).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_does_not_age_a_response() {
    let server = RedisServer::start();
    for memory in [true, false] {
        let ns = cache_tests::unique_namespace("adv-age-jitter");
        let builder = cache_runtime::Cache::builder()
            .namespace(&ns)
            .ttl_jitter(0.5);
        let builder = if memory {
            builder.memory()
        } else {
            builder.redis(server.url())
        };
        let cache = builder.build().unwrap();
        let count: Runs = Arc::new(AtomicU64::new(0));
        let base = serve(
            Router::new()
                .route("/p", get(ten_minutes))
                .layer(CacheLayer::new(cache, "jit"))
                .with_state(count.clone()),
        )
        .await;
        assert_eq!(get_it(&base, "/p").await.0, "v0");
        for _ in 0..20 {
            let (body, age, _) = get_it(&base, "/p").await;
            assert_eq!(body, "v0");
            let age: u64 = age.unwrap().parse().unwrap();
            assert!(age <= 2, "memory {memory}: Age {age}");
        }
    }
}

async fn etagged(
    State(r): State<Runs>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let n = r.fetch_add(1, Ordering::SeqCst);
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v == "\"e\"")
    {
        return (
            axum::http::StatusCode::NOT_MODIFIED,
            [
                (header::CACHE_CONTROL, "max-age=600"),
                (header::ETAG, "\"e\""),
            ],
        )
            .into_response();
    }
    (
        [
            (header::CACHE_CONTROL, "max-age=600"),
            (header::ETAG, "\"e\""),
        ],
        format!("v{n}"),
    )
        .into_response()
}

/// A stale entry revalidated by a 304 is stored again with its full TTL:
/// Age starts again from 0 on every host, and the next hit is fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_resets_the_age() {
    let server = RedisServer::start();
    let ns = cache_tests::unique_namespace("adv-age-304");
    let count: Runs = Arc::new(AtomicU64::new(0));
    let mut hosts = Vec::new();
    for _ in 0..2 {
        hosts.push(
            serve(
                Router::new()
                    .route("/e", get(etagged))
                    .layer(CacheLayer::new(
                        cache_tests::redis_cache(&server.url(), &ns),
                        "e",
                    ))
                    .with_state(count.clone()),
            )
            .await,
        );
    }
    assert_eq!(get_it(&hosts[0], "/e").await.0, "v0");
    let mut conn = server.conn();
    let keys = entry_keys(&mut conn, &ns);
    let entry = keys
        .iter()
        .find(|k| !k.contains("version"))
        .unwrap()
        .clone();
    eprintln!("keys {keys:?}");
    let _: i64 = redis::cmd("PEXPIRE")
        .arg(&entry)
        .arg(86_400_000 - 700_000)
        .query(&mut conn)
        .unwrap();
    let revalidated = get_it(&hosts[1], "/e").await;
    eprintln!("revalidated {revalidated:?}");
    assert_eq!(revalidated.0, "v0");
    assert_eq!(count.load(Ordering::SeqCst), 2, "one conditional request");
    let pttl: i64 = redis::cmd("PTTL").arg(&entry).query(&mut conn).unwrap();
    assert!(pttl > 86_000_000, "{pttl}");
    for host in &hosts {
        let hit = get_it(host, "/e").await;
        eprintln!("after 304 {hit:?}");
        assert_eq!(hit.0, "v0");
        assert_eq!(hit.2.as_deref(), Some("HIT"));
        assert!(hit.1.unwrap().parse::<u64>().unwrap() <= 2);
    }
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

/// Redis frozen while a hit is in flight (answered after 1 s, within the
/// op timeout): the PTTL is Redis's when it answers, so Age is the stored
/// time, not shortened or lengthened by the wait; frozen past the op
/// timeout, the call fails open and the response is new (Age 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_mid_request() {
    let server = RedisServer::start();
    let ns = cache_tests::unique_namespace("adv-age-pause");
    let count: Runs = Arc::new(AtomicU64::new(0));
    let cache = cache_runtime::Cache::builder()
        .redis(server.url())
        .namespace(&ns)
        .op_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let base = serve(
        Router::new()
            .route("/p", get(ten_minutes))
            .layer(CacheLayer::new(cache, "pause"))
            .with_state(count.clone()),
    )
    .await;
    assert_eq!(get_it(&base, "/p").await.0, "v0");
    let mut conn = server.conn();
    let keys = entry_keys(&mut conn, &ns);
    let _: i64 = redis::cmd("PEXPIRE")
        .arg(&keys[0])
        .arg(86_400_000 - 100_000)
        .query(&mut conn)
        .unwrap();
    server.pause();
    let pending = tokio::spawn({
        let base = base.clone();
        async move { get_it(&base, "/p").await }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    server.resume();
    let got = pending.await.unwrap();
    eprintln!("paused 1 s: {got:?}");
    assert_eq!(got.0, "v0");
    let age: u64 = got.1.unwrap().parse().unwrap();
    assert!((100..=103).contains(&age), "{age}");
    server.pause();
    let pending = tokio::spawn({
        let base = base.clone();
        async move { get_it(&base, "/p").await }
    });
    tokio::time::sleep(Duration::from_millis(4000)).await;
    server.resume();
    let got = pending.await.unwrap();
    eprintln!("paused 4 s: {got:?}");
}

async fn slow(State(r): State<Runs>) -> impl IntoResponse {
    let n = r.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ([(header::CACHE_CONTROL, "max-age=600")], format!("v{n}"))
}

/// Concurrent requests on a stale entry, two hosts: coalesced into one
/// fetch; every answer is the new response, with Age 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_followers_get_a_new_age() {
    let server = RedisServer::start();
    let ns = cache_tests::unique_namespace("adv-age-coal");
    let count: Runs = Arc::new(AtomicU64::new(0));
    let mut hosts = Vec::new();
    for _ in 0..2 {
        hosts.push(
            serve(
                Router::new()
                    .route("/c", get(slow))
                    .layer(CacheLayer::new(
                        cache_tests::redis_cache(&server.url(), &ns),
                        "c",
                    ))
                    .with_state(count.clone()),
            )
            .await,
        );
    }
    assert_eq!(get_it(&hosts[0], "/c").await.0, "v0");
    let mut conn = server.conn();
    let keys = entry_keys(&mut conn, &ns);
    let _: i64 = redis::cmd("PEXPIRE")
        .arg(&keys[0])
        .arg(86_400_000 - 700_000)
        .query(&mut conn)
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let base = hosts[i % 2].clone();
        tasks.push(tokio::spawn(async move { get_it(&base, "/c").await }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.unwrap());
    }
    eprintln!("coalesced: {all:?} runs {}", count.load(Ordering::SeqCst));
    // A request that read the stale entry before the first refetch
    // stored may refetch again after it (a revalidation wants a new
    // response): more than one fetch, never the stale one.
    for got in all {
        assert_ne!(got.0, "v0", "stale v0 served: {got:?}");
        assert!(got.1.unwrap().parse::<u64>().unwrap() <= 2);
    }
    assert!(count.load(Ordering::SeqCst) >= 2);
}

async fn slow_short(State(r): State<Runs>) -> impl IntoResponse {
    let n = r.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ([(header::CACHE_CONTROL, "max-age=1")], format!("v{n}"))
}

/// The same in real time (no TTL edited): a response 2 s past its
/// max-age=1, asked on two hosts at once. The host whose revalidation
/// waits on the other's lease takes the entry it finds current (the OLD
/// one, still there), read without its TTL: it counts as new (Age 0,
/// fresh), so the guard in `revalidate` ("what was found stale is never
/// served unchecked") lets the stale response through as a HIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_response_is_not_served_as_fresh_by_a_lease_waiter() {
    let server = RedisServer::start();
    let ns = cache_tests::unique_namespace("adv-age-wait");
    let count: Runs = Arc::new(AtomicU64::new(0));
    let mut hosts = Vec::new();
    for _ in 0..2 {
        hosts.push(
            serve(
                Router::new()
                    .route("/w", get(slow_short))
                    .layer(CacheLayer::new(
                        cache_tests::redis_cache(&server.url(), &ns),
                        "w",
                    ))
                    .with_state(count.clone()),
            )
            .await,
        );
    }
    assert_eq!(get_it(&hosts[0], "/w").await.0, "v0");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let base = hosts[i % 2].clone();
        tasks.push(tokio::spawn(async move { get_it(&base, "/w").await }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.unwrap());
    }
    eprintln!("real time: {all:?} runs {}", count.load(Ordering::SeqCst));
    for got in all {
        assert_ne!(got.0, "v0", "stale v0 (2 s old, max-age=1) served: {got:?}");
    }
}
