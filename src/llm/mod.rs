//! The model side: OpenAI wire types, the pooled upstream client and SSE parsing.
//!
//! `llm/` knows nothing of tools or of HTTP serving: it validates chat requests, sends requests to
//! the upstream gateway and hands back statuses, headers and byte or event streams.

mod client;
pub mod native;
mod payload;
mod pool;
mod sse;
mod types;
pub mod wire;

pub use client::{CallerAuth, UpstreamBody, UpstreamClient, UpstreamRequest, UpstreamResponse};
pub use payload::Payload;
pub use sse::SseEvent;
pub use types::{ChatPeek, ChatRequest};

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

/// Everything that can go wrong on the model side.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The client's request is not a valid chat request.
    #[error("{message}")]
    InvalidRequest {
        /// What is wrong, for the client.
        message: String,
        /// The offending parameter, when there is one.
        param: Option<&'static str>,
    },
    /// No connection could be made (after retries), or it broke before a response.
    #[error("upstream {upstream} is unreachable")]
    Unreachable {
        /// The upstream base URL (no credentials).
        upstream: String,
        /// The transport error (logged, never shown).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The upstream went silent for longer than the read timeout.
    #[error("upstream {upstream} did not answer in time")]
    Timeout {
        /// The upstream base URL (no credentials).
        upstream: String,
    },
    /// The upstream answered 4xx; its status and body go back to the client.
    #[error("upstream rejected the request with status {status}")]
    Rejected {
        /// The upstream's status.
        status: StatusCode,
        /// The upstream's body (bounded).
        body: Bytes,
        /// The upstream's `Retry-After`, for 429.
        retry_after: Option<HeaderValue>,
    },
    /// The upstream answered 5xx.
    #[error("upstream {upstream} failed with status {status}")]
    ServerError {
        /// The upstream base URL (no credentials).
        upstream: String,
        /// The upstream's status.
        status: StatusCode,
    },
    /// A stream that had started could not be read to its end.
    #[error("upstream {upstream} stream broke: {detail}")]
    StreamBroken {
        /// The upstream base URL (no credentials).
        upstream: String,
        /// What happened.
        detail: String,
    },
}

impl LlmError {
    /// A short, fixed name of what went wrong (a trace's `error.type`: never the message).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Unreachable { .. } => "unreachable",
            Self::Timeout { .. } => "timeout",
            Self::Rejected { .. } => "rejected",
            Self::ServerError { .. } => "server_error",
            Self::StreamBroken { .. } => "stream_broken",
        }
    }
}
