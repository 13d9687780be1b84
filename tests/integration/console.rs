//! The web console at `/ui`, in a real browser (headless Chromium driven by playwright-core,
//! `tests/peers/console_browser.js`) against the real gateway, a stdio MCP server and a per-user
//! OAuth server with its own authorization server: sign in, see the servers ready, find a tool by
//! search and run it from its form, see the call on the Activity page, connect an account at
//! the authorization server and confirm it, approve a parked chat (which then goes on), and a
//! restricted key that sees only its tools, its own activity and its own connections.
//! Screenshots of each page go to `target/console-shots`.
//!
//! Without a browser: the cookie, the form token, the gate's origin rule, the pages' headers, an
//! open gateway's console without sign-in, and a restricted key refused the operator's buttons.

use serde_json::{Value, json};

use crate::common::peers::{self, TEST_SERVER, TempDir};
use crate::common::{FakeLlm, TestApp};
use crate::oauth::OAuthPeer;

const ADMIN: &str = "sk-console-admin-0123456789";
const LIMITED: &str = "sk-console-limited-0123456789";

fn yaml(state_dir: &std::path::Path, oauth_base: &str) -> String {
    format!(
        "auth:\n  keys:\n    - key: {ADMIN}\n      user: {{id: ada}}\n\
         \x20   - key: {LIMITED}\n      tools: [ts__echo, \"gh__*\"]\n      user: {{id: bob}}\n\
         state:\n  url: sqlite://{}/state.db\n  encryption_key: a-console-test-key-0123456789abcdef\n\
         approval:\n  require: [ts__headers]\n\
         mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n\
         \x20 gh:\n    url: {oauth_base}/mcp\n    auth:\n      oauth:\n        per_user: true\n",
        state_dir.display()
    )
}

#[tokio::test]
async fn a_person_uses_the_console_in_a_real_browser() {
    let chromium = peers::chromium();
    let modules = peers::playwright_core();
    let peer = OAuthPeer::start("3600").await;
    let dir = TempDir::new("mcpmw-console");
    let llm = FakeLlm::new().tool_call("ts__headers", json!({})).text("Done after approval.").start().await;
    let mut app = TestApp::in_front_of(&llm, &yaml(&dir.0, &peer.base)).await;
    app.key = Some(ADMIN.into());
    app.wait_for_state("gh", "ready").await;

    // A chat that parks: ts__headers waits for the user's approval.
    let asked = json!([{"role": "user", "content": "show the headers"}]);
    let first = chat(&app, asked.as_array().unwrap()).await;
    let parked = first["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    assert!(parked.contains("Approval needed") && parked.contains("mcp-park-"), "{parked}");

    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-shots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/console_browser.js");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .env("BASE", format!("http://{}", app.addr))
        .env("CHROMIUM", chromium)
        .env("NODE_PATH", modules)
        .env("ADMIN_KEY", ADMIN)
        .env("LIMITED_KEY", LIMITED)
        .env("SHOTS", &shots)
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(180), out).await.expect("the browser run ends").unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser run failed:\n{stderr}\n{stdout}");
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(summary["connected"], true, "{summary}");
    assert!(parked.contains(summary["approved"].as_str().unwrap()), "the approved request is the parked one");
    assert_eq!(summary["restricted"]["servers"], json!(["gh", "ts"]), "{summary}");

    // The chat goes on with the console's answer, whatever the reply says: the call ran.
    let mut messages = asked.as_array().unwrap().clone();
    messages.push(json!({"role": "assistant", "content": parked}));
    messages.push(json!({"role": "user", "content": "what happens now?"}));
    let resumed = chat(&app, &messages).await;
    let answer = resumed["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(answer.ends_with("Done after approval."), "{resumed}");
    assert_eq!(resumed["mcp_tool_calls"][0]["name"], "ts__headers", "{resumed}");
    let sent = llm.chat_requests().pop().unwrap();
    let tool = sent["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").cloned().unwrap();
    // The server's answer (a stdio call carries no headers), not "the user did not approve".
    assert_eq!(tool["content"], "{}", "{tool}");
}

async fn chat(app: &TestApp, messages: &[Value]) -> Value {
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(ADMIN)
        .json(&json!({"model": "m", "messages": messages}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// A browser without cookies handling: the session cookie's value from a response.
fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    let set = resp.headers().get("set-cookie")?.to_str().ok()?;
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/ui"), "{set}");
    Some(set.split(';').next()?.to_owned())
}

/// Form fields, encoded as a browser posts them.
fn encoded<K: AsRef<str>, V: AsRef<str>>(fields: impl IntoIterator<Item = (K, V)>) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        out.append_pair(k.as_ref(), v.as_ref());
    }
    out.finish()
}

/// The form token on a console page.
fn token_in(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn forms_need_the_session_and_its_token_and_pages_forbid_scripts() {
    let dir = TempDir::new("mcpmw-console-forms");
    let llm = FakeLlm::new().start().await;
    let app = TestApp::in_front_of(&llm, &yaml(&dir.0, "http://127.0.0.1:9")).await;
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let url = |path: &str| app.url(path);

    // No session: to the sign-in page; an API key in a header is not a console session.
    let anonymous = browser.get(url("/ui/servers")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(anonymous.status(), 303);
    assert_eq!(anonymous.headers()["location"], "/ui/login");
    let wrong = browser
        .post(url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encoded([("key", "sk-nope")]))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(session_cookie(&wrong).is_none());

    // Signed in as the restricted key.
    let signed = browser
        .post(url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encoded([("key", LIMITED)]))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    let cookie = session_cookie(&signed).unwrap();
    let page = browser.get(url("/ui/servers")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("default-src 'none'") && !policy.contains("script-src"), "{policy}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(!html.contains("/ui/reload") && !html.contains(LIMITED), "no operator button, never the key");
    let token = token_in(&html);

    // A form without the token, or with another, is refused; with it, a restricted key is still
    // refused the operator's actions.
    let post = |path: &str, form: Vec<(&'static str, String)>| {
        browser
            .post(url(path))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encoded(form))
            .send()
    };
    assert_eq!(post("/ui/reload", vec![]).await.unwrap().status(), 403);
    assert_eq!(post("/ui/reload", vec![("csrf", "0".repeat(64))]).await.unwrap().status(), 403);
    assert_eq!(post("/ui/reload", vec![("csrf", token.clone())]).await.unwrap().status(), 403);
    let restart = post("/ui/servers/restart", vec![("csrf", token.clone()), ("server", "ts".into())]).await.unwrap();
    assert_eq!(restart.status(), 403);
    assert!(restart.text().await.unwrap().contains("needs an unrestricted key"));
    // A cross-site page cannot post the form at all (the gate's origin rule).
    let cross = browser
        .post(url("/ui/tool?name=ts__echo"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encoded([("csrf", token.as_str()), ("arg.text", "x")]))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    // A tool outside the key's policy is unknown, run or not.
    let other = post("/ui/tool?name=ts__headers", vec![("csrf", token.clone())]).await.unwrap();
    assert_eq!(other.status(), 404);
    let ran = post("/ui/tool?name=ts__echo", vec![("csrf", token.clone()), ("arg.text", "<b>bold</b>".into())])
        .await
        .unwrap();
    let ran = ran.text().await.unwrap();
    assert!(ran.contains("&lt;b&gt;bold&lt;/b&gt;") && !ran.contains("<b>bold</b>"), "output is escaped");

    // Signing out ends the session for good.
    assert_eq!(post("/ui/logout", vec![("csrf", token)]).await.unwrap().status(), 303);
    let after = browser.get(url("/ui/servers")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(after.status(), 303);
}

#[tokio::test]
async fn an_open_loopback_gateway_needs_no_sign_in() {
    let llm = FakeLlm::new().start().await;
    let yaml = format!("mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n");
    let app = TestApp::in_front_of(&llm, &yaml).await;
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let first = browser.get(app.url("/ui/servers")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let cookie = session_cookie(&first).expect("a session is made on the first visit");
    let html = first.text().await.unwrap();
    assert!(html.contains("open gateway") && html.contains("/ui/reload") && !html.contains("Sign out"), "{html}");
    let login = browser.get(app.url("/ui/login")).send().await.unwrap();
    assert_eq!(login.status(), 303, "nothing to sign in with");
    // The session's token still guards its forms.
    let refused = browser
        .post(app.url("/ui/reload"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encoded([("csrf", "x")]))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}
