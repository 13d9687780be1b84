//! Personas of the scripted model: real providers' stream shapes, and their rules enforced with
//! their real error bodies, so a gateway that sends back the wrong history is told no.
//!
//! | persona | stream shape | rule (error) |
//! |---|---|---|
//! | `OpenAi` | plain OpenAI chunks | every `tool_calls` answered by tool messages, and no tool message without one (400) |
//! | `AnthropicThinking` | LiteLLM's Claude stream: `thinking_blocks` fragments, signature in its own delta, tool indexes from 2 | each assistant `tool_calls` message carries its thinking blocks exactly (400) |
//! | `Gemini` | LiteLLM's Gemini 3 stream: the first call's id carries the thought signature | ids kept byte for byte; tool messages match a call (500) and signatures are present (400) |
//! | `DeepSeek` | `reasoning_content` before the calls | `reasoning_content` back on each assistant `tool_calls` message (400) |
//! | `Fireworks` | `id`, `type` and `name` repeated in every tool-call piece | OpenAI's |
//! | `IgnoresToolChoice` | calls tools even with `tool_choice: "none"` | OpenAI's |
//! | `Indexless` | tool-call pieces without `index` | OpenAI's |
//! | `AzureFirstChunk` | a first chunk with no choices and an empty id (`prompt_filter_results`) | OpenAI's |
//!
//! Every persona applies OpenAI's rules too.

use std::collections::HashSet;

use serde_json::{Value, json};

/// How the scripted model behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Persona {
    #[default]
    OpenAi,
    AnthropicThinking,
    Gemini,
    DeepSeek,
    Fireworks,
    IgnoresToolChoice,
    Indexless,
    AzureFirstChunk,
}

/// What the model handed out, so it can recognise it coming back.
#[derive(Default, Debug)]
pub struct Issued {
    thinking: HashSet<(String, String)>,
    reasoning: HashSet<String>,
    gemini_ids: HashSet<String>,
    counter: usize,
}

/// A stand-in for a provider's signature over a thinking text.
fn sign(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    format!("EqQBCkgIARABGAIiQ{h:016x}+/sig==")
}

fn openai_error(message: &str, param: Option<&str>) -> (u16, Value) {
    (400, json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}}))
}

fn litellm_error(status: u16, message: String) -> (u16, Value) {
    (status, json!({"error": {"message": message, "type": null, "param": null, "code": status.to_string()}}))
}

fn assistant_calls(message: &Value) -> Option<&Vec<Value>> {
    (message["role"] == "assistant").then(|| message["tool_calls"].as_array()).flatten().filter(|c| !c.is_empty())
}

impl Persona {
    /// Whether `tool_choice: "none"` is obeyed.
    pub fn obeys_tool_choice_none(self) -> bool {
        self != Persona::IgnoresToolChoice
    }

    /// Checks a chat request against the provider's rules: `Err((status, body))` to refuse it.
    pub fn check(self, body: &Value, issued: &Issued) -> Result<(), (u16, Value)> {
        if body["tools"].as_array().is_some_and(|t| t.len() > 128) {
            let n = body["tools"].as_array().map_or(0, Vec::len);
            return Err(openai_error(
                &format!(
                    "Invalid 'tools': array too long. Expected an array with maximum length 128, but got an array with length {n} instead."
                ),
                Some("tools"),
            ));
        }
        // A forced function must be one of the tools sent.
        if let Some(forced) = body["tool_choice"]["function"]["name"].as_str() {
            let given = body["tools"].as_array().into_iter().flatten().any(|t| t["function"]["name"] == forced);
            if !given {
                return Err(openai_error(
                    &format!("Invalid value for 'tool_choice': function '{forced}' was not found in 'tools'."),
                    Some("tool_choice"),
                ));
            }
        }
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let mut pending: Vec<String> = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if m["role"] == "tool" {
                let id = m["tool_call_id"].as_str().unwrap_or_default();
                match pending.iter().position(|p| p == id) {
                    Some(pos) => {
                        pending.remove(pos);
                    }
                    None if self == Persona::Gemini => {
                        return Err(litellm_error(
                            500,
                            format!(
                                "litellm.APIConnectionError: GeminiException - Missing corresponding tool call for tool response message. Received - message={m}"
                            ),
                        ));
                    }
                    None => {
                        return Err(openai_error(
                            "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                            Some(&format!("messages.[{i}].role")),
                        ));
                    }
                }
                continue;
            }
            if !pending.is_empty() {
                return Err(openai_error(
                    &format!(
                        "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                        pending.join(", ")
                    ),
                    Some(&format!("messages.[{i}].role")),
                ));
            }
            if let Some(calls) = assistant_calls(m) {
                pending = calls.iter().filter_map(|c| c["id"].as_str().map(str::to_owned)).collect();
                self.check_assistant(i, m, calls, issued)?;
            }
        }
        if !pending.is_empty() {
            return Err(openai_error(
                &format!(
                    "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                    pending.join(", ")
                ),
                Some("messages"),
            ));
        }
        Ok(())
    }

    fn check_assistant(self, i: usize, m: &Value, calls: &[Value], issued: &Issued) -> Result<(), (u16, Value)> {
        match self {
            Persona::AnthropicThinking => {
                let blocks = m["thinking_blocks"].as_array().cloned().unwrap_or_default();
                let Some(first) = blocks.first() else {
                    return Err(litellm_error(
                        400,
                        format!(
                            "litellm.BadRequestError: AnthropicException - {{\"type\":\"error\",\"error\":{{\"type\":\"invalid_request_error\",\"message\":\"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `text`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns.\"}}}}"
                        ),
                    ));
                };
                let _ = first;
                for (b, block) in blocks.iter().enumerate() {
                    let text = block["thinking"].as_str().unwrap_or_default().to_owned();
                    let signature = block["signature"].as_str().unwrap_or_default().to_owned();
                    if block["type"] != "thinking" || !issued.thinking.contains(&(text, signature)) {
                        return Err(litellm_error(
                            400,
                            format!(
                                "litellm.BadRequestError: AnthropicException - {{\"type\":\"error\",\"error\":{{\"type\":\"invalid_request_error\",\"message\":\"messages.{i}.content.{b}: Invalid `signature` in `thinking` block\"}}}}"
                            ),
                        ));
                    }
                }
            }
            Persona::Gemini => {
                let first = calls.first().and_then(|c| c["id"].as_str()).unwrap_or_default();
                if !issued.gemini_ids.contains(first) {
                    return Err(litellm_error(
                        400,
                        format!(
                            "litellm.BadRequestError: VertexAIException BadRequestError - {{\"error\": {{\"code\": 400, \"message\": \"Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{}` , position {}.\", \"status\": \"INVALID_ARGUMENT\"}}}}",
                            calls.first().and_then(|c| c["function"]["name"].as_str()).unwrap_or_default(),
                            i + 1
                        ),
                    ));
                }
            }
            Persona::DeepSeek => {
                let reasoning = m["reasoning_content"].as_str().unwrap_or_default();
                if !issued.reasoning.contains(reasoning) {
                    return Err((
                        400,
                        json!({"error": {"message": format!("Missing `reasoning_content` field in the assistant message at message index {i}. For more information, please refer to https://api-docs.deepseek.com/guides/thinking_mode#tool-calls"), "type": "invalid_request_error", "param": null, "code": "invalid_request_error"}}),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The deltas of a turn calling `calls` in parallel.
    pub fn tool_call_deltas(self, calls: &[(String, Value)], issued: &mut Issued) -> Vec<Value> {
        issued.counter += 1;
        let turn = issued.counter;
        let mut out = self.reasoning_deltas(turn, issued);
        let base = if self == Persona::AnthropicThinking { 2 } else { 0 };
        for (i, (name, args)) in calls.iter().enumerate() {
            let args = match args {
                Value::String(raw) => raw.clone(),
                other => other.to_string(),
            };
            let mut id = format!("call_{turn}_{i}_{name}");
            let mut head = json!({"index": base + i, "type": "function", "function": {"name": name, "arguments": ""}});
            match self {
                Persona::Gemini if i == 0 => {
                    // LiteLLM's Gemini 3 form: the thought signature travels inside the id.
                    id = format!("call_{turn:x}a1b2c3__thought__CpcBAdHtim9+/sig{turn}x=");
                    issued.gemini_ids.insert(id.clone());
                    head["provider_specific_fields"] =
                        json!({"thought_signature": format!("CpcBAdHtim9+/sig{turn}x=")});
                }
                Persona::AnthropicThinking => id = format!("toolu_01{turn}{i}{}", "A".repeat(20)),
                _ => {}
            }
            head["id"] = json!(id);
            if self == Persona::Indexless {
                head.as_object_mut().map(|h| h.remove("index"));
            }
            out.push(json!({"tool_calls": [head]}));
            let chars: Vec<char> = args.chars().collect();
            for piece in chars.chunks(5).map(|c| c.iter().collect::<String>()) {
                let mut p = json!({"index": base + i, "function": {"arguments": piece}});
                match self {
                    Persona::Fireworks => {
                        p["id"] = json!(id);
                        p["type"] = json!("function");
                        p["function"]["name"] = json!(name);
                    }
                    Persona::Indexless => {
                        p.as_object_mut().map(|p| p.remove("index"));
                    }
                    _ => {}
                }
                out.push(json!({"tool_calls": [p]}));
            }
        }
        out
    }

    /// The deltas before a text answer.
    pub fn text_prefix(self, issued: &mut Issued) -> Vec<Value> {
        issued.counter += 1;
        let turn = issued.counter;
        self.reasoning_deltas(turn, issued)
    }

    fn reasoning_deltas(self, turn: usize, issued: &mut Issued) -> Vec<Value> {
        match self {
            Persona::AnthropicThinking => {
                let text = format!("The user wants tools (turn {turn}). I will call them.");
                issued.thinking.insert((text.clone(), sign(&text)));
                let chars: Vec<char> = text.chars().collect();
                let mut out: Vec<Value> = chars
                    .chunks(9)
                    .map(|c| {
                        let piece: String = c.iter().collect();
                        json!({"reasoning_content": piece, "thinking_blocks": [{"type": "thinking", "thinking": piece, "signature": null}]})
                    })
                    .collect();
                out.push(json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": sign(&text)}]}));
                out
            }
            Persona::DeepSeek => {
                let text = format!("Reasoning for turn {turn}: tools first.");
                issued.reasoning.insert(text.clone());
                let chars: Vec<char> = text.chars().collect();
                chars.chunks(7).map(|c| json!({"reasoning_content": c.iter().collect::<String>()})).collect()
            }
            _ => Vec::new(),
        }
    }

    /// A chunk sent before everything else, if the provider sends one.
    pub fn first_chunk(self) -> Option<Value> {
        (self == Persona::AzureFirstChunk).then(|| {
            json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {"hate": {"filtered": false, "severity": "safe"}}}]})
        })
    }
}
