//! Every other `/v1/*` route, proxied to the upstream as-is: method, path, query, headers and
//! body, streamed both ways.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;

use super::body::{
    Framing, REPLAYABLE_BODY, content_length, forward_headers, limited_stream, read_limited, response_headers,
};
use super::{ApiError, AppState};
use crate::llm::{UpstreamBody, UpstreamRequest, UpstreamResponse};

/// Forwards the request below `/v1` to the same path below the upstream base URL.
pub async fn forward(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let limit = state.config.limits.max_body_bytes;
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let path_and_query = path_and_query.strip_prefix("/v1").unwrap_or(path_and_query).to_owned();

    let declared = content_length(&parts.headers);
    let chunked = parts.headers.contains_key(axum::http::header::TRANSFER_ENCODING);
    let (body, framing) = match declared {
        Some(len) if len > limit as u64 => return Err(ApiError::PayloadTooLarge { limit }),
        None | Some(0)
            if !chunked && matches!(parts.method, Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS) =>
        {
            (UpstreamBody::Empty, Framing::Rewritten)
        }
        Some(len) if len as usize <= REPLAYABLE_BODY => {
            (UpstreamBody::Bytes(read_limited(body, &parts.headers, limit).await?), Framing::Rewritten)
        }
        _ => {
            let stream = reqwest::Body::wrap_stream(limited_stream(body, limit));
            (UpstreamBody::Stream(stream), Framing::Streamed)
        }
    };
    let request = UpstreamRequest {
        method: parts.method,
        path_and_query,
        headers: forward_headers(&parts.headers, framing),
        client_auth: parts.headers.get(axum::http::header::AUTHORIZATION).cloned(),
        body,
    };
    let response = state.upstream.send(request).await?;
    Ok(passthrough(response))
}

/// The upstream response with its status, headers and body streamed through unchanged.
pub fn passthrough(upstream: UpstreamResponse) -> Response {
    let status = upstream.status;
    let headers = response_headers(&upstream.headers);
    let mut response = Response::new(Body::from_stream(upstream.bytes_stream()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
