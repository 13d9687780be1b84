//! Models called through an upstream's own Responses API (`models.<pattern>.api: responses`).
//!
//! The tool loop speaks chat completions; for these models one round's chat body becomes a
//! Responses request ([`to_responses`]) and the upstream's Responses event stream becomes
//! chat-completion chunks ([`Chunker`]), so the loop, its caps and its client streams stay one.
//! Reasoning items (with their `encrypted_content`; nothing is stored upstream) come back on the
//! assistant message as `reasoning_items` and go out again before that message's calls, as the
//! Responses API requires of a function call made after reasoning.

use serde_json::{Map, Value, json};

use super::SseEvent;

/// Where a model's assistant message keeps the upstream's reasoning items between rounds.
pub const REASONING_ITEMS: &str = "reasoning_items";
/// Most distinct tool calls followed in one Responses stream (more are ignored).
const MAX_CALLS: usize = 128;
/// Most reasoning items kept from one Responses stream.
const MAX_REASONING_ITEMS: usize = 64;

/// Chat body fields with the same name and meaning in the Responses API.
const SAME: &[&str] = &[
    "model",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "user",
    "metadata",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "top_logprobs",
];

/// One round's chat-completions body as a streaming Responses request that stores nothing
/// upstream (reasoning travels as encrypted content instead). Fields the Responses API does not
/// take are left out: it refuses unknown parameters.
pub fn to_responses(chat: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for key in SAME {
        if let Some(value) = chat.get(*key).filter(|v| !v.is_null()) {
            out.insert((*key).into(), value.clone());
        }
    }
    let limit = chat.get("max_completion_tokens").or_else(|| chat.get("max_tokens")).filter(|v| !v.is_null());
    if let Some(limit) = limit {
        out.insert("max_output_tokens".into(), limit.clone());
    }
    if let Some(effort) = chat.get("reasoning_effort").filter(|v| !v.is_null()) {
        out.insert("reasoning".into(), json!({"effort": effort, "summary": "auto"}));
    }
    match chat.get("response_format").and_then(|f| f.get("type")).and_then(Value::as_str) {
        Some("json_schema") => {
            let mut format = chat
                .get("response_format")
                .and_then(|f| f.get("json_schema"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            format.insert("type".into(), Value::String("json_schema".into()));
            out.insert("text".into(), json!({"format": format}));
        }
        Some("json_object") => {
            out.insert("text".into(), json!({"format": {"type": "json_object"}}));
        }
        _ => {}
    }
    let items: Vec<Value> =
        chat.get("messages").and_then(Value::as_array).into_iter().flatten().flat_map(input_items).collect();
    out.insert("input".into(), Value::Array(items));
    if let Some(Value::Array(tools)) = chat.get("tools")
        && !tools.is_empty()
    {
        out.insert("tools".into(), Value::Array(tools.iter().filter_map(tool).collect()));
        if let Some(choice) = chat.get("tool_choice").filter(|v| !v.is_null()) {
            out.insert("tool_choice".into(), tool_choice(choice));
        }
    }
    out.insert("stream".into(), Value::Bool(true));
    out.insert("store".into(), Value::Bool(false));
    out.insert("include".into(), json!(["reasoning.encrypted_content"]));
    out
}

/// A chat tool definition as a Responses one: the kind's object flattened beside `type`.
fn tool(definition: &Value) -> Option<Value> {
    let kind = definition.get("type").and_then(Value::as_str)?;
    let mut out = definition.get(kind).and_then(Value::as_object).cloned().unwrap_or_default();
    out.insert("type".into(), Value::String(kind.to_owned()));
    Some(Value::Object(out))
}

/// `tool_choice` as the Responses API writes it.
fn tool_choice(choice: &Value) -> Value {
    let named = |tool: &Value| -> Value {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or("function");
        let name = tool.get(kind).and_then(|f| f.get("name")).cloned().unwrap_or(Value::Null);
        json!({"type": kind, "name": name})
    };
    match choice.get("type").and_then(Value::as_str) {
        Some("allowed_tools") => {
            let allowed = choice.get("allowed_tools").cloned().unwrap_or_default();
            let tools: Vec<Value> =
                allowed.get("tools").and_then(Value::as_array).into_iter().flatten().map(named).collect();
            json!({"type": "allowed_tools", "mode": allowed.get("mode").cloned().unwrap_or(json!("auto")), "tools": tools})
        }
        Some(_) => named(choice),
        None => choice.clone(),
    }
}

/// A chat message content part as a Responses input part.
fn input_part(part: &Value) -> Option<Value> {
    match part.get("type").and_then(Value::as_str)? {
        "text" => Some(json!({"type": "input_text", "text": part.get("text").cloned().unwrap_or_default()})),
        "image_url" => {
            let image = part.get("image_url")?;
            let url = image.get("url").or(Some(image)).filter(|u| u.is_string())?;
            let detail = image.get("detail").and_then(Value::as_str).unwrap_or("auto");
            Some(json!({"type": "input_image", "image_url": url, "detail": detail}))
        }
        "file" => {
            let file = part.get("file")?.as_object()?;
            let mut out = file.clone();
            out.insert("type".into(), Value::String("input_file".into()));
            Some(Value::Object(out))
        }
        _ => None,
    }
}

/// The text of a message's content (a string, or its text parts joined).
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

/// One chat message as Responses input items.
fn input_items(message: &Value) -> Vec<Value> {
    let role = message.get("role").and_then(Value::as_str).unwrap_or_default();
    match role {
        "tool" => vec![json!({
            "type": "function_call_output",
            "call_id": message.get("tool_call_id").cloned().unwrap_or_default(),
            "output": text_of(message.get("content")),
        })],
        "assistant" => {
            let mut items: Vec<Value> = message
                .get(REASONING_ITEMS)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|item| item.get("type").and_then(Value::as_str) == Some("reasoning"))
                .cloned()
                .collect();
            let text = text_of(message.get("content"));
            if !text.is_empty() {
                items.push(json!({"role": "assistant", "content": text}));
            }
            for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let function = call.get("function").cloned().unwrap_or_default();
                items.push(json!({
                    "type": "function_call",
                    "call_id": call.get("id").cloned().unwrap_or_default(),
                    "name": function.get("name").cloned().unwrap_or_default(),
                    "arguments": function.get("arguments").cloned().unwrap_or(json!("{}")),
                }));
            }
            items
        }
        _ => {
            let role = if matches!(role, "system" | "developer" | "user") { role } else { "user" };
            let content = match message.get("content") {
                Some(Value::Array(parts)) => Value::Array(parts.iter().filter_map(input_part).collect()),
                Some(Value::String(text)) => Value::String(text.clone()),
                _ => Value::String(String::new()),
            };
            vec![json!({"role": role, "content": content})]
        }
    }
}

/// Turns a Responses event stream into chat-completion chunks, event by event.
#[derive(Debug, Default)]
pub struct Chunker {
    /// The response's id, model and creation time (from `response.created`).
    identity: Option<(String, String, u64)>,
    /// Function calls by output index: (chat tool-call index, arguments streamed).
    calls: Vec<(u64, u64, bool)>,
    /// Reasoning items, whole, in order.
    reasoning: Vec<Value>,
}

impl Chunker {
    /// The chat-completion chunks (or the error event) one Responses event becomes.
    pub fn chunks(&mut self, event: &SseEvent) -> Vec<SseEvent> {
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else { return Vec::new() };
        let kind = data.get("type").and_then(Value::as_str).unwrap_or(event.event.as_str());
        let str_of = |key: &str| data.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let output_index = data.get("output_index").and_then(Value::as_u64).unwrap_or(0);
        let delta = |this: &Self, delta: Value| this.chunk(json!([{"index": 0, "delta": delta}]), None);
        match kind {
            "response.created" => {
                let response = data.get("response").cloned().unwrap_or_default();
                let id = response.get("id").and_then(Value::as_str).unwrap_or("resp").to_owned();
                let model = response.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
                let created = response.get("created_at").and_then(Value::as_u64).unwrap_or(0);
                self.identity = Some((id, model, created));
                vec![delta(self, json!({"role": "assistant", "content": ""}))]
            }
            "response.output_text.delta" => vec![delta(self, json!({"content": str_of("delta")}))],
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                vec![delta(self, json!({"reasoning_content": str_of("delta")}))]
            }
            "response.output_item.added" | "response.output_item.done" => {
                let item = data.get("item").cloned().unwrap_or_default();
                let done = kind.ends_with(".done");
                match item.get("type").and_then(Value::as_str) {
                    Some("function_call") => self.call(output_index, &item, done),
                    Some("reasoning") if done && self.reasoning.len() < MAX_REASONING_ITEMS => {
                        let mut item = item;
                        if let Some(object) = item.as_object_mut() {
                            object.remove("status");
                        }
                        self.reasoning.push(item);
                        Vec::new()
                    }
                    _ => Vec::new(),
                }
            }
            "response.function_call_arguments.delta" => {
                let Some(call) = self.calls.iter_mut().find(|c| c.0 == output_index) else { return Vec::new() };
                call.2 = true;
                let index = call.1;
                vec![delta(self, json!({"tool_calls": [{"index": index, "function": {"arguments": str_of("delta")}}]}))]
            }
            "response.completed" | "response.incomplete" => {
                let response = data.get("response").cloned().unwrap_or_default();
                let finish = if kind == "response.incomplete" {
                    match response.pointer("/incomplete_details/reason").and_then(Value::as_str) {
                        Some("content_filter") => "content_filter",
                        _ => "length",
                    }
                } else if self.calls.is_empty() {
                    "stop"
                } else {
                    "tool_calls"
                };
                let mut last = Map::new();
                if !self.reasoning.is_empty() {
                    last.insert(REASONING_ITEMS.into(), Value::Array(std::mem::take(&mut self.reasoning)));
                }
                let usage = response.get("usage").filter(|u| u.is_object()).map(|u| {
                    let count = |key: &str| u.get(key).and_then(Value::as_u64).unwrap_or(0);
                    let reasoning = u.pointer("/output_tokens_details/reasoning_tokens").and_then(Value::as_u64);
                    let cached = u.pointer("/input_tokens_details/cached_tokens").and_then(Value::as_u64);
                    json!({
                        "prompt_tokens": count("input_tokens"),
                        "completion_tokens": count("output_tokens"),
                        "total_tokens": count("total_tokens"),
                        "completion_tokens_details": {"reasoning_tokens": reasoning.unwrap_or(0)},
                        "prompt_tokens_details": {"cached_tokens": cached.unwrap_or(0)},
                    })
                });
                vec![self.chunk(json!([{"index": 0, "delta": last, "finish_reason": finish}]), usage)]
            }
            "response.failed" | "error" => {
                let message = data
                    .pointer("/response/error/message")
                    .or_else(|| data.get("message"))
                    .or_else(|| data.pointer("/error/message"))
                    .and_then(Value::as_str)
                    .unwrap_or("the upstream's response failed");
                vec![SseEvent { event: "error".into(), data: json!({"error": {"message": message}}).to_string() }]
            }
            _ => Vec::new(),
        }
    }

    /// A function call item: its first sight opens a chat tool call; its `done` item fills
    /// the arguments when none were streamed.
    fn call(&mut self, output_index: u64, item: &Value, done: bool) -> Vec<SseEvent> {
        let arguments = item.get("arguments").and_then(Value::as_str).unwrap_or_default();
        let known = self.calls.iter().position(|c| c.0 == output_index);
        let (index, opened) = match known {
            Some(pos) => (self.calls.get(pos).map_or(0, |c| c.1), false),
            None if self.calls.len() < MAX_CALLS => {
                let index = self.calls.len() as u64;
                self.calls.push((output_index, index, false));
                (index, true)
            }
            None => return Vec::new(),
        };
        let streamed = self.calls.iter().any(|c| c.0 == output_index && c.2);
        let mut piece = json!({"index": index});
        if opened {
            piece = json!({"index": index, "id": item.get("call_id").cloned().unwrap_or_default(), "type": "function",
                "function": {"name": item.get("name").cloned().unwrap_or_default(), "arguments": ""}});
        }
        if done && !streamed && !arguments.is_empty() {
            if let Some(call) = self.calls.iter_mut().find(|c| c.0 == output_index) {
                call.2 = true;
            }
            if let Some(object) = piece.as_object_mut() {
                let function = object.entry("function").or_insert_with(|| json!({}));
                if let Some(function) = function.as_object_mut() {
                    function.insert("arguments".into(), Value::String(arguments.to_owned()));
                }
            }
        } else if !opened {
            return Vec::new();
        }
        vec![self.chunk(json!([{"index": 0, "delta": {"tool_calls": [piece]}}]), None)]
    }

    /// A chunk of the response with these choices (and usage).
    fn chunk(&self, choices: Value, usage: Option<Value>) -> SseEvent {
        let (id, model, created) = self.identity.clone().unwrap_or_default();
        let mut chunk = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": choices});
        if let (Some(usage), Some(object)) = (usage, chunk.as_object_mut()) {
            object.insert("usage".into(), usage);
        }
        SseEvent { event: "message".into(), data: chunk.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: Value) -> SseEvent {
        SseEvent { event: data["type"].as_str().unwrap().to_owned(), data: data.to_string() }
    }

    #[test]
    fn a_tool_round_becomes_responses_input_and_back() {
        let chat = json!({
            "model": "o", "max_tokens": 50, "stream_options": {"include_usage": true}, "reasoning_effort": "low",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:x"}}]},
                {"role": "assistant", "content": null, "reasoning_items": [{"type": "reasoning", "id": "rs_1", "encrypted_content": "E", "summary": []}],
                 "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "t", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "out"},
            ],
            "tools": [{"type": "function", "function": {"name": "t", "parameters": {}}}],
            "tool_choice": {"type": "function", "function": {"name": "t"}},
        });
        let out = to_responses(chat.as_object().unwrap());
        assert_eq!(out.get("max_output_tokens"), Some(&json!(50)));
        assert!(out.get("stream_options").is_none() && out.get("messages").is_none());
        let input = out["input"].as_array().unwrap();
        let kinds: Vec<&str> = input.iter().map(|i| i["type"].as_str().unwrap_or("message")).collect();
        assert_eq!(kinds, ["message", "message", "reasoning", "function_call", "function_call_output"]);
        assert_eq!(input[1]["content"][1]["type"], "input_image");
        assert_eq!(out["tools"][0], json!({"type": "function", "name": "t", "parameters": {}}));
        assert_eq!(out["tool_choice"], json!({"type": "function", "name": "t"}));

        let mut chunker = Chunker::default();
        let mut chunks = Vec::new();
        for data in [
            json!({"type": "response.created", "response": {"id": "resp_1", "model": "o", "created_at": 5}}),
            json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "reasoning", "id": "rs_2", "encrypted_content": "F", "summary": [], "status": "completed"}}),
            json!({"type": "response.output_item.added", "output_index": 1, "item": {"type": "function_call", "call_id": "call_2", "name": "t", "arguments": ""}}),
            json!({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "{\"a\":"}),
            json!({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "1}"}),
            json!({"type": "response.output_item.done", "output_index": 1, "item": {"type": "function_call", "call_id": "call_2", "name": "t", "arguments": "{\"a\":1}"}}),
            json!({"type": "response.completed", "response": {"usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}}}),
        ] {
            chunks.extend(chunker.chunks(&event(data)));
        }
        let chunks: Vec<Value> = chunks.iter().map(|c| serde_json::from_str(&c.data).unwrap()).collect();
        assert_eq!(chunks.len(), 5, "{chunks:?}");
        assert_eq!(chunks[1]["choices"][0]["delta"]["tool_calls"][0]["id"], "call_2");
        let last = &chunks[4];
        assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(last["choices"][0]["delta"]["reasoning_items"][0]["id"], "rs_2");
        assert!(last["choices"][0]["delta"]["reasoning_items"][0].get("status").is_none());
        assert_eq!(last["usage"]["completion_tokens"], 4);
        assert!(chunks.iter().all(|c| c["id"] == "resp_1"));
    }

    #[test]
    fn a_failed_response_is_an_error_event() {
        let mut chunker = Chunker::default();
        let out =
            chunker.chunks(&event(json!({"type": "response.failed", "response": {"error": {"message": "nope"}}})));
        assert_eq!(out[0].event, "error");
        assert!(out[0].data.contains("nope"));
    }
}
