//! The contract checker's shared model (`tests/tests/contract.rs` drives,
//! the `contract_worker` bin calls): a seeded PRNG, the values the cached
//! functions return, the settings both sides assume, and the keys of the
//! "database" server through which they talk.
//!
//! Two Redis servers take part. The *cache* server is the one under test:
//! the driver pauses, kills and restarts it and kills its clients. The
//! *database* server is never broken: it holds the database (one version,
//! `{ns}:db`, and a switch `{ns}:down`), the marks of completed
//! invalidations (`{ns}:mark:{scope}`), the state of the driver's fault
//! injection (`{ns}:chaos`) and of the run (`{ns}:phase`), and each
//! worker's acknowledgement (`{ns}:idle:{w}`, `{ns}:ready:{w}`).
//!
//! Values encode the function, the type, the argument and the database
//! version their body read ([`Val`]), so that a worker can tell a value of
//! another function, type or argument apart, and a value read before an
//! invalidation whose mark it had seen before the call started.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The cache's op timeout.
pub const OP_TIMEOUT: Duration = Duration::from_millis(100);
/// The cache's lease TTL (`lock_ttl`): longer than any latency bound, so
/// that a call waiting out a lease nobody holds exceeds the bound.
pub const LOCK_TTL: Duration = Duration::from_secs(4);
/// Consecutive failures that open the circuit breaker.
pub const BREAKER_FAILURES: u32 = 5;
/// How long the breaker stays open.
pub const OPEN_FOR: Duration = Duration::from_millis(500);
/// Round trips of the slowest call path without a lease wait (a miss:
/// read, versions and lease, store).
pub const ROUND_TRIPS: u32 = 3;
/// The longest a body sleeps (its "query"), on top of its database read.
pub const BODY_MAX: Duration = Duration::from_millis(20);
/// Room for a busy machine in every time bound: never a performance
/// assertion, a bound far above what a call takes.
pub const SLACK: Duration = Duration::from_secs(2);
/// How long the driver gives an invalidation to reach every process's
/// local tier before it publishes its mark.
pub const PROPAGATION: Duration = Duration::from_millis(300);
/// Arguments the workers call with (few: keys are hot, callers meet).
pub const IDS: u64 = 6;
/// The full paths of the worker's plain functions (for
/// `invalidate_function`).
pub const PLAIN_PATH: &str = "contract_worker::plain";
/// See [`PLAIN_PATH`].
pub const GRACED_PATH: &str = "contract_worker::graced";

/// The latency bound of a call made while Redis is healthy: the op timeout
/// for each round trip and two more (a lease poll, a retry), the body,
/// and [`SLACK`].
pub fn latency_bound() -> Duration {
    OP_TIMEOUT * (ROUND_TRIPS + 2) + BODY_MAX + Duration::from_millis(50) + SLACK
}

/// How long after Redis is back the breaker may still skip it.
pub fn breaker_bound() -> Duration {
    OPEN_FOR * 2 + SLACK
}

/// SplitMix64: a small seeded generator, the same sequence for a seed on
/// every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A duration between `lo` and `hi` ms.
    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// What every cached function returns: who computed it, for what, from
/// which database version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Val {
    /// The function (`plain`, `graced`, `repo`, `kept`).
    pub f: String,
    /// The type parameter (`A`, `B`), or `-`.
    pub ty: String,
    /// The argument.
    pub arg: u64,
    /// The database version the body read.
    pub ver: u64,
}

/// The invalidation scopes a call of `f` with `id` is covered by: the
/// marks that bound the version it may return.
pub fn scopes(f: &str, id: u64) -> Vec<String> {
    let mut s = vec!["all".to_string(), format!("item:{id}")];
    match f {
        "plain" => s.extend(["items".into(), "fn:plain".into()]),
        "graced" => s.extend(["items".into(), "fn:graced".into()]),
        _ => s.push("repo".into()),
    }
    s
}

/// Every scope the driver invalidates.
pub fn all_scopes() -> Vec<String> {
    let mut s: Vec<String> = ["all", "items", "repo", "fn:plain", "fn:graced"]
        .map(String::from)
        .to_vec();
    s.extend((0..IDS).map(|id| format!("item:{id}")));
    s
}

/// The state of the driver's fault injection, as stored in `{ns}:chaos`:
/// `epoch active last_end_ms`. Each fault moves the epoch; `active` is set
/// from before the first fault of a burst until Redis is healthy again,
/// when `last_end_ms` (wall clock) is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Chaos {
    /// Moved by each fault.
    pub epoch: u64,
    /// A burst of faults is under way.
    pub active: bool,
    /// When the last burst ended (ms since the Unix epoch).
    pub last_end_ms: u64,
}

impl Chaos {
    /// Parses `{ns}:chaos`; missing means none yet.
    pub fn parse(s: Option<&str>) -> Chaos {
        let Some(s) = s else {
            return Chaos::default();
        };
        let mut it = s.split_whitespace().map(|p| p.parse::<u64>().unwrap_or(0));
        Chaos {
            epoch: it.next().unwrap_or(0),
            active: it.next().unwrap_or(0) == 1,
            last_end_ms: it.next().unwrap_or(0),
        }
    }

    /// The stored form.
    pub fn render(&self) -> String {
        format!(
            "{} {} {}",
            self.epoch,
            u8::from(self.active),
            self.last_end_ms
        )
    }

    /// Whether Redis has been healthy since at least one lease TTL before
    /// `at_ms` (so that no lease left by a fault remains): the latency
    /// bound applies to a call started then.
    pub fn clean_at(&self, at_ms: u64) -> bool {
        !self.active && at_ms >= self.last_end_ms + LOCK_TTL.as_millis() as u64
    }
}

/// Now, in ms since the Unix epoch (the clock every process shares).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The keys of the database server, all under the run's namespace.
#[derive(Debug, Clone)]
pub struct Keys {
    ns: String,
}

impl Keys {
    /// The keys of the run `ns`.
    pub fn new(ns: &str) -> Self {
        Keys { ns: ns.to_string() }
    }

    /// The database's version.
    pub fn db(&self) -> String {
        format!("{}:db", self.ns)
    }

    /// `1` while the database is down (bodies fail).
    pub fn down(&self) -> String {
        format!("{}:down", self.ns)
    }

    /// The version written before the last completed invalidation of
    /// `scope`.
    pub fn mark(&self, scope: &str) -> String {
        format!("{}:mark:{scope}", self.ns)
    }

    /// [`Chaos`].
    pub fn chaos(&self) -> String {
        format!("{}:chaos", self.ns)
    }

    /// `run` (calls), `quiet` (no calls) or `stop` (report and exit).
    pub fn phase(&self) -> String {
        format!("{}:phase", self.ns)
    }

    /// How many `invalidate_all` the driver attempted.
    pub fn all_attempts(&self) -> String {
        format!("{}:all_attempts", self.ns)
    }

    /// Worker `w` is idle (set in the `quiet` phase).
    pub fn idle(&self, w: usize) -> String {
        format!("{}:idle:{w}", self.ns)
    }

    /// Worker `w` has started.
    pub fn ready(&self, w: usize) -> String {
        format!("{}:ready:{w}", self.ns)
    }
}

/// A line a worker prints: `VIOLATION <check> <details>`; the driver fails
/// on any.
pub fn violation(check: &str, details: impl std::fmt::Display) -> String {
    format!("VIOLATION {check} {details}")
}

/// The value of `name=<n>` in a `COUNTS` line.
pub fn count(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}
