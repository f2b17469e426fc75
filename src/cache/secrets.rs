//! The cache of labelled secrets and its mapper: what the secret watch delivered about every secret that
//! carries the service-account label, without its data, and which ServiceAccount each change concerns.
//!
//! What must stay true: no credential is kept (only [`SecretSummary`]); a secret this controller owns that
//! lost its label (the label-selected watch reports it deleted) is kept, marked unlabelled, so the reconcile
//! can put the label back; every change someone else made queues the owning ServiceAccount.

use std::collections::HashMap;
use std::sync::Arc;

use crate::annotations as keys;
use crate::intern::Interner;
use crate::key::ObjectKey;
use crate::kube::types::Secret;
use crate::runtime::store::{is_older_version, key_hash, CompactStr, Relist};
use crate::runtime::watcher::Event;
use crate::secret::{self, SecretSummary};

/// The part of a labelled secret a reconcile needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CachedSecret {
    pub namespace: Arc<str>,
    pub name: Box<str>,
    pub uid: CompactStr,
    pub resource_version: CompactStr,
    /// The value of the service-account label; `None` once it was removed.
    pub label: Option<Box<str>>,
    /// Name and UID of the ServiceAccount that is its controller, if one is.
    pub controller: Option<(Box<str>, CompactStr)>,
    pub summary: SecretSummary,
}

impl CachedSecret {
    pub(crate) fn from_object(secret: &Secret) -> Self {
        let meta = &secret.metadata;
        CachedSecret {
            namespace: meta.namespace.as_str().into(),
            name: meta.name.as_str().into(),
            uid: CompactStr::new(&meta.uid),
            resource_version: CompactStr::new(&meta.resource_version),
            label: meta
                .labels
                .get(keys::SERVICE_ACCOUNT_LABEL)
                .map(|v| v.as_str().into()),
            controller: meta
                .controller()
                .filter(|r| r.kind == "ServiceAccount" && r.api_version == "v1")
                .map(|r| (r.name.as_str().into(), CompactStr::new(&r.uid))),
            summary: secret::summarize(secret),
        }
    }

    /// Whether the ServiceAccount with this UID owns it (SPEC B1: the controller reference, nothing else).
    pub(crate) fn is_owned_by(&self, uid: &str) -> bool {
        self.controller.as_ref().is_some_and(|(_, u)| u.is(uid))
    }

    /// The ServiceAccount it belongs to, or claims to: its controller's name, else the label's value.
    fn group(&self) -> Option<&str> {
        self.controller
            .as_ref()
            .map(|(name, _)| name.as_ref())
            .or(self.label.as_deref())
    }

    fn is(&self, namespace: &str, name: &str) -> bool {
        *self.namespace == *namespace && *self.name == *name
    }

    fn same_content(&self, other: &Self) -> bool {
        self.uid == other.uid
            && self.label == other.label
            && self.controller == other.controller
            && self.summary == other.summary
    }
}

/// The cache of labelled secrets, kept by the ServiceAccount they belong to (a short list each), with an
/// index from each secret's name to that group. Both maps are keyed by a 64-bit hash of
/// (namespace, name) so that no key string is stored twice; every lookup checks what it finds against the real
/// namespace and name, so a collision (about one in 10^9 among 100,000 secrets) can make a secret look absent
/// (it is then read from the API server, as any secret the cache does not hold) but never makes one secret
/// answer for another.
#[derive(Debug, Default)]
pub(crate) struct Secrets {
    groups: HashMap<u64, Vec<CachedSecret>>,
    names: HashMap<u64, u64>,
    shared: Interner<str>,
    relist: Relist,
}

impl Secrets {
    /// Every cached secret that belongs to, or claims to belong to, ServiceAccount `key`.
    pub(crate) fn for_service_account(&self, key: &ObjectKey) -> Vec<CachedSecret> {
        let (namespace, name) = (key.namespace(), key.name());
        let label = secret::service_account_label_value(name);
        let mut found: Vec<CachedSecret> = Vec::new();
        for group in [name, label.as_str()] {
            let Some(members) = self.groups.get(&key_hash(namespace, group)) else {
                continue;
            };
            let belongs =
                |e: &&CachedSecret| *e.namespace == *namespace && e.group() == Some(group);
            for entry in members.iter().filter(belongs) {
                if !found.iter().any(|f| f.name == entry.name) {
                    found.push(entry.clone());
                }
            }
        }
        found
    }

    /// The cached secret `key`.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &ObjectKey) -> Option<CachedSecret> {
        self.entry(key.namespace(), key.name()).cloned()
    }

    fn entry(&self, namespace: &str, name: &str) -> Option<&CachedSecret> {
        let group = self.names.get(&key_hash(namespace, name))?;
        self.groups
            .get(group)?
            .iter()
            .find(|e| e.is(namespace, name))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Turns one watch event into cache updates and the ServiceAccounts to reconcile.
    pub(crate) fn apply(&mut self, event: Event<Secret>) -> Vec<ObjectKey> {
        match event {
            Event::ListStarted => {
                self.relist.start();
                Vec::new()
            }
            Event::Listed(secret) | Event::Applied(secret) => {
                self.relist
                    .saw(&secret.metadata.namespace, &secret.metadata.name);
                self.upsert(CachedSecret::from_object(&secret))
                    .into_iter()
                    .collect()
            }
            Event::Deleted(secret) => {
                let entry = CachedSecret::from_object(&secret);
                let unlabelled =
                    entry.label.is_none() && secret.metadata.deletion_timestamp.is_none();
                if unlabelled && entry.controller.is_some() {
                    // It left the label selector but still exists: keep it, so the label goes back on.
                    return self.upsert(entry).into_iter().collect();
                }
                // The group it was kept in: the object as deleted may have lost the label that put it there.
                let namespace = &secret.metadata.namespace;
                let group = self
                    .take(namespace, &entry.name)
                    .or_else(|| entry.group().map(str::to_string));
                group
                    .map(|g| ObjectKey::new(namespace, &g))
                    .into_iter()
                    .collect()
            }
            Event::ListDone => {
                let Some(listed) = self.relist.finish() else {
                    return Vec::new();
                };
                let mut work = Vec::new();
                let names = &mut self.names;
                self.groups.retain(|_, members| {
                    members.retain(|e| {
                        if listed.contains(&e.namespace, &e.name) {
                            return true;
                        }
                        names.remove(&key_hash(&e.namespace, &e.name));
                        if let Some(group) = e.group() {
                            work.push(ObjectKey::new(&e.namespace, group));
                        }
                        false
                    });
                    !members.is_empty()
                });
                work.sort();
                work.dedup();
                work
            }
        }
    }

    /// Puts a secret as this process wrote it (or a watch delivered it) into the cache, unless a newer
    /// version is already there. Returns the ServiceAccount to reconcile when something it reads changed.
    pub(crate) fn upsert(&mut self, mut new: CachedSecret) -> Option<ObjectKey> {
        let namespace = new.namespace.clone();
        let unchanged = match self.entry(&namespace, &new.name) {
            Some(old)
                if old.uid == new.uid
                    && is_older_version(&new.resource_version, &old.resource_version) =>
            {
                return None
            }
            Some(old) => old.same_content(&new),
            None => false,
        };
        self.take(&namespace, &new.name);
        let group = new.group()?.to_string();
        new.namespace = self.shared.intern(namespace.clone());
        new.summary.principal = new.summary.principal.map(|p| self.shared.intern(p));
        new.summary.registry = new.summary.registry.map(|r| self.shared.intern(r));
        let group_hash = key_hash(&new.namespace, &group);
        self.names
            .insert(key_hash(&new.namespace, &new.name), group_hash);
        self.groups
            .entry(group_hash)
            .or_insert_with(|| Vec::with_capacity(1))
            .push(new);
        (!unchanged).then(|| ObjectKey::new(&namespace, &group))
    }

    /// Forgets secret `key`, which this process deleted (or found gone).
    pub(crate) fn remove(&mut self, key: &ObjectKey) {
        self.take(key.namespace(), key.name());
    }

    /// Removes secret `namespace/name`; returns the group it was in.
    fn take(&mut self, namespace: &str, name: &str) -> Option<String> {
        let name_hash = key_hash(namespace, name);
        let group_hash = *self.names.get(&name_hash)?;
        let members = self.groups.get_mut(&group_hash)?;
        let position = members.iter().position(|e| e.is(namespace, name))?;
        self.names.remove(&name_hash);
        let removed = members.swap_remove(position);
        if members.is_empty() {
            self.groups.remove(&group_hash);
        }
        removed.group().map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::types::OwnerReference;

    fn secret(name: &str, rv: &str, label: Option<&str>, owner: Option<(&str, &str)>) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = "ns".into();
        s.metadata.name = name.into();
        s.metadata.uid = format!("uid-{name}");
        s.metadata.resource_version = rv.into();
        s.type_ = keys::DOCKER_CONFIG_JSON_TYPE.into();
        if let Some(label) = label {
            s.metadata
                .labels
                .insert(keys::SERVICE_ACCOUNT_LABEL.into(), label.into());
        }
        if let Some((name, uid)) = owner {
            s.metadata.owner_references.push(OwnerReference {
                api_version: "v1".into(),
                kind: "ServiceAccount".into(),
                name: name.into(),
                uid: uid.into(),
                controller: Some(true),
                block_owner_deletion: None,
            });
        }
        s.data
            .insert(keys::DOCKER_CONFIG_JSON_KEY.into(), "e30=".into());
        s
    }

    fn sa(name: &str) -> ObjectKey {
        ObjectKey::new("ns", name)
    }

    #[test]
    fn secrets_are_found_by_owner_and_by_label_without_their_data() {
        let mut cache = Secrets::default();
        assert_eq!(
            cache.apply(Event::Applied(secret(
                "ours",
                "1",
                Some("app"),
                Some(("app", "u1"))
            ))),
            vec![sa("app")]
        );
        assert_eq!(
            cache.apply(Event::Applied(secret("claims", "1", Some("app"), None))),
            vec![sa("app")]
        );
        let found = cache.for_service_account(&sa("app"));
        assert_eq!(found.len(), 2);
        let ours = found.iter().find(|s| &*s.name == "ours").unwrap();
        assert!(ours.is_owned_by("u1") && !ours.is_owned_by("u2"));
        let claims = found.iter().find(|s| &*s.name == "claims").unwrap();
        assert!(!claims.is_owned_by("u1"), "a label is not ownership");
        assert!(!format!("{ours:?}").contains("e30="));
    }

    #[test]
    fn a_secret_that_lost_its_label_is_kept_and_its_owner_queued() {
        let mut cache = Secrets::default();
        cache.apply(Event::Applied(secret(
            "ours",
            "1",
            Some("app"),
            Some(("app", "u1")),
        )));
        // The label-selected watch reports the unlabelled secret as deleted.
        assert_eq!(
            cache.apply(Event::Deleted(secret(
                "ours",
                "2",
                None,
                Some(("app", "u1"))
            ))),
            vec![sa("app")]
        );
        let kept = cache
            .get(&ObjectKey::new("ns", "ours"))
            .expect("still known");
        assert_eq!(kept.label, None);
        assert_eq!(cache.for_service_account(&sa("app")).len(), 1);
        // A foreign secret that lost the label is simply forgotten.
        cache.apply(Event::Applied(secret("claims", "1", Some("app"), None)));
        assert_eq!(
            cache.apply(Event::Deleted(secret("claims", "2", None, None))),
            vec![sa("app")]
        );
        assert!(cache.get(&ObjectKey::new("ns", "claims")).is_none());
    }

    #[test]
    fn deletions_echoes_and_stale_events() {
        let mut cache = Secrets::default();
        let written =
            CachedSecret::from_object(&secret("ours", "5", Some("app"), Some(("app", "u1"))));
        assert_eq!(cache.upsert(written), Some(sa("app")));
        assert!(cache
            .apply(Event::Applied(secret(
                "ours",
                "4",
                Some("app"),
                Some(("app", "u1"))
            )))
            .is_empty());
        assert!(cache
            .apply(Event::Applied(secret(
                "ours",
                "5",
                Some("app"),
                Some(("app", "u1"))
            )))
            .is_empty());
        let mut edited = secret("ours", "6", Some("app"), Some(("app", "u1")));
        edited
            .data
            .insert(keys::DOCKER_CONFIG_JSON_KEY.into(), "bm90IGpzb24=".into());
        assert_eq!(
            cache.apply(Event::Applied(edited)),
            vec![sa("app")],
            "content edited"
        );
        let mut deleted = secret("ours", "7", Some("app"), Some(("app", "u1")));
        deleted.metadata.deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
        assert_eq!(cache.apply(Event::Deleted(deleted)), vec![sa("app")]);
        assert!(cache.is_empty() && cache.for_service_account(&sa("app")).is_empty());
    }

    #[test]
    fn lookups_compare_the_namespace_and_the_name() {
        let mut cache = Secrets::default();
        for (namespace, uid) in [("ns", "u1"), ("ns2", "u2")] {
            let mut same_name = secret("ours", "1", Some("app"), Some(("app", uid)));
            same_name.metadata.namespace = namespace.into();
            cache.apply(Event::Applied(same_name));
        }
        assert_eq!(cache.len(), 2);
        assert!(cache
            .get(&ObjectKey::new("ns2", "ours"))
            .is_some_and(|s| s.is_owned_by("u2")));
        assert!(cache.get(&ObjectKey::new("ns3", "ours")).is_none());
        let found = cache.for_service_account(&sa("app"));
        assert_eq!(found.len(), 1);
        assert!(found[0].is_owned_by("u1"));
        cache.remove(&ObjectKey::new("ns2", "ours"));
        assert_eq!(
            cache.for_service_account(&sa("app")).len(),
            1,
            "the other namespace's is kept"
        );
        assert!(cache.get(&ObjectKey::new("ns2", "ours")).is_none());
    }

    #[test]
    fn a_relist_forgets_what_is_gone() {
        let mut cache = Secrets::default();
        cache.apply(Event::Applied(secret(
            "a",
            "1",
            Some("app"),
            Some(("app", "u1")),
        )));
        cache.apply(Event::Applied(secret(
            "b",
            "1",
            Some("web"),
            Some(("web", "u2")),
        )));
        cache.apply(Event::ListStarted);
        cache.apply(Event::Listed(secret(
            "a",
            "1",
            Some("app"),
            Some(("app", "u1")),
        )));
        assert_eq!(cache.apply(Event::ListDone), vec![sa("web")]);
        assert_eq!(cache.len(), 1);
    }
}
