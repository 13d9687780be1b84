//! The state store: what must outlive a request or be seen by another replica — OAuth tokens
//! and client registrations, and loops waiting for a person. One small trait, [`StateStore`],
//! over entries addressed by a space and a key, with an optional expiry; [`sql::SqlStore`]
//! implements it on SQLite (the embedded default, a file beside the local artifact store, WAL
//! mode) and on Postgres (one database shared by every replica). Secrets are sealed by
//! [`Sealer`] before they reach the store ([`Secrets`]); nothing in the store is ever logged.

mod crypto;
pub mod sql;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;

pub use crypto::Sealer;
pub use sql::SqlStore;

/// What can go wrong with the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database could not be reached or refused the operation (the reason, without the URL).
    #[error("the state store failed: {0}")]
    Database(String),
    /// A secret was to be stored without `state.encryption_key`.
    #[error("secrets are not stored without state.encryption_key (any string of at least 32 characters)")]
    NoEncryptionKey,
    /// A sealed value did not open (another key, or altered).
    #[error("a stored secret could not be opened (was state.encryption_key changed?)")]
    Sealed,
}

/// One listed entry: its key and value.
pub type Entry = (String, Vec<u8>);

/// Entries by space and key. Every method is one statement (`put_many` one transaction): safe
/// with many replicas.
pub trait StateStore: Send + Sync {
    /// The value under `space`/`key`, unless absent or expired.
    fn get<'a>(&'a self, space: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StateError>>;
    /// Writes `value` under `space`/`key` (replacing what was there), expiring after `ttl`.
    fn put<'a>(
        &'a self,
        space: &'a str,
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), StateError>>;
    /// Writes every `(space, key, value)` of `entries` as [`put`](Self::put) does, in one
    /// transaction: all of them or none.
    fn put_many<'a>(
        &'a self,
        entries: &'a [(String, String, Vec<u8>)],
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), StateError>>;
    /// Reads and deletes in one step: of callers racing for the same entry, one gets it.
    fn take<'a>(&'a self, space: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StateError>>;
    /// Deletes; `true` when something was there.
    fn delete<'a>(&'a self, space: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, StateError>>;
    /// Deletes every expired entry; returns how many.
    fn sweep(&self) -> BoxFuture<'_, Result<u64, StateError>>;
    /// How many live entries of `space` have a key starting with `prefix` (case counts), for
    /// the metrics.
    fn count<'a>(&'a self, space: &'a str, prefix: &'a str) -> BoxFuture<'a, Result<u64, StateError>>;
    /// The first `limit` live entries of `space`, `(key, value)` in key order (for listings:
    /// a space per owner, keys that sort as wanted, such as fixed-width hex).
    fn list<'a>(&'a self, space: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<Entry>, StateError>>;
}

/// The store with the sealer: secrets are sealed on the way in and opened on the way out.
#[derive(Clone)]
pub struct Secrets {
    store: Arc<dyn StateStore>,
    sealer: Option<Sealer>,
}

impl Secrets {
    /// Secrets kept in `store`, sealed with `sealer` (without one, storing a secret is refused).
    pub fn new(store: Arc<dyn StateStore>, sealer: Option<Sealer>) -> Self {
        Self { store, sealer }
    }

    /// The store itself (for what is not secret).
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// Seals and stores a secret.
    pub async fn put(&self, space: &str, key: &str, secret: &[u8], ttl: Option<Duration>) -> Result<(), StateError> {
        let sealer = self.sealer.as_ref().ok_or(StateError::NoEncryptionKey)?;
        self.store.put(space, key, &sealer.seal(space, key, secret), ttl).await
    }

    /// A stored secret, opened and deleted in one step (of racing callers, one gets it).
    pub async fn take(&self, space: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let Some(sealed) = self.store.take(space, key).await? else { return Ok(None) };
        let sealer = self.sealer.as_ref().ok_or(StateError::NoEncryptionKey)?;
        sealer.open(space, key, &sealed).map(Some).ok_or(StateError::Sealed)
    }

    /// `plaintext` sealed for `space`/`key` without storing it (a token handed out that only
    /// this gateway, or a replica with its key, can open).
    pub fn seal(&self, space: &str, key: &str, plaintext: &[u8]) -> Result<Vec<u8>, StateError> {
        Ok(self.sealer.as_ref().ok_or(StateError::NoEncryptionKey)?.seal(space, key, plaintext))
    }

    /// What [`seal`](Self::seal) sealed for `space`/`key`; `None` when it does not open.
    pub fn open(&self, space: &str, key: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        self.sealer.as_ref()?.open(space, key, sealed)
    }

    /// Stores private data (a conversation): sealed when there is a key, as it is otherwise.
    pub async fn put_private(
        &self,
        space: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StateError> {
        match &self.sealer {
            Some(sealer) => self.store.put(space, key, &sealer.seal(space, key, value), ttl).await,
            None => self.store.put(space, key, value, ttl).await,
        }
    }

    /// Several entries of private data (`(space, key, value)`), written in one transaction as
    /// [`put_private`](Self::put_private) writes each.
    pub async fn put_private_many(
        &self,
        mut entries: Vec<(String, String, Vec<u8>)>,
        ttl: Option<Duration>,
    ) -> Result<(), StateError> {
        if let Some(sealer) = &self.sealer {
            for (space, key, value) in &mut entries {
                *value = sealer.seal(space, key, value);
            }
        }
        self.store.put_many(&entries, ttl).await
    }

    /// Private data stored by [`put_private`](Self::put_private).
    pub async fn get_private(&self, space: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let Some(stored) = self.store.get(space, key).await? else { return Ok(None) };
        self.open_private(space, key, stored).map(Some)
    }

    /// Private data stored by [`put_private`](Self::put_private), deleted in the same step.
    pub async fn take_private(&self, space: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let Some(stored) = self.store.take(space, key).await? else { return Ok(None) };
        self.open_private(space, key, stored).map(Some)
    }

    /// A value listed from the store that [`put_private`](Self::put_private) stored, opened.
    pub fn open_private(&self, space: &str, key: &str, stored: Vec<u8>) -> Result<Vec<u8>, StateError> {
        match &self.sealer {
            Some(sealer) => sealer.open(space, key, &stored).ok_or(StateError::Sealed),
            None => Ok(stored),
        }
    }

    /// A stored secret, opened.
    pub async fn get(&self, space: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let Some(sealed) = self.store.get(space, key).await? else { return Ok(None) };
        let sealer = self.sealer.as_ref().ok_or(StateError::NoEncryptionKey)?;
        sealer.open(space, key, &sealed).map(Some).ok_or(StateError::Sealed)
    }
}

/// Unix milliseconds of `time` (0 before the epoch).
pub fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Deletes expired entries every few minutes until `shutdown`.
pub async fn sweep_forever(store: Arc<dyn StateStore>, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(300)) => {}
        }
        if let Err(e) = store.sweep().await {
            tracing::warn!(error = %e, "state store sweep failed; trying again later");
        }
    }
}
