//! Every name this controller shares with the cluster: annotation keys, the label, event reasons, the field
//! manager. They are the compatibility contract with the original Go controller, so they live in one place.

/// The common prefix of every key.
pub(crate) const PREFIX: &str = "imagepullsecrets.preferred.jp/";

// ServiceAccount annotations (SPEC A1).
pub(crate) const REGISTRY: &str = "imagepullsecrets.preferred.jp/registry";
pub(crate) const AUDIENCE: &str = "imagepullsecrets.preferred.jp/audience";
pub(crate) const AWS_ROLE_ARN: &str = "imagepullsecrets.preferred.jp/aws-role-arn";
/// This project's addition: the region of a registry host that is not an ECR host (a mirror).
pub(crate) const AWS_REGION: &str = crate::cloud::aws::REGION_ANNOTATION;
pub(crate) const GOOGLE_WORKLOAD_IDENTITY_PROVIDER: &str =
    "imagepullsecrets.preferred.jp/googlecloud-workload-identity-provider";
pub(crate) const GOOGLE_SERVICE_ACCOUNT_EMAIL: &str =
    "imagepullsecrets.preferred.jp/googlecloud-service-account-email";
pub(crate) const SECRET_NAME: &str = "imagepullsecrets.preferred.jp/secret-name";
/// This project's addition: application (client) IDs of Microsoft Entra applications or managed identities.
pub(crate) const AZURE_CLIENT_ID: &str = "imagepullsecrets.preferred.jp/azure-client-id";
/// This project's addition: the Entra tenant of the applications.
pub(crate) const AZURE_TENANT_ID: &str = "imagepullsecrets.preferred.jp/azure-tenant-id";
/// This project's addition: the Azure cloud of a registry host that is not `NAME.azurecr.*`.
pub(crate) const AZURE_CLOUD: &str = crate::cloud::azure::CLOUD_ANNOTATION;
/// Azure Workload Identity's own annotations, read when ours are absent, so that a ServiceAccount already set
/// up for it needs only `registry` and `audience`. Alone they do not configure a ServiceAccount.
pub(crate) const AZURE_WORKLOAD_IDENTITY_CLIENT_ID: &str = "azure.workload.identity/client-id";
pub(crate) const AZURE_WORKLOAD_IDENTITY_TENANT_ID: &str = "azure.workload.identity/tenant-id";

/// Whether the configuration is read from this annotation: ours, and the ecosystem's that stand in for ours.
/// Whatever keeps a ServiceAccount's annotations for a later reconcile must keep exactly these.
pub(crate) fn is_read_by_configuration(key: &str) -> bool {
    key.starts_with(PREFIX)
        || key == AZURE_WORKLOAD_IDENTITY_CLIENT_ID
        || key == AZURE_WORKLOAD_IDENTITY_TENANT_ID
}

/// The annotations whose presence means someone meant to configure the ServiceAccount.
pub(crate) const CONFIGURATION_KEYS: [&str; 8] = [
    REGISTRY,
    AUDIENCE,
    AWS_ROLE_ARN,
    GOOGLE_WORKLOAD_IDENTITY_PROVIDER,
    GOOGLE_SERVICE_ACCOUNT_EMAIL,
    AZURE_CLIENT_ID,
    AZURE_TENANT_ID,
    SECRET_NAME,
];

// Secret metadata (SPEC A2).
/// Label on every provisioned secret: the ServiceAccount's name (shortened when longer than a label allows).
pub(crate) const SERVICE_ACCOUNT_LABEL: &str = "imagepullsecrets.preferred.jp/service-account";
pub(crate) const PRINCIPAL: &str = "imagepullsecrets.preferred.jp/principal";
pub(crate) const EXPIRES_AT: &str = "imagepullsecrets.preferred.jp/expires-at";
/// This project's addition: when the credential was obtained, so that "a quarter of its lifetime" is known.
pub(crate) const OBTAINED_AT: &str = "imagepullsecrets.preferred.jp/obtained-at";
/// This project's addition: SHA-256 (hex) of the `.dockerconfigjson` as written, so that an edit is noticed
/// and the untouched part of the content can be told from the edited one. A hash, never the credential.
pub(crate) const CONTENT_DIGEST: &str = "imagepullsecrets.preferred.jp/content-sha256";

pub(crate) const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
pub(crate) const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";

// Event reasons (SPEC A4).
pub(crate) const REASON_PROVISIONED: &str = "ProvisionedImagePullSecret";
pub(crate) const REASON_FAILED_PROVISIONING: &str = "FailedProvisioningImagePullSecret";
pub const REASON_DECOMMISSIONED: &str = "DecommissionedImagePullSecret";
pub(crate) const REASON_FAILED_DECOMMISSIONING: &str = "FailedDecommissioningImagePullSecret";
pub(crate) const REASON_EVICTED: &str = "EvictedForImagePullSecret";
pub(crate) const REASON_FAILED_EVICTION: &str = "FailedEvictionForImagePullSecret";

/// `reportingController` of events and the name this controller gives itself.
pub const CONTROLLER_NAME: &str = "imagepullsecrets.preferred.jp/image-pull-secrets-provisioner";
/// The field manager of every write, as server-side field ownership shows it.
pub const FIELD_MANAGER: &str = "image-pull-secrets-provisioner";
/// The original controller's Lease name, so that the old and the new never act at once during a swap.
pub(crate) const DEFAULT_LEADER_ELECTION_ID: &str = "b1b11bb0.preferred.jp";
