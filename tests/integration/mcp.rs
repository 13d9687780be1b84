//! The MCP hub against real servers: our `mcp-test-server` over stdio, streamable HTTP and legacy
//! SSE, and the official server-everything over the same three transports.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::peers::{HttpPeer, TEST_SERVER, everything};
use crate::common::{TestApp, first_text};

fn stdio(name: &str, extra: &str) -> String {
    format!("  {name}:\n    command: {TEST_SERVER}\n    args: [stdio]\n{extra}")
}

async fn app_with(servers: &str) -> TestApp {
    TestApp::spawn(&format!("mcpServers:\n{servers}")).await
}

#[tokio::test]
async fn same_tool_over_three_transports_gives_the_same_result() {
    let http = HttpPeer::test_server("http", 0).await;
    let sse = HttpPeer::test_server("sse", 0).await;
    let servers = format!(
        "{}  ts-http:\n    url: {}/mcp\n  ts-sse:\n    url: {}/sse\n",
        stdio("ts-stdio", ""),
        http.base(),
        sse.base()
    );
    let app = app_with(&servers).await;
    app.wait_for_tools(|n| {
        ["ts-stdio__echo", "ts-http__echo", "ts-sse__echo"].iter().all(|t| n.iter().any(|x| x == t))
    })
    .await;
    let servers = app.servers().await;
    assert_eq!(servers["ts-sse"]["transport"], "sse", "a URL ending in /sse selects the legacy transport");
    assert_eq!(servers["ts-http"]["transport"], "streamable-http");
    let mut results = Vec::new();
    for name in ["ts-stdio__echo", "ts-http__echo", "ts-sse__echo"] {
        let (status, result) = app.call_tool(name, json!({"text": "same everywhere"})).await;
        assert_eq!(status, 200, "{name}: {result}");
        results.push(result);
    }
    assert_eq!(first_text(&results[0]), "same everywhere");
    assert_eq!(results[0]["structuredContent"], json!({"text": "same everywhere"}));
    assert_eq!(results[0], results[1]);
    assert_eq!(results[1], results[2]);
}

#[tokio::test]
async fn server_everything_over_three_transports() {
    let sse = HttpPeer::everything("sse").await;
    let streamable = HttpPeer::everything("streamableHttp").await;
    let servers = format!(
        "  ev-stdio:\n    command: node\n    args: [\"{}\", stdio]\n  ev-sse:\n    url: {}/sse\n  ev-http:\n    url: {}/mcp\n",
        everything(),
        sse.base(),
        streamable.base()
    );
    let app = app_with(&servers).await;
    for server in ["ev-stdio", "ev-sse", "ev-http"] {
        let tools = app.wait_for_tools(|n| n.iter().any(|t| t == &format!("{server}__get-tiny-image"))).await;
        let listed = tools.iter().find(|t| t["name"] == format!("{server}__echo")).expect("echo listed");
        assert_eq!(listed["server"], server);
        assert_eq!(listed["original_name"], "echo");
        assert_eq!(listed["inputSchema"]["type"], "object");
        assert!(listed["inputSchema"].get("$schema").is_none());

        let (status, echo) = app.call_tool(&format!("{server}__echo"), json!({"message": "hi"})).await;
        assert_eq!(status, 200, "{echo}");
        assert!(first_text(&echo).contains("hi"), "{echo}");

        let (_, image) = app.call_tool(&format!("{server}__get-tiny-image"), json!({})).await;
        let blocks = image["content"].as_array().unwrap();
        let img = blocks.iter().find(|b| b["type"] == "image").expect("an image block");
        assert_eq!(img["mimeType"], "image/png");
        assert!(img["data"].as_str().unwrap().len() > 50);

        let (_, structured) =
            app.call_tool(&format!("{server}__get-structured-content"), json!({"location": "New York"})).await;
        assert!(structured["structuredContent"].is_object(), "{structured}");

        let (_, links) = app.call_tool(&format!("{server}__get-resource-links"), json!({"count": 2})).await;
        assert!(links["content"].as_array().unwrap().iter().any(|b| b["type"] == "resource_link"), "{links}");

        let (_, embedded) = app.call_tool(&format!("{server}__get-resource-reference"), json!({"resourceId": 2})).await;
        assert!(embedded["content"].as_array().unwrap().iter().any(|b| b["type"] == "resource"), "{embedded}");
    }
}

#[tokio::test]
async fn fifty_concurrent_calls_on_one_stdio_server_run_concurrently() {
    let app = app_with(&stdio("ts", "")).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__slow")).await;
    let started = Instant::now();
    let calls = (0..50).map(|_| app.call_tool("ts__slow", json!({"ms": 1000, "steps": 2})));
    let results = futures_util::future::join_all(calls).await;
    let elapsed = started.elapsed();
    for (status, result) in &results {
        assert_eq!(*status, 200, "{result}");
        assert_eq!(first_text(result), "slept 1000 ms");
    }
    // Serialised, 50 calls of 1 s would take 50 s.
    assert!(elapsed < Duration::from_secs(8), "50 concurrent 1 s calls took {elapsed:?}");
}

#[tokio::test]
async fn a_crashed_stdio_server_fails_fast_restarts_and_others_never_notice() {
    let servers = format!("{}{}", stdio("victim", ""), stdio("bystander", ""));
    let app = app_with(&servers).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "victim__crash") && n.iter().any(|t| t == "bystander__slow")).await;

    // A call in flight on the bystander while the victim dies.
    let bystander = app.call_tool("bystander__slow", json!({"ms": 1500, "steps": 3}));
    let victim_slow = app.call_tool("victim__slow", json!({"ms": 10_000, "steps": 2}));
    let crash = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let crash = app.call_tool("victim__crash", json!({})).await;
        (crash, started.elapsed())
    };
    let ((b_status, b_result), (v_status, v_result), ((c_status, c_body), crash_took)) =
        tokio::join!(bystander, victim_slow, crash);
    assert_eq!(b_status, 200, "the other server never noticed: {b_result}");
    assert_eq!(v_status, 503, "the call in flight fails with a clear error: {v_result}");
    assert!(v_result["error"]["message"].as_str().unwrap().contains("victim"), "{v_result}");
    assert_eq!(c_status, 503, "{c_body}");
    assert!(crash_took < Duration::from_secs(3), "failed fast, not at a timeout: {crash_took:?}");

    let status = app.wait_for_state("victim", "ready").await;
    assert!(status["restarts"].as_u64().unwrap() >= 1, "{status}");
    let (status, echo) = app.call_tool("victim__echo", json!({"text": "back"})).await;
    assert_eq!((status, first_text(&echo)), (200, "back"));
}

#[tokio::test]
async fn a_restarted_http_server_gets_a_new_session_without_failing_a_request() {
    let first = HttpPeer::test_server("http", 0).await;
    let port = first.port;
    let app = app_with(&format!("  remote:\n    url: {}/mcp\n", first.base())).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "remote__echo")).await;
    let (status, _) = app.call_tool("remote__echo", json!({"text": "before"})).await;
    assert_eq!(status, 200);

    first.kill().await;
    let (status, down) = app.call_tool("remote__echo", json!({"text": "while down"})).await;
    assert_eq!(status, 503, "a server that is down answers at once with 503: {down}");

    let _second = HttpPeer::test_server("http", port).await;
    app.wait_for_state("remote", "ready").await;
    let (status, after) = app.call_tool("remote__echo", json!({"text": "after"})).await;
    assert_eq!((status, first_text(&after)), (200, "after"), "{after}");
}

#[tokio::test]
async fn list_changed_updates_the_catalog_without_a_restart() {
    let app = app_with(&stdio("ts", "")).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__list_change")).await;
    let (status, _) = app.call_tool("ts__list_change", json!({})).await;
    assert_eq!(status, 200);
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__added_1")).await;
    let (status, result) = app.call_tool("ts__added_1", json!({"text": "new"})).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(app.servers().await["ts"]["restarts"], 0);
}

#[tokio::test]
async fn colliding_and_long_names_are_valid_distinct_and_reversible() {
    // Two servers whose names collide once sanitised, each with tools that collide too.
    let servers = format!("{}{}", stdio("a-b", ""), stdio("ab", ""));
    let app = app_with(&servers).await;
    // 12 tools on each server.
    let tools = app.wait_for_tools(|n| n.len() >= 2 * 11).await;
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    let unique: std::collections::HashSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    for tool in &tools {
        let name = tool["name"].as_str().unwrap();
        assert!(name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'), "{name}");
    }
    for original in ["weird.name", "weird_name", &"very_long_".repeat(10)] {
        for server in ["a-b", "ab"] {
            let tool = tools
                .iter()
                .find(|t| t["server"] == server && t["original_name"] == original)
                .unwrap_or_else(|| panic!("{server}/{original} listed"));
            let (status, result) = app.call_tool(tool["name"].as_str().unwrap(), json!({"text": original})).await;
            assert_eq!((status, first_text(&result)), (200, original), "{result}");
        }
    }
    let filtered: Value =
        app.client.get(app.url("/mcp/tools/list?server=a-b")).send().await.unwrap().json().await.unwrap();
    assert!(filtered["tools"].as_array().unwrap().iter().all(|t| t["server"] == "a-b"));
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let servers =
        format!("{}  mute:\n    command: {TEST_SERVER}\n    args: [hang]\n    startup_timeout: 1s\n", stdio("ts", ""));
    let app = app_with(&servers).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;

    // Arguments the server refuses (-32602) are the caller's to fix: 400, with the server's own
    // words and what the schema says.
    let (status, body) = app.call_tool("ts__echo", json!({"text": 5})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_arguments");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("argument `text` must be a string"), "{message}");
    assert!(message.contains("(the tool's input schema says: /text: 5 is not of type \"string\")"), "{message}");
    // Never stricter than the server: `scale` is marked required, but the server has a default.
    let (status, body) = app.call_tool("ts__zoom", json!({})).await;
    assert_eq!((status, first_text(&body)), (200, "zoom 1"), "{body}");
    let (status, body) = app.call_tool("ts__zoom", json!({"scale": 2})).await;
    assert_eq!((status, first_text(&body)), (200, "zoom 2"), "{body}");
    let (status, body) = app.call_tool("ts__echo", json!("not an object")).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.call_tool("ts__nope", json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("tool_not_found")));
    let resp = app
        .client
        .post(app.url("/mcp/tools/call"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let by_origin =
        app.post("/mcp/tools/call", &json!({"server": "ts", "name": "echo", "arguments": {"text": "o"}})).await;
    assert_eq!(by_origin.status(), 200);

    // The server that never answers initialize fails on its own; the gateway and the others serve.
    let mute = app.wait_for_state("mute", "failed").await;
    assert!(mute["last_error"].as_str().unwrap().contains("initialize"), "{mute}");
    let live = app.client.get(app.url("/health/liveliness")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let (status, _) = app.call_tool("ts__echo", json!({"text": "still fine"})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn tool_errors_timeouts_and_progress() {
    let app = app_with(&stdio("ts", "    tool_timeout: 1500ms\n")).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__fail")).await;
    let (status, failed) = app.call_tool("ts__fail", json!({"message": "nope"})).await;
    assert_eq!(status, 200, "an isError result is a result: {failed}");
    assert_eq!(failed["isError"], true);
    assert!(first_text(&failed).contains("nope"));
    // A tool that throws (the server answers with a JSON-RPC error) failed on its own too.
    let (status, threw) = app.call_tool("ts__throw", json!({"message": "kaput"})).await;
    assert_eq!((status, threw["isError"].as_bool()), (200, Some(true)), "{threw}");
    assert_eq!(first_text(&threw), "the tool threw: kaput");

    // One step of 4 s without progress: times out.
    let (status, body) = app.call_tool("ts__slow", json!({"ms": 4000, "steps": 1})).await;
    assert_eq!(status, 504, "{body}");
    // 4 s in 20 steps of 200 ms, each with progress: the timeout is reset and it completes.
    let (status, body) = app.call_tool("ts__slow", json!({"ms": 4000, "steps": 20})).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_call_on_the_server() {
    let server = HttpPeer::test_server("http", 0).await;
    let app = app_with(&format!("  remote:\n    url: {}/mcp\n", server.base())).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "remote__slow")).await;
    let call = app.call_tool("remote__slow", json!({"ms": 5000, "steps": 5}));
    // The client gives up once the call runs on the server: the request future is dropped and
    // the connection closes.
    // Polls the server's counters until `field` reads 1.
    let stats_reach = |field: &'static str, within: Duration| {
        let app = &app;
        async move {
            let deadline = Instant::now() + within;
            loop {
                let (_, stats) = app.call_tool("remote__stats", json!({})).await;
                if stats["structuredContent"][field] == 1 {
                    return;
                }
                assert!(Instant::now() < deadline, "`{field}` never reached 1 on the server: {stats}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    tokio::select! {
        ended = call => panic!("the slow call cannot finish first: {ended:?}"),
        () = stats_reach("in_flight", Duration::from_secs(10)) => {}
    }
    // The server saw the cancellation.
    stats_reach("cancelled", Duration::from_secs(5)).await;
}

#[tokio::test]
async fn operator_cli_lists_and_calls_tools() {
    let dir = std::env::temp_dir().join(format!("mcpmw-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(&config, format!("mcpServers:\n{}", stdio("ts", ""))).unwrap();
    let bin = env!("CARGO_BIN_EXE_mcp-middleware");
    let out = tokio::process::Command::new(bin).arg("--config").arg(&config).arg("tools").output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("ts (stdio, ready)") && stdout.contains("ts__echo"), "{stdout}");
    let out = tokio::process::Command::new(bin)
        .arg("--config")
        .arg(&config)
        .args(["call", "ts__echo", r#"{"text":"from the cli"}"#])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first_text(&result), "from the cli");
    let bad = tokio::process::Command::new(bin).arg("--config").arg(&config).args(["call", "ts__nope"]).output().await;
    assert!(!bad.unwrap().status.success());
}

#[tokio::test]
async fn include_and_exclude_filter_a_servers_tools() {
    let servers = format!(
        "{}{}",
        stdio("only", "    include_tools: [echo, slow]\n"),
        stdio("most", "    exclude_tools: [crash, fail]\n")
    );
    let app = app_with(&servers).await;
    let tools = app
        .wait_for_tools(|n| n.iter().any(|t| t.starts_with("only__")) && n.iter().any(|t| t.starts_with("most__")))
        .await;
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    let only: Vec<&&str> = names.iter().filter(|n| n.starts_with("only__")).collect();
    assert_eq!(only, [&"only__echo", &"only__slow"]);
    assert!(names.contains(&"most__echo") && !names.contains(&"most__crash") && !names.contains(&"most__fail"));
    let (status, _) = app.call_tool("most__crash", json!({})).await;
    assert_eq!(status, 404, "an excluded tool cannot be called");
}

#[tokio::test]
async fn shutdown_closes_and_reaps_stdio_children() {
    let marker = format!("reap-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos());
    // Launched through a shell, like `npx` launches node: the server is a grandchild, next to a
    // background grandchild that ignores stdin closing and would outlive a plain kill.
    let servers = format!(
        "  ts:\n    command: sh\n    args: [-c, \"sh -c 'sleep 600; : {marker}' & {TEST_SERVER} --name {marker} stdio; true\"]\n"
    );
    let app = app_with(&servers).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    // Processes whose command line names the marker (read from /proc; zombies have none).
    let running = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .filter(|cmdline| String::from_utf8_lossy(cmdline).contains(&marker))
            .count()
    };
    assert!(running() >= 2, "the server and its sibling run while the gateway does");
    app.shutdown().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while running() > 0 {
        assert!(Instant::now() < deadline, "the stdio server (a grandchild) outlived the gateway");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
