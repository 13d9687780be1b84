//! The legacy HTTP+SSE client transport (MCP 2024-11-05), which rmcp 3 no longer ships.
//!
//! `GET <url>` opens an event stream whose first `endpoint` event names the URL to POST
//! JSON-RPC messages to; the server's responses and notifications come back as `message`
//! events on the stream. Built on reqwest and eventsource-stream; an event larger than
//! [`crate::bounded::MAX_EVENT_BYTES`] ends the session.
//!
//! Messages go out through an outbox (bounded; a request whose caller gave up before it was
//! sent is dropped with its cancellation): one task POSTs them in order, but never waits more than
//! [`IN_ORDER`] for one POST before starting the next, and `send` only enqueues. A server that
//! stops answering (frozen, overloaded) therefore never holds up the caller — rmcp awaits the
//! send of a timed-out request's cancellation, for one — nor the calls queued behind it.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use rmcp::RoleClient;
use rmcp::model::{ClientNotification, JsonRpcMessage, RequestId};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use url::Url;

/// Why the SSE transport failed.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    /// The HTTP request failed.
    #[error("HTTP error: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with a non-success status.
    #[error("server answered {0}")]
    Status(reqwest::StatusCode),
    /// The stream ended or broke before it named its endpoint.
    #[error("the SSE stream did not announce an endpoint")]
    NoEndpoint,
    /// The endpoint URL is not usable.
    #[error("invalid endpoint `{0}`")]
    BadEndpoint(String),
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(#[from] serde_json::Error),
    /// Too many messages are waiting to be sent.
    #[error("too many messages are waiting for the server")]
    OutboxFull,
}

/// How long the outbox waits for one POST before it starts the next (they are acknowledged in
/// milliseconds by a live server; the POST itself goes on up to [`POST_TIMEOUT`]).
const IN_ORDER: Duration = Duration::from_secs(2);
/// Longest a POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(30);

/// A connected legacy SSE session.
pub struct SseClientTransport {
    outbox: Outbox,
    incoming: mpsc::Receiver<RxJsonRpcMessage<RoleClient>>,
    _reader: DropGuard,
}

/// Most messages waiting to be POSTed; past it `send` fails (the server is not taking them).
const OUTBOX_LIMIT: usize = 1024;

/// Messages waiting to be POSTed, in order. A request whose caller gave up before it left
/// (rmcp then sends `notifications/cancelled` for it) is taken out instead of delivered late,
/// and so is that cancellation: the server never hears of either.
#[derive(Clone, Default)]
struct Outbox {
    queue: std::sync::Arc<parking_lot::Mutex<std::collections::VecDeque<Queued>>>,
    ready: std::sync::Arc<tokio::sync::Notify>,
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Outbox {
    fn push(&self, message: &TxJsonRpcMessage<RoleClient>) -> Result<(), SseError> {
        if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(SseError::NoEndpoint);
        }
        let mut queue = self.queue.lock();
        if let Some(cancelled) = cancelled_request(message) {
            let before = queue.len();
            queue.retain(|(id, _)| id.as_ref() != Some(cancelled));
            if queue.len() < before {
                tracing::debug!(request = ?cancelled, "dropped a request whose caller left before it was sent");
                return Ok(());
            }
        }
        if queue.len() >= OUTBOX_LIMIT {
            return Err(SseError::OutboxFull);
        }
        let id = match message {
            JsonRpcMessage::Request(request) => Some(request.id.clone()),
            _ => None,
        };
        queue.push_back((id, serde_json::to_vec(message)?));
        drop(queue);
        self.ready.notify_one();
        Ok(())
    }

    async fn next(&self) -> Option<Vec<u8>> {
        loop {
            if let Some((_, body)) = self.queue.lock().pop_front() {
                return Some(body);
            }
            if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            self.ready.notified().await;
        }
    }

    fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Relaxed);
        self.ready.notify_one();
    }
}

/// A message waiting: its request id (for requests) and its encoded body.
type Queued = (Option<RequestId>, Vec<u8>);

/// The request a `notifications/cancelled` message cancels.
fn cancelled_request(message: &TxJsonRpcMessage<RoleClient>) -> Option<&RequestId> {
    let JsonRpcMessage::Notification(notification) = message else { return None };
    let ClientNotification::CancelledNotification(cancelled) = &notification.notification else { return None };
    cancelled.params.request_id.as_ref()
}

/// POSTs the outbox's messages in order until the transport is dropped.
async fn post_outbox(http: reqwest::Client, endpoint: Url, headers: HeaderMap, outbox: Outbox) {
    while let Some(body) = outbox.next().await {
        let request = http
            .post(endpoint.clone())
            .headers(headers.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .timeout(POST_TIMEOUT)
            .body(body);
        let post = tokio::spawn(async move {
            match request.send().await {
                Ok(response) if !response.status().is_success() => {
                    tracing::warn!(status = %response.status(), "legacy SSE server refused a message");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e.without_url(), "legacy SSE message not delivered"),
            }
        });
        let _ = tokio::time::timeout(IN_ORDER, post).await;
    }
}

impl SseClientTransport {
    /// Opens the event stream and waits for its `endpoint` event.
    pub async fn connect(http: reqwest::Client, url: Url, headers: HeaderMap) -> Result<Self, SseError> {
        let response = http
            .get(url.clone())
            .headers(headers.clone())
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"))
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(SseError::Status(response.status()));
        }
        // An event may not grow past its cap: a server that never ends its event would
        // otherwise hold a growing buffer that is rescanned at every chunk.
        let capped = crate::bounded::cap_events(response.bytes_stream(), crate::bounded::MAX_EVENT_BYTES);
        let mut events = Box::pin(capped.eventsource());
        let endpoint = loop {
            match events.next().await {
                Some(Ok(ev)) if ev.event == "endpoint" => break ev.data,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(SseError::NoEndpoint),
            }
        };
        let endpoint = url.join(endpoint.trim()).map_err(|_| SseError::BadEndpoint(endpoint.clone()))?;
        if endpoint.origin() != url.origin() {
            // A server may not redirect our messages (and headers) to another host.
            return Err(SseError::BadEndpoint(endpoint.to_string()));
        }
        let (tx, incoming) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    () = token.cancelled() => break,
                    ev = events.next() => ev,
                };
                match ev {
                    Some(Ok(ev)) if ev.event == "message" || ev.event.is_empty() => {
                        match serde_json::from_str::<RxJsonRpcMessage<RoleClient>>(&ev.data) {
                            Ok(msg) => {
                                if tx.send(msg).await.is_err() {
                                    break;
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "ignoring a malformed SSE message"),
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "SSE stream broke");
                        break;
                    }
                    None => break,
                }
            }
            // Dropping `tx` ends `receive`, which ends the rmcp service: the supervisor reconnects.
        });
        let outbox = Outbox::default();
        tokio::spawn(post_outbox(http, endpoint, headers, outbox.clone()));
        Ok(Self { outbox, incoming, _reader: stop.drop_guard() })
    }
}

impl Drop for SseClientTransport {
    /// rmcp may drop a transport without closing it (a failed `initialize`): the outbox task
    /// ends with it either way.
    fn drop(&mut self) {
        self.outbox.close();
    }
}

impl Transport<RoleClient> for SseClientTransport {
    type Error = SseError;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), SseError>> + Send + 'static {
        let queued = self.outbox.push(&item);
        async move { queued }
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.incoming.recv()
    }

    async fn close(&mut self) -> Result<(), SseError> {
        self.incoming.close();
        self.outbox.close();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{
        CallToolRequest, CallToolRequestParams, CancelledNotification, CancelledNotificationParam, ClientRequest,
    };

    fn call(id: i64) -> TxJsonRpcMessage<RoleClient> {
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(CallToolRequestParams::new("slow")));
        JsonRpcMessage::request(request, RequestId::Number(id))
    }

    fn cancel(id: i64) -> TxJsonRpcMessage<RoleClient> {
        let params = CancelledNotificationParam::new(Some(RequestId::Number(id)), None);
        JsonRpcMessage::notification(ClientNotification::CancelledNotification(CancelledNotification::new(params)))
    }

    #[tokio::test]
    async fn a_request_cancelled_before_it_left_is_never_sent() {
        let outbox = Outbox::default();
        outbox.push(&call(1)).unwrap();
        outbox.push(&call(2)).unwrap();
        outbox.push(&cancel(1)).unwrap();
        // Request 2 already left: its cancellation goes out.
        let first = outbox.next().await.unwrap();
        assert!(String::from_utf8_lossy(&first).contains("\"id\":2"));
        outbox.push(&cancel(2)).unwrap();
        let second = outbox.next().await.unwrap();
        assert!(String::from_utf8_lossy(&second).contains("notifications/cancelled"));
        outbox.close();
        assert!(outbox.next().await.is_none());
    }

    #[test]
    fn the_outbox_is_bounded() {
        let outbox = Outbox::default();
        for i in 0..OUTBOX_LIMIT {
            outbox.push(&call(i as i64)).unwrap();
        }
        assert!(matches!(outbox.push(&call(-1)), Err(SseError::OutboxFull)));
    }
}
