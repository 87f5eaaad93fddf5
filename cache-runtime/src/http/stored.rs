//! A response as stored, and the answers made from it: the response with
//! its `Age`, a `304 Not Modified` to a conditional request, the stored
//! response updated by a `304` of the handler.

use std::time::Duration;

use bytes::Bytes;
use http::header::{
    AGE, CONTENT_LENGTH, ETAG, HeaderName, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED,
};
use http::{HeaderMap, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::body::{CacheBody, full};
use super::control::{self, Directives};
use super::internals::ServedFrom;

/// What is stored under a key.
#[derive(Serialize, Deserialize)]
pub(crate) enum Entry {
    /// A response.
    Response(StoredResponse),
    /// The responses of the target vary: each is stored under the target
    /// plus the request's values of `vary`, with these `tags` besides the
    /// request's (from the response's tag header).
    Variants {
        vary: Vec<String>,
        tags: Vec<String>,
    },
}

/// A response as stored.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredResponse {
    status: u16,
    headers: Vec<(String, Binary)>,
    body: Binary,
    /// Its `Age` when it arrived, in seconds.
    initial_age: u64,
    /// How long it is fresh, in seconds.
    lifetime: u64,
    /// Which store of it this is: a random number drawn when it was made
    /// or updated (0 in entries written before there was one).
    #[serde(default)]
    fill: u64,
    /// The TTL its entry was written with, in milliseconds (0: not known):
    /// how long it has been stored is this less the entry's remaining TTL.
    #[serde(default)]
    kept_ms: u64,
    /// How long it had been stored when this process got it, in
    /// milliseconds, by the storage's clock (see [`seen`](Self::seen)).
    #[serde(skip)]
    resident_ms: u64,
    /// When this process got it, on its monotonic clock (`None`: not yet
    /// told, just decoded).
    #[serde(skip)]
    got_at: Option<u64>,
}

impl Entry {
    /// The entry as read: a response learns how long it has been stored
    /// (from where it came, by the storage's clock) and when this process
    /// got it (`now_ms`, this process's monotonic clock).
    pub fn seen(self, from: ServedFrom, now_ms: u64) -> Self {
        match self {
            Entry::Response(mut stored) => {
                stored.seen(from, now_ms);
                Entry::Response(stored)
            }
            variants => variants,
        }
    }
}

impl StoredResponse {
    /// A response to store, with its freshness: `default` when it says
    /// nothing, at most `max`.
    pub fn new(
        status: StatusCode,
        headers: &HeaderMap,
        body: Bytes,
        now_ms: u64,
        (default, max): (Duration, Duration),
        kept: Duration,
    ) -> Self {
        let mut stored = StoredResponse {
            status: status.as_u16(),
            headers: Vec::new(),
            body: Binary(body.to_vec()),
            initial_age: 0,
            lifetime: 0,
            fill: 0,
            kept_ms: 0,
            resident_ms: 0,
            got_at: Some(now_ms),
        };
        stored.set_headers(headers, now_ms, (default, max), kept);
        stored
    }

    fn set_headers(
        &mut self,
        headers: &HeaderMap,
        now_ms: u64,
        (default, max): (Duration, Duration),
        kept: Duration,
    ) {
        // Fields named in `Connection` belong to the hop too.
        let listed: Vec<String> = headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_ascii_lowercase())
            .collect();
        self.headers = headers
            .iter()
            .filter(|(name, _)| !is_hop_by_hop(name) && !listed.iter().any(|l| l == name.as_str()))
            .map(|(name, value)| (name.as_str().to_owned(), Binary(value.as_bytes().to_vec())))
            .collect();
        let directives = Directives::of_response(headers);
        self.lifetime = control::lifetime(&directives, headers, default)
            .min(max)
            .as_secs();
        self.initial_age = control::initial_age(headers);
        self.fill = rand::random::<u64>() | 1;
        self.kept_ms = u64::try_from(kept.as_millis()).unwrap_or(u64::MAX);
        self.resident_ms = 0;
        self.got_at = Some(now_ms);
    }

    /// Whether `other` is this same store of the response (not a newer
    /// one, nor an update by a `304`).
    pub fn same_fill(&self, other: &StoredResponse) -> bool {
        self.fill == other.fill
    }

    /// Records how long the response had been stored when this process
    /// got it, and when that was (`now_ms`). Read from storage: the TTL
    /// its entry was written with less the remaining one, as the storage
    /// measures it (no host's wall clock enters a response's age); when
    /// that cannot be told (no TTL, or one longer than it was written
    /// with, or an entry that does not record it), it is taken as no longer
    /// fresh. Handed over in this process: what a response made or updated
    /// here knows, and a decoded one is new.
    pub fn seen(&mut self, from: ServedFrom, now_ms: u64) {
        match from {
            ServedFrom::Stored(Some(left))
                if self.kept_ms > 0 && left.as_millis() <= u128::from(self.kept_ms) =>
            {
                let left = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
                self.resident_ms = self.kept_ms - left;
                self.got_at = Some(now_ms);
            }
            ServedFrom::Stored(_) => {
                self.resident_ms = self.lifetime.saturating_mul(1000);
                self.got_at = Some(now_ms);
            }
            ServedFrom::Handed if self.got_at.is_none() => {
                self.resident_ms = 0;
                self.got_at = Some(now_ms);
            }
            ServedFrom::Handed => {}
        }
    }

    /// The stored headers.
    pub fn headers(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(&value.0),
            ) {
                map.append(name, value);
            }
        }
        map
    }

    /// Its age now (`now_ms` on this process's monotonic clock), in
    /// seconds: the `Age` it arrived with, plus how long it has been
    /// stored: by the storage's clock until this process got it, then by
    /// this process's.
    pub fn age(&self, now_ms: u64) -> u64 {
        let got_at = self.got_at.unwrap_or(now_ms);
        let resident = self
            .resident_ms
            .saturating_add(now_ms.saturating_sub(got_at));
        self.initial_age.saturating_add(resident / 1000)
    }

    /// Whether it may be served without asking the handler: fresh, and
    /// without `no-cache`.
    pub fn fresh(&self, now_ms: u64) -> bool {
        self.age(now_ms) < self.lifetime && !Directives::of_response(&self.headers()).no_cache
    }

    /// Whether it may be served stale (the handler failing) now, with
    /// `grace` past its freshness: not when it says `no-cache`,
    /// `must-revalidate`, `proxy-revalidate` or `s-maxage`.
    pub fn within_grace(&self, now_ms: u64, grace: Duration) -> bool {
        let d = Directives::of_response(&self.headers());
        !d.revalidate_when_stale()
            && !d.no_cache
            && self.age(now_ms) < self.lifetime.saturating_add(grace.as_secs())
    }

    /// Whether it may be served stale now while one request revalidates
    /// it in the background (`stale-while-revalidate`, RFC 5861).
    pub fn while_revalidating(&self, now_ms: u64) -> bool {
        let d = Directives::of_response(&self.headers());
        match d.stale_while_revalidate {
            Some(window) if !d.no_cache => self.age(now_ms) < self.lifetime.saturating_add(window),
            _ => false,
        }
    }

    /// The request headers that ask the handler whether it changed.
    pub fn validators(&self) -> Vec<(HeaderName, HeaderValue)> {
        let headers = self.headers();
        let mut out = Vec::new();
        if let Some(etag) = headers.get(ETAG) {
            out.push((IF_NONE_MATCH, etag.clone()));
        }
        if let Some(modified) = headers.get(LAST_MODIFIED) {
            out.push((IF_MODIFIED_SINCE, modified.clone()));
        }
        out
    }

    /// The response updated by the handler's `304`: its headers replace
    /// the stored ones of the same names, and its freshness starts anew.
    pub fn updated(
        &self,
        not_modified: &HeaderMap,
        now_ms: u64,
        limits: (Duration, Duration),
        kept: Duration,
    ) -> Self {
        let mut headers = self.headers();
        for name in not_modified.keys() {
            if *name == CONTENT_LENGTH || is_hop_by_hop(name) {
                continue;
            }
            headers.remove(name);
            for value in not_modified.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let mut updated = self.clone();
        updated.set_headers(&headers, now_ms, limits, kept);
        updated
    }

    /// The answer to a request: the stored response (no body for `HEAD`),
    /// or `304 Not Modified` when the request's condition says the client
    /// has it; with `Age` and `X-Cache: x_cache`.
    pub fn answer(
        &self,
        request: &HeaderMap,
        head: bool,
        now_ms: u64,
        x_cache: &'static str,
    ) -> Response<CacheBody> {
        let mut headers = self.headers();
        let not_modified = self.status == 200 && not_modified(request, &headers);
        let body = if head || not_modified {
            Bytes::new()
        } else {
            Bytes::from(self.body.0.clone())
        };
        if not_modified {
            headers.remove(CONTENT_LENGTH);
        }
        let mut response = Response::new(full(body));
        *response.status_mut() = if not_modified {
            StatusCode::NOT_MODIFIED
        } else {
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK)
        };
        headers.insert(AGE, HeaderValue::from(self.age(now_ms)));
        headers.insert("x-cache", HeaderValue::from_static(x_cache));
        *response.headers_mut() = headers;
        response
    }
}

/// Whether a conditional request's condition (`If-None-Match`, else
/// `If-Modified-Since`) says the client has the response of `headers`.
fn not_modified(request: &HeaderMap, headers: &HeaderMap) -> bool {
    if request.contains_key(IF_NONE_MATCH) {
        let Some(etag) = headers.get(ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        return request
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(control::split_list)
            .any(|tag| tag == "*" || weak(tag) == weak(etag));
    }
    // Without `Last-Modified`, the response's `Date` is when it was last
    // known to be as it is.
    let modified = control::date(headers.get(LAST_MODIFIED))
        .or_else(|| control::date(headers.get(http::header::DATE)));
    match (control::date(request.get(IF_MODIFIED_SINCE)), modified) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// An entity tag without its weakness (the weak comparison of RFC 9110).
fn weak(tag: &str) -> &str {
    tag.trim().strip_prefix("W/").unwrap_or(tag.trim())
}

/// Fields that belong to one connection or one hop, or that this layer
/// sets itself.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
            | "x-cache"
            | "age"
    )
}

/// Bytes written as MessagePack `bin`, not as a list of numbers.
#[derive(Clone)]
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

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(3600));
    const KEPT: Duration = Duration::from_secs(3600);

    fn stored(pairs: &[(&'static str, &'static str)]) -> StoredResponse {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        StoredResponse::new(
            StatusCode::OK,
            &h,
            Bytes::from_static(b"hi"),
            0,
            LIMITS,
            KEPT,
        )
    }

    #[test]
    fn conditional_requests_get_304() {
        let s = stored(&[
            ("etag", "\"v1\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        let mut req = HeaderMap::new();
        req.insert(
            IF_NONE_MATCH,
            HeaderValue::from_static("W/\"v0\", W/\"v1\""),
        );
        assert_eq!(
            s.answer(&req, false, 0, "HIT").status(),
            StatusCode::NOT_MODIFIED
        );
        let mut req = HeaderMap::new();
        req.insert(
            IF_MODIFIED_SINCE,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(
            s.answer(&req, false, 0, "HIT").status(),
            StatusCode::NOT_MODIFIED
        );
        req.insert(IF_NONE_MATCH, HeaderValue::from_static("\"v2\""));
        assert_eq!(s.answer(&req, false, 0, "HIT").status(), StatusCode::OK);
    }

    #[test]
    fn freshness_and_age() {
        let s = stored(&[("cache-control", "max-age=10"), ("age", "4")]);
        assert_eq!(s.age(2_000), 6);
        assert!(s.fresh(5_000) && !s.fresh(6_000));
        assert!(s.within_grace(6_000, Duration::from_secs(5)));
        let s = stored(&[("cache-control", "max-age=10, must-revalidate")]);
        assert!(!s.within_grace(10_000, Duration::from_secs(5)));
        let s = stored(&[("cache-control", "no-cache, max-age=10")]);
        assert!(!s.fresh(0));
        let mut not_modified = HeaderMap::new();
        not_modified.insert("cache-control", HeaderValue::from_static("max-age=100"));
        assert!(
            s.updated(&not_modified, 50_000, LIMITS, KEPT)
                .fresh(100_000)
        );
    }

    #[test]
    fn age_counts_the_time_stored_as_the_storage_measured_it() {
        let s = stored(&[("cache-control", "max-age=10"), ("age", "1")]);
        // Read by another process, whose clock starts anywhere: the entry
        // had been stored 7.5 s by the storage's clock.
        let left = KEPT - Duration::from_millis(7_500);
        let mut read = s.clone();
        read.seen(ServedFrom::Stored(Some(left)), 1_000_000);
        assert_eq!(read.age(1_000_000), 8);
        assert_eq!(read.age(1_001_600), 10);
        assert!(read.fresh(1_001_000) && !read.fresh(1_001_600));
        // A TTL that cannot be told (none, or longer than the entry was
        // written with): no longer fresh.
        for unknown in [None, Some(KEPT + Duration::from_secs(1))] {
            let mut read = s.clone();
            read.seen(ServedFrom::Stored(unknown), 1_000_000);
            assert!(!read.fresh(1_000_000), "{unknown:?}");
        }
        // A response made here keeps its own reading.
        let mut made = stored(&[("cache-control", "max-age=10")]);
        made.seen(ServedFrom::Handed, 5_000);
        assert_eq!(made.age(5_000), 5);
        assert!(made.same_fill(&made.clone()) && !made.same_fill(&s));
    }
}
