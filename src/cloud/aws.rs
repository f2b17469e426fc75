//! Amazon ECR credentials: STS AssumeRoleWithWebIdentity, then a SigV4-signed ECR GetAuthorizationToken.
//! PLACEHOLDER: replaced by the AWS implementation.

use super::http::ProviderHttp;
use super::{CloudError, RegistryCredentials, Sensitive};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsTarget {
    pub role_arn: String,
    pub session_name: String,
}

pub struct AwsConfig {}

pub struct AwsClient {
    _http: ProviderHttp,
}

impl AwsClient {
    pub fn new(_config: AwsConfig, http: ProviderHttp) -> Self {
        AwsClient { _http: http }
    }

    pub fn registry_credentials(
        &self,
        _target: &AwsTarget,
        _subject_token: &Sensitive,
    ) -> Result<RegistryCredentials, CloudError> {
        Err(CloudError::permanent("aws", "not implemented"))
    }
}
