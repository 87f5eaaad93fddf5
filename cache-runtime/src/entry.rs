//! The stored form of an entry: the value's JSON together with the version
//! of each of its tags read before the value was computed.
//!
//! ```text
//! {"tags":{"shop:fn:app::list_products":"9f1c…","shop:tag:products":"04be…"},"value":[…]}
//! ```
//!
//! It stays readable with `redis-cli GET`. An entry is valid only while every
//! tag it carries still has, in the backend, the version it recorded; a tag
//! whose version is missing (deleted by an invalidation, evicted, flushed)
//! matches no entry.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

type Tags<'a> = BTreeMap<Cow<'a, str>, Cow<'a, str>>;

/// An entry read back from the backend, borrowing its bytes.
#[derive(Debug)]
pub(crate) struct Envelope<'a> {
    tags: Tags<'a>,
    value: &'a [u8],
}

/// Any well-formed envelope, however it is laid out.
#[derive(Deserialize)]
struct Loose<'a> {
    #[serde(borrow)]
    tags: Tags<'a>,
    #[serde(borrow)]
    value: &'a RawValue,
}

const HEAD: &[u8] = b"{\"tags\":";
const MIDDLE: &[u8] = b",\"value\":";

impl<'a> Envelope<'a> {
    /// Reads an entry. The layout [`encode`] writes is split without
    /// scanning the value (which the caller decodes anyway: scanning it here
    /// too would parse every hit's JSON twice); any other layout is parsed
    /// in full.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        if let Some(envelope) = Self::split(bytes) {
            return Ok(envelope);
        }
        let loose: Loose<'a> = serde_json::from_slice(bytes)?;
        Ok(Envelope {
            tags: loose.tags,
            value: loose.value.get().as_bytes(),
        })
    }

    fn split(bytes: &'a [u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(HEAD)?;
        let mut tags = serde_json::Deserializer::from_slice(rest).into_iter::<Tags<'a>>();
        let parsed = tags.next()?.ok()?;
        let value = rest[tags.byte_offset()..]
            .strip_prefix(MIDDLE)?
            .strip_suffix(b"}")?;
        Some(Envelope {
            tags: parsed,
            value,
        })
    }

    /// Whether every tag key has the version this entry recorded.
    pub fn is_current(&self, tag_keys: &[String], versions: &[Option<String>]) -> bool {
        tag_keys.len() == versions.len()
            && tag_keys
                .iter()
                .zip(versions)
                .all(|(key, current)| match current {
                    Some(v) => self
                        .tags
                        .get(key.as_str())
                        .is_some_and(|recorded| recorded == v),
                    None => false,
                })
    }

    /// The value's JSON (not validated here: decoding it does that).
    pub fn value(&self) -> &'a [u8] {
        self.value
    }
}

/// Builds the stored bytes of an entry from the value's JSON.
pub(crate) fn encode(value_json: &[u8], tag_keys: &[String], versions: &[String]) -> Vec<u8> {
    let tags: BTreeMap<&str, &str> = tag_keys
        .iter()
        .map(String::as_str)
        .zip(versions.iter().map(String::as_str))
        .collect();
    let tags = serde_json::to_vec(&tags).expect("a map of strings always serializes");
    let mut out = Vec::with_capacity(value_json.len() + tags.len() + 20);
    out.extend_from_slice(b"{\"tags\":");
    out.extend_from_slice(&tags);
    out.extend_from_slice(b",\"value\":");
    out.extend_from_slice(value_json);
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_validation() {
        let keys = vec!["ns:tag:a".to_string(), "ns:tag:b".to_string()];
        let versions = vec!["1".to_string(), "2".to_string()];
        let bytes = encode(br#"{"x":[1,2]}"#, &keys, &versions);
        let env = Envelope::decode(&bytes).unwrap();
        assert_eq!(env.value(), br#"{"x":[1,2]}"#);
        let current =
            |a: Option<&str>, b: Option<&str>| vec![a.map(String::from), b.map(String::from)];
        assert!(env.is_current(&keys, &current(Some("1"), Some("2"))));
        assert!(!env.is_current(&keys, &current(Some("1"), Some("3"))));
        assert!(!env.is_current(&keys, &current(None, Some("2"))));
        let more = vec![
            "ns:tag:a".to_string(),
            "ns:tag:b".to_string(),
            "ns:tag:c".to_string(),
        ];
        assert!(!env.is_current(
            &more,
            &[Some("1".into()), Some("2".into()), Some("9".into())]
        ));
    }

    #[test]
    fn other_layouts_are_read_in_full() {
        let keys = vec!["k".to_string()];
        let spaced = br#"{ "value" : [1, 2], "tags" : { "k" : "1" } }"#;
        let env = Envelope::decode(spaced).unwrap();
        assert_eq!(env.value(), b"[1, 2]");
        assert!(env.is_current(&keys, &[Some("1".into())]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"null",
            b"{\"tags\":1}",
            b"\xff\xfe",
            b"{\"value\":1}",
            b"{\"tags\":{}",
            b"{\"tags\":{},\"value\"",
            b"{\"tags\":{},\"value\":1",
            b"{\"tags\":{\"a\":",
        ] {
            assert!(
                Envelope::decode(bytes).is_err(),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        // A split that leaves no value is caught where the value is decoded.
        let empty = Envelope::decode(b"{\"tags\":{},\"value\":}").unwrap();
        assert!(serde_json::from_slice::<u8>(empty.value()).is_err());
    }
}
