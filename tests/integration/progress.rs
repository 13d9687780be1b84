//! Long tasks: a tool's progress notifications, and a task's status messages, reach a streaming
//! chat while it runs, as Open WebUI status lines (`{"type": "status"}` events on empty deltas,
//! which other clients ignore); a tool that runs only as a task is called as one.

use serde_json::json;

use crate::common::peers::{TEST_SERVER, TempDir};
use crate::common::{FakeLlm, TestApp, chunks, sse_data};

#[tokio::test]
async fn a_tools_progress_shows_in_the_streamed_status_line() {
    let llm = FakeLlm::new().tool_call("ts__slow", json!({"ms": 300, "steps": 3})).text("Slept.").start().await;
    let dir = TempDir::new("mcpmw-progress");
    let yaml = format!(
        "upstream:\n  base_url: {}\nstate:\n  url: sqlite://{}/state.db\nbuiltin_tools:\n  enabled: false\n\
         mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n",
        llm.url,
        dir.0.display()
    );
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__slow")).await;
    let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "sleep"}]});
    let events = chunks(&sse_data(app.post("/v1/chat/completions", &body).await).await);
    let lines: Vec<String> = events
        .iter()
        .filter(|c| c["event"]["type"] == "status")
        .filter_map(|c| c["event"]["data"]["description"].as_str().map(str::to_owned))
        .collect();
    assert!(lines.iter().any(|l| l == "slow: 33% — step 1 of 3"), "{lines:?}");
    // The last step's notification may race the result itself: the first ones are shown.
    assert!(lines.iter().any(|l| l == "slow: 67% — step 2 of 3"), "{lines:?}");
    let running = lines.iter().position(|l| l.starts_with("Running")).unwrap();
    let first = lines.iter().position(|l| l.contains("step 1")).unwrap();
    assert!(running < first, "progress comes while the tool runs: {lines:?}");
}

/// A tool that runs only as a task (server-everything's `simulate-research-query`, the MCP
/// 2025-11-25 tasks utility): a plain call is refused, so the gateway calls it as a task, shows
/// the task's status messages on the status line, and the task's result is the tool's.
#[tokio::test]
async fn a_tool_that_runs_only_as_a_task_is_called_as_one() {
    let llm = FakeLlm::new()
        .tool_call("ev__simulate-research-query", json!({"topic": "tide pools"}))
        .text("Researched.")
        .start()
        .await;
    let dir = TempDir::new("mcpmw-tasks");
    let ev = crate::common::peers::everything();
    let yaml = format!(
        "upstream:\n  base_url: {}\nstate:\n  url: sqlite://{}/state.db\nbuiltin_tools:\n  enabled: false\n\
         mcpServers:\n  ev:\n    command: node\n    args: [\"{ev}\", stdio]\n",
        llm.url,
        dir.0.display()
    );
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ev__simulate-research-query")).await;
    let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "research"}]});
    let events = chunks(&sse_data(app.post("/v1/chat/completions", &body).await).await);
    let lines: Vec<String> = events
        .iter()
        .filter(|c| c["event"]["type"] == "status")
        .filter_map(|c| c["event"]["data"]["description"].as_str().map(str::to_owned))
        .collect();
    let sent = llm.chat_requests().pop().unwrap();
    let tool = sent["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap().clone();
    assert!(tool["content"].as_str().unwrap().contains("Research Report: tide pools"), "{tool}");
    assert!(lines.iter().any(|l| l.starts_with("simulate-research-query: ") && l.contains("...")), "{lines:?}");
}
