//! Hosted `mcp` tools that name a `server_url`: checked against the operator's
//! `responses.server_urls` before anything connects, and turned into the configuration of a
//! streamable-HTTP connection that lives for that one request (`Hub::attach`). The request's
//! `authorization` and `headers` go to that server only; redirects are never followed.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::config::{McpServerConfig, ResponsesConfig, Secret};

/// Most servers one request may name by URL.
pub const MAX_URL_SERVERS: usize = 4;
/// Most headers one such server may be given, and the longest value.
const MAX_HEADERS: usize = 32;
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Longest label.
const MAX_LABEL: usize = 64;
/// Headers a request may not set on the connection: the transport's own, hop-by-hop ones,
/// and those a server behind a proxy takes as the proxy's word about who is calling.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "expect",
    "proxy-connection",
    "proxy-authorization",
    "cookie",
    "forwarded",
    "x-real-ip",
    "via",
];
/// Prefixes of such headers (`X-Forwarded-For`, `X-Forwarded-User`, `X-Auth-Request-Email` …).
const RESERVED_PREFIXES: &[&str] = &["x-forwarded-", "x-auth-request-", "x-original-", "x-remote-"];

/// Why a request may not name its servers by URL.
#[derive(Debug)]
pub enum Refused {
    /// The caller may not (a key with a tool policy): 403.
    Forbidden(String),
    /// Not allowed by the operator, or not well formed: 400.
    Invalid(String),
}

/// The servers `body`'s hosted `mcp` tools name by URL, as connection configurations, for a
/// caller that is `unrestricted` (no tool policy) or not; nothing connects before this says
/// yes. `configured` says whether a label is a configured server's name (taken).
pub fn url_servers(
    body: &Map<String, Value>,
    config: &ResponsesConfig,
    unrestricted: bool,
    configured: impl Fn(&str) -> bool,
) -> Result<Vec<McpServerConfig>, Refused> {
    let Some(Value::Array(tools)) = body.get("tools") else { return Ok(Vec::new()) };
    let by_url = |t: &&Value| {
        t.get("type").and_then(Value::as_str) == Some("mcp") && t.get("server_url").is_some_and(|u| !u.is_null())
    };
    if !tools.iter().any(|t| by_url(&t)) {
        return Ok(Vec::new());
    }
    if !unrestricted {
        return Err(Refused::Forbidden(
            "this key may use configured MCP servers only; a hosted `mcp` tool's `server_url` is refused".into(),
        ));
    }
    // Such a request would go to the upstream whole, URL and credentials included.
    let hosted = |t: &Value| !matches!(t.get("type").and_then(Value::as_str), Some("function" | "mcp"));
    if tools.iter().any(hosted) {
        return Err(Refused::Invalid(
            "a request with hosted tools the upstream runs may not also name a `server_url`".into(),
        ));
    }
    let mut out: Vec<McpServerConfig> = Vec::new();
    for tool in tools.iter().filter(by_url) {
        let label = tool.get("server_label").and_then(Value::as_str).unwrap_or_default();
        let url = tool.get("server_url").and_then(Value::as_str).and_then(|u| url::Url::parse(u).ok());
        let Some(url) = url.filter(|u| config.allows_server_url(u)) else {
            return Err(Refused::Invalid(format!(
                "hosted `mcp` tool `{label}`: its `server_url` is not one the operator allows \
                 (responses.server_urls); name a configured MCP server in `server_label`"
            )));
        };
        let well_formed = !label.is_empty()
            && label.len() <= MAX_LABEL
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        // As a configured server's name: `_` would let `a__b` + `c` and `a` + `b__c` meet.
        if !well_formed {
            return Err(Refused::Invalid(format!("`server_label` must be 1 to {MAX_LABEL} letters, digits or `-`")));
        }
        if configured(label) || out.iter().any(|s| s.name == label) {
            return Err(Refused::Invalid(format!(
                "`server_label` `{label}` is taken: give the server at `server_url` another label"
            )));
        }
        if out.len() == MAX_URL_SERVERS {
            return Err(Refused::Invalid(format!(
                "at most {MAX_URL_SERVERS} hosted `mcp` tools may name a `server_url`"
            )));
        }
        out.push(connection(label, url, tool).map_err(Refused::Invalid)?);
    }
    Ok(out)
}

/// Whether a request may not set the header `name`.
fn reserved(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    RESERVED.contains(&name.as_str()) || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// `body` as a response may show it: its hosted `mcp` tools without `authorization`, their
/// header values masked (a response is returned, streamed and stored).
pub fn without_credentials(body: &Map<String, Value>) -> std::borrow::Cow<'_, Map<String, Value>> {
    let carries = |t: &Value| t.get("authorization").is_some() || t.get("headers").is_some();
    let Some(Value::Array(tools)) = body.get("tools") else { return std::borrow::Cow::Borrowed(body) };
    if !tools.iter().any(carries) {
        return std::borrow::Cow::Borrowed(body);
    }
    let mut shown = body.clone();
    if let Some(Value::Array(tools)) = shown.get_mut("tools") {
        for tool in tools.iter_mut().filter_map(Value::as_object_mut) {
            tool.remove("authorization");
            if let Some(Value::Object(headers)) = tool.get_mut("headers") {
                headers.values_mut().for_each(|v| *v = Value::String(crate::config::MASK.to_owned()));
            }
        }
    }
    std::borrow::Cow::Owned(shown)
}

/// The connection to `url` for `label`, with the tool's `authorization` (a bearer token) and
/// `headers`.
fn connection(label: &str, url: url::Url, tool: &Value) -> Result<McpServerConfig, String> {
    let mut headers = BTreeMap::new();
    match tool.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(given)) if given.len() <= MAX_HEADERS => {
            for (name, value) in given {
                let Some(value) = value.as_str() else {
                    return Err(format!("hosted `mcp` tool `{label}`: header `{name}` must be a string"));
                };
                let valid = http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                    && http::HeaderValue::from_str(value).is_ok()
                    && value.len() <= MAX_HEADER_BYTES
                    && !reserved(name);
                if !valid {
                    return Err(format!("hosted `mcp` tool `{label}`: header `{name}` is not allowed"));
                }
                headers.insert(name.clone(), Secret::new(value));
            }
        }
        Some(_) => return Err(format!("hosted `mcp` tool `{label}`: `headers` must be at most {MAX_HEADERS} strings")),
    }
    match tool.get("authorization") {
        None | Some(Value::Null) => {}
        Some(Value::String(token)) if token.len() <= MAX_HEADER_BYTES && http::HeaderValue::from_str(token).is_ok() => {
            headers.insert("Authorization".into(), Secret::new(format!("Bearer {token}")));
        }
        Some(_) => return Err(format!("hosted `mcp` tool `{label}`: `authorization` must be a token")),
    }
    Ok(McpServerConfig::for_request(label, url, headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn config(urls: &[&str]) -> ResponsesConfig {
        ResponsesConfig {
            store_ttl: Duration::ZERO,
            max_stored_bytes: 0,
            server_urls: urls.iter().map(|u| url::Url::parse(u).unwrap().to_string()).collect(),
        }
    }

    fn body(url: &str, label: &str) -> Map<String, Value> {
        json!({"tools": [{"type": "mcp", "server_label": label, "server_url": url, "authorization": "tok",
            "headers": {"X-Team": "a"}}]})
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn only_urls_under_an_allowed_prefix_at_a_path_boundary_connect() {
        let allowed = config(&["https://mcp.example.com/mcp", "http://127.0.0.1:9000"]);
        let ok = |url: &str| url_servers(&body(url, "x"), &allowed, true, |_| false).is_ok();
        assert!(ok("https://mcp.example.com/mcp"));
        assert!(ok("https://mcp.example.com/mcp/sub"));
        assert!(ok("http://127.0.0.1:9000/anything"));
        assert!(!ok("https://mcp.example.com/mcp-admin"));
        assert!(!ok("https://mcp.example.com.evil.net/mcp"));
        assert!(!ok("https://user@mcp.example.com/mcp"));
        assert!(!ok("http://127.0.0.1:9001/"));
        assert!(!ok("file:///etc/passwd"));
        for escape in ["/mcp/..;/admin", "/mcp/..%2fadmin", "/mcp/%2e%2e/admin", "/mcp/a%5cb", "/mcp/a;b", "/mcp#x"] {
            assert!(!ok(&format!("https://mcp.example.com{escape}")), "{escape}");
        }
        assert!(
            !ok("https://mcp.example.com./mcp") && !ok("https://[::1]/mcp") && !ok("https://mcp.example.com:8443/mcp")
        );
        assert!(ok("https://mcp.example.com:443/mcp"), "the default port is the same origin");
        assert!(matches!(
            url_servers(&body("https://mcp.example.com/mcp", "x"), &allowed, false, |_| false),
            Err(Refused::Forbidden(_))
        ));
        assert!(url_servers(&body("https://mcp.example.com/mcp", "x"), &config(&[]), true, |_| false).is_err());
    }

    #[test]
    fn the_connection_carries_the_token_and_refuses_taken_labels_and_reserved_headers() {
        let allowed = config(&["https://mcp.example.com/"]);
        let servers = url_servers(&body("https://mcp.example.com/mcp", "remote"), &allowed, true, |_| false).unwrap();
        let headers = servers[0].http_headers().unwrap();
        assert_eq!(headers["Authorization"].expose(), "Bearer tok");
        assert_eq!(headers["X-Team"].expose(), "a");
        assert!(url_servers(&body("https://mcp.example.com/mcp", "ts"), &allowed, true, |n| n == "ts").is_err());
        let mut host = body("https://mcp.example.com/mcp", "remote");
        for header in ["Host", "X-Forwarded-For", "Cookie", "x-auth-request-email", "Upgrade"] {
            host.insert(
                "tools".into(),
                json!([{"type": "mcp", "server_label": "remote",
                "server_url": "https://mcp.example.com/mcp", "authorization": "tok", "headers": {header: "internal"}}]),
            );
            assert!(url_servers(&host, &allowed, true, |_| false).is_err(), "{header}");
        }
        let shown = without_credentials(&host);
        assert!(shown["tools"][0].get("authorization").is_none());
        assert_eq!(shown["tools"][0]["headers"]["Upgrade"], crate::config::MASK);
    }
}
