//! Tool names as exposed: `<server>__<tool>` by default, a server's own `prefix`, or `""` for
//! the server's own names, the same in chat, the REST API and `/mcp`. Two servers whose names
//! meet are never told apart silently: the first server (config order) keeps the name, the
//! collision is logged and reported at `/mcp/servers` naming both servers. Key policies keep
//! naming `<server>__<tool>` whatever the prefix.

use serde_json::json;

use crate::common::peers::TEST_SERVER;
use crate::common::{FakeLlm, TestApp, first_text};

#[tokio::test]
async fn prefixes_name_tools_and_collisions_are_reported() {
    let llm = FakeLlm::new().tool_call("echo", json!({"text": "bare"})).text("Echoed.").start().await;
    let yaml = format!(
        "upstream:\n  base_url: {}\nbuiltin_tools:\n  enabled: false\n\
         auth:\n  api_keys: [sk-all-0123456789]\n  keys:\n    - key: sk-second-0123456789\n      tools: [\"second__*\"]\n\
         mcpServers:\n\
         \x20 first:\n    command: {TEST_SERVER}\n    args: [stdio]\n    prefix: \"\"\n\
         \x20 second:\n    command: {TEST_SERVER}\n    args: [stdio]\n    prefix: \"\"\n\
         \x20 third:\n    command: {TEST_SERVER}\n    args: [stdio]\n    prefix: t3-\n",
        llm.url
    );
    let mut app = TestApp::spawn(&yaml).await;
    app.key = Some("sk-all-0123456789".into());
    let tools = app.wait_for_tools(|n| n.iter().any(|t| t == "t3-echo") && n.iter().any(|t| t == "echo")).await;
    let servers_of = |name: &str| -> Vec<String> {
        tools.iter().filter(|t| t["name"] == name).map(|t| t["server"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(servers_of("echo"), vec!["first".to_owned()], "the first server keeps the bare name");
    assert!(!tools.iter().any(|t| t["name"].as_str().unwrap().starts_with("first__")), "no default prefix");

    // Reported, naming both servers.
    let body: serde_json::Value = app.get("/mcp/servers").await.json().await.unwrap();
    let collisions = body["collisions"].as_array().unwrap();
    assert!(
        collisions.iter().any(|c| {
            let c = c.as_str().unwrap();
            c.contains("`echo`") && c.contains("`second`") && c.contains("`first`")
        }),
        "{body}"
    );

    // The same names on the REST API and in chat.
    let (status, result) = app.call_tool("t3-echo", json!({"text": "prefixed"})).await;
    assert_eq!((status, first_text(&result)), (200, "prefixed"), "{result}");
    let chat: serde_json::Value = app
        .post("/v1/chat/completions", &json!({"model": "m", "messages": [{"role": "user", "content": "echo"}]}))
        .await
        .json()
        .await
        .unwrap();
    assert!(chat.to_string().contains("Echoed."), "{chat}");
    let sent = llm.chat_requests().pop().unwrap();
    let tool = sent["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap().clone();
    assert_eq!(tool["content"], "bare", "{tool}");

    // A key's policy names `<server>__<tool>` whatever the prefix: `second`'s tools lost the
    // collision, so this key sees none named `echo`, and none of `first`'s.
    app.key = Some("sk-second-0123456789".into());
    let body: serde_json::Value = app.get("/mcp/tools/list").await.json().await.unwrap();
    let names: Vec<&str> = body["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(!names.contains(&"echo") && names.iter().all(|n| !n.starts_with("t3-")), "{names:?}");
    assert!(body.get("collisions").is_none());
}

#[test]
fn a_prefix_must_be_a_name_part() {
    let yaml = "mcpServers:\n  s:\n    command: x\n    prefix: \"a b\"\n";
    let err = mcp_middleware::config::load_str(yaml, &std::collections::HashMap::<String, String>::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("mcpServers.s.prefix"), "{err}");
}
