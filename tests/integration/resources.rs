//! Resources and prompts of every server through the REST API. Resources, with server-everything
//! twice: merged, a URI both list made unique (`mcp-middleware://<server>/…`) and read back from
//! the right server; a key restricted to one server sees only its resources, under their own
//! URIs, and cannot read the other's. Prompts: named like tools and got with their arguments.

use serde_json::Value;

use crate::common::TestApp;
use crate::common::peers::everything;

#[tokio::test]
async fn resources_of_every_server_are_listed_uniquely_and_read_back() {
    let ev = everything();
    let yaml = format!(
        "auth:\n  api_keys: [sk-all-0123456789]\n  keys:\n    - key: sk-ev-0123456789\n      servers: [ev]\n\
         builtin_tools:\n  enabled: false\n\
         mcpServers:\n  ev:\n    command: node\n    args: [\"{ev}\", stdio]\n  ev2:\n    command: node\n    args: [\"{ev}\", stdio]\n"
    );
    let mut app = TestApp::spawn(&yaml).await;
    app.key = Some("sk-all-0123456789".into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "ev__echo") && n.iter().any(|t| t == "ev2__echo")).await;

    let listed: Value = app.get("/mcp/resources").await.json().await.unwrap();
    let features: Vec<&Value> =
        listed["resources"].as_array().unwrap().iter().filter(|r| r["name"] == "features.md").collect();
    assert_eq!(features.len(), 2, "{listed}");
    let uri_of =
        |server: &str| features.iter().find(|r| r["server"] == server).unwrap()["uri"].as_str().unwrap().to_owned();
    assert!(uri_of("ev2").starts_with("mcp-middleware://ev2/demo"), "{listed}");
    let read: Value =
        app.get(&format!("/mcp/resources/read?uri={}", urlencode(&uri_of("ev2")))).await.json().await.unwrap();
    assert_eq!(read["contents"][0]["uri"], "demo://resource/static/document/features.md", "{read}");
    assert!(read["contents"][0]["text"].as_str().is_some_and(|t| !t.is_empty()), "{read}");

    // A key for `ev` only: its resources under their own URIs, and nothing of `ev2`.
    app.key = Some("sk-ev-0123456789".into());
    let mine: Value = app.get("/mcp/resources").await.json().await.unwrap();
    let resources = mine["resources"].as_array().unwrap();
    assert!(!resources.is_empty() && resources.iter().all(|r| r["server"] == "ev"), "{mine}");
    let own = "demo://resource/static/document/features.md";
    assert!(resources.iter().any(|r| r["uri"] == own), "{mine}");
    assert_eq!(app.get(&format!("/mcp/resources/read?uri={}", urlencode(own))).await.status(), 200);
    let other = app.get(&format!("/mcp/resources/read?uri={}", urlencode(&uri_of("ev2")))).await;
    assert_eq!(other.status(), 404, "another server's resource is not there for this key");
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Prompts of every server through the REST API, named like tools (`<server>__<prompt>`), got
/// back with their arguments; a key limited to another server sees none of them.
#[tokio::test]
async fn prompts_are_listed_named_like_tools_and_got_back() {
    let ev = everything();
    let yaml = format!(
        "auth:\n  api_keys: [sk-all-0123456789]\n  keys:\n    - key: sk-ts-0123456789\n      servers: [ts]\n\
         builtin_tools:\n  enabled: false\n\
         mcpServers:\n  ev:\n    command: node\n    args: [\"{ev}\", stdio]\n  ts:\n    command: {}\n    args: [stdio]\n",
        crate::common::peers::TEST_SERVER
    );
    let mut app = TestApp::spawn(&yaml).await;
    app.key = Some("sk-all-0123456789".into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "ev__echo") && n.iter().any(|t| t == "ts__echo")).await;
    let listed: Value = app.get("/mcp/prompts").await.json().await.unwrap();
    let names: Vec<&str> = listed["prompts"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(names.contains(&"ev__args-prompt") && names.contains(&"ev__simple-prompt"), "{listed}");
    let got = app
        .post("/mcp/prompts/get", &serde_json::json!({"name": "ev__args-prompt", "arguments": {"city": "Lyon"}}))
        .await;
    assert_eq!(got.status(), 200);
    let got: Value = got.json().await.unwrap();
    assert_eq!(got["messages"][0]["content"]["text"], "What's weather in Lyon?", "{got}");

    app.key = Some("sk-ts-0123456789".into());
    let theirs: Value = app.get("/mcp/prompts").await.json().await.unwrap();
    assert!(theirs["prompts"].as_array().unwrap().iter().all(|p| p["server"] == "ts"), "{theirs}");
    let refused = app.post("/mcp/prompts/get", &serde_json::json!({"name": "ev__simple-prompt"})).await;
    assert_eq!(refused.status(), 404);
}
