//! The tool loop: call the model, run the MCP tools it asks for, feed the results back, repeat
//! until it answers. Text flows to the client as it arrives (when streaming); tool calls of our
//! tools are assembled and run, never shown raw.

use std::collections::HashSet;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, header};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::calls::{CallLedger, CallScope, ToolRun, run_calls};
use super::cards;
use super::round::{Round, add_usage};
use crate::artifacts::Artifacts;
use crate::config::ToolLoopConfig;
use crate::llm::{LlmError, SseEvent, UpstreamBody, UpstreamClient, UpstreamRequest};
use crate::mcp::{Hub, ToolEntry};

/// What the loop needs from the rest of the program.
#[derive(Clone)]
pub struct Agent {
    /// The MCP servers.
    pub hub: Arc<Hub>,
    /// The model gateway.
    pub upstream: UpstreamClient,
    /// Loop limits and presentation.
    pub limits: Arc<ToolLoopConfig>,
    /// Where binary and oversized outputs go.
    pub artifacts: Artifacts,
    /// Inline budget of one tool output, in bytes.
    pub max_inline_bytes: usize,
}

/// One chat request to run through the loop.
pub struct ChatJob {
    /// The client's body (control fields removed, history converted).
    pub body: Map<String, Value>,
    /// Our tools for this request.
    pub tools: Vec<Arc<ToolEntry>>,
    /// Headers forwarded upstream.
    pub headers: HeaderMap,
    /// The client's `Authorization`.
    pub client_auth: Option<HeaderValue>,
    /// The model takes images: tool images are also shown to it.
    pub vision: bool,
}

/// The identity every chunk of one response shares.
#[derive(Clone, Default)]
struct Identity {
    id: String,
    created: u64,
    model: String,
}

/// Where output goes: chunks to a streaming client, or nowhere (a non-streaming client gets the
/// assembled result at the end).
struct Emitter {
    tx: Option<mpsc::Sender<Result<SseEvent, LlmError>>>,
    identity: Option<Identity>,
}

impl Emitter {
    async fn delta(&mut self, delta: Value, finish: Option<&str>) {
        let (Some(tx), Some(id)) = (&self.tx, &self.identity) else { return };
        let chunk = json!({"id": id.id, "object": "chat.completion.chunk", "created": id.created, "model": id.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        let _ = tx.send(Ok(SseEvent { event: String::new(), data: chunk.to_string() })).await;
    }

    async fn usage(&mut self, usage: &Value) {
        let (Some(tx), Some(id)) = (&self.tx, &self.identity) else { return };
        let chunk = json!({"id": id.id, "object": "chat.completion.chunk", "created": id.created, "model": id.model,
            "choices": [], "usage": usage});
        let _ = tx.send(Ok(SseEvent { event: String::new(), data: chunk.to_string() })).await;
    }
}

/// The loop's result.
pub struct Outcome {
    identity: Identity,
    content: String,
    client_calls: Vec<Value>,
    finish_reason: String,
    usage: Value,
    trace: Vec<ToolRun>,
}

impl Outcome {
    /// The non-streaming `chat.completion` object, with the `mcp_tool_calls` trace.
    pub fn into_completion(self) -> Value {
        let mut message = json!({"role": "assistant", "content": if self.content.is_empty() { Value::Null } else { Value::String(self.content) }});
        if !self.client_calls.is_empty() {
            message["tool_calls"] = Value::Array(self.client_calls);
        }
        json!({
            "id": self.identity.id, "object": "chat.completion", "created": self.identity.created,
            "model": self.identity.model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": self.finish_reason}],
            "usage": self.usage,
            "mcp_tool_calls": self.trace,
        })
    }
}

impl Agent {
    /// Runs the loop for a non-streaming client.
    pub async fn complete(&self, job: ChatJob) -> Result<Value, LlmError> {
        let mut out = Emitter { tx: None, identity: None };
        Ok(self.drive(job, &mut out).await?.into_completion())
    }

    /// Runs the loop for a streaming client; events end when the loop does (the caller adds
    /// `[DONE]`). Dropping the receiver stops the loop and cancels its tool calls.
    pub fn stream(&self, job: ChatJob) -> mpsc::Receiver<Result<SseEvent, LlmError>> {
        let (tx, rx) = mpsc::channel(32);
        let agent = self.clone();
        let include_usage =
            job.body.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool) == Some(true);
        tokio::spawn(async move {
            let mut out = Emitter { tx: Some(tx.clone()), identity: None };
            let run = agent.drive(job, &mut out);
            let result = tokio::select! {
                r = run => r,
                () = tx.closed() => {
                    tracing::info!("client went away; tool loop cancelled");
                    return;
                }
            };
            match result {
                Ok(outcome) => {
                    out.delta(json!({}), Some(&outcome.finish_reason)).await;
                    if include_usage {
                        out.usage(&outcome.usage).await;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
        });
        rx
    }

    async fn drive(&self, job: ChatJob, out: &mut Emitter) -> Result<Outcome, LlmError> {
        let started = Instant::now();
        let ChatJob { mut body, tools, headers, client_auth, vision } = job;
        let client_tools: HashSet<String> = super::client_tool_names(&body).map(str::to_owned).collect();
        let mut merged_tools: Vec<Value> = body.get("tools").and_then(Value::as_array).cloned().unwrap_or_default();
        merged_tools.extend(tools.iter().map(|t| t.openai_tool.clone()));
        body.insert("tools".into(), Value::Array(merged_tools));
        body.insert("stream".into(), Value::Bool(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
        let mut messages = match body.remove("messages") {
            Some(Value::Array(m)) => m,
            _ => Vec::new(),
        };

        let limits = &self.limits;
        let mut ledger = CallLedger::default();
        let mut usage = json!({});
        let mut content = String::new();
        let mut trace = Vec::new();
        for round_no in 1..=limits.max_rounds {
            let last = round_no == limits.max_rounds
                || ledger.total >= limits.max_tool_calls
                || started.elapsed() >= limits.max_duration;
            if last {
                body.insert("tool_choice".into(), Value::String("none".into()));
            }
            let span = tracing::info_span!("llm.round", round = round_no);
            let round = tracing::Instrument::instrument(
                self.round(&body, &messages, &headers, &client_auth, &client_tools, out),
                span,
            )
            .await?;
            if let Some(u) = &round.usage {
                add_usage(&mut usage, u);
            }
            content.push_str(&round.content);
            let gateway: Vec<_> = round.gateway_calls().collect();
            let client_calls: Vec<Value> = round.client_calls().map(|c| c.to_message_json()).collect();
            if gateway.is_empty() {
                let finish = round.finish_reason.clone().unwrap_or_else(|| "stop".into());
                return Ok(Outcome {
                    identity: out.identity.clone().unwrap_or_default(),
                    content,
                    client_calls,
                    finish_reason: finish,
                    usage,
                    trace,
                });
            }
            let mut assistant = json!({"role": "assistant", "content": if round.content.is_empty() { Value::Null } else { Value::String(round.content.clone()) }});
            assistant["tool_calls"] = Value::Array(gateway.iter().map(|c| c.to_message_json()).collect());
            messages.push(assistant);
            let scope =
                CallScope { hub: &self.hub, store: &self.artifacts, budget: self.max_inline_bytes, offered: &tools };
            let runs = run_calls(&scope, &gateway, &mut ledger, limits).await;
            for run in &runs {
                messages.push(json!({"role": "tool", "tool_call_id": run.id, "content": run.output}));
                let mut shown = if limits.tool_cards { cards::render(run) } else { String::new() };
                // Images a tool produced reach the user as markdown images in the answer.
                for image in run.artifacts.iter().filter(|a| a.mime_type.starts_with("image/")) {
                    let _ = write!(shown, "\n\n![{}]({})\n\n", run.name, image.url);
                }
                if !shown.is_empty() {
                    content.push_str(&shown);
                    out.delta(json!({"content": shown}), None).await;
                }
            }
            if vision {
                let parts: Vec<Value> = runs
                    .iter()
                    .flat_map(|r| &r.artifacts)
                    .filter(|a| a.mime_type.starts_with("image/"))
                    .map(|a| json!({"type": "image_url", "image_url": {"url": a.url}}))
                    .collect();
                if !parts.is_empty() {
                    // Tool messages take text only; images follow as a user message.
                    let mut content = vec![json!({"type": "text", "text": "Images returned by the tool calls above:"})];
                    content.extend(parts);
                    messages.push(json!({"role": "user", "content": content}));
                }
            }
            trace.extend(runs);
            if !client_calls.is_empty() {
                // A mixed turn: ours ran; the client's calls go back to the client.
                return Ok(Outcome {
                    identity: out.identity.clone().unwrap_or_default(),
                    content,
                    client_calls,
                    finish_reason: "tool_calls".into(),
                    usage,
                    trace,
                });
            }
        }
        // Only a model that ignored `tool_choice: "none"` on the last round gets here: what it
        // said so far is the answer.
        tracing::warn!(rounds = limits.max_rounds, "the model kept calling tools past the last round");
        Ok(Outcome {
            identity: out.identity.clone().unwrap_or_default(),
            content,
            client_calls: Vec::new(),
            finish_reason: "length".into(),
            usage,
            trace,
        })
    }

    /// One upstream request, streamed; text and client tool deltas are passed on as they come.
    async fn round(
        &self,
        body: &Map<String, Value>,
        messages: &[Value],
        headers: &HeaderMap,
        client_auth: &Option<HeaderValue>,
        client_tools: &HashSet<String>,
        out: &mut Emitter,
    ) -> Result<Round, LlmError> {
        // Serialised straight from the shared parts: no copy of the history per round.
        #[derive(serde::Serialize)]
        struct RoundBody<'a> {
            #[serde(flatten)]
            body: &'a Map<String, Value>,
            messages: &'a [Value],
        }
        let bytes = serde_json::to_vec(&RoundBody { body, messages }).unwrap_or_default();
        let mut headers = headers.clone();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let response = self
            .upstream
            .send(UpstreamRequest {
                method: Method::POST,
                path_and_query: "/chat/completions".into(),
                headers,
                client_auth: client_auth.clone(),
                body: UpstreamBody::Bytes(bytes.into()),
            })
            .await?;
        let mut round = Round::default();
        let mut events = std::pin::pin!(response.events());
        while let Some(event) = events.next().await {
            let event = event?;
            if event.is_done() {
                break;
            }
            let Ok(chunk) = serde_json::from_str::<Value>(&event.data) else { continue };
            if let Some(err) = chunk.get("error") {
                let detail = err.get("message").and_then(Value::as_str).unwrap_or("error event").to_owned();
                return Err(LlmError::StreamBroken { upstream: self.upstream.display_url().to_owned(), detail });
            }
            if out.identity.is_none() {
                out.identity = Some(Identity {
                    id: chunk.get("id").and_then(Value::as_str).unwrap_or("chatcmpl-mcp").to_owned(),
                    created: chunk.get("created").and_then(Value::as_u64).unwrap_or_default(),
                    model: chunk.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
                });
                out.delta(json!({"role": "assistant", "content": ""}), None).await;
            }
            if let Some(delta) = round.push(&chunk, client_tools).delta {
                out.delta(Value::Object(delta), None).await;
            }
        }
        Ok(round)
    }
}
