//! The few Kubernetes object shapes the controller reads and writes, as minimal serde structs.
//!
//! Every object keeps the fields it does not name in `other`, so that read-modify-write (an update of a
//! ServiceAccount's `imagePullSecrets`, say) sends back everything the server gave, including fields added by
//! Kubernetes versions newer than this code.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Fields this client does not interpret, kept so that a round trip loses nothing.
pub type Other = Map<String, Value>;

/// A Kubernetes kind this client can address: where it lives in the REST API.
pub trait Resource: Serialize + for<'de> Deserialize<'de> {
    /// `v1` or `group/version`.
    const API_VERSION: &'static str;
    const KIND: &'static str;
    /// Lower-case plural used in URLs.
    const PLURAL: &'static str;

    fn metadata(&self) -> &ObjectMeta;

    /// `/api/v1` for the core group, `/apis/GROUP/VERSION` otherwise.
    fn api_prefix() -> String {
        if Self::API_VERSION.contains('/') {
            format!("/apis/{}", Self::API_VERSION)
        } else {
            format!("/api/{}", Self::API_VERSION)
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalObjectReference {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccount {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub type_: String,
    /// Base64-encoded values, as the API sends them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    #[serde(flatten)]
    pub other: Other,
}

impl std::fmt::Debug for Secret {
    /// Prints the keys of `data`, never the values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("metadata", &self.metadata)
            .field("type", &self.type_)
            .field("data_keys", &self.data.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub service_account_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    #[serde(default)]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    #[serde(default)]
    pub init_containers: Vec<Container>,
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default)]
    pub phase: String,
    #[serde(default)]
    pub init_container_statuses: Vec<ContainerStatus>,
    #[serde(default)]
    pub container_statuses: Vec<ContainerStatus>,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerStatus {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub state: ContainerState,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<ContainerStateWaiting>,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerStateWaiting {
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: LeaseSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i64>,
    /// MicroTime: RFC 3339 with microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_transitions: Option<i64>,
    #[serde(flatten)]
    pub other: Other,
}

/// An `events.k8s.io/v1` Event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// MicroTime.
    #[serde(default)]
    pub event_time: String,
    #[serde(default)]
    pub reporting_controller: String,
    #[serde(default)]
    pub reporting_instance: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub regarding: ObjectReference,
    #[serde(default)]
    pub note: String,
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
}

/// A page of a list: the items, the resourceVersion to watch from, and the token for the next page.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectList<K> {
    #[serde(default)]
    pub metadata: ListMeta,
    #[serde(default = "Vec::new")]
    pub items: Vec<K>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    #[serde(default)]
    pub resource_version: String,
    #[serde(default, rename = "continue")]
    pub continue_: String,
}

macro_rules! resource {
    ($type:ty, $api_version:literal, $kind:literal, $plural:literal) => {
        impl Resource for $type {
            const API_VERSION: &'static str = $api_version;
            const KIND: &'static str = $kind;
            const PLURAL: &'static str = $plural;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
        }
    };
}

resource!(ServiceAccount, "v1", "ServiceAccount", "serviceaccounts");
resource!(Secret, "v1", "Secret", "secrets");
resource!(Pod, "v1", "Pod", "pods");
resource!(Lease, "coordination.k8s.io/v1", "Lease", "leases");
resource!(Event, "events.k8s.io/v1", "Event", "events");

/// Metadata only, for watching objects whose bodies the consumer does not need.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialObject {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// A Secret read for its metadata only: `data` is skipped while decoding and never held in memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SecretMetadata {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

resource!(SecretMetadata, "v1", "Secret", "secrets");

impl ObjectMeta {
    /// The controller ownerReference, if any.
    pub(crate) fn controller(&self) -> Option<&OwnerReference> {
        self.owner_references
            .iter()
            .find(|r| r.controller == Some(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let json = r#"{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"a","namespace":"n",
            "resourceVersion":"7","finalizers":["x"],"managedFields":[{"manager":"kubectl"}]},
            "secrets":[{"name":"s"}],"automountServiceAccountToken":false,
            "imagePullSecrets":[{"name":"user"}]}"#;
        let sa: ServiceAccount = serde_json::from_str(json).unwrap();
        let back: Value = serde_json::to_value(&sa).unwrap();
        let want: Value = serde_json::from_str(json).unwrap();
        assert_eq!(back, want);
    }

    #[test]
    fn secret_debug_never_shows_values() {
        let mut secret = Secret::default();
        secret
            .data
            .insert(".dockerconfigjson".into(), "c2VjcmV0LXBhc3N3b3Jk".into());
        let printed = format!("{secret:?}");
        assert!(printed.contains(".dockerconfigjson"));
        assert!(!printed.contains("c2VjcmV0LXBhc3N3b3Jk"));
    }

    #[test]
    fn api_prefixes_follow_the_group() {
        assert_eq!(ServiceAccount::api_prefix(), "/api/v1");
        assert_eq!(Lease::api_prefix(), "/apis/coordination.k8s.io/v1");
        assert_eq!(Event::api_prefix(), "/apis/events.k8s.io/v1");
    }
}
