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
//!   and of the backplane.
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
}
