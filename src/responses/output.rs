//! The loop's answer as a Response object (output items: `mcp_list_tools` for each hosted
//! `mcp` tool, `reasoning`, one `mcp_call` per tool of ours that ran, `function_call` for the
//! client's own tools, the `message`), and a Response as the semantic events of a stream, in
//! the order the OpenAI reference sends them, each with its `sequence_number`.

use serde_json::{Map, Value, json};

use crate::agent::ToolRun;
use crate::mcp::Catalog;

/// The loop's answer, whichever way it came (the loop's outcome, or the upstream's own
/// `chat.completion` when no tool of ours was offered).
#[derive(Debug, Default)]
pub struct Answer {
    /// The model.
    pub model: String,
    /// The answer's text.
    pub text: String,
    /// The model's reasoning, when it showed it.
    pub reasoning: Option<String>,
    /// Our tools that ran, in order.
    pub runs: Vec<ToolRun>,
    /// Calls of the client's own function tools (chat `tool_calls`).
    pub client_calls: Vec<Value>,
    /// The chat `usage`.
    pub usage: Value,
    /// `stop`, `length`, `tool_calls` …
    pub finish_reason: String,
    /// Why the loop stopped early, if it did.
    pub error: Option<Value>,
}

impl Answer {
    /// From an upstream `chat.completion`.
    pub fn from_completion(completion: &Value) -> Self {
        let choice = completion.pointer("/choices/0").cloned().unwrap_or_default();
        let message = choice.get("message").cloned().unwrap_or_default();
        Self {
            model: completion.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
            text: message.get("content").and_then(Value::as_str).unwrap_or_default().to_owned(),
            reasoning: message.get("reasoning_content").and_then(Value::as_str).map(str::to_owned),
            runs: Vec::new(),
            client_calls: message.get("tool_calls").and_then(Value::as_array).cloned().unwrap_or_default(),
            usage: completion.get("usage").cloned().unwrap_or(Value::Null),
            finish_reason: choice.get("finish_reason").and_then(Value::as_str).unwrap_or("stop").to_owned(),
            error: completion.get("mcp_error").cloned(),
        }
    }
}

/// A fresh id with `prefix` (`resp`, `msg`, `mcp`, …): 32 random hex digits.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The Response object for `answer` to `request` (its settings echoed), with id `id`; the
/// hosted `mcp` tools' listings show the `allowed` tools (exposed names) of each of `labels`.
pub fn response(
    id: &str,
    created: u64,
    request: &Map<String, Value>,
    answer: &Answer,
    (labels, allowed): (&[String], &[String]),
    catalog: &Catalog,
) -> Value {
    let mut output = Vec::new();
    for label in labels {
        let tools: Vec<Value> = catalog
            .entries()
            .iter()
            .filter(|e| &e.server == label && allowed.contains(&e.name))
            .map(|e| json!({"name": e.original_name, "description": e.description, "input_schema": &*e.server_schema}))
            .collect();
        output.push(json!({"type": "mcp_list_tools", "id": new_id("mcpl"), "server_label": label, "tools": tools}));
    }
    if let Some(reasoning) = answer.reasoning.as_deref().filter(|r| !r.is_empty()) {
        output.push(
            json!({"type": "reasoning", "id": new_id("rs"), "summary": [{"type": "summary_text", "text": reasoning}]}),
        );
    }
    for run in &answer.runs {
        let (server, name) = match catalog.get(&run.name) {
            Some(entry) => (entry.server.clone(), entry.original_name.clone()),
            None => (String::new(), run.name.clone()),
        };
        let arguments = match &run.arguments {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let (out, error) = if run.is_error {
            (Value::Null, Value::String(run.output.clone()))
        } else {
            (Value::String(run.output.clone()), Value::Null)
        };
        output.push(json!({"type": "mcp_call", "id": new_id("mcp"), "server_label": server, "name": name,
            "arguments": arguments, "output": out, "error": error, "status": if run.is_error { "failed" } else { "completed" }}));
    }
    if !answer.text.is_empty() || answer.client_calls.is_empty() {
        output.push(json!({"type": "message", "id": new_id("msg"), "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": answer.text, "annotations": []}]}));
    }
    for call in &answer.client_calls {
        let function = call.get("function").cloned().unwrap_or_default();
        output.push(json!({"type": "function_call", "id": new_id("fc"), "call_id": call.get("id"),
            "name": function.get("name"), "arguments": function.get("arguments").and_then(Value::as_str).unwrap_or("{}"),
            "status": "completed"}));
    }
    let usage = &answer.usage;
    let count = |pointer: &str| usage.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    let (input_tokens, output_tokens) = (count("/prompt_tokens"), count("/completion_tokens"));
    let (cached_tokens, reasoning_tokens) =
        (count("/prompt_tokens_details/cached_tokens"), count("/completion_tokens_details/reasoning_tokens"));
    let incomplete = answer.finish_reason == "length";
    let echo = |key: &str, default: Value| request.get(key).cloned().unwrap_or(default);
    json!({
        "id": id,
        "object": "response",
        "created_at": created,
        "status": if answer.error.is_some() { "failed" } else if incomplete { "incomplete" } else { "completed" },
        "error": answer.error.as_ref().map(|e| json!({"code": "server_error", "message": e.get("message").cloned().unwrap_or_else(|| e.clone())})),
        "incomplete_details": if incomplete { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "instructions": echo("instructions", Value::Null),
        "max_output_tokens": echo("max_output_tokens", Value::Null),
        "metadata": echo("metadata", json!({})),
        "model": if answer.model.is_empty() { echo("model", Value::Null) } else { Value::String(answer.model.clone()) },
        "output": output,
        "parallel_tool_calls": echo("parallel_tool_calls", Value::Bool(true)),
        "previous_response_id": echo("previous_response_id", Value::Null),
        "reasoning": echo("reasoning", json!({"effort": null, "summary": null})),
        "store": echo("store", Value::Bool(true)),
        "temperature": echo("temperature", json!(1.0)),
        "text": echo("text", json!({"format": {"type": "text"}})),
        "tool_choice": echo("tool_choice", json!("auto")),
        "tools": echo("tools", json!([])),
        "top_p": echo("top_p", json!(1.0)),
        "truncation": "disabled",
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": cached_tokens},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": input_tokens + output_tokens,
        },
        "user": echo("user", Value::Null),
    })
}

/// The chat messages `response` adds to the conversation (for `previous_response_id`): each
/// of our calls with its result, then one assistant message with the text and the client's
/// calls.
pub fn as_messages(response: &Value, catalog: &Catalog) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut text = String::new();
    let mut calls = Vec::new();
    for item in response.get("output").and_then(Value::as_array).into_iter().flatten() {
        match item.get("type").and_then(Value::as_str) {
            Some("mcp_call") => {
                let label = item.get("server_label").and_then(Value::as_str).unwrap_or_default();
                let original = item.get("name").and_then(Value::as_str).unwrap_or_default();
                let name = catalog.by_origin(label, original).map_or_else(|| original.to_owned(), |e| e.name.clone());
                let id = item.get("id").cloned().unwrap_or_default();
                let arguments = item.get("arguments").and_then(Value::as_str).unwrap_or("{}");
                messages
                    .push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
                    "function": {"name": name, "arguments": arguments}}]}));
                let result =
                    item.get("output").and_then(Value::as_str).or_else(|| item.get("error").and_then(Value::as_str));
                messages.push(json!({"role": "tool", "tool_call_id": id, "content": result.unwrap_or_default()}));
            }
            Some("message") => {
                for part in item.get("content").and_then(Value::as_array).into_iter().flatten() {
                    text.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default());
                }
            }
            Some("function_call") => calls.push(json!({"id": item.get("call_id"), "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments")}})),
            _ => {}
        }
    }
    let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) };
    let mut last = json!({"role": "assistant", "content": content});
    if let (false, Some(object)) = (calls.is_empty(), last.as_object_mut()) {
        object.insert("tool_calls".into(), Value::Array(calls));
    }
    messages.push(last);
    messages
}

/// `response` as the events of a stream, in order, numbered.
pub fn events(response: &Value) -> Vec<Value> {
    let mut events = Vec::new();
    let mut push = |mut event: Value| {
        let n = events.len();
        if let Some(object) = event.as_object_mut() {
            object.insert("sequence_number".into(), json!(n));
        }
        events.push(event);
    };
    let mut started = response.clone();
    if let Some(object) = started.as_object_mut() {
        object.insert("status".into(), json!("in_progress"));
        object.insert("output".into(), json!([]));
    }
    push(json!({"type": "response.created", "response": started}));
    push(json!({"type": "response.in_progress", "response": started}));
    for (index, item) in response.get("output").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let id = item.get("id").cloned().unwrap_or_default();
        let mut added = item.clone();
        if let Some(object) = added.as_object_mut() {
            if object.contains_key("status") {
                object.insert("status".into(), json!("in_progress"));
            }
            if item.get("type").and_then(Value::as_str) == Some("message") {
                object.insert("content".into(), json!([]));
            }
        }
        push(json!({"type": "response.output_item.added", "output_index": index, "item": added}));
        match item.get("type").and_then(Value::as_str) {
            Some("mcp_call") => {
                push(json!({"type": "response.mcp_call.in_progress", "output_index": index, "item_id": id}));
                let arguments = item.get("arguments").cloned().unwrap_or_default();
                push(
                    json!({"type": "response.mcp_call_arguments.done", "output_index": index, "item_id": id, "arguments": arguments}),
                );
                let outcome = if item.get("error").is_some_and(|e| !e.is_null()) { "failed" } else { "completed" };
                push(json!({"type": format!("response.mcp_call.{outcome}"), "output_index": index, "item_id": id}));
            }
            Some("message") => {
                let text = item.pointer("/content/0/text").and_then(Value::as_str).unwrap_or_default();
                let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
                push(
                    json!({"type": "response.content_part.added", "output_index": index, "item_id": id, "content_index": 0, "part": part("")}),
                );
                for piece in pieces(text) {
                    push(
                        json!({"type": "response.output_text.delta", "output_index": index, "item_id": id, "content_index": 0, "delta": piece, "logprobs": []}),
                    );
                }
                push(
                    json!({"type": "response.output_text.done", "output_index": index, "item_id": id, "content_index": 0, "text": text, "logprobs": []}),
                );
                push(
                    json!({"type": "response.content_part.done", "output_index": index, "item_id": id, "content_index": 0, "part": part(text)}),
                );
            }
            Some("function_call") => {
                let arguments = item.get("arguments").cloned().unwrap_or_default();
                push(
                    json!({"type": "response.function_call_arguments.done", "output_index": index, "item_id": id, "arguments": arguments}),
                );
            }
            _ => {}
        }
        push(json!({"type": "response.output_item.done", "output_index": index, "item": item}));
    }
    let done = if response.get("status").and_then(Value::as_str) == Some("incomplete") {
        "response.incomplete"
    } else {
        "response.completed"
    };
    push(json!({"type": done, "response": response}));
    events
}

/// `text` in pieces of about 64 characters (on character boundaries), as deltas come.
fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(64);
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        let Some((piece, tail)) = rest.split_at_checked(end) else { break };
        out.push(piece);
        rest = tail;
    }
    out
}
