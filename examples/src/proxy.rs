//! A caching reverse proxy: [`CacheLayer`] in front of a handler that
//! forwards every request to an origin server. The binary
//! `http-cache-proxy` runs it; `examples/http-conformance.sh` runs the
//! public HTTP caching test suite against it.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use cache_runtime::Cache;
use cache_runtime::http::CacheLayer;

/// How the proxy caches.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The origin's base URL, e.g. `http://127.0.0.1:8000`.
    pub origin: String,
    /// How long a response that says nothing of its freshness is fresh
    /// (default zero: it is stored, and revalidated before each use).
    pub ttl: Duration,
    /// The largest body stored.
    pub max_body_bytes: usize,
    /// Serve stale responses this long when the origin fails.
    pub grace: Duration,
}

impl ProxyConfig {
    /// Defaults for `origin`.
    pub fn new(origin: impl Into<String>) -> Self {
        ProxyConfig {
            origin: origin.into().trim_end_matches('/').to_owned(),
            ttl: Duration::ZERO,
            max_body_bytes: 8 << 20,
            grace: Duration::ZERO,
        }
    }
}

#[derive(Clone)]
struct Upstream {
    origin: String,
    client: reqwest::Client,
}

/// The proxy's router: every request, cached by `cache`, forwarded to the
/// origin.
pub fn app(cache: Cache, config: &ProxyConfig) -> Router {
    // A new connection per request: an origin that closes idle
    // connections would otherwise fail requests sent on them.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client with no TLS to set up");
    let upstream = Upstream {
        origin: config.origin.clone(),
        client,
    };
    Router::new()
        .fallback(forward)
        .layer(
            CacheLayer::new(cache, "proxy")
                .ttl(config.ttl)
                .grace(config.grace)
                .max_body_bytes(config.max_body_bytes)
                .tags_from_header(HeaderName::from_static("surrogate-key")),
        )
        .with_state(upstream)
}

/// Fields that belong to one connection, not forwarded either way.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// Copies the end-to-end fields: not those of the hop, nor those that
/// `Connection` names.
fn copy(from: &HeaderMap, to: &mut HeaderMap) {
    let listed: Vec<String> = from
        .get_all(axum::http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in from {
        if !hop_by_hop(name) && !listed.iter().any(|l| l == name.as_str()) {
            to.append(name.clone(), value.clone());
        }
    }
}

async fn forward(State(up): State<Upstream>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("{}{path}", up.origin);
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(body) => body,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let mut headers = HeaderMap::new();
    copy(&parts.headers, &mut headers);
    let sent = up
        .client
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let mut from = match sent {
        Ok(from) => from,
        Err(error) => {
            tracing::warn!(%error, "origin failed");
            return StatusCode::BAD_GATEWAY.into_response();
        }
    };
    let mut response = Response::builder().status(from.status());
    if let Some(headers) = response.headers_mut() {
        copy(from.headers(), headers);
        if let Some(length) = from.content_length() {
            headers.insert(axum::http::header::CONTENT_LENGTH, length.into());
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, reqwest::Error>>(4);
    tokio::spawn(async move {
        loop {
            let chunk = from.chunk().await;
            let done = !matches!(chunk, Ok(Some(_)));
            let sent = match chunk {
                Ok(Some(bytes)) => tx.send(Ok(bytes)).await,
                Ok(None) => Ok(()),
                Err(e) => tx.send(Err(e)).await,
            };
            if done || sent.is_err() {
                break;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    response
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}
