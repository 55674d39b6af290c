//! A blocking client of one node's HTTP API ([`keyrack_client::api`]): one typed call per
//! route, short timeouts, and errors worded for the operator who reads them.
//!
//! What it owns: the HTTP exchange and the bearer token (held zeroized, never shown). It
//! never talks to NATS, never reads a node's files, and never retries on its own: the
//! console's worker polls again on its next tick.

use std::time::Duration;

use keyrack_client::api::{
    self, ApiError as ApiErrorBody, Approvals, AuditPage, AuditVerification, BackendHealth, Keys,
    NodeStatus, Peers, Policies, Pools, Readiness, Sessions, SubmitRequest, Submitted,
};
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

/// How long one request may take, connecting included. The node is on localhost: a slow
/// answer means it is stuck, and the console must stay responsive.
pub const TIMEOUT: Duration = Duration::from_millis(2500);
/// How long an audit log verification may take (the node checks every entry).
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long posting a verdict may take: the node waits up to 10 s for every node's signed
/// result before it answers (docs/API.md).
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a call to the node's API failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// Nothing answered: connection refused, timed out, reset.
    #[error("node API at {url} unreachable: {reason}")]
    Unreachable {
        /// The base URL called.
        url: String,
        /// What the transport said.
        reason: String,
    },
    /// The node refused the token.
    #[error("the node refused the API token (401): check --token-file")]
    Unauthorized,
    /// The node answered with an error status.
    #[error("{route}: HTTP {status}: {message}")]
    Status {
        /// The route called.
        route: String,
        /// The HTTP status.
        status: u16,
        /// The node's message (or the body, if it was not an API error).
        message: String,
    },
    /// The answer was not the JSON the route returns.
    #[error("{route}: unexpected answer from the node (is --url a keyrack node?): {reason}")]
    BadJson {
        /// The route called.
        route: String,
        /// What did not parse.
        reason: String,
    },
}

impl ApiError {
    /// Whether the node could not be reached at all (as opposed to refusing or failing).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ApiError::Unreachable { .. })
    }
}

/// A client of one node's API. `Debug` shows the URL, never the token.
pub struct ApiClient {
    base_url: String,
    token: Zeroizing<String>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl ApiClient {
    /// A client of the node at `base_url` (e.g. `http://127.0.0.1:7400`) with its API token.
    pub fn new(base_url: &str, token: Zeroizing<String>) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        ApiClient {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token,
            agent,
        }
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `/readyz`: the readiness, whether the node is ready (200) or not (503); with the
    /// token, so that the checks' details come too.
    pub fn readyz(&self) -> Result<Readiness, ApiError> {
        self.get_as(api::READYZ, "", &[200, 503], TIMEOUT)
    }

    /// `/v1/status`.
    pub fn status(&self) -> Result<NodeStatus, ApiError> {
        self.get(api::STATUS, "")
    }

    /// `/v1/peers`.
    pub fn peers(&self) -> Result<Peers, ApiError> {
        self.get(api::PEERS, "")
    }

    /// `/v1/backend` (the node checks its HSM now).
    pub fn backend(&self) -> Result<BackendHealth, ApiError> {
        self.get(api::BACKEND, "")
    }

    /// `/v1/keys`, only the keys whose id contains `search` (case-insensitive) if given.
    pub fn keys(&self, search: Option<&str>) -> Result<Keys, ApiError> {
        match search.filter(|s| !s.is_empty()) {
            Some(s) => self.get(api::KEYS, &format!("?search={}", query_escape(s))),
            None => self.get(api::KEYS, ""),
        }
    }

    /// `/v1/sessions` (the node's default number of recent sessions).
    pub fn sessions(&self) -> Result<Sessions, ApiError> {
        self.get(api::SESSIONS, "")
    }

    /// `/v1/pools`.
    pub fn pools(&self) -> Result<Pools, ApiError> {
        self.get(api::POOLS, "")
    }

    /// `/v1/approvals`: the requests waiting for approvals.
    pub fn approvals(&self) -> Result<Approvals, ApiError> {
        self.get(api::APPROVALS, "")
    }

    /// `/v1/policies`.
    pub fn policies(&self) -> Result<Policies, ApiError> {
        self.get(api::POLICIES, "")
    }

    /// `/v1/audit`: up to `limit` entries after sequence number `after`.
    pub fn audit(&self, after: u64, limit: u32) -> Result<AuditPage, ApiError> {
        self.get(api::AUDIT, &format!("?after={after}&limit={limit}"))
    }

    /// `/v1/audit/verify`: the node checks its whole audit log.
    pub fn audit_verify(&self) -> Result<AuditVerification, ApiError> {
        // The node reads and checks the whole log: far longer than a poll may take.
        self.get_as(api::AUDIT_VERIFY, "", &[200], VERIFY_TIMEOUT)
    }

    /// POST `/v1/approvals`: a signed approve or reject request, published for every node;
    /// the answer carries the nodes' signed results for it (unverified: see
    /// [`crate::approval::Approver::confirm`]).
    pub fn submit(&self, request: &SubmitRequest) -> Result<Submitted, ApiError> {
        let route = api::APPROVALS;
        let body = serde_json::to_string(request).map_err(|e| ApiError::BadJson {
            route: route.to_owned(),
            reason: e.to_string(),
        })?;
        let response = self
            .agent
            .post(format!("{}{route}", self.base_url))
            .config()
            .timeout_global(Some(SUBMIT_TIMEOUT))
            .build()
            .header("Authorization", self.bearer().as_str())
            .content_type("application/json")
            .send(body.as_str());
        self.answer(route, response, &[200, 201, 202])
    }

    fn bearer(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("Bearer {}", self.token.as_str()))
    }

    fn get<T: DeserializeOwned>(&self, route: &str, query: &str) -> Result<T, ApiError> {
        self.get_as(route, query, &[200], TIMEOUT)
    }

    /// GET with the token, read as `T` from any of the `ok` statuses, within `timeout`.
    fn get_as<T: DeserializeOwned>(
        &self,
        route: &str,
        query: &str,
        ok: &[u16],
        timeout: Duration,
    ) -> Result<T, ApiError> {
        let response = self
            .agent
            .get(format!("{}{route}{query}", self.base_url))
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Authorization", self.bearer().as_str())
            .call();
        self.answer(route, response, ok)
    }

    fn answer<T: DeserializeOwned>(
        &self,
        route: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        ok: &[u16],
    ) -> Result<T, ApiError> {
        let mut response = response.map_err(|e| ApiError::Unreachable {
            url: self.base_url.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| ApiError::Unreachable {
                url: self.base_url.clone(),
                reason: format!("reading the answer to {route}: {e}"),
            })?;
        if ok.contains(&status) {
            return serde_json::from_str(&text).map_err(|e| ApiError::BadJson {
                route: route.to_owned(),
                reason: e.to_string(),
            });
        }
        if status == 401 {
            return Err(ApiError::Unauthorized);
        }
        let message = match serde_json::from_str::<ApiErrorBody>(&text) {
            Ok(body) => body.message,
            Err(_) => text.chars().take(200).collect(),
        };
        Err(ApiError::Status {
            route: route.to_owned(),
            status,
            message,
        })
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("hot-wallet.1"), "hot-wallet.1");
        assert_eq!(query_escape("a b&c=d"), "a%20b%26c%3Dd");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let client = ApiClient::new("http://127.0.0.1:7400/", Zeroizing::new("s3cret".into()));
        let shown = format!("{client:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(client.base_url(), "http://127.0.0.1:7400");
    }

    #[test]
    fn a_closed_port_is_unreachable_with_the_url() {
        // Bind then drop a listener: its port is (almost surely) closed now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let client = ApiClient::new(&url, Zeroizing::new("t".into()));
        let e = client.status().unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("node API at {url} unreachable: ")),
            "{e}"
        );
    }
}
