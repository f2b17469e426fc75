//! IAM role ARNs and STS role session names: validated before any call, so a typo gets a precise message
//! instead of an opaque STS error.

use sha2::{Digest, Sha256};

use super::host::{EcrRegistry, Partition};

/// AWS's limit on role session names.
const MAX_SESSION_NAME: usize = 64;
/// AWS's limit on role names.
const MAX_ROLE_NAME: usize = 64;
/// AWS's limit on IAM paths.
const MAX_PATH: usize = 512;

/// Checks that `arn` names an IAM role: `arn:PARTITION:iam::ACCOUNT_ID:role/[PATH/]NAME`.
pub fn validate_role_arn(arn: &str) -> Result<(), String> {
    role_arn_partition(arn).map(|_| ())
}

/// The partition of a valid role ARN.
pub(crate) fn role_arn_partition(arn: &str) -> Result<Partition, String> {
    if arn.is_empty() {
        return Err("role ARN is empty".to_string());
    }
    if arn.chars().any(char::is_whitespace) {
        return Err(format!("role ARN \"{arn}\" contains whitespace"));
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return Err(malformed(arn));
    };
    if prefix != "arn" {
        return Err(malformed(arn));
    }
    let partition = Partition::from_id(partition).ok_or_else(|| {
        let known: Vec<&str> = Partition::ALL.iter().map(|p| p.id()).collect();
        format!(
            "role ARN \"{arn}\": unknown partition \"{partition}\" (expected one of {})",
            known.join(", ")
        )
    })?;
    if service == "sts" && resource.starts_with("assumed-role/") {
        return Err(format!(
            "role ARN \"{arn}\" is an STS session, not a role; use arn:{partition}:iam::{account}:role/NAME"
        ));
    }
    if service != "iam" {
        return Err(format!(
            "role ARN \"{arn}\": service is \"{service}\", expected iam"
        ));
    }
    if !region.is_empty() {
        return Err(format!(
            "role ARN \"{arn}\": IAM ARNs have no region, found \"{region}\""
        ));
    }
    if !(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!(
            "role ARN \"{arn}\": account ID \"{account}\" must be 12 digits"
        ));
    }
    let Some(path_and_name) = resource.strip_prefix("role/") else {
        return Err(format!(
            "role ARN \"{arn}\": \"{resource}\" is not a role (expected role/NAME)"
        ));
    };
    validate_path_and_name(arn, path_and_name)?;
    Ok(partition)
}

fn malformed(arn: &str) -> String {
    format!("role ARN \"{arn}\" is malformed (expected arn:aws:iam::ACCOUNT_ID:role/NAME)")
}

fn validate_path_and_name(arn: &str, path_and_name: &str) -> Result<(), String> {
    let (path, name) = path_and_name
        .rsplit_once('/')
        .unwrap_or(("", path_and_name));
    if name.is_empty() {
        return Err(format!("role ARN \"{arn}\": role name is empty"));
    }
    if name.len() > MAX_ROLE_NAME {
        return Err(format!(
            "role ARN \"{arn}\": role name is {} characters long, IAM allows {MAX_ROLE_NAME}",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| !is_iam_name_char(*c)) {
        return Err(format!(
            "role ARN \"{arn}\": role name \"{name}\" contains {c:?}; IAM allows letters, digits and +=,.@_-"
        ));
    }
    if path.len() + 2 > MAX_PATH {
        return Err(format!(
            "role ARN \"{arn}\": role path is longer than {MAX_PATH} characters"
        ));
    }
    if !path.is_empty() && path.split('/').any(str::is_empty) {
        return Err(format!(
            "role ARN \"{arn}\": role path has an empty segment (\"//\")"
        ));
    }
    if let Some(c) = path.chars().find(|c| !('!'..='~').contains(c)) {
        return Err(format!("role ARN \"{arn}\": role path contains {c:?}"));
    }
    Ok(())
}

/// Characters IAM allows in role names and STS in session names: `[\w+=,.@-]`.
fn is_iam_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-')
}

/// Checks that the role and the registry are in the same partition: credentials never cross partitions.
pub fn check_role_partition(arn: &str, registry: &EcrRegistry) -> Result<(), String> {
    let partition = role_arn_partition(arn)?;
    if partition != registry.partition {
        return Err(format!(
            "role ARN \"{arn}\" is in partition {partition}, but the registry is in {} ({}); \
             credentials do not cross partitions",
            registry.partition, registry.region
        ));
    }
    Ok(())
}

/// The STS role session name for a ServiceAccount, `NAMESPACE.NAME`, so CloudTrail shows who asked.
///
/// Characters STS does not allow become `-`. Names longer than STS's 64 characters keep their first 55
/// characters and end in `-` and 8 hex digits of a hash of the full name, so that two long names that
/// share a prefix still get different, stable session names.
pub fn role_session_name(namespace: &str, service_account: &str) -> String {
    let full = format!("{namespace}.{service_account}");
    let mut name: String = full
        .chars()
        .map(|c| if is_iam_name_char(c) { c } else { '-' })
        .collect();
    if name.len() > MAX_SESSION_NAME {
        let digest = Sha256::digest(full.as_bytes());
        let suffix: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        // Every character is ASCII after the mapping above, so byte slicing is at a character boundary.
        name.truncate(MAX_SESSION_NAME - 1 - suffix.len());
        name.push('-');
        name.push_str(&suffix);
    }
    // STS requires at least two characters.
    while name.len() < 2 {
        name.push('-');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_role_arns() {
        let cases = [
            ("arn:aws:iam::123456789012:role/pull", Partition::Aws),
            (
                "arn:aws:iam::123456789012:role/path/to/pull",
                Partition::Aws,
            ),
            (
                "arn:aws:iam::123456789012:role/service-role/a+b=c,d.e@f_g-h",
                Partition::Aws,
            ),
            ("arn:aws-cn:iam::123456789012:role/pull", Partition::AwsCn),
            (
                "arn:aws-us-gov:iam::123456789012:role/pull",
                Partition::AwsUsGov,
            ),
            ("arn:aws-iso:iam::123456789012:role/pull", Partition::AwsIso),
            (
                "arn:aws-iso-b:iam::123456789012:role/pull",
                Partition::AwsIsoB,
            ),
            (
                "arn:aws-iso-e:iam::123456789012:role/pull",
                Partition::AwsIsoE,
            ),
            (
                "arn:aws-iso-f:iam::123456789012:role/pull",
                Partition::AwsIsoF,
            ),
            (
                "arn:aws-eusc:iam::123456789012:role/pull",
                Partition::AwsEusc,
            ),
            (
                &*format!("arn:aws:iam::123456789012:role/{}", "r".repeat(64)),
                Partition::Aws,
            ),
        ];
        for (arn, partition) in cases {
            assert_eq!(validate_role_arn(arn), Ok(()), "{arn}");
            assert_eq!(role_arn_partition(arn), Ok(partition), "{arn}");
        }
    }

    #[test]
    fn invalid_role_arns() {
        let long_name = format!("arn:aws:iam::123456789012:role/{}", "r".repeat(65));
        let long_path = format!("arn:aws:iam::123456789012:role/{}/pull", "p".repeat(511));
        let cases = [
            ("", "role ARN is empty"),
            (
                " arn:aws:iam::123456789012:role/pull",
                "contains whitespace",
            ),
            (
                "pull",
                "is malformed (expected arn:aws:iam::ACCOUNT_ID:role/NAME)",
            ),
            ("arn:aws:iam::123456789012", "is malformed"),
            ("urn:aws:iam::123456789012:role/pull", "is malformed"),
            (
                "arn:awz:iam::123456789012:role/pull",
                "unknown partition \"awz\" (expected one of aws, aws-cn,",
            ),
            (
                "arn:aws:sts::123456789012:assumed-role/pull/session",
                "is an STS session, not a role; use arn:aws:iam::123456789012:role/NAME",
            ),
            (
                "arn:aws:s3::123456789012:role/pull",
                "service is \"s3\", expected iam",
            ),
            (
                "arn:aws:iam:us-east-1:123456789012:role/pull",
                "IAM ARNs have no region, found \"us-east-1\"",
            ),
            (
                "arn:aws:iam::12345678901:role/pull",
                "account ID \"12345678901\" must be 12 digits",
            ),
            ("arn:aws:iam::1234567890ab:role/pull", "must be 12 digits"),
            (
                "arn:aws:iam::123456789012:user/pull",
                "\"user/pull\" is not a role (expected role/NAME)",
            ),
            ("arn:aws:iam::123456789012:role/", "role name is empty"),
            ("arn:aws:iam::123456789012:role/path/", "role name is empty"),
            (
                "arn:aws:iam::123456789012:role/pu*ll",
                "role name \"pu*ll\" contains '*'",
            ),
            ("arn:aws:iam::123456789012:role/a:b", "contains ':'"),
            (&long_name, "role name is 65 characters long, IAM allows 64"),
            (
                "arn:aws:iam::123456789012:role/a//pull",
                "role path has an empty segment",
            ),
            (
                "arn:aws:iam::123456789012:role/pä/pull",
                "role path contains 'ä'",
            ),
            (&long_path, "role path is longer than 512 characters"),
        ];
        for (arn, expected) in cases {
            let error = validate_role_arn(arn).expect_err(arn);
            assert!(error.contains(expected), "{arn}: {error}");
        }
    }

    #[test]
    fn role_and_registry_partitions_must_match() {
        let registry = super::super::host::parse_registry_host(
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
            None,
        )
        .unwrap();
        assert_eq!(
            check_role_partition("arn:aws-cn:iam::123456789012:role/pull", &registry),
            Ok(())
        );
        let error =
            check_role_partition("arn:aws:iam::123456789012:role/pull", &registry).unwrap_err();
        assert!(
            error.contains("is in partition aws, but the registry is in aws-cn (cn-north-1)"),
            "{error}"
        );
    }

    #[test]
    fn session_names() {
        let long_ns = "n".repeat(63);
        let long_sa = "s".repeat(100);
        let cases: [(&str, &str, &str); 5] = [
            ("default", "puller", "default.puller"),
            ("team-a", "sa.with.dots", "team-a.sa.with.dots"),
            ("ns", "na me/ä", "ns.na-me--"),
            ("", "", ".-"),
            ("kube-system", "x", "kube-system.x"),
        ];
        for (namespace, name, expected) in cases {
            assert_eq!(role_session_name(namespace, name), expected);
        }

        let cut = role_session_name(&long_ns, &long_sa);
        assert_eq!(cut.len(), 64, "{cut}");
        assert!(cut.starts_with(&"n".repeat(55)), "{cut}");
        assert_eq!(cut, role_session_name(&long_ns, &long_sa), "deterministic");
        let other = role_session_name(&long_ns, &format!("{long_sa}2"));
        assert_ne!(cut, other, "long names sharing a prefix stay distinct");
        assert!(cut.chars().all(is_iam_name_char));

        let exactly_64 = format!("{}.{}", "n".repeat(31), "s".repeat(32));
        assert_eq!(
            role_session_name(&"n".repeat(31), &"s".repeat(32)),
            exactly_64
        );
    }
}
