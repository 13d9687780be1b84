//! The scripted model's `POST /v1/responses`: OpenAI's Responses API as a reasoning model
//! serves it statelessly (`store: false`, `include: ["reasoning.encrypted_content"]`).
//!
//! Stream shape: `response.created`, `response.in_progress`, a `reasoning` item with its summary
//! streamed and its `encrypted_content` on `output_item.done`, then `function_call` items with
//! their arguments in pieces or a `message` with `output_text` deltas, and `response.completed`
//! with usage; every event has its `sequence_number`. Rules, with OpenAI's error bodies (400):
//! unknown top-level parameters; chat-style content parts; function tools without a top-level
//! `name`, schemas not ready for the default `strict: true`, `max_output_tokens` under 16,
//! chat-style `stream_options`, encrypted reasoning asked of a GPT-4 model (which does not
//! reason); a `function_call_output` with no `function_call` before it and a call with no output;
//! a call the model made after reasoning sent back without that reasoning item (and its
//! encrypted content unchanged) right before it.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::fake_llm::{COMPLETION_TOKENS, PROMPT_TOKENS, Shared, Turn, args_text, next_turn, pieces, record};

/// Top-level parameters the Responses API takes (anything else is `unknown_parameter`).
const KNOWN: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "stream",
    "store",
    "include",
    "temperature",
    "top_p",
    "max_output_tokens",
    "parallel_tool_calls",
    "reasoning",
    "text",
    "metadata",
    "user",
    "previous_response_id",
    "service_tier",
    "truncation",
    "prompt_cache_key",
    "safety_identifier",
    "top_logprobs",
    "background",
    "stream_options",
    "max_tool_calls",
    "conversation",
    "prompt",
];

fn error(message: String, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}})
}

/// The encrypted content the model hands out with a reasoning item (a keyed stand-in).
fn seal(id: &str) -> String {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    format!("gAAAAAB{h:016x}{id}==")
}

/// OpenAI's checks of one request, against what this model issued before.
fn check(body: &Value, issued: &std::collections::HashMap<String, String>) -> Result<(), Value> {
    let Some(object) = body.as_object() else { return Err(error("Invalid body".into(), None, None)) };
    if let Some(key) = object.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(error(format!("Unknown parameter: '{key}'."), Some(key), Some("unknown_parameter")));
    }
    if let Some(options) = body["stream_options"].as_object()
        && let Some(key) = options.keys().find(|k| *k != "include_obfuscation")
    {
        let param = format!("stream_options.{key}");
        return Err(error(format!("Unknown parameter: '{param}'."), Some(&param), Some("unknown_parameter")));
    }
    if let Some(limit) = body["max_output_tokens"].as_u64().filter(|l| *l < 16) {
        return Err(error(
            format!(
                "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got {limit} instead."
            ),
            Some("max_output_tokens"),
            Some("integer_below_min_value"),
        ));
    }
    let model = body["model"].as_str().unwrap_or_default();
    let wants_reasoning =
        body["include"].as_array().is_some_and(|i| i.iter().any(|v| v == "reasoning.encrypted_content"));
    if !reasoning_model(model) && wants_reasoning {
        return Err(error("Encrypted content is not supported with this model.".into(), Some("include"), None));
    }
    for (i, tool) in body["tools"].as_array().into_iter().flatten().enumerate() {
        if tool["type"] == "function" && !tool["name"].is_string() {
            let param = format!("tools[{i}].name");
            return Err(error(
                format!("Missing required parameter: '{param}'."),
                Some(&param),
                Some("missing_required_parameter"),
            ));
        }
        // `strict` defaults to true here: a schema must then close its objects and require all.
        let schema = &tool["parameters"];
        let strict_ready = schema["additionalProperties"] == false
            && schema["properties"].as_object().is_none_or(|p| {
                p.keys().all(|k| schema["required"].as_array().is_some_and(|r| r.iter().any(|n| n == k.as_str())))
            });
        if tool["type"] == "function" && tool["strict"] != false && !strict_ready {
            return Err(error(
                format!(
                    "Invalid schema for function '{}': In context=(), 'additionalProperties' is required to be supplied and to be false.",
                    tool["name"].as_str().unwrap_or_default()
                ),
                Some(&format!("tools[{i}].parameters")),
                Some("invalid_function_parameters"),
            ));
        }
    }
    let items = match &body["input"] {
        Value::Array(items) => items.clone(),
        Value::String(_) => Vec::new(),
        _ => return Err(error("Missing required parameter: 'input'.".into(), Some("input"), None)),
    };
    let mut calls = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Value::Array(parts) = &item["content"] {
            for (j, part) in parts.iter().enumerate() {
                let kind = part["type"].as_str().unwrap_or_default();
                if !["input_text", "input_image", "input_file", "output_text", "refusal"].contains(&kind) {
                    return Err(error(
                        format!(
                            "Invalid value: '{kind}'. Supported values are: 'input_text', 'input_image', 'output_text', 'refusal', 'input_file', 'computer_screenshot', and 'summary_text'."
                        ),
                        Some(&format!("input[{i}].content[{j}]")),
                        Some("invalid_value"),
                    ));
                }
            }
        }
        match item["type"].as_str() {
            Some("function_call") => {
                let call_id = item["call_id"].as_str().unwrap_or_default();
                if let Some(reasoning) = issued.get(call_id) {
                    // Its reasoning item, whole, somewhere in the run of items right before it.
                    let before = items[..i].iter().rev().take_while(|p| {
                        p["type"] != "function_call_output" && (p.get("role").is_none() || p["role"] == "assistant")
                    });
                    let found = before.clone().any(|p| {
                        p["type"] == "reasoning"
                            && p["id"] == reasoning.as_str()
                            && p["encrypted_content"] == seal(reasoning).as_str()
                    });
                    if !found {
                        return Err(error(
                            format!(
                                "Item 'fc_{call_id}' of type 'function_call' was provided without its required 'reasoning' item: '{reasoning}'."
                            ),
                            None,
                            None,
                        ));
                    }
                }
                calls.push(call_id.to_owned());
            }
            Some("function_call_output") => {
                let call_id = item["call_id"].as_str().unwrap_or_default();
                if !calls.iter().any(|c| c == call_id) {
                    return Err(error(
                        format!("No tool call found for function call output with call_id {call_id}."),
                        Some("input"),
                        None,
                    ));
                }
            }
            Some("reasoning") => {
                let id = item["id"].as_str().unwrap_or_default();
                let follows =
                    items.get(i + 1).is_some_and(|next| next.get("role").is_none() || next["role"] == "assistant");
                if !follows {
                    return Err(error(
                        format!("Item '{id}' of type 'reasoning' was provided without its required following item."),
                        Some("input"),
                        None,
                    ));
                }
                if item["encrypted_content"].as_str() != Some(seal(id).as_str()) {
                    return Err(error(
                        format!("The encrypted content for item {id} could not be verified."),
                        None,
                        Some("invalid_encrypted_content"),
                    ));
                }
            }
            _ => {}
        }
    }
    let answered: Vec<&str> =
        items.iter().filter(|i| i["type"] == "function_call_output").filter_map(|i| i["call_id"].as_str()).collect();
    if let Some(missing) = calls.iter().find(|c| !answered.contains(&c.as_str())) {
        return Err(error(format!("No tool output found for function call {missing}."), Some("input"), None));
    }
    Ok(())
}

/// Whether `model` reasons (and hands out encrypted reasoning items): not the GPT-4 family.
fn reasoning_model(model: &str) -> bool {
    !model.starts_with("gpt-4")
}

/// `POST /v1/responses`.
pub(super) async fn responses(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let rec = record(&shared, req).await;
    let body: Value = serde_json::from_slice(&rec.body).unwrap_or_default();
    // Hosted tools this model does not run: answered with what arrived (pass-through tests).
    if body["tools"].as_array().into_iter().flatten().any(|t| t["type"] != "function" && t["type"] != "custom") {
        return axum::Json(json!({"method": rec.method, "path": rec.path, "body_len": rec.body.len()})).into_response();
    }
    if let Err(refusal) = check(&body, &shared.responses_issued.lock().unwrap()) {
        shared.refusals.lock().unwrap().push(refusal.clone());
        return (StatusCode::BAD_REQUEST, axum::Json(refusal)).into_response();
    }
    let last_is_output =
        body["input"].as_array().and_then(|i| i.last()).is_some_and(|i| i["type"] == "function_call_output");
    let turn = match next_turn(&shared) {
        Turn::ToolRound { calls, text } => {
            if last_is_output {
                Turn::Text(text)
            } else {
                Turn::ToolCalls(calls)
            }
        }
        other => other,
    };
    let n = shared.served.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let model = body["model"].as_str().unwrap_or("fake-model").to_owned();
    let (text, calls) = match turn {
        Turn::Status { status, body, .. } => {
            return (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
        }
        Turn::Text(t) => (t, Vec::new()),
        Turn::ToolCalls(calls) => (String::new(), calls),
        other => (format!("(turn {other:?} is not scripted for the Responses API)"), Vec::new()),
    };
    let reasoning_id = format!("rs_fake{n}");
    let summary = "Considering the request.";
    let reasons = reasoning_model(&model);
    let mut output = Vec::new();
    if reasons {
        output.push(json!({"id": reasoning_id, "type": "reasoning", "encrypted_content": seal(&reasoning_id),
            "summary": [{"type": "summary_text", "text": summary}]}));
    }
    for (i, (name, args)) in calls.iter().enumerate() {
        let call_id = format!("call_r{n}_{i}");
        if reasons {
            shared.responses_issued.lock().unwrap().insert(call_id.clone(), reasoning_id.clone());
        }
        output.push(json!({"id": format!("fc_{call_id}"), "type": "function_call", "status": "completed",
            "arguments": args_text(args), "call_id": call_id, "name": name}));
    }
    if calls.is_empty() {
        output
            .push(json!({"id": format!("msg_fake{n}"), "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]}));
    }
    let usage = json!({"input_tokens": PROMPT_TOKENS, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": COMPLETION_TOKENS, "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS});
    let response = |status: &str, output: &[Value]| {
        json!({"id": format!("resp_fake{n}"), "object": "response", "created_at": 1_700_000_000, "status": status,
            "model": model, "output": output, "store": false, "usage": if status == "completed" { usage.clone() } else { Value::Null }})
    };
    if body["stream"] != true {
        return axum::Json(response("completed", &output)).into_response();
    }
    let mut events = vec![
        json!({"type": "response.created", "response": response("in_progress", &[])}),
        json!({"type": "response.in_progress", "response": response("in_progress", &[])}),
    ];
    for (index, item) in output.iter().enumerate() {
        let id = item["id"].clone();
        let mut opened = item.clone();
        match item["type"].as_str() {
            Some("reasoning") => {
                opened["summary"] = json!([]);
                opened.as_object_mut().unwrap().remove("encrypted_content");
                events.push(json!({"type": "response.output_item.added", "output_index": index, "item": opened}));
                events.push(json!({"type": "response.reasoning_summary_part.added", "item_id": id, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}));
                for piece in pieces(summary, 8) {
                    events.push(json!({"type": "response.reasoning_summary_text.delta", "item_id": id, "output_index": index, "summary_index": 0, "delta": piece}));
                }
                events.push(json!({"type": "response.reasoning_summary_text.done", "item_id": id, "output_index": index, "summary_index": 0, "text": summary}));
            }
            Some("function_call") => {
                opened["arguments"] = json!("");
                opened["status"] = json!("in_progress");
                events.push(json!({"type": "response.output_item.added", "output_index": index, "item": opened}));
                let arguments = item["arguments"].as_str().unwrap_or_default();
                for piece in pieces(arguments, 5) {
                    events.push(json!({"type": "response.function_call_arguments.delta", "item_id": id, "output_index": index, "delta": piece}));
                }
                events.push(json!({"type": "response.function_call_arguments.done", "item_id": id, "output_index": index, "arguments": arguments}));
            }
            _ => {
                opened["content"] = json!([]);
                opened["status"] = json!("in_progress");
                events.push(json!({"type": "response.output_item.added", "output_index": index, "item": opened}));
                events.push(json!({"type": "response.content_part.added", "item_id": id, "output_index": index, "content_index": 0, "part": {"type": "output_text", "annotations": [], "text": ""}}));
                for piece in pieces(&text, 4) {
                    events.push(json!({"type": "response.output_text.delta", "item_id": id, "output_index": index, "content_index": 0, "delta": piece, "logprobs": []}));
                }
                events.push(json!({"type": "response.output_text.done", "item_id": id, "output_index": index, "content_index": 0, "text": text}));
                events.push(json!({"type": "response.content_part.done", "item_id": id, "output_index": index, "content_index": 0, "part": item["content"][0]}));
            }
        }
        events.push(json!({"type": "response.output_item.done", "output_index": index, "item": item}));
    }
    events.push(json!({"type": "response.completed", "response": response("completed", &output)}));
    let frames: Vec<Result<Bytes, std::io::Error>> = events
        .into_iter()
        .enumerate()
        .map(|(seq, mut event)| {
            event["sequence_number"] = json!(seq);
            Ok(Bytes::from(format!("event: {}\ndata: {event}\n\n", event["type"].as_str().unwrap())))
        })
        .collect();
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(futures_util::stream::iter(frames)))
        .unwrap()
}
