//! `POST /v1/chat/completions`: read the body and the request's controls, hand them to
//! [`Agent::chat`](crate::agent::Agent::chat), and turn its reply into JSON or SSE.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::HeaderName;
use axum::response::{IntoResponse, Response};
use futures_util::stream;

use super::auth::Caller;
use super::body::{Framing, read_limited, strip_for_upstream};
use super::{ApiError, AppState, mcp_servers_header, proxy, sse, sse_bytes};
use crate::agent::{ChatInput, ChatReply};

/// The chat completions handler (streaming and not). It takes the request whole: its headers
/// and its caller are moved out, not copied.
pub async fn completions(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let axum::http::request::Parts { mut headers, mut extensions, .. } = parts;
    let caller = extensions.remove::<Caller>().ok_or(ApiError::Unauthorized)?;
    let raw = read_limited(body, &headers, state.config.limits.max_body_bytes).await?;
    let mcp_servers = mcp_servers_header(&headers)?.into_iter().map(str::to_owned).collect();
    static TASK: HeaderName = HeaderName::from_static("x-openwebui-task");
    let background = headers.get(&TASK).is_some_and(|v| !v.as_bytes().trim_ascii().is_empty());
    let client_auth = caller.upstream_auth(headers.get(axum::http::header::AUTHORIZATION));
    strip_for_upstream(&mut headers, Framing::Rewritten);
    let input = ChatInput {
        raw,
        key: caller.policy.as_ref().map(|k| k.0.clone()),
        mcp_servers,
        background,
        headers,
        client_auth,
        identity: caller.identity,
        first_event_wait: state.config.limits.sse_keepalive,
        approval: caller.approval,
    };
    let keepalive = state.config.limits.sse_keepalive;
    // Boxed: the agent's future is made once on the heap, and only a pointer to it moves
    // through the layers of the request.
    match Box::pin(state.agent.chat(input)).await? {
        // Nothing of ours changes a passed-through stream: its bytes go as they came.
        ChatReply::Upstream { response, stream } if stream && response.is_event_stream() => {
            let (bytes, upstream, idle) = response.sse_bytes();
            Ok(sse_bytes::relay(bytes, upstream, idle, keepalive, state.hard_stop.clone()))
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
