//! The loop as a state machine that can stop and go on elsewhere: run one round, apply it (the
//! tool runs), serialise the state, and resume it with another gateway's agent — its own hub,
//! its own upstream client — to the final answer. What the next issues build on to park a loop
//! while a person answers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mcp_middleware::agent::{ChatInput, LoopState, Planned, RoundResult, Sink, Step, ToolLoop};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::FakeLlm;
use crate::common::peers::TEST_SERVER;

async fn agent(yaml: &str) -> (mcp_middleware::http::AppState, CancellationToken) {
    let config = mcp_middleware::config::load_str(yaml, &std::collections::HashMap::<String, String>::new()).unwrap();
    let token = CancellationToken::new();
    let addr = "127.0.0.1:0".parse().unwrap();
    let state = mcp_middleware::app::build_state(config, &token, &token, token.child_token(), addr).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while state.hub.catalog().get("ts__echo").is_none() {
        assert!(Instant::now() < deadline, "ts never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (state, token)
}

#[tokio::test]
async fn a_loop_parked_after_a_round_goes_on_in_another_process() {
    let llm = FakeLlm::new().tool_call("ts__echo", json!({"text": "parked"})).text("Resumed and done.").start().await;
    let yaml = format!(
        "upstream:\n  base_url: {}\nbuiltin_tools:\n  enabled: false\nmcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n",
        llm.url
    );
    let (first, first_token) = agent(&yaml).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "echo parked"}]});
    let input = ChatInput {
        raw: Bytes::from(body.to_string()),
        key: None,
        mcp_servers: Vec::new(),
        background: false,
        headers: http::HeaderMap::new(),
        client_auth: None,
        identity: Default::default(),
        first_event_wait: Duration::from_secs(1),
        approval: None,
    };
    let Planned::Loop { job, .. } = first.agent.plan(input).await.unwrap() else { panic!("tools were offered") };
    let sink = Sink::collect();
    let mut tool_loop = ToolLoop::start(first.agent.clone(), *job);
    let RoundResult::Answered(round) = tool_loop.next_round(&sink).await.unwrap() else { panic!("a round") };
    assert!(matches!(tool_loop.apply(round, &sink).await, Step::Continue), "the tool ran; the loop goes on");
    let parked = serde_json::to_string(tool_loop.state()).unwrap();
    drop(tool_loop);
    first_token.cancel();
    first.hub.shutdown().await;

    // Elsewhere: another agent, its own MCP servers, the state from the store.
    let (second, second_token) = agent(&yaml).await;
    let state: LoopState = serde_json::from_str(&parked).unwrap();
    assert_eq!(state.round_no, 1);
    let access = mcp_middleware::agent::ToolAccess::default();
    let mut resumed = ToolLoop::resume(second.agent.clone(), state, &access, http::HeaderMap::new(), None);
    let outcome = resumed.run(&sink).await.unwrap();
    let completion = outcome.into_completion();
    assert!(
        completion["choices"][0]["message"]["content"].as_str().unwrap().ends_with("Resumed and done."),
        "{completion}"
    );
    let trace: Vec<&Value> = completion["mcp_tool_calls"].as_array().unwrap().iter().collect();
    assert_eq!(trace.len(), 1, "the call ran once, before parking: {completion}");
    let sent = llm.chat_requests();
    assert_eq!(sent.len(), 2);
    let tool = sent[1]["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap().clone();
    assert_eq!(tool["content"], "parked", "the resumed round carries the parked result");
    assert_eq!(sent[1]["tools"], sent[0]["tools"], "the same offer, rebuilt from names");

    // Resumed for a caller whose access no longer allows the tool (a reload narrowed its key):
    // the tool is not offered any more.
    let state: LoopState = serde_json::from_str(&parked).unwrap();
    let narrowed = mcp_middleware::agent::ToolAccess::new(
        None,
        None,
        &mcp_middleware::agent::RequestControls { enabled: Some(false), ..Default::default() },
    );
    let mut resumed = ToolLoop::resume(second.agent.clone(), state, &narrowed, http::HeaderMap::new(), None);
    assert!(!resumed.state().offered.is_empty(), "the state keeps its names");
    let llm_before = llm.chat_requests().len();
    let _ = resumed.run(&sink).await;
    let last = llm.chat_requests().pop().unwrap();
    assert!(llm.chat_requests().len() > llm_before);
    let offered: Vec<&str> =
        last["tools"].as_array().into_iter().flatten().filter_map(|t| t["function"]["name"].as_str()).collect();
    assert!(!offered.contains(&"ts__echo"), "{offered:?}");
    second_token.cancel();
    second.hub.shutdown().await;
}

/// The invoker's audit hook (what the console's trail keeps): one record per call, its
/// arguments as the Activity page shows them and no output, for successes and failures alike.
#[tokio::test]
async fn every_call_leaves_one_audit_record() {
    use mcp_middleware::agent::{AuditRecord, AuditSink, ToolAccess};
    #[derive(Default)]
    struct Kept(std::sync::Mutex<Vec<AuditRecord>>);
    impl AuditSink for Kept {
        fn record(&self, record: AuditRecord) {
            self.0.lock().unwrap().push(record);
        }
    }
    let yaml = format!(
        "builtin_tools:\n  enabled: false\nmcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n"
    );
    let (state, token) = agent(&yaml).await;
    let kept = std::sync::Arc::new(Kept::default());
    let mut invoker = state.agent.invoker.clone();
    invoker.audit = Some(kept.clone());
    let catalog = state.hub.catalog();
    let access = ToolAccess::default();
    let user = mcp_middleware::config::UserIdentity { id: Some("u-1".into()), ..Default::default() };
    for (tool, args) in [("ts__echo", json!({"text": "secret text"})), ("ts__fail", json!({}))] {
        let authorized = access.authorize(catalog.get(tool).unwrap()).unwrap();
        invoker.invoke(authorized, args, || None, &user).await;
    }
    let records = kept.0.lock().unwrap().clone();
    assert_eq!(records.len(), 2);
    assert_eq!(
        (records[0].tool.as_str(), records[0].outcome.as_str(), records[0].user.as_deref()),
        ("ts__echo", "ok", Some("u-1"))
    );
    assert_eq!((records[1].tool.as_str(), records[1].outcome.as_str()), ("ts__fail", "error"));
    assert_eq!(records[0].arguments, r#"{"text":"secret text"}"#);
    assert!(records[1].error.is_some(), "{records:?}");
    let ok = serde_json::to_value(&records[0]).unwrap();
    let mut fields: Vec<&str> = ok.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    let expected = [
        "argument_bytes",
        "arguments",
        "chat",
        "duration_ms",
        "error",
        "holder",
        "key",
        "outcome",
        "server",
        "started_ms",
        "tool",
        "user",
    ];
    assert_eq!(fields, expected, "no output in the trail: {ok}");
    token.cancel();
    state.hub.shutdown().await;
}
