//! What a response is stored under: the request's whole target (scheme,
//! authority, the full original path, query, method), and the variant of
//! the request headers that the response varies on.

use http::HeaderMap;
use http::header::{COOKIE, HOST, HeaderName};
use http::request::Parts;
use serde::Serialize;

/// The whole target of a request, as the client sent it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Target {
    method: String,
    scheme: String,
    authority: String,
    path: String,
    query: Option<String>,
}

impl Target {
    /// The target of a request; `forwarded_host` is the header that names
    /// the host when a trusted proxy is in front (then preferred to
    /// `Host`). Under axum's `Router::nest`, the path is the original one,
    /// not the one the nested router sees.
    pub fn of(parts: &Parts, forwarded_host: Option<&HeaderName>) -> Self {
        let uri = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or(&parts.uri, |original| &original.0);
        // Bytes that are not text are kept apart, not dropped: two hosts
        // that differ only there must not share entries.
        let header = |name: &HeaderName| {
            parts
                .headers
                .get(name)
                .map(|v| lossless(v.as_bytes().trim_ascii()).to_ascii_lowercase())
        };
        let authority = forwarded_host
            .and_then(&header)
            .map(|v| v.split(',').next().unwrap_or("").trim().to_owned())
            .or_else(|| header(&HOST))
            .or_else(|| uri.authority().map(|a| a.as_str().to_ascii_lowercase()))
            .unwrap_or_default();
        Target {
            method: parts.method.as_str().to_owned(),
            scheme: uri.scheme_str().unwrap_or("http").to_ascii_lowercase(),
            authority,
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
        }
    }
}

impl Target {
    /// The tag every stored response of this target carries (whatever its
    /// method and variant), for the invalidation that an unsafe request
    /// to it makes (RFC 9111 section 4.4).
    pub fn tag(&self, layer: &str) -> String {
        target_tag(
            layer,
            &self.scheme,
            &self.authority,
            &self.path,
            self.query.as_deref(),
        )
    }

    /// The tag of another URI of the same origin (a `Location` or
    /// `Content-Location`: absolute, or a path), if it is one.
    pub fn tag_of(&self, layer: &str, uri: &str) -> Option<String> {
        let uri: http::Uri = uri.parse().ok()?;
        if let Some(authority) = uri.authority()
            && !authority.as_str().eq_ignore_ascii_case(&self.authority)
        {
            return None;
        }
        if !uri.path().starts_with('/') {
            return None;
        }
        Some(target_tag(
            layer,
            &self.scheme,
            &self.authority,
            uri.path(),
            uri.query(),
        ))
    }
}

fn target_tag(
    layer: &str,
    scheme: &str,
    authority: &str,
    path: &str,
    query: Option<&str>,
) -> String {
    let mut hasher = blake3::Hasher::new();
    for part in [layer, scheme, authority, path, query.unwrap_or("")] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.update(&[u8::from(query.is_some())]);
    format!("http-target:{}", &hasher.finalize().to_hex()[..32])
}

/// The values a request has for some headers (the names in lowercase),
/// in the order of the names.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub(crate) struct Variant(Vec<(String, Vec<Vec<u8>>)>);

impl Variant {
    pub fn of<'n>(headers: &HeaderMap, names: impl IntoIterator<Item = &'n str>) -> Self {
        let mut names: Vec<String> = names.into_iter().map(str::to_ascii_lowercase).collect();
        names.sort();
        names.dedup();
        Variant(
            names
                .into_iter()
                .map(|name| {
                    let values = headers
                        .get_all(name.as_str())
                        .iter()
                        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
                        .map(|v| v.trim_ascii().to_vec())
                        .filter(|v| !v.is_empty())
                        .collect();
                    (name, values)
                })
                .collect(),
        )
    }

    /// The values of the cookies named `names` (`None` for one not sent),
    /// read as bytes: a header that is not text still tells its cookies
    /// apart (it must not read as "no cookie").
    pub fn cookies(headers: &HeaderMap, names: &[String]) -> Vec<Option<String>> {
        names
            .iter()
            .map(|name| {
                headers
                    .get_all(COOKIE)
                    .iter()
                    .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
                    .filter_map(|pair| {
                        let eq = pair.iter().position(|b| *b == b'=')?;
                        Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()))
                    })
                    .find(|(n, _)| *n == name.as_bytes())
                    .map(|(_, v)| lossless(v))
            })
            .collect()
    }
}

/// `bytes` as text without losing any: printable ASCII as it is, every
/// other byte (and `%`) as `%XX`. Two byte strings never give one text.
fn lossless(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'%' || b == b' ' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The header names of `Vary` fields, lowercase; `*` kept as is.
pub(crate) fn vary_names(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&'static str, &'static str)]) -> Parts {
        let mut builder = http::Request::builder().uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn bytes_that_are_not_text_keep_hosts_and_cookies_apart() {
        let raw = |host: &[u8], cookie: &[u8]| {
            let mut p = parts("/p", &[]);
            p.headers
                .insert(HOST, http::HeaderValue::from_bytes(host).unwrap());
            p.headers
                .insert(COOKIE, http::HeaderValue::from_bytes(cookie).unwrap());
            p
        };
        let a = raw(b"tenant-a.example\xff", b"session=alice; theme=caf\xe9");
        let b = raw(b"tenant-b.example\xff", b"session=bob; t=\xff");
        let c = raw(b"tenant-a.example\xfe", b"session=al\xffice");
        assert_ne!(Target::of(&a, None), Target::of(&b, None));
        assert_ne!(Target::of(&a, None), Target::of(&c, None));
        let names = ["session".to_owned()];
        let cookies = |p: &Parts| Variant::cookies(&p.headers, &names);
        assert_eq!(cookies(&a), [Some("alice".to_owned())]);
        assert_eq!(cookies(&b), [Some("bob".to_owned())]);
        assert_eq!(cookies(&c), [Some("al%FFice".to_owned())]);
        assert_eq!(lossless(b"a%b"), "a%25b");
    }

    #[test]
    fn hosts_and_paths_are_apart() {
        let a = Target::of(&parts("/p?x=1", &[("host", "a.example")]), None);
        let b = Target::of(&parts("/p?x=1", &[("host", "B.example")]), None);
        assert_ne!(a, b);
        let fwd = HeaderName::from_static("x-forwarded-host");
        let c = Target::of(
            &parts(
                "/p?x=1",
                &[("host", "b.example"), ("x-forwarded-host", "a.example")],
            ),
            Some(&fwd),
        );
        assert_eq!(a, c);
        let mut nested = parts("/profile", &[("host", "a.example")]);
        nested.extensions.insert(axum::extract::OriginalUri(
            "/tenants/acme/profile".parse().unwrap(),
        ));
        assert_eq!(Target::of(&nested, None).path, "/tenants/acme/profile");
    }

    #[test]
    fn variants_and_cookies() {
        let p = parts(
            "/",
            &[("accept-encoding", "gzip, br"), ("cookie", "a=1; lang=fr")],
        );
        let v = Variant::of(&p.headers, ["Accept-Encoding"]);
        let w = Variant::of(
            &parts("/", &[("accept-encoding", "gzip,br")]).headers,
            ["accept-encoding"],
        );
        assert_eq!(v, w);
        assert_eq!(
            Variant::cookies(&p.headers, &["lang".into(), "x".into()]),
            vec![Some("fr".into()), None]
        );
    }
}
