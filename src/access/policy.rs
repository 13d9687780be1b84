//! Which MCP tools a caller may list and run, and which a chat request gets.
//!
//! [`ToolAccess`] is the one permission check, used by every surface that lists or runs a tool
//! (the chat loop, the REST API, the built-in `list_mcp_tools`): a tool is allowed only when the
//! key's policy (`auth.keys`), the model's policy (`models:` in config, most specific pattern)
//! and the request's controls (`x-mcp-servers: a,b` header, or a body field
//! `"mcp": {"servers": [...], "tools": [...], "enabled": false}` that is removed before the
//! request goes upstream) all allow it. Each level narrows, none widens. `tool_choice: "none"`
//! and Open WebUI's background task requests get no tools.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::{ModelPolicy, ToolSelection};
use crate::mcp::{Catalog, ToolEntry};

/// The tool policy of the key a request was made with (part of its [`super::Caller`]).
#[derive(Debug, Clone)]
pub struct KeyPolicy(pub Arc<ToolSelection>);

/// The header a request narrows its tools with (`x-mcp-servers: a,b` or `none`).
pub const MCP_SERVERS_HEADER: &str = "x-mcp-servers";

/// [`MCP_SERVERS_HEADER`] as a name made once.
static NARROWING: http::HeaderName = http::HeaderName::from_static(MCP_SERVERS_HEADER);

/// Every `x-mcp-servers` value of a request, for [`RequestControls::take`]: the one reader of
/// that header for every surface. A value that is not text is refused rather than ignored (a
/// narrowing the gateway cannot read must never widen a request to every tool); every value
/// counts (a proxy may append one after the client's), each narrowing further.
pub fn narrowing_headers(headers: &http::HeaderMap) -> Result<Vec<&str>, String> {
    headers
        .get_all(&NARROWING)
        .iter()
        .map(|value| value.to_str().map_err(|_| "the x-mcp-servers header must be plain ASCII text".to_owned()))
        .collect()
}

/// Per-request controls taken from the header and the body.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestControls {
    /// The request's own narrowings (each `x-mcp-servers` header, the body's `mcp` field):
    /// all of them apply, none widens another.
    pub rules: Vec<ToolSelection>,
    /// `false` turns injection off for this request.
    pub enabled: Option<bool>,
    /// The client said this is a background task (Open WebUI 0.10+ can send `{{TASK}}` in a
    /// custom header: `X-OpenWebUI-Task`).
    pub background: bool,
}

impl RequestControls {
    /// Reads every `x-mcp-servers` header and removes the body's `mcp` field. A "no" anywhere
    /// (`none`, an empty header, `enabled: false`) wins over any "yes".
    pub fn take(headers: &[&str], body: &mut Map<String, Value>) -> Result<Self, String> {
        let mut controls = RequestControls::default();
        let mut disabled = false;
        for h in headers.iter().map(|h| h.trim()) {
            if h.eq_ignore_ascii_case("none") || h.is_empty() {
                disabled = true;
            } else {
                let servers = h.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
                controls.rules.push(ToolSelection { servers: Some(servers), tools: None });
            }
        }
        if let Some(mcp) = body.remove("mcp") {
            let Value::Object(mcp) = mcp else { return Err("`mcp` must be an object".into()) };
            let list = |key: &str| -> Result<Option<Vec<String>>, String> {
                match mcp.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned).ok_or(format!("`mcp.{key}` must be a list of strings")))
                        .collect::<Result<Vec<_>, _>>()
                        .map(Some),
                    Some(_) => Err(format!("`mcp.{key}` must be a list of strings")),
                }
            };
            let (servers, tools) = (list("servers")?, list("tools")?);
            if servers.is_some() || tools.is_some() {
                controls.rules.push(ToolSelection { servers, tools });
            }
            match mcp.get("enabled") {
                None | Some(Value::Null) => {}
                Some(Value::Bool(false)) => disabled = true,
                Some(Value::Bool(true)) => controls.enabled = Some(true),
                Some(_) => return Err("`mcp.enabled` must be a boolean".into()),
            }
        }
        if disabled {
            controls.enabled = Some(false);
        }
        Ok(controls)
    }
}

/// What one caller may list and run: every rule must allow a tool (key ∩ model ∩ request).
#[derive(Debug, Clone, Default)]
pub struct ToolAccess {
    rules: Vec<ToolSelection>,
    denied: bool,
}

impl ToolAccess {
    /// The access of a request made with `key` (its `auth.keys` policy, if any), for a model
    /// with `model` policy (none on the REST API), narrowed by the request's own controls.
    pub fn new(key: Option<&ToolSelection>, model: Option<&ModelPolicy>, request: &RequestControls) -> Self {
        let mut access = ToolAccess { rules: Vec::new(), denied: request.enabled == Some(false) };
        let own = request.rules.iter();
        for rule in [key, model.map(|m| &m.selection)].into_iter().flatten().chain(own) {
            if rule.servers.is_some() || rule.tools.is_some() {
                access.rules.push(rule.clone());
            }
        }
        access
    }

    /// Whether `entry` may be listed and run.
    pub fn allows(&self, entry: &ToolEntry) -> bool {
        !self.denied && self.rules.iter().all(|rule| allows(rule, entry))
    }

    /// Whether nothing narrows this access (every tool is allowed).
    pub fn is_unrestricted(&self) -> bool {
        !self.denied && self.rules.is_empty()
    }

    /// The allowed entries of `catalog`, in catalog order.
    pub fn visible<'a>(&'a self, catalog: &'a Catalog) -> impl Iterator<Item = &'a Arc<ToolEntry>> + 'a {
        catalog.entries().iter().filter(|e| self.allows(e))
    }

    /// Whether the caller may use `server` at all (its resources, prompts): unrestricted, or
    /// allowed one of its tools.
    pub fn may_use_server(&self, catalog: &Catalog, server: &str) -> bool {
        self.is_unrestricted() || self.visible(catalog).any(|e| e.server == server)
    }
}

/// The policy of the request's model (most specific pattern first).
pub fn model_policy<'a>(body: &Map<String, Value>, models: &'a [ModelPolicy]) -> Option<&'a ModelPolicy> {
    model_policy_named(body.get("model").and_then(Value::as_str).unwrap_or_default(), models)
}

/// The policy of `model` (most specific pattern first).
pub fn model_policy_named<'a>(model: &str, models: &'a [ModelPolicy]) -> Option<&'a ModelPolicy> {
    models.iter().find(|m| glob(&m.pattern, model))
}

/// The tools injected into one request (empty: forward as a plain proxy). These are also the
/// only tools the loop runs for it.
pub fn select(
    catalog: &Catalog,
    body: &Map<String, Value>,
    models: &[ModelPolicy],
    key: Option<&ToolSelection>,
    request: &RequestControls,
) -> Vec<Arc<ToolEntry>> {
    if body.get("tool_choice").and_then(Value::as_str) == Some("none") {
        return Vec::new();
    }
    if request.background || is_background_task(body) {
        return Vec::new();
    }
    let model = model_policy(body, models);
    if request.enabled.is_none() && model.is_some_and(|m| !m.inject) {
        return Vec::new();
    }
    let access = ToolAccess::new(key, model, request);
    let client_names: HashSet<&str> = client_tool_names(body).collect();
    access.visible(catalog).filter(|e| !client_names.contains(e.name.as_str())).cloned().collect()
}

/// Whether the request's model is marked `vision: true` (most specific pattern wins).
pub fn takes_images(body: &Map<String, Value>, models: &[ModelPolicy]) -> bool {
    model_policy(body, models).is_some_and(|m| m.vision)
}

/// Names of the tools the client sent itself (`function` and `custom` tools).
pub fn client_tool_names(body: &Map<String, Value>) -> impl Iterator<Item = &str> {
    tool_names(body.get("tools").and_then(Value::as_array).map_or(&[], Vec::as_slice))
}

/// The names of function and custom tool `definitions`.
pub fn tool_names(definitions: &[Value]) -> impl Iterator<Item = &str> {
    definitions.iter().filter_map(|t| {
        t.get("function").or_else(|| t.get("custom")).and_then(|f| f.get("name")).and_then(Value::as_str)
    })
}

/// A tool pattern names its server and its tool separately, `server__tool` (each part a glob,
/// the tool part matched against the server's original name or the exposed one): `*` in the
/// tool part can never reach into the server part, so `ts__*echo` admits no look-alike tool of
/// another server. A pattern without `__` matches original names of the rule's `servers`
/// only (config validation refuses it without `servers`); `*` alone matches every tool.
fn allows(sel: &ToolSelection, entry: &ToolEntry) -> bool {
    let server_ok = sel.servers.as_ref().is_none_or(|s| s.iter().any(|n| n == &entry.server));
    let tool_ok = sel.tools.as_ref().is_none_or(|t| t.iter().any(|p| tool_matches(p, sel.servers.is_some(), entry)));
    server_ok && tool_ok
}

fn tool_matches(pattern: &str, has_servers: bool, entry: &ToolEntry) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.split_once(crate::mcp::SEPARATOR) {
        Some((server, tool)) => {
            let exposed_tool = entry.name.strip_prefix(entry.server.as_str()).and_then(|t| t.strip_prefix("__"));
            glob(server, &entry.server)
                && (glob(tool, &entry.original_name) || exposed_tool.is_some_and(|t| glob(tool, t)))
        }
        None => has_servers && glob(pattern, &entry.original_name),
    }
}

/// `*` matches any run of characters; everything else is literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (Some((first, tail)), Some((last, inner))) = (parts.split_first(), parts.split_last()) else {
        return false;
    };
    if tail.is_empty() {
        return pattern == text;
    }
    if text.len() < first.len() + last.len() {
        return false;
    }
    let Some(mut rest) = text.strip_prefix(first).and_then(|t| t.strip_suffix(last)) else { return false };
    for part in inner.iter().skip(1) {
        let Some((_, after)) = rest.split_once(part) else { return false };
        rest = after;
    }
    true
}

/// Open WebUI's background requests (title, tags, follow-ups, queries, autocomplete): built by
/// its `routers/tasks.py` as one user message from a prompt template starting `### Task:`, with
/// `stream: false` and no `tools` (Open WebUI strips its `metadata.task` before sending, so the
/// prompt is what a proxy can see). The emoji task's template starts `Your task is to reflect`.
pub fn is_background_task(body: &Map<String, Value>) -> bool {
    if body.get("tools").is_some_and(|t| t.as_array().is_some_and(|a| !a.is_empty())) {
        return false;
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else { return false };
    let Some(last_user) = messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")) else {
        return false;
    };
    let text = match last_user.get("content") {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Array(parts)) => parts.iter().find_map(|p| p.get("text").and_then(Value::as_str)).unwrap_or(""),
        _ => "",
    };
    let text = text.trim_start();
    text.starts_with("### Task:") || text.starts_with("Your task is to reflect the speaker's likely facial expression")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("gpt-4*", "gpt-4o"));
        assert!(glob("*", "anything"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c*e", "abde"));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn request_controls_from_header_and_body() {
        let mut body: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"model": "m", "mcp": {"tools": ["ts__*"]}})).unwrap();
        let c = RequestControls::take(&["a, b"], &mut body).unwrap();
        assert!(!body.contains_key("mcp"), "the control field never goes upstream");
        assert_eq!(c.rules[0].servers.as_deref().unwrap(), ["a", "b"]);
        assert_eq!(c.rules[1].tools.as_deref().unwrap(), ["ts__*"]);
        let mut body = Map::new();
        assert_eq!(RequestControls::take(&["none"], &mut body).unwrap().enabled, Some(false));
        body.insert("mcp".into(), serde_json::json!({"enabled": true}));
        assert_eq!(RequestControls::take(&["none"], &mut body).unwrap().enabled, Some(false), "no wins over yes");
        body.insert("mcp".into(), serde_json::json!({"enabled": "yes"}));
        assert!(RequestControls::take(&[], &mut body).is_err());
    }
}
