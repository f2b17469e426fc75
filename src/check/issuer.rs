//! Step 3: is the token's issuer published the way the cloud reads it — OIDC discovery at
//! `ISSUER/.well-known/openid-configuration` naming exactly that issuer, and a JWKS holding the token's key?
//!
//! Fetched as a cloud does (anonymously, through the configured proxy and CAs). An issuer this machine
//! cannot reach is a warning, not a failure: the cloud may reach what this machine cannot (and the reverse),
//! so the step names the URL the cloud must reach. A published discovery that does not match the token is a
//! failure, because every exchange will fail on it.

use serde_json::Value;

use super::claims::Claims;
use super::report::{Status, Step};
use super::web::Web;

/// `ISSUER/.well-known/openid-configuration`.
pub(crate) fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// What was fetched, for [`evaluate`].
#[derive(Debug, Clone)]
pub(crate) enum Fetched {
    /// The discovery document could not be fetched: the error, or the HTTP status.
    DiscoveryUnavailable(String),
    Discovery {
        document: Value,
        /// The JWKS, or why it could not be fetched.
        jwks: Result<Value, String>,
    },
}

/// Fetches discovery and, when it names one, the JWKS.
pub(crate) fn fetch(web: &Web, issuer: &str) -> Fetched {
    let url = discovery_url(issuer);
    let document = match get_json(web, &url, "application/json") {
        Ok(document) => document,
        Err(why) => return Fetched::DiscoveryUnavailable(why),
    };
    let jwks = match document.get("jwks_uri").and_then(Value::as_str) {
        // The kube-apiserver answers 406 to a bare application/json here.
        Some(jwks_uri) => get_json(
            web,
            jwks_uri,
            "application/jwk-set+json, application/json;q=0.9",
        ),
        None => Err("the discovery document has no jwks_uri".to_string()),
    };
    Fetched::Discovery { document, jwks }
}

fn get_json(web: &Web, url: &str, accept: &str) -> Result<Value, String> {
    let response = web.call("GET", url, &[("Accept", accept.to_string())])?;
    if response.status != 200 {
        return Err(format!("GET {url}: HTTP {}", response.status));
    }
    serde_json::from_str(&response.body).map_err(|e| format!("GET {url}: not JSON: {e}"))
}

/// The issuer step, from the token's claims and what was fetched. Pure.
pub(crate) fn evaluate(claims: &Claims, fetched: &Fetched) -> Step {
    let issuer = claims.issuer.as_str();
    let url = discovery_url(issuer);
    let mut step = Step::new("issuer", Status::Pass).detail(format!("discovery: {url}"));
    if !issuer.starts_with("https://") {
        return Step::new("issuer", Status::Fail)
            .detail(format!("the token's issuer is {issuer:?}"))
            .fix("clouds accept only an https:// issuer: set the API server's --service-account-issuer to an https URL whose /.well-known/openid-configuration they can read");
    }
    match fetched {
        Fetched::DiscoveryUnavailable(why) => {
            step.set_status(Status::Warn);
            step.detail.push(format!("not reachable from here: {why}"));
            step.fix.push(format!(
                "the cloud must be able to GET {url} and the jwks_uri it names, anonymously; \
                 if it cannot either, publish both documents at the issuer URL (or, for Google, upload the JWKS to the provider)"
            ));
            if why.contains("HTTP 401") || why.contains("HTTP 403") {
                step.fix.push(
                    "the API server refuses anonymous reads: kubectl create clusterrolebinding oidc-reviewer \
                     --clusterrole=system:service-account-issuer-discovery --group=system:unauthenticated"
                        .to_string(),
                );
            }
            step
        }
        Fetched::Discovery { document, jwks } => {
            let published = document.get("issuer").and_then(Value::as_str).unwrap_or("");
            if published != issuer {
                step.set_status(Status::Fail);
                step.detail.push(format!(
                    "the discovery document names issuer {published:?}, the token {issuer:?}"
                ));
                step.fix.push(
                    "the two must be identical, character for character: fix --service-account-issuer or what is published there"
                        .to_string(),
                );
                return step;
            }
            let jwks_uri = document
                .get("jwks_uri")
                .and_then(Value::as_str)
                .unwrap_or("");
            step.detail.push(format!("jwks_uri: {jwks_uri}"));
            match jwks {
                Err(why) => {
                    step.set_status(Status::Warn);
                    step.detail
                        .push(format!("JWKS not reachable from here: {why}"));
                    step.fix.push(format!(
                        "the cloud must be able to GET {jwks_uri} anonymously to verify the token's signature"
                    ));
                }
                Ok(jwks) => {
                    let kids: Vec<&str> = jwks
                        .get("keys")
                        .and_then(Value::as_array)
                        .map(|keys| {
                            keys.iter()
                                .filter_map(|k| k.get("kid").and_then(Value::as_str))
                                .collect()
                        })
                        .unwrap_or_default();
                    let kid = claims.key_id.as_deref().unwrap_or("");
                    if kids.contains(&kid) {
                        step.detail.push(format!(
                            "the token's key {kid} is published ({} key(s))",
                            kids.len()
                        ));
                    } else {
                        step.set_status(Status::Fail);
                        step.detail.push(format!(
                            "the token's key {kid:?} is not among the {} published key(s)",
                            kids.len()
                        ));
                        step.fix.push(format!(
                            "publish the API server's current signing key at {jwks_uri} (re-upload the JWKS if it is copied elsewhere)"
                        ));
                    }
                }
            }
            step
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Claims {
        Claims {
            issuer: "https://issuer.example/cluster".to_string(),
            subject: "system:serviceaccount:ns:sa".to_string(),
            audiences: vec!["aud".to_string()],
            expires_at: None,
            key_id: Some("k1".to_string()),
            algorithm: Some("RS256".to_string()),
        }
    }

    fn discovery(issuer: &str, kids: &[&str]) -> Fetched {
        let keys: Vec<Value> = kids.iter().map(|k| json!({"kid": k})).collect();
        Fetched::Discovery {
            document: json!({"issuer": issuer, "jwks_uri": "https://issuer.example/cluster/keys"}),
            jwks: Ok(json!({ "keys": keys })),
        }
    }

    #[test]
    fn published_key_passes() {
        let step = evaluate(
            &claims(),
            &discovery("https://issuer.example/cluster", &["k0", "k1"]),
        );
        assert_eq!(step.status, Status::Pass, "{step:?}");
        assert_eq!(
            step.detail,
            vec![
                "discovery: https://issuer.example/cluster/.well-known/openid-configuration",
                "jwks_uri: https://issuer.example/cluster/keys",
                "the token's key k1 is published (2 key(s))"
            ]
        );
    }

    #[test]
    fn unreachable_issuer_warns_with_the_url_the_cloud_must_reach() {
        let step = evaluate(
            &claims(),
            &Fetched::DiscoveryUnavailable("cannot reach ...: connection refused".into()),
        );
        assert_eq!((step.status, step.ok), (Status::Warn, true));
        assert!(step.fix[0].contains(
            "the cloud must be able to GET https://issuer.example/cluster/.well-known/openid-configuration"
        ));
    }

    #[test]
    fn unpublished_key_or_other_issuer_fails() {
        let step = evaluate(
            &claims(),
            &discovery("https://issuer.example/cluster", &["k0"]),
        );
        assert_eq!(step.status, Status::Fail);
        assert!(step.detail[2].contains("\"k1\" is not among the 1 published"));
        let step = evaluate(&claims(), &discovery("https://other.example", &["k1"]));
        assert_eq!(step.status, Status::Fail);
        assert!(step.detail[1].contains("names issuer \"https://other.example\""));
    }

    #[test]
    fn a_plain_http_issuer_fails() {
        let claims = Claims {
            issuer: "http://issuer.example".to_string(),
            ..claims()
        };
        let step = evaluate(&claims, &discovery("http://issuer.example", &["k1"]));
        assert_eq!(step.status, Status::Fail);
        assert!(step.fix[0].starts_with("clouds accept only an https:// issuer"));
    }

    #[test]
    fn anonymous_refusal_says_how_to_allow_it() {
        let step = evaluate(
            &claims(),
            &Fetched::DiscoveryUnavailable("GET x: HTTP 401".into()),
        );
        assert!(step.fix[1].contains("system:service-account-issuer-discovery"));
    }
}
