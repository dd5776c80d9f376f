//! Metadata store: one closed enum over SQLite and PostgreSQL.
//!
//! Feature stores write one SQL text that runs on both (`$N` placeholders, `ON CONFLICT`,
//! `RETURNING`, times bound from Rust). Nothing here knows about features.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

#[doc(hidden)]
pub mod testing;

/// A connection pool on one of the supported databases.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same expression against whichever pool `$db` holds.
macro_rules! on_pool {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            $crate::infra::db::Db::Sqlite($p) => $body,
            $crate::infra::db::Db::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// How long a SQLite statement waits for a lock held by another connection.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a truncating checkpoint waits for readers and writers (see `Db::checkpoint`).
const CHECKPOINT_WAIT: Duration = Duration::from_millis(250);

/// The size SQLite cuts its write-ahead log back to after a checkpoint reset it.
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// How long a readiness probe waits for the database.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a request waits for a PostgreSQL connection: while the server restarts, requests
/// answer 503 (and Terraform retries) within seconds instead of queueing.
const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Db {
    /// Connects to `sqlite://…` or `postgres://…`.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // NORMAL in WAL mode survives process crashes and never loses consistency;
                // commits that must outlive a power loss (state versions) switch to FULL
                // through `DurableCommits`.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
                // A WAL that was reset is cut back to this size rather than kept at its peak.
                .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string());
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            Ok(Db::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(PG_ACQUIRE_TIMEOUT)
                // Connections broken by a server restart are found and replaced on acquire.
                .test_before_acquire(true)
                .connect_with(options)
                .await?;
            Ok(Db::Postgres(pool))
        } else {
            anyhow::bail!("database URL must start with sqlite:// or postgres://")
        }
    }

    /// Applies pending migrations for this backend.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await?,
            Db::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        Ok(())
    }

    /// A cheap round trip for readiness checks, bounded by `PING_TIMEOUT` so that a probe
    /// answers promptly while the database is down (a timeout is `PoolTimedOut`).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        let round_trip =
            async { on_pool!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ())) };
        tokio::time::timeout(PING_TIMEOUT, round_trip)
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    /// SQLite: copies the write-ahead log into the database file and truncates it.
    /// SQLite's own checkpoints after commits never wait for readers, so under a steady
    /// stream of them the log is never reset and grows without bound (hundreds of MB a
    /// minute under a write load). A truncating checkpoint waits for readers of older
    /// snapshots and holds off new writers meanwhile, so it waits only `CHECKPOINT_WAIT`
    /// and gives up when the database stays busy: answers whether the log was truncated.
    /// Nothing to do on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<bool, sqlx::Error> {
        let Db::Sqlite(p) = self else {
            return Ok(true);
        };
        let mut conn = p.acquire().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA busy_timeout = {}",
            CHECKPOINT_WAIT.as_millis()
        )))
        .execute(&mut *conn)
        .await?;
        let checkpoint = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await;
        let restored = sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA busy_timeout = {}",
            SQLITE_BUSY_TIMEOUT.as_millis()
        )))
        .execute(&mut *conn)
        .await;
        if restored.is_err() {
            // Not back in the pool with the short wait.
            conn.detach();
        }
        let (busy, _, _) = checkpoint?;
        Ok(busy == 0)
    }

    /// Short backend name for logs and metrics.
    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }
}

/// Connects to PostgreSQL inside a new, empty schema (isolated test databases).
pub async fn connect_in_new_schema(url: &str) -> anyhow::Result<Db> {
    let admin = PgPool::connect(url).await?;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    // The name is generated above, never user input.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await?;
    admin.close().await;
    let options = PgConnectOptions::from_str(url)?.options([("search_path", schema.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?;
    let db = Db::Postgres(pool);
    db.migrate().await?;
    Ok(db)
}

/// Makes the commits of one connection durable against power loss, or relaxes that again.
/// PostgreSQL commits are always durable (`synchronous_commit` is the operator's choice).
pub trait DurableCommits {
    fn durable_commits(
        &mut self,
        on: bool,
    ) -> impl std::future::Future<Output = sqlx::Result<()>> + Send;
}

impl DurableCommits for sqlx::SqliteConnection {
    async fn durable_commits(&mut self, on: bool) -> sqlx::Result<()> {
        let pragma = if on {
            "PRAGMA synchronous = FULL"
        } else {
            "PRAGMA synchronous = NORMAL"
        };
        sqlx::query(pragma).execute(self).await.map(|_| ())
    }
}

impl DurableCommits for sqlx::PgConnection {
    async fn durable_commits(&mut self, _on: bool) -> sqlx::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_match_between_backends() {
        let names = |m: &sqlx::migrate::Migrator| {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&SQLITE_MIGRATIONS), names(&POSTGRES_MIGRATIONS));
    }
}
