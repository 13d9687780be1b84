//! History in: Open WebUI sends our tool cards back inside assistant content on the next turn
//! (0.9+ rebuilds history from its stored output items verbatim; attributes stay HTML-escaped).
//! Each card becomes a structured assistant `tool_calls` entry plus a `tool` message, so the
//! model sees its earlier calls as calls and never sees the HTML. Text around the cards stays
//! in assistant messages in its original order. A card that cannot be read is left as text.

use serde_json::{Value, json};

use super::cards::unescape;

const OPEN: &str = "<details type=\"tool_calls\"";
const CLOSE: &str = "</details>";

/// One card read back from content.
#[derive(Debug, PartialEq)]
struct Card {
    id: String,
    name: String,
    arguments: String,
    result: String,
}

/// Rewrites every assistant message whose content holds tool cards.
pub fn expand_tool_cards(messages: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::with_capacity(messages.len());
    for message in messages {
        let is_assistant = message.get("role").and_then(Value::as_str) == Some("assistant");
        let content = message.get("content").and_then(Value::as_str);
        match content {
            Some(text) if is_assistant && text.contains(OPEN) => expand(&message, text, &mut out),
            _ => out.push(message),
        }
    }
    out
}

fn expand(original: &Value, text: &str, out: &mut Vec<Value>) {
    let mut rest = text;
    let mut prose = String::new();
    let mut calls: Vec<Card> = Vec::new();
    let mut counter = 0;
    while let Some(start) = rest.find(OPEN) {
        let Some(end) = rest[start..].find(CLOSE).map(|e| start + e + CLOSE.len()) else { break };
        let before = &rest[..start];
        if let Some(mut card) = parse_card(&rest[start..end]) {
            add_text(out, &mut prose, &mut calls, before.trim());
            if card.id.is_empty() {
                counter += 1;
                card.id = format!("call_history_{counter}");
            }
            calls.push(card);
        } else {
            add_text(out, &mut prose, &mut calls, &rest[..end]);
        }
        rest = &rest[end..];
    }
    add_text(out, &mut prose, &mut calls, rest.trim());
    flush(out, &mut prose, &mut calls);
    // Keep any other fields of the original message (name, etc.) on the last assistant message.
    if let (Some(Value::Object(orig)), Some(Value::Object(last))) = (Some(original), out.last_mut()) {
        for (k, v) in orig {
            if k != "content" && k != "role" && k != "tool_calls" && !last.contains_key(k) {
                last.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Appends text to the pending prose; text after calls starts a new assistant message.
fn add_text(out: &mut Vec<Value>, prose: &mut String, calls: &mut Vec<Card>, text: &str) {
    if text.is_empty() {
        return;
    }
    if !calls.is_empty() {
        flush(out, prose, calls);
    }
    prose.push_str(text);
}

/// Emits the pending prose (and the calls made after it) as messages.
fn flush(out: &mut Vec<Value>, prose: &mut String, calls: &mut Vec<Card>) {
    if prose.is_empty() && calls.is_empty() {
        return;
    }
    let content = if prose.is_empty() { Value::Null } else { Value::String(std::mem::take(prose)) };
    let mut assistant = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        let tool_calls: Vec<Value> = calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
        assistant["tool_calls"] = Value::Array(tool_calls);
    }
    out.push(assistant);
    for call in calls.drain(..) {
        out.push(json!({"role": "tool", "tool_call_id": call.id, "content": call.result}));
    }
}

fn parse_card(block: &str) -> Option<Card> {
    let head_end = block.find('>')?;
    let head = &block[..head_end];
    let attr = |name: &str| -> Option<String> {
        let key = format!(" {name}=\"");
        let start = head.find(&key)? + key.len();
        let len = head[start..].find('"')?;
        Some(unescape(&head[start..start + len]))
    };
    let name = attr("name").filter(|n| !n.is_empty())?;
    // Values are JSON-encoded (Open WebUI's `json.dumps`): a JSON string decodes to its text.
    let decode = |raw: String| match serde_json::from_str::<Value>(&raw) {
        Ok(Value::String(s)) => s,
        _ => raw,
    };
    let arguments = attr("arguments").map(decode).unwrap_or_else(|| "{}".into());
    let result = match attr("result") {
        Some(r) => decode(r),
        None => {
            // Open WebUI 0.8–0.9 put the result in the body after the summary.
            let body = &block[head_end + 1..block.len() - CLOSE.len()];
            let body = body.split_once("</summary>").map_or(body, |(_, b)| b);
            decode(unescape(body.trim()))
        }
    };
    Some(Card { id: attr("id").unwrap_or_default(), name, arguments, result })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::calls::ToolRun;
    use crate::agent::cards::render;

    #[test]
    fn our_cards_round_trip_into_tool_messages() {
        let run = |id: &str, out: &str| ToolRun {
            id: id.into(),
            name: "ev__get-sum".into(),
            arguments: json!({"a": 1, "b": 2}),
            output: out.into(),
            is_error: false,
            artifacts: Vec::new(),
            images: Vec::new(),
            duration_ms: 1,
        };
        let content =
            format!("Let me add.{}{}The sum is 3.", render(&run("c1", "3")), render(&run("c2", "it's \"3\"")));
        let messages = vec![
            json!({"role": "user", "content": "add"}),
            json!({"role": "assistant", "content": content}),
            json!({"role": "user", "content": "thanks"}),
        ];
        let got = expand_tool_cards(messages);
        assert_eq!(got.len(), 6, "{got:#?}");
        assert_eq!(got[1]["content"], "Let me add.");
        assert_eq!(got[1]["tool_calls"][0]["function"]["arguments"], r#"{"a":1,"b":2}"#);
        assert_eq!(got[1]["tool_calls"][1]["id"], "c2");
        assert_eq!(got[2], json!({"role": "tool", "tool_call_id": "c1", "content": "3"}));
        assert_eq!(got[3]["content"], "it's \"3\"");
        assert_eq!(got[4], json!({"role": "assistant", "content": "The sum is 3."}));
        assert_eq!(got[5]["role"], "user");
    }

    #[test]
    fn body_results_and_unreadable_cards() {
        let v09 = "<details type=\"tool_calls\" done=\"true\" id=\"x\" name=\"t\" arguments=\"&quot;{}&quot;\">\n<summary>Tool Executed</summary>\n&quot;ok&quot;\n</details>";
        let got = expand_tool_cards(vec![json!({"role": "assistant", "content": v09})]);
        assert_eq!(got[1]["content"], "ok");
        let broken = "text <details type=\"tool_calls\" done=\"true\">\n</details> more";
        let got = expand_tool_cards(vec![json!({"role": "assistant", "content": broken})]);
        assert_eq!(got.len(), 1);
        assert!(got[0]["content"].as_str().unwrap().contains("<details"), "an unreadable card stays as text");
    }
}
