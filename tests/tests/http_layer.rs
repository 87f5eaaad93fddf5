//! The HTTP layer (`cache_runtime::http::CacheLayer`) in front of an axum
//! router, called in process: each caching rule, on both backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use cache_runtime::Cache;
use cache_runtime::http::CacheLayer;
use cache_tests::backends;
use http_body_util::BodyExt;
use tower::ServiceExt;

#[derive(Default)]
struct Counts {
    runs: AtomicU64,
    version: AtomicU64,
}

async fn product(State(c): State<Arc<Counts>>, Path(id): Path<u32>) -> String {
    c.runs.fetch_add(1, Ordering::SeqCst);
    format!("product {id} v{}", c.version.load(Ordering::SeqCst))
}

async fn secret(State(c): State<Arc<Counts>>) -> impl IntoResponse {
    c.runs.fetch_add(1, Ordering::SeqCst);
    (
        [(header::CACHE_CONTROL, "private, max-age=60")],
        "yours only",
    )
}

async fn volatile(State(c): State<Arc<Counts>>) -> impl IntoResponse {
    c.runs.fetch_add(1, Ordering::SeqCst);
    ([(header::CACHE_CONTROL, "no-store")], "now")
}

async fn missing(State(c): State<Arc<Counts>>) -> impl IntoResponse {
    c.runs.fetch_add(1, Ordering::SeqCst);
    (StatusCode::NOT_FOUND, "no such thing")
}

async fn greeting(State(c): State<Arc<Counts>>, headers: HeaderMap) -> String {
    c.runs.fetch_add(1, Ordering::SeqCst);
    let lang = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("en");
    if lang.starts_with("fr") {
        "bonjour".into()
    } else {
        "hello".into()
    }
}

fn app(cache: Cache, counts: Arc<Counts>) -> Router {
    Router::new()
        .route("/products/{id}", get(product).post(product))
        .route("/secret", get(secret))
        .route("/volatile", get(volatile))
        .route("/missing", get(missing))
        .route("/greeting", get(greeting))
        .layer(
            CacheLayer::new(cache, "api")
                .ttl(Duration::from_secs(60))
                .vary(header::ACCEPT_LANGUAGE)
                .tags(|req| {
                    let path = req.uri.path();
                    match path.strip_prefix("/products/") {
                        Some(id) => vec!["products".into(), format!("product:{id}")],
                        None => vec![],
                    }
                }),
        )
        .with_state(counts)
}

struct Answer {
    status: StatusCode,
    x_cache: Option<String>,
    age: Option<u64>,
    body: String,
}

async fn send(app: &Router, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (x_cache, age) = (header("x-cache"), header("age").map(|a| a.parse().unwrap()));
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        x_cache,
        age,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get_path(app: &Router, path: &str) -> Answer {
    send(app, "GET", path, &[]).await
}

#[tokio::test]
async fn a_get_is_a_miss_then_a_hit_with_its_age() {
    for cache in backends("http-hit") {
        let name = cache.backend_name();
        let counts = Arc::new(Counts::default());
        let app = app(cache.clone(), counts.clone());
        let first = get_path(&app, "/products/1").await;
        assert_eq!(
            (first.status, first.x_cache.as_deref()),
            (StatusCode::OK, Some("MISS")),
            "{name}"
        );
        let second = get_path(&app, "/products/1").await;
        assert_eq!(second.x_cache.as_deref(), Some("HIT"), "{name}");
        assert_eq!(second.body, first.body, "{name}");
        assert_eq!(second.age, Some(0), "{name}");
        assert_eq!(first.age, Some(0), "{name}: the age of what it stored");
        // Another query string is another response.
        assert_eq!(
            get_path(&app, "/products/1?x=1").await.x_cache.as_deref(),
            Some("MISS")
        );
        assert_eq!(counts.runs.load(Ordering::SeqCst), 2, "{name}");
        // The layer's calls are counted like a function's, once for all
        // the routes it wraps.
        get_path(&app, "/greeting").await;
        let stats = cache.function_stats();
        assert_eq!(stats.len(), 1, "{stats:?}");
        let api = stats["cache_runtime::http::api"];
        assert_eq!((api.hits, api.misses), (1, 3), "{name}: {api:?}");
    }
}

#[tokio::test]
async fn what_is_not_cached() {
    for cache in backends("http-rules") {
        let name = cache.backend_name();
        let counts = Arc::new(Counts::default());
        let app = app(cache, counts.clone());
        for path in ["/secret", "/volatile", "/missing"] {
            for _ in 0..2 {
                let answer = get_path(&app, path).await;
                assert_eq!(answer.x_cache.as_deref(), Some("MISS"), "{name} {path}");
            }
        }
        assert_eq!(
            get_path(&app, "/missing").await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            counts.runs.load(Ordering::SeqCst),
            7,
            "{name}: private, no-store and 404 each ran every time"
        );
        // Other methods pass through.
        let before = counts.runs.load(Ordering::SeqCst);
        for _ in 0..2 {
            let post = send(&app, "POST", "/products/5", &[]).await;
            assert_eq!(post.x_cache.as_deref(), Some("MISS"), "{name}");
        }
        assert_eq!(counts.runs.load(Ordering::SeqCst), before + 2, "{name}");
    }
}

#[tokio::test]
async fn vary_head_and_client_cache_control() {
    for cache in backends("http-vary") {
        let name = cache.backend_name();
        let counts = Arc::new(Counts::default());
        let app = app(cache, counts.clone());
        let fr = [("accept-language", "fr-FR")];
        assert_eq!(send(&app, "GET", "/greeting", &fr).await.body, "bonjour");
        assert_eq!(
            get_path(&app, "/greeting").await.body,
            "hello",
            "{name}: another language, another entry"
        );
        let again = send(&app, "GET", "/greeting", &fr).await;
        assert_eq!(
            (again.body.as_str(), again.x_cache.as_deref()),
            ("bonjour", Some("HIT")),
            "{name}"
        );
        assert_eq!(counts.runs.load(Ordering::SeqCst), 2);

        // HEAD: cached too, and never with a body.
        let head = send(&app, "HEAD", "/products/9", &[]).await;
        assert_eq!(
            (head.status, head.body.as_str()),
            (StatusCode::OK, ""),
            "{name}"
        );
        let head = send(&app, "HEAD", "/products/9", &[]).await;
        assert_eq!(
            (head.x_cache.as_deref(), head.body.as_str()),
            (Some("HIT"), ""),
            "{name}"
        );

        // The client's `no-cache` is ignored (a client cannot make the
        // handler work); `no-store` bypasses the cache.
        get_path(&app, "/products/3").await;
        let runs = counts.runs.load(Ordering::SeqCst);
        let cached = send(&app, "GET", "/products/3", &[("cache-control", "no-cache")]).await;
        assert_eq!(cached.x_cache.as_deref(), Some("HIT"), "{name}");
        let bypassed = send(&app, "GET", "/products/3", &[("cache-control", "no-store")]).await;
        assert_eq!(bypassed.x_cache.as_deref(), Some("MISS"), "{name}");
        assert_eq!(counts.runs.load(Ordering::SeqCst), runs + 1, "{name}");
    }
}

#[tokio::test]
async fn tags_invalidate_responses() {
    for cache in backends("http-tags") {
        let name = cache.backend_name();
        let counts = Arc::new(Counts::default());
        let app = app(cache.clone(), counts.clone());
        get_path(&app, "/products/1").await;
        get_path(&app, "/products/2").await;
        counts.version.store(2, Ordering::SeqCst);
        cache.invalidate_tag("product:1").await.unwrap();
        let one = get_path(&app, "/products/1").await;
        assert_eq!(
            (one.x_cache.as_deref(), one.body.as_str()),
            (Some("MISS"), "product 1 v2"),
            "{name}"
        );
        assert_eq!(
            get_path(&app, "/products/2").await.body,
            "product 2 v0",
            "{name}: untouched"
        );
        cache.invalidate_tag("products").await.unwrap();
        assert_eq!(
            get_path(&app, "/products/2").await.body,
            "product 2 v2",
            "{name}"
        );
    }
}
