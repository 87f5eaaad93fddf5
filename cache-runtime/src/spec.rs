//! The static description of one `#[cached]` function.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::codec::Codec;
use crate::function_counters::FunctionCounters;
use crate::schema;

/// The attribute's options, as the macro wrote them.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `ttl = ...` in seconds; `None` uses the cache's default TTL.
    pub ttl_secs: Option<u64>,
    /// Stampede protection (`lock = false` turns it off): in-process
    /// flights, and the fill lease across processes. The options say
    /// `lock`, after the attribute; the code says lease.
    pub lock: bool,
    /// `lock_ttl = ...` in milliseconds, how long the fill lease lasts;
    /// `None` uses the cache's default.
    pub lock_ttl_ms: Option<u64>,
    /// `codec = ...`.
    pub codec: Codec,
    /// The tags that interpolate no argument (the others are rendered per
    /// call and come after these).
    pub tags: &'static [&'static str],
    /// `grace = ...` in seconds: how long an expired value is still served
    /// while it is refreshed, or when the body fails.
    pub grace_secs: Option<u64>,
    /// `timeout = ...` in milliseconds: with a grace value at hand, how
    /// long a caller waits for a refresh before taking the grace value.
    pub timeout_ms: Option<u64>,
    /// `refresh_ahead = true`: hot keys are refreshed before they expire.
    pub refresh_ahead: bool,
    /// Whether the cache's local tier serves this function (`local =
    /// false` opts out).
    pub local: bool,
    /// Whether the cache's `ttl_jitter` shortens this function's TTLs.
    /// The HTTP layer's entries keep theirs exactly: a response's age is
    /// read off its entry's remaining TTL.
    pub jitter: bool,
    /// `tags_from = ...`: entries also carry tags taken from their value,
    /// after the body (see the crate docs, "Tags from the value").
    pub tags_from: bool,
}

impl Options {
    /// What a bare `#[cached]` means.
    pub const DEFAULT: Options = Options {
        ttl_secs: None,
        lock: true,
        lock_ttl_ms: None,
        codec: Codec::Json,
        tags: &[],
        grace_secs: None,
        timeout_ms: None,
        refresh_ahead: false,
        local: true,
        jitter: true,
        tags_from: false,
    };

    /// Whether entries record their freshness (`grace` or `refresh_ahead`).
    pub(crate) fn records_freshness(&self) -> bool {
        self.grace_secs.is_some() || self.refresh_ahead
    }

    /// How long an entry outlives its TTL.
    pub(crate) fn grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.grace_secs.unwrap_or(0))
    }
}

/// What the macro knows about a function at compile time, and the keys
/// derived from it once per namespace.
#[derive(Debug)]
pub struct Spec {
    name: &'static str,
    marker: fn() -> &'static str,
    path: OnceLock<String>,
    /// The options.
    pub options: Options,
    keys: OnceLock<FunctionKeys>,
    /// The function's counters in the first cache it was called with
    /// (nearly always the only one), by the cache's id.
    counters: OnceLock<(u64, Arc<FunctionCounters>)>,
    warned_oversized: AtomicBool,
}

/// The keys every call of a function shares, under one namespace.
#[derive(Debug)]
pub(crate) struct FunctionKeys {
    pub namespace: String,
    /// `{ns}:{path}:`, which a call's digest completes.
    pub entry_prefix: String,
    /// The function's version key, the namespace's, then the constant
    /// tags' version keys.
    pub version_keys: Vec<String>,
}

/// The name of the marker function the macro nests in each function it
/// expands (and in its companions).
pub const MARKER: &str = "__cache_marker";

impl Spec {
    /// `name` is the function's name; `marker` returns
    /// `std::any::type_name` of a function named [`MARKER`] nested in it.
    pub const fn new(name: &'static str, marker: fn() -> &'static str, options: Options) -> Self {
        Spec {
            name,
            marker,
            path: OnceLock::new(),
            options,
            keys: OnceLock::new(),
            counters: OnceLock::new(),
            warned_oversized: AtomicBool::new(false),
        }
    }

    /// A description whose path is given rather than read off a marker
    /// (the entries of [`Cache::entry`](crate::Cache::entry)): `path` is
    /// its name too.
    pub(crate) fn with_path(path: &'static str, options: Options) -> Self {
        fn no_marker() -> &'static str {
            ""
        }
        let spec = Spec::new(path, no_marker, options);
        let _ = spec.path.set(path.to_owned());
        spec
    }

    /// The function's full path, `my_crate::module::fn_name`, or
    /// `my_crate::module::Type::fn_name` for an associated function, so that
    /// `User::get` and `Team::get` of one module never share keys.
    pub fn path(&self) -> &str {
        self.path
            .get_or_init(|| function_path((self.marker)(), self.name))
    }

    /// What holds the function (its module, or its `impl` type as the
    /// compiler spells it in a nested item, `_` for each type parameter:
    /// `app::Repo<_>`): the path less `::{name}`.
    pub(crate) fn holder(&self) -> &str {
        let path = self.path();
        path.strip_suffix(self.name)
            .and_then(|p| p.strip_suffix("::"))
            .unwrap_or(path)
    }

    /// Whether this is the function's first value too large to store (it is
    /// logged once).
    pub(crate) fn first_oversized(&self) -> bool {
        !self.warned_oversized.swap(true, Ordering::Relaxed)
    }

    /// The function's keys under `namespace`: made once for the first
    /// namespace the function is called with (nearly always the only one),
    /// per call for any other.
    pub(crate) fn keys(&'static self, namespace: &str) -> KeysRef {
        let keys = self.keys.get_or_init(|| self.make_keys(namespace));
        if keys.namespace == namespace {
            KeysRef::Shared(keys)
        } else {
            KeysRef::Own(self.make_keys(namespace))
        }
    }

    /// The function's counters in the cache whose id is `cache`, made by
    /// `make` on first use: without a lock for the first cache the function
    /// is called with.
    pub(crate) fn counters(
        &'static self,
        cache: u64,
        make: impl Fn() -> Arc<FunctionCounters>,
    ) -> CountersRef {
        let (id, first) = self.counters.get_or_init(|| (cache, make()));
        if *id == cache {
            CountersRef::Shared(first)
        } else {
            CountersRef::Own(make())
        }
    }

    fn make_keys(&self, namespace: &str) -> FunctionKeys {
        let path = self.path();
        let mut version_keys = Vec::with_capacity(2 + self.options.tags.len());
        version_keys.push(schema::function_key(namespace, path));
        version_keys.push(schema::namespace_key(namespace));
        version_keys.extend(
            self.options
                .tags
                .iter()
                .map(|tag| schema::tag_key(namespace, tag)),
        );
        FunctionKeys {
            namespace: namespace.to_owned(),
            entry_prefix: schema::entry_prefix(namespace, path),
            version_keys,
        }
    }
}

/// A function's counters in one cache.
pub(crate) enum CountersRef {
    Shared(&'static FunctionCounters),
    Own(Arc<FunctionCounters>),
}

impl std::ops::Deref for CountersRef {
    type Target = FunctionCounters;
    fn deref(&self) -> &FunctionCounters {
        match self {
            CountersRef::Shared(c) => c,
            CountersRef::Own(c) => c,
        }
    }
}

/// [`FunctionKeys`], shared or made for one call.
pub(crate) enum KeysRef {
    Shared(&'static FunctionKeys),
    Own(FunctionKeys),
}

impl std::ops::Deref for KeysRef {
    type Target = FunctionKeys;
    fn deref(&self) -> &FunctionKeys {
        match self {
            KeysRef::Shared(k) => k,
            KeysRef::Own(k) => k,
        }
    }
}

/// The path of the function named `name` from the type name of a marker
/// nested in it or in one of its companions (siblings in the same module or
/// `impl`): the marker's path, less the marker, the async bodies
/// (`{{closure}}`) and the function that holds it, plus `name`.
fn function_path(marker: &str, name: &str) -> String {
    let Some(mut holder) = marker
        .strip_suffix(MARKER)
        .and_then(|m| m.strip_suffix("::"))
    else {
        return format!("{marker}::{name}");
    };
    while let Some(outer) = holder.strip_suffix("::{{closure}}") {
        holder = outer;
    }
    match holder.rsplit_once("::") {
        Some((parent, _function)) => format!("{parent}::{name}"),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::function_path;

    #[test]
    fn paths_from_markers() {
        let cases = [
            (
                "app::m::free::{{closure}}::__cache_marker",
                "free",
                "app::m::free",
            ),
            (
                "app::m::free_invalidate::{{closure}}::__cache_marker",
                "free",
                "app::m::free",
            ),
            (
                "app::m::User::get::{{closure}}::__cache_marker",
                "get",
                "app::m::User::get",
            ),
            (
                "app::m::Wrap<_>::get::{{closure}}::__cache_marker",
                "get",
                "app::m::Wrap<_>::get",
            ),
            (
                "<app::m::User as app::m::Tr>::t::{{closure}}::__cache_marker",
                "t",
                "<app::m::User as app::m::Tr>::t",
            ),
            ("app::m::sync_outer::__cache_marker", "f", "app::m::f"),
            ("unexpected", "f", "unexpected::f"),
        ];
        for (marker, name, expected) in cases {
            assert_eq!(function_path(marker, name), expected, "{marker}");
        }
    }

    #[test]
    fn this_compiler_spells_markers_as_expected() {
        fn __cache_marker() -> &'static str {
            std::any::type_name_of_val(&__cache_marker)
        }
        assert_eq!(
            function_path(__cache_marker(), "x"),
            "cache_runtime::spec::tests::x",
            "{}",
            __cache_marker()
        );
    }
}
