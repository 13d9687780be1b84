//! The s3 artifact store against a real S3 server that checks signatures (SeaweedFS).

use std::time::Duration;

use serde_json::{Value, json};

use crate::agent::with_everything;
use crate::common::peers::{S3_SECRET, Seaweed, TEST_SERVER};
use crate::common::{FakeLlm, TestApp, first_text};

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

fn stdio_ts() -> String {
    format!("mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n")
}

#[tokio::test]
async fn presigned_links_dedup_expire_and_refuse_tampering() {
    let s3 = Seaweed::start().await;
    let yaml = format!("{}{}builtin_tools:\n  enabled: true\n", stdio_ts(), s3.artifacts_yaml(S3_SECRET, "5s"));
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__image") && n.iter().any(|t| t == "builtin__minio_get_url")).await;

    let (status, first) = app.call_tool("ts__image", json!({})).await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = app.call_tool("ts__image", json!({})).await;
    let artifact = &first["artifacts"][0];
    assert_eq!(artifact["key"], second["artifacts"][0]["key"], "the same bytes are one object");
    let url = artifact["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&s3.endpoint) && url.contains("X-Amz-Signature="), "{url}");
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert!(resp.bytes().await.unwrap().starts_with(PNG_MAGIC));

    let tampered =
        if url.ends_with('0') { format!("{}1", &url[..url.len() - 1]) } else { format!("{}0", &url[..url.len() - 1]) };
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403, "tampered signature");
    let unsigned = url.split('?').next().unwrap();
    assert_eq!(reqwest::get(unsigned).await.unwrap().status(), 403, "anonymous reads are refused");

    // The built-in storage tools work on the S3 store too.
    let (status, _) = app.call_tool("builtin__minio_upload_object", json!({"key": "a.txt", "text": "on s3"})).await;
    assert_eq!(status, 200);
    let (_, listed) = app.call_tool("builtin__minio_list_objects", json!({})).await;
    assert_eq!(listed["structuredContent"]["objects"][0]["key"], "a.txt");
    let (_, link) = app.call_tool("builtin__minio_get_url", json!({"key": "a.txt"})).await;
    assert_eq!(reqwest::get(first_text(&link)).await.unwrap().text().await.unwrap(), "on s3");

    // Signed with whole seconds: the link lives between 4 and 5 s.
    tokio::time::sleep(Duration::from_millis(6500)).await;
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 403, "expired");
}

#[tokio::test]
async fn a_tool_image_through_the_loop_lands_in_s3() {
    let s3 = Seaweed::start().await;
    let llm = FakeLlm::new().tool_call("ev__get-tiny-image", json!({})).text("Done.").start().await;
    let app = with_everything(&llm, &s3.artifacts_yaml(S3_SECRET, "1h")).await;
    let body: Value = app
        .post("/v1/chat/completions", &json!({"model": "m", "messages": [{"role": "user", "content": "image"}]}))
        .await
        .json()
        .await
        .unwrap();
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    let start = content.find("](").expect("a markdown image") + 2;
    let url = &content[start..start + content[start..].find(')').unwrap()];
    assert!(url.starts_with(&s3.endpoint), "{url}");
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert!(resp.bytes().await.unwrap().starts_with(PNG_MAGIC));
    assert!(!llm.chat_requests()[1].to_string().contains("iVBORw0KGgo"), "no base64 reached the model");
}

#[tokio::test]
async fn wrong_credentials_or_a_dead_s3_degrade_and_the_loop_still_answers() {
    let s3 = Seaweed::start().await;
    // Wrong secret: every request is refused by the server's signature check.
    let llm = FakeLlm::new().tool_call("ts__image", json!({})).text("Still here.").start().await;
    let yaml = format!("{}{}", stdio_ts(), s3.artifacts_yaml("wrong-secret", "1h"));
    let app = TestApp::in_front_of(&llm, &yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__image")).await;
    let body: Value = app
        .post("/v1/chat/completions", &json!({"model": "m", "messages": [{"role": "user", "content": "image"}]}))
        .await
        .json()
        .await
        .unwrap();
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().ends_with("Still here."));
    let tool = llm.chat_requests()[1]["messages"][2]["content"].as_str().unwrap().to_owned();
    assert!(tool.contains("unavailable"), "{tool}");
    assert!(tool.contains("SignatureDoesNotMatch"), "the store's reason: {tool}");
    assert!(!tool.contains("127.0.0.1") && !tool.contains("wrong-secret"), "{tool}");

    // Right secret, then the server dies.
    let llm = FakeLlm::new().tool_call("ts__image", json!({})).text("Answered.").start().await;
    let yaml = format!("{}{}", stdio_ts(), s3.artifacts_yaml(S3_SECRET, "1h"));
    let app = TestApp::in_front_of(&llm, &yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__image")).await;
    s3.kill().await;
    let resp = app
        .post("/v1/chat/completions", &json!({"model": "m", "messages": [{"role": "user", "content": "image"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().ends_with("Answered."));
    let tool = llm.chat_requests()[1]["messages"][2]["content"].as_str().unwrap().to_owned();
    assert!(tool.contains("unavailable") && tool.contains("an image"), "{tool}");

    // A store that accepts connections and never answers (frozen): ten parallel saves each
    // give up after `timeout`, together rather than one after another, and every call still
    // answers; for a few seconds after, saves fail at once; once the store answers again (and
    // the cool-down has passed), saves land again.
    let s3 = Seaweed::start().await;
    let llm = FakeLlm::new().text("unused").start().await;
    let yaml = format!("{}{}    timeout: 2s\n", stdio_ts(), s3.artifacts_yaml(S3_SECRET, "1h"));
    let app = TestApp::in_front_of(&llm, &yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__image")).await;
    let image = || async {
        let started = std::time::Instant::now();
        let (status, body) = app.call_tool("ts__image", json!({})).await;
        assert_eq!(status, 200, "{body}");
        (body.to_string().contains("/mcp-storage/"), started.elapsed())
    };
    assert!(image().await.0, "a save before the freeze lands");
    let frozen = nix::unistd::Pid::from_raw(s3.pid());
    nix::sys::signal::kill(frozen, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let started = std::time::Instant::now();
    let results = futures_util::future::join_all((0..10).map(|_| image())).await;
    let took = started.elapsed();
    let (stored, fast) = image().await;
    nix::sys::signal::kill(frozen, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(results.iter().all(|(stored, _)| !stored), "{results:?}");
    assert!(took < std::time::Duration::from_secs(8), "10 saves to a frozen store took {took:?}");
    assert!(!stored && fast < std::time::Duration::from_secs(1), "no fail-fast after a timeout: {fast:?}");
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !image().await.0 {
        assert!(std::time::Instant::now() < deadline, "saves never land again");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Readiness reports the store: 503 with its reason while S3 refuses the secret or is down
/// (liveness stays 200), 200 with the right secret; strangers see only that it failed.
#[tokio::test]
async fn readiness_reports_the_store_and_its_reason() {
    let s3 = Seaweed::start().await;
    let llm = FakeLlm::new().text("unused").start().await;
    let ready = |app: &TestApp| {
        let request = app.client.get(app.url("/health/readiness")).send();
        async move {
            let resp = request.await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let app = TestApp::in_front_of(&llm, &format!("{}{}", stdio_ts(), s3.artifacts_yaml("wrong-secret", "1h"))).await;
    let (status, body) = ready(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["upstream"]["reachable"], true, "{body}");
    let why = body["artifacts"]["error"].as_str().unwrap();
    assert!(why.contains("SignatureDoesNotMatch") && !why.contains("127.0.0.1"), "{why}");
    assert_eq!(app.client.get(app.url("/health/liveliness")).send().await.unwrap().status(), 200);

    let app = TestApp::in_front_of(&llm, &format!("{}{}", stdio_ts(), s3.artifacts_yaml(S3_SECRET, "1h"))).await;
    let (status, body) = ready(&app).await;
    assert_eq!((status, &body["artifacts"]), (200, &json!({"ok": true})), "{body}");
    let keyed = format!("auth:\n  api_keys: [sk-ops-0123]\n{}{}", stdio_ts(), s3.artifacts_yaml(S3_SECRET, "1h"));
    let guarded = TestApp::in_front_of(&llm, &keyed).await;
    s3.kill().await;
    let (status, body) = ready(&app).await;
    // The last answer is reused for a few seconds: wait for a fresh check.
    let (status, body) = if status == 200 {
        tokio::time::sleep(Duration::from_secs(6)).await;
        ready(&app).await
    } else {
        (status, body)
    };
    assert_eq!(status, 503, "{body}");
    let why = body["artifacts"]["error"].as_str().unwrap();
    assert!(why.contains("connection refused"), "{why}");
    // Without a key, a keyed gateway says only that the store failed.
    let (status, body) = ready(&guarded).await;
    assert_eq!((status, &body["artifacts"]), (503, &json!({"ok": false})), "{body}");
}

/// A link signed for the public endpoint (the host name people's browsers use, as in the compose
/// stack) opens there, while the gateway itself talks to the store by another address.
#[tokio::test]
async fn links_signed_for_the_public_endpoint_open_in_a_browser() {
    let s3 = Seaweed::start().await;
    let public = s3.endpoint.replace("127.0.0.1", "localhost");
    let yaml = format!("{}{}    public_endpoint: {public}\n", stdio_ts(), s3.artifacts_yaml(S3_SECRET, "1h"));
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__image")).await;
    // A SeaweedFS just started can refuse its first writes under load (the image then stays
    // inline): this test is about where links point, so it waits for the store to take one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let link = loop {
        let (_, image) = app.call_tool("ts__image", json!({})).await;
        if let Some(url) = image["artifacts"][0]["url"].as_str() {
            break url.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "the store never took the image: {image}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert!(link.starts_with(&format!("{public}/mcp-storage/")), "{link}");
    let resp = reqwest::get(&link).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap().starts_with(PNG_MAGIC));
}
