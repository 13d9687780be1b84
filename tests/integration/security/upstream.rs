//! The upstream as an attacker (or as a proxy that misbehaves): an error body reflecting the
//! `Authorization` it got would hand the master key to any client, and a stream whose event
//! never ends would pin a core and grow memory without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::common::process::GatewayProcess;

const MASTER: &str = "sk-upstream-master-0123456789";

async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn an_upstream_error_that_reflects_the_key_is_scrubbed() {
    // Answers every request with a 400 quoting the Authorization header it received, as JSON
    // (OpenAI error shape) on chat and as plain text elsewhere.
    let upstream = serve(axum::Router::new().fallback(|req: axum::extract::Request| async move {
        let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        if req.uri().path().ends_with("/chat/completions") {
            let body = json!({"error": {"message": format!("bad key {auth}"), "type": "invalid_request_error"}});
            (axum::http::StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        } else {
            (axum::http::StatusCode::UNAUTHORIZED, format!("rejected credentials: {auth}")).into_response()
        }
    }))
    .await;
    use axum::response::IntoResponse;
    let yaml = format!("upstream:\n  base_url: http://{upstream}/v1\n  api_key: {MASTER}\n");
    let app = TestApp::spawn(&yaml).await;
    for stream in [false, true] {
        let chat = json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
        let resp = app.post("/v1/chat/completions", &chat).await;
        assert_eq!(resp.status(), 400);
        let text = resp.text().await.unwrap();
        assert!(!text.contains(MASTER), "the master key reached the client: {text}");
        assert!(text.contains("bad key Bearer ***"), "{text}");
    }
    for path in ["/v1/models", "/v1/embeddings"] {
        let resp = if path.ends_with("models") {
            app.get(path).await
        } else {
            app.post(path, &json!({"model": "m", "input": "x"})).await
        };
        assert_eq!(resp.status(), 401, "{path}");
        let text = resp.text().await.unwrap();
        assert!(!text.contains(MASTER), "{path}: the master key reached the client: {text}");
        assert!(text.contains("***"), "{text}");
    }
}

#[tokio::test]
async fn an_upstream_event_that_never_ends_is_cut_off() {
    let sent = Arc::new(AtomicUsize::new(0));
    let count = sent.clone();
    let upstream = serve(axum::Router::new().fallback(move || {
        let count = count.clone();
        async move {
            let head = futures_util::stream::once(async {
                Ok::<_, std::io::Error>(Bytes::from_static(
                    b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"",
                ))
            });
            let junk = Bytes::from(vec![b'x'; 64 * 1024]);
            let flood = futures_util::stream::unfold((), move |()| {
                let (junk, count) = (junk.clone(), count.clone());
                async move {
                    count.fetch_add(junk.len(), Ordering::SeqCst);
                    Some((Ok(junk), ()))
                }
            });
            let body = axum::body::Body::from_stream(futures_util::StreamExt::chain(head, flood));
            ([("content-type", "text/event-stream")], body)
        }
    }))
    .await;
    let yaml = format!("upstream:\n  base_url: http://{upstream}/v1\nbuiltin_tools:\n  enabled: false\n");
    let gw = GatewayProcess::spawn(&yaml, &[]).await;
    let (rss_before, cpu_before) = (gw.rss_kib(), gw.cpu_secs());
    let chat = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let started = Instant::now();
    let resp = reqwest::Client::new().post(gw.url("/v1/chat/completions")).json(&chat).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(30), resp.text()).await.expect("the stream ended").unwrap();
    let (rss, cpu) = (gw.rss_kib(), gw.cpu_secs() - cpu_before);
    let read = sent.load(Ordering::SeqCst);
    println!(
        "endless upstream event: cut after {read} bytes in {:?}, RSS {rss_before} → {rss} KiB, {cpu:.2} s CPU",
        started.elapsed()
    );
    let payloads: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(payloads.last(), Some(&"[DONE]"), "{}", body.chars().take(500).collect::<String>());
    let error: Value = serde_json::from_str(payloads[payloads.len() - 2]).unwrap();
    assert_eq!(error["error"]["type"], "upstream_error", "{error}");
    // 16 MiB of event, plus what loopback socket buffers hold (several MiB each way).
    assert!(read < 40 * 1024 * 1024, "the gateway read {read} bytes of one event");
    assert!(rss < rss_before + 80 * 1024, "RSS grew from {rss_before} KiB to {rss} KiB");
    assert!(cpu < 5.0, "{cpu} s of CPU");
    gw.stop().await;
}

/// A key may carry its own upstream key (a LiteLLM virtual key per team): then its tool policy
/// is matched by the upstream's own limits, instead of every key acting as the master key.
#[tokio::test]
async fn a_key_can_act_upstream_with_its_own_key() {
    let llm = crate::common::FakeLlm::new().text("ok").text("ok").start().await;
    let yaml = format!(
        "upstream:\n  base_url: {}\n  api_key: {MASTER}\nauth:\n  api_keys: [sk-admin-0123]\n  keys:\n    - key: sk-team-0123\n      \
         servers: [none]\n      upstream_key: sk-litellm-virtual-team-0123\n",
        llm.url
    );
    let app = TestApp::spawn(&yaml).await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for (key, expected) in
        [("sk-team-0123", "Bearer sk-litellm-virtual-team-0123"), ("sk-admin-0123", &format!("Bearer {MASTER}"))]
    {
        let resp = app.client.post(app.url("/v1/chat/completions")).bearer_auth(key).json(&chat).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let models = app.client.get(app.url("/v1/models")).bearer_auth(key).send().await.unwrap();
        assert_eq!(models.status(), 200);
        let sent: Vec<String> = llm
            .requests()
            .iter()
            .rev()
            .take(2)
            .map(|r| r.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned())
            .collect();
        assert_eq!(sent, [expected, expected], "{key}");
    }
}

/// Headers a client could use to act as someone else upstream (LiteLLM's own key header, the
/// forwarding headers a proxy in front of LiteLLM trusts, a browser's Origin and cookies, and
/// headers the client marks hop-by-hop through `Connection`) never go upstream beside our key;
/// an upstream redirect does not hand back its internal address.
#[tokio::test]
async fn clients_cannot_smuggle_credentials_or_addresses_upstream() {
    let llm = crate::common::FakeLlm::new().text("ok").start().await;
    let app = TestApp::in_front_of(&llm, "auth:\n  api_keys: [sk-client-0123]\n").await;
    let resp = app
        .client
        .get(app.url("/v1/models"))
        .bearer_auth("sk-client-0123")
        .header("x-litellm-api-key", "sk-someone-elses-virtual-key")
        .header("x-forwarded-for", "10.0.0.1")
        .header("forwarded", "for=10.0.0.1")
        .header("x-real-ip", "10.0.0.1")
        .header("cookie", "session=admin")
        .header("connection", "keep-alive, x-internal-admin")
        .header("x-internal-admin", "1")
        .header("x-trace", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = llm.requests().pop().unwrap();
    for name in ["x-litellm-api-key", "x-forwarded-for", "forwarded", "x-real-ip", "cookie", "x-internal-admin"] {
        assert!(!sent.headers.contains_key(name), "{name} went upstream");
    }
    assert_eq!(sent.headers["x-trace"], "kept", "other headers still pass");

    // An upstream redirect with an absolute Location is handed back without it.
    let internal = serve(axum::Router::new().fallback(|| async {
        (axum::http::StatusCode::FOUND, [("location", "http://10.1.2.3:4000/internal/admin")], "")
    }))
    .await;
    let app = TestApp::spawn(&format!("upstream:\n  base_url: http://{internal}/v1\n")).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = client.get(app.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    assert!(resp.headers().get("location").is_none(), "{:?}", resp.headers());
}

/// An error the upstream sends inside a stream (an `error` event, or a chunk with `error`) reaches
/// the client as the stream's error event: with no key of ours in it.
#[tokio::test]
async fn an_error_event_that_reflects_the_key_is_scrubbed() {
    let upstream = serve(axum::Router::new().fallback(|| async {
        let body = format!("data: {{\"error\": {{\"message\": \"invalid key Bearer {MASTER}\"}}}}\n\n");
        ([("content-type", "text/event-stream")], body)
    }))
    .await;
    let yaml = format!(
        "upstream:\n  base_url: http://{upstream}/v1\n  api_key: {MASTER}\nmcpServers:\n  ts:\n    command: {}\n    args: [stdio]\n",
        crate::common::peers::TEST_SERVER
    );
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let chat = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let resp = app.post("/v1/chat/completions", &chat).await;
    let text = resp.text().await.unwrap();
    assert!(text.contains("invalid key"), "{text}");
    assert!(!text.contains(MASTER), "the master key reached the client: {text}");
}
