//! A Responses API request as a chat-completions body: `instructions` and `input` items
//! become messages (after the stored conversation a `previous_response_id` names), function
//! tools become chat tools, hosted `mcp` tools narrow our catalog (by `server_label` and
//! `allowed_tools`) and add to what waits for approval (`require_approval`), and the sampling
//! fields are renamed. Hosted tools we do not run (`web_search`, `file_search`, …) are named
//! back so the caller can refuse or pass the request on.

use serde_json::{Map, Value, json};

use crate::config::ApprovalRule;
use crate::mcp::Catalog;

/// Hosted tool types the gateway runs itself (functions go to the client, `mcp` to our servers).
const OURS: &[&str] = &["function", "mcp"];
/// Most input items taken from one request.
const MAX_ITEMS: usize = 10_000;

/// What a request becomes.
#[derive(Debug, Default)]
pub struct Converted {
    /// The chat-completions body (always non-streaming: the loop's answer is converted).
    pub chat: Map<String, Value>,
    /// The conversation it continues (stored messages of `previous_response_id`).
    pub history: Vec<Value>,
    /// The messages the request adds to the conversation (stored for `previous_response_id`).
    pub added: Vec<Value>,
    /// The configured servers its hosted `mcp` tools name.
    pub labels: Vec<String>,
    /// What its `require_approval` asks for (added to the operator's rule).
    pub approval: Option<ApprovalRule>,
    /// Hosted tool types it carries that we do not run.
    pub foreign: Vec<String>,
    /// A hosted `mcp` tool names a `server_url` or a label we do not have (or the caller may
    /// not use).
    pub unknown_server: Option<String>,
    /// The tools its hosted `mcp` tools allow (exposed names).
    pub allowed: Vec<String>,
    /// Its `mcp_approval_response` items: `(approval_request_id, approve)`.
    pub approvals: Vec<(String, bool)>,
}

/// Converts `body` (a Responses request), continuing `history` (the stored conversation's
/// messages, without instructions), against `catalog` (hosted `mcp` tools' labels and tool
/// names), where the caller `may_use` only some servers (the others are as unknown as absent
/// ones) and the servers named by URL that were connected for it are `attached` (labels).
pub fn to_chat(
    body: &Map<String, Value>,
    history: Vec<Value>,
    catalog: &Catalog,
    may_use: impl Fn(&str) -> bool,
    attached: &[String],
) -> Result<Converted, String> {
    let mut out = Converted::default();
    let mut added = Vec::new();
    match body.get("input") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => added.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) if items.len() <= MAX_ITEMS => {
            for item in items {
                input_item(item, &mut added, catalog, &mut out.approvals)?;
            }
        }
        Some(Value::Array(_)) => return Err(format!("`input` has more than {MAX_ITEMS} items")),
        Some(_) => return Err("`input` must be a string or a list of items".into()),
    }
    // This request's instructions first (none are carried over from earlier responses).
    let mut messages = Vec::with_capacity(history.len() + added.len() + 1);
    if let Some(instructions) = body.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    messages.extend(history.iter().cloned());
    messages.extend(added.iter().cloned());
    out.history = history;
    out.added = added;

    let mut chat = Map::new();
    if let Some(model) = body.get("model") {
        chat.insert("model".into(), model.clone());
    }
    chat.insert("messages".into(), Value::Array(messages));
    chat.insert("stream".into(), Value::Bool(false));
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("user", "user"),
        ("parallel_tool_calls", "parallel_tool_calls"),
        ("max_output_tokens", "max_tokens"),
        ("metadata", "metadata"),
    ] {
        if let Some(value) = body.get(from).filter(|v| !v.is_null()) {
            chat.insert(to.into(), value.clone());
        }
    }
    if let Some(effort) = body.get("reasoning").and_then(|r| r.get("effort")).filter(|v| !v.is_null()) {
        chat.insert("reasoning_effort".into(), effort.clone());
    }
    if let Some(format) = body.get("text").and_then(|t| t.get("format")) {
        match format.get("type").and_then(Value::as_str) {
            Some("json_schema") => {
                let mut schema = format.as_object().cloned().unwrap_or_default();
                schema.remove("type");
                chat.insert("response_format".into(), json!({"type": "json_schema", "json_schema": schema}));
            }
            Some("json_object") => {
                chat.insert("response_format".into(), json!({"type": "json_object"}));
            }
            _ => {}
        }
    }
    tools(body, catalog, &may_use, attached, &mut chat, &mut out)?;
    // The client's own narrowing (our `mcp` body field) applies when no hosted `mcp` tool does.
    if let Some(own) = body.get("mcp") {
        if !out.labels.is_empty() {
            return Err("use either hosted `mcp` tools or the `mcp` field, not both".into());
        }
        chat.insert("mcp".into(), own.clone());
    }
    if let Some(choice) = body.get("tool_choice") {
        let choice = match choice {
            Value::Object(c) if c.get("type").and_then(Value::as_str) == Some("function") => {
                json!({"type": "function", "function": {"name": c.get("name").cloned().unwrap_or(Value::Null)}})
            }
            Value::Object(c) if c.get("type").and_then(Value::as_str) == Some("mcp") => {
                let label = c.get("server_label").and_then(Value::as_str).unwrap_or_default();
                let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                match catalog.by_origin(label, name).filter(|_| may_use(label)) {
                    Some(entry) => json!({"type": "function", "function": {"name": entry.name}}),
                    None => return Err(format!("`tool_choice` names no tool `{name}` of `{label}`")),
                }
            }
            Value::String(_) => choice.clone(),
            _ => {
                return Err(
                    "this `tool_choice` is not supported: use auto, none, required, a function or an mcp tool".into()
                );
            }
        };
        chat.insert("tool_choice".into(), choice);
    }
    out.chat = chat;
    Ok(out)
}

/// One input item as chat messages; `approvals` collects `mcp_approval_response` items.
fn input_item(
    item: &Value,
    messages: &mut Vec<Value>,
    catalog: &Catalog,
    approvals: &mut Vec<(String, bool)>,
) -> Result<(), String> {
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
    match kind {
        "message" => {
            let role = match item.get("role").and_then(Value::as_str) {
                Some("developer") => "system",
                Some(role @ ("user" | "assistant" | "system")) => role,
                _ => return Err("a message item needs a role: user, assistant, system or developer".into()),
            };
            messages.push(json!({"role": role, "content": content(item.get("content"))?}));
        }
        // The user's yes or no to the calls a parked round waits on, where the items stand;
        // several in a row are one answer (yes only when all approve).
        "mcp_approval_response" => {
            let id = item.get("approval_request_id").and_then(Value::as_str).unwrap_or_default().to_owned();
            let approve = item.get("approve").and_then(Value::as_bool).unwrap_or(false);
            let continues = !approvals.is_empty()
                && messages.last().is_some_and(|m| m.get("role").and_then(Value::as_str) == Some("user"));
            approvals.push((id, approve));
            let all = approvals.iter().all(|(_, yes)| *yes);
            let answer = json!({"role": "user", "content": if all { "yes" } else { "no" }});
            match messages.last_mut() {
                Some(last) if continues => *last = answer,
                _ => messages.push(answer),
            }
        }
        "function_call" | "mcp_call" => {
            let call_id = item.get("call_id").or_else(|| item.get("id")).cloned().unwrap_or(Value::Null);
            let label = item.get("server_label").and_then(Value::as_str);
            let name = match (kind, label, item.get("name").and_then(Value::as_str)) {
                // Our tool, named as the model knows it.
                ("mcp_call", Some(label), Some(name)) => {
                    Value::String(catalog.by_origin(label, name).map_or_else(|| name.to_owned(), |e| e.name.clone()))
                }
                _ => item.get("name").cloned().unwrap_or(Value::Null),
            };
            let arguments = match item.get("arguments") {
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => "{}".into(),
            };
            let call = json!({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}});
            // A client's calls of one turn join the assistant message before them (with its
            // text); each of our calls is one message with its result.
            let joins = kind == "function_call"
                && messages.last().is_some_and(|m| m.get("role").and_then(Value::as_str) == Some("assistant"));
            match messages.last_mut().and_then(Value::as_object_mut) {
                Some(last) if joins => match last.get_mut("tool_calls") {
                    Some(Value::Array(calls)) => calls.push(call),
                    _ => {
                        last.insert("tool_calls".into(), json!([call]));
                    }
                },
                _ => messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
            if kind == "mcp_call" {
                let output =
                    item.get("output").and_then(Value::as_str).or_else(|| item.get("error").and_then(Value::as_str));
                messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output.unwrap_or_default()}));
            }
        }
        "function_call_output" => {
            let output = match item.get("output") {
                Some(Value::String(text)) => Value::String(text.clone()),
                Some(other) => Value::String(other.to_string()),
                None => Value::String(String::new()),
            };
            messages.push(json!({"role": "tool", "tool_call_id": item.get("call_id").cloned().unwrap_or(Value::Null), "content": output}));
        }
        // Reasoning, tool listings and approval requests were ours to show; nothing to send.
        "reasoning" | "mcp_list_tools" | "mcp_approval_request" => {}
        other => return Err(format!("input items of type `{other}` are not supported")),
    }
    Ok(())
}

/// A message item's content as chat content (text, or parts with images).
fn content(content: Option<&Value>) -> Result<Value, String> {
    match content {
        None | Some(Value::Null) => Ok(Value::String(String::new())),
        Some(Value::String(text)) => Ok(Value::String(text.clone())),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text" | "text" | "refusal") => {
                        let text = part.get("text").or_else(|| part.get("refusal")).cloned().unwrap_or_default();
                        out.push(json!({"type": "text", "text": text}));
                    }
                    Some("input_image") => {
                        let url = part.get("image_url").cloned().unwrap_or(Value::Null);
                        out.push(json!({"type": "image_url", "image_url": {"url": url}}));
                    }
                    other => return Err(format!("content parts of type `{}` are not supported", other.unwrap_or("?"))),
                }
            }
            Ok(Value::Array(out))
        }
        Some(_) => Err("a message's content must be text or a list of parts".into()),
    }
}

/// Function tools as chat tools; hosted `mcp` tools as the body's `mcp` narrowing and approval.
fn tools(
    body: &Map<String, Value>,
    catalog: &Catalog,
    may_use: &impl Fn(&str) -> bool,
    attached: &[String],
    chat: &mut Map<String, Value>,
    out: &mut Converted,
) -> Result<(), String> {
    let Some(Value::Array(tools)) = body.get("tools") else { return Ok(()) };
    let mut functions = Vec::new();
    let mut allowed: Vec<String> = Vec::new();
    let mut approval = ApprovalRule::default();
    for tool in tools {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "function" => {
                let mut function = Map::new();
                for key in ["name", "description", "parameters", "strict"] {
                    if let Some(value) = tool.get(key).filter(|v| !v.is_null()) {
                        function.insert(key.into(), value.clone());
                    }
                }
                functions.push(json!({"type": "function", "function": function}));
            }
            "mcp" => {
                let label = tool.get("server_label").and_then(Value::as_str).unwrap_or_default().to_owned();
                // A server the caller may not use is as unknown as one that does not exist.
                let known = may_use(&label) && catalog.entries().iter().any(|e| e.server == label);
                // A `server_url` only as connected for this request (allowed, and by this label).
                let by_url = tool.get("server_url").is_some_and(|u| !u.is_null());
                if (by_url && !attached.contains(&label)) || tool.get("connector_id").is_some() || !known {
                    out.unknown_server = Some(label);
                    continue;
                }
                let names: Option<Vec<String>> = match tool.get("allowed_tools") {
                    None | Some(Value::Null) => None,
                    Some(Value::Array(names)) => {
                        Some(names.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    }
                    Some(Value::Object(filter)) => match filter.get("tool_names").and_then(Value::as_array) {
                        Some(names) if filter.len() == 1 => {
                            Some(names.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                        }
                        // `read_only` and other filters: refused rather than read as "all".
                        _ => return Err("`allowed_tools` filters other than `tool_names` are not supported".into()),
                    },
                    Some(_) => return Err("`allowed_tools` must be a list of tool names".into()),
                };
                let exposed = |original: &str| catalog.by_origin(&label, original).map(|e| e.name.clone());
                let of_server = || catalog.entries().iter().filter(|e| e.server == label);
                match names {
                    Some(names) => allowed.extend(names.iter().filter_map(|n| exposed(n))),
                    None => allowed.extend(of_server().map(|e| e.name.clone())),
                }
                // As the reference: without `require_approval`, every call waits for a yes.
                match tool.get("require_approval") {
                    None | Some(Value::Null) => approval.require.extend(of_server().map(|e| e.name.clone())),
                    Some(Value::String(mode)) if mode == "always" => {
                        approval.require.extend(of_server().map(|e| e.name.clone()));
                    }
                    Some(Value::String(mode)) if mode == "never" => {}
                    Some(Value::Object(rules)) => {
                        let listed = |key: &str| -> Option<Vec<String>> {
                            let names = rules.get(key)?.get("tool_names")?.as_array()?;
                            Some(names.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                        };
                        let always = listed("always").unwrap_or_default();
                        approval.require.extend(always.iter().filter_map(|n| exposed(n)));
                        // What `never` does not name still waits.
                        if let Some(never) = listed("never") {
                            let waits = of_server().filter(|e| !never.contains(&e.original_name));
                            approval.require.extend(waits.map(|e| e.name.clone()));
                        }
                    }
                    Some(_) => return Err("`require_approval` must be never, always or {always, never}".into()),
                }
                out.labels.push(label);
            }
            other if !OURS.contains(&other) => out.foreign.push(other.to_owned()),
            _ => {}
        }
    }
    if !functions.is_empty() {
        chat.insert("tools".into(), Value::Array(functions));
    }
    if !out.labels.is_empty() {
        chat.insert("mcp".into(), json!({"servers": out.labels, "tools": allowed}));
    }
    out.allowed = allowed;
    if !approval.is_empty() {
        out.approval = Some(approval);
    }
    Ok(())
}
