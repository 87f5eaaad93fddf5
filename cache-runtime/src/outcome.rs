//! What part of a function's result is cached, chosen by the macro from the
//! return type: the whole value, the `Ok` of a `Result`, or the `Some` of an
//! `Option` (and `None` with `cache_none = true`).

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Codec, CodecError};

/// What becomes of a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Stored, and handed to the callers waiting for it.
    Store,
    /// Handed to the callers waiting for it in this process, not stored
    /// (`None` without `cache_none`): each of them would get it anyway.
    Share,
    /// Neither (`Err`): each waiting caller runs the body for itself.
    Nothing,
}

/// How a result is stored and read back.
#[diagnostic::on_unimplemented(
    message = "`#[cached]` cannot cache a `{R}` as it reads the return type",
    note = "a return type named `Result` or `...Result<..>` is taken for an alias of `std::result::Result` (only `Ok` is cached), and one named `Option` for `std::option::Option`",
    note = "if it is another type, give it another name at the function (a `type` alias) so that it is cached whole"
)]
pub trait Strategy<R> {
    /// The part of a result that is stored: `T` of a `Result<T, E>`, the
    /// whole value otherwise.
    type Stored;
    /// Appends the stored form of `result` to `out` (unless it is kept
    /// `Keep::Nothing`), and says what becomes of it.
    fn encode(&self, codec: Codec, result: &R, out: &mut Vec<u8>) -> Result<Keep, CodecError>;
    /// A result read back from the cache.
    fn decode(&self, codec: Codec, bytes: &[u8]) -> Result<R, CodecError>;
    /// The part of `result` that is stored, if it is stored (what
    /// [`encode`](Self::encode) keeps with `Keep::Store`).
    fn stored<'r>(&self, result: &'r R) -> Option<&'r Self::Stored>;
    /// The result of a stored part.
    fn result_of(&self, stored: Self::Stored) -> R;
    /// The TTL `result` chose for its entry (`ttl_from`), if any.
    fn ttl(&self, _result: &R) -> Option<Duration> {
        None
    }
    /// The tags `result` gives its entry (`tags_from`); none for a result
    /// that is not stored.
    fn tags(&self, _result: &R) -> Vec<String> {
        Vec::new()
    }
}

/// The value that `ttl_from` and `unless` look at, for each strategy: the
/// whole value, the `Ok` of a `Result`, the `Some` of an `Option` (a `None`
/// or an `Err` is never given to them).
pub trait Decidable<R>: Strategy<R> {
    /// The value type the decisions take by reference.
    type Value;
    /// The value of `result`, if it has one.
    fn value<'r>(&self, result: &'r R) -> Option<&'r Self::Value>;
}

impl<T: Serialize + DeserializeOwned> Decidable<T> for Plain {
    type Value = T;
    fn value<'r>(&self, result: &'r T) -> Option<&'r T> {
        Some(result)
    }
}

impl<T: Serialize + DeserializeOwned, E> Decidable<Result<T, E>> for OkOnly {
    type Value = T;
    fn value<'r>(&self, result: &'r Result<T, E>) -> Option<&'r T> {
        result.as_ref().ok()
    }
}

impl<T: Serialize + DeserializeOwned> Decidable<Option<T>> for SomeOnly {
    type Value = T;
    fn value<'r>(&self, result: &'r Option<T>) -> Option<&'r T> {
        result.as_ref()
    }
}

impl<T: Serialize + DeserializeOwned, E> Decidable<Result<Option<T>, E>> for OkSome {
    type Value = T;
    fn value<'r>(&self, result: &'r Result<Option<T>, E>) -> Option<&'r T> {
        result.as_ref().ok().and_then(Option::as_ref)
    }
}

/// A strategy with decisions taken from the value (`ttl_from`, `unless`).
pub struct Decide<S, T> {
    strategy: S,
    ttl_from: Option<fn(&T) -> Option<Duration>>,
    unless: Option<fn(&T) -> bool>,
    tags_from: Option<fn(&T) -> Vec<String>>,
}

impl<S: Clone, T> Clone for Decide<S, T> {
    fn clone(&self) -> Self {
        Decide {
            strategy: self.strategy.clone(),
            ttl_from: self.ttl_from,
            unless: self.unless,
            tags_from: self.tags_from,
        }
    }
}

impl<S: Copy, T> Copy for Decide<S, T> {}

impl<S, T> Decide<S, T> {
    /// `strategy` with no decision yet.
    pub const fn new(strategy: S) -> Self {
        Decide {
            strategy,
            ttl_from: None,
            unless: None,
            tags_from: None,
        }
    }

    /// `ttl_from = path`.
    pub const fn ttl_from(mut self, ttl_from: fn(&T) -> Option<Duration>) -> Self {
        self.ttl_from = Some(ttl_from);
        self
    }

    /// `unless = path`.
    pub const fn unless(mut self, unless: fn(&T) -> bool) -> Self {
        self.unless = Some(unless);
        self
    }

    /// `tags_from = path`.
    pub const fn tags_from(mut self, tags_from: fn(&T) -> Vec<String>) -> Self {
        self.tags_from = Some(tags_from);
        self
    }
}

impl<R, S: Decidable<R>> Strategy<R> for Decide<S, S::Value> {
    type Stored = S::Stored;
    fn encode(&self, codec: Codec, result: &R, out: &mut Vec<u8>) -> Result<Keep, CodecError> {
        let keep = self.strategy.encode(codec, result, out)?;
        // A value `unless` accepts is still encoded: the callers waiting
        // for it in this process get it.
        let unless = |value| self.unless.is_some_and(|unless| unless(value));
        Ok(match keep {
            Keep::Store if self.strategy.value(result).is_some_and(unless) => Keep::Share,
            keep => keep,
        })
    }
    fn decode(&self, codec: Codec, bytes: &[u8]) -> Result<R, CodecError> {
        self.strategy.decode(codec, bytes)
    }
    fn stored<'r>(&self, result: &'r R) -> Option<&'r Self::Stored> {
        self.strategy.stored(result)
    }
    fn result_of(&self, stored: Self::Stored) -> R {
        self.strategy.result_of(stored)
    }
    fn ttl(&self, result: &R) -> Option<Duration> {
        let ttl_from = self.ttl_from?;
        self.strategy.value(result).and_then(ttl_from)
    }
    fn tags(&self, result: &R) -> Vec<String> {
        match (self.tags_from, self.strategy.value(result)) {
            (Some(tags_from), Some(value)) => tags_from(value),
            _ => Vec::new(),
        }
    }
}

/// Caches every value.
#[derive(Debug, Clone, Copy)]
pub struct Plain;

impl<T: Serialize + DeserializeOwned> Strategy<T> for Plain {
    type Stored = T;
    fn encode(&self, codec: Codec, result: &T, out: &mut Vec<u8>) -> Result<Keep, CodecError> {
        codec.encode_into(result, out).map(|()| Keep::Store)
    }
    fn decode(&self, codec: Codec, bytes: &[u8]) -> Result<T, CodecError> {
        codec.decode(bytes)
    }
    fn stored<'r>(&self, result: &'r T) -> Option<&'r T> {
        Some(result)
    }
    fn result_of(&self, stored: T) -> T {
        stored
    }
}

/// Caches `Ok` values only; `Err` is never cached and `E` needs no serde.
#[derive(Debug, Clone, Copy)]
pub struct OkOnly;

impl<T: Serialize + DeserializeOwned, E> Strategy<Result<T, E>> for OkOnly {
    type Stored = T;
    fn encode(
        &self,
        codec: Codec,
        result: &Result<T, E>,
        out: &mut Vec<u8>,
    ) -> Result<Keep, CodecError> {
        match result {
            Ok(value) => codec.encode_into(value, out).map(|()| Keep::Store),
            Err(_) => Ok(Keep::Nothing),
        }
    }
    fn decode(&self, codec: Codec, bytes: &[u8]) -> Result<Result<T, E>, CodecError> {
        codec.decode(bytes).map(Ok)
    }
    fn stored<'r>(&self, result: &'r Result<T, E>) -> Option<&'r T> {
        result.as_ref().ok()
    }
    fn result_of(&self, stored: T) -> Result<T, E> {
        Ok(stored)
    }
}

/// Caches `Some` values, and `None` too when `cache_none` is set.
///
/// An `Option` is stored as a sequence of zero or one value (`[x]`, `[]`),
/// so that `Some(x)` whose JSON is `null` (`Some(())`, `Some(None)`) never
/// reads back as `None`.
#[derive(Debug, Clone, Copy)]
pub struct SomeOnly {
    /// Whether `None` is cached.
    pub cache_none: bool,
}

impl<T: Serialize + DeserializeOwned> Strategy<Option<T>> for SomeOnly {
    type Stored = Option<T>;
    fn encode(
        &self,
        codec: Codec,
        result: &Option<T>,
        out: &mut Vec<u8>,
    ) -> Result<Keep, CodecError> {
        match result {
            Some(value) => codec.encode_into(&[value], out).map(|()| Keep::Store),
            None => {
                codec.encode_into(&[(); 0], out)?;
                Ok(if self.cache_none {
                    Keep::Store
                } else {
                    Keep::Share
                })
            }
        }
    }
    fn decode(&self, codec: Codec, bytes: &[u8]) -> Result<Option<T>, CodecError> {
        let mut values: Vec<T> = codec.decode(bytes)?;
        match values.len() {
            0 | 1 => Ok(values.pop()),
            n => Err(CodecError::Json(serde::de::Error::invalid_length(
                n,
                &"zero or one value",
            ))),
        }
    }
    fn stored<'r>(&self, result: &'r Option<T>) -> Option<&'r Option<T>> {
        (result.is_some() || self.cache_none).then_some(result)
    }
    fn result_of(&self, stored: Option<T>) -> Option<T> {
        stored
    }
}

/// Caches `Ok(Some(_))`, and `Ok(None)` too when `cache_none` is set;
/// `Err` is never cached.
#[derive(Debug, Clone, Copy)]
pub struct OkSome {
    /// Whether `Ok(None)` is cached.
    pub cache_none: bool,
}

impl<T: Serialize + DeserializeOwned, E> Strategy<Result<Option<T>, E>> for OkSome {
    type Stored = Option<T>;
    fn encode(
        &self,
        codec: Codec,
        result: &Result<Option<T>, E>,
        out: &mut Vec<u8>,
    ) -> Result<Keep, CodecError> {
        match result {
            Ok(value) => SomeOnly {
                cache_none: self.cache_none,
            }
            .encode(codec, value, out),
            Err(_) => Ok(Keep::Nothing),
        }
    }
    fn decode(&self, codec: Codec, bytes: &[u8]) -> Result<Result<Option<T>, E>, CodecError> {
        SomeOnly {
            cache_none: self.cache_none,
        }
        .decode(codec, bytes)
        .map(Ok)
    }
    fn stored<'r>(&self, result: &'r Result<Option<T>, E>) -> Option<&'r Option<T>> {
        result
            .as_ref()
            .ok()
            .filter(|value| value.is_some() || self.cache_none)
    }
    fn result_of(&self, stored: Option<T>) -> Result<Option<T>, E> {
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODECS: [Codec; 2] = [Codec::Json, Codec::MsgPack];

    /// The stored form, when the result is stored.
    fn enc<R, S: Strategy<R>>(s: &S, codec: Codec, r: &R) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        (s.encode(codec, r, &mut out).unwrap() == Keep::Store).then_some(out)
    }

    #[test]
    fn none_is_shared_though_not_stored_and_err_is_neither() {
        for c in CODECS {
            let mut out = Vec::new();
            let s = SomeOnly { cache_none: false };
            assert_eq!(s.encode(c, &None::<u8>, &mut out).unwrap(), Keep::Share);
            assert_eq!(s.decode(c, &out).unwrap(), None::<u8>);
            let mut out = Vec::new();
            let ok = OkSome { cache_none: false };
            assert_eq!(
                ok.encode(c, &Ok::<Option<u8>, ()>(None), &mut out).unwrap(),
                Keep::Share
            );
            assert_eq!(ok.decode(c, &out).unwrap(), Ok::<Option<u8>, ()>(None));
            let mut out = Vec::new();
            assert_eq!(
                ok.encode(c, &Err::<Option<u8>, ()>(()), &mut out).unwrap(),
                Keep::Nothing
            );
            assert_eq!(
                OkOnly.encode(c, &Err::<u8, ()>(()), &mut out).unwrap(),
                Keep::Nothing
            );
            assert!(out.is_empty());
        }
    }

    #[test]
    fn err_and_none_are_not_cached_by_default() {
        for c in CODECS {
            assert!(enc(&OkOnly, c, &Err::<u8, ()>(())).is_none());
            assert!(enc(&SomeOnly { cache_none: false }, c, &None::<u8>).is_none());
            let none = enc(&SomeOnly { cache_none: true }, c, &None::<u8>).unwrap();
            assert_eq!(
                SomeOnly { cache_none: true }.decode(c, &none).unwrap(),
                None::<u8>
            );
        }
    }

    #[test]
    fn ok_none_is_cached_only_when_asked() {
        for c in CODECS {
            let ok_none: Result<Option<u8>, ()> = Ok(None);
            assert!(enc(&OkSome { cache_none: false }, c, &ok_none).is_none());
            assert!(enc(&OkSome { cache_none: false }, c, &Err::<Option<u8>, ()>(())).is_none());
            let bytes = enc(&OkSome { cache_none: true }, c, &ok_none).unwrap();
            let back: Result<Option<u8>, ()> =
                OkSome { cache_none: true }.decode(c, &bytes).unwrap();
            assert_eq!(back, Ok(None));
            let bytes = enc(&OkSome { cache_none: false }, c, &Ok::<_, ()>(Some(7u8))).unwrap();
            let back: Result<Option<u8>, ()> =
                OkSome { cache_none: false }.decode(c, &bytes).unwrap();
            assert_eq!(back, Ok(Some(7)));
        }
    }

    #[test]
    fn some_of_null_is_not_none() {
        for c in CODECS {
            let s = SomeOnly { cache_none: true };
            for value in [Some(Some(1u8)), Some(None), None] {
                let bytes = enc(&s, c, &value).unwrap();
                assert_eq!(s.decode(c, &bytes).unwrap(), value, "{bytes:?}");
            }
            let bytes = enc(&s, c, &Some(())).unwrap();
            assert_eq!(s.decode(c, &bytes).unwrap(), Some(()));
            let ok = OkSome { cache_none: false };
            let bytes = enc(&ok, c, &Ok::<_, ()>(Some(None::<u8>))).unwrap();
            assert_eq!(ok.decode(c, &bytes).unwrap(), Ok::<_, ()>(Some(None::<u8>)));
            let mut two = Vec::new();
            c.encode_into(&[1u8, 2], &mut two).unwrap();
            assert!(Strategy::<Option<u8>>::decode(&s, c, &two).is_err());
        }
    }

    /// What `stored` picks is what `encode` stores, and `result_of` gives
    /// the result back (the local tier keeps values by them).
    fn stored_agrees<R: PartialEq + std::fmt::Debug, S: Strategy<R>>(s: &S, r: R)
    where
        S::Stored: Clone,
    {
        let stores = enc(s, Codec::Json, &r).is_some();
        let stored = s.stored(&r).cloned();
        assert_eq!(stored.is_some(), stores, "{r:?}");
        if let Some(stored) = stored {
            assert_eq!(s.result_of(stored), r);
        }
    }

    #[test]
    fn the_stored_part_is_what_encode_stores() {
        stored_agrees(&Plain, 7u8);
        stored_agrees(&OkOnly, Ok::<u8, ()>(7));
        stored_agrees(&OkOnly, Err::<u8, ()>(()));
        for cache_none in [false, true] {
            let some = SomeOnly { cache_none };
            stored_agrees(&some, Some(7u8));
            stored_agrees(&some, None::<u8>);
            let ok = OkSome { cache_none };
            stored_agrees(&ok, Ok::<_, ()>(Some(7u8)));
            stored_agrees(&ok, Ok::<Option<u8>, ()>(None));
            stored_agrees(&ok, Err::<Option<u8>, ()>(()));
        }
    }

    #[test]
    fn ok_values_round_trip() {
        let bytes = enc(&OkOnly, Codec::Json, &Ok::<_, ()>(vec![1u8, 2])).unwrap();
        assert_eq!(bytes, b"[1,2]");
        for c in CODECS {
            let bytes = enc(&OkOnly, c, &Ok::<_, ()>(vec![1u8, 2])).unwrap();
            let back: Result<Vec<u8>, ()> = OkOnly.decode(c, &bytes).unwrap();
            assert_eq!(back, Ok(vec![1, 2]));
        }
    }
}
