//! A ServiceAccount's annotations, turned into a validated configuration — or a precise reason why not.
//!
//! Pure: no I/O, no clock. What must stay true: a ServiceAccount is either not configured (none of our
//! annotations), configured (everything valid), or invalid with a message an operator can act on — and an
//! invalid one is never half-applied, because the reconciler writes nothing for it.

use std::collections::BTreeMap;

use crate::annotations as keys;
use crate::cloud::aws::{self, AwsTarget};
use crate::cloud::azure::{self, AzureTarget};
use crate::cloud::google::{self, GoogleTarget};
use crate::cloud::Principal;
use crate::retry::Retry;
use crate::secret;

/// The validated configuration of one ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Configuration {
    /// Registry host, used verbatim as the key under `auths`.
    pub registry: String,
    /// Audience of the ServiceAccount tokens.
    pub audience: String,
    /// One secret per principal, in annotation order.
    pub principals: Vec<Principal>,
    /// Base name of the secrets: principal 0 gets it, principal i > 0 gets `<base>-<i>`.
    pub secret_base_name: String,
    /// Things worth telling the user that do not stop provisioning.
    pub warnings: Vec<String>,
}

impl Configuration {
    /// The secret name of each principal, in order.
    pub(crate) fn secret_names(&self) -> Vec<String> {
        secret::secret_names(&self.secret_base_name, self.principals.len())
    }
}

/// What a ServiceAccount's annotations say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// None of the configuration annotations is set: nothing to provision, anything provisioned goes.
    NotConfigured,
    Configured(Configuration),
    /// Annotations are set but wrong; the message says which and how.
    Invalid(String),
}

/// Reads the configuration of ServiceAccount `namespace/name` from its annotations.
pub(crate) fn parse(namespace: &str, name: &str, annotations: &BTreeMap<String, String>) -> Parsed {
    let get = |key: &str| {
        annotations
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    if keys::CONFIGURATION_KEYS
        .iter()
        .all(|key| get(key).is_none())
    {
        return Parsed::NotConfigured;
    }
    match parse_configured(namespace, name, &get) {
        Ok(configuration) => Parsed::Configured(configuration),
        Err(message) => Parsed::Invalid(message),
    }
}

/// The clouds whose principal annotations are set, in the order of precedence: AWS, Google, Azure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cloud {
    Aws,
    Google,
    Azure,
}

impl Cloud {
    /// How the Warning about ignored annotations names the cloud's annotations.
    fn annotations(self) -> &'static str {
        match self {
            Cloud::Aws => "imagepullsecrets.preferred.jp/aws-role-arn",
            Cloud::Google => "Google",
            Cloud::Azure => "Azure",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Cloud::Aws => "AWS",
            Cloud::Google => "Google",
            Cloud::Azure => "Azure",
        }
    }
}

/// The Warning when annotations of more than one cloud are set: the first in precedence is used.
fn conflict_warning(present: &[Cloud]) -> Option<String> {
    let (used, ignored) = present.split_first()?;
    if ignored.is_empty() {
        return None;
    }
    let mut named: Vec<&str> = present.iter().map(|c| c.annotations()).collect();
    let last = named.pop().unwrap_or_default();
    let ignored: Vec<&str> = ignored.iter().map(|c| c.name()).collect();
    Some(format!(
        "{} {} and {last} annotations are set; using {} and ignoring the {} ones",
        if present.len() == 2 { "both" } else { "all of" },
        named.join(", "),
        used.name(),
        ignored.join(" and ")
    ))
}

fn parse_configured<'a>(
    namespace: &str,
    name: &str,
    get: &impl Fn(&str) -> Option<&'a str>,
) -> Result<Configuration, String> {
    let registry = get(keys::REGISTRY);
    let audience = get(keys::AUDIENCE);
    let role_arns = get(keys::AWS_ROLE_ARN);
    let provider = get(keys::GOOGLE_WORKLOAD_IDENTITY_PROVIDER);
    let emails = get(keys::GOOGLE_SERVICE_ACCOUNT_EMAIL);
    let azure_ours = get(keys::AZURE_CLIENT_ID).is_some() || get(keys::AZURE_TENANT_ID).is_some();
    let azure_client_ids =
        get(keys::AZURE_CLIENT_ID).or_else(|| get(keys::AZURE_WORKLOAD_IDENTITY_CLIENT_ID));
    let azure_tenant =
        get(keys::AZURE_TENANT_ID).or_else(|| get(keys::AZURE_WORKLOAD_IDENTITY_TENANT_ID));

    // Azure Workload Identity's own annotations count only when no other cloud is configured: a
    // ServiceAccount may use them for its pods and pull from ECR or Artifact Registry.
    let mut present = Vec::new();
    if role_arns.is_some() {
        present.push(Cloud::Aws);
    }
    if provider.is_some() || emails.is_some() {
        present.push(Cloud::Google);
    }
    if azure_ours || (present.is_empty() && azure_client_ids.is_some()) {
        present.push(Cloud::Azure);
    }

    let mut missing = Vec::new();
    if registry.is_none() {
        missing.push(keys::REGISTRY);
    }
    if audience.is_none() {
        missing.push(keys::AUDIENCE);
    }
    match present.first() {
        None => missing.push(
            "imagepullsecrets.preferred.jp/aws-role-arn (or both Google annotations, or \
             imagepullsecrets.preferred.jp/azure-client-id)",
        ),
        Some(Cloud::Aws) => {}
        Some(Cloud::Google) => match (provider, emails) {
            (Some(_), None) => missing.push(keys::GOOGLE_SERVICE_ACCOUNT_EMAIL),
            (None, Some(_)) => missing.push(keys::GOOGLE_WORKLOAD_IDENTITY_PROVIDER),
            _ => {}
        },
        Some(Cloud::Azure) => {
            if azure_client_ids.is_none() {
                missing.push(
                    "imagepullsecrets.preferred.jp/azure-client-id (or azure.workload.identity/client-id)",
                );
            }
            if azure_tenant.is_none() {
                missing.push(
                    "imagepullsecrets.preferred.jp/azure-tenant-id (or azure.workload.identity/tenant-id)",
                );
            }
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "incomplete configuration: missing annotation {}",
            missing.join(", ")
        ));
    }
    let (Some(registry), Some(audience), Some(cloud)) = (registry, audience, present.first())
    else {
        unreachable!("all checked above");
    };
    validate_audience(audience)?;

    let warnings: Vec<String> = conflict_warning(&present).into_iter().collect();
    let principals = match cloud {
        Cloud::Aws => aws_principals(
            namespace,
            name,
            registry,
            role_arns.unwrap_or_default(),
            get(keys::AWS_REGION),
        )?,
        Cloud::Google => {
            validate_registry_host(registry)?;
            google_principals(provider.unwrap_or_default(), emails.unwrap_or_default())?
        }
        Cloud::Azure => {
            validate_registry_host(registry)?;
            azure_principals(
                registry,
                get(keys::AZURE_CLOUD),
                azure_client_ids.unwrap_or_default(),
                azure_tenant.unwrap_or_default(),
                if get(keys::AZURE_CLIENT_ID).is_some() {
                    keys::AZURE_CLIENT_ID
                } else {
                    keys::AZURE_WORKLOAD_IDENTITY_CLIENT_ID
                },
                if get(keys::AZURE_TENANT_ID).is_some() {
                    keys::AZURE_TENANT_ID
                } else {
                    keys::AZURE_WORKLOAD_IDENTITY_TENANT_ID
                },
            )?
        }
    };

    let secret_base_name = match get(keys::SECRET_NAME) {
        Some(base) => {
            secret::validate_base_name(base)
                .map_err(|e| format!("annotation {}: {e}", keys::SECRET_NAME))?;
            base.to_string()
        }
        None => secret::default_base_name(name),
    };
    Ok(Configuration {
        registry: registry.to_string(),
        audience: audience.to_string(),
        principals,
        secret_base_name,
        warnings,
    })
}

/// Azure principals: one per client ID, all in one tenant, for a registry of a known cloud. `client_key` and
/// `tenant_key` are the annotations the values came from, ours or Azure Workload Identity's.
fn azure_principals(
    registry: &str,
    cloud: Option<&str>,
    client_ids: &str,
    tenant: &str,
    client_key: &str,
    tenant_key: &str,
) -> Result<Vec<Principal>, String> {
    let registry = azure::parse_registry(registry, cloud).map_err(|e| {
        if e.starts_with("annotation ") {
            e
        } else {
            format!("annotation {}: {e}", keys::REGISTRY)
        }
    })?;
    azure::validate_tenant_id(tenant).map_err(|e| format!("annotation {tenant_key}: {e}"))?;
    split_list(client_ids, client_key)?
        .into_iter()
        .map(|client_id| {
            azure::validate_client_id(client_id)
                .map_err(|e| format!("annotation {client_key}: {e}"))?;
            Ok(Principal::Azure(AzureTarget {
                client_id: client_id.to_string(),
                tenant_id: tenant.to_string(),
                registry: registry.clone(),
            }))
        })
        .collect()
}

fn aws_principals(
    namespace: &str,
    name: &str,
    registry: &str,
    role_arns: &str,
    region: Option<&str>,
) -> Result<Vec<Principal>, String> {
    let registry_host = aws::parse_registry_host(registry, region)
        .map_err(|e| format!("annotation {}: {e}", keys::REGISTRY))?;
    let arns = split_list(role_arns, keys::AWS_ROLE_ARN)?;
    let session_name = aws::role_session_name(namespace, name);
    arns.into_iter()
        .map(|arn| {
            aws::validate_role_arn(arn)
                .map_err(|e| format!("annotation {}: {e}", keys::AWS_ROLE_ARN))?;
            aws::check_role_partition(arn, &registry_host)
                .map_err(|e| format!("annotation {}: {e}", keys::AWS_ROLE_ARN))?;
            Ok(Principal::Aws(AwsTarget {
                role_arn: arn.to_string(),
                registry: registry_host.clone(),
                session_name: session_name.clone(),
            }))
        })
        .collect()
}

fn google_principals(provider: &str, emails: &str) -> Result<Vec<Principal>, String> {
    let provider = google::parse_workload_identity_provider(provider).map_err(|e| {
        format!(
            "annotation {}: {e}",
            keys::GOOGLE_WORKLOAD_IDENTITY_PROVIDER
        )
    })?;
    split_list(emails, keys::GOOGLE_SERVICE_ACCOUNT_EMAIL)?
        .into_iter()
        .map(|email| {
            google::validate_service_account_email(email)
                .map_err(|e| format!("annotation {}: {e}", keys::GOOGLE_SERVICE_ACCOUNT_EMAIL))?;
            Ok(Principal::Google(GoogleTarget {
                provider: provider.clone(),
                service_account_email: email.to_string(),
            }))
        })
        .collect()
}

/// Splits a comma-separated annotation into trimmed items; empty items and repeats are errors because they
/// would shift or duplicate the positional secret names.
fn split_list<'a>(value: &'a str, key: &str) -> Result<Vec<&'a str>, String> {
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    if let Some(position) = items.iter().position(|item| item.is_empty()) {
        return Err(format!(
            "annotation {key}: item {} of {:?} is empty; remove the extra comma",
            position + 1,
            value
        ));
    }
    for (i, item) in items.iter().enumerate() {
        if items[..i].contains(item) {
            return Err(format!("annotation {key}: {item:?} is listed twice"));
        }
    }
    Ok(items)
}

/// The default of `--max-principals-per-service-account`: far more than any real ServiceAccount lists, far
/// fewer than would let one ServiceAccount monopolise token requests, provider calls and events.
pub(crate) const DEFAULT_MAX_PRINCIPALS: usize = 20;

/// Refuses an Azure configuration whose registry is neither an ACR login server of its cloud
/// (`NAME.azurecr.io`, `.us`, `.cn`) nor a host the operator allows (`allowed`: hosts or DNS suffixes, from
/// `--azure-registry-suffixes`). The ACR exchange is sent to the registry host with an Entra access token, so
/// a host a tenant chose would make the controller connect wherever the tenant points it (an IP, a port,
/// `localhost`) and tell the tenant what it found there. Refused here, nothing is requested for it.
pub(crate) fn refuse_unlisted_azure_registry(parsed: Parsed, allowed: &[String]) -> Parsed {
    let Parsed::Configured(configuration) = &parsed else {
        return parsed;
    };
    let Some(Principal::Azure(target)) = configuration.principals.first() else {
        return parsed;
    };
    let host = target.registry.host.to_ascii_lowercase();
    let under = |suffix: &str| {
        host == suffix
            || host
                .strip_suffix(suffix)
                .is_some_and(|name| name.ends_with('.') && name.len() > 1)
    };
    let is_acr = azure::names::AzureCloud::ALL
        .iter()
        .any(|cloud| under(cloud.registry_suffix()));
    if is_acr || allowed.iter().any(|suffix| under(suffix)) {
        return parsed;
    }
    Parsed::Invalid(format!(
        "annotation {}: registry host {:?} is not an Azure Container Registry login server \
         (NAME.azurecr.io, NAME.azurecr.us or NAME.azurecr.cn) nor a host the operator allows \
         (flag --azure-registry-suffixes); it was refused before any request was made",
        keys::REGISTRY,
        target.registry.host
    ))
}

/// Refuses a configuration with more principals than `limit`: every principal costs a TokenRequest, provider
/// calls and a secret at each refresh, so one ServiceAccount listing a thousand would crowd out the others.
/// The message is the one Warning the ServiceAccount gets; nothing is written for it.
pub(crate) fn check_principal_limit(
    configuration: &Configuration,
    limit: usize,
) -> Result<(), String> {
    let count = configuration.principals.len();
    if count <= limit {
        return Ok(());
    }
    let key = match configuration.principals.first() {
        Some(Principal::Aws(_)) => keys::AWS_ROLE_ARN,
        _ => keys::GOOGLE_SERVICE_ACCOUNT_EMAIL,
    };
    Err(format!(
        "too many principals: annotation {key} lists {count}, more than the {limit} this controller allows \
         per serviceaccount (flag --max-principals-per-service-account); nothing was provisioned: \
         split them over several serviceaccounts"
    ))
}

/// Why one principal (or the attach step) of a reconcile failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrincipalFailure {
    /// "what failed: why", naming the principal.
    pub message: String,
    /// Whether the failure goes into the reconcile's Warning; a lost leadership or a race being retried is
    /// not something to tell the user about.
    pub report: bool,
    /// How soon trying again may help.
    pub retry: Retry,
}

/// The note of the one Warning a reconcile publishes for all its failures, or `None` when there is nothing
/// to report. One failure keeps its message as it is; several are counted and listed, each naming its
/// principal, so one event says everything that went wrong and repeats of it form one series.
pub(crate) fn summarize_failures(
    failures: &[PrincipalFailure],
    principals: usize,
) -> Option<String> {
    let reported: Vec<&str> = failures
        .iter()
        .filter(|f| f.report)
        .map(|f| f.message.as_str())
        .collect();
    match reported.as_slice() {
        [] => None,
        [one] => Some(one.to_string()),
        many => Some(format!(
            "{} failures ({} principals): {}",
            many.len(),
            principals,
            many.join("; ")
        )),
    }
}

fn validate_audience(audience: &str) -> Result<(), String> {
    if audience.len() > 1024 {
        return Err(format!(
            "annotation {}: longer than 1024 characters",
            keys::AUDIENCE
        ));
    }
    if audience
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ',')
    {
        return Err(format!(
            "annotation {}: {audience:?} contains whitespace, a comma or a control character; give exactly one audience",
            keys::AUDIENCE
        ));
    }
    Ok(())
}

/// A registry host as Docker uses it: a DNS name or IP, optionally with a port; no scheme, path or upper case.
pub(crate) fn validate_registry_host(registry: &str) -> Result<(), String> {
    let key = keys::REGISTRY;
    if registry.contains("://") {
        return Err(format!("annotation {key}: {registry:?} has a scheme; give the host only, e.g. europe-docker.pkg.dev"));
    }
    if registry.contains('/') {
        return Err(format!(
            "annotation {key}: {registry:?} has a path; give the registry host only"
        ));
    }
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    if let Some(port) = port {
        if port.is_empty()
            || port.len() > 5
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u32>().map_or(true, |p| p == 0 || p > 65535)
        {
            return Err(format!(
                "annotation {key}: {registry:?} has an invalid port"
            ));
        }
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("annotation {key}: {registry:?} must be lower case"));
    }
    if host.is_empty() || host.len() > 253 || host.ends_with('.') {
        return Err(format!(
            "annotation {key}: {registry:?} is not a valid host name"
        ));
    }
    if !host
        .split('.')
        .all(|label| label.len() <= 63 && secret::is_dns_label(label))
    {
        return Err(format!(
            "annotation {key}: {registry:?} is not a valid host name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::123456789012:role/puller";
    const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    const PROVIDER: &str =
        "projects/123456/locations/global/workloadIdentityPools/pool-1/providers/prov-1";
    const EMAIL: &str = "puller@my-project.iam.gserviceaccount.com";
    const ACR: &str = "myregistry.azurecr.io";
    const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    #[test]
    fn principals_beyond_the_limit_are_refused_with_one_message() {
        let emails: Vec<String> = (0..1000)
            .map(|i| format!("p{i}@proj.iam.gserviceaccount.com"))
            .collect();
        let list = emails.join(",");
        let Parsed::Configured(configuration) = parse(
            "ns",
            "sa",
            &annotations(&[
                (keys::REGISTRY, "europe-docker.pkg.dev"),
                (keys::AUDIENCE, "aud"),
                (keys::GOOGLE_WORKLOAD_IDENTITY_PROVIDER, PROVIDER),
                (keys::GOOGLE_SERVICE_ACCOUNT_EMAIL, &list),
            ]),
        ) else {
            panic!("a valid configuration");
        };
        assert_eq!(
            check_principal_limit(&configuration, 20).unwrap_err(),
            "too many principals: annotation imagepullsecrets.preferred.jp/googlecloud-service-account-email \
             lists 1000, more than the 20 this controller allows per serviceaccount (flag \
             --max-principals-per-service-account); nothing was provisioned: split them over several serviceaccounts"
        );
        assert_eq!(check_principal_limit(&configuration, 1000), Ok(()));
    }

    #[test]
    fn failures_become_one_note_naming_each() {
        let failure = |message: &str, report| PrincipalFailure {
            message: message.to_string(),
            report,
            retry: Retry::Transient,
        };
        assert_eq!(summarize_failures(&[], 3), None);
        assert_eq!(
            summarize_failures(&[failure("leadership lost", false)], 3),
            None
        );
        assert_eq!(
            summarize_failures(&[failure("for a@x: denied", true)], 1).as_deref(),
            Some("for a@x: denied")
        );
        assert_eq!(
            summarize_failures(
                &[
                    failure("for a@x: denied", true),
                    failure("race", false),
                    failure("for b@x: timeout", true)
                ],
                3
            )
            .as_deref(),
            Some("2 failures (3 principals): for a@x: denied; for b@x: timeout")
        );
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn configured(pairs: &[(&str, &str)]) -> Configuration {
        match parse("ns", "sa", &annotations(pairs)) {
            Parsed::Configured(c) => c,
            other => panic!("{pairs:?}: {other:?}"),
        }
    }

    #[test]
    fn azure_registries_beyond_acr_and_the_operators_hosts_are_refused() {
        let azure_at = |registry: &str| {
            parse(
                "ns",
                "sa",
                &annotations(&[
                    (keys::REGISTRY, registry),
                    (keys::AUDIENCE, "aud"),
                    (keys::AZURE_CLIENT_ID, CLIENT),
                    (keys::AZURE_TENANT_ID, TENANT),
                    (keys::AZURE_CLOUD, "AzureCloud"),
                ]),
            )
        };
        let allowed = [
            "registry.internal".to_string(),
            "mirror.example.com:5000".to_string(),
        ];
        for registry in [
            ACR,
            "registry.internal",
            "team-a.registry.internal",
            "mirror.example.com:5000",
        ] {
            assert!(
                matches!(
                    refuse_unlisted_azure_registry(azure_at(registry), &allowed),
                    Parsed::Configured(_)
                ),
                "{registry}"
            );
        }
        for registry in [
            "127.0.0.1:39313",
            "localhost",
            "10.0.0.4",
            "registry.example.com",
            "evilregistry.internal",
            "mirror.example.com:6000",
            "registry.internal.evil.com",
        ] {
            match refuse_unlisted_azure_registry(azure_at(registry), &allowed) {
                Parsed::Invalid(message) => assert_eq!(
                    message,
                    format!(
                        "annotation imagepullsecrets.preferred.jp/registry: registry host {registry:?} is not an \
                         Azure Container Registry login server (NAME.azurecr.io, NAME.azurecr.us or \
                         NAME.azurecr.cn) nor a host the operator allows (flag --azure-registry-suffixes); it \
                         was refused before any request was made"
                    )
                ),
                other => panic!("{registry}: {other:?}"),
            }
        }
        // Without the flag, only ACR's own hosts; other providers are not concerned.
        assert!(matches!(
            refuse_unlisted_azure_registry(azure_at(ACR), &[]),
            Parsed::Configured(_)
        ));
        assert!(matches!(
            refuse_unlisted_azure_registry(azure_at("registry.internal"), &[]),
            Parsed::Invalid(_)
        ));
        let google = parse(
            "ns",
            "sa",
            &annotations(&[
                (keys::REGISTRY, "127.0.0.1:5000"),
                (keys::AUDIENCE, "aud"),
                (keys::GOOGLE_WORKLOAD_IDENTITY_PROVIDER, PROVIDER),
                (keys::GOOGLE_SERVICE_ACCOUNT_EMAIL, EMAIL),
            ]),
        );
        assert!(matches!(
            refuse_unlisted_azure_registry(google, &[]),
            Parsed::Configured(_)
        ));
    }

    #[test]
    fn unannotated_is_not_configured() {
        assert_eq!(
            parse("ns", "sa", &annotations(&[("other", "x")])),
            Parsed::NotConfigured
        );
        assert_eq!(
            parse("ns", "sa", &annotations(&[(keys::REGISTRY, "  ")])),
            Parsed::NotConfigured
        );
    }

    #[test]
    fn aws_principals_are_trimmed_and_named_positionally() {
        let other = "arn:aws:iam::123456789012:role/other";
        let c = configured(&[
            (keys::REGISTRY, ECR),
            (keys::AUDIENCE, "sts.amazonaws.com"),
            (keys::AWS_ROLE_ARN, &format!(" {ROLE} ,{other} ")),
        ]);
        assert_eq!(c.principals.len(), 2);
        assert!(
            matches!(&c.principals[1], Principal::Aws(t) if t.role_arn == other && t.session_name == "ns.sa")
        );
        assert_eq!(
            c.secret_names(),
            vec!["imagepullsecret-sa", "imagepullsecret-sa-1"]
        );
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn google_principals_and_custom_secret_name() {
        let c = configured(&[
            (keys::REGISTRY, "asia-northeast1-docker.pkg.dev"),
            (keys::AUDIENCE, "https://iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/pool-1/providers/prov-1"),
            (keys::GOOGLE_WORKLOAD_IDENTITY_PROVIDER, &format!("//iam.googleapis.com/{PROVIDER}")),
            (keys::GOOGLE_SERVICE_ACCOUNT_EMAIL, EMAIL),
            (keys::SECRET_NAME, "pull"),
        ]);
        assert_eq!(
            c.principals,
            vec![Principal::Google(GoogleTarget {
                provider: PROVIDER.into(),
                service_account_email: EMAIL.into()
            })]
        );
        assert_eq!(c.secret_names(), vec!["pull"]);
    }

    #[test]
    fn aws_wins_over_google_with_a_warning() {
        let c = configured(&[
            (keys::REGISTRY, ECR),
            (keys::AUDIENCE, "a"),
            (keys::AWS_ROLE_ARN, ROLE),
            (keys::GOOGLE_WORKLOAD_IDENTITY_PROVIDER, PROVIDER),
            (keys::GOOGLE_SERVICE_ACCOUNT_EMAIL, EMAIL),
        ]);
        assert!(matches!(c.principals[0], Principal::Aws(_)));
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("using AWS"), "{}", c.warnings[0]);
    }

    #[test]
    fn azure_principals_from_ours_or_the_workload_identity_annotations() {
        let other = "66666666-7777-8888-9999-000000000000";
        let c = configured(&[
            (keys::REGISTRY, ACR),
            (keys::AUDIENCE, "api://AzureADTokenExchange"),
            (keys::AZURE_CLIENT_ID, &format!("{CLIENT}, {other}")),
            (keys::AZURE_TENANT_ID, TENANT),
            // Ours win over the ecosystem's.
            (
                keys::AZURE_WORKLOAD_IDENTITY_CLIENT_ID,
                "99999999-9999-9999-9999-999999999999",
            ),
        ]);
        let registry = azure::parse_registry(ACR, None).unwrap();
        assert_eq!(
            c.principals,
            [CLIENT, other]
                .iter()
                .map(|id| Principal::Azure(AzureTarget {
                    client_id: id.to_string(),
                    tenant_id: TENANT.to_string(),
                    registry: registry.clone(),
                }))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            c.secret_names(),
            vec!["imagepullsecret-sa", "imagepullsecret-sa-1"]
        );
        assert!(c.warnings.is_empty());

        let ecosystem = configured(&[
            (keys::REGISTRY, "myregistry.azurecr.us"),
            (keys::AUDIENCE, "api://AzureADTokenExchange"),
            (keys::AZURE_WORKLOAD_IDENTITY_CLIENT_ID, CLIENT),
            (keys::AZURE_WORKLOAD_IDENTITY_TENANT_ID, TENANT),
        ]);
        assert!(matches!(&ecosystem.principals[..], [Principal::Azure(t)]
            if t.client_id == CLIENT && t.registry.cloud == azure::names::AzureCloud::UsGovernment));

        // Alone, the ecosystem's annotations configure nothing.
        assert_eq!(
            parse(
                "ns",
                "sa",
                &annotations(&[
                    (keys::AZURE_WORKLOAD_IDENTITY_CLIENT_ID, CLIENT),
                    (keys::AZURE_WORKLOAD_IDENTITY_TENANT_ID, TENANT)
                ])
            ),
            Parsed::NotConfigured
        );
    }

    #[test]
    fn more_than_one_cloud_uses_the_first_in_precedence_and_warns() {
        let aws = [(keys::AWS_ROLE_ARN, ROLE)];
        let google = [
            (keys::GOOGLE_WORKLOAD_IDENTITY_PROVIDER, PROVIDER),
            (keys::GOOGLE_SERVICE_ACCOUNT_EMAIL, EMAIL),
        ];
        let azure = [
            (keys::AZURE_CLIENT_ID, CLIENT),
            (keys::AZURE_TENANT_ID, TENANT),
        ];
        let ecosystem = [
            (keys::AZURE_WORKLOAD_IDENTITY_CLIENT_ID, CLIENT),
            (keys::AZURE_WORKLOAD_IDENTITY_TENANT_ID, TENANT),
        ];
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (ECR, [&aws[..], &azure[..]].concat(), "aws", Some("both imagepullsecrets.preferred.jp/aws-role-arn and Azure annotations are set; using AWS and ignoring the Azure ones")),
            ("europe-docker.pkg.dev", [&google[..], &azure[..]].concat(), "google", Some("both Google and Azure annotations are set; using Google and ignoring the Azure ones")),
            (ECR, [&aws[..], &google[..], &azure[..]].concat(), "aws", Some("all of imagepullsecrets.preferred.jp/aws-role-arn, Google and Azure annotations are set; using AWS and ignoring the Google and Azure ones")),
            // A ServiceAccount that uses Azure Workload Identity for its pods may pull from elsewhere.
            (ECR, [&aws[..], &ecosystem[..]].concat(), "aws", None),
            ("europe-docker.pkg.dev", [&google[..], &ecosystem[..]].concat(), "google", None),
        ];
        for (registry, mut pairs, provider, warning) in cases {
            pairs.push((keys::REGISTRY, registry));
            pairs.push((keys::AUDIENCE, "a"));
            let c = configured(&pairs);
            assert_eq!(c.principals[0].provider(), provider, "{pairs:?}");
            assert_eq!(
                c.warnings,
                warning.into_iter().map(str::to_string).collect::<Vec<_>>()
            );
        }
    }

    /// Every bad configuration gives a message that names the annotation and the problem.
    #[test]
    fn bad_configurations_say_what_is_wrong() {
        let aws = |registry: &str, role: &str| {
            vec![
                (keys::REGISTRY, registry.to_string()),
                (keys::AUDIENCE, "aud".to_string()),
                (keys::AWS_ROLE_ARN, role.to_string()),
            ]
        };
        let google = |registry: &str, provider: &str, email: &str| {
            vec![
                (keys::REGISTRY, registry.to_string()),
                (keys::AUDIENCE, "aud".to_string()),
                (
                    keys::GOOGLE_WORKLOAD_IDENTITY_PROVIDER,
                    provider.to_string(),
                ),
                (keys::GOOGLE_SERVICE_ACCOUNT_EMAIL, email.to_string()),
            ]
        };
        let azure = |registry: &str, clients: &str, tenant: &str| {
            vec![
                (keys::REGISTRY, registry.to_string()),
                (keys::AUDIENCE, "api://AzureADTokenExchange".to_string()),
                (keys::AZURE_CLIENT_ID, clients.to_string()),
                (keys::AZURE_TENANT_ID, tenant.to_string()),
            ]
        };
        let with = |mut base: Vec<(&'static str, String)>, key: &'static str, value: &str| {
            base.retain(|(k, _)| *k != key);
            base.push((key, value.to_string()));
            base
        };
        let gar = "europe-docker.pkg.dev";
        let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
            (vec![(keys::REGISTRY, ECR.into())], "missing annotation imagepullsecrets.preferred.jp/audience"),
            (vec![(keys::AUDIENCE, "a".into()), (keys::AWS_ROLE_ARN, ROLE.into())], "missing annotation imagepullsecrets.preferred.jp/registry"),
            (vec![(keys::REGISTRY, ECR.into()), (keys::AUDIENCE, "a".into())], "aws-role-arn (or both Google annotations, or imagepullsecrets.preferred.jp/azure-client-id)"),
            (vec![(keys::REGISTRY, gar.into()), (keys::AUDIENCE, "a".into()), (keys::GOOGLE_WORKLOAD_IDENTITY_PROVIDER, PROVIDER.into())], "missing annotation imagepullsecrets.preferred.jp/googlecloud-service-account-email"),
            (vec![(keys::REGISTRY, gar.into()), (keys::AUDIENCE, "a".into()), (keys::GOOGLE_SERVICE_ACCOUNT_EMAIL, EMAIL.into())], "missing annotation imagepullsecrets.preferred.jp/googlecloud-workload-identity-provider"),
            (vec![(keys::SECRET_NAME, "x".into())], "incomplete configuration"),
            (aws(ECR, &format!("{ROLE},")), "item 2 of"),
            (aws(ECR, &format!(",{ROLE}")), "item 1 of"),
            (aws(ECR, &format!("{ROLE},,{ROLE}")), "is empty"),
            (aws(ECR, &format!("{ROLE}, {ROLE}")), "listed twice"),
            (aws(ECR, "arn:aws:iam::12345:role/x"), keys::AWS_ROLE_ARN),
            (aws(ECR, "role/puller"), keys::AWS_ROLE_ARN),
            (aws(ECR, "arn:aws:iam::123456789012:user/bob"), keys::AWS_ROLE_ARN),
            (aws(ECR, "arn:aws-cn:iam::123456789012:role/x"), keys::AWS_ROLE_ARN),
            (aws("registry.example.com", ROLE), keys::REGISTRY),
            (aws("https://123456789012.dkr.ecr.us-east-1.amazonaws.com", ROLE), keys::REGISTRY),
            (aws("123456789012.DKR.ECR.us-east-1.amazonaws.com", ROLE), keys::REGISTRY),
            (aws("123456789012.dkr.ecr.us-east-1.amazonaws.com.", ROLE), keys::REGISTRY),
            (aws("10.0.0.1", ROLE), keys::REGISTRY),
            (with(aws(ECR, ROLE), keys::AUDIENCE, "two audiences"), "give exactly one audience"),
            (with(aws(ECR, ROLE), keys::AUDIENCE, "a,b"), "give exactly one audience"),
            (with(aws(ECR, ROLE), keys::SECRET_NAME, "Upper"), keys::SECRET_NAME),
            (with(aws(ECR, ROLE), keys::SECRET_NAME, "under_score"), keys::SECRET_NAME),
            (with(aws(ECR, ROLE), keys::SECRET_NAME, "-leading-dash"), keys::SECRET_NAME),
            (with(aws(ECR, ROLE), keys::SECRET_NAME, &"x".repeat(254)), keys::SECRET_NAME),
            (google(gar, "projects/abc/locations/global/workloadIdentityPools/p/providers/x", EMAIL), keys::GOOGLE_WORKLOAD_IDENTITY_PROVIDER),
            (google(gar, "projects/123456/locations/global/workloadIdentityPools/pool-1", EMAIL), keys::GOOGLE_WORKLOAD_IDENTITY_PROVIDER),
            (google(gar, PROVIDER, "not-an-email"), keys::GOOGLE_SERVICE_ACCOUNT_EMAIL),
            (google(gar, PROVIDER, &format!("{EMAIL},")), "is empty"),
            (google(gar, PROVIDER, &format!("{EMAIL},{EMAIL}")), "listed twice"),
            (google("https://europe-docker.pkg.dev", PROVIDER, EMAIL), "has a scheme"),
            (google("europe-docker.pkg.dev/project/repo", PROVIDER, EMAIL), "has a path"),
            (google("Europe-Docker.pkg.dev", PROVIDER, EMAIL), "lower case"),
            (google("registry:99999", PROVIDER, EMAIL), "invalid port"),
            (google("bad_host.example", PROVIDER, EMAIL), "not a valid host name"),
            (azure(ACR, "not-a-guid", TENANT), "annotation imagepullsecrets.preferred.jp/azure-client-id: client ID \"not-a-guid\" is not an application (client) ID"),
            (azure(ACR, &format!("{CLIENT},{CLIENT}"), TENANT), "listed twice"),
            (azure(ACR, CLIENT, "contoso"), "annotation imagepullsecrets.preferred.jp/azure-tenant-id: tenant \"contoso\" is neither"),
            (vec![(keys::REGISTRY, ACR.into()), (keys::AUDIENCE, "a".into()), (keys::AZURE_CLIENT_ID, CLIENT.into())], "incomplete configuration: missing annotation imagepullsecrets.preferred.jp/azure-tenant-id (or azure.workload.identity/tenant-id)"),
            (vec![(keys::REGISTRY, ACR.into()), (keys::AUDIENCE, "a".into()), (keys::AZURE_TENANT_ID, TENANT.into())], "incomplete configuration: missing annotation imagepullsecrets.preferred.jp/azure-client-id (or azure.workload.identity/client-id)"),
            (azure(ECR, CLIENT, TENANT), "annotation imagepullsecrets.preferred.jp/registry: registry host \"123456789012.dkr.ecr.us-east-1.amazonaws.com\" is not an Azure Container Registry host"),
            (with(azure("myregistry.azurecr.us", CLIENT, TENANT), keys::AZURE_CLOUD, "AzureCloud"), "annotation imagepullsecrets.preferred.jp/registry: registry host \"myregistry.azurecr.us\" is in AzureUSGovernment, but annotation imagepullsecrets.preferred.jp/azure-cloud says AzureCloud"),
            (with(azure("mirror.example", CLIENT, TENANT), keys::AZURE_CLOUD, "Mars"), "annotation imagepullsecrets.preferred.jp/azure-cloud: \"Mars\" is not an Azure cloud"),
            (vec![(keys::REGISTRY, ACR.into()), (keys::AUDIENCE, "a".into()), (keys::AZURE_WORKLOAD_IDENTITY_CLIENT_ID, "x".into()), (keys::AZURE_WORKLOAD_IDENTITY_TENANT_ID, TENANT.into())], "annotation azure.workload.identity/client-id: client ID \"x\""),
        ];
        assert!(cases.len() >= 25);
        for (pairs, want) in cases {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match parse("ns", "sa", &annotations(&pairs)) {
                Parsed::Invalid(message) => assert!(
                    message.contains(want),
                    "{pairs:?}: {message:?} lacks {want:?}"
                ),
                other => panic!("{pairs:?} should be invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn registry_hosts() {
        for ok in [
            "gcr.io",
            "europe-docker.pkg.dev",
            "registry.local:5000",
            "localhost",
        ] {
            assert!(validate_registry_host(ok).is_ok(), "{ok}");
        }
    }
}
