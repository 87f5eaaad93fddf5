//! A batch call (`#[cached(batch = ids)]`): one entry per item of a
//! collection argument, read in one round trip, the body run once for the
//! items that were missing.
//!
//! Each item is a [`Call`] of its own, with the key and the tags a call of
//! the function with that one item in place of the collection has: the
//! same lookup check, flights, versions, lease and fill as any call. What
//! this module adds is the order:
//!
//! ```text
//! local tier, per item ──hit──▶ in the result
//!        │
//!        ▼
//! one read of every entry and its versions (one round trip) ──current──▶ in the result
//!        │ absent / stale / undecodable
//!        ▼
//! per item: join the in-process flight, create the versions, try the lease
//!        │ (all at once) until each item is either the batch's to compute,
//!        │ or waits for another caller or process (parked)
//!        ▼
//! run the body once with the items to compute ◀─ meanwhile, parked items wait
//!        ▼
//! store each computed item (an item the body left out: not stored, unless
//! `cache_none`), land its flight, release its lease; merge
//! ```
//!
//! The body runs at most once per call: an item whose wait ends without a
//! value (the caller or process computing it failed) after the body
//! started is left out of the result, as if the body had left it out.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::local::{self, LocalForm, LocalLookup};
use super::{Call, Fill, Found, Step};
use crate::codec::Codec;
use crate::engine::Inner;
use crate::entry::Check;
use crate::key::KeyPart;
use crate::outcome::{Keep, SomeOnly, Strategy};
use crate::scope::{self, Scope};
use crate::span;
use crate::spec::Spec;
use crate::stats::{Counters, Stat};

/// One item of a batch call: the item, the key of its entry and its
/// rendered tags (the batch argument standing for the item in both).
pub struct BatchItem<K> {
    item: K,
    key: KeyPart,
    tags: Vec<String>,
}

impl<K> BatchItem<K> {
    /// An item with its key and the tags that interpolate arguments.
    pub fn new<const N: usize>(item: K, key: KeyPart, tags: [String; N]) -> Self {
        BatchItem {
            item,
            key,
            tags: tags.into(),
        }
    }
}

/// A map a batch function returns: item to value.
#[diagnostic::on_unimplemented(
    message = "a `batch` function must return a map from item to value, not `{Self}`",
    note = "return a `HashMap<Item, Value>` or a `BTreeMap<Item, Value>` (in a `Result` or not)"
)]
pub trait BatchMap {
    /// The item.
    type Key;
    /// Its value.
    type Value;
    /// An empty map.
    fn empty() -> Self;
    /// The value of `key`, if any.
    fn value(&self, key: &Self::Key) -> Option<&Self::Value>;
    /// Adds a value.
    fn put(&mut self, key: Self::Key, value: Self::Value);
}

impl<K: Eq + Hash, V, S: BuildHasher + Default> BatchMap for HashMap<K, V, S> {
    type Key = K;
    type Value = V;
    fn empty() -> Self {
        HashMap::default()
    }
    fn value(&self, key: &K) -> Option<&V> {
        self.get(key)
    }
    fn put(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
}

impl<K: Ord, V> BatchMap for BTreeMap<K, V> {
    type Key = K;
    type Value = V;
    fn empty() -> Self {
        BTreeMap::new()
    }
    fn value(&self, key: &K) -> Option<&V> {
        self.get(key)
    }
    fn put(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
}

/// How a batch function's result holds its map: whole ([`BatchPlain`]), or
/// in the `Ok` of a `Result` ([`BatchOk`]; an `Err` stores nothing).
pub trait BatchShape<R> {
    /// The map.
    type Map: BatchMap;
    /// The error, if any.
    type Error;
    /// The map of a result, or its error.
    fn split(&self, result: R) -> Result<Self::Map, Self::Error>;
    /// The result of a map.
    fn join(&self, map: Self::Map) -> R;
    /// The result of an error.
    fn fail(&self, error: Self::Error) -> R;
    /// Whether an item the body leaves out is stored as absent.
    fn cache_none(&self) -> bool;
}

/// A batch function that returns its map.
#[derive(Debug, Clone, Copy)]
pub struct BatchPlain {
    /// Whether an item the body leaves out is stored as absent.
    pub cache_none: bool,
}

/// A batch function that returns `Result<map, E>`.
#[derive(Debug, Clone, Copy)]
pub struct BatchOk {
    /// Whether an item the body leaves out is stored as absent.
    pub cache_none: bool,
}

impl<M: BatchMap> BatchShape<M> for BatchPlain {
    type Map = M;
    type Error = std::convert::Infallible;
    fn split(&self, result: M) -> Result<M, Self::Error> {
        Ok(result)
    }
    fn join(&self, map: M) -> M {
        map
    }
    fn fail(&self, error: Self::Error) -> M {
        match error {}
    }
    fn cache_none(&self) -> bool {
        self.cache_none
    }
}

impl<M: BatchMap, E> BatchShape<Result<M, E>> for BatchOk {
    type Map = M;
    type Error = E;
    fn split(&self, result: Result<M, E>) -> Result<M, E> {
        result
    }
    fn join(&self, map: M) -> Result<M, E> {
        Ok(map)
    }
    fn fail(&self, error: E) -> Result<M, E> {
        Err(error)
    }
    fn cache_none(&self) -> bool {
        self.cache_none
    }
}

/// Runs one batch call in its span (its round trips counted into it).
pub(crate) fn execute<K, C, R, Sh, B, Fut>(
    inner: Option<Arc<Inner>>,
    spec: &'static Spec,
    items: Vec<BatchItem<K>>,
    shape: Sh,
    body: B,
) -> impl Future<Output = R>
where
    K: Clone,
    C: FromIterator<K>,
    Sh: BatchShape<R>,
    <Sh::Map as BatchMap>::Value: Serialize + DeserializeOwned,
    Sh::Map: BatchMap<Key = K>,
    B: FnOnce(C) -> Fut,
    Fut: Future<Output = R>,
{
    let span = span::call_span(spec.path());
    span::observed(span.clone(), run(inner, spec, items, shape, body, span))
}

/// Where an item stands.
enum Item<'c> {
    /// Its value (or its absence), found.
    Done,
    /// To run in the body without the cache (its key could not be made).
    Uncached,
    /// Being looked up.
    Pending(Box<Call<'c>>),
}

/// What an item's miss starts from.
enum Start {
    /// The versions the read found.
    Miss(Vec<Option<Vec<u8>>>, u64),
    /// The backend failed: without the cache.
    Offline,
}

async fn run<K, C, R, Sh, B, Fut>(
    inner: Option<Arc<Inner>>,
    spec: &'static Spec,
    items: Vec<BatchItem<K>>,
    shape: Sh,
    body: B,
    span: tracing::Span,
) -> R
where
    K: Clone,
    C: FromIterator<K>,
    Sh: BatchShape<R>,
    <Sh::Map as BatchMap>::Value: Serialize + DeserializeOwned,
    Sh::Map: BatchMap<Key = K>,
    B: FnOnce(C) -> Fut,
    Fut: Future<Output = R>,
{
    let Some(inner) = inner else {
        super::warn_no_cache(spec);
        span.record("outcome", "uncached");
        return body(items.into_iter().map(|i| i.item).collect()).await;
    };
    let scope = scope::current();
    if scope == Some(Scope::Bypass) {
        Counters::add(&inner.stats.bypassed);
        inner.counters(spec).count(Stat::bypassed);
        span.record("outcome", "bypass");
        return body(items.into_iter().map(|i| i.item).collect()).await;
    }
    let codec = spec.options.codec;
    let stored = SomeOnly {
        cache_none: shape.cache_none(),
    };
    let form = LocalForm::<Option<<Sh::Map as BatchMap>::Value>, SomeOnly>::bytes();

    // The same item twice is one item.
    let mut seen = std::collections::HashSet::new();
    let mut keys = Vec::with_capacity(items.len());
    let mut parts = Vec::with_capacity(items.len());
    let mut tags = Vec::with_capacity(items.len());
    for item in items {
        let id = match &item.key {
            KeyPart::Digest(d) => Some(d.to_vec()),
            KeyPart::Template(t) => Some([b"t:", t.as_bytes()].concat()),
            KeyPart::Failed(_) => None,
        };
        if id.is_some_and(|id| !seen.insert(id)) {
            continue;
        }
        keys.push(item.item);
        parts.push(item.key);
        tags.push(item.tags);
    }

    let mut state: Vec<Item<'_>> = Vec::with_capacity(keys.len());
    let mut values: Vec<Option<<Sh::Map as BatchMap>::Value>> = Vec::with_capacity(keys.len());
    let mut slots = Vec::with_capacity(keys.len());
    for (part, tags) in parts.into_iter().zip(&tags) {
        match local::lookup(&inner, spec, &part, scope.is_some(), form, &stored) {
            LocalLookup::Hit(value) => {
                values.push(value);
                state.push(Item::Done);
                slots.push(None);
                continue;
            }
            LocalLookup::Miss(slot) => slots.push(slot),
        }
        values.push(None);
        match Call::new(&inner, spec, part, tags) {
            Ok(call) => state.push(Item::Pending(Box::new(call))),
            Err(error) => {
                Counters::add(&inner.stats.errors);
                tracing::warn!(
                    target: "cache_runtime",
                    function = spec.path(),
                    %error,
                    "cannot derive the cache key of an item; running it uncached"
                );
                state.push(Item::Uncached);
            }
        }
    }

    // One read of every entry that is not local.
    let epoch = inner.flights.epoch();
    let pending: Vec<usize> = (0..state.len())
        .filter(|&i| matches!(state[i], Item::Pending(_)))
        .collect();
    let reads: Vec<_> = pending
        .iter()
        .filter_map(|&i| match &state[i] {
            Item::Pending(call) => Some((call.entry(), call.version_names().collect())),
            _ => None,
        })
        .collect();
    let with_ttl = slots.iter().any(Option::is_some);
    let read = if reads.is_empty() {
        Ok(Vec::new())
    } else {
        inner.backend.read_many(&reads, with_ttl).await
    };
    drop(reads);
    let mut starts: Vec<(usize, Start)> = Vec::new();
    match read {
        Ok(snaps) => {
            for (&i, mut snap) in pending.iter().zip(snaps) {
                let Item::Pending(call) = &state[i] else {
                    continue;
                };
                let mut recompute = scope == Some(Scope::Recompute);
                match call.check(&mut snap) {
                    Check::Current(_) if recompute => {}
                    Check::Current(at) => {
                        let found = Found::Hit { snap, at, epoch };
                        match stored.decode(codec, found.value()) {
                            Ok(value) => {
                                call.served(&found);
                                if let Some(slot) = slots[i].take() {
                                    call.keep_local(slot, form, &stored, &value, &found);
                                }
                                values[i] = value;
                                state[i] = Item::Done;
                                continue;
                            }
                            Err(error) => {
                                call.count(Stat::decode_errors);
                                tracing::warn!(
                                    target: "cache_runtime",
                                    key = %call.entry(),
                                    %error,
                                    "stored value does not decode; recomputing"
                                );
                                let Found::Hit { snap, .. } = found else {
                                    unreachable!("made above")
                                };
                                call.count(Stat::misses);
                                starts.push((i, Start::Miss(snap.into_versions(), epoch)));
                                continue;
                            }
                        }
                    }
                    Check::Absent | Check::OtherCodec => recompute = false,
                    Check::Stale => {
                        recompute = false;
                        call.count(Stat::stale);
                    }
                    Check::Corrupt => {
                        recompute = false;
                        call.count(Stat::decode_errors);
                    }
                }
                if recompute {
                    call.recomputing.store(true, Ordering::Relaxed);
                }
                call.count(Stat::misses);
                starts.push((i, Start::Miss(snap.into_versions(), epoch)));
            }
        }
        Err(error) => {
            // One failure, counted and logged once; every item goes on
            // without the cache.
            let mut first = true;
            for &i in &pending {
                if let Item::Pending(call) = &state[i] {
                    if first {
                        call.fail(&error, "read");
                        first = false;
                    } else {
                        call.failed.store(true, Ordering::Relaxed);
                    }
                    starts.push((i, Start::Offline));
                }
            }
        }
    }

    // Each miss, at once, until every item is the batch's to compute or
    // waits for another caller or process.
    let calls: Vec<Option<&Call<'_>>> = state
        .iter()
        .map(|s| match s {
            Item::Pending(call) => Some(&**call),
            _ => None,
        })
        .collect();
    let mut misses = FuturesUnordered::new();
    let mut outstanding = vec![false; state.len()];
    for (i, start) in starts {
        let Some(call) = calls[i] else { continue };
        outstanding[i] = true;
        misses.push(resolve(i, call, start));
    }
    let mut steps: Vec<(usize, Step<'_>)> = Vec::new();
    let mut computing = 0usize;
    std::future::poll_fn(|cx| {
        loop {
            match misses.poll_next_unpin(cx) {
                Poll::Ready(Some((i, step))) => {
                    outstanding[i] = false;
                    if wants_body(&step) {
                        computing += 1;
                    }
                    steps.push((i, step));
                }
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => {
                    let all_parked = outstanding.iter().enumerate().all(|(i, &out)| {
                        !out || calls[i].is_some_and(|c| c.parked.load(Ordering::Relaxed))
                    });
                    let uncached = state.iter().any(|s| matches!(s, Item::Uncached));
                    return if all_parked && (computing > 0 || uncached) {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    };
                }
            }
        }
    })
    .await;

    // Values found, and the fills of the items to compute.
    let mut done: Vec<(usize, Option<<Sh::Map as BatchMap>::Value>)> = Vec::new();
    let mut fills: Vec<(usize, Fill<'_>)> = Vec::new();
    for (i, step) in steps {
        take_step(i, step, calls[i], codec, &stored, &mut done, &mut fills);
    }
    let mut to_compute: Vec<usize> = fills.iter().map(|(i, _)| *i).collect();
    to_compute.extend((0..state.len()).filter(|&i| matches!(state[i], Item::Uncached)));

    // The body, once, with the items to compute; meanwhile the others wait.
    let mut result_map = <Sh::Map as BatchMap>::empty();
    let mut error = None;
    let mut late: Vec<(usize, Step<'_>)> = Vec::new();
    if to_compute.is_empty() {
        while let Some(step) = misses.next().await {
            late.push(step);
        }
    } else {
        span.record("outcome", "computed");
        for (_, fill) in &fills {
            fill.call().count(Stat::computations);
        }
        let input: C = to_compute.iter().map(|&i| keys[i].clone()).collect();
        let started = Instant::now();
        // The waits go on while the body runs, and after it: this call's
        // fills land first, for a concurrent call may wait on them while
        // this one waits on its (each computes what the other waits for).
        let mut waits = std::pin::pin!(async {
            while let Some(step) = misses.next().await {
                late.push(step);
            }
        });
        let mut waited = false;
        let mut running = std::pin::pin!(body(input));
        let result = std::future::poll_fn(|cx| {
            if !waited && waits.as_mut().poll(cx).is_ready() {
                waited = true;
            }
            running.as_mut().poll(cx)
        })
        .await;
        let took = started.elapsed();
        match shape.split(result) {
            Ok(map) => {
                let stores = fills.into_iter().map(|(i, mut fill)| {
                    let call = fill.call();
                    call.function.body_took(took);
                    let mut out = fill.start(took);
                    let at = out.len();
                    let keep = match encode(codec, map.value(&keys[i]), stored.cache_none, &mut out)
                    {
                        Ok(keep) => keep,
                        Err(error) => {
                            call.unencodable(&error);
                            Keep::Nothing
                        }
                    };
                    fill.finish(out, at, keep, None)
                });
                futures_util::future::join_all(stores).await;
                result_map = map;
            }
            Err(e) => {
                let ends = fills
                    .into_iter()
                    .map(|(_, fill)| fill.finish(Vec::new(), 0, Keep::Nothing, None));
                futures_util::future::join_all(ends).await;
                error = Some(e);
            }
        }
        if !waited {
            waits.await;
        }
    }
    if let Some(error) = error {
        return shape.fail(error);
    }
    // What the waits brought; an item whose wait ends without a value
    // after the body ran is left out.
    let mut abandoned = Vec::new();
    for (i, step) in late {
        take_step(i, step, calls[i], codec, &stored, &mut done, &mut abandoned);
    }
    drop(abandoned);
    for (i, value) in done {
        values[i] = value;
    }
    if to_compute.is_empty() {
        span.record("outcome", "hit");
    }
    for (key, value) in keys.into_iter().zip(values) {
        if let Some(value) = value {
            result_map.put(key, value);
        }
    }
    shape.join(result_map)
}

/// Whether a step makes the item the batch's to compute.
fn wants_body(step: &Step<'_>) -> bool {
    matches!(
        step,
        Step::Compute(_) | Step::Failed(_) | Step::RefreshedElsewhere
    )
}

/// Files a step: a value found (decoded), or a fill for the body.
fn take_step<'c, V: DeserializeOwned + Serialize>(
    i: usize,
    step: Step<'c>,
    call: Option<&'c Call<'c>>,
    codec: Codec,
    stored: &SomeOnly,
    done: &mut Vec<(usize, Option<V>)>,
    fills: &mut Vec<(usize, Fill<'c>)>,
) {
    let Some(call) = call else { return };
    match step {
        Step::Serve(found) | Step::Refresh { found, .. } => {
            match stored.decode(codec, found.value()) {
                Ok(value) => {
                    call.served(&found);
                    done.push((i, value));
                }
                Err(error) => {
                    call.count(Stat::decode_errors);
                    tracing::warn!(
                        target: "cache_runtime",
                        key = %call.entry(),
                        %error,
                        "stored value does not decode; recomputing"
                    );
                    fills.push((i, Fill::uncached(call, None)));
                }
            }
        }
        Step::Compute(fill) => fills.push((i, fill)),
        Step::Failed(_) | Step::RefreshedElsewhere => fills.push((i, Fill::uncached(call, None))),
    }
}

/// An item's value as its entry stores it: as an `Option` (`[v]` or `[]`),
/// the form of a function returning `Option<V>`; an absent one kept only
/// with `cache_none`.
fn encode<V: Serialize>(
    codec: Codec,
    value: Option<&V>,
    cache_none: bool,
    out: &mut Vec<u8>,
) -> Result<Keep, crate::codec::CodecError> {
    match value {
        Some(value) => codec.encode_into(&[value], out).map(|()| Keep::Store),
        None => {
            codec.encode_into(&[(); 0], out)?;
            Ok(if cache_none { Keep::Store } else { Keep::Share })
        }
    }
}

/// One item's miss, from where its read left it.
async fn resolve<'c>(i: usize, call: &'c Call<'c>, start: Start) -> (usize, Step<'c>) {
    let step = match start {
        Start::Miss(versions, epoch) => call.miss(versions, epoch).await,
        Start::Offline => call.offline().await,
    };
    (i, step)
}
