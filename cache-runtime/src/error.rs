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
    /// connection), as opposed to an answer that was an error.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Error::Timeout(_) | Error::Connect(_) | Error::CircuitOpen => true,
            Error::Redis(e) => {
                e.is_timeout()
                    || e.is_io_error()
                    || e.is_connection_refusal()
                    || e.is_connection_dropped()
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
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let mut out = String::with_capacity(url.len());
    if !scheme.is_empty() {
        out.push_str(scheme);
        out.push_str("://");
    }
    match rest[..end].rfind('@') {
        Some(at) => {
            match rest[..at].split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str("***"),
            }
            out.push_str(&rest[at..end]);
        }
        None => out.push_str(&rest[..end]),
    }
    // A password in the query (`?password=...`) too.
    for part in rest[end..].split_inclusive('&') {
        match part.find("password=") {
            Some(i) => {
                out.push_str(&part[..i + "password=".len()]);
                out.push_str("***");
                if part.ends_with('&') {
                    out.push('&');
                }
            }
            None => out.push_str(part),
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
            ("redis://host/", "redis://host/"),
            ("user:s3cret@host", "user:***@host"),
            ("redis://u:p@ss@host/", "redis://u:***@host/"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
            assert!(!redact(url).contains("s3cret"));
        }
    }
}
