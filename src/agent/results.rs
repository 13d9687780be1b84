//! The one conversion from an MCP tool result to the text of a `tool` message.
//!
//! Text blocks are joined; structured content is added as JSON when no text says it already.
//! Images, audio, blobs and embedded binary resources become artifacts, and the model sees a
//! compact line with the link (`[image/png 12.0 KB: <url>]`), never base64. Text over the
//! inline budget keeps its head and tail with a marker, and the whole text is stored as an
//! artifact the model can page through with `read_artifact`. If the store is unreachable the
//! result still arrives, with short placeholders and a note.

use std::fmt::Write;

use base64::Engine;
use bytes::Bytes;
use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};

use crate::artifacts::{Artifact, Artifacts};

/// What the model sees of one tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// The `tool` message content.
    pub text: String,
    /// Whether the tool reported failure.
    pub is_error: bool,
    /// Artifacts made from the result.
    pub artifacts: Vec<Artifact>,
}

/// Converts a result, keeping at most `budget` bytes of text inline.
pub async fn to_tool_output(result: &CallToolResult, store: &Artifacts, budget: usize, source: &str) -> ToolOutput {
    let mut saver = Saver { store, source, artifacts: Vec::new(), store_failure: None };
    let mut parts: Vec<String> = Vec::with_capacity(result.content.len() + 1);
    for block in &result.content {
        let part = match block {
            ContentBlock::Text(t) => t.text.clone(),
            ContentBlock::Image(i) => saver.binary("image", &i.mime_type, &i.data).await,
            ContentBlock::Audio(a) => saver.binary("audio", &a.mime_type, &a.data).await,
            ContentBlock::Resource(r) => match &r.resource {
                ResourceContents::TextResourceContents { uri, text, .. } => format!("[resource {uri}]\n{text}"),
                ResourceContents::BlobResourceContents { uri, mime_type, blob, .. } => {
                    let mime = mime_type.as_deref().unwrap_or("application/octet-stream");
                    format!("{} (from {uri})", saver.binary("resource", mime, blob).await)
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
        };
        parts.push(part);
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
    if text.len() > budget {
        let note = match saver.store.save(Bytes::from(text.clone().into_bytes()), "text/plain", Some(source)).await {
            Ok(a) => {
                let note = format!(
                    "\n[Full output: {} stored as artifact `{}`; read any part with the read_artifact tool (offset/length/grep).]",
                    human_size(text.len()),
                    a.key
                );
                saver.artifacts.push(a);
                note
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not store a long tool output");
                "\n[The full output could not be stored.]".to_owned()
            }
        };
        text = format!("{}{note}", cut_to_budget(&text, budget.saturating_sub(note.len())));
    }
    if let Some(why) = &saver.store_failure {
        text.push_str(&format!("\n[Note: binary content was left out: {why}.]"));
    }
    ToolOutput { text, is_error, artifacts: saver.artifacts }
}

struct Saver<'a> {
    store: &'a Artifacts,
    source: &'a str,
    artifacts: Vec<Artifact>,
    /// Why the store refused a save, if it did.
    store_failure: Option<String>,
}

impl Saver<'_> {
    /// Stores base64 content and returns the line the model sees.
    async fn binary(&mut self, kind: &str, mime: &str, data: &str) -> String {
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data.trim()) else {
            return format!("[{kind} {mime}: undecodable base64 left out]");
        };
        let size = bytes.len();
        match self.store.save(Bytes::from(bytes), mime, Some(self.source)).await {
            Ok(artifact) => {
                let line = format!("[{mime} {}: {}]", human_size(size), artifact.url);
                self.artifacts.push(artifact);
                line
            }
            Err(e) => {
                tracing::warn!(error = %e, kind, "artifact store unavailable; leaving binary content out");
                self.store_failure = Some(e.to_string());
                format!("[{kind} {mime}, {} — not shown]", human_size(size))
            }
        }
    }
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
    use crate::artifacts::LocalStore;
    use serde_json::json;
    use std::sync::Arc;

    fn result(v: serde_json::Value) -> CallToolResult {
        serde_json::from_value(v).unwrap()
    }

    fn store() -> Artifacts {
        let dir = std::env::temp_dir().join(format!("mcpmw-results-{}", uuid::Uuid::new_v4().simple()));
        let local = LocalStore::open(&dir, Some("secret"), "http://gw", std::time::Duration::from_secs(60)).unwrap();
        Artifacts { store: Arc::new(local), url_ttl: std::time::Duration::from_secs(60), gateway_key: [0; 32] }
    }

    #[tokio::test]
    async fn binary_becomes_a_link_and_text_is_joined() {
        let r = result(json!({"content": [
            {"type": "text", "text": "first"},
            {"type": "image", "data": "aGVsbG8gd29ybGQ=", "mimeType": "image/png"},
            {"type": "resource_link", "uri": "file:///a", "name": "a"},
        ]}));
        let out = to_tool_output(&r, &store(), 1000, "s/t").await;
        assert_eq!(out.artifacts.len(), 1);
        let url = &out.artifacts[0].url;
        assert_eq!(out.text, format!("first\n[image/png 11 B: {url}]\n[resource link: file:///a (a)]"));
        assert!(!out.text.contains("aGVsbG8"), "no base64 reaches the model");
    }

    #[tokio::test]
    async fn structured_content_errors_and_long_text() {
        let s = store();
        let r = result(json!({"content": [], "structuredContent": {"t": 1}}));
        assert_eq!(to_tool_output(&r, &s, 1000, "s/t").await.text, r#"{"t":1}"#);
        let r = result(json!({"content": [{"type": "text", "text": "bad"}], "isError": true}));
        let out = to_tool_output(&r, &s, 1000, "s/t").await;
        assert_eq!((out.text.as_str(), out.is_error), ("Error: bad", true));
        let long = format!("{}{}", "a".repeat(5000), "z".repeat(5000));
        let r = result(json!({"content": [{"type": "text", "text": long}]}));
        let out = to_tool_output(&r, &s, 1000, "s/t").await;
        assert!(out.text.len() <= 1000, "{}", out.text.len());
        assert!(out.text.starts_with("aaa") && out.text.contains("omitted") && out.text.contains("read_artifact"));
        assert_eq!(out.artifacts[0].size, 10_000);
    }

    #[test]
    fn cut_keeps_char_boundaries() {
        let multibyte = "é".repeat(3000);
        assert!(cut_to_budget(&multibyte, 501).len() <= 501);
    }
}
