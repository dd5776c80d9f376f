//! SQL for API tokens, login sessions, the signing keys of login tokens, and the roles and
//! policies a caller's grants come from.

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::infra::db::{Db, on_pool};

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
    pub team_id: Option<i64>,
    pub team_name: Option<String>,
    pub team_role: Option<String>,
    /// JSON array of resource globs.
    pub scopes: Option<String>,
}

pub struct NewToken<'a> {
    pub org_id: i64,
    pub name: &'a str,
    pub role: &'a str,
    pub token_hash: &'a [u8],
    pub created_by: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
    pub team_id: Option<i64>,
    pub scopes: Option<String>,
}

const TOKEN_COLUMNS: &str = "t.id, t.org_id, o.name AS org_name, t.name, t.role, t.token_hash, \
     t.created_at, t.created_by, t.expires_at, t.revoked_at, t.team_id, te.name AS team_name, \
     te.role AS team_role, t.scopes";

const TOKEN_FROM: &str =
    " FROM api_tokens t JOIN orgs o ON o.id = t.org_id LEFT JOIN teams te ON te.id = t.team_id";

pub async fn insert_token(db: &Db, token: NewToken<'_>, now: DateTime<Utc>) -> Result<i64> {
    const SQL: &str = "INSERT INTO api_tokens (org_id, name, role, token_hash, created_at, \
                       created_by, expires_at, team_id, scopes) \
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id";
    let id: (i64,) = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(token.org_id)
        .bind(token.name)
        .bind(token.role)
        .bind(token.token_hash)
        .bind(now)
        .bind(token.created_by)
        .bind(token.expires_at)
        .bind(token.team_id)
        .bind(&token.scopes)
        .fetch_one(p)
        .await)?;
    Ok(id.0)
}

pub async fn find_token_by_hash(db: &Db, hash: &[u8]) -> Result<Option<TokenRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        TOKEN_COLUMNS,
        TOKEN_FROM,
        " WHERE t.token_hash = $1"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, TokenRow>(SQL).bind(hash).fetch_optional(p).await)?)
}

pub async fn list_tokens(db: &Db, org_id: i64, limit: i64, offset: i64) -> Result<Vec<TokenRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        TOKEN_COLUMNS,
        TOKEN_FROM,
        " WHERE t.org_id = $1 ORDER BY t.id LIMIT $2 OFFSET $3"
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

/// A policy document attached to a caller, with the org it belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttachedPolicy {
    pub org_id: i64,
    pub document: String,
}

/// Policies attached to an API token or to its team.
pub async fn token_policies(
    db: &Db,
    token_id: i64,
    team_id: Option<i64>,
) -> Result<Vec<AttachedPolicy>> {
    const SQL: &str = "SELECT p.org_id, p.document FROM policy_attachments a \
                       JOIN policies p ON p.id = a.policy_id \
                       WHERE a.token_id = $1 OR a.team_id = $2";
    Ok(on_pool!(db, p => sqlx::query_as::<_, AttachedPolicy>(SQL)
        .bind(token_id).bind(team_id).fetch_all(p).await)?)
}

/// A login token (JWT id) and its user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub user_id: i64,
    pub user_name: String,
    pub disabled_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn find_user_token(db: &Db, jti: &str) -> Result<Option<SessionRow>> {
    const SQL: &str = "SELECT u.id AS user_id, u.name AS user_name, u.disabled_at, \
                       t.expires_at, t.revoked_at \
                       FROM user_tokens t JOIN users u ON u.id = t.user_id WHERE t.jti = $1";
    Ok(on_pool!(db, p => sqlx::query_as::<_, SessionRow>(SQL).bind(jti).fetch_optional(p).await)?)
}

/// One source of a user's role in an org: their membership or one of their teams.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoleRow {
    pub org_id: i64,
    pub org_name: String,
    pub role: Option<String>,
}

/// Every org the user belongs to, with the membership role and each team's role.
pub async fn user_roles(db: &Db, user_id: i64) -> Result<Vec<RoleRow>> {
    const SQL: &str = "SELECT m.org_id, o.name AS org_name, m.role FROM org_members m \
                       JOIN orgs o ON o.id = m.org_id WHERE m.user_id = $1 \
                       UNION ALL \
                       SELECT te.org_id, o.name AS org_name, te.role FROM team_members tm \
                       JOIN teams te ON te.id = tm.team_id JOIN orgs o ON o.id = te.org_id \
                       JOIN org_members m ON m.org_id = te.org_id AND m.user_id = tm.user_id \
                       WHERE tm.user_id = $1";
    Ok(on_pool!(db, p => sqlx::query_as::<_, RoleRow>(SQL).bind(user_id).fetch_all(p).await)?)
}

/// Policies attached to the user or to any of their teams.
pub async fn user_policies(db: &Db, user_id: i64) -> Result<Vec<AttachedPolicy>> {
    const SQL: &str = "SELECT p.org_id, p.document FROM policy_attachments a \
                       JOIN policies p ON p.id = a.policy_id \
                       WHERE a.user_id = $1 \
                       OR a.team_id IN (SELECT team_id FROM team_members WHERE user_id = $1)";
    Ok(on_pool!(db, p => sqlx::query_as::<_, AttachedPolicy>(SQL)
        .bind(user_id).fetch_all(p).await)?)
}

/// A signing key of login tokens: its id and the master key its secret is derived from.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LoginKeyRow {
    pub kid: String,
    pub master_key_id: String,
}

/// Keys not retired, newest first.
pub async fn active_login_keys(db: &Db) -> Result<Vec<LoginKeyRow>> {
    const SQL: &str = "SELECT kid, master_key_id FROM login_keys WHERE retired_at IS NULL \
                       ORDER BY created_at DESC, kid";
    Ok(on_pool!(db, p => sqlx::query_as::<_, LoginKeyRow>(SQL).fetch_all(p).await)?)
}

pub async fn retire_login_keys(db: &Db, now: DateTime<Utc>) -> Result<()> {
    const SQL: &str = "UPDATE login_keys SET retired_at = $1 WHERE retired_at IS NULL";
    on_pool!(db, p => sqlx::query(SQL).bind(now).execute(p).await.map(|_| ()))?;
    Ok(())
}

pub async fn insert_login_key(
    db: &Db,
    kid: &str,
    master_key_id: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    const SQL: &str = "INSERT INTO login_keys (kid, master_key_id, created_at) VALUES ($1, $2, $3)";
    on_pool!(db, p => sqlx::query(SQL)
        .bind(kid).bind(master_key_id).bind(now).execute(p).await.map(|_| ()))?;
    Ok(())
}
