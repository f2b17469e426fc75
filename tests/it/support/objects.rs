//! The objects the tests write and read: ServiceAccounts made and annotated as a user would, and what the
//! controller wrote — secrets, their `.dockerconfigjson` and time annotations, `.imagePullSecrets`, and the
//! events about an object (waited for with the controller's log on failure).
//!
//! The annotation keys, label and event reasons are spelt out here rather than taken from the crate: the tests
//! check the wire contract, not the constants.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use image_pull_secrets_provisioner::kube::types::{
    Event, LocalObjectReference, ObjectMeta, Secret, ServiceAccount,
};
use image_pull_secrets_provisioner::kube::{Client, ListParams, Patch};
use serde_json::{json, Value};

use super::controller::Controller;
use super::{eventually, poll};

/// How long the controller gets to write what a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The secret the controller writes for a ServiceAccount named `app` (most tests' only one).
pub const SECRET: &str = "imagepullsecret-app";

pub const PREFIX: &str = "imagepullsecrets.preferred.jp/";
pub const LABEL: &str = "imagepullsecrets.preferred.jp/service-account";
pub const PRINCIPAL: &str = "imagepullsecrets.preferred.jp/principal";
pub const EXPIRES_AT: &str = "imagepullsecrets.preferred.jp/expires-at";
pub const OBTAINED_AT: &str = "imagepullsecrets.preferred.jp/obtained-at";
pub const PROVISIONED: &str = "ProvisionedImagePullSecret";
pub const FAILED: &str = "FailedProvisioningImagePullSecret";
pub const DECOMMISSIONED: &str = "DecommissionedImagePullSecret";
pub const EVICTED: &str = "EvictedForImagePullSecret";
pub const FAILED_EVICTION: &str = "FailedEvictionForImagePullSecret";

/// `(key without prefix, value)` pairs → the annotation map.
pub fn annotations<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{}", k.as_ref()), v.as_ref().to_string()))
        .collect()
}

/// References to secrets by name, as `.imagePullSecrets` holds them.
pub fn refs(names: &[&str]) -> Vec<LocalObjectReference> {
    names
        .iter()
        .map(|n| LocalObjectReference {
            name: n.to_string(),
        })
        .collect()
}

/// Creates a ServiceAccount with these annotations (full keys) and `.imagePullSecrets`.
pub fn create_sa(
    admin: &Client,
    ns: &str,
    name: &str,
    annotations: BTreeMap<String, String>,
    pull_secrets: &[&str],
) -> ServiceAccount {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: name.to_string(),
            namespace: ns.to_string(),
            annotations,
            ..Default::default()
        },
        image_pull_secrets: (!pull_secrets.is_empty()).then(|| refs(pull_secrets)),
        ..Default::default()
    };
    admin
        .create(Some(ns), &sa)
        .unwrap_or_else(|e| panic!("creating serviceaccount {ns}/{name}: {e}"))
}

/// Sets (Some) or removes (None) annotations (keys without prefix) with a merge patch.
pub fn annotate(admin: &Client, ns: &str, name: &str, changes: &[(&str, Option<&str>)]) {
    let map: serde_json::Map<String, Value> = changes
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), v.map_or(Value::Null, |v| json!(v))))
        .collect();
    admin
        .patch::<ServiceAccount>(
            Some(ns),
            name,
            &Patch::Merge(json!({"metadata": {"annotations": map}})),
        )
        .unwrap_or_else(|e| panic!("annotating {ns}/{name}: {e}"));
}

pub fn get_sa(admin: &Client, ns: &str, name: &str) -> ServiceAccount {
    admin
        .get(Some(ns), name)
        .unwrap_or_else(|e| panic!("reading serviceaccount {ns}/{name}: {e}"))
}

pub fn get_secret(admin: &Client, ns: &str, name: &str) -> Option<Secret> {
    admin.get(Some(ns), name).ok()
}

/// The names in `.imagePullSecrets`, in order.
pub fn pull_secret_names(sa: &ServiceAccount) -> Vec<String> {
    sa.image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect()
}

/// Waits until `.imagePullSecrets` is exactly `want`, in order, while the controller keeps running.
pub fn wait_attached(
    admin: &Client,
    ns: &str,
    name: &str,
    want: &[&str],
    controller: &Controller,
) -> ServiceAccount {
    poll(PATIENCE, Duration::from_millis(50), || {
        let sa = get_sa(admin, ns, name);
        if pull_secret_names(&sa) == want {
            return Some(sa);
        }
        assert!(
            controller.is_running(),
            "the controller exited:\n{}",
            controller.logs()
        );
        None
    })
    .unwrap_or_else(|| {
        panic!(
            "{ns}/{name}: imagePullSecrets {:?}, want {want:?}\n--- controller log ---\n{}",
            pull_secret_names(&get_sa(admin, ns, name)),
            controller.logs()
        )
    })
}

/// Replaces the secret's `.dockerconfigjson` (in the object only; the caller writes it).
pub fn set_config(secret: &mut Secret, config: &Value) {
    secret.data.insert(
        ".dockerconfigjson".into(),
        super::base64_encode(config.to_string().as_bytes()),
    );
}

/// How many of `events` have this type and reason.
pub fn count_events(events: &[(String, String, String)], type_: &str, reason: &str) -> usize {
    events
        .iter()
        .filter(|(t, r, _)| t == type_ && r == reason)
        .count()
}

/// Waits until the controller has logged a line containing `text`.
pub fn wait_log(controller: &Controller, text: &str) {
    eventually(PATIENCE, &format!("the controller to log {text:?}"), || {
        controller.logs().contains(text).then_some(())
    });
}

/// The names of the secrets in `ns`, sorted.
pub fn secret_names_in(admin: &Client, ns: &str) -> Vec<String> {
    let mut names = Vec::new();
    admin
        .list_each::<Secret>(Some(ns), &ListParams::default(), |s| {
            names.push(s.metadata.name)
        })
        .expect("listing secrets");
    names.sort();
    names
}

/// The decoded `.dockerconfigjson` of a secret.
pub fn docker_config(secret: &Secret) -> Value {
    let encoded = secret
        .data
        .get(".dockerconfigjson")
        .expect("the secret has .dockerconfigjson");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64 data");
    serde_json::from_slice(&bytes).expect(".dockerconfigjson is JSON")
}

/// The RFC 3339 time in the secret's annotation `key`.
pub fn time_annotation(secret: &Secret, key: &str) -> DateTime<Utc> {
    let text = secret
        .metadata
        .annotations
        .get(key)
        .unwrap_or_else(|| panic!("secret {} lacks {key}", secret.metadata.name));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{key} {text:?}: {e}"))
        .with_timezone(&Utc)
}

/// Events about object `name` in `ns`: (type, reason, note), oldest first.
pub fn events_about(admin: &Client, ns: &str, name: &str) -> Vec<(String, String, String)> {
    let mut events: Vec<Event> = Vec::new();
    admin
        .list_each::<Event>(Some(ns), &ListParams::default(), |e| {
            if e.regarding.name == name {
                events.push(e)
            }
        })
        .expect("listing events");
    events.sort_by(|a, b| a.event_time.cmp(&b.event_time));
    events
        .into_iter()
        .map(|e| (e.type_, e.reason, e.note))
        .collect()
}

/// Waits for an event about `name` with this type and reason whose note contains `text`; returns the note.
pub fn wait_event(
    admin: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    reason: &str,
    text: &str,
    controller: &Controller,
) -> String {
    poll(PATIENCE, Duration::from_millis(100), || {
        events_about(admin, ns, name)
            .into_iter()
            .find(|(t, r, n)| t == type_ && r == reason && n.contains(text))
            .map(|(_, _, note)| note)
    })
    .unwrap_or_else(|| {
        panic!(
            "no {type_} {reason} event containing {text:?} about {ns}/{name}; events: {:#?}\n--- controller log ---\n{}",
            events_about(admin, ns, name),
            controller.logs()
        )
    })
}

/// Every event in `ns`, as the API server has them.
pub fn events_in(admin: &Client, ns: &str) -> Vec<Event> {
    let mut events = Vec::new();
    admin
        .list_each::<Event>(Some(ns), &ListParams::default(), |e| events.push(e))
        .expect("listing events");
    events
}

/// How many times an event happened: its `series.count`, 1 without a series.
pub fn series_count(event: &Event) -> u64 {
    event
        .other
        .get("series")
        .and_then(|s| s["count"].as_u64())
        .unwrap_or(1)
}

/// Checks the format the original controller wrote: RFC 3339, UTC (`Z`), whole seconds.
pub fn assert_rfc3339_utc_seconds(text: &str) {
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 20
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            19 => *b == b'Z',
            _ => b.is_ascii_digit(),
        });
    assert!(
        shape_ok,
        "{text:?} is not RFC 3339 UTC with second precision"
    );
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
}
