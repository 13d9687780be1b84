//! Where a loop's output goes, and what it adds up to.
//!
//! A [`Sink`] either streams chunks to a client as they come or collects nothing (a
//! non-streaming client gets the [`Outcome`] at the end); it carries no result. What the rounds
//! add up to — text, extensions, log probabilities, usage, the trace — is [`Gathered`] in the
//! loop's state, and [`Outcome::into_completion`] turns it into a `chat.completion`.

use std::sync::{Arc, Once};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::calls::ToolRun;
use super::round::{Round, add_usage};
use crate::llm::{LlmError, SseEvent};

/// The identity every chunk of one response shares.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResponseIdentity {
    /// `chatcmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model as the upstream named it.
    pub model: String,
}

/// One `chat.completion.chunk`, written straight to JSON: no `Value` tree is built per chunk.
#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [Choice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a Value>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    delta: &'a Value,
    logprobs: &'a Value,
    finish_reason: Option<&'a str>,
}

impl<'a> Chunk<'a> {
    fn new(identity: &'a ResponseIdentity, choices: &'a [Choice<'a>]) -> Self {
        Self {
            id: &identity.id,
            object: "chat.completion.chunk",
            created: identity.created,
            model: &identity.model,
            choices,
            usage: None,
            event: None,
        }
    }

    fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A chunk that changes nothing and carries an Open WebUI `event`.
fn event_chunk(identity: &ResponseIdentity, event: &Value) -> String {
    let empty = Value::Object(Map::new());
    let choices = [Choice { index: 0, delta: &empty, logprobs: &Value::Null, finish_reason: None }];
    Chunk { event: Some(event), ..Chunk::new(identity, &choices) }.json()
}

/// How long a batch of tool calls runs before its "Running …" status line is shown. A quicker
/// batch is not announced (its "Ran …" line and cards follow at once): the line would show for a
/// fraction of a millisecond, and cost the client a write and a wake-up of their own.
pub const ANNOUNCE_AFTER: Duration = Duration::from_millis(50);

/// A status line sent at most once: when the calls it announces have run for
/// [`ANNOUNCE_AFTER`], or just before their first progress line, whichever comes first.
pub struct Announcement {
    line: crate::mcp::ProgressFn,
    text: String,
    /// Held while the line is sent: a progress line from another task waits for it.
    sent: Once,
}

impl Announcement {
    /// `text` to be shown on `line` (a [`Sink::status_line`]).
    pub fn new(line: crate::mcp::ProgressFn, text: String) -> Arc<Self> {
        Arc::new(Self { line, text, sent: Once::new() })
    }

    /// Shows the line, unless it was shown. Like every status line, it is dropped rather than
    /// waited for when the client is 32 chunks behind.
    pub fn send(&self) {
        self.sent.call_once(|| (self.line)(self.text.clone()));
    }

    /// The announced calls' progress line: the announcement comes first.
    pub fn progress(self: &Arc<Self>) -> crate::mcp::ProgressFn {
        let this = self.clone();
        Arc::new(move |description: String| {
            this.send();
            (this.line)(description);
        })
    }

    /// Runs `calls` to their end, shown once they take longer than [`ANNOUNCE_AFTER`].
    pub async fn during<T>(&self, calls: impl Future<Output = T>) -> T {
        let mut calls = std::pin::pin!(calls);
        tokio::select! {
            biased;
            done = &mut calls => return done,
            () = tokio::time::sleep(ANNOUNCE_AFTER) => self.send(),
        }
        calls.await
    }
}

/// Chunks to a streaming client, or nowhere.
pub struct Sink {
    tx: Option<mpsc::Sender<Result<SseEvent, LlmError>>>,
    /// Also send each batch of tool runs as a [`TOOL_RUNS_EVENT`] (for other APIs' streams,
    /// never a chat client's).
    runs: bool,
}

/// The SSE event name of a batch of tool runs ([`Sink::runs`]): JSON `[{id, name,
/// arguments, output, is_error}]`.
pub const TOOL_RUNS_EVENT: &str = "mcp.tool_runs";

impl Sink {
    /// A sink that streams to `tx`.
    pub fn stream(tx: mpsc::Sender<Result<SseEvent, LlmError>>) -> Self {
        Self { tx: Some(tx), runs: false }
    }

    /// A sink that streams to `tx`, tool runs included (see [`TOOL_RUNS_EVENT`]).
    pub fn stream_with_runs(tx: mpsc::Sender<Result<SseEvent, LlmError>>) -> Self {
        Self { tx: Some(tx), runs: true }
    }

    /// A sink that sends nothing (the result is the outcome).
    pub fn collect() -> Self {
        Self { tx: None, runs: false }
    }

    /// Sends a batch of finished tool runs, when this sink takes them.
    pub async fn runs(&self, runs: &[ToolRun]) {
        let (Some(tx), true) = (&self.tx, self.runs) else { return };
        let batch: Vec<Value> = runs
            .iter()
            .map(|r| json!({"id": r.id, "name": r.name, "arguments": r.arguments, "output": r.output, "is_error": r.is_error}))
            .collect();
        let data = serde_json::to_string(&batch).unwrap_or_default();
        let _ = tx.send(Ok(SseEvent { event: TOOL_RUNS_EVENT.into(), data })).await;
    }

    /// Sends one chunk with `delta` under `identity`.
    pub async fn delta(&self, identity: &ResponseIdentity, delta: Value, finish: Option<&str>, logprobs: Value) {
        let Some(tx) = &self.tx else { return };
        let choices = [Choice { index: 0, delta: &delta, logprobs: &logprobs, finish_reason: finish }];
        let data = Chunk::new(identity, &choices).json();
        let _ = tx.send(Ok(SseEvent { event: String::new(), data })).await;
    }

    /// Sends an Open WebUI event (its `"event"` field, e.g. a status line) on an empty delta:
    /// Open WebUI shows it; any other client sees a chunk that changes nothing.
    pub async fn event(&self, identity: &ResponseIdentity, event: Value) {
        let Some(tx) = &self.tx else { return };
        let _ = tx.send(Ok(SseEvent { event: String::new(), data: event_chunk(identity, &event) })).await;
    }

    /// A status line shown from outside the loop's own steps (a tool's progress), or `None`
    /// when nobody streams. Sent without waiting: a full channel drops the line.
    pub fn status_line(&self, identity: &ResponseIdentity) -> Option<crate::mcp::ProgressFn> {
        let tx = self.tx.clone()?;
        let identity = identity.clone();
        Some(std::sync::Arc::new(move |description: String| {
            let event = json!({"type": "status", "data": {"description": description, "done": false}});
            let _ = tx.try_send(Ok(SseEvent { event: String::new(), data: event_chunk(&identity, &event) }));
        }))
    }

    /// Sends the usage chunk.
    pub async fn usage(&self, identity: &ResponseIdentity, usage: &Value) {
        let Some(tx) = &self.tx else { return };
        let data = Chunk { usage: Some(usage), ..Chunk::new(identity, &[]) }.json();
        let _ = tx.send(Ok(SseEvent { event: String::new(), data })).await;
    }
}

/// What the loop keeps across rounds for the final answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Gathered {
    /// Every round's text and every card, in order.
    pub content: String,
    /// What rounds put on the message besides text (refusal, annotations, audio, provider fields).
    pub extras: Map<String, Value>,
    /// Token log probabilities of every round's text, when the client asked.
    pub logprobs: Vec<Value>,
    /// Usage summed over rounds.
    pub usage: Value,
    /// Every tool call run (or refused), in order.
    pub trace: Vec<ToolRun>,
}

impl Gathered {
    /// Adds what `round` brought.
    pub fn add_round(&mut self, round: &Round) {
        if let Some(u) = &round.usage {
            add_usage(&mut self.usage, u);
        }
        self.content.push_str(round.content());
        for (key, value) in &round.message.rest {
            match self.extras.get_mut(key) {
                Some(slot) => crate::llm::wire::merge_value(slot, key, value.clone()),
                None => {
                    self.extras.insert(key.clone(), value.clone());
                }
            }
        }
        self.logprobs.extend(round.logprobs.iter().cloned());
    }
}

/// The loop's result.
pub struct Outcome {
    /// The response's identity.
    pub identity: ResponseIdentity,
    /// How the request's tools were chosen (`mcp_tool_selection`).
    pub selection: Value,
    /// The last round's reasoning text.
    pub reasoning: Option<String>,
    /// The last round's thinking blocks.
    pub thinking_blocks: Vec<Value>,
    /// The client's own tool calls of the last round.
    pub client_calls: Vec<Value>,
    /// `stop`, `tool_calls`, `length` …
    pub finish_reason: String,
    /// What the rounds added up to.
    pub gathered: Gathered,
    /// Why the loop stopped early, if it did (`mcp_error` in the answer).
    pub error: Option<Value>,
}

impl Outcome {
    /// The non-streaming `chat.completion` object, with the `mcp_tool_calls` trace.
    pub fn into_completion(self) -> Value {
        let Gathered { content, extras, logprobs, usage, trace } = self.gathered;
        let mut message = extras;
        message.insert("role".into(), Value::String("assistant".into()));
        let content = if content.is_empty() { Value::Null } else { Value::String(content) };
        message.insert("content".into(), content);
        if let Some(reasoning) = self.reasoning {
            message.insert("reasoning_content".into(), Value::String(reasoning));
        }
        if !self.thinking_blocks.is_empty() {
            message.insert("thinking_blocks".into(), Value::Array(self.thinking_blocks));
        }
        if !self.client_calls.is_empty() {
            message.insert("tool_calls".into(), Value::Array(self.client_calls));
        }
        let logprobs = if logprobs.is_empty() { Value::Null } else { json!({"content": logprobs}) };
        let mut completion = json!({
            "id": self.identity.id, "object": "chat.completion", "created": self.identity.created,
            "model": self.identity.model,
            "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": self.finish_reason}],
            "usage": usage,
            "mcp_tool_calls": trace,
            "mcp_tool_selection": self.selection,
        });
        if let (Some(error), Some(object)) = (self.error, completion.as_object_mut()) {
            object.insert("mcp_error".into(), error);
        }
        completion
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn recorder() -> (Arc<Mutex<Vec<String>>>, crate::mcp::ProgressFn) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        (lines, Arc::new(move |line: String| seen.lock().unwrap().push(line)))
    }

    #[tokio::test]
    async fn a_batch_is_announced_only_once_it_takes_a_moment_or_reports_progress() {
        // Done at once: no line.
        let (lines, line) = recorder();
        let quick = Announcement::new(line, "Running quick…".into());
        assert_eq!(quick.during(std::future::ready(1)).await, 1);
        assert!(lines.lock().unwrap().is_empty());

        // Longer than the wait: the line, once.
        let (lines, line) = recorder();
        let slow = Announcement::new(line, "Running slow…".into());
        slow.during(tokio::time::sleep(ANNOUNCE_AFTER * 2)).await;
        assert_eq!(*lines.lock().unwrap(), ["Running slow…"]);
        slow.send();
        assert_eq!(lines.lock().unwrap().len(), 1, "never twice");

        // Progress before the wait is over: the line first, then the progress, never twice.
        let (lines, line) = recorder();
        let busy = Announcement::new(line, "Running busy…".into());
        let progress = busy.progress();
        busy.during(async {
            progress("busy: 50%".into());
            progress("busy: 100%".into());
        })
        .await;
        assert_eq!(*lines.lock().unwrap(), ["Running busy…", "busy: 50%", "busy: 100%"]);
    }
}
