//! A typed, blocking REST client for the parts of the Kubernetes API the controller uses.
//!
//! Every call has a timeout, every body read has a cap, and a non-2xx answer becomes an [`Error`] that keeps
//! the server's `Status` message. Nothing here logs a header or a body: the bearer token and secret data
//! never reach a log line.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::agent::AgentRecipe;
use super::auth::{Credentials, Presented};
use super::config::Connection;
use super::error::Error;
use super::types::{ObjectList, Resource};
use super::watch::{WatchStream, WATCH_IDLE_DEADLINE};
use crate::cloud::Sensitive;
use crate::sync::lock;

/// Answers larger than this are refused; a page of 500 objects is far below it.
const MAX_BODY_BYTES: u64 = 64 << 20;

/// Parameters of list and watch calls.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// Page size; the server returns a `continue` token when more remain.
    pub limit: Option<u32>,
    /// `Some("0")`: any version the apiserver's watch cache holds; another version: that one or newer
    /// (`resourceVersionMatch=NotOlderThan`), also from the watch cache once it has caught up. Either way no
    /// quorum read from etcd; `None` asks for one.
    pub resource_version: Option<String>,
}

/// A patch body and the content type that says how the server applies it.
#[derive(Debug, Clone)]
pub enum Patch {
    Merge(serde_json::Value),
    Json(serde_json::Value),
}

/// How long one call may take: in all, and between two reads (watches only).
#[derive(Debug, Clone, Copy)]
struct Deadlines {
    total: Duration,
    per_read: Option<Duration>,
}

/// An agent and the leaf certificate (DER) it presents.
type ExecAgent = (Vec<u8>, ureq::Agent);

/// A blocking Kubernetes API client. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    /// The agent presenting the client certificate an exec plugin issued last, built when it changes.
    exec_agent: Arc<Mutex<Option<ExecAgent>>>,
    recipe: Arc<AgentRecipe>,
    server: String,
    credentials: Arc<Credentials>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client. `timeout` bounds every call except watches, which are bounded by their own
    /// server-side timeout plus a margin.
    pub fn new(connection: Connection, timeout: Duration) -> Result<Client, String> {
        let recipe = AgentRecipe::new(&connection)?;
        let agent = recipe.build(connection.client_cert.as_ref())?;
        if let Some(proxy) = &connection.proxy {
            log::info!(
                "reaching the API server {} through the proxy {proxy}",
                connection.server
            );
        }
        Ok(Client {
            agent,
            exec_agent: Arc::new(Mutex::new(None)),
            recipe: Arc::new(recipe),
            server: connection.server,
            credentials: Arc::new(Credentials::new(connection.auth)),
            timeout,
        })
    }

    /// The same client (sharing connections) with another per-call timeout.
    pub(crate) fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            timeout,
            ..self.clone()
        }
    }

    /// The per-call timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The deadlines of a call that is not a watch: its whole exchange within the per-call timeout.
    fn deadlines(&self) -> Deadlines {
        Deadlines {
            total: self.timeout,
            per_read: None,
        }
    }

    /// The agent that presents `presented`'s client certificate, if it brings one.
    fn agent_for(&self, presented: &Presented) -> Result<ureq::Agent, Error> {
        let Some(cert) = &presented.client_cert else {
            return Ok(self.agent.clone());
        };
        let leaf = cert
            .certs()
            .first()
            .map(|c| c.der().to_vec())
            .unwrap_or_default();
        let mut slot = lock(&self.exec_agent);
        match slot.as_ref() {
            Some((current, agent)) if *current == leaf => Ok(agent.clone()),
            _ => {
                let agent = self.recipe.build(Some(cert)).map_err(Error::Transport)?;
                *slot = Some((leaf, agent.clone()));
                Ok(agent)
            }
        }
    }

    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// Reads one object.
    pub fn get<K: Resource>(&self, namespace: Option<&str>, name: &str) -> Result<K, Error> {
        self.call_json("GET", &object_path::<K>(namespace, name), &[], None)
    }

    /// Reads one object at `resource_version` or newer: `"0"` is any version the apiserver's watch cache
    /// holds, a version read before is that one or newer — both answered without a quorum read from etcd.
    pub(crate) fn get_at<K: Resource>(
        &self,
        namespace: Option<&str>,
        name: &str,
        resource_version: &str,
    ) -> Result<K, Error> {
        let query = [("resourceVersion", resource_version.to_string())];
        self.call_json("GET", &object_path::<K>(namespace, name), &query, None)
    }

    /// Reads one page of a list. Pass the previous page's `metadata.continue` as `continue_token`.
    pub fn list_page<K: Resource>(
        &self,
        namespace: Option<&str>,
        params: &ListParams,
        continue_token: Option<&str>,
    ) -> Result<ObjectList<K>, Error> {
        let mut query = selector_query(params);
        if let Some(limit) = params.limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(token) = continue_token.filter(|t| !t.is_empty()) {
            query.push(("continue", token.to_string()));
        }
        if let Some(version) = params
            .resource_version
            .as_ref()
            .filter(|_| continue_token.is_none())
        {
            query.push(("resourceVersion", version.clone()));
        }
        self.call_json("GET", &collection_path::<K>(namespace), &query, None)
    }

    /// Reads every page of a list, calling `each` per object; returns the resourceVersion to watch from.
    pub fn list_each<K: Resource>(
        &self,
        namespace: Option<&str>,
        params: &ListParams,
        mut each: impl FnMut(K),
    ) -> Result<String, Error> {
        let mut continue_token = None;
        loop {
            let page: ObjectList<K> =
                self.list_page(namespace, params, continue_token.as_deref())?;
            page.items.into_iter().for_each(&mut each);
            if page.metadata.continue_.is_empty() {
                return Ok(page.metadata.resource_version);
            }
            continue_token = Some(page.metadata.continue_);
        }
    }

    /// Opens a watch from `resource_version`, ended by the server after `timeout` (with bookmarks).
    pub fn watch<K: Resource>(
        &self,
        namespace: Option<&str>,
        params: &ListParams,
        resource_version: &str,
        timeout: Duration,
    ) -> Result<WatchStream<K>, Error> {
        let mut query = selector_query(params);
        query.push(("watch", "true".to_string()));
        query.push(("allowWatchBookmarks", "true".to_string()));
        query.push(("resourceVersion", resource_version.to_string()));
        query.push(("timeoutSeconds", timeout.as_secs().max(1).to_string()));
        let path = collection_path::<K>(namespace);
        // The server closes the stream after `timeout` and sends a bookmark at least every
        // WATCH_BOOKMARK_INTERVAL before that: a stream silent for longer than WATCH_IDLE_DEADLINE rode a
        // connection that died without FIN or RST, and ends here instead of at the total deadline.
        let deadlines = Deadlines {
            total: timeout + Duration::from_secs(30),
            per_read: Some(WATCH_IDLE_DEADLINE),
        };
        let response = self.send("GET", &path, &query, None, deadlines)?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let retry_after = retry_after(&response);
            let body = read_capped(response)?;
            return Err(Error::from_response(status, &body, retry_after));
        }
        Ok(WatchStream::new(Box::new(
            response.into_body().into_reader(),
        )))
    }

    pub fn create<K: Resource>(&self, namespace: Option<&str>, object: &K) -> Result<K, Error> {
        self.call_json(
            "POST",
            &collection_path::<K>(namespace),
            &[],
            Some(Body::json(object)?),
        )
    }

    /// Replaces an object. The object's `metadata.resourceVersion` makes this an optimistic-concurrency
    /// update: the server answers 409 Conflict if the object changed since it was read.
    pub fn replace<K: Resource>(
        &self,
        namespace: Option<&str>,
        name: &str,
        object: &K,
    ) -> Result<K, Error> {
        self.call_json(
            "PUT",
            &object_path::<K>(namespace, name),
            &[],
            Some(Body::json(object)?),
        )
    }

    pub fn patch<K: Resource>(
        &self,
        namespace: Option<&str>,
        name: &str,
        patch: &Patch,
    ) -> Result<K, Error> {
        let (content_type, value) = match patch {
            Patch::Merge(v) => ("application/merge-patch+json", v),
            Patch::Json(v) => ("application/json-patch+json", v),
        };
        let body = Body {
            content_type,
            bytes: serde_json::to_vec(value).map_err(encode_error)?,
        };
        self.call_json("PATCH", &object_path::<K>(namespace, name), &[], Some(body))
    }

    /// Deletes an object. With `precondition_uid`, the server refuses (409) if the name now belongs to a
    /// different object, so a re-created object is never deleted by mistake.
    pub fn delete<K: Resource>(
        &self,
        namespace: Option<&str>,
        name: &str,
        precondition_uid: Option<&str>,
    ) -> Result<(), Error> {
        let options = match precondition_uid {
            Some(uid) => {
                serde_json::json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}})
            }
            None => serde_json::json!({"kind": "DeleteOptions", "apiVersion": "v1"}),
        };
        let body = Body::json(&options)?;
        let _: serde_json::Value = self.call_json(
            "DELETE",
            &object_path::<K>(namespace, name),
            &[],
            Some(body),
        )?;
        Ok(())
    }

    /// Mints a ServiceAccount token (TokenRequest) for `audiences`, valid for `expiration`.
    pub fn create_token(
        &self,
        namespace: &str,
        service_account: &str,
        audiences: &[&str],
        expiration: Duration,
    ) -> Result<IssuedToken, Error> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct TokenRequestStatus {
            token: String,
            expiration_timestamp: String,
        }
        #[derive(serde::Deserialize)]
        struct TokenRequest {
            status: TokenRequestStatus,
        }
        let request = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": audiences, "expirationSeconds": expiration.as_secs()},
        });
        let path =
            format!("/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token");
        let response: TokenRequest =
            self.call_json("POST", &path, &[], Some(Body::json(&request)?))?;
        Ok(IssuedToken {
            token: Sensitive::new(response.status.token),
            expiration_timestamp: response.status.expiration_timestamp,
        })
    }

    /// Evicts pod `namespace/pod` through the Eviction API, which honours PodDisruptionBudgets (429 when one
    /// forbids it), and only while it is still the pod with `uid`: one recreated under the same name meanwhile
    /// is refused with 409 Conflict, never evicted unseen.
    pub fn evict(&self, namespace: &str, pod: &str, uid: &str) -> Result<(), Error> {
        let eviction = serde_json::json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod, "namespace": namespace},
            "deleteOptions": {"preconditions": {"uid": uid}},
        });
        let path = format!("/api/v1/namespaces/{namespace}/pods/{pod}/eviction");
        let _: serde_json::Value =
            self.call_json("POST", &path, &[], Some(Body::json(&eviction)?))?;
        Ok(())
    }

    /// Sends a request and decodes a 2xx JSON answer; anything else becomes an [`Error`].
    pub fn call_json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<Body>,
    ) -> Result<T, Error> {
        let response = self.send(method, path, query, body.as_ref(), self.deadlines())?;
        let status = response.status().as_u16();
        let retry_after = retry_after(&response);
        let text = read_capped(response)?;
        if !(200..300).contains(&status) {
            return Err(Error::from_response(status, &text, retry_after));
        }
        serde_json::from_str(&text).map_err(|e| Error::Decode(format!("{method} {path}: {e}")))
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Body>,
        deadlines: Deadlines,
    ) -> Result<ureq::http::Response<ureq::Body>, Error> {
        let started = Instant::now();
        let presented = self.credentials.current()?;
        let mut result = self.send_once(method, path, query, body, deadlines, &presented);
        // A 401 means a rotated token file or an expired or revoked plugin credential: renew it, try again.
        if matches!(&result, Ok(r) if r.status().as_u16() == 401)
            && self.credentials.refused(&presented)
        {
            let presented = self.credentials.current()?;
            result = self.send_once(method, path, query, body, deadlines, &presented);
        }
        match &result {
            Ok(response) => log::trace!(
                "{method} {path} -> {} in {:?}",
                response.status().as_u16(),
                started.elapsed()
            ),
            Err(error) => log::trace!("{method} {path} -> {error}"),
        }
        result
    }

    fn send_once(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Body>,
        deadlines: Deadlines,
        presented: &Presented,
    ) -> Result<ureq::http::Response<ureq::Body>, Error> {
        let url = format!("{}{}{}", self.server, path, encode_query(query));
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Accept", "application/json");
        if let Some(token) = &presented.token {
            builder = builder.header("Authorization", format!("Bearer {}", token.expose()));
        }
        if let Some(body) = body {
            builder = builder.header("Content-Type", body.content_type);
        }
        let bytes: Vec<u8> = body.map(|b| b.bytes.clone()).unwrap_or_default();
        let request = builder
            .body(bytes)
            .map_err(|e| Error::Transport(format!("{method} {path}: {e}")))?;
        let agent = self.agent_for(presented)?;
        let request = agent
            .configure_request(request)
            .timeout_global(Some(deadlines.total))
            .timeout_per_read(deadlines.per_read)
            .allow_non_standard_methods(true)
            .build();
        agent
            .run(request)
            .map_err(|e| Error::Transport(format!("{method} {path}: {e}")))
    }
}

/// A minted ServiceAccount token; `expiration_timestamp` is RFC 3339.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: Sensitive,
    pub expiration_timestamp: String,
}

/// A request body and its content type.
#[derive(Debug, Clone)]
pub struct Body {
    content_type: &'static str,
    bytes: Vec<u8>,
}

impl Body {
    pub fn json(value: &impl Serialize) -> Result<Body, Error> {
        Ok(Body {
            content_type: "application/json",
            bytes: serde_json::to_vec(value).map_err(encode_error)?,
        })
    }
}

fn encode_error(error: serde_json::Error) -> Error {
    Error::Decode(format!("cannot encode request: {error}"))
}

fn read_capped(response: ureq::http::Response<ureq::Body>) -> Result<String, Error> {
    let mut text = String::new();
    response
        .into_body()
        .into_reader()
        .take(MAX_BODY_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| Error::Transport(format!("reading the response: {e}")))?;
    Ok(text)
}

fn retry_after(response: &ureq::http::Response<ureq::Body>) -> Option<Duration> {
    response
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::retry::parse_retry_after(v, chrono::Utc::now()))
}

fn selector_query(params: &ListParams) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(selector) = params.label_selector.as_ref().filter(|s| !s.is_empty()) {
        query.push(("labelSelector", selector.clone()));
    }
    if let Some(selector) = params.field_selector.as_ref().filter(|s| !s.is_empty()) {
        query.push(("fieldSelector", selector.clone()));
    }
    query
}

/// `/api/v1/namespaces/NS/secrets` or `/api/v1/secrets` for all namespaces.
pub(crate) fn collection_path<K: Resource>(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!(
            "{}/namespaces/{}/{}",
            K::api_prefix(),
            encode_segment(ns),
            K::PLURAL
        ),
        None => format!("{}/{}", K::api_prefix(), K::PLURAL),
    }
}

pub(crate) fn object_path<K: Resource>(namespace: Option<&str>, name: &str) -> String {
    format!(
        "{}/{}",
        collection_path::<K>(namespace),
        encode_segment(name)
    )
}

/// Names are DNS subdomains and never need escaping, but a stray character must not change the path.
fn encode_segment(segment: &str) -> String {
    percent_encode(segment)
}

fn encode_query(query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    format!("?{}", pairs.join("&"))
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
pub(crate) fn percent_encode(value: &str) -> String {
    crate::percent::encode(value, b"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::types::{Event, Secret, ServiceAccount};

    #[test]
    fn paths_follow_the_api_layout() {
        assert_eq!(
            collection_path::<Secret>(Some("ns")),
            "/api/v1/namespaces/ns/secrets"
        );
        assert_eq!(
            collection_path::<ServiceAccount>(None),
            "/api/v1/serviceaccounts"
        );
        assert_eq!(
            object_path::<Event>(Some("ns"), "e.1"),
            "/apis/events.k8s.io/v1/namespaces/ns/events/e.1"
        );
        assert_eq!(
            object_path::<Secret>(Some("ns"), "a/b"),
            "/api/v1/namespaces/ns/secrets/a%2Fb"
        );
    }

    #[test]
    fn selectors_are_encoded() {
        let params = ListParams {
            label_selector: Some("a=b,c!=d".into()),
            field_selector: Some("spec.serviceAccountName=x".into()),
            limit: Some(5),
            resource_version: None,
        };
        let query = selector_query(&params);
        assert_eq!(
            encode_query(&query),
            "?labelSelector=a%3Db%2Cc%21%3Dd&fieldSelector=spec.serviceAccountName%3Dx"
        );
    }
}
