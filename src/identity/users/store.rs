//! SQL for users, memberships, login tokens and team lookups.

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::infra::db::{Db, on_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub password_hash: Option<String>,
    pub invite_expires_at: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const USER_COLUMNS: &str =
    "u.id, u.name, u.password_hash, u.invite_expires_at, u.disabled_at, u.created_at";

pub async fn find_user(db: &Db, name: &str) -> Result<Option<UserRow>> {
    const SQL: &str =
        const_format::concatcp!("SELECT ", USER_COLUMNS, " FROM users u WHERE u.name = $1");
    Ok(on_pool!(db, p => sqlx::query_as::<_, UserRow>(SQL).bind(name).fetch_optional(p).await)?)
}

pub async fn find_user_by_id(db: &Db, id: i64) -> Result<Option<UserRow>> {
    const SQL: &str =
        const_format::concatcp!("SELECT ", USER_COLUMNS, " FROM users u WHERE u.id = $1");
    Ok(on_pool!(db, p => sqlx::query_as::<_, UserRow>(SQL).bind(id).fetch_optional(p).await)?)
}

/// The user holding a live invitation with this hash.
pub async fn find_user_by_invite(db: &Db, invite_hash: &[u8]) -> Result<Option<UserRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        USER_COLUMNS,
        " FROM users u WHERE u.invite_hash = $1"
    );
    Ok(
        on_pool!(db, p => sqlx::query_as::<_, UserRow>(SQL).bind(invite_hash).fetch_optional(p).await)?,
    )
}

pub struct NewUser<'a> {
    pub name: &'a str,
    pub password_hash: Option<&'a str>,
    pub invite_hash: Option<&'a [u8]>,
    pub invite_expires_at: Option<DateTime<Utc>>,
}

pub async fn insert_user(db: &Db, user: NewUser<'_>, now: DateTime<Utc>) -> Result<i64> {
    const SQL: &str = "INSERT INTO users (name, password_hash, invite_hash, invite_expires_at, \
                       created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id";
    let id: (i64,) = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(user.name)
        .bind(user.password_hash)
        .bind(user.invite_hash)
        .bind(user.invite_expires_at)
        .bind(now)
        .fetch_one(p)
        .await)?;
    Ok(id.0)
}

/// Sets a password and closes any invitation.
pub async fn set_password(db: &Db, user_id: i64, password_hash: &str) -> Result<()> {
    const SQL: &str = "UPDATE users SET password_hash = $1, invite_hash = NULL, \
                       invite_expires_at = NULL WHERE id = $2";
    on_pool!(db, p => sqlx::query(SQL).bind(password_hash).bind(user_id).execute(p).await.map(|_| ()))?;
    Ok(())
}

pub async fn set_disabled(db: &Db, user_id: i64, at: Option<DateTime<Utc>>) -> Result<()> {
    const SQL: &str = "UPDATE users SET disabled_at = $1 WHERE id = $2";
    on_pool!(db, p => sqlx::query(SQL).bind(at).bind(user_id).execute(p).await.map(|_| ()))?;
    Ok(())
}

pub async fn delete_user(db: &Db, user_id: i64) -> Result<()> {
    const SQL: &str = "DELETE FROM users WHERE id = $1";
    on_pool!(db, p => sqlx::query(SQL).bind(user_id).execute(p).await.map(|_| ()))?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub user_id: i64,
    pub name: String,
    pub role: String,
    pub disabled_at: Option<DateTime<Utc>>,
    pub pending_invite: bool,
    pub created_at: DateTime<Utc>,
}

const MEMBER_SELECT: &str = "SELECT u.id AS user_id, u.name, m.role, u.disabled_at, \
     (u.password_hash IS NULL AND u.invite_hash IS NOT NULL) AS pending_invite, m.created_at \
     FROM org_members m JOIN users u ON u.id = m.user_id";

pub async fn find_member(db: &Db, org_id: i64, name: &str) -> Result<Option<MemberRow>> {
    const SQL: &str =
        const_format::concatcp!(MEMBER_SELECT, " WHERE m.org_id = $1 AND u.name = $2");
    Ok(
        on_pool!(db, p => sqlx::query_as::<_, MemberRow>(SQL).bind(org_id).bind(name).fetch_optional(p).await)?,
    )
}

pub async fn list_members(db: &Db, org_id: i64, limit: i64, offset: i64) -> Result<Vec<MemberRow>> {
    const SQL: &str = const_format::concatcp!(
        MEMBER_SELECT,
        " WHERE m.org_id = $1 ORDER BY m.user_id LIMIT $2 OFFSET $3"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, MemberRow>(SQL)
        .bind(org_id).bind(limit).bind(offset).fetch_all(p).await)?)
}

/// Adds a membership or changes its role.
pub async fn upsert_member(
    db: &Db,
    org_id: i64,
    user_id: i64,
    role: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    const SQL: &str = "INSERT INTO org_members (org_id, user_id, role, created_at) \
                       VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, user_id) DO UPDATE SET role = $3";
    on_pool!(db, p => sqlx::query(SQL).bind(org_id).bind(user_id).bind(role).bind(now)
        .execute(p).await.map(|_| ()))?;
    Ok(())
}

/// Removes a user from an org and its teams; returns how many memberships the user has left.
pub async fn remove_member(db: &Db, org_id: i64, user_id: i64) -> Result<i64> {
    const TEAMS: &str = "DELETE FROM team_members WHERE user_id = $1 \
                         AND team_id IN (SELECT id FROM teams WHERE org_id = $2)";
    const POLICIES: &str = "DELETE FROM policy_attachments WHERE user_id = $1 \
                            AND policy_id IN (SELECT id FROM policies WHERE org_id = $2)";
    const MEMBER: &str = "DELETE FROM org_members WHERE user_id = $1 AND org_id = $2";
    const LEFT: &str = "SELECT COUNT(*) FROM org_members WHERE user_id = $1";
    let left: (i64,) = on_pool!(db, p => {
        let mut tx = p.begin().await?;
        sqlx::query(TEAMS).bind(user_id).bind(org_id).execute(&mut *tx).await?;
        sqlx::query(POLICIES).bind(user_id).bind(org_id).execute(&mut *tx).await?;
        sqlx::query(MEMBER).bind(user_id).bind(org_id).execute(&mut *tx).await?;
        let left = sqlx::query_as(LEFT).bind(user_id).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(left)
    })?;
    Ok(left.0)
}

/// Org ids the user belongs to.
pub async fn member_orgs(db: &Db, user_id: i64) -> Result<Vec<i64>> {
    const SQL: &str = "SELECT org_id FROM org_members WHERE user_id = $1";
    let rows: Vec<(i64,)> =
        on_pool!(db, p => sqlx::query_as(SQL).bind(user_id).fetch_all(p).await)?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserTokenRow {
    pub jti: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn insert_user_token(
    db: &Db,
    jti: &str,
    user_id: i64,
    name: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    const SQL: &str = "INSERT INTO user_tokens (jti, user_id, name, created_at, expires_at) \
                       VALUES ($1, $2, $3, $4, $5)";
    on_pool!(db, p => sqlx::query(SQL).bind(jti).bind(user_id).bind(name).bind(now).bind(expires_at)
        .execute(p).await.map(|_| ()))?;
    Ok(())
}

pub async fn list_user_tokens(
    db: &Db,
    user_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<UserTokenRow>> {
    const SQL: &str = "SELECT jti, name, created_at, expires_at, revoked_at FROM user_tokens \
                       WHERE user_id = $1 ORDER BY created_at DESC, jti LIMIT $2 OFFSET $3";
    Ok(on_pool!(db, p => sqlx::query_as::<_, UserTokenRow>(SQL)
        .bind(user_id).bind(limit).bind(offset).fetch_all(p).await)?)
}

/// Revokes one of the user's live login tokens; false when there is none with that id.
pub async fn revoke_user_token(
    db: &Db,
    user_id: i64,
    jti: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    const SQL: &str = "UPDATE user_tokens SET revoked_at = $1 \
                       WHERE jti = $2 AND user_id = $3 AND revoked_at IS NULL";
    let done = on_pool!(db, p => sqlx::query(SQL).bind(now).bind(jti).bind(user_id)
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TeamRow {
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    pub role: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub async fn find_team(db: &Db, org_id: i64, name: &str) -> Result<Option<TeamRow>> {
    const SQL: &str =
        "SELECT id, org_id, name, role, created_at FROM teams WHERE org_id = $1 AND name = $2";
    Ok(
        on_pool!(db, p => sqlx::query_as::<_, TeamRow>(SQL).bind(org_id).bind(name).fetch_optional(p).await)?,
    )
}
