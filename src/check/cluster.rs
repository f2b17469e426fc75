//! Step 6: what the cluster holds for the ServiceAccount — its secrets (expiry, attached or not, owned or in
//! the way) and its recent Warning events. Read-only; the evaluation is pure.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::report::{Status, Step};
use crate::annotations as keys;
use crate::kube::types::{Event, SecretMetadata, ServiceAccount};
use crate::kube::{Client, ListParams, Reason};
use crate::reconcile::service_account::foreign_secret_message;
use crate::secret;

/// Warning events older than this are history, not news.
const RECENT_EVENTS: chrono::Duration = chrono::Duration::hours(1);
/// At most this many events are shown, newest first.
const MAX_EVENTS: usize = 10;

/// The secrets at the wanted names (`None`: no such secret) and the ones labelled for this ServiceAccount.
pub(crate) struct Secrets {
    pub wanted: Vec<(String, Option<SecretMetadata>)>,
    pub labelled: Vec<SecretMetadata>,
}

/// Reads the secrets at `wanted` names and those carrying this ServiceAccount's label (metadata only).
pub(crate) fn fetch_secrets(
    client: &Client,
    service_account: &ServiceAccount,
    wanted: &[String],
) -> Result<Secrets, String> {
    let meta = &service_account.metadata;
    let mut found = Vec::new();
    for name in wanted {
        match client.get::<SecretMetadata>(Some(&meta.namespace), name) {
            Ok(secret) => found.push((name.clone(), Some(secret))),
            Err(e) if e.is(Reason::NotFound) => found.push((name.clone(), None)),
            Err(e) => return Err(format!("reading secret {name}: {e}")),
        }
    }
    let params = ListParams {
        label_selector: Some(format!(
            "{}={}",
            keys::SERVICE_ACCOUNT_LABEL,
            secret::service_account_label_value(&meta.name)
        )),
        ..Default::default()
    };
    let mut labelled = Vec::new();
    client
        .list_each::<SecretMetadata>(Some(&meta.namespace), &params, |s| labelled.push(s))
        .map_err(|e| format!("listing the serviceaccount's secrets: {e}"))?;
    Ok(Secrets {
        wanted: found,
        labelled,
    })
}

/// The secrets step. `wanted` is empty when the configuration is missing or invalid.
pub(crate) fn evaluate_secrets(
    service_account: &ServiceAccount,
    secrets: &Secrets,
    now: DateTime<Utc>,
) -> Step {
    let meta = &service_account.metadata;
    let attached: Vec<&str> = service_account
        .image_pull_secrets
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    let mut step = Step::new("secrets", Status::Pass);
    for (name, found) in &secrets.wanted {
        let Some(found) = found else {
            step.set_status(Status::Fail);
            step.detail.push(format!("{name}: does not exist"));
            step.fix.push(format!(
                "the controller has not provisioned {name}: check that it runs and watches namespace {}, and its Warning events",
                meta.namespace
            ));
            continue;
        };
        if !secret::is_owned_by(&found.metadata, meta) {
            step.set_status(Status::Fail);
            step.detail
                .push(format!("{name}: {}", foreign_secret_message(name)));
            step.fix.push(format!(
                "kubectl -n {} delete secret {name}, or set the {} annotation to a free name",
                meta.namespace,
                keys::SECRET_NAME
            ));
            continue;
        }
        let expires_at = found
            .metadata
            .annotations
            .get(keys::EXPIRES_AT)
            .and_then(|t| secret::parse_time(t));
        let expiry = match expires_at {
            Some(at) if at <= now => {
                step.set_status(Status::Fail);
                step.fix.push(format!(
                    "{name} has expired: the controller did not refresh it; see its Warning events and logs"
                ));
                format!("expired at {}", secret::format_time(at))
            }
            Some(at) => format!(
                "expires at {} (in {})",
                secret::format_time(at),
                human_duration(at - now)
            ),
            None => "no expiry recorded".to_string(),
        };
        let attachment = if attached.contains(&name.as_str()) {
            "attached"
        } else {
            step.set_status(Status::Fail);
            step.fix.push(format!(
                "{name} is not in the ServiceAccount's imagePullSecrets, so new pods do not get it; the controller attaches it on its next run"
            ));
            "not attached"
        };
        step.detail.push(format!("{name}: {expiry}, {attachment}"));
    }
    let wanted: Vec<&str> = secrets.wanted.iter().map(|(n, _)| n.as_str()).collect();
    for extra in secrets.labelled.iter().filter(|s| {
        !wanted.contains(&s.metadata.name.as_str()) && secret::is_owned_by(&s.metadata, meta)
    }) {
        step.detail.push(format!(
            "{}: provisioned earlier, no longer wanted (the controller removes it)",
            extra.metadata.name
        ));
    }
    if step.detail.is_empty() {
        step.detail.push("no provisioned secrets".to_string());
    }
    step
}

/// The ServiceAccount's Warning events.
pub(crate) fn fetch_warning_events(
    client: &Client,
    service_account: &ServiceAccount,
) -> Result<Vec<Event>, String> {
    let meta = &service_account.metadata;
    let params = ListParams {
        field_selector: Some(format!("regarding.name={},type=Warning", meta.name)),
        ..Default::default()
    };
    let mut events = Vec::new();
    client
        .list_each::<Event>(Some(&meta.namespace), &params, |e| {
            if e.regarding.kind == "ServiceAccount"
                && (e.regarding.uid.is_empty() || e.regarding.uid == meta.uid)
                && e.type_ == "Warning"
            {
                events.push(e)
            }
        })
        .map_err(|e| format!("listing the serviceaccount's events: {e}"))?;
    Ok(events)
}

/// When an event was last observed: its series' last observation, or its own time.
fn last_seen(event: &Event) -> Option<DateTime<Utc>> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    text(
        event
            .other
            .get("series")
            .and_then(|s| s.get("lastObservedTime")),
    )
    .or_else(|| Some(event.event_time.clone()).filter(|t| !t.is_empty()))
    .or_else(|| text(event.other.get("deprecatedLastTimestamp")))
    .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
    .map(|t| t.with_timezone(&Utc))
}

/// The events step: recent warnings are shown and make it a warning, never a failure (they are history).
pub(crate) fn evaluate_events(events: &[Event], now: DateTime<Utc>) -> Step {
    let mut newest_first: Vec<&Event> = events.iter().collect();
    newest_first.sort_by_key(|e| std::cmp::Reverse(last_seen(e)));
    let recent: Vec<&Event> = newest_first
        .into_iter()
        .filter(|e| last_seen(e).is_some_and(|t| now - t <= RECENT_EVENTS))
        .take(MAX_EVENTS)
        .collect();
    if recent.is_empty() {
        return Step::new("events", Status::Pass).detail("no Warning events in the last hour");
    }
    let mut step = Step::new("events", Status::Warn);
    for event in recent {
        let at = last_seen(event)
            .map(secret::format_time)
            .unwrap_or_default();
        let count = event
            .other
            .get("series")
            .and_then(|s| s.get("count"))
            .and_then(Value::as_u64)
            .map(|c| format!(" (x{c})"))
            .unwrap_or_default();
        step.detail
            .push(format!("{at} {}{count}: {}", event.reason, event.note));
    }
    step
}

/// `2h05m`, `14m`, `40s`.
pub(crate) fn human_duration(duration: chrono::Duration) -> String {
    let seconds = duration.num_seconds().max(0);
    match seconds {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::types::{LocalObjectReference, ObjectMeta, OwnerReference};

    fn service_account(attached: &[&str]) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                name: "app".into(),
                namespace: "team-a".into(),
                uid: "sa-uid".into(),
                ..Default::default()
            },
            image_pull_secrets: Some(
                attached
                    .iter()
                    .map(|n| LocalObjectReference {
                        name: n.to_string(),
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn owned(name: &str, expires_at: &str) -> SecretMetadata {
        let mut meta = ObjectMeta {
            name: name.into(),
            owner_references: vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ServiceAccount".into(),
                name: "app".into(),
                uid: "sa-uid".into(),
                controller: Some(true),
                block_owner_deletion: None,
            }],
            ..Default::default()
        };
        meta.annotations
            .insert(keys::EXPIRES_AT.into(), expires_at.into());
        SecretMetadata { metadata: meta }
    }

    fn now() -> DateTime<Utc> {
        "2030-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn owned_attached_and_fresh_passes() {
        let secrets = Secrets {
            wanted: vec![("s".into(), Some(owned("s", "2030-01-01T02:05:00Z")))],
            labelled: vec![
                owned("s", "2030-01-01T02:05:00Z"),
                owned("old", "2030-01-01T02:05:00Z"),
            ],
        };
        let step = evaluate_secrets(&service_account(&["user", "s"]), &secrets, now());
        assert_eq!(step.status, Status::Pass, "{step:?}");
        assert_eq!(
            step.detail,
            vec![
                "s: expires at 2030-01-01T02:05:00Z (in 2h05m), attached",
                "old: provisioned earlier, no longer wanted (the controller removes it)"
            ]
        );
    }

    #[test]
    fn missing_foreign_expired_and_detached_fail() {
        let foreign = SecretMetadata {
            metadata: ObjectMeta {
                name: "f".into(),
                ..Default::default()
            },
        };
        let secrets = Secrets {
            wanted: vec![
                ("m".into(), None),
                ("f".into(), Some(foreign)),
                ("e".into(), Some(owned("e", "2029-12-31T23:00:00Z"))),
                ("d".into(), Some(owned("d", "2030-01-01T01:00:00Z"))),
            ],
            labelled: vec![],
        };
        let step = evaluate_secrets(&service_account(&["e"]), &secrets, now());
        assert_eq!(step.status, Status::Fail);
        assert_eq!(step.detail[0], "m: does not exist");
        assert!(step.detail[1].starts_with(
            "f: a secret named f already exists and is not managed by this controller"
        ));
        assert_eq!(
            step.detail[2],
            "e: expired at 2029-12-31T23:00:00Z, attached"
        );
        assert_eq!(
            step.detail[3],
            "d: expires at 2030-01-01T01:00:00Z (in 1h00m), not attached"
        );
        assert!(step.fix[1].contains("kubectl -n team-a delete secret f"));
    }

    #[test]
    fn recent_warnings_are_listed_newest_first() {
        let event = |reason: &str, at: &str| Event {
            reason: reason.into(),
            note: format!("{reason} note"),
            event_time: at.into(),
            type_: "Warning".into(),
            ..Default::default()
        };
        let events = vec![
            event("Old", "2029-12-31T20:00:00.000000Z"),
            event("New", "2029-12-31T23:59:00.000000Z"),
        ];
        let step = evaluate_events(&events, now());
        assert_eq!(step.status, Status::Warn);
        assert_eq!(step.detail, vec!["2029-12-31T23:59:00Z New: New note"]);
        assert_eq!(evaluate_events(&[], now()).status, Status::Pass);
    }
}
