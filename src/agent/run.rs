//! Running one chat request through the tool loop ([`super::tool_loop::ToolLoop`]): for a
//! non-streaming client to its `chat.completion`, for a streaming one as chunks from a task of
//! its own that stops (cancelling its tool calls) when the client goes away.

use std::sync::Arc;

use http::HeaderMap;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::sink::Sink;
use super::tool_loop::ToolLoop;
use crate::config::ToolLoopConfig;
use crate::llm::{LlmError, SseEvent, UpstreamClient};
use crate::mcp::Hub;

/// What the loop needs from the rest of the program.
#[derive(Clone)]
pub struct Agent {
    /// The MCP servers.
    pub hub: Arc<Hub>,
    /// The model gateway.
    pub upstream: UpstreamClient,
    /// Loop limits and presentation.
    pub limits: Arc<ToolLoopConfig>,
    /// Runs tools: the one path of every surface (hub call, scrubbing, artifacts, metrics).
    pub invoker: super::Invoker,
    /// Signs the tool cards this gateway renders, so only those come back as tool calls.
    pub cards: super::cards::CardSigner,
    /// Per-model policies, most specific first.
    pub models: Arc<Vec<crate::config::ModelPolicy>>,
    /// Tool budgets, ranking and the discovery tool.
    pub selection: Arc<crate::config::SelectionConfig>,
    /// Tools whose calls wait for the user's approval (every chat; a key's rule adds to it).
    pub approval: Arc<crate::config::ApprovalRule>,
    /// Where loops that wait for a person are kept.
    pub parking: Option<super::park::Parking>,
    /// The catalog of this agent's requests when not the hub's (the hub's plus the servers a
    /// Responses request named by URL).
    pub catalog: Option<Arc<crate::mcp::Catalog>>,
}

impl Agent {
    /// The catalog this agent's requests use: its own, else the hub's current one.
    pub fn catalog(&self) -> Arc<crate::mcp::Catalog> {
        self.catalog.clone().unwrap_or_else(|| self.hub.catalog())
    }
}

/// One chat request to run through the loop.
pub struct ChatJob {
    /// The client's body (control fields removed, history converted).
    pub body: Map<String, Value>,
    /// The slices of its messages held as the client sent them (stand-ins in `body`).
    pub slices: super::large::Slices,
    /// Our tools for this request (what is offered, and what `find_tools` may add).
    pub offer: super::selection::Offer,
    /// Headers forwarded upstream.
    pub headers: HeaderMap,
    /// The client's `Authorization`.
    pub client_auth: Option<crate::llm::CallerAuth>,
    /// The model takes images: tool images are also shown to it.
    pub vision: bool,
    /// Who the request acts for.
    pub identity: crate::config::UserIdentity,
    /// The catalog snapshot the offer was chosen from: the whole request uses this one.
    pub catalog: Arc<crate::mcp::Catalog>,
    /// The key's own approval rule, added to the agent's.
    pub approval: Option<Arc<crate::config::ApprovalRule>>,
}

/// What a request that resumes a parked loop brings of its own.
pub struct ResumeRequest {
    /// Headers forwarded upstream.
    pub headers: HeaderMap,
    /// The client's `Authorization`.
    pub client_auth: Option<crate::llm::CallerAuth>,
    /// Who the request acts for.
    pub identity: crate::config::UserIdentity,
    /// The key's own approval rule.
    pub approval: Option<Arc<crate::config::ApprovalRule>>,
}

/// How a loop starts: fresh, or going on from a parked round with the user's answer.
pub enum Start {
    /// A new request.
    Fresh,
    /// The calls a parked round still has to run, and the user's answer.
    Resumed(Vec<super::park::PendingCall>, String),
}

impl Start {
    async fn run(self, tool_loop: &mut ToolLoop, sink: &Sink) -> Result<super::Outcome, LlmError> {
        match self {
            Start::Fresh => tool_loop.run(sink).await,
            Start::Resumed(calls, answer) => tool_loop.run_resumed(calls, &answer, sink).await,
        }
    }
}

impl Agent {
    /// Runs the loop for a non-streaming client.
    pub async fn complete(&self, job: ChatJob) -> Result<Value, LlmError> {
        // Boxed here and below: the loop's future is large, and only its pointer moves on.
        let mut tool_loop = ToolLoop::start(self.clone(), job);
        Ok(Box::pin(tool_loop.run(&Sink::collect())).await?.into_completion())
    }

    /// Runs the loop and hands back its outcome as it is (for other APIs' shapes: the
    /// Responses API needs each tool run's output).
    pub async fn outcome(&self, job: ChatJob) -> Result<super::Outcome, LlmError> {
        let mut tool_loop = ToolLoop::start(self.clone(), job);
        Box::pin(tool_loop.run(&Sink::collect())).await
    }

    /// [`outcome`](Self::outcome) for a resumed loop.
    pub async fn outcome_of_loop(&self, mut tool_loop: ToolLoop, start: Start) -> Result<super::Outcome, LlmError> {
        Box::pin(start.run(&mut tool_loop, &Sink::collect())).await
    }

    /// Runs a loop (fresh or resumed) for a non-streaming client.
    pub async fn complete_loop(&self, mut tool_loop: ToolLoop, start: Start) -> Result<Value, LlmError> {
        Ok(Box::pin(start.run(&mut tool_loop, &Sink::collect())).await?.into_completion())
    }

    /// Runs the loop for a streaming client; events end when the loop does (the caller adds
    /// `[DONE]`). Dropping the receiver stops the loop and cancels its tool calls.
    pub fn stream(&self, job: ChatJob) -> mpsc::Receiver<Result<SseEvent, LlmError>> {
        let include_usage =
            job.body.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool) == Some(true);
        Self::stream_loop(ToolLoop::start(self.clone(), job), Start::Fresh, include_usage)
    }

    /// Runs a loop (fresh or resumed) for a streaming client.
    pub fn stream_loop(
        tool_loop: ToolLoop,
        start: Start,
        include_usage: bool,
    ) -> mpsc::Receiver<Result<SseEvent, LlmError>> {
        Self::stream_loop_with(tool_loop, start, include_usage, false)
    }

    /// [`stream`](Self::stream) with the tool runs in the stream too (`super::sink::TOOL_RUNS_EVENT`)
    /// and usage at the end: for other APIs' streams.
    pub fn stream_with_runs(&self, job: ChatJob) -> mpsc::Receiver<Result<SseEvent, LlmError>> {
        Self::stream_loop_with(ToolLoop::start(self.clone(), job), Start::Fresh, true, true)
    }

    /// [`stream_with_runs`](Self::stream_with_runs) for a resumed loop.
    pub fn stream_loop_with_runs(tool_loop: ToolLoop, start: Start) -> mpsc::Receiver<Result<SseEvent, LlmError>> {
        Self::stream_loop_with(tool_loop, start, true, true)
    }

    fn stream_loop_with(
        mut tool_loop: ToolLoop,
        start: Start,
        include_usage: bool,
        runs: bool,
    ) -> mpsc::Receiver<Result<SseEvent, LlmError>> {
        let (tx, rx) = mpsc::channel(32);
        // The loop outlives the handler's future: it keeps the request's spans (its id in logs,
        // its trace).
        crate::telemetry::spans::spawn(async move {
            let sink = if runs { Sink::stream_with_runs(tx.clone()) } else { Sink::stream(tx.clone()) };
            // Boxed: the loop's future is large; the spawned task (moved a few times on its
            // way into the runtime) holds its pointer beside the loop's state and sink.
            let run = Box::pin(start.run(&mut tool_loop, &sink));
            let result = tokio::select! {
                r = run => r,
                () = tx.closed() => {
                    tracing::info!("client went away; tool loop cancelled");
                    return;
                }
            };
            match result {
                Ok(outcome) => {
                    // An upstream that never sent a chunk with an id (or nothing at all) still
                    // gets the client a complete stream: a role, a finish reason, [DONE].
                    let identity = tool_loop.ensure_identity(&sink).await;
                    sink.delta(&identity, json!({}), Some(&outcome.finish_reason), Value::Null).await;
                    if include_usage {
                        sink.usage(&identity, &outcome.gathered.usage).await;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
        });
        rx
    }
}
