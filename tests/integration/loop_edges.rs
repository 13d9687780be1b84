//! The loop at its seams, each case a bug a review found: a forced `tool_choice` the ranker left
//! out, the client's `stream_options` replaced, non-streaming answers losing annotations,
//! refusals and log probabilities, GPT-5 `custom` tools dropped (and refused for restricted keys),
//! a mixed turn's results lost without tool cards.

use serde_json::{Value, json};

use crate::common::fake_llm::Turn;
use crate::common::peers::TEST_SERVER;
use crate::common::{FakeLlm, Persona, TestApp, chunks, sse_data};

fn ts(extra: &str) -> String {
    format!("mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n{extra}")
}

#[tokio::test]
async fn a_forced_tool_choice_is_always_offered() {
    let llm = FakeLlm::new().persona(Persona::OpenAi).tool_call("ts__stats", json!({})).text("Done.").start().await;
    let app = TestApp::in_front_of(&llm, &ts("tool_selection:\n  max_tools: 3\n")).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__stats")).await;
    let chat = json!({"model": "gpt-5", "messages": [{"role": "user", "content": "echo the text hello"}],
        "tool_choice": {"type": "function", "function": {"name": "ts__stats"}}});
    let resp = app.post("/v1/chat/completions", &chat).await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(llm.refusals(), Vec::<Value>::new(), "the provider refused: {body}");
    assert_eq!(status, 200, "{body}");
    let first = &llm.chat_requests()[0];
    let names: Vec<&str> =
        first["tools"].as_array().unwrap().iter().filter_map(|t| t["function"]["name"].as_str()).collect();
    assert!(names.contains(&"ts__stats") && names.len() <= 3, "{names:?}");
}

#[tokio::test]
async fn the_clients_stream_options_are_kept() {
    let llm = FakeLlm::new().text("Hi.").start().await;
    let app = TestApp::in_front_of(&llm, &ts("")).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let chat = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}],
        "stream_options": {"include_usage": false, "include_obfuscation": false}});
    let data = sse_data(app.post("/v1/chat/completions", &chat).await).await;
    let sent = &llm.chat_requests()[0];
    assert_eq!(sent["stream_options"], json!({"include_usage": true, "include_obfuscation": false}));
    assert!(
        chunks(&data).iter().all(|c| c.get("usage").is_none_or(Value::is_null)),
        "the client did not ask for usage"
    );
}

#[tokio::test]
async fn non_streaming_answers_keep_what_streaming_shows() {
    let logprob =
        |token: &str| json!({"content": [{"token": token, "logprob": -0.5, "bytes": null, "top_logprobs": []}]});
    let citation = json!({"type": "url_citation", "url_citation": {"url": "https://example.com", "title": "Example",
        "start_index": 0, "end_index": 5}});
    let llm = FakeLlm::new()
        .turn(Turn::Chunks(vec![
            json!({"index": 0, "delta": {"role": "assistant", "content": "Hello"}, "logprobs": logprob("Hello"), "finish_reason": null}),
            json!({"index": 0, "delta": {"content": " there", "annotations": [citation]}, "logprobs": logprob(" there"), "finish_reason": null}),
            json!({"index": 0, "delta": {"refusal": "I won't say more."}, "logprobs": null, "finish_reason": "stop"}),
        ]))
        .start()
        .await;
    let app = TestApp::in_front_of(&llm, &ts("")).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let chat = json!({"model": "m", "logprobs": true, "messages": [{"role": "user", "content": "hi"}]});
    let body: Value = app.post("/v1/chat/completions", &chat).await.json().await.unwrap();
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], "Hello there", "{body}");
    assert_eq!(message["annotations"][0]["url_citation"]["url"], "https://example.com", "{body}");
    assert_eq!(message["refusal"], "I won't say more.", "{body}");
    let tokens: Vec<&str> = body["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, ["Hello", " there"], "{body}");
}

#[tokio::test]
async fn gpt5_custom_tools_go_back_to_the_client_even_for_restricted_keys() {
    let llm = FakeLlm::new()
        .turn(Turn::Chunks(vec![
            json!({"index": 0, "delta": {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_sql", "type": "custom",
                "custom": {"name": "run_sql", "input": "SELECT"}}]}, "finish_reason": null}),
            json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "custom": {"input": " 1"}}]}, "finish_reason": "tool_calls"}),
        ]))
        .start()
        .await;
    let yaml = ts("auth:\n  api_keys: [sk-admin-0123]\n  keys:\n    - key: sk-narrow-0123\n      servers: [ts]\n");
    let mut app = TestApp::in_front_of(&llm, &yaml).await;
    app.key = Some("sk-admin-0123".into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let chat = json!({"model": "gpt-5", "messages": [{"role": "user", "content": "count rows"}],
        "tools": [{"type": "custom", "custom": {"name": "run_sql", "description": "Runs SQL"}}]});
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth("sk-narrow-0123")
        .json(&chat)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls", "{body}");
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(*call, json!({"id": "call_sql", "type": "custom", "custom": {"name": "run_sql", "input": "SELECT 1"}}));
    assert!(body["mcp_tool_calls"].as_array().unwrap().is_empty(), "nothing ran here");
}

#[tokio::test]
async fn without_tool_cards_a_mixed_turn_keeps_our_results_in_the_answer() {
    let llm = FakeLlm::new()
        .tool_calls(&[("ts__echo", json!({"text": "from the gateway"})), ("client_lookup", json!({"q": "x"}))])
        .start()
        .await;
    let app = TestApp::in_front_of(&llm, &ts("tool_loop:\n  tool_cards: false\n")).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "both"}],
        "tools": [{"type": "function", "function": {"name": "client_lookup", "parameters": {"type": "object"}}}]});
    let body: Value = app.post("/v1/chat/completions", &chat).await.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls", "{body}");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap_or_default();
    assert!(content.contains("[called ts__echo(") && content.contains("from the gateway"), "{body}");
    assert!(!content.contains("<details"), "no cards: {content}");
}

/// `tool_loop.max_duration` is a deadline, not a check between rounds: a call still running
/// when it passes is cancelled, the model is told, and it answers.
#[tokio::test]
async fn the_request_deadline_holds_inside_a_round() {
    let llm =
        FakeLlm::new().tool_call("ts__slow", json!({"ms": 20000, "steps": 40})).text("Out of time.").start().await;
    let app = TestApp::in_front_of(&llm, &ts("tool_loop:\n  max_duration: 1s\n")).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__slow")).await;
    let started = std::time::Instant::now();
    let body: Value = app
        .post("/v1/chat/completions", &json!({"model": "m", "messages": [{"role": "user", "content": "wait"}]}))
        .await
        .json()
        .await
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(8), "took {:?}", started.elapsed());
    let run = &body["mcp_tool_calls"][0];
    assert_eq!(run["is_error"], true, "{body}");
    let sent = llm.chat_requests();
    let tool = sent[1]["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap().clone();
    assert!(tool["content"].as_str().unwrap().contains("time limit"), "{tool}");
    assert_eq!(sent[1]["tool_choice"], "none", "the last round answers");
}

/// A tool that reports progress forever still ends at `max_call_duration`.
#[tokio::test]
async fn a_call_that_reports_progress_forever_still_ends() {
    let llm = FakeLlm::new().tool_call("ts__slow", json!({"ms": 30000, "steps": 300})).text("ok").start().await;
    let yaml = format!(
        "mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n    tool_timeout: 2s\n    max_call_duration: 1s\n"
    );
    let app = TestApp::in_front_of(&llm, &yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__slow")).await;
    let started = std::time::Instant::now();
    let (status, body) = app.call_tool("ts__slow", json!({"ms": 30000, "steps": 300})).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(6), "took {:?}", started.elapsed());
    assert_eq!(status, 504, "{body}");
}

/// Keep-alive comments are not an answer: an upstream that sends only comments times out after
/// `upstream.read_timeout` like a silent one.
#[tokio::test]
async fn an_upstream_sending_only_comments_times_out() {
    let upstream = axum::Router::new().fallback(|| async {
        let comments = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(b": keep-alive\n\n")), ()))
        });
        ([("content-type", "text/event-stream")], axum::body::Body::from_stream(comments))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, upstream).await });
    let app = TestApp::spawn(&format!("upstream:\n  base_url: http://{addr}/v1\n  read_timeout: 1s\n")).await;
    let started = std::time::Instant::now();
    let chat = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let data = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sse_data(app.post("/v1/chat/completions", &chat).await),
    )
    .await
    .expect("the stream ended");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let error: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(error["error"]["type"], "timeout_error", "{error}");
}

/// After tools ran, a busy model (429 with `Retry-After`) is waited for and asked again; a model
/// that stays down ends the answer with what ran, as a 200 the client will not retry (a retry
/// would run the tools again).
#[tokio::test]
async fn a_busy_model_after_tools_ran_never_makes_the_client_run_them_again() {
    let busy =
        json!({"error": {"message": "Rate limit reached", "type": "rate_limit_error", "code": "rate_limit_exceeded"}});
    let llm = FakeLlm::new()
        .tool_call("ts__echo", json!({"text": "side effect"}))
        .status(429, busy.clone(), Some("1"))
        .text("Done.")
        .start()
        .await;
    let app = TestApp::in_front_of(&llm, &ts("")).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "go"}]});
    let resp = app.post("/v1/chat/completions", &chat).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().ends_with("Done."), "{body}");
    assert_eq!(body["mcp_tool_calls"].as_array().unwrap().len(), 1);
    assert_eq!(llm.chat_requests().len(), 3, "round 2 was retried once");

    let down = json!({"error": {"message": "overloaded", "type": "server_error"}});
    let llm =
        FakeLlm::new().tool_call("ts__echo", json!({"text": "side effect"})).status(503, down, None).start().await;
    let app = TestApp::in_front_of(&llm, &ts("")).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let resp = app.post("/v1/chat/completions", &chat).await;
    assert_eq!(resp.status(), 200, "not a status the SDK retries");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["mcp_tool_calls"][0]["name"], "ts__echo", "{body}");
    assert!(body["mcp_error"]["message"].is_string(), "{body}");
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().contains("could not be reached"), "{body}");
}

/// A model that thinks long before its first token: the stream starts anyway (200, keep-alive
/// comments), so a proxy in front of the gateway never times out waiting for headers.
#[tokio::test]
async fn a_slow_first_token_still_starts_the_stream() {
    let llm = FakeLlm::new().turn(Turn::Hang).start().await;
    let app = TestApp::in_front_of(&llm, &ts("limits:\n  sse_keepalive: 1s\n")).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let chat = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "think hard"}]});
    let started = std::time::Instant::now();
    let resp = app.post("/v1/chat/completions", &chat).await;
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "headers after {:?}", started.elapsed());
    let mut body = resp.bytes_stream();
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), futures_util::StreamExt::next(&mut body))
        .await
        .expect("bytes keep the connection alive")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with(':'), "a keep-alive comment: {first:?}");
}

/// A pasted text and an image of megabytes (held as slices of the client's bytes) reach every
/// round of the loop, and the pass-through a control makes, exactly as the client sent them.
#[tokio::test]
async fn large_messages_reach_every_round_as_sent() {
    let llm = FakeLlm::new()
        .tool_call("ts__echo", json!({"text": "hi"}))
        .text("Done.")
        .text("Plain.")
        .tool_call("ts__echo", json!({"text": "again"}))
        .text("Done again.")
        .start()
        .await;
    let app = TestApp::in_front_of(&llm, &ts("")).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let paste = format!("### Task:\n{}\"quoted\" \\ é 😀\n the end", "line\twith tabs\n".repeat(150_000));
    let image = format!("data:image/png;base64,{}", "iVBORw0KGgo".repeat(100_000));
    let messages = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": paste, "name": "ann"},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": [{"type": "text", "text": "and this"}, {"type": "image_url", "image_url": {"url": image}}]},
    ]);
    let resp = app.post("/v1/chat/completions", &json!({"model": "gpt-test", "messages": messages})).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().ends_with("Done."), "{body}");
    let sent = llm.chat_requests();
    assert_eq!(sent.len(), 2, "a tool round and the answer");
    for round in &sent {
        let history = round["messages"].as_array().unwrap();
        // (Compared, not printed: megabytes.)
        assert!(history.get(..4) == messages.as_array().map(Vec::as_slice), "the client's messages as sent");
        assert!(!round.to_string().contains("mcp-middleware-held"), "no stand-in goes upstream");
    }
    assert_eq!(
        (sent[1]["messages"][4]["role"].as_str(), sent[1]["messages"][5]["role"].as_str()),
        (Some("assistant"), Some("tool"))
    );

    // A control that turns our tools off: the body goes upstream re-written (without it).
    let plain = json!({"model": "gpt-test", "messages": messages, "mcp": {"enabled": false}});
    let resp = app.post("/v1/chat/completions", &plain).await;
    assert_eq!(resp.status(), 200);
    let last = llm.chat_requests().pop().unwrap();
    assert!(last["messages"] == messages, "the client's messages as sent");
    assert!(last.get("mcp").is_none() && last.get("tools").is_none(), "{}", last["tools"]);

    // An upstream reqwest serves (credentials in its URL): the same bodies, joined for it.
    let with_credentials = llm.url.replacen("http://", "http://user:secret@", 1);
    let yaml = format!("upstream:\n  base_url: ${{UPSTREAM}}\n{}", ts(""));
    let other = TestApp::spawn_with_env(&yaml, &[("UPSTREAM", &with_credentials)]).await;
    other.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let resp = other.post("/v1/chat/completions", &json!({"model": "gpt-test", "messages": messages})).await;
    assert_eq!(resp.status(), 200);
    let sent = llm.chat_requests();
    let rounds = sent.get(sent.len() - 2..).unwrap_or_default();
    assert_eq!(rounds.len(), 2);
    for round in rounds {
        let history = round["messages"].as_array().unwrap();
        assert!(history.get(..4) == messages.as_array().map(Vec::as_slice), "the client's messages as sent");
    }
}
