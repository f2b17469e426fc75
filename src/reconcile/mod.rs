//! Reconcilers: what one worker does for one key. Level-triggered: each run reads the current state from the
//! caches the watches keep (the API server only when a cache cannot know) and moves it toward what the
//! annotations ask for.

pub(crate) mod evictor;
pub(crate) mod plan;
pub(crate) mod service_account;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cache::Caches;
use crate::cloud::CredentialSource;
use crate::events::EventRecorder;
use crate::key::ObjectKey;
use crate::kube::Client;
use crate::retry::{Backoff, Retry};
use crate::sync::lock;

/// Settings of reconciliation, from flags.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Lifetime of the ServiceAccount tokens minted for each exchange (the API's minimum, 600 s, by default).
    pub token_expiration: Duration,
    /// No ServiceAccount is processed again sooner than this after a success, whatever its credentials say.
    pub min_requeue: Duration,
    /// Refreshes are brought forward by up to this fraction of the wait, to spread them out.
    pub refresh_jitter: f64,
    /// The lifetime assumed for secrets that do not record when they were obtained (the original's).
    pub assumed_lifetime_aws: Duration,
    pub assumed_lifetime_google: Duration,
    pub assumed_lifetime_azure: Duration,
    pub pod_eviction: bool,
    /// ServiceAccounts listing more principals than this get one Warning and nothing else.
    pub max_principals: usize,
    /// Hosts or DNS suffixes an Azure registry may have besides `NAME.azurecr.{io,us,cn}`; any other host a
    /// ServiceAccount names is refused before a request is made.
    pub azure_registry_suffixes: Vec<String>,
    /// The longest wait between attempts for a ServiceAccount whose provider keeps returning credentials that
    /// are already expired (the wait starts at `min_requeue` and doubles).
    pub expired_backoff_max: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token_expiration: Duration::from_secs(600),
            min_requeue: Duration::from_secs(60),
            refresh_jitter: 0.1,
            assumed_lifetime_aws: Duration::from_secs(12 * 3600),
            assumed_lifetime_google: Duration::from_secs(3600),
            // ACR refresh tokens live about three hours.
            assumed_lifetime_azure: Duration::from_secs(3 * 3600),
            pod_eviction: true,
            max_principals: crate::spec::DEFAULT_MAX_PRINCIPALS,
            azure_registry_suffixes: Vec::new(),
            expired_backoff_max: Duration::from_secs(4 * 3600),
        }
    }
}

/// Everything a reconcile needs; shared by all workers.
pub(crate) struct Context {
    pub client: Client,
    pub clouds: Arc<dyn CredentialSource>,
    pub events: EventRecorder,
    pub options: Options,
    /// Whether this process may write (it holds the lease, or leader election is off). Checked before every
    /// write, so a process that loses the lease stops acting at once.
    pub may_act: Arc<dyn Fn() -> bool + Send + Sync>,
    /// What the watches delivered.
    pub caches: Arc<Caches>,
    /// Per ServiceAccount: how many exchanges in a row returned credentials that were already expired.
    pub expired: Mutex<HashMap<ObjectKey, u32>>,
    /// Secret names found to belong to someone else, looked up before minting a token next time.
    pub foreign: Mutex<HashSet<ObjectKey>>,
}

/// Why a reconcile did not complete, and how soon to try again; the worker retries with the backoff of
/// its class and logs it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReconcileError {
    pub message: String,
    pub retry: Retry,
}

impl ReconcileError {
    pub(crate) fn new(message: impl Into<String>, retry: Retry) -> Self {
        ReconcileError {
            message: message.into(),
            retry,
        }
    }

    /// A failure that may pass by itself.
    pub(crate) fn transient(message: impl Into<String>) -> Self {
        Self::new(message, Retry::Transient)
    }

    /// A failed Kubernetes call while `doing` something: "doing: why", classed by the error.
    pub(crate) fn kube(doing: &str, error: &crate::kube::Error) -> Self {
        Self::new(format!("{doing}: {error}"), error.retry())
    }
}

impl std::fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<crate::kube::Error> for ReconcileError {
    fn from(error: crate::kube::Error) -> Self {
        ReconcileError::new(error.to_string(), error.retry())
    }
}

impl Context {
    /// The least time between two exchanges for this ServiceAccount (longer while its provider returns
    /// expired credentials).
    pub(crate) fn expired_floor(&self, service_account: &ObjectKey) -> Duration {
        let count = lock(&self.expired)
            .get(service_account)
            .copied()
            .unwrap_or(0);
        Backoff::new(self.options.min_requeue, self.options.expired_backoff_max).delay(count)
    }

    /// Counts an exchange that returned expired credentials (`true`) or ends the count; returns the count.
    pub(crate) fn set_expired(&self, service_account: &ObjectKey, expired: bool) -> u32 {
        let mut counts = lock(&self.expired);
        if !expired {
            counts.remove(service_account);
            return 0;
        }
        let count = counts.entry(service_account.clone()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    pub(crate) fn is_known_foreign(&self, secret: &ObjectKey) -> bool {
        lock(&self.foreign).contains(secret)
    }

    pub(crate) fn set_known_foreign(&self, secret: &ObjectKey, foreign: bool) {
        let mut names = lock(&self.foreign);
        if foreign {
            names.insert(secret.clone());
        } else {
            names.remove(secret);
        }
    }

    /// Drops what is kept per ServiceAccount once it is gone or no longer configured.
    pub(crate) fn forget(&self, service_account: &ObjectKey) {
        lock(&self.expired).remove(service_account);
    }

    /// Fails with "not the leader" when this process must not write.
    pub(crate) fn check_may_act(&self) -> Result<(), ReconcileError> {
        if (self.may_act)() {
            Ok(())
        } else {
            Err(ReconcileError::transient(
                "leadership lost; leaving the rest to the new leader",
            ))
        }
    }
}
