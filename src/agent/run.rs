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

use super::calls::{CallLedger, CallScope, Finder, ToolRun, run_calls};
use super::cards;
use super::round::{Round, add_usage};
use crate::config::ToolLoopConfig;
use crate::llm::wire::ChatChunk;
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
    /// Runs tools: the one path of every surface (hub call, scrubbing, artifacts, metrics).
    pub invoker: super::Invoker,
    /// Signs the tool cards this gateway renders, so only those come back as tool calls.
    pub cards: super::cards::CardSigner,
    /// Per-model policies, most specific first.
    pub models: Arc<Vec<crate::config::ModelPolicy>>,
    /// Tool budgets, ranking and the discovery tool.
    pub selection: Arc<crate::config::SelectionConfig>,
}

/// One round's request, serialised straight from the shared parts: no copy of the history per
/// round, and the tool definitions as the JSON they were serialised to once.
#[derive(serde::Serialize)]
struct RoundBody<'a> {
    #[serde(flatten)]
    body: &'a Map<String, Value>,
    tools: &'a serde_json::value::RawValue,
    messages: &'a [Value],
}

/// One chat request to run through the loop.
pub struct ChatJob {
    /// The client's body (control fields removed, history converted).
    pub body: Map<String, Value>,
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
    /// How the request's tools were chosen (`mcp_tool_selection` in the answer).
    selection: Value,
}

impl Emitter {
    /// Sets a made-up identity (and sends the role delta) if no chunk has set one.
    async fn ensure_identity(&mut self) {
        if self.identity.is_none() {
            self.identity = Some(Identity {
                id: format!("chatcmpl-mcp-{}", uuid::Uuid::new_v4().simple()),
                created: now(),
                model: String::new(),
            });
            self.delta(json!({"role": "assistant", "content": ""}), None).await;
        }
    }

    async fn delta(&mut self, delta: Value, finish: Option<&str>) {
        self.delta_with(delta, finish, Value::Null).await;
    }

    async fn delta_with(&mut self, delta: Value, finish: Option<&str>, logprobs: Value) {
        let (Some(tx), Some(id)) = (&self.tx, &self.identity) else { return };
        let chunk = json!({"id": id.id, "object": "chat.completion.chunk", "created": id.created, "model": id.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]});
        let _ = tx.send(Ok(SseEvent { event: String::new(), data: chunk.to_string() })).await;
    }

    async fn usage(&mut self, usage: &Value) {
        let (Some(tx), Some(id)) = (&self.tx, &self.identity) else { return };
        let chunk = json!({"id": id.id, "object": "chat.completion.chunk", "created": id.created, "model": id.model,
            "choices": [], "usage": usage});
        let _ = tx.send(Ok(SseEvent { event: String::new(), data: chunk.to_string() })).await;
    }
}

/// After a round that ran our tools, a client's `tool_choice` forcing a tool (`"required"`, or
/// one of ours by name) becomes `"auto"`, or the model could never answer.
fn relax_tool_choice(body: &mut Map<String, Value>, ours: &[Arc<ToolEntry>]) {
    if let Some(Value::Object(choice)) = body.get_mut("tool_choice")
        && choice.get("type").and_then(Value::as_str) == Some("allowed_tools")
    {
        // `{"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [...]}}`:
        // the set stays, the force goes.
        if let Some(Value::Object(allowed)) = choice.get_mut("allowed_tools") {
            allowed.insert("mode".into(), Value::String("auto".into()));
        }
        return;
    }
    let forced = match body.get("tool_choice") {
        Some(Value::String(choice)) => choice == "required",
        Some(Value::Object(choice)) => choice
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .is_some_and(|name| ours.iter().any(|t| t.name == name)),
        _ => false,
    };
    if forced {
        body.insert("tool_choice".into(), Value::String("auto".into()));
    }
}

/// What this round's `find_tools` calls found joins the offer, first (it is what the model asked
/// for), each tool once however many searches found it, and the offer stays within `room`
/// (less `find_tools` itself): providers refuse duplicate tool names, and the budget is the
/// budget. Returns how many tools joined.
fn merge_found(tools: &mut Vec<Arc<ToolEntry>>, runs: &[ToolRun], pool: &[Arc<ToolEntry>], room: usize) -> usize {
    let room = room.saturating_sub(1);
    let mut found: Vec<Arc<ToolEntry>> = Vec::new();
    for name in runs.iter().flat_map(|r| &r.found) {
        let fresh = !tools.iter().any(|t| &t.name == name) && !found.iter().any(|t| &t.name == name);
        if let Some(entry) = pool.iter().find(|e| &e.name == name).filter(|_| fresh) {
            found.push(entry.clone());
        }
    }
    found.truncate(room);
    let joined = found.len();
    if joined > 0 {
        tools.truncate(room.saturating_sub(joined));
        tools.splice(0..0, found);
    }
    joined
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The loop's result.
pub struct Outcome {
    identity: Identity,
    selection: Value,
    content: String,
    /// The last round's reasoning text and thinking blocks.
    reasoning: Option<String>,
    thinking_blocks: Vec<Value>,
    client_calls: Vec<Value>,
    finish_reason: String,
    usage: Value,
    trace: Vec<ToolRun>,
    /// What the rounds put on the message besides text (refusal, annotations, audio, provider
    /// fields), merged as streaming clients saw it.
    extras: Map<String, Value>,
    /// Token log probabilities of every round's text, when the client asked.
    logprobs: Vec<Value>,
    /// Why the loop stopped early, if it did (`mcp_error` in the answer).
    error: Option<Value>,
}

/// Time a request may run past `tool_loop.max_duration` for its final answer.
const FINAL_ANSWER_GRACE: std::time::Duration = std::time::Duration::from_secs(60);
/// Longest wait for a busy model before retrying a round.
const MAX_RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long to wait before retrying a round that failed with `e`: only when tools already ran
/// (before that the client may retry safely), only for 429 and 503, at most twice, honouring
/// `Retry-After` (capped), and never past `hard_stop`.
fn retry_wait(
    e: &LlmError,
    attempt: u32,
    tools_ran: bool,
    hard_stop: tokio::time::Instant,
) -> Option<std::time::Duration> {
    if !tools_ran || attempt >= 2 {
        return None;
    }
    let wait = match e {
        LlmError::Rejected { status, retry_after, .. } if status.as_u16() == 429 => retry_after
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(std::time::Duration::from_secs(1), |s| std::time::Duration::from_secs_f64(s.clamp(0.0, 3600.0))),
        LlmError::ServerError { status, .. } if status.as_u16() == 503 => std::time::Duration::from_secs(1),
        _ => return None,
    };
    let wait = wait.min(MAX_RETRY_WAIT);
    (tokio::time::Instant::now() + wait < hard_stop).then_some(wait)
}

/// What the loop keeps across rounds for the final answer.
#[derive(Default)]
struct Gathered {
    content: String,
    extras: Map<String, Value>,
    logprobs: Vec<Value>,
    usage: Value,
    trace: Vec<ToolRun>,
}

impl Gathered {
    fn add_round(&mut self, round: &Round) {
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

impl Outcome {
    /// The outcome ending with `round`.
    fn of(out: &Emitter, round: &Round, gathered: Gathered, client_calls: Vec<Value>, finish_reason: String) -> Self {
        Outcome {
            identity: out.identity.clone().unwrap_or_default(),
            selection: out.selection.clone(),
            content: gathered.content,
            reasoning: round.message.reasoning_content.clone(),
            thinking_blocks: round.message.thinking_blocks.clone(),
            client_calls,
            finish_reason,
            usage: gathered.usage,
            trace: gathered.trace,
            extras: gathered.extras,
            logprobs: gathered.logprobs,
            error: None,
        }
    }

    /// The non-streaming `chat.completion` object, with the `mcp_tool_calls` trace.
    pub fn into_completion(self) -> Value {
        let mut message = self.extras;
        message.insert("role".into(), Value::String("assistant".into()));
        let content = if self.content.is_empty() { Value::Null } else { Value::String(self.content) };
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
        let logprobs = if self.logprobs.is_empty() { Value::Null } else { json!({"content": self.logprobs}) };
        let mut completion = json!({
            "id": self.identity.id, "object": "chat.completion", "created": self.identity.created,
            "model": self.identity.model,
            "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": self.finish_reason}],
            "usage": self.usage,
            "mcp_tool_calls": self.trace,
            "mcp_tool_selection": self.selection,
        });
        if let (Some(error), Some(object)) = (self.error, completion.as_object_mut()) {
            object.insert("mcp_error".into(), error);
        }
        completion
    }
}

impl Agent {
    /// Runs the loop for a non-streaming client.
    pub async fn complete(&self, job: ChatJob) -> Result<Value, LlmError> {
        let mut out = Emitter { tx: None, identity: None, selection: Value::Null };
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
            let mut out = Emitter { tx: Some(tx.clone()), identity: None, selection: Value::Null };
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
                    // An upstream that never sent a chunk with an id (or nothing at all) still
                    // gets the client a complete stream: a role, a finish reason, [DONE].
                    out.ensure_identity().await;
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
        let ChatJob { mut body, offer, headers, client_auth, vision, identity, catalog } = job;
        let super::selection::Offer { mut tools, pool, find_tools, room, ranker: offer_ranker } = offer;
        let client_tools: HashSet<String> = super::client_tool_names(&body).map(str::to_owned).collect();
        let client_definitions: Vec<Value> = match body.remove("tools") {
            Some(Value::Array(tools)) => tools,
            _ => Vec::new(),
        };
        // The `tools` field, serialised when the offer changes (not every round): the catalog's
        // entries are copied from their ready JSON.
        let tools_field = |tools: &[Arc<ToolEntry>]| {
            let mut json = String::from("[");
            let mut push = |item: &str| {
                if json.len() > 1 {
                    json.push(',');
                }
                json.push_str(item);
            };
            for definition in &client_definitions {
                push(&definition.to_string());
            }
            for tool in tools {
                push(tool.openai_tool.get());
            }
            if let Some(name) = find_tools.as_deref() {
                push(&super::selection::find_tools_definition(name).to_string());
            }
            json.push(']');
            serde_json::value::RawValue::from_string(json)
                .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned())
        };
        let mut tools_json = tools_field(&tools);
        out.selection = json!({"available": pool.len(), "offered": tools.len(), "ranker": offer_ranker,
            "find_tools": find_tools.is_some(), "found": 0});
        body.insert("stream".into(), Value::Bool(true));
        // Usage is needed to sum rounds; the client's other stream options stay.
        match body.get_mut("stream_options") {
            Some(Value::Object(options)) => {
                options.insert("include_usage".into(), Value::Bool(true));
            }
            _ => {
                body.insert("stream_options".into(), json!({"include_usage": true}));
            }
        }
        // The loop follows one answer: several choices would each want their own tool rounds.
        body.remove("n");
        let mut messages = match body.remove("messages") {
            Some(Value::Array(m)) => m,
            _ => Vec::new(),
        };

        let limits = &self.limits;
        let deadline = started + limits.max_duration;
        let mut ledger = CallLedger::default();
        let mut gathered = Gathered { usage: json!({}), ..Gathered::default() };
        let mut round_no = 0;
        loop {
            round_no += 1;
            let last = round_no >= limits.max_rounds
                || ledger.total >= limits.max_tool_calls
                || started.elapsed() >= limits.max_duration;
            if last {
                body.insert("tool_choice".into(), Value::String("none".into()));
            }
            let span = tracing::info_span!("llm.round", round = round_no);
            // A round may run into the deadline by a final answer's grace, no more.
            let hard_stop = tokio::time::Instant::from(deadline + FINAL_ANSWER_GRACE);
            let mut attempt = 0;
            let mut round = loop {
                let request = RoundBody { body: &body, tools: &tools_json, messages: &messages };
                let sent = self.round(request, &headers, &client_auth, &client_tools, out);
                let result =
                    tokio::time::timeout_at(hard_stop, tracing::Instrument::instrument(sent, span.clone())).await;
                match result {
                    Ok(Ok(round)) => break round,
                    Ok(Err(e)) => {
                        // Tools already ran: a busy model is waited for (its `Retry-After`, a few
                        // times) rather than failing the request, which a client would retry —
                        // running those tools again.
                        if let Some(wait) = retry_wait(&e, attempt, !gathered.trace.is_empty(), hard_stop) {
                            attempt += 1;
                            tracing::warn!(round = round_no, attempt, wait_ms = wait.as_millis() as u64, error = %e,
                                "model busy after tools ran; retrying the round");
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        if gathered.trace.is_empty() {
                            return Err(e);
                        }
                        // The tools' trace is never lost: the answer ends with what happened.
                        let note = format!("\n\n(Stopped: the model could not be reached after the tools ran: {e})");
                        return Ok(self.stopped(out, gathered, &note, Some(&e)).await);
                    }
                    Err(_) => {
                        let note = "\n\n(Stopped: this request reached its time limit.)";
                        let e = LlmError::Timeout { upstream: self.upstream.display_url().to_owned() };
                        return Ok(self.stopped(out, gathered, note, Some(&e)).await);
                    }
                }
            };
            round.finish();
            let done = |round_no: u32| crate::metrics::metrics().rounds.observe(f64::from(round_no));
            gathered.add_round(&round);
            let client_calls: Vec<Value> = round.client_calls().map(super::round::AssembledCall::client_json).collect();
            if round.gateway_calls().next().is_none() {
                done(round_no);
                // `tool_calls` with no call left for the client (all ours were dropped) is a stop.
                let finish = match round.finish_reason.as_deref() {
                    Some("tool_calls") | Some("function_call") if client_calls.is_empty() => "stop".to_owned(),
                    Some(reason) => reason.to_owned(),
                    None => "stop".to_owned(),
                };
                return Ok(Outcome::of(out, &round, gathered, client_calls, finish));
            }
            if last {
                // The model called tools although this round was sent with `tool_choice: "none"`
                // (some models and gateways ignore it): nothing more runs; the answer ends here.
                tracing::warn!(round = round_no, "the model called tools on the last round; not run");
                done(round_no);
                let note = "\n\n(Stopped: this request reached its limit of tool calls, rounds or time.)";
                gathered.content.push_str(note);
                out.delta(json!({"content": note}), None).await;
                // The client's own calls of that round were already streamed: they stand.
                let finish = if client_calls.is_empty() { "stop" } else { "tool_calls" };
                return Ok(Outcome::of(out, &round, gathered, client_calls, finish.into()));
            }
            messages.push(serde_json::to_value(&round.message).unwrap_or_default());
            let gateway: Vec<_> = round.gateway_calls().collect();
            let scope = CallScope {
                invoker: &self.invoker,
                offered: &tools,
                vision,
                identity: &identity,
                deadline,
                finder: find_tools.as_deref().map(|name| Finder {
                    name,
                    catalog: &catalog,
                    pool: &pool,
                    limit: room.saturating_sub(1),
                }),
            };
            let runs = run_calls(&scope, &gateway, &mut ledger, limits).await;
            let found = merge_found(&mut tools, &runs, &pool, room);
            if found > 0 {
                if let Some(count) = out.selection.get_mut("found") {
                    *count = json!(count.as_u64().unwrap_or_default() + found as u64);
                }
                tools_json = tools_field(&tools);
            }
            for run in &runs {
                messages.push(json!({"role": "tool", "tool_call_id": run.id, "content": run.output}));
                let mut shown = if limits.tool_cards { cards::render(run, &self.cards) } else { String::new() };
                // Images a tool produced reach the user as markdown images in the answer.
                for image in run.artifacts.iter().filter(|a| a.mime_type.starts_with("image/")) {
                    let _ = write!(shown, "\n\n![{}]({})\n\n", run.name, image.url);
                }
                if !shown.is_empty() {
                    gathered.content.push_str(&shown);
                    out.delta(json!({"content": shown}), None).await;
                }
            }
            if vision {
                let parts: Vec<Value> = runs
                    .iter()
                    .flat_map(|r| &r.images)
                    .map(|data_url| json!({"type": "image_url", "image_url": {"url": data_url}}))
                    .collect();
                if !parts.is_empty() {
                    // Tool messages take text only; images follow as a user message, inline as
                    // `data:` URLs (a provider cannot fetch the gateway's own links).
                    let mut content = vec![json!({"type": "text", "text": "Images returned by the tool calls above:"})];
                    content.extend(parts);
                    messages.push(json!({"role": "user", "content": content}));
                }
            }
            if !limits.tool_cards && !client_calls.is_empty() {
                // A mixed turn ends here and the client sends its history back without our
                // calls; without cards to carry them, a plain line per call keeps their results.
                for run in &runs {
                    let line = format!("\n[called {}({}): {}]\n", run.name, run.arguments, run.output);
                    gathered.content.push_str(&line);
                    out.delta(json!({"content": line}), None).await;
                }
            }
            gathered.trace.extend(runs);
            if !client_calls.is_empty() {
                done(round_no);
                // A mixed turn: ours ran; the client's calls go back to the client.
                return Ok(Outcome::of(out, &round, gathered, client_calls, "tool_calls".into()));
            }
            relax_tool_choice(&mut body, &tools);
        }
    }

    /// Ends the answer early with `note` (shown to the client as the last text), keeping the
    /// trace of what ran; `error` is reported beside it (`mcp_error`).
    async fn stopped(
        &self,
        out: &mut Emitter,
        mut gathered: Gathered,
        note: &str,
        error: Option<&LlmError>,
    ) -> Outcome {
        out.ensure_identity().await;
        gathered.content.push_str(note);
        out.delta(json!({"content": note}), None).await;
        let mut outcome = Outcome::of(out, &Round::default(), gathered, Vec::new(), "stop".into());
        outcome.error = error.map(|e| json!({"message": e.to_string()}));
        outcome
    }

    /// One upstream request, streamed; text and client tool deltas are passed on as they come.
    async fn round(
        &self,
        request: RoundBody<'_>,
        headers: &HeaderMap,
        client_auth: &Option<crate::llm::CallerAuth>,
        client_tools: &HashSet<String>,
        out: &mut Emitter,
    ) -> Result<Round, LlmError> {
        let bytes = serde_json::to_vec(&request).unwrap_or_default();
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
            if event.event == "error" {
                let detail = serde_json::from_str::<Value>(&event.data)
                    .ok()
                    .and_then(|v| v.pointer("/error/message").or_else(|| v.get("message")).cloned())
                    .and_then(|m| m.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "error event".into());
                return Err(LlmError::StreamBroken { upstream: self.upstream.display_url().to_owned(), detail });
            }
            let Ok(chunk) = serde_json::from_str::<ChatChunk>(&event.data) else { continue };
            if let Some(err) = chunk.error() {
                let detail = err.get("message").and_then(Value::as_str).unwrap_or("error event").to_owned();
                return Err(LlmError::StreamBroken { upstream: self.upstream.display_url().to_owned(), detail });
            }
            // The response's identity comes from the first chunk with an id (Azure's first,
            // filter-only chunk has an empty one).
            let id = chunk.id.as_deref().filter(|id| !id.is_empty());
            if out.identity.is_none() && (id.is_some() || chunk.first_choice().is_some()) {
                out.identity = Some(Identity {
                    id: id.map_or_else(|| format!("chatcmpl-mcp-{}", uuid::Uuid::new_v4().simple()), str::to_owned),
                    created: chunk.created.unwrap_or_else(now),
                    model: chunk.model.clone().unwrap_or_default(),
                });
                out.delta(json!({"role": "assistant", "content": ""}), None).await;
            }
            let forward = round.push(chunk, client_tools);
            if let Some(delta) = forward.delta {
                out.delta_with(Value::Object(delta), None, forward.logprobs.unwrap_or(Value::Null)).await;
            }
        }
        Ok(round)
    }
}
