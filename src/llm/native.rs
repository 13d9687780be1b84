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
/// Most reasoning items kept from one Responses stream, and most bytes of them.
const MAX_REASONING_ITEMS: usize = 64;
const MAX_REASONING_BYTES: usize = 4 * 1024 * 1024;
/// The fewest output tokens the Responses API takes.
const MIN_OUTPUT_TOKENS: u64 = 16;

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
    let limit = chat.get("max_completion_tokens").or_else(|| chat.get("max_tokens")).and_then(Value::as_u64);
    if let Some(limit) = limit {
        // The Responses API refuses fewer than 16.
        out.insert("max_output_tokens".into(), json!(limit.max(MIN_OUTPUT_TOKENS)));
    }
    if let Some(effort) = chat.get("reasoning_effort").filter(|v| !v.is_null()) {
        // A summary streams as the chat's reasoning text (dropped again if the upstream refuses it).
        out.insert("reasoning".into(), json!({"effort": effort, "summary": "auto"}));
    }
    if let Some(verbosity) = chat.get("verbosity").filter(|v| !v.is_null()) {
        text_field(&mut out, "verbosity", verbosity.clone());
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
            text_field(&mut out, "format", Value::Object(format));
        }
        Some("json_object") => text_field(&mut out, "format", json!({"type": "json_object"})),
        _ => {}
    }
    let messages = chat.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    // Custom (free-form) tool calls are answered with their own output type.
    let custom: Vec<&str> = messages
        .iter()
        .filter_map(|m| m.get("tool_calls").and_then(Value::as_array))
        .flatten()
        .filter(|c| c.get("type").and_then(Value::as_str) == Some("custom"))
        .filter_map(|c| c.get("id").and_then(Value::as_str))
        .collect();
    let items: Vec<Value> = messages.iter().flat_map(|m| input_items(m, &custom)).collect();
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

/// Sets `text.<key>` (the Responses API's text options, one object).
fn text_field(out: &mut Map<String, Value>, key: &str, value: Value) {
    let text = out.entry("text").or_insert_with(|| json!({}));
    if let Some(text) = text.as_object_mut() {
        text.insert(key.into(), value);
    }
}

/// A chat tool definition as a Responses one: the kind's object flattened beside `type`. A
/// function without `strict` says `false`: the Responses API would otherwise make every schema
/// strict (all fields required), which chat completions never does.
fn tool(definition: &Value) -> Option<Value> {
    let kind = definition.get("type").and_then(Value::as_str)?;
    let mut out = definition.get(kind).and_then(Value::as_object).cloned().unwrap_or_default();
    out.insert("type".into(), Value::String(kind.to_owned()));
    if kind == "function" && out.get("strict").is_none_or(Value::is_null) {
        out.insert("strict".into(), Value::Bool(false));
    }
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

/// One chat message as Responses input items (`custom` names the calls of custom tools).
fn input_items(message: &Value, custom: &[&str]) -> Vec<Value> {
    let role = message.get("role").and_then(Value::as_str).unwrap_or_default();
    match role {
        "tool" => {
            let call_id = message.get("tool_call_id").and_then(Value::as_str).unwrap_or_default();
            let kind = if custom.contains(&call_id) { "custom_tool_call_output" } else { "function_call_output" };
            vec![json!({"type": kind, "call_id": call_id, "output": text_of(message.get("content"))})]
        }
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
            if let Some(refusal) = message.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty()) {
                items.push(json!({"type": "message", "role": "assistant",
                    "content": [{"type": "refusal", "refusal": refusal}]}));
            }
            for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                if call.get("type").and_then(Value::as_str) == Some("custom") {
                    let custom = call.get("custom").cloned().unwrap_or_default();
                    items.push(json!({
                        "type": "custom_tool_call",
                        "call_id": call.get("id").cloned().unwrap_or_default(),
                        "name": custom.get("name").cloned().unwrap_or_default(),
                        "input": custom.get("input").cloned().unwrap_or(json!("")),
                    }));
                    continue;
                }
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

/// Turns a Responses event stream into chat-completion chunks, event by event; after the
/// response's last event, the `[DONE]` a chat stream ends with.
#[derive(Debug, Default)]
pub struct Chunker {
    /// The response's id, model and creation time (from `response.created`).
    identity: Option<(String, String, u64)>,
    /// Tool calls by output index: their chat tool-call index, kind, and whether their
    /// arguments (input) streamed.
    calls: Vec<OpenCall>,
    /// Reasoning items, whole, in order, and their bytes.
    reasoning: Vec<Value>,
    reasoning_bytes: usize,
}

/// A tool call the stream opened.
#[derive(Debug)]
struct OpenCall {
    output_index: u64,
    index: u64,
    custom: bool,
    streamed: bool,
}

/// The `[DONE]` event.
fn done() -> SseEvent {
    SseEvent { event: "message".into(), data: "[DONE]".into() }
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
                // Identity only: nothing reaches the client before the model says something.
                let response = data.get("response").cloned().unwrap_or_default();
                let id = response.get("id").and_then(Value::as_str).unwrap_or("resp").to_owned();
                let model = response.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
                let created = response.get("created_at").and_then(Value::as_u64).unwrap_or(0);
                self.identity = Some((id, model, created));
                Vec::new()
            }
            "response.output_text.delta" => vec![delta(self, json!({"content": str_of("delta")}))],
            "response.refusal.delta" => vec![delta(self, json!({"refusal": str_of("delta")}))],
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                vec![delta(self, json!({"reasoning_content": str_of("delta")}))]
            }
            "response.output_item.added" | "response.output_item.done" => {
                let item = data.get("item").cloned().unwrap_or_default();
                let done = kind.ends_with(".done");
                match item.get("type").and_then(Value::as_str) {
                    Some("function_call") => self.call(output_index, &item, done, false),
                    Some("custom_tool_call") => self.call(output_index, &item, done, true),
                    Some("reasoning") if done => {
                        let bytes = item.to_string().len();
                        if self.reasoning.len() < MAX_REASONING_ITEMS
                            && self.reasoning_bytes.saturating_add(bytes) <= MAX_REASONING_BYTES
                        {
                            let mut item = item;
                            if let Some(object) = item.as_object_mut() {
                                object.remove("status");
                            }
                            self.reasoning_bytes += bytes;
                            self.reasoning.push(item);
                        }
                        Vec::new()
                    }
                    _ => Vec::new(),
                }
            }
            "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
                let Some(call) = self.calls.iter_mut().find(|c| c.output_index == output_index) else {
                    return Vec::new();
                };
                call.streamed = true;
                let piece = if call.custom {
                    json!({"index": call.index, "custom": {"input": str_of("delta")}})
                } else {
                    json!({"index": call.index, "function": {"arguments": str_of("delta")}})
                };
                vec![delta(self, json!({"tool_calls": [piece]}))]
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
                vec![self.chunk(json!([{"index": 0, "delta": last, "finish_reason": finish}]), usage), done()]
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

    /// A function (or custom) tool call item: its first sight opens a chat tool call; its
    /// `done` item fills the arguments (input) when none were streamed.
    fn call(&mut self, output_index: u64, item: &Value, done: bool, custom: bool) -> Vec<SseEvent> {
        let field = if custom { "input" } else { "arguments" };
        let whole = item.get(field).and_then(Value::as_str).unwrap_or_default();
        let known = self.calls.iter().position(|c| c.output_index == output_index);
        let (position, opened) = match known {
            Some(position) => (position, false),
            None if self.calls.len() < MAX_CALLS => {
                let index = self.calls.len() as u64;
                self.calls.push(OpenCall { output_index, index, custom, streamed: false });
                (self.calls.len() - 1, true)
            }
            None => return Vec::new(),
        };
        let Some(call) = self.calls.get_mut(position) else { return Vec::new() };
        let fill = done && !call.streamed && !whole.is_empty();
        if !opened && !fill {
            return Vec::new();
        }
        call.streamed |= fill;
        let kind = if custom { "custom" } else { "function" };
        let text = if fill { whole } else { "" };
        let mut inner = Map::new();
        if opened {
            inner.insert("name".into(), item.get("name").cloned().unwrap_or_default());
        }
        inner.insert(field.into(), Value::String(text.to_owned()));
        let mut piece = json!({"index": call.index});
        if let Some(piece) = piece.as_object_mut() {
            if opened {
                piece.insert("id".into(), item.get("call_id").cloned().unwrap_or_default());
                piece.insert("type".into(), Value::String(kind.into()));
            }
            piece.insert(kind.into(), Value::Object(inner));
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

/// Whether a refusal of a Responses request names a field this module adds on its own
/// (`include` for reasoning, `reasoning.summary`) that the model or account does not take:
/// the field to leave out of the retry.
pub fn refused_option(body: &[u8]) -> Option<&'static str> {
    let error: Value = serde_json::from_slice(body).ok()?;
    match error.pointer("/error/param").and_then(Value::as_str)? {
        "include" => Some("include"),
        "reasoning.summary" => Some("reasoning.summary"),
        _ => None,
    }
}

/// `body` without `option` (see [`refused_option`]).
pub fn without_option(body: &mut Map<String, Value>, option: &str) {
    match option {
        "include" => {
            body.remove("include");
        }
        "reasoning.summary" => {
            if let Some(Value::Object(reasoning)) = body.get_mut("reasoning") {
                reasoning.remove("summary");
            }
        }
        _ => {}
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
        assert_eq!(out["tools"][0], json!({"type": "function", "name": "t", "parameters": {}, "strict": false}));
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
        assert_eq!(chunks.last().map(|c| c.data.as_str()), Some("[DONE]"));
        let chunks: Vec<Value> =
            chunks.iter().filter(|c| !c.is_done()).map(|c| serde_json::from_str(&c.data).unwrap()).collect();
        assert_eq!(chunks.len(), 4, "{chunks:?}");
        assert_eq!(chunks[0]["choices"][0]["delta"]["tool_calls"][0]["id"], "call_2");
        let last = &chunks[3];
        assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(last["choices"][0]["delta"]["reasoning_items"][0]["id"], "rs_2");
        assert!(last["choices"][0]["delta"]["reasoning_items"][0].get("status").is_none());
        assert_eq!(last["usage"]["completion_tokens"], 4);
        assert!(chunks.iter().all(|c| c["id"] == "resp_1"));
    }

    #[test]
    fn custom_tool_calls_keep_their_kind_both_ways() {
        let chat = json!({"messages": [
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "custom", "custom": {"name": "sh", "input": "ls"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "a b"},
        ]});
        let out = to_responses(chat.as_object().unwrap());
        assert_eq!(out["input"][0], json!({"type": "custom_tool_call", "call_id": "c1", "name": "sh", "input": "ls"}));
        assert_eq!(out["input"][1]["type"], "custom_tool_call_output");

        let mut chunker = Chunker::default();
        let added = json!({"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "custom_tool_call", "call_id": "c2", "name": "sh", "input": ""}});
        let piece = json!({"type": "response.custom_tool_call_input.delta", "output_index": 0, "delta": "pwd"});
        let mut chunks = chunker.chunks(&event(added));
        chunks.extend(chunker.chunks(&event(piece)));
        let deltas: Vec<Value> = chunks.iter().map(|c| serde_json::from_str::<Value>(&c.data).unwrap()).collect();
        assert_eq!(deltas[0]["choices"][0]["delta"]["tool_calls"][0]["type"], "custom");
        assert_eq!(deltas[0]["choices"][0]["delta"]["tool_calls"][0]["custom"]["name"], "sh");
        assert_eq!(deltas[1]["choices"][0]["delta"]["tool_calls"][0]["custom"]["input"], "pwd");
    }

    #[test]
    fn a_refused_option_of_ours_is_named_for_the_retry() {
        let refusal =
            br#"{"error": {"message": "Encrypted content is not supported with this model.", "param": "include"}}"#;
        assert_eq!(refused_option(refusal), Some("include"));
        assert_eq!(refused_option(br#"{"error": {"param": "input"}}"#), None);
        let mut body = to_responses(json!({"reasoning_effort": "low", "max_tokens": 3}).as_object().unwrap());
        assert_eq!(body["max_output_tokens"], 16);
        without_option(&mut body, "reasoning.summary");
        assert_eq!(body["reasoning"], json!({"effort": "low"}));
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
