//! Typed OpenAI chat wire: streamed chunks and their deltas, tool calls, and the assistant
//! message the tool loop sends back on the next round. Every struct keeps the fields it does not
//! model in `rest` (`#[serde(flatten)]`), so provider extensions — `provider_specific_fields`,
//! `reasoning`, `annotations`, Azure's filter results — pass through untouched, and whatever the
//! upstream put on an assistant message or a tool call goes back to it.
//!
//! Reading is lenient: a field of an unexpected type reads as absent rather than failing the
//! chunk, because one odd field from one provider must not lose a stream. Streamed chunks are
//! read once into a JSON map and moved into these structs (`ChatChunk::from_map`), without
//! flatten's buffered copy per level; the derived readers serve the rest.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// A string field, or absent when it is anything else (`null`, a number …).
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

/// A non-negative integer field, or absent.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Value::deserialize(d)?.as_u64())
}

/// An array field, or absent.
fn lenient_array<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(d: D) -> Result<Option<Vec<T>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => Some(items.into_iter().filter_map(|v| serde_json::from_value(v).ok()).collect()),
        _ => None,
    })
}

/// One `chat.completion.chunk` (or an error event) of an upstream stream. Read in one pass
/// into a JSON map whose fields are then moved into place (see [`ChatChunk::from_map`]): no
/// buffered copy of the chunk, as `#[serde(flatten)]` would make for every level.
#[derive(Debug, Default)]
pub struct ChatChunk {
    /// Response id (empty in Azure's first, filter-only chunk).
    pub id: Option<String>,
    /// Creation time.
    pub created: Option<u64>,
    /// Model that answered.
    pub model: Option<String>,
    /// Choices of this chunk (several only with `n > 1`).
    pub choices: Option<Vec<ChunkChoice>>,
    /// Usage, in the last chunk when asked for.
    pub usage: Option<Value>,
    /// An error the upstream reports mid-stream (`null` is no error).
    pub error: Option<Value>,
    /// Everything else.
    pub rest: Map<String, Value>,
}

impl<'de> Deserialize<'de> for ChatChunk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from_map(Map::deserialize(d)?))
    }
}

/// A string, or absent when the value is anything else.
fn take_string(map: &mut Map<String, Value>, key: &str) -> Option<String> {
    match map.remove(key)? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// An array's items that read as `T` (others dropped), or absent when it is not an array.
fn take_array<T>(map: &mut Map<String, Value>, key: &str, item: impl Fn(Value) -> Option<T>) -> Option<Vec<T>> {
    match map.remove(key)? {
        Value::Array(items) => Some(items.into_iter().filter_map(item).collect()),
        _ => None,
    }
}

/// A value that is not `null`.
fn take_value(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    map.remove(key).filter(|v| !v.is_null())
}

/// An object, or absent.
fn object(value: Value) -> Option<Map<String, Value>> {
    match value {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

impl ChatChunk {
    /// The chunk from its JSON object, leniently (a field of an unexpected type is absent).
    pub fn from_map(mut map: Map<String, Value>) -> Self {
        Self {
            id: take_string(&mut map, "id"),
            created: map.remove("created").and_then(|v| v.as_u64()),
            model: take_string(&mut map, "model"),
            choices: take_array(&mut map, "choices", |v| object(v).map(ChunkChoice::from_map)),
            usage: take_value(&mut map, "usage"),
            error: take_value(&mut map, "error"),
            rest: map,
        }
    }
}

impl ChunkChoice {
    fn from_map(mut map: Map<String, Value>) -> Self {
        Self {
            index: map.remove("index").and_then(|v| v.as_u64()),
            delta: map.remove("delta").and_then(object).map(Delta::from_map),
            finish_reason: take_string(&mut map, "finish_reason"),
            logprobs: take_value(&mut map, "logprobs"),
        }
    }
}

impl Delta {
    fn from_map(mut map: Map<String, Value>) -> Self {
        Self {
            role: take_string(&mut map, "role"),
            content: take_string(&mut map, "content"),
            reasoning_content: take_string(&mut map, "reasoning_content"),
            thinking_blocks: take_array(&mut map, "thinking_blocks", Some),
            tool_calls: take_array(&mut map, "tool_calls", |v| object(v).map(ToolCallDelta::from_map)),
            function_call: map.remove("function_call").and_then(object).map(FunctionDelta::from_map),
            rest: map,
        }
    }
}

impl ToolCallDelta {
    fn from_map(mut map: Map<String, Value>) -> Self {
        Self {
            index: map.remove("index").and_then(|v| v.as_u64()),
            id: take_string(&mut map, "id"),
            kind: take_string(&mut map, "type"),
            function: map.remove("function").and_then(object).map(FunctionDelta::from_map),
            rest: map,
        }
    }
}

impl FunctionDelta {
    fn from_map(mut map: Map<String, Value>) -> Self {
        Self { name: take_string(&mut map, "name"), arguments: take_string(&mut map, "arguments"), rest: map }
    }
}

impl ChatChunk {
    /// The choice the loop follows: index 0.
    pub fn first_choice(&self) -> Option<&ChunkChoice> {
        self.choices.as_deref().unwrap_or_default().iter().find(|c| c.index.unwrap_or(0) == 0)
    }

    /// The mid-stream error, if the chunk carries one (`"error": null` is none).
    pub fn error(&self) -> Option<&Value> {
        self.error.as_ref().filter(|e| !e.is_null())
    }
}

/// One choice of a chunk.
#[derive(Debug, Default, Deserialize)]
pub struct ChunkChoice {
    /// Choice index.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub index: Option<u64>,
    /// What it adds.
    #[serde(default)]
    pub delta: Option<Delta>,
    /// Set on the choice's last chunk.
    #[serde(default, deserialize_with = "lenient_string")]
    pub finish_reason: Option<String>,
    /// Token log probabilities of this chunk (`{"content": [...]}`), when asked for.
    #[serde(default)]
    pub logprobs: Option<Value>,
}

/// What one chunk adds to the assistant message.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Delta {
    /// `assistant`, on the first delta.
    #[serde(default, deserialize_with = "lenient_string", skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A piece of the text.
    #[serde(default, deserialize_with = "lenient_string", skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A piece of the reasoning text (LiteLLM, DeepSeek, vLLM …).
    #[serde(default, deserialize_with = "lenient_string", skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Fragments of Anthropic thinking blocks, as LiteLLM streams them.
    #[serde(default, deserialize_with = "lenient_array", skip_serializing_if = "Option::is_none")]
    pub thinking_blocks: Option<Vec<Value>>,
    /// Pieces of tool calls.
    #[serde(default, deserialize_with = "lenient_array", skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// A piece of a legacy single function call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionDelta>,
    /// Everything else (provider extensions).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A piece of one tool call.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct ToolCallDelta {
    /// Which call this piece belongs to (missing or not 0-based with some providers).
    #[serde(default, deserialize_with = "lenient_u64", skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// The call id (repeated in every piece by some providers).
    #[serde(default, deserialize_with = "lenient_string", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`.
    #[serde(rename = "type", default, deserialize_with = "lenient_string", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name and a piece of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDelta>,
    /// Everything else (`provider_specific_fields` …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// Name and arguments piece of a tool call (or of a legacy `function_call`).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct FunctionDelta {
    /// The function name (whole, possibly repeated).
    #[serde(default, deserialize_with = "lenient_string", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A piece of the JSON arguments.
    #[serde(default, deserialize_with = "lenient_string", skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A complete tool call, as the assistant message of the next round carries it (read back
/// when a parked loop resumes).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolCall {
    /// The id exactly as the upstream sent it (Gemini hides its thought signature in it).
    pub id: String,
    /// `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Name and arguments.
    pub function: FunctionCall,
    /// Everything else the upstream put on the call.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// Name and complete arguments.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionCall {
    /// Function name.
    pub name: String,
    /// JSON arguments text.
    pub arguments: String,
    /// Everything else.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// The assistant message of one round, rebuilt from its deltas for the next round's history.
#[derive(Debug, Default, Clone, Serialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// The text (`null` when there was none).
    pub content: Option<String>,
    /// Reasoning text (DeepSeek and others require it back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Anthropic thinking blocks, each reassembled exactly (text and signature).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thinking_blocks: Vec<Value>,
    /// The tool calls.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Everything else the upstream put on the message.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// Fields whose text streams in pieces (everything else arrives whole, or as repeated snapshots).
const STREAMED_TEXT: &[&str] = &["reasoning", "refusal", "reasoning_content", "content", "input"];

/// Folds a streamed value into what came before. Objects merge key by key; thinking blocks merge
/// as [`merge_thinking`] does; the text of streamed fields (`reasoning`, `refusal`, a custom tool
/// call's `input` …) concatenates; anything else
/// is replaced by its latest value (LiteLLM re-sends `provider_specific_fields` entries as whole
/// snapshots, so appending would duplicate them).
pub fn merge_value(slot: &mut Value, key: &str, add: Value) {
    match (slot, add) {
        (_, Value::Null) => {}
        (Value::String(s), Value::String(a)) if STREAMED_TEXT.contains(&key) => s.push_str(&a),
        (Value::Object(s), Value::Object(a)) => {
            for (k, v) in a {
                match s.get_mut(&k) {
                    Some(existing) => merge_value(existing, &k, v),
                    None => {
                        s.insert(k, v);
                    }
                }
            }
        }
        (Value::Array(s), Value::Array(a)) if key == "thinking_blocks" => merge_thinking(s, a),
        // Citations arrive in pieces too.
        (Value::Array(s), Value::Array(a)) if key == "annotations" => s.extend(a),
        (slot, add) => *slot = add,
    }
}

/// Merges streamed thinking-block fragments: a `thinking` fragment continues the open block (one
/// without a signature yet) and its signature closes it; any other block (`redacted_thinking`)
/// arrives whole.
pub fn merge_thinking(blocks: &mut Vec<Value>, fragments: Vec<Value>) {
    for fragment in fragments {
        let Value::Object(mut fragment) = fragment else { continue };
        let is_thinking = fragment.get("type").and_then(Value::as_str) == Some("thinking");
        let signature = fragment.get("signature").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let open = blocks.last_mut().and_then(Value::as_object_mut).filter(|last| {
            is_thinking
                && last.get("type").and_then(Value::as_str) == Some("thinking")
                && last.get("signature").and_then(Value::as_str).is_none_or(str::is_empty)
        });
        match open {
            Some(last) => {
                let text = fragment.get("thinking").and_then(Value::as_str).unwrap_or_default();
                if let Some(Value::String(existing)) = last.get_mut("thinking") {
                    existing.push_str(text);
                } else {
                    last.insert("thinking".into(), Value::String(text.to_owned()));
                }
                if let Some(signature) = signature {
                    last.insert("signature".into(), Value::String(signature));
                }
            }
            None => {
                if is_thinking && signature.is_none() {
                    // An open block: drop a `signature: null` so it reads as open.
                    fragment.remove("signature");
                }
                blocks.push(Value::Object(fragment));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn thinking_fragments_reassemble_exactly() {
        let mut blocks = Vec::new();
        for fragment in [
            json!({"type": "thinking", "thinking": "Let me ", "signature": null}),
            json!({"type": "thinking", "thinking": "add."}),
            json!({"type": "thinking", "thinking": "", "signature": "sig-1"}),
            json!({"type": "redacted_thinking", "data": "opaque"}),
            json!({"type": "thinking", "thinking": "Again."}),
            json!({"type": "thinking", "thinking": "", "signature": "sig-2"}),
        ] {
            merge_thinking(&mut blocks, vec![fragment]);
        }
        assert_eq!(
            blocks,
            [
                json!({"type": "thinking", "thinking": "Let me add.", "signature": "sig-1"}),
                json!({"type": "redacted_thinking", "data": "opaque"}),
                json!({"type": "thinking", "thinking": "Again.", "signature": "sig-2"}),
            ]
        );
    }

    #[test]
    fn snapshots_replace_and_streamed_text_appends() {
        let mut slot =
            json!({"compaction_blocks": [{"a": 1}], "web_search": {"status": "in_progress"}, "reasoning": "a"});
        merge_value(
            &mut slot,
            "provider_specific_fields",
            json!({"compaction_blocks": [{"a": 1}], "web_search": {"status": "completed"}, "reasoning": "b"}),
        );
        assert_eq!(
            slot,
            json!({"compaction_blocks": [{"a": 1}], "web_search": {"status": "completed"}, "reasoning": "ab"})
        );
    }

    #[test]
    fn chunks_read_leniently_and_keep_unknown_fields() {
        let chunk: ChatChunk = serde_json::from_value(json!({
            "id": "", "choices": [{"index": 0, "delta": {"content": 5, "tool_calls": [{"index": "x", "id": "a",
            "provider_specific_fields": {"sig": "s"}}], "reasoning": "r"}}], "error": null, "prompt_filter_results": []
        }))
        .unwrap();
        assert!(chunk.error().is_none());
        assert!(chunk.rest.contains_key("prompt_filter_results"));
        let delta = chunk.first_choice().and_then(|c| c.delta.as_ref()).unwrap();
        assert_eq!(delta.content, None);
        assert_eq!(delta.rest["reasoning"], "r");
        let call = &delta.tool_calls.as_ref().unwrap()[0];
        assert_eq!((call.index, call.id.as_deref()), (None, Some("a")));
        assert_eq!(call.rest["provider_specific_fields"]["sig"], "s");
    }
}
