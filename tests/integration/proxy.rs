//! Pass-through: chat (JSON and SSE) and every other `/v1/*` route reach the upstream unchanged.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use crate::common::fake_llm::{COMPLETION_TOKENS, PROMPT_TOKENS};
use crate::common::{FakeLlm, TestApp, chunks, sse_data, sse_payloads, streamed_text};

#[tokio::test]
async fn non_streaming_chat_is_forwarded_unchanged() {
    let llm = FakeLlm::new().text("Hello from the model").start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let body = json!({"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}],
                      "temperature": 0.2, "some_future_field": {"nested": [1, 2]}});
    let resp = app.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello from the model");
    assert_eq!(answer["usage"]["total_tokens"], PROMPT_TOKENS + COMPLETION_TOKENS);

    let sent = llm.chat_requests();
    assert_eq!(sent, vec![body], "the upstream received exactly the client's body");
}

#[tokio::test]
async fn chat_without_v1_prefix_is_served_too() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let resp = app.post("/chat/completions", &json!({"model": "m", "messages": []})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(llm.requests()[0].path, "/v1/chat/completions");
}

#[tokio::test]
async fn streaming_chat_relays_every_chunk_and_one_done() {
    let llm = FakeLlm::new().text("The quick brown fox").start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let body = json!({"model": "gpt-x", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "hi"}]});
    let resp = app.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let data = sse_data(resp).await;
    assert_eq!(data.iter().filter(|d| *d == "[DONE]").count(), 1);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks = chunks(&data);
    // role chunk + 5 content pieces ("The quick brown fox" in 4-char pieces) + finish + usage.
    assert_eq!(chunks.len(), 1 + 5 + 1 + 1, "{chunks:#?}");
    assert_eq!(streamed_text(&chunks), "The quick brown fox");
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[7]["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(llm.chat_requests(), vec![body]);
}

#[tokio::test]
async fn first_chunk_reaches_the_client_before_the_upstream_finishes() {
    // The fake holds its stream after the first chunk until released: a gateway that buffered
    // the stream would never deliver that chunk, and this test would time out.
    let llm = FakeLlm::new().text("held back until released").gated().start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let resp = app.post("/v1/chat/completions", &json!({"model": "m", "stream": true, "messages": []})).await;
    let mut body = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("first chunk arrived while the upstream was still holding the rest")
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&first);
    assert!(first.contains("\"role\":\"assistant\""), "{first}");
    assert!(!first.contains("[DONE]"));
    llm.release();
    let mut rest = String::new();
    while let Some(chunk) = body.next().await {
        rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let whole = format!("{first}{rest}");
    assert_eq!(streamed_text(&chunks(&sse_payloads(&whole))), "held back until released");
    assert!(rest.trim_end().ends_with("data: [DONE]"), "{rest}");
}

#[tokio::test]
async fn slow_stream_arrives_incrementally() {
    let llm = FakeLlm::new().text("abcdefghijklmnop").chunk_delay(Duration::from_millis(150)).start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let start = std::time::Instant::now();
    let resp = app.post("/v1/chat/completions", &json!({"model": "m", "stream": true, "messages": []})).await;
    let mut body = resp.bytes_stream();
    let mut arrivals = Vec::new();
    while let Some(chunk) = body.next().await {
        chunk.unwrap();
        arrivals.push(start.elapsed());
    }
    // 8 frames at 150 ms each: the first must land long before the last.
    assert!(arrivals.len() >= 4, "{arrivals:?}");
    assert!(*arrivals.last().unwrap() - arrivals[0] >= Duration::from_millis(600), "{arrivals:?}");
}

#[tokio::test]
async fn models_route_is_passed_through_with_query_and_headers() {
    let llm = FakeLlm::new().start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let resp = app.client.get(app.url("/v1/models?limit=5")).header("x-custom", "kept").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let models: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "fake-model");
    let rec = &llm.requests()[0];
    assert_eq!((rec.method.as_str(), rec.path.as_str(), rec.query.as_deref()), ("GET", "/v1/models", Some("limit=5")));
    assert_eq!(rec.headers["x-custom"], "kept");
    assert!(rec.headers.contains_key("x-request-id"), "request id is forwarded upstream");
}

#[tokio::test]
async fn embeddings_route_is_passed_through() {
    let llm = FakeLlm::new().start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let body = json!({"model": "embed", "input": ["a", "b"]});
    let resp = app.post("/v1/embeddings", &body).await;
    assert_eq!(resp.status(), 200);
    let echo: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/v1/embeddings");
    assert_eq!(llm.requests()[0].json(), body);
}

#[tokio::test]
async fn large_upload_streams_through() {
    let llm = FakeLlm::new().start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    // 3 MiB, sent chunked from a stream: above the replayable size, so it is streamed upstream.
    let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    let stream = futures_util::stream::iter((0..48).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let resp = app
        .client
        .post(app.url("/v1/audio/transcriptions"))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(echo["body_len"], 48 * 64 * 1024);
    assert_eq!(echo["content_type"], "application/octet-stream");
}

#[tokio::test]
async fn upstream_api_key_replaces_the_client_credentials() {
    let llm = FakeLlm::new().text("ok").start().await;
    let yaml = "upstream:\n  base_url: ${UPSTREAM}\n  api_key: ${KEY}\n";
    let app = TestApp::spawn_with_env(yaml, &[("UPSTREAM", &llm.url), ("KEY", "sk-upstream")]).await;
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth("client-key")
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(llm.requests()[0].headers["authorization"], "Bearer sk-upstream");
}

#[tokio::test]
async fn client_auth_is_forwarded_when_configured() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app = TestApp::in_front_of(&llm, "  forward_client_auth: true\n  api_key: fallback\n").await;
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth("sk-client-own")
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app.client.get(app.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let reqs = llm.requests();
    assert_eq!(reqs[0].headers["authorization"], "Bearer sk-client-own");
    assert_eq!(reqs[1].headers["authorization"], "Bearer fallback", "no client auth: the configured key is used");
}

#[tokio::test]
async fn tool_call_deltas_are_relayed_as_the_model_sent_them() {
    let args = json!({"text": "hello there", "n": 3});
    let llm = FakeLlm::new().tool_calls(&[("get_weather", args.clone()), ("get_time", json!({}))]).start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let resp = app.post("/v1/chat/completions", &json!({"model": "m", "stream": true, "messages": []})).await;
    let chunks = chunks(&sse_data(resp).await);
    let deltas: Vec<&serde_json::Value> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
    let arg_pieces = deltas.iter().filter(|d| d["index"] == 0).count();
    assert!(arg_pieces > 3, "arguments arrive split across several deltas");
    let joined: String =
        deltas.iter().filter(|d| d["index"] == 0).filter_map(|d| d["function"]["arguments"].as_str()).collect();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&joined).unwrap(), args);
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");

    let llm = FakeLlm::new().tool_call("get_time", json!({"tz": "UTC"})).start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let plain = app.post("/v1/chat/completions", &json!({"model": "m", "messages": []})).await;
    let plain: serde_json::Value = plain.json().await.unwrap();
    let call = &plain["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_time");
    assert_eq!(call["function"]["arguments"], r#"{"tz":"UTC"}"#);
    assert_eq!(plain["choices"][0]["finish_reason"], "tool_calls");
}

/// HTTP/1 connections are served on a serving core, and HTTP/2 streams on the cores in turn:
/// both answer, several requests on one connection each, streamed and not, and the upstream's
/// keep-alive connections are reused across them (one per core at most, not one per request).
#[tokio::test]
async fn http1_and_http2_clients_are_served_on_kept_connections() {
    let llm = FakeLlm::new().text("both ways").start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let h1 = reqwest::Client::builder().http1_only().build().unwrap();
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    for (client, version) in [(&h1, reqwest::Version::HTTP_11), (&h2, reqwest::Version::HTTP_2)] {
        for stream in [false, true, false, true] {
            let body = json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
            let resp = client.post(app.url("/v1/chat/completions")).json(&body).send().await.unwrap();
            assert_eq!((resp.status().as_u16(), resp.version()), (200, version));
            let text = resp.text().await.unwrap();
            let answer = if stream { streamed_text(&chunks(&sse_payloads(&text))) } else { text };
            assert!(answer.contains("both ways"), "{version:?}: {answer}");
        }
    }
    assert_eq!(llm.chat_requests().len(), 8);
    let opened = llm.connections();
    // The HTTP/1 connection takes one core, the four HTTP/2 requests the next four in turn.
    let cores = mcp_middleware::cores::count().min(5);
    assert!((1..=cores).contains(&opened), "{opened} upstream connections for 8 requests on {cores} cores");
}
