//! The one conversion from an MCP tool result to the text of a `tool` message.
//!
//! Text blocks are joined; structured content is added as JSON when no text says it already;
//! images, audio and blobs become short placeholders (never base64 in the model's context);
//! text over the inline budget keeps its head and tail with a marker saying what was left out.

use std::fmt::Write;

use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};

/// What the model sees of one tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// The `tool` message content.
    pub text: String,
    /// Whether the tool reported failure.
    pub is_error: bool,
}

/// Converts a result, keeping at most `budget` bytes of text.
pub fn to_tool_output(result: &CallToolResult, budget: usize) -> ToolOutput {
    let mut parts: Vec<String> = Vec::with_capacity(result.content.len() + 1);
    for block in &result.content {
        parts.push(match block {
            ContentBlock::Text(t) => t.text.clone(),
            ContentBlock::Image(i) => placeholder("image", &i.mime_type, base64_len(&i.data)),
            ContentBlock::Audio(a) => placeholder("audio", &a.mime_type, base64_len(&a.data)),
            ContentBlock::Resource(r) => match &r.resource {
                ResourceContents::TextResourceContents { uri, text, .. } => format!("[resource {uri}]\n{text}"),
                ResourceContents::BlobResourceContents { uri, mime_type, blob, .. } => {
                    let mime = mime_type.as_deref().unwrap_or("application/octet-stream");
                    format!("{} {uri}", placeholder("resource", mime, base64_len(blob)))
                }
                _ => "[resource of an unsupported kind]".to_owned(),
            },
            ContentBlock::ResourceLink(link) => {
                let mut s = format!("[resource link: {} ({})", link.uri, link.name);
                if let Some(d) = &link.description {
                    let _ = write!(s, " — {d}");
                }
                s.push(']');
                s
            }
            _ => "[content of an unsupported kind]".to_owned(),
        });
    }
    if let Some(structured) = &result.structured_content {
        let has_text = result.content.iter().any(|b| matches!(b, ContentBlock::Text(_)));
        if !has_text {
            parts.push(structured.to_string());
        }
    }
    let is_error = result.is_error.unwrap_or(false);
    let mut text = parts.join("\n");
    if text.is_empty() {
        text = if is_error { "The tool failed without a message.".into() } else { "(no output)".into() };
    }
    if is_error && !text.starts_with("Error") {
        text = format!("Error: {text}");
    }
    ToolOutput { text: cut_to_budget(&text, budget), is_error }
}

fn placeholder(kind: &str, mime: &str, bytes: usize) -> String {
    format!("[{kind} {mime}, {} — binary content not shown]", human_size(bytes))
}

/// Decoded size of base64 data, without decoding it.
fn base64_len(data: &str) -> usize {
    let trimmed = data.trim_end_matches('=');
    trimmed.len() * 3 / 4
}

/// `512 B`, `12.3 KB`, `4.0 MB`.
pub fn human_size(bytes: usize) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{:.1} MB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// Keeps the head and tail of `text` within `budget` bytes (on char boundaries) with a marker.
pub fn cut_to_budget(text: &str, budget: usize) -> String {
    if text.len() <= budget {
        return text.to_owned();
    }
    let keep = budget.saturating_sub(120) / 2;
    let head_end = floor_boundary(text, keep);
    let tail_start = ceil_boundary(text, text.len() - keep);
    let omitted = tail_start - head_end;
    format!(
        "{}\n\n[… {} of {} omitted …]\n\n{}",
        &text[..head_end],
        human_size(omitted),
        human_size(text.len()),
        &text[tail_start..]
    )
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(v: serde_json::Value) -> CallToolResult {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn joins_text_and_replaces_binary() {
        let r = result(json!({"content": [
            {"type": "text", "text": "first"},
            {"type": "image", "data": "aGVsbG8gd29ybGQ=", "mimeType": "image/png"},
            {"type": "resource_link", "uri": "file:///a", "name": "a"},
        ]}));
        let out = to_tool_output(&r, 1000);
        assert_eq!(
            out.text,
            "first\n[image image/png, 11 B — binary content not shown]\n[resource link: file:///a (a)]"
        );
        assert!(!out.is_error);
    }

    #[test]
    fn structured_content_and_errors() {
        let r = result(json!({"content": [], "structuredContent": {"t": 1}}));
        assert_eq!(to_tool_output(&r, 1000).text, r#"{"t":1}"#);
        let r = result(json!({"content": [{"type": "text", "text": "bad"}], "isError": true}));
        assert_eq!(to_tool_output(&r, 1000), ToolOutput { text: "Error: bad".into(), is_error: true });
    }

    #[test]
    fn long_text_keeps_head_and_tail() {
        let text = format!("{}{}", "a".repeat(5000), "z".repeat(5000));
        let cut = cut_to_budget(&text, 1000);
        assert!(cut.len() <= 1000, "{}", cut.len());
        assert!(cut.starts_with("aaa") && cut.ends_with("zzz") && cut.contains("omitted"));
        let multibyte = "é".repeat(3000);
        assert!(cut_to_budget(&multibyte, 501).len() <= 501);
    }
}
