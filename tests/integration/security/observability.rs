//! What the gateway tells about itself, attacked: tool names a model invents must not grow
//! `/metrics` without bound, a restricted key must not read every server's figures, and a
//! name with a newline and terminal escapes must not forge a log line.

use serde_json::json;

use crate::common::peers::TEST_SERVER;
use crate::common::process::GatewayProcess;
use crate::common::{FakeLlm, TestApp};

#[tokio::test]
async fn invented_tool_names_never_become_metric_labels() {
    let invented: Vec<(String, serde_json::Value)> =
        (0..40).map(|i| (format!("made_up_tool_{i}"), json!({}))).collect();
    let calls: Vec<(&str, serde_json::Value)> = invented.iter().map(|(n, a)| (n.as_str(), a.clone())).collect();
    let llm = FakeLlm::new().tool_calls(&calls).text("done").start().await;
    let yaml = format!("mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n");
    let app = TestApp::in_front_of(&llm, &yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(app.post("/v1/chat/completions", &chat).await.status(), 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(!metrics.contains("made_up_tool"), "invented names became labels");
    assert!(metrics.contains("(not offered)"), "refusals are counted under one label");
}

#[tokio::test]
async fn metrics_are_for_unrestricted_keys_only() {
    let llm = FakeLlm::new().text("ok").start().await;
    let yaml = "auth:\n  api_keys: [sk-admin-0123]\n  keys:\n    - key: sk-narrow-0123\n      servers: [ts]\n";
    let app = TestApp::in_front_of(&llm, yaml).await;
    let get = |key: &'static str| app.client.get(app.url("/metrics")).bearer_auth(key).send();
    assert_eq!(get("sk-narrow-0123").await.unwrap().status(), 403);
    assert_eq!(get("sk-admin-0123").await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_tool_name_cannot_forge_a_log_line() {
    let forged = "x\n2026-12-05T00:00:00.000000Z  INFO forged: admin logged in \u{1b}[2J";
    let llm = FakeLlm::new().tool_call(forged, json!({})).text("done").start().await;
    let yaml = format!(
        "upstream:\n  base_url: {}\nbuiltin_tools:\n  enabled: false\nmcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n",
        llm.url
    );
    let gw = GatewayProcess::spawn_pretty(&yaml, &[]).await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    gw.wait_for_tool(None, "ts__echo").await;
    let resp = reqwest::Client::new().post(gw.url("/v1/chat/completions")).json(&chat).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    gw.wait_for_log(|l| l.contains("mcp.call refused")).await;
    let logs = gw.logs();
    assert!(!logs.contains('\u{1b}'), "a terminal escape reached the log");
    assert!(!logs.lines().any(|l| l.starts_with("2026-12-05T00:00:00.000000Z")), "a forged line:\n{logs}");
    gw.stop().await;
}
