//! Who is asking, passed to HTTP MCP servers: `user_headers` templates filled per call from the
//! API key's configured user or, where the key is trusted to forward it, the user Open WebUI
//! sends (`X-OpenWebUI-User-*`, `X-OpenWebUI-Chat-Id`). Untrusted sources cannot set them, and
//! nothing that could break a header (CR/LF, overlong values) reaches one.

use serde_json::{Value, json};

use crate::common::peers::HttpPeer;
use crate::common::{FakeLlm, FakeLlmHandle, TestApp, first_text};

async fn gateway(llm: &FakeLlmHandle, web: &HttpPeer) -> TestApp {
    let yaml = format!(
        "auth:\n  api_keys: [sk-plain]\n  keys:\n\
         \x20   - key: sk-owui\n      trust_user_headers: true\n\
         \x20   - key: sk-bot\n      user: {{email: bot@example.com, name: Bot}}\n\
         mcpServers:\n  web:\n    url: {}/mcp\n    user_headers:\n      X-User: \"{{{{user.email}}}}\"\n      X-Chat: \"chat-{{{{chat.id}}}}\"\n      X-Who: \"{{{{user.name}}}}\"\n",
        web.base()
    );
    let mut app = TestApp::in_front_of(llm, &yaml).await;
    app.key = Some("sk-plain".into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "web__headers")).await;
    app
}

async fn seen_headers(app: &TestApp, key: &str, forwarded: &[(&str, &str)]) -> Value {
    let mut req = app.client.post(app.url("/mcp/tools/call")).bearer_auth(key);
    for (name, value) in forwarded {
        req = req.header(*name, *value);
    }
    let resp = req.json(&json!({"name": "web__headers", "arguments": {}})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    serde_json::from_str(first_text(&body)).unwrap()
}

const ALICE: [(&str, &str); 3] = [
    ("X-OpenWebUI-User-Email", "alice@example.com"),
    ("X-OpenWebUI-User-Name", "Alice"),
    ("X-OpenWebUI-Chat-Id", "c-42"),
];

#[tokio::test]
async fn trusted_forwarded_users_reach_http_servers_and_others_cannot_pose() {
    let web = HttpPeer::test_server("http", 0).await;
    let llm = FakeLlm::new().tool_call("web__headers", json!({})).text("Done.").start().await;
    let app = gateway(&llm, &web).await;

    let trusted = seen_headers(&app, "sk-owui", &ALICE).await;
    assert_eq!(trusted["x-user"], "alice@example.com", "{trusted}");
    assert_eq!(trusted["x-chat"], "chat-c-42");
    assert_eq!(trusted["x-who"], "Alice");

    let untrusted = seen_headers(&app, "sk-plain", &ALICE).await;
    assert!(untrusted.get("x-user").is_none() && untrusted.get("x-chat").is_none(), "{untrusted}");

    // A key with its own user: forwarded headers cannot replace it.
    let bot = seen_headers(&app, "sk-bot", &[("X-OpenWebUI-User-Email", "mallory@example.com")]).await;
    assert_eq!(bot["x-user"], "bot@example.com", "{bot}");
    assert_eq!(bot["x-who"], "Bot");
    assert!(bot.get("x-chat").is_none(), "no chat id, no header");

    // A comma list, or the header twice (a proxy appending its own), names nobody.
    let list =
        seen_headers(&app, "sk-owui", &[("X-OpenWebUI-User-Email", "alice@example.com, admin@example.com")]).await;
    assert!(list.get("x-user").is_none(), "a list is not sent: {list}");
    let twice = seen_headers(
        &app,
        "sk-owui",
        &[("X-OpenWebUI-User-Email", "alice@example.com"), ("X-OpenWebUI-User-Email", "admin@example.com")],
    )
    .await;
    assert!(twice.get("x-user").is_none(), "a repeated header is not sent: {twice}");
    let comma_name = seen_headers(&app, "sk-owui", &[("X-OpenWebUI-User-Name", "Doe, Jane")]).await;
    assert_eq!(comma_name["x-who"], "Doe, Jane", "names may hold commas");

    let long = "a".repeat(300);
    let overlong = seen_headers(&app, "sk-owui", &[("X-OpenWebUI-User-Email", long.as_str())]).await;
    assert!(overlong.get("x-user").is_none(), "an overlong value is not sent: {overlong}");

    // Through the tool loop, the same.
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "who am I"}]});
    let mut req = app.client.post(app.url("/v1/chat/completions")).bearer_auth("sk-owui");
    for (name, value) in ALICE {
        req = req.header(name, value);
    }
    assert_eq!(req.json(&chat).send().await.unwrap().status(), 200);
    let sent = llm.chat_requests().pop().unwrap();
    let tool = sent["messages"].as_array().unwrap().iter().rev().find(|m| m["role"] == "tool").unwrap().clone();
    assert!(tool["content"].as_str().unwrap().contains("alice@example.com"), "{tool}");
}

#[test]
fn identities_that_could_break_a_header_are_refused_by_the_config() {
    let yaml = "auth:\n  keys:\n    - key: sk-x\n      user: {email: \"a@b\\r\\nX-Admin: 1\"}\n";
    let err = mcp_middleware::config::load_str(yaml, &std::collections::HashMap::<String, String>::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("auth.keys[0].user.email") && err.contains("CR/LF"), "{err}");
    let stdio = "mcpServers:\n  s:\n    command: x\n    user_headers: {X-User: \"{{user.email}}\"}\n";
    let err = mcp_middleware::config::load_str(stdio, &std::collections::HashMap::<String, String>::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("only HTTP servers"), "{err}");
    let unknown = "mcpServers:\n  s:\n    url: http://h/mcp\n    user_headers: {X-User: \"{{user.password}}\"}\n";
    let err = mcp_middleware::config::load_str(unknown, &std::collections::HashMap::<String, String>::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown placeholder"), "{err}");
}
