//! Reconcile of one ServiceAccount: provision, refresh, repair, attach and clean up its image pull secrets,
//! by carrying out what [`super::plan`] decided (the reads it asks for, the writes, metrics and events).
//!
//! It reads what the watches delivered (the caches), so a reconcile with nothing to do sends no request and a
//! new ServiceAccount costs only its writes: TokenRequest, Secret, ServiceAccount, Event.
//!
//! What must stay true (SPEC B1): `.imagePullSecrets` is updated only with the resourceVersion last seen, and
//! only entries this controller owns are ever removed; a secret it does not own (no controller ownerReference
//! to this ServiceAccount's UID, whatever its labels) is never overwritten, detached or deleted, and a
//! Warning says why it was left alone; an invalid configuration writes nothing but a Warning event.

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};

use super::plan::{plan, updated_pull_secrets, Action, Observed, Plan, Provision, Step};
use super::{Context, ReconcileError};
use crate::annotations as keys;
use crate::cache::secrets::CachedSecret;
use crate::cache::service_accounts::CachedServiceAccount;
use crate::cloud::{Principal, RegistryCredentials};
use crate::events::{reference, EventType};
use crate::key::ObjectKey;
use crate::kube::types::{LocalObjectReference, ObjectMeta, Secret, ServiceAccount};
use crate::kube::{ListParams, Patch, Reason};
use crate::metrics::metrics;
use crate::retry::Retry;
use crate::secret::{self, RefreshPolicy};
use crate::spec::{self, Configuration, PrincipalFailure};

/// Attempts at the read-modify-write of `.imagePullSecrets` before giving up for this run.
const ATTACH_ATTEMPTS: u32 = 8;

/// What the worker does after a successful reconcile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Run again after this long (the next refresh).
    pub requeue_after: Option<Duration>,
    /// Look at the ServiceAccount's pending pods (its secrets are in place).
    pub check_pods: bool,
}

/// The ServiceAccount being reconciled, as the cache (or, rarely, a read) gave it.
struct Subject {
    key: ObjectKey,
    meta: ObjectMeta,
    cached: CachedServiceAccount,
}

impl Subject {
    fn new(key: &ObjectKey, cached: CachedServiceAccount) -> Self {
        Subject {
            key: key.clone(),
            meta: ObjectMeta {
                namespace: key.namespace().to_string(),
                name: key.name().to_string(),
                uid: cached.uid.to_string(),
                resource_version: cached.resource_version.to_string(),
                ..Default::default()
            },
            cached,
        }
    }

    /// The ServiceAccount as the secret builder needs it (name, namespace, UID).
    fn object(&self) -> ServiceAccount {
        ServiceAccount {
            metadata: self.meta.clone(),
            ..Default::default()
        }
    }
}

/// Reconciles ServiceAccount `key`.
pub(crate) fn reconcile(ctx: &Context, key: &ObjectKey) -> Result<Outcome, ReconcileError> {
    let (namespace, name) = (key.namespace(), key.name());
    let secrets = ctx.caches.secrets_of(key);
    let cached = match ctx.caches.service_account(key) {
        Some(cached) => cached,
        None if secrets.is_empty() => return Ok(Outcome::default()),
        None => {
            // Not configured, yet labelled secrets point at it (configuration removed while this process was
            // not watching, or someone else's labelled secret): read it once to clean up or to warn.
            match read_service_account(ctx, key, None) {
                Ok(Some(sa)) => CachedServiceAccount::from_object(&sa),
                Ok(None) => return Ok(Outcome::default()),
                Err(e) => return Err(ReconcileError::kube("reading serviceaccount", &e)),
            }
        }
    };
    if cached.deleting {
        // The garbage collector removes its secrets through their ownerReferences.
        return Ok(Outcome::default());
    }
    let subject = Subject::new(key, cached);
    let parsed = spec::refuse_unlisted_azure_registry(
        spec::parse(namespace, name, &subject.cached.annotation_map()),
        &ctx.options.azure_registry_suffixes,
    );
    let known_foreign = |secret: &str| ctx.is_known_foreign(&key.sibling(secret));
    let observed = Observed {
        name,
        uid: &subject.meta.uid,
        attached: &subject.cached.image_pull_secrets,
        secrets: &secrets,
        known_foreign: &known_foreign,
    };
    let policy = refresh_policy(ctx, &subject);
    match plan(
        &observed,
        &parsed,
        ctx.options.max_principals,
        &policy,
        Utc::now(),
    ) {
        Plan::Decommission { foreign, remove } => {
            warn_foreign(ctx, &subject, &foreign);
            decommission(ctx, &subject, &remove)?;
            ctx.forget(key);
            ctx.caches
                .forget_if_unconfigured(key, &subject.meta.resource_version);
            Ok(Outcome::default())
        }
        Plan::Refuse { foreign, message } => {
            warn_foreign(ctx, &subject, &foreign);
            warn(ctx, &subject, keys::REASON_FAILED_PROVISIONING, &message);
            metrics().provisioning("none", "config");
            Ok(Outcome::default())
        }
        Plan::Provision(provision) => carry_out(ctx, &subject, &provision),
    }
}

/// The refresh policy for this ServiceAccount now: the flags, and the floor its expired-credential backoff
/// has reached.
fn refresh_policy(ctx: &Context, subject: &Subject) -> RefreshPolicy {
    let options = &ctx.options;
    RefreshPolicy {
        assumed_lifetime_aws: options.assumed_lifetime_aws,
        assumed_lifetime_google: options.assumed_lifetime_google,
        assumed_lifetime_azure: options.assumed_lifetime_azure,
        jitter: options.refresh_jitter,
        floor: ctx.expired_floor(&subject.key),
    }
}

/// One Warning per secret that claims this ServiceAccount without being owned by it (the plan leaves out
/// those whose name the configuration wants: their failure has its own Warning).
fn warn_foreign(ctx: &Context, subject: &Subject, foreign: &[&CachedSecret]) {
    for secret in foreign {
        log::debug!(
            "{}/{}: secret {} carries the label but is not owned; leaving it alone",
            subject.meta.namespace,
            subject.meta.name,
            secret.name
        );
        warn(
            ctx,
            subject,
            keys::REASON_FAILED_PROVISIONING,
            &format!(
                "secret {} carries the {} label but no controller ownerReference to this serviceaccount, so it is \
                 not managed by this controller; it was left alone (not updated, detached or deleted): remove the \
                 label, or delete the secret to have it provisioned",
                secret.name,
                keys::SERVICE_ACCOUNT_LABEL
            ),
        );
    }
}

/// Carries out a provisioning plan: each principal's step in order, then `.imagePullSecrets` (attach what
/// is ready, detach what is no longer wanted), the one Warning for every failure, and the deletion of what
/// was detached.
fn carry_out(
    ctx: &Context,
    subject: &Subject,
    provision: &Provision<'_>,
) -> Result<Outcome, ReconcileError> {
    let configuration = provision.configuration;
    for warning in &configuration.warnings {
        warn(ctx, subject, keys::REASON_FAILED_PROVISIONING, warning);
    }
    warn_foreign(ctx, subject, &provision.foreign);
    let mut next_refresh: Option<DateTime<Utc>> = None;
    let mut failures = Vec::new();
    let mut ready = Vec::new();
    for ((name, step), principal) in provision.principals.iter().zip(&configuration.principals) {
        let found;
        let action = match step {
            Step::Decided(action) => action.clone(),
            Step::Foreign => {
                metrics().provisioning(principal.provider(), "secret");
                failures.push(reported(foreign_secret_message(name), Retry::Permanent));
                continue;
            }
            Step::LookUp => match look_up(ctx, subject, name) {
                Ok(secret) => {
                    found = secret;
                    provision.decide(principal, found.as_ref())
                }
                Err(failure) => {
                    metrics().provisioning(principal.provider(), "secret");
                    failures.push(failure);
                    continue;
                }
            },
        };
        match act(ctx, subject, name, principal, configuration, action) {
            Ok(refresh_at) => {
                next_refresh = earliest(next_refresh, refresh_at);
                ready.push(name.clone());
            }
            Err(failure) => failures.push(failure),
        }
    }

    let unwanted: Vec<String> = provision
        .remove
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    let attached = attach(ctx, subject, &ready, &unwanted);
    if let Err(error) = &attached {
        failures.push(reported(error.message.clone(), error.retry));
    }
    // One Warning names every failing principal, so repeats of the same failures form one event series.
    // A process that just lost the lease leaves the telling to the new leader.
    let principals = provision.principals.len();
    let note =
        spec::summarize_failures(&failures, principals).filter(|_| ctx.check_may_act().is_ok());
    if let Some(note) = note {
        warn(ctx, subject, keys::REASON_FAILED_PROVISIONING, &note);
    }
    if attached.is_ok() && !provision.remove.is_empty() {
        delete_secrets(ctx, subject, &provision.remove)?;
    }

    if !failures.is_empty() {
        let messages: Vec<&str> = failures.iter().map(|f| f.message.as_str()).collect();
        let retry = Retry::combine_all(failures.iter().map(|f| f.retry));
        return Err(ReconcileError::new(messages.join("; "), retry));
    }
    // The floor again: this run's exchanges may have lengthened it.
    let policy = refresh_policy(ctx, subject);
    let requeue_after = next_refresh.map(|at| policy.delay_until(at, Utc::now()));
    Ok(Outcome {
        requeue_after,
        check_pods: ctx.options.pod_eviction && ready.len() == principals,
    })
}

/// Carries out one principal's action; returns when its secret is next due.
fn act(
    ctx: &Context,
    subject: &Subject,
    name: &str,
    principal: &Principal,
    configuration: &Configuration,
    action: Action<'_>,
) -> Result<DateTime<Utc>, PrincipalFailure> {
    let (namespace, sa_name) = (subject.meta.namespace.as_str(), subject.meta.name.as_str());
    let repair_failed = |message: String| {
        metrics().provisioning(principal.provider(), "secret");
        reported(
            format!("repairing secret {name}: {message}"),
            Retry::Transient,
        )
    };
    let fresh = |refresh_at: DateTime<Utc>| {
        log::debug!("{namespace}/{sa_name}: secret {name} is fresh until {refresh_at}");
        Ok(refresh_at)
    };
    let existing = match action {
        Action::Fresh(refresh_at) => return fresh(refresh_at),
        Action::Relabel(current, refresh_at) => {
            relabel(ctx, subject, current).map_err(repair_failed)?;
            return fresh(refresh_at);
        }
        Action::ReadContent(current, refresh_at) => {
            if rewrite(ctx, subject, current, &configuration.registry).map_err(repair_failed)? {
                return fresh(refresh_at);
            }
            log::debug!(
                "{namespace}/{sa_name}: secret {name} was edited and holds no intact credential; obtaining a new one"
            );
            Some(current)
        }
        Action::Exchange { existing, why } => {
            log::debug!("{namespace}/{sa_name}: secret {name} is due: {why}");
            existing
        }
    };
    provision_one(ctx, subject, existing, name, principal, configuration)
}

fn earliest(current: Option<DateTime<Utc>>, candidate: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Some(current.map_or(candidate, |c| c.min(candidate)))
}

/// Reads secret `name`, which the cache does not hold: `None` when it does not exist, the owned secret
/// (now in the cache), or an error message when it is someone else's.
fn look_up(
    ctx: &Context,
    subject: &Subject,
    name: &str,
) -> Result<Option<CachedSecret>, PrincipalFailure> {
    let namespace = subject.meta.namespace.as_str();
    let key = subject.key.sibling(name);
    // The watch cache serves this: the secret watch already told the cache everything up to now.
    match ctx.client.get_at::<Secret>(Some(namespace), name, "0") {
        Ok(found) if secret::is_owned_by(&found.metadata, &subject.meta) => {
            ctx.set_known_foreign(&key, false);
            Ok(Some(ctx.caches.observed_secret(&found)))
        }
        Ok(_) => {
            ctx.set_known_foreign(&key, true);
            Err(reported(foreign_secret_message(name), Retry::Permanent))
        }
        Err(e) if e.is(Reason::NotFound) => {
            ctx.set_known_foreign(&key, false);
            Ok(None)
        }
        Err(e) => Err(reported(
            format!("checking whether secret {name} exists: {e}"),
            e.retry(),
        )),
    }
}

/// Puts back the label an owned, still valid secret lost.
fn relabel(ctx: &Context, subject: &Subject, current: &CachedSecret) -> Result<(), String> {
    let namespace = subject.meta.namespace.as_str();
    ctx.check_may_act().map_err(|e| e.message)?;
    let patch = serde_json::json!({"metadata": {
        "resourceVersion": current.resource_version.to_string(),
        "labels": {keys::SERVICE_ACCOUNT_LABEL: secret::service_account_label_value(&subject.meta.name)},
    }});
    write_patch(ctx, namespace, &current.name, patch)?;
    log::info!(
        namespace = namespace, serviceaccount = subject.meta.name.as_str(), secret = &*current.name;
        "put back the label the secret had lost"
    );
    Ok(())
}

/// Rewrites an owned, still valid secret whose content was edited from the part of it that still holds the
/// credential as written (and puts back its label); `false`, writing nothing, when no part does.
fn rewrite(
    ctx: &Context,
    subject: &Subject,
    current: &CachedSecret,
    registry: &str,
) -> Result<bool, String> {
    let namespace = subject.meta.namespace.as_str();
    // The content is needed now, and only now: read at (at least) the version the watch delivered.
    let stored: Secret = ctx
        .client
        .get_at(
            Some(namespace),
            &current.name,
            &current.resource_version.to_string(),
        )
        .map_err(|e| format!("reading the edited secret: {e}"))?;
    let Some((username, password)) = secret::recover_credential(&stored, registry) else {
        return Ok(false);
    };
    ctx.check_may_act().map_err(|e| e.message)?;
    let config = secret::build_docker_config_json(registry, &username, password.expose());
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": stored.metadata.resource_version,
            "labels": {keys::SERVICE_ACCOUNT_LABEL: secret::service_account_label_value(&subject.meta.name)},
        },
        "data": {keys::DOCKER_CONFIG_JSON_KEY: base64::engine::general_purpose::STANDARD.encode(config)},
    });
    write_patch(ctx, namespace, &current.name, patch)?;
    log::info!(
        namespace = namespace, serviceaccount = subject.meta.name.as_str(), secret = &*current.name;
        "rewrote the edited secret from the credential it still held"
    );
    ctx.events.publish(
        reference("v1", "ServiceAccount", &subject.meta),
        EventType::Normal,
        keys::REASON_PROVISIONED,
        "Provision",
        &format!(
            "Repaired image pull secret {}: its content had been edited; rewritten with the unexpired credential it still held",
            current.name
        ),
    );
    Ok(true)
}

/// Sends a merge patch to an owned secret and puts the result in the cache.
fn write_patch(
    ctx: &Context,
    namespace: &str,
    name: &str,
    patch: serde_json::Value,
) -> Result<(), String> {
    let written: Secret = ctx
        .client
        .patch(Some(namespace), name, &Patch::Merge(patch))
        .map_err(|e| format!("updating secret {name}: {e}"))?;
    ctx.caches.observed_secret(&written);
    Ok(())
}

/// Obtains credentials for one principal and writes its secret. Returns when it should be refreshed; on
/// failure, the message for the reconcile's one Warning.
fn provision_one(
    ctx: &Context,
    subject: &Subject,
    existing: Option<&CachedSecret>,
    name: &str,
    principal: &Principal,
    configuration: &Configuration,
) -> Result<DateTime<Utc>, PrincipalFailure> {
    let meta = &subject.meta;
    let provider = principal.provider();
    let principal_id = secret::principal_id(principal);
    let fail = |step: &str, message: String, retry: Retry| {
        metrics().provisioning(provider, step);
        reported(message, retry)
    };
    let quiet = |error: ReconcileError| PrincipalFailure {
        message: error.message,
        report: false,
        retry: error.retry,
    };
    ctx.check_may_act().map_err(quiet)?;
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
    let mut credentials = credentials.map_err(|e| {
        fail(
            "exchange",
            format!("obtaining registry credentials for {principal_id}: {e}"),
            e.retry,
        )
    })?;
    credentials.expires_at = secret::clamp_expiry(credentials.expires_at, obtained_at);

    ctx.check_may_act().map_err(quiet)?;
    let desired = secret::build_secret(
        &subject.object(),
        name,
        &configuration.registry,
        principal,
        &credentials,
        obtained_at,
    );
    let written = write_secret(ctx, subject, existing, desired).map_err(|e| {
        fail(
            "secret",
            format!("writing secret {name} for {principal_id}: {}", e.message),
            e.retry,
        )
    })?;
    ctx.caches.observed_secret(&written);
    note_expiry(ctx, subject, name, principal_id, &credentials, obtained_at);

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
    Ok(refresh_at)
}

/// Credentials that came back already expired back this ServiceAccount off exponentially (one Warning when
/// it starts); good ones end the backoff.
fn note_expiry(
    ctx: &Context,
    subject: &Subject,
    name: &str,
    principal_id: &str,
    credentials: &RegistryCredentials,
    obtained_at: DateTime<Utc>,
) {
    if credentials.expires_at > obtained_at {
        ctx.set_expired(&subject.key, false);
        return;
    }
    let count = ctx.set_expired(&subject.key, true);
    if count == 1 {
        // One warning per streak, in the log: the secret was written and serves until the provider is fixed
        // or the clock is; an Event each time would only repeat it.
        log::warn!(
            namespace = subject.meta.namespace.as_str(), serviceaccount = subject.meta.name.as_str(), secret = name;
            "the provider returned credentials for {principal_id} that had already expired (at {}); the secret \
             was written anyway, and new credentials are requested with a growing delay, up to {}: check the \
             provider and the node's clock",
            secret::format_time(credentials.expires_at),
            hours(ctx.options.expired_backoff_max),
        );
    }
}

fn hours(duration: Duration) -> String {
    format!("{:.1} h", duration.as_secs_f64() / 3600.0)
}

/// Creates the secret, or updates the owned one in place (a merge patch at the version the cache holds). A
/// secret of that name that this controller does not own is left untouched.
fn write_secret(
    ctx: &Context,
    subject: &Subject,
    existing: Option<&CachedSecret>,
    desired: Secret,
) -> Result<Secret, ReconcileError> {
    let namespace = subject.meta.namespace.as_str();
    let name = desired.metadata.name.clone();
    let Some(existing) = existing else {
        return match ctx.client.create(Some(namespace), &desired) {
            Ok(created) => Ok(created),
            Err(e) if e.is(Reason::AlreadyExists) => {
                // Not in the cache, yet there: someone else's, or ours without its label. Read it for real.
                match ctx.client.get::<Secret>(Some(namespace), &name) {
                    Ok(other) if !secret::is_owned_by(&other.metadata, &subject.meta) => {
                        ctx.set_known_foreign(&subject.key.sibling(&name), true);
                        Err(ReconcileError::new(
                            foreign_secret_message(&name),
                            Retry::Permanent,
                        ))
                    }
                    Ok(ours) => update_secret(ctx, namespace, &ours.metadata.resource_version, desired),
                    Err(e) if e.is(Reason::NotFound) => Err(ReconcileError::transient(
                        "the secret was created and deleted concurrently; will retry",
                    )),
                    Err(e) => Err(ReconcileError::kube(
                        &format!(
                            "a secret named {name} already exists and cannot be read to check who owns it"
                        ),
                        &e,
                    )),
                }
            }
            Err(e) => Err(e.into()),
        };
    };
    if !existing.summary.is_docker_config {
        // The type of a secret cannot change: replace the owned secret, guarded by its UID.
        ctx.client
            .delete::<Secret>(Some(namespace), &name, Some(&existing.uid.to_string()))
            .map_err(|e| ReconcileError::kube("replacing the secret of the wrong type", &e))?;
        ctx.caches.secret_gone(&subject.key.sibling(&name));
        return ctx
            .client
            .create(Some(namespace), &desired)
            .map_err(ReconcileError::from);
    }
    update_secret(
        ctx,
        namespace,
        &existing.resource_version.to_string(),
        desired,
    )
}

/// Writes `desired`'s label, annotations and content over the owned secret at `resource_version`; other
/// labels, annotations and data keys stay.
fn update_secret(
    ctx: &Context,
    namespace: &str,
    resource_version: &str,
    desired: Secret,
) -> Result<Secret, ReconcileError> {
    let meta = &desired.metadata;
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": resource_version,
            "labels": meta.labels,
            "annotations": meta.annotations,
        },
        "data": desired.data,
    });
    ctx.client
        .patch(Some(namespace), &meta.name, &Patch::Merge(patch))
        .map_err(ReconcileError::from)
}

/// Makes `.imagePullSecrets` contain every name in `add` and none in `remove`, keeping every other entry in
/// its place. Optimistic concurrency: the patch carries the resourceVersion last seen; on a conflict the
/// ServiceAccount is read again and the change recomputed.
fn attach(
    ctx: &Context,
    subject: &Subject,
    add: &[String],
    remove: &[String],
) -> Result<(), ReconcileError> {
    let meta = &subject.meta;
    let mut resource_version = meta.resource_version.clone();
    let mut current: Vec<LocalObjectReference> = subject
        .cached
        .image_pull_secrets
        .iter()
        .map(|n| LocalObjectReference {
            name: n.to_string(),
        })
        .collect();
    for _ in 0..ATTACH_ATTEMPTS {
        let Some(entries) = updated_pull_secrets(&current, add, remove) else {
            return Ok(());
        };
        ctx.check_may_act()?;
        let list = if entries.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!(entries)
        };
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": resource_version},
            "imagePullSecrets": list,
        });
        match ctx.client.patch::<ServiceAccount>(
            Some(&meta.namespace),
            &meta.name,
            &Patch::Merge(patch),
        ) {
            Ok(written) => {
                ctx.caches.observed_service_account(&written);
                log::info!(
                    namespace = meta.namespace.as_str(), serviceaccount = meta.name.as_str();
                    "updated imagePullSecrets (attached {add:?}, detached {remove:?})"
                );
                return Ok(());
            }
            Err(e) if e.is(Reason::Conflict) => {
                log::debug!("{}/{}: serviceaccount changed while updating imagePullSecrets; reading it again", meta.namespace, meta.name);
                let fresh = read_newer(ctx, subject, &resource_version)
                    .map_err(ReconcileError::transient)?;
                if fresh.metadata.uid != meta.uid {
                    return Err(ReconcileError::transient(
                        "the serviceaccount was re-created meanwhile",
                    ));
                }
                resource_version = fresh.metadata.resource_version.clone();
                current = fresh.image_pull_secrets.clone().unwrap_or_default();
                ctx.caches.observed_service_account(&fresh);
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

/// The ServiceAccount newer than `seen`, which a conflict proved exists: from the apiserver's watch cache
/// when it already has it, else by a quorum read.
fn read_newer(ctx: &Context, subject: &Subject, seen: &str) -> Result<ServiceAccount, String> {
    let read = |version: Option<&str>| {
        read_service_account(ctx, &subject.key, version)
            .map_err(|e| format!("re-reading serviceaccount after a conflict: {e}"))?
            .ok_or_else(|| "the serviceaccount was deleted meanwhile".to_string())
    };
    let cached = read(Some(seen))?;
    if cached.metadata.resource_version != seen {
        return Ok(cached);
    }
    read(None)
}

/// Reads one ServiceAccount through a list by name (the `list` permission the watch needs already covers
/// it): at `resource_version` or newer, or by a quorum read with `None`.
fn read_service_account(
    ctx: &Context,
    key: &ObjectKey,
    resource_version: Option<&str>,
) -> Result<Option<ServiceAccount>, crate::kube::Error> {
    let params = ListParams {
        field_selector: Some(format!("metadata.name={}", key.name())),
        resource_version: resource_version.map(str::to_string),
        ..Default::default()
    };
    let mut found = None;
    ctx.client
        .list_each::<ServiceAccount>(Some(key.namespace()), &params, |sa| found = Some(sa))?;
    Ok(found)
}

/// Removes every owned secret: detach first (so pods are never admitted with a dangling name), then delete.
fn decommission(
    ctx: &Context,
    subject: &Subject,
    unwanted: &[&CachedSecret],
) -> Result<(), ReconcileError> {
    if unwanted.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = unwanted.iter().map(|s| s.name.to_string()).collect();
    if let Err(error) = attach(ctx, subject, &[], &names) {
        warn(
            ctx,
            subject,
            keys::REASON_FAILED_DECOMMISSIONING,
            &error.message,
        );
        return Err(error);
    }
    delete_secrets(ctx, subject, unwanted)
}

fn delete_secrets(
    ctx: &Context,
    subject: &Subject,
    secrets: &[&CachedSecret],
) -> Result<(), ReconcileError> {
    let meta = &subject.meta;
    let mut deleted = Vec::new();
    for secret in secrets {
        ctx.check_may_act()?;
        let name = &*secret.name;
        let key = subject.key.sibling(name);
        match ctx.client.delete::<Secret>(
            Some(&meta.namespace),
            name,
            Some(&secret.uid.to_string()),
        ) {
            Ok(()) => {
                ctx.caches.secret_gone(&key);
                deleted.push(name.to_string());
            }
            Err(e) if e.is(Reason::NotFound) => ctx.caches.secret_gone(&key),
            Err(e) => {
                let error = ReconcileError::kube(&format!("deleting secret {name}"), &e);
                warn(
                    ctx,
                    subject,
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
pub(crate) fn foreign_secret_message(name: &str) -> String {
    format!(
        "a secret named {name} already exists and is not managed by this controller for this serviceaccount \
         (it has no controller ownerReference to it); it was left untouched: delete or rename it, or choose \
         another name with the {} annotation",
        keys::SECRET_NAME
    )
}

/// A failure that goes into the reconcile's one Warning.
fn reported(message: String, retry: Retry) -> PrincipalFailure {
    PrincipalFailure {
        message,
        report: true,
        retry,
    }
}

fn warn(ctx: &Context, subject: &Subject, reason: &'static str, message: &str) {
    ctx.events.publish(
        reference("v1", "ServiceAccount", &subject.meta),
        EventType::Warning,
        reason,
        "Provision",
        message,
    );
}
