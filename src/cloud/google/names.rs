//! Google's naming rules for what the annotations name: workload identity providers and service account
//! emails. Pure; the messages say what is wrong and what shape is expected.

/// The prefix that turns a provider's resource name into its full name, which is the STS audience.
pub(super) const IAM_NAME_PREFIX: &str = "//iam.googleapis.com/";
const PROVIDER_SHAPE: &str =
    "projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER";
const EMAIL_SHAPE: &str = "NAME@PROJECT.iam.gserviceaccount.com";

/// Checks a `googlecloud-workload-identity-provider` value and returns its resource name (`projects/...`).
///
/// Accepts the resource name and the full name with the `//iam.googleapis.com/` prefix. The rules are
/// Google's: the project by number, `locations/global`, pool and provider IDs of 4 to 32 characters from
/// `[a-z0-9-]` that do not start with the reserved `gcp-`.
pub fn parse_workload_identity_provider(value: &str) -> Result<String, String> {
    let invalid = |why: String| {
        format!("invalid workload identity provider {value:?}: {why}; expected {PROVIDER_SHAPE}")
    };
    if value.is_empty() {
        return Err(invalid("it is empty".to_string()));
    }
    if value.starts_with("https://") || value.starts_with("http://") {
        return Err(invalid(
            "it is a URL (perhaps the provider's default audience), not the provider's name"
                .to_string(),
        ));
    }
    let name = value.strip_prefix(IAM_NAME_PREFIX).unwrap_or(value);
    let segments: Vec<&str> = name.split('/').collect();
    if segments.len() == 6 && segments[4] == "workloadIdentityPools" {
        return Err(invalid(
            "it names a workload identity pool, not one of its providers".to_string(),
        ));
    }
    if segments.len() != 8 {
        return Err(invalid(format!(
            "it has {} path segments instead of 8",
            segments.len()
        )));
    }
    for (index, keyword) in [
        (0, "projects"),
        (2, "locations"),
        (4, "workloadIdentityPools"),
        (6, "providers"),
    ] {
        if segments[index] != keyword {
            return Err(invalid(format!(
                "segment {} is {:?} where {keyword:?} belongs",
                index + 1,
                segments[index]
            )));
        }
    }
    let project = segments[1];
    if project.is_empty() || project.len() > 20 || !project.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!(
            "project {project:?} is not a project number: the provider names its project by number, not by ID"
        )));
    }
    if segments[3] != "global" {
        return Err(invalid(format!(
            "location {:?} is not \"global\", the only location of workload identity pools",
            segments[3]
        )));
    }
    check_federation_id("pool", segments[5]).map_err(invalid)?;
    check_federation_id("provider", segments[7]).map_err(invalid)?;
    Ok(name.to_string())
}

/// Google's rule for workload identity pool and provider IDs.
fn check_federation_id(kind: &str, id: &str) -> Result<(), String> {
    let length = id.chars().count();
    if !(4..=32).contains(&length) {
        return Err(format!(
            "{kind} ID {id:?} is {length} characters long, but must be 4 to 32"
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{kind} ID {id:?} contains {c:?}, but may contain only lower-case letters, digits and '-'"
        ));
    }
    if id.starts_with("gcp-") {
        return Err(format!(
            "{kind} ID {id:?} starts with \"gcp-\", a prefix Google reserves"
        ));
    }
    Ok(())
}

/// Checks a `googlecloud-service-account-email` item.
///
/// Service accounts live under `gserviceaccount.com` domains (`NAME@PROJECT.iam.gserviceaccount.com`,
/// `PROJECT@appspot.gserviceaccount.com`, `NUMBER-compute@developer.gserviceaccount.com`, service agents);
/// any other address of sane shape is let through too, and Google has the last word.
pub fn validate_service_account_email(value: &str) -> Result<(), String> {
    let invalid = |why: String| {
        format!("invalid service account email {value:?}: {why}; expected {EMAIL_SHAPE}")
    };
    if value.is_empty() {
        return Err(invalid("it is empty".to_string()));
    }
    if value.contains('/') {
        return Err(invalid(
            "it contains '/': give the email alone, not a resource name or URL".to_string(),
        ));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(invalid("it contains whitespace".to_string()));
    }
    let (local, domain) = match value.split_once('@') {
        None => return Err(invalid("it has no '@'".to_string())),
        Some((_, domain)) if domain.contains('@') => {
            return Err(invalid("it has more than one '@'".to_string()))
        }
        Some(parts) => parts,
    };
    if local.is_empty() {
        return Err(invalid("the part before '@' is empty".to_string()));
    }
    if local.len() > 64 {
        return Err(invalid(
            "the part before '@' is longer than 64 characters".to_string(),
        ));
    }
    if let Some(c) = local
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')))
    {
        return Err(invalid(format!("the part before '@' contains {c:?}")));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(invalid(
            "the part before '@' has a '.' at its start, its end or next to another".to_string(),
        ));
    }
    check_domain(domain).map_err(invalid)?;
    if domain.to_ascii_lowercase().ends_with("gserviceaccount.com")
        && value.chars().any(|c| c.is_ascii_uppercase())
    {
        return Err(invalid(
            "it contains upper-case letters, but Google service account emails are lower case"
                .to_string(),
        ));
    }
    Ok(())
}

/// A DNS name of at least two labels, each 1 to 63 letters, digits or inner '-'.
fn check_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("the domain after '@' is empty".to_string());
    }
    if domain.len() > 253 {
        return Err("the domain after '@' is longer than 253 characters".to_string());
    }
    if !domain.contains('.') {
        return Err(format!("the domain {domain:?} has no '.'"));
    }
    for label in domain.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "the domain {domain:?} has a label that is empty or longer than 63 characters"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!("the domain {domain:?} contains {c:?}"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "the domain {domain:?} has a label that starts or ends with '-'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROVIDER: &str =
        "projects/123456789012/locations/global/workloadIdentityPools/cluster-pool/providers/kube-oidc";
    const EMAIL: &str = "puller@my-project.iam.gserviceaccount.com";

    #[test]
    fn parses_good_provider_names() {
        let cases = [
            (PROVIDER, PROVIDER),
            (&format!("//iam.googleapis.com/{PROVIDER}") as &str, PROVIDER),
            (
                "projects/1/locations/global/workloadIdentityPools/abcd/providers/0000",
                "projects/1/locations/global/workloadIdentityPools/abcd/providers/0000",
            ),
            (
                "projects/42/locations/global/workloadIdentityPools/a-very-long-pool-name-of-32-char/providers/p-32-characters-long-provider-x",
                "projects/42/locations/global/workloadIdentityPools/a-very-long-pool-name-of-32-char/providers/p-32-characters-long-provider-x",
            ),
            (
                "projects/7/locations/global/workloadIdentityPools/pool-/providers/-gcp",
                "projects/7/locations/global/workloadIdentityPools/pool-/providers/-gcp",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_workload_identity_provider(input).as_deref(),
                Ok(want),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_malformed_provider_names_precisely() {
        let p = "projects/123/locations/global/workloadIdentityPools";
        let cases: &[(&str, &str)] = &[
            ("", "it is empty"),
            ("projects/123/locations/global/workloadIdentityPools/pool", "names a workload identity pool, not one of its providers"),
            (&format!("{PROVIDER}/"), "9 path segments"),
            ("projects/123/locations/global", "4 path segments instead of 8"),
            ("https://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/prov", "is a URL"),
            ("//iam.googleapis.com//projects/123/locations/global/workloadIdentityPools/pool/providers/prov", "9 path segments"),
            ("project/123/locations/global/workloadIdentityPools/pool/providers/prov", "segment 1 is \"project\" where \"projects\" belongs"),
            ("projects/123/location/global/workloadIdentityPools/pool/providers/prov", "segment 3 is \"location\""),
            ("projects/123/locations/global/workloadidentitypools/pool/providers/prov", "segment 5 is \"workloadidentitypools\""),
            ("projects/123/locations/global/workloadIdentityPools/pool/provider/prov", "segment 7 is \"provider\""),
            ("projects/my-project/locations/global/workloadIdentityPools/pool/providers/prov", "project \"my-project\" is not a project number"),
            ("projects//locations/global/workloadIdentityPools/pool/providers/prov", "project \"\" is not a project number"),
            ("projects/123/locations/us-east1/workloadIdentityPools/pool/providers/prov", "location \"us-east1\" is not \"global\""),
            (&format!("{p}/abc/providers/prov"), "pool ID \"abc\" is 3 characters long, but must be 4 to 32"),
            (&format!("{p}/{}/providers/prov", "a".repeat(33)), "is 33 characters long"),
            (&format!("{p}/Pool/providers/prov"), "pool ID \"Pool\" contains 'P'"),
            (&format!("{p}/my_pool/providers/prov"), "contains '_'"),
            (&format!("{p}/gcp-pool/providers/prov"), "pool ID \"gcp-pool\" starts with \"gcp-\""),
            (&format!("{p}/pool/providers/gcp-prov"), "provider ID \"gcp-prov\" starts with \"gcp-\""),
            (&format!("{p}/pool/providers/"), "provider ID \"\" is 0 characters long"),
            (&format!("{p}/pool/providers/prov ider"), "provider ID \"prov ider\" contains ' '"),
        ];
        for (input, want) in cases {
            let err = parse_workload_identity_provider(input).expect_err(input);
            assert!(err.contains(want), "{input}: {err}");
            assert!(
                err.starts_with("invalid workload identity provider \""),
                "{err}"
            );
            assert!(
                err.ends_with(&format!("expected {PROVIDER_SHAPE}")),
                "{err}"
            );
        }
    }

    #[test]
    fn accepts_service_account_emails() {
        for email in [
            EMAIL,
            "my-project@appspot.gserviceaccount.com",
            "123456789012-compute@developer.gserviceaccount.com",
            "service-123456789012@gcp-sa-artifactregistry.iam.gserviceaccount.com",
            "robot@example.com",
            "first.last+ci@Example.org",
        ] {
            assert_eq!(validate_service_account_email(email), Ok(()), "{email}");
        }
    }

    #[test]
    fn rejects_malformed_emails_precisely() {
        let cases = [
            ("", "it is empty"),
            ("puller", "it has no '@'"),
            ("a@b@example.com", "more than one '@'"),
            (
                "@my-project.iam.gserviceaccount.com",
                "the part before '@' is empty",
            ),
            ("puller@", "the domain after '@' is empty"),
            ("puller@localhost", "the domain \"localhost\" has no '.'"),
            ("pull er@example.com", "whitespace"),
            (" puller@example.com", "whitespace"),
            (
                "projects/-/serviceAccounts/puller@p.iam.gserviceaccount.com",
                "not a resource name",
            ),
            ("pull!er@example.com", "the part before '@' contains '!'"),
            (".puller@example.com", "a '.' at its start"),
            ("pu..ller@example.com", "next to another"),
            ("puller@exa_mple.com", "contains '_'"),
            ("puller@-example.com", "starts or ends with '-'"),
            ("puller@example..com", "empty or longer than 63"),
            ("Puller@my-project.iam.gserviceaccount.com", "lower case"),
        ];
        let long_local = format!("{}@example.com", "a".repeat(65));
        let cases = cases
            .iter()
            .map(|(v, w)| (v.to_string(), *w))
            .chain([(long_local, "longer than 64 characters")]);
        for (input, want) in cases {
            let err = validate_service_account_email(&input).expect_err(&input);
            assert!(err.contains(want), "{input}: {err}");
            assert!(err.starts_with("invalid service account email \""), "{err}");
            assert!(err.ends_with(&format!("expected {EMAIL_SHAPE}")), "{err}");
        }
    }
}
