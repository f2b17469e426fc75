//! A token bucket shared by every provider request of the process: `burst` requests may go at once, then
//! `per_second` on average. Callers wait (sleep) for their token, so a backlog drains at a pace the
//! providers' quotas allow instead of being throttled by them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::http::RateLimit;

#[derive(Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn new(limit: RateLimit) -> Self {
        let limit = RateLimit {
            per_second: limit.per_second.max(0.001),
            burst: limit.burst.max(1),
        };
        TokenBucket {
            state: Mutex::new(State {
                tokens: f64::from(limit.burst),
                updated: Instant::now(),
            }),
            limit,
        }
    }

    /// Takes one token, waiting until there is one. Tokens are handed out in the order they are reserved:
    /// a caller that must wait reserves its token at once (the count goes negative) and sleeps until it is
    /// due, so waiting callers never race each other.
    pub fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Reserves a token at `now` and returns how long to wait for it.
    fn reserve(&self, now: Instant) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(state.updated).as_secs_f64();
        state.tokens =
            (state.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
        state.updated = now;
        state.tokens -= 1.0;
        if state.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-state.tokens / self.limit.per_second)
        }
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
}
