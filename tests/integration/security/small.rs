//! The small holes: body and header limits answered with the right status, the auth scheme's
//! case, a narrowing header the gateway cannot read, and internal detail kept out of bodies.

use bytes::Bytes;
use serde_json::{Value, json};

use super::raw_http;
use crate::common::peers::{TEST_SERVER, free_port};
use crate::common::{FakeLlm, TestApp};

#[tokio::test]
async fn a_chunked_body_over_the_limit_on_a_proxied_route_is_413() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app = TestApp::in_front_of(&llm, "limits:\n  max_body_bytes: 4096\n").await;
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..8).map(|_| Ok(Bytes::from(vec![b'a'; 1024]))).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let resp = app.client.post(app.url("/v1/files")).body(body).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    let error: Value = resp.json().await.unwrap();
    assert_eq!(error["error"]["code"], "payload_too_large");
    // Under the limit, the same route streams through.
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..2).map(|_| Ok(Bytes::from(vec![b'a'; 1024]))).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    assert_eq!(app.client.post(app.url("/v1/files")).body(body).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn oversized_headers_are_431() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    for size in [100_000, 1_000_000] {
        let request =
            format!("GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-Big: {}\r\nConnection: close\r\n\r\n", "x".repeat(size));
        let (status, body) = raw_http(app.addr, &request).await;
        assert_eq!(status, 431, "{size}-byte header: {body}");
        if size == 100_000 {
            let error: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(error["error"]["code"], "headers_too_large");
        }
    }
    assert!(llm.requests().is_empty(), "nothing was forwarded");
    assert_eq!(app.get("/v1/models").await.status(), 200, "the gateway still serves");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app = TestApp::in_front_of(&llm, "auth:\n  api_keys: [sk-a]\n").await;
    for value in ["Bearer sk-a", "bearer sk-a", "BEARER sk-a", "BeArEr sk-a"] {
        let resp = app.client.get(app.url("/v1/models")).header("authorization", value).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{value}");
    }
    for value in ["Basic sk-a", "Bearer sk-b", "Bearersk-a", "sk-a"] {
        let resp = app.client.get(app.url("/v1/models")).header("authorization", value).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{value}");
    }
}

#[tokio::test]
async fn an_unreadable_narrowing_header_fails_closed() {
    let llm = FakeLlm::new().text("ok").start().await;
    let yaml = format!("mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n");
    let app = TestApp::in_front_of(&llm, &yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let bad = reqwest::header::HeaderValue::from_bytes(b"ts\xff\xfe").unwrap();
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let resp =
        app.client.post(app.url("/v1/chat/completions")).header("x-mcp-servers", bad.clone()).json(&chat).send().await;
    let resp = resp.unwrap();
    assert_eq!(resp.status(), 400);
    let error: Value = resp.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("x-mcp-servers"), "{error}");
    assert!(llm.chat_requests().is_empty(), "the request never went out with every tool");
    let resp = app
        .client
        .post(app.url("/mcp/tools/call"))
        .header("x-mcp-servers", bad)
        .json(&json!({"name": "ts__echo", "arguments": {"text": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn a_dead_s3_store_leaks_no_internal_detail() {
    let port = free_port();
    let yaml = format!(
        "builtin_tools:\n  enabled: true\nartifacts:\n  store: s3\n  s3:\n    endpoint: http://127.0.0.1:{port}\n    \
         access_key_id: k\n    secret_access_key: s-0123456789\n"
    );
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "builtin__minio_upload_object")).await;
    let (status, body) = app.call_tool("builtin__minio_upload_object", json!({"key": "a.txt", "text": "x"})).await;
    // The tool's own failure (200, isError), with the store's reason and nothing internal.
    assert_eq!((status, body["isError"].as_bool()), (200, Some(true)), "{body}");
    let text = body.to_string();
    assert!(text.contains("S3 could not be reached: connection refused"), "{text}");
    for internal in [&port.to_string(), "127.0.0.1", "dispatch", "Connector", "hyper", "io error"] {
        assert!(!text.contains(internal), "the body names `{internal}`: {text}");
    }
}
