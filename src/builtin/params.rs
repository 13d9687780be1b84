//! The built-in tools' parameters: typed, with the JSON Schemas the model sees generated from
//! them (doc comments become descriptions).

use rmcp::schemars::JsonSchema;
use serde::Deserialize;

/// `minio_list_objects`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct ListArgs {
    /// Only files under this sub-prefix, e.g. `reports/`.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// `minio_upload_object`: exactly one of `text` and `base64`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct UploadArgs {
    /// Object key, e.g. `reports/q3.txt`.
    pub key: String,
    /// The content, as text.
    #[serde(default)]
    pub text: Option<String>,
    /// The content, base64-encoded bytes.
    #[serde(default)]
    pub base64: Option<String>,
    /// MIME type (default: from the key's extension, else `text/plain` for text and
    /// `application/octet-stream` for bytes).
    #[serde(default)]
    pub content_type: Option<String>,
}

/// The tools that take one file key.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct KeyArgs {
    /// Object key, e.g. `reports/q3.txt`.
    pub key: String,
}

/// `read_artifact`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct ReadArgs {
    /// The artifact's key (from a link or a `[… stored as …]` marker).
    pub key: String,
    /// Byte offset to start at.
    #[serde(default)]
    pub offset: Option<u64>,
    /// Bytes to read (at most 16 KiB).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub length: Option<u64>,
    /// Return the lines containing this text instead.
    #[serde(default)]
    pub grep: Option<String>,
}

/// `list_mcp_tools`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct ListToolsArgs {
    /// Only this server's tools.
    #[serde(default)]
    pub server: Option<String>,
}

/// `list_resources`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct ListResourcesArgs {
    /// Only this server's resources.
    #[serde(default)]
    pub server: Option<String>,
}

/// `read_resource`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct ReadResourceArgs {
    /// The resource's URI, as `list_resources` shows it (or one a listed template makes).
    pub uri: String,
}
