//! Cache async functions in Redis, or in process, with one attribute.
//!
//! ```
//! use cache_runtime::{cached, Cache};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! struct Product { id: u64, name: String }
//!
//! #[derive(Debug)]
//! struct DbError;
//!
//! #[cached(ttl = 600, tags = ["products", "category:{category}"])]
//! async fn list_products(category: String) -> Result<Vec<Product>, DbError> {
//!     // the slow query runs only on a miss
//!     Ok(vec![Product { id: 1, name: format!("a {category} book") }])
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cache_runtime::Error> {
//! let cache = Cache::builder().memory().namespace("shop").build()?;
//! cache_runtime::set_default(cache.clone());
//!
//! list_products("books".into()).await.unwrap(); // miss: runs the body
//! list_products("books".into()).await.unwrap(); // hit
//! cache.invalidate_tag("category:books").await?;
//! list_products("books".into()).await.unwrap(); // miss again
//! assert_eq!(cache.stats().hits, 1);
//! assert_eq!(cache.stats().computations, 2);
//! # Ok(()) }
//! ```
//!
//! # What is where
//! - [`macro@cached`]: the attribute, and its reference documentation.
//! - [`Cache`], [`CacheBuilder`]: the backend (Redis, Redis Cluster,
//!   Redis Sentinel or memory; TLS), namespace, timeouts, circuit breaker,
//!   TTL jitter, the local tier ([`CacheBuilder::local_cache`]);
//!   invalidation (of a tag, a function, a call, the whole namespace);
//!   [`Stats`], overall and per function.
//! - [`bypass`], [`refresh`]: scopes in which calls skip or recompute the
//!   cache; [`invalidating()`]: the scope whose invalidations are made again
//!   when it ends (the double delete around a transaction).
//! - `metrics` (feature `metrics`): the metrics the cache records;
//!   `http` (feature `http`): a tower layer that caches HTTP responses.
//! - The sections below: how keys are derived, what tag invalidation
//!   stores and costs and why no stale value survives it, and what one call
//!   does.
//!
//! The source is in layers, bottom to top. A module uses only modules of
//! its own layer and those below, and no two modules use each other except
//! a folder's own and `cache` with `builder` (`tests/layers.rs` checks
//! both against this list):
//! - **base** (`error`, `ids`, `duration`, `codec`, `compression`, `canonical`, `template`, `scope`, `breaker`, `retry`):
//!   errors, random ids, milliseconds, the value codecs, the compression of
//!   large values, the canonical argument
//!   encoding, key templates, the `bypass`/`refresh` scopes, the circuit
//!   breaker, the one backoff of background reconnections.
//! - **telemetry** (`stats`, `metrics`, `function_counters`, `span`): the
//!   counters, the metrics, a function's counters, a call's span and its
//!   round trips.
//! - **schema** (`schema`, `entry`, `outcome`, `spec`, `key`): every
//!   persisted name (`schema`), the stored entry's format, what a result
//!   stores, a function's static description, a call's key.
//! - **storage** (`backend`): Redis (with `link`, the connection replaced
//!   when dead, and `clients`, TLS and Sentinel) and the in-process map.
//! - **coordination** (`singleflight`, `lease`, `backplane`, `local`, `held`):
//!   in-process flights, the fleet's fill lease, the subscription that
//!   carries fill announcements and invalidations, the local tier and the
//!   version values it holds for Redis hits.
//! - **engine** (`engine`, `invalidation`, `invalidating`, `call`): one cache's state, the
//!   invalidation path, the double delete around a transaction, the path of one call.
//! - **facade** (`cache`, `builder`, `default_cache`, `companions`, `entry_api`, `http`, `private`):
//!   the public API (with [`Cache::entry`], the cache without an attribute)
//!   and what the macro calls (`__private`).
//!
//! Where to look:
//! - a hit is served: `call/lookup.rs` (from Redis), `call/local.rs` (from
//!   the local tier, where the tier is consulted and filled);
//! - a miss: `call/miss.rs` (flights, versions, where the lease is taken),
//!   `call/fill.rs` (what is written after the body), `lease.rs` (the
//!   lease's protocol), `call/grace.rs` (grace and refresh ahead);
//! - an invalidation goes: `invalidation.rs`, then `backplane.rs` in the
//!   other processes;
//! - a batch call (`batch = ids`) is read, waited for and filled item by
//!   item: `call/batch.rs`;
//! - fail-open happens: `call/fail_open.rs` (and the breaker in
//!   `breaker.rs`);
//! - a name in Redis is spelled: `schema.rs`.
//!
//! # Guarantees
//! - **Fail-open**: a Redis error, timeout or outage never fails a call and
//!   never holds it longer than the op timeout per operation; the body runs
//!   and its result is returned. Failures are counted in
//!   [`Stats::errors`] and logged with `tracing`.
//! - **Tags are versions**: invalidating a tag is one single-key write; an
//!   entry filled from data read before an invalidation is never served after
//!   it; a lost tag version invalidates, never revalidates.
//! - **One computation per key**: concurrent callers in a process share one
//!   run of the body, and processes sharing a Redis take a lease. What the
//!   waiters get when that run's result is not cached:
//!   - a `None` (without `cache_none`): they get it too, though it is not
//!     stored (one query for a burst of callers of a missing row);
//!   - an `Err` (or a value that does not encode): when the result type
//!     is `Clone`, they get a clone of it (as Go's singleflight and .NET's
//!     HybridCache share a failure); otherwise each waiter runs the body
//!     at once, for itself. Queueing them behind one new leader after
//!     another would make the last of N callers wait N query times while
//!     the database fails; this way they wait one, and the runs are
//!     bounded by the callers that were already waiting (later callers
//!     start a new flight). Across processes, a lease holder whose result
//!     is not stored announces the failure, and the waiters of other
//!     processes compute at once instead of queueing for the lease.
//!   - nothing (the leader panicked or was cancelled): one of them takes
//!     over.
//!
//! # Keys
//! An entry's key is `{namespace}:{module path}::{fn name}:{digest}` (with
//! the `impl` type for an associated function: `shop:app::Catalog::get:…`),
//! or `{namespace}:{rendered template}` with `#[cached(key = "...")]`.
//!
//! The digest is the first 128 bits of BLAKE3 over a canonical binary
//! encoding of the generic type names and the key arguments, each in
//! declaration order, prefixed by their count. The encoding is:
//! - **deterministic**: it depends only on the value, never on memory
//!   addresses, hash seeds or the build, so every process computes the same
//!   key for the same arguments;
//! - **order-free for maps**: map entries (and struct fields) are sorted by
//!   the encoding of their keys, so a `HashMap` gives the same key whatever
//!   its iteration order (a `HashSet` argument is rejected at compile time);
//! - **injective**: every item starts with a type tag and every variable-size
//!   item carries its length, so no two argument lists of one function share
//!   a key, whatever bytes (`:`, `*`, `{`) their strings contain;
//! - **width-free for integers**: all integers encode as 128-bit values, so
//!   widening an argument from `u32` to `u64` keeps its keys.
//!
//! # Tags
//! Tags are version stamps, not key sets.
//!
//! **What is stored.**
//! - Per tag, one string key, `{ns}#tag:{tag}`, holding the tag's current
//!   *version*: 128 random bits in hex, then `t` and when the server
//!   created it (microseconds since 1970, its `TIME`; see "Tags from the
//!   value"). A version is created with the TTL
//!   of the entry being filled, grace included (plus the fill lease's, as
//!   room for the body to run), and every entry stored under it extends it
//!   to at least its own TTL: versions expire with the last entry that
//!   carries them, so per-entity tags (`user:{id}`) do not pile up. A
//!   version that expires early only invalidates; one holding bytes this
//!   crate did not write is replaced by the next fill, not adopted.
//! - Three implicit tags per entry: its function's, `{ns}#fn:{path}` (what
//!   `<fn>_invalidate_all()` deletes), its own, `{ns}#call:{entry key}`
//!   (what `<fn>_invalidate(args)` deletes, with the entry), and its
//!   namespace's, `{ns}#all` (what [`Cache::invalidate_all`] deletes).
//! - Per entry, one string key: a header line with the codec and the
//!   versions of the function, the call, the namespace and each tag, read
//!   *before* the body ran, then the value (`cr1 json 9f1c…,04be…\n[…]`).
//!
//! **What it costs.**
//! - A hit: one round trip, one command on a single node: `MGET entry
//!   fn-version call-version ns-version tag-versions…` (on a cluster, where the keys
//!   live in different slots, one `GET` per key, sent concurrently). The
//!   entry is valid only if every version key still holds the version it
//!   recorded, compared as bytes. With a local tier, while the backplane
//!   is up, a process holds the versions its reads found current (see
//!   below), and a hit whose versions are all held is one `GET` of the
//!   entry, checked against them.
//! - A miss: three round trips around the body. The same read; then one
//!   round trip that creates the versions that are missing (a script per key
//!   adopts the existing version or stores a fresh one; a new entry's own
//!   version is always missing) and, with stampede protection on Redis,
//!   tries the lease (`SET NX PX`); the body; then one write (`SET entry …
//!   PX ttl`, a TTL extension per version, the lease's release and the fill
//!   announcement, in one pipeline). Scripts go by hash (`EVALSHA`).
//! - An invalidation: `DEL {ns}#tag:{tag}`, one single-key command per tag,
//!   whatever the number of entries, then `PUBLISH {ns}#invalidations
//!   {ns}#tag:{tag}` for the local tiers, in the same round trip (on a
//!   cluster, `SPUBLISH` on the shard channel of the key's slot, which
//!   costs one shard rather than every node). Nothing is scanned or
//!   listed.
//! - A local hit ([`CacheBuilder::local_cache`]): no Redis command. A
//!   lookup in process memory, a check that the backplane subscription is
//!   up and that none of the entry's versions was announced as
//!   invalidated since it was read, and a clone of the decoded value.
//!
//! **Why a stale value is never served after an invalidation.** A fill
//! reads the tag versions *before* running the body, so a body that read the
//! database before an invalidation stores an entry carrying the versions
//! from before it. The invalidation deletes the version; the next fill
//! creates a new random one. The late entry's versions then match neither
//! "missing" nor the new version, so every read after the invalidation
//! treats it as a miss (the stale-set race that key lists and naive deletes
//! lose). In process, callers share one computation only when they read the
//! same versions, and a body starts only after every caller that joined it
//! had read, so a call that starts after an invalidation never receives a
//! value computed from data read before it.
//!
//! A version that disappears without an invalidation (eviction under
//! `maxmemory`, `FLUSHDB`, failover) reads as missing, which matches no
//! entry; and since versions are random, a re-created version never equals
//! an old one: lost bookkeeping invalidates, it never revalidates. A counter
//! (`INCR`) would not have this property.
//!
//! **The local tier keeps the promise.** A local entry is a value a Redis
//! read found current, kept with the version keys that read checked. Every
//! invalidation publishes the keys it deleted, after deleting them; each
//! process marks its entries holding one of them dead as the message
//! arrives (and the invalidating process before its call returns). A value
//! whose Redis read started before a message was applied is not kept (an
//! epoch, moved by each message, is checked when it is kept), which is the
//! stale-set race of the local tier. While the subscription is not
//! confirmed, or has dropped (a `PING` each second finds a silent one),
//! nothing local is served, and the tier restarts empty once it is back. A
//! local entry lives no longer than its Redis entry's `PTTL`, read with it.
//! The version values held for Redis hits follow the same rules (each is a
//! value a read found current, forgotten when a message names its key, not
//! held if read before a message was applied, all dropped with the
//! subscription), and live no longer than the entry they were read with,
//! whose storing extended them at least that long. Both live no longer
//! than [`CacheBuilder::local_max_age`] after their versions were read
//! from Redis: what bounds a version evicted without a message.
//!
//! **Tags from the value** (`#[cached(tags_from = f)]`). A listing tagged
//! with the ids of the products it shows only knows them once its body
//! ran, so their versions cannot be read before the body as the others
//! are. What replaces that read:
//! - *When the call started*: with `tags_from`, a read of an entry is
//!   followed by a second round trip, which reads the versions of the tags
//!   the entry records (none for a miss) and the server's clock (`TIME`,
//!   by a script keyed by the entry, so on a cluster the entry's node
//!   answers). The first such read of a call, before its body, is its
//!   start.
//! - *When a version was created*: every version carries the server's
//!   time of its creation (`9f1c…t1764460800123456`). An invalidation
//!   deletes the version; the next one is created later, so its stamp is
//!   at least the invalidation's time.
//! - *The fill*: after the body, `f(&value)` names the tags; one round trip
//!   reads their versions, creating the missing ones (a script per key,
//!   as for the other tags; a version without a stamp, written by an
//!   older release, is replaced). If one was created at or after the
//!   call's start, the tag may have been invalidated while the body ran:
//!   the value is returned, not stored (counted in
//!   [`Stats::value_tags_changed`]), the callers waiting for it in this
//!   process run the body themselves, and waiters in other processes are
//!   told as for a failed computation. Otherwise the entry records the
//!   tags and their versions after the others (`cr1 json a1,b2
//!   product:7=9f1c…t17…,product:8=…`, names escaped `%XX`), and every
//!   later invalidation of one makes it stale. The price of the rule: a
//!   value whose tags have no version yet (first seen, expired, or
//!   invalidated since) is not stored by the call that created them; the
//!   next call stores it.
//! - *A hit*: the entry and the function's versions, then the versions of
//!   the tags the entry names: two round trips (held versions are not
//!   used for such a function, since the second read is needed anyway).
//!   A local entry is indexed under those tags' keys too, so the
//!   invalidation message of one drops it; a process waiting for another's
//!   fill checks the value's tags before taking it.
//! - *Clocks*: one Redis has one clock. On Redis Cluster the start is read
//!   on the entry's node and a stamp on the tag's: versions created less
//!   than a second before the call's start count as new, which tolerates
//!   nodes' clocks up to a second apart. The memory backend stamps with a
//!   counter, which no wall-clock step can reorder.
//!
//! **Redis Cluster.** Every command but the single-node `MGET` touches one
//! key, so entries and versions may live in any slot; a hit with held
//! versions touches one slot, the entry's.

#![warn(missing_docs)]

mod backend;
mod backplane;
mod breaker;
mod builder;
mod cache;
mod call;
mod canonical;
mod codec;
mod companions;
mod compression;
mod default_cache;
mod duration;
mod engine;
mod entry;
mod entry_api;
mod error;
mod function_counters;
mod held;
#[cfg(feature = "http")]
pub mod http;
mod ids;
mod invalidating;
mod invalidation;
mod key;
mod lease;
mod local;
#[cfg(feature = "metrics")]
pub mod metrics;
mod outcome;
mod retry;
mod schema;
mod scope;
mod singleflight;
mod span;
mod spec;
mod stats;
mod template;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use builder::{CacheBuilder, DEFAULT_LOCAL_MAX_AGE, DEFAULT_MAX_VALUE_BYTES, MAX_DURATION};
pub use cache::Cache;
pub use canonical::EncodeError;
pub use default_cache::{AsCache, set_default};
pub use entry_api::Entry;
pub use error::Error;
pub use invalidating::invalidating;
pub use scope::{bypass, refresh};
pub use stats::Stats;
pub use template::template_value;

#[cfg(feature = "macros")]
#[doc(inline)]
pub use cache_macros::cached;
