//! The web console at `/ui`: server-rendered pages (no script at all, assets embedded) over the
//! same code paths and checks as the API.
//!
//! - **Signing in.** A form takes a key; the session ([`crate::console::session`]) lives in the
//!   state store and the browser holds its id in an `HttpOnly`, `SameSite=Strict` cookie scoped
//!   to `/ui`. On an open gateway the first visit makes a session without a key. Every request
//!   builds its [`Caller`] from the session's key exactly as a request with that key would be
//!   built ([`auth::caller_of`](super::auth::caller_of)): the same policy, user, files folder
//!   and account holder, and nothing a browser adds (no forwarded user headers).
//! - **Forms** are POSTs carrying the session's token; the gate's origin rules apply as on
//!   every route (a cross-site POST is refused before it gets here).
//! - **Pages** answer with a strict content security policy (no scripts, no frames, forms only
//!   to the gateway), `no-store`, and a referrer only to the gateway itself (a form's `Origin` must be the
//!   gateway's for the gate to let it through).
//!
//! The pages: [`pages`] (servers, tools and "Try it", activity) and [`people`] (connections,
//! what waits for the user, artifacts).

mod pages;
mod people;
mod view;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;

use super::auth::Caller;
use super::{AppState, auth};
use crate::console::session::{self, Session};

/// Most bytes a console form may send (a "Try it" form's arguments included).
const MAX_FORM_BYTES: usize = 1024 * 1024;
/// Most fields a console form may send.
const MAX_FORM_FIELDS: usize = 256;

/// The console's routes (mounted when `console.enabled`); the front layer lets them through
/// without a key, and each handler finds its session here.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(home))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/assets/console.css", get(view::css))
        .route("/ui/servers", get(pages::servers))
        .route("/ui/servers/restart", post(pages::restart))
        .route("/ui/servers/sign-in", post(pages::sign_in))
        .route("/ui/reload", post(pages::reload))
        .route("/ui/tools", get(pages::tools))
        .route("/ui/tool", get(pages::tool).post(pages::run_tool))
        .route("/ui/activity", get(pages::activity))
        .route("/ui/connections", get(people::connections))
        .route("/ui/connections/connect", post(people::connect))
        .route("/ui/connections/disconnect", post(people::disconnect))
        .route("/ui/connections/confirm", post(people::confirm))
        .route("/ui/pending", get(people::pending).post(people::answer))
        .route("/ui/artifacts", get(people::artifacts))
        .route("/ui/artifacts/delete", post(people::delete_artifact))
}

/// A signed-in request: its caller and session.
pub(super) struct Console {
    /// Who the session acts as (the key's caller).
    pub caller: Caller,
    /// The session (its form token).
    pub session: Session,
    /// The cookie of a session made by this request (an open gateway's first visit).
    pub cookie: Option<HeaderValue>,
    /// Whether the gateway has keys (there is a sign-out).
    pub keyed: bool,
}

impl Console {
    /// The console session of a request, or the answer to give instead (the sign-in page). On
    /// an open gateway a page (`start`) makes a session when there is none; a form never does.
    pub async fn of(state: &AppState, headers: &HeaderMap, start: bool) -> Result<Self, Response> {
        let store = state.secrets.store();
        let id = headers.get(header::COOKIE).and_then(|c| c.to_str().ok()).and_then(session::cookie_value);
        let found = match id {
            Some(id) => session::find(&**store, id).await.map_err(|e| unavailable(&e))?,
            None => None,
        };
        let keyed = !state.config.auth.is_open();
        let (session, cookie) = match found {
            Some(session) => (session, None),
            None if keyed => return Err(view::redirect("/ui/login")),
            None if !start => return Err(view::redirect("/ui/servers")),
            None => {
                let ttl = state.config.console.session_ttl;
                let (id, session) = session::start(&**store, None, ttl).await.map_err(|e| unavailable(&e))?;
                (session, Some(cookie(state, headers, &id, ttl.as_secs())))
            }
        };
        let key = match (&session.key, keyed) {
            (Some(digest), true) => match session::key_named(&state.config.auth, digest) {
                Some(key) => Some(key),
                // The key was removed (a reload): signed out.
                None => return Err(view::redirect("/ui/login")),
            },
            (None, false) => None,
            // A session of an open gateway that now has keys, or the reverse.
            _ => return Err(view::redirect("/ui/login")),
        };
        let caller = auth::caller_of(state, &as_key(headers, key)).map_err(|_| view::redirect("/ui/login"))?;
        Ok(Self { caller, session, cookie, keyed })
    }

    /// The submitted form of a POST, when it carries this session's token; a 403 page otherwise.
    pub async fn form(
        &self,
        state: &AppState,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Vec<(String, String)>, Response> {
        let limit = state.config.limits.max_body_bytes.min(MAX_FORM_BYTES);
        let raw = super::body::read_limited(body, headers, limit).await.map_err(IntoResponse::into_response)?;
        let fields: Vec<(String, String)> = url::form_urlencoded::parse(&raw)
            .take(MAX_FORM_FIELDS)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let token = fields.iter().find(|(k, _)| k == "csrf").map_or("", |(_, v)| v.as_str());
        if !self.session.csrf_matches(token) {
            return Err(view::respond(
                StatusCode::FORBIDDEN,
                view::bare(
                    "Refused",
                    html! { p { "This form is out of date or was not sent by this console. Open the page again." } },
                ),
                None,
            ));
        }
        Ok(fields)
    }

    /// Whether nothing narrows this session's tools (the servers' buttons, deleting artifacts),
    /// as `/metrics` and health details.
    pub fn unrestricted(&self) -> bool {
        self.caller.may_see_operations()
    }

    /// Whether this session sees everyone's activity and every artifact: a key without a tool
    /// policy and without a user (an operator's), or an open gateway.
    pub fn operator(&self) -> bool {
        self.unrestricted() && self.caller.identity.files.is_none()
    }
}

/// One submitted field's value.
pub(super) fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Headers that authenticate as `key` (none: an open gateway) to the gateway's own `Host`:
/// what the API would see from that key's client, without anything else the browser sent.
fn as_key(headers: &HeaderMap, key: Option<&str>) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [header::HOST, HeaderName::from_static("x-forwarded-proto")] {
        if let Some(value) = headers.get(&name) {
            out.insert(name, value.clone());
        }
    }
    if let Some(key) = key
        && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {key}"))
    {
        value.set_sensitive(true);
        out.insert(header::AUTHORIZATION, value);
    }
    out
}

use axum::http::HeaderName;

/// The session cookie: `HttpOnly`, `SameSite=Strict`, for `/ui` only, `Secure` behind https.
fn cookie(state: &AppState, headers: &HeaderMap, id: &str, max_age: u64) -> HeaderValue {
    let https = auth::public_url(&state.config.http, headers).starts_with("https:");
    let secure = if https { "; Secure" } else { "" };
    let text = format!("{}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}", session::COOKIE);
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The page for a state store that does not answer.
fn unavailable(e: &crate::state::StateError) -> Response {
    tracing::warn!(error = %e, "the console's state store failed");
    view::respond(
        StatusCode::SERVICE_UNAVAILABLE,
        view::bare(
            "Unavailable",
            html! { p { "The console cannot reach its state store just now; try again shortly." } },
        ),
        None,
    )
}

/// The page a per-user sign-in's callback shows: the code to confirm it with, in the chat or
/// (a link that fills it in) in the console. The code works once, for whoever started the
/// sign-in, so the link is safe to follow from anywhere.
pub fn confirm_page(server: &str, code: &str, console: bool) -> Response {
    let page = format!("/ui/connections?server={}&code={}", pages::encode(server), pages::encode(code));
    // Through the sign-in page: a browser signed out signs in first and still lands there.
    let link = format!("/ui/login?next={}", pages::encode(&page));
    let body = html! {
        p { "mcp-middleware: signed in to `" (server) "`. One step left: go back to your chat and reply" }
        pre { "continue " (code) "\n" }
        p { "(or send " code { "POST /oauth/confirm/" (server) } " with " code { "{\"code\": \"" (code) "\"}" } ")." }
        @if console { p { a #confirm-in-console href=(link) { "Confirm it in the console" } } }
        p.muted { "The code works for ten minutes, once, and only for whoever started this sign-in." }
    };
    view::respond(StatusCode::OK, view::bare("Almost connected", body), None)
}

/// `GET /ui`: the servers page.
async fn home() -> Response {
    view::redirect("/ui/servers")
}

/// Where a sign-in goes next: `next` when it is one of the console's own pages (a path under
/// `/ui/`, nothing that could leave the gateway), else the servers page.
fn next_page(next: Option<&str>) -> String {
    next.filter(|n| {
        // The path as a browser resolves it must stay below `/ui/`: no escapes, no dot segments.
        let path = n.split('?').next().unwrap_or_default();
        n.len() <= 2048
            && n.starts_with("/ui/")
            && !n.contains("//")
            && !n.contains('\\')
            && n.bytes().all(|b| b.is_ascii_graphic())
            && !path.contains('%')
            && !path.split('/').any(|segment| segment == "." || segment == "..")
    })
    .unwrap_or("/ui/servers")
    .to_owned()
}

/// `GET /ui/login[?next=…]`: the form; a signed-in browser (or an open gateway) goes straight
/// on to `next` (the sign-in callback's "confirm in the console" link comes this way).
async fn login_page(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let next = pages::query(query.as_deref(), "next");
    let signed_in = match Console::of(&state, &headers, false).await {
        Ok(_) => true,
        Err(_) => state.config.auth.is_open(),
    };
    if signed_in {
        return view::redirect_to(&next_page(next.as_deref()));
    }
    view::respond(StatusCode::OK, view::login(None, next.as_deref()), None)
}

/// `POST /ui/login` with `key` (and `next`): a session for a configured key, else the form
/// again (401).
async fn login(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if state.config.auth.is_open() {
        return view::redirect("/ui/servers");
    }
    let raw = match super::body::read_limited(body, &headers, 64 * 1024).await {
        Ok(raw) => raw,
        Err(e) => return e.into_response(),
    };
    let form = |name: &str| url::form_urlencoded::parse(&raw).find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let next = form("next");
    let key = form("key").map(|k| k.trim().to_owned()).filter(|k| !k.is_empty());
    let known = key.as_deref().is_some_and(|k| auth::caller_of(&state, &as_key(&headers, Some(k))).is_ok());
    let Some(key) = key.filter(|_| known) else {
        return view::respond(
            StatusCode::UNAUTHORIZED,
            view::login(Some("That key is not one of this gateway's keys."), next.as_deref()),
            None,
        );
    };
    let ttl = state.config.console.session_ttl;
    match session::start(&**state.secrets.store(), Some(&key), ttl).await {
        Ok((id, _)) => {
            let mut response = view::redirect_to(&next_page(next.as_deref()));
            response.headers_mut().insert(header::SET_COOKIE, cookie(&state, &headers, &id, ttl.as_secs()));
            response
        }
        Err(e) => unavailable(&e),
    }
}

/// `POST /ui/logout`: ends the session (its token checked) and forgets the cookie.
async fn logout(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let console = match Console::of(&state, &headers, false).await {
        Ok(console) => console,
        Err(answer) => return answer,
    };
    if let Err(answer) = console.form(&state, &headers, body).await {
        return answer;
    }
    let id = headers.get(header::COOKIE).and_then(|c| c.to_str().ok()).and_then(session::cookie_value);
    if let Some(id) = id
        && let Err(e) = session::end(&**state.secrets.store(), id).await
    {
        return unavailable(&e);
    }
    let mut response = view::redirect("/ui/login");
    response.headers_mut().insert(header::SET_COOKIE, cookie(&state, &headers, "", 0));
    response
}

#[cfg(test)]
mod tests {
    use super::next_page;

    #[test]
    fn a_sign_in_goes_on_only_to_the_consoles_own_pages() {
        assert_eq!(next_page(Some("/ui/connections?server=gh&code=AB12")), "/ui/connections?server=gh&code=AB12");
        for away in [
            "//evil.example/ui/",
            "https://evil.example",
            "/ui//evil",
            "/ui/\\evil",
            "/uix",
            "/ui/a b",
            "/ui/../v1/models",
            "/ui/%2e%2e/oauth/x",
            "/ui/./..",
        ] {
            assert_eq!(next_page(Some(away)), "/ui/servers", "{away}");
        }
        assert_eq!(next_page(None), "/ui/servers");
    }
}
