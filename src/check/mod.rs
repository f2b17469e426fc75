//! `check NAMESPACE/NAME`: walks one ServiceAccount's federation chain end to end and says, step by step,
//! what works, what does not, and what to change — before any pod depends on it.
//!
//! It goes through the controller's own code paths: annotations are parsed by [`crate::spec`], the token
//! is minted by the same TokenRequest call, and credentials come from the same [`crate::cloud::Clouds`]
//! exchange. What must stay true: the only API write is that one TokenRequest, and no token, key or
//! password appears in the output at any log level (every rendering is scrubbed by `report::Report`).
//!
//! Steps: `configuration`, `token`, `issuer`, `exchange` (per principal), `pull` (per principal, with
//! `--image`), `secrets`, `events`. One module per step group; `fix` holds the per-provider fixes.

mod args;
mod claims;
mod cluster;
mod configuration;
mod fix;
mod issuer;
pub(crate) mod registry;
mod report;
mod web;

use std::ffi::OsString;

use chrono::Utc;

use crate::cloud::aws::AwsClient;
use crate::cloud::azure::AzureClient;
use crate::cloud::google::GoogleClient;
use crate::cloud::http::{ProviderHttp, RetryPolicy};
use crate::cloud::{Clouds, CredentialSource, Principal, RegistryCredentials, Sensitive};
use crate::kube::types::ServiceAccount;
use crate::kube::{Client, Reason};
use crate::secret;
use crate::spec::{self, Parsed};
use args::{CheckArgs, Parsed as ParsedArgs};
use report::{Report, Status, Step};

/// Exit status: every step passed.
pub(crate) const EXIT_PASSED: u8 = 0;
/// Exit status: a step failed.
pub(crate) const EXIT_FAILED: u8 = 1;
/// Exit status: the command line is wrong.
pub(crate) const EXIT_USAGE: u8 = 2;

/// Runs `check` with the arguments after the word `check`; returns the exit status.
pub fn main(args: Vec<OsString>) -> u8 {
    let args = match args::parse(args) {
        Ok(ParsedArgs::Help) => {
            print!("{}", args::help());
            return EXIT_PASSED;
        }
        Ok(ParsedArgs::Check(args)) => args,
        Err(message) => {
            eprintln!("image-pull-secrets-provisioner check: {message}");
            return EXIT_USAGE;
        }
    };
    let level = if args.log_level_given {
        args.config.log_level
    } else {
        log::LevelFilter::Warn
    };
    if let Err(message) = crate::logger::init(level, args.config.log_format) {
        eprintln!("image-pull-secrets-provisioner check: {message}");
        return EXIT_FAILED;
    }
    let report = run(&args);
    print!("{}", report.render(args.output));
    if report.passed() {
        EXIT_PASSED
    } else {
        EXIT_FAILED
    }
}

/// Every step, in order; later steps are skipped when what they need is missing.
fn run(args: &CheckArgs) -> Report {
    let mut report = Report::default();
    let (namespace, name) = (args.namespace.as_str(), args.name.as_str());
    let client = match crate::controller::connect(&args.config) {
        Ok((client, _)) => client,
        Err(why) => {
            report.push(
                Step::new("connection", Status::Fail)
                    .detail(format!("cannot connect to the API server: {why}"))
                    .fix("check --kubeconfig (or KUBECONFIG, or the in-cluster ServiceAccount)"),
            );
            return report;
        }
    };
    let service_account: ServiceAccount = match client.get(Some(namespace), name) {
        Ok(sa) => sa,
        Err(e) => {
            let fix = if e.is(Reason::NotFound) {
                format!("check the namespace and name: kubectl -n {namespace} get serviceaccounts")
            } else {
                "check the API server connection and that you may get serviceaccounts".to_string()
            };
            report.push(
                Step::new("configuration", Status::Fail)
                    .detail(format!("reading serviceaccount {namespace}/{name}: {e}"))
                    .fix(fix),
            );
            return report;
        }
    };

    let parsed = spec::parse(namespace, name, &service_account.metadata.annotations);
    report.push(configuration::evaluate(namespace, name, &parsed));
    let wanted = match &parsed {
        Parsed::Configured(configuration) => {
            chain(args, &client, configuration, &mut report);
            configuration.secret_names()
        }
        _ => {
            for step in ["token", "issuer", "exchange"] {
                report.push(Step::new(step, Status::Skip).detail("no valid configuration"));
            }
            Vec::new()
        }
    };

    let now = Utc::now();
    report.push(
        match cluster::fetch_secrets(&client, &service_account, &wanted) {
            Ok(secrets) => cluster::evaluate_secrets(&service_account, &secrets, now),
            Err(why) => Step::new("secrets", Status::Fail).detail(why),
        },
    );
    report.push(
        match cluster::fetch_warning_events(&client, &service_account) {
            Ok(events) => cluster::evaluate_events(&events, now),
            Err(why) => Step::new("events", Status::Warn).detail(why),
        },
    );
    report
}

/// Token, issuer, exchanges and pull tests of a valid configuration.
fn chain(
    args: &CheckArgs,
    client: &Client,
    configuration: &spec::Configuration,
    report: &mut Report,
) {
    let (namespace, name) = (args.namespace.as_str(), args.name.as_str());
    let audience = configuration.audience.as_str();
    let token = match client.create_token(
        namespace,
        name,
        &[audience],
        args.config.token_expiration,
    ) {
        Ok(issued) => issued.token,
        Err(e) => {
            let mut step = Step::new("token", Status::Fail).detail(format!(
                "requesting a serviceaccount token with audience {audience:?}: {e}"
            ));
            if e.is(Reason::Forbidden) {
                step.fix.push(format!(
                    "the identity running check needs create on serviceaccounts/token in namespace {namespace}"
                ));
            }
            report.push(step);
            return;
        }
    };
    report.forbid(token.expose());
    let claims = match claims::decode(token.expose()) {
        Ok(claims) => claims,
        Err(why) => {
            report.push(Step::new("token", Status::Fail).detail(why));
            return;
        }
    };
    report.push(token_step(&claims, namespace, name, audience));

    let web = match web::Web::new(
        args.config.provider_ca_bundle.as_deref(),
        args.config.provider_timeout,
    ) {
        Ok(web) => web,
        Err(why) => {
            report.push(Step::new("issuer", Status::Fail).detail(why));
            return;
        }
    };
    report.push(issuer::evaluate(
        &claims,
        &issuer::fetch(&web, &claims.issuer),
    ));

    let clouds = match provider_clients(args) {
        Ok(clouds) => clouds,
        Err(why) => {
            report.push(Step::new("exchange", Status::Fail).detail(why));
            return;
        }
    };
    let subject = fix::Subject {
        namespace,
        name,
        audience,
        issuer: &claims.issuer,
    };
    let image = args.image.as_deref().map(registry::parse_image);
    for principal in &configuration.principals {
        let principal_id = secret::principal_id(principal);
        let credentials = exchange(&clouds, principal, &token, &subject, report);
        match (&image, credentials) {
            (None, _) => {}
            (Some(_), None) => report.push(
                Step::new("pull", Status::Skip)
                    .for_principal(principal_id)
                    .detail("no credentials"),
            ),
            (Some(Err(why)), Some(_)) => report.push(
                Step::new("pull", Status::Fail)
                    .for_principal(principal_id)
                    .detail(format!("--image: {why}")),
            ),
            (Some(Ok(image)), Some(credentials)) => report.push(pull_step(
                &web,
                image,
                principal,
                &credentials,
                configuration,
            )),
        }
    }
}

/// The provider clients, built as the controller builds them.
fn provider_clients(args: &CheckArgs) -> Result<Clouds, String> {
    let http = ProviderHttp::new(
        args.config.provider_ca_bundle.as_deref(),
        args.config.provider_timeout,
        RetryPolicy::default(),
    )?
    .with_rate_limit(args.config.provider_rate);
    Ok(Clouds {
        aws: AwsClient::new(args.config.aws.clone(), http.for_provider("aws")),
        google: GoogleClient::new(args.config.google.clone(), http.for_provider("google")),
        azure: AzureClient::new(args.config.azure.clone(), http.for_provider("azure")),
    })
}

fn token_step(claims: &claims::Claims, namespace: &str, name: &str, audience: &str) -> Step {
    let expected_subject = claims::service_account_subject(namespace, name);
    let mut step = Step::new("token", Status::Pass)
        .detail(format!("iss: {}", claims.issuer))
        .detail(format!("sub: {}", claims.subject))
        .detail(format!("aud: {}", claims.audiences.join(", ")))
        .detail(format!(
            "exp: {}",
            claims
                .expires_at
                .map(secret::format_time)
                .unwrap_or_else(|| "none".to_string())
        ))
        .detail(format!(
            "kid: {} ({})",
            claims.key_id.as_deref().unwrap_or("none"),
            claims.algorithm.as_deref().unwrap_or("no alg")
        ));
    if claims.subject != expected_subject || !claims.audiences.iter().any(|a| a == audience) {
        step.set_status(Status::Fail);
        step.fix.push(format!(
            "the API server issued a token for sub {:?} and aud {:?}, not {expected_subject} and {audience}: check --api-audiences and admission webhooks that rewrite TokenRequests",
            claims.subject, claims.audiences
        ));
    }
    step
}

/// One principal's exchange; returns the credentials when it worked.
fn exchange(
    clouds: &Clouds,
    principal: &Principal,
    token: &Sensitive,
    subject: &fix::Subject,
    report: &mut Report,
) -> Option<RegistryCredentials> {
    let principal_id = secret::principal_id(principal);
    match clouds.registry_credentials(principal, token) {
        Ok(credentials) => {
            report.forbid(credentials.password.expose());
            // As Basic authentication carries it, should a registry echo the header.
            report.forbid(&format!(
                "{}:{}",
                credentials.username,
                credentials.password.expose()
            ));
            let now = Utc::now();
            let expiry = if credentials.expires_at <= now {
                format!(
                    "expires at {} (already past: the controller refreshes such secrets at its minimum interval)",
                    secret::format_time(credentials.expires_at)
                )
            } else {
                format!(
                    "expires at {} (in {})",
                    secret::format_time(credentials.expires_at),
                    cluster::human_duration(credentials.expires_at - now)
                )
            };
            let status = if credentials.expires_at <= now {
                Status::Warn
            } else {
                Status::Pass
            };
            report.push(
                Step::new("exchange", status)
                    .for_principal(principal_id)
                    .detail(fix::trusted_as(principal, subject))
                    .detail(format!("username: {}", credentials.username))
                    .detail(expiry),
            );
            Some(credentials)
        }
        Err(error) => {
            let mut step = Step::new("exchange", Status::Fail)
                .for_principal(principal_id)
                .detail(format!(
                    "obtaining registry credentials for {principal_id}: {error}"
                ));
            step.fix = fix::exchange_fix(principal, subject, &error);
            report.push(step);
            None
        }
    }
}

fn pull_step(
    web: &web::Web,
    image: &registry::ImageRef,
    principal: &Principal,
    credentials: &RegistryCredentials,
    configuration: &spec::Configuration,
) -> Step {
    let principal_id = secret::principal_id(principal);
    let step = |status| Step::new("pull", status).for_principal(principal_id);
    let name = format!(
        "{}/{}:{}",
        image.registry, image.repository, image.reference
    );
    if image.registry != configuration.registry {
        let regions = (
            crate::cloud::aws::parse_registry_host(&image.registry, None),
            crate::cloud::aws::parse_registry_host(&configuration.registry, None),
        );
        if let (Ok(image_host), Ok(configured)) = regions {
            if image_host.region != configured.region {
                return step(Status::Fail)
                    .detail(format!(
                        "the image is in ECR region {}, but the credentials are for {} in region {} (the registry annotation); \
                         an ECR token is valid only in the region it was obtained for",
                        image_host.region, configuration.registry, configured.region
                    ))
                    .fix(format!(
                        "set the registry annotation to {} (with a role allowed to pull there), or pull from {}",
                        image.registry, configuration.registry
                    ));
            }
        }
        return step(Status::Fail)
            .detail(format!(
                "the image is on {}, but the credentials are for {} (the registry annotation); \
                 the kubelet offers a secret only to its own registry host, and ECR credentials are valid only in their own account and region",
                image.registry, configuration.registry
            ))
            .fix(format!(
                "set the registry annotation to {} (with a role allowed to pull there), or pull the image from {}",
                image.registry, configuration.registry
            ));
    }
    match registry::pull_test(web, image, credentials) {
        registry::PullOutcome::Pullable { digest, media_type } => step(Status::Pass)
            .detail(format!("{name} is pullable with these credentials"))
            .detail(format!(
                "digest {}, {}",
                digest.as_deref().unwrap_or("not given"),
                media_type.as_deref().unwrap_or("no media type")
            )),
        registry::PullOutcome::Refused(answer) => step(Status::Fail)
            .detail(format!("{} refused the credentials: {answer}", image.registry))
            .fix(fix::pull_refused_fix(principal, &image.registry)),
        registry::PullOutcome::Denied(answer) => step(Status::Fail)
            .detail(format!(
                "{} accepted the credentials but denies pulling {}: {answer}",
                image.registry, image.repository
            ))
            .fix(fix::pull_denied_fix(principal, &image.repository)),
        registry::PullOutcome::NotFound(answer) => step(Status::Fail)
            .detail(format!(
                "{name} does not exist (the credentials were accepted): {answer}"
            ))
            .fix("check the repository and tag (or digest) of the image"),
        registry::PullOutcome::Other(answer) => step(Status::Fail)
            .detail(format!("pulling {name}: {answer}"))
            .fix("check that this machine reaches the registry over https (proxy, --provider-ca-bundle)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(subject: &str, audience: &str) -> claims::Claims {
        claims::Claims {
            issuer: "https://issuer.example".to_string(),
            subject: subject.to_string(),
            audiences: vec![audience.to_string()],
            expires_at: chrono::DateTime::from_timestamp(1_900_000_000, 0),
            key_id: Some("k1".to_string()),
            algorithm: Some("RS256".to_string()),
        }
    }

    #[test]
    fn token_step_shows_the_claims_and_fails_on_a_rewritten_token() {
        let step = token_step(
            &claims("system:serviceaccount:ns:sa", "aud"),
            "ns",
            "sa",
            "aud",
        );
        assert_eq!(step.status, Status::Pass);
        assert_eq!(
            step.detail,
            vec![
                "iss: https://issuer.example",
                "sub: system:serviceaccount:ns:sa",
                "aud: aud",
                "exp: 2030-03-17T17:46:40Z",
                "kid: k1 (RS256)"
            ]
        );
        let step = token_step(
            &claims("system:serviceaccount:ns:sa", "other"),
            "ns",
            "sa",
            "aud",
        );
        assert_eq!(step.status, Status::Fail);
        assert!(step.fix[0].contains("--api-audiences"), "{:?}", step.fix);
    }
}
