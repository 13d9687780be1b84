//! Load, on the real binary over loopback: a thousand concurrent streaming chats, each with one
//! tool round through a real MCP server, all complete; and memory after many requests stays where
//! it was after fewer (a leak check). Peak RSS is printed; nothing here is timed.
//!
//! Its own test binary: cargo runs test binaries one after another, so the load never shares the
//! two cores with the timing-sensitive fault tests.
// A test crate: a failed assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, clippy::unreachable)]

// The integration suite's helpers (scripted model, peers, the gateway as a process); this binary
// uses a few of them.
#[allow(dead_code, unused_imports)]
#[path = "../integration/common/mod.rs"]
mod common;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::common::fake_llm::Turn;
use crate::common::peers::TEST_SERVER;
use crate::common::process::GatewayProcess;
use crate::common::{FakeLlm, chunks, sse_payloads, streamed_text};

/// Concurrent tool streams (the figure).
const STREAMS: usize = 1_000;
/// Requests before the first memory reading, and in all; the issue asks for 10 k and 100 k.
const WARM: usize = 10_000;
const TOTAL: usize = 100_000;
/// Concurrency of the leak run.
const LEAK_CONCURRENCY: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tool_streams_complete_and_memory_does_not_creep() {
    let llm = FakeLlm::new()
        .forgetful()
        .turn(Turn::ToolRound { calls: vec![("ts__echo".into(), json!({"text": "ping"}))], text: "done".into() })
        .start()
        .await;
    let yaml = format!(
        "upstream:\n  base_url: {}\nmcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n\
         builtin_tools:\n  enabled: false\n",
        llm.url
    );
    // Only the startup line is logged: the run's logs are not what is measured.
    let gw = GatewayProcess::spawn(&yaml, &[("RUST_LOG", "warn,mcp_middleware::app=info")]).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let chat = |stream: bool| {
        let request = client.post(gw.url("/v1/chat/completions")).json(&json!({
            "model": "fake-model", "stream": stream,
            "messages": [{"role": "user", "content": "echo ping"}],
        }));
        async move {
            let resp = request.send().await.map_err(|e| format!("send: {e}"))?;
            let status = resp.status().as_u16();
            let body = resp.text().await.map_err(|e| format!("body: {e}"))?;
            if status != 200 {
                return Err(format!("{status}: {body}"));
            }
            Ok::<String, String>(body)
        }
    };
    // The tool must be there before the load starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let tools: Value = client.get(gw.url("/mcp/tools/list")).send().await.unwrap().json().await.unwrap_or_default();
        if tools.to_string().contains("ts__echo") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no tools: {tools}\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 1. A thousand streaming chats at once, one tool round each.
    let results: Vec<Result<String, String>> =
        futures_util::stream::iter((0..STREAMS).map(|_| chat(true))).buffer_unordered(STREAMS).collect().await;
    let mut errors = Vec::new();
    for result in &results {
        match result {
            Ok(body) => {
                let payloads = sse_payloads(body);
                let text = streamed_text(&chunks(&payloads));
                let complete = payloads.last().map(String::as_str) == Some("[DONE]")
                    && text.ends_with("done")
                    && body.contains("ts__echo");
                if !complete {
                    errors.push(format!("incomplete stream: {body}"));
                }
            }
            Err(e) => errors.push(e.clone()),
        }
    }
    assert!(errors.is_empty(), "{} of {STREAMS} streams failed; first: {}", errors.len(), errors[0]);
    let after_streams = memory(gw.pid());
    println!(
        "after {STREAMS} concurrent tool streams: peak RSS {} KiB, RSS {} KiB",
        after_streams.peak, after_streams.rss
    );

    // 2. Leak check: a mix of streaming and non-streaming chats with a tool round each.
    let run = |count: usize| {
        let chat = &chat;
        async move {
            let failures = futures_util::stream::iter((0..count).map(|i| chat(i % 2 == 0)))
                .buffer_unordered(LEAK_CONCURRENCY)
                // Both shapes end with the model's answer after the tool round ("done").
                .filter(|r| std::future::ready(!r.as_ref().is_ok_and(|body| body.contains("done"))))
                .take(1)
                .collect::<Vec<_>>()
                .await;
            if let Some(failure) = failures.into_iter().next() {
                panic!("a request failed: {failure:?}");
            }
        }
    };
    run(WARM).await;
    let warm = memory(gw.pid());
    run(TOTAL - WARM).await;
    let total = memory(gw.pid());
    println!("RSS after {WARM} requests {} KiB, after {TOTAL} {} KiB", warm.rss, total.rss);
    assert!(
        total.rss as f64 <= warm.rss as f64 * 1.10,
        "RSS grew from {} KiB after {WARM} requests to {} KiB after {TOTAL}",
        warm.rss,
        total.rss
    );
    // Still serving.
    assert!(chat(false).await.is_ok());
    gw.stop().await;
}

struct Memory {
    rss: u64,
    peak: u64,
}

/// The process's resident set and its peak, in KiB, from `/proc`.
fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from /proc/{pid}/status"))
    };
    Memory { rss: field("VmRSS:"), peak: field("VmHWM:") }
}
