//! Randomness for spreading retries and refreshes over time.
//!
//! Jitter needs no cryptographic quality, only enough spread that many ServiceAccounts configured at the same
//! moment do not refresh at the same moment, so a small xorshift generator seeded from the clock and a
//! per-call counter is enough and keeps a random-number crate out of the binary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);

/// A pseudo-random number in `0..1`.
pub(crate) fn unit() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    // splitmix64 finaliser: turns correlated inputs into well-spread outputs.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// `base` stretched by a random factor in `1..1+fraction`.
pub(crate) fn stretch(base: Duration, fraction: f64) -> Duration {
    stretch_with(base, fraction, unit())
}

/// `base` stretched by the factor `1+fraction*unit`, for a draw `unit` in `0..1` made by the caller.
pub(crate) fn stretch_with(base: Duration, fraction: f64, unit: f64) -> Duration {
    base.mul_f64(1.0 + fraction.max(0.0) * unit)
}

/// `base` shrunk by a random factor in `1-fraction..1`.
pub(crate) fn shrink(base: Duration, fraction: f64) -> Duration {
    base.mul_f64(1.0 - fraction.clamp(0.0, 1.0) * unit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_stays_in_range_and_varies() {
        let samples: Vec<f64> = (0..1000).map(|_| unit()).collect();
        assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
    }

    #[test]
    fn stretch_and_shrink_bound_the_result() {
        let base = Duration::from_secs(10);
        for _ in 0..100 {
            let s = stretch(base, 0.2);
            assert!(s >= base && s <= Duration::from_secs(12));
            let s = shrink(base, 0.2);
            assert!(s <= base && s >= Duration::from_secs(8));
        }
    }
}
