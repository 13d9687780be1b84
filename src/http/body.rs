//! Request bodies and headers on their way upstream: size limits, hop-by-hop filtering.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, header};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::ApiError;

/// Bodies up to this size are read into memory so a failed connect can be retried.
pub const REPLAYABLE_BODY: usize = 1024 * 1024;

/// The declared `Content-Length`, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Reads a whole body, refusing more than `limit` bytes (413 before reading when declared).
pub async fn read_limited(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let declared = content_length(headers);
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    if let Some(len) = declared.and_then(|len| usize::try_from(len).ok()) {
        return read_declared(body, len, limit).await;
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large { ApiError::PayloadTooLarge { limit } } else { ApiError::BodyRead }
    })
}

/// Reads a body of declared length straight into one buffer of that size: a large body is held
/// once, never as chunks plus their concatenation.
async fn read_declared(body: Body, len: usize, limit: usize) -> Result<Bytes, ApiError> {
    let mut chunks = body.into_data_stream();
    let Some(first) = chunks.next().await else { return Ok(Bytes::new()) };
    let first = first.map_err(|_| ApiError::BodyRead)?;
    // The usual small body comes in one chunk: kept as it is, not copied.
    if first.len() >= len {
        return if first.len() > limit { Err(ApiError::PayloadTooLarge { limit }) } else { Ok(first) };
    }
    let mut buf = bytes::BytesMut::with_capacity(len);
    buf.extend_from_slice(&first);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| ApiError::BodyRead)?;
        // hyper enforces the declared length; the limit still holds if it ever did not.
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// A body stream that fails once more than `limit` bytes went through, and then sets
/// `exceeded` (so the caller answers 413, not the upstream error the aborted send causes).
pub fn limited_stream(
    body: Body,
    limit: usize,
    exceeded: Arc<AtomicBool>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let mut seen = 0usize;
    body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len();
        if seen > limit {
            exceeded.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other(format!("request body exceeds {limit} bytes")));
        }
        Ok(chunk)
    })
}

/// How the body will be sent upstream, which decides the framing headers kept.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// We send a new body (re-serialised or buffered): drop length and encoding negotiation.
    Rewritten,
    /// The client's body bytes stream through unchanged: keep `Content-Length`.
    Streamed,
}

/// Headers to forward upstream: all but hop-by-hop (and those the client's `Connection` names),
/// `Host`, the client's credentials of any upstream (the upstream client adds the right
/// `Authorization`), what says which browser page or address the request came from, and
/// forwarding headers a proxy in front of the upstream might trust.
pub fn forward_headers(incoming: &HeaderMap, framing: Framing) -> HeaderMap {
    let mut out = incoming.clone();
    strip_for_upstream(&mut out, framing);
    out
}

/// [`forward_headers`] in place: the client's own map, without a copy.
pub fn strip_for_upstream(headers: &mut HeaderMap, framing: Framing) {
    let named: Vec<&str> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            is_hop_by_hop(name)
                || dropped_upstream(name, framing)
                || named.iter().any(|n| n.eq_ignore_ascii_case(name.as_str()))
        })
        .cloned()
        .collect();
    drop(named);
    for name in doomed {
        headers.remove(name);
    }
}

/// Response headers to pass back to the client, in place: all but hop-by-hop and the
/// upstream's CORS headers (the gateway answers for its own origin policy; LiteLLM allows
/// every origin).
pub fn strip_response(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop_by_hop(name) || name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

fn dropped_upstream(name: &HeaderName, framing: Framing) -> bool {
    let text = name.as_str();
    if name == header::HOST
        || name == header::AUTHORIZATION
        || name == header::ORIGIN
        || name == header::REFERER
        || name == header::COOKIE
        || matches!(text, "x-api-key" | "api-key" | "x-litellm-api-key" | "x-goog-api-key" | "forwarded" | "x-real-ip")
        || text.starts_with("x-forwarded-")
        || text.starts_with("sec-fetch-")
        || text.starts_with("access-control-request-")
    {
        return true;
    }
    framing == Framing::Rewritten && (name == header::CONTENT_LENGTH || name == header::ACCEPT_ENCODING)
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}
