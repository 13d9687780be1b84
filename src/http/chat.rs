//! `POST /v1/chat/completions`: read the body and the request's controls, hand them to
//! [`Agent::chat`](crate::agent::Agent::chat), and turn its reply into JSON or SSE.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::stream;

use super::auth::Caller;
use super::body::{Framing, forward_headers, read_limited};
use super::{ApiError, AppState, mcp_servers_header, proxy, sse};
use crate::agent::{ChatInput, ChatReply};

/// The chat completions handler (streaming and not).
pub async fn completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let raw = read_limited(body, &headers, state.config.limits.max_body_bytes).await?;
    let mcp_servers = mcp_servers_header(&headers)?.into_iter().map(str::to_owned).collect();
    let input = ChatInput {
        raw,
        key: caller.policy.as_ref().map(|k| k.0.clone()),
        mcp_servers,
        background: headers.get("x-openwebui-task").is_some_and(|v| !v.as_bytes().trim_ascii().is_empty()),
        headers: forward_headers(&headers, Framing::Rewritten),
        client_auth: caller.upstream_auth(headers.get(axum::http::header::AUTHORIZATION)),
        identity: caller.identity.clone(),
        first_event_wait: state.config.limits.sse_keepalive,
        approval: caller.approval.clone(),
    };
    let keepalive = state.config.limits.sse_keepalive;
    // Boxed: the agent's future is made once on the heap, and only a pointer to it moves
    // through the layers of the request.
    match Box::pin(state.agent.chat(input)).await? {
        ChatReply::Upstream { response, stream } if stream && response.is_event_stream() => {
            Ok(sse::relay(response.events(), keepalive, state.hard_stop.clone()))
        }
        ChatReply::Upstream { response, .. } => Ok(proxy::passthrough(*response)),
        ChatReply::Completion(value) => Ok(Json(value).into_response()),
        ChatReply::Events { first, rest } => {
            let rest = stream::unfold(rest, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
            let events = futures_util::StreamExt::chain(stream::iter(first.map(Ok)), rest);
            Ok(sse::relay(events, keepalive, state.hard_stop.clone()))
        }
    }
}
