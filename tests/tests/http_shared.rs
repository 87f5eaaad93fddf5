//! The HTTP layer as a shared cache (RFC 9111), tried as an attacker
//! would: a real HTTP client (reqwest) against an axum server on loopback,
//! with `CacheLayer` in front of the handlers, on both backends.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use cache_runtime::Cache;
use cache_runtime::http::CacheLayer;
use cache_tests::{backends, no_hang};

/// Serves `app` on a free loopback port; its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

struct Got {
    status: u16,
    x_cache: Option<String>,
    body: String,
}

async fn get_with(base: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = client().get(format!("{base}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    let x_cache = response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.text().await.unwrap();
    Got {
        status,
        x_cache,
        body,
    }
}

fn runs() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_page_is_never_served_to_others() {
    for cache in backends("http-alice") {
        let name = cache.backend_name();
        let count = runs();
        let app = Router::new()
            .route(
                "/account",
                get(
                    |State(c): State<Arc<AtomicU64>>, headers: HeaderMap| async move {
                        c.fetch_add(1, Ordering::SeqCst);
                        let auth = headers
                            .get(header::AUTHORIZATION)
                            .map_or("none", |v| v.to_str().unwrap_or("?"))
                            .to_owned();
                        (
                            [(header::CACHE_CONTROL, "max-age=60")],
                            format!("account page for auth={auth}"),
                        )
                    },
                ),
            )
            .layer(CacheLayer::new(cache.clone(), "alice").ttl(Duration::from_secs(60)))
            .with_state(count.clone());
        let base = serve(app).await;
        let alice = get_with(
            &base,
            "/account",
            &[("authorization", "Bearer alice-token")],
        )
        .await;
        assert_eq!(alice.body, "account page for auth=Bearer alice-token");
        let anonymous = get_with(&base, "/account", &[]).await;
        assert_eq!(
            anonymous.body, "account page for auth=none",
            "{name}: Alice's page served to an anonymous request"
        );
        let bob = get_with(&base, "/account", &[("cookie", "session=bob")]).await;
        assert!(
            !bob.body.contains("alice"),
            "{name}: Alice's page served to Bob: {}",
            bob.body
        );
        // A second request of Alice's is not answered from the cache either.
        get_with(
            &base,
            "/account",
            &[("authorization", "Bearer alice-token")],
        )
        .await;
        assert_eq!(count.load(Ordering::SeqCst), 4, "{name}");
    }
}

async fn whoami(
    State(c): State<Arc<AtomicU64>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> String {
    c.fetch_add(1, Ordering::SeqCst);
    let host = headers
        .get(header::HOST)
        .map_or("", |v| v.to_str().unwrap_or("?"));
    format!("page of {host}{}", uri.path())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_the_whole_target() {
    for cache in backends("http-target") {
        let name = cache.backend_name();
        let count = runs();
        let tenant = Router::new()
            .route("/profile", get(whoami))
            .layer(CacheLayer::new(cache.clone(), "tenants").ttl(Duration::from_secs(60)));
        let app = Router::new()
            .nest("/tenants/{tenant}", tenant)
            .with_state(count.clone());
        let base = serve(app).await;
        let host = base.trim_start_matches("http://").to_owned();
        let acme = get_with(&base, "/tenants/acme/profile", &[]).await;
        assert_eq!(acme.body, format!("page of {host}/tenants/acme/profile"));
        let globex = get_with(&base, "/tenants/globex/profile", &[]).await;
        assert_eq!(
            globex.body,
            format!("page of {host}/tenants/globex/profile"),
            "{name}: another tenant's page"
        );
        // A forged host gets its own entry, and never poisons the real one.
        let forged = get_with(&base, "/tenants/acme/profile", &[("host", "evil.example")]).await;
        assert_eq!(forged.body, "page of evil.example/tenants/acme/profile");
        let again = get_with(&base, "/tenants/acme/profile", &[]).await;
        assert_eq!(
            (again.body.as_str(), again.x_cache.as_deref()),
            (acme.body.as_str(), Some("HIT")),
            "{name}: the forged host poisoned the page"
        );
        assert_eq!(count.load(Ordering::SeqCst), 3, "{name}");
    }
}

async fn encoded(State(c): State<Arc<AtomicU64>>, headers: HeaderMap) -> Response {
    c.fetch_add(1, Ordering::SeqCst);
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    if gzip {
        (
            [
                (header::VARY, "Accept-Encoding"),
                (header::CONTENT_ENCODING, "gzip"),
            ],
            "gzip bytes",
        )
            .into_response()
    } else {
        ([(header::VARY, "Accept-Encoding")], "plain text").into_response()
    }
}

async fn star(State(c): State<Arc<AtomicU64>>) -> impl IntoResponse {
    c.fetch_add(1, Ordering::SeqCst);
    ([(header::VARY, "*")], "varies with everything")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_vary_keeps_variants_apart() {
    for cache in backends("http-rvary") {
        let name = cache.backend_name();
        let count = runs();
        let app = Router::new()
            .route("/file", get(encoded))
            .route("/star", get(star))
            .layer(CacheLayer::new(cache.clone(), "vary").ttl(Duration::from_secs(60)))
            .with_state(count.clone());
        let base = serve(app).await;
        let gzip = get_with(&base, "/file", &[("accept-encoding", "gzip")]).await;
        assert_eq!(gzip.body, "gzip bytes");
        let identity = get_with(&base, "/file", &[("accept-encoding", "identity")]).await;
        assert_eq!(
            identity.body, "plain text",
            "{name}: the cached gzip body for `identity`"
        );
        let again = get_with(&base, "/file", &[("accept-encoding", "gzip")]).await;
        assert_eq!(
            (again.body.as_str(), again.x_cache.as_deref()),
            ("gzip bytes", Some("HIT")),
            "{name}"
        );
        let again = get_with(&base, "/file", &[("accept-encoding", "identity")]).await;
        assert_eq!(
            (again.body.as_str(), again.x_cache.as_deref()),
            ("plain text", Some("HIT")),
            "{name}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 2, "{name}");
        for _ in 0..3 {
            get_with(&base, "/star", &[]).await;
        }
        assert_eq!(count.load(Ordering::SeqCst), 5, "{name}: `Vary: *` stored");
    }
}

/// A body of `chunks` chunks of `size` bytes, with no length, counting
/// what it gave; it stops after the first chunk until `gate` opens.
struct Gated {
    left: usize,
    size: usize,
    produced: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
    waiting: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    first: bool,
}

impl http_body::Body for Gated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        if !self.first {
            if self.waiting.is_none() {
                let gate = self.gate.clone();
                self.waiting = Some(Box::pin(async move {
                    let _ = gate.acquire().await;
                }));
            }
            let waiting = self.waiting.as_mut().unwrap();
            if waiting.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.waiting = None;
        }
        self.first = false;
        self.left -= 1;
        self.produced.fetch_add(self.size, Ordering::SeqCst);
        Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(vec![
            b'x';
            self.size
        ])))))
    }
}

#[derive(Clone)]
struct Stream {
    runs: Arc<AtomicU64>,
    produced: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
}

async fn big(State(s): State<Stream>) -> Response {
    s.runs.fetch_add(1, Ordering::SeqCst);
    let body = Gated {
        left: 64,
        size: 64 << 10,
        produced: s.produced.clone(),
        gate: s.gate.clone(),
        waiting: None,
        first: true,
    };
    Response::new(Body::new(body))
}

async fn events(State(s): State<Stream>) -> Response {
    s.runs.fetch_add(1, Ordering::SeqCst);
    let body = Gated {
        left: 3,
        size: 16,
        produced: s.produced.clone(),
        gate: s.gate.clone(),
        waiting: None,
        first: true,
    };
    let mut response = Response::new(Body::new(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_and_are_never_buffered_past_the_bound() {
    for cache in backends("http-stream") {
        let name = cache.backend_name();
        let state = Stream {
            runs: runs(),
            produced: Arc::new(AtomicUsize::new(0)),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        };
        let bound = 256 << 10;
        let app = Router::new()
            .route("/big", get(big))
            .route("/events", get(events))
            .layer(
                CacheLayer::new(cache.clone(), "stream")
                    .ttl(Duration::from_secs(60))
                    .max_body_bytes(bound),
            )
            .with_state(state.clone());
        let base = serve(app).await;
        for path in ["/big", "/events"] {
            state.produced.store(0, Ordering::SeqCst);
            // The head arrives while the body waits at its gate: nothing
            // past the first chunk was buffered.
            let response = no_hang(30, "the response head", async {
                client().get(format!("{base}{path}")).send().await.unwrap()
            })
            .await;
            assert!(
                state.produced.load(Ordering::SeqCst) <= bound,
                "{name} {path}: {} bytes buffered before the head",
                state.produced.load(Ordering::SeqCst)
            );
            state.gate.add_permits(1 << 20);
            let body = response.bytes().await.unwrap();
            assert_eq!(body.len(), state.produced.load(Ordering::SeqCst), "{name}");
            state.gate.forget_permits(1 << 20);
        }
        // Neither was stored.
        state.gate.add_permits(1 << 20);
        get_with(&base, "/big", &[]).await;
        get_with(&base, "/events", &[]).await;
        assert_eq!(state.runs.load(Ordering::SeqCst), 4, "{name}");
    }
}

/// A body that says it has 100 bytes, gives 10, then fails.
struct Failing {
    sent: bool,
}

impl http_body::Body for Failing {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        if self.sent {
            return Poll::Ready(Some(Err(std::io::Error::other("database went away"))));
        }
        self.sent = true;
        Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
            b"0123456789",
        )))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(100)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_fails_fails_for_the_client_and_is_not_stored() {
    for cache in backends("http-fail") {
        let name = cache.backend_name();
        let count = runs();
        let app = Router::new()
            .route(
                "/report",
                get(|State(c): State<Arc<AtomicU64>>| async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    Response::new(Body::new(Failing { sent: false }))
                }),
            )
            .layer(CacheLayer::new(cache.clone(), "fail").ttl(Duration::from_secs(60)))
            .with_state(count.clone());
        let base = serve(app).await;
        for _ in 0..2 {
            let response = client().get(format!("{base}/report")).send().await;
            let failed = match response {
                Err(_) => true,
                Ok(response) => response.bytes().await.is_err(),
            };
            assert!(
                failed,
                "{name}: a failed body reached the client as a success"
            );
        }
        assert_eq!(count.load(Ordering::SeqCst), 2, "{name}: stored");
    }
}

#[derive(Clone)]
struct Shop {
    runs: Arc<AtomicU64>,
    status: Arc<AtomicU64>,
}

async fn price(State(s): State<Shop>) -> Response {
    s.runs.fetch_add(1, Ordering::SeqCst);
    let status = StatusCode::from_u16(s.status.load(Ordering::SeqCst) as u16).unwrap();
    if status == StatusCode::OK {
        "product 1: $10".into_response()
    } else {
        (status, "not today").into_response()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_serves_through_failures_only() {
    for cache in backends("http-grace") {
        let name = cache.backend_name();
        let shop = Shop {
            runs: runs(),
            status: Arc::new(AtomicU64::new(200)),
        };
        let app = Router::new()
            .route("/price", get(price))
            .layer(
                CacheLayer::new(cache.clone(), "grace")
                    .ttl(Duration::from_secs(1))
                    .grace(Duration::from_secs(3600)),
            )
            .with_state(shop.clone());
        let base = serve(app).await;
        assert_eq!(get_with(&base, "/price", &[]).await.body, "product 1: $10");
        // Past its freshness (one second, the least TTL there is).
        tokio::time::sleep(Duration::from_millis(2100)).await;
        shop.status.store(404, Ordering::SeqCst);
        for _ in 0..4 {
            let got = get_with(&base, "/price", &[]).await;
            assert_eq!(
                (got.status, got.body.as_str()),
                (404, "not today"),
                "{name}: grace turned a 404 into the stale 200"
            );
        }
        shop.status.store(503, Ordering::SeqCst);
        let got = get_with(&base, "/price", &[]).await;
        assert_eq!(
            (got.status, got.body.as_str()),
            (200, "product 1: $10"),
            "{name}: a failure is what grace is for"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_make_the_origin_work() {
    let server = cache_tests::RedisServer::start();
    let redis = cache_tests::redis_cache(&server.url(), "http-no-cache");
    let memory = Cache::builder().memory().build().unwrap();
    for cache in [memory, redis] {
        let name = cache.backend_name();
        let count = runs();
        let app = Router::new()
            .route(
                "/home",
                get(|State(c): State<Arc<AtomicU64>>| async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    "home"
                }),
            )
            .layer(CacheLayer::new(cache.clone(), "home").ttl(Duration::from_secs(60)))
            .with_state(count.clone());
        let base = serve(app).await;
        get_with(&base, "/home", &[]).await;
        let before = publishes(&server);
        for _ in 0..20 {
            get_with(&base, "/home", &[("cache-control", "no-cache")]).await;
        }
        assert_eq!(count.load(Ordering::SeqCst), 1, "{name}: the handler ran");
        assert_eq!(publishes(&server), before, "{name}: announcements");
    }
}

/// The `PUBLISH` commands the server ran.
fn publishes(server: &cache_tests::RedisServer) -> u64 {
    server
        .command_calls()
        .into_iter()
        .find(|(c, _)| c == "publish")
        .map_or(0, |(_, n)| n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshness_comes_from_the_response() {
    for cache in backends("http-fresh") {
        let name = cache.backend_name();
        let count = runs();
        let app = Router::new()
            .route(
                "/now",
                get(|State(c): State<Arc<AtomicU64>>| async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    ([(header::CACHE_CONTROL, "max-age=0")], "now")
                }),
            )
            .route(
                "/old",
                get(|State(c): State<Arc<AtomicU64>>| async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    (
                        [(header::CACHE_CONTROL, "max-age=60"), (header::AGE, "600")],
                        "old",
                    )
                }),
            )
            .route(
                "/shared",
                get(|State(c): State<Arc<AtomicU64>>| async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    (
                        [(header::CACHE_CONTROL, "max-age=0, s-maxage=60")],
                        "shared",
                    )
                }),
            )
            .route(
                "/revalidate",
                get(|State(c): State<Arc<AtomicU64>>| async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    ([(header::CACHE_CONTROL, "no-cache")], "ask me")
                }),
            )
            .layer(CacheLayer::new(cache.clone(), "fresh").ttl(Duration::from_secs(60)))
            .with_state(count.clone());
        let base = serve(app).await;
        for (path, runs) in [("/now", 2), ("/old", 2), ("/shared", 1), ("/revalidate", 2)] {
            count.store(0, Ordering::SeqCst);
            get_with(&base, path, &[]).await;
            get_with(&base, path, &[]).await;
            assert_eq!(count.load(Ordering::SeqCst), runs, "{name} {path}");
        }
    }
}
