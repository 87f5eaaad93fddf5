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

/// An entry read back from the backend, borrowing its bytes.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<'a> {
    #[serde(borrow)]
    tags: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    #[serde(borrow)]
    value: &'a RawValue,
}

impl<'a> Envelope<'a> {
    pub fn decode(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
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

    pub fn value(&self) -> &'a [u8] {
        self.value.get().as_bytes()
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
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"null",
            b"{\"tags\":1}",
            b"\xff\xfe",
            b"{\"value\":1}",
        ] {
            assert!(Envelope::decode(bytes).is_err());
        }
    }
}
