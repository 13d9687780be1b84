//! The state store on SQLite (the embedded default) and on a real PostgreSQL: entries survive a
//! restart, expire, are taken once by racing callers; secrets are sealed at rest, open only with
//! their key, and are refused without one; the gateway creates its store on first start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_middleware::state::{Sealer, Secrets, SqlStore, StateError, StateStore};

use crate::common::TestApp;
use crate::common::peers::{Postgres, TempDir};

const KEY: &str = "a state key of at least thirty-two characters";

/// What every backend must do, on a store opened at `url`.
async fn behaves(url: &str) {
    let store = Arc::new(SqlStore::open(url).unwrap());
    store.put("s", "k", b"one", None).await.unwrap();
    assert_eq!(store.get("s", "k").await.unwrap().as_deref(), Some(&b"one"[..]));
    store.put("s", "k", b"two", None).await.unwrap();
    assert_eq!(store.get("s", "k").await.unwrap().as_deref(), Some(&b"two"[..]), "a put replaces");
    assert_eq!(store.get("other", "k").await.unwrap(), None, "spaces are apart");

    // Of eight callers racing to take one entry, exactly one gets it.
    store.put("s", "once", b"token", None).await.unwrap();
    let takes = futures_util::future::join_all((0..8).map(|_| store.take("s", "once"))).await;
    let got: Vec<_> = takes.into_iter().map(Result::unwrap).filter(Option::is_some).collect();
    assert_eq!(got, vec![Some(b"token".to_vec())]);

    // Expired entries are gone to readers at once and to the table at the next sweep.
    // The expiry runs from before the write: 2 s leaves room for a slow commit.
    store.put("s", "short", b"x", Some(Duration::from_secs(2))).await.unwrap();
    assert!(store.get("s", "short").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(store.get("s", "short").await.unwrap(), None);
    assert_eq!(store.take("s", "short").await.unwrap(), None);
    assert!(store.sweep().await.unwrap() >= 1);
    assert!(store.delete("s", "k").await.unwrap());
    assert!(!store.delete("s", "k").await.unwrap());

    // Counting by key prefix (the metrics): live entries only, case and pattern characters exact.
    for key in ["gh/alice", "gh/bob", "gh/awaiting-1", "GH/carol", "gh", "ghx/dave", "g%/eve"] {
        store.put("count", key, b"v", None).await.unwrap();
    }
    store.put("count", "gh/gone", b"v", Some(Duration::from_millis(1))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.count("count", "gh/").await.unwrap(), 3);
    assert_eq!(store.count("count", "gh/awaiting-").await.unwrap(), 1);
    assert_eq!(store.count("count", "g%/").await.unwrap(), 1, "a `%` is a character, not a pattern");
    assert_eq!(store.count("count", "").await.unwrap(), 7);
    assert_eq!(store.count("other", "gh/").await.unwrap(), 0);
    for key in ["gh/alice", "gh/bob", "gh/awaiting-1", "GH/carol", "gh", "ghx/dave", "g%/eve", "gh/gone"] {
        store.delete("count", key).await.unwrap();
    }

    // Listing a space (the console's trails): live entries only, in key order, the first `limit`.
    let space = format!("list-{}", uuid::Uuid::new_v4().simple());
    for key in ["0003", "0001", "000a", "0002"] {
        store.put(&space, key, key.as_bytes(), None).await.unwrap();
    }
    store.put(&space, "0000", b"gone", Some(Duration::from_millis(1))).await.unwrap();
    store.put("other-list", "0000", b"x", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let listed = store.list(&space, 3).await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["0001", "0002", "0003"]);
    assert_eq!(listed[0].1, b"0001");
    assert_eq!(store.list(&space, 100).await.unwrap().len(), 4);
    assert!(store.list("no-such-space", 10).await.unwrap().is_empty());

    // Several puts in one transaction (the activity trail's batches): all written, replacing
    // what was there, with their expiry; sealed one by one through `Secrets`.
    let batch =
        |keys: &[&str]| keys.iter().map(|k| (space.clone(), (*k).to_owned(), b"new".to_vec())).collect::<Vec<_>>();
    store.put_many(&batch(&["0004", "0001"]), Some(Duration::from_secs(60))).await.unwrap();
    let listed = store.list(&space, 100).await.unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().filter(|(k, _)| k == "0001" || k == "0004").all(|(_, v)| v == b"new"), "{listed:?}");
    assert_eq!(store.get(&space, "0003").await.unwrap().as_deref(), Some(&b"0003"[..]), "others untouched");
    store.put_many(&batch(&["0005"]), Some(Duration::from_millis(1))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.list(&space, 100).await.unwrap().len(), 5, "expired with its batch's time to live");
    let sealed = Secrets::new(store.clone(), Some(Sealer::new(KEY)));
    sealed.put_private_many(vec![(space.clone(), "0006".into(), b"private".to_vec())], None).await.unwrap();
    assert_ne!(store.get(&space, "0006").await.unwrap().unwrap(), b"private", "sealed at rest");
    assert_eq!(sealed.get_private(&space, "0006").await.unwrap().as_deref(), Some(&b"private"[..]));

    // Secrets: sealed at rest, opened with the key, refused without one.
    let secrets = Secrets::new(store.clone(), Some(Sealer::new(KEY)));
    secrets.put("tokens", "github", b"gho_plaintext_token", None).await.unwrap();
    let raw = store.get("tokens", "github").await.unwrap().unwrap();
    assert!(!raw.windows(19).any(|w| w == b"gho_plaintext_token"), "stored in the clear");
    assert_eq!(secrets.get("tokens", "github").await.unwrap().as_deref(), Some(&b"gho_plaintext_token"[..]));
    let other_key = Secrets::new(store.clone(), Some(Sealer::new("another key that is long enough to use!!")));
    assert!(matches!(other_key.get("tokens", "github").await, Err(StateError::Sealed)));
    let keyless = Secrets::new(store.clone(), None);
    assert!(matches!(keyless.put("tokens", "x", b"y", None).await, Err(StateError::NoEncryptionKey)));
    let message = StateError::NoEncryptionKey.to_string();
    assert!(message.contains("state.encryption_key"), "says what to set: {message}");

    // A restart (a new pool on the same database) finds what was stored.
    drop(store);
    let reopened = Secrets::new(Arc::new(SqlStore::open(url).unwrap()), Some(Sealer::new(KEY)));
    assert_eq!(reopened.get("tokens", "github").await.unwrap().as_deref(), Some(&b"gho_plaintext_token"[..]));
    reopened.store().delete("tokens", "github").await.unwrap();
}

#[tokio::test]
async fn sqlite_keeps_entries_across_a_restart() {
    let dir = TempDir::new("mcpmw-state");
    let file = dir.0.join("nested/state.db");
    behaves(&format!("sqlite://{}", file.display())).await;
    assert!(file.exists(), "created with its directory");
    assert!(dir.0.join("nested/state.db-wal").exists() || dir.0.join("nested/state.db-shm").exists(), "WAL mode");
}

#[tokio::test]
async fn postgres_keeps_entries_across_a_restart() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    // libpq's forms: `postgresql://` with the socket directory in `?host=`, and `postgres://`.
    behaves(&pg.url).await;
    behaves(&pg.url.replacen("postgresql://", "postgres://", 1)).await;
}

/// Replicas (or `login` beside a starting gateway) opening a new SQLite file at once all
/// start: the one that loses the race to apply the schema finds it applied.
#[tokio::test]
async fn stores_opened_at_once_on_a_new_file_all_start() {
    for round in 0..5 {
        let dir = TempDir::new("mcpmw-race");
        let url = format!("sqlite://{}/state.db", dir.0.display());
        let stores: Vec<SqlStore> = (0..6).map(|_| SqlStore::open(&url).unwrap()).collect();
        let puts = futures_util::future::join_all(stores.iter().map(|s| s.put("s", "k", b"v", None))).await;
        for put in puts {
            put.unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
}

#[tokio::test]
async fn the_gateway_creates_its_store_on_first_start() {
    let app = TestApp::spawn("").await;
    let path = app.state_url.strip_prefix("sqlite://").expect("SQLite by default");
    assert!(path.ends_with(".state.db") && path.contains("mcpmw-artifacts-"), "beside the artifacts: {path}");
    let file = std::path::PathBuf::from(path);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !file.exists() {
        assert!(Instant::now() < deadline, "{} never created", file.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its schema is there: a second store on the same file reads and writes at once.
    let store = SqlStore::open(&format!("sqlite://{}", file.display())).unwrap();
    store.put("probe", "k", b"v", None).await.unwrap();
    assert!(store.get("probe", "k").await.unwrap().is_some());

    let config =
        |yaml: &str| mcp_middleware::config::load_str(yaml, &std::collections::HashMap::<String, String>::new());
    let refused = config("state:\n  url: mysql://x\n  encryption_key: short\n").unwrap_err().to_string();
    assert!(
        refused.contains("state.url") && refused.contains("state.encryption_key: must be at least 32"),
        "{refused}"
    );
    let _ = std::fs::remove_file(&file);
}
