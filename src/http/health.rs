//! Health routes in LiteLLM's names: `/health/liveliness` (process up), `/health/readiness`
//! (config loaded and upstream reachable), `/health` (a summary). Always open, so they say no
//! more than a status to strangers: the summary's details (version, upstream URL, MCP servers
//! and their errors) need a valid key without a tool policy when keys are configured, and are
//! redacted even then.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::AppState;
use super::auth::authenticate;

/// How long readiness waits for the upstream to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a probe's answer is reused: health routes are open, and each probe spends a call
/// with the upstream key, so a flood of probes costs one upstream call every few seconds.
const PROBE_REUSE: Duration = Duration::from_secs(5);

/// Whether the upstream answers: the last probe's answer while it is fresh, else a new probe
/// (concurrent callers wait for the same one).
async fn upstream_reachable(state: &AppState) -> bool {
    let mut last = state.probe.lock().await;
    if let Some((at, reachable)) = *last
        && at.elapsed() < PROBE_REUSE
    {
        return reachable;
    }
    let reachable = state.upstream.probe(PROBE_TIMEOUT).await;
    *last = Some((std::time::Instant::now(), reachable));
    reachable
}

/// 200 while the process serves.
pub async fn liveliness() -> Json<Value> {
    Json(json!("I'm alive!"))
}

/// 200 when the upstream answers HTTP (any status), 503 otherwise.
pub async fn readiness(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let reachable = upstream_reachable(&state).await;
    let status = if reachable { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if reachable { "ready" } else { "not_ready" },
        "upstream": {"reachable": reachable},
    });
    (status, Json(body))
}

/// A summary for humans and dashboards: only the status without a valid key.
pub async fn summary(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let reachable = upstream_reachable(&state).await;
    let status = if reachable { "healthy" } else { "degraded" };
    // Details for an unrestricted key (or an open gateway); a restricted key sees no more than
    // a stranger, since the details list every server.
    if !authenticate(&state.config.auth, &headers).is_ok_and(|caller| caller.may_see_operations()) {
        return Json(json!({"status": status}));
    }
    Json(json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "upstream": {"url": state.upstream.display_url(), "reachable": reachable},
        "auth": if state.config.auth.is_open() { "open" } else { "api_keys" },
        "mcp_servers": state.hub.servers(),
        "tools": state.hub.catalog().len(),
    }))
}
