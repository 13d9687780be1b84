//! `auth:` — who may call the gateway: plain keys, keys with a tool policy and a user, the
//! identity forwarded by Open WebUI, and the rule that an open gateway must be deliberate.

use std::net::SocketAddr;

use super::{Problems, Secret, ToolSelection};

/// A key with its own tool policy.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// The key.
    pub key: Secret,
    /// What requests with this key may use.
    pub selection: ToolSelection,
    /// Who requests with this key act for.
    pub user: UserIdentity,
    /// Whether the user Open WebUI forwards with this key is trusted.
    pub trust_user_headers: bool,
    /// Sent upstream instead of `upstream.api_key` for this key's requests.
    pub upstream_key: Option<Secret>,
    /// More tools that need approval in this key's chats.
    pub approval: Option<std::sync::Arc<ApprovalRule>>,
}

/// Which tool calls wait for the user's approval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalRule {
    /// Exposed-name globs.
    pub require: Vec<String>,
    /// Tools annotated `destructiveHint: true` (and not `readOnlyHint`).
    pub destructive: bool,
}

impl ApprovalRule {
    /// Whether this rule asks for anything.
    pub fn is_empty(&self) -> bool {
        self.require.is_empty() && !self.destructive
    }
}

/// The rule from its raw form; a `ttl` where only the top level takes one is a problem.
pub(super) fn approval_rule(raw: super::raw::RawApproval, at: &str, top: bool, p: &mut Problems) -> ApprovalRule {
    if !top && raw.ttl.is_some() {
        p.push(format!("{at}.ttl"), "only the top-level approval takes a ttl");
    }
    for (i, glob) in raw.require.iter().enumerate() {
        if glob.trim().is_empty() {
            p.push(format!("{at}.require[{i}]"), "must name tools (an exposed-name glob like github__delete_*)");
        }
    }
    ApprovalRule { require: raw.require, destructive: raw.destructive.unwrap_or(false) }
}

/// Who a request acts for, as MCP servers' `user_headers` templates see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserIdentity {
    /// `{{user.id}}`.
    pub id: Option<String>,
    /// `{{user.name}}`.
    pub name: Option<String>,
    /// `{{user.email}}`.
    pub email: Option<String>,
    /// `{{user.role}}`.
    pub role: Option<String>,
    /// `{{chat.id}}`.
    pub chat_id: Option<String>,
    /// The caller's own folder below `files/` for the built-in storage tools (not a template
    /// placeholder): set by authentication from the key (a key with a tool policy) and the
    /// user; `None` for an unrestricted caller without a user, who sees all of `files/`.
    pub files: Option<String>,
    /// Whose accounts on per-user OAuth servers this caller uses (not a template placeholder):
    /// an opaque digest of the presented key and the user, set by authentication when a server
    /// is per-user. The same user behind another key is another account holder: a key that
    /// names users cannot reach the accounts connected through another key.
    #[serde(default)]
    pub account: Option<String>,
    /// The gateway's address as this caller's person reaches it (`http.public_url`, else the
    /// request's scheme and `Host`), for the sign-in links a per-user server hands out.
    #[serde(default)]
    pub public_url: Option<String>,
}

/// Longest identity value put into a header.
pub const MAX_IDENTITY_VALUE: usize = 256;

/// Whether `value` may go into an HTTP header: printable, no CR/LF, not too long.
pub fn header_safe(value: &str) -> bool {
    value.len() <= MAX_IDENTITY_VALUE && !value.chars().any(char::is_control)
}

/// Inbound authentication.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Accepted keys without a policy of their own.
    pub api_keys: Vec<Secret>,
    /// Accepted keys with a tool policy.
    pub keys: Vec<KeyConfig>,
    /// Whether the user Open WebUI forwards is trusted on `api_keys` (or an open gateway).
    pub trust_user_headers: bool,
    /// Serving without keys on a non-loopback address was chosen deliberately (`auth.open`).
    pub open: bool,
}

impl AuthConfig {
    /// Whether no key is configured (the gateway is open).
    pub fn is_open(&self) -> bool {
        self.api_keys.is_empty() && self.keys.is_empty()
    }
}

/// Tool patterns of a policy must say which server they mean: `server__tool` (globs in each
/// part), or a bare tool name when the policy lists its `servers`. A bare `*echo` would
/// otherwise admit any server's look-alike `echo`.
pub(super) fn check_tool_patterns(
    path: &str,
    servers: Option<&Vec<String>>,
    tools: Option<&Vec<String>>,
    p: &mut Problems,
) {
    if servers.is_some() {
        return;
    }
    for pattern in tools.into_iter().flatten() {
        if pattern != "*" && !pattern.contains("__") {
            p.push(
                path,
                format!(
                    "`{pattern}` names no server: write `<server>__{pattern}` (e.g. `*__{pattern}` for every \
                     server, deliberately) or list the policy's `servers`"
                ),
            );
        }
    }
}

/// A gateway without keys on an address other than loopback must be a deliberate choice
/// (`auth.open: true`): it runs tools and spends the upstream's key for anyone who reaches it.
pub fn check_exposure(auth: &AuthConfig, listen: SocketAddr) -> Result<(), String> {
    if auth.is_open() && !auth.open && !listen.ip().is_loopback() {
        return Err(format!(
            "no API key is configured and `listen` is {listen}, which other hosts can reach: anyone there \
             could run every tool. Set auth.api_keys (e.g. - ${{MCP_MIDDLEWARE_API_KEY}}), listen on \
             127.0.0.1, or set auth.open: true to serve without keys deliberately"
        ));
    }
    Ok(())
}

/// The keys with their own policy (`auth.keys`), each checked.
pub(super) fn keys(raw: Vec<super::raw::RawKey>, p: &mut Problems) -> Vec<KeyConfig> {
    let mut keys = Vec::new();
    for (i, k) in raw.into_iter().enumerate() {
        if k.key.trim().is_empty() {
            p.push(format!("auth.keys[{i}].key"), "an API key must not be empty");
        } else {
            let user = k.user.unwrap_or_default();
            let user = UserIdentity {
                id: user.id,
                name: user.name,
                email: user.email,
                role: user.role,
                chat_id: None,
                files: None,
                account: None,
                public_url: None,
            };
            for (field, value) in [("id", &user.id), ("name", &user.name), ("email", &user.email), ("role", &user.role)]
            {
                if value.as_deref().is_some_and(|v| !header_safe(v)) {
                    p.push(
                        format!("auth.keys[{i}].user.{field}"),
                        format!("must be printable text of at most {MAX_IDENTITY_VALUE} characters (no CR/LF)"),
                    );
                }
            }
            check_tool_patterns(&format!("auth.keys[{i}].tools"), k.servers.as_ref(), k.tools.as_ref(), p);
            keys.push(KeyConfig {
                key: Secret(k.key),
                selection: ToolSelection { servers: k.servers, tools: k.tools },
                user,
                trust_user_headers: k.trust_user_headers.unwrap_or(false),
                upstream_key: k.upstream_key.filter(|u| !u.trim().is_empty()).map(Secret),
                approval: k
                    .approval
                    .map(|a| approval_rule(a, &format!("auth.keys[{i}].approval"), false, p))
                    .filter(|a| !a.is_empty())
                    .map(std::sync::Arc::new),
            });
        }
    }
    keys
}
