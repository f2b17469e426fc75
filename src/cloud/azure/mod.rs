//! Azure Container Registry credentials through Microsoft Entra workload identity federation, with no client
//! secret anywhere.
//!
//! The ServiceAccount token is the client assertion of an Entra client-credentials request for ACR's scope,
//! at the authority of the registry's cloud; ACR's `/oauth2/exchange` turns the Entra access token into a
//! registry refresh token, which is the Docker password (user `00000000-0000-0000-0000-000000000000`) and
//! expires with its own `exp`.
//!
//! Read like the other providers: naming and validation in `names`, the wire format in `wire`, error answers
//! and what to fix in `error`; [`AzureClient`] only strings them together around two HTTP calls. What must
//! stay true: no token — the assertion, the Entra access token or the refresh token — reaches an error, a log
//! line or a `Debug` output.

mod error;
pub(crate) mod names;
mod wire;

use super::http::{HttpResponse, ProviderHttp};
use super::{CloudError, RegistryCredentials, Sensitive};
use crate::percent;
use error::{acr_error, entra_error, Context};
use wire::Presented;

pub(crate) use names::{
    parse_registry, validate_client_id, validate_tenant_id, AcrRegistry, CLOUD_ANNOTATION,
};
pub(crate) use wire::DOCKER_USERNAME;

/// The failing call named in errors about the Entra token request.
pub(crate) const STEP_ENTRA: &str = "entra token request";
/// The failing call named in errors about ACR's token exchange.
pub const STEP_ACR: &str = "acr token exchange";
/// The audience Entra expects of federated tokens, and the one to put in the audience annotation.
pub const DOCUMENTED_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The placeholder of [`AzureConfig::acr_endpoint`] replaced by the registry host.
pub(crate) const REGISTRY_PLACEHOLDER: &str = "{registry}";

/// One Azure principal of a ServiceAccount: the application (or managed identity) that trusts the cluster, its
/// tenant, and the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AzureTarget {
    pub client_id: String,
    pub tenant_id: String,
    pub registry: AcrRegistry,
}

/// Endpoint overrides, from flags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AzureConfig {
    /// Replaces the authority of the registry's cloud, e.g. `https://login.microsoftonline.us` (air gaps,
    /// sovereign clouds beyond the three, tests).
    pub authority_host: Option<String>,
    /// Replaces `https://{registry}` as the base of the ACR exchange (private endpoints, tests).
    pub acr_endpoint: Option<String>,
}

/// Obtains ACR credentials from Entra and the registry.
pub(crate) struct AzureClient {
    config: AzureConfig,
    http: ProviderHttp,
}

impl std::fmt::Debug for AzureClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AzureClient {
    pub(crate) fn new(config: AzureConfig, http: ProviderHttp) -> Self {
        AzureClient { config, http }
    }

    /// The authority that issues tokens for `target`: the override, or its registry's cloud's.
    pub(crate) fn authority(&self, target: &AzureTarget) -> String {
        match &self.config.authority_host {
            Some(host) => host.trim_end_matches('/').to_string(),
            None => format!("https://{}", target.registry.cloud.authority_host()),
        }
    }

    /// Exchanges a ServiceAccount token for ACR credentials of `target`'s application.
    ///
    /// Throttling, 5xx answers and transport failures are retried briefly per call; anything else fails at once.
    pub(crate) fn registry_credentials(
        &self,
        target: &AzureTarget,
        subject_token: &Sensitive,
    ) -> Result<RegistryCredentials, CloudError> {
        let authority = self.authority(target);
        let context = Context {
            client_id: &target.client_id,
            tenant: &target.tenant_id,
            registry: &target.registry.host,
            authority: &authority,
            presented: Presented::of(subject_token),
        };
        let access_token = self
            .http
            .with_retries(|| self.entra_token(target, subject_token, &authority, &context))?;
        self.http
            .with_retries(|| self.acr_exchange(target, subject_token, &access_token, &context))
    }

    /// Entra: ServiceAccount token in as client assertion, an access token for ACR out.
    fn entra_token(
        &self,
        target: &AzureTarget,
        assertion: &Sensitive,
        authority: &str,
        context: &Context<'_>,
    ) -> Result<Sensitive, CloudError> {
        let url = format!(
            "{authority}/{}/oauth2/v2.0/token",
            percent::encode(&target.tenant_id, b"")
        );
        let body = wire::build_token_body(&target.client_id, assertion);
        let response = self
            .post(STEP_ENTRA, &url, body.expose())
            .map_err(|e| in_context(e, context, STEP_ENTRA))?;
        let secrets = [assertion.expose()];
        if response.status != 200 {
            return Err(entra_error(&response, context, &secrets));
        }
        wire::parse_token_response(&response.body)
            .map_err(|why| unexpected(STEP_ENTRA, context, &url, &why))
    }

    /// ACR: Entra access token in, registry refresh token out.
    fn acr_exchange(
        &self,
        target: &AzureTarget,
        assertion: &Sensitive,
        access_token: &Sensitive,
        context: &Context<'_>,
    ) -> Result<RegistryCredentials, CloudError> {
        let base = match &self.config.acr_endpoint {
            Some(endpoint) => endpoint
                .replace(REGISTRY_PLACEHOLDER, &target.registry.host)
                .trim_end_matches('/')
                .to_string(),
            None => format!("https://{}", target.registry.host),
        };
        let url = format!(
            "{base}/oauth2/exchange?api-version={}",
            wire::EXCHANGE_API_VERSION
        );
        let body =
            wire::build_exchange_body(&target.registry.host, &target.tenant_id, access_token);
        let response = self
            .post(STEP_ACR, &url, body.expose())
            .map_err(|e| in_context(e, context, STEP_ACR))?;
        let secrets = [assertion.expose(), access_token.expose()];
        if response.status != 200 {
            return Err(acr_error(&response, context, &secrets));
        }
        let (password, expires_at) = wire::parse_exchange_response(&response.body)
            .map_err(|why| unexpected(STEP_ACR, context, &url, &why))?;
        Ok(RegistryCredentials {
            username: DOCKER_USERNAME.to_string(),
            password,
            expires_at,
        })
    }

    fn post(&self, step: &'static str, url: &str, body: &str) -> Result<HttpResponse, CloudError> {
        self.http.post(
            step,
            url,
            &[],
            "application/x-www-form-urlencoded",
            body.as_bytes(),
        )
    }
}

/// Names the principal (Entra) or registry (ACR) in front of a transport failure.
fn in_context(error: CloudError, context: &Context<'_>, step: &'static str) -> CloudError {
    let who = if step == STEP_ENTRA {
        format!(
            "application {} in tenant {}",
            context.client_id, context.tenant
        )
    } else {
        format!("registry {}", context.registry)
    };
    CloudError {
        message: format!("{who}: {}", error.message),
        ..error
    }
}

fn unexpected(step: &'static str, context: &Context<'_>, url: &str, why: &str) -> CloudError {
    let who = if step == STEP_ENTRA {
        format!(
            "application {} in tenant {}",
            context.client_id, context.tenant
        )
    } else {
        format!("registry {}", context.registry)
    };
    // The query string is ours and holds nothing secret, but the path is what an operator compares.
    let url = url.split('?').next().unwrap_or(url);
    CloudError::permanent(step, format!("{who}: unexpected answer from {url}: {why}"))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use base64::Engine as _;

    use super::*;
    use crate::cloud::http::RetryPolicy;
    use crate::cloud::scripted::{Reply, ScriptedServer};
    use crate::retry::Backoff;

    const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const ACCESS_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.ENTRA-ACCESS-TOKEN.sig";

    fn jwt(payload: &str) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.U0lHTkFUVVJFLVNFQ1JFVA",
            engine.encode(r#"{"alg":"RS256","kid":"k"}"#),
            engine.encode(payload)
        )
    }

    fn assertion() -> Sensitive {
        Sensitive::new(jwt(
            r#"{"iss":"https://issuer.example","sub":"system:serviceaccount:build:puller","aud":["api://AzureADTokenExchange"],"exp":4102444800}"#,
        ))
    }

    fn refresh_token() -> String {
        jwt(r#"{"exp":1900000000,"tenant":"t","grant_type":"refresh_token"}"#)
    }

    fn target(host: &str) -> AzureTarget {
        AzureTarget {
            client_id: CLIENT_ID.to_string(),
            tenant_id: TENANT.to_string(),
            registry: parse_registry(host, None).unwrap(),
        }
    }

    fn client(authority: Option<&str>, acr: Option<&str>) -> AzureClient {
        let http = ProviderHttp::new(
            None,
            Duration::from_secs(5),
            RetryPolicy {
                attempts: 3,
                backoff: Backoff {
                    first: Duration::from_millis(1),
                    max: Duration::from_millis(5),
                    ..RetryPolicy::default().backoff
                },
                ..RetryPolicy::default()
            },
        )
        .unwrap();
        AzureClient::new(
            AzureConfig {
                authority_host: authority.map(str::to_string),
                acr_endpoint: acr.map(str::to_string),
            },
            http,
        )
    }

    fn token_ok() -> Reply {
        Reply::new(
            200,
            format!(
                r#"{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"{ACCESS_TOKEN}"}}"#
            ),
        )
    }

    fn exchange_ok() -> Reply {
        Reply::new(200, format!(r#"{{"refresh_token":"{}"}}"#, refresh_token()))
    }

    fn form(body: &str) -> Vec<(String, String)> {
        body.split('&')
            .map(|pair| {
                let (n, v) = pair.split_once('=').unwrap();
                (n.to_string(), v.to_string())
            })
            .collect()
    }

    fn assert_no_token(text: &str) {
        for secret in [
            assertion().expose().to_string(),
            "U0lHTkFUVVJFLVNFQ1JFVA".to_string(),
            ACCESS_TOKEN.to_string(),
            "ENTRA-ACCESS-TOKEN".to_string(),
            refresh_token(),
        ] {
            assert!(!text.contains(&secret), "token in {text}");
        }
    }

    #[test]
    fn sends_what_the_sdks_send_and_builds_the_acr_credential() {
        let server = ScriptedServer::start(vec![token_ok(), exchange_ok()]);
        let azure = client(Some(&format!("{}/", server.url)), Some(&server.url));
        let credentials = azure
            .registry_credentials(&target("myregistry.azurecr.io"), &assertion())
            .unwrap();
        let requests = server.finish();
        assert_eq!(requests.len(), 2);

        let entra = &requests[0];
        assert_eq!(
            entra.request_line,
            format!("POST /{TENANT}/oauth2/v2.0/token HTTP/1.1")
        );
        assert_eq!(
            entra.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(entra.header("authorization"), None);
        let want: Vec<(String, String)> = [
            ("client_assertion", assertion().expose().to_string()),
            (
                "client_assertion_type",
                "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer".to_string(),
            ),
            ("client_id", CLIENT_ID.to_string()),
            ("grant_type", "client_credentials".to_string()),
            (
                "scope",
                "https%3A%2F%2Fcontainerregistry.azure.net%2F.default".to_string(),
            ),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
        assert_eq!(form(&entra.body), want);

        let acr = &requests[1];
        assert_eq!(
            acr.request_line,
            "POST /oauth2/exchange?api-version=2021-07-01 HTTP/1.1"
        );
        assert_eq!(
            acr.body,
            format!(
                "grant_type=access_token&service=myregistry.azurecr.io&tenant={TENANT}&access_token={}",
                percent::encode_form_value(ACCESS_TOKEN)
            )
        );

        assert_eq!(credentials.username, "00000000-0000-0000-0000-000000000000");
        assert_eq!(credentials.password.expose(), refresh_token());
        assert_eq!(credentials.expires_at.timestamp(), 1_900_000_000);
        assert_no_token(&format!("{credentials:?} {azure:?}"));
    }

    #[test]
    fn the_authority_follows_the_registrys_cloud_unless_overridden() {
        let azure = client(None, None);
        for (host, want) in [
            ("myregistry.azurecr.io", "https://login.microsoftonline.com"),
            ("myregistry.azurecr.us", "https://login.microsoftonline.us"),
            ("myregistry.azurecr.cn", "https://login.chinacloudapi.cn"),
        ] {
            assert_eq!(azure.authority(&target(host)), want);
        }
        let overridden = client(Some("https://login.example.internal/"), None);
        assert_eq!(
            overridden.authority(&target("myregistry.azurecr.us")),
            "https://login.example.internal"
        );
    }

    #[test]
    fn entra_outage_is_retried_then_succeeds() {
        let server = ScriptedServer::start(vec![
            Reply::new(503, "<html>Service Unavailable</html>"),
            token_ok(),
            exchange_ok(),
        ]);
        let credentials = client(Some(&server.url), Some(&server.url))
            .registry_credentials(&target("myregistry.azurecr.io"), &assertion())
            .unwrap();
        assert_eq!(server.finish().len(), 3);
        assert_eq!(credentials.password.expose(), refresh_token());
    }

    #[test]
    fn refusals_are_not_retried_and_leak_nothing() {
        let echo = format!(
            r#"{{"error":"invalid_client","error_description":"AADSTS700024: Client assertion is not within its valid time range. assertion={}","error_codes":[700024]}}"#,
            assertion().expose()
        );
        let server = ScriptedServer::start(vec![Reply::new(400, echo), token_ok()]);
        let error = client(Some(&server.url), Some(&server.url))
            .registry_credentials(&target("myregistry.azurecr.io"), &assertion())
            .unwrap_err();
        assert_eq!(server.finish().len(), 1);
        assert!(error.retry.is_permanent());
        assert_eq!(error.step, STEP_ENTRA);
        assert!(
            error
                .message
                .contains("assertion=<redacted>; Entra did not accept"),
            "{error}"
        );
        assert_no_token(&format!("{error} {error:?}"));

        let refused = format!(
            r#"{{"errors":[{{"code":"UNAUTHORIZED","message":"access token {ACCESS_TOKEN} not authorized"}}]}}"#
        );
        let server =
            ScriptedServer::start(vec![token_ok(), Reply::new(401, refused), exchange_ok()]);
        let error = client(Some(&server.url), Some(&server.url))
            .registry_credentials(&target("myregistry.azurecr.io"), &assertion())
            .unwrap_err();
        assert_eq!(server.finish().len(), 2);
        assert_eq!(error.step, STEP_ACR);
        assert!(error.retry.is_permanent());
        assert_no_token(&format!("{error} {error:?}"));
    }

    #[test]
    fn unreachable_authority_is_retryable_and_names_the_application() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let error = client(Some(&base), Some(&base))
            .registry_credentials(&target("myregistry.azurecr.io"), &assertion())
            .unwrap_err();
        assert!(!error.retry.is_permanent());
        assert!(
            error.to_string().starts_with(&format!(
                "entra token request: application {CLIENT_ID} in tenant {TENANT}: cannot reach {base}/{TENANT}/oauth2/v2.0/token"
            )),
            "{error}"
        );
    }

    #[test]
    fn malformed_answers_quote_nothing() {
        let server = ScriptedServer::start(vec![
            token_ok(),
            Reply::new(200, format!(r#"{{"refresh_token":"{ACCESS_TOKEN}x"}}"#)),
        ]);
        let error = client(Some(&server.url), Some(&server.url))
            .registry_credentials(&target("myregistry.azurecr.io"), &assertion())
            .unwrap_err();
        server.finish();
        assert!(error.retry.is_permanent());
        assert!(
            error
                .message
                .ends_with("/oauth2/exchange: its refresh_token has no exp claim")
                || error.message.contains("is not a JWT")
                || error.message.contains("no exp claim"),
            "{error}"
        );
        assert_no_token(&error.to_string());
    }
}
