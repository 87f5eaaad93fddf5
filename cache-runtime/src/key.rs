//! Cache keys: `{namespace}:{module path}::{fn name}:{digest}`, or
//! `{namespace}:{rendered template}` with `key = "..."`. See the crate
//! docs, "Keys".

use serde::Serialize;

use crate::canonical::{self, EncodeError};
use crate::schema::{self, KeyName};
use crate::spec::{FunctionKeys, Spec};

/// The per-call part of a key, built by the generated code.
#[derive(Debug)]
pub enum KeyPart {
    /// The digest of the arguments; the function path goes before it.
    Digest([u8; 16]),
    /// A user template, already rendered.
    Template(String),
    /// An argument could not be encoded: the call runs uncached.
    Failed(EncodeError),
}

impl KeyPart {
    /// A key from a rendered `key = "..."` template.
    pub fn template(rendered: String) -> Self {
        KeyPart::Template(rendered)
    }

    /// The full key of this call of the function whose keys are `keys`.
    pub(crate) fn entry_key(self, keys: &FunctionKeys) -> Result<String, EncodeError> {
        Ok(self.into_call_part()?.entry(keys).to_string())
    }

    pub(crate) fn into_call_part(self) -> Result<CallPart, EncodeError> {
        match self {
            KeyPart::Digest(d) => Ok(CallPart::Digest(crate::ids::hex16(&d))),
            KeyPart::Template(t) => Ok(CallPart::Template(t)),
            KeyPart::Failed(e) => Err(e),
        }
    }
}

/// The per-call part of a key, ready to be written.
#[derive(Debug, Clone)]
pub(crate) enum CallPart {
    Digest(crate::ids::Hex32),
    Template(String),
}

impl CallPart {
    /// The entry's key: `{ns}:{path}:{digest}` or `{ns}:{template}`.
    pub fn entry<'a>(&'a self, keys: &'a FunctionKeys) -> KeyName<'a> {
        match self {
            CallPart::Digest(hex) => schema::digest_entry(&keys.entry_prefix, hex.as_str()),
            CallPart::Template(t) => schema::template_entry(&keys.namespace, t),
        }
    }

    /// The key of the entry's own version: `{ns}#call:{entry key}`.
    pub fn call_version<'a>(&'a self, keys: &'a FunctionKeys) -> KeyName<'a> {
        schema::call_name(&keys.namespace, self.entry(keys))
    }
}

/// An argument that can be part of a cache key: any `Serialize` type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key because it does not implement `Serialize`",
    label = "this argument is hashed into the cache key",
    note = "derive `serde::Serialize` for it, or leave the argument out of the key with `#[cached(skip(name))]`"
)]
pub trait KeyArg: Serialize {}
impl<T: ?Sized + Serialize> KeyArg for T {}

/// Builds the argument digest of one call: BLAKE3 over the canonical
/// encoding of the type parameters (a sequence of their names), the number
/// of arguments, then each argument.
#[derive(Debug)]
pub struct ArgsDigest {
    types: Vec<&'static str>,
    args: Vec<u8>,
    count: u64,
    error: Option<EncodeError>,
}

impl Default for ArgsDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl ArgsDigest {
    /// An empty digest.
    pub fn new() -> Self {
        ArgsDigest {
            types: Vec::new(),
            args: Vec::new(),
            count: 0,
            error: None,
        }
    }

    /// Adds a generic type parameter of the function, so that `f::<u8>` and
    /// `f::<u16>` never share a key.
    pub fn type_param<T: ?Sized>(&mut self) {
        self.types.push(std::any::type_name::<T>());
    }

    /// Adds the concrete types that the `impl` holding the function is
    /// generic over, so that `Repo::<User>::get(1)` and
    /// `Repo::<Admin>::get(1)` never share a key, with or without a
    /// receiver. `concrete` is the type name of a closure in the function
    /// (or its companion), which the compiler spells with those types
    /// (`app::Repo<app::User>::get::{{closure}}`), where the spec's path has
    /// `_` (`app::Repo<_>::get`). Adds nothing outside a generic `impl`,
    /// so other keys stay as they were.
    pub fn impl_scope(&mut self, spec: &Spec, concrete: &'static str) {
        let holder = spec.holder();
        if !has_placeholder(holder) {
            return;
        }
        match scope_args(holder, concrete) {
            Some(args) => self.types.extend(args),
            // Spelled otherwise than expected: the whole name still keys
            // each type apart (but a companion, with a name of its own,
            // does not find the function's entries).
            None => self.types.push(concrete),
        }
    }

    /// Adds one key argument.
    pub fn arg<T: ?Sized + KeyArg>(&mut self, value: &T) {
        if self.error.is_some() {
            return;
        }
        self.count += 1;
        if self.args.capacity() == 0 {
            self.args.reserve(64);
        }
        if let Err(e) = canonical::encode_into(value, &mut self.args) {
            self.error = Some(e);
        }
    }

    /// The digest part of the key.
    pub fn finish(self) -> KeyPart {
        if let Some(e) = self.error {
            return KeyPart::Failed(e);
        }
        let mut hasher = blake3::Hasher::new();
        canonical::hash_header(&mut hasher, &self.types, self.count);
        hasher.update(&self.args);
        KeyPart::Digest(crate::ids::first16(&hasher.finalize()))
    }
}

/// Whether the byte at `i` of `holder` is a `_` that stands for a type
/// parameter (`Repo<_>`, `Pair<_, _>`, `Wrap<[_; 3]>`), not part of a name.
fn is_placeholder(holder: &[u8], i: usize) -> bool {
    holder.get(i) == Some(&b'_')
        && i > 0
        && matches!(holder[i - 1], b'<' | b'(' | b'[' | b' ' | b'&')
        && matches!(holder.get(i + 1), Some(b',' | b'>' | b')' | b']' | b';'))
}

fn has_placeholder(holder: &str) -> bool {
    (0..holder.len()).any(|i| is_placeholder(holder.as_bytes(), i))
}

/// The types that `concrete` has where `holder` has a placeholder, when
/// `concrete` is `holder` so filled in, then `::` (the function's segment).
fn scope_args(holder: &str, concrete: &'static str) -> Option<Vec<&'static str>> {
    let (h, c) = (holder.as_bytes(), concrete.as_bytes());
    let (mut i, mut j) = (0, 0);
    let mut args = Vec::new();
    while i < h.len() {
        if is_placeholder(h, i) {
            let start = j;
            let mut depth = 0usize;
            while let Some(&b) = c.get(j) {
                match b {
                    b'<' | b'(' | b'[' => depth += 1,
                    // The arrow of a function pointer type.
                    b'>' if j > 0 && c[j - 1] == b'-' => {}
                    b'>' | b')' | b']' | b',' | b';' if depth == 0 => break,
                    b'>' | b')' | b']' => depth -= 1,
                    _ => {}
                }
                j += 1;
            }
            if j == start {
                return None;
            }
            args.push(concrete.get(start..j)?);
        } else {
            if c.get(j) != Some(&h[i]) {
                return None;
            }
            j += 1;
        }
        i += 1;
    }
    concrete[j..].starts_with("::").then_some(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_types_of_a_generic_impl_from_a_closures_name() {
        for (holder, concrete, expected) in [
            (
                "app::Repo<_>",
                "app::Repo<app::User>::get::{{closure}}::{{closure}}",
                Some(vec!["app::User"]),
            ),
            (
                "app::Repo<_>",
                "app::Repo<alloc::vec::Vec<(u8, [u16; 2])>>::get_invalidate::{{closure}}",
                Some(vec!["alloc::vec::Vec<(u8, [u16; 2])>"]),
            ),
            (
                "app::Pair<_, alloc::string::String, _>",
                "app::Pair<fn(u8) -> u8, alloc::string::String, 3>::get::{{closure}}",
                Some(vec!["fn(u8) -> u8", "3"]),
            ),
            (
                "<app::X as app::Tr<_>>",
                "<app::X as app::Tr<u8>>::get::{{closure}}",
                Some(vec!["u8"]),
            ),
            ("app::Repo<_>", "app::Other<u8>::get::{{closure}}", None),
            ("app::Repo<_>", "app::Repo<u8>", None),
        ] {
            assert_eq!(scope_args(holder, concrete), expected, "{concrete}");
        }
        assert!(has_placeholder("app::Repo<_>"));
        assert!(has_placeholder("app::Wrap<[_; 3]>"));
        assert!(!has_placeholder("app::get_user::Repo<'_>"));
        assert!(!has_placeholder("app::Plain"));
    }

    fn keys(namespace: &str) -> FunctionKeys {
        FunctionKeys {
            namespace: namespace.into(),
            entry_prefix: format!("{namespace}:app::list_products:"),
            version_keys: Vec::new(),
        }
    }

    fn digest(f: impl FnOnce(&mut ArgsDigest)) -> String {
        let mut d = ArgsDigest::new();
        f(&mut d);
        d.finish().entry_key(&keys("shop")).unwrap()
    }

    /// Pins the key format: an accidental change of the encoding, the hash
    /// or the layout makes every deployed cache cold, so it must be a
    /// deliberate, visible change of this test.
    #[test]
    fn pinned_key_for_a_known_call() {
        let key = digest(|d| d.arg("books"));
        assert_eq!(
            key,
            "shop:app::list_products:8d60df79f8d99877b991b420b5a20037"
        );
    }

    /// Pins the canonical bytes behind that key: no type parameters (an
    /// empty sequence), one argument, then the argument itself.
    #[test]
    fn pinned_canonical_encoding() {
        let mut expected = vec![0x0b];
        expected.extend_from_slice(&0u64.to_le_bytes());
        expected.push(0x04);
        expected.extend_from_slice(&1i128.to_le_bytes());
        expected.push(0x08);
        expected.extend_from_slice(&5u64.to_le_bytes());
        expected.extend_from_slice(b"books");
        let mut actual = crate::canonical::encode(&Vec::<&str>::new()).unwrap();
        actual.extend(crate::canonical::encode(&1u64).unwrap());
        actual.extend(crate::canonical::encode("books").unwrap());
        assert_eq!(actual, expected);
        assert_eq!(
            crate::ids::hex16(&crate::ids::first16(&blake3::hash(&expected))).as_str(),
            "8d60df79f8d99877b991b420b5a20037"
        );
    }

    #[test]
    fn argument_boundaries_are_part_of_the_key() {
        let a = digest(|d| {
            d.arg("a:b");
            d.arg("c");
        });
        let b = digest(|d| {
            d.arg("a");
            d.arg("b:c");
        });
        let c = digest(|d| d.arg("a:bc"));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
    }

    #[test]
    fn type_parameters_are_part_of_the_key() {
        let a = digest(|d| {
            d.type_param::<u8>();
            d.arg(&1u8);
        });
        let b = digest(|d| {
            d.type_param::<u16>();
            d.arg(&1u8);
        });
        assert_ne!(a, b);
    }

    #[test]
    fn hash_map_order_does_not_matter() {
        let m1: HashMap<String, u32> = (0..50).map(|i| (i.to_string(), i)).collect();
        let m2: HashMap<String, u32> = (0..50).rev().map(|i| (i.to_string(), i)).collect();
        assert_eq!(digest(|d| d.arg(&m1)), digest(|d| d.arg(&m2)));
    }

    #[test]
    fn template_keys_are_namespaced() {
        let k = KeyPart::template("product:42".into());
        assert_eq!(k.entry_key(&keys("shop")).unwrap(), "shop:product:42");
    }
}
