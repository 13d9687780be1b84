//! The tool loop against real providers' stream shapes and rules (personas of the scripted
//! model, which refuse a wrong history with the provider's own error): three rounds with
//! parallel calls, streaming and not, for every persona; a model that ignores
//! `tool_choice: "none"`; a mixed turn's history coming back from the client.

use serde_json::{Value, json};

use crate::common::peers::TEST_SERVER;
use crate::common::{FakeLlm, FakeLlmHandle, Persona, TestApp, chunks, sse_data, streamed_text};

const ALL: [Persona; 8] = [
    Persona::OpenAi,
    Persona::AnthropicThinking,
    Persona::Gemini,
    Persona::DeepSeek,
    Persona::Fireworks,
    Persona::IgnoresToolChoice,
    Persona::Indexless,
    Persona::AzureFirstChunk,
];

async fn with_test_server(llm: &FakeLlmHandle, extra: &str) -> TestApp {
    let yaml = format!("mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n{extra}");
    let app = TestApp::in_front_of(llm, &yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    app
}

/// Two rounds of two parallel calls, then the answer; twice (one streaming, one not).
fn three_rounds(persona: Persona) -> FakeLlm {
    let mut llm = FakeLlm::new().persona(persona);
    for _ in 0..2 {
        llm = llm
            .tool_calls(&[("ts__echo", json!({"text": "one"})), ("ts__echo", json!({"text": "two"}))])
            .tool_calls(&[("ts__echo", json!({"text": "three"})), ("ts__echo", json!({"text": "four"}))])
            .text("Done.");
    }
    llm
}

fn chat(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "echo four things"}]})
}

#[tokio::test]
async fn every_persona_completes_three_rounds_streaming_and_not() {
    for persona in ALL {
        let llm = three_rounds(persona).start().await;
        let app = with_test_server(&llm, "").await;

        let body: Value = app.post("/v1/chat/completions", &chat(false)).await.json().await.unwrap();
        assert_eq!(llm.refusals(), Vec::<Value>::new(), "{persona:?} refused the history");
        let content = body["choices"][0]["message"]["content"].as_str().unwrap_or_default();
        assert!(content.ends_with("Done."), "{persona:?}: {body}");
        assert_eq!(body["choices"][0]["finish_reason"], "stop", "{persona:?}");
        let trace = body["mcp_tool_calls"].as_array().unwrap();
        assert_eq!(trace.len(), 4, "{persona:?}: {body}");
        assert!(trace.iter().all(|t| t["is_error"] == false), "{persona:?}: {body}");

        let resp = app.post("/v1/chat/completions", &chat(true)).await;
        assert_eq!(resp.status(), 200);
        let data = sse_data(resp).await;
        assert_eq!(data.iter().filter(|d| *d == "[DONE]").count(), 1, "{persona:?}");
        let chunks = chunks(&data);
        assert!(streamed_text(&chunks).ends_with("Done."), "{persona:?}: {data:?}");
        let finish: Vec<&Value> =
            chunks.iter().map(|c| &c["choices"][0]["finish_reason"]).filter(|f| !f.is_null()).collect();
        assert_eq!(finish, [&json!("stop")], "{persona:?}");
        assert!(chunks.iter().all(|c| c["id"] != ""), "{persona:?}: no chunk has an empty id");
        assert_eq!(llm.refusals(), Vec::<Value>::new(), "{persona:?} refused the history");
        assert_eq!(llm.chat_requests().len(), 6, "{persona:?}: three rounds each");
    }
}

#[tokio::test]
async fn personas_say_no_to_a_wrong_history() {
    let history = |calls: Value, extra: Value| {
        let mut assistant = json!({"role": "assistant", "content": null, "tool_calls": calls});
        if let (Some(a), Some(e)) = (assistant.as_object_mut(), extra.as_object()) {
            a.extend(e.clone());
        }
        json!({"model": "m", "stream": true, "messages": [
            {"role": "user", "content": "hi"}, assistant,
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]})
    };
    let call = json!([{"id": "call_1", "type": "function", "function": {"name": "ts__echo", "arguments": "{}"}}]);
    let cases = [
        (Persona::AnthropicThinking, history(call.clone(), json!({})), 400, "Expected `thinking`"),
        (
            Persona::AnthropicThinking,
            history(
                call.clone(),
                json!({"thinking_blocks": [{"type": "thinking", "thinking": "x", "signature": "forged"}]}),
            ),
            400,
            "Invalid `signature`",
        ),
        (Persona::Gemini, history(call.clone(), json!({})), 400, "thought_signature"),
        (Persona::DeepSeek, history(call.clone(), json!({})), 400, "reasoning_content"),
        (Persona::OpenAi, history(json!([]), json!({})), 400, "must be a response to a preceeding message"),
    ];
    for (persona, body, status, message) in cases {
        let llm = FakeLlm::new().persona(persona).text("never").start().await;
        let resp =
            reqwest::Client::new().post(format!("{}/chat/completions", llm.url)).json(&body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{persona:?}");
        let error: Value = resp.json().await.unwrap();
        assert!(error["error"]["message"].as_str().unwrap().contains(message), "{persona:?}: {error}");
    }
    // Gemini: a tool message that answers no call is a 500 from LiteLLM.
    let llm = FakeLlm::new().persona(Persona::Gemini).text("never").start().await;
    let orphan = json!({"model": "m", "messages": [{"role": "user", "content": "hi"},
        {"role": "tool", "tool_call_id": "call_x", "content": "ok"}]});
    let resp = reqwest::Client::new().post(format!("{}/chat/completions", llm.url)).json(&orphan).send().await.unwrap();
    assert_eq!(resp.status(), 500);
}

#[tokio::test]
async fn a_model_that_ignores_tool_choice_none_still_gets_a_clean_end() {
    for max_rounds in [1, 3] {
        for stream in [false, true] {
            let llm = FakeLlm::new()
                .persona(Persona::IgnoresToolChoice)
                .tool_calls(&[("ts__echo", json!({"text": "again"}))])
                .start()
                .await;
            let app = with_test_server(&llm, &format!("tool_loop:\n  max_rounds: {max_rounds}\n")).await;
            let resp = app.post("/v1/chat/completions", &chat(stream)).await;
            assert_eq!(resp.status(), 200);
            let (text, finish, ran) = if stream {
                let data = sse_data(resp).await;
                assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
                let chunks = chunks(&data);
                let finish =
                    chunks.iter().rev().find_map(|c| c["choices"][0]["finish_reason"].as_str().map(str::to_owned));
                (streamed_text(&chunks), finish.unwrap_or_default(), None)
            } else {
                let body: Value = resp.json().await.unwrap();
                let text = body["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned();
                let finish = body["choices"][0]["finish_reason"].as_str().unwrap_or_default().to_owned();
                (text, finish, Some(body["mcp_tool_calls"].as_array().unwrap().len()))
            };
            assert_eq!(finish, "stop", "max_rounds {max_rounds}, stream {stream}");
            assert!(text.contains("Stopped"), "a short note says why: {text}");
            if let Some(ran) = ran {
                assert_eq!(ran, max_rounds as usize - 1, "the last round's calls never run");
            }
            assert_eq!(llm.chat_requests().len(), max_rounds as usize);
        }
    }
}

#[tokio::test]
async fn a_mixed_turns_history_comes_back_valid() {
    let llm = FakeLlm::new()
        .tool_calls(&[("ts__echo", json!({"text": "ours"})), ("web_search", json!({"q": "theirs"}))])
        .text("All done.")
        .start()
        .await;
    let app = with_test_server(&llm, "").await;
    let web = json!({"type": "function", "function": {"name": "web_search", "parameters": {"type": "object"}}});
    let first = json!({"model": "m", "tools": [web], "messages": [{"role": "user", "content": "search and echo"}]});
    let body: Value = app.post("/v1/chat/completions", &first).await.json().await.unwrap();
    let message = &body["choices"][0]["message"];
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["tool_calls"][0]["function"]["name"], "web_search");
    assert!(message["content"].as_str().unwrap().contains("<details type=\"tool_calls\""), "our card: {message}");

    // The client runs its tool and sends everything back, as Open WebUI does.
    let mut messages = first["messages"].as_array().unwrap().clone();
    messages.push(json!({"role": "assistant", "content": message["content"], "tool_calls": message["tool_calls"]}));
    messages.push(json!({"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "3 results"}));
    let second = json!({"model": "m", "tools": [web], "messages": messages});
    let resp = app.post("/v1/chat/completions", &second).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(llm.refusals(), Vec::<Value>::new(), "the upstream accepted the history");
    let sent = llm.chat_requests().pop().unwrap();
    let roles: Vec<&str> = sent["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant", "tool"], "{sent}");
}

#[tokio::test]
async fn cards_go_upstream_as_text_when_no_tools_do() {
    let llm = FakeLlm::new().persona(Persona::AnthropicThinking).text("Sure.").start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let card = "<details type=\"tool_calls\" done=\"true\" id=\"c1\" name=\"ts__echo\" arguments=\"&quot;{}&quot;\" result=\"&quot;hi&quot;\">\n<summary>Tool Executed</summary>\n</details>";
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"},
        {"role": "assistant", "content": format!("I echoed.{card}")}, {"role": "user", "content": "thanks"}]});
    assert_eq!(app.post("/v1/chat/completions", &chat).await.status(), 200);
    assert_eq!(llm.refusals(), Vec::<Value>::new());
    let sent = llm.chat_requests().pop().unwrap();
    let assistant = &sent["messages"][1];
    assert!(assistant.get("tool_calls").is_none(), "no tool-call history without tools: {sent}");
    // A card this gateway did not sign goes as the text it is (a signed one becomes a
    // `[called …]` line: see `history.rs`).
    assert!(assistant["content"].as_str().unwrap().contains("ts__echo"), "{sent}");
}

#[tokio::test]
async fn forced_tool_choice_relaxes_after_our_tools_ran_and_n_is_dropped() {
    let llm = FakeLlm::new()
        .tool_call("ts__echo", json!({"text": "x"}))
        .text("Done.")
        .tool_call("ts__echo", json!({"text": "y"}))
        .text("Done.")
        .start()
        .await;
    let app = with_test_server(&llm, "").await;
    for choice in [json!("required"), json!({"type": "function", "function": {"name": "ts__echo"}})] {
        let llm_before = llm.chat_requests().len();
        let body = json!({"model": "m", "n": 2, "tool_choice": choice,
            "messages": [{"role": "user", "content": "echo"}]});
        assert_eq!(app.post("/v1/chat/completions", &body).await.status(), 200);
        let sent = llm.chat_requests();
        let (first, second) = (&sent[llm_before], &sent[llm_before + 1]);
        assert_eq!(first["tool_choice"], choice, "the client's choice holds for the first round");
        assert_eq!(second["tool_choice"], "auto", "then the model may answer");
        assert!(first.get("n").is_none(), "one answer is followed: n is not sent");
    }
}
