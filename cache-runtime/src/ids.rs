//! Random identifiers: tag versions and lease tokens, 128 random bits in
//! lowercase hex.

/// A fresh random identifier.
pub(crate) fn random_id() -> String {
    hex16(&rand::random::<[u8; 16]>()).as_str().to_owned()
}

/// The first 128 bits of a BLAKE3 hash (what keys and hashed template
/// arguments use).
pub(crate) fn first16(hash: &blake3::Hash) -> [u8; 16] {
    let mut out = [0; 16];
    out.copy_from_slice(&hash.as_bytes()[..16]);
    out
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of 16 bytes, without allocating.
pub(crate) fn hex16(bytes: &[u8; 16]) -> Hex32 {
    let mut out = [0; 32];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    Hex32(out)
}

/// 32 hex digits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hex32([u8; 32]);

impl Hex32 {
    pub fn as_str(&self) -> &str {
        // Hex digits only: always ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_32_hex_digits_and_differ() {
        let (a, b) = (super::random_id(), super::random_id());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        let bytes: [u8; 16] = std::array::from_fn(|i| (i * 17) as u8);
        assert_eq!(
            super::hex16(&bytes).as_str(),
            "00112233445566778899aabbccddeeff"
        );
    }
}
