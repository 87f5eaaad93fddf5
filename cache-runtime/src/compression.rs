//! The compression of large stored values (`compress_above`): LZ4 blocks
//! (`lz4_flex`, pure Rust), the value's length in front (4 bytes, little
//! endian). Reading one back is bounded: a length claimed above the
//! cache's `max_value_bytes` is refused before anything is allocated, so a
//! hostile or corrupt entry cannot make a reader allocate more than a
//! value it would have stored.

/// The name an entry's header gives the compression (after its codec's:
/// `json+lz4`).
pub(crate) const NAME: &[u8] = b"lz4";

/// A compressed value that cannot be read back: a miss.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecompressError {
    /// Its length (as its first bytes claim) is above `max_value_bytes`.
    #[error("compressed value claims {claimed} bytes, above `max_value_bytes` ({max})")]
    TooLarge { claimed: usize, max: usize },
    /// Not an LZ4 block, or not of the length it claims.
    #[error("compressed value does not decompress: {0}")]
    Invalid(String),
}

/// Appends `value`, compressed, to `out`.
pub(crate) fn compress_into(value: &[u8], out: &mut Vec<u8>) {
    // `u32`: values above 4 GiB are far past any `max_value_bytes` a
    // Redis string (512 MB) allows.
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    let start = out.len();
    out.resize(
        start + lz4_flex::block::get_maximum_output_size(value.len()),
        0,
    );
    match lz4_flex::block::compress_into(value, &mut out[start..]) {
        Ok(written) => out.truncate(start + written),
        // Cannot happen (the buffer has the maximum size); stored as
        // nothing, which reads back as a length mismatch: a miss.
        Err(_) => out.truncate(start),
    }
}

/// The value `body` holds, if it is at most `max` bytes long.
pub(crate) fn decompress(body: &[u8], max: usize) -> Result<Vec<u8>, DecompressError> {
    let (claimed, block) = lz4_flex::block::uncompressed_size(body)
        .map_err(|e| DecompressError::Invalid(e.to_string()))?;
    if claimed > max {
        return Err(DecompressError::TooLarge { claimed, max });
    }
    let mut out = vec![0; claimed];
    let written = lz4_flex::block::decompress_into(block, &mut out)
        .map_err(|e| DecompressError::Invalid(e.to_string()))?;
    if written != claimed {
        return Err(DecompressError::Invalid(format!(
            "{written} bytes, {claimed} claimed"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compressed(value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        compress_into(value, &mut out);
        out
    }

    #[test]
    fn round_trips_and_shrinks_repetitive_values() {
        let value = br#"{"name":"kettle","tags":["steel"]}"#.repeat(200);
        let body = compressed(&value);
        assert!(body.len() < value.len() / 4, "{} bytes", body.len());
        assert_eq!(decompress(&body, value.len()).unwrap(), value);
        assert_eq!(decompress(&compressed(b""), 0).unwrap(), b"");
    }

    #[test]
    fn a_length_above_the_bound_is_refused_before_allocating() {
        let value = vec![7u8; 10_000];
        let body = compressed(&value);
        assert!(matches!(
            decompress(&body, 9_999),
            Err(DecompressError::TooLarge {
                claimed: 10_000,
                max: 9_999
            })
        ));
        // A hostile claim of 4 GiB in 8 bytes.
        let hostile = [0xff, 0xff, 0xff, 0xff, 0x1f, 0, 0, 0];
        assert!(matches!(
            decompress(&hostile, 8 << 20),
            Err(DecompressError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let value = br#"{"name":"kettle"}"#.repeat(50);
        let body = compressed(&value);
        let mut cut = body.clone();
        cut.truncate(body.len() / 2);
        let mut flipped = body.clone();
        for b in &mut flipped[4..] {
            *b ^= 0x5a;
        }
        let mut longer_claim = body.clone();
        longer_claim[0] = longer_claim[0].wrapping_add(1);
        for bad in [
            &b""[..],
            b"\x01",
            b"\x05\0\0\0",
            &cut,
            &flipped,
            &longer_claim,
        ] {
            assert!(decompress(bad, 1 << 20).is_err(), "{bad:?}");
        }
    }
}
