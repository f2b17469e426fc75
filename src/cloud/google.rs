//! Google Artifact Registry credentials: STS token exchange, then IAM Credentials generateAccessToken.
//! PLACEHOLDER: replaced by the Google implementation.

use super::http::ProviderHttp;
use super::{CloudError, RegistryCredentials, Sensitive};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleTarget {
    pub provider: String,
    pub service_account_email: String,
}

pub struct GoogleConfig {}

pub struct GoogleClient {
    _http: ProviderHttp,
}

impl GoogleClient {
    pub fn new(_config: GoogleConfig, http: ProviderHttp) -> Self {
        GoogleClient { _http: http }
    }

    pub fn registry_credentials(
        &self,
        _target: &GoogleTarget,
        _subject_token: &Sensitive,
    ) -> Result<RegistryCredentials, CloudError> {
        Err(CloudError::permanent("google", "not implemented"))
    }
}
