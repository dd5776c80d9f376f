//! SQL of the job leases.

use chrono::Utc;

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
