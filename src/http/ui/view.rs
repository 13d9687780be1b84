//! The console's frame: the page layout and navigation, the answer's headers (content security
//! policy and friends), redirects, the sign-in page, the style sheet, and small formatters.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::Console;

/// No script, no frame, no plugin; styles and images from the gateway (and inline images of
/// tool results); forms post only to the gateway.
const POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                      frame-ancestors 'none'; base-uri 'none'";

/// The style sheet (embedded; no CDN, works offline).
const CSS: &str = include_str!("console.css");

/// The pages in the navigation: path and title.
const PAGES: &[(&str, &str)] = &[
    ("/ui/servers", "Servers"),
    ("/ui/tools", "Tools"),
    ("/ui/activity", "Activity"),
    ("/ui/connections", "My connections"),
    ("/ui/pending", "Pending"),
    ("/ui/artifacts", "Artifacts"),
];

/// `markup` with the console's headers, and a session cookie when one was made.
pub fn respond(status: StatusCode, markup: Markup, cookie: Option<HeaderValue>) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure(headers);
    if let Some(cookie) = cookie {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

fn secure(headers: &mut axum::http::HeaderMap) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

/// A 303 to one of the console's own paths.
pub fn redirect(to: &'static str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(header::LOCATION, HeaderValue::from_static(to));
    secure(response.headers_mut());
    response
}

/// A 303 to `to`, one of the console's own pages (checked by the caller).
pub fn redirect_to(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    secure(response.headers_mut());
    response
}

/// A page of the console: navigation (the `active` path marked), a sign-out for keyed
/// gateways, the title and `body`.
pub fn page(console: &Console, active: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · mcp-middleware" }
                link rel="stylesheet" href="/ui/assets/console.css";
            }
            body {
                header {
                    span.brand { "mcp-middleware" }
                    nav {
                        @for (path, name) in PAGES {
                            a href=(path) class=[(*path == active).then_some("active")] { (name) }
                        }
                    }
                    span.who { (who(console)) }
                    @if console.keyed {
                        form method="post" action="/ui/logout" {
                            (csrf(console))
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// Who the session acts as, in a few words.
fn who(console: &Console) -> String {
    let user = console.caller.identity.id.as_deref().or(console.caller.identity.name.as_deref());
    let kind = if console.unrestricted() { "unrestricted key" } else { "restricted key" };
    let kind = if console.keyed { kind } else { "open gateway" };
    match user {
        Some(user) => format!("{user} · {kind}"),
        None => kind.to_owned(),
    }
}

/// The form's hidden token.
pub fn csrf(console: &Console) -> Markup {
    html! { input type="hidden" name="csrf" value=(console.session.csrf); }
}

/// A one-button form posting `fields` (and the session's token) to `action`; `class` styles
/// the button (`secondary`, `danger`, `link`, or none).
pub fn button(console: &Console, action: &str, fields: &[(&str, &str)], class: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(console))
            @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
            button type="submit" class=[(!class.is_empty()).then_some(class)] { (label) }
        }
    }
}

/// A page outside the console's frame (refusals, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · mcp-middleware" }
                link rel="stylesheet" href="/ui/assets/console.css";
            }
            body { main.narrow { h1 { (title) } (body) } }
        }
    }
}

/// The sign-in page, with what went wrong last time and the page to go on to.
pub fn login(error: Option<&str>, next: Option<&str>) -> Markup {
    bare(
        "Sign in",
        html! {
            p { "Sign in with one of this gateway's keys. The console shows what that key may use." }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action="/ui/login" {
                label for="key" { "Key" }
                input #key type="password" name="key" autocomplete="current-password" required autofocus;
                @if let Some(next) = next { input type="hidden" name="next" value=(next); }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// `GET /ui/assets/console.css`.
pub async fn css() -> Response {
    let mut response = CSS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// A notice above a page's content: what an action did.
pub fn notice(text: Option<&str>, error: bool) -> Markup {
    html! {
        @if let Some(text) = text {
            p class=(if error { "error" } else { "notice" }) role="status" { (text) }
        }
    }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// A byte count for people.
pub fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_civil_utc() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_796_515_200_000), "2026-12-06 00:00:00");
        assert_eq!(time(951_782_400_000 + 61_000), "2000-02-29 00:01:01");
    }
}
