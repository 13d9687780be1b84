//! One model round: stream the upstream answer, pass text and reasoning to the client as they
//! arrive, assemble the assistant message exactly as the next round must send it back (text,
//! reasoning, thinking blocks with their signatures, tool calls with ids kept byte for byte and
//! every extension field), and forward only the tool-call pieces of tools the client owns.
//!
//! Stream shapes handled: `id`/`name` repeated in every piece (set, not appended; and sent to the
//! client once); pieces with no `index` (continue the last call unless they bring a new id, or a
//! name after a complete call); indexes that do not start at 0; a repeated index with a
//! different id (a new call, found again by its id) or, without ids, with another call's name and
//! arguments after a complete call (a new call); legacy `function_call` deltas (a call like any
//! other); OpenAI `custom` tool calls (GPT-5's free-form tools: always the client's, passed on as
//! they come); choices other than 0 (ignored: the loop follows choice 0).

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use crate::llm::wire::{AssistantMessage, ChatChunk, Delta, FunctionDelta, ToolCall, ToolCallDelta, merge_value};

/// Who executes a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Not a tool the client sent: we run it (an unknown or missing name gets an error the
    /// model reads).
    Gateway,
    /// A tool the client sent: handed back to the client under this index.
    Client(u64),
}

/// A tool call assembled from pieces.
#[derive(Debug, Clone, Default)]
pub struct AssembledCall {
    /// The upstream's index for it, if it sent one.
    pub upstream_index: Option<u64>,
    /// The call, as it goes back upstream.
    pub call: ToolCall,
    /// Decided once the name is known.
    pub owner: Option<Owner>,
    /// Pieces held back until the owner is known.
    pending: Vec<ToolCallDelta>,
    /// Whether the client has had this call's head (id, type, name).
    forwarded: bool,
}

/// The name of a `custom` tool call (`{"type": "custom", "custom": {"name", "input"}}`).
fn custom_name(call: &ToolCall) -> Option<&str> {
    call.rest.get("custom").and_then(|c| c.get("name")).and_then(Value::as_str).filter(|n| !n.is_empty())
}

/// A fresh call id, unique across the whole conversation (providers refuse duplicates).
fn new_call_id() -> String {
    format!("call_mcp_{}", uuid::Uuid::new_v4().simple())
}

/// Whether `text` is a complete JSON value.
fn complete(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// Whether `text` is a JSON object.
fn is_object(text: &str) -> bool {
    serde_json::from_str::<Map<String, Value>>(text).is_ok()
}

impl AssembledCall {
    /// A complete call (one a parked round kept), ours to run.
    pub fn from_call(call: ToolCall) -> Self {
        Self { call, owner: Some(Owner::Gateway), ..Self::default() }
    }

    /// Whether this is a `custom` tool call.
    pub fn is_custom(&self) -> bool {
        self.call.kind == "custom" || self.call.rest.contains_key("custom")
    }

    /// The call as the client gets it back: a `custom` call keeps its own shape.
    pub fn client_json(&self) -> Value {
        if self.is_custom() {
            let mut out = self.call.rest.clone();
            out.insert("id".into(), Value::String(self.call.id.clone()));
            out.insert("type".into(), Value::String("custom".into()));
            return Value::Object(out);
        }
        serde_json::to_value(&self.call).unwrap_or_default()
    }

    /// Call id.
    pub fn id(&self) -> &str {
        &self.call.id
    }
    /// Function name.
    pub fn name(&self) -> &str {
        &self.call.function.name
    }
    /// Arguments text (JSON, if the model behaved).
    pub fn arguments(&self) -> &str {
        &self.call.function.arguments
    }
}

/// Everything one round produced.
#[derive(Debug, Default)]
pub struct Round {
    /// The assistant message so far (its `tool_calls` are filled by [`Round::finish`]).
    pub message: AssistantMessage,
    /// Tool calls in arrival order.
    pub calls: Vec<AssembledCall>,
    /// The upstream's finish reason.
    pub finish_reason: Option<String>,
    /// Usage reported in this round.
    pub usage: Option<Value>,
    /// Token log probabilities of this round's text, in order (when the client asked).
    pub logprobs: Vec<Value>,
    /// This round's own response id and model, from its first chunk that names them (for its
    /// trace span; the client's answer keeps the first round's).
    pub answered_as: Option<(String, Option<String>)>,
    next_client_index: u64,
}

/// What a chunk asks the client to see.
#[derive(Debug, Default)]
pub struct Forward {
    /// A delta to send (content, reasoning, client tool-call pieces); `None` when nothing.
    pub delta: Option<Map<String, Value>>,
    /// The chunk's log probabilities, passed on with the delta.
    pub logprobs: Option<Value>,
}

impl Round {
    /// Folds one upstream chunk in; returns what to pass on to the client.
    pub fn push(&mut self, chunk: ChatChunk, client_tools: &HashSet<String>) -> Forward {
        if let Some(usage) = chunk.usage.filter(Value::is_object) {
            self.usage = Some(usage);
        }
        let Some(choice) = chunk.choices.into_iter().flatten().find(|c| c.index.unwrap_or(0) == 0) else {
            return Forward::default();
        };
        if let Some(reason) = choice.finish_reason {
            self.finish_reason = Some(reason);
        }
        let logprobs = choice.logprobs.filter(Value::is_object);
        if let Some(Value::Array(items)) = logprobs.as_ref().and_then(|l| l.get("content")) {
            self.logprobs.extend(items.iter().cloned());
        }
        let Some(delta) = choice.delta else { return Forward { delta: None, logprobs } };
        let mut forward = self.push_delta(delta, client_tools);
        if logprobs.is_some() {
            forward.logprobs = logprobs;
            forward.delta.get_or_insert_with(Map::new);
        }
        forward
    }

    fn push_delta(&mut self, delta: Delta, client_tools: &HashSet<String>) -> Forward {
        let Delta { role: _, content, reasoning_content, thinking_blocks, tool_calls, function_call, rest } = delta;
        let mut out = Map::new();
        if let Some(text) = content.filter(|t| !t.is_empty()) {
            self.message.content.get_or_insert_with(String::new).push_str(&text);
            out.insert("content".into(), Value::String(text));
        }
        if let Some(text) = reasoning_content.filter(|t| !t.is_empty()) {
            self.message.reasoning_content.get_or_insert_with(String::new).push_str(&text);
            out.insert("reasoning_content".into(), Value::String(text));
        }
        if let Some(blocks) = thinking_blocks.filter(|b| !b.is_empty()) {
            out.insert("thinking_blocks".into(), Value::Array(blocks.clone()));
            crate::llm::wire::merge_thinking(&mut self.message.thinking_blocks, blocks);
        }
        // Provider extensions: merged for the next round, and shown to the client as they come.
        for (key, value) in rest {
            if value.is_null() {
                continue;
            }
            out.insert(key.clone(), value.clone());
            match self.message.rest.get_mut(&key) {
                Some(slot) => merge_value(slot, &key, value),
                None => {
                    self.message.rest.insert(key, value);
                }
            }
        }
        let mut pieces = tool_calls.unwrap_or_default();
        if let Some(function) = function_call {
            // A legacy single call: the same as a tool call at index 0.
            pieces.push(ToolCallDelta { index: Some(0), function: Some(function), ..Default::default() });
        }
        let forwarded: Vec<Value> =
            pieces.into_iter().flat_map(|piece| self.push_call_piece(piece, client_tools)).collect();
        if !forwarded.is_empty() {
            out.insert("tool_calls".into(), Value::Array(forwarded));
        }
        Forward { delta: (!out.is_empty()).then_some(out), logprobs: None }
    }

    /// Where a piece goes: the call with its id; else the newest call with its upstream index
    /// (unless that call has another id); else, without an index, the last call (unless the piece
    /// names a tool and that call is already complete); else a new call.
    fn slot_for(&mut self, piece: &ToolCallDelta) -> usize {
        let id = piece.id.as_deref().filter(|id| !id.is_empty());
        let name = piece.function.as_ref().and_then(|f| f.name.as_deref()).filter(|n| !n.is_empty());
        let by_id = id.and_then(|id| self.calls.iter().rposition(|c| c.call.id == id));
        let found = by_id.or_else(|| {
            let candidate = match piece.index {
                Some(index) => self.calls.iter().rposition(|c| c.upstream_index == Some(index)).filter(|&pos| {
                    // Without ids, another call's name with arguments after a complete call is
                    // the next call (some providers number every call 0).
                    let args = piece.function.as_ref().and_then(|f| f.arguments.as_deref()).unwrap_or_default();
                    self.calls.get(pos).is_some_and(|c| {
                        let done = !c.call.function.name.is_empty() && complete(&c.call.function.arguments);
                        let another = name.is_some_and(|n| n != c.call.function.name || !args.is_empty());
                        !(done && another && id.is_none())
                    })
                }),
                None => self.calls.len().checked_sub(1).filter(|&last| {
                    self.calls.get(last).is_some_and(|c| {
                        // A new name after a complete call starts the next call.
                        name.is_none() || c.call.function.name.is_empty() || !complete(&c.call.function.arguments)
                    })
                }),
            };
            candidate.filter(|&pos| self.calls.get(pos).is_some_and(|c| id.is_none() || c.call.id.is_empty()))
        });
        match found {
            Some(pos) => pos,
            None => {
                self.calls.push(AssembledCall { upstream_index: piece.index, ..Default::default() });
                self.calls.len() - 1
            }
        }
    }

    fn push_call_piece(&mut self, piece: ToolCallDelta, client_tools: &HashSet<String>) -> Vec<Value> {
        let pos = self.slot_for(&piece);
        let next_client = &mut self.next_client_index;
        let Some(assembled) = self.calls.get_mut(pos) else { return Vec::new() };
        let call = &mut assembled.call;
        if let Some(id) = piece.id.as_deref().filter(|id| !id.is_empty()) {
            call.id = id.to_owned();
        }
        if let Some(kind) = piece.kind.as_deref().filter(|k| !k.is_empty()) {
            call.kind = kind.to_owned();
        }
        if let Some(function) = &piece.function {
            if let Some(name) = function.name.as_deref().filter(|n| !n.is_empty()) {
                call.function.name = name.to_owned();
            }
            if let Some(arguments) = &function.arguments {
                call.function.arguments.push_str(arguments);
            }
            merge_map(&mut call.function.rest, function.rest.clone());
        }
        merge_map(&mut call.rest, piece.rest.clone());
        if assembled.owner.is_none() && (call.kind == "custom" || call.rest.contains_key("custom")) {
            // We define no custom tools: every custom call is the client's, passed on as it came.
            *next_client += 1;
            if call.id.is_empty() {
                call.id = new_call_id();
            }
            assembled.owner = Some(Owner::Client(next_client.saturating_sub(1)));
            assembled.forwarded = true;
        }
        if let Some(Owner::Client(i)) = assembled.owner
            && (call.kind == "custom" || call.rest.contains_key("custom"))
        {
            let mut pieces = std::mem::take(&mut assembled.pending);
            pieces.push(piece);
            return pieces
                .into_iter()
                .map(|mut p| {
                    p.index = Some(i);
                    if p.id.is_none() {
                        p.id = Some(call.id.clone());
                    }
                    serde_json::to_value(p).unwrap_or_default()
                })
                .collect();
        }
        if assembled.owner.is_none() && !call.function.name.is_empty() {
            assembled.owner = Some(if client_tools.contains(&call.function.name) {
                *next_client += 1;
                // The client sees its call's id in the first piece it gets.
                if call.id.is_empty() {
                    call.id = new_call_id();
                }
                Owner::Client(next_client.saturating_sub(1))
            } else {
                Owner::Gateway
            });
        }
        match assembled.owner {
            Some(Owner::Gateway) => {
                assembled.pending.clear();
                Vec::new()
            }
            Some(Owner::Client(i)) => {
                let mut pieces = std::mem::take(&mut assembled.pending);
                pieces.push(piece);
                // One head (id, type, name) per call, then arguments only: clients append what
                // repeats, and some providers repeat all of it in every piece.
                let first = !assembled.forwarded;
                assembled.forwarded = true;
                let head = ToolCallDelta {
                    index: Some(i),
                    id: Some(assembled.call.id.clone()),
                    kind: Some("function".into()),
                    function: Some(FunctionDelta {
                        name: Some(assembled.call.function.name.clone()),
                        arguments: Some(String::new()),
                        rest: Map::new(),
                    }),
                    rest: Map::new(),
                };
                let rest = pieces.into_iter().filter_map(|p| {
                    let arguments = p.function.and_then(|f| f.arguments).filter(|a| !a.is_empty())?;
                    Some(ToolCallDelta {
                        index: Some(i),
                        function: Some(FunctionDelta { arguments: Some(arguments), ..Default::default() }),
                        ..Default::default()
                    })
                });
                first
                    .then_some(head)
                    .into_iter()
                    .chain(rest)
                    .map(|p| serde_json::to_value(p).unwrap_or_default())
                    .collect()
            }
            None => {
                assembled.pending.push(piece);
                Vec::new()
            }
        }
    }

    /// Completes the round: calls without an id get a fresh one, calls without a name are dropped
    /// (a provider refuses a nameless call in the history; nothing can run it), and the assistant
    /// message gets the calls the loop runs, with arguments that are a JSON object (a call refused
    /// for broken arguments goes back with `{}`: providers refuse what they cannot parse).
    pub fn finish(&mut self) {
        self.calls.retain(|c| {
            let named = !c.call.function.name.is_empty() || custom_name(&c.call).is_some();
            if !named {
                tracing::warn!(id = %c.call.id, "the model called a tool without a name; dropped");
            }
            named
        });
        for assembled in &mut self.calls {
            if assembled.call.id.is_empty() {
                assembled.call.id = new_call_id();
            }
            if assembled.call.kind.is_empty() {
                let custom = assembled.call.rest.contains_key("custom");
                assembled.call.kind = if custom { "custom" } else { "function" }.into();
            }
            if assembled.owner.is_none() {
                assembled.owner = Some(Owner::Gateway);
            }
        }
        self.message.role = "assistant";
        self.message.tool_calls = self
            .gateway_calls()
            .map(|c| {
                let mut call = c.call.clone();
                if !is_object(&call.function.arguments) {
                    call.function.arguments = "{}".into();
                }
                call
            })
            .collect();
    }

    /// Calls we run.
    pub fn gateway_calls(&self) -> impl Iterator<Item = &AssembledCall> {
        self.calls.iter().filter(|c| c.owner == Some(Owner::Gateway))
    }

    /// Calls the client runs.
    pub fn client_calls(&self) -> impl Iterator<Item = &AssembledCall> {
        self.calls.iter().filter(|c| matches!(c.owner, Some(Owner::Client(_))))
    }

    /// The text of this round.
    pub fn content(&self) -> &str {
        self.message.content.as_deref().unwrap_or_default()
    }
}

fn merge_map(target: &mut Map<String, Value>, add: Map<String, Value>) {
    for (key, value) in add {
        match target.get_mut(&key) {
            Some(slot) => merge_value(slot, &key, value),
            None if !value.is_null() => {
                target.insert(key, value);
            }
            None => {}
        }
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
            // Token counts are integers; some fields are not (LiteLLM's `cost`).
            let sum = match (t.as_u64(), a.as_u64()) {
                (Some(x), Some(y)) => json!(x.saturating_add(y)),
                _ => t.as_f64().zip(a.as_f64()).map_or(Value::Null, |(x, y)| json!(x + y)),
            };
            if !sum.is_null() {
                *t = sum;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(delta: Value) -> ChatChunk {
        serde_json::from_value(json!({"choices": [{"index": 0, "delta": delta, "finish_reason": null}]})).unwrap()
    }

    fn run(pieces: &[Value], client: &HashSet<String>) -> (Round, Vec<Forward>) {
        let mut r = Round::default();
        let forwarded = pieces.iter().map(|p| r.push(chunk(p.clone()), client)).collect();
        r.finish();
        (r, forwarded)
    }

    #[test]
    fn assembles_interleaved_calls_and_forwards_only_client_ones() {
        let client: HashSet<String> = ["web_search".to_owned()].into();
        let pieces = [
            json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "ts__echo", "arguments": ""}}]}),
            json!({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "web_search", "arguments": "{\"q"}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"text\":"}}]}),
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "\":1}"}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"hi\"}"}}]}),
        ];
        let (r, forwarded) = run(&pieces, &client);
        assert!(forwarded[0].delta.is_none() && forwarded[2].delta.is_none() && forwarded[4].delta.is_none());
        let client = forwarded[1].delta.as_ref().unwrap()["tool_calls"][0].clone();
        assert_eq!(client["index"], 0, "client calls are renumbered from 0");
        assert_eq!(r.calls[0].arguments(), r#"{"text":"hi"}"#);
        assert_eq!(r.calls[1].arguments(), r#"{"q":1}"#);
        assert_eq!(r.gateway_calls().count(), 1);
        assert_eq!(r.client_calls().count(), 1);
    }

    #[test]
    fn an_indexed_call_after_a_complete_one_is_a_new_call() {
        let none = HashSet::new();
        let (r, _) = run(
            &[
                json!({"tool_calls": [{"index": 0, "function": {"name": "a__b", "arguments": "{\"x\":1}"}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"name": "a__c", "arguments": "{}"}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"name": "a__c", "arguments": ""}}]}),
            ],
            &none,
        );
        assert_eq!(r.calls.len(), 2, "{:?}", r.calls);
        assert_eq!((r.calls[0].name(), r.calls[0].arguments()), ("a__b", "{\"x\":1}"));
        assert_eq!((r.calls[1].name(), r.calls[1].arguments()), ("a__c", "{}"));
    }

    #[test]
    fn custom_tool_calls_are_the_clients_and_pass_through() {
        let none = HashSet::new();
        let (r, forwarded) = run(
            &[
                json!({"tool_calls": [{"index": 0, "id": "call_c", "type": "custom", "custom": {"name": "run_sql", "input": "SELECT"}}]}),
                json!({"tool_calls": [{"index": 0, "custom": {"input": " 1"}}]}),
            ],
            &none,
        );
        assert_eq!(r.client_calls().count(), 1, "{:?}", r.calls);
        assert_eq!(r.gateway_calls().count(), 0);
        let back = r.calls[0].client_json();
        assert_eq!(back, json!({"id": "call_c", "type": "custom", "custom": {"name": "run_sql", "input": "SELECT 1"}}));
        let first = &forwarded[0].delta.as_ref().unwrap()["tool_calls"][0];
        assert_eq!(first["custom"]["name"], "run_sql");
        assert_eq!(forwarded[1].delta.as_ref().unwrap()["tool_calls"][0]["custom"]["input"], " 1");
    }

    #[test]
    fn usage_sums_integers_and_costs() {
        let mut total = json!({});
        add_usage(&mut total, &json!({"prompt_tokens": 10, "cost": 0.25}));
        add_usage(&mut total, &json!({"prompt_tokens": 5, "cost": 0.5}));
        assert_eq!(total, json!({"prompt_tokens": 15, "cost": 0.75}));
    }

    #[test]
    fn every_providers_piece_shapes() {
        let none = HashSet::new();
        // Fireworks: id and name repeated in every piece.
        let (r, _) = run(
            &[
                json!({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "a__b", "arguments": "{\"x\""}}]}),
                json!({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "a__b", "arguments": ":1}"}}]}),
            ],
            &none,
        );
        assert_eq!((r.calls.len(), r.calls[0].id(), r.calls[0].name()), (1, "c1", "a__b"));
        assert_eq!(r.calls[0].arguments(), "{\"x\":1}");
        // Index-less pieces continue the last call; a new id starts another.
        let (r, _) = run(
            &[
                json!({"tool_calls": [{"id": "c1", "function": {"name": "a__b", "arguments": "{"}}]}),
                json!({"tool_calls": [{"function": {"arguments": "}"}}]}),
                json!({"tool_calls": [{"id": "c2", "function": {"name": "a__c", "arguments": "{}"}}]}),
            ],
            &none,
        );
        assert_eq!(r.calls.iter().map(|c| (c.id(), c.arguments())).collect::<Vec<_>>(), [("c1", "{}"), ("c2", "{}")]);
        // Indexes from 2; a repeated index with another id is another call.
        let (r, _) = run(
            &[
                json!({"tool_calls": [{"index": 2, "id": "x", "function": {"name": "a__b", "arguments": "{}"}}]}),
                json!({"tool_calls": [{"index": 2, "id": "y", "function": {"name": "a__b", "arguments": "{}"}}]}),
            ],
            &none,
        );
        assert_eq!(r.calls.iter().map(AssembledCall::id).collect::<Vec<_>>(), ["x", "y"]);
        // Legacy function_call; a nameless call is ours (and will be refused), never the client's.
        let (r, _) = run(
            &[
                json!({"function_call": {"name": "a__b", "arguments": "{\"k\":"}}),
                json!({"function_call": {"arguments": "2}"}}),
                json!({"tool_calls": [{"index": 5, "function": {"arguments": "{}"}}]}),
            ],
            &none,
        );
        assert_eq!((r.calls[0].name(), r.calls[0].arguments()), ("a__b", "{\"k\":2}"));
        assert!(!r.calls[0].id().is_empty(), "a call without id gets one");
        assert_eq!(r.gateway_calls().count(), 1, "the nameless call is dropped");
        assert_eq!(r.client_calls().count(), 0);
    }

    #[test]
    fn ids_find_their_calls_and_names_start_new_ones() {
        let none = HashSet::new();
        let (r, _) = run(
            &[
                json!({"tool_calls": [{"index": 2, "id": "x", "function": {"name": "a__b", "arguments": "{\"k\":"}}]}),
                json!({"tool_calls": [{"index": 2, "id": "y", "function": {"name": "a__c", "arguments": ""}}]}),
                json!({"tool_calls": [{"index": 2, "function": {"arguments": "{}"}}]}),
                json!({"tool_calls": [{"index": 2, "id": "x", "function": {"arguments": "1}"}}]}),
            ],
            &none,
        );
        let got: Vec<_> = r.calls.iter().map(|c| (c.id(), c.name(), c.arguments())).collect();
        assert_eq!(got, [("x", "a__b", "{\"k\":1}"), ("y", "a__c", "{}")]);
        // Index-less, id-less pieces: a name after a complete call is the next call.
        let (r, _) = run(
            &[
                json!({"tool_calls": [{"function": {"name": "a__b", "arguments": "{}"}}]}),
                json!({"tool_calls": [{"function": {"name": "a__c", "arguments": "{"}}]}),
                json!({"tool_calls": [{"function": {"arguments": "}"}}]}),
                json!({"tool_calls": [{"index": u64::MAX, "function": {"name": "a__d", "arguments": "{}"}}]}),
            ],
            &none,
        );
        let got: Vec<_> = r.calls.iter().map(|c| (c.name(), c.arguments())).collect();
        assert_eq!(got, [("a__b", "{}"), ("a__c", "{}"), ("a__d", "{}")]);
        assert!(r.calls.iter().all(|c| c.id().starts_with("call_mcp_")), "missing ids are made up");
        let ids: HashSet<&str> = r.calls.iter().map(AssembledCall::id).collect();
        assert_eq!(ids.len(), 3, "and unique");
    }

    #[test]
    fn client_pieces_carry_their_head_once() {
        let client: HashSet<String> = ["web_search".to_owned()].into();
        let piece = |args: &str| {
            json!({"tool_calls": [{"index": 0, "id": "w1", "type": "function",
                "function": {"name": "web_search", "arguments": args}}]})
        };
        let (_, forwarded) = run(&[piece("{\"q\""), piece(":1}")], &client);
        let sent: Vec<Value> = forwarded
            .iter()
            .flat_map(|f| f.delta.as_ref().unwrap()["tool_calls"].as_array().unwrap().clone())
            .collect();
        let names: Vec<&Value> = sent.iter().filter_map(|p| p["function"].get("name")).collect();
        assert_eq!(names, [&json!("web_search")], "the name is sent once: {sent:?}");
        let args: String = sent.iter().filter_map(|p| p["function"]["arguments"].as_str()).collect();
        assert_eq!(args, "{\"q\":1}");
        assert_eq!(sent[0]["id"], "w1");
    }

    #[test]
    fn nameless_calls_are_dropped_and_broken_arguments_go_back_as_an_object() {
        let (r, _) = run(
            &[
                json!({"tool_calls": [{"index": 0, "id": "n", "function": {"arguments": "{}"}}]}),
                json!({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "a__b", "arguments": "{broken"}}]}),
            ],
            &HashSet::new(),
        );
        assert_eq!(r.calls.len(), 1);
        assert_eq!(r.calls[0].arguments(), "{broken", "the loop still sees what the model sent");
        assert_eq!(r.message.tool_calls[0].function.arguments, "{}");
    }

    #[test]
    fn the_assistant_message_keeps_everything_for_the_next_round() {
        let none = HashSet::new();
        let gemini_id = "call_3f2a__thought__CpcBAdHtim+/=Zx9";
        let (r, _) = run(
            &[
                json!({"reasoning_content": "Thinking ", "thinking_blocks": [{"type": "thinking", "thinking": "Thinking "}]}),
                json!({"reasoning_content": "hard.", "thinking_blocks": [{"type": "thinking", "thinking": "hard."}]}),
                json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "SIG"}], "provider_specific_fields": {"a": 1}}),
                json!({"content": "Let me look.", "provider_specific_fields": {"b": 2}}),
                json!({"tool_calls": [{"index": 0, "id": gemini_id, "function": {"name": "a__b", "arguments": "{}"},
                    "provider_specific_fields": {"thought_signature": "T"}}]}),
            ],
            &none,
        );
        let message = serde_json::to_value(&r.message).unwrap();
        assert_eq!(message["content"], "Let me look.");
        assert_eq!(message["reasoning_content"], "Thinking hard.");
        assert_eq!(
            message["thinking_blocks"],
            json!([{"type": "thinking", "thinking": "Thinking hard.", "signature": "SIG"}])
        );
        assert_eq!(message["provider_specific_fields"], json!({"a": 1, "b": 2}));
        assert_eq!(message["tool_calls"][0]["id"], gemini_id, "ids are kept byte for byte");
        assert_eq!(message["tool_calls"][0]["provider_specific_fields"]["thought_signature"], "T");
    }

    #[test]
    fn only_choice_zero_and_no_error_from_null() {
        let mut r = Round::default();
        let two: ChatChunk = serde_json::from_value(json!({"error": null, "choices": [
            {"index": 1, "delta": {"content": "other"}}, {"index": 0, "delta": {"content": "mine"}}]}))
        .unwrap();
        assert!(two.error().is_none());
        r.push(two, &HashSet::new());
        assert_eq!(r.content(), "mine");
    }

    #[test]
    fn sums_usage_recursively() {
        let mut total = json!({});
        add_usage(&mut total, &json!({"prompt_tokens": 3, "details": {"cached": 1}}));
        add_usage(&mut total, &json!({"prompt_tokens": 4, "details": {"cached": 2}, "total_tokens": 9}));
        assert_eq!(total, json!({"prompt_tokens": 7, "details": {"cached": 3}, "total_tokens": 9}));
    }
}
