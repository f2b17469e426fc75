//! The `check` command line: `check NAMESPACE/NAME [--image IMAGE] [--output text|json]` plus the
//! controller's connection and provider flags, which are validated by the controller's own flag table.

use std::ffi::OsString;

use super::report::Output;
use crate::config::defs::*;
use crate::config::{self, Command, Config};

/// The controller flags that mean something to `check`: how to reach the cluster and the providers, and
/// how to log. Leader election, workers and listeners do not apply.
const SHARED_FLAGS: &[&Flag] = &[
    &KUBECONFIG.flag,
    &AWS_STS_ENDPOINT.flag,
    &AWS_ECR_ENDPOINT.flag,
    &AWS_SESSION_DURATION.flag,
    &GOOGLE_STS_ENDPOINT.flag,
    &GOOGLE_IAMCREDENTIALS_ENDPOINT.flag,
    &GOOGLE_TOKEN_LIFETIME.flag,
    &AZURE_AUTHORITY_HOST.flag,
    &AZURE_ACR_ENDPOINT.flag,
    &PROVIDER_CA_BUNDLE.flag,
    &PROVIDER_TIMEOUT.flag,
    &SERVICE_ACCOUNT_TOKEN_EXPIRATION.flag,
    &LOG_LEVEL.flag,
    &LOG_FORMAT.flag,
];

fn is_shared(name: &str) -> bool {
    SHARED_FLAGS.iter().any(|f| f.name == name)
}

/// A validated `check` command line.
#[derive(Debug)]
pub(crate) struct CheckArgs {
    pub namespace: String,
    pub name: String,
    pub image: Option<String>,
    pub output: Output,
    pub config: Config,
    /// Whether `--log-level` was given; `check` logs only warnings otherwise, so its report stands alone.
    pub log_level_given: bool,
}

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Parsed {
    Check(Box<CheckArgs>),
    Help,
}

/// The help text of `check`.
pub(crate) fn help() -> String {
    let mut text = String::from(
        "Usage: image-pull-secrets-provisioner check NAMESPACE/NAME [--image IMAGE] [--output text|json] [FLAGS]\n\n\
         Explains one ServiceAccount's federation chain end to end: its configuration, a token's claims, the issuer's\n\
         discovery documents, each principal's exchange (with the fix when it fails), a pull test of IMAGE with the\n\
         credentials obtained, and the secrets and Warning events in the cluster. The only API write is one\n\
         TokenRequest. Exit status: 0 every step passed, 1 a step failed, 2 usage error.\n\n\
         Flags:\n  --image IMAGE                                HEAD this image's manifest with each principal's credentials\n  \
         --output FORMAT                              text (default) or json (one object per step and line)\n",
    );
    for flag in FLAGS.iter().filter(|f| is_shared(f.name)) {
        let name = format!("{} {}", flag.name, flag.value.unwrap_or_default());
        text.push_str(&format!("  {name:<44} {}\n", flag.help));
    }
    text
}

/// Parses the arguments after `check`.
pub(crate) fn parse(args: Vec<OsString>) -> Result<Parsed, String> {
    let mut target = None;
    let mut image = None;
    let mut output = Output::Text;
    let mut shared = Vec::new();
    let mut log_level_given = false;
    let mut args = args.into_iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(Parsed::Help);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if arg.starts_with("--") => {
                (name.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("flag {name} needs a value"))
        };
        match name.as_str() {
            "--image" => image = Some(value("--image")?),
            "--output" => {
                output = match value("--output")?.as_str() {
                    "text" => Output::Text,
                    "json" => Output::Json,
                    other => return Err(format!("flag --output: {other:?} is not text or json")),
                }
            }
            flag if is_shared(flag) => {
                log_level_given |= flag == LOG_LEVEL.flag.name;
                shared.push(OsString::from(flag));
                shared.push(OsString::from(value(flag)?));
            }
            flag if flag.starts_with('-') => {
                return Err(if FLAGS.iter().any(|f| f.name == flag) {
                    format!("flag {flag} does not apply to check; see check --help")
                } else {
                    format!("unknown argument {flag:?}; see check --help")
                })
            }
            _ if target.is_none() => target = Some(arg),
            _ => {
                return Err(format!(
                    "unexpected argument {arg:?}: check takes one NAMESPACE/NAME"
                ))
            }
        }
    }
    let target = target.ok_or("check needs the ServiceAccount as NAMESPACE/NAME")?;
    let (namespace, name) = target
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
        .ok_or_else(|| format!("{target:?} is not NAMESPACE/NAME"))?;
    let config = match config::parse(shared)? {
        Command::Run(config) => *config,
        Command::Help | Command::Version => return Ok(Parsed::Help),
    };
    Ok(Parsed::Check(Box::new(CheckArgs {
        namespace: namespace.to_string(),
        name: name.to_string(),
        image,
        output,
        config,
        log_level_given,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Parsed, String> {
        parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn target_image_output_and_shared_flags() {
        let Parsed::Check(args) = parse_strs(&[
            "team-a/app",
            "--image=reg.example/app:1",
            "--output",
            "json",
            "--kubeconfig",
            "/k",
            "--google-sts-endpoint=http://127.0.0.1:1",
        ])
        .unwrap() else {
            panic!("not a check")
        };
        assert_eq!(
            (args.namespace.as_str(), args.name.as_str()),
            ("team-a", "app")
        );
        assert_eq!(args.image.as_deref(), Some("reg.example/app:1"));
        assert_eq!(args.output, Output::Json);
        assert_eq!(
            args.config.kubeconfig.as_deref(),
            Some(std::path::Path::new("/k"))
        );
        assert_eq!(args.config.google.sts_endpoint, "http://127.0.0.1:1");
        assert!(!args.log_level_given);
    }

    #[test]
    fn usage_errors_say_what_is_wrong() {
        for (args, want) in [
            (&[][..], "needs the ServiceAccount"),
            (&["app"][..], "is not NAMESPACE/NAME"),
            (&["a/b/c"][..], "is not NAMESPACE/NAME"),
            (&["a/b", "c/d"][..], "unexpected argument"),
            (&["a/b", "--output", "yaml"][..], "not text or json"),
            (&["a/b", "--workers", "2"][..], "does not apply to check"),
            (&["a/b", "--nope"][..], "unknown argument"),
            (&["a/b", "--image"][..], "needs a value"),
            (
                &["a/b", "--provider-timeout", "soon"][..],
                "--provider-timeout",
            ),
        ] {
            match parse_strs(args) {
                Err(e) => assert!(e.contains(want), "{args:?}: {e}"),
                Ok(other) => panic!("{args:?}: {other:?}"),
            }
        }
        assert!(matches!(parse_strs(&["--help"]), Ok(Parsed::Help)));
    }

    #[test]
    fn help_lists_the_shared_flags() {
        let text = help();
        for flag in SHARED_FLAGS {
            assert!(text.contains(flag.name), "{}", flag.name);
        }
    }
}
