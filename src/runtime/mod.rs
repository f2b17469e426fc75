//! The controller runtime: watch loops, the caches they fill and the mappers from watch events to work keys,
//! the work queue, leader election, and the gate idle workers wait at.

pub mod caches;
pub mod gate;
pub mod leader;
pub mod pods;
pub mod queue;
pub mod secrets;
pub mod service_accounts;
pub mod store;
pub mod watcher;
