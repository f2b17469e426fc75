//! Token buckets: `burst` tokens at once, then `per_second` on average — the one bucket behind every pace of
//! the process (provider requests, Event writes), and the refill arithmetic of the events' compact per-object
//! buckets.
//!
//! What must stay true: a bucket never holds more than its burst; tokens accrue with the time passed in, and a
//! clock read that runs behind the last one adds nothing; [`TokenBucket::acquire`] hands tokens out in the
//! order they are reserved, so waiting callers never race each other; [`TokenBucket::try_take`] takes a token
//! only when there is one, and otherwise says how long until there is.

use crate::sync::lock;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How fast a bucket refills and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens per second, sustained.
    pub per_second: f64,
    /// Tokens that may go at once after a quiet period.
    pub burst: u32,
}

/// `tokens` after `elapsed_secs` more of refilling at `per_second`, capped at `burst`.
pub(crate) fn refilled(tokens: f64, elapsed_secs: f64, per_second: f64, burst: f64) -> f64 {
    (tokens + elapsed_secs * per_second).min(burst)
}

/// A token bucket shared by threads (a provider client's clones, the `events` thread).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    limit: RateLimit,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Below zero while callers wait for tokens they reserved.
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket (at least one token, refilled at least once in 1,000 s).
    pub(crate) fn new(limit: RateLimit) -> Self {
        TokenBucket::full_at(limit, Instant::now())
    }

    /// A bucket full at `now`.
    pub(crate) fn full_at(limit: RateLimit, now: Instant) -> Self {
        let limit = RateLimit {
            per_second: limit.per_second.max(0.001),
            burst: limit.burst.max(1),
        };
        TokenBucket {
            state: Mutex::new(State {
                tokens: f64::from(limit.burst),
                updated: now,
            }),
            limit,
        }
    }

    /// Takes one token, waiting until there is one. Tokens are handed out in the order they are reserved:
    /// a caller that must wait reserves its token at once (the count goes negative) and sleeps until it is
    /// due, so waiting callers never race each other.
    pub(crate) fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Takes a token if there is one at `now`; otherwise takes nothing and says how long until there is one.
    pub(crate) fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.refill(now);
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - state.tokens) / self.limit.per_second,
            ))
        }
    }

    /// Reserves a token at `now` and returns how long to wait for it.
    fn reserve(&self, now: Instant) -> Duration {
        let mut state = self.refill(now);
        state.tokens -= 1.0;
        if state.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-state.tokens / self.limit.per_second)
        }
    }

    /// The state, with the tokens accrued up to `now` added.
    fn refill(&self, now: Instant) -> std::sync::MutexGuard<'_, State> {
        let mut state = lock(&self.state);
        let elapsed = now.saturating_duration_since(state.updated).as_secs_f64();
        state.tokens = refilled(
            state.tokens,
            elapsed,
            self.limit.per_second,
            f64::from(self.limit.burst),
        );
        state.updated = state.updated.max(now);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let bucket = TokenBucket::new(RateLimit {
            per_second: 10.0,
            burst: 3,
        });
        let start = Instant::now();
        let waits: Vec<u128> = (0..6).map(|_| bucket.reserve(start).as_millis()).collect();
        assert_eq!(waits, vec![0, 0, 0, 100, 200, 300]);
        // A second later the debt is paid and 7 tokens accrued, capped at the burst.
        let later = start + Duration::from_millis(1300);
        let waits: Vec<u128> = (0..4).map(|_| bucket.reserve(later).as_millis()).collect();
        assert_eq!(waits, vec![0, 0, 0, 100]);
    }

    #[test]
    fn trying_takes_only_a_token_that_is_there_and_a_late_clock_adds_nothing() {
        let start = Instant::now();
        let bucket = TokenBucket::full_at(
            RateLimit {
                per_second: 10.0,
                burst: 2,
            },
            start,
        );
        assert_eq!(bucket.try_take(start), Ok(()));
        assert_eq!(bucket.try_take(start), Ok(()));
        assert_eq!(bucket.try_take(start), Err(Duration::from_millis(100)));
        assert_eq!(
            bucket.try_take(start),
            Err(Duration::from_millis(100)),
            "a refused try reserves nothing"
        );
        let later = start + Duration::from_millis(150);
        assert_eq!(bucket.try_take(later), Ok(()));
        // A read of the clock taken before `later` (another thread's) neither adds nor removes time.
        assert!(bucket.try_take(start).is_err());
        assert_eq!(
            bucket.try_take(later + Duration::from_millis(50)),
            Ok(()),
            "0.5 + 0.5 tokens: the 50 ms after `later` count once"
        );
    }
}
