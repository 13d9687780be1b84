//! The audit trail: every tool call on every surface, kept in the state store for
//! `console.activity_ttl`, so every replica's calls show on any replica's Activity page.
//!
//! Calls hand their record to [`StoreAudit`] without waiting: a bounded queue, written by one
//! task (a full queue drops the record and says so in the log; a tool call never waits for the
//! store). Each record is written twice: once in the space of all calls, once in the space of the
//! key with a tool policy that made it (`audit/k-…`), so a restricted key's own activity is read
//! from its own space, never filtered out of everyone's. Chat loops (their rounds and the tools
//! they ran) are kept the same way in `audit-chats`. Keys are the start time counted down
//! in fixed-width hex, so the store's key order is newest first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::agent::{AuditRecord, AuditSink, ChatRecord};
use crate::state::{StateError, StateStore};

/// The space of every call.
const ALL: &str = "audit";
/// The space of every chat loop.
const CHATS: &str = "audit-chats";
/// Records waiting to be written; more are dropped.
const QUEUE: usize = 1024;
/// Most records a listing reads.
pub const MAX_LISTED: usize = 500;

/// What the writer keeps.
enum Kept {
    Call(AuditRecord),
    Chat(ChatRecord),
}

/// The [`AuditSink`] that keeps records in the state store.
pub struct StoreAudit {
    queue: mpsc::Sender<Kept>,
}

impl StoreAudit {
    /// Starts the writer (until `shutdown`, then it writes what is queued); records expire after
    /// `ttl`.
    pub fn start(store: Arc<dyn StateStore>, ttl: Duration, shutdown: CancellationToken) -> Arc<Self> {
        let (queue, mut records) = mpsc::channel::<Kept>(QUEUE);
        tokio::spawn(async move {
            let serial = AtomicU32::new(rand_start());
            loop {
                let record = tokio::select! {
                    biased;
                    record = records.recv() => record,
                    () = shutdown.cancelled() => {
                        records.close();
                        records.recv().await
                    }
                };
                let Some(record) = record else { break };
                let serial = serial.fetch_add(1, Ordering::Relaxed);
                let written = match &record {
                    Kept::Call(call) => {
                        write(&*store, ALL, call, call.started_ms, call.key.as_deref(), ttl, serial).await
                    }
                    Kept::Chat(chat) => {
                        write(&*store, CHATS, chat, chat.started_ms, chat.key.as_deref(), ttl, serial).await
                    }
                };
                if let Err(e) = written {
                    tracing::warn!(error = %e, "a tool call could not be kept for the activity page");
                }
            }
        });
        Arc::new(Self { queue })
    }
}

impl AuditSink for StoreAudit {
    fn record(&self, record: AuditRecord) {
        if self.queue.try_send(Kept::Call(record)).is_err() {
            tracing::warn!("the activity trail is behind; a tool call's record was dropped");
        }
    }

    fn chat(&self, record: ChatRecord) {
        if self.queue.try_send(Kept::Chat(record)).is_err() {
            tracing::warn!("the activity trail is behind; a chat's record was dropped");
        }
    }
}

/// A starting serial that differs between replicas (two calls in the same millisecond on two
/// replicas keep both records).
fn rand_start() -> u32 {
    (uuid::Uuid::new_v4().as_u128() & u128::from(u32::MAX)) as u32
}

/// A record's key: newest first in key order.
fn key(started_ms: u64, serial: u32) -> String {
    format!("{:016x}{serial:08x}", u64::MAX - started_ms)
}

/// The space of one restricted key's records within `space`.
fn key_space(space: &str, key: &str) -> String {
    format!("{space}/{key}")
}

async fn write(
    store: &dyn StateStore,
    space: &str,
    record: &impl serde::Serialize,
    started_ms: u64,
    restricted: Option<&str>,
    ttl: Duration,
    serial: u32,
) -> Result<(), StateError> {
    let bytes = serde_json::to_vec(record).map_err(|e| StateError::Database(e.to_string()))?;
    let key = key(started_ms, serial);
    store.put(space, &key, &bytes, Some(ttl)).await?;
    if let Some(restricted) = restricted {
        store.put(&key_space(space, restricted), &key, &bytes, Some(ttl)).await?;
    }
    Ok(())
}

/// The newest records of `space` (at most `limit`, capped at [`MAX_LISTED`]): everyone's, or
/// only those of the restricted key `key` (its fingerprint, `k-…`).
async fn newest<T: serde::de::DeserializeOwned>(
    store: &dyn StateStore,
    space: &str,
    key: Option<&str>,
    limit: usize,
) -> Result<Vec<T>, StateError> {
    let space = key.map_or_else(|| space.to_owned(), |key| key_space(space, key));
    let entries = store.list(&space, limit.min(MAX_LISTED)).await?;
    Ok(entries.into_iter().filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok()).collect())
}

/// The newest tool calls: everyone's, or only the restricted key `key`'s.
pub async fn recent(store: &dyn StateStore, key: Option<&str>, limit: usize) -> Result<Vec<AuditRecord>, StateError> {
    newest(store, ALL, key, limit).await
}

/// The newest chat loops: everyone's, or only the restricted key `key`'s.
pub async fn recent_chats(
    store: &dyn StateStore,
    key: Option<&str>,
    limit: usize,
) -> Result<Vec<ChatRecord>, StateError> {
    newest(store, CHATS, key, limit).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(started_ms: u64) -> AuditRecord {
        AuditRecord {
            started_ms,
            server: "s".into(),
            tool: "s__t".into(),
            user: None,
            holder: None,
            key: None,
            chat: None,
            outcome: "ok".into(),
            duration_ms: 1,
            argument_bytes: 2,
            arguments: "{}".into(),
            error: None,
        }
    }

    #[test]
    fn newer_calls_sort_first() {
        let (old, new) = (key(record(1_000).started_ms, 7), key(record(2_000).started_ms, 1));
        assert!(new < old, "{new} {old}");
        assert_eq!(new.len(), 24);
    }
}
