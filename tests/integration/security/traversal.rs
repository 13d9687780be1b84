//! The `/v1/*` proxy carries the upstream's key: no request may leave the upstream's base path
//! (raw or percent-encoded dot segments, encoded separators), and only the OpenAI API's routes
//! are forwarded unless `upstream.forward_all_routes` is set.

use super::raw_http;
use crate::common::{FakeLlm, TestApp};

const KEYS: &str = "  api_key: sk-master\nauth:\n  api_keys: [sk-user]\n";

fn request(method: &str, target: &str) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-user\r\nContent-Type: application/json\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
}

#[tokio::test]
async fn traversal_never_leaves_the_upstream_base_path() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app = TestApp::in_front_of(&llm, KEYS).await;
    let attacks = [
        "/v1/../key/generate",
        "/v1/%2e%2e/user/new",
        "/v1/%2E%2E/user/new",
        "/v1/.%2e/key/generate",
        "/v1/models/../../key/generate",
        "/v1/models/%2e%2e/%2e%2e/key/generate",
        "/v1/./../key/generate",
        "/v1/..%2fkey%2fgenerate",
        "/v1/..%5ckey/generate",
        "/v1/models%2f..%2f..%2fkey/generate",
        "/v1/%252e%252e/key/generate",
        "/v1/..\\key/generate",
        "/v1/models/..;/..;/key/generate",
    ];
    for target in attacks {
        let (status, body) = raw_http(app.addr, &request("POST", target)).await;
        assert!(matches!(status, 400 | 404), "{target}: {status} {body}");
        if status == 400 || status == 404 {
            let error: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            assert!(error["error"]["message"].is_string(), "{target}: an OpenAI error body: {body}");
        }
    }
    let reached: Vec<String> = llm.requests().iter().map(|r| r.path.clone()).collect();
    assert!(reached.iter().all(|p| p.starts_with("/v1/") && !p.contains("key") && !p.contains("user")), "{reached:?}");

    // Ordinary OpenAI routes still pass, with the upstream key.
    let (status, _) = raw_http(app.addr, &request("GET", "/v1/models")).await;
    assert_eq!(status, 200);
    let (status, _) = raw_http(app.addr, &request("POST", "/v1/embeddings")).await;
    assert_eq!(status, 200);
    let last = llm.requests().pop().unwrap();
    assert_eq!(last.path, "/v1/embeddings");
    assert_eq!(last.headers["authorization"], "Bearer sk-master");
}

#[tokio::test]
async fn only_openai_routes_are_forwarded_unless_all_are_allowed() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app = TestApp::in_front_of(&llm, KEYS).await;
    for target in ["/v1/key/generate", "/v1/user/new", "/v1/model/new", "/v1/config/update"] {
        let (status, body) = raw_http(app.addr, &request("POST", target)).await;
        assert_eq!(status, 404, "{target}: {body}");
        assert!(body.contains("not forwarded"), "{body}");
    }
    assert!(llm.requests().is_empty(), "nothing reached the upstream");

    let open = format!("  forward_all_routes: true\n{KEYS}");
    let app = TestApp::in_front_of(&llm, &open).await;
    let (status, _) = raw_http(app.addr, &request("POST", "/v1/key/generate")).await;
    assert_eq!(status, 200, "forward_all_routes opens other routes below the base path");
    assert_eq!(llm.requests().pop().unwrap().path, "/v1/key/generate");
    let (status, _) = raw_http(app.addr, &request("POST", "/v1/%2e%2e/key/generate")).await;
    assert_eq!(status, 400, "but never a way out of it");
    assert!(llm.requests().iter().all(|r| r.path.starts_with("/v1/")));
}

/// An upstream that answers with a redirect (say, to its admin API) is not followed: the client
/// gets the redirect, and the upstream's key never goes to the redirect's target.
#[tokio::test]
async fn upstream_redirects_are_handed_back_not_followed() {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let upstream = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let record = record.clone();
        async move {
            record.lock().unwrap().push(uri.path().to_owned());
            (axum::http::StatusCode::TEMPORARY_REDIRECT, [("location", "/key/generate")], "")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, upstream).await });
    let yaml = format!("upstream:\n  base_url: http://{addr}/v1\n{KEYS}");
    let app = TestApp::spawn(&yaml).await;
    let chat = r#"{"model":"m","messages":[]}"#;
    let raw = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-user\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{chat}",
        chat.len()
    );
    let (status, _) = raw_http(app.addr, &raw).await;
    assert_eq!(status, 307);
    let (status, _) = raw_http(app.addr, &request("POST", "/v1/embeddings")).await;
    assert_eq!(status, 307);
    assert_eq!(*seen.lock().unwrap(), ["/v1/chat/completions", "/v1/embeddings"], "no redirect was followed");
}

/// The chat route has one way in. Empty segments, a trailing `/` or `;` parameters (which nginx
/// and others read differently) are refused, other paths below `/v1/chat` are never proxied, and
/// a key with a tool policy reaches only the OpenAI API's routes even with `forward_all_routes`
/// (`/v1/messages` runs Anthropic's server tools with the upstream's key).
#[tokio::test]
async fn the_chat_route_has_one_way_in() {
    let llm = FakeLlm::new().text("ok").start().await;
    let yaml = format!("  forward_all_routes: true\n{KEYS}  keys:\n    - key: sk-narrow-0123\n      servers: [ts]\n");
    let app = TestApp::in_front_of(&llm, &yaml).await;
    for target in ["/v1//chat/completions", "/v1/chat/completions/", "/v1/chat;x/completions", "/v1/models;x"] {
        let (status, body) = raw_http(app.addr, &request("POST", target)).await;
        assert_eq!(status, 400, "{target}: {body}");
    }
    for target in ["/v1/chat/completions/x", "/v1/chat/other"] {
        let (status, body) = raw_http(app.addr, &request("POST", target)).await;
        assert_eq!(status, 404, "{target}: {body}");
    }
    let narrow = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-narrow-0123\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
    };
    let (status, body) = raw_http(app.addr, &narrow("/v1/messages")).await;
    assert_eq!(status, 404, "a restricted key and /v1/messages: {body}");
    assert!(llm.requests().is_empty(), "nothing reached the upstream");
    let (status, _) = raw_http(app.addr, &narrow("/v1/embeddings")).await;
    assert_eq!(status, 200, "the OpenAI API's routes stay open to it");
}
