//! Fixes for Azure: the federated identity credential on the Entra application (issuer, subject, audience of
//! this ServiceAccount) and the AcrPull role assignment on the registry, as `az` commands.

use super::{provider_words, unreachable_fix, Subject};
use crate::cloud::azure::{AzureTarget, STEP_ACR, STEP_ENTRA};
use crate::cloud::CloudError;

/// The registry's name: its first DNS label (`NAME.azurecr.io`).
fn registry_name(target: &AzureTarget) -> &str {
    target
        .registry
        .host
        .split('.')
        .next()
        .unwrap_or(&target.registry.host)
}

fn federate_fix(target: &AzureTarget, subject: &Subject) -> String {
    format!(
        "add a federated identity credential to application {client} with issuer {iss}, subject {sub} and audience \
         {aud}: az ad app federated-credential create --id {client} --parameters \
         '{{\"name\":\"{ns}-{name}\",\"issuer\":\"{iss}\",\"subject\":\"{sub}\",\"audiences\":[\"{aud}\"]}}' \
         (for a managed identity: az identity federated-credential create --identity-name NAME --resource-group RG \
         --name {ns}-{name} --issuer {iss} --subject {sub} --audiences {aud})",
        client = target.client_id,
        iss = subject.issuer,
        sub = subject.subject(),
        aud = subject.audience,
        ns = subject.namespace,
        name = subject.name,
    )
}

fn role_fix(target: &AzureTarget) -> String {
    format!(
        "assign AcrPull on registry {host} to application {client}: az role assignment create --assignee {client} \
         --role AcrPull --scope $(az acr show --name {name} --query id --output tsv)",
        host = target.registry.host,
        client = target.client_id,
        name = registry_name(target)
    )
}

pub(crate) fn exchange_fix(
    target: &AzureTarget,
    subject: &Subject,
    error: &CloudError,
) -> Vec<String> {
    if let Some(fix) = unreachable_fix(error) {
        return vec![fix];
    }
    let message = provider_words(error);
    match error.step {
        STEP_ENTRA if message.contains("AADSTS700016") => vec![format!(
            "application {} is not in tenant {}: check the client ID and tenant annotations (az ad app show --id {})",
            target.client_id, target.tenant_id, target.client_id
        )],
        STEP_ENTRA if message.contains("AADSTS90002") => vec![format!(
            "tenant {} is not known to the authority of {}: check the tenant annotation and the registry's cloud",
            target.tenant_id, target.registry.cloud
        )],
        STEP_ENTRA if message.contains("AADSTS700024") || message.contains("AADSTS700027") => vec![format!(
            "Entra could not validate the token: {}/.well-known/openid-configuration and its jwks_uri must be \
             reachable from the internet, and the clocks of the node and the API server must be right",
            subject.issuer.trim_end_matches('/')
        )],
        STEP_ENTRA => vec![federate_fix(target, subject)],
        STEP_ACR => vec![role_fix(target)],
        _ => vec![federate_fix(target, subject), role_fix(target)],
    }
}

pub(crate) fn pull_refused_fix(target: &AzureTarget, registry: &str) -> String {
    format!(
        "{registry} did not accept the refresh token of application {}: check that the registry annotation names the \
         registry's login server and that the registry belongs to tenant {}",
        target.client_id, target.tenant_id
    )
}

pub(crate) fn pull_denied_fix(target: &AzureTarget, repository: &str) -> String {
    format!(
        "{} (repository {repository}; a repository-scoped token or a custom role may deny it)",
        role_fix(target)
    )
}

pub(crate) fn trusted_as(target: &AzureTarget, subject: &Subject) -> String {
    format!(
        "application {} in tenant {} federates {} from {} for audience {}",
        target.client_id,
        target.tenant_id,
        subject.subject(),
        subject.issuer,
        subject.audience
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::azure::parse_registry;

    #[test]
    fn fixes_name_this_service_accounts_values() {
        let target = AzureTarget {
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            registry: parse_registry("myregistry.azurecr.io", None).unwrap(),
        };
        let subject = Subject {
            namespace: "team-a",
            name: "app",
            audience: "api://AzureADTokenExchange",
            issuer: "https://issuer.example",
        };
        let unmatched = CloudError::permanent(
            STEP_ENTRA,
            "application x in tenant y: HTTP 400 invalid_request: AADSTS70021: No matching federated identity record",
        );
        let fix = exchange_fix(&target, &subject, &unmatched);
        assert!(
            fix[0].contains("--id 11111111-2222-3333-4444-555555555555 --parameters '{\"name\":\"team-a-app\",\"issuer\":\"https://issuer.example\",\"subject\":\"system:serviceaccount:team-a:app\",\"audiences\":[\"api://AzureADTokenExchange\"]}'"),
            "{fix:?}"
        );
        let refused = CloudError::permanent(
            STEP_ACR,
            "registry myregistry.azurecr.io: HTTP 401 UNAUTHORIZED",
        );
        assert_eq!(
            exchange_fix(&target, &subject, &refused),
            vec!["assign AcrPull on registry myregistry.azurecr.io to application 11111111-2222-3333-4444-555555555555: \
                  az role assignment create --assignee 11111111-2222-3333-4444-555555555555 --role AcrPull --scope \
                  $(az acr show --name myregistry --query id --output tsv)"
                .to_string()]
        );
    }
}
