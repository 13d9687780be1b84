//! Every error status, in the OpenAI error shape, produced by a real request.

use serde_json::{Value, json};

use crate::common::{FakeLlm, TestApp, Turn, chunks, sse_data};

/// Asserts the OpenAI error shape and returns the `error` object.
async fn error_of(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status(), status);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: Value = resp.json().await.unwrap();
    let err = body["error"].clone();
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(err["type"].is_string(), "{body}");
    assert!(err.get("code").is_some(), "{body}");
    err
}

#[tokio::test]
async fn malformed_and_incomplete_chat_bodies_are_400() {
    let llm = FakeLlm::new().start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let raw = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{\"model\": \"m\", \"messages\": [")
        .send()
        .await
        .unwrap();
    let err = error_of(raw, 400).await;
    assert!(err["message"].as_str().unwrap().contains("not a valid JSON"), "{err}");

    let no_model = app.post("/v1/chat/completions", &json!({"messages": []})).await;
    assert_eq!(error_of(no_model, 400).await["param"], "model");
    let no_messages = app.post("/v1/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(error_of(no_messages, 400).await["param"], "messages");
    assert!(llm.requests().is_empty(), "nothing invalid reached the upstream");
}

/// Without a tool to offer, a chat body is only peeked at before it goes upstream as it came:
/// what is not a chat body (not an object, not UTF-8, a control that is `null`, no model, no
/// messages) is refused as the full read refuses it, and what it forwards is the client's bytes.
#[tokio::test]
async fn a_peeked_body_is_refused_when_not_a_chat_body_and_sent_as_it_came() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app = TestApp::in_front_of(&llm, "builtin_tools:\n  enabled: false\n").await;
    let send = |body: &'static [u8]| {
        app.client.post(app.url("/v1/chat/completions")).header("content-type", "application/json").body(body).send()
    };
    for (body, says) in [
        (&b"[\"m\", false, [{\"role\": \"user\", \"content\": \"hi\"}]]"[..], "JSON object"),
        (b"{\"model\": \"m\", \"messages\": [], \"mcp\": null}", "mcp"),
        (b"{\"model\": \"m\", \"messages\": [], \"extra\": \"\xff\"}", "JSON object"),
        (b"{\"model\": \"m\", \"messages\": {}}", "messages"),
        (b"{\"model\": \"\", \"messages\": []}", "model"),
        (b"{\"model\": \"m\", \"messages\": [], \"stream\": \"yes\"}", ""),
    ] {
        let resp = send(body).await.unwrap();
        if says.is_empty() {
            // Not a boolean: read in full, where it means no stream (as before).
            assert_eq!(resp.status(), 200, "{}", String::from_utf8_lossy(body));
            continue;
        }
        let err = error_of(resp, 400).await;
        assert!(err["message"].as_str().unwrap().contains(says), "{err}: {}", String::from_utf8_lossy(body));
    }
    assert_eq!(llm.requests().len(), 1, "only the valid body reached the upstream");
    // Spaces, escapes and unknown fields go as they were written.
    let body: &[u8] = b" {\"model\" : \"m\\u0041\", \"future\": {\"a\": [1, 2.50]},\n \"messages\": [{\"role\": \"user\", \"content\": \"h\\u00e9\"}]}";
    assert_eq!(send(body).await.unwrap().status(), 200);
    assert_eq!(llm.requests().last().unwrap().body.as_ref(), body);
}

#[tokio::test]
async fn unknown_route_is_404_and_wrong_method_405() {
    let llm = FakeLlm::new().start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let err = error_of(app.client.get(app.url("/nope")).send().await.unwrap(), 404).await;
    assert_eq!(err["code"], "not_found");
    error_of(app.client.get(app.url("/v1/chat/completions")).send().await.unwrap(), 405).await;
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let llm = FakeLlm::new().start().await;
    let app = TestApp::in_front_of(&llm, "limits:\n  max_body_bytes: 1000\n").await;
    let big = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(2000)}]});
    let err = error_of(app.post("/v1/chat/completions", &big).await, 413).await;
    assert_eq!(err["code"], "payload_too_large");
    error_of(app.post("/v1/embeddings", &big).await, 413).await;
    // A chunked body with no declared length is cut off at the limit too.
    let stream = futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 600])));
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    error_of(resp, 413).await;
    assert!(llm.requests().is_empty());
}

#[tokio::test]
async fn upstream_429_keeps_status_body_and_retry_after() {
    let upstream_err = json!({"error": {"message": "slow down", "type": "rate_limit_error", "code": "429"}});
    let llm = FakeLlm::new().status(429, upstream_err.clone(), Some("7")).start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let resp = app.post("/v1/chat/completions", &json!({"model": "m", "messages": []})).await;
    assert_eq!(resp.headers()["retry-after"], "7");
    let err = error_of(resp, 429).await;
    assert_eq!(err, upstream_err["error"]);
}

#[tokio::test]
async fn upstream_4xx_keeps_status_and_body() {
    let upstream_err = json!({"error": {"message": "model `x` does not exist", "type": "invalid_request_error",
                                        "code": "model_not_found", "param": null}});
    let llm = FakeLlm::new().status(404, upstream_err.clone(), None).start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let resp = app.post("/v1/chat/completions", &json!({"model": "x", "messages": [], "stream": true})).await;
    assert_eq!(error_of(resp, 404).await, upstream_err["error"]);
}

#[tokio::test]
async fn upstream_5xx_is_502_naming_the_upstream_without_secrets() {
    let llm = FakeLlm::new().status(500, json!({"error": {"message": "internal boom"}}), None).start().await;
    let yaml = "upstream:\n  base_url: ${UPSTREAM}\n  api_key: sk-secret-value\n";
    let app = TestApp::spawn_with_env(yaml, &[("UPSTREAM", &llm.url)]).await;
    let resp = app.post("/v1/chat/completions", &json!({"model": "m", "messages": []})).await;
    let err = error_of(resp, 502).await;
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains(&llm.url), "{msg}");
    assert!(!msg.contains("sk-secret-value") && !msg.contains("boom"), "{msg}");
}

#[tokio::test]
async fn unreachable_upstream_is_502_after_retries() {
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let yaml = format!("upstream:\n  base_url: http://127.0.0.1:{port}/v1\n  max_retries: 2\n");
    let app = TestApp::spawn(&yaml).await;
    let started = std::time::Instant::now();
    let resp = app.post("/v1/chat/completions", &json!({"model": "m", "messages": []})).await;
    let err = error_of(resp, 502).await;
    assert!(err["message"].as_str().unwrap().contains(&format!("127.0.0.1:{port}")), "{err}");
    // Two retries with 200 ms and 400 ms backoff happened before giving up.
    assert!(started.elapsed() >= std::time::Duration::from_millis(600));
    error_of(app.client.get(app.url("/v1/models")).send().await.unwrap(), 502).await;
}

#[tokio::test]
async fn silent_upstream_is_504() {
    let llm = FakeLlm::new().turn(Turn::Hang).start().await;
    let app = TestApp::in_front_of(&llm, "  read_timeout: 300ms\n").await;
    let resp = app.post("/v1/chat/completions", &json!({"model": "m", "messages": []})).await;
    assert_eq!(error_of(resp, 504).await["type"], "timeout_error");
    assert_eq!(llm.requests().len(), 1, "a request that may have reached the model is never retried");
}

#[tokio::test]
async fn failure_mid_stream_ends_with_error_event_and_done() {
    let llm = FakeLlm::new().turn(Turn::BreakMidStream("partial answer".into())).start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let resp = app.post("/v1/chat/completions", &json!({"model": "m", "stream": true, "messages": []})).await;
    assert_eq!(resp.status(), 200);
    let data = sse_data(resp).await;
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert_eq!(data.iter().filter(|d| *d == "[DONE]").count(), 1);
    let chunks = chunks(&data);
    let last = chunks.last().unwrap();
    assert_eq!(last["error"]["type"], "upstream_error", "{last}");
    assert!(crate::common::streamed_text(&chunks).starts_with("part"));
}
