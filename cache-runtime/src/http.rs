//! A [`tower`](https://docs.rs/tower) layer that caches whole HTTP
//! responses (the `http` feature): the Express middleware of the classic
//! walkthrough, with everything `#[cached]` does — one computation per key
//! across processes, fail-open, tags, `grace`.
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use cache_runtime::{Cache, http::CacheLayer};
//!
//! # fn app(cache: Cache) -> Router {
//! let products: Router = Router::new()
//!     .route("/api/products", get(|| async { "[...]" }))
//!     .layer(
//!         CacheLayer::new(cache, "products")
//!             .ttl(Duration::from_secs(60))
//!             .tags(|req| vec!["products".to_owned()]),
//!     );
//! # products }
//! ```
//!
//! What is cached, and how:
//! - `GET` and `HEAD` requests (other methods pass through), keyed by
//!   method, path, query and the values of the [`vary`](CacheLayer::vary)
//!   headers; responses whose status is one of
//!   [`statuses`](CacheLayer::statuses) (default `200`), unless the
//!   handler says `Cache-Control: no-store` or `private`, or sets a cookie,
//!   and whose body is at most [`max_body_bytes`](CacheLayer::max_body_bytes).
//! - Answers carry `X-Cache: HIT` (from the cache, or from a concurrent
//!   request's computation) or `MISS` (this request ran the handler), and
//!   `Age` (seconds since the response was stored) on a hit.
//! - A client's `Cache-Control: no-cache` recomputes and stores the
//!   response ([`refresh`](crate::refresh)); `no-store` bypasses the cache
//!   ([`bypass`](crate::bypass)).
//! - Tags from a closure of the request; [`Cache::invalidate_tag`] drops
//!   the responses that carry them, race-free, in every process.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AGE, CACHE_CONTROL, CONTENT_LENGTH, HeaderName, HeaderValue, SET_COOKIE};
use http::{Method, Request, Response, StatusCode, request::Parts};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use tower_layer::Layer;
use tower_service::Service;

use crate::Cache;
use crate::codec::Codec;
use crate::key::ArgsDigest;
use crate::outcome::OkOnly;
use crate::spec::{Options, Spec};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a response from a [`CacheService`].
pub type CacheBody = UnsyncBoxBody<Bytes, BoxError>;

type Tags = Arc<dyn Fn(&Parts) -> Vec<String> + Send + Sync>;

/// Caches the responses of the service it wraps. See the [module](self).
#[derive(Clone)]
pub struct CacheLayer {
    cache: Cache,
    name: &'static str,
    ttl: Duration,
    grace: Option<Duration>,
    vary: Vec<HeaderName>,
    statuses: Vec<StatusCode>,
    max_body_bytes: usize,
    tags: Option<Tags>,
    /// Made on the first `layer`, and shared by every service made from
    /// this layer and its clones (axum layers each route on its own).
    spec: Arc<std::sync::OnceLock<&'static Spec>>,
}

impl std::fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheLayer")
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .field("vary", &self.vary)
            .finish_non_exhaustive()
    }
}

impl CacheLayer {
    /// Caches in `cache`; `name` tells these responses apart from others
    /// in the keys, the stats and the metrics (`cache_runtime::http::{name}`).
    /// Defaults: TTL the cache's `default_ttl`, status 200 only, bodies up
    /// to 1 MiB, no tags, no `Vary` headers.
    pub fn new(cache: Cache, name: &str) -> Self {
        let ttl = cache.inner.default_ttl;
        CacheLayer {
            cache,
            name: Box::leak(name.to_owned().into_boxed_str()),
            ttl,
            grace: None,
            vary: Vec::new(),
            statuses: vec![StatusCode::OK],
            max_body_bytes: 1 << 20,
            tags: None,
            spec: Arc::default(),
        }
    }

    /// How long a response is served from the cache (whole seconds, at
    /// least one).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_secs(1));
        self.spec = Arc::default();
        self
    }

    /// Serve a response this long past its TTL while one request
    /// refreshes it, and when the handler fails (as `grace` in
    /// `#[cached]`).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace.max(Duration::from_secs(1)));
        self.spec = Arc::default();
        self
    }

    /// Keys responses also by this request header (`Accept-Language`,
    /// `Accept-Encoding`, ...).
    pub fn vary(mut self, header: HeaderName) -> Self {
        self.vary.push(header);
        self
    }

    /// The statuses whose responses are cached (default: 200 only).
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.statuses = statuses.into_iter().collect();
        self
    }

    /// The largest body cached, in bytes (default 1 MiB); a larger one is
    /// passed on, not stored.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The tags of a request's response, for
    /// [`Cache::invalidate_tag`](crate::Cache::invalidate_tag).
    pub fn tags(mut self, tags: impl Fn(&Parts) -> Vec<String> + Send + Sync + 'static) -> Self {
        self.tags = Some(Arc::new(tags));
        self
    }

    /// The description of these responses, made once per layer (and kept
    /// for the life of the process, like a function's).
    fn spec(&self) -> &'static Spec {
        self.spec.get_or_init(|| {
            let options = Options {
                ttl_secs: Some(self.ttl.as_secs().max(1)),
                grace_secs: self.grace.map(|g| g.as_secs().max(1)),
                codec: Codec::MsgPack,
                ..Options::DEFAULT
            };
            Box::leak(Box::new(Spec::new(self.name, marker, options)))
        })
    }
}

fn marker() -> &'static str {
    "cache_runtime::http"
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> CacheService<S> {
        self.spec();
        CacheService {
            inner,
            config: Arc::new(self.clone()),
        }
    }
}

/// The service of a [`CacheLayer`].
#[derive(Clone)]
pub struct CacheService<S> {
    inner: S,
    config: Arc<CacheLayer>,
}

impl<S> std::fmt::Debug for CacheService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A response as stored.
#[derive(Serialize, Deserialize)]
struct Stored {
    status: u16,
    headers: Vec<(String, Binary)>,
    body: Binary,
    /// Milliseconds since 1970.
    stored_at: u64,
}

/// Bytes written as MessagePack `bin`, not as a list of numbers.
struct Binary(Vec<u8>);

impl Serialize for Binary {
    fn serialize<Z: serde::Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Binary {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Binary;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Binary, E> {
                Ok(Binary(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Binary, E> {
                Ok(Binary(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Binary, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Binary(out))
            }
        }
        d.deserialize_bytes(Visit)
    }
}

/// What is not stored: a response passed on, or the service's error.
enum Pass<E> {
    Response(Response<CacheBody>),
    Error(E),
}

fn boxed<B>(body: B) -> CacheBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

fn full(bytes: impl Into<Bytes>) -> CacheBody {
    boxed(Full::new(bytes.into()).map_err(|e: Infallible| match e {}))
}

/// Whether a `Cache-Control` header holds one of `directives`.
fn cache_control_has(headers: &http::HeaderMap, directives: &[&str]) -> bool {
    headers.get_all(CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .map(|d| {
                    d.trim()
                        .split('=')
                        .next()
                        .unwrap_or("")
                        .to_ascii_lowercase()
                })
                .any(|d| directives.contains(&d.as_str()))
        })
    })
}

impl<S, B, ResBody> Service<Request<B>> for CacheService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<CacheBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<CacheBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone that was made ready is the one that serves.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Box::pin(async move { Ok(inner.call(req).await?.map(boxed)) });
        }
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bypass = cache_control_has(&parts.headers, &["no-store"]);
            let refresh = cache_control_has(&parts.headers, &["no-cache"]);
            let mut digest = ArgsDigest::new();
            digest.arg(parts.method.as_str());
            digest.arg(parts.uri.path());
            digest.arg(&parts.uri.query());
            for name in &config.vary {
                let values: Vec<&[u8]> = parts
                    .headers
                    .get_all(name)
                    .iter()
                    .map(HeaderValue::as_bytes)
                    .collect();
                digest.arg(&(name.as_str(), values));
            }
            let tags = config.tags.as_ref().map_or_else(Vec::new, |t| t(&parts));
            let head = parts.method == Method::HEAD;
            let ran = Arc::new(AtomicBool::new(false));
            let compute = {
                let (config, ran) = (config.clone(), ran.clone());
                async move {
                    ran.store(true, Ordering::Relaxed);
                    let response = match inner.call(Request::from_parts(parts, body)).await {
                        Ok(response) => response,
                        Err(e) => return Err(Pass::Error(e)),
                    };
                    store_form(&config, response).await
                }
            };
            let spec = config.spec();
            let call = crate::__private::execute(
                Some(config.cache.clone()),
                spec,
                digest.finish(),
                &tags,
                OkOnly,
                crate::__private::LocalForm::bytes(),
                compute,
            );
            let result = if bypass {
                crate::bypass(call).await
            } else if refresh {
                crate::refresh(call).await
            } else {
                call.await
            };
            let hit = !ran.load(Ordering::Relaxed);
            match result {
                Ok(stored) => Ok(answer(stored, hit, head)),
                Err(Pass::Response(mut response)) => {
                    response
                        .headers_mut()
                        .insert("x-cache", HeaderValue::from_static("MISS"));
                    Ok(response)
                }
                Err(Pass::Error(e)) => Err(e),
            }
        })
    }
}

/// The stored form of a response, or the response to pass on.
async fn store_form<B, E>(config: &CacheLayer, response: Response<B>) -> Result<Stored, Pass<E>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let cacheable = config.statuses.contains(&parts.status)
        && !cache_control_has(&parts.headers, &["no-store", "private"])
        && !parts.headers.contains_key(SET_COOKIE)
        && declared.is_none_or(|n| n <= config.max_body_bytes);
    if !cacheable {
        return Err(Pass::Response(Response::from_parts(parts, boxed(body))));
    }
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let error: BoxError = e.into();
            tracing::warn!(target: "cache_runtime", %error, "response body failed; not cached");
            let body = http_body_util::Empty::new().map_err(|e: Infallible| match e {});
            return Err(Pass::Response(Response::from_parts(parts, boxed(body))));
        }
    };
    if bytes.len() > config.max_body_bytes {
        return Err(Pass::Response(Response::from_parts(parts, full(bytes))));
    }
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| !is_hop_by_hop(name))
        .map(|(name, value)| (name.as_str().to_owned(), Binary(value.as_bytes().to_vec())))
        .collect();
    Ok(Stored {
        status: parts.status.as_u16(),
        headers,
        body: Binary(bytes.to_vec()),
        stored_at: crate::entry::now_ms(),
    })
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "x-cache"
            | "age"
    )
}

/// The response for a stored form.
fn answer(stored: Stored, hit: bool, head: bool) -> Response<CacheBody> {
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(stored.body.0)
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value.0),
        ) {
            headers.append(name, value);
        }
    }
    headers.insert(
        "x-cache",
        HeaderValue::from_static(if hit { "HIT" } else { "MISS" }),
    );
    if hit {
        let age = crate::entry::now_ms().saturating_sub(stored.stored_at) / 1000;
        headers.insert(AGE, HeaderValue::from(age));
    }
    response
}
