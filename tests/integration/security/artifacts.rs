//! Artifacts are served on the gateway's own origin (local store) or S3's: nothing a browser
//! could run is rendered there. Images, audio, video and plain text inline; HTML, SVG, PDF and
//! unknown types as attachments in a CSP sandbox; always `nosniff`; the type is the stored one.

use serde_json::json;

use crate::common::peers::{S3_SECRET, Seaweed};
use crate::common::{TestApp, first_text};

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

async fn upload_and_link(app: &TestApp, args: serde_json::Value) -> String {
    let key = args["key"].as_str().unwrap().to_owned();
    let (status, up) = app.call_tool("builtin__minio_upload_object", args).await;
    assert_eq!(status, 200, "{up}");
    let (status, link) = app.call_tool("builtin__minio_get_url", json!({"key": key})).await;
    assert_eq!(status, 200, "{link}");
    first_text(&link).to_owned()
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn local_artifacts_never_run_in_the_gateways_origin() {
    let app = TestApp::spawn("builtin_tools:\n  enabled: true\n").await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "builtin__minio_get_url")).await;
    let script = "<html><script>fetch('/mcp/tools/call',{method:'POST'})</script></html>";
    let cases = [
        (json!({"key": "x.html", "text": script}), "text/html; charset=utf-8", false),
        (
            json!({"key": "x.svg", "text": "<svg xmlns='http://www.w3.org/2000/svg'><script>1</script></svg>", "content_type": "image/svg+xml"}),
            "image/svg+xml",
            false,
        ),
        (json!({"key": "x.js", "text": "alert(1)", "content_type": "text/javascript"}), "text/javascript", false),
        (json!({"key": "blob.bin", "base64": "AAEC"}), "application/octet-stream", false),
        // The stored type wins over the extension: HTML named .png is still HTML, and downloads.
        (json!({"key": "trick.png", "text": script, "content_type": "text/html"}), "text/html", false),
        (json!({"key": "dot.png", "base64": PNG, "content_type": "image/png"}), "image/png", true),
        (json!({"key": "notes.txt", "text": "plain", "content_type": "text/plain"}), "text/plain", true),
        // PDF carries scripts and forms of its own: a download in a sandbox, not a page here.
        (json!({"key": "doc.pdf", "base64": "JVBERi0=", "content_type": "application/pdf"}), "application/pdf", false),
    ];
    for (args, content_type, inline) in cases {
        let key = args["key"].as_str().unwrap().to_owned();
        let url = upload_and_link(&app, args).await;
        let resp = app.client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{key}");
        assert_eq!(header(&resp, "content-type"), content_type, "{key}");
        assert_eq!(header(&resp, "x-content-type-options"), "nosniff", "{key}");
        if inline {
            assert!(resp.headers().get("content-disposition").is_none(), "{key} is shown inline");
        } else {
            assert!(header(&resp, "content-disposition").starts_with("attachment"), "{key} downloads");
            assert_eq!(header(&resp, "content-security-policy"), "sandbox", "{key}");
        }
    }
}

#[tokio::test]
async fn artifact_errors_are_openai_json() {
    let app = TestApp::spawn("builtin_tools:\n  enabled: true\n").await;
    for path in [
        "/artifacts/x.png?expires=soon&signature=zz",
        "/artifacts/x.png?expires=1&expires=2",
        "/artifacts/%ff%fe.png?expires=1&signature=a",
        "/artifacts/../config.yaml?expires=1&signature=a",
        "/artifacts/x.png",
    ] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert!(resp.status().is_client_error(), "{path}: {}", resp.status());
        assert!(header(&resp, "content-type").starts_with("application/json"), "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "{path}: {body}");
    }
}

#[tokio::test]
async fn s3_links_download_what_a_browser_could_run() {
    let s3 = Seaweed::start().await;
    let yaml = format!("{}builtin_tools:\n  enabled: true\n", s3.artifacts_yaml(S3_SECRET, "1h"));
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "builtin__minio_get_url")).await;
    let html = upload_and_link(&app, json!({"key": "x.html", "text": "<script>alert(1)</script>"})).await;
    let resp = reqwest::get(&html).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-disposition").starts_with("attachment"), "{:?}", resp.headers());
    let trick = upload_and_link(&app, json!({"key": "t.png", "text": "<b>x</b>", "content_type": "text/html"})).await;
    let resp = reqwest::get(&trick).await.unwrap();
    assert!(
        header(&resp, "content-disposition").starts_with("attachment"),
        "stored type decides: {:?}",
        resp.headers()
    );
    let png = upload_and_link(&app, json!({"key": "dot.png", "base64": PNG, "content_type": "image/png"})).await;
    let resp = reqwest::get(&png).await.unwrap();
    assert_eq!(header(&resp, "content-type"), "image/png");
    assert!(resp.headers().get("content-disposition").is_none(), "images stay inline");
}

/// The generated signing key lives outside the served directory (where stdio children, which
/// start in the gateway's working directory, used to find it), readable by its owner only; and
/// even with the key a link cannot outlive `artifacts.url_ttl`.
#[tokio::test]
async fn the_signing_key_is_kept_apart_and_cannot_mint_long_links() {
    use hmac::{KeyInit, Mac};
    let dir = std::env::temp_dir().join(format!("mcpmw-signing-{}", uuid::Uuid::new_v4().simple()));
    let yaml =
        format!("builtin_tools:\n  enabled: true\nartifacts:\n  url_ttl: 1h\n  local:\n    dir: {}\n", dir.display());
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "builtin__minio_get_url")).await;
    let link = upload_and_link(&app, json!({"key": "dot.png", "base64": PNG, "content_type": "image/png"})).await;
    assert_eq!(app.client.get(&link).send().await.unwrap().status(), 200);
    assert!(!dir.join(".signing-key").exists(), "no key inside the served directory");
    let key_file = dir.with_file_name(format!("{}.signing-key", dir.file_name().unwrap().to_string_lossy()));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // A year-long link signed with the real key (as a local process that read it could).
    let secret = std::fs::read(&key_file).unwrap();
    let object = "files/dot.png";
    let expires = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 365 * 86_400;
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&secret).unwrap();
    mac.update(format!("{object}\n{expires}").as_bytes());
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let forged = app.url(&format!("/artifacts/{object}?expires={expires}&signature={signature}"));
    assert_eq!(app.client.get(&forged).send().await.unwrap().status(), 403);
}

/// A configured secret in a long tool output is scrubbed before the output is stored: the inline
/// part, the stored artifact, its link and every `read_artifact` page all show `***`.
#[tokio::test]
async fn secrets_are_scrubbed_before_anything_is_stored() {
    const SECRET: &str = "sk-master-scrub-me-0123456789";
    let yaml = format!(
        "builtin_tools:\n  enabled: true\nauth:\n  api_keys: [{SECRET}]\nartifacts:\n  max_inline_bytes: 1024\n\
         mcpServers:\n  ts:\n    command: {}\n    args: [stdio]\n",
        crate::common::peers::TEST_SERVER
    );
    let mut app = TestApp::spawn(&yaml).await;
    app.key = Some(SECRET.into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo") && n.iter().any(|t| t == "builtin__read_artifact")).await;
    let text = format!("{}{SECRET}{}", "a".repeat(3000), "b".repeat(3000));
    let (status, result) = app.call_tool("ts__echo", json!({"text": text})).await;
    assert_eq!(status, 200, "{result}");
    assert!(!result.to_string().contains(SECRET), "inline: {result}");
    let artifact = &result["artifacts"][0];
    let stored = app.client.get(artifact["url"].as_str().unwrap()).send().await.unwrap().text().await.unwrap();
    assert!(!stored.contains(SECRET) && stored.contains("***"), "the stored artifact holds the secret");
    for offset in [2990, 3000, 3010] {
        let args = json!({"key": artifact["key"], "offset": offset, "length": 40});
        let (status, page) = app.call_tool("builtin__read_artifact", args).await;
        assert_eq!(status, 200, "{page}");
        assert!(!page.to_string().contains(&SECRET[4..20]), "read_artifact page at {offset}: {page}");
    }
}
