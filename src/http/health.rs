//! Health routes in LiteLLM's names: `/health/liveliness` (process up), `/health/readiness`
//! (upstream reachable, artifact store working), `/health` (a summary). Always open, so they say no
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

/// Whether the artifact store works: the last check's answer while it is fresh, else a new
/// check (as for the upstream: probes are open, so a flood of them costs one S3 call every few
/// seconds). `Err` carries the store's reason.
async fn store_works(state: &AppState) -> Result<(), String> {
    let mut last = state.store_probe.lock().await;
    if let Some((at, answer)) = &*last
        && at.elapsed() < PROBE_REUSE
    {
        return answer.clone();
    }
    let answer = match tokio::time::timeout(PROBE_TIMEOUT, state.artifacts.store.check()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(crate::artifacts::ArtifactError::Unavailable(why))) => Err(why),
        Ok(Err(other)) => Err(other.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    };
    *last = Some((std::time::Instant::now(), answer.clone()));
    answer
}

/// Details (addresses, servers, reasons) are for an unrestricted key, or anyone on an open
/// gateway; a restricted key sees no more than a stranger, since the details list every server.
fn may_see_details(state: &AppState, headers: &HeaderMap) -> bool {
    authenticate(&state.config.auth, headers).is_ok_and(|caller| caller.may_see_operations())
}

/// The store's part of a health answer.
fn store_json(works: &Result<(), String>) -> Value {
    match works {
        Ok(()) => json!({"ok": true}),
        Err(why) => json!({"ok": false, "error": why}),
    }
}

/// 200 while the process serves.
pub async fn liveliness() -> Json<Value> {
    Json(json!("I'm alive!"))
}

/// 200 when the upstream answers HTTP (any status) and the artifact store works, 503
/// otherwise (a replica with a wrong S3 secret never becomes ready, so a rollout stops there);
/// the body says which part failed and, for the store, why.
/// The store's reason is shown to the callers `/health` shows details to.
pub async fn readiness(State(state): State<AppState>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    let (reachable, store) = tokio::join!(upstream_reachable(&state), store_works(&state));
    let ready = reachable && store.is_ok();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "upstream": {"reachable": reachable},
        "artifacts": if may_see_details(&state, &headers) { store_json(&store) } else { json!({"ok": store.is_ok()}) },
    });
    (status, Json(body))
}

/// A summary for humans and dashboards: only the status without a valid key.
pub async fn summary(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let (reachable, store) = tokio::join!(upstream_reachable(&state), store_works(&state));
    let status = if reachable && store.is_ok() { "healthy" } else { "degraded" };
    // Details for an unrestricted key (or an open gateway); a restricted key sees no more than
    // a stranger, since the details list every server.
    if !may_see_details(&state, &headers) {
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
        "artifacts": store_json(&store),
    }))
}
