//! Tag invalidation with version stamps.
//!
//! # What is stored
//! - **Per tag**: one string key, `{ns}#tag:{tag}`, holding the tag's
//!   current *version*, 128 random bits in hex. A version is created with
//!   the TTL of the entry being filled (plus the fill lease's, as room for
//!   the body to run), and every entry stored under it
//!   extends it to at least its own TTL: versions expire with the last
//!   entry that carries them, so per-entity tags (`user:{id}`) do not pile
//!   up. A version that expires early only invalidates.
//! - **Two implicit tags per entry**: its function's,
//!   `{ns}#fn:{module path}::{fn name}` (what `<fn>_invalidate_all()`
//!   deletes), and its own, `{ns}#call:{entry key}` (what
//!   `<fn>_invalidate(args)` deletes, with the entry), whose version lives as
//!   long as the entry.
//! - **Per entry**: one string key holding JSON:
//!   `{"tags":{"<tag key>":"<version>",…},"value":<the value>}`, where each
//!   version is the one read *before* the function body ran.
//!
//! # What it costs
//! - **A hit**: one round trip, one command on a single node: `MGET entry
//!   fn-version call-version tag-versions…` (on a cluster, where the keys
//!   live in different slots, one `GET` per key, sent concurrently). The
//!   entry is valid only if every tag still has the version it recorded.
//! - **A miss**: the same read; one round trip to create the versions that
//!   are missing (a script per key adopts the existing version or stores a
//!   fresh one; on a new entry its own version is always missing); with
//!   stampede protection on Redis, one to take the lease (`SET NX PX`); the
//!   body; then one write (`SET entry … PX ttl`, a TTL extension per
//!   version, the lease release and the fill announcement, in one
//!   pipeline). Four round trips around
//!   the body in all, none of them on a hit.
//! - **An invalidation**: `DEL {ns}#tag:{tag}`, one single-key command per
//!   tag, whatever the number of entries. Nothing is scanned or listed.
//!
//! # Why a stale value is never served after an invalidation
//! A fill reads the tag versions *before* running the body, so a body that
//! read the database before an invalidation stores an entry carrying the
//! versions from before it. The invalidation deletes the version; the next
//! fill creates a new random one. The late entry's versions then match
//! neither "missing" nor the new version, so every read after the
//! invalidation treats it as a miss (the stale-set race that key lists and
//! naive deletes lose). In process, callers share one computation only when
//! they read the same versions, so a call that starts after an invalidation
//! never joins a computation that started before it.
//!
//! A version that disappears without an invalidation (eviction under
//! `maxmemory`, `FLUSHDB`, failover) reads as missing, which matches no
//! entry; and since versions are random, a re-created version never equals
//! an old one: lost bookkeeping invalidates, it never revalidates. A
//! counter (`INCR`) would not have this property.
//!
//! # Redis Cluster
//! On a cluster every command touches one key, so entries and versions may
//! live in any slot; a read is one `GET` per key, sent concurrently.

/// A fresh tag version: 128 random bits.
pub(crate) fn fresh_version() -> String {
    crate::key::hex(&rand::random::<[u8; 16]>())
}
