//! The whole MCP protocol through `/mcp`, beyond tools: the official conformance suite's server
//! scenarios against the gateway (our test server behind it with `prefix: ""` offering what they
//! call), resources and prompts under a restricted key, `resources/updated` relayed to the
//! session that subscribed, a client's cancellation reaching the server, and the MCP Inspector
//! CLI and the official Python SDK reading resources and getting a prompt.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ClientRequest, CompleteRequestParams, Implementation,
    Reference, ResourceUpdatedNotificationParam, SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::common::peers::{TEST_SERVER, conformance, everything, inspector_cli, python};

/// A client that records the resource updates it hears.
#[derive(Clone, Default)]
struct Recording(Arc<Mutex<Vec<String>>>);

impl ClientHandler for Recording {
    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.0.lock().push(params.uri);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("facade-protocol-test", "0"))
    }
}

/// The gateway with the conformance fixtures (`conf`, names kept as they are) and the official
/// everything server (`ev`).
async fn gateway(extra: &str) -> TestApp {
    let ev = everything();
    let yaml = format!(
        "mcpServers:\n  conf:\n    command: {TEST_SERVER}\n    args: [--conformance, --era, legacy, stdio]\n    prefix: \"\"\n    sampling: true\n    elicitation: true\n  ev:\n    command: node\n    args: [\"{ev}\", stdio]\n{extra}"
    );
    let mut app = TestApp::spawn(&yaml).await;
    if extra.contains("sk-admin") {
        app.key = Some("sk-admin".into());
    }
    app.wait_for_tools(|n| n.iter().any(|t| t == "test_simple_text") && n.iter().any(|t| t == "ev__get-env")).await;
    app
}

async fn connect(app: &TestApp, key: Option<&str>, handler: Recording) -> RunningService<RoleClient, Recording> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(app.url("/mcp"));
    config.auth_header = key.map(str::to_owned);
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
    handler.serve(transport).await.expect("the client connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_server_suite_passes_through_the_gateway() {
    let app = gateway("").await;
    let (node, suite) = conformance();
    let out = crate::common::peers::TempDir::new("mcpmw-conformance-server");
    let output = tokio::process::Command::new(node)
        .arg(suite)
        // Every scenario, the pending ones (JSON Schema 2020-12, SSE polling) too.
        .args(["server", "--suite", "all", "--url", &app.url("/mcp"), "-o"])
        .arg(&out.0)
        .output()
        .await
        .expect("the conformance suite runs");
    let report = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let scenarios: Vec<&str> = report.lines().filter(|l| l.starts_with('✓') || l.starts_with('✗')).collect();
    assert_eq!(scenarios.len(), 32, "every server scenario ran:\n{report}");
    let failed: Vec<&&str> = scenarios.iter().filter(|l| l.starts_with('✗')).collect();
    assert!(failed.is_empty(), "{failed:#?}\n{}\n{report}", failed_checks(&out.0));
    assert!(report.contains("Total: 46 passed, 0 failed"), "{}\n{report}", failed_checks(&out.0));
}

/// The checks that failed or warned, from the suite's output directory (`checks.json` per scenario).
fn failed_checks(dir: &std::path::Path) -> String {
    let mut failed = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "checks.json") {
                let checks: Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap_or_default()).unwrap_or_default();
                failed.extend(
                    checks
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|c| c["status"] == "FAILURE" || c["status"] == "WARNING")
                        .cloned(),
                );
            }
        }
    }
    serde_json::to_string_pretty(&failed).unwrap_or_default()
}

#[tokio::test]
async fn a_restricted_key_sees_and_reads_only_its_servers_resources_and_prompts() {
    let app = gateway("auth:\n  api_keys: [sk-admin]\n  keys:\n    - key: sk-ev\n      servers: [ev]\n").await;
    let admin = connect(&app, Some("sk-admin"), Recording::default()).await;
    let ev_only = connect(&app, Some("sk-ev"), Recording::default()).await;

    let uris = |list: Vec<rmcp::model::Resource>| list.into_iter().map(|r| r.uri).collect::<Vec<_>>();
    let all = uris(admin.peer().list_all_resources().await.unwrap());
    assert!(all.iter().any(|u| u == "test://static-text") && all.iter().any(|u| u.starts_with("demo://")), "{all:?}");
    let mine = uris(ev_only.peer().list_all_resources().await.unwrap());
    assert!(!mine.is_empty() && mine.iter().all(|u| !u.starts_with("test://")), "{mine:?}");

    let templates = ev_only.peer().list_all_resource_templates().await.unwrap();
    assert!(templates.iter().all(|t| !t.uri_template.starts_with("test://")), "{templates:?}");
    let admin_templates = admin.peer().list_all_resource_templates().await.unwrap();
    assert!(admin_templates.iter().any(|t| t.uri_template == "test://template/{id}/data"), "{admin_templates:?}");

    // Reads, template reads and subscriptions of another server's resources are unknown.
    for uri in ["test://static-text", "test://template/7/data"] {
        let refused = ev_only.peer().read_resource(rmcp::model::ReadResourceRequestParams::new(uri)).await;
        assert!(refused.is_err(), "{uri}: {refused:?}");
        let read = admin.peer().read_resource(rmcp::model::ReadResourceRequestParams::new(uri)).await.unwrap();
        assert!(!read.contents.is_empty(), "{uri}");
    }
    #[allow(deprecated)]
    let refused = ev_only.peer().subscribe(SubscribeRequestParams::new("test://watched-resource")).await;
    assert!(refused.is_err(), "{refused:?}");

    let names = |list: Vec<rmcp::model::Prompt>| list.into_iter().map(|p| p.name).collect::<Vec<_>>();
    let prompts = names(ev_only.peer().list_all_prompts().await.unwrap());
    assert!(!prompts.is_empty() && prompts.iter().all(|p| p.starts_with("ev__")), "{prompts:?}");
    let mut get = rmcp::model::GetPromptRequestParams::new("test_simple_prompt");
    assert!(ev_only.peer().get_prompt(get.clone()).await.is_err());
    get.arguments = None;
    assert!(admin.peer().get_prompt(get).await.is_ok());

    let complete = CompleteRequestParams::new(
        Reference::for_prompt("test_prompt_with_arguments"),
        rmcp::model::ArgumentInfo::new("arg1", "pa"),
    );
    assert!(ev_only.peer().complete(complete.clone()).await.is_err());
    let completed = admin.peer().complete(complete).await.unwrap();
    assert!(completed.completion.values.iter().all(|v| v.starts_with("pa")), "{completed:?}");

    // REST answers the same.
    let rest: Value = reqwest::Client::new()
        .get(app.url("/mcp/resources"))
        .bearer_auth("sk-ev")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rest_uris: Vec<&str> = rest["resources"].as_array().unwrap().iter().filter_map(|r| r["uri"].as_str()).collect();
    assert_eq!(rest_uris.len(), mine.len(), "{rest}");
    let templates_of = |key: &'static str| {
        let request = reqwest::Client::new().get(app.url("/mcp/resources/templates")).bearer_auth(key).send();
        async move { request.await.unwrap().json::<Value>().await.unwrap().to_string() }
    };
    assert!(templates_of("sk-admin").await.contains("test://template/{id}/data"));
    assert!(!templates_of("sk-ev").await.contains("test://"));
    let refused = reqwest::Client::new()
        .get(app.url("/mcp/resources/read?uri=test://static-text"))
        .bearer_auth("sk-ev")
        .send()
        .await;
    assert_eq!(refused.unwrap().status(), 404);
}

#[tokio::test]
async fn a_resource_update_reaches_only_the_session_that_subscribed() {
    let app = gateway("").await;
    let (watching, heard) = (Recording::default(), Recording::default());
    let watcher = connect(&app, None, watching.clone()).await;
    let other = connect(&app, None, heard.clone()).await;
    #[allow(deprecated)]
    watcher.peer().subscribe(SubscribeRequestParams::new("test://watched-resource")).await.unwrap();

    let touch = || {
        let mut params = CallToolRequestParams::new("touch_resource");
        params.arguments = json!({"uri": "test://watched-resource"}).as_object().cloned();
        params
    };
    other.peer().call_tool(touch()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while watching.0.lock().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(*watching.0.lock(), vec!["test://watched-resource".to_owned()]);
    assert!(heard.0.lock().is_empty(), "a session that did not subscribe hears nothing");

    #[allow(deprecated)]
    watcher.peer().unsubscribe(UnsubscribeRequestParams::new("test://watched-resource")).await.unwrap();
    other.peer().call_tool(touch()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(watching.0.lock().len(), 1, "no update after unsubscribing");
}

#[tokio::test]
async fn a_clients_cancellation_cancels_the_servers_call() {
    let events = crate::common::peers::TempDir::new("mcpmw-facade-cancel");
    let log = events.0.join("events.log");
    let yaml = format!(
        "mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n    env: {{MCP_TEST_EVENTS: \"{}\"}}\n",
        log.display()
    );
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__slow")).await;
    let client = connect(&app, None, Recording::default()).await;
    let mut params = CallToolRequestParams::new("ts__slow");
    params.arguments = json!({"ms": 20_000, "steps": 40}).as_object().cloned();
    let handle = client
        .peer()
        .send_cancellable_request(
            ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(params)),
            Default::default(),
        )
        .await
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !read().contains("started slow") && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.cancel(Some("the user pressed stop".into())).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !read().contains("cancelled slow") && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(read().contains("cancelled slow") && !read().contains("completed slow"), "{}", read());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_cli_and_the_python_sdk_read_resources_and_get_prompts() {
    let app = gateway("").await;
    let url = app.url("/mcp");
    let cli = inspector_cli();
    let inspect = |args: &[&str]| {
        let (url, args) = (url.clone(), args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>());
        tokio::task::spawn_blocking(move || {
            let output = std::process::Command::new("node").arg(cli).arg(&url).args(&args).output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(output.status.success(), "{args:?}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
            serde_json::from_str::<Value>(&stdout).expect("the Inspector prints JSON")
        })
    };
    let listed = inspect(&["--method", "resources/list"]).await.unwrap();
    let uris: Vec<&str> = listed["resources"].as_array().unwrap().iter().filter_map(|r| r["uri"].as_str()).collect();
    assert!(uris.contains(&"test://static-text"), "{listed}");
    let read = inspect(&["--method", "resources/read", "--uri", "test://static-binary"]).await.unwrap();
    assert_eq!(read["contents"][0]["mimeType"], "image/png", "{read}");
    assert!(read["contents"][0]["blob"].as_str().is_some_and(|b| !b.is_empty()), "binary passes through: {read}");
    let prompt = inspect(&[
        "--method",
        "prompts/get",
        "--prompt-name",
        "test_prompt_with_arguments",
        "--prompt-args",
        "arg1=inspected",
        "arg2=again",
    ])
    .await
    .unwrap();
    assert!(prompt["messages"].to_string().contains("arg1='inspected'"), "{prompt}");

    let python = python();
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/mcp_python_client.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .args([&url, "-", "test://template/42/data", "test_prompt_with_image", "{}"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("termination failed"), "the session ends cleanly: {stderr}");
    let seen: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert!(seen["resources"].as_array().unwrap().iter().any(|u| u == "test://static-text"), "{seen}");
    assert!(seen["read"][0]["text"].as_str().unwrap_or_default().contains("Data for ID: 42"), "{seen}");
    let image = &seen["prompt"][0]["content"];
    assert_eq!(image["type"], "image", "{seen}");
    assert_eq!(image["mime_type"], "image/png", "{seen}");
}

/// A client that answers what servers ask: a form, a sampling request, its roots.
#[derive(Clone, Default)]
struct Answering;

impl ClientHandler for Answering {
    async fn create_elicitation(
        &self,
        _request: rmcp::model::ElicitRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        let mut result = rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Accept);
        result.content = Some(json!({"name": "Ada", "age": 36}));
        Ok(result)
    }

    #[allow(deprecated)]
    async fn create_message(
        &self,
        _params: rmcp::model::CreateMessageRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::CreateMessageResult, rmcp::ErrorData> {
        let message = rmcp::model::SamplingMessage::assistant_text("hi from the client's model");
        Ok(rmcp::model::CreateMessageResult::new(message, "client-model".into()))
    }

    #[allow(deprecated)]
    async fn list_roots(
        &self,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ListRootsResult, rmcp::ErrorData> {
        Ok(rmcp::model::ListRootsResult::new(vec![rmcp::model::Root::new("file:///work/project")]))
    }

    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        capabilities.elicitation = Some(rmcp::model::ElicitationCapability::new().with_form(Default::default()));
        capabilities.sampling = Some(Default::default());
        capabilities.roots = Some(Default::default());
        ClientConfig::new(capabilities, Implementation::new("answering-client", "0"))
    }
}

fn ask(kind: &str) -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new("ts__ask");
    params.arguments = json!({"kind": kind}).as_object().cloned();
    params
}

/// A 2026-07-28 server's `input_required`: a handshake-era client is asked by the gateway (form,
/// sampling, roots, two rounds) and the call retried; a 2026-07-28 client gets the result as it is
/// and retries itself.
#[tokio::test]
async fn a_new_era_servers_questions_reach_clients_of_both_eras() {
    let app = TestApp::spawn(&format!("mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n")).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__ask")).await;
    let servers = app.servers().await;
    assert_eq!(servers["ts"]["protocol_version"], "2026-07-28", "the hub speaks the new era to it");

    let transport = |app: &TestApp| StreamableHttpClientTransport::from_uri(app.url("/mcp"));
    let legacy = Answering.serve(transport(&app)).await.unwrap();
    for (kind, expect) in [
        ("form", "Ada"),
        ("sampling", "hi from the client's model"),
        ("roots", "file:///work/project"),
        ("rounds", "Ada"),
    ] {
        let result = legacy.peer().call_tool(ask(kind)).await.unwrap();
        let text = serde_json::to_string(&result).unwrap();
        assert!(result.is_error != Some(true) && text.contains(expect), "{kind}: {text}");
    }
    // A client that cannot answer gets a clear tool error.
    let mute = Recording::default().serve(transport(&app)).await.unwrap();
    let refused = mute.peer().call_tool(ask("form")).await.unwrap();
    assert_eq!(refused.is_error, Some(true), "{refused:?}");
    assert!(serde_json::to_string(&refused).unwrap().contains("cannot give"), "{refused:?}");

    let mode = rmcp::service::ClientLifecycleMode::Auto {
        preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
        legacy_version: Some(rmcp::model::ProtocolVersion::V_2025_11_25),
    };
    let new_era =
        rmcp::service::ClientServiceExt::serve_with_lifecycle(Answering, transport(&app), mode).await.unwrap();
    match new_era.peer().call_tool_once(ask("form")).await.unwrap() {
        rmcp::model::CallToolResponse::InputRequired(asked) => {
            let requests = serde_json::to_value(&asked.input_requests).unwrap();
            assert!(requests.to_string().contains("Who is asking?"), "{requests}");
            assert!(asked.request_state.is_some(), "{asked:?}");
        }
        other => panic!("expected input_required, got {other:?}"),
    }
    // rmcp's client answers and retries on its own; the answers reach the server.
    let result = new_era.call_tool(ask("rounds")).await.unwrap();
    assert!(serde_json::to_string(&result).unwrap().contains("colour"), "{result:?}");
}

/// A client that accepts every question and keeps what it was asked.
#[derive(Clone, Default)]
struct Asked(Arc<Mutex<Vec<String>>>);

impl ClientHandler for Asked {
    async fn create_elicitation(
        &self,
        request: rmcp::model::ElicitRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        self.0.lock().push(serde_json::to_string(&request).unwrap());
        let mut result = rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Accept);
        result.content = Some(json!({"username": "u", "email": "u@example.com"}));
        Ok(result)
    }

    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        capabilities.elicitation = Some(rmcp::model::ElicitationCapability::new().with_form(Default::default()));
        ClientConfig::new(capabilities, Implementation::new("asked-client", "0"))
    }
}

/// What a server puts to a client is scrubbed like tool results: a question carrying a
/// configured secret reaches the client masked, and so does the tool's answer quoting it.
#[tokio::test]
async fn secrets_in_what_servers_relay_are_masked() {
    // The gateway's own key: a configured secret like any other.
    const SECRET: &str = "sk-admin";
    let app = gateway("auth:\n  api_keys: [sk-admin]\n").await;
    let asked = Asked::default();
    let mut config = StreamableHttpClientTransportConfig::with_uri(app.url("/mcp"));
    config.auth_header = Some(SECRET.to_owned());
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
    let client = asked.clone().serve(transport).await.unwrap();
    let mut params = CallToolRequestParams::new("test_elicitation");
    params.arguments = json!({"message": format!("Paste {SECRET} here")}).as_object().cloned();
    let result = client.peer().call_tool(params).await.unwrap();
    let questions = asked.0.lock().clone();
    assert_eq!(questions.len(), 1, "{questions:?}");
    assert!(!questions[0].contains(SECRET) && questions[0].contains("***"), "{questions:?}");
    assert!(!serde_json::to_string(&result).unwrap().contains(SECRET), "{result:?}");
}
