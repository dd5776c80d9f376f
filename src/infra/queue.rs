//! A durable work queue on the `jobs` table: producers enqueue, workers on any replica claim
//! with a lease, and a job whose worker died is claimed again once its lease runs out.
//!
//! Infrastructure (it knows no feature), so that a feature can hand out its own work (runs)
//! through it; `jobs::queue` is the same module, the name background work uses.

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::infra::db::{Db, on_pool};

/// A queued job as claimed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    pub attempts: i64,
}

fn deadline(lease: std::time::Duration) -> (DateTime<Utc>, DateTime<Utc>) {
    let now = Utc::now();
    (
        now,
        now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::zero()),
    )
}

/// Queues a job of `kind` to run from `run_after` on; returns its id.
pub async fn enqueue(db: &Db, kind: &str, payload: &str, run_after: DateTime<Utc>) -> Result<i64> {
    const SQL: &str = "INSERT INTO jobs (kind, payload, run_after, attempts, created_at) \
        VALUES ($1, $2, $3, 0, $4) RETURNING id";
    let id: (i64,) = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(kind).bind(payload).bind(run_after).bind(Utc::now()).fetch_one(p).await)?;
    Ok(id.0)
}

/// Claims the oldest due job of `kind` for `lease`; renew it with [`renew`].
pub async fn claim(
    db: &Db,
    kind: &str,
    holder: &str,
    lease: std::time::Duration,
) -> Result<Option<Job>> {
    claim_where(db, "kind = $3", kind, holder, lease).await
}

/// Claims the oldest due job whose kind starts with `prefix` (e.g. every org's runs).
pub async fn claim_prefixed(
    db: &Db,
    prefix: &str,
    holder: &str,
    lease: std::time::Duration,
) -> Result<Option<Job>> {
    let pattern = format!("{}%", prefix.replace(['%', '_'], ""));
    claim_where(db, "kind LIKE $3", &pattern, holder, lease).await
}

async fn claim_where(
    db: &Db,
    filter: &'static str,
    kind: &str,
    holder: &str,
    lease: std::time::Duration,
) -> Result<Option<Job>> {
    // PostgreSQL: concurrent claimers skip each other's locked rows instead of queueing.
    // SQLite: one writer at a time makes the statement atomic on its own.
    let pick = format!(
        "SELECT id FROM jobs WHERE {filter} AND finished_at IS NULL \
         AND run_after <= $4 AND (leased_until IS NULL OR leased_until <= $4) \
         ORDER BY run_after, id LIMIT 1"
    );
    let lock = if matches!(db, Db::Postgres(_)) {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE jobs SET leased_until = $1, lease_holder = $2, attempts = attempts + 1 \
         WHERE id = ({pick}{lock}) RETURNING id, kind, payload, attempts"
    );
    let (now, until) = deadline(lease);
    let row = on_pool!(db, p => sqlx::query_as::<_, Job>(sqlx::AssertSqlSafe(sql.clone()))
        .bind(until).bind(holder).bind(kind).bind(now)
        .fetch_optional(p).await)?;
    Ok(row)
}

/// Extends `holder`'s lease on job `id`; false when the lease was lost (expired and claimed
/// by another holder) or the job is finished.
pub async fn renew(db: &Db, id: i64, holder: &str, lease: std::time::Duration) -> Result<bool> {
    const SQL: &str = "UPDATE jobs SET leased_until = $1 \
        WHERE id = $2 AND lease_holder = $3 AND finished_at IS NULL";
    let (_, until) = deadline(lease);
    let done = on_pool!(db, p => sqlx::query(SQL)
        .bind(until).bind(id).bind(holder)
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Marks a claimed job done (or failed for good, with `error`).
pub async fn finish(db: &Db, job: &Job, holder: &str, error: Option<&str>) -> Result<bool> {
    finish_held(db, job.id, holder, error).await
}

/// Marks job `id` done if `holder` still holds it.
pub async fn finish_held(db: &Db, id: i64, holder: &str, error: Option<&str>) -> Result<bool> {
    const SQL: &str = "UPDATE jobs SET finished_at = $1, last_error = $2, leased_until = NULL \
        WHERE id = $3 AND lease_holder = $4 AND finished_at IS NULL";
    let done = on_pool!(db, p => sqlx::query(SQL)
        .bind(Utc::now()).bind(error).bind(id).bind(holder)
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Ends job `id` whoever holds it (a producer withdrawing work nobody should do any more).
pub async fn withdraw(db: &Db, id: i64, error: &str) -> Result<bool> {
    const SQL: &str = "UPDATE jobs SET finished_at = $1, last_error = $2, leased_until = NULL \
        WHERE id = $3 AND finished_at IS NULL";
    let done = on_pool!(db, p => sqlx::query(SQL)
        .bind(Utc::now()).bind(error).bind(id)
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Unfinished jobs of kinds starting with `prefix` whose lease ran out: (id, lease holder).
pub async fn expired(db: &Db, prefix: &str) -> Result<Vec<(i64, String)>> {
    const SQL: &str = "SELECT id, lease_holder FROM jobs WHERE kind LIKE $1 \
        AND finished_at IS NULL AND leased_until IS NOT NULL AND leased_until <= $2 \
        AND lease_holder IS NOT NULL ORDER BY id LIMIT 500";
    let pattern = format!("{}%", prefix.replace(['%', '_'], ""));
    let rows: Vec<(i64, String)> = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(pattern).bind(Utc::now()).fetch_all(p).await)?;
    Ok(rows)
}

/// Gives a claimed job back to run again from `run_after`.
pub async fn retry(db: &Db, job: &Job, holder: &str, run_after: DateTime<Utc>) -> Result<bool> {
    const SQL: &str = "UPDATE jobs SET run_after = $1, leased_until = NULL \
        WHERE id = $2 AND lease_holder = $3 AND finished_at IS NULL";
    let done = on_pool!(db, p => sqlx::query(SQL)
        .bind(run_after).bind(job.id).bind(holder)
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn exercise(db: &Db) {
        let now = Utc::now();
        let lease = Duration::from_secs(60);
        let first = enqueue(db, "run", "{\"n\":1}", now).await.unwrap();
        let second = enqueue(db, "run", "{\"n\":2}", now).await.unwrap();
        enqueue(db, "run", "{\"n\":3}", now + chrono::Duration::hours(1))
            .await
            .unwrap();
        let a = claim(db, "run", "a", lease).await.unwrap().unwrap();
        assert!(renew(db, a.id, "a", lease).await.unwrap());
        assert!(!renew(db, a.id, "b", lease).await.unwrap());
        let b = claim(db, "run", "b", lease).await.unwrap().unwrap();
        assert_eq!((a.id, b.id), (first, second));
        assert_eq!(a.attempts, 1);
        // The third is not due, and the others are leased.
        assert!(claim(db, "run", "c", lease).await.unwrap().is_none());
        assert!(finish(db, &a, "a", None).await.unwrap());
        // Only the holder can finish; a finished job stays finished.
        assert!(!finish(db, &b, "a", None).await.unwrap());
        assert!(!finish(db, &a, "a", None).await.unwrap());
        // A job handed back (or whose lease runs out) is claimed again.
        assert!(retry(db, &b, "b", Utc::now()).await.unwrap());
        let again = claim(db, "run", "c", Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.id, again.attempts), (second, 2));
        let taken_over = claim(db, "run", "d", lease).await.unwrap().unwrap();
        assert_eq!((taken_over.id, taken_over.attempts), (second, 3));
        assert!(!finish(db, &again, "c", None).await.unwrap());
        assert!(finish(db, &taken_over, "d", Some("failed")).await.unwrap());
    }

    #[tokio::test]
    async fn jobs_are_claimed_once_and_reclaimed_after_their_lease_on_sqlite() {
        let (db, _dir) = crate::infra::db::testing::sqlite().await;
        exercise(&db).await;
    }

    #[tokio::test]
    async fn jobs_are_claimed_once_and_reclaimed_after_their_lease_on_postgres() {
        let Some(db) = crate::infra::db::testing::postgres().await else {
            return;
        };
        exercise(&db).await;
    }
}
