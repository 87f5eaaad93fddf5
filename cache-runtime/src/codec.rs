//! The formats a value is stored in: JSON (the default, readable with
//! `redis-cli`) or MessagePack (`codec = "msgpack"`: smaller and faster).
//! MessagePack is written with field names (`rmp_serde`'s "named" form), so
//! that a struct whose fields were reordered or renamed in a deploy fails
//! to decode (a counted miss) instead of reading back as wrong values.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The format of a function's stored values, chosen with
/// `#[cached(codec = "...")]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// `serde_json`.
    Json,
    /// MessagePack (`rmp_serde`, with field names).
    MsgPack,
}

/// A value that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// JSON failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// MessagePack encoding failed.
    #[error("MessagePack: {0}")]
    MsgPackEncode(#[from] rmp_serde::encode::Error),
    /// MessagePack decoding failed.
    #[error("MessagePack: {0}")]
    MsgPackDecode(#[from] rmp_serde::decode::Error),
}

impl Codec {
    /// The name written in each entry, so that a function whose codec
    /// changed reads its old entries as misses, never as garbage.
    pub(crate) fn name(self) -> &'static [u8] {
        match self {
            Codec::Json => b"json",
            Codec::MsgPack => b"msgpack",
        }
    }

    /// Appends the encoding of `value` to `out`.
    pub fn encode_into<T: ?Sized + Serialize>(
        self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match self {
            Codec::Json => serde_json::to_writer(out, value)?,
            Codec::MsgPack => rmp_serde::encode::write_named(out, value)?,
        }
        Ok(())
    }

    /// Reads a value back.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        Ok(match self {
            Codec::Json => serde_json::from_slice(bytes)?,
            Codec::MsgPack => rmp_serde::from_slice(bytes)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Product {
        id: u64,
        name: String,
        tags: Vec<String>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Reordered {
        name: String,
        id: u64,
        tags: Vec<String>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct SameShapeOtherNames {
        key: u64,
        title: String,
        labels: Vec<String>,
    }

    fn product() -> Product {
        Product {
            id: 7,
            name: "kettle".into(),
            tags: vec!["steel".into()],
        }
    }

    #[test]
    fn round_trips() {
        for codec in [Codec::Json, Codec::MsgPack] {
            let mut out = Vec::new();
            codec.encode_into(&product(), &mut out).unwrap();
            assert_eq!(codec.decode::<Product>(&out).unwrap(), product());
        }
    }

    #[test]
    fn msgpack_matches_fields_by_name() {
        let mut out = Vec::new();
        Codec::MsgPack.encode_into(&product(), &mut out).unwrap();
        let back: Reordered = Codec::MsgPack.decode(&out).unwrap();
        assert_eq!((back.id, back.name.as_str()), (7, "kettle"));
        assert!(Codec::MsgPack.decode::<SameShapeOtherNames>(&out).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        for bytes in [&b""[..], b"\xc1", b"\x92\x01", b"{"] {
            assert!(Codec::MsgPack.decode::<Product>(bytes).is_err());
            assert!(Codec::Json.decode::<Product>(bytes).is_err());
        }
    }
}
