//! Deadlines from caller-given durations, which may be anything a user typed.

use std::time::{Duration, Instant};

/// The instant `after` from now, or a century from now where `after` is longer than the
/// clock can represent (`Instant + Duration` panics on overflow: `--nvml-timeout=1e19`).
#[must_use]
pub fn deadline(after: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let now = Instant::now();
    now.checked_add(after.min(CENTURY)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_duration_is_a_deadline_after_now() {
        let now = Instant::now();
        for after in [Duration::ZERO, Duration::from_secs(30), Duration::MAX] {
            assert!(deadline(after) >= now);
        }
        assert!(deadline(Duration::MAX) > now + Duration::from_secs(3600 * 24 * 365));
        assert!(deadline(Duration::from_secs(1)) <= Instant::now() + Duration::from_secs(1));
    }
}
