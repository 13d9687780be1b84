//! Inbound authentication: `Authorization: Bearer <key>` or `x-api-key: <key>`, compared in
//! constant time against `auth.api_keys` and `auth.keys`. With no key configured the gateway is
//! open. The caller ([`Caller`]: the key's tool policy, the user, the key's upstream key) goes
//! into the request's extensions.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, header};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::config::{AuthConfig, KeyConfig, UserIdentity, header_safe};

pub use crate::access::{Caller, KeyPolicy};

/// On every route but health: lets a request through only with a configured key, and leaves
/// the [`Caller`] (policy, identity with its files folder, upstream key) in the request's
/// extensions, where every surface reads it.
pub fn admit(state: &AppState, req: &mut Request) -> Result<(), ApiError> {
    let caller = caller_of(state, req.headers())?;
    req.extensions_mut().insert(caller);
    Ok(())
}

/// The [`Caller`] of a request with these headers (its key, its user, its files folder, the
/// account holder it acts as); `Err` for a missing or unknown key. The console builds its
/// callers here too, from the key a session signed in with.
pub fn caller_of(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let mut caller = authenticate(&state.config.auth, headers)?;
    let restricted = caller.policy.is_some().then(|| presented_key(headers)).flatten();
    caller.identity.files = files_namespace(restricted, caller.identity.id.as_deref());
    // Who owns what this request may leave waiting (a parked chat, a held question) and whose
    // per-user connections it uses: always named, since any tool may ask a question.
    caller.identity.account = Some(account_of(presented_key(headers), caller.identity.id.as_deref()));
    if state.needs_account {
        caller.identity.public_url = Some(public_url(&state.config.http, headers));
    }
    Ok(caller)
}

/// Checks the presented key (`Err` for a missing or unknown one when keys are configured).
pub fn authenticate(auth: &AuthConfig, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if auth.is_open() {
        let identity = if auth.trust_user_headers {
            forwarded_user(headers, UserIdentity::default())
        } else {
            UserIdentity::default()
        };
        return Ok(Caller { policy: None, identity, upstream_key: None, approval: None });
    }
    let presented = presented_key(headers).ok_or(ApiError::Unauthorized)?.as_bytes();
    // Compare against every key so timing says nothing about which one (if any) matched.
    let plain =
        auth.api_keys.iter().fold(subtle::Choice::from(0), |acc, k| acc | k.expose().as_bytes().ct_eq(presented));
    let mut matched: Option<&KeyConfig> = None;
    for key in &auth.keys {
        if bool::from(key.key.expose().as_bytes().ct_eq(presented)) {
            matched = Some(key);
        }
    }
    match matched {
        Some(key) => {
            let restricted = key.selection.servers.is_some() || key.selection.tools.is_some();
            let policy = restricted.then(|| KeyPolicy(Arc::new(key.selection.clone())));
            let identity =
                if key.trust_user_headers { forwarded_user(headers, key.user.clone()) } else { key.user.clone() };
            let upstream_key = key.upstream_key.as_ref().and_then(|k| {
                let mut value = axum::http::HeaderValue::from_str(&format!("Bearer {}", k.expose())).ok()?;
                value.set_sensitive(true);
                Some(value)
            });
            Ok(Caller { policy, identity, upstream_key, approval: key.approval.clone() })
        }
        None if bool::from(plain) => {
            let identity = if auth.trust_user_headers {
                forwarded_user(headers, UserIdentity::default())
            } else {
                UserIdentity::default()
            };
            Ok(Caller { policy: None, identity, upstream_key: None, approval: None })
        }
        None => Err(ApiError::Unauthorized),
    }
}

/// `base` overlaid with the user Open WebUI forwards (`ENABLE_FORWARD_USER_INFO_HEADERS`).
/// Ignored: values that could not be a header value, a header sent more than once (a proxy may
/// have appended a second one), and commas in ids, emails and roles (an MCP server reading
/// the value as a list would see two users).
fn forwarded_user(headers: &HeaderMap, base: UserIdentity) -> UserIdentity {
    // Names made once (a name given as text is checked and lowered on each look-up).
    static USER_ID: HeaderName = HeaderName::from_static("x-openwebui-user-id");
    static USER_NAME: HeaderName = HeaderName::from_static("x-openwebui-user-name");
    static USER_EMAIL: HeaderName = HeaderName::from_static("x-openwebui-user-email");
    static USER_ROLE: HeaderName = HeaderName::from_static("x-openwebui-user-role");
    static CHAT_ID: HeaderName = HeaderName::from_static("x-openwebui-chat-id");
    let get = |name: &HeaderName, list_safe: bool| {
        let mut values = headers.get_all(name).iter();
        let (Some(value), None) = (values.next(), values.next()) else { return None };
        value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|v| !v.is_empty() && header_safe(v) && (list_safe || !v.contains(',')))
            .map(str::to_owned)
    };
    UserIdentity {
        id: get(&USER_ID, false).or(base.id),
        name: get(&USER_NAME, true).or(base.name),
        email: get(&USER_EMAIL, false).or(base.email),
        role: get(&USER_ROLE, false).or(base.role),
        chat_id: get(&CHAT_ID, false).or(base.chat_id),
        files: None,
        account: None,
        public_url: None,
    }
}

/// The caller's folder below `files/`: `k-<key fingerprint>` for a key with a tool policy,
/// then `u-<user>` when the user is known (`k-…/u-…` for both); `None` for an unrestricted
/// caller without a user. Fingerprints and user parts are hashed, so no key or odd character
/// reaches a storage key, and two users never share a folder.
fn files_namespace(restricted_key: Option<&str>, user: Option<&str>) -> Option<String> {
    use sha2::Digest;
    let short = |text: &str, bytes: usize| -> String {
        sha2::Sha256::digest(text.as_bytes()).iter().take(bytes).map(|b| format!("{b:02x}")).collect()
    };
    let key = restricted_key.map(|k| format!("k-{}", short(k, 8)));
    let user = user.map(|u| {
        let readable: String =
            u.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(32).collect();
        format!("u-{readable}-{}", short(u, 4))
    });
    match (key, user) {
        (Some(k), Some(u)) => Some(format!("{k}/{u}")),
        (k, u) => k.or(u),
    }
}

/// The holder of per-user accounts: a digest of the presented key (none on an open gateway)
/// and the user (none: the key itself is the holder). Neither can be read back from it.
fn account_of(key: Option<&str>, user: Option<&str>) -> String {
    // The same few callers come again and again: their digests are remembered under a keyed
    // 64-bit hash of who they are (no key is kept; bounded, cleared when full; long inputs are
    // not remembered at all).
    static KNOWN: std::sync::LazyLock<(std::hash::RandomState, parking_lot::Mutex<HashMap<u64, String>>)> =
        std::sync::LazyLock::new(Default::default);
    const MAX_KNOWN: usize = 4096;
    const MAX_REMEMBERED_BYTES: usize = 512;
    let (key_text, user_text) = (key.unwrap_or_default(), user.unwrap_or_default());
    if key_text.len() + user_text.len() > MAX_REMEMBERED_BYTES {
        return digest_account(key, user);
    }
    let (state, known) = &*KNOWN;
    let holder = std::hash::BuildHasher::hash_one(state, (key, user));
    if let Some(account) = known.lock().get(&holder) {
        return account.clone();
    }
    let account = digest_account(key, user);
    let mut known = known.lock();
    if known.len() >= MAX_KNOWN {
        known.clear();
    }
    known.insert(holder, account.clone());
    account
}

/// [`account_of`], computed.
fn digest_account(key: Option<&str>, user: Option<&str>) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(b"mcp-middleware account\0");
    hash.update(key.unwrap_or_default().as_bytes());
    hash.update(b"\0");
    hash.update(user.unwrap_or_default().as_bytes());
    // Every request names its holder: one allocation, no formatting machinery.
    let mut out = String::with_capacity(32);
    for b in hash.finalize().iter().take(16) {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
    }
    out
}

/// The gateway as the caller's browser reaches it: `http.public_url`, else the `Host` this
/// request named (checked by the guard), over https when a proxy in front says so.
pub fn public_url(http: &crate::config::HttpConfig, headers: &HeaderMap) -> String {
    if let Some(url) = &http.public_url {
        return url.clone();
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let https = headers.get("x-forwarded-proto").is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    format!("{}://{host}", if https { "https" } else { "http" })
}

/// The key a client presents, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    // The scheme is case-insensitive (RFC 9110 §11.1): `Bearer`, `bearer`, `BEARER`.
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim_start().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(token)
    });
    static API_KEY: HeaderName = HeaderName::from_static("x-api-key");
    bearer.or_else(|| headers.get(&API_KEY).and_then(|v| v.to_str().ok())).map(str::trim).filter(|k| !k.is_empty())
}
