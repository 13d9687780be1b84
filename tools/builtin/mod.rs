//! The built-in tools, served to the catalog as server `builtin` (in process) and runnable on
//! their own over stdio (`mcp-builtin-tools`). They depend on two small traits only — the
//! [`ArtifactStore`] and a [`ToolDirectory`] — never on the gateway.
//!
//! | tool                    | what it does                                                  |
//! |-------------------------|---------------------------------------------------------------|
//! | `minio_list_objects`    | list files under the tools' prefix (optionally a sub-prefix)  |
//! | `minio_upload_object`   | store text or base64 bytes as a file; returns its link        |
//! | `minio_download_object` | read a file (text inline, binary as a link)                   |
//! | `minio_delete_object`   | delete a file                                                 |
//! | `minio_get_url`         | an expiring link to a file                                    |
//! | `read_artifact`         | page through a stored artifact (offset/length, or grep)       |
//! | `list_mcp_tools`        | the tool catalog by server, with descriptions                 |
//!
//! Storage tools are scoped to the prefix `files/`: a model cannot read or change other data.
//! `read_artifact` reads only content-addressed artifacts and those files. When the gateway
//! calls `list_mcp_tools` for a restricted caller, the request's `_meta` names the tools that
//! caller may see ([`VISIBLE_TOOLS_META`]) and nothing else is listed.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode, Implementation, JsonObject,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::artifacts::{ArtifactError, ArtifactMeta, ArtifactStore, valid_key};

/// Prefix of every object the storage tools touch.
pub const FILES_PREFIX: &str = "files/";
/// `_meta` key of a `tools/call` naming the tools its caller may see (a JSON array of names).
pub const VISIBLE_TOOLS_META: &str = "mcp-middleware/visible_tools";

/// The `_meta` object that limits `list_mcp_tools` to `names`.
pub fn visible_tools_meta(names: Vec<String>) -> JsonObject {
    let mut meta = JsonObject::new();
    meta.insert(VISIBLE_TOOLS_META.into(), Value::Array(names.into_iter().map(Value::String).collect()));
    meta
}

/// The names a request's `_meta` limits `list_mcp_tools` to (`None`: no limit).
fn visible_tools(meta: &JsonObject) -> Option<std::collections::HashSet<String>> {
    let names = meta.get(VISIBLE_TOOLS_META)?;
    // A malformed list limits to nothing rather than to everything.
    Some(names.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect())
}

/// Largest text `read_artifact` returns at once.
const MAX_READ: usize = 16 * 1024;

/// One tool of the catalog, as `list_mcp_tools` shows it.
#[derive(Debug, Clone)]
pub struct DirectoryEntry {
    /// Server name.
    pub server: String,
    /// Exposed name.
    pub name: String,
    /// Description.
    pub description: String,
}

/// Where `list_mcp_tools` reads the catalog from.
pub trait ToolDirectory: Send + Sync {
    /// Every tool, in catalog order.
    fn tools(&self) -> Vec<DirectoryEntry>;
}

/// No other tools (the standalone server).
pub struct EmptyDirectory;

impl ToolDirectory for EmptyDirectory {
    fn tools(&self) -> Vec<DirectoryEntry> {
        Vec::new()
    }
}

/// The built-in tool server.
#[derive(Clone)]
pub struct BuiltinTools {
    store: Arc<dyn ArtifactStore>,
    url_ttl: Duration,
    directory: Arc<dyn ToolDirectory>,
}

impl BuiltinTools {
    /// Tools on `store`, links valid for `url_ttl`, catalog from `directory`.
    pub fn new(store: Arc<dyn ArtifactStore>, url_ttl: Duration, directory: Arc<dyn ToolDirectory>) -> Self {
        Self { store, url_ttl, directory }
    }

    async fn dispatch(
        &self,
        name: &str,
        args: &JsonObject,
        visible: Option<std::collections::HashSet<String>>,
    ) -> Result<CallToolResult, McpError> {
        match name {
            "minio_list_objects" => self.list(args).await,
            "minio_upload_object" => self.upload(args).await,
            "minio_download_object" => self.download(args).await,
            "minio_delete_object" => {
                let key = file_key(args)?;
                self.store.delete(&key).await.map_err(store_error)?;
                Ok(text(format!("deleted {}", &key[FILES_PREFIX.len()..])))
            }
            "minio_get_url" => {
                let key = file_key(args)?;
                self.store.get(&key).await.map_err(store_error)?;
                Ok(text(self.store.url(&key, self.url_ttl).await.map_err(store_error)?))
            }
            "read_artifact" => self.read_artifact(args).await,
            "list_mcp_tools" => Ok(self.list_tools_text(opt_str(args, "server")?, visible)),
            other => Err(McpError::new(ErrorCode::INVALID_PARAMS, format!("tool not found: {other}"), None)),
        }
    }

    async fn list(&self, args: &JsonObject) -> Result<CallToolResult, McpError> {
        let sub = opt_str(args, "prefix")?.unwrap_or_default();
        if sub.contains("..") {
            return Err(McpError::invalid_params("`prefix` must not contain `..`", None));
        }
        let objects = self.store.list(&format!("{FILES_PREFIX}{sub}")).await.map_err(store_error)?;
        let listed: Vec<Value> =
            objects.iter().map(|o| json!({"key": &o.key[FILES_PREFIX.len()..], "size": o.size})).collect();
        let mut result = text(if listed.is_empty() {
            "no objects".to_owned()
        } else {
            listed
                .iter()
                .map(|o| format!("{} ({} bytes)", o["key"].as_str().unwrap_or(""), o["size"]))
                .collect::<Vec<_>>()
                .join("\n")
        });
        result.structured_content = Some(json!({"objects": listed}));
        Ok(result)
    }

    async fn upload(&self, args: &JsonObject) -> Result<CallToolResult, McpError> {
        let key = file_key(args)?;
        let (bytes, default_type) = match (opt_str(args, "text")?, opt_str(args, "base64")?) {
            (Some(t), None) => (Bytes::from(t.into_bytes()), "text/plain"),
            (None, Some(b)) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .map_err(|e| McpError::invalid_params(format!("`base64` is not valid base64: {e}"), None))?;
                (Bytes::from(raw), "application/octet-stream")
            }
            _ => return Err(McpError::invalid_params("give exactly one of `text` or `base64`", None)),
        };
        // Without a given type, the key's extension decides when it is a known one.
        let by_extension = crate::artifacts::mime_of(&key);
        let default_type = if by_extension == "application/octet-stream" { default_type } else { by_extension };
        let content_type = opt_str(args, "content_type")?.unwrap_or_else(|| default_type.to_owned());
        let meta =
            ArtifactMeta { content_type, size: bytes.len() as u64, source: Some("builtin/minio_upload_object".into()) };
        self.store.put(&key, bytes, &meta).await.map_err(store_error)?;
        let url = self.store.url(&key, self.url_ttl).await.map_err(store_error)?;
        Ok(text(format!("uploaded {} ({} bytes): {url}", &key[FILES_PREFIX.len()..], meta.size)))
    }

    async fn download(&self, args: &JsonObject) -> Result<CallToolResult, McpError> {
        let key = file_key(args)?;
        let (bytes, meta) = self.store.get(&key).await.map_err(store_error)?;
        let is_text = meta.content_type.starts_with("text/") || meta.content_type.contains("json");
        if is_text && let Ok(t) = std::str::from_utf8(&bytes) {
            return Ok(text(t.to_owned()));
        }
        let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let block = if meta.content_type.starts_with("image/") {
            ContentBlock::image(data, meta.content_type)
        } else {
            ContentBlock::resource(rmcp::model::ResourceContents::BlobResourceContents {
                uri: format!("artifact://{key}"),
                mime_type: Some(meta.content_type),
                blob: data,
                meta: None,
            })
        };
        Ok(CallToolResult::success(vec![block]))
    }

    async fn read_artifact(&self, args: &JsonObject) -> Result<CallToolResult, McpError> {
        let key = req_str(args, "key")?;
        let readable = valid_key(&key) && (key.starts_with(FILES_PREFIX) || is_content_key(&key));
        if !readable {
            return Err(McpError::invalid_params(format!("`{key}` is not an artifact key"), None));
        }
        let (bytes, _) = self.store.get(&key).await.map_err(store_error)?;
        let all = String::from_utf8_lossy(&bytes);
        if let Some(pattern) = opt_str(args, "grep")? {
            let hits: Vec<String> = all
                .lines()
                .enumerate()
                .filter(|(_, l)| l.contains(pattern.as_str()))
                .take(200)
                .map(|(i, l)| format!("{}: {}", i + 1, l.chars().take(300).collect::<String>()))
                .collect();
            return Ok(text(if hits.is_empty() { format!("no line contains `{pattern}`") } else { hits.join("\n") }));
        }
        let offset = opt_u64(args, "offset")?.unwrap_or(0) as usize;
        let length = (opt_u64(args, "length")?.unwrap_or(4096) as usize).min(MAX_READ);
        let total = all.len();
        let start = floor(&all, offset.min(total));
        let end = floor(&all, (start + length).min(total));
        let mut result = text(all[start..end].to_owned());
        result.structured_content = Some(json!({"offset": start, "length": end - start, "total": total}));
        Ok(result)
    }

    fn list_tools_text(
        &self,
        server: Option<String>,
        visible: Option<std::collections::HashSet<String>>,
    ) -> CallToolResult {
        let mut out = String::new();
        let mut current = String::new();
        let shown = self
            .directory
            .tools()
            .into_iter()
            .filter(|e| server.as_ref().is_none_or(|s| *s == e.server))
            .filter(|e| visible.as_ref().is_none_or(|v| v.contains(&e.name)));
        for entry in shown {
            if entry.server != current {
                out.push_str(&format!("{}:\n", entry.server));
                current = entry.server.clone();
            }
            let first_line = entry.description.lines().next().unwrap_or("");
            out.push_str(&format!("  {} — {first_line}\n", entry.name));
        }
        text(if out.is_empty() { "no tools".to_owned() } else { out })
    }
}

fn floor(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn is_content_key(key: &str) -> bool {
    let hash = key.split('.').next().unwrap_or("");
    hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()) && !key.contains('/')
}

fn text(t: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(t)])
}

fn store_error(e: ArtifactError) -> McpError {
    match e {
        ArtifactError::NotFound(k) => {
            McpError::invalid_params(format!("no object `{}`", k.strip_prefix(FILES_PREFIX).unwrap_or(&k)), None)
        }
        ArtifactError::InvalidKey(k) => McpError::invalid_params(format!("invalid key `{k}`"), None),
        ArtifactError::Unavailable(m) => McpError::internal_error(format!("storage unavailable: {m}"), None),
    }
}

fn req_str(args: &JsonObject, key: &str) -> Result<String, McpError> {
    opt_str(args, key)?.ok_or_else(|| McpError::invalid_params(format!("missing `{key}`"), None))
}

fn opt_str(args: &JsonObject, key: &str) -> Result<Option<String>, McpError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(McpError::invalid_params(format!("`{key}` must be a string"), None)),
    }
}

fn opt_u64(args: &JsonObject, key: &str) -> Result<Option<u64>, McpError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| McpError::invalid_params(format!("`{key}` must be a non-negative integer"), None)),
    }
}

/// `files/<key>` from the `key` argument, refusing anything that could leave the prefix.
fn file_key(args: &JsonObject) -> Result<String, McpError> {
    let key = req_str(args, "key")?;
    let full = format!("{FILES_PREFIX}{}", key.trim_start_matches('/'));
    if !valid_key(&full) {
        return Err(McpError::invalid_params(
            format!("`{key}` is not a valid key (letters, digits, `.`, `_`, `-`, `/` segments; no `..`)"),
            None,
        ));
    }
    Ok(full)
}

fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

/// The tool definitions.
pub fn tool_list() -> Vec<Tool> {
    let key = json!({"type": "string", "description": "Object key, e.g. `reports/q3.txt`"});
    vec![
        Tool::new(
            "minio_list_objects",
            "List stored files (optionally under a sub-prefix).",
            schema(json!({"type": "object", "properties": {"prefix": {"type": "string"}}})),
        ),
        Tool::new(
            "minio_upload_object",
            "Store a file from `text` or `base64` content; returns a link.",
            schema(json!({"type": "object", "properties": {"key": key, "text": {"type": "string"},
                "base64": {"type": "string"}, "content_type": {"type": "string"}}, "required": ["key"]})),
        ),
        Tool::new(
            "minio_download_object",
            "Read a stored file: text inline, binary as a link.",
            schema(json!({"type": "object", "properties": {"key": key}, "required": ["key"]})),
        ),
        Tool::new(
            "minio_delete_object",
            "Delete a stored file.",
            schema(json!({"type": "object", "properties": {"key": key}, "required": ["key"]})),
        ),
        Tool::new(
            "minio_get_url",
            "An expiring download link to a stored file.",
            schema(json!({"type": "object", "properties": {"key": key}, "required": ["key"]})),
        ),
        Tool::new(
            "read_artifact",
            "Read part of a stored artifact (e.g. a long tool output): by `offset`/`length` in bytes, or the lines matching `grep`.",
            schema(
                json!({"type": "object", "properties": {"key": {"type": "string"}, "offset": {"type": "integer", "minimum": 0},
                "length": {"type": "integer", "minimum": 1}, "grep": {"type": "string"}}, "required": ["key"]}),
            ),
        ),
        Tool::new(
            "list_mcp_tools",
            "List every available tool by server, with descriptions.",
            schema(json!({"type": "object", "properties": {"server": {"type": "string"}}})),
        ),
    ]
}

impl ServerHandler for BuiltinTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mcp-middleware-builtin", env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tool_list()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.clone().unwrap_or_default();
        let visible =
            visible_tools(&context.meta.0.0).or_else(|| request.meta.as_ref().and_then(|m| visible_tools(&m.0.0)));
        Ok(self.dispatch(request.name.as_ref(), &args, visible).await?.into())
    }
}
