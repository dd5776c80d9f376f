//! SQL for custom policies and their attachments.

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::infra::db::{Db, on_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PolicyRow {
    pub id: i64,
    pub name: String,
    /// The validated JSON document as submitted.
    pub document: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const POLICY_COLUMNS: &str = "id, name, document, created_at, updated_at";

pub async fn insert_policy(
    db: &Db,
    org_id: i64,
    name: &str,
    document: &str,
    now: DateTime<Utc>,
) -> Result<PolicyRow> {
    const SQL: &str = const_format::concatcp!(
        "INSERT INTO policies (org_id, name, document, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) RETURNING ",
        POLICY_COLUMNS
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, PolicyRow>(SQL)
        .bind(org_id).bind(name).bind(document).bind(now).fetch_one(p).await)?)
}

pub async fn find_policy(db: &Db, org_id: i64, name: &str) -> Result<Option<PolicyRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        POLICY_COLUMNS,
        " FROM policies WHERE org_id = $1 AND name = $2"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, PolicyRow>(SQL)
        .bind(org_id).bind(name).fetch_optional(p).await)?)
}

/// A page of the org's policies by name (the `(org_id, name)` unique index).
pub async fn list_policies(
    db: &Db,
    org_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<PolicyRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        POLICY_COLUMNS,
        " FROM policies WHERE org_id = $1 ORDER BY name LIMIT $2 OFFSET $3"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, PolicyRow>(SQL)
        .bind(org_id).bind(limit).bind(offset).fetch_all(p).await)?)
}

pub async fn set_document(
    db: &Db,
    policy_id: i64,
    document: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    const SQL: &str = "UPDATE policies SET document = $1, updated_at = $2 WHERE id = $3";
    on_pool!(db, p => sqlx::query(SQL).bind(document).bind(now).bind(policy_id)
        .execute(p).await.map(|_| ()))?;
    Ok(())
}

/// Deletes a policy and its attachments (cascade).
pub async fn delete_policy(db: &Db, policy_id: i64) -> Result<bool> {
    const SQL: &str = "DELETE FROM policies WHERE id = $1";
    let done = on_pool!(db, p => sqlx::query(SQL).bind(policy_id)
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// The id of a live (unrevoked) API token of the org.
pub async fn find_org_token(db: &Db, org_id: i64, token_id: i64) -> Result<Option<i64>> {
    const SQL: &str =
        "SELECT id FROM api_tokens WHERE id = $1 AND org_id = $2 AND revoked_at IS NULL";
    let row: Option<(i64,)> = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(token_id).bind(org_id).fetch_optional(p).await)?;
    Ok(row.map(|(id,)| id))
}

/// What a policy is attached to: exactly one of the three ids.
#[derive(Debug, Clone, Copy, Default)]
pub struct Target {
    pub team_id: Option<i64>,
    pub user_id: Option<i64>,
    pub token_id: Option<i64>,
}

pub async fn insert_attachment(db: &Db, policy_id: i64, target: Target) -> Result<i64> {
    const SQL: &str = "INSERT INTO policy_attachments (policy_id, team_id, user_id, token_id) \
                       VALUES ($1, $2, $3, $4) RETURNING id";
    let id: (i64,) = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(policy_id)
        .bind(target.team_id)
        .bind(target.user_id)
        .bind(target.token_id)
        .fetch_one(p)
        .await)?;
    Ok(id.0)
}

/// An attachment with the name of its team or user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttachmentRow {
    pub id: i64,
    pub team_name: Option<String>,
    pub user_name: Option<String>,
    pub token_id: Option<i64>,
}

/// A page of a policy's attachments by id (the unique index leads with `policy_id`).
pub async fn list_attachments(
    db: &Db,
    policy_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<AttachmentRow>> {
    const SQL: &str = "SELECT a.id, te.name AS team_name, u.name AS user_name, a.token_id \
                       FROM policy_attachments a \
                       LEFT JOIN teams te ON te.id = a.team_id \
                       LEFT JOIN users u ON u.id = a.user_id \
                       WHERE a.policy_id = $1 ORDER BY a.id LIMIT $2 OFFSET $3";
    Ok(on_pool!(db, p => sqlx::query_as::<_, AttachmentRow>(SQL)
        .bind(policy_id).bind(limit).bind(offset).fetch_all(p).await)?)
}

/// Detaches; false when the policy has no attachment with this id.
pub async fn delete_attachment(db: &Db, policy_id: i64, id: i64) -> Result<bool> {
    const SQL: &str = "DELETE FROM policy_attachments WHERE id = $1 AND policy_id = $2";
    let done = on_pool!(db, p => sqlx::query(SQL).bind(id).bind(policy_id)
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}
