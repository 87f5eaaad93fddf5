//! [`CacheService`]: what one request does.
//!
//! ```text
//! not GET/HEAD, `no-store`, cookies (unless `vary_cookies`) ──▶ the handler, not stored
//! target key ──entry──▶ a response: fresh ──▶ served (304 when the client has it)
//!     │                    └ stale ──▶ revalidated (one request per key at a time)
//!     │                                 304 ▶ updated, served │ failure ▶ stale (grace) or the failure
//!     ├──variants (Vary, tag header)──▶ target + variant key: as above
//!     └──miss──▶ the handler: stored if it may be shared and its body fits, else streamed
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, COOKIE, HeaderName, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH, SET_COOKIE,
    VARY,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::body::{self, BoxError, CacheBody, Read};
use super::control::{self, Directives};
use super::internals;
use super::layer::CacheLayer;
use super::stored::{Entry, StoredResponse};
use super::target::{Target, Variant, vary_names};

/// The service of a [`CacheLayer`].
#[derive(Clone)]
pub struct CacheService<S> {
    inner: S,
    config: Arc<CacheLayer>,
}

impl<S> CacheService<S> {
    pub(super) fn new(inner: S, config: Arc<CacheLayer>) -> Self {
        CacheService { inner, config }
    }
}

impl<S> std::fmt::Debug for CacheService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
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
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(serve(self.config.clone(), inner, req))
    }
}

/// What is not stored: a response passed on, a failure of the handler,
/// or its error.
enum Pass<E> {
    Response(Response<CacheBody>),
    Failed(Response<CacheBody>),
    Error(E),
}

async fn serve<S, B, ResBody>(
    config: Arc<CacheLayer>,
    mut inner: S,
    req: Request<B>,
) -> Result<Response<CacheBody>, S::Error>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let cookies = req.headers().contains_key(COOKIE);
    let safe = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if !safe {
        let (parts, body) = req.into_parts();
        let target = Target::of(&parts, config.forwarded_host.as_ref());
        let response = inner.call(Request::from_parts(parts, body)).await?;
        let tags = invalidated_by(&config, &target, &response);
        if !tags.is_empty()
            && let Err(error) = config.cache.invalidate_tags(tags).await
        {
            tracing::warn!(target: "cache_runtime", %error, "cannot invalidate after an unsafe request");
        }
        return Ok(finish(&config, response.map(body::boxed), "MISS"));
    }
    if !(req.method() == Method::GET || req.method() == Method::HEAD)
        || Directives::parse(req.headers()).no_store
        || (cookies && config.vary_cookies.is_none())
    {
        let response = inner.call(req).await?.map(body::boxed);
        return Ok(finish(&config, response, "MISS"));
    }
    let (mut parts, body) = req.into_parts();
    let base = Base {
        target: Target::of(&parts, config.forwarded_host.as_ref()),
        cookies: config
            .vary_cookies
            .as_ref()
            .map(|names| Variant::cookies(&parts.headers, names)),
        own: Variant::of(&parts.headers, config.vary.iter().map(HeaderName::as_str)),
    };
    let mut tags = config.tags.as_ref().map_or_else(Vec::new, |t| t(&parts));
    tags.push(base.target.tag(config.name));
    // The client's conditions are answered here; the handler is asked for
    // the whole response, to store.
    let mut conditions = HeaderMap::new();
    for name in [IF_NONE_MATCH, IF_MODIFIED_SINCE] {
        for value in parts.headers.get_all(&name) {
            conditions.append(name.clone(), value.clone());
        }
        parts.headers.remove(&name);
    }
    let flow = Flow {
        head: parts.method == Method::HEAD,
        auth: parts.headers.contains_key(AUTHORIZATION),
        no_cache: Directives::parse(&parts.headers).no_cache,
        request: parts.headers.clone(),
        conditions,
        origin: Origin {
            request: Mutex::new(Some((inner, Request::from_parts(parts, body)))),
            ran: AtomicBool::new(false),
            fresh: Mutex::new(None),
        },
        config,
    };
    Arc::new(flow).run(&base, tags).await
}

/// After a successful response to an unsafe request, the stored responses
/// of its target, and of the `Location` and `Content-Location` it names
/// on the same origin, are invalidated (in every process).
fn invalidated_by<B>(config: &CacheLayer, target: &Target, response: &Response<B>) -> Vec<String> {
    let status = response.status();
    if !(status.is_success() || status.is_redirection()) {
        return Vec::new();
    }
    let mut tags = vec![target.tag(config.name)];
    for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
        let named = response.headers().get(name).and_then(|v| v.to_str().ok());
        if let Some(tag) = named.and_then(|uri| target.tag_of(config.name, uri)) {
            tags.push(tag);
        }
    }
    tags
}

/// The parts of the key every entry of a target has.
#[derive(serde::Serialize)]
struct Base {
    target: Target,
    cookies: Option<Vec<Option<String>>>,
    own: Variant,
}

/// The handler, called at most once per request.
struct Origin<S, B> {
    request: Mutex<Option<(S, Request<B>)>>,
    ran: AtomicBool,
    /// A response the handler gave this request, to serve, and whether to
    /// store it as its variant (not when it has tags from a header).
    fresh: Mutex<Option<(StoredResponse, bool)>>,
}

impl<S, B, ResBody> Origin<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    /// The handler's response to the request, with `extra` headers.
    async fn call(
        &self,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Option<Response<ResBody>>, S::Error> {
        let taken = self
            .request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some((mut inner, mut req)) = taken else {
            return Ok(None);
        };
        for (name, value) in extra {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        self.ran.store(true, Ordering::Relaxed);
        inner.call(req).await.map(Some)
    }

    fn ran(&self) -> bool {
        self.ran.load(Ordering::Relaxed)
    }
}

/// One request on its way.
struct Flow<S, B> {
    config: Arc<CacheLayer>,
    origin: Origin<S, B>,
    head: bool,
    auth: bool,
    no_cache: bool,
    /// The request's headers, its conditions left out.
    request: HeaderMap,
    /// Its `If-None-Match` and `If-Modified-Since`.
    conditions: HeaderMap,
}

impl<S, B, ResBody> Flow<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    async fn run(
        self: Arc<Self>,
        base: &Base,
        tags: Vec<String>,
    ) -> Result<Response<CacheBody>, S::Error> {
        let cache = &self.config.cache;
        let spec = self.config.spec();
        let key = || internals::key(&(base, None::<&Variant>));
        let first =
            seen(internals::get_or_fetch(cache, spec, key(), &tags, self.fetch(true)).await);
        match first {
            Ok(Entry::Response(stored)) => self.serve_stored(stored, [key(), key()], tags).await,
            Ok(Entry::Variants { vary, tags: more }) => {
                let variant = Variant::of(&self.request, vary.iter().map(String::as_str));
                let key = || internals::key(&(base, Some(&variant)));
                let tags: Vec<String> = tags.into_iter().chain(more).collect();
                let fresh = self
                    .origin
                    .fresh
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                if let Some((fresh, store)) = fresh {
                    if store {
                        let ready = std::future::ready(Ok::<_, std::convert::Infallible>(
                            Entry::Response(fresh.clone()),
                        ));
                        let _ = internals::get_or_fetch(cache, spec, key(), &tags, ready).await;
                    }
                    return Ok(self.answer(&fresh, "MISS"));
                }
                let found =
                    internals::get_or_fetch(cache, spec, key(), &tags, self.fetch(false)).await;
                match seen(found) {
                    Ok(Entry::Response(stored)) => {
                        self.serve_stored(stored, [key(), key()], tags).await
                    }
                    Ok(Entry::Variants { .. }) => self.pass_on().await,
                    Err(pass) => self.passed(pass),
                }
            }
            Err(pass) => self.passed(pass),
        }
    }

    /// Serves a stored response: as it is while fresh, else revalidated
    /// (in the background while `stale-while-revalidate` allows).
    async fn serve_stored(
        self: Arc<Self>,
        stored: StoredResponse,
        key: [crate::key::KeyPart; 2],
        tags: Vec<String>,
    ) -> Result<Response<CacheBody>, S::Error> {
        if self.origin.ran() {
            return Ok(self.answer(&stored, "MISS"));
        }
        let shared = Directives::of_response(&stored.headers());
        if self.auth && !shared_with_authorization(&shared) {
            return self.pass_on().await;
        }
        let now = internals::now_ms();
        if stored.fresh(now) && !(self.config.client_no_cache && self.no_cache) {
            return Ok(self.answer(&stored, "HIT"));
        }
        if stored.while_revalidating(now) {
            let answer = self.answer(&stored, "STALE");
            tokio::spawn(async move {
                let _ = self.revalidate(stored, key, tags).await;
            });
            return Ok(answer);
        }
        self.revalidate(stored, key, tags).await
    }

    /// Asks the handler whether `stored` changed (with its validators),
    /// one request per key at a time: the answer, stored. (`key`: the
    /// entry's key, twice: when the refresh of the key hands back an entry
    /// no fresher without running this request's fetch, as a failing or
    /// busy Redis can, this request asks the handler itself and stores the
    /// answer; what was found stale is never served unchecked.)
    async fn revalidate(
        &self,
        stored: StoredResponse,
        key: [crate::key::KeyPart; 2],
        tags: Vec<String>,
    ) -> Result<Response<CacheBody>, S::Error> {
        let validators = stored.validators();
        let spec = self.config.spec();
        let cache = &self.config.cache;
        let [key, again] = key;
        let fetch = self.conditional(&stored, &validators);
        let mut result = seen(internals::refetch(cache, spec, key, &tags, fetch).await);
        // Handed back the very store found stale (a wait on another
        // host's lease, or a concurrent caller's, can), or one no fresher.
        if let Ok(Entry::Response(fresh)) = &result
            && !self.origin.ran()
            && (fresh.same_fill(&stored) || !fresh.fresh(internals::now_ms()))
        {
            result = self.conditional(&stored, &validators).await;
            if let Ok(Entry::Response(fresh)) = &result {
                let ready = std::future::ready(Ok::<_, std::convert::Infallible>(Entry::Response(
                    fresh.clone(),
                )));
                let _ = internals::refetch(cache, spec, again, &tags, ready).await;
            }
        }
        let grace = |now| stored.within_grace(now, self.config.grace);
        match result {
            Ok(Entry::Response(fresh)) => {
                let x_cache = if !self.origin.ran() {
                    "HIT"
                } else if fresh.validators() == validators && !validators.is_empty() {
                    "REVALIDATED"
                } else {
                    "MISS"
                };
                Ok(self.answer(&fresh, x_cache))
            }
            Ok(Entry::Variants { .. }) => Ok(self.answer(&stored, "HIT")),
            Err(Pass::Failed(_)) | Err(Pass::Error(_)) if grace(internals::now_ms()) => {
                Ok(self.answer(&stored, "STALE"))
            }
            Err(pass) => self.passed(pass),
        }
    }

    /// The handler's answer to a conditional request for `stored`: the
    /// stored response updated by a `304`, a new one, or what to pass on.
    async fn conditional(
        &self,
        stored: &StoredResponse,
        validators: &[(HeaderName, HeaderValue)],
    ) -> Result<Entry, Pass<S::Error>> {
        let response = match self.origin.call(validators).await {
            Ok(Some(response)) => response,
            Ok(None) => return Err(Pass::Response(gone())),
            Err(e) => return Err(Pass::Error(e)),
        };
        if response.status() == StatusCode::NOT_MODIFIED && !validators.is_empty() {
            let now = internals::now_ms();
            let limits = self.config.limits();
            return Ok(Entry::Response(stored.updated(
                response.headers(),
                now,
                limits,
                internals::kept(self.config.spec()),
            )));
        }
        if self.config.is_failure(response.status()) {
            return Err(Pass::Failed(response.map(body::boxed)));
        }
        self.store(response, false).await
    }

    /// The handler's response, not stored.
    async fn pass_on(&self) -> Result<Response<CacheBody>, S::Error> {
        match self.origin.call(&[]).await? {
            Some(response) => Ok(finish(&self.config, response.map(body::boxed), "MISS")),
            None => Ok(finish(&self.config, gone(), "MISS")),
        }
    }

    /// Fetches a response for a miss: what to store (`first`: the entry of
    /// the target, which names the variants when the response varies).
    async fn fetch(&self, first: bool) -> Result<Entry, Pass<S::Error>> {
        let response = match self.origin.call(&[]).await {
            Ok(Some(response)) => response,
            Ok(None) => return Err(Pass::Response(gone())),
            Err(e) => return Err(Pass::Error(e)),
        };
        self.store(response, first).await
    }

    /// The stored form of the handler's response, or the response to pass
    /// on. With `variants`, a response that varies (by `Vary` or a tag
    /// header) is kept for this request and its entry names the variants.
    async fn store(
        &self,
        response: Response<ResBody>,
        variants: bool,
    ) -> Result<Entry, Pass<S::Error>> {
        let (parts, body) = response.into_parts();
        let body = body::boxed(body);
        if !self.storable(&parts) {
            return Err(Pass::Response(Response::from_parts(parts, body)));
        }
        let max = self.config.max_body_bytes;
        if body::known_length(&parts.headers, &body).is_none_or(|n| n > max as u64) {
            return Err(Pass::Response(Response::from_parts(parts, body)));
        }
        let bytes = match body::read_bounded(body, max).await {
            Read::Whole(bytes) => bytes,
            Read::Longer(body) | Read::Failed(body) => {
                return Err(Pass::Response(Response::from_parts(parts, body)));
            }
        };
        let now = internals::now_ms();
        let stored = StoredResponse::new(
            parts.status,
            &parts.headers,
            bytes,
            now,
            self.config.limits(),
            internals::kept(self.config.spec()),
        );
        let vary = vary_names(&parts.headers);
        let tags = self.header_tags(&parts.headers);
        if variants && (!vary.is_empty() || !tags.is_empty()) {
            *self.origin.fresh.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((stored, tags.is_empty()));
            return Ok(Entry::Variants { vary, tags });
        }
        Ok(Entry::Response(stored))
    }

    /// Whether a response may be stored by a shared cache (RFC 9111
    /// sections 3 and 3.5).
    fn storable(&self, parts: &http::response::Parts) -> bool {
        let d = Directives::of_response(&parts.headers);
        let status = parts.status;
        // `must-understand`: `no-store` unless the status is one whose
        // caching rules this cache knows.
        let understood = d.must_understand && UNDERSTOOD.contains(&status.as_u16());
        if (d.no_store && !understood) || d.private || parts.headers.contains_key(SET_COOKIE) {
            return false;
        }
        if self.auth && !shared_with_authorization(&d) {
            return false;
        }
        if vary_names(&parts.headers).iter().any(|name| name == "*") {
            return false;
        }
        if status.is_informational()
            || status == StatusCode::PARTIAL_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return false;
        }
        self.config.statuses.contains(&status)
            || control::explicit(&d, &parts.headers)
            || control::heuristic(&d, status, &parts.headers)
    }

    /// The tags a response names in the tag header.
    fn header_tags(&self, headers: &HeaderMap) -> Vec<String> {
        let Some(name) = &self.config.tags_header else {
            return Vec::new();
        };
        let mut tags: Vec<String> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([' ', ',', '\t']))
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        tags.sort();
        tags.dedup();
        tags
    }

    fn answer(&self, stored: &StoredResponse, x_cache: &'static str) -> Response<CacheBody> {
        let response = stored.answer(&self.conditions, self.head, internals::now_ms(), x_cache);
        finish(&self.config, response, x_cache)
    }

    fn passed(&self, pass: Pass<S::Error>) -> Result<Response<CacheBody>, S::Error> {
        match pass {
            Pass::Response(response) | Pass::Failed(response) => {
                Ok(finish(&self.config, response, "MISS"))
            }
            Pass::Error(e) => Err(e),
        }
    }
}

/// An entry as read, with how long it had been stored (see
/// [`Entry::seen`]).
fn seen<E>((found, from): (Result<Entry, E>, internals::ServedFrom)) -> Result<Entry, E> {
    found.map(|entry| entry.seen(from, internals::now_ms()))
}

/// The statuses whose caching rules this cache knows, for `must-understand`.
const UNDERSTOOD: [u16; 14] = [
    200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501,
];

/// Whether a response to a request with `Authorization` may be shared
/// (RFC 9111 section 3.5).
fn shared_with_authorization(d: &Directives) -> bool {
    d.public || d.s_maxage.is_some() || d.must_revalidate
}

/// The answer when the handler was already called for this request (not
/// expected: each request calls it at most once).
fn gone() -> Response<CacheBody> {
    let mut response = Response::new(body::full(Bytes::new()));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

/// Sets `X-Cache`, and adds the layer's own `vary` headers to `Vary`.
fn finish(
    config: &CacheLayer,
    mut response: Response<CacheBody>,
    x_cache: &'static str,
) -> Response<CacheBody> {
    let headers = response.headers_mut();
    headers.insert("x-cache", HeaderValue::from_static(x_cache));
    let named = vary_names(headers);
    for name in &config.vary {
        if !named.iter().any(|n| n == name.as_str() || n == "*") {
            headers.append(VARY, HeaderValue::from_name(name.clone()));
        }
    }
    response
}
