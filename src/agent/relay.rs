//! What the MCP facade relays between its clients and the servers behind it, besides requests
//! and results: per session, the logging level and the resource subscriptions it holds; per
//! call, who answers a server's questions and sampling requests (the client, when it declared
//! the capability) and where the call's log messages and progress go (the client, with its own
//! progress token, in the order the server sent them).

#![allow(deprecated)] // Logging and sampling are deprecated by SEP-2577; servers people run use both.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rmcp::model::{
    CreateMessageRequestParams, ElicitRequestParams, LoggingLevel, LoggingMessageNotificationParam,
    ProgressNotificationParam, ProgressToken, ResourceUpdatedNotificationParam,
};
use rmcp::{Peer, RoleServer};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::config::Redactor;
use crate::mcp::{CallRelay, Hub, RELAY};

/// Longest wait for a call's last notifications to reach its client after the call ended.
const FLUSH: Duration = Duration::from_secs(2);
/// Notifications of one call waiting to be sent (more are dropped: a server cannot flood a
/// client through the gateway).
const QUEUED: usize = 256;

/// One facade session: its client, the level of log messages it wants, and the resources it
/// subscribed to.
#[derive(Default)]
pub struct Session {
    /// The client, once initialized.
    pub peer: std::sync::OnceLock<Peer<RoleServer>>,
    /// The least severe log message it is sent (none set: all).
    pub level: Mutex<Option<LoggingLevel>>,
    /// Its subscriptions: (the URI it used, the server, the server's URI).
    pub subscriptions: Mutex<Vec<(String, String, String)>>,
    /// The hub, to let go of the subscriptions when the session ends.
    pub hub: std::sync::OnceLock<Arc<Hub>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        let held = std::mem::take(&mut *self.subscriptions.lock());
        let (Some(hub), false) = (self.hub.get().cloned(), held.is_empty()) else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for (_, server, original) in held {
                    hub.unsubscribe(&server, &original).await;
                }
            });
        }
    }
}

impl Session {
    /// Whether a log message at `level` is for this session.
    fn wants(&self, level: LoggingLevel) -> bool {
        self.level.lock().is_none_or(|least| severity(level) >= severity(least))
    }

    /// Tells the client that the resource it subscribed to as `uri` changed, if it did.
    pub async fn resource_updated(&self, server: &str, uri: &str) {
        let Some(peer) = self.peer.get() else { return };
        let exposed: Vec<String> = self
            .subscriptions
            .lock()
            .iter()
            .filter(|(_, s, original)| s == server && original == uri)
            .map(|(exposed, _, _)| exposed.clone())
            .collect();
        for uri in exposed {
            let _ = peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri)).await;
        }
    }
}

/// How severe `level` is (debug lowest).
pub fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

enum Outgoing {
    Log(LoggingMessageNotificationParam),
    Progress(ProgressNotificationParam),
}

/// A server's request of a call's client: what, and where its answer goes.
enum Asked {
    Elicit(Value),
    Sample(Value),
    Roots,
}
type Pending = (Asked, oneshot::Sender<Result<Value, String>>);

/// The relay of one facade call: what it sets around the call, the task that sends the call's
/// notifications in order, and the server's requests waiting to be put to the client.
pub struct CallRelayTask {
    relay: Arc<CallRelay>,
    sender: tokio::task::JoinHandle<()>,
    asked: mpsc::Receiver<Pending>,
    peer: Peer<RoleServer>,
}

/// A relay function that hands `what` of a request to the call's driver and waits for the
/// client's answer.
fn forward(to: &mpsc::Sender<Pending>, what: fn(Value) -> Asked) -> crate::mcp::Asker {
    let to = to.clone();
    Arc::new(move |params: Value| {
        let to = to.clone();
        Box::pin(async move {
            let (answer, answered) = oneshot::channel();
            to.send((what(params), answer)).await.map_err(|_| "the call has ended".to_owned())?;
            answered.await.map_err(|_| "the call has ended".to_owned())?
        }) as futures_util::future::BoxFuture<'static, Result<Value, String>>
    })
}

impl CallRelayTask {
    /// The relay for a call by `peer`'s client in `session`; `token` is the client's progress
    /// token (no token: no progress is sent); everything relayed is scrubbed with `redactor`.
    /// A `new_era` (2026-07-28) client takes no requests from servers: questions and sampling
    /// requests of a handshake-era server are then not put to it (sampling falls back to the
    /// configured model; a question is declined).
    pub fn new(
        peer: &Peer<RoleServer>,
        session: Arc<Session>,
        token: Option<ProgressToken>,
        new_era: bool,
        redactor: Arc<Redactor>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Outgoing>(QUEUED);
        let out = peer.clone();
        let sender = tokio::spawn(async move {
            while let Some(next) = rx.recv().await {
                let _ = match next {
                    Outgoing::Log(params) => out.notify_logging_message(params).await,
                    Outgoing::Progress(params) => out.notify_progress(params).await,
                };
            }
        });
        let (ask_tx, asked) = mpsc::channel::<Pending>(4);
        let capabilities =
            peer.peer_info().filter(|_| !new_era).map(|info| info.capabilities.clone()).unwrap_or_default();
        let asker = capabilities.elicitation.is_some().then(|| forward(&ask_tx, Asked::Elicit));
        let sampler = capabilities.sampling.is_some().then(|| forward(&ask_tx, Asked::Sample));
        let logs = tx.clone();
        let scrub = redactor.clone();
        let log: crate::mcp::NotifyFn = Arc::new(move |mut params: Value| {
            scrub.scrub_json(&mut params);
            let Ok(params) = serde_json::from_value::<LoggingMessageNotificationParam>(params) else { return };
            if session.wants(params.level) {
                let _ = logs.try_send(Outgoing::Log(params));
            }
        });
        let progress = token.map(|token| {
            Arc::new(move |mut params: Value| {
                redactor.scrub_json(&mut params);
                let Ok(mut params) = serde_json::from_value::<ProgressNotificationParam>(params) else { return };
                params.progress_token = token.clone();
                let _ = tx.try_send(Outgoing::Progress(params));
            }) as crate::mcp::NotifyFn
        });
        let relay = Arc::new(CallRelay { asker, sampler, log: Some(log), progress, heard: Default::default() });
        Self { relay, sender, asked, peer: peer.clone() }
    }

    /// Runs `call` with this relay around it until it ends or `cancelled` (`None`). The
    /// server's questions and sampling requests are put to the client from here, the facade
    /// request's own task, so they reach the client on that request's stream (scrubbed, and
    /// waited for at most [`CLIENT_ANSWERS`]). Afterwards waits (a little) for the call's last
    /// notifications to reach the client, so they arrive before the result.
    pub async fn drive<T>(
        self,
        call: impl std::future::Future<Output = T>,
        cancelled: &tokio_util::sync::CancellationToken,
        redactor: &Redactor,
    ) -> Option<T> {
        let Self { relay, sender, mut asked, peer } = self;
        let mut call = Box::pin(RELAY.scope(relay, call));
        let out = loop {
            tokio::select! {
                out = &mut call => break Some(out),
                () = cancelled.cancelled() => break None,
                Some((question, answer)) = asked.recv() => {
                    tokio::select! {
                        put = put(&peer, question, redactor) => { let _ = answer.send(put); }
                        () = cancelled.cancelled() => break None,
                    }
                }
            }
        };
        // The relay (and the senders it holds) goes with the call.
        drop(call);
        drop(asked);
        let _ = tokio::time::timeout(FLUSH, sender).await;
        out
    }
}

/// Longest wait for a client to answer a server's question or sampling request.
const CLIENT_ANSWERS: Duration = Duration::from_secs(15 * 60);

/// Puts a server's request to the client (scrubbed); its answer as JSON.
async fn put(peer: &Peer<RoleServer>, question: Asked, redactor: &Redactor) -> Result<Value, String> {
    let asking = async {
        match question {
            Asked::Elicit(mut params) => {
                redactor.scrub_json(&mut params);
                let params: ElicitRequestParams = serde_json::from_value(params).map_err(|e| e.to_string())?;
                let answer = peer.create_elicitation(params).await.map_err(|e| e.to_string())?;
                serde_json::to_value(answer).map_err(|e| e.to_string())
            }
            Asked::Sample(mut params) => {
                redactor.scrub_json(&mut params);
                let params: CreateMessageRequestParams = serde_json::from_value(params).map_err(|e| e.to_string())?;
                let answer = peer.create_message(params).await.map_err(|e| e.to_string())?;
                serde_json::to_value(answer).map_err(|e| e.to_string())
            }
            Asked::Roots => {
                let answer = peer.list_roots().await.map_err(|e| e.to_string())?;
                serde_json::to_value(answer).map_err(|e| e.to_string())
            }
        }
    };
    tokio::time::timeout(CLIENT_ANSWERS, asking).await.map_err(|_| "the client did not answer in time".to_owned())?
}

/// Answers a 2026-07-28 server's `input_required` requests (by key) by putting each to a
/// handshake-era client: questions, sampling requests and `roots/list`, as the client declared
/// it can answer them. Fails (with why) on the first it cannot, or when `cancelled`.
pub async fn answer(
    peer: &Peer<RoleServer>,
    requests: &serde_json::Map<String, Value>,
    redactor: &Redactor,
    cancelled: &tokio_util::sync::CancellationToken,
) -> Result<serde_json::Map<String, Value>, String> {
    let capabilities = peer.peer_info().map(|info| info.capabilities.clone()).unwrap_or_default();
    let mut answers = serde_json::Map::new();
    for (key, request) in requests {
        let params = request.get("params").cloned().unwrap_or(Value::Null);
        let question = match request.get("method").and_then(Value::as_str) {
            Some("elicitation/create") if capabilities.elicitation.is_some() => Asked::Elicit(params),
            Some("sampling/createMessage") if capabilities.sampling.is_some() => Asked::Sample(params),
            Some("roots/list") if capabilities.roots.is_some() => Asked::Roots,
            Some(method) => return Err(format!("it does not answer `{method}`")),
            None => return Err("a request without a method".into()),
        };
        let answer = tokio::select! {
            answer = put(peer, question, redactor) => answer?,
            () = cancelled.cancelled() => return Err("the call was cancelled".into()),
        };
        answers.insert(key.clone(), answer);
    }
    Ok(answers)
}
