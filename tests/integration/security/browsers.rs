//! Web pages as attackers. A page the operator visits can send requests to the gateway on
//! loopback (no key on the default setup) — `fetch(no-cors)`, form posts with `text/plain`,
//! DNS rebinding to read the answers — and through the proxy it could read what the upstream
//! returns for the master key, since LiteLLM allows every origin. The gateway owns its origin
//! policy: every route checks `Host`, `Origin`/`Sec-Fetch-Site` and JSON content types, and
//! answers CORS itself. One canonical path: a percent-escaped letter cannot route a chat request
//! past the chat handler to the upstream's chat route.

use serde_json::{Value, json};

use super::raw_http;
use crate::common::native::NativeProviders;
use crate::common::peers::{LiteLlm, TEST_SERVER};
use crate::common::{FakeLlm, TestApp};

const EVIL: &str = "https://evil.example";

fn ts() -> String {
    format!("mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n")
}

/// A browser's POST to `path` from `origin` with `content_type`, to a gateway named `host`.
fn browser_post(path: &str, host: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    request.push_str(body);
    request
}

#[tokio::test]
async fn web_pages_cannot_run_tools_on_an_open_loopback_gateway() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app = TestApp::in_front_of(&llm, &ts()).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let host = format!("127.0.0.1:{}", app.addr.port());
    let call = r#"{"name":"ts__echo","arguments":{"text":"pwned"}}"#;
    let chat = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

    // A cross-site fetch(no-cors) / form post: text/plain, with the page's Origin.
    let attacks = [
        ("/mcp/tools/call", vec![("Origin", EVIL), ("Content-Type", "text/plain"), ("Sec-Fetch-Site", "cross-site")]),
        ("/mcp/tools/call", vec![("Origin", EVIL), ("Content-Type", "application/json")]),
        ("/mcp/tools/call", vec![("Origin", "null"), ("Content-Type", "application/json")]),
        ("/mcp/tools/call", vec![("Sec-Fetch-Site", "cross-site"), ("Content-Type", "application/json")]),
        ("/v1/chat/completions", vec![("Origin", EVIL), ("Content-Type", "text/plain;charset=UTF-8")]),
    ];
    for (path, headers) in &attacks {
        let body = if path.contains("chat") { chat } else { call };
        let (status, text) = raw_http(app.addr, &browser_post(path, &host, headers, body)).await;
        assert_eq!(status, 403, "{path} {headers:?}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["type"], "permission_error");
    }
    // DNS rebinding: the page's own name resolves to 127.0.0.1, so the browser sends its Host.
    let headers = [("Content-Type", "application/json")];
    let (status, _) = raw_http(app.addr, &browser_post("/mcp/tools/call", "evil.example", &headers, call)).await;
    assert_eq!(status, 403, "a foreign Host is refused on an open gateway");
    let (status, _) = raw_http(app.addr, &browser_post("/mcp/tools/call", "evil.example:4001", &headers, call)).await;
    assert_eq!(status, 403);
    // A simple request without a browser's headers still needs a JSON body.
    let plain = [("Content-Type", "text/plain")];
    let (status, text) = raw_http(app.addr, &browser_post("/mcp/tools/call", &host, &plain, call)).await;
    assert_eq!(status, 415, "{text}");
    assert!(llm.requests().is_empty(), "no chat reached the model");

    // Details of `/health` are not for a rebinding page either (the probes are open).
    let health = "GET /health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_http(app.addr, health).await.0, 403);
    // What local tools send is served: loopback names, IP literals, a container's single-label
    // name; JSON, no Origin.
    for name in [host.as_str(), "localhost:4001", "[::1]:4001", "LOCALHOST", "mcp-middleware:4001", "10.0.0.5:4001"] {
        let (status, text) = raw_http(app.addr, &browser_post("/mcp/tools/call", name, &headers, call)).await;
        assert_eq!(status, 200, "{name}: {text}");
    }
    // Health probes and artifact links are not browser-gated (pages embed images).
    let probe =
        format!("GET /health/liveliness HTTP/1.1\r\nHost: pod-10-0-0-1\r\nOrigin: {EVIL}\r\nConnection: close\r\n\r\n");
    assert_eq!(raw_http(app.addr, &probe).await.0, 200);
}

#[tokio::test]
async fn an_allow_listed_page_gets_cors_and_others_do_not() {
    let llm = FakeLlm::new().text("ok").start().await;
    let yaml = format!(
        "auth:\n  api_keys: [sk-browser-0123]\nhttp:\n  allowed_hosts: [gw.example, 127.0.0.1]\n  cors:\n    allowed_origins: [\"https://chat.example/\"]\n{}",
        ts()
    );
    let mut app = TestApp::in_front_of(&llm, &yaml).await;
    app.key = Some("sk-browser-0123".into());
    let url = app.url("/mcp/tools/call");
    let body = json!({"name": "ts__echo", "arguments": {"text": "hi"}});

    // Preflight from the allowed page: answered by the gateway.
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, &url)
        .header("host", "gw.example")
        .header("origin", "https://chat.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "https://chat.example");
    assert_eq!(preflight.headers()["access-control-allow-headers"], "authorization, content-type");
    // … and refused for any other page.
    let refused = app
        .client
        .request(reqwest::Method::OPTIONS, &url)
        .header("host", "gw.example")
        .header("origin", EVIL)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    // The allowed page reads a refusal of its key too (to ask for another).
    let keyless = reqwest::Client::new()
        .post(&url)
        .header("host", "gw.example")
        .header("origin", "https://chat.example")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(keyless.status(), 401);
    assert_eq!(keyless.headers()["access-control-allow-origin"], "https://chat.example");

    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let foreign = app
        .client
        .get(app.url("/mcp/tools/list"))
        .header("host", "other.example")
        .bearer_auth("sk-browser-0123")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403, "a Host outside http.allowed_hosts is refused even with a key");
    let call = |origin: &'static str| {
        app.client
            .post(&url)
            .header("host", "gw.example")
            .header("origin", origin)
            .bearer_auth("sk-browser-0123")
            .json(&body)
            .send()
    };
    let allowed = call("https://chat.example").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://chat.example");
    let other = call(EVIL).await.unwrap();
    assert_eq!(other.status(), 403);
}

/// With a real LiteLLM upstream (which answers `Access-Control-Allow-Origin: *` and decodes
/// `%63` to `c` before routing): a restricted key cannot reach LiteLLM's chat route through the
/// proxy, and no page reads what the upstream returns for the master key.
#[tokio::test]
async fn litellm_behind_the_gateway_neither_routes_around_it_nor_grants_origins() {
    let native = NativeProviders::start().await;
    let master = "sk-litellm-master-browsers";
    let config = format!(
        "model_list:\n  - model_name: claude\n    litellm_params:\n      model: anthropic/claude-sonnet-4-5-20250929\n      \
         api_base: {}\n      api_key: sk-ant-test\ngeneral_settings:\n  master_key: {master}\nlitellm_settings:\n  telemetry: false\n",
        native.anthropic
    );
    let litellm = LiteLlm::start(&config, master).await;
    // LiteLLM on its own allows every origin, credentials included.
    let direct = reqwest::Client::new()
        .get(format!("{}/models", litellm.url))
        .bearer_auth(master)
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);
    assert!(
        direct.headers().get("access-control-allow-origin").is_some(),
        "LiteLLM's own CORS: {:?}",
        direct.headers()
    );

    let yaml = format!(
        "upstream:\n  base_url: {}\n  api_key: {master}\nauth:\n  api_keys: [sk-admin-0123]\n  keys:\n    - key: sk-echo-only-0123\n      \
         servers: [ts]\n      tools: [echo]\nhttp:\n  cors:\n    allowed_origins: [https://chat.example]\n{}",
        litellm.url,
        ts()
    );
    let app = TestApp::spawn(&yaml).await;
    // The percent-encoded chat route with a server-side MCP tool: refused, never forwarded.
    let chat = r#"{"model":"claude","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"mcp","server_label":"x","server_url":"http://127.0.0.1:1/mcp"}]}"#;
    for path in ["/v1/chat/%63ompletions", "/v1/%63hat/completions", "/v1/chat/completion%73"] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-echo-only-0123\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{chat}",
            chat.len()
        );
        let (status, body) = raw_http(app.addr, &request).await;
        assert_eq!(status, 400, "{path}: {body}");
    }
    assert!(native.requests().is_empty(), "nothing reached the model through LiteLLM");

    // Server-side clients (no Origin) get LiteLLM's answer without its CORS headers.
    let plain = app.client.get(app.url("/v1/models")).bearer_auth("sk-admin-0123").send().await.unwrap();
    assert_eq!(plain.status(), 200);
    let cors: Vec<_> = plain.headers().keys().filter(|k| k.as_str().starts_with("access-control-")).collect();
    assert!(cors.is_empty(), "upstream CORS headers relayed: {cors:?}");
    // A page that is not allowed reads nothing; an allowed one gets exactly its own origin.
    let evil = app.client.get(app.url("/v1/models")).bearer_auth("sk-admin-0123").header("origin", EVIL).send().await;
    assert_eq!(evil.unwrap().status(), 403);
    let allowed = app
        .client
        .get(app.url("/v1/models"))
        .bearer_auth("sk-admin-0123")
        .header("origin", "https://chat.example")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://chat.example");
    assert!(allowed.headers().get("access-control-allow-credentials").is_none());
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/models"))
        .header("origin", EVIL)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 403, "preflights are answered by the gateway, not LiteLLM");
    litellm.kill().await;
}
