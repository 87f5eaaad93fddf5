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
//! (`offline`): the body runs and its result is returned, the failure is
//! counted and logged, and concurrent callers of the key in this process
//! still share one computation.
//!
//! Only [`execute`] is generic (over the result, its [`Strategy`] and the
//! body): it decodes, encodes and runs the body. Everything else moves bytes
//! and is compiled once for all functions: [`lookup`] (what a hit does),
//! [`miss`] (flights, versions, where the lease is taken), [`fill`] (what
//! is written after the body), [`offline`].

mod fill;
mod grace;
mod lookup;
mod miss;
mod offline;

use std::future::Future;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tracing::Instrument;

use crate::backend::{KeyName, Snapshot};
use crate::cache::{Cache, Inner};
use crate::codec::CodecError;
use crate::entry::{self, Check};
use crate::error::Error;
use crate::key::{CallPart, KeyPart};
use crate::local::{LocalForm, LocalKey, LocalTier, Ticket};
use crate::outcome::{Keep, Strategy};
use crate::scope::{self, Scope};
use crate::spec::{CountersRef, KeysRef, Spec};
use crate::stats::{Counters, Stat};

pub(crate) use fill::Fill;
pub(crate) use grace::REFRESH_BACKOFF;

/// Runs one call of a `#[cached]` function. Called by the generated code
/// only; `tags` are the rendered tags that interpolate arguments. With
/// `grace`, an expired value is refreshed by this caller (the others get
/// the grace value meanwhile); see [`execute_detached`] for the refresh in
/// a task of its own.
pub fn execute<R, S, F>(
    cache: Option<Cache>,
    spec: &'static Spec,
    key: KeyPart,
    tags: &[String],
    strategy: S,
    form: LocalForm<R, S>,
    body: F,
) -> impl Future<Output = R>
where
    S: Strategy<R>,
    F: Future<Output = R>,
{
    in_span(spec, move |span| {
        run(
            cache,
            spec,
            key,
            tags,
            (strategy, form),
            body,
            grace::InPlace,
            span,
        )
    })
}

/// A call's future (`run`) in its span. Plain functions around one
/// `async fn`: the call's arguments and its body are stored once in its
/// future (each `async fn` layer that moves them on would store them
/// again).
fn in_span<R, C: Future<Output = R>>(
    spec: &'static Spec,
    call: impl FnOnce(tracing::Span) -> C,
) -> impl Future<Output = R> {
    let span = call_span(spec);
    observed(span.clone(), call(span))
}

/// The span of one call, at `DEBUG`: the function, then the outcome and
/// the Redis round trips the call made; the call's own events are inside
/// it. Disabled (the default level of most subscribers), it costs a level
/// check per call, within the noise of the hit benchmark.
fn call_span(spec: &'static Spec) -> tracing::Span {
    tracing::debug_span!(
        target: "cache_runtime",
        "cached",
        function = spec.path(),
        outcome = tracing::field::Empty,
        round_trips = tracing::field::Empty,
    )
}

tokio::task_local! {
    /// The round trips of the call the task is running, while its span is
    /// enabled (see [`RedisBackend`](crate::backend::redis)).
    pub(crate) static ROUND_TRIPS: std::cell::Cell<u32>;
}

/// Runs a call in its span, counting its round trips into the span; with
/// the span disabled, just runs it. A plain function, not an `async fn`:
/// the call's future is stored once, not once per way of running it.
fn observed<R>(span: tracing::Span, call: impl Future<Output = R>) -> impl Future<Output = R> {
    use futures_util::future::Either;
    if span.is_disabled() {
        return Either::Left(call);
    }
    let recorded = Recorded {
        call,
        span: span.clone(),
    };
    Either::Right(
        ROUND_TRIPS
            .scope(std::cell::Cell::new(0), recorded)
            .instrument(span),
    )
}

pin_project_lite::pin_project! {
    /// A call that records its round trips into its span when it is done
    /// (polled within the scope of [`ROUND_TRIPS`]).
    struct Recorded<F> {
        #[pin]
        call: F,
        span: tracing::Span,
    }
}

impl<F: Future> Future for Recorded<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let result = std::task::ready!(this.call.poll(cx));
        this.span
            .record("round_trips", ROUND_TRIPS.with(std::cell::Cell::get));
        std::task::Poll::Ready(result)
    }
}

/// [`execute`] for a function whose body can move into a task of its own
/// (its arguments are owned): with `grace` or `refresh_ahead`, a refresh
/// runs in the background, so that no caller waits for it (or waits at
/// most `timeout`).
pub fn execute_detached<R, S, F>(
    cache: Option<Cache>,
    spec: &'static Spec,
    key: KeyPart,
    tags: &[String],
    strategy: S,
    form: LocalForm<R, S>,
    body: F,
) -> impl Future<Output = R>
where
    R: Send + 'static,
    S: Strategy<R> + Clone + Send + Sync + 'static,
    F: Future<Output = R> + Send + 'static,
{
    in_span(spec, move |span| {
        run(
            cache,
            spec,
            key,
            tags,
            (strategy, form),
            body,
            grace::Detached,
            span,
        )
    })
}

/// What the local tier made of a call.
enum First<'c, R> {
    /// Its value, served.
    Hit(R),
    /// Nothing: with the tier, a ticket and the key when what Redis
    /// returns may be kept.
    Miss(Option<(&'c LocalTier, Ticket, LocalKey)>),
}

/// The local tier's answer to a call, if the cache has one and the call
/// may use it (not in a `bypass` or `refresh` scope, not `local = false`).
fn first_local<'c, R, S: Strategy<R>>(
    cache: &'c Cache,
    spec: &'static Spec,
    key: &KeyPart,
    scope: Option<Scope>,
    form: LocalForm<R, S>,
    strategy: &S,
) -> First<'c, R> {
    let Some(tier) = cache.inner.local.as_deref() else {
        return First::Miss(None);
    };
    if !spec.options.local || scope.is_some() {
        return First::Miss(None);
    }
    let Some(local_key) = crate::local::key_of(spec, key) else {
        return First::Miss(None);
    };
    if let Some(value) = tier.serve(&local_key, form, strategy, spec.options.codec) {
        local_hit(&cache.inner, spec);
        return First::Hit(value);
    }
    match tier.ticket() {
        Some(ticket) => First::Miss(Some((tier, ticket, local_key))),
        // The backplane is down: bypassed until it is (back) up.
        None => {
            if let Some(notifier) = &cache.inner.notifier {
                notifier.start();
            }
            First::Miss(None)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run<R, S, F, M>(
    cache: Option<Cache>,
    spec: &'static Spec,
    key: KeyPart,
    tags: &[String],
    (strategy, form): (S, LocalForm<R, S>),
    body: F,
    mode: M,
    span: tracing::Span,
) -> R
where
    S: Strategy<R>,
    F: Future<Output = R>,
    M: grace::Mode<R, S, F>,
{
    let Some(cache) = cache else {
        warn_no_cache(spec);
        span.record("outcome", "uncached");
        return body.await;
    };
    let scope = scope::current();
    let mut local = match first_local(&cache, spec, &key, scope, form, &strategy) {
        First::Hit(value) => {
            // A local hit never waits: it takes from the task's budget, so
            // that a loop of them still lets the task's neighbours run.
            tokio::task::consume_budget().await;
            span.record("outcome", "local hit");
            return value;
        }
        First::Miss(local) => local,
    };
    let codec = spec.options.codec;
    let call = match Call::new(&cache.inner, spec, key, tags) {
        Ok(call) => call,
        Err(error) => {
            Counters::add(&cache.inner.stats.errors);
            tracing::warn!(
                target: "cache_runtime",
                function = spec.path(),
                %error,
                "cannot derive the cache key; running uncached"
            );
            Counters::add(&cache.inner.stats.computations);
            span.record("outcome", "uncached");
            return body.await;
        }
    };
    if scope == Some(Scope::Bypass) {
        call.count(Stat::bypassed);
        span.record("outcome", "bypass");
        return body.await;
    }
    let mut step = call.lookup(local.is_some()).await;
    if scope == Some(Scope::Refresh) {
        step = Box::pin(call.refresh(step)).await;
    }
    loop {
        step = match step {
            Step::Serve(found) => match strategy.decode(codec, found.value()) {
                Ok(value) => {
                    call.served(&found);
                    if let Some((tier, ticket, local_key)) = local.take() {
                        call.keep_local(tier, ticket, local_key, form, &strategy, &value, &found);
                    }
                    span.record("outcome", found.outcome());
                    return value;
                }
                Err(error) => Box::pin(call.undecodable(found, &error)).await,
            },
            Step::Refresh { found, expired } => match strategy.decode(codec, found.value()) {
                Ok(value) => {
                    span.record("outcome", "grace or refresh");
                    let refresh =
                        mode.refresh(&cache, &call, found, expired, value, strategy, body);
                    return Box::pin(refresh).await;
                }
                Err(error) => Box::pin(call.undecodable(found, &error)).await,
            },
            // Only a refresh leaves; a call that gets here runs its body.
            Step::Left => Step::Compute(Fill::uncached(&call, None)),
            Step::Compute(fill) => {
                span.record("outcome", "computed");
                call.count(Stat::computations);
                let started = Instant::now();
                let result = body.await;
                let took = started.elapsed();
                call.function.body_took(took);
                let keep = fill_with(fill, &strategy, &result, took).await;
                if scope == Some(Scope::Refresh)
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
    result: &R,
    took: Duration,
) -> impl Future<Output = Keep> + 'f {
    let call = fill.call();
    let mut out = fill.start(took);
    let at = out.len();
    let keep = match strategy.encode(call.spec.options.codec, result, &mut out) {
        Ok(keep) => keep,
        Err(error) => {
            call.unencodable(&error);
            Keep::Nothing
        }
    };
    async move {
        // Boxed, like the miss: a hit's future carries none of it.
        Box::pin(fill.finish(out, at, keep)).await;
        keep
    }
}

/// Counts a local hit (a hit too).
fn local_hit(inner: &Inner, spec: &'static Spec) {
    let function = spec.counters(inner);
    for stat in [Stat::hits, Stat::local_hits] {
        Counters::add(inner.stats.get(stat));
        function.count(stat);
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
    Left,
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
pub(crate) struct OwnedKeys {
    pub entry: String,
    /// The function's version key, the call's, the namespace's, then the
    /// tags'.
    pub versions: Vec<String>,
}

/// The call's keys and settings, and whether the backend failed it.
pub(crate) struct Call<'c> {
    inner: &'c Inner,
    spec: &'static Spec,
    keys: KeysRef,
    part: CallPart,
    /// The rendered tags that interpolate arguments.
    tags: &'c [String],
    ttl: Duration,
    /// Set by the first backend failure of this call: the call then makes
    /// no further write, so it waits on a failing Redis at most once.
    failed: AtomicBool,
    owned: OnceLock<OwnedKeys>,
    /// A refresh: leave the key to whoever already computes it, rather
    /// than wait for them.
    leave: AtomicBool,
    /// The function's counters in this cache.
    function: CountersRef,
}

impl<'c> Call<'c> {
    fn new(
        inner: &'c Inner,
        spec: &'static Spec,
        key: KeyPart,
        tags: &'c [String],
    ) -> Result<Self, crate::canonical::EncodeError> {
        Ok(Self::with_part(inner, spec, key.into_call_part()?, tags))
    }

    fn with_part(
        inner: &'c Inner,
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
            owned: OnceLock::new(),
            leave: AtomicBool::new(false),
            function: spec.counters(inner),
        }
    }

    /// Counts one event of this call, in the cache's counters and the
    /// function's.
    fn count(&self, stat: Stat) {
        Counters::add(self.inner.stats.get(stat));
        self.function.count(stat);
    }

    fn leaves(&self) -> bool {
        self.leave.load(Ordering::Relaxed)
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
            i => KeyName::new(&[namespace, "#tag:", &self.tags[i - 2 - constant.len()]]),
        })
    }

    /// The keys as strings, made on the first need (a miss).
    fn owned(&self) -> &OwnedKeys {
        self.owned.get_or_init(|| OwnedKeys {
            entry: self.entry().to_string(),
            versions: self.version_names().map(|k| k.to_string()).collect(),
        })
    }

    /// Whether the snapshot's entry is current for this call.
    fn check(&self, snap: &Snapshot) -> Check {
        entry::check(snap.entry(), self.spec.options.codec, snap.versions())
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
    /// (with the versions it read).
    async fn refresh<'s>(&'s self, step: Step<'s>) -> Step<'s> {
        match step {
            Step::Serve(Found::Hit { snap, epoch, .. }) => {
                self.count(Stat::misses);
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
    fn lock_ttl(&self) -> Duration {
        self.spec
            .options
            .lock_ttl_ms
            .map_or(self.inner.lock_ttl, Duration::from_millis)
    }

    fn fail(&self, error: &Error, op: &'static str) {
        self.failed.store(true, Ordering::Relaxed);
        // The cache's counters are `record_error`'s.
        if matches!(error, Error::CircuitOpen) {
            self.function.count(Stat::skipped);
        } else {
            self.function.count(Stat::errors);
            if error.is_timeout() {
                self.function.count(Stat::timeouts);
            }
        }
        self.inner.record_error(error, op);
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Keeps a value the call's own read found current in the local tier,
    /// for as long as its Redis entry lives (and, with `grace` or
    /// `refresh_ahead`, as long as it is fresh, less the refresh window:
    /// the rest of those rules run on the Redis path).
    #[allow(clippy::too_many_arguments)]
    fn keep_local<R, S: Strategy<R>>(
        &self,
        tier: &LocalTier,
        ticket: Ticket,
        key: LocalKey,
        form: LocalForm<R, S>,
        strategy: &S,
        value: &R,
        found: &Found,
    ) {
        let Found::Hit { snap, .. } = found else {
            return;
        };
        let Some(mut life) = snap.ttl else {
            return;
        };
        let options = &self.spec.options;
        if options.records_freshness() {
            let Some(fresh) = entry::freshness(found.entry()) else {
                return;
            };
            let mut fresh_ms = fresh.until_ms.saturating_sub(entry::now_ms());
            if options.refresh_ahead {
                fresh_ms = fresh_ms.saturating_sub(grace::window(self.ttl, fresh.delta_ms));
            }
            life = life.min(Duration::from_millis(fresh_ms));
        }
        if life.is_zero() {
            return;
        }
        let names = self.version_names().map(|k| k.to_string());
        tier.keep(
            ticket,
            key,
            form,
            strategy,
            value,
            found.value(),
            names,
            ticket.at() + life,
        );
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
