//! The built-in tools: storage scoped to a prefix, `read_artifact`, `list_mcp_tools`; over REST,
//! through the loop, and as the standalone stdio server.

use serde_json::{Value, json};

use crate::common::peers::TEST_SERVER;
use crate::common::{FakeLlm, TestApp, first_text};

async fn app_with_builtin() -> TestApp {
    let yaml =
        format!("builtin_tools:\n  enabled: true\nmcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n");
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "builtin__read_artifact") && n.iter().any(|t| t == "ts__big")).await;
    app
}

#[tokio::test]
async fn storage_tools_over_rest() {
    let app = app_with_builtin().await;
    let (status, up) = app
        .call_tool("builtin__minio_upload_object", json!({"key": "notes/today.txt", "text": "remember the milk"}))
        .await;
    assert_eq!(status, 200, "{up}");
    assert!(first_text(&up).starts_with("uploaded notes/today.txt (17 bytes): http://"), "{up}");
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let (status, _) = app
        .call_tool(
            "builtin__minio_upload_object",
            json!({"key": "img/dot.png", "base64": png, "content_type": "image/png"}),
        )
        .await;
    assert_eq!(status, 200);

    let (_, listed) = app.call_tool("builtin__minio_list_objects", json!({})).await;
    let keys: Vec<&str> =
        listed["structuredContent"]["objects"].as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["img/dot.png", "notes/today.txt"]);
    let (_, sub) = app.call_tool("builtin__minio_list_objects", json!({"prefix": "notes/"})).await;
    assert_eq!(sub["structuredContent"]["objects"].as_array().unwrap().len(), 1);

    let (_, text) = app.call_tool("builtin__minio_download_object", json!({"key": "notes/today.txt"})).await;
    assert_eq!(first_text(&text), "remember the milk");
    let (_, image) = app.call_tool("builtin__minio_download_object", json!({"key": "img/dot.png"})).await;
    assert_eq!(image["content"][0]["type"], "image");
    assert_eq!(image["artifacts"][0]["mime_type"], "image/png", "binary downloads come back as artifact links");

    let (_, url) = app.call_tool("builtin__minio_get_url", json!({"key": "notes/today.txt"})).await;
    let body = reqwest::get(first_text(&url)).await.unwrap().text().await.unwrap();
    assert_eq!(body, "remember the milk");

    let (status, _) = app.call_tool("builtin__minio_delete_object", json!({"key": "notes/today.txt"})).await;
    assert_eq!(status, 200);
    // A missing object is the tool's own answer (200, isError), not a refused call; so is
    // deleting what is no longer there.
    for tool in ["builtin__minio_download_object", "builtin__minio_get_url", "builtin__minio_delete_object"] {
        let (status, gone) = app.call_tool(tool, json!({"key": "notes/today.txt"})).await;
        assert_eq!((status, gone["isError"].as_bool()), (200, Some(true)), "{tool}: {gone}");
        assert_eq!(first_text(&gone), "no stored object `today.txt`", "{tool}");
    }

    for bad in ["../secret", "a/../../b", "/etc/passwd/..", ""] {
        let (status, body) = app.call_tool("builtin__minio_download_object", json!({"key": bad})).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // Artifacts outside the tools' prefix are reachable only through read_artifact.
    let (status, _) = app.call_tool("builtin__read_artifact", json!({"key": ".signing-key"})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn read_artifact_pages_through_a_long_output() {
    let app = app_with_builtin().await;
    let (_, big) = app.call_tool("ts__big", json!({"bytes": 1_048_576})).await;
    let key = big["artifacts"][0]["key"].as_str().expect("the long output was stored").to_owned();
    let full = first_text(&big).to_owned();
    assert_eq!(full.len(), 1_048_576);
    for (offset, length) in [(0usize, 100usize), (500_000, 4096), (1_048_500, 1000)] {
        let (status, slice) =
            app.call_tool("builtin__read_artifact", json!({"key": key, "offset": offset, "length": length})).await;
        assert_eq!(status, 200, "{slice}");
        let end = (offset + length).min(full.len());
        assert_eq!(first_text(&slice), &full[offset..end]);
        assert_eq!(slice["structuredContent"]["total"], 1_048_576);
    }
    let (_, hits) = app.call_tool("builtin__read_artifact", json!({"key": key, "grep": "abcdefghij"})).await;
    assert!(first_text(&hits).starts_with("1: abcdefghij"), "{}", &first_text(&hits)[..80]);
}

#[tokio::test]
async fn builtin_tools_through_the_loop() {
    let llm = FakeLlm::new()
        .tool_calls(&[
            ("builtin__minio_upload_object", json!({"key": "plan.md", "text": "# Plan"})),
            ("builtin__list_mcp_tools", json!({})),
        ])
        .text("Saved your plan.")
        .start()
        .await;
    let yaml =
        format!("builtin_tools:\n  enabled: true\nmcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n");
    let app = TestApp::in_front_of(&llm, &yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "builtin__list_mcp_tools") && n.iter().any(|t| t == "ts__echo")).await;
    let body: Value = app
        .post("/v1/chat/completions", &json!({"model": "m", "messages": [{"role": "user", "content": "save"}]}))
        .await
        .json()
        .await
        .unwrap();
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().ends_with("Saved your plan."));
    let messages = llm.chat_requests()[1]["messages"].as_array().unwrap().clone();
    assert!(messages[2]["content"].as_str().unwrap().starts_with("uploaded plan.md"), "{}", messages[2]);
    let listing = messages[3]["content"].as_str().unwrap();
    assert!(
        listing.contains("ts:\n") && listing.contains("ts__echo") && listing.contains("builtin__read_artifact"),
        "{listing}"
    );
}

#[tokio::test]
async fn the_builtin_tools_run_on_their_own_over_stdio() {
    let dir = std::env::temp_dir().join(format!("mcpmw-solo-{}", std::process::id()));
    let yaml = format!(
        "mcpServers:\n  solo:\n    command: {}\n    args: [--dir, \"{}\"]\n",
        env!("CARGO_BIN_EXE_mcp-builtin-tools"),
        dir.display()
    );
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "solo__minio_upload_object")).await;
    let (status, up) = app.call_tool("solo__minio_upload_object", json!({"key": "x.txt", "text": "solo"})).await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(std::fs::read_to_string(dir.join("files/x.txt")).unwrap(), "solo");
}
