//! Per-call headers for HTTP MCP servers: `user_headers` templates (`X-User: "{{user.email}}"`)
//! filled from the caller's identity. The hub puts the filled headers into the call's `_meta`
//! under [`CALL_HEADERS_META`]; [`HeaderClient`], the HTTP client of streamable-HTTP sessions,
//! takes them out of the message before it leaves and sends them as headers. A session is
//! shared by every caller, so headers travel with each call rather than with the connection.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures_util::stream::BoxStream;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonObject, JsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use serde_json::Value;
use sse_stream::{Error as SseError, Sse};

use crate::config::{UserIdentity, header_safe};

/// `_meta` key of a `tools/call` carrying the headers to send with it.
pub const CALL_HEADERS_META: &str = "mcp-middleware/headers";

/// The headers `templates` make for `identity`. A header needing a value the identity lacks,
/// or whose value could not be a header (control characters, too long), is left out.
pub fn render(templates: &BTreeMap<String, String>, identity: &UserIdentity) -> JsonObject {
    let mut out = JsonObject::new();
    for (name, template) in templates {
        let mut value = String::new();
        let mut rest = template.as_str();
        let mut complete = true;
        while let Some((before, after)) = rest.split_once("{{") {
            value.push_str(before);
            let Some((placeholder, tail)) = after.split_once("}}") else {
                complete = false;
                break;
            };
            let filled = match placeholder.trim() {
                "user.id" => identity.id.as_deref(),
                "user.name" => identity.name.as_deref(),
                "user.email" => identity.email.as_deref(),
                "user.role" => identity.role.as_deref(),
                "chat.id" => identity.chat_id.as_deref(),
                _ => None,
            };
            match filled {
                Some(v) => value.push_str(v),
                None => complete = false,
            }
            rest = tail;
        }
        value.push_str(rest);
        if complete && header_safe(&value) {
            out.insert(name.clone(), Value::String(value));
        } else if complete {
            tracing::warn!(header = %name, "a user header value is not header-safe; not sent");
        }
    }
    out
}

/// Takes the per-call headers out of a `tools/call` message.
fn take_headers(message: &mut ClientJsonRpcMessage) -> Vec<(HeaderName, HeaderValue)> {
    let JsonRpcMessage::Request(request) = message else { return Vec::new() };
    let ClientRequest::CallToolRequest(call) = &mut request.request else { return Vec::new() };
    let Some(meta) = call.params.meta.as_mut() else { return Vec::new() };
    let Some(Value::Object(headers)) = meta.0.0.remove(CALL_HEADERS_META) else { return Vec::new() };
    headers
        .into_iter()
        .filter_map(|(name, value)| {
            let name = HeaderName::try_from(name).ok()?;
            let value = HeaderValue::from_str(value.as_str()?).ok()?;
            Some((name, value))
        })
        .collect()
}

/// The HTTP client of streamable-HTTP MCP sessions: reqwest, plus per-call headers.
#[derive(Clone)]
pub struct HeaderClient(pub reqwest::Client, pub Option<ScopeSink>);

/// Told the scopes a server asked for in a `403 insufficient_scope` (OAuth step-up), so the
/// next sign-in asks for them too.
pub type ScopeSink = Arc<dyn Fn(String) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

impl StreamableHttpClient for HeaderClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        mut message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        custom_headers.extend(take_headers(&mut message));
        self.0.post_message(uri, message, session_id, auth_header, custom_headers).await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        mut message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        custom_headers.extend(take_headers(&mut message));
        self.0
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        mut message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        custom_headers.extend(take_headers(&mut message));
        let request_id = match &message {
            JsonRpcMessage::Request(request) => Some(request.id.clone()),
            _ => None,
        };
        let in_session = session_id.is_some();
        let response = self
            .0
            .post_message_with_response_limits(uri, message, session_id, auth_header, custom_headers, limits)
            .await;
        match response {
            // A server that lost our session (it restarted) may say so with an error for no
            // request of ours instead of a 404 (see `SessionExpiry`): rmcp then starts a new
            // session and retries the request once.
            Ok(StreamableHttpPostResponse::Json(JsonRpcMessage::Error(error), _))
                if super::session_expiry::SessionExpiry::lost(in_session, request_id.as_ref(), &error) =>
            {
                tracing::debug!(error = %error.error.message, "MCP session rejected; starting a new one");
                Err(StreamableHttpError::SessionExpired)
            }
            Err(StreamableHttpError::InsufficientScope(e)) => {
                if let (Some(sink), Some(scope)) = (&self.1, &e.required_scope) {
                    sink(scope.clone()).await;
                }
                Err(StreamableHttpError::InsufficientScope(e))
            }
            other => other,
        }
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.0.delete_session(uri, session_id, auth_header, custom_headers).await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.0.get_stream(uri, session_id, last_event_id, auth_header, custom_headers).await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.0
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_from_the_identity_or_stay_out() {
        let templates = BTreeMap::from([
            ("X-User".to_owned(), "{{user.email}}".to_owned()),
            ("X-Who".to_owned(), "{{ user.name }} ({{user.role}})".to_owned()),
            ("X-Chat".to_owned(), "chat-{{chat.id}}".to_owned()),
        ]);
        let identity = UserIdentity {
            email: Some("alice@example.com".into()),
            name: Some("Alice".into()),
            role: Some("admin".into()),
            ..Default::default()
        };
        let headers = render(&templates, &identity);
        assert_eq!(headers["X-User"], "alice@example.com");
        assert_eq!(headers["X-Who"], "Alice (admin)");
        assert!(!headers.contains_key("X-Chat"), "no chat id, no header");
        let hostile = UserIdentity { email: Some("a@b\r\nX-Admin: 1".into()), ..Default::default() };
        assert!(render(&templates, &hostile).is_empty(), "CR/LF never reaches a header");
    }
}
