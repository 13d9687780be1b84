//! The legacy HTTP+SSE transport of MCP 2024-11-05, which rmcp 3 does not provide.
//!
//! `GET /sse` opens a session: its first event is `endpoint` with data
//! `/message?sessionId=<uuid>`, then every message of the server goes out as an `event: message`
//! with the JSON-RPC message as data. `POST /message?sessionId=<uuid>` hands one JSON-RPC
//! message (or a batch array) to the session's rmcp server and answers `202 Accepted`; an
//! unknown session is `404`. Closing the SSE stream ends the session.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, Stream, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::{RoleServer, ServiceExt};
use rmcp::transport::Transport;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::server::TestServer;

/// Interval of SSE comment lines that keep idle connections open (a closed client is noticed
/// at once regardless).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Messages buffered per direction and session.
const CHANNEL_CAPACITY: usize = 64;

type Sessions = Arc<Mutex<HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>>>;

#[derive(Clone)]
struct AppState {
    make_server: Arc<dyn Fn() -> TestServer + Send + Sync>,
    sessions: Sessions,
}

/// The axum router of the legacy SSE transport.
pub fn router(make_server: impl Fn() -> TestServer + Send + Sync + 'static) -> Router {
    let state = AppState { make_server: Arc::new(make_server), sessions: Sessions::default() };
    Router::new().route("/sse", get(open_session)).route("/message", post(post_message)).with_state(state)
}

/// An rmcp transport over two channels: what clients POST comes in on `inbound`, what the
/// server sends goes to the session's SSE stream through `outbound`.
struct ChannelTransport {
    inbound: mpsc::Receiver<ClientJsonRpcMessage>,
    outbound: mpsc::Sender<ServerJsonRpcMessage>,
}

impl Transport<RoleServer> for ChannelTransport {
    type Error = std::io::Error;

    fn send(&mut self, item: ServerJsonRpcMessage) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let outbound = self.outbound.clone();
        async move {
            outbound
                .send(item)
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "SSE stream closed"))
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<ClientJsonRpcMessage>> + Send {
        self.inbound.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inbound.close();
        Ok(())
    }
}

/// Ends the session when the SSE response stream is dropped (the client went away).
struct SessionGuard {
    id: String,
    sessions: Sessions,
    ct: CancellationToken,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.lock().remove(&self.id);
        self.ct.cancel();
        tracing::info!(session = %self.id, "SSE session closed");
    }
}

async fn open_session(State(state): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let id = uuid::Uuid::new_v4().to_string();
    let (inbound_tx, inbound_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (outbound_tx, outbound_rx) = mpsc::channel::<ServerJsonRpcMessage>(CHANNEL_CAPACITY);
    state.sessions.lock().insert(id.clone(), inbound_tx);
    let ct = CancellationToken::new();
    let server = (state.make_server)();
    let transport = ChannelTransport { inbound: inbound_rx, outbound: outbound_tx };
    {
        let id = id.clone();
        let ct = ct.clone();
        tokio::spawn(async move {
            match server.serve_with_ct(transport, ct).await {
                Ok(running) => {
                    let reason = running.waiting().await;
                    tracing::info!(session = %id, ?reason, "SSE session's MCP server stopped");
                }
                Err(error) => tracing::warn!(session = %id, %error, "SSE session did not initialize"),
            }
        });
    }
    tracing::info!(session = %id, "SSE session opened");

    let endpoint = Event::default().event("endpoint").data(format!("/message?sessionId={id}"));
    let guard = SessionGuard { id, sessions: state.sessions, ct };
    let messages = stream::unfold((outbound_rx, guard), |(mut rx, guard)| async move {
        let message = rx.recv().await?;
        let event = match serde_json::to_string(&message) {
            Ok(json) => Event::default().event("message").data(json),
            Err(error) => {
                tracing::error!(%error, "cannot serialise a server message");
                Event::default().comment("unserialisable message dropped")
            }
        };
        Some((Ok(event), (rx, guard)))
    });
    let events = stream::once(async move { Ok(endpoint) }).chain(messages);
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

#[derive(Deserialize)]
struct MessageQuery {
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

async fn post_message(State(state): State<AppState>, Query(query): Query<MessageQuery>, body: Bytes) -> Response {
    let Some(session_id) = query.session_id else {
        return (StatusCode::BAD_REQUEST, "missing sessionId").into_response();
    };
    let sender = state.sessions.lock().get(&session_id).cloned();
    let Some(sender) = sender else {
        return (StatusCode::NOT_FOUND, "unknown session").into_response();
    };
    let messages = if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        serde_json::from_slice::<Vec<ClientJsonRpcMessage>>(&body)
    } else {
        serde_json::from_slice::<ClientJsonRpcMessage>(&body).map(|message| vec![message])
    };
    let messages = match messages {
        Ok(messages) => messages,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("invalid JSON-RPC message: {error}")).into_response(),
    };
    for message in messages {
        if sender.send(message).await.is_err() {
            return (StatusCode::NOT_FOUND, "session closed").into_response();
        }
    }
    (StatusCode::ACCEPTED, "Accepted").into_response()
}
