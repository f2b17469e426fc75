//! What to change when an exchange fails, with this ServiceAccount's values filled in. Pure.
//!
//! One submodule per provider, each with the same entry point (`exchange_fix`); [`exchange_fix`] only
//! dispatches on the principal, so a new provider adds a file and one match arm.

mod aws;
mod azure;
mod google;

use crate::cloud::{CloudError, Principal};

/// Who asks: the values a cloud matches a ServiceAccount token against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subject<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// The audience annotation, which the token carries as `aud`.
    pub audience: &'a str,
    /// The token's `iss`.
    pub issuer: &'a str,
}

impl Subject<'_> {
    /// The token's `sub`.
    pub(crate) fn subject(&self) -> String {
        super::claims::service_account_subject(self.namespace, self.name)
    }
}

/// The instructions that fix `error` for `principal`.
pub(crate) fn exchange_fix(
    principal: &Principal,
    subject: &Subject,
    error: &CloudError,
) -> Vec<String> {
    match principal {
        Principal::Aws(target) => aws::exchange_fix(target, subject, error),
        Principal::Google(target) => google::exchange_fix(target, subject, error),
        Principal::Azure(target) => azure::exchange_fix(target, subject, error),
    }
}

/// One line saying what the cloud trusts for this principal, shown when the exchange succeeded.
pub(crate) fn trusted_as(principal: &Principal, subject: &Subject) -> String {
    match principal {
        Principal::Aws(target) => aws::trusted_as(target, subject),
        Principal::Google(target) => google::trusted_as(target, subject),
        Principal::Azure(target) => azure::trusted_as(target, subject),
    }
}

/// A transport failure: the provider was not reached at all.
fn unreachable_fix(error: &CloudError) -> Option<String> {
    error.message.contains("cannot reach").then(|| {
        "the provider endpoint was not reached: check the endpoint flags, HTTPS_PROXY/NO_PROXY and \
         --provider-ca-bundle, and that this network may reach it"
            .to_string()
    })
}

/// The provider's own words: an error message without the generic hint the client appends ("; check ..."),
/// which mentions every possible cause and would match them all.
fn provider_words(error: &CloudError) -> &str {
    error.message.split("; check").next().unwrap_or_default()
}

/// What to change when the registry does not accept `principal`'s credentials at all (401).
pub(crate) fn pull_refused_fix(principal: &Principal, registry: &str) -> String {
    match principal {
        Principal::Aws(target) => aws::pull_refused_fix(target, registry),
        Principal::Google(target) => google::pull_refused_fix(target, registry),
        Principal::Azure(target) => azure::pull_refused_fix(target, registry),
    }
}

/// What to change when the registry accepts the credentials but denies the repository (403).
pub(crate) fn pull_denied_fix(principal: &Principal, repository: &str) -> String {
    match principal {
        Principal::Aws(target) => aws::pull_denied_fix(target, repository),
        Principal::Google(target) => google::pull_denied_fix(target, repository),
        Principal::Azure(target) => azure::pull_denied_fix(target, repository),
    }
}
