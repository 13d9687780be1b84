//! MCP sampling: a server with `sampling: true` is told the gateway can sample (server-everything
//! then offers `trigger-sampling-request`, absent otherwise), and its requests are answered by
//! the upstream model: `sampling.model` outside a chat, the chat's own model inside one (a
//! 2026-07-28 `input_required` sampling request), never more tokens than `sampling.max_tokens`.

use serde_json::json;

use crate::common::peers::{TEST_SERVER, TempDir, everything};
use crate::common::{FakeLlm, TestApp};

#[tokio::test]
async fn a_server_allowed_to_sample_gets_the_upstream_models_answer_capped() {
    let llm = FakeLlm::new().text("A sampled answer.").start().await;
    let dir = TempDir::new("mcpmw-sampling");
    let ev = everything();
    let yaml = format!(
        "upstream:\n  base_url: {}\nstate:\n  url: sqlite://{}/state.db\n\
         sampling:\n  model: sampler-model\n  max_tokens: 64\n\
         mcpServers:\n  ev:\n    command: node\n    args: [\"{ev}\", stdio]\n    sampling: true\n\
         \x20 plain:\n    command: node\n    args: [\"{ev}\", stdio]\n",
        llm.url,
        dir.0.display()
    );
    let app = TestApp::spawn(&yaml).await;
    let tools = app
        .wait_for_tools(|n| {
            n.iter().any(|t| t == "ev__trigger-sampling-request") && n.iter().any(|t| t == "plain__echo")
        })
        .await;
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(!names.contains(&"plain__trigger-sampling-request"), "only where sampling is declared: {names:?}");

    let (status, result) =
        app.call_tool("ev__trigger-sampling-request", json!({"prompt": "say hello", "maxTokens": 100})).await;
    assert_eq!(status, 200, "{result}");
    assert!(result.to_string().contains("A sampled answer."), "{result}");
    let sent = llm.chat_requests().pop().unwrap();
    assert_eq!(sent["model"], "sampler-model", "{sent}");
    assert_eq!(sent["max_tokens"], 64, "the cap holds: {sent}");
    assert_eq!(sent["messages"][0]["role"], "system", "{sent}");
    assert!(sent["messages"][1]["content"].as_str().unwrap().contains("say hello"), "{sent}");
}

#[tokio::test]
async fn inside_a_chat_the_chats_model_answers_a_sampling_request() {
    let llm = FakeLlm::new()
        .tool_call("ts__ask", json!({"kind": "sampling"}))
        .text("Hi from the chat's model.")
        .text("The tool is done.")
        .start()
        .await;
    let dir = TempDir::new("mcpmw-sampling-chat");
    let yaml = format!(
        "upstream:\n  base_url: {}\nstate:\n  url: sqlite://{}/state.db\nbuiltin_tools:\n  enabled: false\n\
         mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n    sampling: true\n",
        llm.url,
        dir.0.display()
    );
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__ask")).await;
    let body = json!({"model": "chat-model", "messages": [{"role": "user", "content": "ask"}]});
    let done: serde_json::Value = app.post("/v1/chat/completions", &body).await.json().await.unwrap();
    assert!(done.to_string().contains("The tool is done."), "{done}");
    let requests = llm.chat_requests();
    let sampling = &requests[1];
    assert_eq!(sampling["model"], "chat-model", "{sampling}");
    let last = requests.last().unwrap();
    let tool = last["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap();
    assert!(tool["content"].as_str().unwrap().contains("Hi from the chat's model."), "{tool}");
}
