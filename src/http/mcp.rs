//! The REST API over the tool catalog: `GET /mcp/servers`, `GET|POST /mcp/tools/list`
//! (`?server=` filters) and `POST /mcp/tools/call`; and over resources: `GET /mcp/resources`,
//! `GET /mcp/resources/templates`, `GET /mcp/resources/read?uri=…` (the servers the caller has
//! a tool of).
//!
//! Every route applies the request's [`ToolAccess`] (the key's policy narrowed by an
//! `x-mcp-servers` header): a tool the caller may not use is neither listed nor run, and calling
//! it answers 404 exactly like a tool that does not exist, so a restricted key learns nothing
//! about the rest of the catalog.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::body::read_limited;
use super::{ApiError, AppState, mcp_servers_header};
use crate::agent::{RequestControls, ToolAccess};
use crate::mcp::McpError;

/// The access of one REST request: its key's policy, narrowed by `x-mcp-servers`.
pub(super) fn access(caller: &Caller, headers: &HeaderMap) -> Result<ToolAccess, ApiError> {
    let header = mcp_servers_header(headers)?;
    let controls = RequestControls::take(&header, &mut Default::default()).map_err(ApiError::BadRequest)?;
    Ok(ToolAccess::new(caller.policy.as_ref().map(|k| &*k.0), None, &controls))
}

/// How long `GET /mcp/servers` waits for a catalog rebuild in flight.
const REBUILD_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /mcp/servers`: each server's state, tool count, last error and restarts. A restricted
/// key sees only the servers it has a tool of.
pub async fn servers(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access(&caller, &headers)?;
    let mut servers = state.hub.servers();
    // A server shown ready has its tools in the catalog: its rebuild, asked for before it
    // became ready, has landed (at most a moment's wait, and only while one runs).
    let _ = tokio::time::timeout(REBUILD_WAIT, state.hub.rebuilt()).await;
    let catalog = state.hub.catalog();
    if !access.is_unrestricted() {
        servers.retain(|s| access.visible(&catalog).any(|e| e.server == s.name));
        // Collisions name servers; a restricted key sees only its own servers.
        return Ok(Json(json!({"servers": servers})));
    }
    Ok(Json(json!({"servers": servers, "collisions": catalog.collisions()})))
}

/// `GET|POST /mcp/tools/list`: the tools the caller may use, as
/// `{"tools":[{name, server, original_name, description, inputSchema}]}`.
pub async fn list_tools(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let access = access(&caller, &headers)?;
    let server = query_param(query.as_deref(), "server");
    let catalog = state.hub.catalog();
    let tools: Vec<Value> = access
        .visible(&catalog)
        .filter(|e| server.as_deref().is_none_or(|s| s == e.server))
        .map(|e| e.to_json())
        .collect();
    Ok(Json(json!({"tools": tools})))
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
pub async fn call_tool(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let access = access(&caller, &headers)?;
    let raw = read_limited(body, &headers, state.config.limits.max_body_bytes).await?;
    let call: CallBody =
        serde_json::from_slice(&raw).map_err(|e| ApiError::BadRequest(format!("invalid tool call body: {e}")))?;
    let catalog = state.hub.catalog();
    let (entry, name) = match &call.server {
        Some(server) => (catalog.by_origin(server, &call.name), format!("{server}/{}", call.name)),
        None => (catalog.get(&call.name), call.name.clone()),
    };
    run_tool(&state, &caller, &access, &catalog, entry, name, call.arguments).await.map(Json)
}

/// Runs a catalog entry for `caller` under `access` — the one permission check, then the
/// invoker — as the REST API and the console do: the MCP result as JSON, with `isError` and
/// the `artifacts` made of it. A tool the caller may not use answers exactly like one that does
/// not exist (`name`).
pub(super) async fn run_tool(
    state: &AppState,
    caller: &Caller,
    access: &ToolAccess,
    catalog: &crate::mcp::Catalog,
    entry: Option<&std::sync::Arc<crate::mcp::ToolEntry>>,
    name: String,
    arguments: Value,
) -> Result<Value, ApiError> {
    // Not allowed looks exactly like not there.
    let Some(tool) = entry.and_then(|e| access.authorize(e)) else {
        return Err(McpError::UnknownTool { name }.into());
    };
    let visible = || (!access.is_unrestricted()).then(|| access.visible(catalog).map(|e| e.name.clone()).collect());
    // Boxed: a call's future is large, and only a pointer to it moves through the layers.
    let invocation = Box::pin(state.agent.invoker.invoke(tool, arguments, visible, &caller.identity)).await;
    let result = invocation.result?;
    let mut value = serde_json::to_value(&result).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.entry("isError").or_insert(Value::Bool(false));
        obj.insert("artifacts".into(), serde_json::to_value(&invocation.output.artifacts).unwrap_or_default());
    }
    Ok(value)
}

/// `item` as JSON with the `server` it comes from.
fn with_server(item: &impl serde::Serialize, server: String) -> Value {
    let mut value = serde_json::to_value(item).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("server".into(), Value::String(server));
    }
    value
}

/// One decoded query parameter (a malformed query reads as absent, never as a text/plain 400).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// `GET /mcp/resources`: the resources of the servers the caller may use, merged, as
/// `{"resources": [{uri, name, description, mimeType, …, server}]}`.
pub async fn resources(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access(&caller, &headers)?;
    let catalog = state.hub.catalog();
    let may_use = |server: &str| access.may_use_server(&catalog, server);
    let listed = state.hub.resources(may_use).await;
    let resources: Vec<Value> = listed.into_iter().map(|item| with_server(&item.resource, item.server)).collect();
    Ok(Json(json!({"resources": resources})))
}

/// `GET /mcp/resources/templates`: the resource templates of the servers the caller may use,
/// merged, as `{"resourceTemplates": [{uriTemplate, name, description, mimeType, …, server}]}`.
pub async fn resource_templates(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access(&caller, &headers)?;
    let catalog = state.hub.catalog();
    let may_use = |server: &str| access.may_use_server(&catalog, server);
    let listed = state.hub.resource_templates(may_use).await;
    let templates: Vec<Value> = listed.into_iter().map(|item| with_server(&item.template, item.server)).collect();
    Ok(Json(json!({"resourceTemplates": templates})))
}

/// `GET /mcp/resources/read?uri=…`: the resource's contents as its server gave them (binary
/// as base64 `blob`, unchanged; text scrubbed of configured secrets).
pub async fn read_resource(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let access = access(&caller, &headers)?;
    let uri = query_param(query.as_deref(), "uri").ok_or_else(|| ApiError::BadRequest("`uri` is required".into()))?;
    let catalog = state.hub.catalog();
    let may_use = |server: &str| access.may_use_server(&catalog, server);
    let result = state.hub.read_resource(&uri, may_use).await?;
    let mut value = serde_json::to_value(&result).unwrap_or_default();
    if let Some(contents) = value.get_mut("contents").and_then(Value::as_array_mut) {
        for content in contents {
            if let Some(text) = content.get_mut("text") {
                state.redactor.scrub_json(text);
            }
        }
    }
    Ok(Json(value))
}

/// `GET /mcp/prompts`: the prompts of the servers the caller may use, named like tools, as
/// `{"prompts": [{name, title, description, arguments, server}]}`.
pub async fn prompts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access(&caller, &headers)?;
    let catalog = state.hub.catalog();
    let may_use = |server: &str| access.may_use_server(&catalog, server);
    let prompts: Vec<Value> = state
        .hub
        .prompts(may_use)
        .await
        .into_iter()
        .map(|item| {
            let mut value = serde_json::to_value(&item.prompt).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert("server".into(), Value::String(item.server));
            }
            value
        })
        .collect();
    Ok(Json(json!({"prompts": prompts})))
}

/// `POST /mcp/prompts/get` with `{"name", "arguments"}`: the prompt's messages from its server
/// (text scrubbed of configured secrets; embedded resources and images as given).
pub async fn get_prompt(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let access = access(&caller, &headers)?;
    let raw = read_limited(body, &headers, state.config.limits.max_body_bytes).await?;
    let request: Value = serde_json::from_slice(&raw).map_err(|e| ApiError::BadRequest(format!("not JSON: {e}")))?;
    let name =
        request.get("name").and_then(Value::as_str).ok_or_else(|| ApiError::BadRequest("`name` is required".into()))?;
    let arguments = match request.get("arguments") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(_) => return Err(ApiError::BadRequest("`arguments` must be an object".into())),
    };
    let catalog = state.hub.catalog();
    let may_use = |server: &str| access.may_use_server(&catalog, server);
    let result = state.hub.get_prompt(name, arguments, may_use).await?;
    let mut value = serde_json::to_value(&result).unwrap_or_default();
    state.redactor.scrub_json(&mut value);
    Ok(Json(value))
}
