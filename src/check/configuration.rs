//! Step 1: the ServiceAccount's effective configuration, or every problem with it in the words of the
//! controller's Warning events, and what to write instead. Pure.

use crate::annotations as keys;
use crate::cloud::Principal;
use crate::secret;
use crate::spec::{Configuration, Parsed};

use super::report::{Status, Step};

/// The configuration step for the parse result of `namespace/name`'s annotations.
pub(crate) fn evaluate(namespace: &str, name: &str, parsed: &Parsed) -> Step {
    match parsed {
        Parsed::NotConfigured => Step::new("configuration", Status::Fail)
            .detail(format!(
                "serviceaccount {namespace}/{name} is not configured: none of the {}* annotations is set",
                keys::PREFIX
            ))
            .fix(format!(
                "annotate it, for ECR: kubectl -n {namespace} annotate serviceaccount {name} \
                 {}=ACCOUNT.dkr.ecr.REGION.amazonaws.com {}=sts.amazonaws.com {}=arn:aws:iam::ACCOUNT:role/ROLE",
                keys::REGISTRY,
                keys::AUDIENCE,
                keys::AWS_ROLE_ARN
            ))
            .fix(format!(
                "or for Artifact Registry: {}=REGION-docker.pkg.dev {}=projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER \
                 {}=NAME@PROJECT.iam.gserviceaccount.com {}=//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER",
                keys::REGISTRY,
                keys::GOOGLE_WORKLOAD_IDENTITY_PROVIDER,
                keys::GOOGLE_SERVICE_ACCOUNT_EMAIL,
                keys::AUDIENCE
            )),
        Parsed::Invalid(message) => {
            let mut step = Step::new("configuration", Status::Fail)
                .detail(format!("invalid configuration: {message}"));
            step.fix = invalid_fix(namespace, name, message);
            step
        }
        Parsed::Configured(configuration) => configured(configuration),
    }
}

fn configured(configuration: &Configuration) -> Step {
    let mut step = Step::new("configuration", Status::Pass)
        .detail(format!("registry: {}", configuration.registry))
        .detail(format!("audience: {}", configuration.audience));
    if let Some(first) = configuration.principals.first() {
        step.detail.push(match first {
            Principal::Aws(target) => format!(
                "cloud: aws, partition {}, region {}",
                target.registry.partition, target.registry.region
            ),
            Principal::Google(target) => format!("cloud: google, provider {}", target.provider),
            Principal::Azure(target) => format!(
                "cloud: azure ({}), tenant {}",
                target.registry.cloud, target.tenant_id
            ),
        });
    }
    for (principal, secret_name) in configuration
        .principals
        .iter()
        .zip(configuration.secret_names())
    {
        step.detail.push(format!(
            "principal {} -> secret {secret_name}",
            secret::principal_id(principal)
        ));
    }
    for warning in &configuration.warnings {
        step.set_status(Status::Warn);
        step.detail.push(format!("warning: {warning}"));
    }
    step
}

/// What to write instead, from the controller's message (which names the annotation).
fn invalid_fix(namespace: &str, name: &str, message: &str) -> Vec<String> {
    let annotate = format!("kubectl -n {namespace} annotate --overwrite serviceaccount {name}");
    let mut fix = Vec::new();
    if let Some(missing) = message.split("missing annotation ").nth(1) {
        for key in missing.split(", ") {
            let key = key.split(' ').next().unwrap_or(key);
            let example = match key {
                keys::REGISTRY => "REGISTRY-HOST (e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com or europe-docker.pkg.dev)",
                keys::AUDIENCE => "AUDIENCE (sts.amazonaws.com for AWS, the provider's allowed audience for Google)",
                keys::AWS_ROLE_ARN => "arn:aws:iam::ACCOUNT:role/ROLE",
                keys::GOOGLE_WORKLOAD_IDENTITY_PROVIDER => {
                    "projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER"
                }
                keys::GOOGLE_SERVICE_ACCOUNT_EMAIL => "NAME@PROJECT.iam.gserviceaccount.com",
                _ => "VALUE",
            };
            fix.push(format!("add it: {annotate} {key}={example}"));
        }
        return fix;
    }
    let hint = if message.contains(keys::AWS_ROLE_ARN) {
        "an IAM role ARN has the form arn:aws:iam::ACCOUNT:role/NAME (12-digit account, the registry's partition)"
    } else if message.contains(keys::GOOGLE_WORKLOAD_IDENTITY_PROVIDER) {
        "the provider's resource name has the form projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER (the project number, not its ID)"
    } else if message.contains(keys::GOOGLE_SERVICE_ACCOUNT_EMAIL) {
        "a service account email has the form NAME@PROJECT.iam.gserviceaccount.com"
    } else if message.contains(keys::REGISTRY) {
        "the registry annotation is a host name only, such as 123456789012.dkr.ecr.us-east-1.amazonaws.com or europe-docker.pkg.dev (for an ECR mirror, add the aws-region annotation)"
    } else if message.contains(keys::SECRET_NAME) {
        "a secret name is a DNS subdomain: lower case letters, digits, '-' and '.'"
    } else if message.contains(keys::AUDIENCE) {
        "give exactly one audience"
    } else {
        "correct the annotation named above"
    };
    fix.push(format!("{hint}; then: {annotate} KEY=VALUE"));
    fix
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;
    use std::collections::BTreeMap;

    fn parse(pairs: &[(&str, &str)]) -> Parsed {
        let annotations: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        spec::parse("team-a", "app", &annotations)
    }

    #[test]
    fn configured_aws_shows_region_principals_and_secret_names() {
        let step = evaluate(
            "team-a",
            "app",
            &parse(&[
                (
                    keys::REGISTRY,
                    "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                ),
                (keys::AUDIENCE, "sts.amazonaws.com"),
                (
                    keys::AWS_ROLE_ARN,
                    "arn:aws:iam::123456789012:role/a,arn:aws:iam::123456789012:role/b",
                ),
            ]),
        );
        assert_eq!(step.status, Status::Pass);
        assert_eq!(
            step.detail,
            vec![
                "registry: 123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                "audience: sts.amazonaws.com",
                "cloud: aws, partition aws, region eu-west-1",
                "principal arn:aws:iam::123456789012:role/a -> secret imagepullsecret-app",
                "principal arn:aws:iam::123456789012:role/b -> secret imagepullsecret-app-1",
            ]
        );
    }

    #[test]
    fn invalid_configuration_reads_like_the_event_and_says_what_to_write() {
        let step = evaluate(
            "team-a",
            "app",
            &parse(&[
                (keys::REGISTRY, "europe-docker.pkg.dev"),
                (keys::AWS_ROLE_ARN, "arn:aws:iam::123456789012:role/a"),
            ]),
        );
        assert_eq!(step.status, Status::Fail);
        assert_eq!(
            step.detail,
            vec!["invalid configuration: incomplete configuration: missing annotation imagepullsecrets.preferred.jp/audience"]
        );
        assert!(step.fix[0].starts_with("add it: kubectl -n team-a annotate --overwrite serviceaccount app imagepullsecrets.preferred.jp/audience=AUDIENCE"));

        let step = evaluate(
            "team-a",
            "app",
            &parse(&[
                (
                    keys::REGISTRY,
                    "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                ),
                (keys::AUDIENCE, "sts.amazonaws.com"),
                (keys::AWS_ROLE_ARN, "arn:aws:iam::1234:role/a"),
            ]),
        );
        assert!(step.detail[0].contains(keys::AWS_ROLE_ARN), "{step:?}");
        assert!(step.fix[0].starts_with("an IAM role ARN has the form"));
    }

    #[test]
    fn unconfigured_shows_both_shapes() {
        let step = evaluate("team-a", "app", &Parsed::NotConfigured);
        assert_eq!(step.status, Status::Fail);
        assert_eq!(step.fix.len(), 2);
    }
}
