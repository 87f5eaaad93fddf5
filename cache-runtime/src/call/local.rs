//! Where a call consults the local tier ([`crate::local`]): before
//! anything else, for a value it may serve with no Redis command; and after
//! a Redis hit, to keep the value read. Also the forms a function's values
//! are kept in, which the macro picks ([`LocalForm`], [`LocalProbe`]).

use std::any::Any;
use std::marker::PhantomData;

use super::{Call, Found};
use crate::codec::Codec;
use crate::engine::Inner;
use crate::key::KeyPart;
use crate::local::{AnyValue, LocalTier, Ticket, Value};
use crate::outcome::Strategy;
use crate::singleflight::Shared;
use crate::spec::Spec;
use crate::stats::{Counters, Stat};

/// What the local tier made of a call.
pub(super) enum LocalLookup<'c, R> {
    /// Its value, served.
    Hit(R),
    /// Nothing; with the place where what Redis returns may be kept.
    Miss(Option<LocalSlot<'c>>),
}

/// Where a value read from Redis may be kept: the tier, the ticket taken
/// before the read, and the call's key.
pub(super) struct LocalSlot<'c> {
    tier: &'c LocalTier,
    ticket: Ticket,
    key: LocalKey,
}

/// The local tier's answer to a call, if the cache has one and the call
/// may use it (`in_scope`: not in a `bypass` or `refresh` scope; not
/// `local = false`).
pub(super) fn lookup<'c, R, S: Strategy<R>>(
    inner: &'c Inner,
    spec: &'static Spec,
    key: &KeyPart,
    in_scope: bool,
    form: LocalForm<R, S>,
    strategy: &S,
) -> LocalLookup<'c, R> {
    let Some(tier) = inner.local.as_deref() else {
        return LocalLookup::Miss(None);
    };
    if !spec.options.local || in_scope {
        return LocalLookup::Miss(None);
    }
    let Some(key) = key_of(spec, key) else {
        return LocalLookup::Miss(None);
    };
    if let Some(entry) = tier.get(key.bytes())
        && let Some(value) = form.take(entry.value(), strategy, spec.options.codec)
    {
        count_hit(inner, spec);
        return LocalLookup::Hit(value);
    }
    match tier.ticket() {
        Some(ticket) => LocalLookup::Miss(Some(LocalSlot { tier, ticket, key })),
        // The backplane is down: bypassed until it is (back) up.
        None => {
            if let Some(backplane) = &inner.backplane {
                backplane.start();
            }
            LocalLookup::Miss(None)
        }
    }
}

/// Counts a local hit (a hit too).
fn count_hit(inner: &Inner, spec: &'static Spec) {
    let function = inner.counters(spec);
    for stat in [Stat::hits, Stat::local_hits] {
        Counters::add(inner.stats.get(stat));
        function.count(stat);
    }
}

impl Call<'_> {
    /// Keeps a value the call's own read found current in the local tier,
    /// for as long as its Redis entry lives (and, with `grace` or
    /// `refresh_ahead`, as long as it is fresh, less the refresh window:
    /// the rest of those rules run on the Redis path).
    pub(super) fn keep_local<R, S: Strategy<R>>(
        &self,
        slot: LocalSlot<'_>,
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
            let Some((mut fresh_ms, delta_ms)) = self.fresh_for(found) else {
                return;
            };
            if options.refresh_ahead {
                fresh_ms = fresh_ms.saturating_sub(super::grace::window(self.ttl, delta_ms));
            }
            life = life.min(std::time::Duration::from_millis(fresh_ms));
        }
        if life.is_zero() {
            return;
        }
        let Some(kept) = form.keep(strategy, value, found.value()) else {
            return;
        };
        // With `tags_from`, the entry's value tags too: an invalidation
        // naming one of them drops the local value.
        let namespace = &self.inner.namespace;
        let value_tags = match self.spec.options.tags_from {
            true => crate::entry::value_tags(found.entry()),
            false => Vec::new(),
        };
        let names = self.version_names().map(|k| k.to_string()).chain(
            value_tags
                .into_iter()
                .map(|tag| crate::schema::tag_key(namespace, &tag)),
        );
        // A decoded value weighs what its encoding does: its heap size is
        // not known, and the encoding is a fair measure of it.
        let mut until = slot.ticket.at() + life;
        // Read with held versions: no longer than they are held.
        if let Some(held) = snap.held_until {
            until = until.min(held);
        }
        if !slot.tier.insert(
            slot.ticket,
            slot.key.into_boxed(),
            kept,
            found.value().len(),
            names,
            until,
        ) {
            tracing::trace!(
                target: "cache_runtime",
                key = %self.entry(),
                "not kept locally: an invalidation came while it was read"
            );
        }
    }
}

/// The key of a call in the local tier: the function, then the argument
/// digest or the rendered template. Unlike in Redis, functions that render
/// the same template keep apart: each checks its value against its own
/// versions.
fn key_of(spec: &'static Spec, key: &KeyPart) -> Option<LocalKey> {
    let function = (std::ptr::from_ref(spec) as usize as u64).to_le_bytes();
    match key {
        KeyPart::Digest(digest) => {
            let mut bytes = [0u8; 24];
            bytes[..8].copy_from_slice(&function);
            bytes[8..].copy_from_slice(digest);
            Some(LocalKey::Digest(bytes))
        }
        KeyPart::Template(t) => {
            let mut bytes = Vec::with_capacity(t.len() + 9);
            bytes.extend_from_slice(&function);
            bytes.push(b':');
            bytes.extend_from_slice(t.as_bytes());
            Some(LocalKey::Template(bytes))
        }
        KeyPart::Failed(_) => None,
    }
}

/// A call's key in the local tier, made without allocating for a digest.
enum LocalKey {
    Digest([u8; 24]),
    Template(Vec<u8>),
}

impl LocalKey {
    fn bytes(&self) -> &[u8] {
        match self {
            LocalKey::Digest(b) => b,
            LocalKey::Template(b) => b,
        }
    }

    fn into_boxed(self) -> Box<[u8]> {
        match self {
            LocalKey::Digest(b) => Box::from(&b[..]),
            LocalKey::Template(b) => b.into_boxed_slice(),
        }
    }
}

/// How a function's values are kept in process, chosen by the macro from
/// its types: in the local tier decoded when the stored type is `Clone` (a
/// hit clones it), as bytes otherwise (a hit decodes them); and, when the
/// whole result is `Clone`, a result that is not stored (an `Err`) is
/// shared with the callers waiting for it in this process.
pub struct LocalForm<R, S> {
    decoded: Option<Decoded<R, S>>,
    shared: Option<Sharing<R>>,
}

/// How a result is handed to waiting callers.
struct Sharing<R> {
    share: fn(&R) -> Shared,
    take: fn(&Shared) -> Option<R>,
}

impl<R> Clone for Sharing<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Sharing<R> {}

struct Decoded<R, S> {
    keep: fn(&S, &R) -> Option<AnyValue>,
    take: fn(&S, &(dyn Any + Send + Sync)) -> Option<R>,
}

impl<R, S> Clone for LocalForm<R, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R, S> Copy for LocalForm<R, S> {}

impl<R, S> Clone for Decoded<R, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R, S> Copy for Decoded<R, S> {}

impl<R, S> std::fmt::Debug for LocalForm<R, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.decoded.is_some() {
            "LocalForm::Decoded"
        } else {
            "LocalForm::Bytes"
        })
    }
}

impl<R, S> LocalForm<R, S> {
    /// Values kept as their stored bytes.
    pub const fn bytes() -> Self {
        LocalForm {
            decoded: None,
            shared: None,
        }
    }

    /// A result that is not stored, for the callers waiting for it, when
    /// it can be cloned.
    pub(super) fn share(self, result: &R) -> Option<Shared> {
        self.shared.map(|s| (s.share)(result))
    }

    /// A waiting caller's copy of a shared result.
    pub(super) fn take_shared(self, shared: &Shared) -> Option<R> {
        self.shared.and_then(|s| (s.take)(shared))
    }
}

impl<R, S: Strategy<R>> LocalForm<R, S> {
    /// The call's result from a local value, if it is in this form and
    /// reads back.
    fn take(self, value: &Value, strategy: &S, codec: Codec) -> Option<R> {
        match (value, self.decoded) {
            (Value::Decoded(any), Some(decoded)) => (decoded.take)(strategy, any.as_ref()),
            (Value::Bytes(bytes), None) => strategy.decode(codec, bytes).ok(),
            _ => None,
        }
    }

    /// The local value of a result (whose stored bytes are `bytes`).
    fn keep(self, strategy: &S, result: &R, bytes: &[u8]) -> Option<Value> {
        match self.decoded {
            Some(decoded) => (decoded.keep)(strategy, result).map(Value::Decoded),
            None => Some(Value::Bytes(bytes.into())),
        }
    }
}

impl<R, S> LocalForm<R, S>
where
    S: Strategy<R>,
    S::Stored: Clone + Send + Sync + 'static,
{
    /// Values kept decoded.
    pub const fn decoded() -> Self {
        LocalForm {
            decoded: Some(Decoded {
                keep: |strategy, result| {
                    let stored = strategy.stored(result)?;
                    Some(Box::new(stored.clone()))
                },
                take: |strategy, any| {
                    let stored = any.downcast_ref::<S::Stored>()?;
                    Some(strategy.result_of(stored.clone()))
                },
            }),
            shared: None,
        }
    }
}

impl<R, S> LocalForm<R, S>
where
    R: Clone + Send + Sync + 'static,
    S: Strategy<R>,
    S::Stored: Clone + Send + Sync + 'static,
{
    /// Values kept decoded, and a result that is not stored shared with
    /// the callers waiting for it.
    pub const fn decoded_and_shared() -> Self {
        LocalForm {
            decoded: Self::decoded().decoded,
            shared: Some(Sharing {
                share: |result| Shared(std::sync::Arc::new(result.clone())),
                take: |shared| shared.0.downcast_ref::<R>().cloned(),
            }),
        }
    }
}

/// Picks the [`LocalForm`] of a function at its expansion (autoref
/// specialization): `(&&&LocalProbe::<R, S>::NEW).local_form()` is
/// `decoded_and_shared` when the result and the stored type are `Clone +
/// Send + Sync + 'static`, `decoded` when the stored type is, `bytes`
/// otherwise.
pub struct LocalProbe<R, S>(PhantomData<fn() -> (R, S)>);

impl<R, S> LocalProbe<R, S> {
    /// The probe.
    pub const NEW: Self = LocalProbe(PhantomData);
}

/// The choice for a `Clone` result.
pub trait ViaCloneResult<R, S> {
    /// The form.
    fn local_form(&self) -> LocalForm<R, S>;
}

impl<R, S> ViaCloneResult<R, S> for &&LocalProbe<R, S>
where
    R: Clone + Send + Sync + 'static,
    S: Strategy<R>,
    S::Stored: Clone + Send + Sync + 'static,
{
    fn local_form(&self) -> LocalForm<R, S> {
        LocalForm::decoded_and_shared()
    }
}

/// The choice for a `Clone` stored type.
pub trait ViaClone<R, S> {
    /// The form.
    fn local_form(&self) -> LocalForm<R, S>;
}

impl<R, S> ViaClone<R, S> for &LocalProbe<R, S>
where
    S: Strategy<R>,
    S::Stored: Clone + Send + Sync + 'static,
{
    fn local_form(&self) -> LocalForm<R, S> {
        LocalForm::decoded()
    }
}

/// The choice for any other.
pub trait ViaBytes<R, S> {
    /// The form.
    fn local_form(&self) -> LocalForm<R, S>;
}

impl<R, S> ViaBytes<R, S> for LocalProbe<R, S> {
    fn local_form(&self) -> LocalForm<R, S> {
        LocalForm::bytes()
    }
}
