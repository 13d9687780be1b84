//! `state:` — where what outlives a request is kept (the state store), and the key that seals
//! secrets at rest.

use std::path::Path;

use super::{Problems, Secret, raw};

/// The state store.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// `sqlite://<path>`, `postgres://…` or `postgresql://…` (by default a SQLite file beside
    /// the local artifact store, `<artifacts.local.dir>.state.db`).
    pub url: Secret,
    /// Seals secrets at rest; without it no secret is stored.
    pub encryption_key: Option<Secret>,
}

/// Fewest characters `state.encryption_key` may have.
pub const MIN_KEY_CHARS: usize = 32;

/// The default store file for an artifact directory.
pub fn default_state_url(artifacts_dir: &Path) -> String {
    format!("sqlite://{}.state.db", artifacts_dir.display())
}

pub(super) fn state_config(raw: raw::RawState, artifacts_dir: &Path, p: &mut Problems) -> StateConfig {
    let url = raw.url.filter(|u| !u.trim().is_empty()).unwrap_or_else(|| default_state_url(artifacts_dir));
    let known = ["sqlite:", "postgres://", "postgresql://"].iter().any(|scheme| url.starts_with(scheme));
    if !known {
        p.push("state.url", "must be sqlite://<path>, postgres://… or postgresql://…");
    }
    let key = raw.encryption_key.filter(|k| !k.is_empty());
    if key.as_ref().is_some_and(|k| k.chars().count() < MIN_KEY_CHARS) {
        p.push("state.encryption_key", format!("must be at least {MIN_KEY_CHARS} characters"));
    }
    StateConfig { url: Secret::new(url), encryption_key: key.map(Secret::new) }
}
