//! Credential exchange with the cloud providers: a ServiceAccount token goes in, registry credentials come out.
//!
//! Each provider lives in its own module and is reached by the reconciler only through [`CredentialSource`],
//! so tests can substitute a stand-in and the reconciler never sees provider-specific types beyond [`Principal`].

pub mod aws;
pub mod azure;
pub mod google;
pub mod http;
pub(crate) mod jwt;
pub mod redact;
#[cfg(test)]
pub mod scripted;
pub mod sigv4;

use std::fmt;

use chrono::{DateTime, Utc};

use crate::retry::Retry;
use http::HttpResponse;

/// A value that must never be printed: tokens, passwords, secret keys.
///
/// `Debug` and `Display` print `<redacted>`; the value is reached only through [`Sensitive::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive(String);

impl Sensitive {
    pub fn new(value: impl Into<String>) -> Self {
        Sensitive(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Docker credentials for one registry, valid until `expires_at`.
#[derive(Debug, Clone)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: Sensitive,
    pub expires_at: DateTime<Utc>,
}

/// Who the credentials are obtained for: one principal of a ServiceAccount's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    Aws(aws::AwsTarget),
    Google(google::GoogleTarget),
    Azure(azure::AzureTarget),
}

impl Principal {
    /// The provider's name as used in metrics labels and log fields.
    pub(crate) fn provider(&self) -> &'static str {
        match self {
            Principal::Aws(_) => "aws",
            Principal::Google(_) => "google",
            Principal::Azure(_) => "azure",
        }
    }
}

/// Why an exchange failed: the step that failed and the provider's own words.
///
/// The message never contains a token, key or signature: every constructor takes text that came from the
/// provider's error body or from our own description, never from request material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudError {
    /// The failing call, e.g. `sts AssumeRoleWithWebIdentity` or `iamcredentials generateAccessToken`.
    pub step: &'static str,
    /// What went wrong and, where we can tell, what the operator should check.
    pub message: String,
    /// How the reconcile should try again: [`Retry::Permanent`] when a person must change something,
    /// [`Retry::Transient`] for throttling, outages and connection errors, and [`Retry::After`] the
    /// provider's `Retry-After` (a 429 or 503 that says when to come back).
    pub retry: Retry,
}

impl CloudError {
    pub(crate) fn permanent(step: &'static str, message: impl Into<String>) -> Self {
        CloudError {
            step,
            message: message.into(),
            retry: Retry::Permanent,
        }
    }

    pub(crate) fn retryable(step: &'static str, message: impl Into<String>) -> Self {
        CloudError {
            step,
            message: message.into(),
            retry: Retry::Transient,
        }
    }

    /// The error for a non-success answer, retryable by its status (408, 429, 5xx) and then carrying its
    /// `Retry-After`.
    pub(crate) fn from_status(
        step: &'static str,
        response: &HttpResponse,
        message: impl Into<String>,
    ) -> Self {
        CloudError {
            step,
            message: message.into(),
            retry: Retry::from_answer(is_retryable_status(response.status), response.retry_after),
        }
    }
}

/// Throttling and server-side failures may pass; another 4xx answer will be the same next time.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429) || (500..600).contains(&status)
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.message)
    }
}

impl std::error::Error for CloudError {}

/// Exchanges a ServiceAccount token for registry credentials.
///
/// Implemented by [`Clouds`] for the real providers; tests may implement it with a stand-in.
pub(crate) trait CredentialSource: Send + Sync {
    fn registry_credentials(
        &self,
        principal: &Principal,
        subject_token: &Sensitive,
    ) -> Result<RegistryCredentials, CloudError>;
}

/// The real providers, each configured from flags.
pub(crate) struct Clouds {
    pub aws: aws::AwsClient,
    pub google: google::GoogleClient,
    pub azure: azure::AzureClient,
}

impl CredentialSource for Clouds {
    fn registry_credentials(
        &self,
        principal: &Principal,
        subject_token: &Sensitive,
    ) -> Result<RegistryCredentials, CloudError> {
        match principal {
            Principal::Aws(target) => self.aws.registry_credentials(target, subject_token),
            Principal::Google(target) => self.google.registry_credentials(target, subject_token),
            Principal::Azure(target) => self.azure.registry_credentials(target, subject_token),
        }
    }
}
