//! # image-pull-secrets-provisioner
//!
//! A Kubernetes controller that gives pods short-lived, automatically refreshed credentials for private
//! container registries (Amazon ECR, Google Artifact Registry, Azure Container Registry) through identity
//! federation, with no static cloud keys anywhere.
//!
//! For every ServiceAccount annotated with a registry, an audience and a cloud principal, the controller mints
//! a short-lived ServiceAccount token (TokenRequest), exchanges it for registry credentials (AWS STS + ECR,
//! Google STS + IAM Credentials, or Entra ID + the ACR token exchange), writes a
//! `kubernetes.io/dockerconfigjson` Secret, attaches it to the ServiceAccount's `imagePullSecrets`, refreshes
//! it before it expires, removes what is no longer wanted, and evicts pods that got stuck pulling images
//! because they were created before their secret existed.
//!
//! ## Threads
//!
//! ```text
//!  watch-serviceaccounts ─┐  caches (configured                   ┌─ worker-0 ─┐
//!  watch-secrets ─────────┼─> ServiceAccounts, labelled secrets, ──┼─ worker-1 ─┼─> kube-apiserver,
//!  watch-pods (Pending) ──┘  pending pods) + work queue (keys)     └─ worker-N ─┘   cloud providers
//!  leader (Lease): opens the gate the workers take work behind
//!  http (metrics, healthz, readyz)    signals (SIGTERM/SIGINT → shutdown)
//!  http-conn (one per connection, each with its own deadline)
//!  events (writes the Events workers publish, and series repeats when due)
//! ```
//!
//! The watches fill the caches and map each event to the keys that need work; workers reconcile from the
//! caches, so only writes (and the rare read a cache cannot answer) reach the API server.
//!
//! Everything is synchronous: plain threads, blocking HTTP (ureq), one shutdown flag.
//!
//! The `check NAMESPACE/NAME` subcommand ([`check`]) walks one ServiceAccount's federation chain through the
//! same code — annotation parsing, TokenRequest, the provider exchanges — and says what to change.
//!
//! ## Errors
//!
//! Each layer adds its context once, so a failure reads as "what failed: why", for example
//! `ecr GetAuthorizationToken for arn:aws:iam::123456789012:role/pull: AccessDenied: ...`. Errors never carry
//! a token, key, password or signature.

pub mod annotations;
pub mod cache;
pub mod check;
pub mod cloud;
pub mod config;
pub mod controller;
pub mod events;
pub(crate) mod http;
pub mod image;
pub mod intern;
pub mod jitter;
pub mod key;
pub mod kube;
pub mod logger;
pub(crate) mod metrics;
pub(crate) mod percent;
pub mod proxy;
pub mod rate;
pub mod reconcile;
pub mod resolver;
pub mod retry;
pub mod runtime;
pub mod secret;
pub mod shutdown;
pub mod signal;
pub(crate) mod spec;
mod sync;
pub mod tcp;
pub mod transport;
