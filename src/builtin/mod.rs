//! The built-in tools, served as MCP server `builtin` (in process, handed to the hub by
//! `app.rs`) and runnable on their own over stdio (`mcp-builtin-tools`). They use the artifact
//! store (`artifacts/`) and a read-only view of the tool catalog (`mcp::CatalogView`); the hub
//! knows nothing of them.
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
//! | `list_resources`        | the MCP servers' resources and resource templates             |
//! | `read_resource`         | read one (text inline; binary and long text become artifacts) |
//!
//! Tools are declared with rmcp's `#[tool_router]`; their schemas are generated from the typed
//! parameters in `params.rs`. Storage tools are scoped to the prefix `files/`: a model cannot
//! read or change other data. Within it, each caller has a folder of its own when the gateway
//! names one in the call's `_meta` ([`crate::mcp::FILES_NAMESPACE_META`]: a key with a tool
//! policy, or a user) — its files are listed, read, replaced and deleted there only, and held to
//! a quota of bytes and files; an unrestricted caller without a user sees all of `files/`.
//! Keys that would name the store's own sidecar files (`.meta.json`, `.tmp-`) are refused.
//! `read_artifact` reads only content-addressed artifacts and the caller's files. When the
//! gateway calls `list_mcp_tools` for a restricted caller, the request's `_meta` names the tools
//! that caller may see ([`crate::mcp::VISIBLE_TOOLS_META`]) and nothing else is listed; the
//! resource tools show only the resources of the servers those tools come from (the same rule
//! as the REST API and the `/mcp` facade), through a [`ResourceView`] of the hub.

mod params;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, JsonObject, RequestMetaObject, ServerCapabilities, ServerConfig,
};
use rmcp::{ErrorData as McpError, ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Value, json};

use self::params::{KeyArgs, ListArgs, ListResourcesArgs, ListToolsArgs, ReadArgs, ReadResourceArgs, UploadArgs};
use crate::artifacts::{ArtifactError, ArtifactMeta, ArtifactStore, is_content_key, mime_of, valid_key};
use crate::config::FilesQuota;
use crate::mcp::{CatalogView, FILES_NAMESPACE_META, ResourceView, VISIBLE_TOOLS_META};

/// Prefix of every object the storage tools touch.
pub const FILES_PREFIX: &str = "files/";
/// Most resources (and templates) `list_resources` shows.
const MAX_LISTED: usize = 200;
/// Largest text `read_artifact` returns at once.
const MAX_READ: usize = 16 * 1024;

/// The built-in tool server.
#[derive(Clone)]
pub struct BuiltinTools {
    store: Arc<dyn ArtifactStore>,
    url_ttl: Duration,
    catalog: CatalogView,
    resources: ResourceView,
    quota: FilesQuota,
    /// Uploads check the quota and write as one step, one at a time: parallel uploads cannot
    /// all pass the same check.
    uploads: Arc<tokio::sync::Mutex<()>>,
    tool_router: ToolRouter<Self>,
}

impl BuiltinTools {
    /// Tools on `store`, links valid for `url_ttl`, the catalog seen through `catalog`, each
    /// caller's files held to `quota`.
    pub fn new(store: Arc<dyn ArtifactStore>, url_ttl: Duration, catalog: CatalogView, quota: FilesQuota) -> Self {
        let resources = ResourceView::default();
        Self { store, url_ttl, catalog, resources, quota, uploads: Arc::default(), tool_router: Self::tool_router() }
    }

    /// Shows the servers' resources through `resources` (without: the resource tools find none).
    pub fn with_resources(mut self, resources: ResourceView) -> Self {
        self.resources = resources;
        self
    }

    /// Which servers a call's caller may read resources of: those of the tools its `_meta`
    /// names ([`VISIBLE_TOOLS_META`]), or every server when it names none (an unrestricted
    /// caller).
    fn resource_servers(&self, meta: &RequestMetaObject) -> Option<HashSet<String>> {
        let visible = visible_tools(&meta.0.0)?;
        let catalog = self.catalog.load();
        Some(catalog.entries().iter().filter(|e| visible.contains(&e.name)).map(|e| e.server.clone()).collect())
    }
}

/// The folder a call may use: `files/` or the caller's own `files/<namespace>/`.
struct Folder(String);

impl Folder {
    fn of(meta: &RequestMetaObject) -> Result<Self, McpError> {
        match meta.0.0.get(FILES_NAMESPACE_META) {
            None => Ok(Self(FILES_PREFIX.to_owned())),
            Some(Value::String(ns)) if valid_key(&format!("{FILES_PREFIX}{ns}/x")) && !ns.contains("..") => {
                Ok(Self(format!("{FILES_PREFIX}{ns}/")))
            }
            // A namespace we cannot use limits to nothing rather than to everything.
            Some(_) => Err(McpError::invalid_params("this caller has no usable storage folder", None)),
        }
    }

    /// `<folder><key>`, refusing anything that could leave the folder or name a sidecar file.
    fn key(&self, key: &str) -> Result<String, McpError> {
        let full = format!("{}{}", self.0, key.trim_start_matches('/'));
        let sidecar = full.ends_with(".meta.json") || full.contains(".tmp-");
        if !valid_key(&full) || sidecar {
            return Err(McpError::invalid_params(
                format!("`{key}` is not a valid key (letters, digits, `.`, `_`, `-`, `/` segments; no `..`)"),
                None,
            ));
        }
        Ok(full)
    }

    /// A key as the caller named it.
    fn shown<'a>(&self, key: &'a str) -> &'a str {
        key.strip_prefix(self.0.as_str()).unwrap_or(key)
    }
}

#[tool_router]
impl BuiltinTools {
    #[tool(description = "List stored files (optionally under a sub-prefix).")]
    async fn minio_list_objects(
        &self,
        Parameters(args): Parameters<ListArgs>,
        meta: RequestMetaObject,
    ) -> Result<CallToolResult, McpError> {
        let folder = Folder::of(&meta)?;
        let sub = args.prefix.unwrap_or_default();
        if sub.contains("..") {
            return Err(McpError::invalid_params("`prefix` must not contain `..`", None));
        }
        let objects = self.store.list(&format!("{}{sub}", folder.0), usize::MAX).await.map_err(store_error)?;
        let listed: Vec<Value> = objects.iter().map(|o| json!({"key": folder.shown(&o.key), "size": o.size})).collect();
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

    #[tool(description = "Store a file from `text` or `base64` content; returns a link.")]
    async fn minio_upload_object(
        &self,
        Parameters(args): Parameters<UploadArgs>,
        meta: RequestMetaObject,
    ) -> Result<CallToolResult, McpError> {
        let folder = Folder::of(&meta)?;
        let key = folder.key(&args.key)?;
        let (bytes, default_type) = match (args.text, args.base64) {
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
        let by_extension = mime_of(&key);
        let default_type = if by_extension == "application/octet-stream" { default_type } else { by_extension };
        let content_type = args.content_type.unwrap_or_else(|| default_type.to_owned());
        let meta =
            ArtifactMeta { content_type, size: bytes.len() as u64, source: Some("builtin/minio_upload_object".into()) };
        {
            let _one_at_a_time = self.uploads.lock().await;
            self.check_quota(&folder, &key, meta.size).await?;
            self.store.put(&key, bytes, &meta).await.map_err(store_error)?;
        }
        let url = self.store.url(&key, self.url_ttl).await.map_err(store_error)?;
        Ok(text(format!("uploaded {} ({} bytes): {url}", folder.shown(&key), meta.size)))
    }

    #[tool(description = "Read a stored file: text inline, binary as a link.")]
    async fn minio_download_object(
        &self,
        Parameters(args): Parameters<KeyArgs>,
        meta: RequestMetaObject,
    ) -> Result<CallToolResult, McpError> {
        let key = Folder::of(&meta)?.key(&args.key)?;
        let (bytes, meta) = match self.store.get(&key).await {
            Err(ArtifactError::NotFound(k)) => return Ok(not_found(&k)),
            found => found.map_err(store_error)?,
        };
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

    #[tool(description = "Delete a stored file.")]
    async fn minio_delete_object(
        &self,
        Parameters(args): Parameters<KeyArgs>,
        meta: RequestMetaObject,
    ) -> Result<CallToolResult, McpError> {
        let folder = Folder::of(&meta)?;
        let key = folder.key(&args.key)?;
        // Deleting what is not there says so (S3 itself answers a missing key with success).
        let listed = self.store.list(&key, usize::MAX).await.map_err(store_error)?;
        if !listed.iter().any(|o| o.key == key) {
            return Ok(not_found(&key));
        }
        self.store.delete(&key).await.map_err(store_error)?;
        Ok(text(format!("deleted {}", folder.shown(&key))))
    }

    #[tool(description = "An expiring download link to a stored file.")]
    async fn minio_get_url(
        &self,
        Parameters(args): Parameters<KeyArgs>,
        meta: RequestMetaObject,
    ) -> Result<CallToolResult, McpError> {
        let key = Folder::of(&meta)?.key(&args.key)?;
        if let Err(ArtifactError::NotFound(k)) = self.store.get(&key).await {
            return Ok(not_found(&k));
        }
        Ok(text(self.store.url(&key, self.url_ttl).await.map_err(store_error)?))
    }

    #[tool(
        description = "Read part of a stored artifact (e.g. a long tool output): by `offset`/`length` in bytes, or the lines matching `grep`."
    )]
    async fn read_artifact(
        &self,
        Parameters(args): Parameters<ReadArgs>,
        meta: RequestMetaObject,
    ) -> Result<CallToolResult, McpError> {
        let folder = Folder::of(&meta)?;
        let key = args.key;
        let own_file = key.starts_with(folder.0.as_str()) && !key.ends_with(".meta.json");
        let readable = valid_key(&key) && (own_file || is_content_key(&key));
        if !readable {
            return Err(McpError::invalid_params(format!("`{key}` is not an artifact key"), None));
        }
        let (bytes, _) = match self.store.get(&key).await {
            Err(ArtifactError::NotFound(k)) => return Ok(not_found(&k)),
            found => found.map_err(store_error)?,
        };
        let all = String::from_utf8_lossy(&bytes);
        if let Some(pattern) = args.grep {
            let hits: Vec<String> = all
                .lines()
                .enumerate()
                .filter(|(_, l)| l.contains(pattern.as_str()))
                .take(200)
                .map(|(i, l)| format!("{}: {}", i + 1, l.chars().take(300).collect::<String>()))
                .collect();
            return Ok(text(if hits.is_empty() { format!("no line contains `{pattern}`") } else { hits.join("\n") }));
        }
        let offset = usize::try_from(args.offset.unwrap_or(0)).unwrap_or(usize::MAX);
        let length = usize::try_from(args.length.unwrap_or(4096)).unwrap_or(usize::MAX).min(MAX_READ);
        let total = all.len();
        let start = floor(&all, offset.min(total));
        let end = floor(&all, start.saturating_add(length).min(total));
        let mut result = text(all.get(start..end).unwrap_or_default().to_owned());
        result.structured_content = Some(json!({"offset": start, "length": end - start, "total": total}));
        Ok(result)
    }

    #[tool(description = "The MCP tools available, by server, with one line each.")]
    async fn list_mcp_tools(
        &self,
        Parameters(args): Parameters<ListToolsArgs>,
        meta: RequestMetaObject,
    ) -> Result<CallToolResult, McpError> {
        let visible = visible_tools(&meta.0.0);
        let catalog = self.catalog.load();
        let mut out = String::new();
        let mut current = "";
        let shown = catalog
            .entries()
            .iter()
            .filter(|e| args.server.as_ref().is_none_or(|s| *s == e.server))
            .filter(|e| visible.as_ref().is_none_or(|v| v.contains(&e.name)));
        for entry in shown {
            if entry.server != current {
                out.push_str(&format!("{}:\n", entry.server));
                current = &entry.server;
            }
            let first_line = entry.description.as_deref().unwrap_or_default().lines().next().unwrap_or("");
            out.push_str(&format!("  {} — {first_line}\n", entry.name));
        }
        Ok(text(if out.is_empty() { "no tools".to_owned() } else { out }))
    }

    #[tool(
        description = "The MCP servers' resources (documents, table schemas, files…) and resource templates, one per line: URI, name, type, description. Read one with read_resource."
    )]
    async fn list_resources(
        &self,
        Parameters(args): Parameters<ListResourcesArgs>,
        meta: RequestMetaObject,
    ) -> Result<CallToolResult, McpError> {
        let servers = self.resource_servers(&meta);
        let may_use = |server: &str| {
            servers.as_ref().is_none_or(|s| s.contains(server)) && args.server.as_ref().is_none_or(|s| s == server)
        };
        let (resources, templates) = self.resources.list(may_use).await;
        let mut out = String::new();
        for item in resources.iter().take(MAX_LISTED) {
            let r = &item.resource;
            out.push_str(&format!("{} — {} [{}]", r.uri, r.name, r.mime_type.as_deref().unwrap_or("?")));
            if let Some(d) = r.description.as_deref().and_then(|d| d.lines().next()) {
                out.push_str(&format!(": {d}"));
            }
            out.push('\n');
        }
        if resources.len() > MAX_LISTED {
            out.push_str(&format!("… and {} more (name a `server` to narrow)\n", resources.len() - MAX_LISTED));
        }
        if !templates.is_empty() {
            out.push_str("templates (fill in the {…} parts):\n");
            for item in templates.iter().take(MAX_LISTED) {
                let t = &item.template;
                out.push_str(&format!("{} — {}", t.uri_template, t.name));
                if let Some(d) = t.description.as_deref().and_then(|d| d.lines().next()) {
                    out.push_str(&format!(": {d}"));
                }
                out.push('\n');
            }
        }
        Ok(text(if out.is_empty() { "no resources".to_owned() } else { out }))
    }

    #[tool(description = "Read an MCP resource by URI (from list_resources): text inline, binary as a link.")]
    async fn read_resource(
        &self,
        Parameters(args): Parameters<ReadResourceArgs>,
        meta: RequestMetaObject,
    ) -> Result<CallToolResult, McpError> {
        let servers = self.resource_servers(&meta);
        let may_use = |server: &str| servers.as_ref().is_none_or(|s| s.contains(server));
        match self.resources.read(&args.uri, may_use).await {
            // Text and binary contents as embedded resources: the gateway keeps short text
            // inline and turns binary and long text into artifacts, as for any tool.
            Ok(read) => Ok(CallToolResult::success(read.contents.into_iter().map(ContentBlock::resource).collect())),
            Err(e) => Ok(CallToolResult::error(vec![ContentBlock::text(e.log_text())])),
        }
    }
}

impl BuiltinTools {
    /// Refuses an upload that would take the caller past its quota (`key` replaced by `size`
    /// bytes). The quota holds for the key's whole folder too (`files/k-…/`), so a key that may
    /// name users cannot multiply its room by naming new ones.
    async fn check_quota(&self, folder: &Folder, key: &str, size: u64) -> Result<(), McpError> {
        if folder.0 == FILES_PREFIX {
            // An unrestricted caller without a user: the operator's own, not held to a quota.
            return Ok(());
        }
        let top = folder.0.strip_prefix(FILES_PREFIX).and_then(|rest| rest.split('/').next()).unwrap_or_default();
        let scope = format!("{FILES_PREFIX}{top}/");
        let objects = self.store.list(&scope, usize::MAX).await.map_err(store_error)?;
        let replaced = objects.iter().find(|o| o.key == key);
        let used: u64 = objects.iter().filter(|o| o.key != key).map(|o| o.size).sum();
        let count = objects.len() + usize::from(replaced.is_none());
        if used.saturating_add(size) > self.quota.bytes || count > self.quota.count {
            return Err(McpError::invalid_params(
                format!(
                    "storage quota reached ({} files, {} of {} bytes used); delete files first",
                    objects.len(),
                    used,
                    self.quota.bytes
                ),
                None,
            ));
        }
        Ok(())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for BuiltinTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mcp-middleware-builtin", env!("CARGO_PKG_VERSION")))
    }
}

/// The names a request's `_meta` limits `list_mcp_tools` to (`None`: no limit).
fn visible_tools(meta: &JsonObject) -> Option<HashSet<String>> {
    let names = meta.get(VISIBLE_TOOLS_META)?;
    // A malformed list limits to nothing rather than to everything.
    Some(names.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect())
}

/// The largest char boundary at or below `i`.
fn floor(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn text(t: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(t)])
}

/// A missing object is the tool's own answer (`isError`), not a refused call: the arguments
/// were well formed.
fn not_found(key: &str) -> CallToolResult {
    let shown = key.rsplit_once('/').map_or(key, |(_, name)| name);
    CallToolResult::error(vec![ContentBlock::text(format!("no stored object `{shown}`"))])
}

fn store_error(e: ArtifactError) -> McpError {
    match e {
        ArtifactError::NotFound(k) => {
            let shown = k.rsplit_once('/').map_or(k.as_str(), |(_, name)| name);
            McpError::internal_error(format!("no stored object `{shown}`"), None)
        }
        ArtifactError::InvalidKey(k) => McpError::invalid_params(format!("invalid key `{k}`"), None),
        ArtifactError::Unavailable(m) => McpError::internal_error(format!("storage unavailable: {m}"), None),
    }
}
