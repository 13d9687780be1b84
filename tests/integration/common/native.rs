//! Provider-native scripted models for the LiteLLM-in-the-chain tests: an Anthropic Messages API
//! server that signs thinking blocks and checks them when they come back, and a Gemini
//! `generateContent` / `streamGenerateContent` server that hands out thought signatures and
//! checks them. Both refuse a wrong history with the provider's own error body.
//!
//! The script follows the history, so it needs no state per conversation: with fewer than two
//! earlier assistant turns the model calls `ts__echo` twice in parallel, then it answers
//! "Done.".

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Both servers, on loopback ports of their own.
pub struct NativeProviders {
    /// Base URL for LiteLLM's `anthropic/...` `api_base`.
    pub anthropic: String,
    /// Base URL for LiteLLM's `gemini/...` `api_base` (ends in `/v1beta`).
    pub gemini: String,
    shared: Arc<Native>,
}

#[derive(Default)]
struct Native {
    signatures: Mutex<HashSet<String>>,
    requests: Mutex<Vec<(String, Value)>>,
    refusals: Mutex<Vec<Value>>,
}

impl NativeProviders {
    pub async fn start() -> Self {
        let shared = Arc::new(Native::default());
        let anthropic = serve(Router::new().fallback(anthropic).with_state(shared.clone())).await;
        let gemini = serve(Router::new().fallback(gemini).with_state(shared.clone())).await;
        Self { anthropic, gemini: format!("{gemini}/v1beta"), shared }
    }

    /// (path, body) of every request received.
    pub fn requests(&self) -> Vec<(String, Value)> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Error bodies sent back (none when the history was right).
    pub fn refusals(&self) -> Vec<Value> {
        self.shared.refusals.lock().unwrap().clone()
    }
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A stand-in signature: the provider can recognise what it signed.
fn sign(kind: &str, text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in kind.bytes().chain(text.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    format!("Er{kind}Q{h:016x}+/A==")
}

fn refuse(native: &Native, status: StatusCode, body: Value) -> Response {
    native.refusals.lock().unwrap().push(body.clone());
    (status, axum::Json(body)).into_response()
}

async fn read(native: &Native, req: Request) -> (String, Value) {
    let path = req.uri().to_string();
    let bytes: Bytes = axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    native.requests.lock().unwrap().push((path.clone(), body.clone()));
    (path, body)
}

fn sse(events: Vec<String>) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from(events.concat()))
        .unwrap()
}

fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

// ---------------------------------------------------------------- Anthropic Messages API

fn anthropic_error(message: String) -> Value {
    json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
}

/// Checks Anthropic's rules for a request with thinking enabled.
fn anthropic_check(native: &Native, body: &Value) -> Result<(), Value> {
    let thinking = body["thinking"]["type"] == "enabled";
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let signatures = native.signatures.lock().unwrap().clone();
    let mut previous_tool_uses: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let blocks = match &m["content"] {
            Value::Array(b) => b.clone(),
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            _ => Vec::new(),
        };
        if m["role"] == "assistant" {
            let uses: Vec<String> = blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .filter_map(|b| b["id"].as_str().map(str::to_owned))
                .collect();
            if thinking && !uses.is_empty() {
                let first = blocks.first().map(|b| b["type"].as_str().unwrap_or("").to_owned()).unwrap_or_default();
                if first != "thinking" && first != "redacted_thinking" {
                    return Err(anthropic_error(format!(
                        "messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
                    )));
                }
            }
            for (j, b) in blocks.iter().enumerate() {
                if b["type"] == "thinking" {
                    let text = b["thinking"].as_str().unwrap_or_default();
                    let signature = b["signature"].as_str().unwrap_or_default();
                    if signature != sign("thinking", text) || !signatures.contains(signature) {
                        return Err(anthropic_error(format!(
                            "messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                        )));
                    }
                }
            }
            previous_tool_uses = uses;
        } else {
            for (j, b) in blocks.iter().enumerate().filter(|(_, b)| b["type"] == "tool_result") {
                let id = b["tool_use_id"].as_str().unwrap_or_default();
                if !previous_tool_uses.iter().any(|u| u == id) {
                    return Err(anthropic_error(format!(
                        "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                    )));
                }
            }
            previous_tool_uses.clear();
        }
    }
    Ok(())
}

async fn anthropic(State(native): State<Arc<Native>>, req: Request) -> Response {
    let (path, body) = read(&native, req).await;
    if !path.contains("/messages") {
        return refuse(&native, StatusCode::NOT_FOUND, anthropic_error(format!("no route {path}")));
    }
    if let Err(error) = anthropic_check(&native, &body) {
        return refuse(&native, StatusCode::BAD_REQUEST, error);
    }
    // As Anthropic does: every tool name once.
    let names: Vec<&str> = body["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    if names.iter().enumerate().any(|(i, n)| names[..i].contains(n)) {
        return refuse(&native, StatusCode::BAD_REQUEST, anthropic_error("tools: Tool names must be unique.".into()));
    }
    let earlier = body["messages"].as_array().map_or(0, |m| m.iter().filter(|m| m["role"] == "assistant").count());
    let asked = body["messages"][0]["content"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| body["messages"][0]["content"][0]["text"].as_str().unwrap_or_default().to_owned());
    // "search twice": the model looks for the same tool with two `find_tools` calls at once.
    let search_twice = asked.contains("search twice");
    let thinking = body["thinking"]["type"] == "enabled";
    let model = body["model"].as_str().unwrap_or("claude").to_owned();
    let mut blocks: Vec<Value> = Vec::new();
    if thinking {
        let text = format!("Round {earlier}: the user wants echoes, so I call the tool twice.");
        let signature = sign("thinking", &text);
        native.signatures.lock().unwrap().insert(signature.clone());
        blocks.push(json!({"type": "thinking", "thinking": text, "signature": signature}));
    }
    let stop = if search_twice && earlier == 0 {
        for k in 0..2 {
            let id = format!("toolu_01find{k}{}", "Q".repeat(18));
            blocks
                .push(json!({"type": "tool_use", "id": id, "name": "find_tools", "input": {"query": "image picture"}}));
        }
        "tool_use"
    } else if earlier < 2 && !search_twice {
        for (k, word) in ["one", "two"].iter().enumerate() {
            let id = format!("toolu_01{earlier}{k}XyZ{}", "Q".repeat(18));
            blocks.push(json!({"type": "tool_use", "id": id, "name": "ts__echo", "input": {"text": format!("{word}-{earlier}")}}));
        }
        "tool_use"
    } else {
        blocks.push(json!({"type": "text", "text": "Done."}));
        "end_turn"
    };
    let usage = json!({"input_tokens": 25, "output_tokens": 12});
    if body["stream"] != true {
        return axum::Json(json!({"id": "msg_01test", "type": "message", "role": "assistant", "model": model,
            "content": blocks, "stop_reason": stop, "stop_sequence": null, "usage": usage}))
        .into_response();
    }
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_01test",
        "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null,
        "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}),
    )];
    for (index, block) in blocks.iter().enumerate() {
        let start = match block["type"].as_str() {
            Some("thinking") => json!({"type": "thinking", "thinking": "", "signature": ""}),
            Some("text") => json!({"type": "text", "text": ""}),
            _ => json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
        };
        events.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        let deltas: Vec<Value> = match block["type"].as_str() {
            Some("thinking") => {
                let mut d: Vec<Value> = pieces(block["thinking"].as_str().unwrap_or_default(), 11)
                    .into_iter()
                    .map(|p| json!({"type": "thinking_delta", "thinking": p}))
                    .collect();
                d.push(json!({"type": "signature_delta", "signature": block["signature"]}));
                d
            }
            Some("text") => pieces(block["text"].as_str().unwrap_or_default(), 3)
                .into_iter()
                .map(|p| json!({"type": "text_delta", "text": p}))
                .collect(),
            _ => pieces(&block["input"].to_string(), 6)
                .into_iter()
                .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                .collect(),
        };
        for delta in deltas {
            events.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        events.push(event("content_block_stop", json!({"type": "content_block_stop", "index": index})));
    }
    events.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": 12}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    sse(events)
}

// ---------------------------------------------------------------- Gemini generateContent

fn gemini_error(message: &str) -> Value {
    json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}})
}

/// A part's field in either of the API's casings (LiteLLM sends `function_call`).
fn field<'a>(part: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    part.get(camel).or_else(|| part.get(snake))
}

/// The signature Google documents for skipping validation; LiteLLM puts it in when a client
/// lost the real one. Gemini accepts it but reasons worse; this server refuses it, so a
/// gateway that drops signatures is caught.
const DUMMY_SIGNATURE: &str = "c2tpcF90aG91Z2h0X3NpZ25hdHVyZV92YWxpZGF0b3I=";

fn gemini_check(native: &Native, body: &Value) -> Result<(), Value> {
    let contents = body["contents"].as_array().cloned().unwrap_or_default();
    let signatures = native.signatures.lock().unwrap().clone();
    let mut pending_calls = 0;
    for c in &contents {
        let parts = c["parts"].as_array().cloned().unwrap_or_default();
        let calls: Vec<&Value> = parts.iter().filter(|p| field(p, "functionCall", "function_call").is_some()).collect();
        let responses = parts.iter().filter(|p| field(p, "functionResponse", "function_response").is_some()).count();
        if responses > 0 && responses != pending_calls {
            return Err(gemini_error(
                "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.",
            ));
        }
        pending_calls = 0;
        if c["role"] == "model" && !calls.is_empty() {
            let first = calls.first().copied().unwrap_or(&Value::Null);
            let signature =
                field(first, "thoughtSignature", "thought_signature").and_then(Value::as_str).unwrap_or_default();
            if signature == DUMMY_SIGNATURE || (!signature.is_empty() && !signatures.contains(signature)) {
                return Err(gemini_error(
                    "Unable to submit request because Thought signature is not valid.. Learn more: https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/gemini",
                ));
            }
            if signature.is_empty() {
                let name =
                    field(first, "functionCall", "function_call").and_then(|f| f["name"].as_str()).unwrap_or_default();
                return Err(gemini_error(&format!(
                    "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{name}` , position 2. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
                )));
            }
            pending_calls = calls.len();
        }
    }
    Ok(())
}

async fn gemini(State(native): State<Arc<Native>>, req: Request) -> Response {
    let (path, body) = read(&native, req).await;
    if !path.contains("generateContent") && !path.contains("GenerateContent") {
        return refuse(&native, StatusCode::NOT_FOUND, gemini_error(&format!("no route {path}")));
    }
    if let Err(error) = gemini_check(&native, &body) {
        return refuse(&native, StatusCode::BAD_REQUEST, error);
    }
    let earlier = body["contents"].as_array().map_or(0, |c| c.iter().filter(|c| c["role"] == "model").count());
    let parts: Vec<Value> = if earlier < 2 {
        let signature = sign("thought", &format!("round {earlier}"));
        native.signatures.lock().unwrap().insert(signature.clone());
        vec![
            json!({"functionCall": {"name": "ts__echo", "args": {"text": format!("one-{earlier}")}}, "thoughtSignature": signature}),
            json!({"functionCall": {"name": "ts__echo", "args": {"text": format!("two-{earlier}")}}}),
        ]
    } else {
        vec![json!({"text": "Done."})]
    };
    let usage = json!({"promptTokenCount": 30, "candidatesTokenCount": 10, "totalTokenCount": 40});
    let response = json!({"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": usage, "modelVersion": "gemini-3-pro-preview", "responseId": format!("resp-{earlier}")});
    if path.contains("streamGenerateContent") {
        sse(vec![format!("data: {response}\r\n\r\n")])
    } else {
        axum::Json(response).into_response()
    }
}
