//! Fixes for AWS: the IAM OIDC identity provider for the cluster's issuer, the role's trust policy, and the
//! role's ECR permissions, as JSON and `aws` commands with this ServiceAccount's values.

use serde_json::json;

use super::{provider_words, unreachable_fix, Subject};
use crate::cloud::aws::AwsTarget;
use crate::cloud::CloudError;

const STEP_STS: &str = "sts AssumeRoleWithWebIdentity";
const STEP_ECR: &str = "ecr GetAuthorizationToken";

/// `issuer.example/path`: how IAM names an OIDC provider and prefixes its condition keys.
fn provider_host_path(issuer: &str) -> &str {
    issuer.trim_start_matches("https://").trim_end_matches('/')
}

/// (partition, account, role name) of a role ARN; empty strings for a malformed one.
fn role_parts(role_arn: &str) -> (&str, &str, &str) {
    let parts: Vec<&str> = role_arn.splitn(6, ':').collect();
    let get = |i: usize| parts.get(i).copied().unwrap_or("");
    let name = get(5).rsplit('/').next().unwrap_or("");
    (get(1), get(4), name)
}

fn oidc_provider_arn(target: &AwsTarget, subject: &Subject) -> String {
    let (partition, account, _) = role_parts(&target.role_arn);
    format!(
        "arn:{partition}:iam::{account}:oidc-provider/{}",
        provider_host_path(subject.issuer)
    )
}

/// The trust policy the role needs, pretty-printed.
pub(crate) fn trust_policy(target: &AwsTarget, subject: &Subject) -> String {
    let host = provider_host_path(subject.issuer);
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": oidc_provider_arn(target, subject)},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{host}:sub"): subject.subject(),
                format!("{host}:aud"): subject.audience,
            }},
        }],
    });
    serde_json::to_string_pretty(&policy).unwrap_or_default()
}

fn oidc_provider_fix(subject: &Subject) -> String {
    format!(
        "IAM needs an OIDC identity provider for issuer {} with client ID (audience) {}: \
         aws iam create-open-id-connect-provider --url {} --client-id-list {} \
         (or, if it exists: aws iam add-client-id-to-open-id-connect-provider --client-id {})",
        subject.issuer, subject.audience, subject.issuer, subject.audience, subject.audience
    )
}

fn trust_policy_fix(target: &AwsTarget, subject: &Subject) -> String {
    let (_, _, role) = role_parts(&target.role_arn);
    format!(
        "role {} must trust {} with this trust policy (aws iam update-assume-role-policy --role-name {role} --policy-document file://trust.json):\n{}",
        target.role_arn,
        subject.subject(),
        trust_policy(target, subject)
    )
}

pub(crate) fn exchange_fix(
    target: &AwsTarget,
    subject: &Subject,
    error: &CloudError,
) -> Vec<String> {
    if let Some(fix) = unreachable_fix(error) {
        return vec![fix];
    }
    let message = provider_words(error);
    match error.step {
        STEP_STS if message.contains("InvalidIdentityToken") => {
            if message.contains("audience") {
                vec![format!(
                    "the token's audience {} is not a client ID of the OIDC provider for {}: \
                     aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn {} --client-id {} \
                     (or set the audience annotation to one of its client IDs)",
                    subject.audience,
                    subject.issuer,
                    oidc_provider_arn(target, subject),
                    subject.audience
                )]
            } else if message.contains("verification key") || message.contains("retrieve") {
                vec![format!(
                    "AWS could not fetch the issuer's keys: {}/.well-known/openid-configuration and its jwks_uri must be reachable from the internet",
                    subject.issuer.trim_end_matches('/')
                )]
            } else {
                vec![oidc_provider_fix(subject), trust_policy_fix(target, subject)]
            }
        }
        STEP_STS if message.contains("AccessDenied") => vec![
            format!(
                "check that role {} exists (STS answers AccessDenied for an unknown role too) and that it trusts this ServiceAccount",
                target.role_arn
            ),
            trust_policy_fix(target, subject),
            oidc_provider_fix(subject),
        ],
        STEP_STS => vec![oidc_provider_fix(subject), trust_policy_fix(target, subject)],
        STEP_ECR if message.contains("AccessDenied") => {
            let (_, _, role) = role_parts(&target.role_arn);
            let policy = json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Action": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                    "Resource": "*",
                }],
            });
            vec![format!(
                "role {} may not get ECR tokens; attach AmazonEC2ContainerRegistryReadOnly \
                 (aws iam attach-role-policy --role-name {role} --policy-arn arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly) \
                 or an inline policy such as:\n{}",
                target.role_arn,
                serde_json::to_string_pretty(&policy).unwrap_or_default()
            )]
        }
        _ => vec![format!(
            "ECR refused the session of {}: check that the ECR endpoint is in the registry's region ({}) and partition, \
             and the clock of this machine",
            target.role_arn, target.registry.region
        )],
    }
}

pub(crate) fn pull_refused_fix(target: &AwsTarget, registry: &str) -> String {
    format!(
        "{registry} did not accept the ECR token of {}: an ECR token is valid only for registries of the account and \
         region it was obtained in ({}); check the registry annotation",
        target.role_arn, target.registry.region
    )
}

pub(crate) fn pull_denied_fix(target: &AwsTarget, repository: &str) -> String {
    format!(
        "allow ecr:BatchGetImage and ecr:GetDownloadUrlForLayer on repository {repository} to {} \
         (in the role's permissions, and in the repository policy when the repository is in another account)",
        target.role_arn
    )
}

pub(crate) fn trusted_as(target: &AwsTarget, subject: &Subject) -> String {
    format!(
        "role {} trusts {} via {}",
        target.role_arn,
        subject.subject(),
        oidc_provider_arn(target, subject)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::aws::{parse_registry_host, role_session_name};

    fn target() -> AwsTarget {
        AwsTarget {
            role_arn: "arn:aws:iam::123456789012:role/team-a-puller".to_string(),
            registry: parse_registry_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com", None)
                .unwrap(),
            session_name: role_session_name("team-a", "app"),
        }
    }

    fn subject() -> Subject<'static> {
        Subject {
            namespace: "team-a",
            name: "app",
            audience: "sts.amazonaws.com",
            issuer: "https://oidc.example.com/cluster-1",
        }
    }

    #[test]
    fn trust_policy_names_issuer_subject_and_audience() {
        let policy: serde_json::Value =
            serde_json::from_str(&trust_policy(&target(), &subject())).unwrap();
        assert_eq!(
            policy["Statement"][0]["Principal"]["Federated"],
            "arn:aws:iam::123456789012:oidc-provider/oidc.example.com/cluster-1"
        );
        assert_eq!(
            policy["Statement"][0]["Condition"]["StringEquals"],
            json!({
                "oidc.example.com/cluster-1:sub": "system:serviceaccount:team-a:app",
                "oidc.example.com/cluster-1:aud": "sts.amazonaws.com",
            })
        );
    }

    #[test]
    fn each_sts_refusal_gets_its_own_fix() {
        let sts = |message: &str| CloudError::permanent(STEP_STS, message);
        let fix = exchange_fix(
            &target(),
            &subject(),
            &sts("for x: AccessDenied: Not authorized"),
        );
        assert!(fix[0].contains("unknown role"), "{fix:?}");
        assert!(fix[1]
            .contains("\"oidc.example.com/cluster-1:sub\": \"system:serviceaccount:team-a:app\""));
        let fix = exchange_fix(
            &target(),
            &subject(),
            &sts("for x: InvalidIdentityToken: Incorrect token audience"),
        );
        assert_eq!(fix.len(), 1);
        assert!(fix[0].contains("--open-id-connect-provider-arn arn:aws:iam::123456789012:oidc-provider/oidc.example.com/cluster-1 --client-id sts.amazonaws.com"));
        let fix = exchange_fix(
            &target(),
            &subject(),
            &sts("for x: InvalidIdentityToken: No OpenIDConnect provider found in your account for https://oidc.example.com/cluster-1"),
        );
        assert!(fix[0].contains("aws iam create-open-id-connect-provider --url https://oidc.example.com/cluster-1 --client-id-list sts.amazonaws.com"));
        let fix = exchange_fix(
            &target(),
            &subject(),
            &CloudError::retryable(STEP_STS, "for x: cannot reach https://sts: refused"),
        );
        assert!(fix[0].contains("endpoint was not reached"));
    }

    #[test]
    fn ecr_refusal_asks_for_the_read_only_policy() {
        let fix = exchange_fix(
            &target(),
            &subject(),
            &CloudError::permanent(STEP_ECR, "for x: AccessDeniedException: no"),
        );
        assert!(fix[0].contains("--role-name team-a-puller --policy-arn arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"));
        assert!(fix[0].contains("\"ecr:GetAuthorizationToken\""));
    }
}
