//! The one backoff policy of the background tasks that reconnect after a
//! failure (the backplane's subscription, the sentinels' announcements):
//! the next try waits 250 ms, doubling after each failure up to 30 s, and
//! back to 250 ms after a success. A user without channel rights, or a
//! server that is gone for good, costs a connection every 30 s, not one
//! every 250 ms forever.

use std::time::Duration;

/// The wait before a background task's next try.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    /// The first wait after a failure (and after a success).
    pub const FIRST: Duration = Duration::from_millis(250);
    /// The longest wait.
    pub const MAX: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// A try succeeded: the next failure waits [`FIRST`](Self::FIRST) again.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// A failure that a try within seconds will not mend (a configuration
    /// fact, such as missing rights): the next wait is the longest.
    pub fn longest(&mut self) {
        self.next = Self::MAX;
    }

    /// Waits before the next try, and doubles the wait after it.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Self::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;

    #[tokio::test(start_paused = true)]
    async fn doubles_up_to_the_bound_and_starts_over_after_a_success() {
        let mut backoff = Backoff::new();
        let mut waits = Vec::new();
        for _ in 0..10 {
            let started = tokio::time::Instant::now();
            backoff.wait().await;
            waits.push(started.elapsed().as_millis());
        }
        assert_eq!(
            waits,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        backoff.reset();
        let started = tokio::time::Instant::now();
        backoff.wait().await;
        assert_eq!(started.elapsed().as_millis(), 250);
    }
}
