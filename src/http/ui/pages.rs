//! The operator's pages: Servers (with restart, reload and the gateway's sign-in to shared
//! OAuth servers for unrestricted keys), Tools (a
//! searchable catalog, each tool's schema, and "Try it": a form made from the schema that calls
//! the tool through the same permission check as the REST API), and Activity (recent tool
//! calls and chat requests with their rounds, from the audit trail: everyone's for
//! unrestricted keys, a restricted key's own).

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use super::view::{self, button, csrf, notice, page};
use super::{Console, field};
use crate::agent::{RequestControls, ToolAccess};
use crate::console::audit::Scope;
use crate::console::form::{self, Kind};
use crate::http::AppState;

/// The console caller's tool access: its key's policy (no header narrows it here).
pub(super) fn access(console: &Console) -> ToolAccess {
    let controls = RequestControls::take(&[], &mut Default::default()).unwrap_or_default();
    ToolAccess::new(console.caller.policy.as_ref().map(|k| &*k.0), None, &controls)
}

/// One decoded query parameter.
pub(super) fn query(raw: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(raw?.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A query string value, encoded.
pub(super) fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The request's console session, or return the answer to give instead: `console!(state,
/// headers)` for a page, `console!(state, headers, form)` for a form (which never starts one).
macro_rules! console {
    ($state:expr, $headers:expr) => {
        match Console::of(&$state, &$headers, true).await {
            Ok(console) => console,
            Err(answer) => return answer,
        }
    };
    ($state:expr, $headers:expr, form) => {
        match Console::of(&$state, &$headers, false).await {
            Ok(console) => console,
            Err(answer) => return answer,
        }
    };
}
pub(super) use console;

/// A form's console session and its fields, the session's token checked, or return the answer
/// to give instead (`let (console, fields) = posted!(state, headers, body);`).
macro_rules! posted {
    ($state:expr, $headers:expr, $body:expr) => {{
        let console = console!($state, $headers, form);
        match console.form(&$state, &$headers, $body).await {
            Ok(fields) => (console, fields),
            Err(answer) => return answer,
        }
    }};
}
pub(super) use posted;

/// `GET /ui/servers`.
pub async fn servers(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let console = console!(state, headers);
    servers_page(&state, &console, None, false)
}

fn servers_page(state: &AppState, console: &Console, done: Option<&str>, failed: bool) -> Response {
    let access = access(console);
    let catalog = state.hub.catalog();
    let mut servers = state.hub.servers();
    if !access.is_unrestricted() {
        servers.retain(|s| access.visible(&catalog).any(|e| e.server == s.name));
    }
    let operator = console.unrestricted();
    let body = html! {
        (notice(done, failed))
        @if operator && state.reload.armed() {
            (button(console, "/ui/reload", &[], "secondary", "Reload the config file"))
        }
        table #servers {
            thead { tr {
                th { "Server" } th { "State" } th { "Transport" } th { "Protocol" } th { "Tools" }
                th { "Restarts" } th { "Auth" } th { "Last error" }
                @if operator { th {} }
            } }
            tbody {
                @for server in &servers {
                    @let state_name = serde_json::to_value(server.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
                    tr data-server=(server.name) {
                        td { strong { (server.name) } }
                        td { span class=(format!("state-{state_name}")) { (state_name) } }
                        td { (server.transport) }
                        td { (server.protocol_version.as_deref().unwrap_or("–")) }
                        td { (server.tools) }
                        td { (server.restarts) }
                        td {
                            (server.auth.unwrap_or("–"))
                            // The gateway's own account on a shared OAuth server.
                            @if operator && matches!(server.auth, Some("needs_login" | "expired")) {
                                " "
                                (button(console, "/ui/servers/sign-in", &[("server", &server.name)], "link", "Sign in"))
                            }
                        }
                        td.muted { (server.last_error.as_deref().map(|e| state.redactor.scrub(e).into_owned()).unwrap_or_default()) }
                        @if operator {
                            td { (button(console, "/ui/servers/restart", &[("server", &server.name)], "secondary", "Restart")) }
                        }
                    }
                }
            }
        }
        @if servers.is_empty() { p.muted { "No MCP server is configured for this key." } }
    };
    view::respond(StatusCode::OK, page(console, "/ui/servers", "Servers", body), console.cookie.clone())
}

/// `POST /ui/servers/restart` with `server` (unrestricted keys).
pub async fn restart(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (console, fields) = posted!(state, headers, body);
    if !console.unrestricted() {
        return forbidden(&console, "Restarting servers needs an unrestricted key.");
    }
    let name = field(&fields, "server").unwrap_or_default();
    if state.hub.restart(name) {
        tracing::info!(server = %name, "restarted from the console");
        servers_page(&state, &console, Some(&format!("Restarting {name}.")), false)
    } else {
        servers_page(&state, &console, Some("There is no such server."), true)
    }
}

/// `POST /ui/servers/sign-in` with `server` (unrestricted keys): starts the gateway's own
/// sign-in to a shared OAuth server, as `POST /oauth/start/<server>` does, and links to the
/// authorization server (forms post only to the gateway); its callback connects the server.
pub async fn sign_in(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (console, fields) = posted!(state, headers, body);
    if !console.unrestricted() {
        return forbidden(&console, "Signing the gateway in to a server needs an unrestricted key.");
    }
    let name = field(&fields, "server").unwrap_or_default();
    let config =
        state.config.mcp_servers.iter().find(|s| s.name == name && s.oauth_target().is_some() && !s.per_user());
    let Some(config) = config else {
        return servers_page(&state, &console, Some("There is no such OAuth server shared by the gateway."), true);
    };
    let redirect_uri = format!("{}/oauth/callback", crate::http::auth::public_url(&state.config.http, &headers));
    match crate::mcp::oauth::start_web(config, &state.secrets, &redirect_uri, None).await {
        Ok(url) => {
            let body = html! {
                p { "Sign the gateway in to " strong { (config.name) } ". The authorization server's last page sends you back; the server connects then." }
                p { a #sign-in href=(url) rel="noreferrer" { "Continue to the sign-in" } }
                p { a href="/ui/servers" { "Back to the servers" } }
            };
            view::respond(StatusCode::OK, page(&console, "/ui/servers", "Sign the gateway in", body), None)
        }
        Err(e) => {
            tracing::warn!(server = %config.name, error = %e, "starting the gateway's sign-in from the console failed");
            servers_page(
                &state,
                &console,
                Some(&format!("{} could not start a sign-in; try again later.", config.name)),
                true,
            )
        }
    }
}

/// `POST /ui/reload` (unrestricted keys): reads the config file again now, as SIGHUP does.
pub async fn reload(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (console, _) = posted!(state, headers, body);
    if !console.unrestricted() {
        return forbidden(&console, "Reloading the config needs an unrestricted key.");
    }
    if !state.reload.ask() {
        return servers_page(
            &state,
            &console,
            Some("This gateway was started without a config file to read again."),
            true,
        );
    }
    tracing::info!("config reload asked from the console");
    servers_page(&state, &console, Some("Reloading the config file; the log says what changed or why not."), false)
}

/// A page saying the session may not do that (403).
pub(super) fn forbidden(console: &Console, why: &str) -> Response {
    let body = html! { p.error { (why) } };
    view::respond(StatusCode::FORBIDDEN, page(console, "", "Not allowed", body), None)
}

/// `GET /ui/tools?q=…`: the tools this key may use, those matching every word of `q` in their
/// name, server or description.
pub async fn tools(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let console = console!(state, headers);
    let q = query(raw.as_deref(), "q").unwrap_or_default();
    let words: Vec<String> = q.split_whitespace().take(16).map(str::to_lowercase).collect();
    let access = access(&console);
    let catalog = state.hub.catalog();
    let tools: Vec<_> = access
        .visible(&catalog)
        .filter(|e| {
            let text =
                format!("{} {} {}", e.name, e.server, e.description.as_deref().unwrap_or_default()).to_lowercase();
            words.iter().all(|w| text.contains(w.as_str()))
        })
        .collect();
    let body = html! {
        form.search method="get" action="/ui/tools" role="search" {
            input #q type="search" name="q" value=(q) placeholder="Search tools by name or description";
            button type="submit" { "Search" }
        }
        p.muted { (tools.len()) " tools" }
        table #tools {
            thead { tr { th { "Tool" } th { "Server" } th { "Description" } } }
            tbody {
                @for tool in &tools {
                    tr {
                        td { a href=(format!("/ui/tool?name={}", encode(&tool.name))) { code { (tool.name) } } }
                        td { (tool.server) }
                        td { (tool.description.as_deref().map(|d| d.chars().take(240).collect::<String>()).unwrap_or_default()) }
                    }
                }
            }
        }
    };
    view::respond(StatusCode::OK, page(&console, "/ui/tools", "Tools", body), console.cookie.clone())
}

/// `GET /ui/tool?name=…`: a tool's description, schema and "Try it" form.
pub async fn tool(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let console = console!(state, headers);
    let name = query(raw.as_deref(), "name").unwrap_or_default();
    tool_page(&state, &console, &name, &[], None)
}

/// `POST /ui/tool?name=…`: runs the tool with the form's arguments, and shows the result under
/// the form.
pub async fn run_tool(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Response {
    let (console, fields) = posted!(state, headers, body);
    let name = query(raw.as_deref(), "name").unwrap_or_default();
    let catalog = state.hub.catalog();
    let access = access(&console);
    let entry = catalog.get(&name);
    let schema = entry.map(|e| Value::Object((*e.input_schema).clone())).unwrap_or_default();
    let outcome = match form::arguments(&schema, &fields) {
        Ok(arguments) => {
            crate::http::mcp::run_tool(&state, &console.caller, &access, &catalog, entry, name.clone(), arguments)
                .await
                .map_err(|e| e.to_string())
        }
        Err(problem) => Err(problem),
    };
    tool_page(&state, &console, &name, &fields, Some(outcome))
}

fn tool_page(
    state: &AppState,
    console: &Console,
    name: &str,
    submitted: &[(String, String)],
    outcome: Option<Result<Value, String>>,
) -> Response {
    let catalog = state.hub.catalog();
    let access = access(console);
    // Not allowed looks exactly like not there.
    let Some(entry) = catalog.get(name).filter(|e| access.authorize(e).is_some()) else {
        let body = html! { p.error { "There is no tool " code { (name) } " for this key." } };
        return view::respond(StatusCode::NOT_FOUND, page(console, "/ui/tools", "Unknown tool", body), None);
    };
    let schema = Value::Object((*entry.input_schema).clone());
    let fields = form::fields(&schema);
    let value = |field: &str| submitted.iter().find(|(k, _)| k == field).map(|(_, v)| v.clone()).unwrap_or_default();
    let body = html! {
        p.muted { "Server " strong { (entry.server) } " · its own name " code { (entry.original_name) } }
        @if let Some(description) = &entry.description { p { (description) } }
        h2 { "Try it" }
        form #try method="post" action=(format!("/ui/tool?name={}", encode(name))) {
            (csrf(console))
            @for f in &fields {
                @let id = format!("{}{}", form::PREFIX, f.name);
                label for=(id) {
                    (f.name) @if f.required { " *" }
                    @if let Some(d) = &f.description { " " span.muted { (d.chars().take(200).collect::<String>()) } }
                }
                @match &f.kind {
                    Kind::Text => input type="text" id=(id) name=(id) value=(value(&id));
                    Kind::Number | Kind::Integer => input type="number" step=(if f.kind == Kind::Integer { "1" } else { "any" }) id=(id) name=(id) value=(value(&id));
                    Kind::Boolean => select id=(id) name=(id) {
                        option value="" { "–" }
                        option value="true" selected[value(&id) == "true"] { "true" }
                        option value="false" selected[value(&id) == "false"] { "false" }
                    },
                    Kind::Choice(values) => select id=(id) name=(id) {
                        option value="" { "–" }
                        @for v in values { option value=(v) selected[value(&id) == *v] { (v) } }
                    },
                    Kind::Json => textarea id=(id) name=(id) placeholder="JSON" { (value(&id)) },
                }
            }
            label for="json" { "Arguments as JSON " span.muted { "(when filled, used instead of the fields)" } }
            textarea #json name=(form::JSON_FIELD) placeholder="{}" { (value(form::JSON_FIELD)) }
            button type="submit" { "Run" }
        }
        @if let Some(outcome) = &outcome { (result(outcome)) }
        h2 { "Input schema" }
        pre { (serde_json::to_string_pretty(&schema).unwrap_or_default()) }
    };
    view::respond(StatusCode::OK, page(console, "/ui/tools", &entry.name, body), console.cookie.clone())
}

/// Image types shown inline (never SVG: it can carry script when opened on its own).
const INLINE_IMAGES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];
/// Largest inline image, base64 characters.
const MAX_INLINE_IMAGE: usize = 4 * 1024 * 1024;

/// A call's result: each content block (text, inline images, resources), the artifacts made of
/// it, or why it failed.
fn result(outcome: &Result<Value, String>) -> Markup {
    html! {
        section #result {
            h2 { "Result" }
            @match outcome {
                Err(problem) => p.error { (problem) },
                Ok(value) => {
                    @let failed = value.get("isError").and_then(Value::as_bool).unwrap_or(false);
                    p class=(if failed { "bad" } else { "ok" }) { (if failed { "The tool reported an error" } else { "Done" }) }
                    @for block in value.get("content").and_then(Value::as_array).into_iter().flatten() {
                        (content(block))
                    }
                    @if let Some(structured) = value.get("structuredContent") {
                        h2 { "Structured content" }
                        pre { (serde_json::to_string_pretty(structured).unwrap_or_default()) }
                    }
                    @let artifacts = value.get("artifacts").and_then(Value::as_array).cloned().unwrap_or_default();
                    @if !artifacts.is_empty() {
                        h2 { "Artifacts" }
                        ul {
                            @for a in &artifacts {
                                @let url = a.get("url").and_then(Value::as_str).unwrap_or_default();
                                li {
                                    @if url.starts_with("http://") || url.starts_with("https://") || (url.starts_with('/') && !url.starts_with("//")) {
                                        a href=(url) rel="noopener noreferrer" target="_blank" { (a.get("key").and_then(Value::as_str).unwrap_or("artifact")) }
                                    }
                                    " " span.muted { (a.get("mime_type").and_then(Value::as_str).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn content(block: &Value) -> Markup {
    let kind = block.get("type").and_then(Value::as_str).unwrap_or_default();
    let text = |key: &str| block.get(key).and_then(Value::as_str).unwrap_or_default();
    html! {
        @match kind {
            "text" => pre.text { (text("text")) },
            "image" if INLINE_IMAGES.contains(&text("mimeType")) && text("data").len() <= MAX_INLINE_IMAGE => {
                img.result alt="the tool's image" src=(format!("data:{};base64,{}", text("mimeType"), text("data")));
            },
            "resource" => {
                @let resource = block.get("resource").cloned().unwrap_or_default();
                p.muted { "Resource " code { (resource.get("uri").and_then(Value::as_str).unwrap_or_default()) } }
                @if let Some(t) = resource.get("text").and_then(Value::as_str) { pre { (t) } }
            },
            "resource_link" => p.muted { "Resource link " code { (text("uri")) } },
            _ => p.muted { "A " (kind) " block (" (text("mimeType")) ")" },
        }
    }
}

/// `GET /ui/activity?tool=…&outcome=…&user=…`: recent tool calls, newest first.
pub async fn activity(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let console = console!(state, headers);
    let (tool, outcome, user) =
        (query(raw.as_deref(), "tool"), query(raw.as_deref(), "outcome"), query(raw.as_deref(), "user"));
    // Each reads its own space: an operator everyone's, a restricted key its own, a person theirs.
    let identity = &console.caller.identity;
    let own = identity.files.as_deref().and_then(|f| f.split('/').next()).filter(|k| k.starts_with("k-"));
    let scope = match (console.operator(), own, identity.account.as_deref()) {
        (true, _, _) => Scope::All,
        (false, Some(key), _) => Scope::Key(key),
        (false, None, Some(holder)) => Scope::Holder(holder),
        (false, None, None) => Scope::Key("k-none"),
    };
    let records = match crate::console::audit::recent(&state.secrets, scope, crate::console::audit::MAX_LISTED).await {
        Ok(records) => records,
        Err(e) => return super::unavailable(&e),
    };
    let chats = match crate::console::audit::recent_chats(&state.secrets, scope, 50).await {
        Ok(chats) => chats,
        Err(e) => return super::unavailable(&e),
    };
    let matches =
        |wanted: &Option<String>, have: &str| wanted.as_deref().is_none_or(|w| w.is_empty() || have.contains(w));
    let shown: Vec<_> = records
        .iter()
        .filter(|r| matches(&tool, &r.tool))
        .filter(|r| outcome.as_deref().is_none_or(|o| o.is_empty() || o == r.outcome))
        .filter(|r| matches(&user, r.user.as_deref().unwrap_or_default()))
        .take(200)
        .collect();
    let enabled = state.config.console.enabled && !state.config.console.activity_ttl.is_zero();
    let body = html! {
        @if !enabled { p.muted { "The activity trail is off (console.activity_ttl: 0)." } }
        form.search method="get" action="/ui/activity" {
            input type="search" name="tool" value=(tool.clone().unwrap_or_default()) placeholder="Tool";
            input type="search" name="user" value=(user.clone().unwrap_or_default()) placeholder="User";
            select name="outcome" {
                option value="" { "any outcome" }
                @for o in ["ok", "error"] { option value=(o) selected[outcome.as_deref() == Some(o)] { (o) } }
            }
            button type="submit" { "Filter" }
        }
        table #activity {
            thead { tr {
                th { "Time (UTC)" } th { "User" } th { "Key" } th { "Tool" } th { "Outcome" } th { "Took" } th { "Arguments" }
            } }
            tbody {
                @for r in &shown {
                    tr {
                        td { (view::time(r.started_ms)) }
                        td { (r.user.as_deref().unwrap_or("–")) }
                        td.muted { (r.key.as_deref().unwrap_or("unrestricted")) }
                        td { code { (r.tool) } br; span.muted { (r.server) } }
                        td { span class=(if r.outcome == "ok" { "ok" } else { "bad" }) { (r.outcome) }
                             @if let Some(e) = &r.error { br; span.muted { (e) } } }
                        td { (r.duration_ms) " ms" }
                        td { code { (r.arguments) } }
                    }
                }
            }
        }
        @if shown.is_empty() { p.muted { "No tool calls yet." } }
        h2 { "Chat requests" }
        table #chats {
            thead { tr {
                th { "Time (UTC)" } th { "User" } th { "Key" } th { "Model" } th { "Rounds" } th { "Tools run" } th { "Ended" } th { "Took" }
            } }
            tbody {
                @for c in chats.iter().filter(|c| matches(&user, c.user.as_deref().unwrap_or_default())) {
                    tr {
                        td { (view::time(c.started_ms)) }
                        td { (c.user.as_deref().unwrap_or("–")) }
                        td.muted { (c.key.as_deref().unwrap_or("unrestricted")) }
                        td { (c.model) }
                        td { (c.rounds) }
                        td { @for (i, t) in c.tools.iter().enumerate() { @if i > 0 { ", " } code { (t) } } }
                        td { (c.finish) }
                        td { (c.duration_ms) " ms" }
                    }
                }
            }
        }
        @if chats.is_empty() { p.muted { "No chat requests with tools yet." } }
    };
    view::respond(StatusCode::OK, page(&console, "/ui/activity", "Activity", body), console.cookie.clone())
}
