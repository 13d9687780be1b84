//! `POST /v1/chat/completions`: validate, forward upstream, relay the answer (JSON as it
//! arrives, or SSE event by event).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;

use super::body::{Framing, forward_headers, read_limited};
use super::{ApiError, AppState, proxy, sse};
use crate::llm::{ChatRequest, UpstreamBody, UpstreamRequest};

/// The chat completions handler (streaming and not).
pub async fn completions(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let raw = read_limited(body, &headers, state.config.limits.max_body_bytes).await?;
    let chat = ChatRequest::parse(raw)?;
    let stream = chat.stream();
    tracing::debug!(model = chat.model(), stream, "chat completion");

    let mut upstream_headers = forward_headers(&headers, Framing::Rewritten);
    upstream_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let request = UpstreamRequest {
        method: Method::POST,
        path_and_query: "/chat/completions".to_owned(),
        headers: upstream_headers,
        client_auth: headers.get(header::AUTHORIZATION).cloned(),
        body: UpstreamBody::Bytes(chat.raw),
    };
    let response = state.upstream.send(request).await?;
    if stream && response.is_event_stream() {
        return Ok(sse::relay(response.events(), state.config.limits.sse_keepalive));
    }
    Ok(proxy::passthrough(response))
}
