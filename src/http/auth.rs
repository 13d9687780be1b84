//! Inbound authentication: `Authorization: Bearer <key>` or `x-api-key: <key>`, compared in
//! constant time against `auth.api_keys` and `auth.keys`. With no key configured the gateway is
//! open. A key from `auth.keys` puts its tool policy into the request's extensions.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::config::AuthConfig;

pub use crate::agent::KeyPolicy;

/// Middleware on every route but health: lets a request through only with a configured key.
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    if let Some(policy) = authenticate(&state.config.auth, req.headers())? {
        req.extensions_mut().insert(policy);
    }
    Ok(next.run(req).await)
}

/// Checks the presented key: `Ok(Some(policy))` for a key with a tool policy, `Ok(None)` for a
/// plain key or an open gateway, `Err` for a missing or unknown key.
pub fn authenticate(auth: &AuthConfig, headers: &HeaderMap) -> Result<Option<KeyPolicy>, ApiError> {
    if auth.is_open() {
        return Ok(None);
    }
    let presented = presented_key(headers).ok_or(ApiError::Unauthorized)?.as_bytes();
    // Compare against every key so timing says nothing about which one (if any) matched.
    let plain =
        auth.api_keys.iter().fold(subtle::Choice::from(0), |acc, k| acc | k.expose().as_bytes().ct_eq(presented));
    let mut policy = None;
    for key in &auth.keys {
        if bool::from(key.key.expose().as_bytes().ct_eq(presented)) {
            policy = Some(KeyPolicy(Arc::new(key.selection.clone())));
        }
    }
    if !bool::from(plain) && policy.is_none() {
        return Err(ApiError::Unauthorized);
    }
    Ok(policy)
}

/// The key a client presents, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    // The scheme is case-insensitive (RFC 9110 §11.1): `Bearer`, `bearer`, `BEARER`.
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim_start().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(token)
    });
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok())).map(str::trim).filter(|k| !k.is_empty())
}
