//! The HTTP layer's rules and options (conditional requests, revalidation,
//! cookies, hosts, `Vary`, tags from a header, a client's `no-cache`,
//! invalidation by unsafe methods, `Age`): a real HTTP client (reqwest)
//! against an axum server on loopback, on both backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cache_runtime::Cache;
use cache_runtime::http::CacheLayer;
use cache_tests::backends;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn send(method: &str, url: String, headers: &[(&str, &str)]) -> Got {
    let mut req = reqwest::Client::new().request(method.parse().unwrap(), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = req.send().await.unwrap();
    Got {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

async fn get_with(base: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    send("GET", format!("{base}{path}"), headers).await
}

type Runs = Arc<AtomicU64>;

fn runs() -> Runs {
    Arc::new(AtomicU64::new(0))
}

#[derive(Clone, Default)]
struct Origin {
    runs: Runs,
    not_modified: Runs,
}

/// A page with validators, fresh for a minute.
async fn page(State(o): State<Origin>) -> impl IntoResponse {
    o.runs.fetch_add(1, Ordering::SeqCst);
    (
        [
            (header::CACHE_CONTROL, "max-age=60"),
            (header::ETAG, "\"v1\""),
            (header::LAST_MODIFIED, "Sun, 06 Nov 1994 08:49:37 GMT"),
        ],
        "the page",
    )
}

/// A page to revalidate on every use, which answers `304` to its ETag.
async fn checked(State(o): State<Origin>, headers: HeaderMap) -> Response {
    o.runs.fetch_add(1, Ordering::SeqCst);
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v == "\"v1\"")
    {
        o.not_modified.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, "\"v1\"")]).into_response();
    }
    (
        [
            (header::CACHE_CONTROL, "no-cache"),
            (header::ETAG, "\"v1\""),
        ],
        "checked page",
    )
        .into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_requests_and_revalidation() {
    for cache in backends("http-cond") {
        let name = cache.backend_name();
        let origin = Origin::default();
        let app = Router::new()
            .route("/page", get(page))
            .route("/checked", get(checked))
            .layer(CacheLayer::new(cache.clone(), "cond"))
            .with_state(origin.clone());
        let base = serve(app).await;
        assert_eq!(get_with(&base, "/page", &[]).await.body, "the page");
        let etag = get_with(&base, "/page", &[("if-none-match", "W/\"v0\", \"v1\"")]).await;
        assert_eq!((etag.status, etag.body.as_str()), (304, ""), "{name}");
        assert_eq!(etag.header("etag"), Some("\"v1\""), "{name}");
        let since = [("if-modified-since", "Mon, 07 Nov 1994 08:49:37 GMT")];
        assert_eq!(get_with(&base, "/page", &since).await.status, 304, "{name}");
        let other = get_with(&base, "/page", &[("if-none-match", "\"v2\"")]).await;
        assert_eq!((other.status, other.body.as_str()), (200, "the page"));
        assert_eq!(origin.runs.load(Ordering::SeqCst), 1, "{name}");

        // `no-cache`: stored, and revalidated with the handler each time.
        origin.runs.store(0, Ordering::SeqCst);
        assert_eq!(get_with(&base, "/checked", &[]).await.body, "checked page");
        for _ in 0..3 {
            let again = get_with(&base, "/checked", &[]).await;
            assert_eq!(
                (again.body.as_str(), again.header("x-cache")),
                ("checked page", Some("REVALIDATED")),
                "{name}"
            );
        }
        assert_eq!(origin.runs.load(Ordering::SeqCst), 4, "{name}");
        assert_eq!(origin.not_modified.load(Ordering::SeqCst), 3, "{name}");
    }
}

async fn hello(State(r): State<Runs>, headers: HeaderMap) -> String {
    r.fetch_add(1, Ordering::SeqCst);
    let cookie = headers
        .get(header::COOKIE)
        .map_or("", |v| v.to_str().unwrap_or(""));
    let lang = cookie
        .split(';')
        .find_map(|c| c.trim().strip_prefix("lang="))
        .unwrap_or("en")
        .to_owned();
    format!("hello in {lang}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_hosts_and_the_layers_vary() {
    for cache in backends("http-cookies") {
        let name = cache.backend_name();
        let count = runs();
        let app = Router::new()
            .route("/hello", get(hello))
            .layer(
                CacheLayer::new(cache.clone(), "cookies")
                    .ttl(Duration::from_secs(60))
                    .vary_cookies(["lang"])
                    .vary(header::ACCEPT_LANGUAGE)
                    .forwarded_host(HeaderName::from_static("x-forwarded-host")),
            )
            .with_state(count.clone());
        let base = serve(app).await;
        let fr = get_with(&base, "/hello", &[("cookie", "session=alice; lang=fr")]).await;
        assert_eq!(fr.body, "hello in fr");
        assert_eq!(
            fr.header("vary"),
            Some("accept-language"),
            "{name}: the layer's vary"
        );
        // Another session, the same `lang`: the same response.
        let bob = get_with(&base, "/hello", &[("cookie", "lang=fr; session=bob")]).await;
        assert_eq!(
            (bob.body.as_str(), bob.header("x-cache")),
            ("hello in fr", Some("HIT")),
            "{name}"
        );
        let en = get_with(&base, "/hello", &[("cookie", "lang=en")]).await;
        assert_eq!(en.body, "hello in en", "{name}");
        assert_eq!(count.load(Ordering::SeqCst), 2, "{name}");
        // The trusted forwarded host keeps hosts apart.
        let other = [("cookie", "lang=fr"), ("x-forwarded-host", "other.example")];
        assert_eq!(
            get_with(&base, "/hello", &other).await.header("x-cache"),
            Some("MISS"),
            "{name}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 3, "{name}");
    }
}

async fn tagged(State(r): State<Runs>) -> impl IntoResponse {
    let n = r.fetch_add(1, Ordering::SeqCst);
    (
        [
            (header::CACHE_CONTROL, "max-age=60"),
            (
                HeaderName::from_static("surrogate-key"),
                "product-1 products",
            ),
        ],
        format!("product 1, run {n}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_from_a_response_header() {
    for cache in backends("http-tagged") {
        let name = cache.backend_name();
        let count = runs();
        let app = Router::new()
            .route("/product", get(tagged))
            .layer(
                CacheLayer::new(cache.clone(), "tagged")
                    .tags_from_header(HeaderName::from_static("surrogate-key")),
            )
            .with_state(count.clone());
        let base = serve(app).await;
        // The first run names the tags; the second, with them read before
        // the handler runs, is stored.
        let x_cache = |g: Got| (g.body.clone(), g.header("x-cache").map(str::to_owned));
        assert_eq!(
            x_cache(get_with(&base, "/product", &[]).await),
            ("product 1, run 0".into(), Some("MISS".into()))
        );
        assert_eq!(
            x_cache(get_with(&base, "/product", &[]).await),
            ("product 1, run 1".into(), Some("MISS".into()))
        );
        assert_eq!(
            x_cache(get_with(&base, "/product", &[]).await),
            ("product 1, run 1".into(), Some("HIT".into())),
            "{name}"
        );
        cache.invalidate_tag("product-1").await.unwrap();
        assert_eq!(
            x_cache(get_with(&base, "/product", &[]).await),
            ("product 1, run 2".into(), Some("MISS".into())),
            "{name}: invalidated by the handler's tag"
        );
        assert_eq!(
            get_with(&base, "/product", &[]).await.header("x-cache"),
            Some("HIT"),
            "{name}"
        );
    }
}

#[derive(Clone, Default)]
struct Busy {
    runs: Runs,
    running: Runs,
    most: Runs,
}

async fn busy(State(b): State<Busy>) -> String {
    b.runs.fetch_add(1, Ordering::SeqCst);
    let now = b.running.fetch_add(1, Ordering::SeqCst) + 1;
    b.most.fetch_max(now, Ordering::SeqCst);
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    b.running.fetch_sub(1, Ordering::SeqCst);
    "busy page".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_no_cache_when_honoured_is_one_refresh_at_a_time_and_announces_nothing() {
    let server = cache_tests::RedisServer::start();
    let redis = cache_tests::redis_cache(&server.url(), "http-honour");
    let memory = Cache::builder().memory().build().unwrap();
    for cache in [memory, redis] {
        let name = cache.backend_name();
        let b = Busy::default();
        let app = Router::new()
            .route("/busy", get(busy))
            .layer(
                CacheLayer::new(cache.clone(), "honour")
                    .ttl(Duration::from_secs(60))
                    .client_no_cache(true),
            )
            .with_state(b.clone());
        let base = serve(app).await;
        get_with(&base, "/busy", &[]).await;
        let invalidations = Invalidations::watch(&server, "http-honour#invalidations");
        let requests: Vec<_> = (0..20)
            .map(|_| {
                let base = base.clone();
                tokio::spawn(async move {
                    get_with(&base, "/busy", &[("cache-control", "no-cache")]).await
                })
            })
            .collect();
        for request in requests {
            assert_eq!(request.await.unwrap().body, "busy page");
        }
        assert!(b.runs.load(Ordering::SeqCst) >= 2, "{name}: honoured");
        assert_eq!(
            b.most.load(Ordering::SeqCst),
            1,
            "{name}: refreshes of one key ran at once"
        );
        assert_eq!(invalidations.count(), 0, "{name}: invalidations announced");
    }
}

/// The messages on a channel, counted by a subscriber.
struct Invalidations {
    url: String,
    channel: String,
    seen: std::sync::mpsc::Receiver<String>,
}

impl Invalidations {
    fn watch(server: &cache_tests::RedisServer, channel: &str) -> Self {
        let (tx, seen) = std::sync::mpsc::channel();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let client = redis::Client::open(server.url()).unwrap();
        let name = channel.to_owned();
        std::thread::spawn(move || {
            let mut con = client.get_connection().unwrap();
            let mut pubsub = con.as_pubsub();
            pubsub.subscribe(&name).unwrap();
            ready_tx.send(()).unwrap();
            while let Ok(message) = pubsub.get_message() {
                let payload: String = message.get_payload().unwrap_or_default();
                if tx.send(payload).is_err() {
                    break;
                }
            }
        });
        ready.recv().unwrap();
        Invalidations {
            url: server.url(),
            channel: channel.to_owned(),
            seen,
        }
    }

    /// The messages before a marker published now (Redis delivers a
    /// channel's messages in the order it took them).
    fn count(&self) -> usize {
        let mut con = redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg("end-of-test")
            .query(&mut con)
            .unwrap();
        self.seen.iter().take_while(|m| m != "end-of-test").count()
    }
}

async fn item(State(r): State<Runs>) -> impl IntoResponse {
    let n = r.fetch_add(1, Ordering::SeqCst);
    (
        [(header::CACHE_CONTROL, "max-age=60"), (header::AGE, "10")],
        format!("item v{n}"),
    )
}

async fn update(State(_): State<Runs>) -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn refuse(State(_): State<Runs>) -> StatusCode {
    StatusCode::CONFLICT
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_requests_invalidate_and_age_counts_what_came_before() {
    for cache in backends("http-unsafe") {
        let name = cache.backend_name();
        let count = runs();
        let app = Router::new()
            .route("/item", get(item).post(update).put(refuse))
            .layer(CacheLayer::new(cache.clone(), "unsafe"))
            .with_state(count.clone());
        let base = serve(app).await;
        assert_eq!(get_with(&base, "/item", &[]).await.body, "item v0");
        let hit = get_with(&base, "/item", &[]).await;
        assert_eq!(hit.header("x-cache"), Some("HIT"), "{name}");
        let age: u64 = hit.header("age").unwrap().parse().unwrap();
        assert!(age >= 10, "{name}: the Age it came with is counted ({age})");
        // A failed unsafe request leaves it; a successful one drops it.
        assert_eq!(send("PUT", format!("{base}/item"), &[]).await.status, 409);
        assert_eq!(
            get_with(&base, "/item", &[]).await.body,
            "item v0",
            "{name}"
        );
        assert_eq!(send("POST", format!("{base}/item"), &[]).await.status, 204);
        assert_eq!(
            get_with(&base, "/item", &[]).await.body,
            "item v1",
            "{name}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 2, "{name}");
    }
}

async fn report(State(r): State<Runs>) -> String {
    r.fetch_add(1, Ordering::SeqCst);
    "r".repeat(100 << 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_under_the_bound_is_stored() {
    for cache in backends("http-small") {
        let name = cache.backend_name();
        let count = runs();
        let app = Router::new()
            .route("/report", get(report))
            .layer(
                CacheLayer::new(cache.clone(), "small")
                    .ttl(Duration::from_secs(60))
                    .max_body_bytes(256 << 10),
            )
            .with_state(count.clone());
        let base = serve(app).await;
        let first = get_with(&base, "/report", &[]).await;
        let second = get_with(&base, "/report", &[]).await;
        assert_eq!(second.header("x-cache"), Some("HIT"), "{name}");
        assert_eq!(first.body.len(), 100 << 10);
        assert_eq!(second.body, first.body, "{name}");
        assert_eq!(count.load(Ordering::SeqCst), 1, "{name}");
    }
}

async fn catalog(State(r): State<Runs>) -> impl IntoResponse {
    r.fetch_add(1, Ordering::SeqCst);
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        "the catalog",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_says_public_is_shared_with_authorized_requests() {
    for cache in backends("http-public") {
        let name = cache.backend_name();
        let count = runs();
        let app = Router::new()
            .route("/catalog", get(catalog))
            .layer(CacheLayer::new(cache.clone(), "public"))
            .with_state(count.clone());
        let base = serve(app).await;
        let alice = [("authorization", "Bearer alice-token")];
        assert_eq!(
            get_with(&base, "/catalog", &alice).await.header("x-cache"),
            Some("MISS")
        );
        let bob = [("authorization", "Bearer bob-token")];
        assert_eq!(
            get_with(&base, "/catalog", &bob).await.header("x-cache"),
            Some("HIT"),
            "{name}"
        );
        assert_eq!(
            get_with(&base, "/catalog", &[]).await.header("x-cache"),
            Some("HIT"),
            "{name}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 1, "{name}");
    }
}

async fn long_lived(State(r): State<Runs>) -> impl IntoResponse {
    let n = r.fetch_add(1, Ordering::SeqCst);
    (
        [(header::CACHE_CONTROL, "max-age=600")],
        format!("long-lived v{n}"),
    )
}

/// Two servers behind one name: the same virtual host.
const HOST: &[(&str, &str)] = &[("host", "shop.example")];

/// `Age` is how long the entry has been in Redis by Redis's clock (its TTL
/// less what remains of it), on every host that reads it: here the
/// entry's remaining TTL is cut in Redis, as if it had been stored for
/// 100 s and then 700 s, and two hosts (two caches, two servers) see that
/// age and judge freshness by it. Before, `Age` was the writer's wall
/// clock against the reader's: 0 here, and any skew between two hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_is_measured_by_redis_not_by_the_hosts_clocks() {
    let namespace = cache_tests::unique_namespace("http-age");
    let url = cache_tests::shared_url();
    let count = runs();
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let app = Router::new()
            .route("/long", get(long_lived))
            .layer(CacheLayer::new(
                cache_tests::redis_cache(&url, &namespace),
                "age",
            ))
            .with_state(count.clone());
        hosts.push(serve(app).await);
    }
    let first = get_with(&hosts[0], "/long", HOST).await;
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert_eq!(first.header("age"), Some("0"));

    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let entries: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(entries.len(), 1, "one entry: {entries:?}");
    let kept_ms: i64 = redis::cmd("PTTL")
        .arg(&entries[0])
        .query(&mut conn)
        .unwrap();
    // The layer keeps an entry for its `max_ttl` (a day by default).
    assert!(kept_ms > 86_000_000, "{kept_ms}");
    let mut stored_for = |secs: i64| {
        let _: i64 = redis::cmd("PEXPIRE")
            .arg(&entries[0])
            .arg(86_400_000 - secs * 1000)
            .query(&mut conn)
            .unwrap();
    };

    stored_for(100);
    for host in &hosts {
        let hit = get_with(host, "/long", HOST).await;
        assert_eq!(hit.header("x-cache"), Some("HIT"));
        assert_eq!(hit.body, "long-lived v0");
        let age: u64 = hit.header("age").unwrap().parse().unwrap();
        // At least the 100 s Redis counts (a busy machine may add a few).
        assert!((100..600).contains(&age), "Age {age}, stored 100 s");
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);

    // Past its `max-age` by Redis's clock: no host serves it as fresh.
    stored_for(700);
    let refetched = get_with(&hosts[1], "/long", HOST).await;
    assert_eq!(refetched.body, "long-lived v1");
    assert_eq!(refetched.header("x-cache"), Some("MISS"));
    assert_eq!(count.load(Ordering::SeqCst), 2);
    let hit = get_with(&hosts[0], "/long", HOST).await;
    assert_eq!(hit.body, "long-lived v1");
    let age: u64 = hit.header("age").unwrap().parse().unwrap();
    assert!(age <= 2, "a new entry: Age {age}");
}

async fn short_lived(State(r): State<Runs>) -> impl IntoResponse {
    let n = r.fetch_add(1, Ordering::SeqCst);
    (
        [(header::CACHE_CONTROL, "max-age=1")],
        format!("short v{n}"),
    )
}

/// A stored response ages while it is stored, on both backends (the age is
/// read off the entry's remaining TTL, which the in-process backend
/// reports like Redis): past its `max-age` it is fetched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_response_ages_past_its_max_age() {
    for cache in backends("http-ages") {
        let name = cache.backend_name();
        let count = runs();
        let app = Router::new()
            .route("/short", get(short_lived))
            .layer(CacheLayer::new(cache.clone(), "ages"))
            .with_state(count.clone());
        let base = serve(app).await;
        assert_eq!(get_with(&base, "/short", &[]).await.body, "short v0");
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let later = get_with(&base, "/short", &[]).await;
        assert_eq!(later.body, "short v1", "{name}: fetched again");
        assert_eq!(count.load(Ordering::SeqCst), 2, "{name}");
    }
}
