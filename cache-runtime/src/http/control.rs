//! `Cache-Control` and the freshness of a response, as a shared cache reads
//! them (RFC 9111 sections 4.2 and 5.2).

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::{AGE, CACHE_CONTROL, DATE, EXPIRES, HeaderValue, LAST_MODIFIED};

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
    pub must_understand: bool,
    pub stale_while_revalidate: Option<u64>,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    /// Read from `CDN-Cache-Control` (RFC 9213), which then stands for
    /// `Cache-Control` and `Expires` in this cache.
    pub targeted: bool,
}

impl Directives {
    /// The directives of every `Cache-Control` field of `headers`.
    pub fn parse(headers: &HeaderMap) -> Self {
        Self::parse_field(headers, CACHE_CONTROL.as_str())
    }

    /// The directives a response gives this cache: those of a valid
    /// `CDN-Cache-Control` field (a Structured Field dictionary, RFC 9213),
    /// else of `Cache-Control`.
    pub fn of_response(headers: &HeaderMap) -> Self {
        if headers.contains_key(CDN_CACHE_CONTROL) && targeted_valid(headers) {
            let mut d = Self::parse_field(headers, CDN_CACHE_CONTROL);
            d.targeted = true;
            return d;
        }
        Self::parse(headers)
    }

    fn parse_field(headers: &HeaderMap, field: &str) -> Self {
        let mut d = Directives::default();
        for value in headers.get_all(field) {
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
                    "must-understand" => d.must_understand = true,
                    "max-age" => d.max_age = least(d.max_age, seconds(arg)),
                    "s-maxage" => d.s_maxage = least(d.s_maxage, seconds(arg)),
                    "stale-while-revalidate" => {
                        d.stale_while_revalidate = least(d.stale_while_revalidate, seconds(arg));
                    }
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

const CDN_CACHE_CONTROL: &str = "cdn-cache-control";

/// Whether the `CDN-Cache-Control` fields are a valid Structured Field
/// dictionary as far as this cache reads them: keys are lowercase tokens,
/// `max-age` and `s-maxage` integers. An invalid one is ignored whole.
fn targeted_valid(headers: &HeaderMap) -> bool {
    headers.get_all(CDN_CACHE_CONTROL).iter().all(|value| {
        let Ok(value) = value.to_str() else {
            return false;
        };
        value.split(',').map(str::trim).all(|item| {
            let item = item.split(';').next().unwrap_or("");
            let (key, arg) = match item.split_once('=') {
                Some((key, arg)) => (key, Some(arg)),
                None => (item, None),
            };
            let key_ok = key.starts_with(|c: char| c.is_ascii_lowercase() || c == '*')
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.*".contains(c));
            let arg_ok = match (key, arg) {
                ("max-age" | "s-maxage", Some(arg)) => {
                    !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit())
                }
                ("max-age" | "s-maxage", None) => false,
                _ => true,
            };
            key_ok && arg_ok
        })
    })
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
    let value = value?.to_str().ok()?.trim();
    httpdate::parse_http_date(value)
        .ok()
        .or_else(|| httpdate::parse_http_date(&recased(value)).ok())
        .or_else(|| any_weekday(&recased(value)))
}

/// A date whose weekday does not match its day (the weekday says nothing
/// the rest does not).
fn any_weekday(value: &str) -> Option<SystemTime> {
    let rest = value.get(3..)?;
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        .iter()
        .find_map(|day| httpdate::parse_http_date(&format!("{day}{rest}")).ok())
}

/// A date with its names in the case the formats spell them (`sun` ▶
/// `Sun`, `gmt` ▶ `GMT`); spaces as they were.
fn recased(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut previous_alpha = false;
    for c in value.chars() {
        let alpha = c.is_ascii_alphabetic();
        out.push(if alpha && !previous_alpha {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        previous_alpha = alpha;
    }
    match out.strip_suffix("Gmt") {
        Some(head) => format!("{head}GMT"),
        None => out,
    }
}

/// How long a response stays fresh from when it was made: `s-maxage`,
/// then `max-age`, then `Expires` minus `Date` (an `Expires` that is not a
/// date is in the past); `default` when it says nothing.
pub(crate) fn lifetime(d: &Directives, headers: &HeaderMap, default: Duration) -> Duration {
    if let Some(secs) = d.s_maxage.or(d.max_age) {
        return Duration::from_secs(secs);
    }
    if d.targeted {
        return default;
    }
    if headers.contains_key(EXPIRES) {
        let Some(expires) = date(headers.get(EXPIRES)) else {
            return Duration::ZERO;
        };
        let made = date(headers.get(DATE)).unwrap_or_else(SystemTime::now);
        return expires.duration_since(made).unwrap_or(Duration::ZERO);
    }
    if let Some(modified) = date(headers.get(LAST_MODIFIED)) {
        // The usual heuristic (RFC 9111 section 4.2.2): a tenth of the
        // time since it last changed.
        let made = date(headers.get(DATE)).unwrap_or_else(SystemTime::now);
        return made.duration_since(modified).unwrap_or(Duration::ZERO) / 10;
    }
    default
}

/// Whether a response may be stored without explicit freshness, by the
/// heuristic: a status cacheable by default, or `public`, and a
/// `Last-Modified` to reckon from.
pub(crate) fn heuristic(d: &Directives, status: http::StatusCode, headers: &HeaderMap) -> bool {
    const BY_DEFAULT: [u16; 12] = [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];
    !d.targeted
        && (d.public || BY_DEFAULT.contains(&status.as_u16()))
        && date(headers.get(LAST_MODIFIED)).is_some()
}

/// Whether the response says how long it is fresh.
pub(crate) fn explicit(d: &Directives, headers: &HeaderMap) -> bool {
    d.s_maxage.is_some() || d.max_age.is_some() || (!d.targeted && headers.contains_key(EXPIRES))
}

/// The age the response had when it arrived (its `Age` field; caches
/// before this one kept it that long), in seconds.
pub(crate) fn initial_age(headers: &HeaderMap) -> u64 {
    headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').next().unwrap_or("").trim())
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
        assert_eq!(initial_age(&headers(&[("age", "7200, 0")])), 7200);
        let h = headers(&[
            ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("last-modified", "Fri, 04 Nov 1994 08:49:37 GMT"),
        ]);
        let d = Directives::parse(&h);
        assert_eq!(lifetime(&d, &h, ten).as_secs(), 2 * 86400 / 10);
        assert!(heuristic(&d, http::StatusCode::OK, &h));
    }

    #[test]
    fn cdn_cache_control_stands_for_cache_control_when_valid() {
        let h = headers(&[
            ("cache-control", "max-age=10000"),
            ("cdn-cache-control", "no-cache"),
        ]);
        let d = Directives::of_response(&h);
        assert!(d.targeted && d.no_cache && d.max_age.is_none());
        for invalid in ["max-age=10000, &&&&&", "max-age=\"10000\""] {
            let h = headers(&[
                ("cache-control", "max-age=5"),
                ("cdn-cache-control", invalid),
            ]);
            assert_eq!(Directives::of_response(&h).max_age, Some(5), "{invalid}");
        }
    }

    #[test]
    fn dates_in_any_case() {
        let exact = date(Some(&HeaderValue::from_static(
            "Sun, 06 Nov 1994 08:49:37 GMT",
        )));
        for v in [
            "sun, 06 nov 1994 08:49:37 gmt",
            "Sun Nov  6 08:49:37 1994",
            "SUN, 06 NOV 1994 08:49:37 GMT",
        ] {
            assert_eq!(date(Some(&HeaderValue::from_static(v))), exact, "{v}");
        }
        let future = date(Some(&HeaderValue::from_static("Thu Aug  8 02:01:18 2050")));
        assert!(future.is_some());
        let spaced = HeaderValue::from_static("Thu, 18  Aug  2050 02:01:18 GMT");
        assert_eq!(date(Some(&spaced)), None);
    }
}
