//! Command-line flags: each defined once in [`defs`] (name, help, default, parser), parsed and validated into
//! the typed fields of [`Config`] before anything touches the network.
//!
//! Flag names follow the original controller (Go style: `--name value` or `--name=value`; booleans also as
//! `--name=true|false`). Durations are Go durations (`90s`, `1m30s`, `500ms`, `12h`).

pub(crate) mod defs;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::cloud::aws::AwsConfig;
use crate::cloud::azure::AzureConfig;
use crate::cloud::google::GoogleConfig;
use crate::cloud::http::RateLimit;
use crate::logger::LogFormat;
pub(crate) use defs::FLAGS;
use defs::*;

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
    /// Hosts or DNS suffixes Azure registries may have besides the clouds' own (`--azure-registry-suffixes`).
    pub azure_registry_suffixes: Vec<String>,
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
    let mut args = pico_args::Arguments::from_vec(args);
    if args.contains(HELP.flag.name) || args.contains("-h") {
        return Ok(Command::Help);
    }
    if args.contains(VERSION.flag.name) {
        return Ok(Command::Version);
    }
    let kubeconfig = KUBECONFIG.take(&mut args)?;
    let namespace = NAMESPACE.take(&mut args)?;
    let workers = WORKERS.take(&mut args)?;
    let metrics_bind_address = METRICS_BIND_ADDRESS.take(&mut args)?;
    let health_probe_bind_address = HEALTH_PROBE_BIND_ADDRESS.take(&mut args)?;
    let leader_elect = LEADER_ELECT.take(&mut args)?;
    let leader_election_namespace = LEADER_ELECTION_NAMESPACE.take(&mut args)?;
    let leader_election_id = LEADER_ELECTION_ID.take(&mut args)?;
    let lease_duration = LEADER_ELECTION_LEASE_DURATION.take(&mut args)?;
    let renew_deadline = LEADER_ELECTION_RENEW_DEADLINE.take(&mut args)?;
    let retry_period = LEADER_ELECTION_RETRY_PERIOD.take(&mut args)?;
    let disable_pod_eviction = DISABLE_POD_EVICTION.take(&mut args)?;
    let aws = AwsConfig {
        sts_endpoint: AWS_STS_ENDPOINT.take(&mut args)?,
        ecr_endpoint: AWS_ECR_ENDPOINT.take(&mut args)?,
        session_duration_seconds: AWS_SESSION_DURATION.take(&mut args)?,
    };
    let google = GoogleConfig {
        sts_endpoint: GOOGLE_STS_ENDPOINT.take(&mut args)?,
        iamcredentials_endpoint: GOOGLE_IAMCREDENTIALS_ENDPOINT.take(&mut args)?,
        token_lifetime: GOOGLE_TOKEN_LIFETIME.take(&mut args)?,
    };
    let azure = AzureConfig {
        authority_host: AZURE_AUTHORITY_HOST.take(&mut args)?,
        acr_endpoint: AZURE_ACR_ENDPOINT.take(&mut args)?,
    };
    let azure_registry_suffixes = AZURE_REGISTRY_SUFFIXES.take(&mut args)?;
    let provider_ca_bundle = PROVIDER_CA_BUNDLE.take(&mut args)?;
    let provider_timeout = PROVIDER_TIMEOUT.take(&mut args)?;
    let provider_rate = RateLimit {
        per_second: PROVIDER_RATE.take(&mut args)?,
        burst: PROVIDER_BURST.take(&mut args)?,
    };
    let token_expiration = SERVICE_ACCOUNT_TOKEN_EXPIRATION.take(&mut args)?;
    let min_refresh_interval = MIN_REFRESH_INTERVAL.take(&mut args)?;
    let max_principals_per_service_account = MAX_PRINCIPALS_PER_SERVICE_ACCOUNT.take(&mut args)?;
    let (log_level, log_level_given) = LOG_LEVEL.take_noting(&mut args)?;
    let (log_format, log_format_given) = LOG_FORMAT.take_noting(&mut args)?;
    let zap = ZapFlags {
        log_level: ZAP_LOG_LEVEL.take(&mut args)?,
        encoder: ZAP_ENCODER.take(&mut args)?,
        devel: ZAP_DEVEL.take(&mut args)?,
        stacktrace_level: ZAP_STACKTRACE_LEVEL.take(&mut args)?,
        time_encoding: ZAP_TIME_ENCODING.take(&mut args)?,
    }
    .resolve(log_level_given, log_format_given);
    let rest = args.finish();
    if let Some(unknown) = rest.first() {
        return Err(format!(
            "unknown argument {:?}; see --help",
            unknown.to_string_lossy()
        ));
    }
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
    Ok(Command::Run(Box::new(Config {
        kubeconfig,
        namespace,
        workers,
        metrics_bind_address,
        health_probe_bind_address,
        leader_elect,
        leader_election_namespace,
        leader_election_id,
        lease_duration,
        renew_deadline,
        retry_period,
        pod_eviction: !disable_pod_eviction,
        aws,
        google,
        azure,
        azure_registry_suffixes,
        provider_ca_bundle,
        provider_timeout,
        provider_rate,
        token_expiration,
        min_refresh_interval,
        max_principals_per_service_account,
        log_level: zap.log_level.unwrap_or(log_level),
        log_format: zap.log_format.unwrap_or(log_format),
        notices: zap.notices,
    })))
}

/// The original's logging flags (controller-runtime's zap options), as given and checked.
#[derive(Debug, Default)]
struct ZapFlags {
    log_level: Zap<log::LevelFilter>,
    encoder: Zap<LogFormat>,
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
    /// Maps the flags onto `--log-level` and `--log-format` unless those were given themselves. (Their
    /// parsers refuse the values the original refuses too, so a typo fails the same way after the swap.)
    fn resolve(self, log_level_given: bool, log_format_given: bool) -> ZapResolved {
        let mut out = ZapResolved::default();
        if let Some((value, level)) = self.log_level {
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
        if let Some((value, format)) = self.encoder {
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
            out.notices.push(format!(
                "--zap-stacktrace-level={value} ignored: no stack traces are logged"
            ));
        }
        if let Some(value) = self.time_encoding {
            out.notices.push(format!(
                "--zap-time-encoding={value} ignored: times are always RFC 3339 in UTC"
            ));
        }
        out
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
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
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

    /// The error `args` are refused with.
    fn refused(args: &[&str]) -> String {
        match parse(args.iter().map(OsString::from).collect()) {
            Err(e) => e,
            Ok(other) => panic!("{args:?}: {other:?}"),
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
            let err = refused(args);
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
            let err = refused(args);
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
        let readme = include_str!("../../README.md");
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
