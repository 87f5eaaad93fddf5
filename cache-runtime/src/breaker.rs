//! The circuit breaker: after a run of consecutive failures to reach Redis,
//! calls skip it (they run uncached at once, counted in `Stats::skipped`)
//! until the breaker has been open for a while; then one call probes, and
//! its outcome closes the breaker or opens it again.
//!
//! Only failures to reach Redis count (timeouts, refused or broken
//! connections): an error that Redis answered means it is up.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// One breaker per Redis backend.
#[derive(Debug)]
pub(crate) struct Breaker {
    /// Consecutive failures that open it; 0 turns it off.
    threshold: u32,
    open_for: Duration,
    failures: AtomicU32,
    /// When it opened, in ms since `epoch`; 0 while closed.
    opened_at: AtomicU64,
    /// A probe is under way (the breaker is half open).
    probing: AtomicBool,
    epoch: Instant,
}

/// May this operation go to Redis?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Yes.
    Go,
    /// Yes, as the probe of a half-open breaker.
    Probe,
    /// No: the breaker is open.
    Skip,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Breaker {
            threshold,
            open_for,
            failures: AtomicU32::new(0),
            opened_at: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        // +1: 0 means closed.
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    pub fn admit(&self) -> Admit {
        let opened = self.opened_at.load(Ordering::Acquire);
        if opened == 0 {
            return Admit::Go;
        }
        let open_for = u64::try_from(self.open_for.as_millis()).unwrap_or(u64::MAX);
        if self.now_ms().saturating_sub(opened) < open_for {
            return Admit::Skip;
        }
        if self.probing.swap(true, Ordering::AcqRel) {
            Admit::Skip
        } else {
            Admit::Probe
        }
    }

    /// Admits an operation, as [`admit`](Self::admit), with a guard that
    /// releases the probe if the operation ends without an outcome (its
    /// caller was cancelled): the next call probes then, instead of every
    /// call skipping Redis for good.
    pub fn enter(&self) -> Admission<'_> {
        Admission {
            breaker: self,
            admitted: self.admit(),
        }
    }

    /// The outcome of an admitted operation: whether Redis was reached.
    /// Returns true when this failure opened the breaker.
    pub fn record(&self, admitted: Admit, reached: bool) -> bool {
        if self.threshold == 0 {
            return false;
        }
        if reached {
            // Written only when there is something to reset: every hit
            // passes here, and a shared write per hit would contend.
            if self.failures.load(Ordering::Relaxed) != 0 {
                self.failures.store(0, Ordering::Relaxed);
            }
            if admitted == Admit::Probe || self.opened_at.load(Ordering::Relaxed) != 0 {
                self.opened_at.store(0, Ordering::Release);
            }
            if admitted == Admit::Probe {
                self.probing.store(false, Ordering::Release);
            }
            return false;
        }
        if admitted == Admit::Probe {
            // Still down: open for another while.
            self.opened_at.store(self.now_ms(), Ordering::Release);
            self.probing.store(false, Ordering::Release);
            return false;
        }
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures == self.threshold {
            self.opened_at.store(self.now_ms(), Ordering::Release);
            return true;
        }
        false
    }
}

/// An admitted operation under way; see [`Breaker::enter`].
pub(crate) struct Admission<'a> {
    breaker: &'a Breaker,
    admitted: Admit,
}

impl Admission<'_> {
    /// What the breaker said.
    pub fn admitted(&self) -> Admit {
        self.admitted
    }

    /// The operation's outcome: whether Redis was reached. Returns true
    /// when this failure opened the breaker.
    pub fn record(mut self, reached: bool) -> bool {
        let admitted = std::mem::replace(&mut self.admitted, Admit::Skip);
        self.breaker.record(admitted, reached)
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if self.admitted == Admit::Probe {
            // Cancelled before its outcome: the breaker stays open (the
            // probe proved nothing), and the next call may probe.
            self.breaker.probing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_then_one_probe_decides() {
        let b = Breaker::new(3, Duration::from_secs(1));
        for _ in 0..2 {
            assert_eq!(b.admit(), Admit::Go);
            assert!(!b.record(Admit::Go, false));
        }
        assert!(b.record(Admit::Go, false), "the third failure opens it");
        assert_eq!(b.admit(), Admit::Skip);
        tokio::time::advance(Duration::from_millis(1_001)).await;
        assert_eq!(b.admit(), Admit::Probe);
        assert_eq!(b.admit(), Admit::Skip, "one probe at a time");
        b.record(Admit::Probe, false);
        assert_eq!(b.admit(), Admit::Skip, "a failed probe opens it again");
        tokio::time::advance(Duration::from_millis(1_001)).await;
        assert_eq!(b.admit(), Admit::Probe);
        b.record(Admit::Probe, true);
        assert_eq!(b.admit(), Admit::Go, "a probe that reached Redis closes it");
        assert_eq!(b.failures.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_dropped_without_an_outcome_lets_the_next_call_probe() {
        let b = Breaker::new(1, Duration::from_secs(1));
        assert!(b.enter().record(false), "the first failure opens it");
        tokio::time::advance(Duration::from_millis(1_001)).await;
        let probe = b.enter();
        assert_eq!(probe.admitted(), Admit::Probe);
        assert_eq!(b.admit(), Admit::Skip, "one probe at a time");
        drop(probe);
        let probe = b.enter();
        assert_eq!(
            probe.admitted(),
            Admit::Probe,
            "the dropped probe was released"
        );
        probe.record(true);
        assert_eq!(b.admit(), Admit::Go);
    }

    #[test]
    fn a_threshold_of_zero_turns_it_off() {
        let b = Breaker::new(0, Duration::from_secs(1));
        for _ in 0..10 {
            assert!(!b.record(Admit::Go, false));
            assert_eq!(b.admit(), Admit::Go);
        }
    }

    #[test]
    fn a_success_resets_the_run() {
        let b = Breaker::new(2, Duration::from_secs(1));
        b.record(Admit::Go, false);
        b.record(Admit::Go, true);
        assert!(!b.record(Admit::Go, false), "not two in a row");
    }
}
