//! A real LiteLLM proxy in the chain — client → mcp-middleware → LiteLLM → provider — in front of
//! provider-native scripted models that enforce Anthropic's thinking-block rules and Gemini 3's
//! thought signatures. Claude with extended thinking and Gemini 3 each complete a three-round
//! loop with two parallel calls per round, streaming and not.

use serde_json::{Value, json};

use crate::common::native::NativeProviders;
use crate::common::peers::{LiteLlm, TEST_SERVER};
use crate::common::{TestApp, chunks, sse_data, streamed_text};

const MASTER: &str = "sk-litellm-master-test";

fn litellm_config(native: &NativeProviders) -> String {
    format!(
        "model_list:\n\
         \x20 - model_name: claude-thinking\n    litellm_params:\n      model: anthropic/claude-sonnet-4-5-20250929\n      api_base: {anthropic}\n      api_key: sk-ant-test\n\
         \x20 - model_name: gemini-3\n    litellm_params:\n      model: gemini/gemini-3-pro-preview\n      api_base: {gemini}\n      api_key: gemini-test-key\n\
         general_settings:\n  master_key: {MASTER}\n\
         litellm_settings:\n  drop_params: true\n  telemetry: false\n",
        anthropic = native.anthropic,
        gemini = native.gemini,
    )
}

fn chat(model: &str, stream: bool) -> Value {
    let mut body = json!({"model": model, "stream": stream,
        "messages": [{"role": "user", "content": "Echo two words, twice."}]});
    if model.starts_with("claude") {
        // How Open WebUI users turn on extended thinking per model.
        body["reasoning_effort"] = json!("low");
    }
    body
}

#[tokio::test]
async fn claude_with_thinking_and_gemini_3_through_a_real_litellm() {
    let native = NativeProviders::start().await;
    let litellm = LiteLlm::start(&litellm_config(&native), MASTER).await;
    let yaml = format!(
        "upstream:\n  base_url: {}\n  api_key: {MASTER}\nmcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n",
        litellm.url
    );
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;

    for model in ["claude-thinking", "gemini-3"] {
        for stream in [false, true] {
            let before = native.requests().len();
            let resp = app.post("/v1/chat/completions", &chat(model, stream)).await;
            let status = resp.status();
            let (text, finish) = if stream {
                assert_eq!(status, 200, "{model}");
                let data = sse_data(resp).await;
                assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{model}: {data:?}");
                let chunks = chunks(&data);
                let finish =
                    chunks.iter().rev().find_map(|c| c["choices"][0]["finish_reason"].as_str().map(str::to_owned));
                (streamed_text(&chunks), finish.unwrap_or_default())
            } else {
                let body: Value = resp.json().await.unwrap();
                assert_eq!(status, 200, "{model}: {body}\nLiteLLM log:\n{}", litellm.log());
                let trace = body["mcp_tool_calls"].as_array().cloned().unwrap_or_default();
                assert_eq!(trace.len(), 4, "{model}: two rounds of two calls: {body}");
                assert!(trace.iter().all(|t| t["is_error"] == false), "{model}: {body}");
                let text = body["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned();
                (text, body["choices"][0]["finish_reason"].as_str().unwrap_or_default().to_owned())
            };
            assert_eq!(native.refusals(), Vec::<Value>::new(), "{model} (stream {stream}): the provider refused");
            assert!(text.ends_with("Done."), "{model} (stream {stream}): {text}\nLiteLLM log:\n{}", litellm.log());
            assert_eq!(finish, "stop", "{model} (stream {stream})");
            let rounds = native.requests().len() - before;
            assert_eq!(rounds, 3, "{model} (stream {stream}): three rounds");
        }
    }
    // The provider really was asked to think, and got its blocks back on every later round.
    let claude: Vec<Value> =
        native.requests().into_iter().filter(|(p, _)| p.contains("messages")).map(|(_, b)| b).collect();
    assert!(claude.iter().all(|b| b["thinking"]["type"] == "enabled"), "reasoning_effort became thinking");
    let third = &claude[2];
    let with_thinking = third["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant" && m["content"][0]["type"] == "thinking")
        .count();
    assert_eq!(with_thinking, 2, "round 3 carries rounds 1 and 2's thinking blocks: {third}");

    // The same three-round loop through the Responses API, streaming and not.
    for model in ["claude-thinking", "gemini-3"] {
        for stream in [false, true] {
            let before = native.requests().len();
            let mut body = json!({"model": model, "stream": stream, "input": "Echo two words, twice."});
            if model.starts_with("claude") {
                body["reasoning"] = json!({"effort": "low"});
            }
            let resp = app.post("/v1/responses", &body).await;
            assert_eq!(resp.status(), 200, "{model} (stream {stream})");
            let response: Value = if stream {
                let events = crate::common::sse_payloads(&resp.text().await.unwrap());
                let parsed: Vec<Value> = events.iter().filter_map(|e| serde_json::from_str(e).ok()).collect();
                let kinds: Vec<&str> = parsed.iter().filter_map(|e| e["type"].as_str()).collect();
                // Events as the loop goes: the calls before the text, the text in pieces.
                let first_text = kinds.iter().position(|k| *k == "response.output_text.delta");
                let last_call = kinds.iter().rposition(|k| *k == "response.mcp_call.completed");
                assert!(first_text > last_call, "{model}: {kinds:?}");
                let last = parsed.last().cloned().unwrap_or_default();
                assert_eq!(last["type"], "response.completed", "{model}: {events:?}");
                last["response"].clone()
            } else {
                resp.json().await.unwrap()
            };
            assert_eq!(native.refusals(), Vec::<Value>::new(), "{model} (stream {stream}): the provider refused");
            let calls: Vec<&Value> =
                response["output"].as_array().unwrap().iter().filter(|i| i["type"] == "mcp_call").collect();
            assert_eq!(calls.len(), 4, "{model}: two rounds of two calls: {response}");
            assert!(calls.iter().all(|c| c["status"] == "completed" && c["server_label"] == "ts"), "{response}");
            let text = response["output"].as_array().unwrap().iter().rev().find(|i| i["type"] == "message").unwrap()
                ["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(text.ends_with("Done."), "{model} (stream {stream}): {response}");
            assert_eq!(native.requests().len() - before, 3, "{model} (stream {stream}): three rounds");
        }
    }
    litellm.kill().await;
}

/// Claude behind LiteLLM calls `find_tools` twice in one round and both searches find the same
/// tool: the next round must still name each tool once (Anthropic answers 400 "tools: Tool names
/// must be unique." otherwise), and stay within `tool_selection.max_tools`.
#[tokio::test]
async fn two_searches_for_the_same_tool_keep_tool_names_unique_for_claude() {
    let native = NativeProviders::start().await;
    let litellm = LiteLlm::start(&litellm_config(&native), MASTER).await;
    let yaml = format!(
        "upstream:\n  base_url: {}\n  api_key: {MASTER}\ntool_selection:\n  max_tools: 3\n\
         mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n",
        litellm.url
    );
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__image")).await;
    let chat = json!({"model": "claude-thinking", "messages": [{"role": "user", "content": "search twice: stats and headers"}]});
    let resp = app.post("/v1/chat/completions", &chat).await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(native.refusals(), Vec::<Value>::new(), "the provider refused: {body}");
    assert_eq!(status, 200, "{body}");
    let trace = body["mcp_tool_calls"].as_array().unwrap();
    assert_eq!(trace.iter().filter(|t| t["name"] == "find_tools").count(), 2, "{body}");
    let second = native.requests().into_iter().filter(|(p, _)| p.contains("messages")).nth(1).unwrap().1;
    let names: Vec<&str> = second["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"ts__image"), "the found tool joined: {names:?}");
    assert!(names.len() <= 3, "within max_tools: {names:?}");
    litellm.kill().await;
}
