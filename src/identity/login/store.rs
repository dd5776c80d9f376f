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

/// A sign-in sent to the OpenID Connect issuer.
pub struct NewSsoLogin<'a> {
    pub state_hash: &'a [u8],
    pub master_key_id: &'a str,
    /// The login.v1 request to resume afterwards (JSON), if any.
    pub resume: Option<&'a str>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_sso_login(db: &Db, login: NewSsoLogin<'_>) -> Result<()> {
    const SQL: &str = "INSERT INTO oidc_logins (state_hash, master_key_id, resume, expires_at) \
                       VALUES ($1, $2, $3, $4)";
    on_pool!(db, p => sqlx::query(SQL)
        .bind(login.state_hash)
        .bind(login.master_key_id)
        .bind(login.resume)
        .bind(login.expires_at)
        .execute(p)
        .await
        .map(|_| ()))?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct SsoLoginRow {
    pub master_key_id: String,
    pub resume: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// Marks an unused sign-in used and returns it: a `state` is good for one callback.
pub async fn claim_sso_login(
    db: &Db,
    state_hash: &[u8],
    now: DateTime<Utc>,
) -> Result<Option<SsoLoginRow>> {
    const SQL: &str = "UPDATE oidc_logins SET used_at = $1 WHERE state_hash = $2 \
                       AND used_at IS NULL RETURNING master_key_id, resume, expires_at";
    Ok(on_pool!(db, p => sqlx::query_as::<_, SsoLoginRow>(SQL)
        .bind(now).bind(state_hash).fetch_optional(p).await)?)
}

pub async fn delete_sso_logins_expired_before(db: &Db, cutoff: DateTime<Utc>) -> Result<u64> {
    const SQL: &str = "DELETE FROM oidc_logins WHERE expires_at < $1";
    Ok(
        on_pool!(db, p => sqlx::query(SQL).bind(cutoff).execute(p).await.map(|r| r.rows_affected()))?,
    )
}

/// The user linked to `subject` at `issuer`, if any.
pub async fn find_identity(db: &Db, issuer: &str, subject: &str) -> Result<Option<i64>> {
    const SQL: &str = "SELECT user_id FROM user_identities WHERE issuer = $1 AND subject = $2";
    let row: Option<(i64,)> = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(issuer).bind(subject).fetch_optional(p).await)?;
    Ok(row.map(|(id,)| id))
}

/// Links a new user to `subject` at `issuer`.
pub async fn insert_identity(
    db: &Db,
    issuer: &str,
    subject: &str,
    user_id: i64,
    email: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    const SQL: &str = "INSERT INTO user_identities (issuer, subject, user_id, email, created_at, \
                       last_login_at) VALUES ($1, $2, $3, $4, $5, $5)";
    on_pool!(db, p => sqlx::query(SQL).bind(issuer).bind(subject).bind(user_id).bind(email)
        .bind(now).execute(p).await.map(|_| ()))?;
    Ok(())
}

pub async fn touch_identity(
    db: &Db,
    issuer: &str,
    subject: &str,
    email: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    const SQL: &str = "UPDATE user_identities SET last_login_at = $1, email = $2 \
                       WHERE issuer = $3 AND subject = $4";
    on_pool!(db, p => sqlx::query(SQL).bind(now).bind(email).bind(issuer).bind(subject)
        .execute(p).await.map(|_| ()))?;
    Ok(())
}

/// Whether the user is an admin of at least one org.
pub async fn is_admin_somewhere(db: &Db, user_id: i64) -> Result<bool> {
    const SQL: &str = "SELECT COUNT(*) FROM org_members WHERE user_id = $1 AND role = 'admin'";
    let (count,): (i64,) = on_pool!(db, p => sqlx::query_as(SQL).bind(user_id).fetch_one(p).await)?;
    Ok(count > 0)
}
