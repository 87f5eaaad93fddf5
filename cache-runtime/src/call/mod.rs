//! One call of a `#[cached]` function.
//!
//! ```text
//! lookup: read entry + versions ──current──▶ hit: decode and return
//!        │ absent / stale / undecodable
//!        ▼
//! miss: join the in-process flight ──follower──▶ the leader's value
//!        │ leader
//!        ▼
//! create missing versions + try the lease ──held by another process──▶ wait for its fill
//!        │ held (one round trip)                                       (announcement or backoff)
//!        ▼
//! fill: run the body, store value + versions, release the lease, land the flight
//! ```
//!
//! Any backend failure on the way makes the call go on without the cache
//! ([`fail_open`]): the body runs and its result is returned, the failure
//! is counted and logged, and concurrent callers of the key in this process
//! still share one computation.
//!
//! Only [`execute`] and what it runs with the call's types are generic
//! (over the result, its [`Strategy`] and the body): they decode, encode
//! and run the body, and consult the local tier ([`local`]). Everything
//! else moves bytes and is compiled once for all functions: [`lookup`]
//! (what a hit does), [`miss`] (flights, versions, where the lease is
//! taken), [`fill`] (what is written after the body), [`grace`] (grace and
//! refresh ahead), [`fail_open`].

mod batch;
mod fail_open;
mod fill;
mod given;
mod grace;
mod local;
mod lookup;
mod miss;

use std::future::Future;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::backend::Snapshot;
use crate::codec::CodecError;
use crate::engine::Inner;
use crate::entry::{self, Check};
use crate::key::{CallPart, KeyPart};
use crate::outcome::{Keep, Strategy};
use crate::schema::{self, KeyName};
use crate::scope::{self, Scope};
use crate::singleflight::Shared;
use crate::span;
use crate::spec::{CountersRef, KeysRef, Spec};
use crate::stats::{Counters, Stat};

pub(crate) use batch::execute as execute_batch;
pub use batch::{BatchItem, BatchMap, BatchOk, BatchPlain, BatchShape};
pub(crate) use fill::Fill;
pub(crate) use given::{StoreOnly, prime};
pub(crate) use grace::{Detached, InPlace};
use local::LocalLookup;
pub use local::{LocalForm, LocalProbe, ViaBytes, ViaClone, ViaCloneResult};
pub(crate) use lookup::read_current;

/// One call of a `#[cached]` function, as the generated code describes
/// it: the cache (if any), the function, the call's key and the rendered
/// tags that interpolate arguments, how its result is stored and kept
/// locally, and its body.
pub(crate) struct Request<'t, R, S, F> {
    inner: Option<Arc<Inner>>,
    spec: &'static Spec,
    key: KeyPart,
    tags: &'t [String],
    strategy: S,
    form: LocalForm<R, S>,
    body: F,
    /// Where to tell what the call served, for a caller that asks.
    served: Option<&'t Served>,
    /// The body gives a value to store without a lookup (`Entry::set`).
    store_only: Option<&'t StoreOnly>,
}

impl<'t, R, S, F> Request<'t, R, S, F> {
    pub(crate) fn new(
        inner: Option<Arc<Inner>>,
        spec: &'static Spec,
        key: KeyPart,
        tags: &'t [String],
        strategy: S,
        form: LocalForm<R, S>,
        body: F,
    ) -> Self {
        Request {
            inner,
            spec,
            key,
            tags,
            strategy,
            form,
            body,
            served: None,
            store_only: None,
        }
    }

    /// The call stores its body's result without looking up the entry,
    /// sharing a computation or waiting for one, and tells `mark` whether
    /// it did (`Entry::set`).
    pub(crate) fn store_only(mut self, mark: &'t StoreOnly) -> Self {
        self.store_only = Some(mark);
        self
    }

    /// The call tells `served` how long the entry it returns has left to
    /// live in storage (and reads it with the entry to know it).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn reporting(mut self, served: &'t Served) -> Self {
        self.served = Some(served);
        self
    }
}

/// What a call tells of the value it returned, when asked: whether it was
/// read from storage and, if so, the entry's remaining time to live by the
/// storage's own clock (Redis's `PTTL`, read in the same round trip as
/// the entry, on a hit as after a wait).
#[derive(Debug, Default)]
pub(crate) struct Served {
    /// 0: not read from storage (computed by this call, or handed over by
    /// a concurrent caller of this process); 1: read, with no TTL known;
    /// otherwise the remaining milliseconds plus two.
    state: AtomicU64,
}

/// Where a call's value came from (see [`Served`]).
#[cfg_attr(not(feature = "http"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServedFrom {
    /// Computed by this call, or handed over by a concurrent caller.
    Handed,
    /// Read from storage, with the entry's remaining TTL when the storage
    /// gave one (none: no TTL on the key, or gone since).
    Stored(Option<Duration>),
}

impl Served {
    /// Where the value came from.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn from(&self) -> ServedFrom {
        match self.state.load(Ordering::Relaxed) {
            0 => ServedFrom::Handed,
            1 => ServedFrom::Stored(None),
            ms => ServedFrom::Stored(Some(Duration::from_millis(ms - 2))),
        }
    }

    fn set(&self, found: &Found) {
        let state = match found {
            Found::Shared(_) => 0,
            Found::Hit { snap, .. } | Found::Read { snap, .. } => snap
                .ttl
                .map_or(1, |r| crate::duration::millis(r).saturating_add(2)),
        };
        self.state.store(state, Ordering::Relaxed);
    }
}

/// Runs one call in its span. With `grace`, an expired value is refreshed
/// as `mode` says: by this caller ([`InPlace`]) or in a task of its own
/// ([`Detached`]). A plain function around one `async fn`: the request and
/// its body are stored once in the call's future (each `async fn` layer
/// that moves them on would store them again).
pub(crate) fn execute<R, S, F, M>(request: Request<'_, R, S, F>, mode: M) -> impl Future<Output = R>
where
    S: Strategy<R>,
    F: Future<Output = R>,
    M: grace::Mode<R, S, F>,
{
    let span = span::call_span(request.spec.path());
    span::observed(span.clone(), run(request, mode, span))
}

async fn run<R, S, F, M>(request: Request<'_, R, S, F>, mode: M, span: tracing::Span) -> R
where
    S: Strategy<R>,
    F: Future<Output = R>,
    M: grace::Mode<R, S, F>,
{
    let Request {
        inner,
        spec,
        key,
        tags,
        strategy,
        form,
        body,
        served,
        store_only,
    } = request;
    // A value given by `Entry::set` or a `<fn>_prime` companion (its body
    // is the value): stored, whatever the scope.
    let primed = if store_only.is_none() {
        given::take()
    } else {
        None
    };
    if let Some(mark) = store_only.or(primed.as_deref()) {
        span.record("outcome", "given");
        return Box::pin(given::store(
            inner.as_ref(),
            spec,
            key,
            tags,
            &strategy,
            body,
            mark,
        ))
        .await;
    }
    let Some(inner) = inner else {
        warn_no_cache(spec);
        span.record("outcome", "uncached");
        return body.await;
    };
    let scope = scope::current();
    let mut local = match local::lookup(&inner, spec, &key, scope.is_some(), form, &strategy) {
        LocalLookup::Hit(value) => {
            // A local hit never waits: it takes from the task's budget, so
            // that a loop of them still lets the task's neighbours run.
            tokio::task::consume_budget().await;
            span.record("outcome", "local hit");
            return value;
        }
        LocalLookup::Miss(slot) => slot,
    };
    let codec = spec.options.codec;
    let call = match Call::new(&inner, spec, key, tags) {
        Ok(call) => call.reading_ttl(served.is_some()),
        Err(error) => {
            Counters::add(&inner.stats.errors);
            tracing::warn!(
                target: "cache_runtime",
                function = spec.path(),
                %error,
                "cannot derive the cache key; running uncached"
            );
            Counters::add(&inner.stats.computations);
            span.record("outcome", "uncached");
            return body.await;
        }
    };
    if scope == Some(Scope::Bypass) {
        call.count(Stat::bypassed);
        span.record("outcome", "bypass");
        return body.await;
    }
    let mut step = call.lookup(local.is_some() || served.is_some()).await;
    if scope == Some(Scope::Recompute) {
        step = Box::pin(call.recompute(step)).await;
    }
    loop {
        step = match step {
            Step::Serve(found) => match strategy.decode(codec, found.value()) {
                Ok(value) => {
                    call.served(&found);
                    if let Some(served) = served {
                        served.set(&found);
                    }
                    if let Some(slot) = local.take() {
                        call.keep_local(slot, form, &strategy, &value, &found);
                    }
                    span.record("outcome", found.outcome());
                    return value;
                }
                Err(error) => Box::pin(call.undecodable(found, &error)).await,
            },
            Step::Refresh { found, expired } => match strategy.decode(codec, found.value()) {
                Ok(value) => {
                    span.record("outcome", "grace or refresh");
                    let due = match grace::Due::of(&call, found, expired, value) {
                        Ok(due) => due,
                        Err(value) => return value,
                    };
                    return Box::pin(mode.refresh(&call, due, strategy, body)).await;
                }
                Err(error) => Box::pin(call.undecodable(found, &error)).await,
            },
            // Only a refresh leaves; a call that gets here runs its body.
            Step::RefreshedElsewhere => Step::Compute(Fill::uncached(&call, None)),
            Step::Failed(shared) => match shared.and_then(|s| form.take_shared(&s)) {
                Some(result) => {
                    call.count(Stat::coalesced);
                    span.record("outcome", "coalesced");
                    return result;
                }
                None => Step::Compute(Fill::uncached(&call, None)),
            },
            Step::Compute(fill) => {
                span.record("outcome", "computed");
                call.count(Stat::computations);
                let started = Instant::now();
                let result = body.await;
                let took = started.elapsed();
                call.function.body_took(took);
                let keep = fill_with(fill, &strategy, Some(form), &result, took).await;
                if scope == Some(Scope::Recompute)
                    && keep == Keep::Store
                    && !call.failed()
                    && spec.options.local
                {
                    // The new value replaces a current one: local tiers
                    // drop theirs (none holds a `local = false` value).
                    Box::pin(call.announce_replaced()).await;
                }
                return result;
            }
        };
    }
}

/// Encodes `result` into the fill and finishes it; what became of it. The
/// encoding is done before the returned future, which holds no reference
/// to `result` (a refresh task's future stays `Send` without `R: Sync`).
fn fill_with<'f, R, S: Strategy<R>>(
    mut fill: Fill<'f>,
    strategy: &S,
    form: Option<LocalForm<R, S>>,
    result: &R,
    took: Duration,
) -> impl Future<Output = Keep> + 'f {
    let call = fill.call();
    // `ttl_from`: a TTL under a millisecond (a token already expired)
    // stores nothing; the value is still returned and shared.
    let storable = strategy.ttl(result).is_none_or(|ttl| fill.choose_ttl(ttl));
    if call.spec.options.tags_from {
        fill.tag_value(strategy.tags(result));
    }
    let mut out = fill.start(took);
    let at = out.len();
    let keep = match strategy.encode(call.spec.options.codec, result, &mut out) {
        Ok(Keep::Store) if !storable => Keep::Share,
        Ok(keep) => keep,
        Err(error) => {
            call.unencodable(&error);
            Keep::Nothing
        }
    };
    // A result that is not stored goes to the callers waiting for it in
    // this process, when it can be cloned.
    let shared = match keep {
        Keep::Nothing => form.and_then(|form| form.share(result)),
        Keep::Store | Keep::Share => None,
    };
    async move {
        // Boxed, like the miss: a hit's future carries none of it.
        Box::pin(fill.finish(out, at, keep, shared)).await
    }
}

fn warn_no_cache(spec: &Spec) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            target: "cache_runtime",
            function = spec.path(),
            "no cache: call `cache_runtime::set_default` or pass `cache = ...`; running uncached"
        );
    }
}

/// What tells one fill of an entry from another: the freshness its header
/// records (the end of its freshness, in the writer's milliseconds), or 0.
fn fill_stamp(entry: &[u8]) -> u64 {
    entry::freshness(entry).map_or(0, |fresh| fresh.until_ms)
}

/// What the call does next.
pub(crate) enum Step<'c> {
    /// Decode these bytes and return them.
    Serve(Found),
    /// Run the body, then hand its encoding to the fill.
    Compute(Fill<'c>),
    /// A value to refresh: past its freshness, within `grace` (`expired`:
    /// served unless the refresh gets a new one in time), or still fresh
    /// and due for a refresh ahead of its expiry (see `grace`).
    Refresh { found: Found, expired: bool },
    /// Nothing to do: another caller, or process, refreshes the key.
    RefreshedElsewhere,
    /// The computation this call waited for ended with a result that is
    /// not stored (an `Err`): that result, when it can be cloned;
    /// otherwise the call runs its body at once.
    Failed(Option<Shared>),
}

/// A stored value found for the call.
pub(crate) enum Found {
    /// The call's own read: a hit. The value starts at the offset; the
    /// epoch is the flights' when the read was made, for the miss that
    /// follows if the value does not decode.
    Hit {
        snap: Snapshot,
        at: usize,
        epoch: u64,
    },
    /// Read after a wait: computed by a concurrent caller of this process
    /// (`coalesced`), or filled by another process.
    Read {
        snap: Snapshot,
        at: usize,
        coalesced: bool,
    },
    /// A value another caller of this process shared.
    Shared(Arc<[u8]>),
}

impl Found {
    /// What the span of the call says of it.
    fn outcome(&self) -> &'static str {
        match self {
            Found::Hit { .. } => "hit",
            Found::Read {
                coalesced: true, ..
            }
            | Found::Shared(_) => "coalesced",
            Found::Read { .. } => "filled by another process",
        }
    }

    /// The whole stored entry (empty for a shared value).
    fn entry(&self) -> &[u8] {
        match self {
            Found::Hit { snap, .. } | Found::Read { snap, .. } => snap.entry().unwrap_or(&[]),
            Found::Shared(_) => &[],
        }
    }

    fn value(&self) -> &[u8] {
        match self {
            Found::Hit { snap, at, .. } | Found::Read { snap, at, .. } => {
                snap.entry().map_or(&[][..], |entry| &entry[*at..])
            }
            Found::Shared(bytes) => bytes,
        }
    }
}

/// The keys of a miss, as strings (a hit writes its keys from their pieces
/// and needs none of these).
struct KeyStrings {
    pub entry: String,
    /// The function's version key, the call's, the namespace's, then the
    /// tags'.
    pub versions: Vec<String>,
}

/// The call's keys and settings, and whether the backend failed it.
pub(crate) struct Call<'c> {
    inner: &'c Arc<Inner>,
    spec: &'static Spec,
    keys: KeysRef,
    part: CallPart,
    /// The rendered tags that interpolate arguments.
    tags: &'c [String],
    ttl: Duration,
    /// Set by the first backend failure of this call: the call then makes
    /// no further write, so it waits on a failing Redis at most once.
    failed: AtomicBool,
    key_strings: OnceLock<KeyStrings>,
    /// This call is a refresh (of a value in grace, or ahead of its
    /// expiry): it leaves the key to whoever already computes it, rather
    /// than wait for them.
    refreshing: AtomicBool,
    /// The fill a refresh replaces, by the freshness its entry records (0:
    /// not known): a re-read that finds this same fill current is not the
    /// refresh's answer, a newer one is.
    refreshed_fill: AtomicU64,
    /// This call recomputes in a [`refresh`](crate::refresh) scope: a
    /// value found current is not what it wants.
    recomputing: AtomicBool,
    /// The function's counters in this cache.
    function: CountersRef,
    /// Every read of the entry asks for its remaining TTL (the caller
    /// wants to know how long it has been stored).
    reads_ttl: bool,
    /// Set when the miss waits for another caller or process to fill the
    /// entry: a batch call then runs its body for its other items.
    parked: AtomicBool,
    /// With `tags_from`: the server's clock at the call's first read,
    /// before its body (0: not read). A tag the value gives its entry
    /// whose version was created at or after it may have been invalidated
    /// while the body ran: the value is then not stored.
    started: AtomicU64,
}

impl<'c> Call<'c> {
    fn new(
        inner: &'c Arc<Inner>,
        spec: &'static Spec,
        key: KeyPart,
        tags: &'c [String],
    ) -> Result<Self, crate::canonical::EncodeError> {
        Ok(Self::with_part(inner, spec, key.into_call_part()?, tags))
    }

    fn with_part(
        inner: &'c Arc<Inner>,
        spec: &'static Spec,
        part: CallPart,
        tags: &'c [String],
    ) -> Self {
        Call {
            inner,
            spec,
            keys: spec.keys(&inner.namespace),
            part,
            tags,
            ttl: spec
                .options
                .ttl_secs
                .map_or(inner.default_ttl, Duration::from_secs),
            failed: AtomicBool::new(false),
            key_strings: OnceLock::new(),
            refreshing: AtomicBool::new(false),
            refreshed_fill: AtomicU64::new(0),
            recomputing: AtomicBool::new(false),
            function: inner.counters(spec),
            reads_ttl: false,
            parked: AtomicBool::new(false),
            started: AtomicU64::new(0),
        }
    }

    /// With `ttl`, every read of the entry asks for its remaining TTL.
    fn reading_ttl(mut self, ttl: bool) -> Self {
        self.reads_ttl = ttl;
        self
    }

    /// Counts one event of this call, in the cache's counters and the
    /// function's.
    fn count(&self, stat: Stat) {
        Counters::add(self.inner.stats.get(stat));
        self.function.count(stat);
    }

    /// Marks the call as waiting for another caller or process to fill
    /// its entry.
    fn park(&self) {
        self.parked.store(true, Ordering::Relaxed);
    }

    /// Whether this call is a refresh, which leaves the key to whoever
    /// already computes it.
    fn is_refresh(&self) -> bool {
        self.refreshing.load(Ordering::Relaxed)
    }

    /// Makes this call a refresh of the fill stamped `fill` (see
    /// [`fill_stamp`]).
    fn start_refresh(&self, fill: u64) {
        self.refreshing.store(true, Ordering::Relaxed);
        self.refreshed_fill.store(fill, Ordering::Relaxed);
    }

    /// Whether `snap` holds the fill this refresh replaces (or one it
    /// cannot tell from it).
    fn refreshes_this(&self, snap: &Snapshot) -> bool {
        let refreshed = self.refreshed_fill.load(Ordering::Relaxed);
        refreshed == 0 || snap.entry().map(fill_stamp) == Some(refreshed)
    }

    /// The entry's key.
    fn entry(&self) -> KeyName<'_> {
        self.part.entry(&self.keys)
    }

    /// The entry's version keys: the function's, the call's, the
    /// namespace's, then the tags' (constant ones first).
    fn version_names(&self) -> impl ExactSizeIterator<Item = KeyName<'_>> + Clone {
        let constant = &self.keys.version_keys[1..];
        let namespace = self.inner.namespace.as_str();
        (0..2 + constant.len() + self.tags.len()).map(move |i| match i {
            0 => KeyName::whole(&self.keys.version_keys[0]),
            1 => self.part.call_version(&self.keys),
            i if i < 2 + constant.len() => KeyName::whole(&constant[i - 2]),
            i => schema::tag_name(namespace, &self.tags[i - 2 - constant.len()]),
        })
    }

    /// The keys as strings, made on the first need (a miss).
    fn key_strings(&self) -> &KeyStrings {
        self.key_strings.get_or_init(|| KeyStrings {
            entry: self.entry().to_string(),
            versions: self.version_names().map(|k| k.to_string()).collect(),
        })
    }

    /// Whether the snapshot's entry is current for this call (with
    /// `tags_from`, the snapshot [completed](Self::complete)); a current
    /// one that is compressed is decompressed in place (see [`open`]).
    ///
    /// [`open`]: Self::open
    fn check(&self, snap: &mut Snapshot) -> Check {
        match self.check_stored(snap) {
            Check::Current(at) => self.open(snap, at),
            other => other,
        }
    }

    /// Whether the snapshot's entry is current for this call, as stored
    /// (with `tags_from`, the snapshot completed).
    fn check_stored(&self, snap: &Snapshot) -> Check {
        self.check_as(snap, entry::ValueTags::Checked)
    }

    /// [`check_stored`](Self::check_stored) of the function's versions
    /// only, the tags from the value left for [`complete`](Self::complete).
    /// The header is plain, so a compressed entry is looked at as stored;
    /// it is opened by the full [`check`](Self::check) after.
    fn check_first(&self, snap: &Snapshot) -> Check {
        self.check_as(snap, entry::ValueTags::Skipped)
    }

    /// The entry's check, with `tags_from` treating the value's tags as
    /// `value_tags` says (without, an entry that has some is stale).
    fn check_as(&self, snap: &Snapshot, value_tags: entry::ValueTags) -> Check {
        let value_tags = match self.spec.options.tags_from {
            true => value_tags,
            false => entry::ValueTags::None,
        };
        entry::check(
            snap.entry(),
            self.spec.options.codec,
            snap.versions(),
            value_tags,
        )
    }

    /// With `tags_from`, the second round trip of a read: the versions of
    /// the tags the entry took from its value (the header names them), and
    /// the server's clock, which the call's first such read keeps as its
    /// start. Without, the snapshot as it is.
    async fn complete(&self, mut snap: Snapshot) -> Result<Snapshot, crate::error::Error> {
        if !self.spec.options.tags_from {
            return Ok(snap);
        }
        let namespace = &self.inner.namespace;
        let keys: Vec<String> = snap
            .entry()
            .map(entry::value_tags)
            .unwrap_or_default()
            .iter()
            .map(|tag| schema::tag_key(namespace, tag))
            .collect();
        let (versions, clock) = self
            .inner
            .backend
            .read_value_tags(self.entry(), &keys)
            .await?;
        let _ = self
            .started
            .compare_exchange(0, clock, Ordering::Relaxed, Ordering::Relaxed);
        snap.append_value_tags(versions)?;
        Ok(snap)
    }

    /// A current entry made readable: a compressed value is decompressed
    /// in the snapshot, bounded by `max_value_bytes`. One that does not
    /// decompress is `Corrupt` (logged here; counted by the caller as any
    /// corrupt entry).
    fn open(&self, snap: &mut Snapshot, at: usize) -> Check {
        let Some(stored) = snap.entry() else {
            return Check::Current(at);
        };
        match entry::open(stored, at, self.inner.max_value_bytes) {
            Ok(None) => Check::Current(at),
            Ok(Some((plain, at))) => {
                snap.set_entry(plain);
                Check::Current(at)
            }
            Err(error) => {
                tracing::warn!(
                    target: "cache_runtime",
                    key = %self.entry(),
                    %error,
                    "stored value does not decompress; recomputing"
                );
                Check::Corrupt
            }
        }
    }

    /// Counts a value that decoded and is returned.
    fn served(&self, found: &Found) {
        match found {
            Found::Hit { .. } => {
                self.count(Stat::hits);
                tracing::trace!(target: "cache_runtime", key = %self.entry(), "cache hit");
            }
            Found::Read {
                coalesced: true, ..
            }
            | Found::Shared(_) => self.count(Stat::coalesced),
            Found::Read { .. } => {}
        }
    }

    /// In a [`refresh`](crate::refresh) scope, a hit is taken for a miss
    /// (with the versions it read): the value is recomputed.
    async fn recompute<'s>(&'s self, step: Step<'s>) -> Step<'s> {
        match step {
            Step::Serve(Found::Hit { snap, epoch, .. }) => {
                self.count(Stat::misses);
                self.recomputing.store(true, Ordering::Relaxed);
                self.miss(snap.into_versions(), epoch).await
            }
            step => step,
        }
    }

    /// A found value did not decode (a type changed in a deploy, or
    /// corruption): counted, then a miss if it was the call's own read, or
    /// the body without the cache otherwise.
    async fn undecodable(&self, found: Found, error: &CodecError) -> Step<'_> {
        self.count(Stat::decode_errors);
        tracing::warn!(
            target: "cache_runtime",
            key = %self.entry(),
            %error,
            "stored value does not decode; recomputing"
        );
        match found {
            Found::Hit { snap, epoch, .. } => {
                self.count(Stat::misses);
                self.miss(snap.into_versions(), epoch).await
            }
            Found::Read { .. } | Found::Shared(_) => Step::Compute(Fill::uncached(self, None)),
        }
    }

    fn unencodable(&self, error: &CodecError) {
        tracing::warn!(
            target: "cache_runtime",
            key = %self.entry(),
            %error,
            "value does not encode; not cached"
        );
    }

    /// How long a fill lease lasts: the longest a body is expected to run.
    fn lease_ttl(&self) -> Duration {
        self.spec
            .options
            .lock_ttl_ms
            .map_or(self.inner.lease_ttl, Duration::from_millis)
    }

    /// Tells the local tiers of every process that this call's value was
    /// replaced (a refresh scope's): its call version is announced on the
    /// backplane, not deleted, so the new value stays current in Redis.
    async fn announce_replaced(&self) {
        let version = [self.part.call_version(&self.keys).to_string()];
        if let Err(error) = self.inner.invalidate(&version, false).await {
            self.fail(&error, "announce");
        }
    }
}
