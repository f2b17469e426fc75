//! Kubernetes events (`events.k8s.io/v1`) about ServiceAccounts and pods, the way users see what happened.
//!
//! What must stay true: publishing an event never fails a reconcile (a lost event is logged, not retried);
//! an identical Warning for the same object is not repeated within the dedup window, so a broken
//! ServiceAccount retried with backoff does not flood `kubectl describe`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};

use crate::annotations::CONTROLLER_NAME;
use crate::kube::types::{Event, ObjectMeta, ObjectReference};
use crate::kube::Client;

/// Notes longer than this are cut: the API refuses notes over 1 KiB.
const MAX_NOTE: usize = 1024;
/// Past this many remembered warnings, expired ones are pruned.
const PRUNE_AT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Publishes events, deduplicating warnings.
pub struct EventRecorder {
    client: Client,
    instance: String,
    window: Duration,
    recent_warnings: Mutex<HashMap<(String, String, String), Instant>>,
}

impl EventRecorder {
    /// `instance` identifies this process (`reportingInstance`); `window` is how long an identical warning
    /// is suppressed.
    pub fn new(client: Client, instance: &str, window: Duration) -> Self {
        EventRecorder {
            client,
            instance: instance.to_string(),
            window,
            recent_warnings: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes an event about `regarding` (kind and apiVersion as given), unless it is a repeated warning.
    pub fn publish(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        if type_ == EventType::Warning && self.is_repeat(&regarding.uid, reason, note) {
            log::debug!(
                "suppressed repeated {reason} event for {}/{}: {note}",
                regarding.namespace,
                regarding.name
            );
            return;
        }
        let event = build_event(&regarding, type_, reason, action, note, &self.instance);
        if let Err(error) = self.client.create(Some(&regarding.namespace), &event) {
            log::warn!(
                "cannot record {reason} event for {} {}/{}: {error}",
                regarding.kind,
                regarding.namespace,
                regarding.name
            );
        }
    }

    fn is_repeat(&self, uid: &str, reason: &str, note: &str) -> bool {
        let mut recent = self
            .recent_warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if recent.len() >= PRUNE_AT {
            let window = self.window;
            recent.retain(|_, at| now.duration_since(*at) < window);
        }
        let key = (uid.to_string(), reason.to_string(), note.to_string());
        match recent.get(&key) {
            Some(at) if now.duration_since(*at) < self.window => true,
            _ => {
                recent.insert(key, now);
                false
            }
        }
    }
}

/// A reference to an object for an event's `regarding`.
pub fn reference(api_version: &str, kind: &str, meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
    }
}

/// The event object: named `<object>.<hex nanoseconds>` like client-go's, so names are unique and sortable.
pub fn build_event(
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
    instance: &str,
) -> Event {
    let now = Utc::now();
    let nanos = now.timestamp_nanos_opt().unwrap_or_default();
    let suffix = format!(".{nanos:x}");
    let prefix: String = regarding.name.chars().take(253 - suffix.len()).collect();
    let mut note = note.to_string();
    if note.len() > MAX_NOTE {
        let mut cut = MAX_NOTE - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    Event {
        metadata: ObjectMeta {
            name: format!("{prefix}{suffix}"),
            namespace: regarding.namespace.clone(),
            ..Default::default()
        },
        event_time: now.to_rfc3339_opts(SecondsFormat::Micros, true),
        reporting_controller: CONTROLLER_NAME.to_string(),
        reporting_instance: instance.chars().take(128).collect(),
        action: action.to_string(),
        reason: reason.to_string(),
        regarding: regarding.clone(),
        note,
        type_: type_.as_str().to_string(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_unique_names_and_bounded_notes() {
        let regarding = ObjectReference {
            name: "sa".into(),
            namespace: "ns".into(),
            kind: "ServiceAccount".into(),
            api_version: "v1".into(),
            uid: "u".into(),
            ..Default::default()
        };
        let long = "é".repeat(2000);
        let event = build_event(
            &regarding,
            EventType::Warning,
            "R",
            "Provision",
            &long,
            "me",
        );
        assert!(event.note.len() <= MAX_NOTE);
        assert!(event.metadata.name.starts_with("sa."));
        assert_eq!(event.type_, "Warning");
        assert_eq!(event.regarding.uid, "u");
        let long_name = ObjectReference {
            name: "a".repeat(253),
            ..regarding
        };
        assert!(
            build_event(&long_name, EventType::Normal, "R", "A", "n", "me")
                .metadata
                .name
                .len()
                <= 253
        );
    }
}
