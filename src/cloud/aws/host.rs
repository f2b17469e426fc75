//! Amazon ECR registry hosts: account, region, partition, FIPS and dual-stack from the host name alone.
//!
//! The registry annotation is the only place the controller learns where a principal's images live, so the
//! STS and ECR endpoints are derived from it. What must stay true: a host is either recognised completely
//! (every form AWS publishes, in every partition) or rejected with a message that says what is wrong and how
//! to fix it; a registry mirror is accepted only with an explicit region.

use std::fmt;

/// The annotation that gives the region for registry hosts that are not ECR hosts (mirrors).
pub const REGION_ANNOTATION: &str = "imagepullsecrets.preferred.jp/aws-region";

/// An AWS partition: a set of regions with its own DNS names, IAM and credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Partition {
    Aws,
    AwsCn,
    AwsUsGov,
    AwsIso,
    AwsIsoB,
    AwsIsoE,
    AwsIsoF,
    AwsEusc,
}

impl Partition {
    pub(crate) const ALL: [Partition; 8] = [
        Partition::Aws,
        Partition::AwsCn,
        Partition::AwsUsGov,
        Partition::AwsIso,
        Partition::AwsIsoB,
        Partition::AwsIsoE,
        Partition::AwsIsoF,
        Partition::AwsEusc,
    ];

    /// The name used in ARNs (`arn:aws-cn:…`).
    pub(crate) fn id(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
            Partition::AwsIso => "aws-iso",
            Partition::AwsIsoB => "aws-iso-b",
            Partition::AwsIsoE => "aws-iso-e",
            Partition::AwsIsoF => "aws-iso-f",
            Partition::AwsEusc => "aws-eusc",
        }
    }

    pub(crate) fn from_id(id: &str) -> Option<Partition> {
        Partition::ALL.into_iter().find(|p| p.id() == id)
    }

    /// The partition a region belongs to, from the region's prefix (AWS's own partition rules).
    pub(crate) fn of_region(region: &str) -> Partition {
        // Longer prefixes first: `us-isob-` and `us-isof-` also start with `us-iso`.
        const PREFIXES: [(&str, Partition); 7] = [
            ("cn-", Partition::AwsCn),
            ("us-gov-", Partition::AwsUsGov),
            ("us-isob-", Partition::AwsIsoB),
            ("us-isof-", Partition::AwsIsoF),
            ("us-iso-", Partition::AwsIso),
            ("eu-isoe-", Partition::AwsIsoE),
            ("eusc-", Partition::AwsEusc),
        ];
        PREFIXES
            .into_iter()
            .find(|(prefix, _)| region.starts_with(prefix))
            .map_or(Partition::Aws, |(_, partition)| partition)
    }

    /// The DNS suffix of the partition's regional endpoints (`sts.REGION.SUFFIX`).
    pub(crate) fn dns_suffix(self) -> &'static str {
        match self {
            Partition::Aws | Partition::AwsUsGov => "amazonaws.com",
            Partition::AwsCn => "amazonaws.com.cn",
            Partition::AwsIso => "c2s.ic.gov",
            Partition::AwsIsoB => "sc2s.sgov.gov",
            Partition::AwsIsoE => "cloud.adc-e.uk",
            Partition::AwsIsoF => "csp.hci.ic.gov",
            Partition::AwsEusc => "amazonaws.eu",
        }
    }

    /// The DNS suffix of dual-stack (IPv4 and IPv6) API endpoints, where the partition has them.
    pub(crate) fn dual_stack_dns_suffix(self) -> Option<&'static str> {
        match self {
            Partition::Aws | Partition::AwsUsGov => Some("api.aws"),
            Partition::AwsCn => Some("api.amazonwebservices.com.cn"),
            _ => None,
        }
    }

    /// The DNS suffix of dual-stack registry hosts (`ACCOUNT.dkr-ecr.REGION.SUFFIX`).
    fn dual_stack_registry_suffix(self) -> Option<&'static str> {
        match self {
            Partition::Aws | Partition::AwsUsGov => Some("on.aws"),
            Partition::AwsCn => Some("on.amazonwebservices.com.cn"),
            _ => None,
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Where a principal's registry lives, as far as credentials are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrRegistry {
    /// The registry's AWS account; `None` for a mirror named through the region annotation.
    pub account: Option<String>,
    pub region: String,
    pub partition: Partition,
    /// The host is a FIPS endpoint (`dkr.ecr-fips`, `dkr-ecr-fips`): use FIPS endpoints for STS and ECR too.
    pub fips: bool,
    /// The host is dual-stack (`dkr-ecr.REGION.on.aws`): use dual-stack ECR API endpoints too.
    pub dual_stack: bool,
}

impl EcrRegistry {
    /// The DNS suffix of the region's regular endpoints.
    pub(crate) fn dns_suffix(&self) -> &'static str {
        self.partition.dns_suffix()
    }
}

/// Registry host DNS suffixes, and whether they are the dual-stack ones.
const REGISTRY_SUFFIXES: [(&str, bool); 9] = [
    ("amazonaws.com", false),
    ("amazonaws.com.cn", false),
    ("amazonaws.eu", false),
    ("c2s.ic.gov", false),
    ("sc2s.sgov.gov", false),
    ("cloud.adc-e.uk", false),
    ("csp.hci.ic.gov", false),
    ("on.aws", true),
    ("on.amazonwebservices.com.cn", true),
];

/// The registry service label after the account: (label, fips, dual-stack).
const SERVICE_LABELS: [(&str, bool, bool); 4] = [
    ("dkr.ecr.", false, false),
    ("dkr.ecr-fips.", true, false),
    ("dkr-ecr.", false, true),
    ("dkr-ecr-fips.", true, true),
];

/// Parses a registry host. `region_override` is the region annotation: it is required for hosts that are
/// not ECR hosts (mirrors, pull-through proxies) and must agree with the region of an ECR host.
pub fn parse_registry_host(
    host: &str,
    region_override: Option<&str>,
) -> Result<EcrRegistry, String> {
    check_host_shape(host)?;
    let Some(region) = region_override else {
        return parse_ecr_host(host);
    };
    validate_region(region).map_err(|why| format!("annotation {REGION_ANNOTATION}: {why}"))?;
    if !looks_like_ecr_host(host) {
        return parse_mirror_host(host, region);
    }
    let registry = parse_ecr_host(host)?;
    if registry.region != region {
        return Err(format!(
            "registry host \"{host}\" is in region {}, but annotation {REGION_ANNOTATION} says {region}; \
             remove the annotation or make them agree",
            registry.region
        ));
    }
    Ok(registry)
}

/// Checks that apply to every host, ECR or not: the mistakes people make when pasting an image reference.
fn check_host_shape(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("registry host is empty".to_string());
    }
    if host.chars().any(char::is_whitespace) {
        return Err(format!("registry host \"{host}\" contains whitespace"));
    }
    if let Some((scheme, _)) = host.split_once("://") {
        return Err(format!(
            "registry host \"{host}\" is a URL: remove \"{scheme}://\" and give the host name only"
        ));
    }
    if host.contains('/') {
        return Err(format!(
            "registry host \"{host}\" has a path: give the host name only, without repository or tag"
        ));
    }
    if host.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("registry host \"{host}\" must be lower case"));
    }
    if host.ends_with('.') {
        return Err(format!("registry host \"{host}\" must not end with a dot"));
    }
    Ok(())
}

fn looks_like_ecr_host(host: &str) -> bool {
    host.starts_with("dkr.ecr")
        || host.starts_with("dkr-ecr")
        || host.contains(".dkr.ecr")
        || host.contains(".dkr-ecr")
}

fn not_ecr_host(host: &str) -> String {
    format!(
        "registry host \"{host}\" is not an Amazon ECR host (expected ACCOUNT.dkr.ecr.REGION.amazonaws.com); \
         set the {REGION_ANNOTATION} annotation for registry mirrors"
    )
}

/// `ACCOUNT.dkr.ecr[-fips].REGION.SUFFIX` or `ACCOUNT.dkr-ecr[-fips].REGION.on.aws` (and the China form).
fn parse_ecr_host(host: &str) -> Result<EcrRegistry, String> {
    if host.contains(':') {
        return Err(format!(
            "registry host \"{host}\" has a port: Amazon ECR registries are served without one"
        ));
    }
    if is_ipv4_address(host) {
        return Err(format!(
            "registry host \"{host}\" is an IP address, not an Amazon ECR host; \
             set the {REGION_ANNOTATION} annotation for registry mirrors"
        ));
    }
    if host.starts_with("dkr.ecr") || host.starts_with("dkr-ecr") {
        return Err(format!(
            "registry host \"{host}\" has no account ID (expected ACCOUNT.{host})"
        ));
    }
    let (account, rest) = host.split_once('.').ok_or_else(|| not_ecr_host(host))?;
    let (fips, dual_stack, after) = SERVICE_LABELS
        .into_iter()
        .find_map(|(label, fips, dual)| rest.strip_prefix(label).map(|after| (fips, dual, after)))
        .ok_or_else(|| not_ecr_host(host))?;
    let (region, suffix) = after.split_once('.').ok_or_else(|| not_ecr_host(host))?;

    if !(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!(
            "registry host \"{host}\": account ID \"{account}\" must be 12 digits"
        ));
    }
    validate_region(region).map_err(|why| format!("registry host \"{host}\": {why}"))?;
    let partition = Partition::of_region(region);
    check_suffix(host, region, partition, suffix, dual_stack)?;
    Ok(EcrRegistry {
        account: Some(account.to_string()),
        region: region.to_string(),
        partition,
        fips,
        dual_stack,
    })
}

/// The DNS suffix must exist, match the host's dual-stack form, and belong to the region's partition.
fn check_suffix(
    host: &str,
    region: &str,
    partition: Partition,
    suffix: &str,
    dual_stack: bool,
) -> Result<(), String> {
    let Some((_, suffix_is_dual_stack)) = REGISTRY_SUFFIXES.iter().find(|(s, _)| *s == suffix)
    else {
        let known: Vec<&str> = REGISTRY_SUFFIXES.iter().map(|(s, _)| *s).collect();
        return Err(format!(
            "registry host \"{host}\": unknown domain \"{suffix}\" (expected one of {})",
            known.join(", ")
        ));
    };
    if dual_stack && !suffix_is_dual_stack {
        return Err(format!(
            "registry host \"{host}\": dual-stack registries (dkr-ecr) end in on.aws, not {suffix}"
        ));
    }
    if !dual_stack && *suffix_is_dual_stack {
        return Err(format!(
            "registry host \"{host}\": hosts under {suffix} are dual-stack and start with ACCOUNT.dkr-ecr"
        ));
    }
    let expected = if dual_stack {
        partition.dual_stack_registry_suffix().ok_or_else(|| {
            format!(
                "registry host \"{host}\": partition {partition} has no dual-stack registries; \
                 use ACCOUNT.dkr.ecr.{region}.{}",
                partition.dns_suffix()
            )
        })?
    } else {
        partition.dns_suffix()
    };
    if suffix != expected {
        return Err(format!(
            "registry host \"{host}\": region {region} is in partition {partition}, \
             whose registries end in {expected}, not {suffix}"
        ));
    }
    Ok(())
}

/// A non-ECR host (`mirror.example.com`, `10.0.0.5:5000`) used with an explicit region.
fn parse_mirror_host(host: &str, region: &str) -> Result<EcrRegistry, String> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) => {
            let valid_port = !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok_and(|p| p != 0);
            if !valid_port {
                return Err(format!(
                    "registry host \"{host}\": \"{port}\" is not a port number"
                ));
            }
            name
        }
        None => host,
    };
    if !is_ipv4_address(name) && !is_dns_name(name) {
        return Err(format!(
            "registry host \"{host}\" is not a valid host name (letters, digits, dots and dashes)"
        ));
    }
    Ok(EcrRegistry {
        account: None,
        region: region.to_string(),
        partition: Partition::of_region(region),
        fips: false,
        dual_stack: false,
    })
}

fn is_ipv4_address(host: &str) -> bool {
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() == 4 && parts.iter().all(|p| p.parse::<u8>().is_ok())
}

fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Checks that `region` has the shape of an AWS region name: `us-east-1`, `us-gov-west-1`, `eusc-de-east-1`.
pub(crate) fn validate_region(region: &str) -> Result<(), String> {
    let parts: Vec<&str> = region.split('-').collect();
    let well_formed = region.len() <= 32
        && parts.len() >= 3
        && parts[0].len() >= 2
        && parts[0].len() <= 4
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
        && parts[1..parts.len() - 1].iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "\"{region}\" is not an AWS region name (like us-east-1, lower case)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(
        account: Option<&str>,
        region: &str,
        partition: Partition,
        fips: bool,
        dual_stack: bool,
    ) -> EcrRegistry {
        EcrRegistry {
            account: account.map(str::to_string),
            region: region.to_string(),
            partition,
            fips,
            dual_stack,
        }
    }

    #[test]
    fn recognises_every_ecr_host_form() {
        let a = Some("123456789012");
        let cases = [
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                registry(a, "us-east-1", Partition::Aws, false, false),
            ),
            (
                "123456789012.dkr.ecr-fips.us-east-2.amazonaws.com",
                registry(a, "us-east-2", Partition::Aws, true, false),
            ),
            (
                "123456789012.dkr-ecr.eu-west-1.on.aws",
                registry(a, "eu-west-1", Partition::Aws, false, true),
            ),
            (
                "123456789012.dkr-ecr-fips.us-west-2.on.aws",
                registry(a, "us-west-2", Partition::Aws, true, true),
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                registry(a, "cn-north-1", Partition::AwsCn, false, false),
            ),
            (
                "123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn",
                registry(a, "cn-northwest-1", Partition::AwsCn, false, true),
            ),
            (
                "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com",
                registry(a, "us-gov-west-1", Partition::AwsUsGov, false, false),
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-east-1.amazonaws.com",
                registry(a, "us-gov-east-1", Partition::AwsUsGov, true, false),
            ),
            (
                "123456789012.dkr-ecr-fips.us-gov-west-1.on.aws",
                registry(a, "us-gov-west-1", Partition::AwsUsGov, true, true),
            ),
            (
                "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov",
                registry(a, "us-iso-east-1", Partition::AwsIso, false, false),
            ),
            (
                "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov",
                registry(a, "us-isob-east-1", Partition::AwsIsoB, false, false),
            ),
            (
                "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk",
                registry(a, "eu-isoe-west-1", Partition::AwsIsoE, false, false),
            ),
            (
                "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov",
                registry(a, "us-isof-south-1", Partition::AwsIsoF, false, false),
            ),
            (
                "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu",
                registry(a, "eusc-de-east-1", Partition::AwsEusc, false, false),
            ),
            (
                "123456789012.dkr.ecr.il-central-1.amazonaws.com",
                registry(a, "il-central-1", Partition::Aws, false, false),
            ),
        ];
        for (host, expected) in cases {
            assert_eq!(parse_registry_host(host, None), Ok(expected), "{host}");
        }
    }

    #[test]
    fn rejects_garbage_with_a_precise_message() {
        let cases = [
            ("", "registry host is empty"),
            ("10.0.0.1", "is an IP address"),
            ("dkr.ecr.us-east-1.amazonaws.com", "has no account ID"),
            ("12345678901.dkr.ecr.us-east-1.amazonaws.com", "account ID \"12345678901\" must be 12 digits"),
            ("1234567890123.dkr.ecr.us-east-1.amazonaws.com", "must be 12 digits"),
            ("abcdefghijkl.dkr.ecr.us-east-1.amazonaws.com", "must be 12 digits"),
            ("123456789012.dkr.ecr.us-east-1.amazonaws.org", "unknown domain \"amazonaws.org\""),
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com.", "must not end with a dot"),
            ("123456789012.DKR.ECR.US-EAST-1.AMAZONAWS.COM", "must be lower case"),
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com:443", "has a port"),
            ("https://123456789012.dkr.ecr.us-east-1.amazonaws.com", "is a URL: remove \"https://\""),
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:tag", "has a path"),
            ("123456789012.dkr.ecr.useast1.amazonaws.com", "\"useast1\" is not an AWS region name"),
            ("123456789012.dkr.ecr.cn-north-1.amazonaws.com", "region cn-north-1 is in partition aws-cn, whose registries end in amazonaws.com.cn"),
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com.cn", "region us-east-1 is in partition aws, whose registries end in amazonaws.com"),
            ("123456789012.dkr.ecr.us-east-1.on.aws", "start with ACCOUNT.dkr-ecr"),
            ("123456789012.dkr-ecr.us-east-1.amazonaws.com", "dual-stack registries (dkr-ecr) end in on.aws"),
            ("123456789012.dkr-ecr.us-iso-east-1.on.aws", "partition aws-iso has no dual-stack registries"),
            ("registry.example.com", "is not an Amazon ECR host (expected ACCOUNT.dkr.ecr.REGION.amazonaws.com); set the imagepullsecrets.preferred.jp/aws-region annotation"),
            ("ghcr.io", "is not an Amazon ECR host"),
            ("localhost", "is not an Amazon ECR host"),
            ("123456789012.dkr.ecr", "is not an Amazon ECR host"),
            ("public.ecr.aws", "is not an Amazon ECR host"),
            ("my registry", "contains whitespace"),
        ];
        for (host, expected) in cases {
            let error = parse_registry_host(host, None).expect_err(host);
            assert!(error.contains(expected), "{host}: {error}");
        }
    }

    #[test]
    fn region_annotation_admits_mirrors_and_must_agree_with_ecr_hosts() {
        let mirror = |region: &str, partition| registry(None, region, partition, false, false);
        let accepted = [
            (
                "registry.example.com",
                "us-west-2",
                mirror("us-west-2", Partition::Aws),
            ),
            (
                "mirror.internal:5000",
                "cn-north-1",
                mirror("cn-north-1", Partition::AwsCn),
            ),
            (
                "10.0.0.5:5000",
                "us-gov-west-1",
                mirror("us-gov-west-1", Partition::AwsUsGov),
            ),
            (
                "mirror",
                "us-iso-east-1",
                mirror("us-iso-east-1", Partition::AwsIso),
            ),
            (
                "mirror.example",
                "us-isob-east-1",
                mirror("us-isob-east-1", Partition::AwsIsoB),
            ),
            (
                "mirror.example",
                "eu-isoe-west-1",
                mirror("eu-isoe-west-1", Partition::AwsIsoE),
            ),
            (
                "mirror.example",
                "us-isof-east-1",
                mirror("us-isof-east-1", Partition::AwsIsoF),
            ),
            (
                "mirror.example",
                "eusc-de-east-1",
                mirror("eusc-de-east-1", Partition::AwsEusc),
            ),
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                "eu-west-1",
                registry(
                    Some("123456789012"),
                    "eu-west-1",
                    Partition::Aws,
                    false,
                    false,
                ),
            ),
        ];
        for (host, region, expected) in accepted {
            assert_eq!(
                parse_registry_host(host, Some(region)),
                Ok(expected),
                "{host}"
            );
        }

        let rejected = [
            ("registry.example.com", "US-WEST-2", "annotation imagepullsecrets.preferred.jp/aws-region: \"US-WEST-2\" is not an AWS region name"),
            ("registry.example.com", "", "is not an AWS region name"),
            ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "us-east-1", "is in region eu-west-1, but annotation imagepullsecrets.preferred.jp/aws-region says us-east-1"),
            ("12345.dkr.ecr.eu-west-1.amazonaws.com", "eu-west-1", "must be 12 digits"),
            ("mirror.example:http", "us-east-1", "\"http\" is not a port number"),
            ("mirror.example:0", "us-east-1", "\"0\" is not a port number"),
            ("mirror_example", "us-east-1", "is not a valid host name"),
            ("https://mirror.example", "us-east-1", "is a URL"),
            ("Mirror.example", "us-east-1", "must be lower case"),
            ("mirror.example.", "us-east-1", "must not end with a dot"),
        ];
        for (host, region, expected) in rejected {
            let error = parse_registry_host(host, Some(region)).expect_err(host);
            assert!(error.contains(expected), "{host} / {region}: {error}");
        }
    }

    #[test]
    fn region_names() {
        for good in [
            "us-east-1",
            "ap-southeast-7",
            "us-gov-west-1",
            "us-isob-east-1",
            "eusc-de-east-1",
            "mx-central-1",
        ] {
            assert_eq!(validate_region(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "us",
            "us-east",
            "us-east-x",
            "US-EAST-1",
            "us--1",
            "-us-east-1",
            "us-east-1-",
            "u-east-1",
            "us-east-123",
            "us_east_1",
        ] {
            assert!(validate_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn partition_of_region_and_suffixes() {
        let cases = [
            (
                "us-east-1",
                Partition::Aws,
                "amazonaws.com",
                Some("api.aws"),
            ),
            (
                "cn-north-1",
                Partition::AwsCn,
                "amazonaws.com.cn",
                Some("api.amazonwebservices.com.cn"),
            ),
            (
                "us-gov-east-1",
                Partition::AwsUsGov,
                "amazonaws.com",
                Some("api.aws"),
            ),
            ("us-iso-west-1", Partition::AwsIso, "c2s.ic.gov", None),
            ("us-isob-east-1", Partition::AwsIsoB, "sc2s.sgov.gov", None),
            ("eu-isoe-west-1", Partition::AwsIsoE, "cloud.adc-e.uk", None),
            (
                "us-isof-south-1",
                Partition::AwsIsoF,
                "csp.hci.ic.gov",
                None,
            ),
            ("eusc-de-east-1", Partition::AwsEusc, "amazonaws.eu", None),
        ];
        for (region, partition, suffix, dual) in cases {
            assert_eq!(Partition::of_region(region), partition, "{region}");
            assert_eq!(partition.dns_suffix(), suffix);
            assert_eq!(partition.dual_stack_dns_suffix(), dual);
            assert_eq!(Partition::from_id(partition.id()), Some(partition));
        }
        assert_eq!(Partition::from_id("aws-mars"), None);
    }
}
