//! Provisioned secrets as pure functions: their names, their content, and when they are due for a refresh.
//!
//! What must stay true: names are positional and deterministic (`<base>`, `<base>-1`, …, at most 253
//! characters and never colliding); a secret is refreshed when a quarter of its credential's lifetime is left,
//! never later, and a credential that is already expired or has a nonsense expiry never schedules work sooner
//! than the floor of the [`RefreshPolicy`] in force.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use crate::annotations as keys;
use crate::cloud::{Principal, RegistryCredentials, Sensitive};
use crate::kube::types::{ObjectMeta, OwnerReference, Secret, ServiceAccount};

const MAX_NAME: usize = 253;
const MAX_LABEL_VALUE: usize = 63;

/// `imagepullsecret-<ServiceAccount name>`, cut to a valid length.
pub(crate) fn default_base_name(service_account: &str) -> String {
    cut_name(&format!("imagepullsecret-{service_account}"), MAX_NAME)
}

/// The name of each of `count` principals' secrets: the base, then `<base>-<i>`.
///
/// The base is shortened when needed so that the suffix always survives: a cut suffix would give two
/// principals the same secret.
pub(crate) fn secret_names(base: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            if i == 0 {
                cut_name(base, MAX_NAME)
            } else {
                let suffix = format!("-{i}");
                format!("{}{suffix}", cut_name(base, MAX_NAME - suffix.len()))
            }
        })
        .collect()
}

/// Cuts a DNS-subdomain name to `max` characters without leaving a trailing `-` or `.`.
fn cut_name(name: &str, max: usize) -> String {
    let mut cut: String = name.chars().take(max).collect();
    while cut.ends_with(['-', '.']) {
        cut.pop();
    }
    cut
}

/// Checks that a secret base name is a DNS subdomain (what Kubernetes requires of secret names).
pub(crate) fn validate_base_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME {
        return Err(format!("{name:?} is longer than {MAX_NAME} characters"));
    }
    if !name.split('.').all(is_dns_label) {
        return Err(format!(
            "{name:?} is not a valid secret name: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Whether `label` has the characters of a DNS-1123 label: lower-case letters, digits and `-`, neither
/// first nor last, and is not empty. (Length limits differ by use and are checked by the callers.)
pub(crate) fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// The value of the service-account label: the name itself when it fits in a label value (always, for the
/// original controller's secrets), otherwise a prefix plus a hash of the whole name, still unique.
pub fn service_account_label_value(service_account: &str) -> String {
    if service_account.len() <= MAX_LABEL_VALUE {
        return service_account.to_string();
    }
    let digest = Sha256::digest(service_account.as_bytes());
    let hash: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let prefix: String = service_account
        .chars()
        .take(MAX_LABEL_VALUE - 1 - hash.len())
        .collect();
    format!("{prefix}-{hash}")
}

/// `{"auths":{"<registry>":{"username":…,"password":…,"auth":base64(user:password)}}}`.
pub(crate) fn build_docker_config_json(registry: &str, username: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    serde_json::json!({"auths": {registry: {"username": username, "password": password, "auth": auth}}}).to_string()
}

/// A principal's identity as recorded on its secret (the role ARN, or the Google service account email).
pub(crate) fn principal_id(principal: &Principal) -> &str {
    match principal {
        Principal::Aws(target) => &target.role_arn,
        Principal::Google(target) => &target.service_account_email,
        Principal::Azure(target) => &target.client_id,
    }
}

/// The longest lifetime a credential is taken to have, whatever its provider says: registry credentials
/// live hours (ECR 12 h, Google 1 h, ACR about 3 h), so a later expiry is a provider's or a clock's error.
/// Kept this way the expires-at annotation always reads back (a year past 9999 would be written `+10000-…`,
/// which RFC 3339 cannot parse, and every reconcile would exchange again).
pub(crate) const MAX_CREDENTIAL_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// `expires_at`, but no later than [`MAX_CREDENTIAL_LIFETIME`] after `obtained_at`. An expiry in the past
/// stays as it is: the expired-credentials backoff handles it.
pub(crate) fn clamp_expiry(expires_at: DateTime<Utc>, obtained_at: DateTime<Utc>) -> DateTime<Utc> {
    let longest =
        chrono::Duration::from_std(MAX_CREDENTIAL_LIFETIME).unwrap_or(chrono::Duration::MAX);
    match obtained_at.checked_add_signed(longest) {
        Some(latest) if expires_at > latest => latest,
        _ => expires_at,
    }
}

/// RFC 3339 UTC with second precision, as the expires-at annotation has always been written.
pub(crate) fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The complete secret for one principal's fresh credentials.
pub(crate) fn build_secret(
    service_account: &ServiceAccount,
    name: &str,
    registry: &str,
    principal: &Principal,
    credentials: &RegistryCredentials,
    obtained_at: DateTime<Utc>,
) -> Secret {
    let meta = &service_account.metadata;
    let mut labels = BTreeMap::new();
    labels.insert(
        keys::SERVICE_ACCOUNT_LABEL.to_string(),
        service_account_label_value(&meta.name),
    );
    let mut annotations = BTreeMap::new();
    annotations.insert(
        keys::PRINCIPAL.to_string(),
        principal_id(principal).to_string(),
    );
    annotations.insert(
        keys::EXPIRES_AT.to_string(),
        format_time(credentials.expires_at),
    );
    annotations.insert(keys::OBTAINED_AT.to_string(), format_time(obtained_at));
    let config = build_docker_config_json(
        registry,
        &credentials.username,
        credentials.password.expose(),
    );
    annotations.insert(
        keys::CONTENT_DIGEST.to_string(),
        content_digest(config.as_bytes()),
    );
    let mut data = BTreeMap::new();
    data.insert(
        keys::DOCKER_CONFIG_JSON_KEY.to_string(),
        base64::engine::general_purpose::STANDARD.encode(config),
    );
    Secret {
        metadata: ObjectMeta {
            name: name.to_string(),
            namespace: meta.namespace.clone(),
            labels,
            annotations,
            owner_references: vec![owner_reference(service_account)],
            ..Default::default()
        },
        type_: keys::DOCKER_CONFIG_JSON_TYPE.to_string(),
        data,
        ..Default::default()
    }
}

/// The controller ownerReference that makes the garbage collector delete the secret with its ServiceAccount.
pub(crate) fn owner_reference(service_account: &ServiceAccount) -> OwnerReference {
    OwnerReference {
        api_version: "v1".to_string(),
        kind: "ServiceAccount".to_string(),
        name: service_account.metadata.name.clone(),
        uid: service_account.metadata.uid.clone(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// Whether this controller may overwrite, detach or delete `secret` on behalf of `service_account`: it has a
/// controller ownerReference to this very ServiceAccount, by UID (SPEC B1). The label is only a selector: a
/// labelled secret without that reference is someone else's.
pub(crate) fn is_owned_by(secret: &ObjectMeta, service_account: &ObjectMeta) -> bool {
    is_controlled_by(secret, &service_account.uid)
}

/// Whether `secret`'s controller ownerReference is the ServiceAccount with UID `uid`.
pub(crate) fn is_controlled_by(secret: &ObjectMeta, uid: &str) -> bool {
    secret
        .controller()
        .is_some_and(|r| r.kind == "ServiceAccount" && r.api_version == "v1" && r.uid == uid)
}

/// SHA-256 of the `.dockerconfigjson` bytes, lower-case hex.
pub(crate) fn content_digest(bytes: &[u8]) -> String {
    crate::cloud::sigv4::payload_hash(bytes)
}

/// Whether the secret's content is what this controller wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Content {
    /// Matches the recorded digest (or, for secrets without one, is self-consistent).
    AsWritten,
    /// Readable, but not what was written: someone edited it.
    Changed,
    /// Missing, not base64, or not a dockerconfigjson.
    Unreadable,
}

/// What freshness and repair need to know about a stored secret, without its data: small enough to keep
/// for every provisioned secret, and free of anything secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretSummary {
    pub is_docker_config: bool,
    pub principal: Option<Arc<str>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub obtained_at: Option<DateTime<Utc>>,
    /// The one registry under `auths`, when there is exactly one.
    pub registry: Option<Arc<str>>,
    pub content: Content,
}

/// Reads a secret into its [`SecretSummary`].
pub(crate) fn summarize(secret: &Secret) -> SecretSummary {
    let annotations = &secret.metadata.annotations;
    let time = |key: &str| annotations.get(key).and_then(|t| parse_time(t));
    let (registry, content) = match decoded_config(secret) {
        None => (None, Content::Unreadable),
        Some((bytes, config)) => {
            let auths = config.get("auths").and_then(|a| a.as_object());
            let registry = match auths {
                Some(auths) if auths.len() == 1 => auths.keys().next().map(|k| k.as_str().into()),
                _ => None,
            };
            let content = match annotations.get(keys::CONTENT_DIGEST) {
                Some(digest) if *digest == content_digest(&bytes) => Content::AsWritten,
                Some(_) => Content::Changed,
                // Written before digests were recorded (the original controller): judge it by itself.
                None if registry.is_some()
                    && auths.is_some_and(|a| a.values().all(is_consistent)) =>
                {
                    Content::AsWritten
                }
                None => Content::Changed,
            };
            (registry, content)
        }
    };
    SecretSummary {
        is_docker_config: secret.type_ == keys::DOCKER_CONFIG_JSON_TYPE,
        principal: annotations.get(keys::PRINCIPAL).map(|p| p.as_str().into()),
        expires_at: time(keys::EXPIRES_AT),
        obtained_at: time(keys::OBTAINED_AT),
        registry,
        content,
    }
}

fn decoded_config(secret: &Secret) -> Option<(Vec<u8>, serde_json::Value)> {
    let encoded = secret.data.get(keys::DOCKER_CONFIG_JSON_KEY)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let config = serde_json::from_slice(&bytes).ok()?;
    Some((bytes, config))
}

/// Whether one `auths` entry's `auth` is `base64(username:password)`.
fn is_consistent(entry: &serde_json::Value) -> bool {
    let (Some(user), Some(password)) = (entry["username"].as_str(), entry["password"].as_str())
    else {
        return false;
    };
    entry["auth"].as_str().is_none_or(|auth| {
        auth == base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    })
}

/// The credential a changed secret still holds intact: of the username and password fields and the `auth`
/// field, the one whose content rebuilt gives the recorded digest. `None` when neither does (or no digest
/// was recorded): then only a new exchange can repair the secret.
pub(crate) fn recover_credential(secret: &Secret, registry: &str) -> Option<(String, Sensitive)> {
    let digest = secret.metadata.annotations.get(keys::CONTENT_DIGEST)?;
    let (_, config) = decoded_config(secret)?;
    let entry = config.get("auths")?.get(registry)?;
    let mut candidates = Vec::new();
    if let (Some(user), Some(password)) = (entry["username"].as_str(), entry["password"].as_str()) {
        candidates.push((user.to_string(), password.to_string()));
    }
    if let Some(auth) = entry["auth"].as_str() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        if let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
            candidates.push((user.to_string(), password.to_string()));
        }
    }
    candidates.into_iter().find_map(|(user, password)| {
        let rebuilt = build_docker_config_json(registry, &user, &password);
        (content_digest(rebuilt.as_bytes()) == *digest).then(|| (user, Sensitive::new(password)))
    })
}

/// What a principal's existing secret needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Obtain new credentials now; the text says why (for logs and events).
    Due(&'static str),
    /// Good until the given refresh time.
    FreshUntil(DateTime<Utc>),
}

/// How soon secrets are refreshed and a ServiceAccount is processed again: everything [`freshness`] and
/// [`RefreshPolicy::delay_until`] read besides the secret and the time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RefreshPolicy {
    /// The lifetime assumed, per provider, for secrets that do not record when they were obtained (the
    /// original controller's).
    pub assumed_lifetime_aws: Duration,
    pub assumed_lifetime_google: Duration,
    pub assumed_lifetime_azure: Duration,
    /// Scheduled runs are brought forward by up to this fraction of the wait, to spread refreshes out.
    pub jitter: f64,
    /// No run sooner than this, and no refresh of a credential obtained less than this ago: the minimum
    /// requeue, longer while the provider keeps returning credentials that are already expired.
    pub floor: Duration,
}

impl RefreshPolicy {
    /// The usual lifetime of `principal`'s provider's credentials.
    pub(crate) fn assumed_lifetime(&self, principal: &Principal) -> Duration {
        match principal {
            Principal::Aws(_) => self.assumed_lifetime_aws,
            Principal::Google(_) => self.assumed_lifetime_google,
            Principal::Azure(_) => self.assumed_lifetime_azure,
        }
    }

    /// How long to wait before the next run: until `refresh_at`, shortened by up to `jitter` of the wait so
    /// that many secrets obtained together do not all refresh together, and never less than `floor`.
    pub(crate) fn delay_until(&self, refresh_at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
        let wait = (refresh_at - now).to_std().unwrap_or(Duration::ZERO);
        crate::jitter::shrink(wait, self.jitter).max(self.floor)
    }
}

/// Decides whether `secret` still serves `principal` at `registry`, and until when.
///
/// The refresh time is when a quarter of the credential's lifetime is left. The lifetime is `expires-at` minus
/// `obtained-at`; secrets written by the original controller lack `obtained-at`, so the provider's usual
/// lifetime stands in ([`RefreshPolicy::assumed_lifetime`]). A credential obtained less than the policy's
/// `floor` ago is not refreshed for its expiry, however soon that is: a provider that hands out credentials
/// already expired (or with a nonsense expiry) must not make every write of the secret trigger the next one.
///
/// The policy's `jitter` is the fraction by which [`RefreshPolicy::delay_until`] brings a scheduled run
/// forward. The secret counts as due from that much before its refresh time, so the run that jitter brought
/// forward refreshes it, instead of finding it fresh, waiting again (at least the floor) and refreshing late.
pub(crate) fn freshness(
    secret: &SecretSummary,
    registry: &str,
    principal: &Principal,
    policy: &RefreshPolicy,
    now: DateTime<Utc>,
) -> Freshness {
    if !secret.is_docker_config {
        return Freshness::Due("the secret has the wrong type");
    }
    if secret.principal.as_deref() != Some(principal_id(principal)) {
        return Freshness::Due("the principal changed");
    }
    if secret.registry.as_deref() != Some(registry) || secret.content == Content::Unreadable {
        return Freshness::Due("the registry changed or the secret's content is not readable");
    }
    let Some(expires_at) = secret.expires_at else {
        return Freshness::Due("the expiry annotation is missing or unreadable");
    };
    let obtained_at = secret.obtained_at;
    let lifetime = obtained_at
        .and_then(|obtained| (expires_at - obtained).to_std().ok())
        .filter(|lifetime| !lifetime.is_zero())
        .unwrap_or_else(|| policy.assumed_lifetime(principal));
    let mut refresh_at = refresh_time(expires_at, lifetime);
    // A run scheduled at any time since the credential was issued comes at most this much early.
    let issued_at =
        expires_at - chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::zero());
    let early = (refresh_at - issued_at)
        .to_std()
        .map(|wait| wait.mul_f64(policy.jitter.clamp(0.0, 1.0)))
        .unwrap_or(Duration::ZERO);
    let mut due_from =
        refresh_at - chrono::Duration::from_std(early).unwrap_or(chrono::Duration::zero());
    if let Some(obtained) = obtained_at.filter(|o| *o <= now) {
        let earliest =
            obtained + chrono::Duration::from_std(policy.floor).unwrap_or(chrono::Duration::zero());
        refresh_at = refresh_at.max(earliest);
        due_from = due_from.max(earliest);
    }
    if now >= due_from {
        Freshness::Due("less than a quarter of the credential's lifetime is left")
    } else {
        Freshness::FreshUntil(refresh_at)
    }
}

/// When a credential that expires at `expires_at` after `lifetime` should be replaced: with a quarter of the
/// lifetime left.
pub(crate) fn refresh_time(expires_at: DateTime<Utc>, lifetime: Duration) -> DateTime<Utc> {
    let margin = chrono::Duration::from_std(lifetime / 4).unwrap_or(chrono::Duration::zero());
    expires_at - margin
}

pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::aws::{parse_registry_host, AwsTarget};
    use crate::cloud::google::GoogleTarget;

    #[test]
    fn expiries_past_the_longest_lifetime_are_clamped_so_the_annotation_reads_back() {
        let obtained: DateTime<Utc> = "2026-12-08T00:00:00Z".parse().unwrap();
        let far = DateTime::<Utc>::from_timestamp(253_402_300_800 + 86_400, 0).unwrap(); // year 10000
        assert!(
            parse_time(&format_time(far)).is_none(),
            "{}",
            format_time(far)
        );
        let clamped = clamp_expiry(far, obtained);
        assert_eq!(format_time(clamped), "2027-01-07T00:00:00Z");
        assert_eq!(parse_time(&format_time(clamped)), Some(clamped));
        // Ordinary and already-expired expiries are left as the provider said.
        let ecr: DateTime<Utc> = "2026-12-08T12:00:00Z".parse().unwrap();
        assert_eq!(clamp_expiry(ecr, obtained), ecr);
        let epoch = DateTime::<Utc>::from_timestamp(0, 0).unwrap();
        assert_eq!(clamp_expiry(epoch, obtained), epoch);
        assert_eq!(parse_time(&format_time(epoch)), Some(epoch));
    }

    /// What a freshness check must answer.
    enum Expect {
        FreshUntil(DateTime<Utc>),
        /// Due, for a reason that contains this text ("" for any reason).
        Due(&'static str),
    }

    /// One freshness check: a secret, what it must serve, the policy, the time, and the answer.
    struct Check<'a> {
        secret: &'a Secret,
        registry: &'a str,
        principal: &'a Principal,
        policy: RefreshPolicy,
        now: DateTime<Utc>,
        expect: Expect,
    }

    /// The one call table: every row's secret, summarized as the watch does, checked against its answer.
    fn check(rows: &[Check]) {
        for (row, c) in rows.iter().enumerate() {
            let got = freshness(
                &summarize(c.secret),
                c.registry,
                c.principal,
                &c.policy,
                c.now,
            );
            match c.expect {
                Expect::FreshUntil(at) => {
                    assert_eq!(got, Freshness::FreshUntil(at), "row {row}")
                }
                Expect::Due(why) => assert!(
                    matches!(got, Freshness::Due(r) if r.contains(why)),
                    "row {row}: {got:?}"
                ),
            }
        }
    }

    /// Google's usual hour assumed, with this floor and jitter.
    fn policy(floor: Duration, jitter: f64) -> RefreshPolicy {
        RefreshPolicy {
            assumed_lifetime_aws: Duration::from_secs(12 * 3600),
            assumed_lifetime_google: Duration::from_secs(3600),
            assumed_lifetime_azure: Duration::from_secs(3 * 3600),
            jitter,
            floor,
        }
    }

    fn sa() -> ServiceAccount {
        let mut sa = ServiceAccount::default();
        sa.metadata.name = "app".into();
        sa.metadata.namespace = "team".into();
        sa.metadata.uid = "uid-1".into();
        sa
    }

    fn google(email: &str) -> Principal {
        Principal::Google(GoogleTarget {
            provider: "projects/1/locations/global/workloadIdentityPools/p/providers/x".into(),
            service_account_email: email.into(),
        })
    }

    fn time(text: &str) -> DateTime<Utc> {
        parse_time(text).unwrap()
    }

    fn credentials(expires: &str) -> RegistryCredentials {
        RegistryCredentials {
            username: "oauth2accesstoken".into(),
            password: Sensitive::new("pw"),
            expires_at: time(expires),
        }
    }

    #[test]
    fn names_are_positional_and_never_collide() {
        assert_eq!(secret_names("pull", 3), vec!["pull", "pull-1", "pull-2"]);
        assert_eq!(default_base_name("app"), "imagepullsecret-app");
        let long = "a".repeat(253);
        let names = secret_names(&long, 12);
        assert_eq!(names[0].len(), 253);
        assert_eq!(names[1].len(), 253);
        assert!(names[1].ends_with("-1") && names[11].ends_with("-11"));
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), 12);
        // A cut never leaves a trailing dash or dot.
        let tricky = format!("{}-x", "b".repeat(251));
        assert_eq!(default_base_name(&tricky).len(), 253);
        assert!(!secret_names(&format!("{}.c", "b".repeat(250)), 2)[1].contains(".-"));
    }

    #[test]
    fn base_names_must_be_dns_subdomains() {
        for ok in ["pull", "a.b-c", "x1"] {
            assert!(validate_base_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Pull", "a_b", "-a", "a-", "a..b", &"x".repeat(254)] {
            assert!(validate_base_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_service_account_names_get_a_short_unique_label() {
        assert_eq!(service_account_label_value("app"), "app");
        let a = service_account_label_value(&format!("{}-one", "x".repeat(70)));
        let b = service_account_label_value(&format!("{}-two", "x".repeat(70)));
        assert_eq!(a.len(), 63);
        assert_ne!(a, b);
        assert!(a.chars().last().unwrap().is_ascii_alphanumeric());
    }

    #[test]
    fn docker_config_has_username_password_and_auth() {
        let json: serde_json::Value =
            serde_json::from_str(&build_docker_config_json("gcr.io", "u", "p")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"auths": {"gcr.io": {"username": "u", "password": "p", "auth": "dTpw"}}})
        );
    }

    #[test]
    fn built_secret_carries_everything_spec_a2_asks_for() {
        let obtained = time("2026-01-01T00:00:00Z");
        let secret = build_secret(
            &sa(),
            "pull",
            "gcr.io",
            &google("a@b.iam.gserviceaccount.com"),
            &credentials("2026-01-01T01:00:00.5Z"),
            obtained,
        );
        assert_eq!(secret.type_, "kubernetes.io/dockerconfigjson");
        assert_eq!(secret.metadata.namespace, "team");
        assert_eq!(secret.metadata.labels[keys::SERVICE_ACCOUNT_LABEL], "app");
        assert_eq!(
            secret.metadata.annotations[keys::PRINCIPAL],
            "a@b.iam.gserviceaccount.com"
        );
        assert_eq!(
            secret.metadata.annotations[keys::EXPIRES_AT],
            "2026-01-01T01:00:00Z"
        );
        let owner = &secret.metadata.owner_references[0];
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.uid.as_str(),
                owner.controller
            ),
            ("v1", "ServiceAccount", "app", "uid-1", Some(true))
        );
        assert!(!format!("{secret:?}").contains(&secret.data[keys::DOCKER_CONFIG_JSON_KEY]));
    }

    #[test]
    fn ownership_is_the_controller_reference_to_this_uid_and_nothing_else() {
        let owner = sa();
        let secret = build_secret(
            &owner,
            "pull",
            "gcr.io",
            &google("a@b.c"),
            &credentials("2026-01-01T01:00:00Z"),
            time("2026-01-01T00:00:00Z"),
        );
        assert!(is_owned_by(&secret.metadata, &owner.metadata));
        let mut recreated = sa();
        recreated.metadata.uid = "uid-2".into();
        assert!(!is_owned_by(&secret.metadata, &recreated.metadata));
        let mut labelled_only = secret.metadata.clone();
        labelled_only.owner_references.clear();
        assert!(
            !is_owned_by(&labelled_only, &owner.metadata),
            "the label alone is not ownership"
        );
        let mut not_controller = secret.metadata.clone();
        not_controller.owner_references[0].controller = None;
        assert!(!is_owned_by(&not_controller, &owner.metadata));
        let mut unlabelled = secret.metadata.clone();
        unlabelled.labels.clear();
        assert!(
            is_owned_by(&unlabelled, &owner.metadata),
            "a lost label does not end ownership"
        );
    }

    fn set_config(secret: &mut Secret, json: &str) {
        secret.data.insert(
            keys::DOCKER_CONFIG_JSON_KEY.into(),
            base64::engine::general_purpose::STANDARD.encode(json),
        );
    }

    #[test]
    fn content_is_checked_against_the_recorded_digest() {
        let mut secret = build_secret(
            &sa(),
            "pull",
            "gcr.io",
            &google("a@b.c"),
            &credentials("2026-01-01T01:00:00Z"),
            time("2026-01-01T00:00:00Z"),
        );
        let summary = summarize(&secret);
        assert_eq!(summary.content, Content::AsWritten);
        assert_eq!(summary.registry.as_deref(), Some("gcr.io"));
        assert_eq!(summary.principal.as_deref(), Some("a@b.c"));
        assert_eq!(secret.metadata.annotations[keys::CONTENT_DIGEST].len(), 64);

        let original = secret.clone();
        set_config(
            &mut secret,
            r#"{"auths":{"gcr.io":{"username":"oauth2accesstoken","password":"edited","auth":"b2F1dGgyYWNjZXNzdG9rZW46cHc="}}}"#,
        );
        assert_eq!(summarize(&secret).content, Content::Changed);
        // The password field was edited; `auth` still holds the credential as written.
        let (user, password) = recover_credential(&secret, "gcr.io").expect("recovered from auth");
        assert_eq!(
            (user.as_str(), password.expose()),
            ("oauth2accesstoken", "pw")
        );
        assert_eq!(
            recover_credential(&original, "gcr.io").map(|(u, p)| (u, p.expose().to_string())),
            Some(("oauth2accesstoken".to_string(), "pw".to_string()))
        );
        // Both edited alike: nothing to recover.
        set_config(
            &mut secret,
            &build_docker_config_json("gcr.io", "oauth2accesstoken", "edited"),
        );
        assert_eq!(summarize(&secret).content, Content::Changed);
        assert!(recover_credential(&secret, "gcr.io").is_none());
        set_config(&mut secret, "{}");
        assert_eq!(summarize(&secret).registry, None);
        secret.data.clear();
        assert_eq!(summarize(&secret).content, Content::Unreadable);

        // Without a digest (the original controller's secrets): consistent content counts as written.
        let mut legacy = original.clone();
        legacy.metadata.annotations.remove(keys::CONTENT_DIGEST);
        assert_eq!(summarize(&legacy).content, Content::AsWritten);
        set_config(
            &mut legacy,
            r#"{"auths":{"gcr.io":{"username":"u","password":"x","auth":"dTpw"}}}"#,
        );
        assert_eq!(summarize(&legacy).content, Content::Changed);
        assert!(recover_credential(&legacy, "gcr.io").is_none());
    }

    #[test]
    fn refresh_is_due_with_a_quarter_of_the_lifetime_left() {
        let principal = google("a@b.c");
        let obtained = time("2026-01-01T00:00:00Z");
        let secret = build_secret(
            &sa(),
            "pull",
            "gcr.io",
            &principal,
            &credentials("2026-01-01T04:00:00Z"),
            obtained,
        );
        // Adopted from the original controller: no obtained-at, so the provider's usual lifetime is assumed.
        let mut adopted = secret.clone();
        adopted.metadata.annotations.remove(keys::OBTAINED_AT);
        let mut unreadable = secret.clone();
        unreadable
            .metadata
            .annotations
            .insert(keys::EXPIRES_AT.into(), "soon".into());
        let mut wrong_type = secret.clone();
        wrong_type.type_ = "Opaque".into();
        let other = google("x@y.z");
        let row = |secret, registry, principal, now, expect| Check {
            secret,
            registry,
            principal,
            policy: policy(Duration::ZERO, 0.0),
            now,
            expect,
        };
        check(&[
            row(
                &secret,
                "gcr.io",
                &principal,
                time("2026-01-01T02:59:59Z"),
                Expect::FreshUntil(time("2026-01-01T03:00:00Z")),
            ),
            row(
                &secret,
                "gcr.io",
                &principal,
                time("2026-01-01T03:00:00Z"),
                Expect::Due(""),
            ),
            row(
                &secret,
                "other.io",
                &principal,
                obtained,
                Expect::Due("registry"),
            ),
            row(
                &secret,
                "gcr.io",
                &other,
                obtained,
                Expect::Due("principal"),
            ),
            row(
                &adopted,
                "gcr.io",
                &principal,
                obtained,
                Expect::FreshUntil(time("2026-01-01T03:45:00Z")),
            ),
            row(
                &unreadable,
                "gcr.io",
                &principal,
                obtained,
                Expect::Due("expiry"),
            ),
            row(&wrong_type, "gcr.io", &principal, obtained, Expect::Due("")),
        ]);
    }

    #[test]
    fn a_credential_obtained_already_expired_is_not_refreshed_before_the_floor() {
        let principal = google("a@b.c");
        let obtained = time("2026-01-01T00:00:00Z");
        let secret = build_secret(
            &sa(),
            "pull",
            "gcr.io",
            &principal,
            &credentials("2015-01-01T00:00:00Z"),
            obtained,
        );
        let other = google("x@y.z");
        let row = |principal, now, expect| Check {
            secret: &secret,
            registry: "gcr.io",
            principal,
            policy: policy(Duration::from_secs(60), 0.0),
            now,
            expect,
        };
        check(&[
            row(
                &principal,
                time("2026-01-01T00:00:30Z"),
                Expect::FreshUntil(time("2026-01-01T00:01:00Z")),
            ),
            row(&principal, time("2026-01-01T00:01:00Z"), Expect::Due("")),
            // The floor never hides a real change: a new principal is provisioned at once.
            row(&other, obtained, Expect::Due("")),
        ]);
    }

    #[test]
    fn a_run_that_jitter_brought_forward_finds_the_secret_due() {
        let principal = google("a@b.c");
        let obtained = time("2026-01-01T00:00:00Z");
        // 40 s of lifetime: refresh at 30 s; a 10% jitter brings runs forward by at most 3 s.
        let secret = build_secret(
            &sa(),
            "pull",
            "gcr.io",
            &principal,
            &credentials("2026-01-01T00:00:40Z"),
            obtained,
        );
        let row = |now, expect| Check {
            secret: &secret,
            registry: "gcr.io",
            principal: &principal,
            policy: policy(Duration::from_secs(5), 0.1),
            now,
            expect,
        };
        let mut rows = vec![
            row(
                time("2026-01-01T00:00:26Z"),
                Expect::FreshUntil(time("2026-01-01T00:00:30Z")),
            ),
            row(time("2026-01-01T00:00:27Z"), Expect::Due("")),
        ];
        // Whenever a run was scheduled, the earliest time jitter can bring it to is due.
        for scheduled_at in [0, 10, 20, 26] {
            let now = obtained + chrono::Duration::seconds(scheduled_at);
            let wait = (time("2026-01-01T00:00:30Z") - now).to_std().unwrap();
            let earliest = now + chrono::Duration::from_std(wait.mul_f64(0.9)).unwrap();
            rows.push(row(earliest, Expect::Due("")));
        }
        check(&rows);
    }

    #[test]
    fn expired_credentials_never_schedule_below_the_floor() {
        let now = time("2026-01-01T00:00:00Z");
        let floor = Duration::from_secs(30);
        let policy = policy(floor, 0.1);
        assert_eq!(policy.delay_until(time("2015-01-01T00:00:00Z"), now), floor);
        let delay = policy.delay_until(time("2026-01-01T01:00:00Z"), now);
        assert!(
            delay <= Duration::from_secs(3600) && delay >= Duration::from_secs(3240),
            "{delay:?}"
        );
    }

    #[test]
    fn aws_principal_id_is_the_role_arn() {
        let registry =
            parse_registry_host("123456789012.dkr.ecr.us-east-1.amazonaws.com", None).unwrap();
        let principal = Principal::Aws(AwsTarget {
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
            registry,
            session_name: "a.b".into(),
        });
        assert_eq!(principal_id(&principal), "arn:aws:iam::123456789012:role/r");
    }

    #[test]
    fn a_secret_without_obtained_at_is_judged_by_its_providers_usual_lifetime() {
        let ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        let aws = Principal::Aws(AwsTarget {
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
            registry: parse_registry_host(ecr, None).unwrap(),
            session_name: "a.b".into(),
        });
        let google = google("a@b.c");
        let adopted = |registry: &str, principal: &Principal| {
            let mut secret = build_secret(
                &sa(),
                "pull",
                registry,
                principal,
                &credentials("2026-01-01T12:00:00Z"),
                time("2026-01-01T00:00:00Z"),
            );
            secret.metadata.annotations.remove(keys::OBTAINED_AT);
            secret
        };
        let (from_aws, from_google) = (adopted(ecr, &aws), adopted("gcr.io", &google));
        let row = |secret, registry, principal, expect| Check {
            secret,
            registry,
            principal,
            policy: policy(Duration::ZERO, 0.0),
            now: time("2026-01-01T08:00:00Z"),
            expect,
        };
        check(&[
            // ECR's twelve hours: due with three left.
            row(
                &from_aws,
                ecr,
                &aws,
                Expect::FreshUntil(time("2026-01-01T09:00:00Z")),
            ),
            // Google's hour: due with fifteen minutes left.
            row(
                &from_google,
                "gcr.io",
                &google,
                Expect::FreshUntil(time("2026-01-01T11:45:00Z")),
            ),
        ]);
    }
}
