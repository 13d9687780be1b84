//! `POST /v1/chat/completions`: validate, decide which MCP tools the request gets, then either
//! forward it untouched (no tools) or run it through the agent's tool loop. Answers are JSON or
//! SSE, as the client asked.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::stream;
use serde_json::Value;

use super::auth::KeyPolicy;
use super::body::{Framing, forward_headers, read_limited};
use super::{ApiError, AppState, mcp_servers_header, proxy, sse};
use crate::agent::{self, ChatJob, RequestControls};
use crate::llm::{ChatRequest, UpstreamBody, UpstreamRequest};

/// How an Open WebUI tool card looks inside JSON-encoded content.
const CARD_MARKER: &[u8] = br#"<details type=\"tool_calls\""#;

/// Whether `tools` holds anything but `{"type": "function"}` entries.
fn has_server_side_tools(body: &serde_json::Map<String, Value>) -> bool {
    body.get("tools").and_then(Value::as_array).is_some_and(|tools| {
        tools.iter().any(|t| t.get("type").and_then(Value::as_str).unwrap_or("function") != "function")
    })
}

/// The chat completions handler (streaming and not).
pub async fn completions(
    State(state): State<AppState>,
    key: Option<Extension<KeyPolicy>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let raw = read_limited(body, &headers, state.config.limits.max_body_bytes).await?;
    let mut chat = ChatRequest::parse(raw)?;
    let had_controls = chat.body.contains_key("mcp");
    let mcp_header = mcp_servers_header(&headers)?;
    let mut controls = RequestControls::take(&mcp_header, &mut chat.body).map_err(ApiError::BadRequest)?;
    controls.background = headers.get("x-openwebui-task").is_some_and(|v| !v.as_bytes().trim_ascii().is_empty());
    let key = key.map(|Extension(k)| k.0);
    // A restricted key must not reach tools our policy cannot see: tools other than functions
    // (`{"type": "mcp", …}`) are run by the upstream itself, with its master key.
    if key.is_some() && has_server_side_tools(&chat.body) {
        return Err(ApiError::Forbidden(
            "this key may use function tools only; server-side tools (type other than `function`) are refused".into(),
        ));
    }
    let catalog = state.hub.catalog();
    let tools = agent::select(&catalog, &chat.body, &state.config.models, key.as_deref(), &controls);
    // Cards become calls only when tools go upstream: a provider refuses tool-call history in
    // a request without tools (the client's own tools count).
    let has_cards = chat.raw.windows(CARD_MARKER.len()).any(|w| w == CARD_MARKER);
    let tools_upstream = !tools.is_empty() || agent::client_tool_names(&chat.body).next().is_some();
    if has_cards && let Some(Value::Array(mut messages)) = chat.body.remove("messages") {
        if tools_upstream {
            messages = agent::expand_tool_cards(messages);
        } else {
            agent::cards_to_text(&mut messages);
        }
        chat.body.insert("messages".into(), Value::Array(messages));
    }
    let stream = chat.stream();
    tracing::debug!(model = chat.model(), stream, tools = tools.len(), "chat completion");

    let mut upstream_headers = forward_headers(&headers, Framing::Rewritten);
    upstream_headers.remove("x-mcp-servers");
    let client_auth = headers.get(header::AUTHORIZATION).cloned();
    if tools.is_empty() {
        // Nothing of ours to run: a plain proxy, forwarding the client's bytes when unchanged.
        let bytes = if had_controls || has_cards {
            serde_json::to_vec(&chat.body).unwrap_or_default().into()
        } else {
            chat.raw
        };
        upstream_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let request = UpstreamRequest {
            method: Method::POST,
            path_and_query: "/chat/completions".to_owned(),
            headers: upstream_headers,
            client_auth,
            body: UpstreamBody::Bytes(bytes),
        };
        let response = state.upstream.send(request).await?;
        if stream && response.is_event_stream() {
            return Ok(sse::relay(response.events(), state.config.limits.sse_keepalive));
        }
        return Ok(proxy::passthrough(response));
    }

    let vision = agent::takes_images(&chat.body, &state.config.models);
    let job = ChatJob { body: chat.body, tools, headers: upstream_headers, client_auth, vision };
    if !stream {
        return Ok(Json(state.agent.complete(job).await?).into_response());
    }
    let mut rx = state.agent.stream(job);
    // Wait for the first event so an upstream failure before any output keeps its status code.
    let first = match rx.recv().await {
        Some(Err(e)) => return Err(e.into()),
        first => first,
    };
    let rest = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let events = futures_util::StreamExt::chain(stream::iter(first), rest);
    Ok(sse::relay(events, state.config.limits.sse_keepalive))
}
