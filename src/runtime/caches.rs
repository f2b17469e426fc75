//! The caches the watches fill and the reconciles read, behind one lock each.
//!
//! What must stay true: a lock is held only to copy an entry out or put one in, never across a request, so a
//! slow reconcile never holds up a watch (and a watch never holds up more than a map operation).

use std::sync::{Mutex, MutexGuard};

use super::pods::PendingPods;
use super::secrets::{CachedSecret, Secrets};
use super::service_accounts::{CachedServiceAccount, ServiceAccounts};

#[derive(Debug, Default)]
pub struct Caches {
    service_accounts: Mutex<ServiceAccounts>,
    secrets: Mutex<Secrets>,
    pods: Mutex<PendingPods>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Caches {
    pub fn service_accounts(&self) -> MutexGuard<'_, ServiceAccounts> {
        lock(&self.service_accounts)
    }

    pub fn secrets(&self) -> MutexGuard<'_, Secrets> {
        lock(&self.secrets)
    }

    pub fn pods(&self) -> MutexGuard<'_, PendingPods> {
        lock(&self.pods)
    }

    pub fn service_account(&self, namespace: &str, name: &str) -> Option<CachedServiceAccount> {
        self.service_accounts().get(namespace, name)
    }

    pub fn secrets_of(&self, namespace: &str, name: &str) -> Vec<CachedSecret> {
        self.secrets().for_service_account(namespace, name)
    }

    pub fn is_tracked(&self, namespace: &str, name: &str) -> bool {
        self.service_accounts().contains(namespace, name)
    }
}
