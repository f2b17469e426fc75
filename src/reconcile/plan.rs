//! The reconcile plan: what one ServiceAccount's secrets need, decided from what the caches hold, the
//! configuration, the refresh policy and the time passed in, without I/O; `service_account` carries it out.
//!
//! For each principal the plan says one of: fresh until when; repair (put the lost label back, or read the
//! edited content to rewrite it from the credential it still holds); exchange, and why; or fail, because a
//! secret of that name belongs to someone else. Where only a read can tell, the plan says which read
//! ([`Step::LookUp`], [`Action::ReadContent`]); the executor makes it and decides that principal again with the
//! answer ([`Provision::decide`], [`crate::secret::recover_credential`]). Each principal's name is
//! attached once its step succeeds; the owned secrets no principal wants are detached, then deleted.
//!
//! What must stay true (SPEC B1, A2):
//! - Only owned secrets — a controller ownerReference to this ServiceAccount's UID, whatever the labels say —
//!   are relabelled, rewritten, overwritten, detached or deleted. A foreign secret with a wanted name fails
//!   that principal and is never exchanged over; one with another name is only warned about; a name in
//!   `.imagePullSecrets` that no owned secret has is never detached.
//! - A wanted name the cache does not hold, yet attached or found foreign by an earlier read, is read before
//!   any token is minted for it.
//! - A fresh secret as written costs nothing: no read, no exchange, no write (a steady state plans no I/O). A
//!   repair never exchanges while the credential is intact.
//! - An invalid configuration, or one over the principal limit, plans nothing but a Warning. A removed
//!   configuration detaches and deletes every owned secret, and nothing else.
//! - Names are positional: principal `i` gets `secret_names()[i]`; an owned secret of a name no longer wanted
//!   (a principal removed, the base name changed) is detached and deleted.
//! - Freshness follows [`secret::freshness`] under the [`RefreshPolicy`] given, so the next run is never
//!   sooner than its floor.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::cache::secrets::CachedSecret;
use crate::cloud::Principal;
use crate::kube::types::LocalObjectReference;
use crate::secret::{self, Content, Freshness, RefreshPolicy};
use crate::spec::{self, Configuration, Parsed};

/// What the caches say about one ServiceAccount and the secrets that claim it.
pub(crate) struct Observed<'a, 'f> {
    /// The ServiceAccount's name (its secrets' label value comes from it).
    pub name: &'a str,
    /// Its UID: the secrets with a controller ownerReference to it are owned, the others foreign.
    pub uid: &'a str,
    /// The names in its `.imagePullSecrets`, as last seen.
    pub attached: &'a [Box<str>],
    /// Every cached secret that carries its label or names it as controller.
    pub secrets: &'a [CachedSecret],
    /// Whether an earlier read found a secret of this name (which the cache does not hold) foreign.
    pub known_foreign: &'f dyn Fn(&str) -> bool,
}

/// What a reconcile does.
#[derive(Debug)]
pub(crate) enum Plan<'a> {
    /// Not configured: warn about each foreign secret, detach every owned secret, then delete it.
    Decommission {
        foreign: Vec<&'a CachedSecret>,
        remove: Vec<&'a CachedSecret>,
    },
    /// The configuration cannot be used: a Warning about each foreign secret, one with `message`, no write.
    Refuse {
        foreign: Vec<&'a CachedSecret>,
        message: String,
    },
    Provision(Provision<'a>),
}

/// Provisioning a usable configuration.
#[derive(Debug)]
pub(crate) struct Provision<'a> {
    pub configuration: &'a Configuration,
    /// Secrets that claim this ServiceAccount without being owned by it and whose name no principal wants:
    /// one Warning each, nothing else.
    pub foreign: Vec<&'a CachedSecret>,
    /// One per principal, in order: its secret's name and what that secret needs.
    pub principals: Vec<(String, Step<'a>)>,
    /// Owned secrets no principal wants any more, by name: detached, then, once detached, deleted.
    pub remove: Vec<&'a CachedSecret>,
    label: String,
    policy: RefreshPolicy,
    now: DateTime<Utc>,
}

/// What the plan says for one principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    /// Decided from what the cache holds.
    Decided(Action<'a>),
    /// The cache does not hold its secret, yet the name is attached or was found foreign before: read it,
    /// then decide with [`Provision::decide`].
    LookUp,
    /// A secret of this name belongs to someone else: leave it alone and report it.
    Foreign,
}

/// What one principal's secret needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action<'a> {
    /// Nothing until this refresh time.
    Fresh(DateTime<Utc>),
    /// Put back the label it lost; then fresh until the time given.
    Relabel(&'a CachedSecret, DateTime<Utc>),
    /// Its content was edited: read it, and rewrite it from the credential it still holds intact (then fresh
    /// until the time given) or, when none is, exchange.
    ReadContent(&'a CachedSecret, DateTime<Utc>),
    /// Obtain new credentials and write them over the owned secret, or create it.
    Exchange {
        existing: Option<&'a CachedSecret>,
        why: &'static str,
    },
}

/// Decides what reconciling a ServiceAccount does, given what the caches hold (`observed`), what its
/// annotations say (`parsed`), the principal limit, the refresh policy and the time.
pub(crate) fn plan<'a>(
    observed: &Observed<'a, '_>,
    parsed: &'a Parsed,
    max_principals: usize,
    policy: &RefreshPolicy,
    now: DateTime<Utc>,
) -> Plan<'a> {
    let (owned, foreign): (Vec<&CachedSecret>, Vec<&CachedSecret>) = observed
        .secrets
        .iter()
        .partition(|s| s.is_owned_by(observed.uid));
    let owned: BTreeMap<&str, &CachedSecret> = owned.into_iter().map(|s| (&*s.name, s)).collect();
    let configuration = match parsed {
        Parsed::NotConfigured => {
            return Plan::Decommission {
                foreign,
                remove: owned.into_values().collect(),
            }
        }
        Parsed::Invalid(message) => {
            return Plan::Refuse {
                foreign,
                message: format!("invalid configuration: {message}"),
            }
        }
        Parsed::Configured(configuration) => configuration,
    };
    if let Err(message) = spec::check_principal_limit(configuration, max_principals) {
        return Plan::Refuse {
            foreign: Vec::new(),
            message,
        };
    }
    let names = configuration.secret_names();
    let mut provision = Provision {
        configuration,
        foreign: foreign
            .iter()
            .filter(|s| !names.iter().any(|n| *n == *s.name))
            .copied()
            .collect(),
        principals: Vec::with_capacity(names.len()),
        remove: owned
            .iter()
            .filter(|(name, _)| !names.iter().any(|n| n == *name))
            .map(|(_, s)| *s)
            .collect(),
        label: secret::service_account_label_value(observed.name),
        policy: *policy,
        now,
    };
    for (name, principal) in names.into_iter().zip(&configuration.principals) {
        let step = if foreign.iter().any(|f| *f.name == *name) {
            Step::Foreign
        } else if let Some(existing) = owned.get(name.as_str()) {
            Step::Decided(provision.decide(principal, Some(existing)))
        } else if observed.attached.iter().any(|a| **a == *name) || (observed.known_foreign)(&name)
        {
            // Attached (or seen before) but not in the cache: deleted, someone else's, or ours after losing
            // its label while no watch could see it. One read tells which, before any token is minted.
            Step::LookUp
        } else {
            Step::Decided(provision.decide(principal, None))
        };
        provision.principals.push((name, step));
    }
    Plan::Provision(provision)
}

impl Provision<'_> {
    /// What `principal`'s secret needs, given the owned secret of its name (`None`: there is none). The plan
    /// asks it of what the cache holds; the executor asks it again of what a [`Step::LookUp`] read found.
    pub(crate) fn decide<'b>(
        &self,
        principal: &Principal,
        existing: Option<&'b CachedSecret>,
    ) -> Action<'b> {
        let Some(current) = existing else {
            return Action::Exchange {
                existing: None,
                why: "the secret does not exist",
            };
        };
        let registry = &self.configuration.registry;
        match secret::freshness(
            &current.summary,
            registry,
            principal,
            &self.policy,
            self.now,
        ) {
            Freshness::Due(why) => Action::Exchange {
                existing: Some(current),
                why,
            },
            Freshness::FreshUntil(until) if current.summary.content == Content::Changed => {
                Action::ReadContent(current, until)
            }
            Freshness::FreshUntil(until) if current.label.as_deref() != Some(&self.label) => {
                Action::Relabel(current, until)
            }
            Freshness::FreshUntil(until) => Action::Fresh(until),
        }
    }
}

/// The new `.imagePullSecrets` with every name in `add` and none in `remove`, every other entry kept in its
/// place; `None` when nothing changes (then nothing is sent).
pub(crate) fn updated_pull_secrets(
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use base64::Engine;

    use super::*;
    use crate::annotations as keys;
    use crate::cloud::RegistryCredentials;
    use crate::cloud::Sensitive;
    use crate::kube::types::{Secret, ServiceAccount};

    const GOOGLE_PROVIDER: &str =
        "projects/1/locations/global/workloadIdentityPools/pool/providers/provider";
    const A: &str = "a@p.iam.gserviceaccount.com";
    const B: &str = "b@p.iam.gserviceaccount.com";
    const C: &str = "c@p.iam.gserviceaccount.com";
    const D: &str = "d@p.iam.gserviceaccount.com";
    const E: &str = "e@p.iam.gserviceaccount.com";

    fn time(text: &str) -> DateTime<Utc> {
        secret::parse_time(text).unwrap()
    }

    /// The time every plan is made at: 10 minutes after the secrets of [`written`] were obtained.
    fn now() -> DateTime<Utc> {
        time("2026-01-01T00:10:00Z")
    }

    fn policy() -> RefreshPolicy {
        RefreshPolicy {
            assumed_lifetime_aws: Duration::from_secs(12 * 3600),
            assumed_lifetime_google: Duration::from_secs(3600),
            assumed_lifetime_azure: Duration::from_secs(3 * 3600),
            jitter: 0.0,
            floor: Duration::from_secs(60),
        }
    }

    fn service_account(uid: &str) -> ServiceAccount {
        let mut sa = ServiceAccount::default();
        sa.metadata.name = "app".into();
        sa.metadata.namespace = "team".into();
        sa.metadata.uid = uid.into();
        sa
    }

    /// ServiceAccount `team/app`'s annotations: registry gcr.io, these Google service accounts, this base name.
    fn annotations(emails: &str, base: Option<&str>) -> BTreeMap<String, String> {
        let mut map = BTreeMap::from([
            (keys::REGISTRY.to_string(), "gcr.io".to_string()),
            (keys::AUDIENCE.to_string(), "sts.googleapis.com".to_string()),
            (
                keys::GOOGLE_WORKLOAD_IDENTITY_PROVIDER.to_string(),
                GOOGLE_PROVIDER.to_string(),
            ),
            (
                keys::GOOGLE_SERVICE_ACCOUNT_EMAIL.to_string(),
                emails.to_string(),
            ),
        ]);
        if let Some(base) = base {
            map.insert(keys::SECRET_NAME.to_string(), base.to_string());
        }
        map
    }

    fn parsed(emails: &str) -> Parsed {
        spec::parse("team", "app", &annotations(emails, None))
    }

    fn principal(email: &str) -> Principal {
        match parsed(email) {
            Parsed::Configured(c) => c.principals[0].clone(),
            other => panic!("{other:?}"),
        }
    }

    /// The secret this controller writes for `email` at `registry`, owned by the ServiceAccount with `uid`,
    /// obtained at 00:00 and valid for an hour (fresh until 00:45).
    fn written_secret(name: &str, email: &str, registry: &str, uid: &str) -> Secret {
        secret::build_secret(
            &service_account(uid),
            name,
            registry,
            &principal(email),
            &RegistryCredentials {
                username: "oauth2accesstoken".into(),
                password: Sensitive::new("pw"),
                expires_at: time("2026-01-01T01:00:00Z"),
            },
            time("2026-01-01T00:00:00Z"),
        )
    }

    fn written(name: &str, email: &str) -> Secret {
        written_secret(name, email, "gcr.io", "uid-1")
    }

    fn cached(secret: &Secret) -> CachedSecret {
        CachedSecret::from_object(secret)
    }

    fn set_config(secret: &mut Secret, json: &str) {
        secret.data.insert(
            keys::DOCKER_CONFIG_JSON_KEY.into(),
            base64::engine::general_purpose::STANDARD.encode(json),
        );
    }

    /// A secret that carries the label of `team/app` but no ownerReference to it.
    fn foreign(name: &str) -> Secret {
        let mut secret = written(name, A);
        secret.metadata.owner_references.clear();
        secret
    }

    /// The reconcile's inputs: ServiceAccount `team/app` with UID `uid-1`.
    struct World {
        attached: Vec<Box<str>>,
        secrets: Vec<CachedSecret>,
        known_foreign: Vec<&'static str>,
    }

    impl World {
        /// The cache holds these secrets, as the watch summarized them.
        fn new(secrets: &[Secret]) -> World {
            World {
                attached: Vec::new(),
                secrets: secrets.iter().map(cached).collect(),
                known_foreign: Vec::new(),
            }
        }

        fn attached(mut self, names: &[&str]) -> World {
            self.attached = names.iter().map(|n| (*n).into()).collect();
            self
        }

        fn plan<'a>(&'a self, parsed: &'a Parsed) -> Plan<'a> {
            let known_foreign = |name: &str| self.known_foreign.contains(&name);
            let observed = Observed {
                name: "app",
                uid: "uid-1",
                attached: &self.attached,
                secrets: &self.secrets,
                known_foreign: &known_foreign,
            };
            plan(&observed, parsed, 10, &policy(), now())
        }
    }

    fn provision(plan: Plan<'_>) -> Provision<'_> {
        match plan {
            Plan::Provision(provision) => provision,
            other => panic!("not provisioning: {other:?}"),
        }
    }

    fn names(secrets: &[&CachedSecret]) -> Vec<String> {
        secrets.iter().map(|s| s.name.to_string()).collect()
    }

    /// Each principal's secret name and step, in a form a table can hold.
    fn steps(provision: &Provision<'_>) -> Vec<(String, String)> {
        provision
            .principals
            .iter()
            .map(|(name, step)| (name.clone(), describe(step)))
            .collect()
    }

    fn describe(step: &Step<'_>) -> String {
        match step {
            Step::Decided(action) => describe_action(action),
            Step::LookUp => "look up".into(),
            Step::Foreign => "foreign".into(),
        }
    }

    fn describe_action(action: &Action<'_>) -> String {
        match action {
            Action::Fresh(until) => format!("fresh until {}", secret::format_time(*until)),
            Action::Relabel(s, until) => {
                format!("relabel {} until {}", s.name, secret::format_time(*until))
            }
            Action::ReadContent(s, until) => {
                format!("read {} until {}", s.name, secret::format_time(*until))
            }
            Action::Exchange { existing, why } => match existing {
                Some(s) => format!("exchange over {}: {why}", s.name),
                None => format!("exchange: {why}"),
            },
        }
    }

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

    /// `.imagePullSecrets` after attaching `add` and detaching `remove`, as the executor patches it (`None`:
    /// unchanged, nothing sent).
    fn updated(current: &[&str], add: &[&str], remove: &[&CachedSecret]) -> Option<Vec<String>> {
        updated_pull_secrets(&refs(current), &strings(add), &names(remove))
            .map(|entries| entries.into_iter().map(|e| e.name).collect())
    }

    fn row(name: &str, step: &str) -> (String, String) {
        (name.to_string(), step.to_string())
    }

    const FRESH: &str = "fresh until 2026-01-01T00:45:00Z";
    const BASE: &str = "imagepullsecret-app";
    const SECOND: &str = "imagepullsecret-app-1";

    #[test]
    fn a_new_service_account_exchanges_for_every_principal_and_removes_nothing() {
        let world = World::new(&[]);
        let parsed = parsed(&format!("{A},{B}"));
        let provision = provision(world.plan(&parsed));
        assert_eq!(
            steps(&provision),
            vec![
                row(BASE, "exchange: the secret does not exist"),
                row(SECOND, "exchange: the secret does not exist"),
            ]
        );
        assert!(provision.remove.is_empty() && provision.foreign.is_empty());
    }

    #[test]
    fn a_steady_state_plans_no_io_and_requeues_at_the_refresh_time() {
        let world = World::new(&[written(BASE, A)]).attached(&[BASE]);
        let parsed = parsed(A);
        let provision = provision(world.plan(&parsed));
        assert_eq!(steps(&provision), vec![row(BASE, FRESH)]);
        assert!(provision.remove.is_empty());
        // Already attached: the executor's attach changes nothing, so it sends nothing.
        assert_eq!(updated(&[BASE], &[BASE], &provision.remove), None);
        let Step::Decided(Action::Fresh(until)) = provision.principals[0].1 else {
            unreachable!()
        };
        assert_eq!(
            policy().delay_until(until, now()),
            Duration::from_secs(35 * 60)
        );
    }

    #[test]
    fn tampered_secrets_are_repaired_without_an_exchange_while_the_credential_is_intact() {
        let mut unlabelled = written(BASE, A);
        unlabelled.metadata.labels.clear();
        // The password was edited; `auth` still holds the credential as written.
        let mut edited = written(SECOND, B);
        set_config(
            &mut edited,
            r#"{"auths":{"gcr.io":{"username":"oauth2accesstoken","password":"edited","auth":"b2F1dGgyYWNjZXNzdG9rZW46cHc="}}}"#,
        );
        let mut ruined = written("imagepullsecret-app-2", C);
        set_config(
            &mut ruined,
            &secret::build_docker_config_json("gcr.io", "oauth2accesstoken", "edited"),
        );
        let mut unreadable = written("imagepullsecret-app-3", D);
        unreadable.data.clear();
        let world = World::new(&[unlabelled, edited.clone(), ruined.clone(), unreadable]);
        let parsed = parsed(&format!("{A},{B},{C},{D}"));
        let provision = provision(world.plan(&parsed));
        assert_eq!(
            steps(&provision),
            vec![
                row(BASE, "relabel imagepullsecret-app until 2026-01-01T00:45:00Z"),
                row(SECOND, "read imagepullsecret-app-1 until 2026-01-01T00:45:00Z"),
                row(
                    "imagepullsecret-app-2",
                    "read imagepullsecret-app-2 until 2026-01-01T00:45:00Z"
                ),
                row(
                    "imagepullsecret-app-3",
                    "exchange over imagepullsecret-app-3: the registry changed or the secret's content is not readable"
                ),
            ]
        );
        // What the read decides: a credential intact is rewritten, one edited beyond recovery is exchanged.
        let intact =
            secret::recover_credential(&edited, "gcr.io").map(|(u, p)| (u, p.expose().to_string()));
        assert_eq!(intact, Some(("oauth2accesstoken".into(), "pw".into())));
        assert!(secret::recover_credential(&ruined, "gcr.io").is_none());
    }

    #[test]
    fn a_foreign_secret_with_a_wanted_name_fails_its_principal_and_is_never_touched() {
        let world = World::new(&[foreign(BASE), foreign("users-own"), written(SECOND, B)])
            .attached(&["users-own", BASE, SECOND]);
        let parsed = parsed(&format!("{A},{B}"));
        let provision = provision(world.plan(&parsed));
        assert_eq!(
            steps(&provision),
            vec![row(BASE, "foreign"), row(SECOND, FRESH)]
        );
        // The one with a wanted name has its own failure; the other gets a Warning; neither is removed.
        assert_eq!(names(&provision.foreign), vec!["users-own"]);
        assert!(provision.remove.is_empty());
    }

    #[test]
    fn a_secret_owned_by_an_earlier_service_account_of_the_same_name_is_foreign() {
        let recreated = written_secret(BASE, A, "gcr.io", "uid-0");
        let world = World::new(&[recreated]).attached(&[BASE]);
        let parsed = parsed(A);
        let provision = provision(world.plan(&parsed));
        assert_eq!(steps(&provision), vec![row(BASE, "foreign")]);
        assert!(provision.remove.is_empty());
    }

    #[test]
    fn expired_secrets_and_changed_registries_or_principals_are_exchanged_in_place() {
        let mut expired = written(BASE, A);
        expired
            .metadata
            .annotations
            .insert(keys::EXPIRES_AT.into(), "2026-01-01T00:12:00Z".into());
        let other_registry = written_secret(SECOND, B, "other.io", "uid-1");
        let other_principal = written("imagepullsecret-app-2", A);
        let mut wrong_type = written("imagepullsecret-app-3", D);
        wrong_type.type_ = "Opaque".into();
        let world = World::new(&[expired, other_registry, other_principal, wrong_type]);
        let parsed = parsed(&format!("{A},{B},{C},{D}"));
        let provision = provision(world.plan(&parsed));
        assert_eq!(
            steps(&provision),
            vec![
                row(
                    BASE,
                    "exchange over imagepullsecret-app: less than a quarter of the credential's lifetime is left"
                ),
                row(
                    SECOND,
                    "exchange over imagepullsecret-app-1: the registry changed or the secret's content is not readable"
                ),
                row(
                    "imagepullsecret-app-2",
                    "exchange over imagepullsecret-app-2: the principal changed"
                ),
                row(
                    "imagepullsecret-app-3",
                    "exchange over imagepullsecret-app-3: the secret has the wrong type"
                ),
            ]
        );
        assert!(provision.remove.is_empty());
    }

    #[test]
    fn a_renamed_base_provisions_the_new_names_and_removes_the_old_ones() {
        let world = World::new(&[written(BASE, A), written(SECOND, B)]).attached(&[
            "users-own",
            BASE,
            SECOND,
        ]);
        let parsed = spec::parse(
            "team",
            "app",
            &annotations(&format!("{A},{B}"), Some("pull")),
        );
        let provision = provision(world.plan(&parsed));
        assert_eq!(
            steps(&provision),
            vec![
                row("pull", "exchange: the secret does not exist"),
                row("pull-1", "exchange: the secret does not exist"),
            ]
        );
        assert_eq!(names(&provision.remove), vec![BASE, SECOND]);
    }

    #[test]
    fn a_removed_principal_has_its_secret_detached_and_deleted() {
        let world = World::new(&[written(BASE, A), written(SECOND, B)]).attached(&[BASE, SECOND]);
        let parsed = parsed(A);
        let provision = provision(world.plan(&parsed));
        assert_eq!(steps(&provision), vec![row(BASE, FRESH)]);
        assert_eq!(names(&provision.remove), vec![SECOND]);
        // Detaching keeps every other entry in its place.
        assert_eq!(
            updated(&["users-own", BASE, SECOND], &[BASE], &provision.remove),
            Some(vec!["users-own".to_string(), BASE.to_string()])
        );
    }

    #[test]
    fn an_attach_that_conflicted_is_recomputed_from_the_list_read_again() {
        let world = World::new(&[written(SECOND, B)]).attached(&[SECOND]);
        let parsed = parsed(A);
        let provision = provision(world.plan(&parsed));
        assert_eq!(
            steps(&provision),
            vec![row(BASE, "exchange: the secret does not exist")]
        );
        assert_eq!(names(&provision.remove), vec![SECOND]);
        // Someone added an entry between the read and the patch, which conflicted: the change is made again
        // to the list read after the conflict, so their entry stays.
        assert_eq!(
            updated(&[SECOND, "users-new"], &[BASE], &provision.remove),
            Some(vec!["users-new".to_string(), BASE.to_string()])
        );
    }

    #[test]
    fn an_attached_name_missing_from_the_cache_is_read_before_any_token_is_minted() {
        let mut world = World::new(&[]).attached(&[BASE]);
        world.known_foreign = vec![SECOND];
        let parsed = parsed(&format!("{A},{B},{C}"));
        let provision = provision(world.plan(&parsed));
        assert_eq!(
            steps(&provision),
            vec![
                row(BASE, "look up"),
                row(SECOND, "look up"),
                row(
                    "imagepullsecret-app-2",
                    "exchange: the secret does not exist"
                ),
            ]
        );
        // The read's answer decides again: ours (lost its label while no watch could see it) is relabelled,
        // a secret that does not exist is created.
        let mut unlabelled = written(BASE, A);
        unlabelled.metadata.labels.clear();
        let found = cached(&unlabelled);
        assert_eq!(
            describe_action(&provision.decide(&principal(A), Some(&found))),
            "relabel imagepullsecret-app until 2026-01-01T00:45:00Z"
        );
        assert_eq!(
            describe_action(&provision.decide(&principal(B), None)),
            "exchange: the secret does not exist"
        );
    }

    #[test]
    fn several_principals_each_get_their_own_step() {
        let mut unlabelled = written(SECOND, B);
        unlabelled.metadata.labels.clear();
        let world = World::new(&[
            written(BASE, A),
            unlabelled,
            foreign("imagepullsecret-app-2"),
            written("imagepullsecret-app-9", A),
        ])
        .attached(&[BASE, SECOND, "imagepullsecret-app-3"]);
        let parsed = parsed(&format!("{A},{B},{C},{D},{E}"));
        let provision = provision(world.plan(&parsed));
        assert_eq!(
            steps(&provision),
            vec![
                row(BASE, FRESH),
                row(
                    SECOND,
                    "relabel imagepullsecret-app-1 until 2026-01-01T00:45:00Z"
                ),
                row("imagepullsecret-app-2", "foreign"),
                row("imagepullsecret-app-3", "look up"),
                row(
                    "imagepullsecret-app-4",
                    "exchange: the secret does not exist"
                ),
            ]
        );
        assert_eq!(names(&provision.remove), vec!["imagepullsecret-app-9"]);
        assert!(provision.foreign.is_empty());
    }

    #[test]
    fn a_removed_configuration_removes_every_owned_secret_and_nothing_else() {
        let world = World::new(&[written(SECOND, B), foreign("users-own"), written(BASE, A)])
            .attached(&["users-own", BASE, SECOND]);
        let Plan::Decommission { foreign, remove } = world.plan(&Parsed::NotConfigured) else {
            panic!("not decommissioning")
        };
        assert_eq!(names(&remove), vec![BASE, SECOND]);
        assert_eq!(names(&foreign), vec!["users-own"]);
    }

    #[test]
    fn an_invalid_configuration_plans_nothing_but_a_warning() {
        let world = World::new(&[written(BASE, A), foreign("users-own")]);
        let parsed = spec::parse(
            "team",
            "app",
            &annotations(&format!("{A},not-an-email"), None),
        );
        let Plan::Refuse { foreign, message } = world.plan(&parsed) else {
            panic!("not refused")
        };
        assert!(message.starts_with("invalid configuration: "), "{message}");
        assert_eq!(names(&foreign), vec!["users-own"]);

        // Over the principal limit: the one Warning says so, and nothing else is said or done.
        let many: Vec<String> = (0..11)
            .map(|i| format!("p{i}@p.iam.gserviceaccount.com"))
            .collect();
        let many = many.join(",");
        let parsed = spec::parse("team", "app", &annotations(&many, None));
        let Plan::Refuse { foreign, message } = world.plan(&parsed) else {
            panic!("not refused")
        };
        assert!(message.contains("10"), "{message}");
        assert!(foreign.is_empty());
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
