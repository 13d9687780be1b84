//! The MCP facade at `/mcp`: the aggregated catalog as one MCP server over streamable HTTP, in
//! both protocol eras, behind the same keys and permissions as chat and REST; real clients
//! (rmcp's, and the official MCP Inspector CLI) list and call through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::common::peers::{TEST_SERVER, everything, inspector_cli, memory_server};

/// A client that counts `notifications/tools/list_changed`.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicUsize>);

impl ClientHandler for Counting {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("facade-test", "0"))
    }
}

fn transport(app: &TestApp, key: Option<&str>) -> StreamableHttpClientTransport<reqwest::Client> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(app.url("/mcp"));
    if let Some(key) = key {
        config.auth_header = Some(key.to_owned());
    }
    StreamableHttpClientTransport::with_client(reqwest::Client::new(), config)
}

async fn connect(
    app: &TestApp,
    key: Option<&str>,
    new_era: bool,
    handler: Counting,
) -> RunningService<RoleClient, Counting> {
    if new_era {
        let mode = ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::V_2025_11_25),
        };
        handler.serve_with_lifecycle(transport(app, key), mode).await.expect("new-era client connects")
    } else {
        handler.serve(transport(app, key)).await.expect("handshake-era client connects")
    }
}

async fn names(client: &RunningService<RoleClient, Counting>) -> Vec<String> {
    client.peer().list_all_tools().await.unwrap().into_iter().map(|t| t.name.into_owned()).collect()
}

async fn echo(client: &RunningService<RoleClient, Counting>, name: &str, text: &str) -> Value {
    let mut params = CallToolRequestParams::new(name.to_owned());
    params.arguments = json!({"text": text}).as_object().cloned();
    serde_json::to_value(client.peer().call_tool(params).await.unwrap()).unwrap()
}

async fn gateway(extra: &str) -> TestApp {
    let ev = everything();
    let yaml = format!(
        "mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n  ev:\n    command: node\n    args: [\"{ev}\", stdio]\n{extra}"
    );
    let mut app = TestApp::spawn(&yaml).await;
    if extra.contains("sk-admin") {
        app.key = Some("sk-admin".into());
    }
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo") && n.iter().any(|t| t == "ev__get-env")).await;
    app
}

#[tokio::test]
async fn both_protocol_eras_list_and_call_through_the_facade() {
    let app = gateway("").await;
    for new_era in [false, true] {
        let client = connect(&app, None, new_era, Counting::default()).await;
        let version = client.peer_info().map(|i| i.protocol_version.clone()).unwrap();
        let want = if new_era { ProtocolVersion::V_2026_07_28 } else { ProtocolVersion::LATEST_WITH_INITIALIZE };
        assert_eq!(version, want, "new era: {new_era}");
        let listed = names(&client).await;
        assert!(listed.iter().any(|n| n == "ts__echo") && listed.iter().any(|n| n == "ev__get-sum"), "{listed:?}");
        let result = echo(&client, "ts__echo", "through the facade").await;
        assert_eq!(result["content"][0]["text"], "through the facade", "{result}");
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn keys_and_permissions_hold_on_the_facade() {
    let keys = "auth:\n  api_keys: [sk-admin]\n  keys:\n    - key: sk-echo\n      tools: [\"*__*echo\"]\n";
    let app = gateway(keys).await;
    let anonymous = app
        .client
        .post(app.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401, "no key, no MCP");
    for new_era in [false, true] {
        let restricted = connect(&app, Some("sk-echo"), new_era, Counting::default()).await;
        let mut listed = names(&restricted).await;
        listed.sort();
        assert_eq!(listed, ["ev__echo", "ts__echo"], "new era: {new_era}");
        let mut params = CallToolRequestParams::new("ev__get-env");
        params.arguments = Some(Default::default());
        let refused = restricted.peer().call_tool(params).await;
        assert!(refused.is_err(), "a tool outside the key's policy does not run");
        assert_eq!(echo(&restricted, "ts__echo", "ok").await["content"][0]["text"], "ok");
        restricted.cancel().await.unwrap();
    }
    let admin = connect(&app, Some("sk-admin"), false, Counting::default()).await;
    assert!(names(&admin).await.len() > 10);
    admin.cancel().await.unwrap();
}

#[tokio::test]
async fn catalog_changes_reach_connected_sessions() {
    let app = gateway("").await;
    let handler = Counting::default();
    let heard = handler.0.clone();
    let client = connect(&app, None, false, handler).await;
    let before = names(&client).await.len();
    // An announcement of the start-up catalog may still come (each is sent 200 ms after its
    // change): what the session heard once that is over is the baseline.
    let mut settled = heard.load(Ordering::SeqCst);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        let now = heard.load(Ordering::SeqCst);
        if now == settled {
            break;
        }
        settled = now;
    }
    let mut params = CallToolRequestParams::new("ts__list_change");
    params.arguments = Some(Default::default());
    client.peer().call_tool(params).await.unwrap();
    // The session hears of this change, and lists the new tool.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while heard.load(Ordering::SeqCst) == settled {
        assert!(std::time::Instant::now() < deadline, "no tools/list_changed reached the session");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    loop {
        let now = names(&client).await.len();
        if now == before + 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new tool is listed: {now} tools, {before} before");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_official_mcp_inspector_lists_and_calls_through_the_facade() {
    let app = gateway("").await;
    let cli = inspector_cli();
    let run = move |args: Vec<String>| {
        let output = std::process::Command::new("node").arg(cli).args(&args).output().expect("run the Inspector CLI");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{args:?}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        stdout
    };
    let url = app.url("/mcp");
    let listed = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run(vec![url, "--method".into(), "tools/list".into()])
    })
    .await
    .unwrap();
    let listed: Value = serde_json::from_str(&listed).expect("the Inspector prints JSON");
    let tools: Vec<&str> = listed["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(tools.contains(&"ts__echo") && tools.contains(&"ev__get-sum"), "{tools:?}");
    let called = tokio::task::spawn_blocking(move || {
        run(vec![
            url,
            "--method".into(),
            "tools/call".into(),
            "--tool-name".into(),
            "ts__echo".into(),
            "--tool-arg".into(),
            "text=from the inspector".into(),
        ])
    })
    .await
    .unwrap();
    assert!(called.contains("from the inspector"), "{called}");
}

/// The hub talks to servers of either era: `server/discover` first, the `initialize`
/// handshake when the server knows only that — offering the newest version that has one (the
/// handshake-only test server refuses an `initialize` offering 2026-07-28, as the conformance
/// suite's `initialize` scenario does); `/mcp/servers` shows what was negotiated.
#[tokio::test]
async fn the_hub_speaks_both_eras_to_its_servers() {
    let http_new = crate::common::peers::HttpPeer::test_server_with("http", 0, &["--era", "new"]).await;
    let ev = everything();
    let yaml = format!(
        "mcpServers:\n\
         \x20 new:\n    command: {TEST_SERVER}\n    args: [--era, new, stdio]\n\
         \x20 old:\n    command: {TEST_SERVER}\n    args: [--era, legacy, stdio]\n\
         \x20 both:\n    command: {TEST_SERVER}\n    args: [stdio]\n\
         \x20 newhttp:\n    url: {}/mcp\n\
         \x20 ev:\n    command: node\n    args: [\"{ev}\", stdio]\n\
         \x20 memory:\n    command: node\n    args: [\"{memory}\"]\n",
        http_new.base(),
        memory = memory_server(),
    );
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| {
        ["new", "old", "both", "newhttp", "ev", "memory"]
            .iter()
            .all(|s| n.iter().any(|t| t.starts_with(&format!("{s}__"))))
    })
    .await;
    let servers = app.servers().await;
    let version = |name: &str| servers[name]["protocol_version"].as_str().unwrap_or_default().to_owned();
    assert_eq!(version("new"), "2026-07-28");
    assert_eq!(version("newhttp"), "2026-07-28");
    assert_eq!(version("both"), "2026-07-28", "a server of both eras gets the new one");
    assert_eq!(version("old"), "2025-11-25", "a handshake-only server gets the handshake");
    // Official TypeScript servers answer `server/discover` with an error rmcp cannot pair with
    // its request: the handshake is used instead.
    assert_eq!(version("ev"), "2025-11-25");
    assert_eq!(version("memory"), "2025-11-25");
    for server in ["new", "old", "newhttp"] {
        let (status, result) = app.call_tool(&format!("{server}__echo"), json!({"text": server})).await;
        assert_eq!((status, crate::common::first_text(&result)), (200, server), "{result}");
    }
}

/// Resources through the facade, in both eras: listed (the servers' lists merged) and read
/// back; a key limited to `ts` sees none of `ev`'s, and reading one is "not found".
#[tokio::test]
async fn resources_are_listed_and_read_through_the_facade() {
    let app = gateway("auth:\n  api_keys: [sk-admin]\n  keys:\n    - key: sk-ts\n      servers: [ts]\n").await;
    for new_era in [false, true] {
        let client = connect(&app, Some("sk-admin"), new_era, Counting::default()).await;
        let resources = client.peer().list_all_resources().await.unwrap();
        let features = resources.iter().find(|r| r.name == "features.md").expect("server-everything's document");
        let read = client
            .peer()
            .read_resource(rmcp::model::ReadResourceRequestParams::new(features.uri.clone()))
            .await
            .unwrap();
        let read = serde_json::to_value(&read).unwrap();
        assert!(read["contents"][0]["text"].as_str().is_some_and(|t| !t.is_empty()), "{read}");
        let _ = client.cancel().await;
    }
    let narrow = connect(&app, Some("sk-ts"), false, Counting::default()).await;
    let theirs = narrow.peer().list_all_resources().await.unwrap();
    assert!(theirs.iter().all(|r| !r.uri.starts_with("demo://")), "{theirs:?}");
    let refused = narrow
        .peer()
        .read_resource(rmcp::model::ReadResourceRequestParams::new("demo://resource/static/document/features.md"))
        .await;
    assert!(refused.is_err(), "{refused:?}");
}

/// Prompts through the facade: listed with the gateway's names and got with arguments.
#[tokio::test]
async fn prompts_are_listed_and_got_through_the_facade() {
    let app = gateway("").await;
    let client = connect(&app, None, false, Counting::default()).await;
    let prompts = client.peer().list_all_prompts().await.unwrap();
    assert!(prompts.iter().any(|p| p.name == "ev__args-prompt"), "{prompts:?}");
    let mut params = rmcp::model::GetPromptRequestParams::new("ev__args-prompt");
    params.arguments = json!({"city": "Oslo"}).as_object().cloned();
    let got = serde_json::to_value(client.peer().get_prompt(params).await.unwrap()).unwrap();
    assert_eq!(got["messages"][0]["content"]["text"], "What's weather in Oslo?", "{got}");
}
