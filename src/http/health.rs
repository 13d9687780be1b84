//! Health routes in LiteLLM's names: `/health/liveliness` (process up), `/health/readiness`
//! (config loaded and upstream reachable), `/health` (a JSON summary). Always open.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// How long readiness waits for the upstream to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// 200 while the process serves.
pub async fn liveliness() -> Json<Value> {
    Json(json!("I'm alive!"))
}

/// 200 when the upstream answers HTTP (any status), 503 otherwise.
pub async fn readiness(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let reachable = state.upstream.probe(PROBE_TIMEOUT).await;
    let status = if reachable { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if reachable { "ready" } else { "not_ready" },
        "upstream": {"url": state.upstream.display_url(), "reachable": reachable},
    });
    (status, Json(body))
}

/// A summary for humans and dashboards.
pub async fn summary(State(state): State<AppState>) -> Json<Value> {
    let reachable = state.upstream.probe(PROBE_TIMEOUT).await;
    Json(json!({
        "status": if reachable { "healthy" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "upstream": {"url": state.upstream.display_url(), "reachable": reachable},
        "auth": if state.config.auth.is_open() { "open" } else { "api_keys" },
        "mcp_servers": state.hub.servers(),
        "tools": state.hub.catalog().len(),
    }))
}
