//! In-process stampede protection: concurrent callers of one key share one
//! computation.
//!
//! The first caller of a key becomes its *leader*; later callers *follow*
//! and receive the leader's encoded value (no `Clone` of the result needed:
//! each follower decodes its own copy). How a flight ends decides what its
//! followers do:
//! - a value, stored or not (a `None` is shared though not cached): they
//!   decode it;
//! - a result that is not stored (an `Err`, a value that does not
//!   encode): they get it too when it can be cloned (the leader's `Err`,
//!   as Go's singleflight shares a failure); otherwise they run the body
//!   at once, each for itself, rather than queueing behind one another
//!   (one body time for all, not one each);
//! - no result (the leader panicked or was cancelled): they start again,
//!   and one of them leads.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

/// What a flight ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Landing {
    /// The value's encoding.
    Value(Arc<[u8]>),
    /// A result that is not stored (an `Err`): the result itself for the
    /// followers to clone, when it can be cloned.
    Failed(Option<Shared>),
    /// No result: the leader panicked or was dropped.
    Abandoned,
}

/// A leader's result that is not stored, type-erased, for its followers
/// to clone.
#[derive(Clone)]
pub(crate) struct Shared(pub Arc<dyn Any + Send + Sync>);

impl PartialEq for Shared {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Shared {}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

/// A running flight: where its landing comes, and when it began.
type Running = (watch::Receiver<Option<Landing>>, Instant);

#[derive(Default)]
pub(crate) struct Flights {
    /// Each running flight's landing, and when it began.
    running: Mutex<HashMap<Vec<u8>, Running>>,
    /// Bumped whenever a flight ends, so that a caller that read the backend
    /// before another flight landed knows to read again.
    landed: AtomicU64,
}

pub(crate) enum Join<'a> {
    Leader(Flight<'a>),
    Follower(Follower),
}

/// The leader's side: completes the flight once, on `land` or on drop.
pub(crate) struct Flight<'a> {
    flights: &'a Flights,
    /// Where new callers find the flight; `None` once it takes no more.
    key: Option<Vec<u8>>,
    tx: Option<watch::Sender<Option<Landing>>>,
}

pub(crate) struct Follower(watch::Receiver<Option<Landing>>, Instant);

impl Flights {
    /// A counter to pass to [`Flight::landed_since`].
    pub fn epoch(&self) -> u64 {
        self.landed.load(Ordering::Acquire)
    }

    pub fn join(&self, key: Vec<u8>) -> Join<'_> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((rx, began)) = running.get(&key) {
            return Join::Follower(Follower(rx.clone(), *began));
        }
        let (tx, rx) = watch::channel(None);
        running.insert(key.clone(), (rx, Instant::now()));
        Join::Leader(Flight {
            flights: self,
            key: Some(key),
            tx: Some(tx),
        })
    }
}

impl Flight<'_> {
    /// Whether some flight landed since `epoch` was read (then the backend
    /// may hold a value that was not there at the caller's first read).
    pub fn landed_since(&self, epoch: u64) -> bool {
        self.flights.epoch() != epoch
    }

    /// Moves the flight to `key`: callers that join under its old key from
    /// now on lead a flight of their own. When `key` already has a flight,
    /// this one stays where no one can join it and the other is returned to
    /// follow.
    pub fn rekey(&mut self, key: Vec<u8>) -> Option<Follower> {
        let mut running = self
            .flights
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let began = self
            .key
            .take()
            .and_then(|old| running.remove(&old))
            .map_or_else(Instant::now, |(_, began)| began);
        if let Some((rx, began)) = running.get(&key) {
            return Some(Follower(rx.clone(), *began));
        }
        let tx = self.tx.as_ref()?;
        running.insert(key.clone(), (tx.subscribe(), began));
        self.key = Some(key);
        None
    }

    /// Ends the flight and hands `landing` to every follower.
    pub fn land(mut self, landing: Landing) {
        self.finish(landing);
    }

    /// Ends the flight with a value for every follower.
    pub fn land_value(self, value: &[u8]) {
        self.land(Landing::Value(Arc::from(value)));
    }

    fn finish(&mut self, landing: Landing) {
        if let Some(tx) = self.tx.take() {
            if let Some(key) = self.key.take() {
                self.flights
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
            }
            self.flights.landed.fetch_add(1, Ordering::AcqRel);
            // No receiver left is fine: nobody was waiting.
            let _ = tx.send(Some(landing));
        }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        // The leader panicked or its future was dropped: release the followers.
        self.finish(Landing::Abandoned);
    }
}

impl Follower {
    /// When the flight began (its leader joined).
    pub fn began(&self) -> Instant {
        self.1
    }

    /// Waits for the leader.
    pub async fn wait(mut self) -> Landing {
        match self.0.wait_for(Option::is_some).await {
            Ok(landing) => landing.clone().unwrap_or(Landing::Abandoned),
            Err(_) => Landing::Abandoned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_value() {
        let flights = Flights::default();
        let Join::Leader(leader) = flights.join(b"k".to_vec()) else {
            panic!("first caller must lead")
        };
        let Join::Follower(f) = flights.join(b"k".to_vec()) else {
            panic!("second caller must follow")
        };
        leader.land_value(b"42");
        assert_eq!(f.wait().await, Landing::Value(Arc::from(&b"42"[..])));
        assert!(
            matches!(flights.join(b"k".to_vec()), Join::Leader(_)),
            "a landed flight is gone"
        );
    }

    #[tokio::test]
    async fn a_rekeyed_flight_takes_joiners_under_its_new_key_only() {
        let flights = Flights::default();
        let Join::Leader(mut leader) = flights.join(b"old".to_vec()) else {
            panic!("first caller must lead")
        };
        let Join::Follower(early) = flights.join(b"old".to_vec()) else {
            panic!("joins before the move follow")
        };
        assert!(leader.rekey(b"new".to_vec()).is_none());
        let Join::Leader(other) = flights.join(b"old".to_vec()) else {
            panic!("the old key takes no more followers")
        };
        let Join::Follower(late) = flights.join(b"new".to_vec()) else {
            panic!("the new key does")
        };
        let mut other = other;
        assert!(
            other.rekey(b"new".to_vec()).is_some(),
            "the new key is taken"
        );
        drop(other); // unregistered: must not remove the leader's entry
        assert!(matches!(flights.join(b"new".to_vec()), Join::Follower(_)));
        leader.land_value(b"1");
        assert_eq!(early.wait().await, Landing::Value(Arc::from(&b"1"[..])));
        assert_eq!(late.wait().await, Landing::Value(Arc::from(&b"1"[..])));
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_its_followers() {
        let flights = Flights::default();
        let leader = flights.join(b"k".to_vec());
        let Join::Follower(f) = flights.join(b"k".to_vec()) else {
            panic!("second caller must follow")
        };
        drop(leader);
        assert_eq!(f.wait().await, Landing::Abandoned);
        let Join::Leader(leader) = flights.join(b"k".to_vec()) else {
            panic!("a dropped flight is gone")
        };
        let Join::Follower(f) = flights.join(b"k".to_vec()) else {
            panic!("second caller must follow")
        };
        leader.land(Landing::Failed(None));
        assert_eq!(f.wait().await, Landing::Failed(None));
    }
}
