//! The REST API over the tool catalog: `GET /mcp/servers`, `GET|POST /mcp/tools/list`
//! (`?server=` filters) and `POST /mcp/tools/call`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::read_limited;
use super::{ApiError, AppState};
use crate::agent;

/// `GET /mcp/servers`: each server's state, tool count, last error and restarts.
pub async fn servers(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"servers": state.hub.servers()}))
}

/// Query of `/mcp/tools/list`.
#[derive(Deserialize)]
pub struct ListQuery {
    server: Option<String>,
}

/// `GET|POST /mcp/tools/list`: the catalog as `{"tools":[{name, server, original_name, description, inputSchema}]}`.
pub async fn list_tools(State(state): State<AppState>, Query(query): Query<ListQuery>) -> Json<Value> {
    let catalog = state.hub.catalog();
    let tools: Vec<Value> = catalog
        .entries()
        .iter()
        .filter(|e| query.server.as_deref().is_none_or(|s| s == e.server))
        .map(|e| e.to_json())
        .collect();
    Json(json!({"tools": tools}))
}

#[derive(Deserialize)]
struct CallBody {
    name: String,
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    arguments: Value,
}

/// `POST /mcp/tools/call` with `{"name", "arguments"}` (exposed name) or
/// `{"server", "name", "arguments"}` (original name): the MCP result.
pub async fn call_tool(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Json<Value>, ApiError> {
    let raw = read_limited(body, &headers, state.config.limits.max_body_bytes).await?;
    let call: CallBody =
        serde_json::from_slice(&raw).map_err(|e| ApiError::BadRequest(format!("invalid tool call body: {e}")))?;
    let result = match &call.server {
        Some(server) => state.hub.call_original(server, &call.name, call.arguments).await?,
        None => state.hub.call(&call.name, call.arguments).await?,
    };
    let name = call.server.as_ref().map_or(call.name.clone(), |s| format!("{s}/{}", call.name));
    let budget = state.config.artifacts.max_inline_bytes;
    let converted = agent::to_tool_output(&result, &state.artifacts, budget, &name).await;
    let mut value = serde_json::to_value(&result).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.entry("isError").or_insert(Value::Bool(false));
        obj.insert("artifacts".into(), serde_json::to_value(&converted.artifacts).unwrap_or_default());
    }
    Ok(Json(value))
}
