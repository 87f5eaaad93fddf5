//! The stored form of an entry: a one-line header with the codec and the
//! version of each tag read before the value was computed, then the value.
//!
//! ```text
//! cr1 json 9f1c…,04be…,77a0…
//! [{"id":1,"name":"Dune"}]
//! ```
//!
//! A function with `grace` or `refresh_ahead` also records when the value
//! stops being fresh (milliseconds since 1970) and how long its body took
//! (milliseconds), after a `~`: `cr1 json ~1764460800000/212 9f1c…,…`. The
//! entry itself lives `grace` longer in the store.
//!
//! A value larger than the cache's `compress_above` is stored compressed
//! ([`crate::compression`]), and the header says so after the codec's
//! name: `cr1 json+lz4 9f1c…\n<LZ4 block>`. Any reader takes it, whatever
//! its own `compress_above`: what counts is what the header says.
//!
//! A function with `tags_from` records the tags its value gave the entry,
//! with their versions, after a space: `cr1 json a1,b2
//! product:7=9f1c…,product:8=04be…` (names with `%`, `,`, `=`, spaces or
//! bytes outside printable ASCII written `%XX`; an empty list when the
//! value gave none). An entry of such a function without the list is stale.
//! That section is part of the header, which stays plain when the value is
//! compressed: `cr1 json+lz4 a1,b2 product:7=9f1c…\n<LZ4 block>`.
//!
//! The versions are those of the entry's version keys, in order: its
//! function's, its own (the call's), the namespace's, then its tags' (see the crate docs,
//! "Tags"). `redis-cli GET` shows the header and, for JSON, the value as
//! written. An entry is current only while every version key still holds
//! the version recorded at its position; a missing version (deleted by an
//! invalidation, evicted, flushed) matches nothing. Versions are compared as
//! bytes, in the order they were read, without parsing the header into a
//! map: a hit's check is a few `memcmp`s.

use crate::codec::Codec;
use crate::compression::{self, DecompressError};

const MAGIC: &[u8] = b"cr1 ";

/// What a stored entry is, against the current versions.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// No entry.
    Absent,
    /// Valid: the value starts at this offset.
    Current(usize),
    /// Written before an invalidation of one of its tags (or with other
    /// tags): a miss.
    Stale,
    /// Written with another codec (the function's changed): a miss.
    OtherCodec,
    /// Not an entry this version of the crate wrote: a counted miss.
    Corrupt,
}

/// How a check treats the tags an entry took from its value (`tags_from`),
/// recorded after its other versions as ` name=version,…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueTags {
    /// The function has no `tags_from`: an entry with such tags is stale.
    None,
    /// The versions given end with the current versions of the value's
    /// tags, in the order the entry lists them (see [`value_tags`]); an
    /// entry without them is stale.
    Checked,
    /// Only the function's versions are given: the value's tags are not
    /// checked (a first look, to be completed by a read of them).
    Skipped,
}

/// Whether an entry is current under `versions`, the values the version
/// keys hold now (`None` where a key is missing).
pub(crate) fn check<'v>(
    entry: Option<&[u8]>,
    codec: Codec,
    versions: impl ExactSizeIterator<Item = Option<&'v [u8]>>,
    value_tags: ValueTags,
) -> Check {
    let Some(bytes) = entry else {
        return Check::Absent;
    };
    let Some(rest) = bytes.strip_prefix(MAGIC) else {
        return Check::Corrupt;
    };
    let Some(space) = rest.iter().position(|&b| b == b' ') else {
        return Check::Corrupt;
    };
    let (name, mut rest) = (&rest[..space], &rest[space + 1..]);
    let name = match split_compression(name) {
        Some((name, _)) => name,
        None => return Check::Corrupt,
    };
    if rest.first() == Some(&b'~') {
        let Some(space) = rest.iter().position(|&b| b == b' ') else {
            return Check::Corrupt;
        };
        rest = &rest[space + 1..];
    }
    if name != codec.name() {
        return if [Codec::Json, Codec::MsgPack]
            .iter()
            .any(|c| c.name() == name)
        {
            Check::OtherCodec
        } else {
            Check::Corrupt
        };
    }
    if versions.len() == 0 {
        return Check::Corrupt;
    }
    // After the function's versions, a space starts the value's tags.
    let (mut in_section, mut ended) = (false, false);
    for current in versions {
        if ended {
            return Check::Stale;
        }
        let Some(current) = current else {
            return Check::Stale;
        };
        if in_section {
            // `name=`: names are escaped, so the first of these ends it.
            match rest.iter().position(|&b| matches!(b, b'=' | b',' | b'\n')) {
                Some(at) if rest[at] == b'=' => rest = &rest[at + 1..],
                _ => return Check::Stale,
            }
        }
        let Some(after) = rest.strip_prefix(current) else {
            return Check::Stale;
        };
        match after.first() {
            Some(b',') => rest = &after[1..],
            Some(b'\n') => {
                rest = &after[1..];
                ended = true;
            }
            Some(b' ') if !in_section => {
                in_section = true;
                rest = &after[1..];
                match value_tags {
                    ValueTags::None => return Check::Stale,
                    ValueTags::Checked => {
                        if let Some(b'\n') = rest.first() {
                            rest = &rest[1..];
                            ended = true;
                        }
                    }
                    ValueTags::Skipped => {
                        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                            return Check::Corrupt;
                        };
                        rest = &rest[end + 1..];
                        ended = true;
                    }
                }
            }
            _ => return Check::Stale,
        }
    }
    if !ended || (value_tags != ValueTags::None && !in_section) {
        return Check::Stale;
    }
    Check::Current(bytes.len() - rest.len())
}

/// The codec's name, and whether the value is compressed; `None` for a
/// compression this crate does not know.
fn split_compression(name: &[u8]) -> Option<(&[u8], bool)> {
    match name.iter().position(|&b| b == b'+') {
        None => Some((name, false)),
        Some(plus) if &name[plus + 1..] == compression::NAME => Some((&name[..plus], true)),
        Some(_) => None,
    }
}

/// Whether the entry's value is compressed (as its header says).
fn is_compressed(entry: &[u8]) -> bool {
    entry
        .strip_prefix(MAGIC)
        .and_then(|rest| rest.split(|&b| b == b' ').next())
        .and_then(split_compression)
        .is_some_and(|(_, compressed)| compressed)
}

/// The entry `plain` (its value starting at `at`) with its value
/// compressed, and the header saying so.
pub(crate) fn compress(plain: &[u8], at: usize) -> Vec<u8> {
    let name_end = plain[MAGIC.len()..]
        .iter()
        .position(|&b| b == b' ')
        .map_or(at, |space| MAGIC.len() + space);
    let mut out = Vec::with_capacity(at + 8 + (plain.len() - at) / 2);
    out.extend_from_slice(&plain[..name_end]);
    out.push(b'+');
    out.extend_from_slice(compression::NAME);
    out.extend_from_slice(&plain[name_end..at]);
    compression::compress_into(&plain[at..], &mut out);
    out
}

/// A current entry (its value starting at `at`) as it reads uncompressed:
/// `None` when it is stored so; otherwise the entry with its value
/// decompressed (at most `max` bytes) and no compression in its header,
/// and where the value starts in it.
pub(crate) fn open(
    entry: &[u8],
    at: usize,
    max: usize,
) -> Result<Option<(Vec<u8>, usize)>, DecompressError> {
    if !is_compressed(entry) {
        return Ok(None);
    }
    let value = compression::decompress(&entry[at..], max)?;
    let marker = 1 + compression::NAME.len();
    let name_end = entry[MAGIC.len()..]
        .iter()
        .position(|&b| b == b' ')
        .map_or(at, |space| MAGIC.len() + space);
    let mut out = Vec::with_capacity(at - marker + value.len());
    out.extend_from_slice(&entry[..name_end - marker]);
    out.extend_from_slice(&entry[name_end..at]);
    let value_at = out.len();
    out.extend_from_slice(&value);
    Ok(Some((out, value_at)))
}

/// Whether a byte of a tag is escaped in a header (`%XX`).
fn escaped(b: u8) -> bool {
    !(0x21..=0x7e).contains(&b) || matches!(b, b'%' | b',' | b'=')
}

/// The tags an entry took from its value, in the order it records them
/// (none for an entry without the section).
pub(crate) fn value_tags(entry: &[u8]) -> Vec<String> {
    let Some(rest) = entry.strip_prefix(MAGIC) else {
        return Vec::new();
    };
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    // The codec, the freshness (if any) and the versions go first.
    let mut fields = rest[..end].split(|&b| b == b' ').skip(1).peekable();
    if fields.peek().is_some_and(|f| f.first() == Some(&b'~')) {
        fields.next();
    }
    fields.next();
    let Some(section) = fields.next() else {
        return Vec::new();
    };
    if section.is_empty() {
        return Vec::new();
    }
    section
        .split(|&b| b == b',')
        .filter_map(|item| {
            let eq = item.iter().position(|&b| b == b'=')?;
            unescape(&item[..eq])
        })
        .collect()
}

fn unescape(name: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        if name[i] == b'%' {
            let hex = std::str::from_utf8(name.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(name[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Appends the value's tags and their versions to a header made by
/// [`header`] (before its value): ` name=version,…` before its newline.
pub(crate) fn with_value_tags<V: AsRef<[u8]>>(
    mut header: Vec<u8>,
    tags: &[(&str, V)],
) -> Result<Vec<u8>, BadVersion> {
    use std::io::Write;
    if header.pop() != Some(b'\n') {
        return Err(BadVersion);
    }
    header.push(b' ');
    for (i, (tag, version)) in tags.iter().enumerate() {
        let version = version.as_ref();
        if !is_version(version) {
            return Err(BadVersion);
        }
        if i > 0 {
            header.push(b',');
        }
        for &b in tag.as_bytes() {
            if escaped(b) {
                let _ = write!(header, "%{b:02X}");
            } else {
                header.push(b);
            }
        }
        header.push(b'=');
        header.extend_from_slice(version);
    }
    header.push(b'\n');
    Ok(header)
}

/// When a version was created, by the clock of the server that holds it
/// (microseconds since 1970 on Redis, a counter in process): the digits
/// after its `t`. `None` for a version without (written before versions
/// were stamped).
pub(crate) fn stamp(version: &[u8]) -> Option<u64> {
    let at = version.iter().rposition(|&b| b == b't')?;
    std::str::from_utf8(&version[at + 1..]).ok()?.parse().ok()
}

/// When a value stops being fresh, and how long its body took to compute
/// it: for `grace` and `refresh_ahead`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fresh {
    /// Milliseconds since 1970.
    pub until_ms: u64,
    /// The body's duration, in milliseconds.
    pub delta_ms: u64,
}

/// Milliseconds since 1970 now.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, crate::duration::millis)
}

/// The entry's [`Fresh`] record, if it has one.
pub(crate) fn freshness(entry: &[u8]) -> Option<Fresh> {
    let rest = entry.strip_prefix(MAGIC)?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let rest = rest[space + 1..].strip_prefix(b"~")?;
    let end = rest.iter().position(|&b| b == b' ')?;
    let (until, delta) = std::str::from_utf8(&rest[..end]).ok()?.split_once('/')?;
    Some(Fresh {
        until_ms: until.parse().ok()?,
        delta_ms: delta.parse().ok()?,
    })
}

/// A version that cannot be written into a header (only ones read from a
/// Redis that something else wrote to).
#[derive(Debug)]
pub(crate) struct BadVersion;

/// Whether `bytes` can be a version (this crate writes 32 hex digits; any
/// non-empty alphanumeric run fits in a header).
pub(crate) fn is_version(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(u8::is_ascii_alphanumeric)
}

/// Starts an entry: the header for `codec` and `versions`. The value is
/// appended to it.
pub(crate) fn header<V: AsRef<[u8]>>(
    codec: Codec,
    fresh: Option<Fresh>,
    versions: &[V],
    value_hint: usize,
) -> Result<Vec<u8>, BadVersion> {
    let len: usize = versions.iter().map(|v| v.as_ref().len() + 1).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + 48 + len + value_hint);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(codec.name());
    out.push(b' ');
    if let Some(fresh) = fresh {
        use std::io::Write;
        let _ = write!(out, "~{}/{} ", fresh.until_ms, fresh.delta_ms);
    }
    for (i, version) in versions.iter().enumerate() {
        let version = version.as_ref();
        if !is_version(version) {
            return Err(BadVersion);
        }
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(version);
    }
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(codec: Codec, versions: &[&str], value: &[u8]) -> Vec<u8> {
        let mut out = header(codec, None, versions, value.len()).unwrap();
        out.extend_from_slice(value);
        out
    }

    fn now<'a>(
        versions: &'a [Option<&'a str>],
    ) -> impl ExactSizeIterator<Item = Option<&'a [u8]>> + Clone {
        versions.iter().map(|v| v.map(str::as_bytes))
    }

    #[test]
    fn layout_is_pinned() {
        assert_eq!(
            entry(Codec::Json, &["a1", "b2"], b"[1]"),
            b"cr1 json a1,b2\n[1]"
        );
    }

    #[test]
    fn current_only_under_the_recorded_versions() {
        let bytes = entry(Codec::Json, &["a1", "b2"], br#"{"x":[1,2]}"#);
        let at = match check(
            Some(&bytes),
            Codec::Json,
            now(&[Some("a1"), Some("b2")]),
            ValueTags::None,
        ) {
            Check::Current(at) => at,
            other => panic!("{other:?}"),
        };
        assert_eq!(&bytes[at..], br#"{"x":[1,2]}"#);
        for stale in [
            &[Some("a1"), Some("b3")][..],
            &[None, Some("b2")],
            &[Some("a1"), None],
            &[Some("a1")],
            &[Some("a1"), Some("b2"), Some("c3")],
            &[Some("a"), Some("1,b2")],
            &[Some("a1"), Some("b")],
        ] {
            assert_eq!(
                check(Some(&bytes), Codec::Json, now(stale), ValueTags::None),
                Check::Stale,
                "{stale:?}"
            );
        }
    }

    #[test]
    fn another_codec_is_a_miss() {
        let bytes = entry(Codec::MsgPack, &["a1"], b"\x91\x01");
        let versions = now(&[Some("a1")]);
        assert_eq!(
            check(Some(&bytes), Codec::Json, versions.clone(), ValueTags::None),
            Check::OtherCodec
        );
        assert!(matches!(
            check(Some(&bytes), Codec::MsgPack, versions, ValueTags::None),
            Check::Current(_)
        ));
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let versions = now(&[Some("a1")]);
        for bytes in [
            &b""[..],
            b"null",
            b"cr1",
            b"cr1 json",
            b"cr1 xml a1\n1",
            b"\xff\xfe",
            br#"{"tags":{},"value":1}"#,
        ] {
            let c = check(Some(bytes), Codec::Json, versions.clone(), ValueTags::None);
            assert!(
                matches!(c, Check::Corrupt | Check::Stale),
                "{bytes:?}: {c:?}"
            );
        }
        assert_eq!(
            check(
                Some(b"cr1 json a1\n"),
                Codec::Json,
                versions.clone(),
                ValueTags::None
            ),
            Check::Current(12)
        );
        assert_eq!(
            check(None, Codec::Json, versions, ValueTags::None),
            Check::Absent
        );
    }

    #[test]
    fn a_compressed_entry_says_so_and_opens_to_the_plain_one() {
        let value = br#"{"name":"kettle","price":4999}"#.repeat(40);
        let fresh = Fresh {
            until_ms: 1_764_460_800_000,
            delta_ms: 212,
        };
        let mut plain = header(Codec::Json, Some(fresh), &["a1", "b2"], value.len()).unwrap();
        let at = plain.len();
        plain.extend_from_slice(&value);
        let stored = compress(&plain, at);
        assert!(stored.starts_with(b"cr1 json+lz4 ~1764460800000/212 a1,b2\n"));
        assert!(stored.len() < plain.len() / 4);
        assert_eq!(freshness(&stored), Some(fresh));
        let versions = now(&[Some("a1"), Some("b2")]);
        let Check::Current(stored_at) = check(
            Some(&stored),
            Codec::Json,
            versions.clone(),
            ValueTags::None,
        ) else {
            panic!("not current");
        };
        let (opened, value_at) = open(&stored, stored_at, value.len()).unwrap().unwrap();
        assert_eq!((opened.as_slice(), value_at), (plain.as_slice(), at));
        assert!(open(&plain, at, value.len()).unwrap().is_none());
        assert!(open(&stored, stored_at, value.len() - 1).is_err());
        assert_eq!(
            check(
                Some(&stored),
                Codec::MsgPack,
                versions.clone(),
                ValueTags::None
            ),
            Check::OtherCodec
        );
        assert_eq!(
            check(
                Some(b"cr1 json+zip a1,b2\n1"),
                Codec::Json,
                versions,
                ValueTags::None
            ),
            Check::Corrupt
        );
        let mut corrupt = stored.clone();
        let last = corrupt.len() - 1;
        corrupt.truncate(last - 10);
        assert!(open(&corrupt, stored_at, 1 << 20).is_err());
    }

    #[test]
    fn odd_versions_are_not_written() {
        for bad in ["", "a,b", "a\nb", "a b"] {
            assert!(
                header(Codec::Json, None, &["ok", bad], 0).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn freshness_is_recorded_and_skipped_by_the_check() {
        let fresh = Fresh {
            until_ms: 1_764_460_800_000,
            delta_ms: 212,
        };
        let mut bytes = header(Codec::Json, Some(fresh), &["a1", "b2"], 3).unwrap();
        bytes.extend_from_slice(b"[1]");
        assert_eq!(bytes, b"cr1 json ~1764460800000/212 a1,b2\n[1]");
        assert_eq!(freshness(&bytes), Some(fresh));
        let at = match check(
            Some(&bytes),
            Codec::Json,
            now(&[Some("a1"), Some("b2")]),
            ValueTags::None,
        ) {
            Check::Current(at) => at,
            other => panic!("{other:?}"),
        };
        assert_eq!(&bytes[at..], b"[1]");
        assert_eq!(
            check(
                Some(&bytes),
                Codec::Json,
                now(&[Some("a1"), Some("b3")]),
                ValueTags::None
            ),
            Check::Stale
        );
        assert_eq!(freshness(&entry(Codec::Json, &["a1"], b"1")), None);
        for garbage in [
            &b"cr1 json ~12 a1\n1"[..],
            b"cr1 json ~x/1 a1\n1",
            b"cr1 json ~",
        ] {
            assert_eq!(freshness(garbage), None);
        }
        assert_eq!(
            check(
                Some(b"cr1 json ~"),
                Codec::Json,
                now(&[Some("a1")]),
                ValueTags::None
            ),
            Check::Corrupt
        );
    }

    #[test]
    fn a_compressed_entry_keeps_its_value_tags_plain() {
        let value = br#"{"id":7,"name":"kettle"}"#.repeat(60);
        let head = header(Codec::Json, None, &["a1", "b2"], value.len()).unwrap();
        let mut plain = with_value_tags(head, &[("product:7", "v7t5")]).unwrap();
        let at = plain.len();
        plain.extend_from_slice(&value);
        let stored = compress(&plain, at);
        assert!(stored.starts_with(b"cr1 json+lz4 a1,b2 product:7=v7t5\n"));
        assert_eq!(value_tags(&stored), ["product:7"]);
        let statics = [Some("a1"), Some("b2")];
        let Check::Current(first) = check(
            Some(&stored),
            Codec::Json,
            now(&statics),
            ValueTags::Skipped,
        ) else {
            panic!("not current at the first look");
        };
        let all = [Some("a1"), Some("b2"), Some("v7t5")];
        let Check::Current(stored_at) =
            check(Some(&stored), Codec::Json, now(&all), ValueTags::Checked)
        else {
            panic!("not current");
        };
        assert_eq!(first, stored_at);
        let (opened, value_at) = open(&stored, stored_at, value.len()).unwrap().unwrap();
        assert_eq!((opened.as_slice(), value_at), (plain.as_slice(), at));
        assert_eq!(
            check(
                Some(&stored),
                Codec::Json,
                now(&[Some("a1"), Some("b2"), Some("v7t6")]),
                ValueTags::Checked
            ),
            Check::Stale
        );
    }

    #[test]
    fn value_tags_are_recorded_escaped_and_checked() {
        let head = header(Codec::Json, None, &["a1", "b2"], 0).unwrap();
        let tags = [("product:7", "v7t5"), ("odd, =%\n", "v8t6")];
        let mut bytes = with_value_tags(head, &tags).unwrap();
        bytes.extend_from_slice(b"[7]");
        assert_eq!(
            bytes,
            b"cr1 json a1,b2 product:7=v7t5,odd%2C%20%3D%25%0A=v8t6\n[7]"
        );
        assert_eq!(value_tags(&bytes), ["product:7", "odd, =%\n"]);
        let all = [Some("a1"), Some("b2"), Some("v7t5"), Some("v8t6")];
        let at = match check(Some(&bytes), Codec::Json, now(&all), ValueTags::Checked) {
            Check::Current(at) => at,
            other => panic!("{other:?}"),
        };
        assert_eq!(&bytes[at..], b"[7]");
        let statics = now(&all[..2]);
        assert_eq!(
            check(
                Some(&bytes),
                Codec::Json,
                statics.clone(),
                ValueTags::Skipped
            ),
            Check::Current(at)
        );
        assert_eq!(
            check(Some(&bytes), Codec::Json, statics.clone(), ValueTags::None),
            Check::Stale
        );
        for stale in [
            &[Some("a1"), Some("b2"), None, Some("v8t6")][..],
            &[Some("a1"), Some("b2"), Some("v7t5"), Some("v8t7")],
            &[Some("a1"), Some("b2"), Some("v7t5")],
            &[
                Some("a1"),
                Some("b2"),
                Some("v7t5"),
                Some("v8t6"),
                Some("x"),
            ],
            &all[..2],
        ] {
            assert_eq!(
                check(Some(&bytes), Codec::Json, now(stale), ValueTags::Checked),
                Check::Stale,
                "{stale:?}"
            );
        }
        // No tag from the value: an empty section, still required.
        let mut empty =
            with_value_tags::<&str>(header(Codec::Json, None, &["a1"], 0).unwrap(), &[]).unwrap();
        empty.extend_from_slice(b"[]");
        assert_eq!(empty, b"cr1 json a1 \n[]");
        assert!(value_tags(&empty).is_empty());
        assert!(matches!(
            check(
                Some(&empty),
                Codec::Json,
                now(&[Some("a1")]),
                ValueTags::Checked
            ),
            Check::Current(_)
        ));
        let plain = entry(Codec::Json, &["a1"], b"[]");
        assert_eq!(
            check(
                Some(&plain),
                Codec::Json,
                now(&[Some("a1")]),
                ValueTags::Checked
            ),
            Check::Stale
        );
        assert_eq!(stamp(b"9f1ct1764460800000001"), Some(1_764_460_800_000_001));
        assert_eq!(stamp(b"9f1c"), None);
    }
}
