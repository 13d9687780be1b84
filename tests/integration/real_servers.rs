//! The servers people run, for real: `@playwright/mcp` driving Debian's Chromium, and the
//! official `server-postgres` against a real PostgreSQL — what the first hour with them showed.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::peers::{Postgres, TempDir, chromium, playwright_mcp, postgres_mcp};
use crate::common::{TestApp, first_text};

/// `browser_take_screenshot` marks `scale` required although the server has a default: the
/// gateway forwards `{}` and the server takes the screenshot, which becomes an artifact link.
#[tokio::test]
async fn the_natural_screenshot_call_works() {
    let (cli, browser) = (playwright_mcp(), chromium());
    let out = TempDir::new("mcpmw-pw");
    let yaml = format!(
        "mcpServers:\n  pw:\n    command: node\n    args: [\"{cli}\", --headless, --no-sandbox, --isolated, \
         --executable-path, {browser}, --output-dir, \"{}\"]\n    startup_timeout: 60s\n",
        out.0.display()
    );
    let app = TestApp::spawn(&yaml).await;
    let tools = app.wait_for_tools(|n| n.iter().any(|t| t == "pw__browser_take_screenshot")).await;
    let shot = tools.iter().find(|t| t["name"] == "pw__browser_take_screenshot").unwrap();
    assert!(shot["inputSchema"]["required"].as_array().unwrap().contains(&json!("scale")), "{shot}");

    let page = app.url("/health/liveliness");
    let (status, opened) = app.call_tool("pw__browser_navigate", json!({"url": page})).await;
    assert_eq!((status, opened["isError"].as_bool()), (200, Some(false)), "{opened}");
    let (status, taken) = app.call_tool("pw__browser_take_screenshot", json!({})).await;
    assert_eq!((status, taken["isError"].as_bool()), (200, Some(false)), "{taken}");
    let image = taken["artifacts"].as_array().unwrap().iter().find(|a| a["mime_type"] == "image/png");
    let link = image.expect("the screenshot became an artifact")["url"].as_str().unwrap();
    let png = reqwest::get(link).await.unwrap().bytes().await.unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG behind the link");
}

/// The official Postgres server against a real database answers queries; started without its
/// database URL it dies, and `/mcp/servers` says why in its own words.
#[tokio::test]
async fn server_postgres_queries_and_says_why_it_cannot_start() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let server = postgres_mcp();
    // server-postgres parses its argument with `new URL`, which wants a host: the socket
    // directory goes in `?host=` and overrides it.
    let url = pg.url.replace("postgres:@/", "postgres@localhost/");
    let yaml = format!(
        "mcpServers:\n  db:\n    command: node\n    args: [\"{server}\", \"{}\"]\n  nodb:\n    command: node\n    args: [\"{server}\"]\n",
        url
    );
    let app = TestApp::spawn(&yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "db__query")).await;
    let (status, answer) = app.call_tool("db__query", json!({"sql": "select 40 + 2 as answer"})).await;
    assert_eq!((status, answer["isError"].as_bool()), (200, Some(false)), "{answer}");
    assert!(first_text(&answer).contains("\"answer\": 42"), "{answer}");
    // A read-only server refuses a write with a JSON-RPC error (its tool threw): the tool's own
    // error, in the server's words.
    let (status, refused) = app.call_tool("db__query", json!({"sql": "create table t (x int)"})).await;
    assert_eq!((status, refused["isError"].as_bool()), (200, Some(true)), "{refused}");
    assert_eq!(first_text(&refused), "cannot execute CREATE TABLE in a read-only transaction");

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let nodb = app.servers().await.remove("nodb").unwrap();
        if let Some(error) = nodb["last_error"].as_str()
            && error.contains("Please provide a database URL as a command-line argument")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the reason never reached last_error: {nodb}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The official Postgres server exposes its table schemas only as resources: the built-in
/// `list_resources` and `read_resource` tools bring them to the model in chat, under the same
/// access (a key without the database's tools finds none).
#[tokio::test]
async fn a_chat_model_reads_server_postgres_table_schemas_through_the_resource_tools() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    // sqlx wants a host in the authority (`?host=` names the socket directory and wins).
    let pool =
        sqlx::PgPool::connect(&pg.url.replace(":@/", ":@localhost/")).await.expect("connect to the embedded postgres");
    sqlx::query("create table orders (id integer primary key, customer text not null, total numeric)")
        .execute(&pool)
        .await
        .unwrap();
    let url = pg.url.replace("postgres:@/", "postgres@localhost/");
    let schema_uri = "postgres://postgres@localhost/orders/schema";
    let llm = crate::common::FakeLlm::new()
        .tool_call("builtin__list_resources", json!({}))
        .tool_call("builtin__read_resource", json!({"uri": schema_uri}))
        .text("orders has id, customer and total.")
        .start()
        .await;
    let server = postgres_mcp();
    let yaml = format!(
        "builtin_tools:\n  enabled: true\nauth:\n  api_keys: [sk-admin]\n  keys:\n    - key: sk-files\n      tools: [\"builtin__*\"]\nmcpServers:\n  db:\n    command: node\n    args: [\"{server}\", \"{url}\"]\n"
    );
    let mut app = TestApp::in_front_of(&llm, &yaml).await;
    app.key = Some("sk-admin".into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "db__query") && n.iter().any(|t| t == "builtin__read_resource")).await;

    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "What columns does orders have?"}]});
    let resp = app.post("/v1/chat/completions", &chat).await;
    assert_eq!(resp.status(), 200);
    let requests = llm.chat_requests();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    let tool_text = |i: usize| {
        let messages = requests[i]["messages"].as_array().unwrap();
        messages.last().unwrap()["content"].as_str().unwrap_or_default().to_owned()
    };
    assert!(tool_text(1).contains(schema_uri), "the listing names the table's schema: {}", tool_text(1));
    let schema = tool_text(2);
    for column in ["\"id\"", "\"customer\"", "\"total\"", "numeric"] {
        assert!(schema.contains(column), "{column} in {schema}");
    }

    // A key that has only the built-in tools (not the database's) finds no resources.
    let call = |name: &str, arguments: serde_json::Value| {
        app.client
            .post(app.url("/mcp/tools/call"))
            .bearer_auth("sk-files")
            .json(&json!({"name": name, "arguments": arguments}))
            .send()
    };
    let listed: serde_json::Value = call("builtin__list_resources", json!({})).await.unwrap().json().await.unwrap();
    assert_eq!(first_text(&listed), "no resources", "{listed}");
    let read: serde_json::Value =
        call("builtin__read_resource", json!({"uri": schema_uri})).await.unwrap().json().await.unwrap();
    assert_eq!(read["isError"], true, "{read}");
}
