//! How many Event writes may go: per object, client-go's spam filter ([`OBJECT_BURST`], one more every
//! [`OBJECT_REFILL`]), which drops what it refuses; for the whole process, the global pace ([`GLOBAL_BURST`],
//! then [`GLOBAL_PER_SECOND`] a second), which makes a write wait for its turn instead.
//!
//! What must stay true: an object's bucket costs 8 bytes (a cold start leaves one per ServiceAccount for five
//! minutes) and is forgotten once it is full again, which changes nothing; the global pace is the same
//! [`TokenBucket`] the providers are paced by.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::rate::{self, RateLimit, TokenBucket};

/// Writes about one object in a burst (client-go's spam filter: 25).
pub(crate) const OBJECT_BURST: f64 = 25.0;
/// One more write about an object per this long (client-go's spam filter: 1 per 5 minutes).
pub(crate) const OBJECT_REFILL: Duration = Duration::from_secs(300);
/// Event writes of the whole process in a burst: room for a wave of first failures after an outage.
pub(crate) const GLOBAL_BURST: u32 = 100;
/// Event writes of the whole process per second in the long run: an outage over 10,000 ServiceAccounts
/// costs the API server at most this, whatever the retry rate.
pub(crate) const GLOBAL_PER_SECOND: f64 = 50.0;

/// The global pace, full at `now`.
pub(super) fn global_pace(now: Instant) -> TokenBucket {
    TokenBucket::full_at(
        RateLimit {
            per_second: GLOBAL_PER_SECOND,
            burst: GLOBAL_BURST,
        },
        now,
    )
}

/// Blocks until the global pace allows one more write (at most 1 / [`GLOBAL_PER_SECOND`] s at a time).
pub(super) fn wait_for_turn(pace: &TokenBucket) {
    while let Err(wait) = pace.try_take(Instant::now()) {
        std::thread::sleep(wait.max(Duration::from_millis(1)));
    }
}

/// An object's spam-filter bucket in 8 bytes: tokens, and the second (of the [`SpamFilter`]'s clock) they
/// were counted at.
#[derive(Debug, Clone, Copy)]
pub(super) struct ObjectBucket {
    tokens: f32,
    at: u32,
}

impl ObjectBucket {
    fn full(at: u32) -> Self {
        ObjectBucket {
            tokens: OBJECT_BURST as f32,
            at,
        }
    }

    fn refill(&mut self, at: u32) {
        let elapsed = at.saturating_sub(self.at);
        self.tokens = rate::refilled(
            f64::from(self.tokens),
            f64::from(elapsed),
            1.0 / OBJECT_REFILL.as_secs_f64(),
            OBJECT_BURST,
        ) as f32;
        self.at = self.at.max(at);
    }

    /// Takes a token if there is one.
    fn take(&mut self, at: u32) -> bool {
        self.refill(at);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// Full again: forgetting it changes nothing.
    fn is_full(&mut self, at: u32) -> bool {
        self.refill(at);
        self.tokens >= OBJECT_BURST as f32
    }
}

/// The spam filter: a bucket per object (by its UID's 64-bit hash), counted in whole seconds since `began`.
pub(super) struct SpamFilter {
    pub(super) buckets: HashMap<u64, ObjectBucket>,
    began: Instant,
}

impl SpamFilter {
    pub(super) fn new(now: Instant) -> Self {
        SpamFilter {
            buckets: HashMap::new(),
            began: now,
        }
    }

    /// Takes a token from `object`'s bucket, or says it refused.
    pub(super) fn take(&mut self, object: u64, now: Instant) -> Result<(), &'static str> {
        let at = self.second(now);
        let bucket = self
            .buckets
            .entry(object)
            .or_insert_with(|| ObjectBucket::full(at));
        if !bucket.take(at) {
            return Err("rate limit of events about this object");
        }
        Ok(())
    }

    /// Forgets the buckets that are full again and gives back the room they took.
    pub(super) fn prune(&mut self, now: Instant) {
        let at = self.second(now);
        self.buckets.retain(|_, bucket| !bucket.is_full(at));
        super::give_back_room(&mut self.buckets);
    }

    pub(super) fn len(&self) -> usize {
        self.buckets.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// `now` in the buckets' whole seconds.
    fn second(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.began).as_secs()).unwrap_or(u32::MAX)
    }
}
