//! Open WebUI tool cards read back from assistant content (and flattened to text). Nothing may
//! panic, whatever the content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_middleware::agent::{cards_to_text, expand_tool_cards};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let content = String::from_utf8_lossy(data).into_owned();
    let calls = json!([{"id": "c1", "type": "function", "function": {"name": "web_search", "arguments": "{}"}}]);
    let messages = vec![
        json!({"role": "user", "content": "hi"}),
        json!({"role": "assistant", "content": content, "tool_calls": calls}),
        json!({"role": "tool", "tool_call_id": "c1", "content": "ok"}),
    ];
    let expanded = expand_tool_cards(messages.clone());
    let _ = serde_json::to_string(&expanded);
    let mut flat = messages;
    cards_to_text(&mut flat);
});
