//! [`CacheLayer`]: the options of the cache, and the layer that wraps a
//! service in a [`CacheService`].

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::request::Parts;
use http::{HeaderName, StatusCode};
use tower_layer::Layer;

use super::internals;
use super::service::CacheService;
use crate::Cache;
use crate::spec::Spec;

/// The longest an entry is kept in storage (ten years): past it, times in
/// milliseconds and instants stop adding up, and Redis refuses the TTL.
const LONGEST_KEPT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

type Tags = Arc<dyn Fn(&Parts) -> Vec<String> + Send + Sync>;

/// Caches the responses of the service it wraps, as a shared cache
/// (RFC 9111). See the [module](super).
///
/// ```
/// use std::time::Duration;
/// use axum::http::{HeaderName, StatusCode};
/// use cache_runtime::{Cache, http::CacheLayer};
///
/// # fn layer(cache: Cache) -> CacheLayer {
/// CacheLayer::new(cache, "pages")
///     .ttl(Duration::from_secs(60)) // when a response says nothing
///     .grace(Duration::from_secs(3600)) // stale while the handler fails
///     .vary_cookies(["lang"]) // requests with cookies: keyed by `lang`
///     .tags_from_header(HeaderName::from_static("surrogate-key"))
/// # }
/// ```
#[derive(Clone)]
pub struct CacheLayer {
    pub(super) cache: Cache,
    pub(super) name: &'static str,
    pub(super) ttl: Duration,
    pub(super) max_ttl: Duration,
    pub(super) grace: Duration,
    pub(super) vary: Vec<HeaderName>,
    pub(super) vary_cookies: Option<Vec<String>>,
    pub(super) forwarded_host: Option<HeaderName>,
    pub(super) statuses: Vec<StatusCode>,
    pub(super) failures: Option<Vec<StatusCode>>,
    pub(super) max_body_bytes: usize,
    pub(super) client_no_cache: bool,
    pub(super) tags: Option<Tags>,
    pub(super) tags_header: Option<HeaderName>,
    /// Made on the first `layer`, and shared by every service made from
    /// this layer and its clones (axum layers each route on its own).
    spec: Arc<OnceLock<&'static Spec>>,
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
    /// Defaults: a response that says nothing of its freshness is fresh
    /// for the cache's `default_ttl` (status 200 only), none for more than
    /// a day; bodies up to 1 MiB; no grace, tags or `Vary` headers of the
    /// layer's own; requests with cookies are not cached.
    pub fn new(cache: Cache, name: &str) -> Self {
        let ttl = internals::default_ttl(&cache);
        CacheLayer {
            cache,
            name: Box::leak(name.to_owned().into_boxed_str()),
            ttl,
            max_ttl: Duration::from_secs(24 * 3600).max(ttl),
            grace: Duration::ZERO,
            vary: Vec::new(),
            vary_cookies: None,
            forwarded_host: None,
            statuses: vec![StatusCode::OK],
            failures: None,
            max_body_bytes: 1 << 20,
            client_no_cache: false,
            tags: None,
            tags_header: None,
            spec: Arc::default(),
        }
    }

    /// How long a response is fresh when it says nothing of it (no
    /// `s-maxage`, `max-age` or `Expires`), in whole seconds.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self.max_ttl = self.max_ttl.max(ttl);
        self.spec = Arc::default();
        self
    }

    /// The longest a response is kept fresh, whatever it says (default:
    /// a day, or `ttl` if longer). Entries are kept in storage at most ten
    /// years, grace included, whatever this says.
    pub fn max_ttl(mut self, max: Duration) -> Self {
        self.max_ttl = max.max(Duration::from_secs(1));
        self.spec = Arc::default();
        self
    }

    /// Serve a response up to this long past its freshness when the
    /// handler fails (returns an error, or a [failure
    /// status](Self::failure_statuses)), unless it says `must-revalidate`,
    /// `proxy-revalidate` or `s-maxage`. Any other answer of the handler,
    /// a `404` included, goes to the client as it is.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self.spec = Arc::default();
        self
    }

    /// Keys responses also by this request header (`Accept-Language`,
    /// ...), and adds it to the `Vary` of every response, so that a cache
    /// in front keeps them apart too. The response's own `Vary` is always
    /// followed.
    pub fn vary(mut self, header: HeaderName) -> Self {
        self.vary.push(header);
        self
    }

    /// Requests with a `Cookie` are cached, keyed by the values of these
    /// cookies (the others are taken not to change the response). Without
    /// this, a request with a `Cookie` goes to the handler and its response
    /// is not stored.
    pub fn vary_cookies<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.vary_cookies = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// The header a trusted proxy in front names the client's host with
    /// (`X-Forwarded-Host`): preferred to `Host` in the key. Only for a
    /// proxy that sets it on every request; otherwise a client could pick
    /// the key.
    pub fn forwarded_host(mut self, header: HeaderName) -> Self {
        self.forwarded_host = Some(header);
        self
    }

    /// The statuses cached when the response says nothing of its
    /// freshness (default: 200 only). A response with `s-maxage`,
    /// `max-age` or `Expires` is cached whatever its status.
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.statuses = statuses.into_iter().collect();
        self
    }

    /// The statuses that are failures of the handler, for
    /// [`grace`](Self::grace) (default: every 5xx).
    pub fn failure_statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.failures = Some(statuses.into_iter().collect());
        self
    }

    /// The largest body stored, in bytes (default 1 MiB). A body is read
    /// into memory only while it stays under it; a longer one, one of
    /// unknown length or an event stream is passed on as it comes, not
    /// stored.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Honour a client's `Cache-Control: no-cache`: the stored response is
    /// revalidated with the handler (one request per key at a time;
    /// nothing is announced to other processes). Off by default, as in
    /// reverse proxies: any client could make the origin work.
    pub fn client_no_cache(mut self, honour: bool) -> Self {
        self.client_no_cache = honour;
        self
    }

    /// The tags of a request's response, for
    /// [`Cache::invalidate_tag`](crate::Cache::invalidate_tag).
    pub fn tags(mut self, tags: impl Fn(&Parts) -> Vec<String> + Send + Sync + 'static) -> Self {
        self.tags = Some(Arc::new(tags));
        self
    }

    /// Tags from a response header (the `Surrogate-Key` or `Cache-Tag`
    /// convention of CDNs: tags separated by spaces or commas), besides
    /// those of [`tags`](Self::tags). The handler tags what it served.
    /// The tags are known after the handler ran, so that a response is
    /// stored from the next request on, its tags read before the handler
    /// runs (no fill can outlive an invalidation that came after it read
    /// its data).
    pub fn tags_from_header(mut self, header: HeaderName) -> Self {
        self.tags_header = Some(header);
        self
    }

    /// Whether `status` is a failure of the handler.
    pub(super) fn is_failure(&self, status: StatusCode) -> bool {
        match &self.failures {
            Some(failures) => failures.contains(&status),
            None => status.is_server_error(),
        }
    }

    /// The freshness of a response that says nothing, and the most any.
    pub(super) fn limits(&self) -> (Duration, Duration) {
        (self.ttl, self.max_ttl)
    }

    /// The description of these responses, made once per layer (and kept
    /// for the life of the process, like a function's): entries are kept
    /// their longest freshness plus `grace`.
    pub(super) fn spec(&self) -> &'static Spec {
        self.spec.get_or_init(|| {
            let keep = self
                .max_ttl
                .saturating_add(self.grace)
                .min(LONGEST_KEPT)
                .as_secs();
            internals::spec(self.name, keep)
        })
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> CacheService<S> {
        self.spec();
        CacheService::new(inner, Arc::new(self.clone()))
    }
}
