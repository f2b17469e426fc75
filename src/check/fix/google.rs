//! Fixes for Google: the workload identity provider (its issuer and allowed audiences) and the
//! `roles/iam.workloadIdentityUser` grant to this ServiceAccount's `principal://` member, as `gcloud` commands.

use super::{provider_words, unreachable_fix, Subject};
use crate::cloud::google::GoogleTarget;
use crate::cloud::CloudError;

const STEP_STS: &str = "sts token exchange";
const STEP_IAM: &str = "iamcredentials generateAccessToken";

/// The parts of `projects/N/locations/global/workloadIdentityPools/P/providers/X`.
struct ProviderName<'a> {
    project_number: &'a str,
    pool: &'a str,
    provider: &'a str,
}

fn provider_name(provider: &str) -> ProviderName<'_> {
    let parts: Vec<&str> = provider.split('/').collect();
    let get = |i: usize| parts.get(i).copied().unwrap_or("");
    ProviderName {
        project_number: get(1),
        pool: get(5),
        provider: get(7),
    }
}

/// The IAM member Google derives from the token's subject (with `google.subject = assertion.sub`).
pub(crate) fn member(target: &GoogleTarget, subject: &Subject) -> String {
    let name = provider_name(&target.provider);
    format!(
        "principal://iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/{}/subject/{}",
        name.project_number,
        name.pool,
        subject.subject()
    )
}

fn grant_fix(target: &GoogleTarget, subject: &Subject) -> String {
    format!(
        "grant roles/iam.workloadIdentityUser on {email} to {member}: \
         gcloud iam service-accounts add-iam-policy-binding {email} --role=roles/iam.workloadIdentityUser --member={member}",
        email = target.service_account_email,
        member = member(target, subject)
    )
}

pub(crate) fn exchange_fix(
    target: &GoogleTarget,
    subject: &Subject,
    error: &CloudError,
) -> Vec<String> {
    if let Some(fix) = unreachable_fix(error) {
        return vec![fix];
    }
    let name = provider_name(&target.provider);
    let flags = format!(
        "--project={} --location=global --workload-identity-pool={}",
        name.project_number, name.pool
    );
    let message = provider_words(error);
    let default_audience = format!("//iam.googleapis.com/{}", target.provider);
    match error.step {
        STEP_STS if message.contains("invalid_target") || message.contains("NOT_FOUND") => vec![format!(
            "workload identity provider {} does not exist or is disabled: check the annotation, or create it: \
             gcloud iam workload-identity-pools providers create-oidc {} {flags} --issuer-uri={} \
             --allowed-audiences={} --attribute-mapping=google.subject=assertion.sub",
            target.provider, name.provider, subject.issuer, subject.audience
        )],
        STEP_STS if message.contains("JWKS") || message.contains("key ID") => vec![format!(
            "Google could not verify the token with the issuer's keys: {}/.well-known/openid-configuration and its jwks_uri \
             must be reachable from the internet, or upload the JWKS: \
             gcloud iam workload-identity-pools providers update-oidc {} {flags} --jwk-json-path=jwks.json \
             (kubectl get --raw /openid/v1/jwks > jwks.json)",
            subject.issuer.trim_end_matches('/'),
            name.provider
        )],
        STEP_STS if message.contains("issuer") => vec![format!(
            "provider {} must have issuer-uri {}: gcloud iam workload-identity-pools providers update-oidc {} {flags} --issuer-uri={}",
            target.provider, subject.issuer, name.provider, subject.issuer
        )],
        STEP_STS if message.contains("audience") => vec![format!(
            "the token's audience {aud} is not among provider {}'s allowed audiences: \
             gcloud iam workload-identity-pools providers update-oidc {} {flags} --allowed-audiences={aud} \
             (or set the audience annotation to the provider's default audience, {default_audience}, when it has no allowed audiences)",
            target.provider,
            name.provider,
            aud = subject.audience
        )],
        STEP_STS => vec![format!(
            "provider {} must trust issuer {} for audience {} with google.subject = assertion.sub",
            target.provider, subject.issuer, subject.audience
        )],
        STEP_IAM if message.contains("404") || message.contains("NOT_FOUND") => vec![format!(
            "service account {} does not exist: check the annotation, or create it and give it roles/artifactregistry.reader",
            target.service_account_email
        )],
        STEP_IAM => vec![grant_fix(target, subject)],
        _ => vec![grant_fix(target, subject)],
    }
}

pub(crate) fn pull_refused_fix(target: &GoogleTarget, registry: &str) -> String {
    format!(
        "{registry} did not accept the access token of {}: check that the registry annotation names the Artifact Registry \
         host of the image, and that the token was obtained for the right project",
        target.service_account_email
    )
}

pub(crate) fn pull_denied_fix(target: &GoogleTarget, repository: &str) -> String {
    format!(
        "grant roles/artifactregistry.reader on repository {repository} to serviceAccount:{}",
        target.service_account_email
    )
}

pub(crate) fn trusted_as(target: &GoogleTarget, subject: &Subject) -> String {
    format!(
        "{} may impersonate {} through {}",
        member(target, subject),
        target.service_account_email,
        target.provider
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> GoogleTarget {
        GoogleTarget {
            provider:
                "projects/123456/locations/global/workloadIdentityPools/pool-1/providers/kube"
                    .to_string(),
            service_account_email: "puller@p.iam.gserviceaccount.com".to_string(),
        }
    }

    fn subject() -> Subject<'static> {
        Subject {
            namespace: "team-a",
            name: "app",
            audience: "my-aud",
            issuer: "https://oidc.example.com",
        }
    }

    #[test]
    fn member_follows_googles_principal_format() {
        assert_eq!(
            member(&target(), &subject()),
            "principal://iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/pool-1/subject/system:serviceaccount:team-a:app"
        );
    }

    #[test]
    fn each_refusal_gets_its_own_fix() {
        let sts = |m: &str| CloudError::permanent(STEP_STS, m);
        let cases = [
            (sts("HTTP 400 invalid_target: The target service indicated by the \"audience\" parameters is invalid"), "does not exist or is disabled"),
            (sts("HTTP 400 invalid_grant: The audience in ID Token [x] does not match the expected audience."), "--allowed-audiences=my-aud"),
            (sts("HTTP 400 invalid_grant: Failed to fetch the JWKS of issuer [https://oidc.example.com]"), "--jwk-json-path"),
            (sts("HTTP 400 invalid_grant: The issuer in ID Token [a] does not match the expected ones: [b]."), "--issuer-uri=https://oidc.example.com"),
            (CloudError::permanent(STEP_IAM, "HTTP 403 PERMISSION_DENIED: Permission 'iam.serviceAccounts.getAccessToken' denied"),
             "add-iam-policy-binding puller@p.iam.gserviceaccount.com --role=roles/iam.workloadIdentityUser --member=principal://iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/pool-1/subject/system:serviceaccount:team-a:app"),
            (CloudError::permanent(STEP_IAM, "HTTP 404 NOT_FOUND: gone"), "does not exist"),
        ];
        for (error, want) in cases {
            let fix = exchange_fix(&target(), &subject(), &error);
            assert!(fix[0].contains(want), "{error}: {fix:?}");
        }
    }
}
