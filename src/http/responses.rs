//! `POST /v1/responses`, `GET /v1/responses/{id}`, `DELETE /v1/responses/{id}`: the Responses
//! API on the chat loop (`crate::responses`). A request with hosted tools we do not run
//! (`web_search`, `file_search`, …) goes to the upstream untouched for an unrestricted key,
//! and is refused (403) for a key with a tool policy; a hosted `mcp` tool names a configured
//! server (`server_label`), or a `server_url` the operator allows (`responses.server_urls`),
//! connected for that request alone and only for a key without a tool policy.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Map, Value, json};

use super::auth::Caller;
use super::body::{Framing, forward_headers, read_limited};
use super::{ApiError, AppState, mcp_servers_header, proxy};
use crate::agent::{ChatInput, Planned};
use crate::llm::{UpstreamBody, UpstreamRequest};
use crate::responses::{self, Answer, Store, Stored};

/// `POST /v1/responses`.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.config.limits.max_body_bytes;
    let raw = read_limited(body, &headers, limit).await?;
    let request: Map<String, Value> =
        serde_json::from_slice(&raw).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    let owner = caller.identity.account.clone().unwrap_or_default();
    let store = store_of(&state);
    let previous = match request.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(
            store
                .get(id, &owner)
                .await
                .ok_or_else(|| ApiError::BadRequest(format!("previous response `{id}` not found")))?,
        ),
        Some(_) => return Err(ApiError::BadRequest("`previous_response_id` must be a string".into())),
    };
    let history = previous.map(|p| p.messages).unwrap_or_default();
    // Servers named by URL are connected for this request alone (held until it ends).
    let attachments = attach_url_servers(&state, &caller, &request).await?;
    let labels: Vec<String> = attachments.iter().map(|(label, _)| label.clone()).collect();
    let attachments: Vec<crate::mcp::Attachment> = attachments.into_iter().map(|(_, a)| a).collect();
    let catalog = state.hub.catalog_with(&attachments);
    let access = crate::agent::ToolAccess::new(caller.policy.as_ref().map(|k| &*k.0), None, &Default::default());
    let may_use = |server: &str| access.may_use_server(&catalog, server);
    let converted = responses::to_chat(&request, history, &catalog, may_use, &labels).map_err(ApiError::BadRequest)?;
    // Approval responses answer the round the conversation's last answer parked, by its ids.
    if !converted.approvals.is_empty() {
        let parked = converted.chat.get("messages").and_then(Value::as_array).and_then(|messages| {
            let asked = messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))?;
            responses::park_reference(asked.get("content")?.as_str()?)
        });
        let matches = parked.as_ref().is_some_and(|reference| {
            converted.approvals.iter().all(|(id, _)| id.starts_with(&format!("mcpr_{reference}_")))
        });
        if !matches {
            return Err(ApiError::BadRequest(
                "`approval_request_id` names no approval request this conversation waits on".into(),
            ));
        }
    }
    if let Some(label) = &converted.unknown_server {
        return Err(ApiError::BadRequest(format!(
            "hosted `mcp` tool `{label}`: name a configured MCP server in `server_label`; `server_url` and connectors are not allowed"
        )));
    }
    if !converted.foreign.is_empty() {
        if !caller.is_unrestricted() {
            return Err(ApiError::Forbidden(format!(
                "this key may use function and mcp tools only; hosted tools ({}) are refused",
                converted.foreign.join(", ")
            )));
        }
        // Tools the upstream runs itself: its business, with its key.
        let upstream = UpstreamRequest {
            method: axum::http::Method::POST,
            path_and_query: "/responses".into(),
            headers: forward_headers(&headers, Framing::Rewritten),
            client_auth: caller.upstream_auth(headers.get(axum::http::header::AUTHORIZATION)),
            body: UpstreamBody::Bytes(raw),
        };
        return Ok(proxy::passthrough(state.upstream.send(upstream).await?));
    }
    // What the response shows of the request: no credentials of servers named by URL.
    let shown = match responses::without_credentials(&request) {
        std::borrow::Cow::Owned(shown) => Some(shown),
        std::borrow::Cow::Borrowed(_) => None,
    };
    let request = shown.unwrap_or(request);
    let stream = request.get("stream") == Some(&Value::Bool(true));
    let keep = request.get("store") != Some(&Value::Bool(false));
    let approval = match (caller.approval.clone(), converted.approval.clone()) {
        (None, None) => None,
        (Some(key), None) => Some(key),
        (key, Some(mut asked)) => {
            if let Some(key) = key {
                asked.require.extend(key.require.iter().cloned());
                asked.destructive |= key.destructive;
            }
            Some(std::sync::Arc::new(asked))
        }
    };
    let chat_raw = serde_json::to_vec(&converted.chat).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let input = ChatInput {
        raw: chat_raw.into(),
        key: caller.policy.as_ref().map(|k| k.0.clone()),
        mcp_servers: mcp_servers_header(&headers)?.into_iter().map(str::to_owned).collect(),
        background: headers.get("x-openwebui-task").is_some_and(|v| !v.as_bytes().trim_ascii().is_empty()),
        headers: forward_headers(&headers, Framing::Rewritten),
        client_auth: caller.upstream_auth(headers.get(axum::http::header::AUTHORIZATION)),
        identity: caller.identity.clone(),
        first_event_wait: state.config.limits.sse_keepalive,
        approval,
    };
    let id = responses::new_id("resp");
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // The listings show what this caller may use of what the request allows.
    let visible: std::collections::HashSet<&str> = access.visible(&catalog).map(|e| e.name.as_str()).collect();
    let allowed: Vec<String> = converted.allowed.iter().filter(|n| visible.contains(n.as_str())).cloned().collect();
    let mut agent = without_cards(&state.agent);
    if !attachments.is_empty() {
        agent.catalog = Some(catalog.clone());
    }
    let finisher = Finisher {
        store,
        owner,
        keep,
        history: converted.history,
        added: converted.added,
        catalog: catalog.clone(),
        parking: state.agent.parking.clone(),
    };
    if stream {
        let mut rx = match agent.plan(input).await? {
            Planned::Loop { job, .. } => agent.stream_with_runs(*job),
            Planned::Resumed { tool_loop, start, .. } => crate::agent::Agent::stream_loop_with_runs(*tool_loop, start),
            Planned::Upstream(reply) => {
                // No tool of ours: the upstream's answer, replayed as events.
                let answer = upstream_answer(reply, limit).await?;
                let mut response =
                    responses::response(&id, created, &request, &answer, (&converted.labels, &allowed), &catalog);
                finisher.finish(&mut response, &answer.text).await;
                let events: Vec<Result<crate::llm::SseEvent, crate::llm::LlmError>> =
                    responses::events(&response).into_iter().map(|e| Ok(sse_event(e))).collect();
                return Ok(super::sse::relay(
                    futures_util::stream::iter(events),
                    state.config.limits.sse_keepalive,
                    state.hard_stop.clone(),
                ));
            }
        };
        let mut translator = responses::Translator::new(id, created, request, (converted.labels, allowed), catalog);
        let (tx, out) = tokio::sync::mpsc::channel::<Result<crate::llm::SseEvent, crate::llm::LlmError>>(64);
        crate::telemetry::spans::spawn(async move {
            // The servers named by URL stay connected while the loop runs.
            let _attachments = attachments;
            let send = |events: Vec<Value>| {
                let tx = tx.clone();
                async move {
                    for event in events {
                        if tx.send(Ok(sse_event(event))).await.is_err() {
                            return false;
                        }
                    }
                    true
                }
            };
            if !send(translator.start()).await {
                return;
            }
            while let Some(next) = rx.recv().await {
                let events = match next {
                    Ok(event) if event.event == crate::agent::TOOL_RUNS_EVENT => translator.runs(&event.data),
                    Ok(event) if event.is_done() => Vec::new(),
                    Ok(event) => translator.chunk(&event.data),
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                // A client that went away stops the loop (its receiver is dropped with us).
                if !send(events).await {
                    return;
                }
            }
            let text = translator.answer().text.clone();
            let extra = finisher.approval_requests(&text).await;
            let (events, mut response) = translator.finish(None, extra);
            finisher.keep(&mut response).await;
            let _ = send(events).await;
        });
        let events = futures_util::stream::unfold(out, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        return Ok(super::sse::relay(events, state.config.limits.sse_keepalive, state.hard_stop.clone()));
    }
    // Boxed: the loop's future is large, and only a pointer to it moves through the layers.
    let answer = Box::pin(run(&agent, input, limit)).await?;
    drop(attachments);
    let mut response = responses::response(&id, created, &request, &answer, (&converted.labels, &allowed), &catalog);
    finisher.finish(&mut response, &answer.text).await;
    Ok(Json(response).into_response())
}

/// Connects the servers `request`'s hosted `mcp` tools name by URL (allowed by
/// `responses.server_urls`, for a key without a tool policy), each with its label.
async fn attach_url_servers(
    state: &AppState,
    caller: &Caller,
    request: &Map<String, Value>,
) -> Result<Vec<(String, crate::mcp::Attachment)>, ApiError> {
    let configured = state.hub.servers();
    let taken = |label: &str| configured.iter().any(|s| s.name == label);
    let servers = responses::url_servers(request, &state.config.responses, caller.is_unrestricted(), taken).map_err(
        |refused| match refused {
            responses::Refused::Forbidden(message) => ApiError::Forbidden(message),
            responses::Refused::Invalid(message) => ApiError::BadRequest(message),
        },
    )?;
    if servers.is_empty() {
        return Ok(Vec::new());
    }
    let wait = std::time::Duration::from_secs(15);
    let attached = futures_util::future::join_all(servers.into_iter().map(|config| async move {
        let label = config.name.clone();
        state.hub.attach(config, wait).await.map(|a| (label, a))
    }))
    .await;
    attached.into_iter().map(|a| a.map_err(ApiError::from)).collect()
}

/// An event of ours as an SSE event named by its type.
fn sse_event(event: Value) -> crate::llm::SseEvent {
    let kind = event.get("type").and_then(Value::as_str).unwrap_or("message").to_owned();
    crate::llm::SseEvent { event: kind, data: event.to_string() }
}

/// The agent as the Responses API runs it: no Open WebUI tool cards in the text (its calls are
/// items of their own).
fn without_cards(agent: &crate::agent::Agent) -> crate::agent::Agent {
    let mut agent = agent.clone();
    if agent.limits.tool_cards {
        let mut limits = (*agent.limits).clone();
        limits.tool_cards = false;
        agent.limits = std::sync::Arc::new(limits);
    }
    agent
}

/// What happens to a finished response: approval requests for a round that waits, and the
/// store.
struct Finisher {
    store: Store,
    owner: String,
    keep: bool,
    history: Vec<Value>,
    added: Vec<Value>,
    catalog: std::sync::Arc<crate::mcp::Catalog>,
    parking: Option<crate::agent::park::Parking>,
}

impl Finisher {
    /// The `mcp_approval_request` items of the round `text` says is parked, if any.
    async fn approval_requests(&self, text: &str) -> Vec<Value> {
        let Some(reference) = responses::park_reference(text) else { return Vec::new() };
        let Some(parking) = &self.parking else { return Vec::new() };
        match parking.peek(&reference, &self.owner).await {
            Some(calls) => responses::approval_requests(&reference, &calls, &self.catalog),
            None => Vec::new(),
        }
    }

    /// Adds the approval requests to `response` and keeps it.
    async fn finish(&self, response: &mut Value, text: &str) {
        let extra = self.approval_requests(text).await;
        if let Some(Value::Array(output)) = response.get_mut("output") {
            output.extend(extra);
        }
        self.keep(response).await;
    }

    /// Keeps `response` (when asked to) with its conversation, without this request's
    /// instructions (none are carried over); says `store: false` when it could not.
    async fn keep(&self, response: &mut Value) {
        if !self.keep {
            return;
        }
        let mut messages = self.history.clone();
        messages.extend(self.added.iter().cloned());
        messages.extend(responses::as_messages(response, &self.catalog));
        let stored = Stored { owner: self.owner.clone(), response: response.clone(), messages };
        if !self.store.put(&stored).await
            && let Some(object) = response.as_object_mut()
        {
            object.insert("store".into(), Value::Bool(false));
        }
    }
}

/// The stored responses, as configured.
fn store_of(state: &AppState) -> Store {
    let config = &state.config.responses;
    Store::new(state.secrets.clone(), config.store_ttl, config.max_stored_bytes)
}

/// Plans and runs the chat request with `agent`; its answer, whichever way it came.
async fn run(agent: &crate::agent::Agent, input: ChatInput, limit: usize) -> Result<Answer, ApiError> {
    let outcome = match agent.plan(input).await? {
        Planned::Loop { job, .. } => agent.outcome(*job).await?,
        Planned::Resumed { tool_loop, start, .. } => agent.outcome_of_loop(*tool_loop, start).await?,
        Planned::Upstream(reply) => return upstream_answer(reply, limit).await,
    };
    Ok(Answer {
        model: outcome.identity.model.clone(),
        text: outcome.gathered.content.clone(),
        reasoning: outcome.reasoning.clone(),
        runs: outcome.gathered.trace.clone(),
        client_calls: outcome.client_calls.clone(),
        usage: outcome.gathered.usage.clone(),
        finish_reason: outcome.finish_reason.clone(),
        error: outcome.error.clone(),
    })
}

/// The upstream's own answer (no tool of ours was offered), read whole (bounded by `limit`).
async fn upstream_answer(reply: crate::agent::ChatReply, limit: usize) -> Result<Answer, ApiError> {
    let crate::agent::ChatReply::Upstream { response, .. } = reply else {
        return Err(ApiError::BadRequest("unexpected reply".into()));
    };
    let status = response.status;
    let mut bytes = Vec::new();
    let mut body = Box::pin(response.bytes_stream());
    while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
        let chunk = chunk?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::BadRequest("the upstream's answer is too large".into()));
        }
        bytes.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        return Err(crate::llm::LlmError::Rejected { status, body: bytes.into(), retry_after: None }.into());
    }
    let completion: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    Ok(Answer::from_completion(&completion))
}

/// `GET /v1/responses/{id}`: a stored response of the caller's.
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let owner = caller.identity.account.clone().unwrap_or_default();
    match store_of(&state).get(&id, &owner).await {
        Some(stored) => Ok(Json(stored.response).into_response()),
        None => upstream_or_missing(&state, &caller, &headers, axum::http::Method::GET, &id).await,
    }
}

/// A response id we do not have: the upstream's own (made through it, with hosted tools) for
/// an unrestricted caller, 404 for anyone else and for an id of ours.
async fn upstream_or_missing(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    method: axum::http::Method,
    id: &str,
) -> Result<Response, ApiError> {
    let plain = id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    // An id of ours that is not (or no longer) stored is simply missing.
    let ours =
        id.strip_prefix("resp_").is_some_and(|hex| hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()));
    if !caller.is_unrestricted() || !plain || ours {
        return Err(ApiError::Missing(format!("response `{id}` not found")));
    }
    let upstream = UpstreamRequest {
        method,
        path_and_query: format!("/responses/{id}").into(),
        headers: forward_headers(headers, Framing::Rewritten),
        client_auth: caller.upstream_auth(headers.get(axum::http::header::AUTHORIZATION)),
        body: UpstreamBody::Empty,
    };
    Ok(proxy::passthrough(state.upstream.send(upstream).await?))
}

/// `DELETE /v1/responses/{id}`: forgets a stored response of the caller's.
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let owner = caller.identity.account.clone().unwrap_or_default();
    if store_of(&state).delete(&id, &owner).await {
        Ok(Json(json!({"id": id, "object": "response", "deleted": true})).into_response())
    } else {
        upstream_or_missing(&state, &caller, &headers, axum::http::Method::DELETE, &id).await
    }
}
