//! `per_user` OAuth servers: each user connects their own account. Two users of one Open WebUI
//! key — one connected, one not — through the REST API and through chat: each sees their own
//! result (the token's account, as the server saw it) or the "connect your account" message with
//! a link; the same user id behind another key is someone else; a forged ticket does nothing;
//! a revoked sign-in asks that user, and only that user, to connect again; disconnecting forgets.

use serde_json::{Value, json};

use crate::common::peers::TempDir;
use crate::common::{FakeLlm, TestApp, first_text};
use crate::oauth::OAuthPeer;

/// A REST tool call as `user` through `key`: status and body.
async fn call_as(app: &TestApp, key: &str, user: &str, tool: &str) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url("/mcp/tools/call"))
        .bearer_auth(key)
        .header("X-OpenWebUI-User-Id", user)
        .json(&json!({"name": tool, "arguments": {}}))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// The account the server saw the token of (its `x-token-subject`).
fn subject(result: &Value) -> String {
    let headers: Value = serde_json::from_str(first_text(result)).unwrap_or_default();
    headers["x-token-subject"].as_str().unwrap_or_default().to_owned()
}

/// Follows a link (or an authorization URL) as a person's browser does, choosing `account` at
/// the authorization server; returns the final page's status and text.
async fn sign_in(start: &str, account: &str) -> (u16, String) {
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let with_account = |url: &str| {
        if url.contains("/authorize?") { format!("{url}&user={account}") } else { url.to_owned() }
    };
    let mut url = with_account(start);
    for _ in 0..4 {
        let resp = browser.get(&url).header("sec-fetch-site", "cross-site").send().await.unwrap();
        let Some(location) = resp.headers().get("location") else {
            return (resp.status().as_u16(), resp.text().await.unwrap());
        };
        url = with_account(location.to_str().unwrap());
    }
    panic!("too many redirects from {start}");
}

/// The confirmation code a per-user sign-in's callback page shows.
fn code_in(page: &str) -> String {
    let at = page.find("continue ").unwrap_or_else(|| panic!("no code in {page}"));
    page[at + "continue ".len()..].split_whitespace().next().unwrap().to_owned()
}

/// Confirms a sign-in's code as `user`: the status.
async fn confirm_as(app: &TestApp, user: &str, code: &str) -> u16 {
    let resp = app
        .client
        .post(app.url("/oauth/confirm/gh"))
        .bearer_auth("sk-owui-0123456789")
        .header("X-OpenWebUI-User-Id", user)
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

/// Starts a sign-in through the REST API as `user`: the authorization URL.
async fn start_as(app: &TestApp, user: &str) -> String {
    let started = app
        .client
        .post(app.url("/oauth/start/gh"))
        .bearer_auth("sk-owui-0123456789")
        .header("X-OpenWebUI-User-Id", user)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 200);
    let started: Value = started.json().await.unwrap();
    started["authorization_url"].as_str().unwrap().to_owned()
}

/// The connect link in a "not connected" message.
fn link_in(text: &str) -> String {
    let start = text.find("http://").unwrap_or_else(|| panic!("no link in {text}"));
    text[start..].split_whitespace().next().unwrap().to_owned()
}

#[tokio::test]
async fn each_user_connects_their_own_account_and_never_uses_anothers() {
    let peer = OAuthPeer::start("3600").await;
    let dir = TempDir::new("mcpmw-per-user");
    let llm = FakeLlm::new()
        .tool_call("gh__headers", json!({}))
        .text("Alice's answer.")
        .tool_call("gh__headers", json!({}))
        .text("Bob's answer.")
        .start()
        .await;
    let yaml = format!(
        "auth:\n  keys:\n    - key: sk-owui-0123456789\n      trust_user_headers: true\n\
         \x20   - key: sk-other-0123456789\n      trust_user_headers: true\n\
         state:\n  url: sqlite://{}/state.db\n  encryption_key: a-per-user-test-key-0123456789abcdef\n\
         mcpServers:\n  gh:\n    url: {}/mcp\n    auth:\n      oauth:\n        per_user: true\n",
        dir.0.display(),
        peer.base
    );
    let mut app = TestApp::in_front_of(&llm, &yaml).await;
    app.key = Some("sk-owui-0123456789".into());
    let gh = app.wait_for_state("gh", "ready").await;
    assert_eq!(gh["auth"], "per_user", "{gh}");
    assert_eq!(gh["connected_users"], 0, "{gh}");

    // Nobody has connected: the server offers the one tool that hands out the link.
    let tools = app.wait_for_tools(|n| n.iter().any(|t| t == "gh__connect_account")).await;
    assert_eq!(tools.len(), 1, "{tools:?}");
    let (status, refused) = call_as(&app, "sk-owui-0123456789", "alice", "gh__connect_account").await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "account_not_connected", "{refused}");
    let alice_link = link_in(refused["error"]["message"].as_str().unwrap());
    assert!(alice_link.starts_with(&app.url("/oauth/connect/gh?ticket=")), "{alice_link}");

    // A tampered ticket is nobody's.
    let mut forged = alice_link.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(sign_in(&forged, "mallory-gh").await.0, 400);

    // Alice opens her link and signs in as alice-gh; the server's tools are listed for everyone.
    let (status, page) = sign_in(&alice_link, "alice-gh").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("signed in to `gh`"), "{page}");
    // Not hers yet: the tokens wait for Alice to give the page's code back as herself.
    assert_eq!(call_as(&app, "sk-owui-0123456789", "alice", "gh__connect_account").await.0, 403);
    assert_eq!(confirm_as(&app, "alice", &code_in(&page)).await, 200);
    app.wait_for_tools(|n| n.iter().any(|t| t == "gh__headers")).await;
    let (status, mine) = call_as(&app, "sk-owui-0123456789", "alice", "gh__headers").await;
    assert_eq!((status, subject(&mine)), (200, "alice-gh".to_owned()), "{mine}");

    // Bob has not connected; nor has "alice" behind another key (another holder).
    let (status, bob) = call_as(&app, "sk-owui-0123456789", "bob", "gh__headers").await;
    assert_eq!((status, bob["error"]["code"].as_str()), (403, Some("account_not_connected")), "{bob}");
    let bob_link = link_in(bob["error"]["message"].as_str().unwrap());
    assert_ne!(bob_link, alice_link);
    let (status, posing) = call_as(&app, "sk-other-0123456789", "alice", "gh__headers").await;
    assert_eq!(status, 403, "the same user id through another key is not Alice: {posing}");

    // Through chat: Alice's call runs with her token; Bob's chat stops with his link (the
    // gateway's own words: the model never sees it) and waits for him.
    for user in ["alice", "bob"] {
        let chat = json!({"model": "m", "messages": [{"role": "user", "content": "who am I on gh?"}]});
        let resp = app
            .client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth("sk-owui-0123456789")
            .header("X-OpenWebUI-User-Id", user)
            .json(&chat)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let answer: Value = resp.json().await.unwrap();
        let answer = answer["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
        let sent = llm.chat_requests().pop().unwrap();
        let tool = sent["messages"].as_array().unwrap().iter().rev().find(|m| m["role"] == "tool").cloned();
        if user == "alice" {
            let content = tool.expect("Alice's call ran")["content"].as_str().unwrap().to_owned();
            assert!(content.contains("alice-gh"), "{content}");
        } else {
            assert!(tool.is_none(), "Bob's call did not run: {sent}");
            assert!(
                answer.contains("Connect your account") && answer.contains("/oauth/connect/gh?ticket="),
                "{answer}"
            );
            assert!(!answer.contains("alice-gh"), "{answer}");
        }
    }

    // A sign-in Bob started, finished by someone else's browser (a link sent to a victim): its
    // code given back by anyone but Bob connects nothing, and is used up.
    let (_, page) = sign_in(&start_as(&app, "bob").await, "victim-gh").await;
    assert_eq!(confirm_as(&app, "mallory", &code_in(&page)).await, 400);
    assert_eq!(confirm_as(&app, "bob", &code_in(&page)).await, 400, "used up");
    assert_eq!(call_as(&app, "sk-owui-0123456789", "bob", "gh__headers").await.0, 403);

    // Bob connects through the REST API (his own identity), as bob-gh.
    let (status, page) = sign_in(&start_as(&app, "bob").await, "bob-gh").await;
    assert_eq!(status, 200);
    assert_eq!(confirm_as(&app, "bob", &code_in(&page)).await, 200);
    let (status, bobs) = call_as(&app, "sk-owui-0123456789", "bob", "gh__headers").await;
    assert_eq!((status, subject(&bobs)), (200, "bob-gh".to_owned()), "{bobs}");
    let (_, alices) = call_as(&app, "sk-owui-0123456789", "alice", "gh__headers").await;
    assert_eq!(subject(&alices), "alice-gh");
    assert_eq!(app.servers().await["gh"]["connected_users"], 2);
    let base = app.url("");
    let connected = r#"mcp_middleware_connected_accounts{server="gh"}"#;
    let owui = "sk-owui-0123456789";
    assert_eq!(crate::metrics::value_when(&base, owui, connected, |v| v == 2.0).await, 2.0);

    // Alice's sign-in is revoked at the server: she is asked to connect again; Bob is not.
    reqwest::Client::new().post(format!("{}/revoke?user=alice-gh", peer.base)).send().await.unwrap();
    let (status, again) = call_as(&app, "sk-owui-0123456789", "alice", "gh__headers").await;
    assert_eq!(status, 403, "{again}");
    assert!(again["error"]["message"].as_str().unwrap().contains("connected again"), "{again}");
    let (status, bobs) = call_as(&app, "sk-owui-0123456789", "bob", "gh__headers").await;
    assert_eq!((status, subject(&bobs)), (200, "bob-gh".to_owned()), "{bobs}");

    // Bob disconnects: his tokens are forgotten.
    let gone = app
        .client
        .delete(app.url("/oauth/connections/gh"))
        .bearer_auth("sk-owui-0123456789")
        .header("X-OpenWebUI-User-Id", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.json::<Value>().await.unwrap()["disconnected"], true);
    assert_eq!(call_as(&app, "sk-owui-0123456789", "bob", "gh__headers").await.0, 403);
    let after = crate::metrics::value_when(&base, owui, connected, |v| v < 2.0).await;
    assert!(after < 2.0, "Bob's account is no longer counted: {after}");
}

/// Consent in the middle of a chat: Bob's call to a per-user server he has not connected parks
/// the chat; the answer carries the link (from the gateway, not the model); once he signed in,
/// his "continue" runs the call with his token and the chat goes on to its answer.
#[tokio::test]
async fn a_chat_waits_for_the_user_to_connect_and_then_goes_on() {
    let peer = OAuthPeer::start("3600").await;
    let dir = TempDir::new("mcpmw-consent");
    let llm = FakeLlm::new().tool_call("gh__headers", json!({})).text("Here is who you are on gh.").start().await;
    let yaml = format!(
        "auth:\n  keys:\n    - key: sk-owui-0123456789\n      trust_user_headers: true\n\
         state:\n  url: sqlite://{}/state.db\n  encryption_key: a-consent-test-key-0123456789abcdef\n\
         mcpServers:\n  gh:\n    url: {}/mcp\n    auth:\n      oauth:\n        per_user: true\n",
        dir.0.display(),
        peer.base
    );
    let mut app = TestApp::in_front_of(&llm, &yaml).await;
    app.key = Some("sk-owui-0123456789".into());
    // Alice connected earlier: the server's tools are known.
    app.wait_for_tools(|n| n.iter().any(|t| t == "gh__connect_account")).await;
    let (_, refused) = call_as(&app, "sk-owui-0123456789", "alice", "gh__connect_account").await;
    let (_, page) = sign_in(&link_in(refused["error"]["message"].as_str().unwrap()), "alice-gh").await;
    assert_eq!(confirm_as(&app, "alice", &code_in(&page)).await, 200);
    app.wait_for_tools(|n| n.iter().any(|t| t == "gh__headers")).await;

    let ask = |messages: Value| {
        app.client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth("sk-owui-0123456789")
            .header("X-OpenWebUI-User-Id", "bob")
            .json(&json!({"model": "m", "messages": messages}))
            .send()
    };
    let first: Value =
        ask(json!([{"role": "user", "content": "who am I on gh?"}])).await.unwrap().json().await.unwrap();
    let asked = first["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    assert!(asked.contains("Connect your account") && asked.contains("mcp-park-"), "{asked}");
    assert_eq!(llm.chat_requests().len(), 1, "the model is not asked again while the chat waits");
    let link = asked.split("](").nth(1).and_then(|rest| rest.split(')').next()).unwrap().to_owned();
    let (status, page) = sign_in(&link, "bob-gh").await;
    assert_eq!(status, 200, "{page}");

    let history = json!([{"role": "user", "content": "who am I on gh?"}, {"role": "assistant", "content": asked},
        {"role": "user", "content": format!("continue {}", code_in(&page))}]);
    let done: Value = ask(history).await.unwrap().json().await.unwrap();
    let text = done["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains("Here is who you are on gh."), "{text}");
    let sent = llm.chat_requests().pop().unwrap();
    let tool = sent["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap().clone();
    assert!(tool["content"].as_str().unwrap().contains("bob-gh"), "{tool}");
}

/// Consent mid-chat against the MCP conformance suite's own authorization server (its
/// `auth/metadata-default` scenario, started on its own): before anyone has connected the chat
/// calls `connect_account`, parks with the link, the person signs in and gives the code back
/// with "continue", and the same response goes on: the account is connected and the server's
/// own tool runs with the user's token.
#[tokio::test]
async fn consent_in_a_chat_against_the_conformance_suites_authorization_server() {
    let server = crate::oauth::ScenarioServer::start("auth/metadata-default").await;
    let dir = TempDir::new("mcpmw-consent-conformance");
    let llm = FakeLlm::new()
        .tool_call("conf__connect_account", json!({}))
        .tool_call("conf__test-tool", json!({}))
        .text("Connected, and the tool ran.")
        .start()
        .await;
    let yaml = format!(
        "auth:\n  keys:\n    - key: sk-owui-0123456789\n      trust_user_headers: true\n\
         state:\n  url: sqlite://{}/state.db\n  encryption_key: a-conformance-consent-key-0123456789abcdef\n\
         mcpServers:\n  conf:\n    url: {}\n    auth:\n      oauth:\n        per_user: true\n",
        dir.0.display(),
        server.url
    );
    let mut app = TestApp::in_front_of(&llm, &yaml).await;
    app.key = Some("sk-owui-0123456789".into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "conf__connect_account")).await;
    let ask = |messages: Value| {
        app.client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth("sk-owui-0123456789")
            .header("X-OpenWebUI-User-Id", "dora")
            .json(&json!({"model": "m", "messages": messages}))
            .send()
    };
    let first: Value = ask(json!([{"role": "user", "content": "use conf"}])).await.unwrap().json().await.unwrap();
    let asked = first["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    assert!(asked.contains("Connect your account") && asked.contains("mcp-park-"), "{asked}");
    let link = asked.split("](").nth(1).and_then(|rest| rest.split(')').next()).unwrap().to_owned();
    let (status, page) = sign_in(&link, "dora").await;
    assert_eq!(status, 200, "{page}");

    let history = json!([{"role": "user", "content": "use conf"}, {"role": "assistant", "content": asked},
        {"role": "user", "content": format!("continue {}", code_in(&page))}]);
    let done: Value = ask(history).await.unwrap().json().await.unwrap();
    let text = done["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains("Connected, and the tool ran."), "{text}");
    let sent = llm.chat_requests().pop().unwrap();
    let tools: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(tools.len(), 2, "connect_account, then the server's own tool: {tools:?}");
    assert!(tools[0].contains("is connected"), "{tools:?}");
    assert!(!tools.iter().any(|t| t.contains("Error")), "the server's own tool ran: {tools:?}");
}
