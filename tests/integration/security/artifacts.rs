//! Artifacts are served on the gateway's own origin (local store) or S3's: nothing a browser
//! could run is rendered there. Images, audio, video, PDF and plain text inline; HTML, SVG and
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
        (json!({"key": "doc.pdf", "base64": "JVBERi0=", "content_type": "application/pdf"}), "application/pdf", true),
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
