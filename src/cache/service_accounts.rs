//! The ServiceAccount cache and its mapper: what the ServiceAccount watch delivered, kept only for the ones
//! someone configured, and which of them need a reconcile.
//!
//! What must stay true: memory grows with configured ServiceAccounts only, and per entry only with what a
//! reconcile reads (UID, resourceVersion, the annotations the configuration is read from, the names in `.imagePullSecrets`);
//! a ServiceAccount that stops being configured stays until its reconcile has cleaned up after it
//! ([`ServiceAccounts::forget_if_unconfigured`]); an event that changes nothing kept (the echo of this
//! process's own write, an edit of fields it does not read) queues no work.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::annotations as keys;
use crate::intern::Interner;
use crate::key::ObjectKey;
use crate::kube::types::ServiceAccount;
use crate::runtime::store::{is_older_version, CompactStr, Relist};
use crate::runtime::watcher::Event;

/// The part of a ServiceAccount a reconcile needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CachedServiceAccount {
    pub uid: CompactStr,
    pub resource_version: CompactStr,
    /// The annotations the configuration is read from (ours and the Azure Workload Identity ones it falls back
    /// to), sorted by key; shared among equal sets.
    pub annotations: Arc<[(Box<str>, Box<str>)]>,
    pub image_pull_secrets: Box<[Box<str>]>,
    pub deleting: bool,
}

impl CachedServiceAccount {
    pub(crate) fn from_object(sa: &ServiceAccount) -> Self {
        let meta = &sa.metadata;
        CachedServiceAccount {
            uid: CompactStr::new(&meta.uid),
            resource_version: CompactStr::new(&meta.resource_version),
            annotations: meta
                .annotations
                .iter()
                .filter(|(k, _)| keys::is_read_by_configuration(k))
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
            image_pull_secrets: sa
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.as_str().into())
                .collect(),
            deleting: meta.deletion_timestamp.is_some(),
        }
    }

    /// Someone meant to configure it: one of the configuration annotations is set.
    pub(crate) fn is_configured(&self) -> bool {
        self.annotations
            .iter()
            .any(|(k, v)| keys::CONFIGURATION_KEYS.contains(&k.as_ref()) && !v.trim().is_empty())
    }

    pub(crate) fn annotation_map(&self) -> BTreeMap<String, String> {
        self.annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn pull_secret_names(&self) -> Vec<String> {
        self.image_pull_secrets
            .iter()
            .map(|n| n.to_string())
            .collect()
    }

    /// The same as `other` in everything a reconcile reads (the resourceVersion aside).
    fn same_content(&self, other: &Self) -> bool {
        self.uid == other.uid
            && self.annotations == other.annotations
            && self.image_pull_secrets == other.image_pull_secrets
            && self.deleting == other.deleting
    }
}

/// What the watch thread does after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Reconcile this ServiceAccount.
    Reconcile(ObjectKey),
    /// It is gone (or no longer tracked): drop its queued work and what is kept about it elsewhere.
    Forget(ObjectKey),
}

/// The cache of configured ServiceAccounts, by namespace and name.
#[derive(Debug, Default)]
pub(crate) struct ServiceAccounts {
    namespaces: HashMap<Box<str>, HashMap<Box<str>, CachedServiceAccount>>,
    annotation_sets: Interner<[(Box<str>, Box<str>)]>,
    relist: Relist,
}

impl ServiceAccounts {
    fn entry(&self, namespace: &str, name: &str) -> Option<&CachedServiceAccount> {
        self.namespaces.get(namespace)?.get(name)
    }

    pub(crate) fn get(&self, key: &ObjectKey) -> Option<CachedServiceAccount> {
        self.entry(key.namespace(), key.name()).cloned()
    }

    pub fn contains(&self, key: &ObjectKey) -> bool {
        self.entry(key.namespace(), key.name()).is_some()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.namespaces.values().map(HashMap::len).sum()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }

    fn remove(&mut self, namespace: &str, name: &str) -> Option<CachedServiceAccount> {
        let names = self.namespaces.get_mut(namespace)?;
        let removed = names.remove(name);
        if names.is_empty() {
            self.namespaces.remove(namespace);
        }
        removed
    }

    /// Turns one watch event into cache updates and the work it calls for.
    pub(crate) fn apply(&mut self, event: Event<ServiceAccount>) -> Vec<Action> {
        match event {
            Event::ListStarted => {
                self.relist.start();
                Vec::new()
            }
            Event::Listed(sa) | Event::Applied(sa) => {
                let meta = &sa.metadata;
                self.relist.saw(&meta.namespace, &meta.name);
                let key = ObjectKey::new(&meta.namespace, &meta.name);
                self.upsert(key, CachedServiceAccount::from_object(&sa))
                    .into_iter()
                    .collect()
            }
            Event::Deleted(sa) => {
                let meta = &sa.metadata;
                match self.remove(&meta.namespace, &meta.name) {
                    Some(_) => vec![Action::Forget(ObjectKey::new(&meta.namespace, &meta.name))],
                    None => Vec::new(),
                }
            }
            Event::ListDone => {
                let Some(listed) = self.relist.finish() else {
                    return Vec::new();
                };
                let gone: Vec<ObjectKey> = self
                    .namespaces
                    .iter()
                    .flat_map(|(namespace, names)| {
                        names
                            .keys()
                            .filter(|name| !listed.contains(namespace, name))
                            .map(|name| ObjectKey::new(namespace, name))
                    })
                    .collect();
                gone.into_iter()
                    .map(|key| {
                        self.remove(key.namespace(), key.name());
                        Action::Forget(key)
                    })
                    .collect()
            }
        }
    }

    /// Puts what this process just wrote (or read) into the cache, unless the cache already holds a newer
    /// version. Returns the work it calls for, as a watch event would.
    pub(crate) fn upsert(
        &mut self,
        key: ObjectKey,
        mut new: CachedServiceAccount,
    ) -> Option<Action> {
        let configured = new.is_configured();
        let work = match self.entry(key.namespace(), key.name()) {
            Some(old)
                if old.uid == new.uid
                    && is_older_version(&new.resource_version, &old.resource_version) =>
            {
                return None
            }
            Some(old) if old.same_content(&new) => None,
            // Tracked until its reconcile cleans up, even when no longer configured.
            Some(_) => Some(Action::Reconcile(key.clone())),
            None if configured => Some(Action::Reconcile(key.clone())),
            None => return None,
        };
        new.annotations = self.annotation_sets.intern(new.annotations);
        self.namespaces
            .entry(key.namespace().into())
            .or_default()
            .insert(key.name().into(), new);
        work
    }

    /// Drops an entry that is no longer configured, once its reconcile has removed everything it owned, unless
    /// the ServiceAccount changed since (`resource_version` is what the reconcile saw).
    pub(crate) fn forget_if_unconfigured(&mut self, key: &ObjectKey, resource_version: &str) {
        if let Some(entry) = self.entry(key.namespace(), key.name()) {
            if !entry.is_configured() && entry.resource_version.is(resource_version) {
                self.remove(key.namespace(), key.name());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::types::LocalObjectReference;

    fn sa(name: &str, rv: &str, annotations: &[(&str, &str)], pulls: &[&str]) -> ServiceAccount {
        let mut sa = ServiceAccount::default();
        sa.metadata.namespace = "ns".into();
        sa.metadata.name = name.into();
        sa.metadata.uid = format!("uid-{name}");
        sa.metadata.resource_version = rv.into();
        sa.metadata.annotations = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !pulls.is_empty() {
            sa.image_pull_secrets = Some(
                pulls
                    .iter()
                    .map(|n| LocalObjectReference {
                        name: n.to_string(),
                    })
                    .collect(),
            );
        }
        sa
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("ns", name)
    }

    const CONFIG: [(&str, &str); 3] = [
        (keys::REGISTRY, "gcr.io"),
        ("other/key", "x"),
        (keys::AZURE_WORKLOAD_IDENTITY_CLIENT_ID, "id"),
    ];

    #[test]
    fn only_configured_service_accounts_are_kept_with_only_the_annotations_configuration_reads() {
        let mut cache = ServiceAccounts::default();
        assert!(cache
            .apply(Event::Applied(sa("plain", "1", &[("a", "b")], &[])))
            .is_empty());
        assert!(cache.is_empty());
        assert_eq!(
            cache.apply(Event::Applied(sa("app", "1", &CONFIG, &["user"]))),
            vec![Action::Reconcile(key("app"))]
        );
        let entry = cache.get(&key("app")).unwrap();
        assert_eq!(
            entry.annotation_map().keys().collect::<Vec<_>>(),
            vec![keys::AZURE_WORKLOAD_IDENTITY_CLIENT_ID, keys::REGISTRY]
        );
        assert_eq!(entry.pull_secret_names(), vec!["user"]);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn echoes_stale_events_and_foreign_fields_queue_nothing() {
        let mut cache = ServiceAccounts::default();
        cache.apply(Event::Applied(sa("app", "5", &CONFIG, &[])));
        // The reconcile's own write, put in the cache before the watch brings it.
        let written = CachedServiceAccount::from_object(&sa("app", "7", &CONFIG, &["ours"]));
        assert_eq!(
            cache.upsert(key("app"), written),
            Some(Action::Reconcile(key("app")))
        );
        assert!(
            cache
                .apply(Event::Applied(sa("app", "6", &CONFIG, &[])))
                .is_empty(),
            "stale"
        );
        assert_eq!(
            cache.get(&key("app")).unwrap().pull_secret_names(),
            vec!["ours"]
        );
        assert!(
            cache
                .apply(Event::Applied(sa("app", "7", &CONFIG, &["ours"])))
                .is_empty(),
            "echo"
        );
        let mut labelled = sa("app", "8", &CONFIG, &["ours"]);
        labelled.metadata.labels.insert("team".into(), "x".into());
        assert!(
            cache.apply(Event::Applied(labelled)).is_empty(),
            "a field it does not read"
        );
        assert!(cache.get(&key("app")).unwrap().resource_version.is("8"));
        assert_eq!(
            cache.apply(Event::Applied(sa(
                "app",
                "9",
                &[(keys::REGISTRY, "ghcr.io")],
                &["ours"]
            ))),
            vec![Action::Reconcile(key("app"))],
            "an annotation edit"
        );
    }

    #[test]
    fn unconfigured_ones_stay_until_cleaned_up() {
        let mut cache = ServiceAccounts::default();
        cache.apply(Event::Applied(sa("app", "1", &CONFIG, &["ours"])));
        assert_eq!(
            cache.apply(Event::Applied(sa("app", "2", &[], &["ours"]))),
            vec![Action::Reconcile(key("app"))]
        );
        assert!(!cache.get(&key("app")).unwrap().is_configured());
        cache.forget_if_unconfigured(&key("app"), "1");
        assert!(
            cache.contains(&key("app")),
            "changed since the reconcile looked"
        );
        cache.forget_if_unconfigured(&key("app"), "2");
        assert!(!cache.contains(&key("app")));
    }

    #[test]
    fn deletions_and_relists_forget() {
        let mut cache = ServiceAccounts::default();
        cache.apply(Event::Applied(sa("a", "1", &CONFIG, &[])));
        cache.apply(Event::Applied(sa("b", "1", &CONFIG, &[])));
        assert_eq!(
            cache.apply(Event::Deleted(sa("a", "2", &CONFIG, &[]))),
            vec![Action::Forget(key("a"))]
        );
        assert!(cache
            .apply(Event::Deleted(sa("plain", "2", &[], &[])))
            .is_empty());
        cache.apply(Event::Applied(sa("c", "1", &CONFIG, &[])));
        cache.apply(Event::ListStarted);
        cache.apply(Event::Listed(sa("c", "1", &CONFIG, &[])));
        assert_eq!(cache.apply(Event::ListDone), vec![Action::Forget(key("b"))]);
        assert!(cache.contains(&key("c")) && !cache.contains(&key("b")));
    }
}
