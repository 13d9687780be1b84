//! Signing in to OAuth MCP servers over HTTP: `POST /oauth/start/<server>` (an unrestricted key:
//! the connection serves the whole gateway) answers the authorization URL to send a person to;
//! the authorization server sends their browser back to `GET /oauth/callback`, which needs no
//! key — the single-use `state`, sealed in the state store when the sign-in started, is what
//! binds it — and may arrive at any replica sharing the store. The server reconnects at once.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::auth::Caller;
use super::{ApiError, AppState};

/// `POST /oauth/start/<server>`: `{"authorization_url"}`.
pub async fn start(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    if !caller.may_see_operations() {
        return Err(ApiError::Forbidden("signing the gateway in to a server needs an unrestricted key".into()));
    }
    let config = state.config.mcp_servers.iter().find(|s| s.name == server && s.oauth_target().is_some());
    let Some(config) = config else {
        return Err(ApiError::NotFound { method: axum::http::Method::POST, path: format!("/oauth/start/{server}") });
    };
    // The gateway as the person's browser reaches it: the host this request named (checked by
    // the guard), over https when a proxy in front says so.
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let https = headers.get("x-forwarded-proto").is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    let redirect_uri = format!("{}://{host}/oauth/callback", if https { "https" } else { "http" });
    let url = crate::mcp::oauth::start_web(config, &state.secrets, &redirect_uri)
        .await
        .map_err(|e| crate::mcp::McpError::ServerUnavailable { server: server.clone(), reason: e.to_string() })?;
    Ok(Json(json!({"authorization_url": url})))
}

/// `GET /oauth/callback?code=…&state=…[&iss=…]`: a short page saying whether it worked (never
/// why in detail: the log has that).
pub async fn callback(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let page = |status: StatusCode, text: String| {
        (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], text)
            .into_response()
    };
    let (Some(code), Some(csrf)) = (param("code"), param("state")) else {
        let refused = param("error").map(|e| e.chars().take(100).collect::<String>()).unwrap_or_default();
        return page(StatusCode::BAD_REQUEST, format!("mcp-middleware: the sign-in did not complete {refused}"));
    };
    let issuer = param("iss");
    match crate::mcp::oauth::finish_web(&state.config.mcp_servers, &state.secrets, &code, &csrf, issuer.as_deref())
        .await
    {
        Ok(server) => {
            state.hub.signed_in(&server);
            page(StatusCode::OK, format!("mcp-middleware: signed in to `{server}`. You can close this window."))
        }
        Err(e) => {
            tracing::warn!(error = %e, "an OAuth sign-in did not complete");
            page(
                StatusCode::BAD_REQUEST,
                "mcp-middleware: this sign-in is unknown, expired or already used; start it again.".into(),
            )
        }
    }
}
