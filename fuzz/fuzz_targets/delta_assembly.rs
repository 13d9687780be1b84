//! Tool-call delta assembly: a sequence of arbitrary JSON chunks (one per line) folded into a
//! round; the rebuilt assistant message must serialise. Nothing may panic.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use mcp_middleware::agent::round::Round;
use mcp_middleware::llm::wire::ChatChunk;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let client: HashSet<String> = ["web_search".to_owned(), "a__b".to_owned()].into();
    let mut round = Round::default();
    for line in text.lines() {
        if let Ok(chunk) = serde_json::from_str::<ChatChunk>(line) {
            let forward = round.push(chunk, &client);
            let _ = forward.delta.map(|d| serde_json::to_string(&d));
        }
    }
    round.finish();
    let _ = serde_json::to_string(&round.message);
    for call in round.gateway_calls() {
        let _ = (call.id(), call.name(), call.arguments());
    }
});
