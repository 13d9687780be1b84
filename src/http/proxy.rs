//! Every other `/v1/*` route, proxied to the upstream as-is: method, path, query, headers and
//! body, streamed both ways.
//!
//! The upstream receives `upstream.api_key` (on LiteLLM, the master key of its admin API), so
//! the path is confined: a `.`/`..` segment, raw or percent-encoded, or an encoded `/`, `\` or
//! `%` in a segment is a 400, and only the OpenAI API's routes are forwarded unless
//! `upstream.forward_all_routes` is set (the upstream client checks once more that the final URL
//! stays below `upstream.base_url`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;

use super::auth::Caller;
use super::body::{
    Framing, REPLAYABLE_BODY, content_length, limited_stream, read_limited, strip_for_upstream, strip_response,
};
use super::{ApiError, AppState};
use crate::llm::{UpstreamBody, UpstreamRequest, UpstreamResponse};

/// Forwards the request below `/v1` to the same path below the upstream base URL.
pub async fn forward(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let limit = state.config.limits.max_body_bytes;
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let path_and_query = path_and_query.strip_prefix("/v1").unwrap_or(path_and_query).to_owned().into();
    let route = confined_route(parts.uri.path().strip_prefix("/v1").unwrap_or_default())?;
    // Chat has its own handler; any other path to the upstream's chat route would pass it by.
    // A key with a tool policy reaches only the OpenAI API's routes, whatever
    // `forward_all_routes` says (others may run tools upstream: `/v1/messages`).
    let openai_only = !state.config.upstream.forward_all_routes || !caller.is_unrestricted();
    if route == "chat" || (openai_only && !OPENAI_ROUTES.contains(&route)) {
        return Err(ApiError::RouteNotForwarded { path: parts.uri.path().to_owned() });
    }
    // The Responses API runs server-side tools (MCP, code) with the upstream's key, where a
    // restricted key's policy cannot follow.
    caller.may_use_route(route).map_err(ApiError::Forbidden)?;

    let exceeded = Arc::new(AtomicBool::new(false));
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
            let stream = reqwest::Body::wrap_stream(limited_stream(body, limit, exceeded.clone()));
            (UpstreamBody::Stream(stream), Framing::Streamed)
        }
    };
    let client_auth = caller.upstream_auth(parts.headers.get(axum::http::header::AUTHORIZATION));
    let mut headers = parts.headers;
    strip_for_upstream(&mut headers, framing);
    let request = UpstreamRequest { method: parts.method, path_and_query, headers, client_auth, body };
    let response = state.upstream.send(request).await.map_err(|e| {
        if exceeded.load(Ordering::Relaxed) { ApiError::PayloadTooLarge { limit } } else { ApiError::from(e) }
    })?;
    Ok(passthrough(response))
}

/// First path segments of the OpenAI API (and the few common extensions LiteLLM serves under
/// `/v1`) that are forwarded by default.
const OPENAI_ROUTES: &[&str] = &[
    "models",
    "embeddings",
    "completions",
    "audio",
    "images",
    "moderations",
    "responses",
    "files",
    "batches",
    "fine_tuning",
    "uploads",
    "vector_stores",
    "assistants",
    "threads",
    "rerank",
    "conversations",
    "containers",
    "videos",
];

/// Checks every segment of `path` (the part below `/v1`) and returns its first segment. Refused:
/// `.` and `..` (also as `%2e`, or followed by `;` parameters), and segments hiding a `/`, `\`,
/// `%` or NUL once decoded.
fn confined_route(path: &str) -> Result<&str, ApiError> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    // Empty segments (`//`, a trailing `/`) and path parameters (`;`) are read differently by
    // the servers behind us (nginx merges slashes): one canonical path or none.
    if segments.iter().any(|s| s.is_empty() || s.contains(';')) {
        return Err(ApiError::BadRequest(
            "the request path may not contain empty segments, a trailing `/` or `;` parameters".into(),
        ));
    }
    for segment in segments {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        // `..;x` is `..` to servers that strip path parameters (Tomcat and friends).
        let bare = decoded.split(';').next().unwrap_or_default();
        if bare == "." || bare == ".." || decoded.contains(['/', '\\', '%', '\0', ';']) || segment.contains('\\') {
            return Err(ApiError::BadRequest(
                "the request path may not contain `.` or `..` segments or encoded separators".into(),
            ));
        }
    }
    Ok(path.strip_prefix('/').unwrap_or(path).split('/').next().unwrap_or_default())
}

/// The upstream response with its status, headers and body streamed through unchanged — but
/// for a redirect's absolute `Location`, which would name the upstream's internal address
/// (redirects are handed back, never followed).
pub fn passthrough(mut upstream: UpstreamResponse) -> Response {
    let status = upstream.status;
    let mut headers = std::mem::take(&mut upstream.headers);
    strip_response(&mut headers);
    if status.is_redirection()
        && headers.get(axum::http::header::LOCATION).and_then(|l| l.to_str().ok()).is_some_and(|l| l.contains("//"))
    {
        headers.remove(axum::http::header::LOCATION);
    }
    let mut response = Response::new(Body::from_stream(upstream.bytes_stream()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
