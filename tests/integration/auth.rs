//! Inbound API keys: open when none are configured, enforced otherwise, health always open.

use serde_json::json;

use crate::common::{FakeLlm, TestApp};

const KEYS: &str = "auth:\n  api_keys: [\"${KEY_A}\", sk-b]\n";

#[tokio::test]
async fn open_gateway_needs_no_key() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let resp = app.post("/v1/chat/completions", &json!({"model": "m", "messages": []})).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn keys_are_enforced_on_every_route_but_health() {
    let llm = FakeLlm::new().text("ok").start().await;
    let yaml = format!("upstream:\n  base_url: ${{UPSTREAM}}\n{KEYS}");
    let app = TestApp::spawn_with_env(&yaml, &[("UPSTREAM", &llm.url), ("KEY_A", "sk-a")]).await;
    let chat = json!({"model": "m", "messages": []});
    let url = app.url("/v1/chat/completions");

    let none = app.client.post(&url).json(&chat).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let body: serde_json::Value = none.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let wrong = app.client.post(&url).bearer_auth("sk-wrong").json(&chat).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let models = app.client.get(app.url("/v1/models")).send().await.unwrap();
    assert_eq!(models.status(), 401);
    assert!(llm.requests().is_empty(), "no unauthenticated request reached the upstream");

    let a = app.client.post(&url).bearer_auth("sk-a").json(&chat).send().await.unwrap();
    assert_eq!(a.status(), 200);
    let b = app.client.post(&url).header("x-api-key", "sk-b").json(&chat).send().await.unwrap();
    assert_eq!(b.status(), 200);
    let models = app.client.get(app.url("/v1/models")).bearer_auth("sk-b").send().await.unwrap();
    assert_eq!(models.status(), 200);
    // The client's key is ours, not the upstream's: it is never forwarded.
    assert!(llm.requests().iter().all(|r| !r.headers.contains_key("authorization")));
    assert!(llm.requests().iter().all(|r| !r.headers.contains_key("x-api-key")));

    for path in ["/health", "/health/liveliness", "/health/readiness"] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path} is open");
    }
}
