//! The tool loop with the scripted model and real MCP servers (server-everything over stdio).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::fake_llm::{COMPLETION_TOKENS, PROMPT_TOKENS, Turn};
use crate::common::peers::everything;
use crate::common::{FakeLlm, FakeLlmHandle, TestApp, chunks, sse_data, streamed_text};

/// The gateway in front of `llm` with server-everything as `ev`.
pub async fn with_everything(llm: &FakeLlmHandle, extra: &str) -> TestApp {
    let yaml = format!("mcpServers:\n  ev:\n    command: node\n    args: [\"{}\", stdio]\n{extra}", everything());
    let app = TestApp::in_front_of(llm, &yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ev__get-sum")).await;
    app
}

fn user(text: &str) -> Value {
    json!({"model": "gpt-test", "messages": [{"role": "user", "content": text}]})
}

/// Three rounds: two parallel calls, then one call, then the answer.
fn three_round_script() -> FakeLlm {
    FakeLlm::new()
        .tool_calls(&[("ev__echo", json!({"message": "one"})), ("ev__get-sum", json!({"a": 2, "b": 3}))])
        .tool_call("ev__echo", json!({"message": "two"}))
        .text("The sum is 5.")
}

fn assert_three_round_upstream(llm: &FakeLlmHandle) {
    let sent = llm.chat_requests();
    assert_eq!(sent.len(), 3, "three model rounds");
    for req in &sent {
        let names: Vec<&str> =
            req["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"ev__echo") && names.contains(&"ev__get-sum"), "{names:?}");
        assert_eq!(req["stream"], true);
    }
    let second = sent[1]["messages"].as_array().unwrap();
    assert_eq!(second.len(), 4, "{second:#?}");
    assert_eq!(second[1]["role"], "assistant");
    assert_eq!(second[1]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(
        (second[2]["role"].as_str(), second[2]["tool_call_id"].as_str()),
        (Some("tool"), Some("call_0_ev__echo"))
    );
    assert_eq!(second[3]["tool_call_id"], "call_1_ev__get-sum");
    assert!(second[2]["content"].as_str().unwrap().contains("one"), "{}", second[2]);
    assert!(second[3]["content"].as_str().unwrap().contains('5'), "{}", second[3]);
    let third = sent[2]["messages"].as_array().unwrap();
    assert_eq!(third.len(), 6);
    assert!(third[5]["content"].as_str().unwrap().contains("two"));
}

#[tokio::test]
async fn three_rounds_with_parallel_calls_non_streaming() {
    let llm = three_round_script().start().await;
    let app = with_everything(&llm, "").await;
    let resp = app.post("/v1/chat/completions", &user("add 2 and 3")).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_three_round_upstream(&llm);
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.ends_with("The sum is 5."), "{content}");
    assert_eq!(content.matches("<details type=\"tool_calls\"").count(), 3, "one card per call");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 3 * PROMPT_TOKENS);
    assert_eq!(body["usage"]["total_tokens"], 3 * (PROMPT_TOKENS + COMPLETION_TOKENS));
    let trace = body["mcp_tool_calls"].as_array().unwrap();
    assert_eq!(trace.len(), 3);
    assert_eq!(trace[1]["name"], "ev__get-sum");
    assert_eq!(trace[1]["arguments"], json!({"a": 2, "b": 3}));
    assert_eq!(trace[1]["is_error"], false);
    assert!(trace[1]["duration_ms"].is_u64());
}

#[tokio::test]
async fn three_rounds_with_parallel_calls_streaming() {
    let llm = three_round_script().start().await;
    let app = with_everything(&llm, "").await;
    let mut req = user("add 2 and 3");
    req["stream"] = json!(true);
    req["stream_options"] = json!({"include_usage": true});
    let resp = app.post("/v1/chat/completions", &req).await;
    assert_eq!(resp.status(), 200);
    let data = sse_data(resp).await;
    assert_eq!(data.iter().filter(|d| *d == "[DONE]").count(), 1);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks = chunks(&data);
    assert_three_round_upstream(&llm);
    let ids: std::collections::HashSet<&str> = chunks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one id for the whole stream");
    assert!(
        chunks.iter().all(|c| c["choices"][0]["delta"].get("tool_calls").is_none()),
        "our tool calls are never shown raw"
    );
    let text = streamed_text(&chunks);
    assert_eq!(text.matches("<details type=\"tool_calls\" done=\"true\"").count(), 3, "{text}");
    assert!(text.ends_with("The sum is 5."), "{text}");
    let finish: Vec<&Value> = chunks.iter().filter(|c| !c["choices"][0]["finish_reason"].is_null()).collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "stop");
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 3 * COMPLETION_TOKENS, "usage summed over rounds in the last chunk");
}

#[tokio::test]
async fn a_model_that_always_calls_a_tool_stops_at_max_rounds() {
    let llm = FakeLlm::new().tool_call("ev__get-sum", json!({"a": 1, "b": 1})).start().await;
    let app = with_everything(&llm, "tool_loop:\n  max_rounds: 3\n").await;
    let body: Value = app.post("/v1/chat/completions", &user("loop")).await.json().await.unwrap();
    let sent = llm.chat_requests();
    assert_eq!(sent.len(), 3);
    assert!(sent[..2].iter().all(|r| r.get("tool_choice").is_none()));
    assert_eq!(sent[2]["tool_choice"], "none", "the last round must answer");
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().ends_with("Answering without tools."));
}

#[tokio::test]
async fn identical_repeated_calls_are_not_run_again() {
    let llm = FakeLlm::new().tool_call("ev__echo", json!({"message": "same"})).start().await;
    let app = with_everything(&llm, "tool_loop:\n  max_rounds: 5\n  tool_cards: false\n").await;
    let body: Value = app.post("/v1/chat/completions", &user("repeat")).await.json().await.unwrap();
    let trace = body["mcp_tool_calls"].as_array().unwrap();
    assert_eq!(trace.len(), 4, "rounds 1-4 called; round 5 had to answer");
    let errors: Vec<bool> = trace.iter().map(|t| t["is_error"].as_bool().unwrap()).collect();
    assert_eq!(errors, [false, false, true, true], "the third identical call in a row is refused");
    let last_tool = llm.chat_requests()[4]["messages"].as_array().unwrap().last().unwrap().clone();
    assert!(last_tool["content"].as_str().unwrap().contains("Not run"), "{last_tool}");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!content.contains("<details"), "cards can be turned off: {content}");
}

#[tokio::test]
async fn parallel_slow_calls_take_the_slowest_not_the_sum() {
    let calls: Vec<(&str, Value)> =
        (0..3).map(|_| ("ev__trigger-long-running-operation", json!({"duration": 2, "steps": 2}))).collect();
    let llm = FakeLlm::new().tool_calls(&calls).text("done").start().await;
    let app = with_everything(&llm, "").await;
    let started = Instant::now();
    let body: Value = app.post("/v1/chat/completions", &user("slow")).await.json().await.unwrap();
    let took = started.elapsed();
    let trace = body["mcp_tool_calls"].as_array().unwrap();
    assert_eq!(trace.len(), 3);
    assert!(trace.iter().all(|t| t["is_error"] == false), "{trace:?}");
    // In turn they would take 6 s; the rest is room for a loaded machine.
    assert!(took < Duration::from_millis(5500), "3 × 2 s calls in parallel took {took:?}");
}

fn with_client_tool(mut body: Value) -> Value {
    body["tools"] = json!([{"type": "function", "function": {"name": "web_search", "description": "search",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]);
    body
}

#[tokio::test]
async fn a_client_owned_call_goes_back_to_the_client() {
    let llm = FakeLlm::new().tool_call("web_search", json!({"q": "rust"})).start().await;
    let app = with_everything(&llm, "").await;
    let body: Value = app.post("/v1/chat/completions", &with_client_tool(user("search"))).await.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let calls = body["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["function"]["name"], "web_search");
    assert_eq!(calls[0]["function"]["arguments"], r#"{"q":"rust"}"#);
    let sent = &llm.chat_requests()[0];
    let names: Vec<&str> =
        sent["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert_eq!(names[0], "web_search", "the client's own tools are kept, ours merged after");
    assert!(names.contains(&"ev__echo"));
    assert_eq!(names.iter().filter(|n| **n == "web_search").count(), 1);
}

#[tokio::test]
async fn a_mixed_turn_runs_ours_then_hands_the_clients_back() {
    let llm = FakeLlm::new()
        .tool_calls(&[("ev__get-sum", json!({"a": 4, "b": 4})), ("web_search", json!({"q": "x"}))])
        .start()
        .await;
    let app = with_everything(&llm, "").await;
    let mut req = with_client_tool(user("mixed"));
    req["stream"] = json!(true);
    let data = sse_data(app.post("/v1/chat/completions", &req).await).await;
    let chunks = chunks(&data);
    let client_deltas: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
    assert!(!client_deltas.is_empty());
    assert!(client_deltas.iter().all(|d| d["index"] == 0), "client calls renumbered from 0");
    assert_eq!(client_deltas[0]["function"]["name"], "web_search");
    assert!(streamed_text(&chunks).contains("name=\"ev__get-sum\""), "ours ran and shows as a card");
    let finish = chunks.iter().find_map(|c| c["choices"][0]["finish_reason"].as_str()).unwrap();
    assert_eq!(finish, "tool_calls");
    assert_eq!(llm.chat_requests().len(), 1, "the client's call is the client's to answer");
}

#[tokio::test]
async fn broken_arguments_unknown_tools_and_down_servers_get_answers() {
    let down = crate::common::peers::HttpPeer::everything("sse").await;
    let llm = FakeLlm::new()
        .turn(crate::common::Turn::ToolCalls(vec![
            ("ev__echo".into(), Value::String("{\"message\": broken".into())),
            ("ev__does-not-exist".into(), json!({})),
            ("down__echo".into(), json!({"message": "x"})),
        ]))
        .text("Recovered.")
        .start()
        .await;
    let app = with_everything(&llm, &format!("  down:\n    url: {}/sse\n", down.base())).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "down__echo")).await;
    down.kill().await;
    app.wait_for_state("down", "failed").await;
    let body: Value = app.post("/v1/chat/completions", &user("break things")).await.json().await.unwrap();
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().ends_with("Recovered."));
    let tool_messages: Vec<String> = llm.chat_requests()[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tool_messages.len(), 3);
    assert!(tool_messages[0].contains("not valid JSON"), "{tool_messages:?}");
    assert!(tool_messages[1].contains("unknown tool"), "{tool_messages:?}");
    assert!(tool_messages[2].contains("unavailable"), "{tool_messages:?}");
}

#[tokio::test]
async fn the_official_openai_python_sdk_gets_final_answers() {
    let python = crate::common::peers::python();
    let llm = FakeLlm::new()
        .tool_call("ev__get-sum", json!({"a": 20, "b": 22}))
        .text("It is 42.")
        .tool_call("ev__get-sum", json!({"a": 20, "b": 22}))
        .text("It is 42.")
        .start()
        .await;
    let app = with_everything(&llm, "tool_loop:\n  tool_cards: false\n").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/openai_client.py");
    let out = tokio::process::Command::new(python)
        .args([script, &app.url("/v1"), "gpt-test", "what is 20 + 22?"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["plain"], "It is 42.");
    assert_eq!(got["stream"], "It is 42.");
    assert_eq!((got["plain_finish"].as_str(), got["stream_finish"].as_str()), (Some("stop"), Some("stop")));
    let two_rounds = 2 * (PROMPT_TOKENS + COMPLETION_TOKENS);
    assert_eq!((got["plain_usage"].as_u64(), got["stream_usage"].as_u64()), (Some(two_rounds), Some(two_rounds)));
    assert_eq!(llm.chat_requests().len(), 4);
}

#[tokio::test]
async fn open_webui_history_with_tool_cards_reaches_the_model_as_tool_messages() {
    // Turn 1: the gateway runs a tool and streams a card, as Open WebUI receives it.
    let llm = FakeLlm::new()
        .tool_call("ev__get-sum", json!({"a": 2, "b": 3}))
        .text("The sum is 5.")
        .text("You are welcome.")
        .start()
        .await;
    let app = with_everything(&llm, "").await;
    let open_webui_tools = json!([{"type": "function", "function": {"name": "get_current_timestamp",
        "description": "Get the current Unix timestamp", "parameters": {"type": "object", "properties": {}}}}]);
    let first = json!({"model": "gpt-test", "stream": true, "tools": open_webui_tools,
        "messages": [{"role": "user", "content": "add 2 and 3"}]});
    let streamed = streamed_text(&chunks(&sse_data(app.post("/v1/chat/completions", &first).await).await));
    assert!(streamed.contains("<details type=\"tool_calls\""), "{streamed}");

    // Turn 2: Open WebUI 0.9+ rebuilds the history from its stored output items and sends the
    // assistant text verbatim, cards and all.
    let second = json!({"model": "gpt-test", "stream": true, "tools": open_webui_tools, "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "add 2 and 3"},
        {"role": "assistant", "content": streamed},
        {"role": "user", "content": "thanks"},
    ]});
    let reply = streamed_text(&chunks(&sse_data(app.post("/v1/chat/completions", &second).await).await));
    assert_eq!(reply, "You are welcome.");

    let sent = llm.chat_requests();
    let history = sent[2]["messages"].as_array().unwrap();
    let roles: Vec<&str> = history.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "assistant", "user"], "{history:#?}");
    assert_eq!(history[2]["tool_calls"][0]["function"]["name"], "ev__get-sum");
    assert_eq!(history[2]["tool_calls"][0]["function"]["arguments"], r#"{"a":2,"b":3}"#);
    assert_eq!(history[3]["tool_call_id"], history[2]["tool_calls"][0]["id"]);
    assert!(history[3]["content"].as_str().unwrap().contains('5'));
    assert_eq!(history[4]["content"], "The sum is 5.");
    assert!(!sent[2].to_string().contains("<details"), "the model never sees the HTML");
}

/// The gateway with our test server over stdio, recording its events to a file.
async fn with_test_server(llm: &FakeLlmHandle, extra: &str) -> (TestApp, std::path::PathBuf) {
    let events = std::env::temp_dir().join(format!("mcpmw-events-{}-{}", std::process::id(), uuid_like()));
    let yaml = format!(
        "mcpServers:\n  ts:\n    command: {}\n    args: [stdio]\n    env: {{MCP_TEST_EVENTS: \"{}\"}}\n{extra}",
        crate::common::peers::TEST_SERVER,
        events.display()
    );
    let app = TestApp::in_front_of(llm, &yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__slow")).await;
    (app, events)
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

async fn wait_for_event(file: &std::path::Path, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(Instant::now() < deadline, "the server never logged {line:?}; it logged {text:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_client_that_disconnects_mid_call_cancels_it_on_the_mcp_server() {
    for stream in [true, false] {
        let llm = FakeLlm::new().tool_call("ts__slow", json!({"ms": 20000, "steps": 4})).text("never").start().await;
        let (app, events) = with_test_server(&llm, "").await;
        let mut req = user("slow please");
        req["stream"] = json!(stream);
        // The client leaves while the tool runs: its response (or request future) is dropped,
        // closing the connection.
        if stream {
            let response = app.post("/v1/chat/completions", &req).await;
            assert_eq!(response.status(), 200);
            wait_for_event(&events, "started slow").await;
            drop(response);
        } else {
            tokio::select! {
                _ = app.post("/v1/chat/completions", &req) => panic!("the slow call cannot finish first"),
                () = wait_for_event(&events, "started slow") => {}
            }
        }
        wait_for_event(&events, "cancelled slow").await;
        assert_eq!(llm.chat_requests().len(), 1, "no further round for a client that left (stream: {stream})");
        // The gateway and the server serve the next request.
        let (status, echo) = app.call_tool("ts__echo", json!({"text": "next"})).await;
        assert_eq!((status, crate::common::first_text(&echo)), (200, "next"), "{echo}");
    }
}

/// A streaming client hears of a call when it starts, not only when it ends: an Open WebUI
/// status line ("Running …") on an empty delta before the result, and "Ran …" with its card
/// after it.
#[tokio::test]
async fn a_running_call_is_shown_before_its_result() {
    use futures_util::StreamExt;
    let llm = FakeLlm::new().tool_call("ts__slow", json!({"ms": 3000, "steps": 3})).text("done").start().await;
    let (app, _) = with_test_server(&llm, "").await;
    let mut req = user("slow");
    req["stream"] = json!(true);
    let started = Instant::now();
    let resp = app.post("/v1/chat/completions", &req).await;
    let mut body = resp.bytes_stream();
    let (mut buffer, mut seen) = (String::new(), Vec::<(Duration, Value)>::new());
    while let Some(bytes) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&bytes.unwrap()));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            for data in crate::common::sse_payloads(&event) {
                if data != "[DONE]" {
                    seen.push((started.elapsed(), serde_json::from_str(&data).unwrap()));
                }
            }
        }
    }
    let at = |pred: &dyn Fn(&Value) -> bool| seen.iter().find(|(_, c)| pred(c)).map(|(t, c)| (*t, c.clone()));
    let (running_at, running) = at(&|c| c["event"]["data"]["done"] == false).expect("a running status");
    assert_eq!(running["event"]["type"], "status");
    assert_eq!(running["event"]["data"]["description"], "Running ts__slow…");
    assert_eq!(running["choices"][0]["delta"], json!({}), "an empty delta for every other client");
    let (card_at, _) = at(&|c| c["choices"][0]["delta"]["content"].as_str().is_some_and(|t| t.contains("<details")))
        .expect("the card");
    let (_, ran) = at(&|c| c["event"]["data"]["done"] == true).expect("a done status");
    assert!(ran["event"]["data"]["description"].as_str().unwrap().starts_with("Ran ts__slow ("), "{ran}");
    // Half the call's 3 s: a late read of the status must not pass for an early one.
    assert!(card_at >= running_at + Duration::from_millis(1500), "running at {running_at:?}, card at {card_at:?}");

    // Without cards (a client other than Open WebUI), no status events either.
    let llm = FakeLlm::new().tool_call("ts__echo", json!({"text": "x"})).text("done").start().await;
    let (app, _) = with_test_server(&llm, "tool_loop:\n  tool_cards: false\n").await;
    let raw = app.post("/v1/chat/completions", &req).await.text().await.unwrap();
    assert!(!raw.contains("\"event\""), "{raw}");
}

#[tokio::test]
async fn keep_alive_comments_flow_while_a_slow_tool_runs() {
    let llm = FakeLlm::new().tool_call("ts__slow", json!({"ms": 1200, "steps": 2})).text("done").start().await;
    let (app, _) = with_test_server(&llm, "limits:\n  sse_keepalive: 200ms\n").await;
    let mut req = user("slow");
    req["stream"] = json!(true);
    let raw = app.post("/v1/chat/completions", &req).await.text().await.unwrap();
    assert!(raw.lines().filter(|l| l.starts_with(':')).count() >= 3, "keep-alive comments while the tool ran: {raw}");
    assert!(raw.trim_end().ends_with("data: [DONE]"));
}

/// Over HTTP/2 each stream's request runs on a serving core and its tool calls cross to the
/// hub's runtime and back: two chats on one connection at once, each with its own call.
#[tokio::test]
async fn tool_loops_run_for_http2_streams() {
    let round = Turn::ToolRound { calls: vec![("ts__echo".into(), json!({"text": "over h2"}))], text: "done".into() };
    let llm = FakeLlm::new().turn(round).start().await;
    let (app, _) = with_test_server(&llm, "").await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().timeout(Duration::from_secs(30)).build().unwrap();
    let send = |stream: bool| {
        let mut body = user("echo");
        body["stream"] = json!(stream);
        h2.post(app.url("/v1/chat/completions")).json(&body).send()
    };
    let (streamed, plain) = tokio::join!(send(true), send(false));
    let (streamed, plain) = (streamed.unwrap(), plain.unwrap());
    assert_eq!((streamed.version(), plain.version()), (reqwest::Version::HTTP_2, reqwest::Version::HTTP_2));
    let streamed = streamed.text().await.unwrap();
    assert!(streamed_text(&chunks(&crate::common::sse_payloads(&streamed))).contains("done"), "{streamed}");
    let plain: Value = plain.json().await.unwrap();
    let content = plain["choices"][0]["message"]["content"].as_str().unwrap_or_default();
    assert!(content.ends_with("done") && content.contains("name=\"ts__echo\""), "{plain}");
    assert_eq!(plain["mcp_tool_calls"][0]["is_error"], false, "{plain}");
    // Both calls reached the server and their results the model.
    let results: Vec<Value> = llm
        .chat_requests()
        .into_iter()
        .filter_map(|r| r["messages"].as_array().and_then(|m| m.last().cloned()))
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results.iter().all(|m| m["content"].to_string().contains("over h2")), "{results:?}");
}
