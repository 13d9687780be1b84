//! A person in the loop: a tool that needs approval parks the chat. The answer ends with the
//! request, and the user's next message resumes it: on approve the call runs once; on deny the
//! model is told the user declined. The request names the tool and its arguments. These tests
//! cover streaming and not, and a restart between the question and the answer (SQLite). They
//! cover two gateways on one Postgres: asked on one, answered on the other. An expired answer,
//! another user's answer, and a replayed answer do nothing. Destructive annotations and per-key
//! rules decide which tools wait.

use serde_json::{Value, json};

use crate::common::peers::{TEST_SERVER, TempDir};
use crate::common::process::GatewayProcess;
use crate::common::{FakeLlm, FakeLlmHandle, TestApp, chunks, sse_data, streamed_text};

fn yaml(llm: &FakeLlmHandle, state_url: &str, approval: &str) -> String {
    format!(
        "upstream:\n  base_url: {}\nauth:\n  keys:\n    - key: sk-owui-0123456789\n      trust_user_headers: true\n\
         \x20   - key: sk-strict-0123456789\n      approval: {{require: [ts__headers]}}\n\
         state:\n  url: \"{state_url}\"\n  encryption_key: an-approval-test-key-0123456789abcdef\n\
         approval:\n{approval}\
         builtin_tools:\n  enabled: false\nmcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n",
        llm.url
    )
}

/// One chat request as `user` (Open WebUI's forwarded id) through `key`; returns the answer's
/// text (streamed or not).
async fn chat(base: &str, key: &str, user: &str, messages: &[Value], stream: bool) -> String {
    let body = json!({"model": "m", "messages": messages, "stream": stream});
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .header("X-OpenWebUI-User-Id", user)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    if stream {
        streamed_text(&chunks(&sse_data(resp).await))
    } else {
        let body: Value = resp.json().await.unwrap();
        body["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned()
    }
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

fn assistant(text: &str) -> Value {
    json!({"role": "assistant", "content": text})
}

/// The tool messages of the model's latest request.
fn tool_messages(llm: &FakeLlmHandle) -> Vec<String> {
    let sent = llm.chat_requests().pop().unwrap();
    let messages = sent["messages"].as_array().unwrap();
    messages.iter().filter(|m| m["role"] == "tool").map(|m| m["content"].as_str().unwrap().to_owned()).collect()
}

const OWUI: &str = "sk-owui-0123456789";

#[tokio::test]
async fn approve_runs_the_call_once_and_deny_tells_the_model() {
    let llm = FakeLlm::new()
        .tool_call("ts__echo", json!({"text": "send the report"}))
        .text("Sent.")
        .text("A fresh answer.")
        .tool_call("ts__echo", json!({"text": "delete everything"}))
        .text("Another fresh answer.")
        .text("Understood, I did not do it.")
        .start()
        .await;
    let dir = TempDir::new("mcpmw-approval");
    let mut app =
        TestApp::spawn(&yaml(&llm, &format!("sqlite://{}/state.db", dir.0.display()), "  require: [\"ts__ech*\"]\n"))
            .await;
    app.key = Some(OWUI.into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let base = format!("http://{}", app.addr);

    // Not streamed: the answer is the request; nothing ran.
    let first = [user("send the report")];
    let asked = chat(&base, OWUI, "alice", &first, false).await;
    assert!(asked.contains("Approval needed") && asked.contains("`ts__echo`"), "{asked}");
    assert!(asked.contains("send the report") && asked.contains("mcp-park-"), "{asked}");
    assert_eq!(llm.chat_requests().len(), 1, "the model was asked once");
    assert!(tool_messages(&llm).is_empty());
    let pending =
        |want: f64| crate::metrics::value_when(&base, OWUI, "mcp_middleware_pending_requests", move |v| v == want);
    assert_eq!(pending(1.0).await, 1.0, "one request waits for Alice");

    // "approve": the call runs (once), and the model answers in the same response.
    let approved = [user("send the report"), assistant(&asked), user("approve")];
    let done = chat(&base, OWUI, "alice", &approved, false).await;
    assert!(done.contains("Sent."), "{done}");
    assert_eq!(tool_messages(&llm), vec!["send the report".to_owned()]);
    assert_eq!(pending(0.0).await, 0.0, "nothing waits any more");

    // Replayed: the reference is used up; the request is an ordinary one and nothing runs.
    let replayed = chat(&base, OWUI, "alice", &approved, false).await;
    assert_eq!(replayed, "A fresh answer.");
    assert!(tool_messages(&llm).is_empty(), "nothing ran again");

    // Streamed, and denied: the model reads that the user declined.
    let second = [user("clean up")];
    let asked = chat(&base, OWUI, "alice", &second, true).await;
    assert!(asked.contains("delete everything") && asked.contains("mcp-park-"), "{asked}");
    // Someone else answering (another user of the same key) does nothing...
    let foreign = [user("clean up"), assistant(&asked), user("yes")];
    assert_eq!(chat(&base, OWUI, "mallory", &foreign, true).await, "Another fresh answer.");
    assert!(tool_messages(&llm).is_empty());
    // ...and the request still waits for its own user.
    let denied = [user("clean up"), assistant(&asked), user("No.")];
    let done = chat(&base, OWUI, "alice", &denied, true).await;
    assert!(done.contains("I did not do it"), "{done}");
    assert_eq!(tool_messages(&llm), vec!["The user declined this call; it did not run.".to_owned()]);
}

#[tokio::test]
async fn destructive_tools_and_a_keys_own_rule_decide_what_waits() {
    let llm = FakeLlm::new()
        .tool_call("ts__headers", json!({}))
        .text("Headers read.")
        .tool_call("ts__list_change", json!({}))
        .tool_call("ts__headers", json!({}))
        .start()
        .await;
    let dir = TempDir::new("mcpmw-approval-rules");
    let mut app =
        TestApp::spawn(&yaml(&llm, &format!("sqlite://{}/state.db", dir.0.display()), "  destructive: true\n")).await;
    app.key = Some(OWUI.into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__list_change")).await;
    let base = format!("http://{}", app.addr);
    // `headers` says destructive but also read-only: it runs at once.
    let read = chat(&base, OWUI, "alice", &[user("headers?")], false).await;
    assert!(read.contains("Headers read.") && !read.contains("mcp-park-"), "{read}");
    // `list_change` is destructive: it waits.
    let asked = chat(&base, OWUI, "alice", &[user("change the list")], false).await;
    assert!(asked.contains("`ts__list_change`"), "{asked}");
    // The strict key's own rule adds `ts__headers`.
    let strict = chat(&base, "sk-strict-0123456789", "alice", &[user("headers?")], false).await;
    assert!(strict.contains("`ts__headers`") && strict.contains("mcp-park-"), "{strict}");
}

/// What needs approval is shown whole: a call whose arguments are too long to show is not
/// offered for approval (the model reads why) and nothing runs.
#[tokio::test]
async fn arguments_too_long_to_show_are_not_offered_for_approval() {
    let long = "x".repeat(5000);
    let llm = FakeLlm::new().tool_call("ts__echo", json!({"text": long})).text("Too long, then.").start().await;
    let dir = TempDir::new("mcpmw-approval-long");
    let mut app =
        TestApp::spawn(&yaml(&llm, &format!("sqlite://{}/state.db", dir.0.display()), "  require: [ts__echo]\n")).await;
    app.key = Some(OWUI.into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let base = format!("http://{}", app.addr);
    let answer = chat(&base, OWUI, "alice", &[user("echo a lot")], false).await;
    assert!(answer.contains("Too long, then.") && !answer.contains("mcp-park-"), "{answer}");
    let said = tool_messages(&llm);
    assert_eq!(said.len(), 1);
    assert!(said[0].contains("too long to show"), "{said:?}");
}

#[tokio::test]
async fn an_expired_request_does_nothing() {
    let llm =
        FakeLlm::new().tool_call("ts__echo", json!({"text": "late"})).text("Too late, a fresh answer.").start().await;
    let dir = TempDir::new("mcpmw-approval-ttl");
    let mut app = TestApp::spawn(&yaml(
        &llm,
        &format!("sqlite://{}/state.db", dir.0.display()),
        "  require: [ts__echo]\n  ttl: 1s\n",
    ))
    .await;
    app.key = Some(OWUI.into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let base = format!("http://{}", app.addr);
    let asked = chat(&base, OWUI, "alice", &[user("echo late")], false).await;
    assert!(asked.contains("mcp-park-"), "{asked}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let late = chat(&base, OWUI, "alice", &[user("echo late"), assistant(&asked), user("approve")], false).await;
    assert_eq!(late, "Too late, a fresh answer.");
    assert!(tool_messages(&llm).is_empty(), "nothing ran");
}

#[tokio::test]
async fn a_request_asked_before_a_restart_is_answered_after_it() {
    let llm =
        FakeLlm::new().tool_call("ts__echo", json!({"text": "survived"})).text("Done after the restart.").start().await;
    let dir = TempDir::new("mcpmw-approval-restart");
    let config = yaml(&llm, &format!("sqlite://{}/state.db", dir.0.display()), "  require: [ts__echo]\n");
    let first = GatewayProcess::spawn(&config, &[]).await;
    first.wait_for_tool(Some(OWUI), "ts__echo").await;
    let asked = chat(&first.url(""), OWUI, "alice", &[user("echo it")], true).await;
    assert!(asked.contains("mcp-park-"), "{asked}");
    first.stop().await;

    let second = GatewayProcess::spawn(&config, &[]).await;
    second.wait_for_tool(Some(OWUI), "ts__echo").await;
    let done = chat(&second.url(""), OWUI, "alice", &[user("echo it"), assistant(&asked), user("approve")], true).await;
    assert!(done.contains("Done after the restart."), "{done}");
    assert_eq!(tool_messages(&llm), vec!["survived".to_owned()]);
}

#[tokio::test]
async fn two_gateways_on_one_postgres_ask_on_one_and_answer_on_the_other() {
    let pg = tokio::task::spawn_blocking(crate::common::peers::Postgres::start).await.unwrap();
    let llm = FakeLlm::new().tool_call("ts__echo", json!({"text": "replica"})).text("Answered on B.").start().await;
    let config = yaml(&llm, &pg.url, "  require: [ts__echo]\n");
    let mut a = TestApp::spawn(&config).await;
    a.key = Some(OWUI.into());
    let mut b = TestApp::spawn(&config).await;
    b.key = Some(OWUI.into());
    a.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    b.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let asked = chat(&format!("http://{}", a.addr), OWUI, "alice", &[user("echo")], false).await;
    assert!(asked.contains("mcp-park-"), "{asked}");
    let answer = [user("echo"), assistant(&asked), user("ok")];
    let done = chat(&format!("http://{}", b.addr), OWUI, "alice", &answer, false).await;
    assert!(done.contains("Answered on B."), "{done}");
    assert_eq!(tool_messages(&llm), vec!["replica".to_owned()]);
}

/// The official OpenAI Python SDK, as any client would: the approval request arrives as the
/// answer, the SDK sends the conversation back with "approve", and the streamed answer follows.
#[tokio::test]
async fn the_openai_sdk_asks_and_approves() {
    let python = crate::common::peers::python();
    let llm =
        FakeLlm::new().tool_call("ts__echo", json!({"text": "from the SDK"})).text("Echoed for the SDK.").start().await;
    let dir = TempDir::new("mcpmw-approval-sdk");
    let mut app =
        TestApp::spawn(&yaml(&llm, &format!("sqlite://{}/state.db", dir.0.display()), "  require: [ts__echo]\n")).await;
    app.key = Some(OWUI.into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/openai_approval.py");
    let out = tokio::process::Command::new(python)
        .args([script, &app.url("/v1"), OWUI, "gpt-test", "echo from the SDK"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(got["request"].as_str().unwrap().contains("Approval needed"), "{got}");
    assert_eq!(got["finish"], "stop");
    assert!(got["answer"].as_str().unwrap().contains("Echoed for the SDK."), "{got}");
    assert_eq!(tool_messages(&llm), vec!["from the SDK".to_owned()]);
}
