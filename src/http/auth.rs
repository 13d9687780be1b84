//! Inbound authentication: `Authorization: Bearer <key>` or `x-api-key: <key>`, compared in
//! constant time against `auth.api_keys`. An empty list leaves the gateway open.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

/// Middleware on every route but health: lets a request through only with a configured key.
pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let keys = &state.config.auth.api_keys;
    if keys.is_empty() {
        return Ok(next.run(req).await);
    }
    let presented = presented_key(req.headers()).ok_or(ApiError::Unauthorized)?;
    // Compare against every key so timing says nothing about which one (if any) matched.
    let matched =
        keys.iter().fold(subtle::Choice::from(0), |acc, k| acc | k.expose().as_bytes().ct_eq(presented.as_bytes()));
    if bool::from(matched) { Ok(next.run(req).await) } else { Err(ApiError::Unauthorized) }
}

/// The key a client presents, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok())).map(str::trim).filter(|k| !k.is_empty())
}
