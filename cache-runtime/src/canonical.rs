//! A canonical, injective binary encoding of any `Serialize` value, used only
//! to derive cache keys (see the crate docs, "Keys").
//!
//! Properties the key derivation relies on:
//! - **Deterministic**: it depends only on the value, never on memory
//!   addresses, hash seeds or the build, so every process computes the same
//!   bytes for the same value.
//! - **Order-free maps**: map entries (and struct fields) are sorted by the
//!   encoding of their keys, so a `HashMap` encodes the same whatever its
//!   iteration order.
//! - **Injective**: every item starts with a type tag and every variable-size
//!   item carries its length, so no two different values of one type share
//!   an encoding, whatever bytes (`:`, `*`, `{`) their strings contain.
//! - **Width-free integers**: all integers encode as 128-bit values, so
//!   widening an argument from `u32` to `u64` keeps its keys.

use serde::ser::{self, Serialize};

/// Why a value could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode a cache key argument: {0}")]
pub struct EncodeError(String);

impl ser::Error for EncodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        EncodeError(msg.to_string())
    }
}

mod tag {
    pub const NONE: u8 = 0x00;
    pub const SOME: u8 = 0x01;
    pub const FALSE: u8 = 0x02;
    pub const TRUE: u8 = 0x03;
    pub const INT: u8 = 0x04;
    pub const UINT: u8 = 0x05;
    pub const FLOAT: u8 = 0x06;
    pub const CHAR: u8 = 0x07;
    pub const STR: u8 = 0x08;
    pub const BYTES: u8 = 0x09;
    pub const UNIT: u8 = 0x0a;
    pub const SEQ: u8 = 0x0b;
    pub const MAP: u8 = 0x0c;
    pub const VARIANT: u8 = 0x0d;
    pub const NEWTYPE: u8 = 0x0e;
}

/// Appends the canonical encoding of `value` to `out`.
pub(crate) fn encode_into<T: ?Sized + Serialize>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    value.serialize(Encoder { out })
}

/// Hashes what precedes the arguments of a key digest: the canonical
/// encoding of the type parameter names (a sequence of strings), then of the
/// argument count, as `encode(types)` and `encode(count)` would write them.
pub(crate) fn hash_header(hasher: &mut blake3::Hasher, types: &[&str], count: u64) {
    hasher.update(&[tag::SEQ]);
    hasher.update(&(types.len() as u64).to_le_bytes());
    for t in types {
        hasher.update(&[tag::STR]);
        hasher.update(&(t.len() as u64).to_le_bytes());
        hasher.update(t.as_bytes());
    }
    hasher.update(&[tag::INT]);
    hasher.update(&i128::from(count).to_le_bytes());
}

/// The canonical encoding of `value`.
pub(crate) fn encode<T: ?Sized + Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u64).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, tag: u8, s: &[u8]) {
    out.push(tag);
    put_len(out, s.len());
    out.extend_from_slice(s);
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

impl Encoder<'_> {
    fn int(self, v: i128) {
        self.out.push(tag::INT);
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn uint(self, v: u128) {
        // Non-negative values encode as INT when they fit so that `5u8` and
        // `5i64` agree; only values above i128::MAX keep the UINT tag.
        match i128::try_from(v) {
            Ok(v) => self.int(v),
            Err(_) => {
                self.out.push(tag::UINT);
                self.out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    fn variant(self, name: &str) -> Self {
        self.out.push(tag::VARIANT);
        put_str(self.out, tag::STR, name.as_bytes());
        self
    }
}

impl<'a> ser::Serializer for Encoder<'a> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = Map<'a>;
    type SerializeStruct = Map<'a>;
    type SerializeStructVariant = Map<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), EncodeError> {
        self.out.push(if v { tag::TRUE } else { tag::FALSE });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), EncodeError> {
        self.int(v.into());
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), EncodeError> {
        self.int(v.into());
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), EncodeError> {
        self.int(v.into());
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), EncodeError> {
        self.int(v.into());
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), EncodeError> {
        self.int(v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), EncodeError> {
        self.uint(v.into());
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), EncodeError> {
        self.uint(v.into());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), EncodeError> {
        self.uint(v.into());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), EncodeError> {
        self.uint(v.into());
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), EncodeError> {
        self.uint(v);
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), EncodeError> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), EncodeError> {
        // One encoding for 0.0 and -0.0, and one for every NaN.
        let bits = if v == 0.0 {
            0u64
        } else if v.is_nan() {
            f64::NAN.to_bits()
        } else {
            v.to_bits()
        };
        self.out.push(tag::FLOAT);
        self.out.extend_from_slice(&bits.to_le_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), EncodeError> {
        self.out.push(tag::CHAR);
        self.out.extend_from_slice(&u32::from(v).to_le_bytes());
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), EncodeError> {
        put_str(self.out, tag::STR, v.as_bytes());
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), EncodeError> {
        put_str(self.out, tag::BYTES, v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), EncodeError> {
        self.out.push(tag::NONE);
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), EncodeError> {
        self.out.push(tag::SOME);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), EncodeError> {
        self.out.push(tag::UNIT);
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), EncodeError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), EncodeError> {
        self.variant(variant).serialize_unit()
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.out.push(tag::NEWTYPE);
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        value.serialize(self.variant(variant))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Seq<'a>, EncodeError> {
        Ok(Seq::new(self.out))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Seq<'a>, EncodeError> {
        Ok(Seq::new(self.out))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Seq<'a>, EncodeError> {
        Ok(Seq::new(self.out))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Seq<'a>, EncodeError> {
        Ok(Seq::new(self.variant(variant).out))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Map<'a>, EncodeError> {
        Ok(Map::new(self.out))
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Map<'a>, EncodeError> {
        Ok(Map::new(self.out))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Map<'a>, EncodeError> {
        Ok(Map::new(self.variant(variant).out))
    }
}

/// A sequence: elements are buffered so that the count can lead.
pub struct Seq<'a> {
    out: &'a mut Vec<u8>,
    items: Vec<u8>,
    count: usize,
}

impl<'a> Seq<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Seq {
            out,
            items: Vec::new(),
            count: 0,
        }
    }
    fn element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.count += 1;
        value.serialize(Encoder {
            out: &mut self.items,
        })
    }
    fn finish(self) -> Result<(), EncodeError> {
        self.out.push(tag::SEQ);
        put_len(self.out, self.count);
        self.out.extend_from_slice(&self.items);
        Ok(())
    }
}

macro_rules! seq_impl {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Seq<'_> {
            type Ok = ();
            type Error = EncodeError;
            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), EncodeError> {
                self.element(value)
            }
            fn end(self) -> Result<(), EncodeError> {
                self.finish()
            }
        }
    )*};
}
seq_impl!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// A map or struct: entries are encoded separately and sorted by key.
pub struct Map<'a> {
    out: &'a mut Vec<u8>,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    pending_key: Option<Vec<u8>>,
}

impl<'a> Map<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Map {
            out,
            entries: Vec::new(),
            pending_key: None,
        }
    }
    fn finish(mut self) -> Result<(), EncodeError> {
        if self.pending_key.is_some() {
            return Err(EncodeError("map key without a value".into()));
        }
        self.entries.sort_unstable();
        self.out.push(tag::MAP);
        put_len(self.out, self.entries.len());
        for (k, v) in &self.entries {
            self.out.extend_from_slice(k);
            self.out.extend_from_slice(v);
        }
        Ok(())
    }
    fn field<T: ?Sized + Serialize>(&mut self, name: &str, value: &T) -> Result<(), EncodeError> {
        let mut k = Vec::new();
        put_str(&mut k, tag::STR, name.as_bytes());
        self.entries.push((k, encode(value)?));
        Ok(())
    }
}

impl ser::SerializeMap for Map<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), EncodeError> {
        self.pending_key = Some(encode(key)?);
        Ok(())
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), EncodeError> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| EncodeError("map value without a key".into()))?;
        self.entries.push((key, encode(value)?));
        Ok(())
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeStruct for Map<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Map<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_digest_header_is_the_encoding_of_types_and_count() {
        for types in [&[][..], &["u8", "alloc::string::String"][..]] {
            let mut expected = super::encode(types).unwrap();
            expected.extend(super::encode(&3u64).unwrap());
            let mut hasher = blake3::Hasher::new();
            super::hash_header(&mut hasher, types, 3);
            assert_eq!(hasher.finalize(), blake3::hash(&expected));
        }
    }

    use super::encode;
    use std::collections::{BTreeMap, HashMap};

    #[test]
    fn maps_encode_the_same_in_any_order() {
        let mut a = HashMap::new();
        let mut b = HashMap::new();
        for i in 0..100 {
            a.insert(format!("k{i}"), i);
        }
        for i in (0..100).rev() {
            b.insert(format!("k{i}"), i);
        }
        let c: BTreeMap<_, _> = a.clone().into_iter().collect();
        assert_eq!(encode(&a).unwrap(), encode(&b).unwrap());
        assert_eq!(encode(&a).unwrap(), encode(&c).unwrap());
    }

    #[test]
    fn separators_inside_strings_do_not_collide() {
        let pairs = [
            (("a:b", "c"), ("a", "b:c")),
            (("a*", "b"), ("a", "*b")),
            (("{a", "}"), ("{a}", "")),
            (("", "ab"), ("a", "b")),
        ];
        for (x, y) in pairs {
            assert_ne!(encode(&x).unwrap(), encode(&y).unwrap(), "{x:?} vs {y:?}");
        }
        assert_ne!(
            encode(&vec!["a", "b"]).unwrap(),
            encode(&vec!["ab"]).unwrap()
        );
        assert_ne!(encode(&Some("")).unwrap(), encode(&None::<&str>).unwrap());
    }

    #[test]
    fn integers_are_width_free() {
        assert_eq!(encode(&5u8).unwrap(), encode(&5i64).unwrap());
        assert_ne!(encode(&-1i32).unwrap(), encode(&u128::MAX).unwrap());
        assert_eq!(encode(&0.0f64).unwrap(), encode(&-0.0f64).unwrap());
    }
}
