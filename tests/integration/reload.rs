//! Hot reload on the real binary: a server added while a streaming chat runs (the stream
//! finishes, the new tools appear), a broken edit refused with the old config still serving, and
//! a plain file change (no signal) picked up too; and an MCP facade session, with a call in
//! flight, that goes on through a reload.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::peers::TEST_SERVER;
use crate::common::process::GatewayProcess;
use crate::common::{FakeLlm, chunks, sse_payloads, streamed_text};

fn config(upstream: &str, servers: &[&str]) -> String {
    let mut yaml = format!("upstream:\n  base_url: {upstream}\nbuiltin_tools:\n  enabled: false\nmcpServers:\n");
    for name in servers {
        yaml.push_str(&format!("  {name}:\n    command: {TEST_SERVER}\n    args: [stdio]\n"));
    }
    yaml
}

async fn tool_names(gw: &GatewayProcess) -> Vec<String> {
    let body: Value = reqwest::get(gw.url("/mcp/tools/list")).await.unwrap().json().await.unwrap();
    body["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

async fn wait_for_tools(gw: &GatewayProcess, what: &str, pred: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let names = tool_names(gw).await;
        if pred(&names) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: tools are {names:?}\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn config_changes_apply_without_dropping_requests() {
    let llm = FakeLlm::new().text("The answer, after the reload.").gated().start().await;
    let gw = GatewayProcess::spawn(&config(&llm.url, &["one"]), &[]).await;
    wait_for_tools(&gw, "start", |n| n.iter().any(|t| t == "one__echo")).await;

    // A streaming chat is under way (the model holds after its first chunk) …
    let chat = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let url = gw.url("/v1/chat/completions");
    let streaming = tokio::spawn(async move {
        let resp = reqwest::Client::new().post(url).json(&chat).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // … when a server is added and SIGHUP sent.
    std::fs::write(gw.config_path(), config(&llm.url, &["one", "two"])).unwrap();
    gw.hangup();
    wait_for_tools(&gw, "after adding `two`", |n| n.iter().any(|t| t == "two__echo")).await;
    gw.wait_for_log(|l| l.contains("config reloaded")).await;
    llm.release();
    let body = tokio::time::timeout(Duration::from_secs(20), streaming).await.expect("the stream finished").unwrap();
    let payloads = sse_payloads(&body);
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"), "{body}");
    assert!(streamed_text(&chunks(&payloads)).contains("after the reload"), "{body}");

    // A broken edit is refused; the running config keeps serving.
    std::fs::write(gw.config_path(), "mcpServers: [1, 2\n").unwrap();
    gw.hangup();
    gw.wait_for_log(|l| l.contains("config reload refused")).await;
    let names = tool_names(&gw).await;
    assert!(names.iter().any(|t| t == "one__echo") && names.iter().any(|t| t == "two__echo"), "{names:?}");
    let plain =
        json!({"model": "m", "messages": [{"role": "user", "content": "still there?"}], "mcp": {"enabled": false}});
    let resp = reqwest::Client::new().post(gw.url("/v1/chat/completions")).json(&plain).send();
    llm.release();
    assert_eq!(resp.await.unwrap().status(), 200);

    // A plain file change, no signal: `one` goes.
    std::fs::write(gw.config_path(), config(&llm.url, &["two"])).unwrap();
    wait_for_tools(&gw, "after removing `one`", |n| {
        !n.iter().any(|t| t.starts_with("one__")) && n.iter().any(|t| t == "two__echo")
    })
    .await;
    gw.stop().await;
}

/// A facade client that counts `notifications/tools/list_changed`.
#[derive(Clone, Default)]
struct Listening(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl rmcp::ClientHandler for Listening {
    async fn on_tool_list_changed(&self, _context: rmcp::service::NotificationContext<rmcp::RoleClient>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_facade_session_and_its_call_in_flight_survive_a_reload() {
    use rmcp::ServiceExt;
    let gw = GatewayProcess::spawn(&config("http://127.0.0.1:9/v1", &["one"]), &[]).await;
    wait_for_tools(&gw, "start", |n| n.iter().any(|t| t == "one__slow")).await;
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(gw.url("/mcp"));
    let listening = Listening::default();
    let client = listening.clone().serve(transport).await.expect("the client connects");
    let peer = client.peer().clone();
    let call = tokio::spawn(async move {
        let mut params = rmcp::model::CallToolRequestParams::new("one__slow");
        params.arguments = json!({"ms": 3000, "steps": 3}).as_object().cloned();
        peer.call_tool(params).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    std::fs::write(gw.config_path(), config("http://127.0.0.1:9/v1", &["one", "two"])).unwrap();
    gw.hangup();
    gw.wait_for_log(|l| l.contains("config reloaded")).await;
    wait_for_tools(&gw, "after adding `two`", |n| n.iter().any(|t| t == "two__echo")).await;

    let done = tokio::time::timeout(Duration::from_secs(20), call).await.expect("the call finished").unwrap();
    let done = done.expect("the call in flight completed");
    assert_ne!(done.is_error, Some(true), "{done:?}");
    // The same session goes on, seeing the new server's tools (and having been told).
    let names: Vec<String> = client
        .peer()
        .list_all_tools()
        .await
        .expect("the session survived")
        .into_iter()
        .map(|t| t.name.into())
        .collect();
    assert!(names.iter().any(|t| t == "two__echo"), "{names:?}");
    assert!(listening.0.load(std::sync::atomic::Ordering::SeqCst) > 0, "told about the change");
    gw.stop().await;
}
