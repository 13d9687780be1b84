//! The MCP facade's handshake-era sessions, bounded and bound to their key.
//!
//! rmcp's session manager knows nothing of our keys, so this middleware around `/mcp` does:
//! a session belongs to the key that opened it (a fingerprint, never the key itself) and any
//! other key using or deleting it gets the same 404 as an unknown session; a key holds at most
//! `mcp_facade.max_sessions_per_key` sessions and the gateway at most `mcp_facade.max_sessions`
//! (429 past either); sessions idle for `mcp_facade.session_idle` are closed by rmcp and
//! forgotten here.
//!
//! [`FacadeMount`] is the facade's service and this bookkeeping, built once and carried from
//! state to state by config reloads (sessions and calls in flight survive a reload).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use sha2::Digest;

use super::ApiError;
use super::auth::presented_key;

const SESSION_HEADER: &str = "mcp-session-id";

/// Who owns which session, and the caps.
pub struct Sessions {
    owners: Mutex<HashMap<String, [u8; 16]>>,
    manager: Arc<LocalSessionManager>,
    max: usize,
    per_key: usize,
}

impl Sessions {
    /// Bookkeeping for `manager`'s sessions.
    pub fn new(manager: Arc<LocalSessionManager>, max: usize, per_key: usize) -> Self {
        Self { owners: Mutex::default(), manager, max, per_key }
    }

    /// Forgets sessions rmcp has closed (idle, or ended by the client).
    async fn prune(&self) {
        let ids: Vec<String> = self.owners.lock().keys().cloned().collect();
        for id in ids {
            if !self.manager.has_session(&id.as_str().into()).await.unwrap_or(false) {
                self.owners.lock().remove(&id);
            }
        }
    }

    /// Whether `key` may open one more session.
    fn has_room(&self, key: &[u8; 16]) -> bool {
        let owners = self.owners.lock();
        owners.len() < self.max && owners.values().filter(|k| *k == key).count() < self.per_key
    }
}

/// A fingerprint of the presented key (all anonymous callers share one).
fn fingerprint(req: &Request) -> [u8; 16] {
    let digest = sha2::Sha256::digest(presented_key(req.headers()).unwrap_or_default().as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    out
}

/// The middleware: ownership on every request that names a session, caps on the ones that may
/// open one.
pub async fn guard(State(sessions): State<Arc<Sessions>>, req: Request, next: Next) -> Response {
    let key = fingerprint(&req);
    let named = req.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(id) = named {
        let owner = sessions.owners.lock().get(&id).copied();
        if owner.is_some_and(|o| o != key) {
            return (StatusCode::NOT_FOUND, "session not found").into_response();
        }
        let delete = req.method() == Method::DELETE;
        let mut response = next.run(req).await;
        if delete && response.status().is_success() {
            sessions.owners.lock().remove(&id);
            // rmcp answers 202; the Python SDK (and the spec's examples) expect 200 or 204 for
            // a session ended, and warn otherwise.
            *response.status_mut() = StatusCode::NO_CONTENT;
        }
        return response;
    }
    if !sessions.has_room(&key) {
        sessions.prune().await;
        if !sessions.has_room(&key) {
            return ApiError::TooMany(
                "too many MCP sessions are open; close one or wait for idle ones to expire".into(),
            )
            .into_response();
        }
    }
    let response = next.run(req).await;
    if let Some(id) = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        // Racing openers may all have passed the check: room is taken under one lock, and a
        // session that finds none is closed again.
        let admitted = {
            let mut owners = sessions.owners.lock();
            let room = owners.len() < sessions.max && owners.values().filter(|k| **k == key).count() < sessions.per_key;
            if room {
                owners.insert(id.to_owned(), key);
            }
            room
        };
        if !admitted {
            let _ = sessions.manager.close_session(&id.into()).await;
            return ApiError::TooMany("too many MCP sessions are open".into()).into_response();
        }
    }
    response
}

/// The facade as mounted at `/mcp`: rmcp's streamable HTTP service (sessions for the handshake
/// era, stateless for 2026-07-28) and the session bookkeeping around it. Built once; a reload
/// hands it the new [`crate::agent::Invoker`] ([`FacadeMount::reconfigure`]).
#[derive(Clone)]
pub struct FacadeMount {
    /// The facade (every session's handler is made from it).
    facade: crate::agent::Facade,
    /// The service.
    pub(super) service: rmcp::transport::StreamableHttpService<crate::agent::Facade, LocalSessionManager>,
    /// Its sessions, bounded and bound to keys.
    pub(super) sessions: Arc<Sessions>,
    /// Ends its sessions and its announcer.
    stop: tokio_util::sync::CancellationToken,
}

impl FacadeMount {
    /// The facade running tools with `invoker`, under `limits`, until `shutdown`.
    pub fn new(
        invoker: crate::agent::Invoker,
        limits: &crate::config::FacadeConfig,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        let stop = shutdown;
        let facade = crate::agent::Facade::new(invoker, stop.child_token());
        // `Host` and `Origin` are checked for every route, this one included, by `guard.rs`.
        let config = rmcp::transport::StreamableHttpServerConfig::default()
            .with_cancellation_token(stop.child_token())
            .disable_allowed_hosts();
        let mut manager = LocalSessionManager::default();
        manager.session_config.keep_alive = Some(limits.session_idle);
        let manager = Arc::new(manager);
        let sessions = Arc::new(Sessions::new(manager.clone(), limits.max_sessions, limits.max_sessions_per_key));
        let handlers = facade.clone();
        let service = rmcp::transport::StreamableHttpService::new(move || Ok(handlers.for_session()), manager, config);
        Self { facade, service, sessions, stop }
    }

    /// Ends its sessions and calls (the facade was turned off by a reload).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Takes a reloaded config's settings; sessions and calls in flight go on.
    pub fn reconfigure(&self, invoker: crate::agent::Invoker) {
        self.facade.reconfigure(invoker);
    }
}
