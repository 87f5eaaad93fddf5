//! The caching reverse proxy (`http-cache-proxy`) in process, in front of
//! an origin on loopback, on the memory backend and on a private Redis:
//! what it stores, revalidates, passes on and invalidates. Counts only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cache_examples::proxy::{self, ProxyConfig};
use cache_runtime::Cache;
use cache_tests::RedisServer;

type Runs = Arc<AtomicU64>;

async fn listen(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn fresh(State(r): State<Runs>) -> impl IntoResponse {
    let n = r.fetch_add(1, Ordering::SeqCst);
    (
        [(header::CACHE_CONTROL, "max-age=60")],
        format!("fresh {n}"),
    )
}

async fn validated(State(r): State<Runs>, headers: HeaderMap) -> Response {
    r.fetch_add(1, Ordering::SeqCst);
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v == "\"a\"")
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, "\"a\"")]).into_response();
    }
    (
        [
            (header::CACHE_CONTROL, "max-age=0"),
            (header::ETAG, "\"a\""),
        ],
        "validated",
    )
        .into_response()
}

async fn private(State(r): State<Runs>) -> impl IntoResponse {
    r.fetch_add(1, Ordering::SeqCst);
    ([(header::CACHE_CONTROL, "private, max-age=60")], "mine")
}

async fn write(State(_): State<Runs>) -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn fetch(client: &reqwest::Client, url: String) -> (String, String) {
    let response = client.get(url).send().await.unwrap();
    let x_cache = response.headers()["x-cache"].to_str().unwrap().to_owned();
    (x_cache, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_caches_what_the_origin_allows_on_both_backends() {
    let server = RedisServer::start();
    let caches = [
        Cache::builder().memory().build().unwrap(),
        Cache::builder()
            .redis(server.url())
            .namespace("proxy-test")
            .build()
            .unwrap(),
    ];
    for cache in caches {
        let name = cache.backend_name();
        let runs: Runs = Arc::default();
        let origin = Router::new()
            .route("/fresh", get(fresh).post(write))
            .route("/validated", get(validated))
            .route("/private", get(private))
            .with_state(runs.clone());
        let origin = listen(origin).await;
        let base = listen(proxy::app(cache, &ProxyConfig::new(&origin))).await;
        let client = reqwest::Client::new();

        assert_eq!(
            fetch(&client, format!("{base}/fresh")).await,
            ("MISS".into(), "fresh 0".into())
        );
        assert_eq!(
            fetch(&client, format!("{base}/fresh")).await,
            ("HIT".into(), "fresh 0".into()),
            "{name}"
        );
        let posted = client.post(format!("{base}/fresh")).send().await.unwrap();
        assert_eq!(posted.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            fetch(&client, format!("{base}/fresh")).await.1,
            "fresh 1",
            "{name}: invalidated by the POST"
        );

        fetch(&client, format!("{base}/validated")).await;
        assert_eq!(
            fetch(&client, format!("{base}/validated")).await,
            ("REVALIDATED".into(), "validated".into()),
            "{name}"
        );
        for _ in 0..2 {
            assert_eq!(
                fetch(&client, format!("{base}/private")).await.0,
                "MISS",
                "{name}"
            );
        }
        // fresh: 2 (one after the POST), validated: 2, private: 2.
        assert_eq!(runs.load(Ordering::SeqCst), 6, "{name}");
    }
}
