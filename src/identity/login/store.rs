//! SQL of `terraform login`: authorization codes (kept as hashes) and revoking the login token
//! a replayed code produced.

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::infra::db::{Db, on_pool};

pub struct NewCode<'a> {
    pub code_hash: &'a [u8],
    pub user_id: i64,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_challenge: &'a str,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_code(db: &Db, code: NewCode<'_>) -> Result<()> {
    const SQL: &str = "INSERT INTO oauth_codes (code_hash, user_id, client_id, redirect_uri, \
                       code_challenge, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";
    on_pool!(db, p => sqlx::query(SQL)
        .bind(code.code_hash)
        .bind(code.user_id)
        .bind(code.client_id)
        .bind(code.redirect_uri)
        .bind(code.code_challenge)
        .bind(code.expires_at)
        .execute(p)
        .await
        .map(|_| ()))?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct CodeRow {
    pub user_id: i64,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub expires_at: DateTime<Utc>,
}

/// Marks an unused code used and returns its bindings. Reading and marking are one statement
/// so that two replicas racing on one code cannot both win.
pub async fn claim_code(db: &Db, code_hash: &[u8], now: DateTime<Utc>) -> Result<Option<CodeRow>> {
    const SQL: &str = "UPDATE oauth_codes SET used_at = $1 WHERE code_hash = $2 \
                       AND used_at IS NULL RETURNING user_id, client_id, redirect_uri, \
                       code_challenge, expires_at";
    Ok(on_pool!(db, p => sqlx::query_as::<_, CodeRow>(SQL)
        .bind(now).bind(code_hash).fetch_optional(p).await)?)
}

/// For a known code: the id of the login token it produced, if any. `None` for an unknown
/// code.
pub async fn code_token(db: &Db, code_hash: &[u8]) -> Result<Option<Option<String>>> {
    const SQL: &str = "SELECT token_jti FROM oauth_codes WHERE code_hash = $1";
    let row: Option<(Option<String>,)> =
        on_pool!(db, p => sqlx::query_as(SQL).bind(code_hash).fetch_optional(p).await)?;
    Ok(row.map(|(jti,)| jti))
}

pub async fn set_code_token(db: &Db, code_hash: &[u8], jti: &str) -> Result<()> {
    const SQL: &str = "UPDATE oauth_codes SET token_jti = $1 WHERE code_hash = $2";
    on_pool!(db, p => sqlx::query(SQL).bind(jti).bind(code_hash).execute(p).await.map(|_| ()))?;
    Ok(())
}

/// Deletes codes that expired before `cutoff`; returns how many.
pub async fn delete_codes_expired_before(db: &Db, cutoff: DateTime<Utc>) -> Result<u64> {
    const SQL: &str = "DELETE FROM oauth_codes WHERE expires_at < $1";
    Ok(
        on_pool!(db, p => sqlx::query(SQL).bind(cutoff).execute(p).await.map(|r| r.rows_affected()))?,
    )
}

/// Revokes the login token `jti` unless it already is.
pub async fn revoke_user_token_by_jti(db: &Db, jti: &str, now: DateTime<Utc>) -> Result<()> {
    const SQL: &str =
        "UPDATE user_tokens SET revoked_at = $1 WHERE jti = $2 AND revoked_at IS NULL";
    on_pool!(db, p => sqlx::query(SQL).bind(now).bind(jti).execute(p).await.map(|_| ()))?;
    Ok(())
}
