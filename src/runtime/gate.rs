//! A gate threads wait at until it opens or closes for good: standby workers waiting for leadership, the
//! main thread waiting for the initial lists. Waiting is blocking, never polling.

use crate::sync::{lock, wait_timeout};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct State {
    open: bool,
    closed_for_good: bool,
}

/// Open, closed, or closed for good (shutdown): every change wakes every waiter.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    state: Mutex<State>,
    changed: Condvar,
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn set_open(&self, open: bool) {
        lock(&self.state).open = open;
        self.changed.notify_all();
    }

    /// Wakes every waiter for good: [`Gate::wait_open`] returns false from now on.
    pub(crate) fn close_for_good(&self) {
        lock(&self.state).closed_for_good = true;
        self.changed.notify_all();
    }

    /// Blocks until the gate is open (true), closed for good, or `timeout` passed (false).
    pub(crate) fn wait_open(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.state);
        loop {
            if state.closed_for_good {
                return false;
            }
            if state.open {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = wait_timeout(&self.changed, state, deadline - now).0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn waiters_wake_when_it_opens_or_closes_for_good() {
        let gate = Arc::new(Gate::new());
        assert!(!gate.wait_open(Duration::from_millis(10)));
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.wait_open(Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(20));
        let started = Instant::now();
        gate.set_open(true);
        assert!(waiter.join().unwrap());
        assert!(started.elapsed() < Duration::from_secs(5));
        gate.set_open(false);
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.wait_open(Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(20));
        gate.close_for_good();
        assert!(!waiter.join().unwrap());
        gate.set_open(true);
        assert!(
            !gate.wait_open(Duration::from_secs(1)),
            "closed for good stays closed"
        );
    }
}
