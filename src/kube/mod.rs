//! A small Kubernetes API client: connection configuration, typed REST calls, and watch streams.
//!
//! Only what the controller uses is here. There is no object cache: the watch loop in
//! [`crate::runtime::watcher`] streams events to consumers that decide what to remember ([`crate::cache`]).

mod agent;
mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod exec;
pub mod types;
pub mod watch;
mod yaml;

pub use client::{Client, ListParams, Patch};
pub use config::Connection;
pub use error::{Error, Reason};
