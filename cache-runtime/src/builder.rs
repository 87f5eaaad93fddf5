//! [`CacheBuilder`]: where the cache stores its entries and how it behaves.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::backend::clients::{self, Tls};
use crate::backend::credentials::{Credentials, CredentialsError};
use crate::backend::link::{Link, Node};
use crate::backend::memory::MemoryBackend;
use crate::backend::redis::{RedisBackend, Target};
use crate::backplane::{Backplane, Shards};
use crate::breaker::Breaker;
use crate::cache::Cache;
use crate::engine::{Inner, Parts};
use crate::error::Error;
use crate::local::LocalTier;
use crate::schema;
use crate::stats::Counters;

enum BackendChoice {
    None,
    Redis(String),
    Cluster(Vec<String>),
    Sentinel(Vec<String>, String),
    Memory,
}

/// The longest TTL, lease or timeout a cache takes: 100 years, far inside
/// what Redis accepts in `PX` (and what the macro takes in `ttl`).
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 24 * 60 * 60);

/// The default of [`CacheBuilder::local_max_age`]: 30 seconds.
pub const DEFAULT_LOCAL_MAX_AGE: Duration = Duration::from_secs(30);

/// The default of [`CacheBuilder::max_value_bytes`]: 8 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 8 << 20;

/// Configures a [`Cache`]. Made by [`Cache::builder`].
///
/// ```
/// use std::time::Duration;
/// use cache_runtime::Cache;
///
/// let cache = Cache::builder()
///     .redis("redis://127.0.0.1:6379/")   // connects lazily: no I/O here
///     .namespace("shop")
///     .op_timeout(Duration::from_millis(100))
///     .default_ttl(Duration::from_secs(300))
///     .build()?;
/// # Ok::<(), cache_runtime::Error>(())
/// ```
#[must_use = "call `.build()` to get a `Cache`"]
pub struct CacheBuilder {
    backend: BackendChoice,
    namespace: String,
    op_timeout: Duration,
    default_ttl: Duration,
    lock_ttl: Duration,
    memory_capacity: u64,
    memory_max_bytes: u64,
    max_value_bytes: usize,
    compress_above: Option<usize>,
    breaker: (u32, Duration),
    tls: Tls,
    ttl_jitter: f64,
    local_bytes: Option<u64>,
    local_max_age: Duration,
    credentials: Option<Credentials>,
}

impl std::fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("namespace", &self.namespace)
            .field("op_timeout", &self.op_timeout)
            .field("default_ttl", &self.default_ttl)
            .field("lock_ttl", &self.lock_ttl)
            .finish_non_exhaustive()
    }
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            backend: BackendChoice::None,
            namespace: "cache".into(),
            op_timeout: Duration::from_millis(100),
            default_ttl: Duration::from_secs(300),
            lock_ttl: Duration::from_secs(10),
            memory_capacity: 100_000,
            memory_max_bytes: 256 << 20,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            compress_above: None,
            breaker: (5, Duration::from_secs(1)),
            tls: Tls::default(),
            ttl_jitter: 0.0,
            local_bytes: None,
            local_max_age: DEFAULT_LOCAL_MAX_AGE,
            credentials: None,
        }
    }
}

/// What [`CacheBuilder::backend`] makes: the backend, the link of its
/// classic subscription, and a cluster's shards.
type BackendParts = (Backend, Option<Arc<Link>>, Option<Shards>);

impl CacheBuilder {
    /// Stores entries in the Redis server at `url`:
    /// `redis://[user:password@]host:port/db`, or `rediss://` for TLS
    /// (verified against the system's roots unless
    /// [`tls_root_cert`](Self::tls_root_cert) is given).
    ///
    /// A connection that stops answering (a black-holed host, a primary
    /// moved by DNS) is given up after a few consecutive timeouts and made
    /// anew; sockets have TCP keepalive on.
    ///
    /// A server that is a cluster node (`cluster_enabled:1` in `INFO`, as
    /// a managed cluster's single endpoint is) is used as the cluster it
    /// belongs to, as with [`redis_cluster`](Self::redis_cluster): found
    /// out on first use, with one `INFO cluster`.
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.backend = BackendChoice::Redis(url.into());
        self
    }

    /// Stores entries in the primary of the group `master_name` that the
    /// Redis Sentinels at `urls` (`redis://host:26379/`) monitor, instead
    /// of a fixed [`redis`](Self::redis) server. Each new connection asks
    /// the sentinels for the primary; after a failover, the connection to
    /// the old one is given up (on `READONLY`, or after consecutive
    /// failures) and the next operation reaches the new one.
    ///
    /// The user name, password and database of the first URL are used for
    /// the sentinels and the primary alike; `rediss://` means TLS to both.
    ///
    /// The process also listens to the sentinels' `+switch-master`
    /// announcements, so the move happens when the failover is announced,
    /// not seconds later when Sentinel demotes the old primary (which
    /// until then still takes writes that the new one never sees). As for
    /// any write, an invalidation taken by the old primary in the instant
    /// between the promotion and its announcement can be lost: Redis
    /// replicates asynchronously.
    ///
    /// ```
    /// use cache_runtime::Cache;
    ///
    /// let cache = Cache::builder()
    ///     .sentinel(["redis://10.0.0.1:26379/", "redis://10.0.0.2:26379/"], "mymaster")
    ///     .build()?;
    /// # Ok::<(), cache_runtime::Error>(())
    /// ```
    pub fn sentinel<I, S>(mut self, urls: I, master_name: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.backend = BackendChoice::Sentinel(
            urls.into_iter().map(Into::into).collect(),
            master_name.into(),
        );
        self
    }

    /// Verifies `rediss://` servers against this CA (PEM) instead of the
    /// system's roots: for a private CA. A server whose certificate does
    /// not verify is a connection error: calls fail open (run uncached),
    /// counted in [`Stats::errors`](crate::Stats::errors).
    ///
    /// ```no_run
    /// use cache_runtime::Cache;
    ///
    /// let cache = Cache::builder()
    ///     .redis("rediss://cache.internal:6380/")
    ///     .tls_root_cert(std::fs::read("ca.pem")?)
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls_root_cert(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.tls.root_cert = Some(ca_pem.into());
        self
    }

    /// Presents this certificate chain and private key (PEM) to
    /// `rediss://` servers that ask for one (mutual TLS, Redis's
    /// `tls-auth-clients yes`).
    #[cfg(feature = "tls")]
    pub fn tls_client_cert(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.client_cert = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Asks `provider` for the user name and password of each new Redis
    /// connection, instead of taking them from the URL: for managed Redis
    /// whose passwords are short-lived tokens (IAM authentication). It is
    /// asked whenever a connection is made: the first, each reconnection
    /// after a connection broke or was given up (a killed client, a
    /// failover, a network cut), every node's of a cluster, the primary's
    /// through Sentinel (the sentinels themselves take the URL's), and the
    /// subscription's (fill announcements, the local tier's
    /// invalidations). redis-rs asks it a second time when a connection
    /// is made, to start the connection's re-authentication (an `AUTH`
    /// with what it returns). A connection made stays authenticated when
    /// the password changes: Redis checks it only at `AUTH`.
    ///
    /// A provider that fails makes that connection fail: a connection
    /// error, counted in [`Stats::errors`](crate::Stats::errors) and
    /// logged with the provider's error; calls run uncached (fail-open),
    /// and the next operation tries again. Its error should not hold the
    /// password: the password itself never shows in an error, a log or a
    /// `Debug` output of this crate.
    ///
    /// ```
    /// # async fn fetch_iam_token() -> Result<String, std::io::Error> { Ok("token".into()) }
    /// let cache = cache_runtime::Cache::builder()
    ///     .redis("rediss://cache.example:6380/")
    ///     .credentials(|| async {
    ///         let token = fetch_iam_token().await?; // any error type: boxed
    ///         Ok(("app".into(), token))
    ///     })
    ///     .build()?;
    /// # Ok::<(), cache_runtime::Error>(())
    /// ```
    pub fn credentials<F, Fut>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(String, String), CredentialsError>>
            + Send
            + 'static,
    {
        self.credentials = Some(Credentials::new(provider));
        self
    }

    /// Stores entries in a Redis Cluster reached through any of `urls`.
    pub fn redis_cluster<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.backend = BackendChoice::Cluster(urls.into_iter().map(Into::into).collect());
        self
    }

    /// Stores entries in this process, in a bounded map (see
    /// [`memory_capacity`](Self::memory_capacity)).
    pub fn memory(mut self) -> Self {
        self.backend = BackendChoice::Memory;
        self
    }

    /// The prefix of every key (default `cache`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The longest a call waits on Redis for one operation (default 100 ms).
    /// Past it the call goes on without the cache.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// The TTL of entries whose function sets no `ttl` (default 5 minutes;
    /// at most [`MAX_DURATION`]).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// How long a fill lease lasts when the function sets no `lock_ttl`
    /// (default 10 s): the longest other callers wait on a filler that died.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// The largest value stored, in bytes as encoded (default 8 MiB). A
    /// larger one is returned to its caller but not stored: counted in
    /// [`Stats::oversized`](crate::Stats::oversized) and logged once per
    /// function. Keep it to what the op timeout can read: a stored entry
    /// larger than this whose read times out is deleted in the background,
    /// so that it does not cost every later call the timeout.
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// Stores values whose encoding is longer than `bytes` compressed
    /// (LZ4, with the pure-Rust `lz4_flex`; off by default). JSON of
    /// repetitive records (lists of products, pages) shrinks 3 to 5 times,
    /// for about a microsecond per 5 KB each way (see `BENCHMARKS.md`): less
    /// Redis memory and network per hit, for values of some kilobytes and
    /// more. `16 << 10` is a fair start.
    ///
    /// The entry's header says it is compressed (`cr1 json+lz4 ...`), so
    /// every reader of the namespace reads it, whatever its own setting:
    /// the option can be turned on, off or changed in a rolling deploy.
    /// [`max_value_bytes`](Self::max_value_bytes) still bounds the value as
    /// encoded, before compression, and bounds what a read decompresses:
    /// an entry claiming more, or whose body does not decompress, is a
    /// miss counted in [`Stats::decode_errors`](crate::Stats::decode_errors),
    /// and is overwritten by the next fill. In-process copies (the local
    /// tier, values shared between concurrent callers) are kept
    /// uncompressed; so is the in-process backend's, which gains nothing
    /// from it, unless this option is set.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder()
    ///     .redis("redis://127.0.0.1:6379/")
    ///     .compress_above(16 << 10) // values above 16 KiB as encoded
    ///     .build()?;
    /// # Ok::<(), cache_runtime::Error>(())
    /// ```
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.compress_above = Some(bytes);
        self
    }

    /// The circuit breaker (on by default: 5 failures, 1 s): after
    /// `failures` consecutive operations that could not reach Redis
    /// (timeouts, refused or broken connections), calls skip Redis and run
    /// uncached at once, counted in [`Stats::skipped`](crate::Stats::skipped),
    /// until `open_for` has passed; then one call probes Redis, and its
    /// outcome closes the breaker or opens it for another `open_for`. So a
    /// frozen Redis costs a few calls the op timeout, not every call.
    /// Invalidations always ask Redis. `failures = 0` turns it off.
    pub fn circuit_breaker(mut self, failures: u32, open_for: Duration) -> Self {
        self.breaker = (failures, open_for);
        self
    }

    /// Spreads the expiries of entries filled together: each entry's TTL is
    /// shortened by a random share of it, up to `fraction` (default 0: no
    /// jitter; `0.1` gives TTLs between 90 % and 100 % of the function's).
    /// Entries filled in one burst (a deploy, a warm-up, a mass
    /// invalidation) then do not all expire, and miss, in the same second.
    /// A TTL is never lengthened. `fraction` must be within `0.0..=1.0`.
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.ttl_jitter = fraction;
        self
    }

    /// A local tier in front of Redis, of about `max_bytes`: values read
    /// from Redis are kept in process memory and answered from it, with no
    /// Redis command, while they are provably current. Every
    /// `#[cached]` function of the cache uses it, unless it says
    /// `local = false`.
    ///
    /// Coherent across processes: every invalidation (of a tag, a function,
    /// a call, the namespace) is announced on Redis pub/sub after its
    /// write, and each process's local tier drops what it covers as the
    /// message arrives; an invalidation made in this process applies to its
    /// own local tier before it returns. Until this process's subscription
    /// is confirmed, and whenever it drops (a `PING` a second checks it), the
    /// local tier is bypassed, and it starts empty when the subscription is
    /// back, as messages may have been missed. A local value is checked
    /// against the same versions a Redis hit checks, and never outlives its
    /// Redis entry (nor, with `grace` or `refresh_ahead`, its freshness).
    ///
    /// Held versions: under the same rules, the process also keeps the
    /// version values (the function's, the call's, the namespace's, the
    /// tags') that its Redis reads found current, for every function of
    /// the cache, `local = false` ones included. A Redis hit whose versions
    /// are all held reads only its entry (one `GET` of one key, in one
    /// slot on a cluster) and checks the entry's header against them;
    /// otherwise it reads the entry and its versions. A held version goes
    /// when an invalidation names it (as its message arrives, or before an
    /// invalidation made here returns), when the subscription drops, and
    /// when the version key's Redis TTL would end (each entry stored under
    /// a version extends it to at least its own TTL, so a version is held
    /// no longer than the entry it was read with); a version read before an
    /// invalidation was applied is not held.
    ///
    /// What it does not see: a version key that disappears without an
    /// invalidation (evicted under `maxmemory`, a `FLUSHDB` by hand). Redis
    /// hits that read the version miss at once, but local values and held
    /// versions read before it are used for up to
    /// [`local_max_age`](Self::local_max_age) (30 s by default) after that
    /// read. Size Redis so that it does not evict (or run it with
    /// `maxmemory-policy noeviction`: full, it refuses stores, which are
    /// counted errors), or set `local_max_age` to the staleness you
    /// accept, and invalidate through the cache (`invalidate_all` rather
    /// than `FLUSHDB`). A Sentinel failover restarts the subscription, and
    /// so the local tier.
    ///
    /// Values whose stored type is `Clone` are kept decoded (a local hit is
    /// a clone); others are kept as their encoding (a hit decodes it).
    /// `max_bytes` counts each entry as its encoded size plus its keys;
    /// the least used entries are evicted beyond it.
    ///
    /// On Redis Cluster, the subscription goes to one of the nodes given to
    /// [`redis_cluster`](Self::redis_cluster) (a cluster forwards classic
    /// pub/sub messages to every node): the first, then the next one after
    /// each failure; while none answers, the local tier is bypassed. With
    /// the in-process backend, which needs no second tier, it is ignored.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder()
    ///     .redis("redis://127.0.0.1:6379/")
    ///     .local_cache(64 << 20)
    ///     .build()?;
    /// # Ok::<(), cache_runtime::Error>(())
    /// ```
    pub fn local_cache(mut self, max_bytes: u64) -> Self {
        self.local_bytes = Some(max_bytes);
        self
    }

    /// The longest a value is answered from process memory after its
    /// versions were last read from Redis (default
    /// [`DEFAULT_LOCAL_MAX_AGE`], 30 s): a local tier's entry, and each
    /// version value held for Redis hits (see
    /// [`local_cache`](Self::local_cache)).
    ///
    /// What it bounds: a version key that disappears with no invalidation
    /// message. Under `maxmemory-policy allkeys-lru` or `volatile-lru` (what
    /// serverless managed Redis runs) Redis may evict a version key; a
    /// `FLUSHDB` by hand or a failover that loses writes may drop one too.
    /// Redis hits that read the version see that at once (a missing
    /// version invalidates), but a value or a version kept in process was
    /// checked when it was read: it is answered for at most this long
    /// after that read, then the next call reads Redis again.
    ///
    /// Why 30 s: it is the staleness a lost version may cause, and a
    /// bound people accept for caches that do not see writes at all; yet
    /// it costs each process at most one Redis read of a key (and of a
    /// version) per 30 s, under 1 % of the reads of any key called more
    /// than 3 times a second, so the local tier keeps answering nearly
    /// every call of hot keys. Those reads also touch the version keys, so
    /// an LRU policy does not take hot versions for cold ones. A shorter
    /// bound suits data whose staleness costs more (a few seconds); a
    /// longer one, a Redis that never evicts (`noeviction`). `Duration::ZERO`
    /// keeps nothing in process. At most 100 years.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cache = cache_runtime::Cache::builder()
    ///     .redis("redis://127.0.0.1:6379/")
    ///     .local_cache(64 << 20)
    ///     .local_max_age(Duration::from_secs(10))
    ///     .build()?;
    /// # Ok::<(), cache_runtime::Error>(())
    /// ```
    pub fn local_max_age(mut self, max_age: Duration) -> Self {
        self.local_max_age = max_age;
        self
    }

    /// The most entries the in-process backend keeps (default 100 000).
    pub fn memory_capacity(mut self, entries: u64) -> Self {
        self.memory_capacity = entries;
        self
    }

    /// About the most bytes of entries the in-process backend keeps
    /// (default 256 MiB): an entry counts as its share of them, and at
    /// least as one of [`memory_capacity`](Self::memory_capacity)'s
    /// entries. The tag versions that live entries carry are never evicted
    /// before them.
    pub fn memory_max_bytes(mut self, bytes: u64) -> Self {
        self.memory_max_bytes = bytes;
        self
    }

    /// Makes the cache. Does no I/O: Redis is connected on first use, and a
    /// Redis that is down is not an error here.
    pub fn build(mut self) -> Result<Cache, Error> {
        self.check()?;
        let stats = Arc::new(Counters::default());
        let (backend, link, shards) = self.backend(&stats)?;
        let (backplane, local) = self.backplane(link, shards);
        Ok(Cache {
            inner: Arc::new(Inner::new(Parts {
                backend,
                namespace: self.namespace,
                default_ttl: self.default_ttl,
                lease_ttl: self.lock_ttl,
                max_value_bytes: self.max_value_bytes,
                compress_above: self.compress_above,
                ttl_jitter: self.ttl_jitter,
                stats,
                backplane,
                local,
            })),
        })
    }

    /// Checks the settings, each against its bounds.
    fn check(&self) -> Result<(), Error> {
        if self.op_timeout.is_zero() {
            return Err(Error::InvalidConfig(
                "`op_timeout` must be greater than zero",
            ));
        }
        if self.default_ttl < Duration::from_millis(1) {
            return Err(Error::InvalidConfig("`default_ttl` must be at least 1 ms"));
        }
        if self.lock_ttl < Duration::from_millis(1) {
            return Err(Error::InvalidConfig("`lock_ttl` must be at least 1 ms"));
        }
        if !(0.0..=1.0).contains(&self.ttl_jitter) {
            return Err(Error::InvalidConfig(
                "`ttl_jitter` must be within 0.0..=1.0",
            ));
        }
        if self.max_value_bytes == 0 {
            return Err(Error::InvalidConfig(
                "`max_value_bytes` must be greater than zero",
            ));
        }
        for (duration, too_long) in [
            (self.op_timeout, "`op_timeout` must be at most 100 years"),
            (self.default_ttl, "`default_ttl` must be at most 100 years"),
            (self.lock_ttl, "`lock_ttl` must be at most 100 years"),
            (
                self.local_max_age,
                "`local_max_age` must be at most 100 years",
            ),
            (
                self.breaker.1,
                "`circuit_breaker`'s `open_for` must be at most 100 years",
            ),
        ] {
            if duration > MAX_DURATION {
                return Err(Error::InvalidConfig(too_long));
            }
        }
        Ok(())
    }

    /// The backend, and the link its backplane subscribes on (Redis only):
    /// a single node's own link, or for a cluster one to any of its nodes
    /// (for classic pub/sub), and the cluster's shards (for sharded
    /// pub/sub; for one URL, if its node turns out to be a cluster's).
    /// Every connection of each asks the credentials provider, if any.
    fn backend(&mut self, stats: &Arc<Counters>) -> Result<BackendParts, Error> {
        let single =
            |node: Node| Arc::new(Link::new(node, self.op_timeout, self.credentials.clone()));
        let credentials = self.credentials.as_ref();
        Ok(
            match std::mem::replace(&mut self.backend, BackendChoice::None) {
                BackendChoice::None => return Err(Error::NoBackend),
                BackendChoice::Memory => (
                    Backend::Memory(MemoryBackend::new(
                        self.memory_capacity,
                        self.memory_max_bytes,
                    )),
                    None,
                    None,
                ),
                BackendChoice::Redis(url) => {
                    let link = single(Node::Fixed(clients::single(&url, &self.tls)?));
                    let mut backend = self.redis_node(Target::Single(link.clone()), stats);
                    // One address may stand for a whole cluster (a managed
                    // cluster's endpoint): asked on first use. A URL the
                    // cluster client does not take (a unix socket) is a
                    // single node.
                    let mut shards = None;
                    if let Ok(cluster) = clients::cluster(
                        std::slice::from_ref(&url),
                        &self.tls,
                        self.op_timeout,
                        credentials,
                    ) {
                        backend = backend.detecting_cluster(cluster);
                        shards = Some(Shards::new(
                            vec![url],
                            self.tls.clone(),
                            self.op_timeout,
                            credentials.cloned(),
                            true,
                        ));
                    }
                    (Backend::Redis(Arc::new(backend)), Some(link), shards)
                }
                BackendChoice::Sentinel(urls, master_name) => {
                    let sentinel = clients::sentinel(&urls, &master_name, &self.tls)?;
                    let link = single(Node::Sentinel {
                        client: tokio::sync::Mutex::new(sentinel),
                        master_name,
                    });
                    (
                        self.redis_backend(Target::Single(link.clone()), stats),
                        Some(link),
                        None,
                    )
                }
                BackendChoice::Cluster(urls) => {
                    if urls.is_empty() {
                        return Err(Error::InvalidConfig(
                            "`redis_cluster` needs at least one URL",
                        ));
                    }
                    let client = clients::cluster(&urls, &self.tls, self.op_timeout, credentials)?;
                    // The subscriptions (fill announcements, the local tier's
                    // backplane) go to every shard (sharded pub/sub); on a
                    // cluster without it, to one node, the first given, then
                    // the next after a failure: a cluster forwards classic
                    // pub/sub messages to every node.
                    let shards = Shards::new(
                        urls.clone(),
                        self.tls.clone(),
                        self.op_timeout,
                        credentials.cloned(),
                        false,
                    );
                    let nodes = urls
                        .iter()
                        .map(|url| clients::single(url, &self.tls))
                        .collect::<Result<Vec<_>, _>>()?;
                    let link = single(Node::Any {
                        clients: nodes,
                        next: Default::default(),
                    });
                    (
                        self.redis_backend(Target::Cluster(Box::new(client)), stats),
                        Some(link),
                        Some(shards),
                    )
                }
            },
        )
    }

    /// The backplane (fill announcements, and invalidations for the local
    /// tier) on `link`, and the local tier, which needs it.
    fn backplane(
        &self,
        link: Option<Arc<Link>>,
        shards: Option<Shards>,
    ) -> (Option<Arc<Backplane>>, Option<Arc<LocalTier>>) {
        let local = match (&link, self.local_bytes) {
            (Some(_), Some(bytes)) => Some(Arc::new(LocalTier::new(bytes, self.local_max_age))),
            (None, Some(_)) => {
                tracing::debug!(
                    target: "cache_runtime",
                    "`local_cache` is ignored: the in-process backend needs no second tier"
                );
                None
            }
            _ => None,
        };
        let backplane = link.map(|link| {
            Backplane::new(
                link,
                schema::fill_channel(&self.namespace),
                local
                    .clone()
                    .map(|tier| (tier, schema::invalidation_channel(&self.namespace))),
                shards,
            )
        });
        (backplane, local)
    }

    fn redis_backend(&self, target: Target, stats: &Arc<Counters>) -> Backend {
        Backend::Redis(Arc::new(self.redis_node(target, stats)))
    }

    fn redis_node(&self, target: Target, stats: &Arc<Counters>) -> RedisBackend {
        RedisBackend::new(
            target,
            self.op_timeout,
            stats.clone(),
            Breaker::new(self.breaker.0, self.breaker.1),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::MAX_DURATION;
    use crate::{Cache, Error};

    #[test]
    fn durations_past_the_bound_are_rejected_not_a_panic_later() {
        let too_long = MAX_DURATION + Duration::from_secs(1);
        for (builder, name) in [
            (
                Cache::builder().memory().default_ttl(Duration::MAX),
                "default_ttl",
            ),
            (Cache::builder().memory().lock_ttl(too_long), "lock_ttl"),
            (
                Cache::builder().memory().op_timeout(Duration::MAX),
                "op_timeout",
            ),
        ] {
            match builder.build() {
                Err(Error::InvalidConfig(msg)) => assert!(msg.contains(name), "{msg}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        let longest = Cache::builder()
            .memory()
            .default_ttl(MAX_DURATION)
            .lock_ttl(MAX_DURATION)
            .op_timeout(MAX_DURATION)
            .build();
        assert!(longest.is_ok());
    }
}
