//! One model round: stream the upstream answer, pass text to the client as it arrives, assemble
//! tool calls (arguments arrive in pieces, several calls interleaved by `index`), and forward
//! only the deltas of tools the client owns.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

/// Who executes a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Not a tool the client sent: we run it (an unknown name gets an error the model reads).
    Gateway,
    /// A tool the client sent: handed back to the client under this index.
    Client(u64),
}

/// A tool call assembled from deltas.
#[derive(Debug, Clone, Default)]
pub struct AssembledCall {
    /// Upstream index.
    pub index: u64,
    /// Call id.
    pub id: String,
    /// Function name.
    pub name: String,
    /// Arguments text (JSON, if the model behaved).
    pub arguments: String,
    /// Decided once the name is known.
    pub owner: Option<Owner>,
    /// Deltas held back until the owner is known.
    pending: Vec<Value>,
}

impl AssembledCall {
    /// The assistant-message form: `{"id","type":"function","function":{name, arguments}}`.
    pub fn to_message_json(&self) -> Value {
        json!({"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}})
    }
}

/// Everything one round produced.
#[derive(Debug, Default)]
pub struct Round {
    /// Assistant text of this round.
    pub content: String,
    /// Tool calls in upstream index order.
    pub calls: Vec<AssembledCall>,
    /// The upstream's finish reason.
    pub finish_reason: Option<String>,
    /// Usage reported in this round.
    pub usage: Option<Value>,
    next_client_index: u64,
}

/// What a chunk asks the client to see.
#[derive(Debug, Default)]
pub struct Forward {
    /// A delta to send (content, reasoning, client tool-call pieces); `None` when nothing.
    pub delta: Option<Map<String, Value>>,
}

impl Round {
    /// Folds one upstream chunk in; returns what to pass on to the client.
    pub fn push(&mut self, chunk: &Value, client_tools: &HashSet<String>) -> Forward {
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else { return Forward::default() };
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
        }
        let Some(delta) = choice.get("delta").and_then(Value::as_object) else { return Forward::default() };
        let mut out = Map::new();
        for (key, value) in delta {
            match key.as_str() {
                "role" | "tool_calls" | "function_call" => {}
                "content" => {
                    if let Some(text) = value.as_str().filter(|t| !t.is_empty()) {
                        self.content.push_str(text);
                        out.insert(key.clone(), value.clone());
                    }
                }
                // Reasoning text and provider extensions flow through unchanged.
                _ if !value.is_null() => {
                    out.insert(key.clone(), value.clone());
                }
                _ => {}
            }
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            let mut forwarded = Vec::new();
            for piece in calls {
                forwarded.extend(self.push_call_piece(piece, client_tools));
            }
            if !forwarded.is_empty() {
                out.insert("tool_calls".into(), Value::Array(forwarded));
            }
        }
        Forward { delta: (!out.is_empty()).then_some(out) }
    }

    fn push_call_piece(&mut self, piece: &Value, client_tools: &HashSet<String>) -> Vec<Value> {
        let index = piece.get("index").and_then(Value::as_u64).unwrap_or(self.calls.len() as u64);
        let pos = match self.calls.iter().position(|c| c.index == index) {
            Some(p) => p,
            None => {
                self.calls.push(AssembledCall { index, ..Default::default() });
                self.calls.len() - 1
            }
        };
        let next_client = &mut self.next_client_index;
        let call = &mut self.calls[pos];
        if let Some(id) = piece.get("id").and_then(Value::as_str) {
            call.id.push_str(id);
        }
        if let Some(f) = piece.get("function") {
            if let Some(name) = f.get("name").and_then(Value::as_str) {
                call.name.push_str(name);
            }
            if let Some(args) = f.get("arguments").and_then(Value::as_str) {
                call.arguments.push_str(args);
            }
        }
        if call.owner.is_none() && !call.name.is_empty() {
            call.owner = Some(if client_tools.contains(&call.name) {
                *next_client += 1;
                Owner::Client(*next_client - 1)
            } else {
                Owner::Gateway
            });
        }
        match call.owner {
            Some(Owner::Gateway) => {
                call.pending.clear();
                Vec::new()
            }
            Some(Owner::Client(i)) => {
                let mut out: Vec<Value> = std::mem::take(&mut call.pending);
                out.push(piece.clone());
                for p in &mut out {
                    p["index"] = json!(i);
                }
                out
            }
            None => {
                call.pending.push(piece.clone());
                Vec::new()
            }
        }
    }

    /// Calls we run.
    pub fn gateway_calls(&self) -> impl Iterator<Item = &AssembledCall> {
        self.calls.iter().filter(|c| c.owner == Some(Owner::Gateway))
    }

    /// Calls the client runs.
    pub fn client_calls(&self) -> impl Iterator<Item = &AssembledCall> {
        self.calls.iter().filter(|c| matches!(c.owner, Some(Owner::Client(_)) | None))
    }
}

/// Adds every number in `add` into `total` (recursively: nested token details too).
pub fn add_usage(total: &mut Value, add: &Value) {
    match (total, add) {
        (Value::Object(t), Value::Object(a)) => {
            for (k, v) in a {
                match t.get_mut(k) {
                    Some(slot) => add_usage(slot, v),
                    None => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t @ Value::Number(_), Value::Number(a)) => {
            let sum = t.as_u64().zip(a.as_u64()).map(|(x, y)| json!(x + y));
            if let Some(sum) = sum {
                *t = sum;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(delta: Value) -> Value {
        json!({"choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
    }

    #[test]
    fn assembles_interleaved_calls_and_forwards_only_client_ones() {
        let client: HashSet<String> = ["web_search".to_owned()].into();
        let mut r = Round::default();
        let pieces = [
            json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "ts__echo", "arguments": ""}}]}),
            json!({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "web_search", "arguments": "{\"q"}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"text\":"}}]}),
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "\":1}"}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"hi\"}"}}]}),
        ];
        let forwarded: Vec<Forward> = pieces.iter().map(|p| r.push(&chunk(p.clone()), &client)).collect();
        assert!(forwarded[0].delta.is_none() && forwarded[2].delta.is_none() && forwarded[4].delta.is_none());
        let client = forwarded[1].delta.as_ref().unwrap()["tool_calls"][0].clone();
        assert_eq!(client["index"], 0, "client calls are renumbered from 0");
        assert_eq!(r.calls[0].arguments, r#"{"text":"hi"}"#);
        assert_eq!(r.calls[1].arguments, r#"{"q":1}"#);
        assert_eq!(r.gateway_calls().count(), 1);
        assert_eq!(r.client_calls().count(), 1);
    }

    #[test]
    fn sums_usage_recursively() {
        let mut total = json!({});
        add_usage(&mut total, &json!({"prompt_tokens": 3, "details": {"cached": 1}}));
        add_usage(&mut total, &json!({"prompt_tokens": 4, "details": {"cached": 2}, "total_tokens": 9}));
        assert_eq!(total, json!({"prompt_tokens": 7, "details": {"cached": 3}, "total_tokens": 9}));
    }
}
