//! The audit trail: every tool call on every surface, and every chat loop (its rounds and the
//! tools they ran), kept in the state store for `console.activity_ttl`, so every replica's
//! calls show on any replica's Activity page. Records are private data: sealed with
//! `state.encryption_key` when one is set, like parked conversations.
//!
//! Calls hand their record to [`StoreAudit`] without waiting: a bounded queue, written by one
//! task (a full queue drops the record and says so in the log, at most every ten seconds; a
//! tool call never waits for the store). At shutdown the writer writes what is queued, and
//! the server waits for it (a few seconds at most). Each record is written to the space of everything
//! (`audit`, `audit-chats`) and to the space of whose it is: the key with a tool policy that
//! made it (`…/k-<fingerprint>`), else the person (`…/h-<holder>`) when the request named a
//! user. So each Activity page reads its own space, never a filtered share of everyone's. Keys
//! are the start time counted down in fixed-width hex, then a serial counted down too, so the
//! store's key order is newest first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::agent::{AuditRecord, AuditSink, ChatRecord};
use crate::state::{Secrets, StateError};

/// The space of every call.
const CALLS: &str = "audit";
/// The space of every chat loop.
const CHATS: &str = "audit-chats";
/// Records waiting to be written; more are dropped.
const QUEUE: usize = 1024;
/// Most records written in one transaction.
const BATCH: usize = 128;
/// How long the writer gathers records after the first before it writes them: one commit (and
/// its sync) per batch instead of one per tool call, for a page a person reads.
const LINGER: Duration = Duration::from_millis(200);
/// Most records a listing reads.
pub const MAX_LISTED: usize = 500;

/// Whose records a listing reads.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Everyone's (an operator's key: no tool policy, no user).
    All,
    /// One key with a tool policy (its fingerprint, `k-…`).
    Key(&'a str),
    /// One account holder (a person's requests through a key without a tool policy).
    Holder(&'a str),
}

/// What the writer keeps.
enum Kept {
    Call(AuditRecord),
    Chat(ChatRecord),
}

/// The [`AuditSink`] that keeps records in the state store.
pub struct StoreAudit {
    queue: mpsc::Sender<Kept>,
    /// When a dropped record was last reported (Unix seconds).
    warned: AtomicU64,
    /// The writer, until shutdown waits for it.
    writer: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Told when a batch is waiting: the writer stops lingering.
    full: Arc<tokio::sync::Notify>,
}

impl StoreAudit {
    /// Starts the writer (until `shutdown`, then it writes what is queued); records expire after
    /// `ttl`.
    pub fn start(secrets: Secrets, ttl: Duration, shutdown: CancellationToken) -> Arc<Self> {
        let (queue, mut records) = mpsc::channel::<Kept>(QUEUE);
        let full = Arc::new(tokio::sync::Notify::new());
        let batch_waits = full.clone();
        let writer = tokio::spawn(async move {
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
                // What comes within `LINGER` goes in the same transaction: the store sees one
                // write per batch, not one per tool call. The writer sleeps meanwhile rather than
                // wake for each record; a full batch (under load) or shutting down writes at once.
                let mut batch = vec![record];
                let more = |batch: &mut Vec<Kept>, records: &mut mpsc::Receiver<Kept>| {
                    while batch.len() < BATCH {
                        match records.try_recv() {
                            Ok(record) => batch.push(record),
                            Err(_) => break,
                        }
                    }
                };
                more(&mut batch, &mut records);
                if batch.len() < BATCH && !shutdown.is_cancelled() {
                    tokio::select! {
                        () = tokio::time::sleep(LINGER) => {}
                        () = batch_waits.notified() => {}
                        () = shutdown.cancelled() => {}
                    }
                    more(&mut batch, &mut records);
                }
                let mut entries = Vec::new();
                let taken = batch.len();
                for record in batch {
                    let serial = serial.fetch_add(1, Ordering::Relaxed);
                    match &record {
                        Kept::Call(call) => {
                            let owner = owner(call.key.as_deref(), call.holder.as_deref(), call.user.is_some());
                            entries_of(&mut entries, CALLS, call, call.started_ms, owner, serial);
                        }
                        Kept::Chat(chat) => {
                            let owner = owner(chat.key.as_deref(), chat.holder.as_deref(), chat.user.is_some());
                            entries_of(&mut entries, CHATS, chat, chat.started_ms, owner, serial);
                        }
                    }
                }
                if let Err(e) = secrets.put_private_many(entries, Some(ttl)).await {
                    tracing::warn!(error = %e, records = taken, "records could not be kept for the activity page");
                }
            }
        });
        let writer = parking_lot::Mutex::new(Some(writer));
        Arc::new(Self { queue, warned: AtomicU64::new(0), writer, full })
    }

    fn keep(&self, record: Kept) {
        let kept = self.queue.try_send(record).is_ok();
        // A burst fills a batch before the linger ends: it is written at once.
        if self.queue.capacity() <= QUEUE - BATCH {
            self.full.notify_one();
        }
        if !kept {
            let now = crate::state::unix_ms(std::time::SystemTime::now()).unsigned_abs() / 1000;
            let last = self.warned.load(Ordering::Relaxed);
            let due = now.saturating_sub(last) >= 10;
            if due && self.warned.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                tracing::warn!("the activity trail is behind; records are being dropped");
            }
        }
    }
}

impl AuditSink for StoreAudit {
    fn record(&self, record: AuditRecord) {
        self.keep(Kept::Call(record));
    }

    fn chat(&self, record: ChatRecord) {
        self.keep(Kept::Chat(record));
    }

    fn writer(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.writer.lock().take()
    }
}

/// A starting serial that differs between replicas (two calls in the same millisecond on two
/// replicas keep both records).
fn rand_start() -> u32 {
    (uuid::Uuid::new_v4().as_u128() & u128::from(u32::MAX)) as u32
}

/// Whose record it is, besides everyone's: its restricted key, else its person.
fn owner<'a>(key: Option<&'a str>, holder: Option<&'a str>, person: bool) -> Option<Scope<'a>> {
    match (key, holder) {
        (Some(key), _) => Some(Scope::Key(key)),
        (None, Some(holder)) if person => Some(Scope::Holder(holder)),
        _ => None,
    }
}

/// A record's key: newest first in key order (the serial counted down too).
fn key(started_ms: u64, serial: u32) -> String {
    format!("{:016x}{:08x}", u64::MAX - started_ms, u32::MAX - serial)
}

/// The space of `scope`'s records within `space`.
fn scoped(space: &str, scope: Scope<'_>) -> String {
    match scope {
        Scope::All => space.to_owned(),
        Scope::Key(key) => format!("{space}/{key}"),
        Scope::Holder(holder) => format!("{space}/h-{holder}"),
    }
}

/// The entries that keep `record`: in everyone's `space`, and in its owner's.
fn entries_of(
    entries: &mut Vec<(String, String, Vec<u8>)>,
    space: &str,
    record: &impl serde::Serialize,
    started_ms: u64,
    owner: Option<Scope<'_>>,
    serial: u32,
) {
    let bytes = match serde_json::to_vec(record) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%error, "a record could not be kept for the activity page");
            return;
        }
    };
    let key = key(started_ms, serial);
    if let Some(owner) = owner {
        entries.push((scoped(space, owner), key.clone(), bytes.clone()));
    }
    entries.push((space.to_owned(), key, bytes));
}

/// The newest records of `space` in `scope` (at most `limit`, capped at [`MAX_LISTED`]).
async fn newest<T: serde::de::DeserializeOwned>(
    secrets: &Secrets,
    space: &str,
    scope: Scope<'_>,
    limit: usize,
) -> Result<Vec<T>, StateError> {
    let space = scoped(space, scope);
    let entries = secrets.store().list(&space, limit.min(MAX_LISTED)).await?;
    Ok(entries
        .into_iter()
        .filter_map(|(key, stored)| secrets.open_private(&space, &key, stored).ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect())
}

/// The newest tool calls in `scope`.
pub async fn recent(secrets: &Secrets, scope: Scope<'_>, limit: usize) -> Result<Vec<AuditRecord>, StateError> {
    newest(secrets, CALLS, scope, limit).await
}

/// The newest chat loops in `scope`.
pub async fn recent_chats(secrets: &Secrets, scope: Scope<'_>, limit: usize) -> Result<Vec<ChatRecord>, StateError> {
    newest(secrets, CHATS, scope, limit).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_records_sort_first() {
        let (old, new) = (key(1_000, 7), key(2_000, 1));
        assert!(new < old, "{new} {old}");
        assert!(key(1_000, 8) < key(1_000, 7), "later in the same millisecond");
        assert_eq!(new.len(), 24);
    }

    #[test]
    fn records_belong_to_their_key_else_their_person() {
        assert!(matches!(owner(Some("k-1"), Some("h"), true), Some(Scope::Key("k-1"))));
        assert!(matches!(owner(None, Some("h"), true), Some(Scope::Holder("h"))));
        assert!(owner(None, Some("h"), false).is_none(), "an operator's own calls are everyone's only");
        assert_eq!(scoped(CALLS, Scope::Holder("ab")), "audit/h-ab");
    }
}
