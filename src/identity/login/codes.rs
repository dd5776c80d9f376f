//! Authorization codes: stored hashed, single use, bound to client, redirect URI and PKCE
//! challenge, valid for a minute.

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::identity::auth::token;
use crate::infra::db::{Db, on_pool};

pub const CODE_TTL: chrono::Duration = chrono::Duration::seconds(60);

pub struct NewCode<'a> {
    pub user_id: i64,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_challenge: &'a str,
}

/// Stores a new code and returns it (the only time it exists in clear).
pub async fn issue(db: &Db, code: NewCode<'_>) -> Result<String> {
    let secret = token::random_secret()?;
    const SQL: &str = "INSERT INTO oauth_codes (code_hash, user_id, client_id, redirect_uri, \
                       code_challenge, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";
    on_pool!(db, p => sqlx::query(SQL)
        .bind(token::hash(&secret))
        .bind(code.user_id)
        .bind(code.client_id)
        .bind(code.redirect_uri)
        .bind(code.code_challenge)
        .bind(Utc::now() + CODE_TTL)
        .execute(p)
        .await
        .map(|_| ()))?;
    Ok(secret)
}

#[derive(Debug, sqlx::FromRow)]
pub struct CodeRow {
    pub user_id: i64,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub expires_at: DateTime<Utc>,
}

/// What presenting a code found.
pub enum Redeemed {
    /// First use: the code's bindings, to be checked by the caller.
    Fresh(CodeRow),
    /// The code was used before; carries the login token it produced, if any.
    Replayed(Option<String>),
    Unknown,
}

/// Marks the code used in the same statement that reads it, so two replicas racing on one
/// code cannot both win.
pub async fn redeem(db: &Db, code: &str) -> Result<Redeemed> {
    let hash = token::hash(code);
    const CLAIM: &str = "UPDATE oauth_codes SET used_at = $1 WHERE code_hash = $2 \
                         AND used_at IS NULL RETURNING user_id, client_id, redirect_uri, \
                         code_challenge, expires_at";
    let fresh = on_pool!(db, p => sqlx::query_as::<_, CodeRow>(CLAIM)
        .bind(Utc::now()).bind(&hash).fetch_optional(p).await)?;
    if let Some(row) = fresh {
        return Ok(Redeemed::Fresh(row));
    }
    const USED: &str = "SELECT token_jti FROM oauth_codes WHERE code_hash = $1";
    let used: Option<(Option<String>,)> =
        on_pool!(db, p => sqlx::query_as(USED).bind(&hash).fetch_optional(p).await)?;
    Ok(match used {
        Some((jti,)) => Redeemed::Replayed(jti),
        None => Redeemed::Unknown,
    })
}

/// Remembers which login token a code produced, so a replay can revoke it.
pub async fn record_token(db: &Db, code: &str, jti: &str) -> Result<()> {
    const SQL: &str = "UPDATE oauth_codes SET token_jti = $1 WHERE code_hash = $2";
    on_pool!(db, p => sqlx::query(SQL).bind(jti).bind(token::hash(code)).execute(p).await.map(|_| ()))?;
    Ok(())
}

/// Drops codes that expired a while ago (they can no longer be redeemed nor replayed).
pub async fn sweep(db: &Db) -> Result<u64> {
    const SQL: &str = "DELETE FROM oauth_codes WHERE expires_at < $1";
    let cutoff = Utc::now() - chrono::Duration::days(1);
    Ok(
        on_pool!(db, p => sqlx::query(SQL).bind(cutoff).execute(p).await.map(|r| r.rows_affected()))?,
    )
}
