//! A [`tower`](https://docs.rs/tower) layer that caches whole HTTP
//! responses as a shared cache (RFC 9111), the `http` feature: one
//! computation per key across processes, fail-open and tags, as
//! `#[cached]` does.
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use axum::http::HeaderName;
//! use cache_runtime::{Cache, http::CacheLayer};
//!
//! # fn app(cache: Cache) -> Router {
//! let products: Router = Router::new()
//!     .route("/api/products", get(|| async { "[...]" }))
//!     .layer(
//!         CacheLayer::new(cache, "products")
//!             .ttl(Duration::from_secs(60))
//!             .tags(|req| vec!["products".to_owned()])
//!             .tags_from_header(HeaderName::from_static("surrogate-key")),
//!     );
//! # products }
//! ```
//!
//! What is cached, and how:
//! - **Only what may be shared.** `GET` and `HEAD` requests; other
//!   methods, and requests with `Cache-Control: no-store`, go to the
//!   handler. A request with `Authorization` is answered from the cache,
//!   and its response stored, only when the response says it may be
//!   (`public`, `s-maxage` or `must-revalidate`). A request with a `Cookie`
//!   goes to the handler and is not stored, unless
//!   [`vary_cookies`](CacheLayer::vary_cookies) names the cookies that
//!   change the response. Responses with `Set-Cookie`, `private`,
//!   `no-store` or `Vary: *` are never stored.
//! - **The key is the whole target**: scheme, authority (`Host`, or the
//!   [`forwarded_host`](CacheLayer::forwarded_host) header when a trusted
//!   proxy sets it), the full original path (under axum's `Router::nest`,
//!   not the part the nested router sees), query and method; plus the
//!   request's values of the headers the response's `Vary` names and of the
//!   layer's own [`vary`](CacheLayer::vary) headers (added to the
//!   response's `Vary`, so that a cache in front keeps them apart too).
//! - **Freshness from the response**: `s-maxage`, then `max-age`, then
//!   `Expires` minus `Date` (a valid `CDN-Cache-Control` stands for
//!   `Cache-Control` and `Expires`); with `Last-Modified`, a tenth of the
//!   time since (for the statuses cacheable by default, or `public`); the
//!   layer's [`ttl`](CacheLayer::ttl) when it says nothing (for the
//!   [`statuses`](CacheLayer::statuses), 200 by default); at most
//!   [`max_ttl`](CacheLayer::max_ttl). A response with `no-cache`, or past
//!   its freshness, is revalidated with the handler (`If-None-Match` /
//!   `If-Modified-Since` from its `ETag` / `Last-Modified`; a `304`
//!   updates it) before it is served, one request per key at a time; within
//!   its `stale-while-revalidate` window it is served while one request
//!   revalidates it in the background. `Age` is the `Age` it arrived with
//!   plus how long its entry has been stored, by the storage's clock (the
//!   entry's TTL less what remains of it, read with the entry): every host
//!   gives one response the same age, whatever its wall clock says.
//! - **Unsafe methods invalidate**: a successful `POST`, `PUT`, `DELETE`
//!   (any method but `GET`, `HEAD`, `OPTIONS`, `TRACE`) drops the stored
//!   responses of its target, and of the `Location` / `Content-Location`
//!   it names on the same origin, in every process.
//! - **Conditional requests**: `If-None-Match` and `If-Modified-Since` are
//!   answered `304 Not Modified` from a stored response that matches.
//! - **Streaming**: a body is read into memory only while it stays under
//!   [`max_body_bytes`](CacheLayer::max_body_bytes) and has a known
//!   length; a longer one, one of unknown length or an event stream goes
//!   to the client as it comes and is not stored. A body that fails fails
//!   for the client too, and is not stored.
//! - **Grace for failures only**: with [`grace`](CacheLayer::grace), a
//!   stale response is served when the handler returns an error or a
//!   [failure status](CacheLayer::failure_statuses) (5xx by default); any
//!   other answer, a `404` too, goes to the client as it is.
//! - **Clients cannot make the origin work**: a client's
//!   `Cache-Control: no-cache` is ignored, as reverse proxies do, unless
//!   [`client_no_cache`](CacheLayer::client_no_cache) says to honour it.
//! - Answers carry `X-Cache`: `HIT` (from the cache, or a concurrent
//!   request's fetch), `MISS` (this request's handler answered),
//!   `REVALIDATED` (the handler said `304` to the stored response) or
//!   `STALE` (served through a failure).
//! - Tags from a closure of the request ([`tags`](CacheLayer::tags)) and
//!   from a response header
//!   ([`tags_from_header`](CacheLayer::tags_from_header));
//!   [`Cache::invalidate_tag`](crate::Cache::invalidate_tag) drops the
//!   responses that carry them, race-free, in every process.

mod body;
mod control;
mod internals;
mod layer;
mod service;
mod stored;
mod target;

pub use body::CacheBody;
pub use layer::CacheLayer;
pub use service::CacheService;
