//! Keeping secrets out of everything the gateway shows or writes: URLs are redacted (userinfo and
//! every query value become `***`) wherever they are displayed, and a [`Redactor`] built from
//! the configuration scrubs every configured secret — upstream and inbound keys, the S3 and
//! link-signing secrets, MCP headers, URL tokens, secret-looking `env` values of stdio servers —
//! from free text: error messages, server status, tool messages and every log line.

use std::borrow::Cow;

use url::Url;

use super::{Config, McpServerConfig, McpTransportConfig, StoreConfig};

/// What a secret is replaced with.
pub const MASK: &str = "***";
/// Shorter values are not scrubbed from free text (they would mangle unrelated words).
const MIN_SECRET_LEN: usize = 4;

/// `url` with its userinfo and every query value replaced by `***` (and no fragment).
pub fn redact_url(url: &Url) -> String {
    let mut out = url.clone();
    if !url.username().is_empty() {
        let _ = out.set_username(MASK);
    }
    if url.password().is_some() {
        let _ = out.set_password(Some(MASK));
    }
    out.set_fragment(None);
    if url.query().is_some() {
        let names: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        out.set_query(None);
        if !names.is_empty() {
            let mut pairs = out.query_pairs_mut();
            for name in &names {
                pairs.append_pair(name, MASK);
            }
        }
    }
    // `query_pairs_mut` encodes `***` as `%2A%2A%2A`; show the mask as written.
    out.as_str().replace("%2A%2A%2A", MASK)
}

/// Values this long are treated as secrets wherever the config holds them in a place that may
/// carry one (header values, query values, a stdio server's env); shorter ones only when their
/// name says so, so `Accept: application/json` or `?mode=stream` never mangle a log line.
const LONG_VALUE: usize = 24;

/// A URL's user name this long is taken for a token (`https://<token>@host`).
const TOKEN_LIKE_USER: usize = 16;

/// The secret parts of a URL: the whole URL (replaced by its redacted form), userinfo, and query
/// values that look secret, raw and decoded.
fn url_secrets(url: &Url, out: &mut Vec<(String, String)>) {
    out.push((url.as_str().to_owned(), redact_url(url)));
    // A password is a secret; a user name only when it looks like a token (a short one —
    // `postgres`, `app` — is a word that also names schemes, tables and people, and masking it
    // everywhere would garble every resource URI and answer that mentions it).
    // `https://<key>@host`: a user name alone on a web URL is how keys are passed.
    let web = matches!(url.scheme(), "http" | "https" | "ws" | "wss");
    if url.username().len() >= TOKEN_LIKE_USER || (web && url.password().is_none() && !url.username().is_empty()) {
        out.push((url.username().to_owned(), MASK.to_owned()));
    }
    if let Some(password) = url.password() {
        out.push((password.to_owned(), MASK.to_owned()));
    }
    if let Some(query) = url.query() {
        for pair in query.split('&') {
            if let Some((name, raw)) = pair.split_once('=')
                && (secret_name(name) || raw.len() >= LONG_VALUE)
            {
                out.push((raw.to_owned(), MASK.to_owned()));
            }
        }
        for (name, value) in url.query_pairs() {
            if secret_name(&name) || value.len() >= LONG_VALUE {
                out.push((value.into_owned(), MASK.to_owned()));
            }
        }
    }
}

/// A free-standing value that may hold a secret: itself when long, and any URL's secrets.
fn value_secrets(name: &str, value: &str, out: &mut Vec<(String, String)>) {
    if secret_name(name) || value.len() >= LONG_VALUE {
        out.push((value.to_owned(), MASK.to_owned()));
    }
    if value.contains("://")
        && let Ok(url) = Url::parse(value)
    {
        url_secrets(&url, out);
    }
}

/// Whether a variable's or header's name says it holds a credential.
pub fn secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "AUTH", "CREDENTIAL", "COOKIE"].iter().any(|w| upper.contains(w))
}

/// Replaces configured secrets in text. Cheap to clone behind an `Arc`.
#[derive(Default, Clone)]
pub struct Redactor {
    /// (needle, replacement), longest needle first.
    pairs: Vec<(String, String)>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.pairs.len())
    }
}

impl Redactor {
    /// A redactor for `(secret, replacement)` pairs; short or empty secrets are ignored.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut all: Vec<(String, String)> = Vec::new();
        for (needle, replacement) in pairs {
            if needle.chars().count() < MIN_SECRET_LEN || needle == replacement {
                continue;
            }
            // A secret inside a JSON log line appears escaped.
            if let Ok(quoted) = serde_json::to_string(&needle) {
                let escaped = quoted.trim_matches('"').to_owned();
                if escaped != needle {
                    all.push((escaped, replacement.clone()));
                }
            }
            all.push((needle, replacement));
        }
        all.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        all.dedup_by(|a, b| a.0 == b.0);
        Self { pairs: all }
    }

    /// Every secret of one MCP server's configuration.
    pub fn for_server(server: &McpServerConfig) -> Self {
        let mut pairs = Vec::new();
        server_secrets(server, &mut pairs);
        Self::new(pairs)
    }

    /// Every secret of the whole configuration.
    pub fn for_config(config: &Config) -> Self {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut secret = |s: &str| pairs.push((s.to_owned(), MASK.to_owned()));
        if let Some(key) = &config.upstream.api_key {
            secret(key.expose());
        }
        for key in &config.auth.api_keys {
            secret(key.expose());
        }
        for key in &config.auth.keys {
            secret(key.key.expose());
            if let Some(upstream) = &key.upstream_key {
                secret(upstream.expose());
            }
        }
        match &config.artifacts.store {
            StoreConfig::Local { secret: Some(s), .. } => secret(s.expose()),
            StoreConfig::Local { .. } => {}
            // The access key id is public: every presigned link carries it.
            StoreConfig::S3(s3) => secret(s3.secret_access_key.expose()),
        }
        url_secrets(&config.upstream.base_url, &mut pairs);
        if let Some(key) = &config.state.encryption_key {
            pairs.push((key.expose().to_owned(), MASK.to_owned()));
        }
        // The state store's password (its user name, often `postgres`, is no secret).
        if let Some(password) = Url::parse(config.state.url.expose()).ok().and_then(|u| u.password().map(str::to_owned))
        {
            pairs.push((password, MASK.to_owned()));
        }
        for server in &config.mcp_servers {
            server_secrets(server, &mut pairs);
            // What `inherit_env` hands a child is the gateway's own: as secret as the rest.
            if let McpTransportConfig::Stdio { inherit_env, .. } = &server.transport {
                for (name, value) in std::env::vars() {
                    let listed = inherit_env.iter().any(|e| match e.strip_suffix('*') {
                        Some(prefix) => name.starts_with(prefix),
                        None => name == *e,
                    });
                    if listed {
                        pairs.push((value, MASK.to_owned()));
                    }
                }
            }
        }
        Self::new(pairs)
    }

    /// Every string inside `value` scrubbed in place.
    pub fn scrub_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(clean) = self.scrub(s) {
                    *s = clean;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.scrub_json(v)),
            _ => {}
        }
    }

    /// [`scrub_json`](Self::scrub_json), leaving the base64 of binary contents (string values
    /// of `data` and `blob` keys, as MCP carries images, audio and blobs) as it is.
    pub fn scrub_json_but_binary(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json_but_binary(v)),
            serde_json::Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if !(v.is_string() && (key == "data" || key == "blob")) {
                        self.scrub_json_but_binary(v);
                    }
                }
            }
            other => self.scrub_json(other),
        }
    }

    /// `text` with every secret replaced.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for (needle, replacement) in &self.pairs {
            if out.contains(needle.as_str()) {
                out = Cow::Owned(out.replace(needle.as_str(), replacement));
            }
        }
        out
    }

    /// Whether there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

fn server_secrets(server: &McpServerConfig, out: &mut Vec<(String, String)>) {
    if let Some(secret) = server.oauth.as_ref().and_then(|o| o.client_secret.as_ref()) {
        out.push((secret.expose().to_owned(), MASK.to_owned()));
    }
    match &server.transport {
        McpTransportConfig::StreamableHttp { url, headers } | McpTransportConfig::Sse { url, headers } => {
            url_secrets(url, out);
            for (name, value) in headers {
                let value = value.expose();
                value_secrets(name, value, out);
                // `Bearer <token>`: the token alone is the secret too.
                if let Some((_, token)) = value.split_once(' ')
                    && (secret_name(name) || token.len() >= LONG_VALUE)
                {
                    out.push((token.trim().to_owned(), MASK.to_owned()));
                }
            }
        }
        McpTransportConfig::Stdio { env, args, .. } => {
            for (name, value) in env {
                value_secrets(name, value, out);
            }
            // `--token x`, `--api-key=x`, `postgres://user:pw@host/db`.
            let mut previous = "";
            for arg in args {
                match arg.split_once('=') {
                    Some((flag, value)) if flag.starts_with('-') => value_secrets(flag, value, out),
                    _ if previous.starts_with('-') && secret_name(previous) => value_secrets(previous, arg, out),
                    // A plain argument (a package, a path) is no secret, but a URL in it may hold one.
                    _ => {
                        if let Some(url) = Url::parse(arg).ok().filter(|_| arg.contains("://")) {
                            url_secrets(&url, out);
                        }
                    }
                }
                previous = arg;
            }
        }
        McpTransportConfig::InProcess => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_in_a_urls_user_name_is_a_secret_and_a_short_name_is_not() {
        let mut out = Vec::new();
        url_secrets(&Url::parse("https://ghp_0123456789abcdefghij@git.example/r").unwrap(), &mut out);
        assert!(out.iter().any(|(secret, _)| secret == "ghp_0123456789abcdefghij"), "{out:?}");
        let mut out = Vec::new();
        url_secrets(&Url::parse("postgresql://postgres@localhost/db").unwrap(), &mut out);
        assert!(out.iter().all(|(secret, _)| secret != "postgres"), "{out:?}");
        let mut out = Vec::new();
        url_secrets(&Url::parse("https://k3y@api.example/mcp").unwrap(), &mut out);
        assert!(out.iter().any(|(secret, _)| secret == "k3y"), "a user name alone on a web URL is a key: {out:?}");
    }

    #[test]
    fn urls_lose_userinfo_and_query_values() {
        let url = Url::parse("https://bob:hunter22@mcp.example/mcp?token=abc123&v=2#frag").unwrap();
        assert_eq!(redact_url(&url), "https://***:***@mcp.example/mcp?token=***&v=***");
        let plain = Url::parse("http://h:1/mcp").unwrap();
        assert_eq!(redact_url(&plain), "http://h:1/mcp");
    }

    #[test]
    fn stdio_args_env_and_headers_give_their_secrets_only() {
        let yaml = "mcpServers:\n  db:\n    command: npx\n    args: [\"-y\", \"@scope/server-postgres@1.2.3\", \"postgres://app:pg-pass-991@db:5432/x\", \"--api-key\", \"key-in-args-77\", \"--token=tok-in-args-88\"]\n    env: {DATABASE_URL: \"mysql://u:my-pass-123@h/db\", DEBUG: \"true\", GH_TOKEN: \"ghp-1234\"}\n  web:\n    url: http://h/mcp?mode=stream&key=k-123456\n    headers: {Accept: application/json, X-Api-Key: hdr-key-42}\n";
        let config = crate::config::load_str(yaml, &std::collections::HashMap::<String, String>::new()).unwrap();
        let r = Redactor::for_config(&config);
        let text = "pg-pass-991 key-in-args-77 tok-in-args-88 my-pass-123 ghp-1234 k-123456 hdr-key-42";
        assert_eq!(r.scrub(text), "*** *** *** *** *** *** ***");
        let harmless =
            "npx -y @scope/server-postgres@1.2.3 DEBUG=true Accept: application/json mode=stream app postgres://";
        assert_eq!(r.scrub(harmless), harmless, "no word that is not a secret is touched");
        assert!(!format!("{r:?}").contains("pass"), "Debug shows no secret");
    }

    #[test]
    fn scrubs_whole_urls_then_single_secrets() {
        let url = Url::parse("http://127.0.0.1:9/mcp?token=s3cr%2Ft&v=1").unwrap();
        let mut pairs = vec![("sk-master".to_owned(), MASK.to_owned()), ("x".to_owned(), MASK.to_owned())];
        url_secrets(&url, &mut pairs);
        let r = Redactor::new(pairs);
        let text =
            "error sending request for url (http://127.0.0.1:9/mcp?token=s3cr%2Ft&v=1); key sk-master; s3cr/t; x";
        assert_eq!(
            r.scrub(text),
            "error sending request for url (http://127.0.0.1:9/mcp?token=***&v=***); key ***; ***; x",
            "short values are left alone"
        );
        assert!(matches!(r.scrub("nothing here"), Cow::Borrowed(_)));
    }
}
