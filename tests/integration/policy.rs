//! Which tools a request gets: per key, per model, per request; Open WebUI's background tasks.

use serde_json::{Value, json};

use crate::common::peers::everything;
use crate::common::{FakeLlm, FakeLlmHandle, TestApp};

async fn two_servers(llm: &FakeLlmHandle, extra: &str, key: Option<&str>) -> TestApp {
    let ev = everything();
    let yaml = format!(
        "mcpServers:\n  ev:\n    command: node\n    args: [\"{ev}\", stdio]\n  ev2:\n    command: node\n    args: [\"{ev}\", stdio]\n{extra}"
    );
    let mut app = TestApp::in_front_of(llm, &yaml).await;
    app.key = key.map(str::to_owned);
    app.wait_for_tools(|n| n.iter().any(|t| t == "ev__get-sum") && n.iter().any(|t| t == "ev2__get-sum")).await;
    app
}

fn injected(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|t| t.iter().map(|t| t["function"]["name"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn servers_of(names: &[String]) -> std::collections::BTreeSet<&str> {
    names.iter().filter_map(|n| n.split("__").next()).collect()
}

#[tokio::test]
async fn request_controls_select_servers_and_never_go_upstream() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app = two_servers(&llm, "", None).await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});

    app.post("/v1/chat/completions", &chat).await;
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("x-mcp-servers", "ev2")
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = chat.clone();
    body["mcp"] = json!({"servers": ["ev"], "tools": ["*get-sum", "ev__echo"]});
    app.post("/v1/chat/completions", &body).await;
    body["mcp"] = json!({"enabled": false});
    app.post("/v1/chat/completions", &body).await;
    let mut none = chat.clone();
    none["tool_choice"] = json!("none");
    app.post("/v1/chat/completions", &none).await;

    let sent = llm.chat_requests();
    assert_eq!(servers_of(&injected(&sent[0])), ["ev", "ev2"].into());
    assert_eq!(servers_of(&injected(&sent[1])), ["ev2"].into());
    let mut third = injected(&sent[2]);
    third.sort();
    assert_eq!(third, ["ev__echo", "ev__get-sum"]);
    assert!(sent[3].get("tools").is_none(), "mcp.enabled=false: a plain proxy");
    assert!(sent[4].get("tools").is_none(), "tool_choice none: nothing injected");
    assert!(sent.iter().all(|r| r.get("mcp").is_none()), "the control field never goes upstream");
    assert!(llm.requests().iter().all(|r| !r.headers.contains_key("x-mcp-servers")));

    body["mcp"] = json!({"servers": "ev"});
    let resp = app.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 400, "a malformed control is a clear 400");
}

#[tokio::test]
async fn model_and_key_policies() {
    let llm = FakeLlm::new().text("ok").start().await;
    let extra = "models:\n  \"gpt-*\":\n    servers: [ev]\n  gpt-special:\n    servers: [ev2]\n  \"embed-*\":\n    inject: false\n\
                 auth:\n  keys:\n    - key: sk-limited\n      tools: [\"*__*echo\"]\n    - key: sk-full\n";
    let app = two_servers(&llm, extra, Some("sk-full")).await;
    let send = |model: &str, key: &str| {
        let req = app
            .client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
        async move { assert_eq!(req.send().await.unwrap().status(), 200) }
    };
    send("gpt-4o", "sk-full").await;
    send("gpt-special", "sk-full").await;
    send("embed-small", "sk-full").await;
    send("other", "sk-full").await;
    send("gpt-4o", "sk-limited").await;
    let unauthorized = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);

    let sent = llm.chat_requests();
    assert_eq!(servers_of(&injected(&sent[0])), ["ev"].into(), "glob pattern");
    assert_eq!(servers_of(&injected(&sent[1])), ["ev2"].into(), "an exact name beats a glob");
    assert!(sent[2].get("tools").is_none(), "inject: false");
    assert_eq!(servers_of(&injected(&sent[3])), ["ev", "ev2"].into(), "no policy: everything");
    assert_eq!(injected(&sent[4]), ["ev__echo"], "the key narrows what the model policy allows");
}

/// Open WebUI's background task requests, shaped as its `routers/tasks.py` builds them (one user
/// message from the default templates, `stream: false`, no tools; `metadata` is stripped
/// before the request leaves Open WebUI).
fn open_webui_task(prompt: &str) -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": prompt}], "stream": false})
}

#[tokio::test]
async fn open_webui_background_tasks_get_no_tools() {
    let llm = FakeLlm::new().text("{\"title\": \"Sums\"}").start().await;
    let app = two_servers(&llm, "", None).await;
    let history = "<chat_history>\nUSER: what is 2 + 3?\nASSISTANT: The sum is 5.\n</chat_history>";
    let title = format!(
        "### Task:\nGenerate a concise title summarizing the chat history.\n### Guidelines:\n- The title should clearly represent the main theme\n### Output:\nJSON format: {{ \"title\": \"your concise title here\" }}\n### Chat History:\n{history}"
    );
    let tags = format!(
        "### Task:\nGenerate 1-3 broad tags categorizing the main themes of the chat history, along with 1-3 more specific subtopic tags.\n### Output:\nJSON format: {{ \"tags\": [\"tag1\", \"tag2\", \"tag3\"] }}\n### Chat History:\n{history}"
    );
    let follow_ups = format!(
        "### Task:\nPredict 3-5 useful messages this user might naturally send next.\n### Output:\nJSON format: {{ \"follow_ups\": [\"...\"] }}\n### Chat History:\n{history}"
    );
    for prompt in [&title, &tags, &follow_ups] {
        let resp = app.post("/v1/chat/completions", &open_webui_task(prompt)).await;
        assert_eq!(resp.status(), 200);
    }
    // Open WebUI 0.10+ can also say so in a header (a connection header set to `{{TASK}}`).
    let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Summarise"}]});
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("x-openwebui-task", "title_generation")
        .json(&chat)
        .send()
        .await;
    assert_eq!(resp.unwrap().status(), 200);
    // An ordinary chat message still gets the tools.
    app.post("/v1/chat/completions", &chat).await;

    let sent = llm.chat_requests();
    assert_eq!(sent.len(), 5);
    for task in &sent[..4] {
        assert!(task.get("tools").is_none(), "a background task got tools: {task}");
    }
    assert_eq!(sent[0], open_webui_task(&title), "passed through exactly as sent");
    assert!(!injected(&sent[4]).is_empty());
}
