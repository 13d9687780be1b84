//! Console sign-ins. A person signs in with a key; the console keeps a session in the state
//! store (so any replica knows it, and a restart keeps it) and hands the browser its id in an
//! `HttpOnly`, `SameSite=Strict` cookie. The store holds neither the cookie nor the key: the
//! entry is filed under a digest of the session id, and names the key by a digest too, found
//! again among the configured keys on every request (a key a reload removed signs its sessions
//! out; a changed policy applies at once). Every session has a random token that each form
//! carries back (CSRF), besides the gate's origin rules. On an open gateway a session without a
//! key is made on the first visit: there is nothing to sign in with.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::Digest;
use subtle::ConstantTimeEq;

use crate::config::AuthConfig;
use crate::state::{StateError, StateStore};

/// The state store's space for sessions.
const SPACE: &str = "console-sessions";
/// The cookie's name.
pub const COOKIE: &str = "mcpmw_console";

/// One signed-in browser.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// A digest of the key it signed in with; none on an open gateway.
    pub key: Option<String>,
    /// The token every form of this session carries back.
    pub csrf: String,
}

impl Session {
    /// Whether `presented` is this session's form token.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        !presented.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// 64 hex digits of randomness (244 random bits).
fn random() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

fn hex_digest(parts: &[&[u8]]) -> String {
    let mut hash = sha2::Sha256::new();
    for part in parts {
        hash.update(part);
        hash.update(b"\0");
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest a session names its key by.
pub fn key_digest(key: &str) -> String {
    hex_digest(&[b"mcp-middleware console key", key.as_bytes()])
}

/// The configured key whose digest is `digest`, if any (every key is compared).
pub fn key_named<'a>(auth: &'a AuthConfig, digest: &str) -> Option<&'a str> {
    let keys = auth.api_keys.iter().map(|k| k.expose()).chain(auth.keys.iter().map(|k| k.key.expose()));
    let mut found = None;
    for key in keys {
        if bool::from(key_digest(key).as_bytes().ct_eq(digest.as_bytes())) {
            found = Some(key);
        }
    }
    found
}

/// Where a session id's entry is filed.
fn filed(id: &str) -> String {
    hex_digest(&[b"mcp-middleware console session", id.as_bytes()])
}

/// Starts a session for `key` (none on an open gateway) lasting `ttl`: `(cookie value, session)`.
pub async fn start(store: &dyn StateStore, key: Option<&str>, ttl: Duration) -> Result<(String, Session), StateError> {
    let id = random();
    let session = Session { key: key.map(key_digest), csrf: random() };
    let bytes = serde_json::to_vec(&session).map_err(|e| StateError::Database(e.to_string()))?;
    store.put(SPACE, &filed(&id), &bytes, Some(ttl)).await?;
    Ok((id, session))
}

/// The live session whose cookie value is `id`.
pub async fn find(store: &dyn StateStore, id: &str) -> Result<Option<Session>, StateError> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let Some(bytes) = store.get(SPACE, &filed(id)).await? else { return Ok(None) };
    Ok(serde_json::from_slice(&bytes).ok())
}

/// Ends the session whose cookie value is `id`.
pub async fn end(store: &dyn StateStore, id: &str) -> Result<(), StateError> {
    store.delete(SPACE, &filed(id)).await.map(|_| ())
}

/// The session id in a `Cookie` header's value, if any.
pub fn cookie_value(header: &str) -> Option<&str> {
    header.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(name, _)| *name == COOKIE).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(cookie_value("a=1; mcpmw_console=abc; b=2"), Some("abc"));
        assert_eq!(cookie_value("xmcpmw_console=abc"), None);
        assert_eq!(cookie_value(""), None);
    }

    #[test]
    fn tokens_match_only_themselves() {
        let session = Session { key: None, csrf: "t".repeat(64) };
        assert!(session.csrf_matches(&"t".repeat(64)));
        assert!(!session.csrf_matches(""));
        assert!(!session.csrf_matches("t"));
        assert_ne!(key_digest("a"), key_digest("b"));
    }
}
