//! SQL for teams and their members (lookup by name is `identity::store::find_team`).

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::identity::users::store::TeamRow;
use crate::infra::db::{Db, on_pool};

pub async fn insert_team(
    db: &Db,
    org_id: i64,
    name: &str,
    role: Option<&str>,
    now: DateTime<Utc>,
) -> Result<TeamRow> {
    const SQL: &str = "INSERT INTO teams (org_id, name, role, created_at) VALUES ($1, $2, $3, $4) \
                       RETURNING id, org_id, name, role, created_at";
    Ok(on_pool!(db, p => sqlx::query_as::<_, TeamRow>(SQL)
        .bind(org_id).bind(name).bind(role).bind(now).fetch_one(p).await)?)
}

/// A page of the org's teams by name (the `(org_id, name)` unique index).
pub async fn list_teams(db: &Db, org_id: i64, limit: i64, offset: i64) -> Result<Vec<TeamRow>> {
    const SQL: &str = "SELECT id, org_id, name, role, created_at FROM teams WHERE org_id = $1 \
                       ORDER BY name LIMIT $2 OFFSET $3";
    Ok(on_pool!(db, p => sqlx::query_as::<_, TeamRow>(SQL)
        .bind(org_id).bind(limit).bind(offset).fetch_all(p).await)?)
}

pub async fn set_role(db: &Db, team_id: i64, role: Option<&str>) -> Result<()> {
    const SQL: &str = "UPDATE teams SET role = $1 WHERE id = $2";
    on_pool!(db, p => sqlx::query(SQL).bind(role).bind(team_id).execute(p).await.map(|_| ()))?;
    Ok(())
}

/// Deletes a team; its memberships, policy attachments and team tokens go with it (cascade).
pub async fn delete_team(db: &Db, team_id: i64) -> Result<bool> {
    const SQL: &str = "DELETE FROM teams WHERE id = $1";
    let done = on_pool!(db, p => sqlx::query(SQL).bind(team_id).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Adds a user to a team; adding a member again changes nothing.
pub async fn add_member(db: &Db, team_id: i64, user_id: i64) -> Result<()> {
    const SQL: &str =
        "INSERT INTO team_members (team_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";
    on_pool!(db, p => sqlx::query(SQL).bind(team_id).bind(user_id).execute(p).await.map(|_| ()))?;
    Ok(())
}

/// Removes the user named `user` from a team; false when they were not in it.
pub async fn remove_member(db: &Db, team_id: i64, user: &str) -> Result<bool> {
    const SQL: &str = "DELETE FROM team_members WHERE team_id = $1 \
                       AND user_id = (SELECT id FROM users WHERE name = $2)";
    let done = on_pool!(db, p => sqlx::query(SQL).bind(team_id).bind(user)
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TeamMemberRow {
    pub name: String,
}

/// A page of a team's members in the order of the `(team_id, user_id)` key.
pub async fn list_members(
    db: &Db,
    team_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<TeamMemberRow>> {
    const SQL: &str = "SELECT u.name FROM team_members tm JOIN users u ON u.id = tm.user_id \
                       WHERE tm.team_id = $1 ORDER BY tm.user_id LIMIT $2 OFFSET $3";
    Ok(on_pool!(db, p => sqlx::query_as::<_, TeamMemberRow>(SQL)
        .bind(team_id).bind(limit).bind(offset).fetch_all(p).await)?)
}
