//! Typed errors. A cached call never returns these (it fails open); they are
//! returned by building a [`Cache`](crate::Cache) and by explicit operations
//! such as [`Cache::invalidate_tag`](crate::Cache::invalidate_tag), where the
//! caller must know that an invalidation did not happen.

use std::time::Duration;

/// What went wrong in a cache operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `build()` was called without `.redis(..)`, `.redis_cluster(..)`,
    /// `.sentinel(..)` or `.memory()`.
    #[error(
        "no cache backend configured: call `.redis(url)`, `.redis_cluster(urls)`, `.sentinel(urls, master)` or `.memory()` on the builder"
    )]
    NoBackend,
    /// The Redis URL could not be parsed.
    #[error("invalid Redis URL `{url}`: {source}")]
    InvalidUrl {
        /// The URL as given, its password replaced by `***`.
        url: String,
        /// Why it was rejected.
        #[source]
        source: redis::RedisError,
    },
    /// A builder setting is out of range.
    #[error("invalid cache setting: {0}")]
    InvalidConfig(&'static str),
    /// No connection to Redis could be made.
    #[error("cannot connect to Redis: {0}")]
    Connect(String),
    /// Redis answered with an error or the connection failed.
    #[error("Redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered something this crate did not expect.
    #[error("unexpected Redis reply: {0}")]
    Reply(String),
    /// Redis did not answer within the op timeout.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// A `#[cached]` function has no cache: no `cache = ...` and no default.
    #[error(
        "no cache to use: pass `#[cached(cache = ...)]` or call `cache_runtime::set_default` first"
    )]
    NoCache,
    /// Redis was not asked: the circuit breaker is open after consecutive
    /// failures to reach it.
    #[error("Redis skipped: the circuit breaker is open after consecutive failures to reach it")]
    CircuitOpen,
    /// A key argument could not be encoded.
    #[error(transparent)]
    Key(#[from] crate::canonical::EncodeError),
}

impl Error {
    /// Whether Redis could not be reached (a timeout, a refused or broken
    /// connection, a connection whose credentials were refused or could
    /// not be had from the provider), as opposed to an answer that was an
    /// error. Such failures count for the circuit breaker, and a
    /// connection that has a few in a row is made anew.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Error::Timeout(_) | Error::Connect(_) | Error::CircuitOpen => true,
            Error::Redis(e) => {
                e.is_timeout()
                    || e.is_io_error()
                    || e.is_connection_refusal()
                    || e.is_connection_dropped()
                    || e.kind() == redis::ErrorKind::AuthenticationFailed
            }
            _ => false,
        }
    }

    /// Whether this is a timeout (as opposed to a refused or broken connection).
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout(_) => true,
            Error::Redis(e) => e.is_timeout(),
            _ => false,
        }
    }
}

/// `url` with any password replaced by `***` (`redis://user:***@host/`),
/// for messages and logs.
///
/// A URL that the `url` crate parses, and whose userinfo it found where a
/// person would (no `@` left after the host), has its password (or a user
/// name alone, which Redis takes as a password) and any `password=` or
/// `pass=` query parameter (a unix socket's URL) replaced. Any other text is taken as unparseable: a password
/// may hold unescaped `/`, `?`, `#` or `@`, so everything from after the
/// scheme up to the last `@` is userinfo, of which only the user name (up to
/// the first `:`) is kept.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) if !parsed[url::Position::BeforePath..].contains('@') => redact_parsed(parsed),
        _ => redact_unparsed(url),
    }
}

fn redact_parsed(mut url: url::Url) -> String {
    // Setting userinfo fails only on URLs that cannot have any (`data:`):
    // then there is none to hide.
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    } else if !url.username().is_empty() {
        let _ = url.set_username("***");
    }
    if url.query_pairs().any(|(name, _)| is_secret(&name)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_secret(&name) {
                    "***".to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.into()
}

/// A query parameter that holds a password: `password` (TCP URLs) or
/// `pass` (unix socket URLs, as redis-rs reads them).
fn is_secret(name: &str) -> bool {
    name == "password" || name == "pass"
}

fn redact_unparsed(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let mut out = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    let after = match rest.rfind('@') {
        Some(at) => {
            match rest[..at].split_once(':') {
                Some((user, _)) if !user.contains(['/', '?', '#']) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                _ => out.push_str("***"),
            }
            &rest[at..]
        }
        None => rest,
    };
    // A password in the query (`?password=...`, `?pass=...`) too, up to
    // the next `&`.
    let mut parts = after.split('&').peekable();
    while let Some(part) = parts.next() {
        let name_at = part.rfind('?').map_or(0, |q| q + 1);
        match part[name_at..].split_once('=') {
            Some((name, _)) if is_secret(name) => {
                out.push_str(&part[..name_at + name.len() + 1]);
                out.push_str("***");
            }
            _ => out.push_str(part),
        }
        if parts.peek().is_some() {
            out.push('&');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_show() {
        for (url, shown) in [
            (
                "redis://user:s3cret@host:6379/0",
                "redis://user:***@host:6379/0",
            ),
            ("redis://:s3cret@host/", "redis://:***@host/"),
            ("rediss://s3cret@host", "rediss://***@host"),
            (
                "redis://host:6379/?password=s3cret&db=1",
                "redis://host:6379/?password=***&db=1",
            ),
            (
                "redis+unix:///tmp/redis.sock?pass=s3cretPW&db=notanumber",
                "redis+unix:///tmp/redis.sock?pass=***&db=notanumber",
            ),
            (
                "unix:///tmp/redis.sock?user=u&pass=s3cretPW",
                "unix:///tmp/redis.sock?user=u&pass=***",
            ),
            ("redis://host/", "redis://host/"),
            ("user:s3cret@host", "user:***@host"),
            ("redis://u:p@ss@host/", "redis://u:***@host/"),
            (
                "redis://default:s3cret/x+pw==@host/0",
                "redis://default:***@host/0",
            ),
            (
                "redis://default:s3cret?x@host/0",
                "redis://default:***@host/0",
            ),
            (
                "redis://default:s3cret#x@host/0",
                "redis://default:***@host/0",
            ),
            (
                "redis://default:123/s3cret@host/",
                "redis://default:***@host/",
            ),
        ] {
            assert_eq!(redact(url), shown, "{url}");
            assert!(!redact(url).contains("s3cret"));
        }
    }
}
