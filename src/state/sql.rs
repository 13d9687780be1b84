//! [`StateStore`] on SQL: SQLite (embedded; one file, WAL mode, created with its schema on first
//! use) or Postgres (shared by replicas; `postgres://` or `postgresql://` URLs in libpq's forms,
//! a Unix socket via `?host=`). Runtime queries; the schema's migrations are embedded in the
//! binary and run once, before the first statement. The pool connects lazily: a database that is
//! down at start delays what needs it, not the gateway.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::{StateError, StateStore, unix_ms};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a statement waits for a connection (or SQLite for its lock).
const WAIT: Duration = Duration::from_secs(5);
/// Pause before applying the migrations again after a failure (another process applied them).
const MIGRATION_RETRY: Duration = Duration::from_millis(100);
/// How long the migrations are tried again while another process applies them (slowly, on a
/// loaded disk). Only a clash with another process is tried again: a database that cannot be
/// reached fails at once (each attempt would wait for a connection).
const MIGRATION_CLASH: Duration = Duration::from_secs(2);

enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The SQL state store.
pub struct SqlStore {
    pool: Pool,
    migrated: tokio::sync::OnceCell<()>,
}

/// The statements, written once with `?` placeholders (SQLite) and numbered for Postgres.
const GET: &str =
    "SELECT value FROM mcpmw_entries WHERE space = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)";
const PUT: &str = "INSERT INTO mcpmw_entries (space, key, value, expires_at) VALUES (?, ?, ?, ?) \
                   ON CONFLICT (space, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at";
const TAKE: &str = "DELETE FROM mcpmw_entries WHERE space = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?) \
                    RETURNING value";
const DELETE: &str = "DELETE FROM mcpmw_entries WHERE space = ? AND key = ?";
const SWEEP: &str = "DELETE FROM mcpmw_entries WHERE expires_at IS NOT NULL AND expires_at <= ?";
// `substr`, not `LIKE`: SQLite's LIKE ignores case, Postgres's does not.
const COUNT: &str = "SELECT COUNT(*) FROM mcpmw_entries WHERE space = ? AND substr(key, 1, ?) = ? \
                     AND (expires_at IS NULL OR expires_at > ?)";
// The primary key's order within one space: the index answers it, the limit ends the scan.
const LIST: &str = "SELECT key, value FROM mcpmw_entries WHERE space = ? AND (expires_at IS NULL OR expires_at > ?) \
                    ORDER BY key LIMIT ?";

/// The statements for Postgres, numbered once.
struct PgStatements {
    get: String,
    put: String,
    take: String,
    delete: String,
    sweep: String,
    count: String,
    list: String,
}

static PG: std::sync::LazyLock<PgStatements> = std::sync::LazyLock::new(|| PgStatements {
    get: numbered(GET),
    put: numbered(PUT),
    take: numbered(TAKE),
    delete: numbered(DELETE),
    sweep: numbered(SWEEP),
    count: numbered(COUNT),
    list: numbered(LIST),
});

/// `?` placeholders as Postgres's `$1`, `$2`, … (the statements above have no `?` elsewhere).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// libpq accepts a URL without a host when `?host=` names one (`postgresql://u@/db?host=/run/pg`,
/// a Unix socket); sqlx wants a host in the authority, and takes `?host=` over it.
fn with_host(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (format!("{userinfo}@"), host),
        None => (String::new(), authority),
    };
    if host.is_empty() && tail.contains("host=") {
        format!("{scheme}://{userinfo}localhost{tail}")
    } else {
        url.to_owned()
    }
}

fn db(e: sqlx::Error) -> StateError {
    StateError::Database(match e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        sqlx::Error::PoolTimedOut => "no database connection within 5 s".to_owned(),
        sqlx::Error::Io(io) => format!("cannot reach the database: {}", io.kind()),
        other => other.to_string(),
    })
}

impl SqlStore {
    /// A store for `url` (`sqlite://<path>`, `postgres://…`, `postgresql://…`); nothing is
    /// connected yet. A SQLite file's directory is created when missing.
    pub fn open(url: &str) -> Result<Self, StateError> {
        let bad = |e: sqlx::Error| StateError::Database(format!("state.url is not usable: {e}"));
        let pool = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(bad)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(WAIT);
            if let Some(parent) = options.get_filename().parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StateError::Database(format!("cannot create {}: {e}", parent.display())))?;
            }
            Pool::Sqlite(SqlitePoolOptions::new().max_connections(4).acquire_timeout(WAIT).connect_lazy_with(options))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(&with_host(url)).map_err(bad)?;
            Pool::Postgres(PgPoolOptions::new().max_connections(8).acquire_timeout(WAIT).connect_lazy_with(options))
        } else {
            return Err(StateError::Database("state.url must start with sqlite:, postgres: or postgresql:".into()));
        };
        Ok(Self { pool, migrated: tokio::sync::OnceCell::new() })
    }

    /// Connects and brings the schema up to date (once; again after a failure).
    pub async fn ready(&self) -> Result<(), StateError> {
        let run = || async {
            match &self.pool {
                Pool::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
                Pool::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
            }
        };
        let migrate = || async {
            // SQLite has no migration lock: two processes opening a new file at once (replicas,
            // or `login` beside a starting gateway) both apply it, and the second one's record
            // of it fails. Run again, the schema is there and recorded.
            let until = tokio::time::Instant::now() + MIGRATION_CLASH;
            let mut outcome = run().await;
            while outcome.as_ref().is_err_and(clash) && tokio::time::Instant::now() < until {
                tokio::time::sleep(MIGRATION_RETRY).await;
                outcome = run().await;
            }
            outcome.map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => db(e),
                other => StateError::Database(other.to_string()),
            })
        };
        self.migrated.get_or_try_init(migrate).await.map(|_| ())
    }
}

/// Whether a failed migration clashed with another process applying it (its record or a lock
/// in the database), rather than failing to reach the database.
fn clash(error: &sqlx::migrate::MigrateError) -> bool {
    use sqlx::migrate::MigrateError;
    matches!(
        error,
        MigrateError::Execute(sqlx::Error::Database(_)) | MigrateError::ExecuteMigration(sqlx::Error::Database(_), _)
    )
}

/// The two statements that answer one live entry's value.
#[derive(Clone, Copy)]
enum Statement {
    Get,
    Take,
}

impl SqlStore {
    /// Runs `GET` or `TAKE` (the same binds: space, key, now) on either database.
    async fn value(&self, statement: Statement, space: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.ready().await?;
        let now = unix_ms(SystemTime::now());
        let (sqlite, postgres) = match statement {
            Statement::Get => (GET, PG.get.as_str()),
            Statement::Take => (TAKE, PG.take.as_str()),
        };
        match &self.pool {
            Pool::Sqlite(pool) => sqlx::query_scalar(sqlite).bind(space).bind(key).bind(now).fetch_optional(pool).await,
            Pool::Postgres(pool) => {
                sqlx::query_scalar(postgres).bind(space).bind(key).bind(now).fetch_optional(pool).await
            }
        }
        .map_err(db)
    }
}

impl StateStore for SqlStore {
    fn get<'a>(&'a self, space: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StateError>> {
        self.value(Statement::Get, space, key).boxed()
    }

    fn put<'a>(
        &'a self,
        space: &'a str,
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        async move {
            self.ready().await?;
            let expires = ttl.map(|ttl| unix_ms(SystemTime::now() + ttl));
            match &self.pool {
                Pool::Sqlite(pool) => {
                    sqlx::query(PUT).bind(space).bind(key).bind(value).bind(expires).execute(pool).await.map(|_| ())
                }
                Pool::Postgres(pool) => {
                    sqlx::query(&PG.put).bind(space).bind(key).bind(value).bind(expires).execute(pool).await.map(|_| ())
                }
            }
            .map_err(db)
        }
        .boxed()
    }

    fn put_many<'a>(
        &'a self,
        entries: &'a [(String, String, Vec<u8>)],
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        async move {
            self.ready().await?;
            let expires = ttl.map(|ttl| unix_ms(SystemTime::now() + ttl));
            match &self.pool {
                Pool::Sqlite(pool) => {
                    let mut tx = pool.begin().await.map_err(db)?;
                    for (space, key, value) in entries {
                        sqlx::query(PUT)
                            .bind(space)
                            .bind(key)
                            .bind(value)
                            .bind(expires)
                            .execute(&mut *tx)
                            .await
                            .map_err(db)?;
                    }
                    tx.commit().await.map_err(db)
                }
                Pool::Postgres(pool) => {
                    let mut tx = pool.begin().await.map_err(db)?;
                    for (space, key, value) in entries {
                        sqlx::query(&PG.put)
                            .bind(space)
                            .bind(key)
                            .bind(value)
                            .bind(expires)
                            .execute(&mut *tx)
                            .await
                            .map_err(db)?;
                    }
                    tx.commit().await.map_err(db)
                }
            }
        }
        .boxed()
    }

    fn take<'a>(&'a self, space: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StateError>> {
        self.value(Statement::Take, space, key).boxed()
    }

    fn delete<'a>(&'a self, space: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
        async move {
            self.ready().await?;
            match &self.pool {
                Pool::Sqlite(pool) => {
                    sqlx::query(DELETE).bind(space).bind(key).execute(pool).await.map(|r| r.rows_affected())
                }
                Pool::Postgres(pool) => {
                    sqlx::query(&PG.delete).bind(space).bind(key).execute(pool).await.map(|r| r.rows_affected())
                }
            }
            .map(|n| n > 0)
            .map_err(db)
        }
        .boxed()
    }

    fn count<'a>(&'a self, space: &'a str, prefix: &'a str) -> BoxFuture<'a, Result<u64, StateError>> {
        async move {
            self.ready().await?;
            // Characters, as both databases count them in `substr` (an `integer` for Postgres).
            let (length, now) = (i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX), unix_ms(SystemTime::now()));
            let n: i64 = match &self.pool {
                Pool::Sqlite(pool) => {
                    sqlx::query_scalar(COUNT).bind(space).bind(length).bind(prefix).bind(now).fetch_one(pool).await
                }
                Pool::Postgres(pool) => {
                    sqlx::query_scalar(&PG.count).bind(space).bind(length).bind(prefix).bind(now).fetch_one(pool).await
                }
            }
            .map_err(db)?;
            Ok(u64::try_from(n).unwrap_or(0))
        }
        .boxed()
    }

    fn list<'a>(&'a self, space: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<super::Entry>, StateError>> {
        async move {
            self.ready().await?;
            let (now, limit) = (unix_ms(SystemTime::now()), i64::try_from(limit).unwrap_or(i64::MAX));
            match &self.pool {
                Pool::Sqlite(pool) => sqlx::query_as(LIST).bind(space).bind(now).bind(limit).fetch_all(pool).await,
                Pool::Postgres(pool) => {
                    sqlx::query_as(&PG.list).bind(space).bind(now).bind(limit).fetch_all(pool).await
                }
            }
            .map_err(db)
        }
        .boxed()
    }

    fn sweep(&self) -> BoxFuture<'_, Result<u64, StateError>> {
        async move {
            self.ready().await?;
            let now = unix_ms(SystemTime::now());
            match &self.pool {
                Pool::Sqlite(pool) => sqlx::query(SWEEP).bind(now).execute(pool).await.map(|r| r.rows_affected()),
                Pool::Postgres(pool) => sqlx::query(&PG.sweep).bind(now).execute(pool).await.map(|r| r.rows_affected()),
            }
            .map_err(db)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_url_without_a_host_gets_one() {
        let url = with_host("postgresql://postgres:@/postgres?host=/tmp/pg");
        assert_eq!(url, "postgresql://postgres:@localhost/postgres?host=/tmp/pg");
        assert_eq!(with_host("postgres://u:p@db:5432/x"), "postgres://u:p@db:5432/x");
    }

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(numbered(DELETE), "DELETE FROM mcpmw_entries WHERE space = $1 AND key = $2");
        assert!(numbered(PUT).contains("VALUES ($1, $2, $3, $4)"));
    }
}
