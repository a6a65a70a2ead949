//! Retrying within a bound: the one backoff the runtime uses while the broker or a coordinator
//! cannot be reached (offset commits, aborting a transaction, replacing the producer, reopening
//! tasks after an abort).
//!
//! Owns: the delays (100 ms doubling to 2 s) and the bound check. May not touch: what is retried
//! or which errors are worth retrying (the callers decide).

use std::time::{Duration, Instant};

/// The first delay.
const FIRST: Duration = Duration::from_millis(100);
/// The longest delay.
const MAX: Duration = Duration::from_secs(2);

/// Exponential backoff bounded by a total time from `began`.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    began: Instant,
    bound: Duration,
    delay: Duration,
}

impl Backoff {
    /// A backoff whose retries all end within `bound` from `began`.
    pub(super) fn since(began: Instant, bound: Duration) -> Backoff {
        Backoff {
            began,
            bound,
            delay: FIRST,
        }
    }

    /// A backoff whose retries all end within `bound` from now.
    pub(super) fn within(bound: Duration) -> Backoff {
        Backoff::since(Instant::now(), bound)
    }

    /// The time since the first attempt.
    pub(super) fn elapsed(&self) -> Duration {
        self.began.elapsed()
    }

    /// The delay before the next retry.
    pub(super) fn delay(&self) -> Duration {
        self.delay
    }

    /// Whether waiting the next delay still ends within the bound.
    pub(super) fn may_retry(&self) -> bool {
        self.elapsed() + self.delay < self.bound
    }

    /// Sleeps the delay, then doubles it (up to 2 s).
    pub(super) fn wait(&mut self) {
        std::thread::sleep(self.delay);
        self.advance();
    }

    fn advance(&mut self) {
        self.delay = (self.delay * 2).min(MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_two_seconds() {
        let mut b = Backoff::within(Duration::from_secs(60));
        let mut seen = Vec::new();
        for _ in 0..7 {
            seen.push(b.delay().as_millis());
            b.advance();
        }
        assert_eq!(seen, [100, 200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn no_retry_past_the_bound() {
        let b = Backoff::within(Duration::from_secs(60));
        assert!(b.may_retry());
        // The first delay alone does not fit in a 50 ms bound.
        let b = Backoff::within(Duration::from_millis(50));
        assert!(!b.may_retry());
        let b = Backoff::since(
            Instant::now() - Duration::from_secs(10),
            Duration::from_secs(10),
        );
        assert!(!b.may_retry());
    }
}
