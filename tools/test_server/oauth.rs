//! `oauth` mode: the test server behind OAuth 2.1, with its own small authorization server, so
//! tests can watch a gateway's tokens expire, refresh and be revoked. Protected-resource metadata
//! (RFC 9728) and authorization-server metadata (RFC 8414) at their well-known paths; dynamic
//! registration; `/authorize` approves at once (302 to the redirect URI with `code`, `state` and
//! `iss`) as the account its `user` parameter names (default `person`: the account a person
//! would pick at a real server); `/token` checks PKCE (S256) and issues access tokens that live
//! `--token-ttl` seconds with rotating refresh tokens (none with `--no-refresh`). `/mcp` sees the
//! token's account as the request header `x-token-subject` (the `headers` tool shows it).
//! Test controls: `POST /revoke[?user=]` revokes the refresh tokens (and ends the access
//! tokens) of everyone or of one account, `GET /stats` counts what was issued.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::json;
use sha2::Digest;

/// The authorization server's state.
pub struct AuthServer {
    base: String,
    ttl: Duration,
    refresh: bool,
    inner: parking_lot::Mutex<Tokens>,
}

#[derive(Default)]
struct Tokens {
    /// Code → PKCE challenge and account.
    codes: HashMap<String, (String, String)>,
    /// Access token → expiry and account.
    access: HashMap<String, (Instant, String)>,
    /// Refresh token → account.
    refresh: HashMap<String, String>,
    issued: u64,
    refreshed: u64,
}

impl AuthServer {
    /// An authorization server at `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: String, ttl: Duration, refresh: bool) -> Arc<Self> {
        Arc::new(Self { base, ttl, refresh, inner: parking_lot::Mutex::default() })
    }

    fn issue(&self, tokens: &mut Tokens, account: String) -> serde_json::Value {
        tokens.issued += 1;
        let (access, refresh) = (format!("at-{}", uuid()), format!("rt-{}", uuid()));
        tokens.access.insert(access.clone(), (Instant::now() + self.ttl, account.clone()));
        let mut reply = json!({"access_token": access, "token_type": "Bearer", "expires_in": self.ttl.as_secs()});
        if self.refresh {
            tokens.refresh.insert(refresh.clone(), account);
            if let Some(reply) = reply.as_object_mut() {
                reply.insert("refresh_token".into(), json!(refresh));
            }
        }
        reply
    }
}

fn uuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The routes of the authorization server and its metadata; `mcp` is the protected MCP service.
pub fn router(server: Arc<AuthServer>, mcp: Router) -> Router {
    let protected = mcp.layer(axum::middleware::from_fn_with_state(server.clone(), require_token));
    Router::new()
        .route("/.well-known/oauth-protected-resource/mcp", get(resource_metadata))
        .route("/.well-known/oauth-protected-resource", get(resource_metadata))
        .route("/.well-known/oauth-authorization-server", get(server_metadata))
        .route("/register", post(register))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .route("/stats", get(stats))
        .with_state(server)
        .merge(protected)
}

async fn resource_metadata(State(s): State<Arc<AuthServer>>) -> Json<serde_json::Value> {
    Json(json!({"resource": format!("{}/mcp", s.base), "authorization_servers": [s.base]}))
}

async fn server_metadata(State(s): State<Arc<AuthServer>>) -> Json<serde_json::Value> {
    Json(json!({
        "issuer": s.base,
        "authorization_endpoint": format!("{}/authorize", s.base),
        "token_endpoint": format!("{}/token", s.base),
        "registration_endpoint": format!("{}/register", s.base),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "authorization_response_iss_parameter_supported": true,
    }))
}

async fn register(body: axum::body::Bytes) -> Response {
    let asked: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let reply = json!({"client_id": "test-client", "redirect_uris": asked.get("redirect_uris"),
        "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"]});
    (StatusCode::CREATED, Json(reply)).into_response()
}

async fn authorize(State(s): State<Arc<AuthServer>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let (Some(redirect), Some(challenge)) = (q.get("redirect_uri"), q.get("code_challenge")) else {
        return (StatusCode::BAD_REQUEST, "redirect_uri and code_challenge are required").into_response();
    };
    if q.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return (StatusCode::BAD_REQUEST, "S256 only").into_response();
    }
    let code = format!("code-{}", uuid());
    let account = q.get("user").cloned().unwrap_or_else(|| "person".into());
    s.inner.lock().codes.insert(code.clone(), (challenge.clone(), account));
    let state = q.get("state").cloned().unwrap_or_default();
    let Ok(mut location) = url::Url::parse(redirect) else {
        return (StatusCode::BAD_REQUEST, "redirect_uri is not a URL").into_response();
    };
    location.query_pairs_mut().append_pair("code", &code).append_pair("state", &state).append_pair("iss", &s.base);
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location.as_str()) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

async fn token(State(s): State<Arc<AuthServer>>, body: axum::body::Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let invalid_grant = || (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
    let mut tokens = s.inner.lock();
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some((challenge, account)) = form.get("code").and_then(|c| tokens.codes.remove(c)) else {
                return invalid_grant();
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier));
            if computed != challenge || !form.contains_key("resource") {
                return invalid_grant();
            }
            Json(s.issue(&mut tokens, account)).into_response()
        }
        Some("refresh_token") => {
            let Some(account) = form.get("refresh_token").and_then(|old| tokens.refresh.remove(old)) else {
                return invalid_grant();
            };
            tokens.refreshed += 1;
            Json(s.issue(&mut tokens, account)).into_response()
        }
        _ => (StatusCode::BAD_REQUEST, Json(json!({"error": "unsupported_grant_type"}))).into_response(),
    }
}

/// Revokes every token, or with `?user=` that account's only.
async fn revoke(State(s): State<Arc<AuthServer>>, Query(q): Query<HashMap<String, String>>) -> StatusCode {
    let mut tokens = s.inner.lock();
    let user = q.get("user");
    tokens.refresh.retain(|_, account| user.is_some_and(|u| u != account));
    tokens.access.retain(|_, (_, account)| user.is_some_and(|u| u != account));
    StatusCode::NO_CONTENT
}

async fn stats(State(s): State<Arc<AuthServer>>) -> Json<serde_json::Value> {
    let tokens = s.inner.lock();
    Json(json!({"issued": tokens.issued, "refreshed": tokens.refreshed}))
}

/// `/mcp` needs a live access token; otherwise a `401` that points at the metadata.
async fn require_token(State(s): State<Arc<AuthServer>>, mut request: Request, next: Next) -> Response {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let account = bearer.and_then(|t| {
        let tokens = s.inner.lock();
        tokens.access.get(&t).filter(|(until, _)| *until > Instant::now()).map(|(_, account)| account.clone())
    });
    if let Some(account) = account {
        if let Ok(value) = HeaderValue::from_str(&account) {
            request.headers_mut().insert("x-token-subject", value);
        }
        return next.run(request).await;
    }
    let challenge = format!("Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"", s.base);
    let mut response = StatusCode::UNAUTHORIZED.into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}
