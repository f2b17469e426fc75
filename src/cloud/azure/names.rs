//! Azure's naming rules for what the annotations name: the registry's cloud (from its host, or named
//! explicitly for other hosts), application (client) IDs and tenants. Pure; the messages say what is wrong and
//! what shape is expected.

use std::fmt;

/// The annotation that names the cloud of a registry host that is not `NAME.azurecr.*` (a private DNS name, a
/// mirror, a test host).
pub(crate) const CLOUD_ANNOTATION: &str = "imagepullsecrets.preferred.jp/azure-cloud";

const CLIENT_ID_SHAPE: &str = "a GUID such as 00000000-0000-0000-0000-000000000000";

/// An Azure cloud: its own Entra authority and registry domain, and credentials that do not cross to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AzureCloud {
    Public,
    UsGovernment,
    China,
}

impl AzureCloud {
    pub(crate) const ALL: [AzureCloud; 3] = [
        AzureCloud::Public,
        AzureCloud::UsGovernment,
        AzureCloud::China,
    ];

    /// The name Azure CLI and the SDKs use for the cloud.
    pub(crate) fn name(self) -> &'static str {
        match self {
            AzureCloud::Public => "AzureCloud",
            AzureCloud::UsGovernment => "AzureUSGovernment",
            AzureCloud::China => "AzureChinaCloud",
        }
    }

    /// The Microsoft Entra authority host that issues tokens for this cloud.
    pub(crate) fn authority_host(self) -> &'static str {
        match self {
            AzureCloud::Public => "login.microsoftonline.com",
            AzureCloud::UsGovernment => "login.microsoftonline.us",
            AzureCloud::China => "login.chinacloudapi.cn",
        }
    }

    /// The DNS suffix of the cloud's registries (`NAME.SUFFIX`).
    pub(crate) fn registry_suffix(self) -> &'static str {
        match self {
            AzureCloud::Public => "azurecr.io",
            AzureCloud::UsGovernment => "azurecr.us",
            AzureCloud::China => "azurecr.cn",
        }
    }

    /// Reads an `azure-cloud` value: the CLI's names (`AzureCloud`, `AzureUSGovernment`, `AzureChinaCloud`),
    /// the SDKs' (`AzurePublicCloud`, `AzureUSGovernmentCloud`), case-insensitively.
    pub(crate) fn parse(value: &str) -> Result<AzureCloud, String> {
        match value.to_ascii_lowercase().as_str() {
            "azurecloud" | "azurepubliccloud" | "public" => Ok(AzureCloud::Public),
            "azureusgovernment" | "azureusgovernmentcloud" | "usgovernment" => {
                Ok(AzureCloud::UsGovernment)
            }
            "azurechinacloud" | "china" => Ok(AzureCloud::China),
            _ => Err(format!(
                "annotation {CLOUD_ANNOTATION}: {value:?} is not an Azure cloud; use AzureCloud, AzureUSGovernment \
                 or AzureChinaCloud"
            )),
        }
    }
}

impl fmt::Display for AzureCloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An Azure Container Registry: the host that is the Docker key and the exchange's `service`, and its cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AcrRegistry {
    pub host: String,
    pub cloud: AzureCloud,
}

/// Reads a registry host (already checked to be a valid host by the caller) for Azure: `NAME.azurecr.io`,
/// `.azurecr.us` or `.azurecr.cn` tell their cloud; any other host needs `cloud` (the `azure-cloud`
/// annotation), and an `azurecr` host must agree with it.
pub(crate) fn parse_registry(host: &str, cloud: Option<&str>) -> Result<AcrRegistry, String> {
    let explicit = cloud.map(AzureCloud::parse).transpose()?;
    let from_host = AzureCloud::ALL.into_iter().find_map(|c| {
        host.strip_suffix(c.registry_suffix())
            .and_then(|name| name.strip_suffix('.'))
            .map(|name| (c, name))
    });
    match (from_host, explicit) {
        (Some((from_host, name)), explicit) => {
            check_registry_name(host, name)?;
            if let Some(explicit) = explicit.filter(|e| *e != from_host) {
                return Err(format!(
                    "registry host {host:?} is in {from_host}, but annotation {CLOUD_ANNOTATION} says {explicit}; \
                     credentials do not cross clouds"
                ));
            }
            Ok(AcrRegistry {
                host: host.to_string(),
                cloud: from_host,
            })
        }
        (None, Some(cloud)) => Ok(AcrRegistry {
            host: host.to_string(),
            cloud,
        }),
        (None, None) => Err(format!(
            "registry host {host:?} is not an Azure Container Registry host (expected NAME.azurecr.io, \
             NAME.azurecr.us or NAME.azurecr.cn); set the {CLOUD_ANNOTATION} annotation for other hosts"
        )),
    }
}

/// ACR's rule for registry names: 5 to 50 letters and digits (the login server is lower case).
fn check_registry_name(host: &str, name: &str) -> Result<(), String> {
    if name.contains('.') {
        return Err(format!(
            "registry host {host:?} is not a registry's login server: give NAME.azurecr.io, not a regional \
             data endpoint"
        ));
    }
    if !(5..=50).contains(&name.len())
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(format!(
            "registry host {host:?}: registry name {name:?} must be 5 to 50 lower-case letters and digits"
        ));
    }
    Ok(())
}

/// Checks an application (client) ID: Entra names applications and managed identities by GUID.
pub(crate) fn validate_client_id(value: &str) -> Result<(), String> {
    if is_guid(value) {
        Ok(())
    } else {
        Err(format!(
            "client ID {value:?} is not an application (client) ID: expected {CLIENT_ID_SHAPE} (the \
             application's or managed identity's client ID, not its name or object ID URL)"
        ))
    }
}

/// Checks a tenant: its ID (a GUID) or one of its verified domain names (`contoso.onmicrosoft.com`), both of
/// which Entra accepts in the token endpoint's path.
pub(crate) fn validate_tenant_id(value: &str) -> Result<(), String> {
    if is_guid(value) {
        return Ok(());
    }
    let domain_like = value.contains('.')
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if domain_like {
        Ok(())
    } else {
        Err(format!(
            "tenant {value:?} is neither a tenant ID ({CLIENT_ID_SHAPE}) nor a domain name such as \
             contoso.onmicrosoft.com"
        ))
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex digits of either case.
fn is_guid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_tell_their_cloud() {
        let cases = [
            ("myregistry.azurecr.io", None, AzureCloud::Public),
            ("myregistry.azurecr.us", None, AzureCloud::UsGovernment),
            ("myregistry.azurecr.cn", None, AzureCloud::China),
            (
                "myregistry.azurecr.us",
                Some("AzureUSGovernment"),
                AzureCloud::UsGovernment,
            ),
            (
                "registry.internal.example",
                Some("azurecloud"),
                AzureCloud::Public,
            ),
            (
                "mirror.example:5000",
                Some("AzureChinaCloud"),
                AzureCloud::China,
            ),
        ];
        for (host, cloud, want) in cases {
            let registry = parse_registry(host, cloud).expect(host);
            assert_eq!((registry.host.as_str(), registry.cloud), (host, want));
        }
        assert_eq!(
            AzureCloud::UsGovernment.authority_host(),
            "login.microsoftonline.us"
        );
        assert_eq!(AzureCloud::China.authority_host(), "login.chinacloudapi.cn");
    }

    #[test]
    fn bad_registry_hosts_say_what_to_fix() {
        let cases = [
            ("registry.example.com", None, "is not an Azure Container Registry host (expected NAME.azurecr.io"),
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com", None, "set the imagepullsecrets.preferred.jp/azure-cloud annotation for other hosts"),
            ("myregistry.azurecr.us", Some("AzureCloud"), "is in AzureUSGovernment, but annotation imagepullsecrets.preferred.jp/azure-cloud says AzureCloud"),
            ("abc.azurecr.io", None, "registry name \"abc\" must be 5 to 50"),
            ("my-registry.azurecr.io", None, "must be 5 to 50 lower-case letters and digits"),
            ("myregistry.westeurope.data.azurecr.io", None, "not a regional data endpoint"),
            ("mirror.example", Some("Azure"), "\"Azure\" is not an Azure cloud"),
        ];
        for (host, cloud, want) in cases {
            let err = parse_registry(host, cloud).expect_err(host);
            assert!(err.contains(want), "{host}: {err}");
        }
    }

    #[test]
    fn client_and_tenant_ids() {
        for ok in [
            "00000000-0000-0000-0000-000000000000",
            "6C1A6A52-29B1-4E6A-9D4F-0123456789AB",
        ] {
            assert_eq!(validate_client_id(ok), Ok(()));
            assert_eq!(validate_tenant_id(ok), Ok(()));
        }
        assert_eq!(validate_tenant_id("contoso.onmicrosoft.com"), Ok(()));
        for bad in [
            "",
            "my-app",
            "00000000-0000-0000-0000-00000000000",
            "00000000000000000000000000000000",
            "{00000000-0000-0000-0000-000000000000}",
            "0000000g-0000-0000-0000-000000000000",
        ] {
            let err = validate_client_id(bad).expect_err(bad);
            assert!(err.contains("is not an application (client) ID"), "{err}");
        }
        for bad in ["contoso", "-bad.example", "a..b", "tenant id.example"] {
            let err = validate_tenant_id(bad).expect_err(bad);
            assert!(err.contains("neither a tenant ID"), "{err}");
        }
    }
}
