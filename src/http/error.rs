//! The one place where errors become HTTP: status code + OpenAI error JSON
//! `{"error":{"message","type","code","param"}}`.
//!
//! | cause                                   | status | type                    |
//! |-----------------------------------------|--------|-------------------------|
//! | malformed JSON, missing `model`/`messages` | 400 | `invalid_request_error` |
//! | missing or wrong API key                | 401    | `authentication_error`  |
//! | a restricted key asking for server-side tools | 403 | `permission_error`   |
//! | unknown route, or a `/v1/*` route not forwarded | 404 | `invalid_request_error` |
//! | wrong method                            | 405    | `invalid_request_error` |
//! | body over `limits.max_body_bytes`       | 413    | `invalid_request_error` |
//! | headers over `limits.max_header_bytes`  | 431    | `invalid_request_error` |
//! | a host not served, a page not allowed   | 403    | `permission_error`      |
//! | a JSON route without `application/json` | 415    | `invalid_request_error` |
//! | too many MCP facade sessions            | 429    | `rate_limit_error`      |
//! | upstream 4xx (429 keeps `Retry-After`)  | same   | the upstream's own body |
//! | upstream unreachable or 5xx             | 502    | `upstream_error`        |
//! | upstream silent past the read timeout   | 504    | `timeout_error`         |
//! | unknown tool                            | 404    | `invalid_request_error` |
//! | tool arguments not matching the schema  | 400    | `invalid_request_error` |
//! | MCP server down                         | 503    | `mcp_error`             |
//! | tool call timed out                     | 504    | `timeout_error`         |
//! | MCP server answered a JSON-RPC error    | 502    | `mcp_error`             |
//!
//! 5xx bodies name the upstream URL (never credentials); their causes go to the log only.

use axum::Json;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::llm::LlmError;
use crate::mcp::McpError;

/// Every error a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A model-side error (bad chat request or upstream failure).
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// A tool-side error (REST tool API).
    #[error(transparent)]
    Mcp(#[from] McpError),
    /// The request is malformed in a way no domain checks (e.g. a REST body).
    #[error("{0}")]
    BadRequest(String),
    /// The key may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Missing or unknown API key.
    #[error("invalid or missing API key")]
    Unauthorized,
    /// No route matches.
    #[error("no route for {method} {path}")]
    NotFound {
        /// Request method.
        method: Method,
        /// Request path.
        path: String,
    },
    /// A `/v1/*` route outside the OpenAI API, with `upstream.forward_all_routes` off.
    #[error("{path} is not forwarded to the upstream (only the OpenAI API's routes are)")]
    RouteNotForwarded {
        /// Request path.
        path: String,
    },
    /// The route exists but not for this method.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The body is over the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request's headers are over `limits.max_header_bytes`.
    #[error("request headers exceed the limit of {limit} bytes")]
    HeadersTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The client's body could not be read (connection dropped mid-upload).
    #[error("could not read the request body")]
    BodyRead,
    /// A bounded resource (MCP sessions) is used up.
    #[error("{0}")]
    TooMany(String),
    /// A stored object of the caller's (a response) that is not there.
    #[error("{0}")]
    Missing(String),
    /// A JSON route got a body of another type.
    #[error("this route takes a JSON body: send Content-Type: application/json")]
    UnsupportedMediaType,
}

impl From<crate::agent::ChatError> for ApiError {
    fn from(e: crate::agent::ChatError) -> Self {
        match e {
            crate::agent::ChatError::Llm(e) => ApiError::Llm(e),
            crate::agent::ChatError::BadControl(message) => ApiError::BadRequest(message),
            crate::agent::ChatError::Forbidden(message) => ApiError::Forbidden(message),
        }
    }
}

/// What an error looks like on the wire.
pub struct ErrorReply {
    /// HTTP status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: Value,
    /// `Retry-After` to send, for 429.
    pub retry_after: Option<HeaderValue>,
}

impl ApiError {
    /// The mapping from error to status and OpenAI error JSON.
    pub fn reply(&self) -> ErrorReply {
        let (status, kind, code, param) = match self {
            Self::Llm(LlmError::InvalidRequest { param, .. }) => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_request", *param)
            }
            Self::Llm(LlmError::Rejected { status, body, retry_after }) => {
                return ErrorReply {
                    status: *status,
                    body: upstream_body(*status, body),
                    retry_after: retry_after.clone(),
                };
            }
            Self::Llm(LlmError::Unreachable { .. } | LlmError::ServerError { .. } | LlmError::StreamBroken { .. }) => {
                (StatusCode::BAD_GATEWAY, "upstream_error", "bad_gateway", None)
            }
            Self::Llm(LlmError::Timeout { .. }) => {
                (StatusCode::GATEWAY_TIMEOUT, "timeout_error", "upstream_timeout", None)
            }
            Self::Mcp(e) => match e {
                McpError::UnknownTool { .. } => {
                    (StatusCode::NOT_FOUND, "invalid_request_error", "tool_not_found", None)
                }
                McpError::UnknownPrompt { .. } => {
                    (StatusCode::NOT_FOUND, "invalid_request_error", "prompt_not_found", Some("name"))
                }
                McpError::UnknownResource { .. } => {
                    (StatusCode::NOT_FOUND, "invalid_request_error", "resource_not_found", Some("uri"))
                }
                McpError::AmbiguousResource { .. } => {
                    (StatusCode::BAD_REQUEST, "invalid_request_error", "ambiguous_resource", Some("uri"))
                }
                McpError::InvalidArguments { .. } => {
                    (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_arguments", Some("arguments"))
                }
                McpError::ServerUnavailable { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "mcp_error", "server_unavailable", None)
                }
                McpError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "timeout_error", "tool_timeout", None),
                McpError::Protocol { .. } | McpError::Cancelled => {
                    (StatusCode::BAD_GATEWAY, "mcp_error", "tool_failed", None)
                }
                McpError::InputRequired(_) => (StatusCode::CONFLICT, "mcp_error", "input_required", None),
                McpError::AccountNotConnected { .. } => {
                    (StatusCode::FORBIDDEN, "permission_error", "account_not_connected", None)
                }
            },
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_request", None),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "authentication_error", "invalid_api_key", None),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "permission_error", "forbidden", None),
            Self::NotFound { .. } | Self::RouteNotForwarded { .. } | Self::Missing(_) => {
                (StatusCode::NOT_FOUND, "invalid_request_error", "not_found", None)
            }
            Self::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error", "method_not_allowed", None)
            }
            Self::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", "payload_too_large", None)
            }
            Self::HeadersTooLarge { .. } => {
                (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "invalid_request_error", "headers_too_large", None)
            }
            Self::BodyRead => (StatusCode::BAD_REQUEST, "invalid_request_error", "body_read_failed", None),
            Self::TooMany(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "too_many_sessions", None),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request_error", "unsupported_media_type", None)
            }
        };
        ErrorReply { status, body: openai_error(&self.to_string(), kind, code, param), retry_after: None }
    }

    /// The `data:` payload that ends a stream which failed midway.
    pub fn sse_payload(&self) -> String {
        self.reply().body.to_string()
    }

    fn log(&self, status: StatusCode) {
        // A tool call's failure has its one line already (the invoker's, with its outcome).
        if status.is_server_error() && !matches!(self, Self::Mcp(_)) {
            let cause = std::error::Error::source(self).and_then(std::error::Error::source);
            tracing::warn!(%status, error = %self, cause = cause.map(tracing::field::display), "request failed");
        } else if let Self::Mcp(e) = self {
            tracing::debug!(%status, error = %e.log_text(), "request rejected");
        } else {
            tracing::debug!(%status, error = %self, "request rejected");
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let reply = self.reply();
        self.log(reply.status);
        let mut response = (reply.status, Json(reply.body)).into_response();
        if let Some(retry_after) = reply.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, retry_after);
        }
        response
    }
}

/// Builds `{"error":{"message","type","code","param"}}`.
pub fn openai_error(message: &str, kind: &str, code: &str, param: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "code": code, "param": param}})
}

/// An upstream 4xx body (the upstream key already scrubbed by the client): passed on when it
/// already is an OpenAI error, wrapped otherwise.
fn upstream_body(status: StatusCode, body: &Bytes) -> Value {
    if let Ok(value) = serde_json::from_slice::<Value>(body)
        && value.get("error").is_some()
    {
        return value;
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().take(1000).collect();
    let kind = if status == StatusCode::TOO_MANY_REQUESTS { "rate_limit_error" } else { "invalid_request_error" };
    openai_error(&format!("upstream returned {status}: {}", text.trim()), kind, "upstream_error", None)
}
