//! A scripted OpenAI-compatible model server on `127.0.0.1:0`.
//!
//! It speaks the real wire format: non-streaming `chat.completion` objects and streaming
//! `chat.completion.chunk` SSE with a role chunk, content in pieces, tool-call arguments split
//! across several deltas, a finish chunk, the `stream_options.include_usage` chunk and `[DONE]`.
//! Every request is recorded so tests can assert what the gateway sent upstream. A [`Persona`]
//! gives it a real provider's stream shape and rules: a request that breaks them gets that
//! provider's error.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::personas::Issued;
pub use super::personas::Persona;

/// Usage the fake reports for every turn.
pub const PROMPT_TOKENS: u64 = 11;
/// Usage the fake reports for every turn.
pub const COMPLETION_TOKENS: u64 = 7;

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Turn {
    /// An assistant message with text.
    Text(String),
    /// An assistant message calling tools (name, arguments).
    ToolCalls(Vec<(String, Value)>),
    /// An HTTP error with a body and optional `Retry-After`.
    Status { status: u16, body: Value, retry_after: Option<String> },
    /// Never answers (for timeouts).
    Hang,
    /// Streams `text`, then breaks the connection before finishing.
    BreakMidStream(String),
    /// One tool round per conversation: calls the tools, and answers `text` once the last message
    /// is a tool result. Lets many concurrent chats share one repeating script (the load binary).
    ToolRound { calls: Vec<(String, Value)>, text: String },
    /// Streams these choice objects (`{"delta", "logprobs", "finish_reason"}`) as they are, one
    /// chunk each: shapes the other turns do not make (custom tool calls, annotations, logprobs).
    Chunks(Vec<Value>),
}

/// What the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("recorded body is JSON")
    }
}

/// Builder of the scripted model.
#[derive(Default)]
pub struct FakeLlm {
    turns: VecDeque<Turn>,
    chunk_delay: Duration,
    gated: bool,
    persona: Persona,
    forgetful: bool,
}

/// A running fake.
pub struct FakeLlmHandle {
    /// Base URL including `/v1`.
    pub url: String,
    shared: Arc<Shared>,
}

pub(super) struct Shared {
    turns: Mutex<VecDeque<Turn>>,
    requests: Mutex<Vec<Recorded>>,
    chunk_delay: Duration,
    gate: Option<Arc<Notify>>,
    persona: Persona,
    issued: Mutex<Issued>,
    pub(super) refusals: Mutex<Vec<Value>>,
    forgetful: bool,
    pub(super) served: std::sync::atomic::AtomicUsize,
    /// Calls the Responses API handed out, with the reasoning item made before them.
    pub(super) responses_issued: Mutex<std::collections::HashMap<String, String>>,
    /// The client addresses requests came from: one per connection.
    peers: Mutex<std::collections::HashSet<std::net::SocketAddr>>,
}

impl FakeLlm {
    pub fn new() -> Self {
        Self::default()
    }
    /// Next turn answers with text.
    pub fn text(mut self, text: &str) -> Self {
        self.turns.push_back(Turn::Text(text.to_owned()));
        self
    }
    /// Next turn calls one tool.
    pub fn tool_call(self, name: &str, args: Value) -> Self {
        self.tool_calls(&[(name, args)])
    }
    /// Next turn calls several tools in parallel.
    pub fn tool_calls(mut self, calls: &[(&str, Value)]) -> Self {
        self.turns.push_back(Turn::ToolCalls(calls.iter().map(|(n, a)| (n.to_string(), a.clone())).collect()));
        self
    }
    /// Next turn answers with an HTTP error.
    pub fn status(mut self, status: u16, body: Value, retry_after: Option<&str>) -> Self {
        self.turns.push_back(Turn::Status { status, body, retry_after: retry_after.map(str::to_owned) });
        self
    }
    /// Any scripted turn.
    pub fn turn(mut self, turn: Turn) -> Self {
        self.turns.push_back(turn);
        self
    }
    /// Pause between streamed chunks.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }
    /// Behave like this provider (stream shape and rules).
    pub fn persona(mut self, persona: Persona) -> Self {
        self.persona = persona;
        self
    }
    /// Keeps no record of requests (for the load binary, which sends a hundred thousand).
    #[allow(dead_code)]
    pub fn forgetful(mut self) -> Self {
        self.forgetful = true;
        self
    }
    /// Streams hold after their first chunk until [`FakeLlmHandle::release`] is called.
    pub fn gated(mut self) -> Self {
        self.gated = true;
        self
    }

    pub async fn start(self) -> FakeLlmHandle {
        let shared = Arc::new(Shared {
            turns: Mutex::new(self.turns),
            requests: Mutex::new(Vec::new()),
            chunk_delay: self.chunk_delay,
            gate: self.gated.then(|| Arc::new(Notify::new())),
            persona: self.persona,
            issued: Mutex::new(Issued::default()),
            refusals: Mutex::new(Vec::new()),
            forgetful: self.forgetful,
            served: std::sync::atomic::AtomicUsize::new(0),
            responses_issued: Mutex::default(),
            peers: Mutex::default(),
        });
        let seen = shared.clone();
        let count_peers = move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
                                req: axum::extract::Request,
                                next: axum::middleware::Next| {
            seen.peers.lock().unwrap().insert(peer);
            next.run(req)
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .route("/v1/responses", post(super::responses_api::responses))
            .route("/v1/{*rest}", any(echo))
            // Anything outside /v1 is recorded too, so a test can prove nothing arrived there.
            .fallback(echo)
            .layer(axum::middleware::from_fn(count_peers))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeLlmHandle { url: format!("http://{addr}/v1"), shared }
    }
}

impl FakeLlmHandle {
    /// Everything received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }
    /// How many connections the requests so far came on.
    pub fn connections(&self) -> usize {
        self.shared.peers.lock().unwrap().len()
    }
    /// Chat requests received so far, as JSON.
    pub fn chat_requests(&self) -> Vec<Value> {
        self.requests().iter().filter(|r| r.path.ends_with("/chat/completions")).map(Recorded::json).collect()
    }
    /// The error bodies the persona answered with (a gateway that follows the rules gets none).
    pub fn refusals(&self) -> Vec<Value> {
        self.shared.refusals.lock().unwrap().clone()
    }
    /// Lets a gated stream continue.
    pub fn release(&self) {
        if let Some(gate) = &self.shared.gate {
            gate.notify_one();
        }
    }
}

pub(super) async fn record(shared: &Shared, req: Request) -> Recorded {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let rec = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    if !shared.forgetful {
        shared.requests.lock().unwrap().push(rec.clone());
    }
    rec
}

async fn models(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    record(&shared, req).await;
    axum::Json(json!({"object": "list", "data": [
        {"id": "fake-model", "object": "model", "created": 1_700_000_000, "owned_by": "tests"}
    ]}))
    .into_response()
}

/// Any other route: answers with what it received, so pass-through can be asserted.
async fn echo(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let rec = record(&shared, req).await;
    axum::Json(json!({
        "method": rec.method, "path": rec.path, "query": rec.query, "body_len": rec.body.len(),
        "content_type": rec.headers.get("content-type").and_then(|v| v.to_str().ok()),
    }))
    .into_response()
}

async fn chat(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let rec = record(&shared, req).await;
    let body = rec.json();
    let checked = shared.persona.check(&body, &shared.issued.lock().unwrap());
    if let Err((status, error)) = checked {
        shared.refusals.lock().unwrap().push(error.clone());
        return (StatusCode::from_u16(status).unwrap(), axum::Json(error)).into_response();
    }
    let turn = next_turn(&shared);
    // Like a real model, `tool_choice: "none"` gets an answer, not a tool call.
    let turn = match turn {
        Turn::ToolCalls(_) if body["tool_choice"] == "none" && shared.persona.obeys_tool_choice_none() => {
            Turn::Text("Answering without tools.".into())
        }
        Turn::ToolRound { calls, text } => {
            let last_is_tool = body["messages"].as_array().and_then(|m| m.last()).is_some_and(|m| m["role"] == "tool");
            if last_is_tool { Turn::Text(text) } else { Turn::ToolCalls(calls) }
        }
        other => other,
    };
    let model = body["model"].as_str().unwrap_or("fake-model").to_owned();
    let stream = body["stream"].as_bool().unwrap_or(false);
    let include_usage = body["stream_options"]["include_usage"].as_bool().unwrap_or(false);
    let n = shared.served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("chatcmpl-fake{}", n + 1);
    match turn {
        Turn::Status { status, body, retry_after } => {
            let mut resp = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
            if let Some(ra) = retry_after {
                resp.headers_mut().insert("retry-after", ra.parse().unwrap());
            }
            resp
        }
        Turn::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        turn if stream => stream_response(shared, turn, &id, &model, include_usage),
        turn => axum::Json(completion(&turn, &id, &model)).into_response(),
    }
}

/// The next scripted turn; the last one repeats, so a model that "always calls a tool" is one
/// line.
pub(super) fn next_turn(shared: &Shared) -> Turn {
    let mut turns = shared.turns.lock().unwrap();
    if turns.len() > 1 { turns.pop_front() } else { turns.front().cloned() }
        .unwrap_or(Turn::Text("(script exhausted)".into()))
}

fn usage() -> Value {
    json!({"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
           "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS})
}

/// The arguments text the model emits: a JSON string value is taken as raw (possibly broken) text.
pub(super) fn args_text(args: &Value) -> String {
    match args {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    }
}

fn tool_call_json(i: usize, name: &str, args: &Value) -> Value {
    json!({"id": format!("call_{i}_{name}"), "type": "function",
           "function": {"name": name, "arguments": args_text(args)}})
}

fn completion(turn: &Turn, id: &str, model: &str) -> Value {
    let (message, finish) = match turn {
        Turn::Text(t) | Turn::BreakMidStream(t) => {
            (json!({"role": "assistant", "content": t, "refusal": null}), "stop")
        }
        Turn::ToolCalls(calls) => {
            let calls: Vec<Value> = calls.iter().enumerate().map(|(i, (n, a))| tool_call_json(i, n, a)).collect();
            (json!({"role": "assistant", "content": null, "tool_calls": calls, "refusal": null}), "tool_calls")
        }
        Turn::Status { .. } | Turn::Hang | Turn::ToolRound { .. } | Turn::Chunks(_) => unreachable!(),
    };
    json!({"id": id, "object": "chat.completion", "created": 1_700_000_000, "model": model,
           "system_fingerprint": null,
           "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
           "usage": usage()})
}

/// Splits `s` into pieces of at most `n` characters.
pub(super) fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

fn stream_response(shared: Arc<Shared>, turn: Turn, id: &str, model: &str, include_usage: bool) -> Response {
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    };
    let persona = shared.persona;
    let mut frames: Vec<String> = persona.first_chunk().map(|c| format!("data: {c}\n\n")).into_iter().collect();
    frames.push(chunk(json!({"role": "assistant", "content": ""}), None));
    let mut broken = false;
    match &turn {
        Turn::Text(t) | Turn::BreakMidStream(t) => {
            let prefix = persona.text_prefix(&mut shared.issued.lock().unwrap());
            frames.extend(prefix.into_iter().map(|d| chunk(d, None)));
            frames.extend(pieces(t, 4).into_iter().map(|p| chunk(json!({"content": p}), None)));
            broken = matches!(turn, Turn::BreakMidStream(_));
        }
        Turn::ToolCalls(calls) if persona != Persona::OpenAi => {
            let deltas = persona.tool_call_deltas(calls, &mut shared.issued.lock().unwrap());
            frames.extend(deltas.into_iter().map(|d| chunk(d, None)));
        }
        Turn::ToolCalls(calls) => {
            for (i, (name, args)) in calls.iter().enumerate() {
                let head = json!({"tool_calls": [{"index": i, "id": format!("call_{i}_{name}"), "type": "function",
                    "function": {"name": name, "arguments": ""}}]});
                frames.push(chunk(head, None));
                for p in pieces(&args_text(args), 5) {
                    frames.push(chunk(json!({"tool_calls": [{"index": i, "function": {"arguments": p}}]}), None));
                }
            }
        }
        Turn::Chunks(choices) => {
            for choice in choices {
                let c = json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
                    "choices": [choice]});
                frames.push(format!("data: {c}\n\n"));
            }
        }
        Turn::Status { .. } | Turn::Hang | Turn::ToolRound { .. } => unreachable!(),
    }
    if !broken {
        let finish = if matches!(turn, Turn::ToolCalls(_)) { "tool_calls" } else { "stop" };
        if !matches!(turn, Turn::Chunks(_)) {
            frames.push(chunk(json!({}), Some(finish)));
        }
        if include_usage {
            let u = json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
                "system_fingerprint": null, "choices": [], "usage": usage()});
            frames.push(format!("data: {u}\n\n"));
        }
        frames.push("data: [DONE]\n\n".to_owned());
    }
    let delay = shared.chunk_delay;
    let body = futures_util::stream::iter(frames.into_iter().enumerate())
        .then(move |(i, frame)| {
            let shared = shared.clone();
            async move {
                if i == 1
                    && let Some(gate) = &shared.gate
                {
                    gate.notified().await;
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok::<_, Infallible>(Bytes::from(frame))
            }
        })
        .map(|r| r.map_err(|e: Infallible| std::io::Error::other(format!("{e:?}"))));
    let body: Body = if broken {
        // Let the frames flush before the connection is cut, as a real mid-stream failure would.
        let fail = futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err(std::io::Error::other("connection reset by fake"))
        });
        Body::from_stream(body.chain(fail))
    } else {
        Body::from_stream(body)
    };
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(body)
        .unwrap()
}
