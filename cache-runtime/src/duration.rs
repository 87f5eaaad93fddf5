//! Durations as the whole milliseconds that Redis and the entry header
//! take.

use std::time::Duration;

/// `d` in whole milliseconds, saturating at `u64::MAX` (a duration of
/// centuries stays a large number rather than wrapping).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn whole_milliseconds_saturating() {
        assert_eq!(super::millis(Duration::from_micros(1500)), 1);
        assert_eq!(super::millis(Duration::ZERO), 0);
        assert_eq!(super::millis(Duration::MAX), u64::MAX);
    }
}
