//! The fault suite: each case provokes a failure of a real peer and asserts defined behaviour,
//! then that the gateway serves the next request.
//!
//! The cases that live beside the feature they exercise:
//! - stdio child killed mid-call: `mcp::a_crashed_stdio_server_fails_fast_restarts_and_others_never_notice`
//! - HTTP server restarted, 404 for the old session: `mcp::a_restarted_http_server_gets_a_new_session_without_failing_a_request`
//! - slow tool past its timeout: `mcp::tool_errors_timeouts_and_progress`
//! - client disconnect mid-stream: `agent::a_client_that_disconnects_mid_call_cancels_it_on_the_mcp_server`
//! - artifact store down: `artifacts::an_unavailable_store_degrades_and_the_loop_still_answers`,
//!   `s3::wrong_credentials_or_a_dead_s3_degrade_and_the_loop_still_answers` (dead and frozen S3)
//! - config reload under traffic: `reload::config_changes_apply_without_dropping_requests`
//!
//! Here: restarts answering 400 and 404, a silent server, HTTP and SSE servers killed mid-call,
//! every upstream failure, the shutdown grace running out, SIGTERM with tool rounds in flight.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::peers::HttpPeer;
use crate::common::process::GatewayProcess;
use crate::common::{TestApp, first_text};

/// A streamable-HTTP server restarted on the same port forgets its sessions (server-everything
/// answers the old session id with 400, rmcp's server with 404 as the specification says): the
/// gateway notices, starts a new session and the next call goes through.
#[tokio::test]
async fn a_restarted_streamable_http_server_is_recovered() {
    restarted_everything().await;
    // Our rmcp test server in the handshake era (sessions; the new era keeps none).
    let server = HttpPeer::test_server_with("http", 0, &["--era", "legacy"]).await;
    let port = server.port;
    let yaml = format!("mcpServers:\n  ts:\n    url: http://127.0.0.1:{port}/mcp\n    tool_timeout: 10s\n");
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    assert_eq!(app.call_tool("ts__echo", json!({"text": "before"})).await.0, 200);
    server.kill().await;
    let _restarted = HttpPeer::test_server_with("http", port, &["--era", "legacy"]).await;
    let started = Instant::now();
    loop {
        let (status, body) = app.call_tool("ts__echo", json!({"text": "after"})).await;
        if status == 200 {
            assert_eq!(first_text(&body), "after");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never recovered: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn restarted_everything() {
    let server = HttpPeer::everything("streamableHttp").await;
    let port = server.port;
    let yaml = format!("mcpServers:\n  ev:\n    url: http://127.0.0.1:{port}/mcp\n    tool_timeout: 10s\n");
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ev__echo")).await;
    let (status, _) = app.call_tool("ev__echo", json!({"message": "before"})).await;
    assert_eq!(status, 200);

    server.kill().await;
    let _restarted = HttpPeer::everything_on("streamableHttp", port).await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    loop {
        let (status, body) = app.call_tool("ev__echo", json!({"message": "after"})).await;
        if status == 200 {
            assert_eq!(first_text(&body), "Echo: after");
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {status} {body}\n{:?}", app.servers().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(10), "recovered only after {:?}", started.elapsed());
}

/// A server that stops answering (here: frozen with SIGSTOP, its socket still accepting): each
/// call times out `tool_timeout` after it started, in parallel — calls never queue behind each
/// other — and once the server answers again, so do calls. On the real binary, over streamable
/// HTTP and legacy SSE.
#[tokio::test]
async fn calls_to_a_silent_server_time_out_each_on_its_own() {
    for mode in ["http", "sse"] {
        silent_server(mode).await;
    }
}

async fn silent_server(mode: &str) {
    let server = HttpPeer::test_server(mode, 0).await;
    let path = if mode == "sse" { "sse" } else { "mcp" };
    let yaml = format!(
        "mcpServers:\n  ts:\n    url: {}/{path}\n    tool_timeout: 2s\nbuiltin_tools:\n  enabled: false\n",
        server.base()
    );
    let gw = GatewayProcess::spawn(&yaml, &[]).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let call = |text: String| {
        let request =
            client.post(gw.url("/mcp/tools/call")).json(&json!({"name": "ts__echo", "arguments": {"text": text}}));
        async move {
            let resp = request.send().await.unwrap_or_else(|e| panic!("not answered within 20 s: {e}"));
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while call("ready?".into()).await.0 != 200 {
        assert!(Instant::now() < deadline, "{mode}: never ready\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = nix::unistd::Pid::from_raw(server.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let started = Instant::now();
    let calls = (0..4).map(|i| {
        let call = &call;
        async move {
            let (status, _) = call(format!("call {i}")).await;
            (status, started.elapsed())
        }
    });
    let Ok(results) = tokio::time::timeout(Duration::from_secs(15), futures_util::future::join_all(calls)).await else {
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
        panic!("{mode}: calls to a frozen server did not time out\n{}", gw.logs());
    };
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    // Each ends about `tool_timeout` (2 s) after it started, together: calls queued behind
    // each other would end 2 s apart.
    for (status, took) in &results {
        assert_eq!(*status, 504, "{mode}: {results:?}");
        assert!(*took < Duration::from_secs(6), "{mode}: a call waited behind others: {results:?}");
    }
    let first = results.iter().map(|(_, took)| *took).min().unwrap_or_default();
    let last = results.iter().map(|(_, took)| *took).max().unwrap_or_default();
    assert!(last - first < Duration::from_millis(1500), "{mode}: a call waited behind others: {results:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = call("awake".into()).await;
        if status == 200 {
            assert_eq!(first_text(&body), "awake");
            break;
        }
        assert!(Instant::now() < deadline, "{mode}: the server answers again but calls do not: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gw.stop().await;
}

/// A stream still running when the shutdown grace period runs out ends cleanly: an error event
/// that says why, then `[DONE]` — never a cut connection.
#[tokio::test]
async fn streams_cut_by_the_grace_period_end_with_an_error_and_done() {
    let llm = crate::common::FakeLlm::new().text("a long answer that never finishes").gated().start().await;
    let app = TestApp::in_front_of(&llm, "limits:\n  shutdown_grace: 300ms\n").await;
    let resp = app
        .post(
            "/v1/chat/completions",
            &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let reading = tokio::spawn(async move { resp.text().await.unwrap_or_default() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    app.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let body = tokio::time::timeout(Duration::from_secs(5), reading).await.expect("the stream ended").unwrap();
    let payloads = crate::common::sse_payloads(&body);
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"), "{body}");
    assert!(payloads.iter().any(|p| p.contains("shutting_down")), "{body}");
}

/// A streamable-HTTP server killed in the middle of a call, and a legacy SSE server whose event
/// stream is cut the same way: the call fails at once (not at its `tool_timeout`), and the server
/// is used again once it is back.
#[tokio::test]
async fn an_http_server_killed_mid_call_fails_the_call_at_once() {
    for mode in ["http", "sse"] {
        killed_mid_call(mode).await;
    }
}

async fn killed_mid_call(mode: &str) {
    let server = HttpPeer::test_server(mode, 0).await;
    let port = server.port;
    let path = if mode == "sse" { "sse" } else { "mcp" };
    let yaml = format!("mcpServers:\n  ts:\n    url: {}/{path}\n    tool_timeout: 30s\n", server.base());
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__slow")).await;
    let started = Instant::now();
    let call = app.call_tool("ts__slow", json!({"ms": 20000, "steps": 40}));
    let kill = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        server.kill().await;
    };
    let ((status, body), ()) = tokio::join!(call, kill);
    assert!(status >= 500, "{mode}: {status} {body}");
    assert!(started.elapsed() < Duration::from_secs(8), "{mode}: noticed only after {:?}: {body}", started.elapsed());
    let _back = HttpPeer::test_server(mode, port).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = app.call_tool("ts__echo", json!({"text": "back"})).await;
        if status == 200 {
            assert_eq!(first_text(&body), "back");
            break;
        }
        assert!(Instant::now() < deadline, "{mode}: never used again: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The upstream fails in every way it can, one after another on one gateway — 429, 500, silence
/// past `read_timeout`, a connection reset in the middle of a stream — and each failure gets its
/// defined answer while the request after it is served normally.
#[tokio::test]
async fn upstream_faults_each_get_their_answer_and_the_next_request_is_served() {
    use crate::common::{FakeLlm, Turn, chunks, sse_data, streamed_text};
    let limited = json!({"error": {"message": "slow down", "type": "rate_limit_error", "code": "429"}});
    let llm = FakeLlm::new()
        .status(429, limited.clone(), Some("3"))
        .text("one")
        .status(500, json!({"error": {"message": "boom"}}), None)
        .text("two")
        .turn(Turn::Hang)
        .text("three")
        .turn(Turn::BreakMidStream("partial answer".into()))
        .text("four")
        .start()
        .await;
    let app = TestApp::in_front_of(&llm, "  read_timeout: 500ms\n  max_retries: 0\n").await;
    let chat = |stream: bool| {
        let body = json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
        let app = &app;
        async move { app.post("/v1/chat/completions", &body).await }
    };
    let next = |expected: &'static str| async move {
        let data = sse_data(chat(true).await).await;
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        assert_eq!(streamed_text(&chunks(&data)), expected, "{data:?}");
    };

    let resp = chat(false).await;
    assert_eq!((resp.status().as_u16(), resp.headers()["retry-after"].to_str().unwrap()), (429, "3"));
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap(), limited);
    next("one").await;

    let resp = chat(false).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["error"]["type"], "upstream_error");
    next("two").await;

    let started = Instant::now();
    let resp = chat(false).await;
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    next("three").await;

    let data = sse_data(chat(true).await).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let broken = chunks(&data);
    assert_eq!(broken.last().unwrap()["error"]["type"], "upstream_error", "{data:?}");
    next("four").await;
    assert_eq!(llm.chat_requests().len(), 8, "no retries of requests that reached the model");
}

/// SIGTERM to the real binary while a streaming and a non-streaming chat are in the middle of a
/// tool round: both finish with their answers, the process stops accepting, exits 0 and leaves
/// no MCP child behind.
#[tokio::test]
async fn sigterm_drains_tool_rounds_in_flight_and_exits_cleanly() {
    use crate::common::peers::TEST_SERVER;
    use crate::common::{FakeLlm, Turn, chunks, sse_data, streamed_text};
    let slow = ("ts__slow".to_owned(), json!({"ms": 1500, "steps": 3}));
    let llm = FakeLlm::new().turn(Turn::ToolRound { calls: vec![slow], text: "drained".into() }).start().await;
    let yaml = format!(
        "upstream:\n  base_url: {}\nmcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\nbuiltin_tools:\n  enabled: false\n",
        llm.url
    );
    let gw = GatewayProcess::spawn(&yaml, &[]).await;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.children("mcp-test-server").is_empty() {
        assert!(Instant::now() < deadline, "the stdio server never started\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.wait_for_tool(None, "ts__slow").await;
    let children = gw.children("mcp-test-server");
    let chat = |stream: bool| {
        let body = json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "slow"}]});
        client.post(gw.url("/v1/chat/completions")).json(&body).send()
    };
    let streaming = tokio::spawn(chat(true));
    let plain = tokio::spawn(chat(false));
    // Both first rounds reached the model: the slow tool calls are running.
    let deadline = Instant::now() + Duration::from_secs(10);
    while llm.chat_requests().len() < 2 {
        assert!(Instant::now() < deadline, "the chats never reached the model\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.terminate();
    // The listener closes at once on SIGTERM (a process scheduled late closes it late).
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.get(gw.url("/health/liveliness")).send().await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting while draining\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let data = sse_data(streaming.await.unwrap().expect("the stream was answered")).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    assert!(streamed_text(&chunks(&data)).ends_with("drained"), "{data:?}");
    let plain: serde_json::Value = plain.await.unwrap().expect("answered").json().await.unwrap();
    assert!(plain["choices"][0]["message"]["content"].as_str().unwrap().ends_with("drained"), "{plain}");
    assert_eq!(llm.chat_requests().len(), 4, "each chat finished its second round");

    let status = gw.wait_exit().await;
    assert!(status.success(), "{status:?}");
    for pid in children {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "MCP child {pid} left behind");
    }
}

/// A server that accepts and never answers (frozen with SIGSTOP) no longer stays `ready` for
/// ever: unanswered pings restart its connection, its tools leave the catalog once it has been
/// down for `withdraw_after`, and they come back when it answers again.
#[tokio::test]
async fn a_wedged_server_is_restarted_and_its_tools_withdrawn() {
    let server = HttpPeer::test_server("http", 0).await;
    let yaml = format!(
        "mcpServers:\n  ts:\n    url: {}/mcp\n    ping_interval: 300ms\n    withdraw_after: 2s\n    startup_timeout: 2s\n\
         builtin_tools:\n  enabled: false\n",
        server.base()
    );
    let gw = GatewayProcess::spawn(&yaml, &[]).await;
    let names = || async {
        let body: serde_json::Value = reqwest::get(gw.url("/mcp/tools/list")).await.unwrap().json().await.unwrap();
        body["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let state = || async {
        let body: serde_json::Value = reqwest::get(gw.url("/mcp/servers")).await.unwrap().json().await.unwrap();
        body["servers"][0].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !names().await.contains(&"ts__echo".to_owned()) {
        assert!(Instant::now() < deadline, "never ready\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = nix::unistd::Pid::from_raw(server.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = state().await;
        if status["state"] != "ready" && !names().await.contains(&"ts__echo".to_owned()) {
            assert!(gw.logs().contains("no answer to three pings"), "restarted for its silence: {status}");
            break;
        }
        if Instant::now() > deadline {
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
            panic!("the wedged server stayed offered: {status}\n{}", gw.logs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !names().await.contains(&"ts__echo".to_owned()) {
        assert!(Instant::now() < deadline, "its tools never came back\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gw.stop().await;
}
