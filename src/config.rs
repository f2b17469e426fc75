//! Command-line flags: one table, parsed and validated into [`Config`] before anything touches the network.
//!
//! Flag names follow the original controller (Go style: `--name value` or `--name=value`; booleans also as
//! `--name=true|false`). Durations are Go durations (`90s`, `1m30s`, `500ms`, `12h`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::annotations::DEFAULT_LEADER_ELECTION_ID;
use crate::cloud::aws::{self, AwsConfig};
use crate::cloud::azure::AzureConfig;
use crate::cloud::google::GoogleConfig;
use crate::cloud::http::RateLimit;
use crate::logger::LogFormat;

/// One flag: its name, the placeholder of its value (`None` for booleans), its default, and its help.
pub struct Flag {
    /// With its leading dashes, as typed.
    pub name: &'static str,
    pub value: Option<&'static str>,
    pub default: &'static str,
    pub help: &'static str,
}

/// Every flag, in the order `--help` lists them.
pub const FLAGS: &[Flag] = &[
    Flag { name: "--kubeconfig", value: Some("PATH"), default: "", help: "kubeconfig to use outside a cluster (else KUBECONFIG, else the in-cluster ServiceAccount, else ~/.kube/config)" },
    Flag { name: "--namespace", value: Some("NAME"), default: "", help: "only watch ServiceAccounts, secrets and pods in this namespace (default: all namespaces)" },
    Flag { name: "--workers", value: Some("N"), default: "8", help: "ServiceAccounts reconciled in parallel" },
    Flag { name: "--metrics-bind-address", value: Some("ADDR"), default: ":8080", help: "address of the Prometheus /metrics endpoint; 0 disables it" },
    Flag { name: "--health-probe-bind-address", value: Some("ADDR"), default: ":8081", help: "address of /healthz and /readyz; 0 disables them" },
    Flag { name: "--leader-elect", value: None, default: "false", help: "elect a leader through a Lease so that only one replica acts" },
    Flag { name: "--leader-election-namespace", value: Some("NAME"), default: "", help: "namespace of the Lease (default: the pod's own, or the kubeconfig context's)" },
    Flag { name: "--leader-election-id", value: Some("NAME"), default: DEFAULT_LEADER_ELECTION_ID, help: "name of the Lease; the default is the original controller's, so the two never act at once" },
    Flag { name: "--leader-election-lease-duration", value: Some("DURATION"), default: "15s", help: "how long a standby waits after the last renewal before taking over" },
    Flag { name: "--leader-election-renew-deadline", value: Some("DURATION"), default: "10s", help: "how long the leader keeps trying to renew before giving up leadership" },
    Flag { name: "--leader-election-retry-period", value: Some("DURATION"), default: "2s", help: "how often candidates try to acquire and the leader renews" },
    Flag { name: "--disable-pod-eviction", value: None, default: "false", help: "never evict pods stuck pulling images for lack of a secret" },
    Flag { name: "--aws-sts-endpoint", value: Some("URL"), default: "", help: "STS endpoint instead of the registry region's; {region} is replaced (VPC endpoints, tests)" },
    Flag { name: "--aws-ecr-endpoint", value: Some("URL"), default: "", help: "ECR API endpoint instead of the registry region's; {region} is replaced" },
    Flag { name: "--aws-session-duration", value: Some("DURATION"), default: "15m", help: "STS session length (900 s to 12 h); each session signs one ECR call" },
    Flag { name: "--google-sts-endpoint", value: Some("URL"), default: "https://sts.googleapis.com", help: "Google Security Token Service (Private Service Connect, restricted VIP, tests)" },
    Flag { name: "--google-iamcredentials-endpoint", value: Some("URL"), default: "https://iamcredentials.googleapis.com", help: "Google IAM Service Account Credentials API" },
    Flag { name: "--google-token-lifetime", value: Some("DURATION"), default: "", help: "lifetime asked of Google access tokens (default: Google's, one hour)" },
    Flag { name: "--azure-authority-host", value: Some("URL"), default: "", help: "Microsoft Entra authority instead of the registry's cloud's (login.microsoftonline.com, .us, login.chinacloudapi.cn)" },
    Flag { name: "--azure-acr-endpoint", value: Some("URL"), default: "", help: "base URL of ACR's token exchange instead of https://REGISTRY; {registry} is replaced (private endpoints, tests)" },
    Flag { name: "--provider-ca-bundle", value: Some("PATH"), default: "", help: "PEM file of extra CAs trusted for provider endpoints (TLS-inspecting proxies, private endpoints)" },
    Flag { name: "--provider-timeout", value: Some("DURATION"), default: "30s", help: "timeout of each provider call" },
    Flag { name: "--provider-rate", value: Some("N"), default: "300", help: "provider requests per second, all providers together (a backlog drains at this pace)" },
    Flag { name: "--provider-burst", value: Some("N"), default: "100", help: "provider requests that may go at once after a quiet period" },
    Flag { name: "--service-account-token-expiration", value: Some("DURATION"), default: "10m", help: "lifetime of the ServiceAccount tokens exchanged (the API's minimum is 10m)" },
    Flag { name: "--min-refresh-interval", value: Some("DURATION"), default: "1m", help: "no ServiceAccount is processed again sooner than this after a success, whatever its credentials' expiry" },
    // Limits that keep one ServiceAccount from crowding out the others.
    Flag { name: "--max-principals-per-service-account", value: Some("N"), default: "20", help: "a ServiceAccount listing more principals gets one Warning event and nothing else (no token request, no secret)" },
    Flag { name: "--log-level", value: Some("LEVEL"), default: "info", help: "error, warn, info, debug or trace (credentials are never logged at any level)" },
    Flag { name: "--log-format", value: Some("FORMAT"), default: "text", help: "text or json" },
    Flag { name: "--zap-log-level", value: Some("LEVEL"), default: "", help: "the original's flag: debug, info, error, panic or a verbosity N > 0; sets --log-level unless that is given" },
    Flag { name: "--zap-encoder", value: Some("ENCODER"), default: "", help: "the original's flag: json or console (= text); sets --log-format unless that is given" },
    Flag { name: "--zap-devel", value: None, default: "false", help: "the original's flag: accepted and ignored (logged at start)" },
    Flag { name: "--zap-stacktrace-level", value: Some("LEVEL"), default: "", help: "the original's flag: info, error or panic; accepted and ignored (no stack traces are logged)" },
    Flag { name: "--zap-time-encoding", value: Some("ENCODING"), default: "", help: "the original's flag: accepted and ignored (times are always RFC 3339 in UTC)" },
    Flag { name: "--help", value: None, default: "false", help: "print this help" },
    Flag { name: "--version", value: None, default: "false", help: "print the version" },
];

/// The validated configuration of a run.
#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: Option<PathBuf>,
    pub namespace: Option<String>,
    pub workers: usize,
    pub metrics_bind_address: String,
    pub health_probe_bind_address: String,
    pub leader_elect: bool,
    pub leader_election_namespace: Option<String>,
    pub leader_election_id: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    pub pod_eviction: bool,
    pub aws: AwsConfig,
    pub google: GoogleConfig,
    pub azure: AzureConfig,
    pub provider_ca_bundle: Option<PathBuf>,
    pub provider_timeout: Duration,
    pub provider_rate: RateLimit,
    pub token_expiration: Duration,
    pub min_refresh_interval: Duration,
    pub max_principals_per_service_account: usize,
    pub log_level: log::LevelFilter,
    pub log_format: LogFormat,
    /// What became of the original's `--zap-*` flags, for the log once the logger is up.
    pub notices: Vec<String>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

/// The `--help` text, generated from [`FLAGS`].
pub fn help() -> String {
    let mut text = format!(
        "image-pull-secrets-provisioner {}\nProvisions short-lived image pull secrets for ServiceAccounts through identity federation.\n\nUsage: image-pull-secrets-provisioner [FLAGS]\n       image-pull-secrets-provisioner check NAMESPACE/NAME [--image IMAGE] [--output text|json] [FLAGS]  (see check --help)\n\nFlags:\n",
        env!("CARGO_PKG_VERSION")
    );
    for flag in FLAGS {
        let name = match flag.value {
            Some(value) => format!("{} {value}", flag.name),
            None => flag.name.to_string(),
        };
        let default = if flag.default.is_empty() || flag.value.is_none() {
            String::new()
        } else {
            format!(" (default {})", flag.default)
        };
        text.push_str(&format!("  {name:<44} {}{default}\n", flag.help));
    }
    text
}

/// Parses the arguments after the program name.
pub fn parse(args: Vec<OsString>) -> Result<Command, String> {
    let args = normalize_booleans(args)?;
    let mut parser = pico_args::Arguments::from_vec(args);
    if parser.contains("--help") || parser.contains("-h") {
        return Ok(Command::Help);
    }
    if parser.contains("--version") {
        return Ok(Command::Version);
    }
    let mut values = std::collections::HashMap::new();
    let mut given = std::collections::HashSet::new();
    for flag in FLAGS.iter().filter(|f| f.value.is_some()) {
        let value: Option<String> = parser
            .opt_value_from_str(flag.name)
            .map_err(|e| format!("flag {}: {e}", flag.name))?;
        let name = flag.name.trim_start_matches('-');
        if value.is_some() {
            given.insert(name);
        }
        values.insert(name, value.unwrap_or_else(|| flag.default.to_string()));
    }
    let leader_elect = parser.contains("--leader-elect");
    let disable_pod_eviction = parser.contains("--disable-pod-eviction");
    let zap_devel = parser.contains("--zap-devel");
    let rest = parser.finish();
    if let Some(unknown) = rest.first() {
        return Err(format!(
            "unknown argument {:?}; see --help",
            unknown.to_string_lossy()
        ));
    }
    let get = |name: &str| values.get(name).cloned().unwrap_or_default();
    let optional = |name: &str| Some(get(name)).filter(|v| !v.is_empty());
    let duration =
        |name: &str| parse_duration(&get(name)).map_err(|e| format!("flag --{name}: {e}"));

    let workers: usize = get("workers")
        .parse()
        .map_err(|_| format!("flag --workers: {:?} is not a number", get("workers")))?;
    if !(1..=64).contains(&workers) {
        return Err("flag --workers: must be between 1 and 64".to_string());
    }
    let lease_duration = duration("leader-election-lease-duration")?;
    let renew_deadline = duration("leader-election-renew-deadline")?;
    let retry_period = duration("leader-election-retry-period")?;
    if renew_deadline >= lease_duration {
        return Err(
            "flag --leader-election-renew-deadline: must be shorter than the lease duration"
                .to_string(),
        );
    }
    if retry_period >= renew_deadline {
        return Err(
            "flag --leader-election-retry-period: must be shorter than the renew deadline"
                .to_string(),
        );
    }
    let session = duration("aws-session-duration")?;
    if !(900..=43200).contains(&session.as_secs()) {
        return Err(
            "flag --aws-session-duration: must be between 15m and 12h (AWS's limits)".to_string(),
        );
    }
    for name in ["aws-sts-endpoint", "aws-ecr-endpoint"] {
        if let Some(url) = optional(name) {
            aws::validate_endpoint_override(&url).map_err(|e| format!("flag --{name}: {e}"))?;
        }
    }
    for name in ["google-sts-endpoint", "google-iamcredentials-endpoint"] {
        let url = get(name);
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 10 {
            return Err(format!("flag --{name}: {url:?} is not an http(s) URL"));
        }
    }
    for name in ["azure-authority-host", "azure-acr-endpoint"] {
        if let Some(url) = optional(name) {
            if !url.starts_with("https://") || url.len() <= "https://".len() {
                return Err(format!("flag --{name}: {url:?} is not an https URL"));
            }
        }
    }
    let provider_rate = get("provider-rate")
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| {
            format!(
                "flag --provider-rate: {:?} is not a positive number of requests per second",
                get("provider-rate")
            )
        })?;
    let provider_burst = get("provider-burst")
        .parse::<u32>()
        .ok()
        .filter(|b| *b > 0)
        .ok_or_else(|| {
            format!(
                "flag --provider-burst: {:?} is not a positive whole number",
                get("provider-burst")
            )
        })?;
    let google_token_lifetime = optional("google-token-lifetime")
        .map(|v| parse_duration(&v))
        .transpose()
        .map_err(|e| format!("flag --google-token-lifetime: {e}"))?;
    let token_expiration = duration("service-account-token-expiration")?;
    if token_expiration < Duration::from_secs(600) {
        return Err(
            "flag --service-account-token-expiration: the API's minimum is 10m".to_string(),
        );
    }
    let max_principals: usize = get("max-principals-per-service-account")
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            format!(
                "flag --max-principals-per-service-account: {:?} is not a number of at least 1",
                get("max-principals-per-service-account")
            )
        })?;
    let log_level = get("log-level").parse::<log::LevelFilter>().map_err(|_| {
        format!(
            "flag --log-level: {:?} is not one of error, warn, info, debug, trace",
            get("log-level")
        )
    })?;
    let log_format = get("log-format")
        .parse::<LogFormat>()
        .map_err(|e| format!("flag --log-format: {e}"))?;
    let zap = ZapFlags {
        log_level: optional("zap-log-level"),
        encoder: optional("zap-encoder"),
        devel: zap_devel,
        stacktrace_level: optional("zap-stacktrace-level"),
        time_encoding: optional("zap-time-encoding"),
    };
    let zap = zap.resolve(given.contains("log-level"), given.contains("log-format"))?;
    let log_level = zap.log_level.unwrap_or(log_level);
    let log_format = zap.log_format.unwrap_or(log_format);
    let provider_ca_bundle = optional("provider-ca-bundle").map(PathBuf::from);
    if let Some(path) = &provider_ca_bundle {
        crate::transport::certificates_from_file(path)
            .map_err(|e| format!("flag --provider-ca-bundle: {e}"))?;
    }
    Ok(Command::Run(Box::new(Config {
        kubeconfig: optional("kubeconfig").map(PathBuf::from),
        namespace: optional("namespace"),
        workers,
        metrics_bind_address: get("metrics-bind-address"),
        health_probe_bind_address: get("health-probe-bind-address"),
        leader_elect,
        leader_election_namespace: optional("leader-election-namespace"),
        leader_election_id: get("leader-election-id"),
        lease_duration,
        renew_deadline,
        retry_period,
        pod_eviction: !disable_pod_eviction,
        aws: AwsConfig {
            sts_endpoint: optional("aws-sts-endpoint"),
            ecr_endpoint: optional("aws-ecr-endpoint"),
            session_duration_seconds: session.as_secs() as u32,
        },
        google: GoogleConfig {
            sts_endpoint: get("google-sts-endpoint"),
            iamcredentials_endpoint: get("google-iamcredentials-endpoint"),
            token_lifetime: google_token_lifetime,
        },
        azure: AzureConfig {
            authority_host: optional("azure-authority-host"),
            acr_endpoint: optional("azure-acr-endpoint"),
        },
        provider_ca_bundle,
        provider_timeout: duration("provider-timeout")?,
        provider_rate: RateLimit {
            per_second: provider_rate,
            burst: provider_burst,
        },
        token_expiration,
        min_refresh_interval: duration("min-refresh-interval")?,
        max_principals_per_service_account: max_principals,
        log_level,
        log_format,
        notices: zap.notices,
    })))
}

/// The original's logging flags (controller-runtime's zap options), as given.
#[derive(Debug, Default)]
struct ZapFlags {
    log_level: Option<String>,
    encoder: Option<String>,
    devel: bool,
    stacktrace_level: Option<String>,
    time_encoding: Option<String>,
}

/// What the `--zap-*` flags mean here: a level and a format where they have an equivalent, and one notice
/// per flag saying what became of it.
#[derive(Debug, Default, PartialEq)]
struct ZapResolved {
    log_level: Option<log::LevelFilter>,
    log_format: Option<LogFormat>,
    notices: Vec<String>,
}

impl ZapFlags {
    /// Maps the flags onto `--log-level` and `--log-format` unless those were given themselves, and refuses
    /// the values the original refuses too, so a typo fails the same way after the swap.
    fn resolve(self, log_level_given: bool, log_format_given: bool) -> Result<ZapResolved, String> {
        let mut out = ZapResolved::default();
        if let Some(value) = self.log_level {
            let level = zap_level(&value)?;
            if log_level_given {
                out.notices.push(format!(
                    "--zap-log-level={value} ignored: --log-level is given"
                ));
            } else {
                out.notices.push(format!(
                    "--zap-log-level={value} taken as --log-level {}",
                    level.as_str().to_lowercase()
                ));
                out.log_level = Some(level);
            }
        }
        if let Some(value) = self.encoder {
            let format = match value.as_str() {
                "json" => LogFormat::Json,
                "console" => LogFormat::Text,
                other => {
                    return Err(format!(
                        "flag --zap-encoder: {other:?} is not json or console"
                    ))
                }
            };
            if log_format_given {
                out.notices.push(format!(
                    "--zap-encoder={value} ignored: --log-format is given"
                ));
            } else {
                out.notices.push(format!(
                    "--zap-encoder={value} taken as --log-format {}",
                    if format == LogFormat::Json {
                        "json"
                    } else {
                        "text"
                    }
                ));
                out.log_format = Some(format);
            }
        }
        if self.devel {
            out.notices
                .push("--zap-devel ignored: use --log-level debug for more detail".to_string());
        }
        if let Some(value) = self.stacktrace_level {
            if !matches!(value.as_str(), "info" | "error" | "panic") {
                return Err(format!(
                    "flag --zap-stacktrace-level: {value:?} is not info, error or panic"
                ));
            }
            out.notices.push(format!(
                "--zap-stacktrace-level={value} ignored: no stack traces are logged"
            ));
        }
        if let Some(value) = self.time_encoding {
            if !matches!(
                value.as_str(),
                "epoch" | "millis" | "nano" | "iso8601" | "rfc3339" | "rfc3339nano"
            ) {
                return Err(format!(
                    "flag --zap-time-encoding: {value:?} is not epoch, millis, nano, iso8601, rfc3339 or rfc3339nano"
                ));
            }
            out.notices.push(format!(
                "--zap-time-encoding={value} ignored: times are always RFC 3339 in UTC"
            ));
        }
        Ok(out)
    }
}

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
                "flag --zap-log-level: {other:?} is not debug, info, error, panic or an integer > 0"
            )),
        },
    }
}

/// Turns Go-style `--flag=true` into `--flag` and drops `--flag=false`, for the boolean flags.
fn normalize_booleans(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        let text = arg.to_string_lossy();
        let boolean = FLAGS.iter().filter(|f| f.value.is_none()).find_map(|f| {
            text.strip_prefix(f.name)
                .and_then(|t| t.strip_prefix('='))
                .map(|v| (f.name, v.to_string()))
        });
        match boolean {
            Some((name, value)) => match value.as_str() {
                "true" | "1" => out.push(OsString::from(name)),
                "false" | "0" => {}
                other => return Err(format!("flag {name}: {other:?} is not true or false")),
            },
            None => out.push(arg),
        }
    }
    Ok(out)
}

/// Parses a Go duration: a sequence of number+unit (`h`, `m`, `s`, `ms`), e.g. `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not a duration such as 30s, 5m or 1h30m");
    if text.is_empty() {
        return Err(invalid());
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * seconds).map_err(|_| invalid())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse(args.iter().map(OsString::from).collect())? {
            Command::Run(config) => Ok(*config),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_original() {
        let config = run(&[]).unwrap();
        assert_eq!(config.metrics_bind_address, ":8080");
        assert_eq!(config.health_probe_bind_address, ":8081");
        assert!(!config.leader_elect);
        assert!(config.pod_eviction);
        assert_eq!(config.leader_election_id, "b1b11bb0.preferred.jp");
        assert_eq!(
            (
                config.lease_duration,
                config.renew_deadline,
                config.retry_period
            ),
            (
                Duration::from_secs(15),
                Duration::from_secs(10),
                Duration::from_secs(2)
            )
        );
        assert_eq!(config.aws.session_duration_seconds, 900);
        assert_eq!(config.token_expiration, Duration::from_secs(600));
        assert_eq!(config.max_principals_per_service_account, 20);
        assert_eq!(config.azure, AzureConfig::default());
        assert_eq!(config.provider_rate, RateLimit::default());
        let tuned = run(&[
            "--provider-rate=2.5",
            "--provider-burst=7",
            "--azure-authority-host=https://login.example.internal",
        ])
        .unwrap();
        assert_eq!(
            tuned.provider_rate,
            RateLimit {
                per_second: 2.5,
                burst: 7
            }
        );
        assert_eq!(
            tuned.azure.authority_host.as_deref(),
            Some("https://login.example.internal")
        );
    }

    #[test]
    fn go_style_flags() {
        let config = run(&[
            "--leader-elect=true",
            "--disable-pod-eviction",
            "--metrics-bind-address=127.0.0.1:0",
            "--workers",
            "2",
            "--kubeconfig=/k",
        ])
        .unwrap();
        assert!(config.leader_elect);
        assert!(!config.pod_eviction);
        assert_eq!(config.metrics_bind_address, "127.0.0.1:0");
        assert_eq!(config.workers, 2);
        assert_eq!(config.kubeconfig, Some(PathBuf::from("/k")));
        assert!(!run(&["--leader-elect=false"]).unwrap().leader_elect);
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        for (args, want) in [
            (
                &["--workers", "0"][..],
                "--workers: must be between 1 and 64",
            ),
            (&["--workers", "x"][..], "--workers"),
            (
                &["--leader-election-renew-deadline", "20s"][..],
                "shorter than the lease duration",
            ),
            (&["--aws-session-duration", "5m"][..], "between 15m and 12h"),
            (&["--aws-sts-endpoint", "ftp://x"][..], "--aws-sts-endpoint"),
            (
                &["--google-sts-endpoint", "sts.googleapis.com"][..],
                "not an http(s) URL",
            ),
            (
                &["--azure-authority-host", "login.microsoftonline.us"][..],
                "flag --azure-authority-host: \"login.microsoftonline.us\" is not an https URL",
            ),
            (
                &["--azure-acr-endpoint", "http://10.0.0.4"][..],
                "flag --azure-acr-endpoint: \"http://10.0.0.4\" is not an https URL",
            ),
            (
                &["--provider-rate", "0"][..],
                "flag --provider-rate: \"0\" is not a positive number",
            ),
            (&["--provider-rate", "NaN"][..], "flag --provider-rate"),
            (
                &["--provider-burst", "-1"][..],
                "flag --provider-burst: \"-1\" is not a positive whole number",
            ),
            (&["--log-level", "loud"][..], "--log-level"),
            (&["--log-format", "xml"][..], "--log-format"),
            (
                &["--service-account-token-expiration", "5m"][..],
                "minimum is 10m",
            ),
            (&["--min-refresh-interval", "soon"][..], "not a duration"),
            (&["--leader-elect=maybe"][..], "not true or false"),
            (
                &["--max-principals-per-service-account", "0"][..],
                "--max-principals-per-service-account: \"0\" is not a number of at least 1",
            ),
            (&["--no-such-flag"][..], "unknown argument"),
            (
                &["--provider-ca-bundle", "/nonexistent.pem"][..],
                "--provider-ca-bundle",
            ),
        ] {
            let err = match parse(args.iter().map(OsString::from).collect()) {
                Err(e) => e,
                Ok(other) => panic!("{args:?}: {other:?}"),
            };
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn the_originals_zap_flags_map_onto_level_and_format() {
        let config = run(&[
            "--zap-log-level=debug",
            "--zap-encoder=json",
            "--zap-devel=true",
            "--zap-stacktrace-level=error",
            "--zap-time-encoding",
            "iso8601",
        ])
        .unwrap();
        assert_eq!(config.log_level, log::LevelFilter::Debug);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(
            config.notices,
            vec![
                "--zap-log-level=debug taken as --log-level debug",
                "--zap-encoder=json taken as --log-format json",
                "--zap-devel ignored: use --log-level debug for more detail",
                "--zap-stacktrace-level=error ignored: no stack traces are logged",
                "--zap-time-encoding=iso8601 ignored: times are always RFC 3339 in UTC",
            ]
        );
        let console = run(&["--zap-encoder", "console", "--zap-devel=false"]).unwrap();
        assert_eq!(console.log_format, LogFormat::Text);
        assert_eq!(
            console.notices,
            vec!["--zap-encoder=console taken as --log-format text"]
        );
        assert!(run(&[]).unwrap().notices.is_empty());
    }

    #[test]
    fn zap_verbosities_and_names() {
        for (value, want) in [
            ("info", log::LevelFilter::Info),
            ("error", log::LevelFilter::Error),
            ("panic", log::LevelFilter::Error),
            ("1", log::LevelFilter::Debug),
            ("2", log::LevelFilter::Trace),
            ("10", log::LevelFilter::Trace),
        ] {
            let flag = format!("--zap-log-level={value}");
            assert_eq!(run(&[&flag]).unwrap().log_level, want, "{value}");
        }
    }

    #[test]
    fn our_own_log_flags_win_over_zap() {
        let config = run(&[
            "--log-level",
            "warn",
            "--zap-log-level=debug",
            "--log-format=text",
            "--zap-encoder=json",
        ])
        .unwrap();
        assert_eq!(config.log_level, log::LevelFilter::Warn);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(
            config.notices,
            vec![
                "--zap-log-level=debug ignored: --log-level is given",
                "--zap-encoder=json ignored: --log-format is given",
            ]
        );
    }

    #[test]
    fn bad_zap_values_are_refused_as_the_original_refuses_them() {
        for (args, want) in [
            (
                &["--zap-log-level=loud"][..],
                "flag --zap-log-level: \"loud\" is not debug, info, error, panic or an integer > 0",
            ),
            (
                &["--zap-log-level=0"][..],
                "flag --zap-log-level: \"0\" is not",
            ),
            (
                &["--zap-encoder=xml"][..],
                "flag --zap-encoder: \"xml\" is not json or console",
            ),
            (
                &["--zap-stacktrace-level=debug"][..],
                "flag --zap-stacktrace-level: \"debug\" is not info, error or panic",
            ),
            (
                &["--zap-time-encoding=unix"][..],
                "flag --zap-time-encoding: \"unix\" is not epoch",
            ),
            (
                &["--zap-devel=sometimes"][..],
                "flag --zap-devel: \"sometimes\" is not true or false",
            ),
        ] {
            let err = match parse(args.iter().map(OsString::from).collect()) {
                Err(e) => e,
                Ok(other) => panic!("{args:?}: {other:?}"),
            };
            assert!(err.starts_with(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn the_originals_deployment_arguments_parse() {
        // config/default/manager_auth_proxy_patch.yaml and config/manager/manager.yaml of the original.
        let config = run(&[
            "--health-probe-bind-address=:8081",
            "--metrics-bind-address=127.0.0.1:8080",
            "--leader-elect",
        ])
        .unwrap();
        assert_eq!(config.metrics_bind_address, "127.0.0.1:8080");
        assert_eq!(config.health_probe_bind_address, ":8081");
        assert!(config.leader_elect);
        assert_eq!(config.leader_election_id, "b1b11bb0.preferred.jp");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "5", "5x", "s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_readme_documents_every_flag_as_help_prints_it() {
        let readme = include_str!("../README.md");
        for line in help().lines().filter(|l| l.trim_start().starts_with("--")) {
            assert!(
                readme.contains(line),
                "README.md lacks the --help line {line:?}; paste the new --help output"
            );
        }
    }

    #[test]
    fn help_lists_every_flag() {
        let text = help();
        for flag in FLAGS {
            assert!(text.contains(flag.name), "{}", flag.name);
        }
    }
}
