//! Every name the cache persists, in one place: the keys it writes and the
//! channels it publishes on. Changing one makes every deployed cache cold
//! (or deaf), so none is spelled anywhere else.
//!
//! - `{ns}:{path}:{digest}` or `{ns}:{template}`: an entry;
//! - `{ns}#fn:{path}`, `{ns}#call:{entry}`, `{ns}#all`, `{ns}#tag:{tag}`:
//!   the versions an entry carries (its function's, its own, its
//!   namespace's, each tag's);
//! - `{ns}#lease:{entry}`: an entry's fill lease;
//! - `{ns}#fills`, `{ns}#invalidations`: the channels of fill announcements
//!   and of the backplane; on a cluster with sharded pub/sub, each in
//!   [`SHARD_GROUPS`] shard channels `{ns}#fills{sN}`, `{ns}#invalidations{sN}`
//!   (see [`shard_channel`]).
//!
//! Entries live under `{ns}:`; the cache's own keys under `{ns}#`, so that
//! no entry key, whatever a `key = "..."` template renders, is ever one of
//! them.

use std::fmt;

use redis::{RedisWrite, ToRedisArgs};

/// The key that holds the current version of a user tag.
pub(crate) fn tag_key(namespace: &str, tag: &str) -> String {
    tag_name(namespace, tag).to_string()
}

/// [`tag_key`] in pieces, for a hit's read.
pub(crate) fn tag_name<'a>(namespace: &'a str, tag: &'a str) -> KeyName<'a> {
    KeyName::new(&[namespace, "#tag:", tag])
}

/// The key that holds the current version of a function's implicit tag,
/// carried by every entry of that function.
pub(crate) fn function_key(namespace: &str, function: &str) -> String {
    format!("{namespace}#fn:{function}")
}

/// The key that holds the version of a whole namespace, which every entry
/// carries ([`Cache::invalidate_all`] deletes it).
pub(crate) fn namespace_key(namespace: &str) -> String {
    format!("{namespace}#all")
}

/// The key that holds the version of one call's entry (its implicit tag,
/// which `<fn>_invalidate(args)` deletes).
pub(crate) fn call_key(namespace: &str, entry_key: &str) -> String {
    call_name(namespace, KeyName::whole(entry_key)).to_string()
}

/// [`call_key`] in pieces, from the entry's.
pub(crate) fn call_name<'a>(namespace: &'a str, entry: KeyName<'a>) -> KeyName<'a> {
    entry.after(&[namespace, "#call:"])
}

/// The prefix of every entry key of a function, which a call's digest
/// completes: `{ns}:{path}:`.
pub(crate) fn entry_prefix(namespace: &str, function: &str) -> String {
    format!("{namespace}:{function}:")
}

/// The key of an entry named by its argument digest, in pieces.
pub(crate) fn digest_entry<'a>(entry_prefix: &'a str, digest: &'a str) -> KeyName<'a> {
    KeyName::new(&[entry_prefix, digest])
}

/// The key of an entry named by a `key = "..."` template, in pieces.
pub(crate) fn template_entry<'a>(namespace: &'a str, rendered: &'a str) -> KeyName<'a> {
    KeyName::new(&[namespace, ":", rendered])
}

/// The key of the fill lease of an entry.
pub(crate) fn lease_key(namespace: &str, entry_key: &str) -> String {
    format!("{namespace}#lease:{entry_key}")
}

/// The channel on which invalidations are announced to local tiers (the
/// backplane).
pub(crate) fn invalidation_channel(namespace: &str) -> String {
    format!("{namespace}#invalidations")
}

/// What a lease holder whose computation failed announces on the fill
/// channel (instead of the bare lease key of a release): its waiters in
/// other processes run their own computation at once rather than queue
/// for the lease. A NUL starts it, which no lease key does.
pub(crate) fn failed_fill_message(lease_key: &str) -> String {
    format!("{FAILED_FILL}{lease_key}")
}

/// The prefix of [`failed_fill_message`].
pub(crate) const FAILED_FILL: &str = "\0failed\0";

/// The channel on which fills are announced to waiting processes.
pub(crate) fn fill_channel(namespace: &str) -> String {
    format!("{namespace}#fills")
}

/// How many shard channels each channel is split into on a cluster with
/// sharded pub/sub: the slots in groups of 1024, one channel per group
/// whose own slot lies in that group, so that a message about a key
/// usually goes to the shard that owns the key.
pub(crate) const SHARD_GROUPS: usize = 16;

/// The shard channel of `channel` for `group` (below [`SHARD_GROUPS`]):
/// `{channel}{sN}`, whose hash tag `sN` is the first that puts it in that
/// group's slots.
pub(crate) fn shard_channel(channel: &str, group: usize) -> String {
    let tag = SHARD_TAGS.get(group % SHARD_GROUPS).copied().unwrap_or(0);
    format!("{channel}{{s{tag}}}")
}

/// Every shard channel of `channel`, by group.
pub(crate) fn shard_channels(channel: &str) -> Vec<String> {
    (0..SHARD_GROUPS)
        .map(|g| shard_channel(channel, g))
        .collect()
}

/// The group of a key: its hash slot's.
pub(crate) fn shard_group(key: &str) -> usize {
    usize::from(key_slot(key.as_bytes())) / (SLOTS / SHARD_GROUPS)
}

/// The hash tags of the shard channels: for each group, the least `N`
/// whose tag `sN` hashes into it (found by
/// `shard_tags_hash_into_their_groups`).
const SHARD_TAGS: [u32; SHARD_GROUPS] =
    [10, 21, 2, 43, 11, 20, 3, 42, 12, 23, 0, 41, 13, 22, 1, 40];

/// The number of hash slots of a cluster.
const SLOTS: usize = 16384;

/// A key's hash slot, as a cluster computes it: CRC16 (XMODEM) of its hash
/// tag (the text between its first `{` and the next `}`, if not empty),
/// or of the whole key.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS as u16
}

/// CRC16-CCITT (XMODEM), the hash of cluster slots.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A key name given as up to five pieces, joined only where it is written
/// (into a command's buffer): a hit builds no `String` for its keys.
#[derive(Clone, Copy)]
pub(crate) struct KeyName<'a> {
    parts: [&'a str; 5],
    len: usize,
}

impl<'a> KeyName<'a> {
    /// The pieces of a name, at most five.
    pub fn new(parts: &[&'a str]) -> Self {
        let mut name = KeyName {
            parts: [""; 5],
            len: parts.len().min(5),
        };
        name.parts[..name.len].copy_from_slice(&parts[..name.len]);
        name
    }

    pub fn whole(name: &'a str) -> Self {
        KeyName::new(&[name])
    }

    /// This name after `prefix` (the pieces together at most five).
    fn after(self, prefix: &[&'a str]) -> Self {
        let mut parts = [""; 5];
        let len = (prefix.len() + self.len).min(5);
        for (slot, part) in parts.iter_mut().zip(prefix.iter().chain(self.parts())) {
            *slot = *part;
        }
        KeyName { parts, len }
    }

    fn parts(&self) -> &[&'a str] {
        &self.parts[..self.len]
    }

    /// Its length in bytes.
    pub fn byte_len(&self) -> usize {
        self.parts().iter().map(|p| p.len()).sum()
    }
}

impl fmt::Display for KeyName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.parts().iter().try_for_each(|p| f.write_str(p))
    }
}

impl ToRedisArgs for KeyName<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut arg = out.writer_for_next_arg();
        for part in self.parts() {
            // Writing into the command's buffer cannot fail.
            let _ = arg.write_all(part.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins every persisted name: a change here makes every deployed cache
    /// cold, or deaf to another version's invalidations.
    #[test]
    fn pinned_names() {
        let prefix = entry_prefix("shop", "app::list");
        let digest = digest_entry(&prefix, "8d60");
        let template = template_entry("shop", "product:42");
        let names = [
            (tag_key("shop", "products"), "shop#tag:products"),
            (
                tag_name("shop", "products").to_string(),
                "shop#tag:products",
            ),
            (function_key("shop", "app::list"), "shop#fn:app::list"),
            (namespace_key("shop"), "shop#all"),
            (digest.to_string(), "shop:app::list:8d60"),
            (template.to_string(), "shop:product:42"),
            (
                call_name("shop", digest).to_string(),
                "shop#call:shop:app::list:8d60",
            ),
            (
                call_name("shop", template).to_string(),
                "shop#call:shop:product:42",
            ),
            (
                call_key("shop", "shop:product:42"),
                "shop#call:shop:product:42",
            ),
            (
                lease_key("shop", "shop:product:42"),
                "shop#lease:shop:product:42",
            ),
            (invalidation_channel("shop"), "shop#invalidations"),
            (fill_channel("shop"), "shop#fills"),
            (
                failed_fill_message("shop#lease:shop:product:42"),
                "\0failed\0shop#lease:shop:product:42",
            ),
        ];
        for (name, pinned) in names {
            assert_eq!(name, pinned);
        }
    }

    #[test]
    fn key_slots_are_the_clusters() {
        // From `CLUSTER KEYSLOT`.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(crc16(b"123456789"), 0x31c3);
    }

    #[test]
    fn shard_tags_hash_into_their_groups() {
        let found: Vec<u32> = (0..SHARD_GROUPS)
            .map(|g| {
                (0..)
                    .find(|n| shard_group(&format!("x{{s{n}}}")) == g)
                    .unwrap_or(0)
            })
            .collect();
        assert_eq!(found, SHARD_TAGS);
        for g in 0..SHARD_GROUPS {
            assert_eq!(shard_group(&shard_channel("shop#invalidations", g)), g);
        }
        assert_eq!(
            shard_channel("shop#fills", 0),
            format!("shop#fills{{s{}}}", SHARD_TAGS[0])
        );
    }
}
