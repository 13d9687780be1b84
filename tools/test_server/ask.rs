//! `ask`: a tool that needs input before it can finish, the 2026-07-28 way (an
//! `input_required` result, SEP-2322), written to the specification: a form question, a URL
//! question, two questions at once, two rounds, and `roots/list`. The `requestState` it hands
//! out is checked when it comes back (altered: the call fails), and the final answer lists every
//! answer received, so a test sees what the client sent.

use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock, InputRequest, InputRequests, InputRequiredResult};
use serde_json::{Value, json};
use sha2::Digest;

/// The request state for `kind` at `round`: readable, with a check the tool verifies.
fn state(kind: &str, round: u32) -> String {
    let body = format!("{kind}:{round}");
    let check: String =
        sha2::Sha256::digest(format!("ask-state {body}")).iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{body}:{check}")
}

/// The round a state names, when it is one this tool made for `kind`.
fn round_of(kind: &str, state_text: &str) -> Option<u32> {
    let round: u32 = state_text.strip_prefix(&format!("{kind}:"))?.split(':').next()?.parse().ok()?;
    (state(kind, round) == state_text).then_some(round)
}

fn form(message: &str, properties: Value, required: &[&str]) -> Value {
    json!({"method": "elicitation/create", "params": {"mode": "form", "message": message,
        "requestedSchema": {"type": "object", "properties": properties, "required": required}}})
}

fn requests(kind: &str, round: u32) -> Value {
    let name = || {
        form(
            "Who is asking?",
            json!({"name": {"type": "string", "title": "Name"}, "age": {"type": "integer", "minimum": 0, "title": "Age"}}),
            &["name"],
        )
    };
    match (kind, round) {
        ("url", _) => json!({"login": {"method": "elicitation/create", "params": {"mode": "url",
            "message": "Authorise the test service.", "url": "https://example.com/authorise", "elicitationId": "e-1"}}}),
        ("two", _) => json!({"who": name(), "colour": form("Pick a colour.",
            json!({"colour": {"type": "string", "enum": ["red", "green", "blue"]}}), &["colour"])}),
        ("rounds", 2) => json!({"colour": form("And your favourite colour?",
            json!({"colour": {"type": "string", "enum": ["red", "green", "blue"]}}), &["colour"])}),
        ("roots", _) => json!({"roots": {"method": "roots/list"}}),
        ("sampling", _) => json!({"draft": {"method": "sampling/createMessage", "params": {
            "messages": [{"role": "user", "content": {"type": "text", "text": "Say hi."}}], "maxTokens": 50}}}),
        _ => json!({"who": name()}),
    }
}

/// The `ask` tool: `{"kind": "form" | "url" | "two" | "rounds" | "roots" | "sampling"}`.
pub fn ask(
    arguments: &Option<rmcp::model::JsonObject>,
    responses: Option<&rmcp::model::InputResponses>,
    request_state: Option<&str>,
) -> Result<CallToolResponse, McpError> {
    let kind = arguments.as_ref().and_then(|a| a.get("kind")).and_then(Value::as_str).unwrap_or("form").to_owned();
    let round = match (responses, request_state) {
        (None, _) => 0,
        (Some(_), Some(text)) => round_of(&kind, text)
            .ok_or_else(|| McpError::invalid_params("requestState was altered or is not this tool's", None))?,
        (Some(_), None) => return Err(McpError::invalid_params("inputResponses without requestState", None)),
    };
    let last = if kind == "rounds" { 2 } else { 1 };
    if round < last {
        let asked: InputRequests =
            serde_json::from_value::<std::collections::BTreeMap<String, Value>>(requests(&kind, round + 1))
                .map_err(|e| McpError::internal_error(e.to_string(), None))?
                .into_iter()
                .map(|(k, v)| serde_json::from_value::<InputRequest>(v).map(|r| (k, r)))
                .collect::<Result<_, _>>()
                .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        return Ok(InputRequiredResult::new(Some(asked), Some(state(&kind, round + 1))).into());
    }
    let received = serde_json::to_value(responses).unwrap_or_default();
    let mut result = CallToolResult::success(vec![ContentBlock::text(format!("answers: {received}"))]);
    result.structured_content = Some(json!({"answers": received, "rounds": round}));
    Ok(result.into())
}
