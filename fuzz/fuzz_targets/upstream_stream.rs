//! Upstream SSE bytes, arriving in arbitrary pieces, parsed into events and chunks and folded
//! into a round, as the tool loop does. Nothing may panic.
#![no_main]

use std::collections::HashSet;

use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;
use mcp_middleware::agent::round::Round;
use mcp_middleware::llm::wire::ChatChunk;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the piece size, so the parser sees events split anywhere.
    let Some((&size, body)) = data.split_first() else { return };
    let size = usize::from(size % 16) + 1;
    let pieces: Vec<Result<bytes::Bytes, std::io::Error>> =
        body.chunks(size).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        use eventsource_stream::Eventsource;
        let mut events = futures_util::stream::iter(pieces).eventsource();
        let mut round = Round::default();
        let client: HashSet<String> = ["web_search".to_owned()].into();
        while let Some(Ok(event)) = events.next().await {
            if let Ok(chunk) = serde_json::from_str::<ChatChunk>(&event.data) {
                let _ = chunk.error();
                round.push(chunk, &client);
            }
        }
        round.finish();
        let _ = serde_json::to_vec(&round.message);
    });
});
