//! Artifacts: binary and oversized tool outputs become links; the local store's signed URLs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::agent::with_everything;
use crate::common::peers::TEST_SERVER;
use crate::common::{FakeLlm, TestApp, first_text};

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

fn user(text: &str) -> Value {
    json!({"model": "gpt-test", "messages": [{"role": "user", "content": text}]})
}

/// The first artifact link in `text`.
fn first_link(text: &str) -> String {
    let start = text.find("http://").expect("a link");
    text[start..].split([')', ']', ' ', '\n']).next().unwrap().to_owned()
}

#[tokio::test]
async fn a_tool_image_reaches_the_user_as_a_link_and_never_the_model_as_base64() {
    let llm = FakeLlm::new().tool_call("ev__get-tiny-image", json!({})).text("Here it is.").start().await;
    let app = with_everything(&llm, "").await;
    let mut req = user("show me an image");
    req["stream"] = json!(true);
    let data = crate::common::sse_data(app.post("/v1/chat/completions", &req).await).await;
    let text = crate::common::streamed_text(&crate::common::chunks(&data));
    assert!(text.contains("![ev__get-tiny-image](http://"), "a markdown image in the answer: {text}");
    let url = first_link(&text[text.find("![").unwrap()..]);
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert!(resp.bytes().await.unwrap().starts_with(PNG_MAGIC));

    let second = llm.chat_requests()[1].to_string();
    assert!(!second.contains("iVBORw0KGgo"), "the model never receives base64");
    let tool_message = &llm.chat_requests()[1]["messages"][2];
    assert!(tool_message["content"].as_str().unwrap().contains("[image/png"), "{tool_message}");
}

#[tokio::test]
async fn signed_links_dedup_expire_and_refuse_tampering() {
    let yaml =
        format!("mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\nartifacts:\n  url_ttl: 2s\n");
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__image")).await;
    let (status, first) = app.call_tool("ts__image", json!({})).await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = app.call_tool("ts__image", json!({})).await;
    let artifact = &first["artifacts"][0];
    assert_eq!(artifact["mime_type"], "image/png");
    assert_eq!(artifact["key"], second["artifacts"][0]["key"], "the same bytes are one object");
    assert!(artifact["key"].as_str().unwrap().ends_with(".png"));
    let url = artifact["url"].as_str().unwrap().to_owned();
    let ok = reqwest::get(&url).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.bytes().await.unwrap().starts_with(PNG_MAGIC));

    let tampered_sig = format!("{}0", &url[..url.len() - 1]).replace("signature=0", "signature=1");
    let flipped = if url.ends_with('0') { format!("{}1", &url[..url.len() - 1]) } else { tampered_sig };
    assert_eq!(reqwest::get(&flipped).await.unwrap().status(), 403, "tampered signature");
    let other_key = url.replacen("/artifacts/", "/artifacts/0", 1);
    assert_eq!(reqwest::get(&other_key).await.unwrap().status(), 403, "signature does not cover another key");
    let later = url.replace("expires=", "expires=9");
    assert_eq!(reqwest::get(&later).await.unwrap().status(), 403, "a stretched expiry is refused");
    let unsigned = url.split('?').next().unwrap().to_owned();
    assert_eq!(reqwest::get(&unsigned).await.unwrap().status(), 403);
    for traversal in ["/artifacts/..%2F..%2Fetc%2Fpasswd", "/artifacts/%2e%2e/secret", "/artifacts/.signing-key"] {
        // (A client may normalise `..` away before sending: then no artifact route matches.)
        let status = reqwest::get(app.url(traversal)).await.unwrap().status().as_u16();
        assert!(status == 403 || status == 404, "{traversal}: {status}");
    }
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 403, "expired");
}

#[tokio::test]
async fn a_megabyte_of_text_is_cut_to_the_budget_with_a_marker() {
    let llm = FakeLlm::new().tool_call("ts__big", json!({"bytes": 1_048_576})).text("Summarised.").start().await;
    let yaml = format!("mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n");
    let app = TestApp::in_front_of(&llm, &yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__big")).await;
    let body: Value = app.post("/v1/chat/completions", &user("big")).await.json().await.unwrap();
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().ends_with("Summarised."));
    let tool = llm.chat_requests()[1]["messages"][2]["content"].as_str().unwrap().to_owned();
    assert!(tool.len() <= 16 * 1024, "{} bytes reached the model", tool.len());
    assert!(tool.contains("omitted") && tool.contains("read_artifact"), "{}", &tool[tool.len() - 300..]);
    assert_eq!(body["mcp_tool_calls"][0]["artifacts"][0]["size"], 1_048_576);
}

#[tokio::test]
async fn an_unavailable_store_degrades_and_the_loop_still_answers() {
    let dir = std::env::temp_dir().join(format!("mcpmw-broken-store-{}", std::process::id()));
    let llm = FakeLlm::new().tool_call("ts__image", json!({})).text("Answered anyway.").start().await;
    let yaml = format!(
        "mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\nartifacts:\n  local:\n    dir: {}\n",
        dir.display()
    );
    let app = TestApp::in_front_of(&llm, &yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__image")).await;
    // The store's directory disappears and a file takes its place: every write fails.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    let resp = app.post("/v1/chat/completions", &user("image")).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().ends_with("Answered anyway."));
    let tool = llm.chat_requests()[1]["messages"][2]["content"].as_str().unwrap().to_owned();
    assert!(tool.contains("unavailable") && tool.contains("an image"), "{tool}");
    // The store comes back: the next save lands and its link serves the image.
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let (status, result) = app.call_tool("ts__image", json!({})).await;
    assert_eq!(status, 200, "{result}");
    let text = result.to_string();
    let start = text.find("/artifacts/").expect("a link once the store is back");
    let link: String = text[start..].chars().take_while(|c| !matches!(c, '"' | ')' | ']' | ' ' | '\\')).collect();
    let image = app.get(&link).await;
    assert_eq!(image.status(), 200, "{link}");
    assert_eq!(image.headers()["content-type"], "image/png");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn vision_models_also_get_tool_images_as_image_url_parts() {
    let llm = FakeLlm::new()
        .tool_call("ev__get-tiny-image", json!({}))
        .text("I see a tiny image.")
        .tool_call("ev__get-tiny-image", json!({}))
        .text("No eyes here.")
        .start()
        .await;
    let app = with_everything(&llm, "models:\n  gpt-vision:\n    vision: true\n").await;
    let mut req = user("look");
    req["model"] = json!("gpt-vision");
    app.post("/v1/chat/completions", &req).await;
    app.post("/v1/chat/completions", &user("look")).await;
    let sent = llm.chat_requests();
    let seen = sent[1]["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(seen["role"], "user");
    // Inline, as a `data:` URL: a provider cannot fetch the gateway's own links.
    let url = seen["content"][1]["image_url"]["url"].as_str().unwrap();
    assert!(url.starts_with("data:image/png;base64,iVBOR"), "{seen}");
    let tool = &sent[1]["messages"].as_array().unwrap().iter().rev().find(|m| m["role"] == "tool").unwrap()["content"];
    assert!(tool.as_str().unwrap().contains("/artifacts/"), "the tool message keeps the link: {tool}");
    assert_eq!(sent[3]["messages"].as_array().unwrap().last().unwrap()["role"], "tool", "no images for other models");
}

/// Tool-output artifacts expire after `artifacts.retention` (a sweeper deletes them, locally
/// and in S3); the built-in tools' stored files stay; retention shorter than a link's life is
/// refused.
#[tokio::test]
async fn old_artifacts_are_swept_and_stored_files_stay() {
    let refused = mcp_middleware::config::load_str(
        "artifacts:\n  url_ttl: 1h\n  retention: 30m\n",
        &std::collections::HashMap::<String, String>::new(),
    );
    assert!(refused.unwrap_err().to_string().contains("artifacts.retention"));

    let s3 = crate::common::peers::Seaweed::start().await;
    let ts =
        format!("builtin_tools:\n  enabled: true\nmcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n");
    for store in ["local", "s3"] {
        let artifacts = match store {
            "local" => "artifacts:\n  url_ttl: 1s\n  retention: 2s\n".to_owned(),
            _ => format!("{}  retention: 2s\n", s3.artifacts_yaml(crate::common::peers::S3_SECRET, "1s")),
        };
        let app = TestApp::spawn(&format!("{ts}{artifacts}")).await;
        app.wait_for_tools(|n| n.iter().any(|t| t == "ts__image") && n.iter().any(|t| t == "builtin__read_artifact"))
            .await;
        let (_, kept) = app.call_tool("builtin__minio_upload_object", json!({"key": "keep.txt", "text": "mine"})).await;
        assert!(first_text(&kept).starts_with("uploaded"), "{store}: {kept}");
        let (_, image) = app.call_tool("ts__image", json!({})).await;
        let key = image["artifacts"][0]["key"].as_str().expect("stored").to_owned();
        let read = |key: String| {
            let app = &app;
            async move { app.call_tool("builtin__read_artifact", json!({"key": key})).await.1 }
        };
        assert_ne!(read(key.clone()).await["isError"], true, "{store}: readable at first");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while read(key.clone()).await["isError"] != true {
            assert!(std::time::Instant::now() < deadline, "{store}: {key} never swept");
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        let (_, still) = app.call_tool("builtin__minio_download_object", json!({"key": "keep.txt"})).await;
        assert_eq!(first_text(&still), "mine", "{store}: a stored file was swept");
    }
}
