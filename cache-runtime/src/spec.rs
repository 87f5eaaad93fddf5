//! The static description of one `#[cached]` function.

/// What the macro knows about a function at compile time.
#[derive(Debug)]
pub struct Spec {
    /// `module::path::fn_name`.
    pub function: &'static str,
    /// `ttl = ...` in seconds; `None` uses the cache's default TTL.
    pub ttl_secs: Option<u64>,
    /// Stampede protection (`lock = false` turns it off).
    pub lock: bool,
    /// `lock_ttl = ...` in milliseconds; `None` uses the cache's default.
    pub lock_ttl_ms: Option<u64>,
}
