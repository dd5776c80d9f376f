//! SQL of the job leases and the work queue.

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::infra::db::{Db, on_pool};

/// Takes or renews the lease on `name` for `holder` unless another holder's lease is live.
pub async fn take_lease(
    db: &Db,
    name: &str,
    holder: &str,
    ttl: std::time::Duration,
) -> Result<bool> {
    const SQL: &str = "INSERT INTO job_leases (name, holder, expires_at) VALUES ($1, $2, $3) \
        ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
        WHERE job_leases.holder = excluded.holder OR job_leases.expires_at <= $4";
    let now = Utc::now();
    let expires = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::zero());
    let done = on_pool!(db, p => sqlx::query(SQL)
        .bind(name).bind(holder).bind(expires).bind(now)
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// A queued job as claimed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    pub attempts: i64,
}

pub async fn enqueue(db: &Db, kind: &str, payload: &str, run_after: DateTime<Utc>) -> Result<i64> {
    const SQL: &str = "INSERT INTO jobs (kind, payload, run_after, attempts, created_at) \
        VALUES ($1, $2, $3, 0, $4) RETURNING id";
    let id: (i64,) = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(kind).bind(payload).bind(run_after).bind(Utc::now()).fetch_one(p).await)?;
    Ok(id.0)
}

/// Leases the oldest due job of `kind` that nobody holds (or whose lease ran out).
pub async fn claim(
    db: &Db,
    kind: &str,
    holder: &str,
    lease: std::time::Duration,
) -> Result<Option<JobRow>> {
    // PostgreSQL: concurrent claimers skip each other's locked rows instead of queueing.
    // SQLite: one writer at a time makes the statement atomic on its own.
    const PICK: &str = "SELECT id FROM jobs WHERE kind = $3 AND finished_at IS NULL \
        AND run_after <= $4 AND (leased_until IS NULL OR leased_until <= $4) \
        ORDER BY run_after, id LIMIT 1";
    const UPDATE: &str = "UPDATE jobs SET leased_until = $1, lease_holder = $2, \
        attempts = attempts + 1 WHERE id = (";
    const RETURNING: &str = ") RETURNING id, kind, payload, attempts";
    const PG: &str = const_format::concatcp!(UPDATE, PICK, " FOR UPDATE SKIP LOCKED", RETURNING);
    const SQLITE: &str = const_format::concatcp!(UPDATE, PICK, RETURNING);
    let now = Utc::now();
    let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::zero());
    let row = match db {
        Db::Postgres(p) => {
            sqlx::query_as::<_, JobRow>(PG)
                .bind(until)
                .bind(holder)
                .bind(kind)
                .bind(now)
                .fetch_optional(p)
                .await?
        }
        Db::Sqlite(p) => {
            sqlx::query_as::<_, JobRow>(SQLITE)
                .bind(until)
                .bind(holder)
                .bind(kind)
                .bind(now)
                .fetch_optional(p)
                .await?
        }
    };
    Ok(row)
}

/// Ends a job `holder` still holds; false when its lease was lost to another claimer.
pub async fn finish(db: &Db, id: i64, holder: &str, error: Option<&str>) -> Result<bool> {
    const SQL: &str = "UPDATE jobs SET finished_at = $1, last_error = $2, leased_until = NULL \
        WHERE id = $3 AND lease_holder = $4 AND finished_at IS NULL";
    let done = on_pool!(db, p => sqlx::query(SQL)
        .bind(Utc::now()).bind(error).bind(id).bind(holder)
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Hands a job back for a later attempt (its lease ends).
pub async fn retry(db: &Db, id: i64, holder: &str, run_after: DateTime<Utc>) -> Result<bool> {
    const SQL: &str = "UPDATE jobs SET run_after = $1, leased_until = NULL \
        WHERE id = $2 AND lease_holder = $3 AND finished_at IS NULL";
    let done = on_pool!(db, p => sqlx::query(SQL)
        .bind(run_after).bind(id).bind(holder)
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}
