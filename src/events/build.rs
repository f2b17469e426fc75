//! Building what is written (pure): the Event of a new series, its name, the patch that records a series,
//! and reading a series count back.
//!
//! What must stay true: an Event's name is `<object>.<hash of object UID, type, reason, action, note>`, the
//! same in every process, so a restarted process or a new leader continues the series the previous one began;
//! a note is cut to what the API accepts (1 KiB) at a character boundary; the SHA-256 behind a name is
//! computed once per occurrence.

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use super::EventType;
use crate::annotations::CONTROLLER_NAME;
use crate::kube::types::{Event, ObjectMeta, ObjectReference};

/// Notes longer than this are cut: the API refuses notes over 1 KiB.
const MAX_NOTE: usize = 1024;

/// One occurrence of an event, its note cut to size, hashed once: the digest identifies its series and,
/// with the object's name, names its Event.
pub(super) struct Occurrence<'a> {
    regarding: &'a ObjectReference,
    type_: EventType,
    reason: &'a str,
    action: &'a str,
    note: String,
    /// The first 8 bytes of the SHA-256 digest of object UID, type, reason, action and note.
    pub(super) digest: [u8; 8],
    /// The Event's name.
    pub(super) name: String,
}

impl<'a> Occurrence<'a> {
    pub(super) fn new(
        regarding: &'a ObjectReference,
        type_: EventType,
        reason: &'a str,
        action: &'a str,
        note: &str,
    ) -> Self {
        let note = truncate_note(note);
        let digest = series_digest(&regarding.uid, type_, reason, action, &note);
        Occurrence {
            name: name_of(&regarding.name, &digest),
            regarding,
            type_,
            reason,
            action,
            note,
            digest,
        }
    }

    /// The Event of a new series, reported by `instance` at `now`.
    pub(super) fn into_event(self, instance: &str, now: DateTime<Utc>) -> Event {
        Event {
            metadata: ObjectMeta {
                name: self.name,
                namespace: self.regarding.namespace.clone(),
                ..Default::default()
            },
            event_time: now.to_rfc3339_opts(SecondsFormat::Micros, true),
            reporting_controller: CONTROLLER_NAME.to_string(),
            reporting_instance: instance.chars().take(128).collect(),
            action: self.action.to_string(),
            reason: self.reason.to_string(),
            regarding: self.regarding.clone(),
            note: self.note,
            type_: self.type_.as_str().to_string(),
            ..Default::default()
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

/// The name of the Event for this occurrence: `<object>.<hash of object UID, type, reason, action, note>`,
/// the same in every process, so a series survives restarts and leader changes.
pub fn event_name(
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) -> String {
    let digest = series_digest(&regarding.uid, type_, reason, action, note);
    name_of(&regarding.name, &digest)
}

/// The Event object of a new series.
pub fn build_event(
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
    instance: &str,
    now: DateTime<Utc>,
) -> Event {
    Occurrence::new(regarding, type_, reason, action, note).into_event(instance, now)
}

/// `<object>.<digest in hex>`, the object's name cut so that the whole fits the API's 253 characters.
fn name_of(object: &str, digest: &[u8; 8]) -> String {
    let suffix: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let prefix: String = object.chars().take(253 - 17).collect();
    format!("{prefix}.{suffix}")
}

/// The first 8 bytes of the SHA-256 digest of what identifies a series (object UID, type, reason, action, note).
fn series_digest(uid: &str, type_: EventType, reason: &str, action: &str, note: &str) -> [u8; 8] {
    let mut hasher = Sha256::new();
    for part in [uid, type_.as_str(), reason, action, note] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    first
}

/// `note` cut to what the API accepts, at a character boundary.
fn truncate_note(note: &str) -> String {
    let mut note = note.to_string();
    if note.len() > MAX_NOTE {
        let mut cut = MAX_NOTE - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    note
}

/// The merge patch that records a series of `count` occurrences, the last at `last_observed_at`.
pub(super) fn series_patch(count: u32, last_observed_at: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({"series": {
        "count": count,
        "lastObservedTime": last_observed_at.to_rfc3339_opts(SecondsFormat::Micros, true),
    }})
}

/// How many occurrences an Event on the server records: its series count, else one.
pub(super) fn series_count(event: &Event) -> u32 {
    event
        .other
        .get("series")
        .and_then(|s| s.get("count"))
        .and_then(|c| c.as_u64())
        .map_or(1, |c| c.min(u64::from(u32::MAX - 1)) as u32)
        .max(1)
}

/// An Event's `eventTime` (RFC 3339 with microseconds).
pub(super) fn parse_micro_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regarding() -> ObjectReference {
        ObjectReference {
            name: "sa".into(),
            namespace: "ns".into(),
            kind: "ServiceAccount".into(),
            api_version: "v1".into(),
            uid: "u".into(),
            ..Default::default()
        }
    }

    #[test]
    fn events_have_stable_names_and_bounded_notes() {
        let long = "é".repeat(2000);
        let event = build_event(
            &regarding(),
            EventType::Warning,
            "R",
            "Provision",
            &long,
            "me",
            Utc::now(),
        );
        assert!(event.note.len() <= MAX_NOTE);
        assert!(event.metadata.name.starts_with("sa."));
        assert_eq!(event.type_, "Warning");
        assert_eq!(event.regarding.uid, "u");
        let again = event_name(
            &regarding(),
            EventType::Warning,
            "R",
            "Provision",
            &event.note,
        );
        assert_eq!(event.metadata.name, again, "the same in every process");
        assert_ne!(
            again,
            event_name(&regarding(), EventType::Warning, "R", "Provision", "other"),
            "another note, another series"
        );
        let other_object = ObjectReference {
            uid: "u2".into(),
            ..regarding()
        };
        assert_ne!(
            again,
            event_name(
                &other_object,
                EventType::Warning,
                "R",
                "Provision",
                &event.note
            )
        );
        let long_name = ObjectReference {
            name: "a".repeat(253),
            ..regarding()
        };
        let name = event_name(&long_name, EventType::Normal, "R", "A", "n");
        assert_eq!(name.len(), 253);
    }

    #[test]
    fn series_patches_and_counts_follow_the_api() {
        let at = DateTime::parse_from_rfc3339("2026-11-30T04:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            series_patch(3, at),
            serde_json::json!({"series": {"count": 3, "lastObservedTime": "2026-11-30T04:00:00.123456Z"}})
        );
        let mut event = Event::default();
        assert_eq!(series_count(&event), 1);
        event.other.insert(
            "series".into(),
            serde_json::json!({"count": 7, "lastObservedTime": "x"}),
        );
        assert_eq!(series_count(&event), 7);
    }
}
