//! The user's pages: My connections (their own accounts on per-user OAuth servers: connect,
//! confirm, disconnect), Pending (approvals and questions waiting for them: answered here, the
//! chat goes on with that answer when they next reply), and Artifacts (listed with expiring
//! links served by the usual safe rules; deleted by unrestricted keys only).

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::pages::{access, console, encode, forbidden, posted, query};
use super::view::{self, button, csrf, notice, page};
use super::{Console, field};
use crate::agent::park::Wait;
use crate::http::AppState;
use crate::http::auth::public_url;

/// Most artifacts listed.
const MAX_ARTIFACTS: usize = 500;

/// The per-user OAuth servers this session may use a tool of.
fn my_servers<'a>(state: &'a AppState, console: &Console) -> Vec<&'a crate::config::McpServerConfig> {
    let access = access(console);
    let catalog = state.hub.catalog();
    state
        .config
        .mcp_servers
        .iter()
        .filter(|s| s.per_user() && s.oauth_target().is_some())
        .filter(|s| access.visible(&catalog).any(|e| e.server == s.name))
        .collect()
}

/// `GET /ui/connections[?server=…&code=…]` (the sign-in's callback page links here with its
/// code, filled in the confirm form).
pub async fn connections(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let console = console!(state, headers);
    let prefill = (query(raw.as_deref(), "server"), query(raw.as_deref(), "code"));
    connections_page(&state, &console, None, false, prefill).await
}

async fn connections_page(
    state: &AppState,
    console: &Console,
    done: Option<&str>,
    failed: bool,
    prefill: (Option<String>, Option<String>),
) -> Response {
    let account = console.caller.identity.account.clone().unwrap_or_default();
    let mut rows = Vec::new();
    for server in my_servers(state, console) {
        let connected = crate::mcp::oauth::has_credentials(&state.secrets, &server.name, &account).await;
        rows.push((server.name.clone(), connected));
    }
    let body = html! {
        (notice(done, failed))
        p.muted { "Servers that act with your own account. Connecting opens the service's sign-in; its last page shows a code to confirm here (or in the chat)." }
        table #connections {
            thead { tr { th { "Server" } th { "Your account" } th {} } }
            tbody {
                @for (name, connected) in &rows {
                    tr data-server=(name) {
                        td { strong { (name) } }
                        td { @if *connected { span.ok { "connected" } } @else { span.muted { "not connected" } } }
                        td {
                            @if *connected {
                                (button(console, "/ui/connections/disconnect", &[("server", name)], "danger", "Disconnect"))
                            } @else {
                                (button(console, "/ui/connections/connect", &[("server", name)], "", "Connect"))
                            }
                        }
                    }
                }
            }
        }
        @if rows.is_empty() { p.muted { "No server here needs your own account." } }
        @if !rows.is_empty() {
            h2 { "Confirm a sign-in" }
            form #confirm method="post" action="/ui/connections/confirm" {
                (csrf(console))
                label for="confirm-server" { "Server" }
                select #confirm-server name="server" {
                    @for (name, _) in &rows { option value=(name) selected[prefill.0.as_deref() == Some(name.as_str())] { (name) } }
                }
                label for="code" { "Code from the sign-in page" }
                input #code type="text" name="code" value=(prefill.1.clone().unwrap_or_default()) autocomplete="off";
                button type="submit" { "Confirm" }
            }
        }
    };
    view::respond(StatusCode::OK, page(console, "/ui/connections", "My connections", body), console.cookie.clone())
}

/// The form's `server`, when it is one of this session's per-user servers.
fn chosen<'a>(
    state: &'a AppState,
    console: &Console,
    fields: &[(String, String)],
) -> Option<&'a crate::config::McpServerConfig> {
    let name = field(fields, "server")?;
    my_servers(state, console).into_iter().find(|s| s.name == name)
}

/// `POST /ui/connections/connect` with `server`: starts the user's sign-in and links to the
/// authorization server (a link, not a redirect: forms post only to the gateway).
pub async fn connect(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (console, fields) = posted!(state, headers, body);
    let (Some(server), Some(account)) = (chosen(&state, &console, &fields), console.caller.identity.account.as_deref())
    else {
        return connections_page(&state, &console, Some("There is no such server for you."), true, (None, None)).await;
    };
    let redirect_uri = format!("{}/oauth/callback", public_url(&state.config.http, &headers));
    match crate::mcp::oauth::start_web(server, &state.secrets, &redirect_uri, Some(account)).await {
        Ok(url) => {
            let body = html! {
                p { "Sign in to " strong { (server.name) } " with your own account. The last page shows a code: bring it back to "
                    a href=(format!("/ui/connections?server={}", encode(&server.name))) { "My connections" } "." }
                p { a #sign-in href=(url) rel="noreferrer" { "Continue to the sign-in" } }
            };
            view::respond(StatusCode::OK, page(&console, "/ui/connections", "Connect your account", body), None)
        }
        Err(e) => {
            tracing::warn!(server = %server.name, error = %e, "starting a user's sign-in from the console failed");
            let text = format!("{} could not start a sign-in; try again later.", server.name);
            connections_page(&state, &console, Some(&text), true, (None, None)).await
        }
    }
}

/// `POST /ui/connections/confirm` with `server` and `code`: confirms the user's own sign-in.
pub async fn confirm(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (console, fields) = posted!(state, headers, body);
    let holder = console.caller.identity.account.clone().unwrap_or_default();
    let code = field(&fields, "code").unwrap_or_default().trim().to_owned();
    let confirmed = match chosen(&state, &console, &fields) {
        Some(server) => state.hub.confirm_sign_in(&server.name, &holder, &code).await,
        None => false,
    };
    let (text, failed) =
        if confirmed { ("Connected.", false) } else { ("This code is unknown, expired, used, or not yours.", true) };
    connections_page(&state, &console, Some(text), failed, (None, None)).await
}

/// `POST /ui/connections/disconnect` with `server`: forgets the user's account there.
pub async fn disconnect(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (console, fields) = posted!(state, headers, body);
    let (Some(server), Some(account)) = (chosen(&state, &console, &fields), console.caller.identity.account.as_deref())
    else {
        return connections_page(&state, &console, Some("There is no such server for you."), true, (None, None)).await;
    };
    match crate::mcp::oauth::disconnect(server, &state.secrets, account).await {
        Ok(_) => {
            state.hub.signed_out(&server.name, account);
            let text = format!("Disconnected from {}.", server.name);
            connections_page(&state, &console, Some(&text), false, (None, None)).await
        }
        Err(e) => {
            tracing::warn!(server = %server.name, error = %e, "a console disconnect failed");
            connections_page(
                &state,
                &console,
                Some("The account could not be forgotten; try again."),
                true,
                (None, None),
            )
            .await
        }
    }
}

/// `GET /ui/pending`: the requests waiting for this user.
pub async fn pending(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let console = console!(state, headers);
    pending_page(&state, &console, None, false).await
}

async fn pending_page(state: &AppState, console: &Console, done: Option<&str>, failed: bool) -> Response {
    let owner = console.caller.identity.account.clone().unwrap_or_default();
    let waiting = match &state.agent.parking {
        Some(parking) => match parking.waiting_for(&owner).await {
            Ok(waiting) => waiting,
            Err(e) => return super::unavailable(&e),
        },
        None => Vec::new(),
    };
    let body = html! {
        (notice(done, failed))
        p.muted { "Chats waiting for you. An answer given here is applied when you next reply " code { "continue" } " in that chat; a reply that approves, denies or says something else wins." }
        @for w in &waiting {
            section.card data-request=(w.id) {
                p.muted { "Since " (view::time(w.parked_ms)) " UTC"
                    @if w.answered { " · " span.ok { "answered here; reply in the chat to go on" } } }
                @for call in &w.calls {
                    p { code { (call.tool) } " · "
                        (match call.wait { Wait::Approval => "waits for your approval", Wait::Account => "waits for your account",
                            Wait::Input | Wait::Held => "asks you something", Wait::Nothing => "runs with the others" }) }
                    @if call.wait == Wait::Approval { pre { (call.arguments) } }
                    @if let Some(questions) = &call.questions { pre { (questions) } }
                    @if call.wait == Wait::Account { p { a href="/ui/connections" { "Connect your account" } " first." } }
                }
                @let approvals = w.calls.iter().any(|c| c.wait == Wait::Approval);
                @let questions = w.calls.iter().any(|c| matches!(c.wait, Wait::Input | Wait::Held));
                @if approvals {
                    (button(console, "/ui/pending", &[("entry", &w.entry), ("answer", "approve")], "", "Approve"))
                    " "
                    (button(console, "/ui/pending", &[("entry", &w.entry), ("answer", "deny")], "danger", "Deny"))
                }
                @if questions {
                    form method="post" action="/ui/pending" {
                        (csrf(console))
                        input type="hidden" name="entry" value=(w.entry);
                        label { "Your answer" textarea name="answer" {} }
                        button type="submit" { "Answer" }
                    }
                }
            }
        }
        @if waiting.is_empty() { p.muted { "Nothing is waiting for you." } }
    };
    view::respond(StatusCode::OK, page(console, "/ui/pending", "Pending", body), console.cookie.clone())
}

/// `POST /ui/pending` with `id` and `answer`: keeps the answer for the user's own request.
pub async fn answer(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (console, fields) = posted!(state, headers, body);
    let owner = console.caller.identity.account.clone().unwrap_or_default();
    let (entry, text) =
        (field(&fields, "entry").unwrap_or_default(), field(&fields, "answer").unwrap_or_default().trim());
    let kept = match &state.agent.parking {
        Some(parking) if !text.is_empty() && text.len() <= 16 * 1024 => parking.answer_later(entry, &owner, text).await,
        _ => Ok(false),
    };
    match kept {
        Ok(true) => {
            pending_page(
                &state,
                &console,
                Some("Answered. Reply “continue” in the chat and it goes on with this answer."),
                false,
            )
            .await
        }
        Ok(false) => pending_page(&state, &console, Some("That request is not waiting for you any more."), true).await,
        Err(e) => super::unavailable(&e),
    }
}

/// What this session may see of the artifact store: everything for an operator, else its own
/// files folder (tool outputs are shared by content and belong to no one).
fn artifact_scope(console: &Console) -> Option<String> {
    if console.operator() {
        return Some(String::new());
    }
    console.caller.identity.files.as_ref().map(|ns| format!("{}{ns}/", crate::builtin::FILES_PREFIX))
}

/// `GET /ui/artifacts`.
pub async fn artifacts(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let console = console!(state, headers);
    artifacts_page(&state, &console, None, false).await
}

async fn artifacts_page(state: &AppState, console: &Console, done: Option<&str>, failed: bool) -> Response {
    let store = &state.artifacts.store;
    let mut objects = match artifact_scope(console) {
        Some(prefix) => store.list(&prefix, MAX_ARTIFACTS).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the console could not list artifacts");
            Vec::new()
        }),
        None => Vec::new(),
    };
    objects.truncate(MAX_ARTIFACTS);
    let mut rows = Vec::with_capacity(objects.len());
    for object in objects {
        let link = store.url(&object.key, state.artifacts.url_ttl).await.ok();
        rows.push((object, link));
    }
    let operator = console.unrestricted();
    let body = html! {
        (notice(done, failed))
        table #artifacts {
            thead { tr { th { "Key" } th { "Size" } th {} @if operator { th {} } } }
            tbody {
                @for (object, link) in &rows {
                    tr {
                        td { code { (object.key) } }
                        td { (view::size(object.size)) }
                        td { @if let Some(link) = link { a href=(link) target="_blank" rel="noopener noreferrer" { "Open" } } }
                        @if operator {
                            td { (button(console, "/ui/artifacts/delete", &[("key", &object.key)], "danger", "Delete")) }
                        }
                    }
                }
            }
        }
        @if rows.is_empty() { p.muted { "No artifacts." } }
    };
    view::respond(StatusCode::OK, page(console, "/ui/artifacts", "Artifacts", body), console.cookie.clone())
}

/// `POST /ui/artifacts/delete` with `key` (unrestricted keys).
pub async fn delete_artifact(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (console, fields) = posted!(state, headers, body);
    if !console.unrestricted() {
        return forbidden(&console, "Deleting artifacts needs an unrestricted key.");
    }
    let key = field(&fields, "key").unwrap_or_default();
    let in_scope = artifact_scope(&console).is_some_and(|prefix| key.starts_with(&prefix));
    if !crate::artifacts::valid_key(key) || !in_scope {
        return artifacts_page(&state, &console, Some("That is not an artifact's key."), true).await;
    }
    match state.artifacts.store.delete(key).await {
        Ok(()) => artifacts_page(&state, &console, Some("Deleted."), false).await,
        Err(e) => {
            tracing::warn!(error = %e, "a console delete failed");
            artifacts_page(&state, &console, Some("The artifact could not be deleted."), true).await
        }
    }
}
