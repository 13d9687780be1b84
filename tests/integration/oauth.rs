//! OAuth 2.1 against the reference: the official MCP conformance suite's client scenarios,
//! driven through the gateway's own `login`, `tools` and `call` commands
//! (`tests/peers/conformance-client.sh`), with the suite's authorization servers — discovery
//! variants, client identity (CIMD, DCR, pre-registration), token endpoint auth methods, scope
//! selection and step-up — and the handshake scenarios; and the debug logs of all of it hold no
//! token, code, verifier or secret.

use std::path::PathBuf;
use std::process::Command;

use crate::common::peers::{TempDir, conformance};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-middleware");

fn wrapper() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/conformance-client.sh").display().to_string()
}

/// Runs the suite's client side (`args`: `--suite auth` or `--scenario x`); returns its stdout and
/// the output directory (per scenario: checks, and the client's stdout and stderr).
fn run(args: &[&str], out: &TempDir) -> String {
    let (node, suite) = conformance();
    let output = Command::new(node)
        .arg(suite)
        .args(["client", "--command", &wrapper(), "-o"])
        .arg(&out.0)
        .args(args)
        .env("MCPMW_BIN", BIN)
        .env("RUST_LOG", "debug")
        .output()
        .expect("the conformance suite runs");
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// Every file the client wrote to stderr under `dir`.
fn client_logs(dir: &std::path::Path) -> String {
    let mut all = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "stderr.txt" || n == "stdout.txt") {
                all.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    all
}

#[test]
fn the_conformance_auth_suite_passes_through_the_gateways_commands() {
    let out = TempDir::new("mcpmw-conformance-auth");
    let report = run(&["--suite", "auth"], &out);
    let scenarios: Vec<&str> =
        report.lines().filter(|l| (l.starts_with('✓') || l.starts_with('✗')) && l.contains(" auth/")).collect();
    assert_eq!(scenarios.len(), 14, "every auth scenario ran:\n{report}");
    for line in &scenarios {
        assert!(line.starts_with('✓') && line.contains(" 0 failed") && !line.contains("warning"), "{line}\n{report}");
    }
    let total = report.lines().find(|l| l.starts_with("Total:")).expect("a total");
    let passed: u32 = total.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(total.contains(" 0 failed, 0 warnings") && passed >= 300, "{total}");
    eprintln!("{}", scenarios.join("\n"));
    eprintln!("{total}");

    // The debug logs of every sign-in hold no token, code, verifier or client secret.
    let logs = client_logs(&out.0);
    assert!(logs.contains("signed in to `conf`"), "the logs were captured: {}", logs.len());
    for secret in ["test-token-", "test-auth-code", "code_verifier", "test-client-secret", "pre-registered-secret"] {
        assert!(!logs.contains(secret), "`{secret}` reached a log");
    }
}

#[test]
fn the_handshake_and_client_credentials_scenarios_pass() {
    for scenario in ["initialize", "tools_call", "sse-retry", "auth/client-credentials-basic"] {
        let out = TempDir::new("mcpmw-conformance");
        let report = run(&["--scenario", scenario], &out);
        assert!(report.contains("OVERALL: PASSED"), "{scenario}:\n{report}");
        // The one warning allowed: a reconnection up to 1 s after a 500 ms `retry:` (past that
        // it fails) is "slightly late" when the machine is loaded, and says nothing of the client.
        let late = scenario == "sse-retry"
            && report.contains(" 0 failed, 1 warnings")
            && report.contains("reconnected slightly late");
        assert!(report.contains(" 0 failed, 0 warnings") || late, "{scenario}:\n{report}");
        let logs = client_logs(&out.0);
        assert!(
            !logs.contains("test-token-") && !logs.contains("conformance-test-secret"),
            "{scenario}: a secret in a log"
        );
    }
}

/// The conformance suite's scenario server on its own (its interactive mode), for the gateway to
/// connect to; stopped when dropped.
pub(crate) struct ScenarioServer {
    pub url: String,
    child: tokio::process::Child,
}

impl ScenarioServer {
    pub async fn start(scenario: &str) -> Self {
        let (node, suite) = conformance();
        let mut command = tokio::process::Command::new(node);
        command.arg(suite).args(["client", "--scenario", scenario]);
        let (child, line) = announced(command, "Server URL: ").await;
        Self { url: line.trim().to_owned(), child }
    }
}

/// Starts `command` and waits (20 s at most) for the stdout line that starts with `prefix`;
/// returns the child and the rest of that line.
async fn announced(mut command: tokio::process::Command, prefix: &str) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no `{prefix}` line"))
            .unwrap()
            .expect("a line");
        if let Some(rest) = line.strip_prefix(prefix) {
            return (child, rest.to_owned());
        }
    }
}

impl Drop for ScenarioServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A gateway with an OAuth server nobody signed in to shows `needs_login` (its tools absent,
/// the reason linkable); `mcp-middleware login` — another process, sharing the SQLite state
/// store — signs in; the running gateway connects with the stored token and calls the tool;
/// `logout` forgets it.
#[tokio::test]
async fn a_gateway_waits_for_login_then_uses_the_stored_token() {
    let server = ScenarioServer::start("auth/metadata-default").await;
    let dir = TempDir::new("mcpmw-oauth");
    let yaml = format!(
        "state:\n  url: sqlite://{}/state.db\n  encryption_key: an-oauth-test-key-0123456789abcdef\n\
         mcpServers:\n  conf:\n    url: {}\n    auth:\n      oauth: {{}}\n",
        dir.0.display(),
        server.url
    );
    let config = dir.0.join("config.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let app = crate::common::TestApp::spawn(&yaml).await;
    let needs_login = app.wait_for_state("conf", "failed").await;
    assert_eq!(needs_login["auth"], "needs_login", "{needs_login}");
    let error = needs_login["last_error"].as_str().unwrap();
    assert!(error.contains("mcp-middleware login conf"), "{error}");

    let login = cli(&config, &["login", "conf", "--follow"]).await;
    let stdout = String::from_utf8_lossy(&login.stdout);
    assert!(login.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&login.stderr));
    let url_line = stdout.lines().find(|l| l.starts_with("http")).expect("the authorization URL on a line of its own");
    assert!(url_line.contains("code_challenge_method=S256") && url_line.contains("resource="), "{url_line}");

    // The gateway's next attempt finds the token in the store.
    let ready = app.wait_for_state("conf", "ready").await;
    assert_eq!(ready["auth"], "connected", "{ready}");
    assert!(ready["issuer"].as_str().is_some_and(|i| i.starts_with("http://localhost:")), "{ready}");
    assert!(!ready.to_string().contains("test-token-"), "no token in the status: {ready}");
    let (status, result) = app.call_tool("conf__test-tool", serde_json::json!({})).await;
    assert_eq!((status, result["isError"].as_bool()), (200, Some(false)), "{result}");

    let logout = cli(&config, &["logout", "conf"]).await;
    let said = String::from_utf8_lossy(&logout.stderr);
    assert_eq!(String::from_utf8_lossy(&logout.stdout).trim(), "tokens forgotten", "{said}");
}

/// Runs the gateway's CLI with `config` without blocking the test's runtime, which runs the
/// gateway under test too: a blocking wait would stall its tasks, among them a store write that
/// holds SQLite's lock the CLI waits for.
async fn cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(BIN).arg("--config").arg(config).args(args).output().await.unwrap()
}

#[test]
fn oauth_configs_are_checked_before_start() {
    let load = |yaml: &str| {
        mcp_middleware::config::load_str(yaml, &std::collections::HashMap::<String, String>::new())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let server = "mcpServers:\n  gh:\n    url: https://example.com/mcp\n    auth:\n      oauth:\n";
    let keyless = load(server);
    assert!(keyless.contains("mcpServers.gh.auth.oauth: needs state.encryption_key"), "{keyless}");
    let key = "state:\n  encryption_key: a-key-of-at-least-thirty-two-characters\n";
    assert_eq!(load(&format!("{key}{server}        scopes: [repo]\n")), "", "a valid OAuth server");
    let unknown = load(&format!("{key}{server}        client_sercet: x\n"));
    assert!(unknown.contains("client_sercet"), "unknown fields are refused: {unknown}");
    let credentials = load(&format!("{key}{server}        grant: client_credentials\n"));
    assert!(credentials.contains("client_credentials needs client_id and client_secret"), "{credentials}");
    let stdio = load(&format!("{key}mcpServers:\n  s:\n    command: x\n    auth:\n      oauth: {{}}\n"));
    assert!(stdio.contains("only streamable HTTP servers"), "{stdio}");
    let per_user = load(&format!(
        "{key}{server}        grant: client_credentials\n        client_id: c\n        client_secret: s\n        per_user: true\n"
    ));
    assert!(per_user.contains("auth.oauth.per_user: client_credentials has no users"), "{per_user}");
    assert_eq!(load(&format!("{key}{server}        per_user: true\n")), "", "a per-user server");
    let public = load(&format!("{key}http:\n  public_url: gw.example\n{server}"));
    assert!(public.contains("http.public_url: must be an http(s) URL"), "{public}");
}

/// A sign-in whose token ran out with no refresh token to renew it shows `expired` (not a
/// generic failure), and says what to run.
#[tokio::test]
async fn a_token_that_runs_out_without_a_refresh_token_shows_expired() {
    let peer = OAuthPeer::start_with(&["--token-ttl", "2", "--no-refresh"]).await;
    let dir = TempDir::new("mcpmw-expired");
    let yaml = format!(
        "state:\n  url: sqlite://{}/state.db\n  encryption_key: an-expiry-test-key-0123456789abcdef\n\
         mcpServers:\n  ts:\n    url: {}/mcp\n    auth:\n      oauth:\n",
        dir.0.display(),
        peer.base
    );
    let config = dir.0.join("config.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let login = Command::new(BIN).arg("--config").arg(&config).args(["login", "ts", "--follow"]).output().unwrap();
    assert!(login.status.success(), "{}", String::from_utf8_lossy(&login.stderr));
    let app = crate::common::TestApp::spawn(&yaml).await;
    assert_eq!(app.wait_for_state("ts", "ready").await["auth"], "connected");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (status, _) = app.call_tool("ts__echo", serde_json::json!({"text": "late"})).await;
    assert_ne!(status, 200, "the token is gone and nothing renews it");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let ts = app.servers().await.remove("ts").unwrap();
        if ts["auth"] == "expired" {
            assert!(ts["last_error"].as_str().unwrap().contains("mcp-middleware login ts"), "{ts}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never expired: {ts}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Our test server behind OAuth with its own authorization server (tokens living `ttl` s).
pub(crate) struct OAuthPeer {
    pub base: String,
    _child: tokio::process::Child,
}

impl OAuthPeer {
    pub async fn start(ttl: &str) -> Self {
        Self::start_with(&["--token-ttl", ttl]).await
    }

    /// The server with more options (`--no-refresh`).
    pub async fn start_with(args: &[&str]) -> Self {
        let mut command = tokio::process::Command::new(crate::common::peers::TEST_SERVER);
        command.args(["oauth", "--port", "0"]).args(args);
        let (child, addr) = announced(command, "listening on ").await;
        Self { base: format!("http://{}", addr.trim()), _child: child }
    }

    pub async fn stats(&self) -> serde_json::Value {
        reqwest::get(format!("{}/stats", self.base)).await.unwrap().json().await.unwrap()
    }
}

/// A token that expires between two calls is refreshed without the caller noticing; a revoked
/// refresh token turns the server into `needs_login`, visibly.
#[tokio::test]
async fn expired_tokens_are_refreshed_and_a_revoked_sign_in_needs_login_again() {
    let dir = TempDir::new("mcpmw-refresh");
    refresh_and_revoke(&format!("sqlite://{}/state.db", dir.0.display()), &dir).await;
}

/// The same on a real PostgreSQL (the store every replica shares).
#[tokio::test]
async fn tokens_in_postgres_are_refreshed_and_revoked_the_same() {
    let pg = tokio::task::spawn_blocking(crate::common::peers::Postgres::start).await.unwrap();
    let dir = TempDir::new("mcpmw-refresh-pg");
    refresh_and_revoke(&pg.url, &dir).await;
}

async fn refresh_and_revoke(state_url: &str, dir: &TempDir) {
    let peer = OAuthPeer::start("2").await;
    let yaml = format!(
        "state:\n  url: \"{state_url}\"\n  encryption_key: a-refresh-test-key-0123456789abcdef\n\
         mcpServers:\n  ts:\n    url: {}/mcp\n    auth:\n      oauth:\n",
        peer.base
    );
    let config = dir.0.join("config.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let login = Command::new(BIN).arg("--config").arg(&config).args(["login", "ts", "--follow"]).output().unwrap();
    assert!(login.status.success(), "{}", String::from_utf8_lossy(&login.stderr));

    let app = crate::common::TestApp::spawn(&yaml).await;
    assert_eq!(app.wait_for_state("ts", "ready").await["auth"], "connected");
    let (status, echo) = app.call_tool("ts__echo", serde_json::json!({"text": "one"})).await;
    assert_eq!((status, crate::common::first_text(&echo)), (200, "one"), "{echo}");
    // The access token dies; the next call still answers, on a refreshed token.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (status, echo) = app.call_tool("ts__echo", serde_json::json!({"text": "two"})).await;
    assert_eq!((status, crate::common::first_text(&echo)), (200, "two"), "{echo}");
    assert!(peer.stats().await["refreshed"].as_u64().unwrap() >= 1, "{}", peer.stats().await);

    // Revoked: the refresh fails, and the server says it needs a sign-in.
    reqwest::Client::new().post(format!("{}/revoke", peer.base)).send().await.unwrap();
    let (status, _) = app.call_tool("ts__echo", serde_json::json!({"text": "three"})).await;
    assert_ne!(status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let ts = app.servers().await.remove("ts").unwrap();
        if ts["auth"] == "needs_login" {
            assert!(ts["last_error"].as_str().unwrap().contains("mcp-middleware login ts"), "{ts}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never needs_login: {ts}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A sign-in over HTTP: an unrestricted key starts it on one replica, the person's browser comes
/// back to another (the two share the SQLite state store), which finishes it and connects at
/// once; a replayed or forged callback does nothing; a restricted key may not start one.
#[tokio::test]
async fn a_sign_in_started_on_one_replica_finishes_on_another() {
    let peer = OAuthPeer::start("3600").await;
    let dir = TempDir::new("mcpmw-web-login");
    let yaml = format!(
        "auth:\n  api_keys: [sk-ops-0123456789]\n  keys:\n    - key: sk-narrow-0123456789\n      servers: [ts]\n\
         state:\n  url: sqlite://{}/state.db\n  encryption_key: a-web-login-test-key-0123456789abcdef\n\
         mcpServers:\n  ts:\n    url: {}/mcp\n    auth:\n      oauth:\n",
        dir.0.display(),
        peer.base
    );
    let mut a = crate::common::TestApp::spawn(&yaml).await;
    let mut b = crate::common::TestApp::spawn(&yaml).await;
    a.key = Some("sk-narrow-0123456789".into());
    let refused = a.post("/oauth/start/ts", &serde_json::json!({})).await;
    assert_eq!(refused.status(), 403, "a restricted key may not sign the gateway in");
    a.key = Some("sk-ops-0123456789".into());
    b.key = a.key.clone();
    assert_eq!(a.wait_for_state("ts", "failed").await["auth"], "needs_login");

    let started: serde_json::Value = a.post("/oauth/start/ts", &serde_json::json!({})).await.json().await.unwrap();
    let authorize = started["authorization_url"].as_str().expect("an authorization URL");
    assert!(authorize.contains("code_challenge_method=S256"), "{authorize}");
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let approved = no_redirects.get(authorize).send().await.unwrap();
    let location = approved.headers()["location"].to_str().unwrap().to_owned();
    let callback = url::Url::parse(&location).unwrap();
    assert_eq!(callback.path(), "/oauth/callback");
    assert_eq!(callback.port(), Some(a.addr.port()), "the redirect names the replica the sign-in started on");
    // The browser lands on the other replica, as a cross-site navigation and without a key.
    let on_b = format!("{}?{}", b.url("/oauth/callback"), callback.query().unwrap());
    let browser = || no_redirects.get(&on_b).header("sec-fetch-site", "cross-site");
    let page = browser().send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("signed in to `ts`"));
    let replayed = browser().send().await.unwrap();
    assert_eq!(replayed.status(), 400, "a state is good once");
    let forged = no_redirects.get(b.url("/oauth/callback?code=x&state=forged")).send().await.unwrap();
    assert_eq!(forged.status(), 400);

    // B reconnects at once, with the token A's sign-in stored.
    assert_eq!(b.wait_for_state("ts", "ready").await["auth"], "connected");
    let (status, echo) = b.call_tool("ts__echo", serde_json::json!({"text": "signed in"})).await;
    assert_eq!((status, crate::common::first_text(&echo)), (200, "signed in"), "{echo}");
}

/// The gateway serves its own Client ID Metadata Document, whose `client_id` is its own URL
/// (so only when `http.public_url` names it), to anyone (an authorization server fetches it).
#[tokio::test]
async fn the_gateway_serves_its_own_client_metadata_document() {
    let unnamed = crate::common::TestApp::spawn("").await;
    assert_eq!(reqwest::get(unnamed.url("/oauth/client-metadata.json")).await.unwrap().status(), 404);
    let app = crate::common::TestApp::spawn(
        "auth:\n  api_keys: [sk-any-0123456789]\nhttp:\n  public_url: https://gw.example/\n",
    )
    .await;
    let resp = reqwest::get(app.url("/oauth/client-metadata.json")).await.unwrap();
    assert_eq!(resp.status(), 200, "no key needed");
    let document: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(document["client_id"], "https://gw.example/oauth/client-metadata.json", "{document}");
    assert_eq!(document["redirect_uris"][0], "https://gw.example/oauth/callback", "{document}");
    assert_eq!(document["token_endpoint_auth_method"], "none");
}
