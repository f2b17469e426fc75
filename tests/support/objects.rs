//! Reading what the controller wrote, as the tests check it: secrets, their `.dockerconfigjson` and time
//! annotations, and the events about an object (waited for with the controller's log on failure).

use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use image_pull_secrets_provisioner::kube::types::{Event, Secret};
use image_pull_secrets_provisioner::kube::{Client, ListParams};
use serde_json::Value;

use super::controller::Controller;

/// How long the controller gets to write what a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(60);

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
    let deadline = Instant::now() + PATIENCE;
    loop {
        let events = events_about(admin, ns, name);
        if let Some((_, _, note)) = events
            .iter()
            .find(|(t, r, n)| t == type_ && r == reason && n.contains(text))
        {
            return note.clone();
        }
        if Instant::now() > deadline {
            panic!(
                "no {type_} {reason} event containing {text:?} about {ns}/{name}; events: {events:#?}\n--- controller log ---\n{}",
                controller.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
