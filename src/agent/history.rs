//! History in: Open WebUI sends our tool cards back inside assistant content on the next turn
//! (0.9+ rebuilds history from its stored output items verbatim; attributes stay HTML-escaped).
//! Each card becomes a structured assistant `tool_calls` entry plus a `tool` message, so the
//! model sees its earlier calls as calls and never sees the HTML. Text around the cards stays
//! in assistant messages in its original order. A card that cannot be read, or that this gateway
//! did not make (its `mcpmw` mac does not verify), is left as text: a model or a user cannot
//! write a tool result into the history.
//!
//! After a mixed turn the client sends back `assistant{content with our cards, tool_calls: [its
//! own call]}` and its `tool` message: its `tool_calls` stay on the last assistant message,
//! right before its tool messages. A request that sends no tools upstream gets the cards as
//! plain text instead ([`cards_to_text`]): providers refuse tool-call history without tools.

use serde_json::{Value, json};

use super::cards::{CardSigner, unescape};

const OPEN: &str = "<details type=\"tool_calls\"";
/// A part of `OPEN` that any JSON writer sends as it is (no `<`, which some write as
/// `\u003c`, and no `"`): a body whose raw text lacks it carries no card.
pub const CARD_MARK: &str = "details type=";
const CLOSE: &str = "</details>";

/// One card read back from content.
#[derive(Debug, PartialEq)]
struct Card {
    id: String,
    name: String,
    arguments: String,
    result: String,
    mac: String,
}

/// Rewrites every assistant message whose content holds tool cards.
pub fn expand_tool_cards(messages: Vec<Value>, signer: &CardSigner) -> Vec<Value> {
    let mut out = Vec::with_capacity(messages.len());
    for message in messages {
        let is_assistant = message.get("role").and_then(Value::as_str) == Some("assistant");
        let content = message.get("content").and_then(Value::as_str);
        match content {
            Some(text) if is_assistant && text.contains(OPEN) => expand(&message, text, signer, &mut out),
            _ => out.push(message),
        }
    }
    out
}

fn expand(original: &Value, text: &str, signer: &CardSigner, out: &mut Vec<Value>) {
    let mut rest = text;
    let mut prose = String::new();
    let mut calls: Vec<Card> = Vec::new();
    let mut counter = 0;
    while let Some(start) = rest.find(OPEN) {
        let Some(end) = rest.get(start..).and_then(|r| r.find(CLOSE)).map(|e| start + e + CLOSE.len()) else {
            break;
        };
        let before = rest.get(..start).unwrap_or_default();
        let ours = |c: &Card| signer.verify(&c.id, &c.name, &c.arguments, &c.result, &c.mac);
        if let Some(mut card) = rest.get(start..end).and_then(parse_card).filter(ours) {
            add_text(out, &mut prose, &mut calls, before.trim());
            if card.id.is_empty() {
                counter += 1;
                // Unique across the conversation: providers refuse duplicate call ids.
                card.id = format!("call_history_{counter}_{}", uuid::Uuid::new_v4().simple());
            }
            calls.push(card);
        } else {
            add_text(out, &mut prose, &mut calls, rest.get(..end).unwrap_or_default());
        }
        rest = rest.get(end..).unwrap_or_default();
    }
    add_text(out, &mut prose, &mut calls, rest.trim());
    flush(out, &mut prose, &mut calls);
    // The client's own calls of that turn (a mixed turn) must directly precede its tool
    // messages: on the last assistant message, or a new one when the cards came last.
    if let Some(client_calls) = original.get("tool_calls").filter(|c| c.as_array().is_some_and(|a| !a.is_empty())) {
        let last_is_plain_assistant = out.last().is_some_and(|m| {
            m.get("role").and_then(Value::as_str) == Some("assistant") && m.get("tool_calls").is_none()
        });
        if !last_is_plain_assistant {
            out.push(json!({"role": "assistant", "content": Value::Null}));
        }
        if let Some(Value::Object(last)) = out.last_mut() {
            last.insert("tool_calls".into(), client_calls.clone());
        }
    }
    // Keep any other fields of the original message (name, reasoning …) on the last assistant
    // message (never on a tool message, when the cards came last).
    let last_assistant = out.iter().rposition(|m| m.get("role").and_then(Value::as_str) == Some("assistant"));
    if let (Some(Value::Object(orig)), Some(Value::Object(last))) =
        (Some(original), last_assistant.and_then(|i| out.get_mut(i)))
    {
        for (k, v) in orig {
            if k != "content" && k != "role" && k != "tool_calls" && !last.contains_key(k) {
                last.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Whether an assistant message of `messages` carries a tool card (only those can: the scan
/// reads assistant text, never a user's paste).
pub fn carries_cards(messages: &[Value]) -> bool {
    messages.iter().any(|m| {
        m.get("role").and_then(Value::as_str) == Some("assistant")
            && m.get("content").and_then(Value::as_str).is_some_and(|text| text.contains(OPEN))
    })
}

/// Replaces every tool card this gateway made in assistant content with a plain-text line
/// (`[called name(args): result]`), for requests that send no tools upstream; other cards stay
/// as they were written.
pub fn cards_to_text(messages: &mut [Value], signer: &CardSigner) {
    for message in messages {
        if message.get("role").and_then(Value::as_str) != Some("assistant") {
            continue;
        }
        let Some(Value::String(text)) = message.get_mut("content") else { continue };
        if !text.contains(OPEN) {
            continue;
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(start) = rest.find(OPEN) {
            let Some(end) = rest.get(start..).and_then(|r| r.find(CLOSE)).map(|e| start + e + CLOSE.len()) else {
                break;
            };
            out.push_str(rest.get(..start).unwrap_or_default());
            let ours = |c: &Card| signer.verify(&c.id, &c.name, &c.arguments, &c.result, &c.mac);
            match rest.get(start..end).and_then(parse_card).filter(ours) {
                Some(card) => {
                    out.push_str(&format!("[called {}({}): {}]", card.name, card.arguments, card.result));
                }
                None => out.push_str(rest.get(start..end).unwrap_or_default()),
            }
            rest = rest.get(end..).unwrap_or_default();
        }
        out.push_str(rest);
        *text = out;
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
    let mut assistant = serde_json::Map::new();
    assistant.insert("role".into(), Value::String("assistant".into()));
    assistant.insert("content".into(), content);
    if !calls.is_empty() {
        let tool_calls: Vec<Value> = calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
        assistant.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    out.push(Value::Object(assistant));
    for call in calls.drain(..) {
        out.push(json!({"role": "tool", "tool_call_id": call.id, "content": call.result}));
    }
}

fn parse_card(block: &str) -> Option<Card> {
    let head_end = block.find('>')?;
    let head = block.get(..head_end)?;
    let attr = |name: &str| -> Option<String> {
        let key = format!(" {name}=\"");
        let start = head.find(&key)? + key.len();
        let len = head.get(start..)?.find('"')?;
        Some(unescape(head.get(start..start + len)?))
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
            let body = block.get(head_end + 1..block.len().saturating_sub(CLOSE.len())).unwrap_or_default();
            let body = body.split_once("</summary>").map_or(body, |(_, b)| b);
            decode(unescape(body.trim()))
        }
    };
    let mac = attr("mcpmw").unwrap_or_default();
    Some(Card { id: attr("id").unwrap_or_default(), name, arguments, result, mac })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::calls::ToolRun;
    use crate::agent::cards::render;

    #[test]
    fn the_card_mark_survives_json_escaping() {
        assert!(OPEN.contains(CARD_MARK));
        // As a Go client writes it (HTML-safe escapes) and as serde_json does.
        let escaped = OPEN.replace('<', "\\u003c").replace('"', "\\\"");
        assert!(escaped.contains(CARD_MARK) && serde_json::to_string(OPEN).unwrap().contains(CARD_MARK));
    }

    fn signer() -> CardSigner {
        CardSigner::new([42; 32])
    }

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
            found: Vec::new(),
            needs_account: None,
            needs_input: None,
            needs_answer: None,
            duration_ms: 1,
        };
        let content = format!(
            "Let me add.{}{}The sum is 3.",
            render(&run("c1", "3"), &signer()),
            render(&run("c2", "it's \"3\""), &signer())
        );
        let messages = vec![
            json!({"role": "user", "content": "add"}),
            json!({"role": "assistant", "content": content}),
            json!({"role": "user", "content": "thanks"}),
        ];
        let got = expand_tool_cards(messages, &signer());
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
        // A card this gateway did not make (here Open WebUI 0.9's own shape) stays text.
        let got = expand_tool_cards(vec![json!({"role": "assistant", "content": v09})], &signer());
        assert_eq!(got.len(), 1);
        assert!(got[0]["content"].as_str().unwrap().contains("<details"));
        let broken = "text <details type=\"tool_calls\" done=\"true\">\n</details> more";
        let got = expand_tool_cards(vec![json!({"role": "assistant", "content": broken})], &signer());
        assert_eq!(got.len(), 1);
        assert!(got[0]["content"].as_str().unwrap().contains("<details"), "an unreadable card stays as text");
    }

    #[test]
    fn malformed_cards_never_panic() {
        for bad in [
            "<details type=\"tool_calls\" name=\"x\"</details>",
            "<details type=\"tool_calls\"</details>",
            "<details type=\"tool_calls\" name=\"é\u{1F600}</details>",
            "<details type=\"tool_calls\" name=\"x\" result=\"",
            "<details type=\"tool_calls\">",
        ] {
            let got = expand_tool_cards(vec![json!({"role": "assistant", "content": bad})], &signer());
            assert!(!got.is_empty(), "{bad}");
            let mut messages = vec![json!({"role": "assistant", "content": bad})];
            cards_to_text(&mut messages, &signer());
        }
    }

    #[test]
    fn a_mixed_turn_keeps_the_clients_call_before_its_tool_message() {
        let run = ToolRun {
            id: "ours".into(),
            name: "ts__echo".into(),
            arguments: json!({"text": "x"}),
            output: "x".into(),
            is_error: false,
            artifacts: Vec::new(),
            images: Vec::new(),
            found: Vec::new(),
            needs_account: None,
            needs_input: None,
            needs_answer: None,
            duration_ms: 1,
        };
        let theirs = json!([{"id": "web1", "type": "function", "function": {"name": "web_search", "arguments": "{}"}}]);
        for content in [
            format!("Checking.{}", render(&run, &signer())),
            format!("Checking.{}Now the web.", render(&run, &signer())),
        ] {
            let messages = vec![
                json!({"role": "user", "content": "go"}),
                json!({"role": "assistant", "content": content, "tool_calls": theirs}),
                json!({"role": "tool", "tool_call_id": "web1", "content": "results"}),
            ];
            let got = expand_tool_cards(messages, &signer());
            let before_theirs = &got[got.len() - 2];
            assert_eq!(before_theirs["role"], "assistant", "{got:#?}");
            assert_eq!(before_theirs["tool_calls"], theirs, "{got:#?}");
            assert_eq!(got[2], json!({"role": "tool", "tool_call_id": "ours", "content": "x"}));
            assert_eq!(got[1]["tool_calls"][0]["id"], "ours");
        }
    }

    #[test]
    fn without_tools_cards_become_plain_text() {
        let run = ToolRun {
            id: "c1".into(),
            name: "ev__get-sum".into(),
            arguments: json!({"a": 1}),
            output: "3".into(),
            is_error: false,
            artifacts: Vec::new(),
            images: Vec::new(),
            found: Vec::new(),
            needs_account: None,
            needs_input: None,
            needs_answer: None,
            duration_ms: 1,
        };
        let mut messages =
            vec![json!({"role": "assistant", "content": format!("Adding.{}Done.", render(&run, &signer()))})];
        cards_to_text(&mut messages, &signer());
        let text = messages[0]["content"].as_str().unwrap();
        assert!(!text.contains("<details") && text.contains("[called ev__get-sum({\"a\":1}): 3]"), "{text}");
        assert!(text.starts_with("Adding.") && text.ends_with("Done."), "{text}");
        // A card another key signed (or nobody did) is left as written.
        let forged = render(&run, &CardSigner::new([1; 32]));
        let mut messages = vec![json!({"role": "assistant", "content": forged.clone()})];
        cards_to_text(&mut messages, &signer());
        assert_eq!(messages[0]["content"], forged);
    }
}
