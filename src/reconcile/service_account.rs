//! Reconcile of one ServiceAccount: provision, refresh, attach and clean up its image pull secrets.
//!
//! What must stay true (SPEC B1): `.imagePullSecrets` is updated only with the resourceVersion just read, and
//! only entries this controller owns are ever removed; a Secret it does not own is never overwritten or
//! deleted; an invalid configuration writes nothing but a Warning event.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::events::{reference, EventType};
use super::{Context, ReconcileError};
use crate::annotations as keys;
use crate::cloud::Principal;
use crate::kube::types::{LocalObjectReference, Secret, ServiceAccount};
use crate::kube::{ListParams, Reason};
use crate::metrics::metrics;
use crate::retry::Retry;
use crate::secret::{self, Freshness};
use crate::spec::{self, Configuration, Parsed, PrincipalFailure};

/// Attempts at the read-modify-write of `.imagePullSecrets` before giving up for this run.
const ATTACH_ATTEMPTS: u32 = 8;

/// What the worker does after a successful reconcile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Run again after this long (the next refresh).
    pub requeue_after: Option<Duration>,
    /// Look at the ServiceAccount's pending pods (its secrets are in place).
    pub check_pods: bool,
}

/// Reconciles ServiceAccount `namespace/name`.
pub fn reconcile(ctx: &Context, namespace: &str, name: &str) -> Result<Outcome, ReconcileError> {
    let service_account: ServiceAccount = match ctx.client.get(Some(namespace), name) {
        Ok(sa) => sa,
        Err(e) if e.is(Reason::NotFound) => {
            // The garbage collector removes its secrets through their ownerReferences.
            return Ok(Outcome::default());
        }
        Err(e) => return Err(ReconcileError::kube("reading serviceaccount", &e)),
    };
    if service_account.metadata.deletion_timestamp.is_some() {
        return Ok(Outcome::default());
    }
    let owned = owned_secrets(ctx, &service_account)?;
    match spec::parse(namespace, name, &service_account.metadata.annotations) {
        Parsed::NotConfigured => {
            decommission(ctx, &service_account, &owned)?;
            Ok(Outcome::default())
        }
        Parsed::Invalid(message) => {
            warn(
                ctx,
                &service_account,
                keys::REASON_FAILED_PROVISIONING,
                &format!("invalid configuration: {message}"),
            );
            metrics().provisioning("none", "config");
            Ok(Outcome::default())
        }
        Parsed::Configured(configuration) => {
            match spec::check_principal_limit(&configuration, ctx.options.max_principals) {
                Ok(()) => provision(ctx, service_account, owned, &configuration),
                Err(message) => {
                    warn(
                        ctx,
                        &service_account,
                        keys::REASON_FAILED_PROVISIONING,
                        &message,
                    );
                    metrics().provisioning("none", "config");
                    Ok(Outcome::default())
                }
            }
        }
    }
}

/// The secrets of this ServiceAccount that this controller may manage, by name.
fn owned_secrets(
    ctx: &Context,
    service_account: &ServiceAccount,
) -> Result<BTreeMap<String, Secret>, ReconcileError> {
    let meta = &service_account.metadata;
    let params = ListParams {
        label_selector: Some(format!(
            "{}={}",
            keys::SERVICE_ACCOUNT_LABEL,
            secret::service_account_label_value(&meta.name)
        )),
        ..Default::default()
    };
    let mut owned = BTreeMap::new();
    ctx.client
        .list_each::<Secret>(Some(&meta.namespace), &params, |s| {
            if secret::is_owned_by(&s.metadata, meta) {
                owned.insert(s.metadata.name.clone(), s);
            }
        })
        .map_err(|e| ReconcileError::kube("listing the serviceaccount's secrets", &e))?;
    Ok(owned)
}

fn provision(
    ctx: &Context,
    service_account: ServiceAccount,
    mut owned: BTreeMap<String, Secret>,
    configuration: &Configuration,
) -> Result<Outcome, ReconcileError> {
    for warning in &configuration.warnings {
        warn(
            ctx,
            &service_account,
            keys::REASON_FAILED_PROVISIONING,
            warning,
        );
    }
    let names = configuration.secret_names();
    let mut next_refresh: Option<DateTime<Utc>> = None;
    let mut failures = Vec::new();
    let mut ready = Vec::new();
    for (name, principal) in names.iter().zip(&configuration.principals) {
        let now = Utc::now();
        let assumed = match principal {
            Principal::Aws(_) => ctx.options.assumed_lifetime_aws,
            Principal::Google(_) => ctx.options.assumed_lifetime_google,
            Principal::Azure(_) => ctx.options.assumed_lifetime_azure,
        };
        let due = match owned.get(name) {
            Some(existing) => secret::freshness(
                existing,
                &configuration.registry,
                principal,
                assumed,
                ctx.options.min_requeue,
                ctx.options.refresh_jitter,
                now,
            ),
            None => Freshness::Due("the secret does not exist"),
        };
        match due {
            Freshness::FreshUntil(refresh_at) => {
                log::debug!(
                    "{}/{}: secret {name} is fresh until {refresh_at}",
                    service_account.metadata.namespace,
                    service_account.metadata.name
                );
                next_refresh = earliest(next_refresh, refresh_at);
                ready.push(name.clone());
            }
            Freshness::Due(why) => {
                log::debug!(
                    "{}/{}: secret {name} is due: {why}",
                    service_account.metadata.namespace,
                    service_account.metadata.name
                );
                match provision_one(
                    ctx,
                    &service_account,
                    owned.get(name),
                    name,
                    principal,
                    configuration,
                ) {
                    Ok((written, refresh_at)) => {
                        next_refresh = earliest(next_refresh, refresh_at);
                        owned.insert(name.clone(), written);
                        ready.push(name.clone());
                    }
                    Err(message) => failures.push(message),
                }
            }
        }
    }

    let unwanted: Vec<String> = owned
        .keys()
        .filter(|n| !names.contains(n))
        .cloned()
        .collect();
    let attached = attach(ctx, &service_account, &ready, &unwanted);
    if let Err(error) = &attached {
        failures.push(PrincipalFailure {
            message: error.message.clone(),
            report: true,
            retry: error.retry,
        });
    }
    // One Warning names every failing principal, so repeats of the same failures form one event series.
    // A process that just lost the lease leaves the telling to the new leader.
    let note =
        spec::summarize_failures(&failures, names.len()).filter(|_| ctx.check_may_act().is_ok());
    if let Some(note) = note {
        warn(
            ctx,
            &service_account,
            keys::REASON_FAILED_PROVISIONING,
            &note,
        );
    }
    if attached.is_ok() && !unwanted.is_empty() {
        let unwanted_secrets: Vec<&Secret> = unwanted.iter().filter_map(|n| owned.get(n)).collect();
        delete_secrets(ctx, &service_account, &unwanted_secrets)?;
    }

    if !failures.is_empty() {
        let messages: Vec<&str> = failures.iter().map(|f| f.message.as_str()).collect();
        let retry = Retry::combine_all(failures.iter().map(|f| f.retry));
        return Err(ReconcileError::new(messages.join("; "), retry));
    }
    let now = Utc::now();
    let requeue_after = next_refresh.map(|at| {
        secret::delay_until(at, now, ctx.options.refresh_jitter, ctx.options.min_requeue)
    });
    Ok(Outcome {
        requeue_after,
        check_pods: ctx.options.pod_eviction && ready.len() == names.len(),
    })
}

fn earliest(current: Option<DateTime<Utc>>, candidate: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Some(current.map_or(candidate, |c| c.min(candidate)))
}

/// Obtains credentials for one principal and writes its secret. Returns the written secret and when it
/// should be refreshed, or why not (the caller reports all failures in one Warning).
fn provision_one(
    ctx: &Context,
    service_account: &ServiceAccount,
    existing: Option<&Secret>,
    name: &str,
    principal: &Principal,
    configuration: &Configuration,
) -> Result<(Secret, DateTime<Utc>), PrincipalFailure> {
    let meta = &service_account.metadata;
    let provider = principal.provider();
    let principal_id = secret::principal_id(principal);
    let fail = |step: &str, message: String, retry: Retry| {
        metrics().provisioning(provider, step);
        PrincipalFailure {
            message,
            report: true,
            retry,
        }
    };
    let quiet = |error: ReconcileError| PrincipalFailure {
        message: error.message,
        report: false,
        retry: error.retry,
    };
    ctx.check_may_act().map_err(quiet)?;
    if existing.is_none() {
        // A name taken by someone else's secret is found before any token is minted or exchanged.
        match ctx.client.get::<Secret>(Some(&meta.namespace), name) {
            Ok(other) if !secret::is_owned_by(&other.metadata, meta) => {
                return Err(fail(
                    "secret",
                    foreign_secret_message(name),
                    Retry::Permanent,
                ));
            }
            Ok(_) => {
                return Err(quiet(ReconcileError::transient(
                    "the secret was created concurrently; will retry",
                )))
            }
            Err(e) if e.is(Reason::NotFound) => {}
            Err(e) => {
                return Err(fail(
                    "secret",
                    format!("checking whether secret {name} exists: {e}"),
                    e.retry(),
                ))
            }
        }
    }

    let token = ctx
        .client
        .create_token(
            &meta.namespace,
            &meta.name,
            &[configuration.audience.as_str()],
            ctx.options.token_expiration,
        )
        .map_err(|e| {
            fail(
                "token",
                format!(
                    "requesting a serviceaccount token with audience {:?} for {principal_id}: {e}",
                    configuration.audience
                ),
                e.retry(),
            )
        })?;
    let obtained_at = Utc::now();
    let credentials = ctx.clouds.registry_credentials(principal, &token.token);
    let credentials = credentials.map_err(|e| {
        fail(
            "exchange",
            format!("obtaining registry credentials for {principal_id}: {e}"),
            e.retry_class(),
        )
    })?;

    ctx.check_may_act().map_err(quiet)?;
    let desired = secret::build_secret(
        service_account,
        name,
        &configuration.registry,
        principal,
        &credentials,
        obtained_at,
    );
    let written = write_secret(ctx, service_account, existing, desired).map_err(|(e, retry)| {
        fail(
            "secret",
            format!("writing secret {name} for {principal_id}: {e}"),
            retry,
        )
    })?;
    ctx.own_writes.record("Secret", &written.metadata);

    let lifetime = (credentials.expires_at - obtained_at)
        .to_std()
        .unwrap_or(Duration::ZERO);
    let refresh_at = secret::refresh_time(credentials.expires_at, lifetime);
    metrics().provisioning(provider, "success");
    log::info!(
        namespace = meta.namespace.as_str(), serviceaccount = meta.name.as_str(), secret = name;
        "provisioned secret for {principal_id}, valid until {}", secret::format_time(credentials.expires_at)
    );
    ctx.events.publish(
        reference("v1", "ServiceAccount", meta),
        EventType::Normal,
        keys::REASON_PROVISIONED,
        "Provision",
        &format!(
            "Provisioned image pull secret {name} for {principal_id}, valid until {}",
            secret::format_time(credentials.expires_at)
        ),
    );
    Ok((written, refresh_at))
}

/// Creates the secret, or updates the owned one in place. A secret of that name that this controller does
/// not own is left untouched. A failure comes with its retry class.
fn write_secret(
    ctx: &Context,
    service_account: &ServiceAccount,
    existing: Option<&Secret>,
    desired: Secret,
) -> Result<Secret, (String, Retry)> {
    let classed = |e: crate::kube::Error| (e.to_string(), e.retry());
    let namespace = service_account.metadata.namespace.as_str();
    let name = desired.metadata.name.clone();
    let Some(existing) = existing else {
        return match ctx.client.create(Some(namespace), &desired) {
            Ok(created) => Ok(created),
            Err(e) if e.is(Reason::AlreadyExists) => Err(match ctx.client.get::<Secret>(Some(namespace), &name) {
                Ok(other) if !secret::is_owned_by(&other.metadata, &service_account.metadata) => {
                    (foreign_secret_message(&name), Retry::Permanent)
                }
                Ok(_) => ("the secret was created concurrently; will retry".to_string(), Retry::Transient),
                Err(e) => (format!("a secret named {name} already exists and cannot be read to check who owns it: {e}"), e.retry()),
            }),
            Err(e) => Err(classed(e)),
        };
    };
    if existing.type_ != desired.type_ {
        // The type of a secret cannot change: replace the owned secret, guarded by its UID.
        ctx.client
            .delete::<Secret>(Some(namespace), &name, Some(&existing.metadata.uid))
            .map_err(|e| {
                (
                    format!("replacing the secret of the wrong type: {e}"),
                    e.retry(),
                )
            })?;
        return ctx
            .client
            .create(Some(namespace), &desired)
            .map_err(classed);
    }
    let mut updated = existing.clone();
    updated.data = desired.data;
    updated.metadata.labels.extend(desired.metadata.labels);
    updated
        .metadata
        .annotations
        .extend(desired.metadata.annotations);
    let owner = secret::owner_reference(service_account);
    if !updated
        .metadata
        .owner_references
        .iter()
        .any(|r| r.uid == owner.uid)
    {
        updated.metadata.owner_references.push(owner);
    }
    ctx.client
        .replace(Some(namespace), &name, &updated)
        .map_err(classed)
}

/// Makes `.imagePullSecrets` contain every name in `add` and none in `remove`, keeping every other entry in
/// its place. Optimistic concurrency: the update carries the resourceVersion that was read; on a conflict the
/// ServiceAccount is read again and the change recomputed.
fn attach(
    ctx: &Context,
    service_account: &ServiceAccount,
    add: &[String],
    remove: &[String],
) -> Result<(), ReconcileError> {
    let meta = &service_account.metadata;
    let mut current = service_account.clone();
    for _ in 0..ATTACH_ATTEMPTS {
        let Some(entries) = updated_pull_secrets(
            current.image_pull_secrets.as_deref().unwrap_or_default(),
            add,
            remove,
        ) else {
            return Ok(());
        };
        ctx.check_may_act()?;
        let mut updated = current.clone();
        updated.image_pull_secrets = Some(entries);
        match ctx
            .client
            .replace(Some(&meta.namespace), &meta.name, &updated)
        {
            Ok(written) => {
                ctx.own_writes.record("ServiceAccount", &written.metadata);
                log::info!(
                    namespace = meta.namespace.as_str(), serviceaccount = meta.name.as_str();
                    "updated imagePullSecrets (attached {add:?}, detached {remove:?})"
                );
                return Ok(());
            }
            Err(e) if e.is(Reason::Conflict) => {
                log::debug!("{}/{}: serviceaccount changed while updating imagePullSecrets; reading it again", meta.namespace, meta.name);
                current = ctx
                    .client
                    .get(Some(&meta.namespace), &meta.name)
                    .map_err(|e| {
                        ReconcileError::kube("re-reading serviceaccount after a conflict", &e)
                    })?;
                if current.metadata.uid != meta.uid {
                    return Err(ReconcileError::transient(
                        "the serviceaccount was re-created meanwhile",
                    ));
                }
            }
            Err(e) => {
                metrics().provisioning("none", "attach");
                return Err(ReconcileError::kube(
                    "updating imagePullSecrets of the serviceaccount",
                    &e,
                ));
            }
        }
    }
    Err(ReconcileError::transient(format!(
        "updating imagePullSecrets: still conflicting after {ATTACH_ATTEMPTS} attempts"
    )))
}

/// The new `.imagePullSecrets`, or `None` when nothing changes.
pub fn updated_pull_secrets(
    current: &[LocalObjectReference],
    add: &[String],
    remove: &[String],
) -> Option<Vec<LocalObjectReference>> {
    let mut entries: Vec<LocalObjectReference> = current
        .iter()
        .filter(|e| !remove.contains(&e.name))
        .cloned()
        .collect();
    for name in add {
        if !entries.iter().any(|e| &e.name == name) {
            entries.push(LocalObjectReference { name: name.clone() });
        }
    }
    (entries != current).then_some(entries)
}

/// Removes every owned secret: detach first (so pods are never admitted with a dangling name), then delete.
fn decommission(
    ctx: &Context,
    service_account: &ServiceAccount,
    owned: &BTreeMap<String, Secret>,
) -> Result<(), ReconcileError> {
    let unwanted: Vec<&Secret> = owned.values().collect();
    if unwanted.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = unwanted.iter().map(|s| s.metadata.name.clone()).collect();
    if let Err(error) = attach(ctx, service_account, &[], &names) {
        warn(
            ctx,
            service_account,
            keys::REASON_FAILED_DECOMMISSIONING,
            &error.message,
        );
        return Err(error);
    }
    delete_secrets(ctx, service_account, &unwanted)
}

fn delete_secrets(
    ctx: &Context,
    service_account: &ServiceAccount,
    secrets: &[&Secret],
) -> Result<(), ReconcileError> {
    let meta = &service_account.metadata;
    let mut deleted = Vec::new();
    for secret in secrets {
        ctx.check_may_act()?;
        let name = &secret.metadata.name;
        match ctx
            .client
            .delete::<Secret>(Some(&meta.namespace), name, Some(&secret.metadata.uid))
        {
            Ok(()) => deleted.push(name.clone()),
            Err(e) if e.is(Reason::NotFound) => {}
            Err(e) => {
                let error = ReconcileError::kube(&format!("deleting secret {name}"), &e);
                warn(
                    ctx,
                    service_account,
                    keys::REASON_FAILED_DECOMMISSIONING,
                    &error.message,
                );
                return Err(error);
            }
        }
    }
    if !deleted.is_empty() {
        log::info!(namespace = meta.namespace.as_str(), serviceaccount = meta.name.as_str(); "removed secrets {deleted:?}");
        ctx.events.publish(
            reference("v1", "ServiceAccount", meta),
            EventType::Normal,
            keys::REASON_DECOMMISSIONED,
            "Decommission",
            &format!(
                "Removed image pull secrets that are no longer wanted: {}",
                deleted.join(", ")
            ),
        );
    }
    Ok(())
}

/// The Warning when a Secret of a wanted name belongs to someone else; `check` reports the same words.
pub fn foreign_secret_message(name: &str) -> String {
    format!(
        "a secret named {name} already exists and is not managed by this controller for this serviceaccount; \
         it was left untouched: delete or rename it, or choose another name with the {} annotation",
        keys::SECRET_NAME
    )
}

fn warn(ctx: &Context, service_account: &ServiceAccount, reason: &str, message: &str) {
    ctx.events.publish(
        reference("v1", "ServiceAccount", &service_account.metadata),
        EventType::Warning,
        reason,
        "Provision",
        message,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(names: &[&str]) -> Vec<LocalObjectReference> {
        names
            .iter()
            .map(|n| LocalObjectReference {
                name: n.to_string(),
            })
            .collect()
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn pull_secret_updates_keep_foreign_entries_in_order() {
        assert_eq!(
            updated_pull_secrets(&refs(&["user", "ours"]), &strings(&["ours"]), &[]),
            None
        );
        assert_eq!(
            updated_pull_secrets(&refs(&["user"]), &strings(&["ours", "ours-1"]), &[]),
            Some(refs(&["user", "ours", "ours-1"]))
        );
        assert_eq!(
            updated_pull_secrets(
                &refs(&["old", "user", "ours"]),
                &strings(&["ours"]),
                &strings(&["old"])
            ),
            Some(refs(&["user", "ours"]))
        );
        assert_eq!(updated_pull_secrets(&[], &[], &strings(&["x"])), None);
    }
}
