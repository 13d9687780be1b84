//! Questions a tool asks with an `input_required` result (MCP 2026-07-28). When the chat
//! parks, they are shown to the user. The user's reply is then turned into the answers that
//! the retried call carries. Form questions show their message and fields. A reply that is a
//! JSON object is taken as the content. Any other reply goes through one structured call to
//! the chat's model, which turns it into the schema's object. The object is validated against
//! the schema, and an answer that does not fit is asked again once. "decline" and "cancel" are
//! those actions. URL questions show the link, and anything but decline/cancel accepts.
//! `roots/list` is answered with no roots. Sampling requests are not the user's to answer: the
//! loop answers them with the chat's model when the server may ask (`sampling.rs`).

use std::fmt::Write;

use serde_json::{Map, Value, json};

use super::run::Agent;
use crate::mcp::{InputRequired, InputRetry};

/// What the user's reply became.
pub enum Reply {
    /// The answers, for the retry.
    Answers(InputRetry),
    /// The reply did not fit the questions; ask again, saying why.
    AskAgain(String),
}

fn method(request: &Value) -> &str {
    request.get("method").and_then(Value::as_str).unwrap_or_default()
}

fn params(request: &Value) -> &Value {
    request.get("params").unwrap_or(&Value::Null)
}

fn is_url(request: &Value) -> bool {
    params(request).get("mode").and_then(Value::as_str) == Some("url")
}

/// The form questions of `asked`, by key.
fn forms(asked: &InputRequired) -> Vec<(&String, &Value)> {
    asked.requests.iter().filter(|(_, r)| method(r) == "elicitation/create" && !is_url(r)).collect()
}

/// Whether the gateway answers everything asked itself (`roots/list`, sampling).
pub fn answers_alone(asked: &InputRequired) -> bool {
    asked.requests.values().all(|r| matches!(method(r), "roots/list" | "sampling/createMessage"))
}

/// The answers the gateway gives alone to what is not a question (no roots); sampling is
/// answered by the caller ([`sampling_requests`]).
pub fn alone(asked: &InputRequired) -> InputRetry {
    all(asked, "cancel", None)
}

/// The sampling requests asked: their keys and params.
pub fn sampling_requests(asked: &InputRequired) -> Vec<(String, Value)> {
    asked
        .requests
        .iter()
        .filter(|(_, r)| method(r) == "sampling/createMessage")
        .map(|(k, r)| (k.clone(), params(r).clone()))
        .collect()
}

/// The questions as the user reads them.
pub fn question_text(asked: &InputRequired) -> String {
    let mut text = format!("**`{}` asks:**\n\n", asked.server);
    for request in asked.requests.values().filter(|r| method(r) == "elicitation/create") {
        let p = params(request);
        let message = p.get("message").and_then(Value::as_str).unwrap_or_default();
        let _ = writeln!(text, "> {}\n", message.replace('\n', "\n> "));
        if is_url(request) {
            let url = p.get("url").and_then(Value::as_str).unwrap_or_default();
            let _ = writeln!(text, "Open [this page]({url}), then reply **done** (or **decline**).\n");
            continue;
        }
        let schema = p.get("requestedSchema").unwrap_or(&Value::Null);
        let required: Vec<&str> =
            schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        for (name, field) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
            let title = field.get("title").and_then(Value::as_str).unwrap_or(name);
            let kind = field.get("type").and_then(Value::as_str).unwrap_or("text");
            let choices = field
                .get("enum")
                .and_then(Value::as_array)
                .map(|e| format!(", one of {}", e.iter().map(Value::to_string).collect::<Vec<_>>().join(" / ")))
                .unwrap_or_default();
            let needed = if required.contains(&name.as_str()) { "" } else { ", optional" };
            let about = field.get("description").and_then(Value::as_str).map(|d| format!(": {d}")).unwrap_or_default();
            let _ = writeln!(text, "- **{title}** (`{name}`, {kind}{choices}{needed}){about}");
        }
        text.push('\n');
    }
    text.push_str("Reply with your answer (in your own words, or as a JSON object), or **decline** / **cancel**.\n\n");
    text
}

/// The schema one reply must fill: a single form's own, or each form's under its key.
fn reply_schema(asked: &InputRequired) -> Value {
    let forms = forms(asked);
    match forms.as_slice() {
        [(_, request)] => params(request).get("requestedSchema").cloned().unwrap_or(json!({"type": "object"})),
        _ => {
            let properties: Map<String, Value> = forms
                .iter()
                .map(|(k, r)| ((*k).clone(), params(r).get("requestedSchema").cloned().unwrap_or(json!({}))))
                .collect();
            let required: Vec<&String> = forms.iter().map(|(k, _)| *k).collect();
            json!({"type": "object", "properties": properties, "required": required})
        }
    }
}

/// Turns the user's `reply` into the answers to `asked`. `model` is the chat's model (for the
/// structured call); `again` says the questions were already asked twice (a reply that still
/// does not fit cancels).
pub async fn answers(
    agent: &Agent,
    asked: &InputRequired,
    reply: &str,
    (model, auth): (&str, Option<crate::llm::CallerAuth>),
    again: bool,
) -> Reply {
    let word = reply.trim().trim_end_matches(['.', '!']).to_lowercase();
    let action = match word.as_str() {
        "decline" | "no" | "deny" => Some("decline"),
        "cancel" | "stop" => Some("cancel"),
        _ => None,
    };
    let mut content = None;
    if action.is_none() && !forms(asked).is_empty() {
        let schema = reply_schema(asked);
        let object = match serde_json::from_str::<Value>(reply.trim()) {
            Ok(value @ Value::Object(_)) => Ok(value),
            _ => structured(agent, reply, &schema, model, auth).await,
        };
        let checked = object.and_then(|object| {
            // A schema we cannot compile is the server's to enforce.
            let Ok(validator) = jsonschema::validator_for(&schema) else { return Ok(object) };
            let problem = validator.iter_errors(&object).next().map(|e| format!("{e} (at {})", e.instance_path()));
            match problem {
                None => Ok(object),
                Some(problem) => Err(problem),
            }
        });
        match checked {
            Ok(object) => content = Some(object),
            Err(why) if !again => return Reply::AskAgain(why),
            Err(_) => return Reply::Answers(all(asked, "cancel", None)),
        }
    }
    Reply::Answers(all(asked, action.unwrap_or("accept"), content))
}

/// The answer to every request: the `action` for questions (with each form's `content`),
/// no roots for `roots/list`.
fn all(asked: &InputRequired, action: &str, content: Option<Value>) -> InputRetry {
    let single = forms(asked).len() == 1;
    let responses = asked
        .requests
        .iter()
        .filter(|(_, request)| method(request) != "sampling/createMessage")
        .map(|(key, request)| {
            let answer = match method(request) {
                "roots/list" => json!({"roots": []}),
                "elicitation/create" if action == "accept" && !is_url(request) => {
                    let own = if single { content.clone() } else { content.as_ref().and_then(|c| c.get(key)).cloned() };
                    json!({"action": "accept", "content": own.unwrap_or(json!({}))})
                }
                _ => json!({"action": action}),
            };
            (key.clone(), answer)
        })
        .collect();
    InputRetry { responses, request_state: asked.request_state.clone() }
}

/// One structured call to the chat's model: the reply turned into an object of `schema`.
async fn structured(
    agent: &Agent,
    reply: &str,
    schema: &Value,
    model: &str,
    auth: Option<crate::llm::CallerAuth>,
) -> Result<Value, String> {
    let instruction = "Turn the user's reply into a JSON object that matches the given JSON Schema. Answer with \
                       the JSON object only. Leave out what the reply does not say.";
    let body = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": instruction},
            {"role": "user", "content": format!("JSON Schema:\n{schema}\n\nThe user's reply:\n{reply}")},
        ],
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    });
    let text = super::sampling::complete_text(&agent.upstream, body, auth).await?;
    let text = text.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```").trim();
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err("the answer could not be read as the fields asked for".to_owned()),
    }
}
