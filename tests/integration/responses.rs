//! The Responses API on the chat loop, driven by the official OpenAI Python SDK in front of the
//! scripted model: our tool runs in the loop and its `mcp_call` carries the output, the streamed
//! events arrive in order, a client function tool is handed back and continued with
//! `previous_response_id`, stored responses are got and deleted, `require_approval` asks and
//! the answer decides; hosted tools the gateway does not run, and servers it does not have, are
//! refused.

use serde_json::{Value, json};

use crate::common::peers::TEST_SERVER;
use crate::common::{FakeLlm, TestApp};

async fn gateway(llm: &crate::common::FakeLlmHandle, extra: &str) -> TestApp {
    let yaml = format!(
        "tool_loop:\n  tool_cards: false\nmcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n{extra}"
    );
    let mut app = TestApp::in_front_of(llm, &yaml).await;
    if extra.contains("sk-admin") {
        app.key = Some("sk-admin".into());
    }
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    app
}

fn types(items: &Value) -> Vec<&str> {
    items.as_array().unwrap().iter().filter_map(|i| i["type"].as_str()).collect()
}

#[tokio::test]
async fn the_openai_sdk_runs_our_tools_through_responses() {
    let llm = FakeLlm::new()
        .tool_call("ts__echo", json!({"text": "hi"}))
        .text("Echoed.")
        .tool_call("ts__echo", json!({"text": "streamed"}))
        .text("Streamed.")
        .tool_call("get_weather", json!({"city": "Paris"}))
        .text("Sunny in Paris.")
        .tool_call("ts__echo", json!({"text": "approve me"}))
        .text("Approved and ran.")
        .tool_call("ts__echo", json!({"text": "deny me"}))
        .text("Not run, as you said.")
        .start()
        .await;
    let app = gateway(&llm, "").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/openai_responses.py");
    let out = tokio::process::Command::new(crate::common::peers::python())
        .args([script, &app.url("/v1")])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();

    let create = &got["create"];
    assert_eq!(types(&create["output"]), ["mcp_list_tools", "mcp_call", "message"], "{create}");
    let call = &create["output"][1];
    assert_eq!((call["server_label"].as_str(), call["name"].as_str()), (Some("ts"), Some("echo")), "{call}");
    assert!(call["output"].as_str().unwrap_or_default().contains("hi"), "{call}");
    assert_eq!(create["text"], "Echoed.");
    // Only `echo` of `ts` was offered (allowed_tools narrows).
    let offered: Vec<String> = llm.chat_requests()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(offered, ["ts__echo"], "{offered:?}");

    let stream = &got["stream"];
    let kinds: Vec<&str> = stream["types"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let at = |kind: &str| kinds.iter().position(|k| *k == kind).unwrap_or_else(|| panic!("{kind} in {kinds:?}"));
    assert_eq!(kinds.first(), Some(&"response.created"));
    assert!(at("response.mcp_call.in_progress") < at("response.mcp_call.completed"), "{kinds:?}");
    assert!(at("response.mcp_call.completed") < at("response.output_text.delta"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"response.completed"), "{kinds:?}");
    assert_eq!(stream["text"], "Streamed.");

    let function = &got["function"];
    assert_eq!(function["call"]["name"], "get_weather", "{function}");
    assert_eq!(function["text"], "Sunny in Paris.");
    assert_eq!((function["fetched"].as_bool(), function["gone_after_delete"].as_bool()), (Some(true), Some(true)));
    // The follow-up carried the whole conversation: the call and its output.
    let followed = &llm.chat_requests()[5]["messages"];
    assert!(followed.to_string().contains("sunny") && followed.to_string().contains("get_weather"), "{followed}");

    let approve = &got["approve"];
    assert_eq!(approve["requests"].as_array().unwrap().len(), 1, "{approve}");
    assert_eq!(approve["requests"][0]["name"], "echo", "{approve}");
    assert_eq!(approve["text"], "Approved and ran.");
    let tool_outputs = |i: usize| -> Vec<String> {
        llm.chat_requests()[i]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert!(tool_outputs(7).iter().any(|o| o == "approve me"), "the tool ran: {:?}", tool_outputs(7));
    let deny = &got["deny"];
    assert_eq!(deny["text"], "Not run, as you said.");
    let denied = tool_outputs(9);
    assert!(!denied.iter().any(|o| o == "deny me") && !denied.is_empty(), "the tool did not run: {denied:?}");
}

#[tokio::test]
async fn hosted_tools_and_unknown_servers_are_refused() {
    let llm = FakeLlm::new().text("unused").start().await;
    let app = gateway(
        &llm,
        "builtin_tools:\n  enabled: true\nauth:\n  api_keys: [sk-admin]\n  keys:\n    - key: sk-ts\n      servers: [ts]\n",
    )
    .await;
    let post = |key: &str, body: Value| app.client.post(app.url("/v1/responses")).bearer_auth(key).json(&body).send();
    let web = json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]});
    let refused = post("sk-ts", web).await.unwrap();
    assert_eq!(refused.status(), 403);
    let anywhere = json!({"model": "m", "input": "hi", "tools": [{"type": "mcp", "server_label": "x", "server_url": "http://169.254.169.254/mcp"}]});
    let refused = post("sk-admin", anywhere).await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("server_url"), "{body}");
    // A server the key may not use is as unknown as one that does not exist.
    let other = json!({"model": "m", "input": "hi", "tools": [{"type": "mcp", "server_label": "builtin"}]});
    assert_eq!(post("sk-ts", other).await.unwrap().status(), 400);
    // A restricted key may use the Responses API with its own tools.
    let plain = json!({"model": "m", "input": "hi"});
    let ok = post("sk-ts", plain).await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["object"], "response");
    // Another caller's stored response is as absent as one that never was.
    let id = body["id"].as_str().unwrap();
    let theirs = app.client.get(app.url(&format!("/v1/responses/{id}"))).bearer_auth("sk-admin").send().await.unwrap();
    assert_eq!(theirs.status(), 404);
    let mine = app.client.get(app.url(&format!("/v1/responses/{id}"))).bearer_auth("sk-ts").send().await.unwrap();
    assert_eq!(mine.status(), 200);
}

#[tokio::test]
async fn an_openai_agents_sdk_agent_answers_with_our_tool() {
    let llm = FakeLlm::new()
        .tool_call("ts__echo", json!({"text": "hello from the agent"}))
        .text("The echo said: hello from the agent.")
        .start()
        .await;
    let app = gateway(&llm, "").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/openai_agents.py");
    let out = tokio::process::Command::new(crate::common::peers::python())
        .args([script, &app.url("/v1"), "Echo: hello from the agent"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["final"], "The echo said: hello from the agent.", "{got}");
    // The tool ran in the gateway's loop: the model's second round read its output.
    let second = &llm.chat_requests()[1]["messages"];
    let ran = second.as_array().unwrap().iter().any(|m| m["role"] == "tool" && m["content"] == "hello from the agent");
    assert!(ran, "{second}");
    assert!(got["raw"].to_string().contains("mcp_call"), "the agent saw the call: {got}");
}

/// A streamed response flows as the loop goes: the call's events reach the client while the
/// model still holds its last round.
#[tokio::test]
async fn a_streamed_response_shows_the_call_before_the_loop_ends() {
    let llm = FakeLlm::new().tool_call("ts__echo", json!({"text": "early"})).text("Later.").gated().start().await;
    let app = gateway(&llm, "").await;
    llm.release();
    let body = json!({"model": "m", "stream": true, "input": "echo early",
        "tools": [{"type": "mcp", "server_label": "ts", "require_approval": "never"}]});
    let resp = app.post("/v1/responses", &body).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !seen.contains("response.mcp_call.completed") {
        let next = tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut stream)).await;
        let chunk = next.expect("the call's events came while the model held").unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!seen.contains("response.completed"), "the loop has not ended yet: {seen}");
    llm.release();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(seen.contains("response.completed") && seen.contains("Later."), "{seen}");
}

/// `responses.store_ttl: 0` keeps no response, and each says so.
#[tokio::test]
async fn a_gateway_told_to_keep_nothing_stores_no_response() {
    let llm = FakeLlm::new().text("Kept nowhere.").start().await;
    let app = gateway(&llm, "responses:\n  store_ttl: 0s\n").await;
    let body: Value = app.post("/v1/responses", &json!({"model": "m", "input": "hi"})).await.json().await.unwrap();
    assert_eq!(body["store"], false, "{body}");
    let id = body["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/v1/responses/{id}")).await.status(), 404);
}

/// Stored responses live in the state store: a conversation started on one replica continues
/// on another sharing its Postgres, for the same caller only.
#[tokio::test]
async fn a_stored_response_continues_on_another_replica_over_postgres() {
    let pg = tokio::task::spawn_blocking(crate::common::peers::Postgres::start).await.unwrap();
    let llm = FakeLlm::new().text("First, on A.").text("Second, on B.").start().await;
    let extra = format!(
        "auth:\n  api_keys: [sk-admin, sk-other-0123456789]\nstate:\n  url: \"{}\"\n  encryption_key: a-responses-test-key-0123456789abcdef\n",
        pg.url
    );
    let a = gateway(&llm, &extra).await;
    let b = gateway(&llm, &extra).await;
    let post = |app: &TestApp, key: &str, body: Value| {
        app.client.post(app.url("/v1/responses")).bearer_auth(key).json(&body).send()
    };
    let first: Value =
        post(&a, "sk-admin", json!({"model": "m", "input": "remember 42"})).await.unwrap().json().await.unwrap();
    let id = first["id"].as_str().unwrap();
    let stranger = post(&b, "sk-other-0123456789", json!({"model": "m", "input": "and?", "previous_response_id": id}));
    assert_eq!(stranger.await.unwrap().status(), 400, "another caller's response is not found");
    let second = post(&b, "sk-admin", json!({"model": "m", "input": "and?", "previous_response_id": id}));
    let second: Value = second.await.unwrap().json().await.unwrap();
    assert_eq!(second["output"][0]["content"][0]["text"], "Second, on B.", "{second}");
    let continued = llm.chat_requests()[1]["messages"].to_string();
    assert!(continued.contains("remember 42") && continued.contains("First, on A."), "{continued}");
}

/// A model marked `api: responses` is called through the upstream's own Responses API, for
/// both client APIs: the loop runs our tool over two rounds, and the round after a call sends
/// back the model's reasoning item with it (the model refuses a call without it, as shown).
#[tokio::test]
async fn a_model_behind_the_upstreams_responses_api_runs_the_same_loop() {
    let llm = FakeLlm::new()
        .tool_call("ts__echo", json!({"text": "native"}))
        .text("Native done.")
        .tool_call("ts__echo", json!({"text": "from chat"}))
        .text("Chat done.")
        .text("No tools here.")
        .text("Four-one answers.")
        .start()
        .await;
    let app = gateway(&llm, "models:\n  o-native:\n    api: responses\n  gpt-4*:\n    api: responses\n").await;
    let body = json!({"model": "o-native", "input": "echo native", "reasoning": {"effort": "low"},
        "tools": [{"type": "mcp", "server_label": "ts", "require_approval": "never"}]});
    let resp = app.post("/v1/responses", &body).await;
    assert_eq!(resp.status(), 200);
    let got: Value = resp.json().await.unwrap();
    // The reasoning summary is the response's reasoning item.
    assert_eq!(types(&got["output"]), ["mcp_list_tools", "reasoning", "mcp_call", "message"], "{got}");
    assert_eq!(got["output"][1]["summary"][0]["text"], "Considering the request.", "{got}");
    assert_eq!(got["output"][2]["output"], "native", "{got}");
    assert_eq!(got["output"][3]["content"][0]["text"], "Native done.", "{got}");
    assert_eq!(got["usage"]["output_tokens"], 2 * crate::common::fake_llm::COMPLETION_TOKENS, "{got}");
    assert_eq!(got["usage"]["output_tokens_details"]["reasoning_tokens"], 6, "{got}");

    let chat = json!({"model": "o-native", "stream": true, "messages": [{"role": "user", "content": "echo"}]});
    let resp = app.post("/v1/chat/completions", &chat).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let streamed: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert!(streamed.ends_with("Chat done."), "{text}");
    assert!(text.contains("reasoning_content"), "the summary streams as reasoning: {text}");

    let plain =
        json!({"model": "o-native", "messages": [{"role": "user", "content": "hi"}], "mcp": {"enabled": false}});
    let answer: Value = app.post("/v1/chat/completions", &plain).await.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "No tools here.", "{answer}");

    let sent = llm.requests();
    assert_eq!(sent.len(), 5);
    // Strict by default there: our tools go as `strict: false` (the model would refuse their schemas).
    assert_eq!(sent[0].json()["tools"][0]["strict"], false, "{}", sent[0].json());
    assert!(sent.iter().all(|r| r.path == "/v1/responses"), "{:?}", sent.iter().map(|r| &r.path).collect::<Vec<_>>());
    assert_eq!(llm.refusals(), Vec::<Value>::new());
    let second = sent[1].json();
    let kinds: Vec<&str> =
        second["input"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap_or("message")).collect();
    assert_eq!(kinds, ["message", "reasoning", "function_call", "function_call_output"], "{second}");
    assert_eq!(
        (second["store"].as_bool(), second["reasoning"]["effort"].as_str()),
        (Some(false), Some("low")),
        "{second}"
    );

    // The model says no to a call sent back without the reasoning it was made after.
    let mut bare = second.clone();
    bare["input"].as_array_mut().unwrap().retain(|i| i["type"] != "reasoning");
    let refused = app.client.post(format!("{}/responses", llm.url)).json(&bare).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let refusal: Value = refused.json().await.unwrap();
    assert!(refusal["error"]["message"].as_str().unwrap().contains("required 'reasoning' item"), "{refusal}");

    // A model that does not reason refuses encrypted reasoning: asked once more without it.
    let before = llm.refusals().len();
    let four = json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5});
    let answer: Value = app.post("/v1/chat/completions", &four).await.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Four-one answers.", "{answer}");
    let refusals = llm.refusals();
    assert_eq!(refusals.len(), before + 1, "{refusals:?}");
    assert_eq!(refusals[before]["error"]["param"], "include", "{refusals:?}");
    let retried = llm.requests().last().unwrap().json();
    assert!(retried.get("include").is_none() && retried["max_output_tokens"] == 16, "{retried}");
}

/// A hosted `mcp` tool may name a `server_url` the operator allows: the gateway connects there
/// for that request alone, with the request's headers, and runs its tools — after the user's yes
/// by default, on a new connection for the request that answers. No other listing ever shows
/// them; URLs not allowed, taken labels and keys with a tool policy are refused.
#[tokio::test]
async fn an_allowed_server_url_is_connected_for_its_request_alone() {
    let remote = crate::common::peers::HttpPeer::test_server("http", 0).await;
    let url = format!("{}/mcp", remote.base());
    let llm = FakeLlm::new()
        .tool_call("remote__headers", json!({"authorization": true}))
        .text("Saw the headers.")
        .tool_call("remote__echo", json!({"text": "after yes"}))
        .text("Echoed after approval.")
        .start()
        .await;
    let extra = format!(
        "auth:\n  api_keys: [sk-admin]\n  keys:\n    - key: sk-ts\n      servers: [ts]\nresponses:\n  server_urls: [\"{}/\"]\n",
        remote.base()
    );
    let app = gateway(&llm, &extra).await;
    let post = |key: &str, body: Value| app.client.post(app.url("/v1/responses")).bearer_auth(key).json(&body).send();
    let remote_tool = |approval: Value| {
        json!({"type": "mcp", "server_label": "remote", "server_url": url, "headers": {"X-Team": "blue"},
            "authorization": "client-token", "require_approval": approval})
    };

    let body = json!({"model": "m", "input": "show headers", "tools": [remote_tool(json!("never"))]});
    let resp = post("sk-admin", body).await.unwrap();
    assert_eq!(resp.status(), 200);
    let got: Value = resp.json().await.unwrap();
    assert_eq!(types(&got["output"]), ["mcp_list_tools", "mcp_call", "message"], "{got}");
    assert_eq!(got["output"][0]["server_label"], "remote", "{got}");
    let call = &got["output"][1];
    assert_eq!((call["server_label"].as_str(), call["name"].as_str()), (Some("remote"), Some("headers")), "{call}");
    let output = call["output"].as_str().unwrap();
    assert!(output.contains("blue"), "the request's header reached the server: {call}");
    // Its token reached the server too, and nothing of ours shows it: not the call's output (to
    // the model), the response (which echoes the tools), nor the stored copy.
    assert!(output.contains("authorization") && output.contains("***"), "{output}");
    assert!(!got.to_string().contains("client-token"), "{got}");
    let id = got["id"].as_str().unwrap();
    let stored = app.client.get(app.url(&format!("/v1/responses/{id}"))).bearer_auth("sk-admin").send().await.unwrap();
    let stored = stored.text().await.unwrap();
    assert!(stored.contains("remote") && !stored.contains("client-token"), "{stored}");
    let model_saw = llm.chat_requests()[1].to_string();
    assert!(model_saw.contains("blue") && !model_saw.contains("client-token"), "{model_saw}");
    // Only the named server's tools were offered.
    let offered = llm.chat_requests()[0]["tools"].to_string();
    assert!(offered.contains("remote__echo") && !offered.contains("ts__echo"), "{offered}");

    // Approval by default: the follow-up names the server again and the call runs on its own connection.
    let body = json!({"model": "m", "input": "echo", "tools": [remote_tool(Value::Null)]});
    let waiting: Value = post("sk-admin", body).await.unwrap().json().await.unwrap();
    let asked: Vec<&Value> =
        waiting["output"].as_array().unwrap().iter().filter(|i| i["type"] == "mcp_approval_request").collect();
    assert_eq!(asked.len(), 1, "{waiting}");
    assert_eq!(asked[0]["server_label"], "remote", "{waiting}");
    let answer = json!({"model": "m", "previous_response_id": waiting["id"], "tools": [remote_tool(Value::Null)],
        "input": [{"type": "mcp_approval_response", "approval_request_id": asked[0]["id"], "approve": true}]});
    let done: Value = post("sk-admin", answer).await.unwrap().json().await.unwrap();
    let ran = done["output"].as_array().unwrap().iter().find(|i| i["type"] == "mcp_call").cloned().unwrap_or_default();
    assert_eq!(ran["output"], "after yes", "{done}");
    assert_eq!(done["output"].as_array().unwrap().last().unwrap()["content"][0]["text"], "Echoed after approval.");

    // Nobody else sees the server: not the REST catalog, the server list, nor a chat.
    let listed =
        app.client.get(app.url("/mcp/tools")).bearer_auth("sk-admin").send().await.unwrap().text().await.unwrap();
    assert!(!listed.contains("remote__"), "{listed}");
    let servers =
        app.client.get(app.url("/mcp/servers")).bearer_auth("sk-admin").send().await.unwrap().text().await.unwrap();
    assert!(!servers.contains("remote"), "{servers}");

    // Refused: a key with a tool policy, a label that is a configured server's, a URL not allowed.
    let body = json!({"model": "m", "input": "hi", "tools": [remote_tool(json!("never"))]});
    assert_eq!(post("sk-ts", body).await.unwrap().status(), 403);
    let mut taken = remote_tool(json!("never"));
    taken["server_label"] = json!("ts");
    let body = json!({"model": "m", "input": "hi", "tools": [taken]});
    assert_eq!(post("sk-admin", body).await.unwrap().status(), 400);
    let mut elsewhere = remote_tool(json!("never"));
    elsewhere["server_url"] = json!("http://127.0.0.2:9/mcp");
    let body = json!({"model": "m", "input": "hi", "tools": [elsewhere]});
    let refused = post("sk-admin", body).await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("responses.server_urls"));
    assert_eq!(llm.chat_requests().len(), 4, "no refused request reached the model");
}
