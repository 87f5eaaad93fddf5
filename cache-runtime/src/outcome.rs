//! What part of a function's result is cached, chosen by the macro from the
//! return type: the whole value, the `Ok` of a `Result`, or the `Some` of an
//! `Option` (and `None` with `cache_none = true`). Values are JSON.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// How a result is stored and read back.
#[diagnostic::on_unimplemented(
    message = "`#[cached]` cannot cache a `{R}` as it reads the return type",
    note = "a return type named `Result` or `...Result<..>` is taken for an alias of `std::result::Result` (only `Ok` is cached), and one named `Option` for `std::option::Option`",
    note = "if it is another type, give it another name at the function (a `type` alias) so that it is cached whole"
)]
pub trait Strategy<R> {
    /// The JSON to store, or `None` when this result must not be cached.
    fn encode(&self, result: &R) -> Option<Result<Vec<u8>, serde_json::Error>>;
    /// A result read back from the cache.
    fn decode(&self, json: &[u8]) -> Result<R, serde_json::Error>;
}

/// Caches every value.
#[derive(Debug, Clone, Copy)]
pub struct Plain;

impl<T: Serialize + DeserializeOwned> Strategy<T> for Plain {
    fn encode(&self, result: &T) -> Option<Result<Vec<u8>, serde_json::Error>> {
        Some(serde_json::to_vec(result))
    }
    fn decode(&self, json: &[u8]) -> Result<T, serde_json::Error> {
        serde_json::from_slice(json)
    }
}

/// Caches `Ok` values only; `Err` is never cached and `E` needs no serde.
#[derive(Debug, Clone, Copy)]
pub struct OkOnly;

impl<T: Serialize + DeserializeOwned, E> Strategy<Result<T, E>> for OkOnly {
    fn encode(&self, result: &Result<T, E>) -> Option<Result<Vec<u8>, serde_json::Error>> {
        result.as_ref().ok().map(serde_json::to_vec)
    }
    fn decode(&self, json: &[u8]) -> Result<Result<T, E>, serde_json::Error> {
        serde_json::from_slice(json).map(Ok)
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
    fn encode(&self, result: &Option<T>) -> Option<Result<Vec<u8>, serde_json::Error>> {
        match result {
            Some(value) => Some(serde_json::to_vec(&[value])),
            None if self.cache_none => Some(Ok(b"[]".to_vec())),
            None => None,
        }
    }
    fn decode(&self, json: &[u8]) -> Result<Option<T>, serde_json::Error> {
        let mut values: Vec<T> = serde_json::from_slice(json)?;
        match values.len() {
            0 | 1 => Ok(values.pop()),
            n => Err(serde::de::Error::invalid_length(n, &"zero or one value")),
        }
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
    fn encode(&self, result: &Result<Option<T>, E>) -> Option<Result<Vec<u8>, serde_json::Error>> {
        SomeOnly {
            cache_none: self.cache_none,
        }
        .encode(result.as_ref().ok()?)
    }
    fn decode(&self, json: &[u8]) -> Result<Result<Option<T>, E>, serde_json::Error> {
        SomeOnly {
            cache_none: self.cache_none,
        }
        .decode(json)
        .map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn err_and_none_are_not_cached_by_default() {
        assert!(Strategy::<Result<u8, ()>>::encode(&OkOnly, &Err(())).is_none());
        assert!(SomeOnly { cache_none: false }.encode(&None::<u8>).is_none());
        let none = SomeOnly { cache_none: true }
            .encode(&None::<u8>)
            .unwrap()
            .unwrap();
        assert_eq!(
            SomeOnly { cache_none: true }.decode(&none).unwrap(),
            None::<u8>
        );
    }

    #[test]
    fn ok_none_is_cached_only_when_asked() {
        let ok_none: Result<Option<u8>, ()> = Ok(None);
        assert!(OkSome { cache_none: false }.encode(&ok_none).is_none());
        assert!(
            OkSome { cache_none: false }
                .encode(&Err::<Option<u8>, ()>(()))
                .is_none()
        );
        let json = OkSome { cache_none: true }
            .encode(&ok_none)
            .unwrap()
            .unwrap();
        let back: Result<Option<u8>, ()> = OkSome { cache_none: true }.decode(&json).unwrap();
        assert_eq!(back, Ok(None));
        let json = OkSome { cache_none: false }
            .encode(&Ok::<_, ()>(Some(7u8)))
            .unwrap()
            .unwrap();
        let back: Result<Option<u8>, ()> = OkSome { cache_none: false }.decode(&json).unwrap();
        assert_eq!(back, Ok(Some(7)));
    }

    #[test]
    fn some_of_null_is_not_none() {
        let s = SomeOnly { cache_none: true };
        for value in [Some(Some(1u8)), Some(None), None] {
            let json = s.encode(&value).unwrap().unwrap();
            assert_eq!(
                s.decode(&json).unwrap(),
                value,
                "{}",
                String::from_utf8_lossy(&json)
            );
        }
        let json = s.encode(&Some(())).unwrap().unwrap();
        assert_eq!(s.decode(&json).unwrap(), Some(()));
        let ok = OkSome { cache_none: false };
        let json = ok.encode(&Ok::<_, ()>(Some(None::<u8>))).unwrap().unwrap();
        assert_eq!(ok.decode(&json).unwrap(), Ok::<_, ()>(Some(None::<u8>)));
        assert!(Strategy::<Option<u8>>::decode(&s, b"[1,2]").is_err());
    }

    #[test]
    fn ok_values_round_trip() {
        let json = Strategy::<Result<Vec<u8>, ()>>::encode(&OkOnly, &Ok(vec![1, 2]))
            .unwrap()
            .unwrap();
        assert_eq!(json, b"[1,2]");
        let back: Result<Vec<u8>, ()> = OkOnly.decode(&json).unwrap();
        assert_eq!(back, Ok(vec![1, 2]));
    }
}
