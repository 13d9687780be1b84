//! The gate every request passes before routing: header size, one canonical path, the `Host`
//! it was sent to, the web page (if any) it came from, and the body type of JSON routes.
//!
//! - **Header size**: over `limits.max_header_bytes` is a 431.
//! - **Canonical path**: a percent-escaped unreserved character (`%63` for `c`) is a 400. Routing
//!   here and at the upstream must read the same path: `/v1/chat/%63ompletions` would otherwise
//!   pass our chat handler by and reach the upstream's chat route through the proxy.
//! - **Host** (DNS rebinding): `http.allowed_hosts` when set; else a keyed gateway accepts any
//!   host (the key is the protection) and an open one only names a rebinding page cannot own
//!   (loopback names, IP literals, single-label names such as a container's).
//! - **Browsers** (CSRF, cross-origin reads): a request with an `Origin` other than the gateway's
//!   own, or `Sec-Fetch-Site: cross-site`/`same-site`, is a 403 unless its origin is in
//!   `http.cors.allowed_origins`; preflights (`OPTIONS` with `Access-Control-Request-Method`) are
//!   answered here from that list, and allowed origins get `Access-Control-Allow-Origin` on
//!   the response. Artifact links and the two health probes are exempt (images are embedded by
//!   pages; probes say only a status).
//! - **JSON routes** (chat, `/mcp/tools/*`) take `application/json` only (415 otherwise): a
//!   `text/plain` form post cannot be a tool call.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// What [`gate`] says of a request.
pub enum Gate {
    /// Every check passed: route it, naming this allow-listed origin (if any) in the response.
    Pass(Option<HeaderValue>),
    /// Answer this instead (an error, or a preflight's reply).
    Answer(Response),
}

/// Runs every check on a request about to be routed.
pub fn gate(state: &AppState, req: &Request) -> Gate {
    match checked(state, req) {
        Ok(origin) => Gate::Pass(origin),
        Err(answer) => Gate::Answer(*answer),
    }
}

fn checked(state: &AppState, req: &Request) -> Result<Option<HeaderValue>, Box<Response>> {
    let limit = state.config.limits.max_header_bytes;
    let size: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if size > limit {
        return Err(Box::new(ApiError::HeadersTooLarge { limit }.into_response()));
    }
    let path = req.uri().path();
    if path.contains('%') && escapes_unreserved(path) {
        return Err(Box::new(
            ApiError::BadRequest("the request path may not percent-encode letters, digits or `-._~`".into())
                .into_response(),
        ));
    }
    // Artifact links are embedded by pages; the two probes say only a status; an authorization
    // server sends a person's browser to the OAuth callback (a cross-site navigation, bound by
    // its single-use `state`). `/health` itself shows details on an open gateway, so it is not
    // exempt.
    let exempt = path.starts_with("/artifacts/")
        || path == "/health/liveliness"
        || path == "/health/readiness"
        || path == "/oauth/callback";
    if exempt {
        return Ok(None);
    }
    if !host_allowed(state, req.headers(), req.uri().authority().map(|a| a.as_str())) {
        return Err(Box::new(
            ApiError::Forbidden("this gateway does not serve the host named in the request".into()).into_response(),
        ));
    }
    // A per-user server's connect link is opened from a chat page (a cross-site navigation,
    // bound by its sealed ticket); its `Host` was checked above, as it names the redirect URI.
    if req.method() == Method::GET && path.starts_with("/oauth/connect/") {
        return Ok(None);
    }
    let origin = browser_origin(state, req.headers()).map_err(|e| Box::new(e.into_response()))?;
    if req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return Err(Box::new(preflight(origin.as_ref(), req.headers())));
    }
    if req.method() == Method::POST && json_route(path) && !is_json(req.headers()) {
        return Err(Box::new(ApiError::UnsupportedMediaType.into_response()));
    }
    Ok(origin)
}

/// Names the allowed `origin` (from [`gate`]) in a response.
pub fn allow_origin(response: &mut Response, origin: HeaderValue) {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

/// Whether `path` escapes a character that needs no escaping (RFC 3986 unreserved).
fn escapes_unreserved(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.windows(3).any(|w| match w {
        [b'%', hi, lo] => {
            let hex = |c: u8| (c as char).to_digit(16);
            match (hex(*hi), hex(*lo)) {
                (Some(h), Some(l)) => {
                    let c = (h * 16 + l) as u8;
                    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
                }
                _ => false,
            }
        }
        _ => false,
    })
}

/// Whether the request's `Host` (or HTTP/2 `:authority`) is one we serve: `http.allowed_hosts` when set; with keys and no
/// list, any (the key is the protection); on an open gateway without a list, only names a
/// rebinding page cannot own — loopback names, IP literals and single-label names (a container
/// or service name such as `mcp-middleware`). A DNS-rebinding page's host has a dot in it.
fn host_allowed(state: &AppState, headers: &HeaderMap, authority: Option<&str>) -> bool {
    let configured = &state.config.http.allowed_hosts;
    let open_default = configured.is_empty() && state.config.auth.is_open();
    if configured.is_empty() && !open_default {
        return true;
    }
    // HTTP/2 names the host in `:authority` (the request URI), not in a `Host` header.
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).or(authority);
    let Some(host) = host else {
        // HTTP/1.0 without Host: only a local tool would send that.
        return open_default;
    };
    let host = host.trim();
    let name = strip_port(host);
    if open_default {
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        let local = name.eq_ignore_ascii_case("localhost")
            || name.len() > 10 && name.get(name.len() - 10..).is_some_and(|t| t.eq_ignore_ascii_case(".localhost"));
        return local
            || bare.parse::<std::net::IpAddr>().is_ok()
            || (!name.is_empty() && !name.contains('.') && !name.contains(':'));
    }
    configured.iter().any(|allowed| allowed.eq_ignore_ascii_case(host) || allowed.eq_ignore_ascii_case(name))
}

/// `host` without its `:port` (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host.ends_with(']') && host.get(i + 1..).is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())) => {
            host.get(..i).unwrap_or(host)
        }
        _ => host,
    }
}

/// The allow-listed origin of a cross-origin browser request (`Ok(None)` for requests that
/// are not cross-origin), or a 403 for a page that is not allowed.
fn browser_origin(state: &AppState, headers: &HeaderMap) -> Result<Option<HeaderValue>, ApiError> {
    let origin = headers.get(header::ORIGIN);
    static FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
    let site = headers.get(&FETCH_SITE).map(HeaderValue::as_bytes);
    let cross_site = matches!(site, Some(b"cross-site" | b"same-site"));
    let Some(origin) = origin else {
        return if cross_site { Err(refused()) } else { Ok(None) };
    };
    let text = origin.to_str().unwrap_or_default().trim_end_matches('/').to_ascii_lowercase();
    if state.config.http.allowed_origins.iter().any(|o| o == &text) {
        return Ok(Some(origin.clone()));
    }
    // Same origin: a page served by the gateway itself (the console), reached by the `Host` it
    // names or, behind a proxy that rewrites `Host`, at `http.public_url`.
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_ascii_lowercase);
    let same = host.is_some_and(|h| text == format!("http://{h}") || text == format!("https://{h}"))
        || state.config.http.public_url.as_deref().is_some_and(|public| own_origin(public, &text));
    if same && !cross_site { Ok(None) } else { Err(refused()) }
}

/// Whether `origin` (lowercase, no trailing slash) is the origin of `public_url`.
fn own_origin(public_url: &str, origin: &str) -> bool {
    url::Url::parse(public_url).is_ok_and(|u| u.origin().ascii_serialization().eq_ignore_ascii_case(origin))
}

fn refused() -> ApiError {
    ApiError::Forbidden(
        "cross-origin requests from web pages are refused; add the page's origin to http.cors.allowed_origins".into(),
    )
}

/// The answer to a CORS preflight: allowed origins get the methods and the headers they ask for.
fn preflight(origin: Option<&HeaderValue>, headers: &HeaderMap) -> Response {
    let Some(origin) = origin else {
        // Same-origin preflights do not happen; without an allowed origin there is nothing to allow.
        return StatusCode::FORBIDDEN.into_response();
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE, OPTIONS"));
    if let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    out.insert(header::VARY, HeaderValue::from_static("origin"));
    response
}

/// Routes whose bodies are JSON documents we parse.
fn json_route(path: &str) -> bool {
    matches!(path, "/v1/chat/completions" | "/chat/completions" | "/mcp/tools/call" | "/mcp/tools/list")
}

/// `application/json` or a `+json` type, any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return false };
    // What nearly every client sends, before the general reading.
    if value.as_bytes() == b"application/json" {
        return true;
    }
    let Ok(value) = value.to_str() else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let lower = |prefix: &str, s: &str| {
        s.len() >= prefix.len() && s.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    essence.eq_ignore_ascii_case("application/json")
        || (lower("application/", essence)
            && essence.len() > 5
            && essence.get(essence.len() - 5..).is_some_and(|t| t.eq_ignore_ascii_case("+json")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_unreserved_characters_are_found() {
        assert!(escapes_unreserved("/v1/chat/%63ompletions"));
        assert!(escapes_unreserved("/v1/%2e%2e/x"));
        assert!(escapes_unreserved("/v1/a%7Eb"));
        assert!(!escapes_unreserved("/v1/files/a%20b"));
        assert!(!escapes_unreserved("/v1/files/a%2Fb"));
        assert!(!escapes_unreserved("/v1/files/%"));
    }

    #[test]
    fn the_public_url_names_the_gateways_own_origin() {
        assert!(own_origin("https://gw.example.com/base", "https://gw.example.com"));
        assert!(own_origin("https://gw.example.com:8443", "https://gw.example.com:8443"));
        assert!(!own_origin("https://gw.example.com", "https://evil.example"));
        assert!(!own_origin("https://gw.example.com", "http://gw.example.com"));
    }

    #[test]
    fn json_bodies_are_told_by_their_media_type() {
        let typed = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            is_json(&headers)
        };
        for json in
            ["application/json", "Application/JSON", "application/json; charset=utf-8", "application/vnd.x+json"]
        {
            assert!(typed(json), "{json}");
        }
        for other in ["text/plain", "application/jsonx", "application/x-www-form-urlencoded", "json", "+json"] {
            assert!(!typed(other), "{other}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("localhost:4001"), "localhost");
        assert_eq!(strip_port("[::1]:4001"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("gw"), "gw");
    }
}
