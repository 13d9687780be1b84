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
const OPERATOR: &str = "sk-console-operator-0123456789";

fn yaml(state_dir: &std::path::Path, oauth_base: &str) -> String {
    format!(
        "auth:\n  keys:\n    - key: {ADMIN}\n      user: {{id: ada}}\n\
         \x20   - key: {LIMITED}\n      tools: [ts__echo, \"gh__*\"]\n      user: {{id: bob}}\n\
         \x20   - key: {OPERATOR}\n\
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
    let llm = FakeLlm::new()
        .tool_call("ts__headers", json!({}))
        .tool_call("ts__headers", json!({}))
        .text("Done after approval.")
        .text("Understood, not run.")
        .start()
        .await;
    let mut app = TestApp::in_front_of(&llm, &yaml(&dir.0, &peer.base)).await;
    app.key = Some(ADMIN.into());
    app.wait_for_state("gh", "ready").await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__headers")).await;

    // Two chats that park: ts__headers waits for the user's approval.
    let mut parked = Vec::new();
    for ask in ["show the headers", "show them again"] {
        let asked = vec![json!({"role": "user", "content": ask})];
        let first = chat(&app, &asked).await;
        let text = first["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
        assert!(text.contains("Approval needed"), "{text}");
        let id = text[text.find("mcp-park-").unwrap() + "mcp-park-".len()..][..32].to_owned();
        parked.push((asked, text, id));
    }

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
        .env("APPROVE_REQUEST", &parked[0].2)
        .env("DENY_REQUEST", &parked[1].2)
        .env("SHOTS", &shots)
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(180), out).await.expect("the browser run ends").unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser run failed:\n{stderr}\n{stdout}");
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(summary["connected"], true, "{summary}");
    assert_eq!(summary["restricted"]["servers"], json!(["gh", "ts"]), "{summary}");

    // Each chat goes on with the console's answer when the user says to go on: the approved
    // call ran, the denied one did not (although "continue" alone would have approved it).
    for ((asked, text, _), (answer, tool_said)) in
        parked.into_iter().zip([("Done after approval.", "{}"), ("Understood, not run.", "declined")])
    {
        let mut messages = asked;
        messages.push(json!({"role": "assistant", "content": text}));
        messages.push(json!({"role": "user", "content": "continue"}));
        let resumed = chat(&app, &messages).await;
        let said = resumed["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(said.ends_with(answer), "{resumed}");
        let sent = llm.chat_requests().pop().unwrap();
        let tool = sent["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").cloned().unwrap();
        assert!(tool["content"].as_str().unwrap().contains(tool_said), "{tool}");
    }
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

/// Signs in at `base` with `key` as a browser without cookie handling: the session cookie.
async fn sign_in(browser: &reqwest::Client, base: &str, key: &str) -> String {
    let resp = browser
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encoded([("key", key)]))
        .send()
        .await
        .unwrap();
    session_cookie(&resp).unwrap_or_else(|| panic!("no session for a sign-in: {}", resp.status()))
}

/// One value, encoded for a query string.
fn encoded_value(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
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

    // A page to go on to survives the sign-in (the OAuth callback's "confirm in the console"
    // link); anything off the console's own pages does not.
    let next = "/ui/connections?server=gh&code=AB12CD34";
    let form = browser.get(url(&format!("/ui/login?next={}", encoded_value(next)))).send().await.unwrap();
    assert!(form.text().await.unwrap().contains("name=\"next\" value=\"/ui/connections?server=gh&amp;code=AB12CD34\""));
    for (wanted, landed) in [(next, next), ("//evil.example/ui/", "/ui/servers")] {
        let resp = browser
            .post(url("/ui/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encoded([("key", LIMITED), ("next", wanted)]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["location"], landed);
    }

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

    // Its call is in its own activity, in an operator's (everyone's), not in another person's.
    let base = format!("http://{}", app.addr);
    let activity_of = |cookie: String| {
        let browser = browser.clone();
        let url = url("/ui/activity");
        async move {
            // The trail is written in the background, in batches: up to 15 s on a loaded machine.
            for _ in 0..300 {
                let page = browser.get(&url).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
                if page.contains("bold") {
                    return page;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            browser.get(&url).header("cookie", &cookie).send().await.unwrap().text().await.unwrap()
        }
    };
    assert!(activity_of(cookie.clone()).await.contains("&lt;b&gt;bold"), "its own call");
    assert!(
        activity_of(sign_in(&browser, &base, OPERATOR).await).await.contains("&lt;b&gt;bold"),
        "everyone's for an operator"
    );
    // The call is in the trail by now (the operator saw it): another person's page is read once.
    let theirs = sign_in(&browser, &base, ADMIN).await;
    let page = browser.get(url("/ui/activity")).header("cookie", &theirs).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("bold"), "not another person's");

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
    assert!(
        html.contains("open gateway") && html.contains("/ui/servers/restart") && !html.contains("Sign out"),
        "{html}"
    );
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

/// A tool's question answered on the Pending page: the chat's plain `continue` goes on with
/// the console's answer (the retried call gets it), and the page lists the question first.
#[tokio::test]
async fn a_question_is_answered_in_the_console() {
    let dir = TempDir::new("mcpmw-console-question");
    let llm = FakeLlm::new().tool_call("ts__ask", json!({"kind": "form"})).text("Thanks, Ada.").start().await;
    let mut app = TestApp::in_front_of(&llm, &yaml(&dir.0, "http://127.0.0.1:9")).await;
    app.key = Some(ADMIN.into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__ask")).await;
    let asked = vec![json!({"role": "user", "content": "go"})];
    let first = chat(&app, &asked).await;
    let question = first["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    assert!(question.contains("Who is asking?"), "{question}");

    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookie = sign_in(&browser, &format!("http://{}", app.addr), ADMIN).await;
    let page = browser.get(app.url("/ui/pending")).header("cookie", &cookie).send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(page.contains("asks you something") && page.contains("Who is asking?"), "{page}");
    let at = page.find("name=\"entry\" value=\"").unwrap() + "name=\"entry\" value=\"".len();
    let entry = page[at..].split('"').next().unwrap().to_owned();
    let answered = browser
        .post(app.url("/ui/pending"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encoded([
            ("csrf", token_in(&page).as_str()),
            ("entry", entry.as_str()),
            ("answer", r#"{"name": "Ada", "age": 36}"#),
        ]))
        .send()
        .await
        .unwrap();
    assert!(answered.text().await.unwrap().contains("Answered."));

    let mut messages = asked;
    messages.push(json!({"role": "assistant", "content": question}));
    messages.push(json!({"role": "user", "content": "continue"}));
    let resumed = chat(&app, &messages).await;
    assert!(resumed["choices"][0]["message"]["content"].as_str().unwrap().ends_with("Thanks, Ada."), "{resumed}");
    let sent = llm.chat_requests().pop().unwrap();
    let said: Vec<&str> = sent["messages"].as_array().unwrap().iter().filter_map(|m| m["content"].as_str()).collect();
    assert!(said.iter().any(|t| t.contains(r#""name":"Ada""#) && t.contains(r#""action":"accept""#)), "{said:?}");
    // Taken: nothing waits any more.
    let page = browser.get(app.url("/ui/pending")).header("cookie", &cookie).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("Nothing is waiting for you."));
}

/// The activity trail and the sign-in are in the state store: a call made just before a
/// shutdown is on the Activity page of the next process, and the session still works there.
#[tokio::test]
async fn activity_and_sessions_outlive_a_restart() {
    let dir = TempDir::new("mcpmw-console-restart");
    let llm = FakeLlm::new().start().await;
    let mut app = TestApp::in_front_of(&llm, &yaml(&dir.0, "http://127.0.0.1:9")).await;
    app.key = Some(OPERATOR.into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__echo")).await;
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookie = sign_in(&browser, &format!("http://{}", app.addr), OPERATOR).await;
    let called = app.post("/mcp/tools/call", &json!({"name": "ts__echo", "arguments": {"text": "just before"}})).await;
    assert_eq!(called.status(), 200);
    app.shutdown().await.unwrap();

    let app = TestApp::in_front_of(&llm, &yaml(&dir.0, "http://127.0.0.1:9")).await;
    let page = browser.get(app.url("/ui/activity")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), 200, "the session is still valid");
    assert!(page.text().await.unwrap().contains("just before"), "the last call was written before the exit");
}

/// An operator signs the gateway in to a shared OAuth server from the Servers page: the real
/// test authorization server's sign-in, then the server connects; a restricted key may not.
#[tokio::test]
async fn an_operator_signs_the_gateway_in_from_the_servers_page() {
    let peer = OAuthPeer::start("3600").await;
    let dir = TempDir::new("mcpmw-console-shared-oauth");
    let llm = FakeLlm::new().start().await;
    let yaml = format!(
        "auth:\n  keys:\n    - key: {OPERATOR}\n    - key: {LIMITED}\n      tools: [\"sh__*\"]\n\
         state:\n  url: sqlite://{}/state.db\n  encryption_key: a-console-test-key-0123456789abcdef\n\
         mcpServers:\n  sh:\n    url: {}/mcp\n    auth:\n      oauth: {{}}\n",
        dir.0.display(),
        peer.base
    );
    let mut app = TestApp::in_front_of(&llm, &yaml).await;
    app.key = Some(OPERATOR.into());
    let waiting = app.wait_for_state("sh", "failed").await;
    assert_eq!(waiting["auth"], "needs_login", "{waiting}");

    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let base = format!("http://{}", app.addr);
    let start = |cookie: String| {
        let (browser, servers, url) = (browser.clone(), app.url("/ui/servers"), app.url("/ui/servers/sign-in"));
        async move {
            let page = browser.get(servers).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
            let posted = browser
                .post(url)
                .header("cookie", &cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(encoded([("csrf", token_in(&page).as_str()), ("server", "sh")]))
                .send()
                .await
                .unwrap();
            (page, posted.status().as_u16(), posted.text().await.unwrap())
        }
    };
    // A restricted key sees the server (it has its tools) but no sign-in, and is refused one.
    let (page, status, _) = start(sign_in(&browser, &base, LIMITED).await).await;
    assert!(!page.contains("/ui/servers/sign-in"), "no sign-in button for a restricted key");
    assert_eq!(status, 403);

    let (page, status, linked) = start(sign_in(&browser, &base, OPERATOR).await).await;
    assert!(page.contains("/ui/servers/sign-in"), "{page}");
    assert_eq!(status, 200, "{linked}");
    let at = linked.find("id=\"sign-in\" href=\"").unwrap() + "id=\"sign-in\" href=\"".len();
    let mut url = linked[at..].split('"').next().unwrap().replace("&amp;", "&");
    // The browser follows the authorization server back to the gateway's callback.
    let mut last = None;
    for _ in 0..4 {
        let resp = browser.get(&url).header("sec-fetch-site", "cross-site").send().await.unwrap();
        match resp.headers().get("location") {
            Some(location) => url = location.to_str().unwrap().to_owned(),
            None => {
                last = Some((resp.status().as_u16(), resp.text().await.unwrap()));
                break;
            }
        }
    }
    let (status, text) = last.expect("the sign-in ends on a page");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("signed in to `sh`"), "{text}");
    let ready = app.wait_for_state("sh", "ready").await;
    assert_eq!(ready["auth"], "connected", "{ready}");
}
