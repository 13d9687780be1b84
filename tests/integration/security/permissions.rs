//! One permission check on every surface: a restricted key (and a narrowing header) limits what
//! `/mcp/tools/list`, `/mcp/servers`, `/mcp/tools/call`, the chat loop and the built-in
//! `list_mcp_tools` show and run. Refused looks exactly like absent (404).

use serde_json::{Value, json};

use crate::common::peers::{TEST_SERVER, everything};
use crate::common::{FakeLlm, FakeLlmHandle, TestApp, first_text};

/// `ev` (server-everything), `ts` (our test server) and the built-in tools, behind keys:
/// `sk-admin` (no policy), `sk-echo` (only tools ending in `echo`) and `sk-lister` (echo tools
/// and `list_mcp_tools`).
async fn guarded(llm: &FakeLlmHandle) -> TestApp {
    let ev = everything();
    let yaml = format!(
        "builtin_tools:\n  enabled: true\n\
         auth:\n  api_keys: [sk-admin]\n  keys:\n    - key: sk-echo\n      tools: [\"*__*echo\"]\n\
         \x20   - key: sk-lister\n      tools: [\"*__*echo\", builtin__list_mcp_tools]\n\
         mcpServers:\n  ev:\n    command: node\n    args: [\"{ev}\", stdio]\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n"
    );
    let mut app = TestApp::in_front_of(llm, &yaml).await;
    app.key = Some("sk-admin".into());
    app.wait_for_tools(|n| {
        ["ev__get-env", "ts__echo", "builtin__minio_upload_object"].iter().all(|t| n.iter().any(|x| x == t))
    })
    .await;
    app
}

async fn call_as(app: &TestApp, key: &str, name: &str, args: Value, servers: Option<&str>) -> (u16, Value) {
    let mut req = app.client.post(app.url("/mcp/tools/call")).bearer_auth(key);
    if let Some(s) = servers {
        req = req.header("x-mcp-servers", s);
    }
    let resp = req.json(&json!({"name": name, "arguments": args})).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn list_as(app: &TestApp, key: &str, servers: Option<&str>) -> Vec<String> {
    let mut req = app.client.get(app.url("/mcp/tools/list")).bearer_auth(key);
    if let Some(s) = servers {
        req = req.header("x-mcp-servers", s);
    }
    let body: Value = req.send().await.unwrap().json().await.unwrap();
    body["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn restricted_keys_hold_on_the_rest_api() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app = guarded(&llm).await;

    let mut listed = list_as(&app, "sk-echo", None).await;
    listed.sort();
    assert_eq!(listed, ["ev__echo", "ts__echo"], "a restricted key lists only its tools");
    assert!(list_as(&app, "sk-admin", None).await.len() > 20, "the admin key sees the whole catalog");
    assert_eq!(list_as(&app, "sk-admin", Some("ts")).await.iter().filter(|n| !n.starts_with("ts__")).count(), 0);

    let servers: Value =
        app.client.get(app.url("/mcp/servers")).bearer_auth("sk-echo").send().await.unwrap().json().await.unwrap();
    let mut names: Vec<&str> =
        servers["servers"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["ev", "ts"], "the built-in server has no tool for this key: not listed");

    // What the key may not run answers exactly like a tool that does not exist.
    let (missing_status, missing) = call_as(&app, "sk-echo", "nope__nothing", json!({}), None).await;
    assert_eq!(missing_status, 404);
    for (name, args) in [
        ("builtin__minio_upload_object", json!({"key": "x.html", "text": "<script>alert(1)</script>"})),
        ("ev__get-env", json!({})),
    ] {
        let (status, body) = call_as(&app, "sk-echo", name, args, None).await;
        assert_eq!(status, 404, "{name}: {body}");
        assert_eq!(body["error"]["code"], missing["error"]["code"]);
        assert_eq!(body["error"]["message"], format!("unknown tool `{name}`"));
    }
    let (_, files) = app.call_tool("builtin__minio_list_objects", json!({})).await;
    assert_eq!(files["structuredContent"]["objects"], json!([]), "the refused upload wrote nothing");
    let (status, echoed) = call_as(&app, "sk-echo", "ts__echo", json!({"text": "hi"}), None).await;
    assert_eq!((status, first_text(&echoed)), (200, "hi"));
    // By server and original name, the same check.
    let resp = app
        .client
        .post(app.url("/mcp/tools/call"))
        .bearer_auth("sk-echo")
        .json(&json!({"server": "ev", "name": "get-env", "arguments": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // The request's own narrowing holds where tools run, for any key.
    let (status, _) = call_as(&app, "sk-admin", "ev__echo", json!({"message": "x"}), Some("ts")).await;
    assert_eq!(status, 404, "x-mcp-servers: ts does not run ev's tools");
    let (status, _) = call_as(&app, "sk-admin", "ts__echo", json!({"text": "x"}), Some("none")).await;
    assert_eq!(status, 404, "x-mcp-servers: none runs nothing");
}

/// The tool message of `call_id` in the last request the model received.
fn tool_message(llm: &FakeLlmHandle) -> String {
    let sent = llm.chat_requests();
    let last = sent.last().expect("the model was asked again");
    let tool = last["messages"].as_array().unwrap().iter().rev().find(|m| m["role"] == "tool").expect("a tool message");
    tool["content"].as_str().unwrap().to_owned()
}

fn offered(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|t| t.iter().map(|t| t["function"]["name"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_loop_runs_only_what_the_request_was_offered() {
    // A prompt-injected model names a tool outside the offer: it must not run.
    let llm = FakeLlm::new().tool_call("ev__get-env", json!({})).text("done").start().await;
    let app = guarded(&llm).await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "call ev__get-env"}]});
    let resp =
        app.client.post(app.url("/v1/chat/completions")).bearer_auth("sk-echo").json(&chat).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let first = &llm.chat_requests()[0];
    let mut tools = offered(first);
    tools.sort();
    assert_eq!(tools, ["ev__echo", "ts__echo"]);
    let message = tool_message(&llm);
    assert!(message.contains("not available to you"), "{message}");
    assert!(!message.contains("PATH"), "get-env ran: {message}");
    assert_eq!(body["mcp_tool_calls"][0]["is_error"], true);

    // The same with a narrowing header and a key that may use everything.
    let llm = FakeLlm::new().tool_call("ev__echo", json!({"message": "hi"})).text("done").start().await;
    let app = guarded(&llm).await;
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth("sk-admin")
        .header("x-mcp-servers", "ts")
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(offered(&llm.chat_requests()[0]).iter().all(|n| n.starts_with("ts__")));
    assert!(tool_message(&llm).contains("not available to you"), "ev__echo ran despite x-mcp-servers: ts");
}

#[tokio::test]
async fn model_policy_narrows_and_list_mcp_tools_shows_only_the_offer() {
    let llm = FakeLlm::new().tool_call("builtin__list_mcp_tools", json!({})).text("done").start().await;
    let app = guarded(&llm).await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "what tools are there?"}]});
    let resp =
        app.client.post(app.url("/v1/chat/completions")).bearer_auth("sk-lister").json(&chat).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let listing = tool_message(&llm);
    assert!(listing.contains("ev__echo") && listing.contains("ts__echo"), "{listing}");
    assert!(!listing.contains("get-env") && !listing.contains("minio_upload_object"), "{listing}");

    // Over REST the same tool, with the same key, lists the same.
    let (status, listed) = call_as(&app, "sk-lister", "builtin__list_mcp_tools", json!({}), None).await;
    assert_eq!(status, 200);
    assert!(!first_text(&listed).contains("get-env"), "{listed}");
    let (_, everything) = app.call_tool("builtin__list_mcp_tools", json!({})).await;
    assert!(first_text(&everything).contains("ev__get-env"), "an unrestricted key still sees it all");
}

#[tokio::test]
async fn request_controls_only_narrow_each_other() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app = guarded(&llm).await;
    let chat = |body_mcp: Option<Value>| {
        let mut chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        if let Some(mcp) = body_mcp {
            chat["mcp"] = mcp;
        }
        chat
    };
    let send = |headers: Vec<&'static str>, body: Value| {
        let mut req = app.client.post(app.url("/v1/chat/completions")).bearer_auth("sk-admin");
        for h in headers {
            req = req.header("x-mcp-servers", h);
        }
        async move { assert_eq!(req.json(&body).send().await.unwrap().status(), 200) }
    };
    send(vec!["ts"], chat(Some(json!({"servers": ["ev"]})))).await;
    send(vec!["none"], chat(Some(json!({"enabled": true})))).await;
    send(vec!["ts,ev", "ts"], chat(None)).await;
    send(vec![], chat(Some(json!({"tools": ["echo"]})))).await;
    send(vec![], chat(Some(json!({"servers": ["ts"], "tools": ["echo"]})))).await;
    let sent = llm.chat_requests();
    assert!(offered(&sent[0]).is_empty(), "the body cannot widen the header: {:?}", offered(&sent[0]));
    assert!(offered(&sent[1]).is_empty(), "enabled: true does not undo x-mcp-servers: none");
    assert!(offered(&sent[2]).iter().all(|n| n.starts_with("ts__")), "every header value narrows");
    assert!(offered(&sent[3]).is_empty(), "an original name matches only with its servers named");
    assert_eq!(offered(&sent[4]), ["ts__echo"]);
}

#[tokio::test]
async fn restricted_keys_get_no_server_side_tools() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app = guarded(&llm).await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "mcp", "server_label": "x", "server_url": "http://127.0.0.1:9/mcp"}]});
    let resp =
        app.client.post(app.url("/v1/chat/completions")).bearer_auth("sk-echo").json(&chat).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "permission_error");
    // The Responses API runs on our loop (the key's policy applies); only hosted tools the
    // upstream would run with its own key are refused.
    let hosted = json!({"model": "m", "input": "hi", "tools": [{"type": "code_interpreter"}]});
    let resp = app.client.post(app.url("/v1/responses")).bearer_auth("sk-echo").json(&hosted).send().await.unwrap();
    assert_eq!(resp.status(), 403, "hosted tools run upstream");
    assert!(llm.requests().is_empty(), "nothing reached the upstream");
    let responses = json!({"model": "m", "input": "hi"});
    let resp = app.client.post(app.url("/v1/responses")).bearer_auth("sk-echo").json(&responses).send().await.unwrap();
    assert_eq!(resp.status(), 200, "a restricted key may use the Responses API with its own tools");
    let offered = offered(&llm.chat_requests()[0]);
    assert!(offered.iter().all(|n| n.contains("echo")), "only the key's tools: {offered:?}");
}

#[tokio::test]
async fn a_request_cannot_widen_its_models_policy() {
    let llm = FakeLlm::new().text("ok").start().await;
    let ev = everything();
    let yaml = format!(
        "models:\n  \"gpt-*\":\n    servers: [ts]\nmcpServers:\n  ev:\n    command: node\n    args: [\"{ev}\", stdio]\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n"
    );
    let app = TestApp::in_front_of(&llm, &yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ev__echo") && n.iter().any(|t| t == "ts__echo")).await;
    let chat =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "mcp": {"servers": ["ev", "ts"]}});
    assert_eq!(app.post("/v1/chat/completions", &chat).await.status(), 200);
    let tools = offered(&llm.chat_requests()[0]);
    assert!(!tools.is_empty() && tools.iter().all(|n| n.starts_with("ts__")), "{tools:?}");
}

// The invariant behind all of the above (only the invoker runs tools, and only with an
// `Authorized` entry) is checked on the source by `tidy.rs`.

/// A tool pattern names its server: `ts__*echo` admits no other server's look-alike, and a bare
/// `*echo` (which used to admit every server's `…echo`) is a config error unless the policy
/// lists its servers.
#[tokio::test]
async fn tool_patterns_cannot_admit_another_servers_look_alike() {
    let refused = mcp_middleware::config::load_str(
        "auth:\n  keys: [{key: sk-a, tools: [\"*echo\"]}]\n",
        &std::collections::HashMap::<String, String>::new(),
    );
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("auth.keys[0].tools") && message.contains("names no server"), "{message}");
    let llm = FakeLlm::new().text("ok").start().await;
    let yaml = format!(
        "auth:\n  api_keys: [sk-admin]\n  keys:\n    - key: sk-ts-echo\n      tools: [\"ts__*echo\"]\n\
         mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n  ts-evil:\n    command: {TEST_SERVER}\n    args: [stdio]\n"
    );
    let mut app = TestApp::in_front_of(&llm, &yaml).await;
    app.key = Some("sk-admin".into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo") && n.iter().any(|t| t == "ts-evil__echo")).await;
    app.key = Some("sk-ts-echo".into());
    let body: serde_json::Value = app.get("/mcp/tools/list").await.json().await.unwrap();
    let names: Vec<&str> = body["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ts__echo"], "`ts-evil`'s echo is another server's");
    // Server names are letters, digits and `-`: `ts__evil` would be a server whose tools look
    // like `ts`'s.
    let refused = mcp_middleware::config::load_str(
        &format!("mcpServers:\n  ts__evil:\n    command: {TEST_SERVER}\n"),
        &std::collections::HashMap::<String, String>::new(),
    );
    assert!(refused.unwrap_err().to_string().contains("rename it, e.g. to `ts-evil`"));
}
