//! The legacy HTTP+SSE client transport (MCP 2024-11-05), which rmcp 3 no longer ships.
//!
//! `GET <url>` opens an event stream whose first `endpoint` event names the URL to POST
//! JSON-RPC messages to; the server's responses and notifications come back as `message`
//! events on the stream. Built on reqwest and eventsource-stream; an event larger than
//! [`crate::bounded::MAX_EVENT_BYTES`] ends the session.
//!
//! Messages go out through an outbox: one task POSTs them in order, but never waits more than
//! [`IN_ORDER`] for one POST before starting the next, and `send` only enqueues. A server that
//! stops answering (frozen, overloaded) therefore never holds up the caller — rmcp awaits the
//! send of a timed-out request's cancellation, for one — nor the calls queued behind it.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use rmcp::RoleClient;
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
}

/// How long the outbox waits for one POST before it starts the next (they are acknowledged in
/// milliseconds by a live server; the POST itself goes on up to [`POST_TIMEOUT`]).
const IN_ORDER: Duration = Duration::from_secs(2);
/// Longest a POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(30);

/// A connected legacy SSE session.
pub struct SseClientTransport {
    outbox: mpsc::UnboundedSender<Vec<u8>>,
    incoming: mpsc::Receiver<RxJsonRpcMessage<RoleClient>>,
    _reader: DropGuard,
}

/// POSTs the outbox's messages in order until the transport is dropped.
async fn post_outbox(
    http: reqwest::Client,
    endpoint: Url,
    headers: HeaderMap,
    mut outbox: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    while let Some(body) = outbox.recv().await {
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
        let (outbox, queued) = mpsc::unbounded_channel();
        tokio::spawn(post_outbox(http, endpoint, headers, queued));
        Ok(Self { outbox, incoming, _reader: stop.drop_guard() })
    }
}

impl Transport<RoleClient> for SseClientTransport {
    type Error = SseError;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), SseError>> + Send + 'static {
        let queued = serde_json::to_vec(&item).map_err(SseError::from).and_then(|body| {
            // The outbox is gone only when the transport is closing.
            self.outbox.send(body).map_err(|_| SseError::NoEndpoint)
        });
        async move { queued }
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.incoming.recv()
    }

    async fn close(&mut self) -> Result<(), SseError> {
        self.incoming.close();
        Ok(())
    }
}
