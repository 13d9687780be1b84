//! A Responses stream as the loop goes: the loop's chat chunks and tool runs (from a sink that
//! takes them) become the reference's semantic events as they come — text deltas while the
//! model writes, an `mcp_call` item the moment a tool of ours has run — and the finished
//! Response at the end carries exactly the items streamed.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::output::{Answer, new_id, response};
use crate::agent::ToolRun;
use crate::mcp::Catalog;

/// Most calls of the client's own tools one response carries.
const MAX_CLIENT_CALLS: usize = 128;

/// Turns the loop's events into Responses events, numbering them.
pub struct Translator {
    id: String,
    created: u64,
    request: Map<String, Value>,
    labels: Vec<String>,
    allowed: Vec<String>,
    catalog: Arc<Catalog>,
    sequence: u64,
    /// Finished output items, in order.
    items: Vec<Value>,
    /// The message item being written: its index, id and text so far.
    open: Option<(usize, String, String)>,
    answer: Answer,
    /// The client's own calls, by their index in the chat stream: id, name, arguments.
    calls: Vec<(String, String, String)>,
}

impl Translator {
    /// A translator for response `id` to `request` (its hosted `mcp` tools' `labels` and the
    /// `allowed` tools listed).
    pub fn new(
        id: String,
        created: u64,
        request: Map<String, Value>,
        (labels, allowed): (Vec<String>, Vec<String>),
        catalog: Arc<Catalog>,
    ) -> Self {
        Self {
            id,
            created,
            request,
            labels,
            allowed,
            catalog,
            sequence: 0,
            items: Vec::new(),
            open: None,
            answer: Answer::default(),
            calls: Vec::new(),
        }
    }

    fn event(&mut self, mut event: Value) -> Value {
        if let Some(object) = event.as_object_mut() {
            object.insert("sequence_number".into(), json!(self.sequence));
        }
        self.sequence += 1;
        event
    }

    fn envelope(&self, answer: &Answer, output: Vec<Value>) -> Value {
        let mut envelope = response(&self.id, self.created, &self.request, answer, (&[], &[]), &self.catalog);
        if let Some(object) = envelope.as_object_mut() {
            object.insert("output".into(), Value::Array(output));
        }
        envelope
    }

    /// The opening events, and the hosted tools' listings.
    pub fn start(&mut self) -> Vec<Value> {
        let mut started = self.envelope(&Answer::default(), Vec::new());
        if let Some(object) = started.as_object_mut() {
            object.insert("status".into(), json!("in_progress"));
        }
        let mut out = vec![
            self.event(json!({"type": "response.created", "response": started})),
            self.event(json!({"type": "response.in_progress", "response": started})),
        ];
        for label in self.labels.clone() {
            let tools: Vec<Value> = self
                .catalog
                .entries()
                .iter()
                .filter(|e| e.server == label && self.allowed.contains(&e.name))
                .map(|e| json!({"name": e.original_name, "description": e.description, "input_schema": &*e.server_schema}))
                .collect();
            let item = json!({"type": "mcp_list_tools", "id": new_id("mcpl"), "server_label": label, "tools": tools});
            out.extend(self.whole_item(item));
        }
        out
    }

    /// An item added and done at once.
    fn whole_item(&mut self, item: Value) -> Vec<Value> {
        let index = self.items.len();
        let added = self.event(json!({"type": "response.output_item.added", "output_index": index, "item": item}));
        let done = self.event(json!({"type": "response.output_item.done", "output_index": index, "item": item}));
        self.items.push(item);
        vec![added, done]
    }

    /// One chat chunk of the loop's stream.
    pub fn chunk(&mut self, data: &str) -> Vec<Value> {
        let Ok(chunk) = serde_json::from_str::<Value>(data) else { return Vec::new() };
        let mut out = Vec::new();
        if let Some(model) = chunk.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()) {
            self.answer.model = model.to_owned();
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.answer.usage = usage.clone();
        }
        let Some(choice) = chunk.pointer("/choices/0") else { return out };
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.answer.finish_reason = finish.to_owned();
        }
        let delta = choice.get("delta").cloned().unwrap_or_default();
        if let Some(reasoning) = delta.get("reasoning_content").and_then(Value::as_str) {
            self.answer.reasoning.get_or_insert_with(String::new).push_str(reasoning);
        }
        if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            if self.open.is_none() {
                let index = self.items.len();
                let id = new_id("msg");
                let item =
                    json!({"type": "message", "id": id, "role": "assistant", "status": "in_progress", "content": []});
                out.push(
                    self.event(json!({"type": "response.output_item.added", "output_index": index, "item": item})),
                );
                out.push(
                    self.event(json!({"type": "response.content_part.added", "output_index": index, "item_id": id,
                    "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})),
                );
                // Reserve the place: items after it are numbered after it.
                self.items.push(Value::Null);
                self.open = Some((index, id, String::new()));
            }
            if let Some((index, id, so_far)) = self.open.as_mut() {
                so_far.push_str(text);
                let (index, id) = (*index, id.clone());
                out.push(
                    self.event(json!({"type": "response.output_text.delta", "output_index": index, "item_id": id,
                    "content_index": 0, "delta": text, "logprobs": []})),
                );
            }
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            // The upstream's index, bounded: a call numbered past the limit is not the client's.
            let Some(at) = call.get("index").and_then(Value::as_u64).map_or(Some(0), |i| usize::try_from(i).ok())
            else {
                continue;
            };
            if at >= MAX_CLIENT_CALLS {
                continue;
            }
            while self.calls.len() <= at {
                self.calls.push(Default::default());
            }
            if let Some((id, name, arguments)) = self.calls.get_mut(at) {
                if let Some(given) = call.get("id").and_then(Value::as_str) {
                    *id = given.to_owned();
                }
                if let Some(given) = call.pointer("/function/name").and_then(Value::as_str) {
                    name.push_str(given);
                }
                if let Some(given) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    arguments.push_str(given);
                }
            }
        }
        out
    }

    /// Closes the message being written, if any.
    fn close(&mut self) -> Vec<Value> {
        let Some((index, id, text)) = self.open.take() else { return Vec::new() };
        let part = json!({"type": "output_text", "text": text, "annotations": []});
        let item = json!({"type": "message", "id": id, "role": "assistant", "status": "completed", "content": [part]});
        let out = vec![
            self.event(json!({"type": "response.output_text.done", "output_index": index, "item_id": id,
                "content_index": 0, "text": text, "logprobs": []})),
            self.event(json!({"type": "response.content_part.done", "output_index": index, "item_id": id,
                "content_index": 0, "part": part})),
            self.event(json!({"type": "response.output_item.done", "output_index": index, "item": item})),
        ];
        if !self.answer.text.is_empty() {
            self.answer.text.push('\n');
        }
        self.answer.text.push_str(&text);
        if let Some(slot) = self.items.get_mut(index) {
            *slot = item;
        }
        out
    }

    /// A batch of our tool runs (the sink's `mcp.tool_runs` event), each an `mcp_call` item.
    pub fn runs(&mut self, data: &str) -> Vec<Value> {
        let mut out = self.close();
        let runs: Vec<Value> = serde_json::from_str(data).unwrap_or_default();
        for run in runs {
            let exposed = run.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            let (server, name) = match self.catalog.get(&exposed) {
                Some(entry) => (entry.server.clone(), entry.original_name.clone()),
                None => (String::new(), exposed.clone()),
            };
            let arguments = match run.get("arguments") {
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => "{}".into(),
            };
            let failed = run.get("is_error").and_then(Value::as_bool).unwrap_or(false);
            let output = run.get("output").and_then(Value::as_str).unwrap_or_default().to_owned();
            let (result, error) = if failed {
                (Value::Null, Value::String(output.clone()))
            } else {
                (Value::String(output.clone()), Value::Null)
            };
            let index = self.items.len();
            let id = new_id("mcp");
            let item = json!({"type": "mcp_call", "id": id, "server_label": server, "name": name,
                "arguments": arguments, "output": result, "error": error, "status": if failed { "failed" } else { "completed" }});
            let mut started = item.clone();
            if let Some(object) = started.as_object_mut() {
                object.insert("status".into(), json!("in_progress"));
                object.insert("output".into(), Value::Null);
            }
            out.push(self.event(json!({"type": "response.output_item.added", "output_index": index, "item": started})));
            out.push(
                self.event(json!({"type": "response.mcp_call.in_progress", "output_index": index, "item_id": id})),
            );
            out.push(self.event(json!({"type": "response.mcp_call_arguments.done", "output_index": index, "item_id": id, "arguments": arguments})));
            let outcome = if failed { "response.mcp_call.failed" } else { "response.mcp_call.completed" };
            out.push(self.event(json!({"type": outcome, "output_index": index, "item_id": id})));
            out.push(self.event(json!({"type": "response.output_item.done", "output_index": index, "item": item})));
            self.items.push(item);
            self.answer.runs.push(ToolRun {
                id: run.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                name: exposed,
                arguments: run.get("arguments").cloned().unwrap_or_default(),
                output,
                is_error: failed,
                ..ToolRun::default()
            });
        }
        out
    }

    /// The closing events, with `extra` items (approval requests) first; and the finished
    /// Response (its items exactly those streamed).
    pub fn finish(&mut self, error: Option<Value>, extra: Vec<Value>) -> (Vec<Value>, Value) {
        let mut out = self.close();
        for (id, name, arguments) in std::mem::take(&mut self.calls).into_iter().filter(|(_, n, _)| !n.is_empty()) {
            let call = json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}});
            self.answer.client_calls.push(call);
            let item = json!({"type": "function_call", "id": new_id("fc"), "call_id": id, "name": name,
                "arguments": arguments, "status": "completed"});
            out.extend(self.whole_item(item));
        }
        for item in extra {
            out.extend(self.whole_item(item));
        }
        self.answer.error = error;
        if let Some(reasoning) = self.answer.reasoning.clone().filter(|r| !r.is_empty()) {
            let item = json!({"type": "reasoning", "id": new_id("rs"), "summary": [{"type": "summary_text", "text": reasoning}]});
            out.extend(self.whole_item(item));
        }
        let items: Vec<Value> = self.items.iter().filter(|i| !i.is_null()).cloned().collect();
        let finished = self.envelope(&self.answer, items);
        let kind = match finished.get("status").and_then(Value::as_str) {
            Some("incomplete") => "response.incomplete",
            Some("failed") => "response.failed",
            _ => "response.completed",
        };
        out.push(self.event(json!({"type": kind, "response": finished})));
        (out, finished)
    }

    /// The answer so far (its text: every message item's).
    pub fn answer(&self) -> &Answer {
        &self.answer
    }
}
