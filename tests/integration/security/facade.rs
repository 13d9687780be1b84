//! The MCP facade attacked: a key opening sessions without end (each held 300 s and a few
//! dozen KB), a key using or closing another key's session, and a narrowing header the
//! gateway cannot read (it used to mean "the whole catalog" here, where chat and REST refuse it).

use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

use crate::common::TestApp;
use crate::common::peers::TEST_SERVER;
use crate::common::process::GatewayProcess;

const KEYS: &str = "auth:\n  api_keys: [sk-facade-a-0123, sk-facade-b-0123]\n";

/// Sends `initialize`; the status and the session id it got.
async fn open(client: &reqwest::Client, url: &str, key: &str) -> (u16, Option<String>) {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "flood", "version": "1"}}});
    let resp = client
        .post(url)
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    let id = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (resp.status().as_u16(), id)
}

#[tokio::test]
async fn sessions_are_capped_per_key_and_bound_to_it() {
    let yaml = format!(
        "upstream:\n  base_url: http://127.0.0.1:1/v1\nbuiltin_tools:\n  enabled: false\n{KEYS}\
         mcp_facade:\n  max_sessions: 300\n  max_sessions_per_key: 200\n"
    );
    let gw = GatewayProcess::spawn(&yaml, &[]).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let url = gw.url("/mcp");
    let (rss_before, cpu_before) = (gw.rss_kib(), gw.cpu_secs());
    // Key A floods: 200 sessions, then 429 for the next 1,800 tries.
    let mut opened = Vec::new();
    let mut refused = 0;
    for _ in 0..2000 {
        match open(&client, &url, "sk-facade-a-0123").await {
            (200, Some(id)) => opened.push(id),
            (429, None) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let (rss, cpu) = (gw.rss_kib(), gw.cpu_secs() - cpu_before);
    println!(
        "2,000 session opens: {} open, {refused} refused, RSS {rss_before} → {rss} KiB, {cpu:.2} s CPU",
        opened.len()
    );
    assert_eq!(opened.len(), 200);
    assert!(rss < rss_before + 60 * 1024, "RSS grew from {rss_before} to {rss} KiB");
    // Key B still gets in (its own share) until the total of 300 is reached.
    let mut b = Vec::new();
    for _ in 0..150 {
        let (status, id) = open(&client, &url, "sk-facade-b-0123").await;
        if status == 429 {
            break;
        }
        b.push(id.unwrap());
    }
    assert_eq!(b.len(), 100, "the gateway-wide cap");

    // Key B cannot use or close key A's session.
    let victim = &opened[0];
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let stolen = client
        .post(&url)
        .bearer_auth("sk-facade-b-0123")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", victim)
        .json(&list)
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), 404);
    let delete = client.delete(&url).bearer_auth("sk-facade-b-0123").header("mcp-session-id", victim).send();
    assert_eq!(delete.await.unwrap().status(), 404);
    // Its owner can; closing frees room for a new one.
    let delete = client.delete(&url).bearer_auth("sk-facade-a-0123").header("mcp-session-id", victim).send();
    assert!(delete.await.unwrap().status().is_success());
    assert_eq!(open(&client, &url, "sk-facade-a-0123").await.0, 200);
    gw.stop().await;
}

#[tokio::test]
async fn an_unreadable_narrowing_header_fails_closed_on_the_facade() {
    let yaml = format!("mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n");
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let mut config = StreamableHttpClientTransportConfig::with_uri(app.url("/mcp"));
    config
        .custom_headers
        .insert(http::HeaderName::from_static("x-mcp-servers"), http::HeaderValue::from_bytes(b"ts\xff\xfe").unwrap());
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
    let client = ().serve(transport).await.expect("the handshake itself is fine");
    let listed = client.peer().list_all_tools().await;
    assert!(listed.is_err(), "an unreadable narrowing listed {:?}", listed.map(|t| t.len()));
    let mut call = rmcp::model::CallToolRequestParams::new("ts__echo");
    call.arguments = json!({"text": "x"}).as_object().cloned();
    assert!(client.peer().call_tool(call).await.is_err(), "an unreadable narrowing ran a tool");
}
