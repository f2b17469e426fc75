//! STS and ECR endpoint URLs for a registry, and the parts of a URL that the signature covers.
//!
//! Defaults follow the registry: its region, its partition's DNS suffix, FIPS when the registry host is FIPS,
//! dual-stack ECR API endpoints when it is dual-stack. Overrides (VPC endpoints, proxies, test servers such as
//! moto at `http://127.0.0.1:PORT`) replace the default and may contain `{region}`.

use super::host::{EcrRegistry, Partition};

/// Placeholder in endpoint overrides, replaced by the registry's region.
pub(crate) const REGION_PLACEHOLDER: &str = "{region}";

/// The STS endpoint for `registry`: the override with `{region}` filled in, or the regional default.
pub(crate) fn sts_endpoint_url(override_template: Option<&str>, registry: &EcrRegistry) -> String {
    if let Some(template) = override_template {
        return fill_region(template, &registry.region);
    }
    let region = &registry.region;
    let suffix = registry.partition.dns_suffix();
    // GovCloud's regular STS endpoints are its FIPS endpoints; it has no sts-fips host names.
    if registry.fips && registry.partition != Partition::AwsUsGov {
        format!("https://sts-fips.{region}.{suffix}")
    } else {
        format!("https://sts.{region}.{suffix}")
    }
}

/// The ECR API endpoint for `registry`: the override with `{region}` filled in, or the regional default.
pub(crate) fn ecr_endpoint_url(override_template: Option<&str>, registry: &EcrRegistry) -> String {
    if let Some(template) = override_template {
        return fill_region(template, &registry.region);
    }
    let region = &registry.region;
    let dual_stack_suffix = registry
        .partition
        .dual_stack_dns_suffix()
        .filter(|_| registry.dual_stack);
    match (dual_stack_suffix, registry.fips) {
        (Some(suffix), true) => format!("https://ecr-fips.{region}.{suffix}"),
        (Some(suffix), false) => format!("https://ecr.{region}.{suffix}"),
        (None, true) => format!("https://ecr-fips.{region}.{}", registry.dns_suffix()),
        (None, false) => format!("https://api.ecr.{region}.{}", registry.dns_suffix()),
    }
}

fn fill_region(template: &str, region: &str) -> String {
    template.replace(REGION_PLACEHOLDER, region)
}

/// Checks an endpoint override at startup, so a bad flag fails fast instead of at the first exchange.
pub fn validate_endpoint_override(template: &str) -> Result<(), String> {
    Endpoint::parse(&fill_region(template, "us-east-1")).map(|_| ())
}

/// A parsed endpoint URL: what to POST to, and what to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// The URL as given, used for the request.
    pub url: String,
    /// The `Host` header the HTTP client will send: host, plus `:port` when not the scheme's default.
    pub host: String,
    /// The request path, `/` when the URL has none.
    pub path: String,
}

impl Endpoint {
    pub(crate) fn parse(url: &str) -> Result<Endpoint, String> {
        let (rest, default_port) = if let Some(rest) = url.strip_prefix("https://") {
            (rest, 443)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (rest, 80)
        } else {
            return Err(format!(
                "endpoint \"{url}\" must start with https:// (or http:// for a local test server)"
            ));
        };
        if rest.contains(['?', '#']) {
            return Err(format!(
                "endpoint \"{url}\" must not have a query or fragment"
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(format!(
                "endpoint \"{url}\" must not contain user information"
            ));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("endpoint \"{url}\" has no valid host[:port]"))?;
        let host = match port {
            Some(port) if port != default_port => format!("{host}:{port}"),
            _ => host.to_string(),
        };
        Ok(Endpoint {
            url: url.to_string(),
            host,
            path: path.to_string(),
        })
    }
}

/// Splits `host[:port]` (or `[v6]:port`); `None` when the host is empty or the port is not a number.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || (host.contains(':') && !host.starts_with('[')) {
        return None;
    }
    let port = match port {
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            Some(port.parse::<u16>().ok()?)
        }
        Some(_) => return None,
        None => None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::super::host::parse_registry_host;
    use super::*;

    #[test]
    fn default_endpoints_follow_the_registry() {
        let cases = [
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                "https://sts.us-east-1.amazonaws.com",
                "https://api.ecr.us-east-1.amazonaws.com",
            ),
            (
                "123456789012.dkr.ecr-fips.us-east-2.amazonaws.com",
                "https://sts-fips.us-east-2.amazonaws.com",
                "https://ecr-fips.us-east-2.amazonaws.com",
            ),
            (
                "123456789012.dkr-ecr.eu-west-1.on.aws",
                "https://sts.eu-west-1.amazonaws.com",
                "https://ecr.eu-west-1.api.aws",
            ),
            (
                "123456789012.dkr-ecr-fips.us-west-2.on.aws",
                "https://sts-fips.us-west-2.amazonaws.com",
                "https://ecr-fips.us-west-2.api.aws",
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "https://sts.cn-north-1.amazonaws.com.cn",
                "https://api.ecr.cn-north-1.amazonaws.com.cn",
            ),
            (
                "123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn",
                "https://sts.cn-northwest-1.amazonaws.com.cn",
                "https://ecr.cn-northwest-1.api.amazonwebservices.com.cn",
            ),
            (
                "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com",
                "https://sts.us-gov-west-1.amazonaws.com",
                "https://api.ecr.us-gov-west-1.amazonaws.com",
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                "https://sts.us-gov-west-1.amazonaws.com",
                "https://ecr-fips.us-gov-west-1.amazonaws.com",
            ),
            (
                "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov",
                "https://sts.us-iso-east-1.c2s.ic.gov",
                "https://api.ecr.us-iso-east-1.c2s.ic.gov",
            ),
            (
                "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov",
                "https://sts.us-isob-east-1.sc2s.sgov.gov",
                "https://api.ecr.us-isob-east-1.sc2s.sgov.gov",
            ),
            (
                "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk",
                "https://sts.eu-isoe-west-1.cloud.adc-e.uk",
                "https://api.ecr.eu-isoe-west-1.cloud.adc-e.uk",
            ),
            (
                "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov",
                "https://sts.us-isof-south-1.csp.hci.ic.gov",
                "https://api.ecr.us-isof-south-1.csp.hci.ic.gov",
            ),
            (
                "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu",
                "https://sts.eusc-de-east-1.amazonaws.eu",
                "https://api.ecr.eusc-de-east-1.amazonaws.eu",
            ),
        ];
        for (host, sts, ecr) in cases {
            let registry = parse_registry_host(host, None).unwrap();
            assert_eq!(sts_endpoint_url(None, &registry), sts, "{host}");
            assert_eq!(ecr_endpoint_url(None, &registry), ecr, "{host}");
        }
    }

    #[test]
    fn overrides_replace_defaults_and_fill_in_the_region() {
        let registry = parse_registry_host("mirror.example:5000", Some("ap-northeast-1")).unwrap();
        assert_eq!(
            sts_endpoint_url(Some("https://sts.{region}.vpce.example"), &registry),
            "https://sts.ap-northeast-1.vpce.example"
        );
        assert_eq!(
            ecr_endpoint_url(Some("http://127.0.0.1:5000"), &registry),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            ecr_endpoint_url(Some("https://{region}.{region}.example/ecr"), &registry),
            "https://ap-northeast-1.ap-northeast-1.example/ecr"
        );
        assert_eq!(
            sts_endpoint_url(None, &registry),
            "https://sts.ap-northeast-1.amazonaws.com"
        );
    }

    #[test]
    fn endpoint_parsing_gives_the_signed_host_and_path() {
        let cases = [
            (
                "https://api.ecr.us-east-1.amazonaws.com",
                "api.ecr.us-east-1.amazonaws.com",
                "/",
            ),
            (
                "https://api.ecr.us-east-1.amazonaws.com/",
                "api.ecr.us-east-1.amazonaws.com",
                "/",
            ),
            (
                "https://api.ecr.us-east-1.amazonaws.com:443/",
                "api.ecr.us-east-1.amazonaws.com",
                "/",
            ),
            (
                "https://vpce.example:8443/ecr/",
                "vpce.example:8443",
                "/ecr/",
            ),
            ("http://127.0.0.1:5000", "127.0.0.1:5000", "/"),
            ("http://127.0.0.1:80", "127.0.0.1", "/"),
            ("http://[::1]:5000/", "[::1]:5000", "/"),
            ("http://[::1]", "[::1]", "/"),
        ];
        for (url, host, path) in cases {
            let endpoint = Endpoint::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(endpoint.host, host, "{url}");
            assert_eq!(endpoint.path, path, "{url}");
            assert_eq!(endpoint.url, url);
        }
    }

    #[test]
    fn bad_endpoints_are_rejected() {
        let cases = [
            (
                "api.ecr.us-east-1.amazonaws.com",
                "must start with https://",
            ),
            ("ftp://example", "must start with https://"),
            ("https://", "has no valid host[:port]"),
            ("https://example:port", "has no valid host[:port]"),
            ("https://example:70000", "has no valid host[:port]"),
            ("https://example:", "has no valid host[:port]"),
            (
                "https://user:pw@example",
                "must not contain user information",
            ),
            ("https://example/?x=1", "must not have a query or fragment"),
            ("http://[::1", "has no valid host[:port]"),
            ("http://[::1]x", "has no valid host[:port]"),
        ];
        for (url, expected) in cases {
            let error = Endpoint::parse(url).expect_err(url);
            assert!(error.contains(expected), "{url}: {error}");
        }
        assert_eq!(
            validate_endpoint_override("http://127.0.0.1:{region}"),
            Err("endpoint \"http://127.0.0.1:us-east-1\" has no valid host[:port]".to_string())
        );
        assert_eq!(
            validate_endpoint_override("https://sts.{region}.amazonaws.com"),
            Ok(())
        );
    }
}
