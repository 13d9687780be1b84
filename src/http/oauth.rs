//! Signing in to OAuth MCP servers over HTTP.
//!
//! - `POST /oauth/start/<server>` answers the authorization URL to send a person to: for a
//!   server shared by the whole gateway, only an unrestricted key may; for a `per_user` server,
//!   any caller allowed one of its tools, for their own account.
//! - `GET /oauth/connect/<server>?ticket=…` is the link a per-user server's "connect your
//!   account" message carries: no key (a person's browser opens it), the sealed, expiring
//!   ticket names the account; it redirects to the authorization server.
//! - `GET /oauth/callback` is where the authorization server sends the browser back: no key —
//!   the single-use `state`, sealed in the state store when the sign-in started, binds it — and
//!   it may arrive at any replica sharing the store. The server (or the user's connection)
//!   connects at once.
//! - A per-user sign-in's tokens wait until the holder confirms it: the callback page shows a
//!   code, given back as `continue <code>` in the parked chat or `POST /oauth/confirm/<server>`.
//! - `DELETE /oauth/connections/<server>` forgets the caller's own account on a per-user server.
//! - `GET /oauth/client-metadata.json` is the gateway's own Client ID Metadata Document.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::auth::{Caller, public_url};
use super::{ApiError, AppState};
use crate::config::McpServerConfig;

/// The OAuth server `name`, if the caller may know it: a per-user server when the caller may use
/// one of its tools, a shared one for unrestricted keys.
fn oauth_server<'a>(
    state: &'a AppState,
    caller: &Caller,
    headers: &HeaderMap,
    name: &str,
    path: String,
) -> Result<&'a McpServerConfig, ApiError> {
    let not_found = || ApiError::NotFound { method: axum::http::Method::POST, path: path.clone() };
    let config = state.config.mcp_servers.iter().find(|s| s.name == name && s.oauth_target().is_some());
    let config = config.ok_or_else(not_found)?;
    if !config.per_user() {
        if !caller.may_see_operations() {
            return Err(ApiError::Forbidden("signing the gateway in to a server needs an unrestricted key".into()));
        }
        return Ok(config);
    }
    let access = super::mcp::access(caller, headers)?;
    let catalog = state.hub.catalog();
    if !access.visible(&catalog).any(|e| e.server == name) {
        return Err(not_found());
    }
    Ok(config)
}

/// `POST /oauth/start/<server>`: `{"authorization_url"}`.
pub async fn start(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let config = oauth_server(&state, &caller, &headers, &server, format!("/oauth/start/{server}"))?;
    let account = config.per_user().then_some(caller.identity.account.as_deref()).flatten();
    let redirect_uri = format!("{}/oauth/callback", public_url(&state.config.http, &headers));
    let url = crate::mcp::oauth::start_web(config, &state.secrets, &redirect_uri, account)
        .await
        .map_err(|e| crate::mcp::McpError::ServerUnavailable { server: server.clone(), reason: e.to_string() })?;
    Ok(Json(json!({"authorization_url": url})))
}

/// `DELETE /oauth/connections/<server>`: forgets the caller's account on a per-user server;
/// `{"disconnected": true|false}` (whether one was connected).
pub async fn disconnect(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let config = oauth_server(&state, &caller, &headers, &server, format!("/oauth/connections/{server}"))?;
    let (true, Some(account)) = (config.per_user(), caller.identity.account.as_deref()) else {
        return Err(ApiError::BadRequest(format!("`{server}` is not a per-user server")));
    };
    let forgot = crate::mcp::oauth::disconnect(config, &state.secrets, account)
        .await
        .map_err(|e| crate::mcp::McpError::ServerUnavailable { server: server.clone(), reason: e.to_string() })?;
    state.hub.signed_out(&server, account);
    Ok(Json(json!({"disconnected": forgot})))
}

/// `POST /oauth/confirm/<server>` with `{"code"}`: confirms the caller's own sign-in to a
/// per-user server (the code its callback page showed); `{"connected": true}`, or 400.
pub async fn confirm(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(server): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let config = oauth_server(&state, &caller, &headers, &server, format!("/oauth/confirm/{server}"))?;
    let (true, Some(holder)) = (config.per_user(), caller.identity.account.as_deref()) else {
        return Err(ApiError::BadRequest(format!("`{server}` is not a per-user server")));
    };
    let code = body.get("code").and_then(Value::as_str).unwrap_or_default();
    if !state.hub.confirm_sign_in(&server, holder, code).await {
        return Err(ApiError::BadRequest("this code is unknown, expired, used, or not yours".into()));
    }
    Ok(Json(json!({"connected": true})))
}

/// `GET /oauth/connect/<server>?ticket=…`: a redirect to the authorization server, for the
/// account the ticket names.
pub async fn connect(
    State(state): State<AppState>,
    Path(server): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let ticket = param(query.as_deref(), "ticket").unwrap_or_default();
    let config = state.config.mcp_servers.iter().find(|s| s.name == server && s.per_user());
    let account = config.and_then(|_| crate::mcp::oauth::open_ticket(&state.secrets, &server, &ticket));
    let (Some(config), Some(account)) = (config, account) else {
        return page(
            StatusCode::BAD_REQUEST,
            "mcp-middleware: this link is unknown or has expired; ask again in the chat for a new one.".into(),
        );
    };
    let redirect_uri = format!("{}/oauth/callback", public_url(&state.config.http, &headers));
    match crate::mcp::oauth::start_web(config, &state.secrets, &redirect_uri, Some(&account)).await {
        Ok(url) => {
            let mut response = StatusCode::FOUND.into_response();
            if let Ok(location) = header::HeaderValue::from_str(&url) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => {
            tracing::warn!(server = %server, error = %e, "starting a user's sign-in failed");
            page(
                StatusCode::BAD_GATEWAY,
                format!("mcp-middleware: `{server}` could not start a sign-in; try again later."),
            )
        }
    }
}

fn param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn page(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], text)
        .into_response()
}

/// Where the gateway serves its own Client ID Metadata Document.
pub const CLIENT_METADATA_PATH: &str = "/oauth/client-metadata.json";

/// `GET /oauth/client-metadata.json`: this gateway as an OAuth client (a Client ID Metadata
/// Document), for `auth.oauth.client_metadata_url: <http.public_url>/oauth/client-metadata.json`.
/// Its `client_id` is its own URL, so it is served only when `http.public_url` names it.
pub async fn client_metadata(State(state): State<AppState>) -> Response {
    let Some(base) = state.config.http.public_url.as_deref() else {
        return page(StatusCode::NOT_FOUND, "mcp-middleware: set http.public_url to serve this document".into());
    };
    let document = json!({
        "client_id": format!("{base}{CLIENT_METADATA_PATH}"),
        "client_name": "mcp-middleware",
        "client_uri": base,
        // The HTTP sign-in's callback, and `login`'s loopback listener (any port, RFC 8252).
        "redirect_uris": [format!("{base}/oauth/callback"), "http://127.0.0.1/callback", "http://localhost/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    ([(header::CACHE_CONTROL, "max-age=3600")], Json(document)).into_response()
}

/// `GET /oauth/callback?code=…&state=…[&iss=…]`: a short page saying whether it worked (never
/// why in detail: the log has that).
pub async fn callback(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let query = query.as_deref();
    let (Some(code), Some(csrf)) = (param(query, "code"), param(query, "state")) else {
        let refused = param(query, "error").map(|e| e.chars().take(100).collect::<String>()).unwrap_or_default();
        return page(StatusCode::BAD_REQUEST, format!("mcp-middleware: the sign-in did not complete {refused}"));
    };
    let issuer = param(query, "iss");
    match crate::mcp::oauth::finish_web(&state.config.mcp_servers, &state.secrets, &code, &csrf, issuer.as_deref())
        .await
    {
        Ok((server, None)) => {
            state.hub.signed_in(&server, None);
            page(StatusCode::OK, format!("mcp-middleware: signed in to `{server}`. You can close this window."))
        }
        Ok((server, Some(code))) => super::ui::confirm_page(&server, &code, state.config.console.enabled),
        Err(e) => {
            tracing::warn!(error = %e, "an OAuth sign-in did not complete");
            page(
                StatusCode::BAD_REQUEST,
                "mcp-middleware: this sign-in is unknown, expired or already used; start it again.".into(),
            )
        }
    }
}
