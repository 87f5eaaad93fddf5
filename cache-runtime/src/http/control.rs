//! `Cache-Control` and the freshness of a response, as a shared cache reads
//! them (RFC 9111 sections 4.2 and 5.2).

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::{AGE, CACHE_CONTROL, DATE, EXPIRES, HeaderValue};

/// The `Cache-Control` directives the layer acts on, from a request or a
/// response.
///
/// An argument that is not a number (`max-age=soon`) reads as `0`: the
/// response is stale at once, never fresh for longer than it says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Directives {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
}

impl Directives {
    /// The directives of every `Cache-Control` field of `headers`.
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut d = Directives::default();
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for item in split_list(value) {
                let (name, arg) = match item.split_once('=') {
                    Some((name, arg)) => (name.trim(), Some(unquote(arg.trim()))),
                    None => (item.trim(), None),
                };
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => d.no_store = true,
                    "no-cache" => d.no_cache = true,
                    "private" => d.private = true,
                    "public" => d.public = true,
                    "must-revalidate" => d.must_revalidate = true,
                    "proxy-revalidate" => d.proxy_revalidate = true,
                    "max-age" => d.max_age = least(d.max_age, seconds(arg)),
                    "s-maxage" => d.s_maxage = least(d.s_maxage, seconds(arg)),
                    _ => {}
                }
            }
        }
        d
    }

    /// Whether a stale response must not be served without the origin's
    /// word (`must-revalidate`, `proxy-revalidate`, `s-maxage`).
    pub fn revalidate_when_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some()
    }
}

/// The smaller of two occurrences of a directive: a response is never
/// fresh for longer than one of its fields says.
fn least(old: Option<u64>, new: u64) -> Option<u64> {
    Some(old.map_or(new, |old| old.min(new)))
}

/// A delta-seconds argument; anything else reads as `0`.
fn seconds(arg: Option<&str>) -> u64 {
    match arg {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse().unwrap_or(u64::MAX)
        }
        _ => 0,
    }
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// The items of a comma-separated list, commas in quoted strings kept.
pub(crate) fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut start = 0;
    let mut items = Vec::new();
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                items.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&value[start..]);
    items.into_iter().map(str::trim).filter(|s| !s.is_empty())
}

/// A date header (`Date`, `Expires`, `Last-Modified`, `If-Modified-Since`).
pub(crate) fn date(value: Option<&HeaderValue>) -> Option<SystemTime> {
    httpdate::parse_http_date(value?.to_str().ok()?).ok()
}

/// How long a response stays fresh from when it was made: `s-maxage`,
/// then `max-age`, then `Expires` minus `Date` (an `Expires` that is not a
/// date is in the past); `default` when it says nothing.
pub(crate) fn lifetime(d: &Directives, headers: &HeaderMap, default: Duration) -> Duration {
    if let Some(secs) = d.s_maxage.or(d.max_age) {
        return Duration::from_secs(secs);
    }
    if headers.contains_key(EXPIRES) {
        let Some(expires) = date(headers.get(EXPIRES)) else {
            return Duration::ZERO;
        };
        let made = date(headers.get(DATE)).unwrap_or_else(SystemTime::now);
        return expires.duration_since(made).unwrap_or(Duration::ZERO);
    }
    default
}

/// Whether the response says how long it is fresh.
pub(crate) fn explicit(d: &Directives, headers: &HeaderMap) -> bool {
    d.s_maxage.is_some() || d.max_age.is_some() || headers.contains_key(EXPIRES)
}

/// The age the response had when it arrived (its `Age` field; caches
/// before this one kept it that long), in seconds.
pub(crate) fn initial_age(headers: &HeaderMap) -> u64 {
    headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .map_or(0, |v| v.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn directives_are_read_whatever_their_case_and_quotes() {
        let d = Directives::parse(&headers(&[
            ("cache-control", "Public, max-age=\"60\", no-cache=\"a, b\""),
            ("cache-control", "s-maxage=10, max-age=30"),
        ]));
        assert!(d.public && d.no_cache && !d.private);
        assert_eq!((d.max_age, d.s_maxage), (Some(30), Some(10)));
        let d = Directives::parse(&headers(&[("cache-control", "max-age=soon")]));
        assert_eq!(d.max_age, Some(0));
    }

    #[test]
    fn lifetime_prefers_s_maxage_then_max_age_then_expires() {
        let ten = Duration::from_secs(10);
        let h = headers(&[("cache-control", "max-age=5, s-maxage=7")]);
        assert_eq!(lifetime(&Directives::parse(&h), &h, ten).as_secs(), 7);
        let h = headers(&[
            ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("expires", "Sun, 06 Nov 1994 08:50:37 GMT"),
        ]);
        assert_eq!(lifetime(&Directives::parse(&h), &h, ten).as_secs(), 60);
        let h = headers(&[("expires", "0")]);
        assert_eq!(lifetime(&Directives::parse(&h), &h, ten), Duration::ZERO);
        let h = HeaderMap::new();
        assert_eq!(lifetime(&Directives::parse(&h), &h, ten), ten);
        assert_eq!(initial_age(&headers(&[("age", "12")])), 12);
        assert_eq!(initial_age(&headers(&[("age", "-1")])), 0);
    }
}
