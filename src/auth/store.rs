//! SQL for organisations and API tokens.

use chrono::{DateTime, Utc};

use crate::db::{Db, on_pool};
use crate::error::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrgRow {
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: i64,
    pub org_id: i64,
    pub org_name: String,
    pub name: String,
    pub role: String,
    pub token_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn insert_org(db: &Db, name: &str, now: DateTime<Utc>) -> Result<OrgRow> {
    const SQL: &str =
        "INSERT INTO orgs (name, created_at) VALUES ($1, $2) RETURNING id, name, created_at";
    Ok(on_pool!(db, p => sqlx::query_as::<_, OrgRow>(SQL).bind(name).bind(now).fetch_one(p).await)?)
}

pub async fn find_org(db: &Db, name: &str) -> Result<Option<OrgRow>> {
    const SQL: &str = "SELECT id, name, created_at FROM orgs WHERE name = $1";
    Ok(on_pool!(db, p => sqlx::query_as::<_, OrgRow>(SQL).bind(name).fetch_optional(p).await)?)
}

pub struct NewToken<'a> {
    pub org_id: i64,
    pub name: &'a str,
    pub role: &'a str,
    pub token_hash: &'a [u8],
    pub created_by: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
}

const TOKEN_COLUMNS: &str = "t.id, t.org_id, o.name AS org_name, t.name, t.role, t.token_hash, \
     t.created_at, t.created_by, t.expires_at, t.revoked_at";

pub async fn insert_token(db: &Db, token: NewToken<'_>, now: DateTime<Utc>) -> Result<i64> {
    const SQL: &str = "INSERT INTO api_tokens (org_id, name, role, token_hash, created_at, \
                       created_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";
    let id: (i64,) = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(token.org_id)
        .bind(token.name)
        .bind(token.role)
        .bind(token.token_hash)
        .bind(now)
        .bind(token.created_by)
        .bind(token.expires_at)
        .fetch_one(p)
        .await)?;
    Ok(id.0)
}

pub async fn find_token_by_hash(db: &Db, hash: &[u8]) -> Result<Option<TokenRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        TOKEN_COLUMNS,
        " FROM api_tokens t JOIN orgs o ON o.id = t.org_id WHERE t.token_hash = $1"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, TokenRow>(SQL).bind(hash).fetch_optional(p).await)?)
}

pub async fn list_tokens(db: &Db, org_id: i64, limit: i64, offset: i64) -> Result<Vec<TokenRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        TOKEN_COLUMNS,
        " FROM api_tokens t JOIN orgs o ON o.id = t.org_id WHERE t.org_id = $1 \
         ORDER BY t.id LIMIT $2 OFFSET $3"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, TokenRow>(SQL)
        .bind(org_id).bind(limit).bind(offset).fetch_all(p).await)?)
}

/// Marks a token revoked; false when the org has no such live token.
pub async fn revoke_token(db: &Db, org_id: i64, id: i64, now: DateTime<Utc>) -> Result<bool> {
    const SQL: &str = "UPDATE api_tokens SET revoked_at = $1 \
                       WHERE id = $2 AND org_id = $3 AND revoked_at IS NULL";
    let done = on_pool!(db, p => sqlx::query(SQL).bind(now).bind(id).bind(org_id).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}
