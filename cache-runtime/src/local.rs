//! The local tier ([`CacheBuilder::local_cache`](crate::CacheBuilder::local_cache)):
//! values read from Redis kept in process memory, answered without a Redis
//! command while they are provably current.
//!
//! A local entry is served only while all of these hold:
//! - the backplane, this process's subscription to `{ns}#invalidations`
//!   (on a cluster, to each of its shard channels: see
//!   [`backplane`](crate::backplane)), is confirmed and has not dropped
//!   since the entry was made (the `session`): every invalidation anywhere
//!   is published there, after its `DEL`;
//! - none of the version keys the entry was read with (the same ones a
//!   Redis hit checks: the function's, the call's, the namespace's and the
//!   tags') has been invalidated since: each is a [`Cell`] the entry holds,
//!   marked dead by an invalidation message, or by an invalidation made in
//!   this process before it returns;
//! - its Redis entry has not expired (`PTTL`, read with the value), nor,
//!   with `grace` or `refresh_ahead`, its freshness (the rest of those
//!   functions' rules run on the Redis path).
//!
//! - its versions were last read from Redis less than `local_max_age`
//!   ago (a version key evicted without a message is seen within it).
//!
//! The stale-set race: a value read from Redis before an invalidation must
//! not be kept after the invalidation's message was applied. Every
//! message bumps an epoch; a value is kept only if the epoch has not moved
//! since before its read (checked under the lock that applies messages).
//!
//! The tier also holds the version values Redis reads found current
//! ([`HeldVersions`]), under the same session, epoch and invalidations, so
//! that a Redis hit whose versions are all held reads only its entry.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::held::{Held, HeldVersions};

/// A decoded value, type-erased.
pub(crate) type AnyValue = Box<dyn Any + Send + Sync>;

/// One version key as this process knows it: dead once invalidated.
#[derive(Debug, Default)]
pub(crate) struct Cell {
    dead: AtomicBool,
}

/// What a local entry holds: the decoded value (for a `Clone` type), or
/// the stored bytes, decoded on each hit.
pub(crate) enum Value {
    Decoded(AnyValue),
    Bytes(Box<[u8]>),
}

/// A local entry.
pub(crate) struct Entry {
    value: Value,
    cells: Box<[Arc<Cell>]>,
    session: u64,
    until: Instant,
    weight: u32,
}

impl Entry {
    /// Its value.
    pub fn value(&self) -> &Value {
        &self.value
    }
}

/// The version keys this process's local entries hold, by name, and the
/// epoch of invalidations.
#[derive(Default)]
struct Table {
    cells: HashMap<Box<str>, Weak<Cell>>,
    epoch: u64,
    /// The table's size after its last sweep of cells no entry holds.
    swept_at: usize,
}

/// The local tier of one cache.
pub(crate) struct LocalTier {
    entries: moka::sync::Cache<Box<[u8]>, Arc<Entry>>,
    /// Odd while the backplane subscription is confirmed; moves on each
    /// confirmation and each loss.
    session: AtomicU64,
    /// The table's epoch, readable without its lock.
    epoch: AtomicU64,
    table: Mutex<Table>,
    /// The version values read from Redis, held under the same rules.
    held: HeldVersions,
    /// The longest a value or a version is used after its versions were
    /// read from Redis (`local_max_age`).
    max_age: Duration,
}

impl std::fmt::Debug for LocalTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTier")
            .field("entries", &self.entries.entry_count())
            .field("bytes", &self.entries.weighted_size())
            .field("session", &self.session.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Expires an entry at its `until`.
struct Expiry;

impl moka::Expiry<Box<[u8]>, Arc<Entry>> for Expiry {
    fn expire_after_create(
        &self,
        _key: &Box<[u8]>,
        entry: &Arc<Entry>,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(entry.until.saturating_duration_since(created_at))
    }
}

/// Taken before the Redis read of a value that may be kept locally.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    epoch: u64,
    session: u64,
    /// When it was taken: a kept value lives from here, so never past its
    /// Redis entry.
    at: Instant,
}

impl Ticket {
    pub fn at(&self) -> Instant {
        self.at
    }
}

impl LocalTier {
    pub fn new(max_bytes: u64, max_age: Duration) -> Self {
        LocalTier {
            held: HeldVersions::new((max_bytes / 256).clamp(1024, 1 << 20)),
            max_age,
            entries: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_key, entry: &Arc<Entry>| entry.weight)
                .expire_after(Expiry)
                .build(),
            session: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            table: Mutex::default(),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the backplane is confirmed (local entries may be served).
    pub fn is_up(&self) -> bool {
        is_up(self.session.load(Ordering::Acquire))
    }

    /// The entry under `key`, if it may be served.
    pub fn get(&self, key: &[u8]) -> Option<Arc<Entry>> {
        let session = self.session.load(Ordering::Acquire);
        if !is_up(session) {
            return None;
        }
        let entry = self.entries.get(key)?;
        let current = entry.session == session
            && Instant::now() < entry.until
            && !entry.cells.iter().any(|c| c.dead.load(Ordering::Acquire));
        current.then_some(entry)
    }

    /// Taken before a Redis read whose value may be kept: `None` while the
    /// backplane is down.
    pub fn ticket(&self) -> Option<Ticket> {
        let session = self.session.load(Ordering::Acquire);
        // The epoch after the session: a loss moves both.
        let epoch = self.epoch.load(Ordering::Acquire);
        (is_up(session)).then(|| Ticket {
            epoch,
            session,
            at: Instant::now(),
        })
    }

    /// Keeps a value read from Redis under `ticket` with these version
    /// keys, unless an invalidation (or a loss of the backplane) came since
    /// the ticket: whether it was kept.
    pub fn insert(
        &self,
        ticket: Ticket,
        key: Box<[u8]>,
        value: Value,
        value_len: usize,
        version_keys: impl Iterator<Item = String>,
        until: Instant,
    ) -> bool {
        let cells = {
            let mut table = self.table();
            if table.epoch != ticket.epoch || self.session.load(Ordering::Acquire) != ticket.session
            {
                return false;
            }
            let cells: Box<[Arc<Cell>]> = version_keys.map(|k| table.cell(k)).collect();
            table.sweep();
            cells
        };
        let until = until.min(ticket.at.checked_add(self.max_age).unwrap_or(until));
        let weight = 128 + key.len() + value_len + 48 * cells.len();
        self.entries.insert(
            key,
            Arc::new(Entry {
                value,
                cells,
                session: ticket.session,
                until,
                weight: u32::try_from(weight).unwrap_or(u32::MAX),
            }),
        );
        true
    }

    /// Applies an invalidation of these version keys: the local entries
    /// holding one are no longer served, and no value read before this is
    /// kept.
    pub fn invalidate<'k>(&self, version_keys: impl IntoIterator<Item = &'k str>) {
        let mut table = self.table();
        table.epoch += 1;
        self.epoch.store(table.epoch, Ordering::Release);
        for key in version_keys {
            if let Some(cell) = table.cells.remove(key).and_then(|c| c.upgrade()) {
                cell.dead.store(true, Ordering::Release);
            }
            self.held.forget(key);
        }
    }

    /// The held values of all these version keys, in their order, if each
    /// is held and may be used (see [`crate::held`]).
    pub fn held<N: std::fmt::Display>(
        &self,
        version_keys: impl ExactSizeIterator<Item = N>,
    ) -> Option<Vec<Arc<Held>>> {
        use std::fmt::Write;
        let session = self.session.load(Ordering::Acquire);
        if !is_up(session) {
            return None;
        }
        let mut held = Vec::with_capacity(version_keys.len());
        let mut name = String::with_capacity(96);
        for key in version_keys {
            name.clear();
            write!(name, "{key}").ok()?;
            held.push(self.held.get(&name, session)?);
        }
        Some(held)
    }

    /// Holds version values read from Redis under `ticket` (each key with
    /// the value it held), until `until` at the latest, unless an
    /// invalidation (or a loss of the backplane) came since the ticket:
    /// whether they are held.
    pub fn hold<'v>(
        &self,
        ticket: Ticket,
        versions: impl Iterator<Item = (String, &'v [u8])>,
        until: Instant,
    ) -> bool {
        let until = until.min(ticket.at.checked_add(self.max_age).unwrap_or(until));
        let table = self.table();
        if table.epoch != ticket.epoch || self.session.load(Ordering::Acquire) != ticket.session {
            return false;
        }
        for (key, value) in versions {
            self.held.hold(key.into(), value, ticket.session, until);
        }
        drop(table);
        true
    }

    /// The backplane is confirmed: a new session, with nothing from before
    /// it (invalidations may have been missed).
    pub fn up(&self) {
        self.transition(true);
    }

    /// The backplane dropped: nothing local is served until it is back.
    pub fn down(&self) {
        self.transition(false);
    }

    fn transition(&self, up: bool) {
        let mut table = self.table();
        let session = self.session.load(Ordering::Acquire);
        if (is_up(session)) == up {
            return;
        }
        table.epoch += 1;
        self.epoch.store(table.epoch, Ordering::Release);
        self.session.store(session + 1, Ordering::Release);
        table.cells.clear();
        table.swept_at = 0;
        self.held.forget_all();
        drop(table);
        self.entries.invalidate_all();
    }
}

impl Table {
    /// The live cell of a version key, made if it has none.
    fn cell(&mut self, key: String) -> Arc<Cell> {
        if let Some(cell) = self.cells.get(key.as_str()).and_then(Weak::upgrade) {
            return cell;
        }
        let cell = Arc::new(Cell::default());
        self.cells.insert(key.into(), Arc::downgrade(&cell));
        cell
    }

    /// Drops the cells no entry holds any more, when the table has doubled
    /// since the last sweep.
    fn sweep(&mut self) {
        if self.cells.len() < 1024 || self.cells.len() < 2 * self.swept_at {
            return;
        }
        self.cells.retain(|_, cell| cell.strong_count() > 0);
        self.swept_at = self.cells.len();
    }
}

/// Whether a session is one of a confirmed subscription.
fn is_up(session: u64) -> bool {
    session & 1 == 1
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{LocalTier, Value};

    fn keep(tier: &LocalTier, ticket: super::Ticket, key: &[u8], versions: &[&str]) -> bool {
        tier.insert(
            ticket,
            key.into(),
            Value::Bytes(b"42".as_slice().into()),
            2,
            versions.iter().map(|v| v.to_string()),
            Instant::now() + Duration::from_secs(60),
        )
    }

    #[test]
    fn nothing_is_kept_or_served_until_the_backplane_is_up() {
        let tier = LocalTier::new(1 << 20, Duration::from_secs(60));
        assert!(tier.ticket().is_none());
        tier.up();
        let ticket = tier.ticket().unwrap();
        assert!(keep(&tier, ticket, b"k", &["ns#tag:a"]));
        assert!(tier.get(b"k").is_some());
        tier.down();
        assert!(tier.get(b"k").is_none(), "served while down");
        assert!(tier.ticket().is_none());
        tier.up();
        assert!(tier.get(b"k").is_none(), "kept across a resubscription");
    }

    #[test]
    fn an_invalidated_version_ends_exactly_the_entries_holding_it() {
        let tier = LocalTier::new(1 << 20, Duration::from_secs(60));
        tier.up();
        let ticket = tier.ticket().unwrap();
        assert!(keep(&tier, ticket, b"a", &["ns#fn:f", "ns#tag:a"]));
        assert!(keep(&tier, ticket, b"b", &["ns#fn:f", "ns#tag:b"]));
        tier.invalidate(["ns#tag:a"]);
        assert!(tier.get(b"a").is_none());
        assert!(tier.get(b"b").is_some());
        // A value read after the invalidation is kept under a new cell.
        let ticket = tier.ticket().unwrap();
        assert!(keep(&tier, ticket, b"a", &["ns#fn:f", "ns#tag:a"]));
        assert!(tier.get(b"a").is_some());
        tier.invalidate(["ns#fn:f"]);
        assert!(tier.get(b"a").is_none() && tier.get(b"b").is_none());
    }

    #[test]
    fn a_value_read_before_an_invalidation_is_not_kept_after_it() {
        let tier = LocalTier::new(1 << 20, Duration::from_secs(60));
        tier.up();
        let before = tier.ticket().unwrap();
        // The message of an unrelated key arrives while the read is out:
        // the value is not kept (the epoch is the tier's, not the key's).
        tier.invalidate(["ns#tag:other"]);
        assert!(!keep(&tier, before, b"k", &["ns#tag:a"]));
        assert!(tier.get(b"k").is_none());
        // Nor across a loss of the backplane and its return.
        let before = tier.ticket().unwrap();
        tier.down();
        tier.up();
        assert!(!keep(&tier, before, b"k", &["ns#tag:a"]));
    }

    fn hold(tier: &LocalTier, ticket: super::Ticket, key: &str, value: &[u8]) -> bool {
        tier.hold(
            ticket,
            [(key.to_string(), value)].into_iter(),
            Instant::now() + Duration::from_secs(60),
        )
    }

    fn held(tier: &LocalTier, key: &str) -> Option<Vec<u8>> {
        let held = tier.held([key].into_iter())?;
        Some(held[0].value().to_vec())
    }

    #[test]
    fn versions_are_held_under_the_tiers_rules() {
        let tier = LocalTier::new(1 << 20, Duration::from_secs(60));
        assert!(tier.ticket().is_none());
        tier.up();
        let ticket = tier.ticket().unwrap();
        assert!(hold(&tier, ticket, "ns#tag:a", b"v1"));
        assert!(hold(&tier, ticket, "ns#tag:b", b"v2"));
        assert_eq!(held(&tier, "ns#tag:a").as_deref(), Some(&b"v1"[..]));
        assert!(tier.held(["ns#tag:a", "ns#tag:c"].into_iter()).is_none());
        // An invalidation ends exactly the versions it names.
        tier.invalidate(["ns#tag:a"]);
        assert!(held(&tier, "ns#tag:a").is_none());
        assert!(held(&tier, "ns#tag:b").is_some());
        // A version read before an invalidation (of any key) is not held.
        let before = tier.ticket().unwrap();
        tier.invalidate(["ns#tag:other"]);
        assert!(!hold(&tier, before, "ns#tag:a", b"v1"));
        assert!(held(&tier, "ns#tag:a").is_none());
        // A loss of the backplane ends them all, and they stay gone.
        let before = tier.ticket().unwrap();
        tier.down();
        assert!(held(&tier, "ns#tag:b").is_none());
        tier.up();
        assert!(held(&tier, "ns#tag:b").is_none());
        assert!(!hold(&tier, before, "ns#tag:b", b"v2"));
    }

    #[test]
    fn versions_are_not_held_past_the_max_age() {
        let tier = LocalTier::new(1 << 20, Duration::from_millis(20));
        tier.up();
        let ticket = tier.ticket().unwrap();
        assert!(hold(&tier, ticket, "ns#tag:a", b"v1"));
        assert!(held(&tier, "ns#tag:a").is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(held(&tier, "ns#tag:a").is_none());
    }

    #[test]
    fn an_entry_is_not_served_past_its_redis_ttl() {
        let tier = LocalTier::new(1 << 20, Duration::from_secs(60));
        tier.up();
        let ticket = tier.ticket().unwrap();
        let kept = tier.insert(
            ticket,
            b"k".as_slice().into(),
            Value::Bytes(b"42".as_slice().into()),
            2,
            std::iter::empty(),
            Instant::now() + Duration::from_millis(20),
        );
        assert!(kept && tier.get(b"k").is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(tier.get(b"k").is_none());
    }

    #[test]
    fn cells_no_entry_holds_are_swept() {
        let tier = LocalTier::new(64 << 10, Duration::from_secs(60));
        tier.up();
        for i in 0..5000u32 {
            let ticket = tier.ticket().unwrap();
            keep(&tier, ticket, &i.to_le_bytes(), &[&format!("ns#call:{i}")]);
        }
        tier.entries.run_pending_tasks();
        // 64 KiB holds a few hundred entries: the cells of evicted ones go.
        assert!(
            tier.table().cells.len() < 2500,
            "{}",
            tier.table().cells.len()
        );
    }
}
