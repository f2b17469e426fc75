//! The one shutdown flag every thread watches, with a wake-up so that sleeping threads notice at once.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::sync::{lock, wait, wait_timeout};

/// A shared, one-way shutdown signal. Cheap to clone.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every thread to stop and wakes those that are sleeping.
    pub fn trigger(&self) {
        let (flag, wake) = &*self.inner;
        *lock(flag) = true;
        wake.notify_all();
    }

    pub(crate) fn is_triggered(&self) -> bool {
        *lock(&self.inner.0)
    }

    /// Blocks until shutdown is triggered.
    pub(crate) fn wait(&self) {
        let (flag, wake) = &*self.inner;
        let mut triggered = lock(flag);
        while !*triggered {
            triggered = wait(wake, triggered);
        }
    }

    /// Sleeps for `duration` or until shutdown, whichever comes first. Returns true if shutting down.
    pub(crate) fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let (flag, wake) = &*self.inner;
        let mut triggered = lock(flag);
        while !*triggered {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            triggered = wait_timeout(wake, triggered, deadline - now).0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_ends_early_on_trigger() {
        let shutdown = Shutdown::new();
        let other = shutdown.clone();
        let started = Instant::now();
        let sleeper = std::thread::spawn(move || other.sleep(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(50));
        shutdown.trigger();
        assert!(sleeper.join().unwrap());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(shutdown.is_triggered());
    }

    #[test]
    fn wait_returns_on_trigger() {
        let shutdown = Shutdown::new();
        let other = shutdown.clone();
        let waiter = std::thread::spawn(move || other.wait());
        std::thread::sleep(Duration::from_millis(20));
        shutdown.trigger();
        waiter.join().unwrap();
        shutdown.wait();
    }

    #[test]
    fn sleep_runs_its_course_without_trigger() {
        assert!(!Shutdown::new().sleep(Duration::from_millis(10)));
    }
}
