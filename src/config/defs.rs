//! Every flag, defined once: its name, the placeholder of its value, its default, its help, and the parser
//! that turns its text into the typed value of its field of [`super::Config`], each with its test beside it.
//!
//! What must stay true: a flag's default is text parsed by the same parser as a value given on the command
//! line (so `--help` shows the default that applies); a parser's error says why the value is wrong, and
//! [`Def::take`] puts `flag --NAME: ` in front of it; an optional flag given empty is the same as not given.
//! [`FLAGS`] lists every flag in the order `--help` shows them. Checks across flags (a renew deadline
//! shorter than the lease, the `--zap-*` flags against our own) are [`super::parse`]'s.

use std::path::PathBuf;
use std::time::Duration;

use super::parse_duration;
use crate::annotations::DEFAULT_LEADER_ELECTION_ID;
use crate::cloud::aws;
use crate::logger::LogFormat;

/// What `--help` says about one flag.
pub(crate) struct Flag {
    /// With its leading dashes, as typed.
    pub name: &'static str,
    /// The placeholder of its value; `None` for a boolean.
    pub value: Option<&'static str>,
    /// The value when the flag is not given, as it would be typed (`false` for a boolean).
    pub default: &'static str,
    pub help: &'static str,
}

/// One flag and the parser of its value into a `T`.
pub(crate) struct Def<T> {
    pub flag: Flag,
    pub parse: fn(&str) -> Result<T, String>,
}

impl<T> Def<T> {
    /// Takes this flag out of `args` and parses its value, or its default when it is not given.
    pub(crate) fn take(&self, args: &mut pico_args::Arguments) -> Result<T, String> {
        self.take_noting(args).map(|(value, _)| value)
    }

    /// As [`Def::take`], and whether the flag was given.
    pub(crate) fn take_noting(&self, args: &mut pico_args::Arguments) -> Result<(T, bool), String> {
        let name = self.flag.name;
        let given: Option<String> = match self.flag.value {
            Some(_) => args
                .opt_value_from_str(name)
                .map_err(|e| format!("flag {name}: {e}"))?,
            None => args.contains(name).then(|| "true".to_string()),
        };
        let text = given.as_deref().unwrap_or(self.flag.default);
        let value = (self.parse)(text).map_err(|e| format!("flag {name}: {e}"))?;
        Ok((value, given.is_some()))
    }
}

/// Every flag, in the order `--help` lists them.
pub(crate) const FLAGS: &[&Flag] = &[
    &KUBECONFIG.flag,
    &NAMESPACE.flag,
    &WORKERS.flag,
    &METRICS_BIND_ADDRESS.flag,
    &HEALTH_PROBE_BIND_ADDRESS.flag,
    &LEADER_ELECT.flag,
    &LEADER_ELECTION_NAMESPACE.flag,
    &LEADER_ELECTION_ID.flag,
    &LEADER_ELECTION_LEASE_DURATION.flag,
    &LEADER_ELECTION_RENEW_DEADLINE.flag,
    &LEADER_ELECTION_RETRY_PERIOD.flag,
    &DISABLE_POD_EVICTION.flag,
    &AWS_STS_ENDPOINT.flag,
    &AWS_ECR_ENDPOINT.flag,
    &AWS_SESSION_DURATION.flag,
    &GOOGLE_STS_ENDPOINT.flag,
    &GOOGLE_IAMCREDENTIALS_ENDPOINT.flag,
    &GOOGLE_TOKEN_LIFETIME.flag,
    &AZURE_AUTHORITY_HOST.flag,
    &AZURE_ACR_ENDPOINT.flag,
    &AZURE_REGISTRY_SUFFIXES.flag,
    &PROVIDER_CA_BUNDLE.flag,
    &PROVIDER_TIMEOUT.flag,
    &PROVIDER_RATE.flag,
    &PROVIDER_BURST.flag,
    &SERVICE_ACCOUNT_TOKEN_EXPIRATION.flag,
    &MIN_REFRESH_INTERVAL.flag,
    // Limits that keep one ServiceAccount from crowding out the others.
    &MAX_PRINCIPALS_PER_SERVICE_ACCOUNT.flag,
    &LOG_LEVEL.flag,
    &LOG_FORMAT.flag,
    &ZAP_LOG_LEVEL.flag,
    &ZAP_ENCODER.flag,
    &ZAP_DEVEL.flag,
    &ZAP_STACKTRACE_LEVEL.flag,
    &ZAP_TIME_ENCODING.flag,
    &HELP.flag,
    &VERSION.flag,
];

// The parsers several flags share.

fn text(value: &str) -> Result<String, String> {
    Ok(value.to_string())
}

/// Empty is not given.
fn optional(value: &str) -> Result<Option<String>, String> {
    Ok(Some(value.to_string()).filter(|v| !v.is_empty()))
}

fn optional_path(value: &str) -> Result<Option<PathBuf>, String> {
    optional(value).map(|v| v.map(PathBuf::from))
}

/// A boolean's text is `true` when it is given (`--flag`, `--flag=true`), its default otherwise.
fn boolean(value: &str) -> Result<bool, String> {
    Ok(value == "true")
}

fn duration(value: &str) -> Result<Duration, String> {
    parse_duration(value)
}

pub(crate) const KUBECONFIG: Def<Option<PathBuf>> = Def {
    flag: Flag {
        name: "--kubeconfig",
        value: Some("PATH"),
        default: "",
        help: "kubeconfig to use outside a cluster (else KUBECONFIG, else the in-cluster \
               ServiceAccount, else ~/.kube/config)",
    },
    parse: optional_path,
};

pub(crate) const NAMESPACE: Def<Option<String>> = Def {
    flag: Flag {
        name: "--namespace",
        value: Some("NAME"),
        default: "",
        help: "only watch ServiceAccounts, secrets and pods in this namespace (default: all \
               namespaces)",
    },
    parse: optional,
};

pub(crate) const WORKERS: Def<usize> = Def {
    flag: Flag {
        name: "--workers",
        value: Some("N"),
        default: "8",
        help: "ServiceAccounts reconciled in parallel",
    },
    parse: |value| {
        let workers: usize = value
            .parse()
            .map_err(|_| format!("{value:?} is not a number"))?;
        if !(1..=64).contains(&workers) {
            return Err("must be between 1 and 64".to_string());
        }
        Ok(workers)
    },
};

#[cfg(test)]
#[test]
fn workers_are_one_to_sixty_four() {
    assert_eq!((WORKERS.parse)("8"), Ok(8));
    assert_eq!((WORKERS.parse)("64"), Ok(64));
    assert_eq!(
        (WORKERS.parse)("65"),
        Err("must be between 1 and 64".to_string())
    );
    assert_eq!(
        (WORKERS.parse)("0"),
        Err("must be between 1 and 64".to_string())
    );
    assert_eq!(
        (WORKERS.parse)("-1"),
        Err("\"-1\" is not a number".to_string())
    );
}

pub(crate) const METRICS_BIND_ADDRESS: Def<String> = Def {
    flag: Flag {
        name: "--metrics-bind-address",
        value: Some("ADDR"),
        default: ":8080",
        help: "address of the Prometheus /metrics endpoint; 0 disables it",
    },
    parse: text,
};

pub(crate) const HEALTH_PROBE_BIND_ADDRESS: Def<String> = Def {
    flag: Flag {
        name: "--health-probe-bind-address",
        value: Some("ADDR"),
        default: ":8081",
        help: "address of /healthz and /readyz; 0 disables them",
    },
    parse: text,
};

pub(crate) const LEADER_ELECT: Def<bool> = Def {
    flag: Flag {
        name: "--leader-elect",
        value: None,
        default: "false",
        help: "elect a leader through a Lease so that only one replica acts",
    },
    parse: boolean,
};

pub(crate) const LEADER_ELECTION_NAMESPACE: Def<Option<String>> = Def {
    flag: Flag {
        name: "--leader-election-namespace",
        value: Some("NAME"),
        default: "",
        help: "namespace of the Lease (default: the pod's own, or the kubeconfig context's)",
    },
    parse: optional,
};

pub(crate) const LEADER_ELECTION_ID: Def<String> = Def {
    flag: Flag {
        name: "--leader-election-id",
        value: Some("NAME"),
        default: DEFAULT_LEADER_ELECTION_ID,
        help: "name of the Lease; the default is the original controller's, so the two never act \
               at once",
    },
    parse: text,
};

pub(crate) const LEADER_ELECTION_LEASE_DURATION: Def<Duration> = Def {
    flag: Flag {
        name: "--leader-election-lease-duration",
        value: Some("DURATION"),
        default: "15s",
        help: "how long a standby waits after the last renewal before taking over",
    },
    parse: duration,
};

pub(crate) const LEADER_ELECTION_RENEW_DEADLINE: Def<Duration> = Def {
    flag: Flag {
        name: "--leader-election-renew-deadline",
        value: Some("DURATION"),
        default: "10s",
        help: "how long the leader keeps trying to renew before giving up leadership",
    },
    parse: duration,
};

pub(crate) const LEADER_ELECTION_RETRY_PERIOD: Def<Duration> = Def {
    flag: Flag {
        name: "--leader-election-retry-period",
        value: Some("DURATION"),
        default: "2s",
        help: "how often candidates try to acquire and the leader renews",
    },
    parse: duration,
};

pub(crate) const DISABLE_POD_EVICTION: Def<bool> = Def {
    flag: Flag {
        name: "--disable-pod-eviction",
        value: None,
        default: "false",
        help: "never evict pods stuck pulling images for lack of a secret",
    },
    parse: boolean,
};

/// An STS or ECR endpoint override, checked as the AWS client will use it.
fn aws_endpoint(value: &str) -> Result<Option<String>, String> {
    let url = optional(value)?;
    if let Some(url) = &url {
        aws::validate_endpoint_override(url)?;
    }
    Ok(url)
}

pub(crate) const AWS_STS_ENDPOINT: Def<Option<String>> = Def {
    flag: Flag {
        name: "--aws-sts-endpoint",
        value: Some("URL"),
        default: "",
        help:
            "STS endpoint instead of the registry region's; {region} is replaced (VPC endpoints, \
               tests)",
    },
    parse: aws_endpoint,
};

pub(crate) const AWS_ECR_ENDPOINT: Def<Option<String>> = Def {
    flag: Flag {
        name: "--aws-ecr-endpoint",
        value: Some("URL"),
        default: "",
        help: "ECR API endpoint instead of the registry region's; {region} is replaced",
    },
    parse: aws_endpoint,
};

#[cfg(test)]
#[test]
fn aws_endpoints_are_checked_and_empty_is_none() {
    assert_eq!((AWS_STS_ENDPOINT.parse)(""), Ok(None));
    assert_eq!(
        (AWS_ECR_ENDPOINT.parse)("https://ecr.{region}.example"),
        Ok(Some("https://ecr.{region}.example".to_string()))
    );
    assert!((AWS_STS_ENDPOINT.parse)("ftp://x").is_err());
}

/// The STS session length in seconds, within AWS's limits.
pub(crate) const AWS_SESSION_DURATION: Def<u32> = Def {
    flag: Flag {
        name: "--aws-session-duration",
        value: Some("DURATION"),
        default: "15m",
        help: "STS session length (900 s to 12 h); each session signs one ECR call",
    },
    parse: |value| {
        let session = parse_duration(value)?;
        if !(900..=43200).contains(&session.as_secs()) {
            return Err("must be between 15m and 12h (AWS's limits)".to_string());
        }
        Ok(session.as_secs() as u32)
    },
};

#[cfg(test)]
#[test]
fn aws_sessions_last_15m_to_12h() {
    assert_eq!((AWS_SESSION_DURATION.parse)("15m"), Ok(900));
    assert_eq!((AWS_SESSION_DURATION.parse)("12h"), Ok(43200));
    for bad in ["14m59s", "12h1s"] {
        assert_eq!(
            (AWS_SESSION_DURATION.parse)(bad),
            Err("must be between 15m and 12h (AWS's limits)".to_string())
        );
    }
}

/// A Google API's base URL: plain `http://` too, for test servers.
fn google_endpoint(url: &str) -> Result<String, String> {
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 10 {
        return Err(format!("{url:?} is not an http(s) URL"));
    }
    Ok(url.to_string())
}

pub(crate) const GOOGLE_STS_ENDPOINT: Def<String> = Def {
    flag: Flag {
        name: "--google-sts-endpoint",
        value: Some("URL"),
        default: "https://sts.googleapis.com",
        help: "Google Security Token Service (Private Service Connect, restricted VIP, tests)",
    },
    parse: google_endpoint,
};

pub(crate) const GOOGLE_IAMCREDENTIALS_ENDPOINT: Def<String> = Def {
    flag: Flag {
        name: "--google-iamcredentials-endpoint",
        value: Some("URL"),
        default: "https://iamcredentials.googleapis.com",
        help: "Google IAM Service Account Credentials API",
    },
    parse: google_endpoint,
};

#[cfg(test)]
#[test]
fn google_endpoints_are_http_urls() {
    assert_eq!(
        (GOOGLE_STS_ENDPOINT.parse)("http://127.0.0.1:1"),
        Ok("http://127.0.0.1:1".to_string())
    );
    for bad in ["", "https://", "sts.googleapis.com"] {
        assert_eq!(
            (GOOGLE_IAMCREDENTIALS_ENDPOINT.parse)(bad),
            Err(format!("{bad:?} is not an http(s) URL"))
        );
    }
}

pub(crate) const GOOGLE_TOKEN_LIFETIME: Def<Option<Duration>> = Def {
    flag: Flag {
        name: "--google-token-lifetime",
        value: Some("DURATION"),
        default: "",
        help: "lifetime asked of Google access tokens (default: Google's, one hour)",
    },
    parse: |value| optional(value)?.map(|v| parse_duration(&v)).transpose(),
};

/// An Azure override: https only.
fn azure_endpoint(value: &str) -> Result<Option<String>, String> {
    let url = optional(value)?;
    if let Some(url) = &url {
        if !url.starts_with("https://") || url.len() <= "https://".len() {
            return Err(format!("{url:?} is not an https URL"));
        }
    }
    Ok(url)
}

pub(crate) const AZURE_AUTHORITY_HOST: Def<Option<String>> = Def {
    flag: Flag {
        name: "--azure-authority-host",
        value: Some("URL"),
        default: "",
        help: "Microsoft Entra authority instead of the registry's cloud's \
               (login.microsoftonline.com, .us, login.chinacloudapi.cn)",
    },
    parse: azure_endpoint,
};

pub(crate) const AZURE_ACR_ENDPOINT: Def<Option<String>> = Def {
    flag: Flag {
        name: "--azure-acr-endpoint",
        value: Some("URL"),
        default: "",
        help: "base URL of ACR's token exchange instead of https://REGISTRY; {registry} is \
               replaced (private endpoints, tests)",
    },
    parse: azure_endpoint,
};

pub(crate) const AZURE_REGISTRY_SUFFIXES: Def<Vec<String>> = Def {
    flag: Flag {
        name: "--azure-registry-suffixes",
        value: Some("LIST"),
        default: "",
        help: "comma-separated hosts or DNS suffixes Azure principals may name besides NAME.azurecr.io, .us \
               and .cn (private DNS names, mirrors; each with the azure-cloud annotation); any other host \
               is refused before a request is made",
    },
    parse: registry_suffixes,
};

/// A list of registry hosts or DNS suffixes (`registry.internal`, `mirror.example.com:5000`).
fn registry_suffixes(value: &str) -> Result<Vec<String>, String> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|item| {
            let item = item.trim().trim_start_matches('.').to_ascii_lowercase();
            let bad = item.is_empty()
                || item.contains("://")
                || item.contains('/')
                || item.chars().any(char::is_whitespace);
            if bad {
                Err(format!(
                    "{item:?} is not a host or DNS suffix (such as registry.internal)"
                ))
            } else {
                Ok(item)
            }
        })
        .collect()
}

#[cfg(test)]
#[test]
fn azure_registry_suffixes_are_hosts_or_dns_suffixes() {
    assert_eq!((AZURE_REGISTRY_SUFFIXES.parse)(""), Ok(vec![]));
    assert_eq!(
        (AZURE_REGISTRY_SUFFIXES.parse)(" .Registry.Internal, mirror.example.com:5000"),
        Ok(vec![
            "registry.internal".to_string(),
            "mirror.example.com:5000".to_string()
        ])
    );
    for bad in [
        "https://registry.internal",
        "a,,b",
        "registry.internal/path",
    ] {
        assert!(
            (AZURE_REGISTRY_SUFFIXES.parse)(bad)
                .unwrap_err()
                .contains("is not a host or DNS suffix"),
            "{bad}"
        );
    }
}

#[cfg(test)]
#[test]
fn azure_endpoints_are_https_urls() {
    assert_eq!((AZURE_ACR_ENDPOINT.parse)(""), Ok(None));
    assert_eq!(
        (AZURE_AUTHORITY_HOST.parse)("https://login.example.internal"),
        Ok(Some("https://login.example.internal".to_string()))
    );
    for bad in ["https://", "http://10.0.0.4"] {
        assert_eq!(
            (AZURE_ACR_ENDPOINT.parse)(bad),
            Err(format!("{bad:?} is not an https URL"))
        );
    }
}

/// Read at once, so that a bundle that is missing or holds no certificate stops the start.
pub(crate) const PROVIDER_CA_BUNDLE: Def<Option<PathBuf>> = Def {
    flag: Flag {
        name: "--provider-ca-bundle",
        value: Some("PATH"),
        default: "",
        help: "PEM file of extra CAs trusted for provider endpoints (TLS-inspecting proxies, \
               private endpoints)",
    },
    parse: |value| {
        let path = optional_path(value)?;
        if let Some(path) = &path {
            crate::transport::certificates_from_file(path)?;
        }
        Ok(path)
    },
};

#[cfg(test)]
#[test]
fn a_ca_bundle_is_read_at_once() {
    assert_eq!((PROVIDER_CA_BUNDLE.parse)(""), Ok(None));
    assert!((PROVIDER_CA_BUNDLE.parse)("/nonexistent.pem").is_err());
}

pub(crate) const PROVIDER_TIMEOUT: Def<Duration> = Def {
    flag: Flag {
        name: "--provider-timeout",
        value: Some("DURATION"),
        default: "30s",
        help: "timeout of each provider call",
    },
    parse: duration,
};

pub(crate) const PROVIDER_RATE: Def<f64> = Def {
    flag: Flag {
        name: "--provider-rate",
        value: Some("N"),
        default: "300",
        help:
            "provider requests per second, all providers together (a backlog drains at this pace)",
    },
    parse: |value| {
        value
            .parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r > 0.0)
            .ok_or_else(|| format!("{value:?} is not a positive number of requests per second"))
    },
};

#[cfg(test)]
#[test]
fn the_provider_rate_is_positive_and_finite() {
    assert_eq!((PROVIDER_RATE.parse)("2.5"), Ok(2.5));
    for bad in ["0", "-1", "NaN", "inf", "fast"] {
        assert_eq!(
            (PROVIDER_RATE.parse)(bad),
            Err(format!(
                "{bad:?} is not a positive number of requests per second"
            ))
        );
    }
}

pub(crate) const PROVIDER_BURST: Def<u32> = Def {
    flag: Flag {
        name: "--provider-burst",
        value: Some("N"),
        default: "100",
        help: "provider requests that may go at once after a quiet period",
    },
    parse: |value| {
        value
            .parse::<u32>()
            .ok()
            .filter(|b| *b > 0)
            .ok_or_else(|| format!("{value:?} is not a positive whole number"))
    },
};

#[cfg(test)]
#[test]
fn the_provider_burst_is_a_positive_whole_number() {
    assert_eq!((PROVIDER_BURST.parse)("7"), Ok(7));
    for bad in ["0", "-1", "1.5"] {
        assert_eq!(
            (PROVIDER_BURST.parse)(bad),
            Err(format!("{bad:?} is not a positive whole number"))
        );
    }
}

pub(crate) const SERVICE_ACCOUNT_TOKEN_EXPIRATION: Def<Duration> = Def {
    flag: Flag {
        name: "--service-account-token-expiration",
        value: Some("DURATION"),
        default: "10m",
        help: "lifetime of the ServiceAccount tokens exchanged (the API's minimum is 10m)",
    },
    parse: |value| {
        let expiration = parse_duration(value)?;
        if expiration < Duration::from_secs(600) {
            return Err("the API's minimum is 10m".to_string());
        }
        Ok(expiration)
    },
};

#[cfg(test)]
#[test]
fn token_expirations_start_at_the_apis_minimum() {
    assert_eq!(
        (SERVICE_ACCOUNT_TOKEN_EXPIRATION.parse)("10m"),
        Ok(Duration::from_secs(600))
    );
    assert_eq!(
        (SERVICE_ACCOUNT_TOKEN_EXPIRATION.parse)("9m59s"),
        Err("the API's minimum is 10m".to_string())
    );
}

pub(crate) const MIN_REFRESH_INTERVAL: Def<Duration> = Def {
    flag: Flag {
        name: "--min-refresh-interval",
        value: Some("DURATION"),
        default: "1m",
        help:
            "no ServiceAccount is processed again sooner than this after a success, whatever its \
               credentials' expiry",
    },
    parse: duration,
};

pub(crate) const MAX_PRINCIPALS_PER_SERVICE_ACCOUNT: Def<usize> = Def {
    flag: Flag {
        name: "--max-principals-per-service-account",
        value: Some("N"),
        default: "20",
        help: "a ServiceAccount listing more principals gets one Warning event and nothing else \
               (no token request, no secret)",
    },
    parse: |value| {
        value
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{value:?} is not a number of at least 1"))
    },
};

#[cfg(test)]
#[test]
fn principals_per_service_account_are_at_least_one() {
    assert_eq!((MAX_PRINCIPALS_PER_SERVICE_ACCOUNT.parse)("1"), Ok(1));
    assert_eq!(
        (MAX_PRINCIPALS_PER_SERVICE_ACCOUNT.parse)("0"),
        Err("\"0\" is not a number of at least 1".to_string())
    );
}

pub(crate) const LOG_LEVEL: Def<log::LevelFilter> = Def {
    flag: Flag {
        name: "--log-level",
        value: Some("LEVEL"),
        default: "info",
        help: "error, warn, info, debug or trace (credentials are never logged at any level)",
    },
    parse: |value| {
        value
            .parse()
            .map_err(|_| format!("{value:?} is not one of error, warn, info, debug, trace"))
    },
};

#[cfg(test)]
#[test]
fn log_levels() {
    assert_eq!((LOG_LEVEL.parse)("trace"), Ok(log::LevelFilter::Trace));
    assert_eq!(
        (LOG_LEVEL.parse)("loud"),
        Err("\"loud\" is not one of error, warn, info, debug, trace".to_string())
    );
}

pub(crate) const LOG_FORMAT: Def<LogFormat> = Def {
    flag: Flag {
        name: "--log-format",
        value: Some("FORMAT"),
        default: "text",
        help: "text or json",
    },
    parse: str::parse,
};

/// A value of one of the original's `--zap-*` flags: as typed (for the notice saying what became of it)
/// and what it means here.
pub(crate) type Zap<T> = Option<(String, T)>;

pub(crate) const ZAP_LOG_LEVEL: Def<Zap<log::LevelFilter>> = Def {
    flag: Flag {
        name: "--zap-log-level",
        value: Some("LEVEL"),
        default: "",
        help: "the original's flag: debug, info, error, panic or a verbosity N > 0; sets \
               --log-level unless that is given",
    },
    parse: |value| {
        optional(value)?
            .map(|v| zap_level(&v).map(|level| (v, level)))
            .transpose()
    },
};

/// A zap level as controller-runtime reads it: a name, or a verbosity N > 0 (logr's V(N); 1 is debug,
/// anything finer is trace here). zap's panic level logs errors, so it maps to error.
fn zap_level(value: &str) -> Result<log::LevelFilter, String> {
    match value {
        "debug" => Ok(log::LevelFilter::Debug),
        "info" => Ok(log::LevelFilter::Info),
        "error" | "panic" => Ok(log::LevelFilter::Error),
        other => match other.parse::<u8>() {
            Ok(1) => Ok(log::LevelFilter::Debug),
            Ok(n) if n > 1 => Ok(log::LevelFilter::Trace),
            _ => Err(format!(
                "{other:?} is not debug, info, error, panic or an integer > 0"
            )),
        },
    }
}

#[cfg(test)]
#[test]
fn zap_levels_are_names_or_verbosities() {
    let level = |v: &str| (ZAP_LOG_LEVEL.parse)(v).map(|z| z.map(|(_, level)| level));
    assert_eq!(level(""), Ok(None));
    assert_eq!(level("panic"), Ok(Some(log::LevelFilter::Error)));
    assert_eq!(level("1"), Ok(Some(log::LevelFilter::Debug)));
    assert_eq!(level("3"), Ok(Some(log::LevelFilter::Trace)));
    assert_eq!(
        level("0"),
        Err("\"0\" is not debug, info, error, panic or an integer > 0".to_string())
    );
}

pub(crate) const ZAP_ENCODER: Def<Zap<LogFormat>> = Def {
    flag: Flag {
        name: "--zap-encoder",
        value: Some("ENCODER"),
        default: "",
        help:
            "the original's flag: json or console (= text); sets --log-format unless that is given",
    },
    parse: |value| {
        let Some(value) = optional(value)? else {
            return Ok(None);
        };
        let format = match value.as_str() {
            "json" => LogFormat::Json,
            "console" => LogFormat::Text,
            other => return Err(format!("{other:?} is not json or console")),
        };
        Ok(Some((value, format)))
    },
};

#[cfg(test)]
#[test]
fn zap_encoders_are_json_or_console() {
    assert_eq!(
        (ZAP_ENCODER.parse)("console"),
        Ok(Some(("console".to_string(), LogFormat::Text)))
    );
    assert_eq!(
        (ZAP_ENCODER.parse)("xml"),
        Err("\"xml\" is not json or console".to_string())
    );
}

pub(crate) const ZAP_DEVEL: Def<bool> = Def {
    flag: Flag {
        name: "--zap-devel",
        value: None,
        default: "false",
        help: "the original's flag: accepted and ignored (logged at start)",
    },
    parse: boolean,
};

pub(crate) const ZAP_STACKTRACE_LEVEL: Def<Option<String>> = Def {
    flag: Flag {
        name: "--zap-stacktrace-level",
        value: Some("LEVEL"),
        default: "",
        help: "the original's flag: info, error or panic; accepted and ignored (no stack traces \
               are logged)",
    },
    parse: |value| {
        let value = optional(value)?;
        match value.as_deref() {
            None | Some("info" | "error" | "panic") => Ok(value),
            Some(other) => Err(format!("{other:?} is not info, error or panic")),
        }
    },
};

pub(crate) const ZAP_TIME_ENCODING: Def<Option<String>> = Def {
    flag: Flag {
        name: "--zap-time-encoding",
        value: Some("ENCODING"),
        default: "",
        help: "the original's flag: accepted and ignored (times are always RFC 3339 in UTC)",
    },
    parse: |value| {
        let value = optional(value)?;
        match value.as_deref() {
            None | Some("epoch" | "millis" | "nano" | "iso8601" | "rfc3339" | "rfc3339nano") => {
                Ok(value)
            }
            Some(other) => Err(format!(
                "{other:?} is not epoch, millis, nano, iso8601, rfc3339 or rfc3339nano"
            )),
        }
    },
};

#[cfg(test)]
#[test]
fn ignored_zap_flags_still_refuse_what_the_original_refuses() {
    assert_eq!(
        (ZAP_STACKTRACE_LEVEL.parse)("panic"),
        Ok(Some("panic".to_string()))
    );
    assert_eq!(
        (ZAP_STACKTRACE_LEVEL.parse)("debug"),
        Err("\"debug\" is not info, error or panic".to_string())
    );
    assert_eq!((ZAP_TIME_ENCODING.parse)(""), Ok(None));
    assert_eq!(
        (ZAP_TIME_ENCODING.parse)("rfc3339nano"),
        Ok(Some("rfc3339nano".to_string()))
    );
    assert!((ZAP_TIME_ENCODING.parse)("unix").is_err());
}

pub(crate) const HELP: Def<bool> = Def {
    flag: Flag {
        name: "--help",
        value: None,
        default: "false",
        help: "print this help",
    },
    parse: boolean,
};

pub(crate) const VERSION: Def<bool> = Def {
    flag: Flag {
        name: "--version",
        value: None,
        default: "false",
        help: "print the version",
    },
    parse: boolean,
};

#[cfg(test)]
#[test]
fn every_default_parses() {
    // A flag in FLAGS that parse() does not take would be an unknown argument, and a default that its own
    // parser refuses would fail every start.
    for flag in FLAGS.iter().filter(|f| f.value.is_some()) {
        let args = vec![flag.name.into(), flag.default.into()];
        let parsed = super::parse(args);
        assert!(
            parsed.is_ok(),
            "{} {:?}: {parsed:?}",
            flag.name,
            flag.default
        );
    }
}
