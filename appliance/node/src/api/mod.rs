//! The node's HTTP API (axum): what the console ([`keyrack_client::api`] has the routes and
//! their JSON) and monitoring read, on localhost by default.
//!
//! Every route but `/healthz` and `/readyz` needs `Authorization: Bearer <token>`, the
//! token in the node's token file (`keyrack init` writes it; compared in constant time). The
//! API reads the node's state and the store (on blocking threads); the one thing it can do is
//! pass on an approver's signed `approve` or `reject` request, which it checks and publishes
//! to the request stream like any client would: it never signs anything itself.

mod routes;

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyrack_client::api::{self, ApiError};
use rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::daemon::Node;

/// The shortest token the node accepts (hex digits; `keyrack init` writes 64).
pub const MIN_TOKEN_LEN: usize = 32;

/// A new random API token: 32 bytes as 64 hex digits and a newline (the token file).
pub fn new_token() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(bytes.as_mut());
    Zeroizing::new(format!("{}\n", hex::encode(&bytes[..])))
}

/// The bearer token the API requires. Its `Debug` does not show it.
#[derive(Clone)]
pub struct ApiToken(Arc<Zeroizing<String>>);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl ApiToken {
    /// Reads a token file: refuses one that group or others may read, and a token shorter
    /// than [`MIN_TOKEN_LEN`] or with characters other than `[A-Za-z0-9_-]`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let shown = path.display();
        let hint = "`keyrack init` writes it; or write 64 random hex digits to it, mode 0600";
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path)
                .with_context(|| format!("cannot read the API token file {shown} ({hint})"))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                bail!(
                    "the API token file {shown} has mode {:o}: others may read it; chmod 600 {shown}",
                    mode & 0o777
                );
            }
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the API token file {shown} ({hint})"))?,
        );
        let token = text.trim();
        if token.len() < MIN_TOKEN_LEN
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!(
                "the API token in {shown} must be at least {MIN_TOKEN_LEN} characters of \
                 [A-Za-z0-9_-] ({hint})"
            );
        }
        Ok(ApiToken(Arc::new(Zeroizing::new(token.to_owned()))))
    }

    fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub node: Arc<Node>,
    pub token: ApiToken,
    /// The NATS servers the node was given (shown in status).
    pub nats_servers: Arc<Vec<String>>,
    /// The last HSM health check (status shows it; /v1/backend and /readyz refresh it).
    pub backend: Arc<Mutex<Option<api::BackendHealth>>>,
    /// Held while the HSM is checked: one check at a time, however many callers.
    pub checking: Arc<tokio::sync::Mutex<()>>,
}

impl ApiState {
    /// Whether `headers` carry this node's token.
    pub fn authorized(&self, headers: &axum::http::HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .is_some_and(|t| self.token.matches(t))
    }
}

/// An error answer: status and [`ApiError`] JSON.
pub(crate) struct Failure(StatusCode, ApiError);

impl Failure {
    pub fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        Failure(
            status,
            ApiError {
                error: error.to_owned(),
                message: message.into(),
            },
        )
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            message.to_string(),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if state.authorized(request.headers()) {
        return next.run(request).await;
    }
    match request.headers().get(header::AUTHORIZATION) {
        Some(_) => unauthorized("the bearer token is not this node's API token"),
        None => unauthorized(
            "this route needs `Authorization: Bearer <token>` (the node's api-token file)",
        ),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response =
        Failure::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// The API's routes for `node`.
pub fn router(node: Arc<Node>, token: ApiToken, nats_servers: Vec<String>) -> axum::Router {
    let state = ApiState {
        node,
        token,
        nats_servers: Arc::new(nats_servers),
        backend: Arc::default(),
        checking: Arc::default(),
    };
    let guarded =
        routes::guarded().route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    routes::open()
        .merge(guarded)
        .fallback(|| async {
            Failure::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route (docs/API.md lists them)",
            )
        })
        .with_state(state)
}

/// Binds `listen` (refusing to start on an address in use, with the reason).
pub async fn bind(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for the HTTP API on {listen} ([api] listen)"))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the HTTP API listens beyond localhost: put TLS and a firewall in front");
    }
    Ok(listener)
}

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, router: axum::Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn token_file(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join("api-token");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_token_file_is_private_long_and_plain_and_the_token_never_shows() {
        let dir = tempfile::tempdir().unwrap();
        let good = new_token();
        let path = token_file(dir.path(), &good, 0o600);
        let token = ApiToken::load(&path).unwrap();
        assert!(token.matches(good.trim().as_bytes()));
        assert!(
            !token.matches(&good.trim().as_bytes()[1..]),
            "a prefix is not the token"
        );
        assert!(!token.matches(b""));
        assert!(!format!("{token:?}").contains(good.trim()));

        let path = token_file(dir.path(), &good, 0o644);
        let e = ApiToken::load(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        for bad in [
            "0123456789abcdef\n",
            &format!("{} \"quoted\"\n", good.trim()),
        ] {
            let path = token_file(dir.path(), bad, 0o600);
            let e = ApiToken::load(&path).unwrap_err().to_string();
            assert!(e.contains("at least 32 characters"), "{e}");
        }
        let e = ApiToken::load(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("keyrack init"), "{e}");
    }
}
