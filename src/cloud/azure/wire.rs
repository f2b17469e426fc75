//! The wire format of Azure's two calls, as Microsoft's SDKs send and read them: the Entra client-credentials
//! request with a client assertion (azure-identity's `ClientAssertionCredential`), ACR's `/oauth2/exchange`
//! (azure-containerregistry), and the answers of both. Pure; only field values are read from answers, never
//! echoed, so a malformed answer cannot leak a token.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crate::cloud::{jwt, Sensitive};
use crate::percent;

pub(crate) const CLIENT_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// ACR's own audience: registries may refuse tokens for Azure Resource Manager.
pub(crate) const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";
/// The Docker user name ACR expects with a refresh token as password.
pub(crate) const DOCKER_USERNAME: &str = "00000000-0000-0000-0000-000000000000";
/// The ACR exchange API version azure-containerregistry sends.
pub(crate) const EXCHANGE_API_VERSION: &str = "2021-07-01";

/// The Entra token request: client credentials, the ServiceAccount token as client assertion.
pub(crate) fn build_token_body(client_id: &str, assertion: &Sensitive) -> Sensitive {
    Sensitive::new(percent::form(&[
        ("client_assertion", assertion.expose()),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        ("client_id", client_id),
        ("grant_type", "client_credentials"),
        ("scope", ACR_SCOPE),
    ]))
}

/// The ACR exchange: Entra access token in, ACR refresh token out. `tenant` is sent, unlike the SDK does, so a
/// registry in another tenant refuses at once with a clear answer.
pub(crate) fn build_exchange_body(
    registry: &str,
    tenant: &str,
    access_token: &Sensitive,
) -> Sensitive {
    Sensitive::new(percent::form(&[
        ("grant_type", "access_token"),
        ("service", registry),
        ("tenant", tenant),
        ("access_token", access_token.expose()),
    ]))
}

/// Reads Entra's token answer: the access token (`expires_in` is not needed: the token is used at once).
pub(crate) fn parse_token_response(body: &str) -> Result<Sensitive, String> {
    let body: Value = serde_json::from_str(body).map_err(|_| "the body is not JSON".to_string())?;
    if let Some(token_type) = body.get("token_type") {
        if !token_type
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer"))
        {
            return Err("its token_type is not Bearer".to_string());
        }
    }
    match body.get("access_token") {
        Some(Value::String(token)) if !token.is_empty() => Ok(Sensitive::new(token.clone())),
        _ => Err("it has no access_token".to_string()),
    }
}

/// Reads ACR's exchange answer: the refresh token and when it expires (its `exp` claim, read without
/// verifying the signature: it came over TLS from the registry, and only schedules the next refresh).
pub(crate) fn parse_exchange_response(body: &str) -> Result<(Sensitive, DateTime<Utc>), String> {
    let body: Value = serde_json::from_str(body).map_err(|_| "the body is not JSON".to_string())?;
    let token = match body.get("refresh_token") {
        Some(Value::String(token)) if !token.is_empty() => token.clone(),
        _ => return Err("it has no refresh_token".to_string()),
    };
    let claims = jwt::unverified_claims(&token)
        .ok_or_else(|| "its refresh_token is not a JWT".to_string())?;
    let exp = jwt::numeric_date(&claims, "exp")
        .ok_or_else(|| "its refresh_token has no exp claim".to_string())?;
    let expires_at = Utc
        .timestamp_opt(exp, 0)
        .single()
        .ok_or_else(|| "its refresh_token's exp claim is out of range".to_string())?;
    Ok((Sensitive::new(token), expires_at))
}

/// What a ServiceAccount token presents to Entra's federation check: issuer, subject and audience, read
/// from the token itself so that an error can name exactly what a federated identity credential must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Presented {
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub audience: Option<String>,
}

impl Presented {
    /// Only claims of a sane shape are kept, so nothing else of the token can reach a message.
    pub(crate) fn of(assertion: &Sensitive) -> Self {
        let Some(claims) = jwt::unverified_claims(assertion.expose()) else {
            return Presented::default();
        };
        let sane =
            |v: &str| v.len() <= 512 && !v.is_empty() && v.chars().all(|c| c.is_ascii_graphic());
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .filter(|v| sane(v))
                .map(str::to_string)
        };
        let audience = match claims.get("aud") {
            Some(Value::String(aud)) if sane(aud) => Some(aud.clone()),
            Some(Value::Array(auds)) => {
                let auds: Vec<&str> = auds.iter().filter_map(Value::as_str).collect();
                (!auds.is_empty() && auds.iter().all(|a| sane(a))).then(|| auds.join(","))
            }
            _ => None,
        };
        Presented {
            issuer: text("iss"),
            subject: text("sub").filter(|s| s.starts_with("system:serviceaccount:")),
            audience,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    pub(crate) fn jwt_with(payload: &str) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.c2lnbmF0dXJl",
            engine.encode(r#"{"alg":"RS256"}"#),
            engine.encode(payload)
        )
    }

    #[test]
    fn bodies_carry_exactly_the_sdk_fields() {
        let body = build_token_body(
            "11111111-2222-3333-4444-555555555555",
            &Sensitive::new("a.b.c"),
        );
        assert_eq!(
            body.expose(),
            "client_assertion=a.b.c\
             &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
             &client_id=11111111-2222-3333-4444-555555555555\
             &grant_type=client_credentials\
             &scope=https%3A%2F%2Fcontainerregistry.azure.net%2F.default"
        );
        let body = build_exchange_body(
            "reg.azurecr.io",
            "contoso.onmicrosoft.com",
            &Sensitive::new("t/k+n"),
        );
        assert_eq!(
            body.expose(),
            "grant_type=access_token&service=reg.azurecr.io&tenant=contoso.onmicrosoft.com&access_token=t%2Fk%2Bn"
        );
        assert_eq!(format!("{body:?}"), "<redacted>");
    }

    #[test]
    fn token_answers() {
        let ok = r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ.x.y"}"#;
        assert_eq!(parse_token_response(ok).unwrap().expose(), "eyJ.x.y");
        for (body, want) in [
            ("<html>", "the body is not JSON"),
            (r#"{"token_type":"Bearer"}"#, "it has no access_token"),
            (
                r#"{"token_type":"pop","access_token":"x"}"#,
                "its token_type is not Bearer",
            ),
            (r#"{"access_token":""}"#, "it has no access_token"),
        ] {
            assert_eq!(parse_token_response(body).unwrap_err(), want, "{body}");
        }
    }

    #[test]
    fn exchange_answers_expire_at_the_refresh_tokens_exp() {
        let token = jwt_with(r#"{"exp":1900000000,"grant_type":"refresh_token"}"#);
        let (refresh, expires_at) =
            parse_exchange_response(&format!(r#"{{"refresh_token":"{token}"}}"#)).unwrap();
        assert_eq!(refresh.expose(), token);
        assert_eq!(expires_at.timestamp(), 1_900_000_000);
        for (body, want) in [
            (
                r#"{"access_token":"x"}"#.to_string(),
                "it has no refresh_token",
            ),
            (
                r#"{"refresh_token":"opaque"}"#.to_string(),
                "its refresh_token is not a JWT",
            ),
            (
                format!(r#"{{"refresh_token":"{}"}}"#, jwt_with(r#"{"iat":1}"#)),
                "its refresh_token has no exp claim",
            ),
        ] {
            assert_eq!(parse_exchange_response(&body).unwrap_err(), want, "{body}");
        }
    }

    #[test]
    fn presented_claims_are_read_only_when_sane() {
        let token = jwt_with(
            r#"{"iss":"https://issuer.example","sub":"system:serviceaccount:ns:sa","aud":["api://AzureADTokenExchange"]}"#,
        );
        assert_eq!(
            Presented::of(&Sensitive::new(token)),
            Presented {
                issuer: Some("https://issuer.example".into()),
                subject: Some("system:serviceaccount:ns:sa".into()),
                audience: Some("api://AzureADTokenExchange".into()),
            }
        );
        let odd = jwt_with(r#"{"iss":"has space","sub":"alice","aud":7}"#);
        assert_eq!(Presented::of(&Sensitive::new(odd)), Presented::default());
        assert_eq!(
            Presented::of(&Sensitive::new("opaque")),
            Presented::default()
        );
    }
}
